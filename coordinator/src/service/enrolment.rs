//! Party credentials: operators enrol each server party's identity key, and
//! a party registers with a request signed by that key.
//!
//! A registration is accepted only when it is signed (`verify_strict`) by
//! the Ed25519 key enrolled for its party id (and carries the pinned X25519
//! key, when one is pinned), was issued within [`REGISTRATION_WINDOW`] of
//! this coordinator's clock, and its nonce is new: a replay, a stale or
//! future request, another key, or an unenrolled or revoked party id is
//! refused with its own code and nothing is stored. No shared secret
//! authorizes a registration.
//!
//! Revoking an enrolment refuses the party's registrations and every new
//! session that names it (keygen, sign, policy change, presignature
//! refill); sessions already running finish as they were signed.

use mpc_api::admin::{PartyEnrol, PartyEnrolment};
use mpc_api::error::ErrorCode;
use party_core::identity::{check_ed25519, check_x25519, PartyPublicKey};
use party_core::wire::party_register_message;

use super::{validate, ServiceError};
use crate::auth::Caller;
use crate::store::{now, EnrolmentRecord};
use crate::Coordinator;

/// How far a signed registration's `issued_at` may be from the
/// coordinator's clock, either way, in seconds.
pub const REGISTRATION_WINDOW: u64 = 120;

/// A party's signed registration, parsed.
#[derive(Debug, Clone)]
pub struct SignedRegistration {
    /// Party id.
    pub party_id: String,
    /// Device type as sent (and signed).
    pub device_type: String,
    /// The identity keys.
    pub identity: PartyPublicKey,
    /// Unix seconds.
    pub issued_at: u64,
    /// 16 random bytes.
    pub nonce: [u8; 16],
    /// Ed25519 signature over [`party_register_message`].
    pub signature: [u8; 64],
}

fn refused(code: ErrorCode, message: impl Into<String>) -> ServiceError {
    ServiceError::new(code, message)
}

fn not_enrolled(party_id: &str) -> ServiceError {
    refused(
        ErrorCode::PartyNotEnrolled,
        format!("party {party_id} is not enrolled (or its enrolment was revoked)"),
    )
}

fn operator_only(caller: &Caller) -> Result<(), ServiceError> {
    if caller.is_operator() {
        Ok(())
    } else {
        Err(refused(
            ErrorCode::InsufficientScope,
            "only operator keys (admin scope, default tenant) enrol parties",
        ))
    }
}

fn check_party_id(party_id: &str) -> Result<(), ServiceError> {
    if party_id.is_empty() || party_id.len() > validate::MAX_PARTY_ID {
        return Err(refused(
            ErrorCode::InvalidPartyId,
            "party_id must be 1..128 characters",
        ));
    }
    Ok(())
}

/// A 32-byte key from hex, checked by `check`.
fn parse_key(
    name: &str,
    hex_key: &str,
    check: fn(&[u8; 32]) -> Result<(), party_core::identity::IdentityError>,
) -> Result<[u8; 32], ServiceError> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut key).map_err(|_| {
        refused(
            ErrorCode::InvalidIdentityKey,
            format!("{name} must be 32 bytes of hex"),
        )
    })?;
    check(&key).map_err(|e| refused(ErrorCode::InvalidIdentityKey, format!("{name}: {e}")))?;
    Ok(key)
}

