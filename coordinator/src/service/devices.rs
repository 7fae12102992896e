//! Device parties (issue #4): the token-authenticated join, and the launch
//! of a keygen that waited for its devices' keys.

use mpc_api::error::ErrorCode;
use mpc_api::rest::SessionStatus;
use party_core::descriptor::{SessionDescriptor, SessionKind as ProtocolKind, SignedDescriptor};
use party_core::identity::PartyPublicKey;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::launch::new_token;
use super::ServiceError;
use crate::store::{now, DeviceType, StoreError};
use crate::Coordinator;

/// A device's join request: its token, its identity, and the identity's
/// signature over [`party_core::wire::device_join_message`] (which covers
/// both public keys, so an X25519 key swapped in transit fails it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceJoin {
    /// The join token from `join_tokens`.
    pub join_token: String,
    /// The device's identity keys.
    pub identity: PartyPublicKey,
    /// Ed25519 signature by the identity (proof of possession).
    #[serde(with = "hex::serde")]
    pub signature: [u8; 64],
}

/// The answer to a device join.
#[derive(Debug)]
pub enum Joined {
    /// The signed descriptor and the device's position in it.
    Ready {
        /// Signed descriptor.
        descriptor: Box<SignedDescriptor>,
        /// The device's position.
        position: u16,
    },
    /// Other device parties of the session have not joined yet; ask again.
    WaitingForDevices,
}

/// 401 `invalid_token`: also the answer for an unknown session, so a caller
/// cannot tell the two apart.
pub fn invalid_token() -> ServiceError {
    ServiceError::new(
        ErrorCode::InvalidToken,
        "join token is not valid for this session",
    )
}

/// 400 `invalid_identity_key` for an identity no honest party makes (an
/// all-zero or low-order X25519 key, a small-order Ed25519 key): checked
/// wherever the coordinator accepts an identity (registration, device join).
pub fn check_identity(identity: &PartyPublicKey) -> Result<(), ServiceError> {
    identity.validate().map_err(|e| {
        ServiceError::new(
            ErrorCode::InvalidIdentityKey,
            format!("identity refused: {e}"),
        )
    })
}

impl Coordinator {
    /// A device presents its join token and identity: the token's slot is
    /// bound to the identity (and the party id to the key, on first use);
    /// once every device slot of a pending keygen is bound the descriptor is
    /// signed, the session registered with the router and the server parties
    /// invited. Idempotent for the same identity.
    pub async fn device_join(
        &self,
        session_id: Uuid,
        req: DeviceJoin,
    ) -> Result<Joined, ServiceError> {
        use subtle::ConstantTimeEq as _;
        check_identity(&req.identity)?;
        let session = self
            .store()
            .session(session_id)
            .await?
            .ok_or_else(invalid_token)?;
        let hash: [u8; 32] = Sha256::digest(req.join_token.as_bytes()).into();
        // Compare against every device slot, in constant time each.
        let mut found = None;
        for row in self.store().device_slots(session_id).await? {
            if bool::from(row.token_sha256.as_slice().ct_eq(&hash)) {
                found = Some(row.slot);
            }
        }
        let slot = found.ok_or_else(invalid_token)?;
        let message =
            party_core::wire::device_join_message(&session_id, &req.join_token, &req.identity);
        req.identity.verify(&message, &req.signature).map_err(|_| {
            ServiceError::new(
                ErrorCode::BadSignature,
                "the signature does not prove possession of the identity key",
            )
        })?;
        if session.status.is_terminal() || session.expires_at <= now() {
            return Err(ServiceError::new(
                ErrorCode::SessionClosed,
                format!("the session is {}", session.status.as_str()),
            ));
        }
        self.store()
            .bind_device(session_id, &slot, req.identity)
            .await
            .map_err(|e| match e {
                StoreError::PartyBound => ServiceError::new(
                    ErrorCode::PartyBound,
                    format!("party {} is bound to another identity key", slot.party_id),
                ),
                e => ServiceError::from(e),
            })?;
        if session.descriptor.is_empty() {
            self.maybe_launch_pending(session_id).await?;
        }
        let session = self
            .store()
            .session(session_id)
            .await?
            .ok_or_else(|| ServiceError::internal("session vanished"))?;
        if session.descriptor.is_empty() {
            return Ok(Joined::WaitingForDevices);
        }
        if session.status == SessionStatus::Failed {
            return Err(ServiceError::new(
                ErrorCode::SessionClosed,
                "the session failed",
            ));
        }
        let descriptor = match self.descriptors().get(session_id) {
            Some(d) => SignedDescriptor::clone(&d),
            None => serde_json::from_str(&session.descriptor).map_err(ServiceError::internal)?,
        };
        Ok(Joined::Ready {
            descriptor: Box::new(descriptor),
            position: slot.position,
        })
    }

