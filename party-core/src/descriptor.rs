//! Session descriptors.
//!
//! The coordinator states everything a party needs to decide whether to take
//! part in a [`SessionDescriptor`], encodes it canonically
//! ([`SessionDescriptor::canonical_bytes`]) and signs those bytes with its
//! Ed25519 key. A party accepts only a [`SignedDescriptor`] that verifies under
//! its configured coordinator key ([`SignedDescriptor::verify`]), which yields a
//! [`VerifiedDescriptor`]: the only type sessions can be started from.
//!
//! The execution ID of the session is `SHA-256(domain tag || canonical bytes)`,
//! so two sessions differing in any field never share one.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::authz::{Authorization, AuthzError, Policy};
use crate::identity::{verify_ed25519, CoordinatorKey, PartyPublicKey};
use crate::wire::opt_hex32;

/// Largest number of parties a session may have.
pub const MAX_PARTIES: u16 = 64;
/// Descriptor format version.
pub const DESCRIPTOR_VERSION: u8 = 2;

const DOMAIN_DESCRIPTOR: &[u8] = b"mpc/descriptor/v2";
const DOMAIN_EID: &[u8] = b"mpc/execution-id/v1";

/// Why a descriptor was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DescriptorError {
    /// The signature is not the configured coordinator's, or the descriptor was
    /// altered after signing.
    #[error("descriptor is not signed by the configured coordinator")]
    NotSignedByCoordinator,
    /// Unknown descriptor format version.
    #[error("unsupported descriptor version {0}")]
    UnsupportedVersion(u8),
    /// Threshold or party count out of range.
    #[error("invalid threshold: t={t}, n={n}")]
    InvalidThreshold {
        /// threshold
        t: u16,
        /// parties
        n: u16,
    },
    /// Wrong number of participants for the session kind.
    #[error("expected {expected} participants, got {got}")]
    WrongParticipantCount {
        /// expected count
        expected: usize,
        /// actual count
        got: usize,
    },
    /// A keygen index is out of range or repeated.
    #[error("invalid or repeated keygen index {0}")]
    InvalidKeygenIndex(u16),
    /// A party id or identity key appears twice.
    #[error("participant {0:?} appears twice")]
    DuplicateParticipant(String),
    /// A party id is empty or too long.
    #[error("invalid party id")]
    InvalidPartyId,
    /// Derivation paths are not supported by this build.
    #[error("derivation paths are not supported")]
    DerivationUnsupported,
    /// The descriptor does not list the given identity.
    #[error("this party is not a participant")]
    NotAParticipant,
    /// The descriptor's deadline has passed.
    #[error("session expired")]
    Expired,
    /// A keygen both generates aux info and names existing aux info.
    #[error("a keygen that generates aux info cannot name existing aux info")]
    ConflictingAux,
    /// Unsupported curve.
    #[error("unsupported curve")]
    UnsupportedCurve,
    /// The policy or authorization it carries is malformed.
    #[error(transparent)]
    Authorization(#[from] AuthzError),
}

/// The curve of a session (only secp256k1 today).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CurveName {
    /// secp256k1
    Secp256k1,
}

/// How the message of an online (presignature) signature is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageDigest {
    /// SHA-256
    Sha256,
    /// Keccak-256 (Ethereum)
    Keccak256,
}

impl MessageDigest {
    /// The 32-byte digest of `message`.
    pub fn hash(self, message: &[u8]) -> [u8; 32] {
        use sha2::Digest as _;
        match self {
            MessageDigest::Sha256 => sha2::Sha256::digest(message).into(),
            MessageDigest::Keccak256 => sha3::Keccak256::digest(message).into(),
        }
    }
}

