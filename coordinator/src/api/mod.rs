//! The HTTP layer: routes, extractors and the mapping of errors to answers.
//! Request and response bodies are the types of `mpc-api`; the OpenAPI
//! document (`/openapi.json`, browsable at `/docs`) is generated from them.
//!
//! - Public API under `/api/v1/mpc` (API key + allowlist + the key's rate;
//!   each route needs a scope of the key, and sees only the key's tenant):
//!   [`sessions`] (keygen, sign, session status, waits, `Idempotency-Key`),
//!   [`accounts`], [`policy`] (policy changes, approval statements),
//!   [`admin`] (API keys, party enrolments, party groups' aux info).
//! - Device join `/api/v1/mpc/sessions/{id}/join` (join token + identity
//!   signature) and the internal API under `/internal/v1` (party reports are
//!   authenticated by the party's signature, party registration by a
//!   fresh, once-only request signed with the party's enrolled identity
//!   key): [`parties`].
//! - `/health`, `/ready`, `/metrics`, `/openapi.json`, `/docs`; every other
//!   path answers a JSON 404.

mod accounts;
mod admin;
pub mod openapi;
mod parties;
mod policy;
mod sessions;
mod views;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::{middleware, Json, Router};
use mpc_api::admin::Scope;
use mpc_api::error::{ErrorBody, ErrorCode};
use mpc_api::rest::{Health, Ready};

use crate::error::AppError;
use crate::Coordinator;

/// The whole application.
pub fn app(c: Coordinator) -> Router {
    let limit = c.config().max_body_bytes;
    // The scope each route needs, checked inside the API-key check.
    let scoped = |scope: Scope, route: MethodRouter<Coordinator>| {
        route.route_layer(middleware::from_fn_with_state(
            scope,
            crate::auth::require_scope,
        ))
    };
    let public = Router::new()
        .route(
            "/api/v1/mpc/keygen",
            scoped(Scope::Keygen, post(sessions::keygen)),
        )
        .route(
            "/api/v1/mpc/sign",
            scoped(Scope::Sign, post(sessions::sign)),
        )
        .route(
            "/api/v1/mpc/sessions/{id}",
            scoped(Scope::Read, get(sessions::session)),
        )
        .route(
            "/api/v1/mpc/accounts",
            scoped(Scope::Read, get(accounts::accounts)),
        )
        .route(
            "/api/v1/mpc/accounts/{id}",
            scoped(Scope::Read, get(accounts::account)),
        )
        .route(
            "/api/v1/mpc/admin/keys",
            scoped(Scope::Admin, post(admin::create_key).get(admin::list_keys)),
        )
        .route(
            "/api/v1/mpc/admin/keys/{id}",
            scoped(Scope::Admin, delete(admin::revoke_key)),
        )
        .route(
            "/api/v1/mpc/admin/parties",
            scoped(Scope::Admin, get(admin::list_enrolments)),
        )
        .route(
            "/api/v1/mpc/admin/parties/{party_id}",
            scoped(
                Scope::Admin,
                put(admin::enrol_party).delete(admin::revoke_enrolment),
            ),
        )
        .route(
            "/api/v1/mpc/admin/aux-groups",
            scoped(Scope::Admin, get(admin::aux_groups)),
        )
        .route(
            "/api/v1/mpc/admin/aux-groups/{group_id}/regenerate",
            scoped(Scope::Admin, post(admin::regenerate_aux)),
        )
        .route(
            "/api/v1/mpc/accounts/{id}/policy",
            scoped(Scope::Admin, post(policy::change_policy)),
        )
        .route(
            "/api/v1/mpc/approvals/statement",
            scoped(Scope::Read, post(policy::statement)),
        )
        .route_layer(middleware::from_fn_with_state(
            c.clone(),
            crate::auth::require_api_key,
        ));
    // Device parties authenticate with their join token and identity key.
    let device = Router::new().route("/api/v1/mpc/sessions/{id}/join", post(parties::device_join));
    let internal = Router::new()
        .route("/internal/v1/reports", post(parties::report))
        .route("/internal/v1/parties", post(parties::register_party));
    let gated = public
        .merge(device)
        .merge(internal)
        .route_layer(middleware::from_fn_with_state(c.clone(), require_ready));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route(
            "/metrics",
            get(metrics).route_layer(middleware::from_fn_with_state(
                c.clone(),
                crate::auth::require_allowed,
            )),
        )
        .route("/openapi.json", get(openapi::openapi_json))
        .merge(openapi::docs())
        .merge(gated)
        .fallback(not_found)
        .layer(middleware::from_fn(crate::metrics::track_http))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(c)
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, description = "The process serves HTTP", body = Health)))]
async fn health() -> Json<Health> {
    Json(Health {
        service: "coordinator".into(),
        status: "healthy".into(),
    })
}

/// Readiness: started up and the database answers now.
#[utoipa::path(get, path = "/ready", tag = "service",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Starting, or the database is down", body = Ready)))]
async fn ready(State(c): State<Coordinator>) -> (StatusCode, Json<Ready>) {
    let database = c.is_ready() && c.store().db().ping().await;
    let status = if database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Ready {
            service: "coordinator".into(),
            ready: database,
            database: if database { "up" } else { "down" }.into(),
        }),
    )
}

/// Prometheus metrics of this process.
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses(
        (status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 403, description = "Caller address not allowed", body = ErrorBody)))]
async fn metrics(State(c): State<Coordinator>) -> impl IntoResponse {
    c.update_gauges().await;
    mpc_telemetry::scrape()
}

/// Every unknown path: a JSON 404 like every other error.
async fn not_found() -> AppError {
    AppError::code(ErrorCode::NotFound, "no such route")
}

/// 503 `not_ready` until start-up has finished.
async fn require_ready(
    State(c): State<Coordinator>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Result<axum::response::Response, AppError> {
    if c.is_ready() {
        Ok(next.run(req).await)
    } else {
        Err(AppError::code(
            ErrorCode::NotReady,
            "the coordinator is starting: its database is not ready yet",
        ))
    }
}
