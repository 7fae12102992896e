//! `GET /accounts` and `GET /accounts/{id}`.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use mpc_api::error::ErrorBody;
use mpc_api::rest::{AccountList, AccountView, ListQuery};

use super::views;
use crate::auth::Caller;
use crate::error::{AppError, StrictQuery};
use crate::Coordinator;

/// One account (distributed key): public key, address, parties.
#[utoipa::path(get, path = "/api/v1/mpc/accounts/{id}", tag = "accounts",
    params(("id" = String, Path, description = "Account id")),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 403, description = "Caller address not allowed, or no `read` scope", body = ErrorBody),
        (status = 404, description = "No such account in the key's tenant", body = ErrorBody),
        (status = 429, description = "Over the key's request rate", body = ErrorBody),
        (status = 503, description = "Not ready", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub(super) async fn account(
    State(c): State<Coordinator>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, AppError> {
    let a = c
        .store()
        .account_of(&caller.tenant_id, &id)
        .await?
        .ok_or_else(crate::service::unknown_account)?;
    Ok(Json(views::account(&a)))
}

/// The accounts of the key's tenant, newest first.
#[utoipa::path(get, path = "/api/v1/mpc/accounts", tag = "accounts",
    params(ListQuery),
    responses(
        (status = 200, description = "Accounts", body = AccountList),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or unknown API key", body = ErrorBody),
        (status = 403, description = "Caller address not allowed, or no `read` scope", body = ErrorBody),
        (status = 429, description = "Over the key's request rate", body = ErrorBody),
        (status = 503, description = "Not ready", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub(super) async fn accounts(
    State(c): State<Coordinator>,
    Extension(caller): Extension<Caller>,
    StrictQuery(q): StrictQuery<ListQuery>,
) -> Result<Json<AccountList>, AppError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let list = c.store().accounts_of(&caller.tenant_id, limit).await?;
    Ok(Json(AccountList {
        accounts: list.iter().map(views::account).collect(),
    }))
}