/// What the session does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SessionKind {
    /// Distributed key generation. With `generate_aux`, aux info for the party
    /// group is generated first; otherwise each party reuses its stored aux info.
    Keygen {
        /// Run aux info generation before the DKG.
        generate_aux: bool,
        /// The account's policy, stored by every party with its share.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<Policy>,
        /// With `generate_aux: false`: the fingerprint
        /// ([`crate::aux_fingerprint::aux_fingerprint`]) of the group's aux
        /// info to use, the one every party of the group agreed on. A party
        /// that holds no aux info with this fingerprint fails the session;
        /// `None` (descriptors of older coordinators) means the group's
        /// first aux info.
        #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex32")]
        aux_fingerprint: Option<[u8; 32]>,
    },
    /// Aux info only (no key): every party of the group generates new aux
    /// info with fresh primes and keeps it beside the group's current aux
    /// info, reporting its fingerprint. Nothing switches to it until a
    /// keygen descriptor names that fingerprint, which the coordinator does
    /// only once every party reported the same one: the repair of a group
    /// whose parties hold aux info of different runs, or a rotation of the
    /// group's Paillier keys.
    AuxInfo {},
    /// Full interactive signing of a 32-byte message hash.
    Sign {
        /// Account whose key signs.
        account_id: String,
        /// The 32-byte hash to sign.
        #[serde(with = "hex::serde")]
        message_hash: [u8; 32],
        /// Non-hardened derivation path (must be empty in this build).
        #[serde(default)]
        derivation_path: Vec<u32>,
    },
    /// Presignature generation; the presignature id is the session id.
    Presign {
        /// Account whose key the presignature is for.
        account_id: String,
    },
    /// Signing from a presignature: one round of partial signatures. The
    /// message itself (not only its hash) is named, as the library requires
    /// for presignatures.
    OnlineSign {
        /// Account whose key signs.
        account_id: String,
        /// The presignature to consume (its presign session id).
        presignature_id: Uuid,
        /// The message (preimage).
        #[serde(with = "hex::serde")]
        message: Vec<u8>,
        /// How the message is hashed.
        digest: MessageDigest,
    },
    /// Replaces the account's policy; every party of the account takes
    /// part, each checks the approvals against the policy it holds.
    PolicyChange {
        /// The account.
        account_id: String,
        /// The new policy.
        policy: Policy,
    },
}

impl SessionKind {
    fn tag(&self) -> u8 {
        match self {
            SessionKind::Keygen { .. } => 1,
            SessionKind::Sign { .. } => 2,
            SessionKind::Presign { .. } => 3,
            SessionKind::OnlineSign { .. } => 4,
            SessionKind::PolicyChange { .. } => 5,
            SessionKind::AuxInfo {} => 6,
        }
    }

    /// The account a signing-type session is about.
    pub fn account_id(&self) -> Option<&str> {
        match self {
            SessionKind::Keygen { .. } | SessionKind::AuxInfo {} => None,
            SessionKind::Sign { account_id, .. }
            | SessionKind::Presign { account_id }
            | SessionKind::OnlineSign { account_id, .. }
            | SessionKind::PolicyChange { account_id, .. } => Some(account_id),
        }
    }

    /// Short name for logs and APIs.
    pub fn name(&self) -> &'static str {
        match self {
            SessionKind::Keygen { .. } => "keygen",
            SessionKind::Sign { .. } => "sign",
            SessionKind::Presign { .. } => "presign",
            SessionKind::OnlineSign { .. } => "online_sign",
            SessionKind::PolicyChange { .. } => "policy_change",
            SessionKind::AuxInfo {} => "aux_info",
        }
    }
}

/// One party of a session, in session order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Participant {
    /// The party's registered id, e.g. `server-party-1`.
    pub party_id: String,
    /// The party's index at keygen (0-based, < n).
    pub keygen_index: u16,
    /// The party's identity public keys.
    pub identity: PartyPublicKey,
}

/// Everything a party needs to decide whether to take part in a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionDescriptor {
    /// Format version ([`DESCRIPTOR_VERSION`]).
    pub version: u8,
    /// Unique session id.
    pub session_id: Uuid,
    /// What the session does.
    pub kind: SessionKind,
    /// Curve.
    pub curve: CurveName,
    /// Threshold t: signers needed.
    pub threshold: u16,
    /// Number of parties n holding shares of the key.
    pub parties: u16,
    /// Ordered participants: all n for keygen, the t signers otherwise. A
    /// participant's position is its index in this session's frames.
    pub participants: Vec<Participant>,
    /// Deadline, seconds since the Unix epoch.
    pub expires_at: u64,
    /// The approvals of a signing or policy change, checked by every party
    /// against its own copy of the account's policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
}

struct Canon(Vec<u8>);

impl Canon {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        // Lengths are bounded by frame and field limits far below u32::MAX.
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(v);
    }
}

