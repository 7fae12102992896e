//! The browser party's vault: `web-demo/vault/`, served on an origin of its
//! own (a second loopback port of `mpc dev --demo`) and framed by the demo
//! page.
//!
//! Why a second origin: a browser isolates storage by origin, not by
//! worker. On the page's origin any script the page runs (its own, a
//! dependency, an injected one) could open the party's IndexedDB, use its
//! non-extractable AES key to open every sealed record, and read the shares.
//! On the vault's origin the store, the AES key, the identity seed, the
//! prime pool, the party workers and the backup export and import live
//! where the page's scripts cannot reach: the page talks to the vault only
//! through `postMessage`, with a fixed set of messages
//! (`web-demo/vault/vault.js`), and a signing runs only after the user
//! approved it in the vault's own frame.
//!
//! What this listener serves, and nothing else:
//! - the vault's static files and the party-wasm package;
//! - the two coordinator routes a device party calls, the device join and
//!   the signed reports, handed in-process to the coordinator's own router
//!   (same handlers, same checks; the vault's scripts call them
//!   same-origin; a deployment with the vault on a static origin gives the
//!   coordinator a CORS rule for these two routes instead);
//! - in test mode only, the PUBLIC test primes and aux info (a page built
//!   for production ignores them, `insecureTestBuild()`).
//!
//! Every answer carries a Content-Security-Policy whose `frame-ancestors`
//! names only the demo page's origins, and the request must name one of
//! the vault's own `Host` values (no DNS rebinding).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, ORIGIN};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use tower_http::services::ServeDir;

use super::{error, BROWSER_TEST_PRIMES_INDEX};

/// What the vault's listener needs.
pub struct VaultConfig {
    /// Repository root holding `web-demo/vault/` and `party-wasm/`.
    pub root: PathBuf,
    /// `Host` values the vault answers to.
    pub allowed_hosts: Vec<String>,
    /// The demo page's origins (`http://127.0.0.1:8080`...): the only ones
    /// that may frame the vault and whose messages it takes.
    pub parent_origins: Vec<String>,
    /// The coordinator's application: the device join and the reports are
    /// handed to it.
    pub coordinator: Router,
    /// The coordinator's descriptor-signing public key (hex), offered for
    /// pinning on first use (the vault's own config: the page has no say).
    pub coordinator_public_key: String,
    /// Router WebSocket URL for the vault's party.
    pub router_ws_url: String,
    /// TEST ONLY: directory of the PUBLIC test primes.
    pub insecure_test_primes: Option<PathBuf>,
    /// TEST ONLY: directory of the PUBLIC test aux info.
    pub insecure_test_aux: Option<PathBuf>,
}

impl std::fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultConfig")
            .field("root", &self.root)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("parent_origins", &self.parent_origins)
            .finish_non_exhaustive()
    }
}

struct Vault {
    allowed_hosts: Vec<String>,
    parent_origins: Vec<String>,
    coordinator_public_key: String,
    router_ws_url: String,
    csp: HeaderValue,
    coordinator: Router,
    insecure_test_primes: Option<PathBuf>,
    insecure_test_aux: Option<PathBuf>,
}

/// The vault's Content-Security-Policy: its own scripts, workers and wasm;
/// WebSockets to the router (any host: the router's URL comes with the
/// session); framed only by `parents`.
fn csp(parents: &[String]) -> HeaderValue {
    let value = format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; \
         connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors {}",
        parents.join(" ")
    );
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"))
}

/// The `http://` origins of `hosts`, each once, in order; IPv6 literals left
/// out (a CSP source expression cannot name one).
pub fn origins(hosts: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for h in hosts.iter().filter(|h| !h.starts_with('[')) {
        let o = format!("http://{h}");
        if !out.contains(&o) {
            out.push(o);
        }
    }
    out
}