impl Coordinator {
    /// Registers (or confirms) a party's identity from its signed request
    /// (`POST /internal/v1/parties`).
    pub async fn register_party(&self, reg: SignedRegistration) -> Result<(), ServiceError> {
        check_party_id(&reg.party_id)?;
        let device_type = validate::parse_device_type(&reg.device_type)?;
        super::devices::check_identity(&reg.identity)?;
        let message = party_register_message(
            &reg.party_id,
            &reg.device_type,
            &reg.identity,
            reg.issued_at,
            &reg.nonce,
        );
        reg.identity.verify(&message, &reg.signature).map_err(|_| {
            refused(
                ErrorCode::BadSignature,
                "the registration is not signed by its identity key",
            )
        })?;
        let now = now();
        if reg.issued_at.abs_diff(now) > REGISTRATION_WINDOW {
            tracing::warn!(party_id = %reg.party_id, issued_at = reg.issued_at, now, "stale party registration refused");
            return Err(refused(
                ErrorCode::RequestStale,
                format!(
                    "issued_at must be within {REGISTRATION_WINDOW} s of the coordinator's clock"
                ),
            ));
        }
        let enrolment = self
            .store()
            .enrolment(&reg.party_id)
            .await?
            .filter(EnrolmentRecord::active)
            .ok_or_else(|| {
                tracing::warn!(party_id = %reg.party_id, "registration of a party that is not enrolled refused");
                not_enrolled(&reg.party_id)
            })?;
        let pinned_x25519 = enrolment.x25519.unwrap_or(reg.identity.x25519);
        if enrolment.ed25519 != reg.identity.ed25519 || pinned_x25519 != reg.identity.x25519 {
            tracing::warn!(party_id = %reg.party_id, "registration with a key other than the enrolled one refused");
            return Err(refused(
                ErrorCode::EnrolmentMismatch,
                "the registration's identity keys are not the ones enrolled for this party",
            ));
        }
        if !self
            .store()
            .use_request_nonce(
                &reg.party_id,
                &reg.nonce,
                reg.issued_at + REGISTRATION_WINDOW,
            )
            .await?
        {
            tracing::warn!(party_id = %reg.party_id, "replayed party registration refused");
            return Err(refused(
                ErrorCode::RequestReplayed,
                "this registration was already used",
            ));
        }
        Ok(self
            .store()
            .register_party(&reg.party_id, device_type, reg.identity)
            .await?)
    }

    /// Refuses a server party that is not enrolled or whose enrolment was
    /// revoked (`party_not_enrolled`): no new session names it.
    pub(crate) async fn ensure_enrolled(&self, party_id: &str) -> Result<(), ServiceError> {
        match self.store().enrolment(party_id).await? {
            Some(e) if e.active() => Ok(()),
            _ => Err(not_enrolled(party_id)),
        }
    }

    /// Enrols a server party's identity key (operator keys only). A party
    /// already registered keeps its keys: enrolling other keys for it is a
    /// `conflict` (rotating a party's key is not supported).
    pub async fn enrol_party(
        &self,
        caller: &Caller,
        party_id: &str,
        req: PartyEnrol,
    ) -> Result<PartyEnrolment, ServiceError> {
        operator_only(caller)?;
        check_party_id(party_id)?;
        let ed25519 = parse_key("ed25519", &req.ed25519, check_ed25519)?;
        let x25519 = req
            .x25519
            .as_deref()
            .map(|x| parse_key("x25519", x, check_x25519))
            .transpose()?;
        if let Some(registered) = self.store().party(party_id).await? {
            let same = registered.identity.ed25519 == ed25519
                && x25519.is_none_or(|x| x == registered.identity.x25519);
            if !same {
                return Err(refused(
                    ErrorCode::Conflict,
                    "the party is registered with other keys; rotating a party's key is not supported",
                ));
            }
        }
        let rec = self
            .store()
            .enrol_party(party_id, ed25519, x25519, &caller.key_id)
            .await?;
        tracing::info!(%party_id, by = %caller.key_id, ed25519 = %hex::encode(ed25519), "party enrolled");
        self.enrolment_view(rec).await
    }

    /// Every enrolment (operator keys only).
    pub async fn list_enrolments(
        &self,
        caller: &Caller,
    ) -> Result<Vec<PartyEnrolment>, ServiceError> {
        operator_only(caller)?;
        let mut out = Vec::new();
        for rec in self.store().enrolments().await? {
            out.push(self.enrolment_view(rec).await?);
        }
        Ok(out)
    }

    /// Revokes a party's enrolment (operator keys only): its registrations
    /// and new sessions naming it are refused from now on.
    pub async fn revoke_enrolment(
        &self,
        caller: &Caller,
        party_id: &str,
    ) -> Result<PartyEnrolment, ServiceError> {
        operator_only(caller)?;
        let rec = self
            .store()
            .revoke_enrolment(party_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("enrolment"))?;
        tracing::info!(%party_id, by = %caller.key_id, "party enrolment revoked");
        self.enrolment_view(rec).await
    }

    async fn enrolment_view(&self, rec: EnrolmentRecord) -> Result<PartyEnrolment, ServiceError> {
        let registered = self.store().party(&rec.party_id).await?.is_some();
        Ok(PartyEnrolment {
            ed25519: hex::encode(rec.ed25519),
            x25519: rec.x25519.map(hex::encode),
            enrolled_at: rec.enrolled_at,
            enrolled_by: rec.enrolled_by,
            revoked_at: rec.revoked_at,
            registered,
            party_id: rec.party_id,
        })
    }
}
