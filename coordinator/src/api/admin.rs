//! The admin API (`admin` scope): `POST /admin/keys`, `GET /admin/keys`,
//! `DELETE /admin/keys/{id}`, `GET /admin/aux-groups`,
//! `POST /admin/aux-groups/{group_id}/regenerate`, and the party
//! enrolments `PUT|DELETE /admin/parties/{party_id}`, `GET /admin/parties`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use mpc_api::admin::{
    ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyView, AuxGroupList, AuxGroupQuery, KeyListQuery,
    PartyEnrol, PartyEnrolment, PartyEnrolmentList,
};
use mpc_api::error::ErrorBody;
use mpc_api::rest::{SessionCreated, WaitQuery};

use super::sessions::{check_open_sessions, create_and_answer, owner_of, wait_of};

use crate::auth::Caller;
use crate::error::{AppError, StrictJson, StrictQuery};
use crate::Coordinator;

/// Creates an API key of the caller's tenant (an operator key — admin, default
/// tenant — may name another tenant). The key is in this answer only.
#[utoipa::path(post, path = "/api/v1/mpc/admin/keys", tag = "admin",
    request_body = ApiKeyCreate,
    responses(
        (status = 201, description = "The new key, shown this once", body = ApiKeyCreated),
        (status = 400, description = "Invalid name, scopes or tenant", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Caller address not allowed, no `admin` scope, or another tenant named by a non-operator key", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "Over the key's request rate", body = ErrorBody),
        (status = 503, description = "Not ready", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub(super) async fn create_key(
    State(c): State<Coordinator>,
    Extension(caller): Extension<Caller>,
    StrictJson(req): StrictJson<ApiKeyCreate>,
) -> Result<(StatusCode, Json<ApiKeyCreated>), AppError> {
    Ok((StatusCode::CREATED, Json(c.create_key(&caller, req).await?)))
}

/// The API keys of the caller's tenant (an operator key: of every tenant, or
/// of `?tenant=`): ids, names, scopes, tenant, times; never a key or hash.
#[utoipa::path(get, path = "/api/v1/mpc/admin/keys", tag = "admin",
    params(KeyListQuery),
    responses(
        (status = 200, description = "Keys, oldest first", body = ApiKeyList),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Caller address not allowed, no `admin` scope, or another tenant named by a non-operator key", body = ErrorBody),
        (status = 429, description = "Over the key's request rate", body = ErrorBody),
        (status = 503, description = "Not ready", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub(super) async fn list_keys(
    State(c): State<Coordinator>,
    Extension(caller): Extension<Caller>,
    StrictQuery(q): StrictQuery<KeyListQuery>,
) -> Result<Json<ApiKeyList>, AppError> {
    let keys = c.list_keys(&caller, q.tenant.as_deref()).await?;
    Ok(Json(ApiKeyList { keys }))
}

/// Revokes an API key: refused at once by this instance and within a few
/// seconds (the key cache's TTL, 2 s by default) by every other.
#[utoipa::path(delete, path = "/api/v1/mpc/admin/keys/{id}", tag = "admin",
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 200, description = "The key, revoked", body = ApiKeyView),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Caller address not allowed, or no `admin` scope", body = ErrorBody),
        (status = 404, description = "No such key in the caller's tenant", body = ErrorBody),
        (status = 429, description = "Over the key's request rate", body = ErrorBody),
        (status = 503, description = "Not ready", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub(super) async fn revoke_key(
    State(c): State<Coordinator>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ApiKeyView>, AppError> {
    Ok(Json(c.revoke_key(&caller, &id).await?))
}

/// The party groups' aux info (operator keys only: admin keys of the
/// default tenant; groups are shared by tenants): `ready` with the
/// fingerprint every party reported, `generating`, or `inconsistent` (a
/// keygen found the group's parties holding different aux info; no keygen
/// of the group is created).
#[utoipa::path(get, path = "/api/v1/mpc/admin/aux-groups", tag = "admin",
    params(AuxGroupQuery),
    responses(
        (status = 200, description = "Party groups, inconsistent ones first", body = AuxGroupList),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Caller address not allowed, or not an operator key (admin scope, default tenant)", body = ErrorBody),
        (status = 429, description = "Over the key's request rate", body = ErrorBody),
        (status = 503, description = "Not ready", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub(super) async fn aux_groups(
    State(c): State<Coordinator>,
    Extension(caller): Extension<Caller>,
    StrictQuery(q): StrictQuery<AuxGroupQuery>,
) -> Result<Json<AuxGroupList>, AppError> {
    Ok(Json(c.aux_groups(&caller, q.inconsistent).await?))
}

/// Starts an aux-info session for a party group (operator keys only): every
/// party generates new aux info and keeps it beside the current one; when
/// all report the same fingerprint, the group's later keygens use it and an
/// inconsistent group is usable again. Existing wallets are not changed.
/// The group's parties are those of the session that recorded the group.
///
/// With a wait (`?wait_ms=N` or `Prefer: wait=S`) the answer comes when the
/// session has ended (or the wait is over).
#[utoipa::path(post, path = "/api/v1/mpc/admin/aux-groups/{group_id}/regenerate", tag = "admin",
    params(
        ("group_id" = String, Path, description = "Party group id (from `GET /admin/aux-groups`)"),
        WaitQuery,
        ("Prefer" = Option<String>, Header, description = "`wait=S`: wait up to S seconds (at most 30) for the session to end"),
    ),
    responses(
        (status = 201, description = "Aux-info session created (finished, if it ended within the wait)", body = SessionCreated),
        (status = 400, description = "Invalid query or `Prefer` header", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Caller address not allowed, or not an operator key (admin scope, default tenant)", body = ErrorBody),
        (status = 404, description = "No such party group", body = ErrorBody),
        (status = 409, description = "Another session is generating the group's aux info (`aux_info_in_progress`)", body = ErrorBody),
        (status = 422, description = "The group has device parties (`unsupported_device_type`)", body = ErrorBody),
        (status = 429, description = "Over the key's request rate or open sessions", body = ErrorBody),
        (status = 503, description = "Not ready, or no router", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub(super) async fn regenerate_aux(
    State(c): State<Coordinator>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(group_id): Path<String>,
    StrictQuery(q): StrictQuery<WaitQuery>,
) -> Result<Response, AppError> {
    let wait = wait_of(&q, &headers)?;
    let (c2, caller2, owner) = (c.clone(), caller.clone(), owner_of(&c, &caller));
    let group = group_id.clone();
    let create = async move {
        check_open_sessions(&c2, &caller2.key_id).await?;
        Ok(c2.regenerate_aux(&caller2, &owner, &group).await?)
    };
    create_and_answer(
        &c,
        &caller,
        &headers,
        wait,
        "aux-regenerate",
        &group_id,
        create,
    )
    .await
}

/// Enrols a server party (operator keys only: admin keys of the default
/// tenant): pins the Ed25519 identity key (and optionally the X25519 key)
/// its registrations must be signed with. Enrolling again replaces the keys
/// (refused with `conflict` once the party has registered with other keys)
/// and lifts a revocation.
#[utoipa::path(put, path = "/api/v1/mpc/admin/parties/{party_id}", tag = "admin",
    params(("party_id" = String, Path, description = "Party id")),
    request_body = PartyEnrol,
    responses(
        (status = 200, description = "The enrolment", body = PartyEnrolment),
        (status = 400, description = "Invalid party id or key", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Caller address not allowed, or not an operator key (admin scope, default tenant)", body = ErrorBody),
        (status = 409, description = "The party is registered with other keys", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 429, description = "Over the key's request rate", body = ErrorBody),
        (status = 503, description = "Not ready", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub(super) async fn enrol_party(
    State(c): State<Coordinator>,
    Extension(caller): Extension<Caller>,
    Path(party_id): Path<String>,
    StrictJson(req): StrictJson<PartyEnrol>,
) -> Result<Json<PartyEnrolment>, AppError> {
    Ok(Json(c.enrol_party(&caller, &party_id, req).await?))
}

/// Every enrolled server party, in force or revoked, and whether it has
/// registered (operator keys only).
#[utoipa::path(get, path = "/api/v1/mpc/admin/parties", tag = "admin",
    responses(
        (status = 200, description = "Enrolments by party id", body = PartyEnrolmentList),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Caller address not allowed, or not an operator key (admin scope, default tenant)", body = ErrorBody),
        (status = 429, description = "Over the key's request rate", body = ErrorBody),
        (status = 503, description = "Not ready", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub(super) async fn list_enrolments(
    State(c): State<Coordinator>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<PartyEnrolmentList>, AppError> {
    Ok(Json(PartyEnrolmentList {
        parties: c.list_enrolments(&caller).await?,
    }))
}

/// Revokes a server party's enrolment (operator keys only): from now on its
/// registrations are refused and no new session (keygen, sign, policy
/// change, presignature) names it; sessions already running finish.
#[utoipa::path(delete, path = "/api/v1/mpc/admin/parties/{party_id}", tag = "admin",
    params(("party_id" = String, Path, description = "Party id")),
    responses(
        (status = 200, description = "The enrolment, revoked", body = PartyEnrolment),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 403, description = "Caller address not allowed, or not an operator key (admin scope, default tenant)", body = ErrorBody),
        (status = 404, description = "No enrolment for this party", body = ErrorBody),
        (status = 429, description = "Over the key's request rate", body = ErrorBody),
        (status = 503, description = "Not ready", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub(super) async fn revoke_enrolment(
    State(c): State<Coordinator>,
    Extension(caller): Extension<Caller>,
    Path(party_id): Path<String>,
) -> Result<Json<PartyEnrolment>, AppError> {
    Ok(Json(c.revoke_enrolment(&caller, &party_id).await?))
}