/// The vault's routes (served on their own listener).
pub fn router(config: VaultConfig) -> Router {
    let root = config.root.clone();
    let state = Arc::new(Vault {
        csp: csp(&config.parent_origins),
        allowed_hosts: config.allowed_hosts,
        parent_origins: config.parent_origins,
        coordinator_public_key: config.coordinator_public_key,
        router_ws_url: config.router_ws_url,
        coordinator: config.coordinator,
        insecure_test_primes: config.insecure_test_primes,
        insecure_test_aux: config.insecure_test_aux,
    });
    Router::new()
        .route("/config.json", get(vault_config))
        .route("/api/test-primes", get(test_primes))
        .route("/api/test-aux", get(test_aux))
        .route("/api/v1/mpc/sessions/{id}/join", post(to_coordinator))
        .route("/internal/v1/reports", post(to_coordinator))
        .nest_service(
            "/party-wasm/pkg",
            ServeDir::new(root.join("party-wasm/pkg")),
        )
        .nest_service("/party-wasm/js", ServeDir::new(root.join("party-wasm/js")))
        .fallback_service(ServeDir::new(root.join("web-demo/vault")))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Host and Origin checks, security headers.
async fn guard(State(v): State<Arc<Vault>>, req: Request, next: Next) -> Response {
    let host = super::guard::host_of(req.headers());
    let res = if !v.allowed_hosts.contains(&host) {
        error(StatusCode::FORBIDDEN, "bad_host", "unexpected Host header")
    } else if req.method() != Method::GET
        && req.method() != Method::HEAD
        && req.headers().get(ORIGIN).and_then(|o| o.to_str().ok())
            != Some(format!("http://{host}").as_str())
    {
        // The vault's own scripts call the coordinator routes same-origin.
        error(
            StatusCode::FORBIDDEN,
            "bad_origin",
            "requests must come from the vault itself",
        )
    } else {
        next.run(req).await
    };
    super::guard::with_policy(res, &v.csp)
}

/// The vault's settings, from its own origin (the page it is framed by has
/// no say in them): the origins whose messages it takes, the coordinator
/// key it pins on first use, the router, and the test-mode offer (taken
/// only by a wasm build made for tests).
async fn vault_config(State(v): State<Arc<Vault>>) -> Json<Value> {
    Json(json!({
        "parent_origins": v.parent_origins,
        "coordinator_public_key": v.coordinator_public_key,
        "router_ws_url": v.router_ws_url,
        "insecure_test_primes": v.insecure_test_primes.is_some(),
        "insecure_test_aux": v.insecure_test_aux.is_some(),
    }))
}

/// Hands a device party's call to the coordinator's own router: a fresh
/// request with the method, URI, the content headers and body, and the peer address
/// (the allowlist and limits apply as on the API listener); nothing else
/// of this listener's routing goes along.
async fn to_coordinator(State(v): State<Arc<Vault>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut inner = Request::new(body);
    *inner.method_mut() = parts.method;
    *inner.uri_mut() = parts.uri;
    *inner.version_mut() = parts.version;
    // The headers these two routes read; no cookie (cookies are shared
    // across the ports of a host) and nothing hop-by-hop.
    for name in [CONTENT_TYPE, CONTENT_LENGTH, ACCEPT] {
        if let Some(v) = parts.headers.get(&name) {
            inner.headers_mut().insert(name, v.clone());
        }
    }
    if let Some(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        inner.extensions_mut().insert(*peer);
    }
    match v.coordinator.clone().oneshot(inner).await {
        Ok(res) => res,
        Err(never) => match never {},
    }
}

async fn test_primes(State(v): State<Arc<Vault>>) -> Response {
    let Some(dir) = &v.insecure_test_primes else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "test primes are served only in test mode",
        );
    };
    let parsed = std::fs::read_to_string(dir.join("primes.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    match parsed
        .as_ref()
        .and_then(|v| v["parties"][BROWSER_TEST_PRIMES_INDEX].as_str())
    {
        Some(hex) => Json(json!({
            "warning": "INSECURE: PUBLIC test primes, for tests only",
            "prime_set": hex,
        }))
        .into_response(),
        None => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "test primes unavailable",
        ),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestAuxQuery {
    parties: u16,
    index: u16,
}

/// TEST ONLY: the PUBLIC test aux info of keygen index `index` in a group of
/// `parties` (`aux-n{parties}.json`). The vault accepts it only when it runs
/// a wasm build made for tests (`insecureTestBuild()`).
async fn test_aux(
    State(v): State<Arc<Vault>>,
    q: Result<Query<TestAuxQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(dir) = &v.insecure_test_aux else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "test aux info is served only in test mode",
        );
    };
    let Ok(Query(q)) = q else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected ?parties=N&index=I",
        );
    };
    if !(2..=16).contains(&q.parties) || q.index >= q.parties {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "index must be below parties (2..=16)",
        );
    }
    let parsed = std::fs::read_to_string(dir.join(format!("aux-n{}.json", q.parties)))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok());
    match parsed
        .as_ref()
        .and_then(|v| v["aux"][usize::from(q.index)].as_str())
    {
        Some(hex) => Json(json!({
            "warning": "INSECURE: PUBLIC test aux info, for tests only",
            "aux_info": hex,
        }))
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no test aux info for this group size",
        ),
    }
}