impl SessionDescriptor {
    /// The unambiguous byte encoding that is signed and hashed. Every field is
    /// fixed-size or length-prefixed, in declaration order.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut c = Canon(Vec::with_capacity(256));
        c.bytes(DOMAIN_DESCRIPTOR);
        c.u8(self.version);
        c.0.extend_from_slice(self.session_id.as_bytes());
        c.u8(self.kind.tag());
        match &self.kind {
            SessionKind::Keygen {
                generate_aux,
                policy,
                aux_fingerprint,
            } => {
                // 0: reuse the group's first aux info, 1: generate, 2:
                // reuse the aux info of the fingerprint that follows (a
                // value older descriptors never had: their bytes are
                // unchanged).
                match (generate_aux, aux_fingerprint) {
                    (true, _) => c.u8(1),
                    (false, None) => c.u8(0),
                    (false, Some(fp)) => {
                        c.u8(2);
                        c.0.extend_from_slice(fp);
                    }
                }
                match policy {
                    Some(p) => {
                        c.u8(1);
                        c.bytes(&p.canonical_bytes());
                    }
                    None => c.u8(0),
                }
            }
            SessionKind::PolicyChange { account_id, policy } => {
                c.bytes(account_id.as_bytes());
                c.bytes(&policy.canonical_bytes());
            }
            SessionKind::Sign {
                account_id,
                message_hash,
                derivation_path,
            } => {
                c.bytes(account_id.as_bytes());
                c.0.extend_from_slice(message_hash);
                c.u32(u32::try_from(derivation_path.len()).unwrap_or(u32::MAX));
                for i in derivation_path {
                    c.u32(*i);
                }
            }
            SessionKind::Presign { account_id } => c.bytes(account_id.as_bytes()),
            SessionKind::AuxInfo {} => {}
            SessionKind::OnlineSign {
                account_id,
                presignature_id,
                message,
                digest,
            } => {
                c.bytes(account_id.as_bytes());
                c.0.extend_from_slice(presignature_id.as_bytes());
                c.bytes(message);
                c.u8(match digest {
                    MessageDigest::Sha256 => 1,
                    MessageDigest::Keccak256 => 2,
                });
            }
        }
        c.u8(match self.curve {
            CurveName::Secp256k1 => 1,
        });
        c.u16(self.threshold);
        c.u16(self.parties);
        c.u32(u32::try_from(self.participants.len()).unwrap_or(u32::MAX));
        for p in &self.participants {
            c.bytes(p.party_id.as_bytes());
            c.u16(p.keygen_index);
            c.0.extend_from_slice(&p.identity.ed25519);
            c.0.extend_from_slice(&p.identity.x25519);
        }
        c.u64(self.expires_at);
        match &self.authorization {
            Some(a) => {
                c.u8(1);
                a.canonical_bytes(&mut c.0);
            }
            None => c.u8(0),
        }
        c.0
    }

    /// Execution ID: `SHA-256(domain || canonical bytes)`.
    pub fn execution_id(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(DOMAIN_EID);
        h.update(self.canonical_bytes());
        h.finalize().into()
    }

    /// Structural checks every party (and the coordinator) applies.
    pub fn validate(&self) -> Result<(), DescriptorError> {
        if self.version != DESCRIPTOR_VERSION {
            return Err(DescriptorError::UnsupportedVersion(self.version));
        }
        let (t, n) = (self.threshold, self.parties);
        if !(2..=MAX_PARTIES).contains(&n) || !(1..=n).contains(&t) {
            return Err(DescriptorError::InvalidThreshold { t, n });
        }
        let expected = match self.kind {
            SessionKind::Keygen { .. }
            | SessionKind::AuxInfo {}
            | SessionKind::PolicyChange { .. } => usize::from(n),
            _ => usize::from(t),
        };
        if self.participants.len() != expected {
            return Err(DescriptorError::WrongParticipantCount {
                expected,
                got: self.participants.len(),
            });
        }
        match &self.kind {
            SessionKind::Sign {
                derivation_path, ..
            } if !derivation_path.is_empty() => {
                return Err(DescriptorError::DerivationUnsupported);
            }
            SessionKind::Keygen {
                generate_aux: true,
                aux_fingerprint: Some(_),
                ..
            } => return Err(DescriptorError::ConflictingAux),
            SessionKind::Keygen {
                policy: Some(policy),
                ..
            }
            | SessionKind::PolicyChange { policy, .. } => policy.validate()?,
            _ => {}
        }
        if let Some(a) = &self.authorization {
            a.validate()?;
        }
        let mut seen_idx = std::collections::BTreeSet::new();
        let mut seen_id = std::collections::BTreeSet::new();
        let mut seen_key = std::collections::BTreeSet::new();
        let mut seen_x = std::collections::BTreeSet::new();
        for (pos, p) in self.participants.iter().enumerate() {
            if p.party_id.is_empty() || p.party_id.len() > 128 {
                return Err(DescriptorError::InvalidPartyId);
            }
            let keygen_ok = match self.kind {
                SessionKind::Keygen { .. } | SessionKind::AuxInfo {} => {
                    usize::from(p.keygen_index) == pos
                }
                _ => p.keygen_index < n,
            };
            if !keygen_ok || !seen_idx.insert(p.keygen_index) {
                return Err(DescriptorError::InvalidKeygenIndex(p.keygen_index));
            }
            if !seen_id.insert(p.party_id.as_str())
                || !seen_key.insert(p.identity.ed25519)
                || !seen_x.insert(p.identity.x25519)
            {
                return Err(DescriptorError::DuplicateParticipant(p.party_id.clone()));
            }
        }
        Ok(())
    }

    /// Identifies the party group of a keygen: the same parties (ids and
    /// identity keys) at the same keygen indices, and the same n. Aux info is
    /// generated once per group and reused for every later wallet of it.
    pub fn group_id(&self) -> String {
        let mut c = Canon(Vec::with_capacity(128));
        c.bytes(b"mpc/party-group/v1");
        c.u16(self.parties);
        let mut members: Vec<&Participant> = self.participants.iter().collect();
        members.sort_by_key(|p| p.keygen_index);
        for p in members {
            c.u16(p.keygen_index);
            c.bytes(p.party_id.as_bytes());
            c.0.extend_from_slice(&p.identity.ed25519);
        }
        hex::encode(Sha256::digest(&c.0))
    }

    /// Validates and signs the descriptor with the coordinator key.
    pub fn sign(self, key: &CoordinatorKey) -> Result<SignedDescriptor, DescriptorError> {
        self.validate()?;
        let signature = key.sign(&self.canonical_bytes());
        Ok(SignedDescriptor {
            descriptor: self,
            signature,
        })
    }
}