    /// Signs and launches a pending keygen once all its device slots are bound.
    async fn maybe_launch_pending(&self, session_id: Uuid) -> Result<(), ServiceError> {
        let slots = self.store().device_slots(session_id).await?;
        if slots.iter().any(|d| d.slot.identity.is_none()) {
            return Ok(());
        }
        let Some(pending) = self.store().pending_descriptor(session_id).await? else {
            return Ok(());
        };
        let mut descriptor: SessionDescriptor =
            serde_json::from_str(&pending).map_err(ServiceError::internal)?;
        for d in &slots {
            if let (Some(p), Some(identity)) = (
                descriptor
                    .participants
                    .get_mut(usize::from(d.slot.position)),
                d.slot.identity,
            ) {
                p.identity = identity;
            }
        }
        let group_id = descriptor.group_id();
        // Now the group is known: its aux info is generated by one keygen
        // at a time ([`super::aux`]); a refusal fails this session with the
        // refusal's code.
        let plan = match self
            .plan_aux(&group_id, session_id, descriptor.expires_at)
            .await
        {
            Ok(plan) => plan,
            Err(e) if e.code != ErrorCode::Internal => {
                if self
                    .store()
                    .fail_refused(session_id, &e.message, e.code.as_str())
                    .await?
                {
                    self.close_session(session_id);
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let generate_aux = plan == super::aux::AuxPlan::Generate;
        if let ProtocolKind::Keygen {
            generate_aux: g,
            aux_fingerprint,
            ..
        } = &mut descriptor.kind
        {
            *g = generate_aux;
            *aux_fingerprint = match plan {
                super::aux::AuxPlan::Reuse(named) => named,
                super::aux::AuxPlan::Generate => None,
            };
        }
        let signed = match descriptor.sign(&self.config().signing_key) {
            Ok(s) => s,
            Err(e) => {
                // e.g. two devices presented one key (a race the binding's
                // checks cannot see).
                self.store()
                    .fail(session_id, &format!("invalid session: {e}"), None)
                    .await?;
                return Err(ServiceError::new(ErrorCode::InvalidSession, e.to_string()));
            }
        };
        let json = serde_json::to_string(&signed).map_err(ServiceError::internal)?;
        if !self
            .store()
            .launch_pending(session_id, &json, &group_id, generate_aux)
            .await?
        {
            return Ok(());
        }
        let participants = self.store().participants(session_id).await?;
        let mut hashes = self.store().session_token_hashes(session_id).await?;
        let mut server_tokens: Vec<Option<String>> = participants.iter().map(|_| None).collect();
        // Server parties of a pending session get fresh tokens now: their
        // original tokens were never sent anywhere.
        for p in participants
            .iter()
            .filter(|p| p.device_type == DeviceType::Server)
        {
            let (token, hash) = new_token();
            self.store()
                .set_token_hash(session_id, p.position, &hash)
                .await?;
            if let Some(h) = hashes.get_mut(usize::from(p.position)) {
                *h = hash;
            }
            if let Some(t) = server_tokens.get_mut(usize::from(p.position)) {
                *t = Some(token);
            }
        }
        tracing::info!(%session_id, generate_aux, "device keys bound; descriptor signed");
        self.launch(signed, &hashes, &server_tokens).await
    }
}
