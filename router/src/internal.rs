//! The internal HTTP API the coordinator calls, served on its own listener
//! (never the public WebSocket one). Every request carries
//! `X-Internal-Token`, the router's internal credential that only
//! coordinators hold (not the token parties register with); errors are
//! [`ErrorBody`] `{"error", "code"}`. Request and answer types are
//! `mpc_api::router`'s.
//!
//! - `POST /internal/v1/sessions`: register a session and its slots. A
//!   session id is registered once: 201 the first time; 200 for the very
//!   same registration again while the session is open (a retry); 409
//!   `conflict` for another registration of an open session; 410
//!   `session_closed` once the session has closed (completed, failed or
//!   expired), for 7 days past its deadline on either backend.
//! - `DELETE /internal/v1/sessions/{id}`: end a session.
//! - `POST /internal/v1/invitations`: deliver or queue an invitation.
//! - `GET /internal/v1/disconnects?after=&wait_ms=`: the parties recorded
//!   as disconnected (see `crate::departures`), a long poll.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Json;
use mpc_api::error::{ErrorBody, ErrorCode};
use mpc_api::router::{
    Disconnects, DisconnectsQuery, InviteRequest, InviteResponse, ParticipantSlot, RegisterSession,
    SessionRegistered, DISCONNECTS_PATH, INTERNAL_TOKEN_HEADER, INVITATIONS_PATH, SESSIONS_PATH,
};
use party_core::descriptor::MAX_PARTIES;
use party_core::identity::PartyPublicKey;
use party_core::wire::Invitation;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use crate::backend::{BackendError, Registration, Slot};
use crate::{now_unix, Router};

/// Latest deadline a registration may set, from now: 30 days. Closed
/// session ids are remembered for a while past the deadline, so a deadline
/// without bound would make the router remember an id without bound.
pub(crate) const MAX_SESSION_LIFETIME_SECS: u64 = 30 * 24 * 3600;

/// An API error: a stable code (which gives the status) and a message
/// without secrets.
#[derive(Debug)]
pub(crate) struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody::new(self.code, self.message))).into_response()
    }
}

pub(crate) fn routes(router: Router) -> axum::Router<Router> {
    axum::Router::new()
        .route(SESSIONS_PATH, post(register_session))
        .route(&format!("{SESSIONS_PATH}/{{id}}"), delete(close_session))
        .route(INVITATIONS_PATH, post(invite))
        .route(DISCONNECTS_PATH, get(disconnects))
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
        return ApiError::new(ErrorCode::Unauthorized, "missing or wrong internal token")
            .into_response();
    }
    next.run(req).await
}

fn unavailable(e: BackendError) -> ApiError {
    tracing::error!(error = %e, "shared state unavailable");
    ApiError::new(
        ErrorCode::Unavailable,
        "the router cannot reach its state store",
    )
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // serde's message may quote a value of the body; it goes back only to the
    // authenticated caller that sent it, and is never logged.
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

fn decode_32(hex_str: &str, what: &str) -> Result<[u8; 32], ApiError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_str, &mut out)
        .map_err(|_| ApiError::bad_request(format!("{what} must be 64 hex characters")))?;
    Ok(out)
}

/// Slots in position order, checked: positions 0..n without gaps or repeats,
/// distinct token hashes and bound identities.
fn slots(participants: Vec<ParticipantSlot<PartyPublicKey>>) -> Result<Vec<Slot>, ApiError> {
    let n = participants.len();
    if n == 0 || n > usize::from(MAX_PARTIES) {
        return Err(ApiError::bad_request(format!(
            "a session has 1 to {MAX_PARTIES} participants"
        )));
    }
    let mut slots: Vec<Option<Slot>> = vec![None; n];
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
        *entry = Some(Slot {
            token_sha256,
            identity: p.identity,
        });
    }
    let slots: Vec<Slot> = slots.into_iter().flatten().collect();
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
) -> Result<(StatusCode, Json<SessionRegistered>), ApiError> {
    let req: RegisterSession<PartyPublicKey> = parse_json(&body)?;
    let session_id = req.session_id;
    if req.expires_at > now_unix().saturating_add(MAX_SESSION_LIFETIME_SECS) {
        return Err(ApiError::bad_request(format!(
            "expires_at is more than {MAX_SESSION_LIFETIME_SECS} seconds away"
        )));
    }
    let slots = slots(req.participants)?;
    let n = slots.len();
    let outcome = router
        .register_session(session_id, req.expires_at, slots)
        .await
        .map_err(unavailable)?;
    let status = match outcome {
        Registration::Fresh => StatusCode::CREATED,
        Registration::Identical => StatusCode::OK,
        Registration::Conflict => {
            tracing::warn!(%session_id, "registration refused: the session is open with other slots");
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "session already registered with another deadline or other slots",
            ));
        }
        Registration::Closed => {
            tracing::warn!(%session_id, "registration refused: the session has closed");
            return Err(ApiError::new(
                ErrorCode::SessionClosed,
                "this session has closed and cannot be registered again",
            ));
        }
    };
    tracing::info!(%session_id, parties = n, expires_at = req.expires_at, retry = (status == StatusCode::OK), "session registered");
    Ok((status, Json(SessionRegistered { session_id })))
}

async fn close_session(
    State(router): State<Router>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let session_id =
        Uuid::parse_str(&id).map_err(|_| ApiError::bad_request("session id must be a UUID"))?;
    let closed = router
        .close_session(session_id)
        .await
        .map_err(unavailable)?;
    if !closed {
        return Err(ApiError::new(ErrorCode::UnknownSession, "unknown session"));
    }
    tracing::info!(%session_id, "session closed");
    Ok(StatusCode::NO_CONTENT)
}

async fn invite(
    State(router): State<Router>,
    body: Bytes,
) -> Result<(StatusCode, Json<InviteResponse>), ApiError> {
    let req: InviteRequest<Invitation> = parse_json(&body)?;
    let key = decode_32(&req.identity_ed25519, "identity_ed25519")?;
    let session_id = req.invitation.descriptor.descriptor.session_id;
    // In Redis the invitation is queued and the instance holding the party's
    // control connection hands it over.
    let delivered = router
        .invite(key, req.invitation, now_unix())
        .await
        .map_err(unavailable)?;
    tracing::info!(%session_id, delivered, "invitation received");
    Ok((StatusCode::ACCEPTED, Json(InviteResponse { delivered })))
}

async fn disconnects(
    State(router): State<Router>,
    query: Result<Query<DisconnectsQuery>, QueryRejection>,
) -> Result<Json<Disconnects>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let wait = crate::departures::poll_wait(q.wait_ms);
    let mut stop = router.shutdown_signal();
    tokio::select! {
        r = router.backend().disconnects(q.after, wait) => r.map(Json).map_err(unavailable),
        _ = crate::stopped(&mut stop) => Err(ApiError::new(ErrorCode::Unavailable, "the router is shutting down")),
    }
}