/// A descriptor with the coordinator's Ed25519 signature over its canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedDescriptor {
    /// The descriptor.
    pub descriptor: SessionDescriptor,
    /// Ed25519 signature over [`SessionDescriptor::canonical_bytes`].
    #[serde(with = "hex::serde")]
    pub signature: [u8; 64],
}

impl SignedDescriptor {
    /// Checks the coordinator's signature and the descriptor's structure.
    pub fn verify(&self, coordinator: &[u8; 32]) -> Result<VerifiedDescriptor, DescriptorError> {
        verify_ed25519(
            coordinator,
            &self.descriptor.canonical_bytes(),
            &self.signature,
        )
        .map_err(|_| DescriptorError::NotSignedByCoordinator)?;
        self.descriptor.validate()?;
        Ok(VerifiedDescriptor {
            execution_id: self.descriptor.execution_id(),
            descriptor: self.descriptor.clone(),
        })
    }
}

/// A descriptor whose coordinator signature and structure were checked.
#[derive(Debug, Clone)]
pub struct VerifiedDescriptor {
    descriptor: SessionDescriptor,
    execution_id: [u8; 32],
}

impl VerifiedDescriptor {
    /// The descriptor.
    pub fn descriptor(&self) -> &SessionDescriptor {
        &self.descriptor
    }
    /// The session's execution ID.
    pub fn execution_id(&self) -> [u8; 32] {
        self.execution_id
    }
    /// This party's position in the participant list.
    pub fn position_of(&self, identity: &PartyPublicKey) -> Result<u16, DescriptorError> {
        self.descriptor
            .participants
            .iter()
            .position(|p| p.identity == *identity)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or(DescriptorError::NotAParticipant)
    }
    /// Refuses the descriptor if its deadline is before `now` (Unix seconds).
    pub fn check_not_expired(&self, now: u64) -> Result<(), DescriptorError> {
        if now >= self.descriptor.expires_at {
            Err(DescriptorError::Expired)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::identity::PartyIdentity;
    use rand_core::OsRng;

    fn descriptor() -> SessionDescriptor {
        let parties: Vec<_> = (0..3)
            .map(|_| PartyIdentity::generate(&mut OsRng))
            .collect();
        SessionDescriptor {
            version: DESCRIPTOR_VERSION,
            session_id: Uuid::from_bytes([7; 16]),
            kind: SessionKind::Sign {
                account_id: "acct".into(),
                message_hash: [1; 32],
                derivation_path: vec![],
            },
            curve: CurveName::Secp256k1,
            threshold: 2,
            parties: 3,
            participants: [0u16, 2]
                .iter()
                .map(|&k| Participant {
                    party_id: format!("p{k}"),
                    keygen_index: k,
                    identity: parties[usize::from(k)].public(),
                })
                .collect(),
            expires_at: 1_900_000_000,
            authorization: None,
        }
    }

    #[test]
    fn json_roundtrip_keeps_signature_valid_and_rejects_unknown_fields() {
        let key = CoordinatorKey::generate(&mut OsRng);
        let signed = descriptor().sign(&key).unwrap();
        let json = serde_json::to_string(&signed).unwrap();
        let back: SignedDescriptor = serde_json::from_str(&json).unwrap();
        let verified = back.verify(&key.public()).unwrap();
        assert_eq!(verified.execution_id(), signed.descriptor.execution_id());
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["descriptor"]["extra"] = serde_json::json!(1);
        assert!(serde_json::from_value::<SignedDescriptor>(v).is_err());
    }

    #[test]
    fn canonical_bytes_separate_fields() {
        // Moving a byte between two adjacent strings changes the encoding.
        let mut a = descriptor();
        let mut b = descriptor();
        b.participants = a.participants.clone();
        a.participants[0].party_id = "ab".into();
        a.participants[1].party_id = "c".into();
        b.participants[0].party_id = "a".into();
        b.participants[1].party_id = "bc".into();
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        assert_ne!(a.execution_id(), b.execution_id());
    }
}
