//! `POST /keygen`, `POST /sign` and `GET /sessions/{id}`, with waits
//! (`?wait_ms=N`, `Prefer: wait=S`) and `Idempotency-Key`.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use mpc_api::error::{ErrorBody, ErrorCode};
use mpc_api::rest::{KeygenRequest, SessionCreated, SessionView, SignRequest, WaitQuery};
use uuid::Uuid;

use super::views;
use crate::auth::Caller;
use crate::error::{AppError, StrictJson, StrictQuery};
use crate::idempotency::{self, Outcome, Scoped};
use crate::service::{Created, Owner};
use crate::store::SessionRow;
use crate::Coordinator;

/// Longest wait, in milliseconds.
pub const MAX_WAIT_MS: u64 = 30_000;
/// How often a wait re-reads the database at first (sessions another
/// coordinator instance ends do not wake this one); the gap doubles up to
/// [`WAIT_RECHECK_MAX`]. Sessions this instance ends wake the wait at once.
const WAIT_RECHECK: Duration = Duration::from_millis(50);
const WAIT_RECHECK_MAX: Duration = Duration::from_secs(1);
/// Requests of this process that may wait at once; past that a request is
/// answered at once with the session as it is (a wait is a preference).
const MAX_WAITERS: usize = 512;
static WAITERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_WAITERS);

/// The wait a request asks for: `?wait_ms=N`, or `Prefer: wait=S` (RFC 7240,
/// seconds), capped at [`MAX_WAIT_MS`]. Returns the wait and whether it came
/// from `Prefer` (answered with `Preference-Applied`).
pub(super) fn wait_of(q: &WaitQuery, headers: &HeaderMap) -> Result<(Duration, bool), AppError> {
    if let Some(ms) = q.wait_ms {
        return Ok((Duration::from_millis(ms.min(MAX_WAIT_MS)), false));
    }
    for v in headers.get_all("prefer") {
        let v = v
            .to_str()
            .map_err(|_| AppError::code(ErrorCode::InvalidWait, "Prefer header is not ASCII"))?;
        for pref in v.split(',') {
            let pref = pref.trim();
            let Some((name, value)) = pref.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("wait") {
                let secs: u64 = value.trim().trim_matches('"').parse().map_err(|_| {
                    AppError::code(
                        ErrorCode::InvalidWait,
                        "Prefer: wait=N takes a whole number of seconds",
                    )
                })?;
                let ms = secs.saturating_mul(1000).min(MAX_WAIT_MS);
                return Ok((Duration::from_millis(ms), true));
            }
        }
    }
    Ok((Duration::ZERO, false))
}

fn unknown_session() -> AppError {
    AppError::code(ErrorCode::UnknownSession, "session not found")
}

