//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! the `mpc-api` types (never written by hand), at `/openapi.json`, and a
//! browsable page of it at `/docs`.

use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::Coordinator;

/// The public API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "MPC threshold signing API",
        description = "t-of-n threshold ECDSA (secp256k1): distributed key generation and signing \
                       by parties that never hold a whole key. Errors are JSON `{\"error\", \"code\"}`; \
                       clients branch on `code`.",
    ),
    paths(
        super::sessions::keygen,
        super::sessions::sign,
        super::sessions::session,
        super::accounts::accounts,
        super::accounts::account,
        super::admin::create_key,
        super::admin::list_keys,
        super::admin::revoke_key,
        super::admin::aux_groups,
        super::admin::regenerate_aux,
        super::admin::enrol_party,
        super::admin::list_enrolments,
        super::admin::revoke_enrolment,
        super::policy::change_policy,
        super::policy::statement,
        super::parties::device_join,
        super::health,
        super::ready,
        super::metrics,
    ),
    components(schemas(
        mpc_api::error::ErrorCode,
        mpc_api::rest::DeviceType,
        mpc_api::admin::Scope
    )),
    modifiers(&ApiKeyScheme),
    tags(
        (name = "sessions", description = "Key generation and signing sessions"),
        (name = "accounts", description = "Distributed keys"),
        (name = "devices", description = "Browser and device parties"),
        (name = "admin", description = "API keys: tenants, scopes, revocation; server party enrolment; party groups' aux info"),
        (name = "service", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The caller's API key",
            ))),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub(super) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

/// Content-Security-Policy of the docs page: its own script and the
/// document, nothing from anywhere else.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
                        style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `/docs`: the document as a page, rendered by a script of our own (no
/// third-party code on the API's origin).
pub(super) fn docs() -> axum::Router<Coordinator> {
    fn page(content_type: &'static str, body: &'static str) -> impl IntoResponse {
        (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CONTENT_SECURITY_POLICY, DOCS_CSP),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            body,
        )
    }
    axum::Router::new()
        .route(
            "/docs",
            axum::routing::get(|| async {
                page("text/html; charset=utf-8", include_str!("docs/index.html"))
            }),
        )
        .route(
            "/docs/docs.js",
            axum::routing::get(|| async {
                page(
                    "text/javascript; charset=utf-8",
                    include_str!("docs/docs.js"),
                )
            }),
        )
}
