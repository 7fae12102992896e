//! Online signing from a stored presignature: one broadcast round, the
//! partial signatures combined (and the inconsistent signer named).

use cggmp24::signing::{
    PartialSignature, Presignature, PresignatureCommitment, PresignaturePublicData,
};
use cggmp24::DataToSign;
use generic_ec::coords::AlwaysHasAffineX as _;
use generic_ec::{NonZero, Point};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sha3::Keccak256;

use crate::descriptor::MessageDigest;
use crate::signature::RecoverableSignature;
use crate::Curve;

use super::{PartySession, Pump, SessionError, SessionOutput};

/// A presignature as a party stores it (sealed) between presign and online
/// signing.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredPresignature {
    /// The presign session id.
    pub presignature_id: uuid::Uuid,
    /// Account the presignature belongs to.
    pub account_id: String,
    /// Compressed public key of the account.
    #[serde(with = "hex::serde")]
    pub public_key: [u8; 33],
    /// Keygen indices of the signers, in signer order.
    pub keygen_indices: Vec<u16>,
    /// This party's position among the signers.
    pub position: u16,
    pub(super) presignature: Presignature<Curve>,
    pub(super) gamma: NonZero<Point<Curve>>,
    pub(super) commitments: Vec<(Point<Curve>, Point<Curve>)>,
}

impl std::fmt::Debug for StoredPresignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredPresignature")
            .field("presignature_id", &self.presignature_id)
            .field("account_id", &self.account_id)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl StoredPresignature {
    fn public_data(&self) -> PresignaturePublicData<Curve> {
        PresignaturePublicData {
            Gamma: self.gamma,
            commitments: self
                .commitments
                .iter()
                .map(|(d, s)| PresignatureCommitment {
                    tilde_Delta: *d,
                    tilde_S: *s,
                })
                .collect(),
        }
    }
}

pub(super) struct OnlineState {
    pub(super) presignature: StoredPresignature,
    pub(super) data: DataToSign<Curve>,
    pub(super) hash: [u8; 32],
    pub(super) partials: Vec<Option<PartialSignature<Curve>>>,
}

pub(super) fn message_data(message: &[u8], digest: MessageDigest) -> (DataToSign<Curve>, [u8; 32]) {
    let data = match digest {
        MessageDigest::Sha256 => DataToSign::digest::<Sha256>(message),
        MessageDigest::Keccak256 => DataToSign::digest::<Keccak256>(message),
    };
    (data, digest.hash(message))
}

impl PartySession {
    pub(super) fn try_combine(&mut self, pump: &mut Pump) -> Result<(), SessionError> {
        let Some(online) = self.online.as_ref() else {
            return Ok(());
        };
        if online.partials.iter().any(Option::is_none) {
            return Ok(());
        }
        let partials: Vec<PartialSignature<Curve>> =
            online.partials.iter().flatten().copied().collect();
        let public = online.presignature.public_data();
        let Some(sig) = PartialSignature::combine(&partials, &public, online.data) else {
            // Find who is inconsistent with the presignature commitments.
            let r = public.Gamma.x().to_scalar();
            let m = online.data.to_scalar();
            let suspect = partials
                .iter()
                .zip(&public.commitments)
                .position(|(p, c)| p.sigma * public.Gamma != m * c.tilde_Delta + r * c.tilde_S)
                .and_then(|p| u16::try_from(p).ok());
            self.finish();
            return Err(SessionError::Combine { suspect });
        };
        let sig =
            RecoverableSignature::from_cggmp(&sig, &online.hash, &online.presignature.public_key)?;
        self.finish();
        pump.output = Some(SessionOutput::Signature(sig));
        Ok(())
    }
}
