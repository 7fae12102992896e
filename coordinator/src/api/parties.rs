//! What parties call: the device join, signed reports and server party
//! registration (signed by the party's enrolled identity key).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use mpc_api::error::{ErrorBody, ErrorCode};
use mpc_api::party::{DeviceJoinRequest, DeviceJoinStatus, DeviceJoined, Identity, RegisterParty};
use party_core::identity::PartyPublicKey;
use party_core::wire::SignedReport;
use uuid::Uuid;

use crate::error::{AppError, StrictJson};
use crate::Coordinator;

/// The identity keys as party-core takes them, through party-core's own
/// serde form of the same JSON (so exactly what it accepted before the API
/// types existed); `None` when malformed.
fn identity(i: &Identity) -> Option<PartyPublicKey> {
    serde_json::to_value(i)
        .and_then(serde_json::from_value)
        .ok()
}

pub(super) async fn report(
    State(c): State<Coordinator>,
    StrictJson(signed): StrictJson<SignedReport>,
) -> Result<StatusCode, AppError> {
    c.apply_report(signed).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A server party's registration, signed by its identity key
/// ([`crate::service::enrolment`]); no other credential.
pub(super) async fn register_party(
    State(c): State<Coordinator>,
    StrictJson(req): StrictJson<RegisterParty>,
) -> Result<StatusCode, AppError> {
    let identity = identity(&req.identity).ok_or_else(|| {
        AppError::bad_request("invalid_json", "identity keys must be 32 bytes of hex each")
    })?;
    let mut nonce = [0u8; 16];
    hex::decode_to_slice(&req.nonce, &mut nonce)
        .map_err(|_| AppError::bad_request("invalid_json", "nonce must be 16 bytes of hex"))?;
    let mut signature = [0u8; 64];
    hex::decode_to_slice(&req.signature, &mut signature)
        .map_err(|_| AppError::bad_request("invalid_json", "signature must be 64 bytes of hex"))?;
    c.register_party(crate::service::SignedRegistration {
        party_id: req.party_id,
        device_type: req.device_type,
        identity,
        issued_at: req.issued_at,
        nonce,
        signature,
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn invalid_token() -> AppError {
    AppError::code(
        ErrorCode::InvalidToken,
        "join token is not valid for this session",
    )
}

/// A device party presents its join token and identity key; the answer is
/// the signed descriptor and its position (`200`), or `202` while other
/// devices of the session have not joined yet.
#[utoipa::path(post, path = "/api/v1/mpc/sessions/{id}/join", tag = "devices",
    params(("id" = String, Path, description = "Session id")),
    request_body = DeviceJoinRequest,
    responses(
        (status = 200, description = "Ready: the signed descriptor", body = DeviceJoined),
        (status = 202, description = "Waiting for other devices: ask again", body = DeviceJoined),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 401, description = "Invalid token or signature", body = ErrorBody),
        (status = 409, description = "Token, party or identity bound to another", body = ErrorBody),
        (status = 410, description = "The session has ended", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 503, description = "Not ready, or no router", body = ErrorBody),
    ))]
pub(super) async fn device_join(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
    StrictJson(req): StrictJson<DeviceJoinRequest>,
) -> Result<(StatusCode, Json<DeviceJoined>), AppError> {
    let id = Uuid::parse_str(&id).map_err(|_| invalid_token())?;
    let identity = identity(&req.identity).ok_or_else(|| {
        AppError::bad_request("invalid_json", "identity keys must be 32 bytes of hex each")
    })?;
    let mut signature = [0u8; 64];
    hex::decode_to_slice(&req.signature, &mut signature)
        .map_err(|_| AppError::bad_request("invalid_json", "signature must be 64 bytes of hex"))?;
    let join = crate::service::DeviceJoin {
        join_token: req.join_token,
        identity,
        signature,
    };
    Ok(match c.device_join(id, join).await? {
        crate::service::Joined::Ready {
            descriptor,
            position,
        } => (
            StatusCode::OK,
            Json(DeviceJoined {
                session_id: id,
                status: DeviceJoinStatus::Ready,
                position: Some(position),
                descriptor: Some(serde_json::to_value(&descriptor).map_err(AppError::internal)?),
            }),
        ),
        crate::service::Joined::WaitingForDevices => (
            StatusCode::ACCEPTED,
            Json(DeviceJoined {
                session_id: id,
                status: DeviceJoinStatus::WaitingForDevices,
                position: None,
                descriptor: None,
            }),
        ),
    })
}
