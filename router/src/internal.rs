//! The internal HTTP API the coordinator calls. Every request carries
//! `X-Internal-Token`; errors are JSON `{"error", "code"}`.
//!
//! - `POST /internal/v1/sessions`: register a session and its slots.
//! - `DELETE /internal/v1/sessions/{id}`: end a session.
//! - `POST /internal/v1/invitations`: deliver or queue an invitation.

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::Json;
use party_core::descriptor::MAX_PARTIES;
use party_core::identity::PartyPublicKey;
use party_core::wire::Invitation;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use crate::sessions::NewSlot;
use crate::{now_unix, Router};

/// Header carrying the internal API token.
pub const INTERNAL_TOKEN_HEADER: &str = "x-internal-token";

/// An API error: status, machine-readable code and a message without secrets.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.message, "code": self.code});
        (self.status, Json(body)).into_response()
    }
}

pub(crate) fn routes(router: Router) -> axum::Router<Router> {
    axum::Router::new()
        .route("/internal/v1/sessions", post(register_session))
        .route("/internal/v1/sessions/{id}", delete(close_session))
        .route("/internal/v1/invitations", post(invite))
        .route_layer(middleware::from_fn_with_state(router, require_token))
}

/// Refuses requests without the right `X-Internal-Token` (compared in constant
/// time, as SHA-256 digests so the length does not matter either).
async fn require_token(State(router): State<Router>, req: Request, next: Next) -> Response {
    let expected = router.config().internal_token.as_bytes();
    let presented = req
        .headers()
        .get(INTERNAL_TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let matches: bool = Sha256::digest(expected)
        .ct_eq(&Sha256::digest(presented))
        .into();
    if expected.is_empty() || !matches {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong internal token",
        )
        .into_response();
    }
    next.run(req).await
}

fn unavailable(e: crate::shared::SharedError) -> ApiError {
    tracing::error!(error = %e, "shared state unavailable");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the router cannot reach its state store",
    )
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // serde's message may quote a value of the body; it goes back only to the
    // authenticated caller that sent it, and is never logged.
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterSession {
    session_id: Uuid,
    expires_at: u64,
    participants: Vec<ParticipantSlot>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParticipantSlot {
    position: u16,
    token_sha256: String,
    identity: Option<PartyPublicKey>,
}

fn decode_32(hex_str: &str, what: &str) -> Result<[u8; 32], ApiError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_str, &mut out)
        .map_err(|_| ApiError::bad_request(format!("{what} must be 64 hex characters")))?;
    Ok(out)
}

/// Slots in position order, checked: positions 0..n without gaps or repeats,
/// distinct token hashes and bound identities.
fn slots(participants: Vec<ParticipantSlot>) -> Result<Vec<NewSlot>, ApiError> {
    let n = participants.len();
    if n == 0 || n > usize::from(MAX_PARTIES) {
        return Err(ApiError::bad_request(format!(
            "a session has 1 to {MAX_PARTIES} participants"
        )));
    }
    let mut slots: Vec<Option<NewSlot>> = vec![None; n];
    for p in participants {
        let token_sha256 = decode_32(&p.token_sha256, "token_sha256")?;
        let entry = slots
            .get_mut(usize::from(p.position))
            .ok_or_else(|| ApiError::bad_request("positions must be 0..n without gaps"))?;
        if entry.is_some() {
            return Err(ApiError::bad_request(format!(
                "position {} appears twice",
                p.position
            )));
        }
        *entry = Some(NewSlot {
            token_sha256,
            identity: p.identity,
        });
    }
    let slots: Vec<NewSlot> = slots.into_iter().flatten().collect();
    for (i, a) in slots.iter().enumerate() {
        for b in &slots[i + 1..] {
            if a.token_sha256 == b.token_sha256 {
                return Err(ApiError::bad_request("two participants share a token"));
            }
            if let (Some(x), Some(y)) = (a.identity, b.identity) {
                if x.ed25519 == y.ed25519 {
                    return Err(ApiError::bad_request("two participants share an identity"));
                }
            }
        }
    }
    Ok(slots)
}

async fn register_session(
    State(router): State<Router>,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let req: RegisterSession = parse_json(&body)?;
    let session_id = req.session_id;
    let slots = slots(req.participants)?;
    let n = slots.len();
    let registered = match router.shared() {
        Some(shared) => shared
            .register(session_id, req.expires_at, slots)
            .await
            .map_err(unavailable)?,
        None => router
            .sessions()
            .register(session_id, req.expires_at, slots),
    };
    registered.map_err(|e| ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()))?;
    tracing::info!(%session_id, parties = n, expires_at = req.expires_at, "session registered");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "session_id": session_id })),
    ))
}

async fn close_session(
    State(router): State<Router>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let session_id =
        Uuid::parse_str(&id).map_err(|_| ApiError::bad_request("session id must be a UUID"))?;
    let closed = match router.shared() {
        Some(shared) => shared.close(session_id).await.map_err(unavailable)?,
        None => router.sessions().close(session_id),
    };
    if !closed {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_session",
            "unknown session",
        ));
    }
    tracing::info!(%session_id, "session closed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InviteRequest {
    identity_ed25519: String,
    invitation: Invitation,
}

async fn invite(
    State(router): State<Router>,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let req: InviteRequest = parse_json(&body)?;
    let key = decode_32(&req.identity_ed25519, "identity_ed25519")?;
    let session_id = req.invitation.descriptor.descriptor.session_id;
    let delivered = match router.shared() {
        // Queued in Redis; the instance holding the party's control
        // connection hands it over.
        Some(shared) => shared
            .deliver(key, &req.invitation)
            .await
            .map_err(unavailable)?,
        None => router.control().deliver(key, req.invitation, now_unix()),
    };
    tracing::info!(%session_id, delivered, "invitation received");
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "delivered": delivered })),
    ))
}
