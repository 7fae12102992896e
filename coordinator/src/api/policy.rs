//! `POST /accounts/{id}/policy` and `POST /approvals/statement`.

use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use mpc_api::error::ErrorBody;
use mpc_api::rest::{
    ApprovalStatement, PolicyChangeRequest, SessionCreated, StatementRequest, WaitQuery,
};

use super::sessions::{check_open_sessions, create_and_answer, owner_of, wait_of};
use crate::auth::Caller;
use crate::error::{AppError, StrictJson, StrictQuery};
use crate::Coordinator;

/// The statement approvers sign, hex: for a sign request (its body; the
/// approvals, if any, are ignored) or a policy change (its body with
/// `account_id`). A convenience: approvers that do not trust the server
/// compute it themselves (docs/api.md, "Approvals").
#[utoipa::path(post, path = "/api/v1/mpc/approvals/statement", tag = "accounts",
    request_body = StatementRequest,
    responses(
        (status = 200, description = "The statement", body = ApprovalStatement),
        (status = 400, description = "Invalid request, policy, or missing request_id / not_after", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 403, description = "Caller address not allowed, or the key lacks the `read` scope", body = ErrorBody),
        (status = 404, description = "No such account in the key's tenant", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "Over the key's request rate", body = ErrorBody),
        (status = 503, description = "Not ready", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub(super) async fn statement(
    State(c): State<Coordinator>,
    Extension(caller): Extension<Caller>,
    StrictJson(req): StrictJson<StatementRequest>,
) -> Result<Json<ApprovalStatement>, AppError> {
    let bytes = c.approval_statement(&owner_of(&c, &caller), req).await?;
    Ok(Json(ApprovalStatement {
        statement: hex::encode(bytes),
        version: 1,
    }))
}

/// Replaces an account's policy: a session of all the account's parties
/// (device parties must be online to join it), approved by a quorum of the
/// current policy. Every party checks the approvals against the policy it
/// holds and stores the new one; the account shows the new policy once all
/// have.
#[utoipa::path(post, path = "/api/v1/mpc/accounts/{id}/policy", tag = "accounts",
    request_body = PolicyChangeRequest,
    params(
        ("id" = String, Path, description = "Account id"),
        WaitQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "Same key and request: the same session (kept 24 h); same key, another request: 422"),
        ("Prefer" = Option<String>, Header, description = "`wait=S`: wait up to S seconds (at most 30) for the session to end"),
    ),
    responses(
        (status = 201, description = "Session created (finished, if it ended within the wait)", body = SessionCreated),
        (status = 200, description = "A repeat of an idempotent request: the first answer", body = SessionCreated),
        (status = 400, description = "Invalid policy or malformed approvals", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 403, description = "Caller address not allowed, the key lacks the `admin` scope, or approvals the current policy refuses (the code says why)", body = ErrorBody),
        (status = 404, description = "No such account in the key's tenant", body = ErrorBody),
        (status = 409, description = "The account has no policy (`policy_change_refused`), or idempotent request in flight", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Idempotency-Key reused", body = ErrorBody),
        (status = 429, description = "Over the key's request rate (`rate_limited`) or open sessions (`too_many_sessions`); see `Retry-After`", body = ErrorBody),
        (status = 503, description = "Not ready, or no router", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub(super) async fn change_policy(
    State(c): State<Coordinator>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    StrictQuery(q): StrictQuery<WaitQuery>,
    StrictJson(req): StrictJson<PolicyChangeRequest>,
) -> Result<Response, AppError> {
    let wait = wait_of(&q, &headers)?;
    let (c2, r2, id2) = (c.clone(), req.clone(), id.clone());
    let owner = owner_of(&c, &caller);
    let key_id = caller.key_id.clone();
    let create = async move {
        check_open_sessions(&c2, &key_id).await?;
        Ok(c2.create_policy_change(&owner, &id2, r2).await?)
    };
    let route = format!("policy:{id}");
    create_and_answer(&c, &caller, &headers, wait, &route, &req, create).await
}