/// Re-reads session `id` of `tenant` until it has ended or `wait` has
/// passed. Another tenant's session is `unknown_session`, as one that does
/// not exist.
pub(super) async fn wait_for_end(
    c: &Coordinator,
    tenant: &str,
    id: Uuid,
    wait: Duration,
) -> Result<SessionRow, AppError> {
    let mut ended = c.store().subscribe_ended();
    let mut s = c
        .store()
        .session(id)
        .await?
        .filter(|s| s.tenant_id == tenant)
        .ok_or_else(unknown_session)?;
    if wait.is_zero() {
        return Ok(s);
    }
    let Ok(_waiter) = WAITERS.try_acquire() else {
        return Ok(s);
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut recheck = WAIT_RECHECK;
    while !s.status.is_terminal() && tokio::time::Instant::now() < deadline {
        tokio::select! {
            got = ended.recv() => {
                if matches!(got, Ok(ended_id) if ended_id != id) {
                    continue;
                }
            }
            _ = tokio::time::sleep(recheck) => recheck = (recheck * 2).min(WAIT_RECHECK_MAX),
            _ = tokio::time::sleep_until(deadline) => {}
        }
        s = c.store().session(id).await?.ok_or_else(unknown_session)?;
    }
    Ok(s)
}

/// Creates a session once per `Idempotency-Key` (when given), waits as asked
/// and answers 201 (200 for a repeat of an idempotent request).
pub(super) async fn create_and_answer<R, F>(
    c: &Coordinator,
    caller: &Caller,
    headers: &HeaderMap,
    wait: (Duration, bool),
    route: &str,
    req: &R,
    create: F,
) -> Result<Response, AppError>
where
    R: serde::Serialize,
    F: std::future::Future<Output = Result<Created, AppError>> + Send + 'static,
{
    let creating = async move {
        let created = create.await?;
        let id = created.row.session_id;
        Ok((views::created(&created), id))
    };
    let (created, status) = match idempotency::key_of(headers)? {
        Some(key) => {
            let api_key = headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let scoped = Scoped::new(api_key, &key);
            let fp = idempotency::fingerprint(route, req)?;
            match c.idempotent(&scoped, &fp, creating).await? {
                Outcome::First(a) => (a, StatusCode::CREATED),
                Outcome::Repeat(a) => (a, StatusCode::OK),
            }
        }
        None => (creating.await?.0, StatusCode::CREATED),
    };
    let (wait, from_prefer) = wait;
    let body: SessionCreated = if wait.is_zero() {
        created
    } else {
        let row = wait_for_end(c, &caller.tenant_id, created.session_id, wait).await?;
        if row.status.is_terminal() {
            views::finished(created, &row)
        } else {
            created
        }
    };
    let mut res = (status, Json(body)).into_response();
    if from_prefer {
        let applied = format!("wait={}", wait.as_secs());
        if let Ok(v) = HeaderValue::from_str(&applied) {
            res.headers_mut().insert("preference-applied", v);
        }
    }
    Ok(res)
}

/// Starts a distributed key generation.
///
/// With a wait (`?wait_ms=N` or `Prefer: wait=S`) the answer comes when the
/// keygen has ended (or the wait is over) and then carries `account_id`,
/// `public_key` and `address` at the top level.
#[utoipa::path(post, path = "/api/v1/mpc/keygen", tag = "sessions",
    request_body = KeygenRequest,
    params(
        WaitQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "Same key and request: the same session (kept 24 h); same key, another request: 422"),
        ("Prefer" = Option<String>, Header, description = "`wait=S`: wait up to S seconds (at most 30) for the session to end"),
    ),
    responses(
        (status = 201, description = "Session created (finished, if it ended within the wait)", body = SessionCreated),
        (status = 200, description = "A repeat of an idempotent request: the first answer", body = SessionCreated),
        (status = 400, description = "Invalid request or policy, or a participant that is not a registered party", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 403, description = "Caller address not allowed, or the key lacks the route's scope", body = ErrorBody),
        (status = 409, description = "Idempotent request still in flight", body = ErrorBody),
        (status = 429, description = "Over the key's request rate (`rate_limited`) or open sessions (`too_many_sessions`); see `Retry-After`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Unsupported device type, or Idempotency-Key reused", body = ErrorBody),
        (status = 503, description = "Not ready, or no router", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub(super) async fn keygen(
    State(c): State<Coordinator>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    StrictQuery(q): StrictQuery<WaitQuery>,
    StrictJson(req): StrictJson<KeygenRequest>,
) -> Result<Response, AppError> {
    let wait = wait_of(&q, &headers)?;
    let (c2, r2, owner) = (c.clone(), req.clone(), owner_of(&c, &caller));
    let key_id = caller.key_id.clone();
    let create = async move {
        check_open_sessions(&c2, &key_id).await?;
        Ok(c2.create_keygen(&owner, r2).await?)
    };
    create_and_answer(&c, &caller, &headers, wait, "keygen", &req, create).await
}

/// Signs a 32-byte hash (full signing), or a message (from a presignature
/// of the pool when one is ready for the signers, else full signing).
///
/// For an account with a policy the request carries `request_id`,
/// `not_after` and `approvals`: the coordinator checks them as every party
/// will, and answers 403 with the party's code when they would be refused.
///
/// With a wait (`?wait_ms=N` or `Prefer: wait=S`) the answer comes when the
/// signing has ended (or the wait is over) and then carries `signature`
/// (r, s, v, der) at the top level.
#[utoipa::path(post, path = "/api/v1/mpc/sign", tag = "sessions",
    request_body = SignRequest,
    params(
        WaitQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "Same key and request: the same session (kept 24 h); same key, another request: 422"),
        ("Prefer" = Option<String>, Header, description = "`wait=S`: wait up to S seconds (at most 30) for the session to end"),
    ),
    responses(
        (status = 201, description = "Session created (finished, if it ended within the wait)", body = SessionCreated),
        (status = 200, description = "A repeat of an idempotent request: the first answer", body = SessionCreated),
        (status = 400, description = "Invalid request, a participant not in the account, or malformed approvals", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 403, description = "Caller address not allowed, the key lacks the route's scope, or approvals the account's policy refuses (the code says why: `approval_required`, `approval_quorum_not_met`, `request_id_reused`, ...)", body = ErrorBody),
        (status = 404, description = "No such account in the key's tenant", body = ErrorBody),
        (status = 409, description = "No presignature (with require_presignature), or idempotent request in flight", body = ErrorBody),
        (status = 429, description = "Over the key's request rate (`rate_limited`) or open sessions (`too_many_sessions`); see `Retry-After`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Unsupported device type, or Idempotency-Key reused", body = ErrorBody),
        (status = 503, description = "Not ready, or no router", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub(super) async fn sign(
    State(c): State<Coordinator>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    StrictQuery(q): StrictQuery<WaitQuery>,
    StrictJson(req): StrictJson<SignRequest>,
) -> Result<Response, AppError> {
    let wait = wait_of(&q, &headers)?;
    let (c2, r2, owner) = (c.clone(), req.clone(), owner_of(&c, &caller));
    let key_id = caller.key_id.clone();
    let create = async move {
        check_open_sessions(&c2, &key_id).await?;
        Ok(c2.create_sign(&owner, r2).await?)
    };
    create_and_answer(&c, &caller, &headers, wait, "sign", &req, create).await
}

/// The owner of the sessions `caller` creates, under the configured quota.
pub(super) fn owner_of(c: &Coordinator, caller: &Caller) -> Owner {
    caller.owner(c.config().limits.max_open_sessions)
}

/// 429 `too_many_sessions` when the key already has its quota of open
/// sessions: checked before anything is done (a sign request would claim a
/// presignature), and again, atomically, where the session is inserted.
pub(super) async fn check_open_sessions(c: &Coordinator, key_id: &str) -> Result<(), AppError> {
    if c.store().open_sessions_of(key_id).await? >= c.config().limits.max_open_sessions {
        return Err(
            crate::service::ServiceError::from(crate::store::StoreError::TooManySessions).into(),
        );
    }
    Ok(())
}

fn parse_id(id: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(id).map_err(|_| unknown_session())
}

/// A session's status, parties and result; `?wait_ms=N` (at most 30 000)
/// answers once the session has ended, or after N ms (long poll).
#[utoipa::path(get, path = "/api/v1/mpc/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id"), WaitQuery),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 403, description = "Caller address not allowed, or the key lacks the route's scope", body = ErrorBody),
        (status = 404, description = "No such session in the key's tenant", body = ErrorBody),
        (status = 429, description = "Over the key's request rate", body = ErrorBody),
        (status = 503, description = "Not ready", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub(super) async fn session(
    State(c): State<Coordinator>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    StrictQuery(q): StrictQuery<WaitQuery>,
) -> Result<Json<SessionView>, AppError> {
    let id = parse_id(&id)?;
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0).min(MAX_WAIT_MS));
    let s = wait_for_end(&c, &caller.tenant_id, id, wait).await?;
    let parts = c.store().participants(id).await?;
    Ok(Json(views::session(&s, &parts)))
}
