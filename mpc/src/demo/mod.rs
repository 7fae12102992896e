//! The web demo that `mpc dev --demo` serves at `/demo/`: the static page
//! (`web-demo/static/`) and a tiny demo backend under `/demo/api/`; and, on
//! an origin of its own, the browser party's vault ([`vault`]:
//! `web-demo/vault/` and the party-wasm package), which the page frames.
//!
//! The backend stands for the application server a real deployment would
//! have: it holds the API key and makes only the calls the demo needs
//! (create a 2-of-3 wallet with the browser and two server parties, sign
//! with the browser and a server party or with the two server parties, read
//! sessions and accounts). The page never sees the API key, and never the
//! party's secrets: those live in the vault, which talks to the page only
//! through a fixed set of `postMessage` messages and to the coordinator
//! only through the token-authenticated device join and its signed
//! reports, and to the router.
//!
//! The demo is off unless `mpc dev --demo` asks for it, and serves on
//! loopback addresses unless told otherwise. [`guard`] keeps its backend to
//! the browser that opened the page: Host and Origin checks, a per-browser
//! session cookie, and each browser acts only on the wallets and sessions
//! it created itself (a wallet made through the REST API is not the
//! demo's to sign with).

mod guard;
pub mod vault;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Extension, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mpc_api::rest::{DeviceType, KeygenRequest, Participant};
use serde::Deserialize;
use serde_json::{json, Value};
use tower_http::services::ServeDir;

use crate::client::Client;
use guard::{BrowserId, Guard, Kind};

pub use guard::hosts_for;

/// The two server parties the demo wallet uses.
pub const DEMO_SERVERS: [&str; 2] = ["server-party-1", "server-party-2"];

/// Index of the PUBLIC test prime set served to browsers in test mode
/// (server parties of `mpc dev` use 0..n).
pub const BROWSER_TEST_PRIMES_INDEX: usize = 3;

/// What the demo backend needs.
pub struct DemoConfig {
    /// Repository root holding `web-demo/` and `party-wasm/`.
    pub root: PathBuf,
    /// Coordinator REST base URL (the backend calls it with the API key).
    pub api_url: String,
    /// The API key (stays on the server).
    pub api_key: String,
    /// TEST ONLY: directory of the PUBLIC test primes (the vault serves them;
    /// the page shows the test-mode banner).
    pub insecure_test_primes: Option<PathBuf>,
    /// TEST ONLY: directory of the PUBLIC test aux info, served by the vault
    /// (set when the coordinator runs with `--insecure-test-aux`: no keygen
    /// generates aux info then, every party takes the test set of its index).
    pub insecure_test_aux: Option<PathBuf>,
    /// `Host` header values the demo answers to ([`hosts_for`]).
    pub allowed_hosts: Vec<String>,
    /// The vault's origin (`http://127.0.0.1:8088`): the page frames it
    /// ([`vault`]), and nothing else.
    pub vault_origin: String,
}

impl std::fmt::Debug for DemoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoConfig")
            .field("root", &self.root)
            .field("api_url", &self.api_url)
            .field("insecure_test_primes", &self.insecure_test_primes)
            .field("insecure_test_aux", &self.insecure_test_aux)
            .finish_non_exhaustive()
    }
}

struct Demo {
    config: DemoConfig,
    client: Client,
    guard: Arc<Guard>,
}

/// Whether `root` holds the demo (`web-demo/static/index.html`).
pub fn available(root: &Path) -> bool {
    root.join("web-demo/static/index.html").is_file()
}

/// The demo's routes, to merge into the coordinator's application.
pub fn router(config: DemoConfig) -> Router {
    if config.insecure_test_primes.is_some() {
        tracing::warn!(
            "INSECURE TEST MODE: the demo page is given PUBLIC test primes; never use it for real keys"
        );
    }
    let root = config.root.clone();
    let client = Client::new(&config.api_url, &config.api_key);
    let guard = Arc::new(Guard::new(
        config.allowed_hosts.clone(),
        &config.vault_origin,
    ));
    let state = Arc::new(Demo {
        config,
        client,
        guard: guard.clone(),
    });
    Router::new()
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }))
        .route("/demo/api/config", get(demo_config))
        .route("/demo/api/wallets", post(create_wallet))
        .route("/demo/api/sign", post(sign))
        .route("/demo/api/sessions/{id}", get(session))
        .route("/demo/api/accounts/{id}", get(account))
        .with_state(state)
        .nest_service("/demo/", ServeDir::new(root.join("web-demo/static")))
        .layer(axum::middleware::from_fn_with_state(guard, guard::guard))
}

pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": message, "code": code }))).into_response()
}

/// Relays the coordinator's answer (status and JSON body) to the page.
fn relay(a: anyhow::Result<crate::client::Answer>) -> Response {
    match a {
        Ok(a) => {
            let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, Json(a.body)).into_response()
        }
        Err(_) => error(
            StatusCode::BAD_GATEWAY,
            "coordinator_unreachable",
            "coordinator unreachable",
        ),
    }
}

/// The page's settings: the vault to frame, the demo's server parties and
/// whether the system runs on test data (the banner). The coordinator key
/// and the router are the vault's own settings, from its own origin.
async fn demo_config(State(d): State<Arc<Demo>>) -> Json<Value> {
    Json(json!({
        "servers": DEMO_SERVERS,
        "vault_url": format!("{}/", d.config.vault_origin),
        "insecure_test_primes": d.config.insecure_test_primes.is_some(),
        "insecure_test_aux": d.config.insecure_test_aux.is_some(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WalletRequest {
    party_id: String,
}

/// Remembers what a successful call created for the browser.
fn remember(
    d: &Demo,
    browser: BrowserId,
    a: &anyhow::Result<crate::client::Answer>,
    account: bool,
) {
    let Ok(a) = a else { return };
    if !(200..300).contains(&a.status) {
        return;
    }
    if let Some(id) = a.body["session_id"].as_str() {
        d.guard.browsers.record(browser, Kind::Session, id);
        if account {
            // A wallet's account id is its keygen session id.
            d.guard.browsers.record(browser, Kind::Account, id);
        }
    }
}

fn not_yours(what: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("unknown_{what}"),
        &format!("{what} not found"),
    )
}

async fn create_wallet(
    State(d): State<Arc<Demo>>,
    Extension(browser): Extension<BrowserId>,
    Json(req): Json<WalletRequest>,
) -> Response {
    let body = KeygenRequest {
        threshold_n: 3,
        threshold_t: 2,
        participants: vec![
            Participant {
                party_id: req.party_id,
                device_type: Some(DeviceType::Browser.as_str().into()),
                device_id: None,
            },
            Participant::server(DEMO_SERVERS[0]),
            Participant::server(DEMO_SERVERS[1]),
        ],
        policy: None,
    };
    let answer = d.client.post_typed("/api/v1/mpc/keygen", &body).await;
    remember(&d, browser, &answer, true);
    relay(answer)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignRequest {
    account_id: String,
    message_hash: String,
    /// `browser`: this browser and server-party-1; `servers`: the two
    /// server parties.
    signers: String,
    /// The browser's party id (with `signers = browser`).
    #[serde(default)]
    party_id: Option<String>,
}

async fn sign(
    State(d): State<Arc<Demo>>,
    Extension(browser): Extension<BrowserId>,
    Json(req): Json<SignRequest>,
) -> Response {
    if !d
        .guard
        .browsers
        .owns(browser, Kind::Account, &req.account_id)
    {
        return not_yours("account");
    }
    let participants = match (req.signers.as_str(), req.party_id) {
        ("browser", Some(p)) => vec![
            Participant {
                party_id: p,
                device_type: None,
                device_id: None,
            },
            Participant::server(DEMO_SERVERS[0]),
        ],
        ("servers", _) => vec![
            Participant::server(DEMO_SERVERS[0]),
            Participant::server(DEMO_SERVERS[1]),
        ],
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_signers",
                "signers must be \"browser\" (with party_id) or \"servers\"",
            )
        }
    };
    let body = mpc_api::rest::SignRequest {
        account_id: req.account_id,
        message_hash: Some(req.message_hash),
        message: None,
        digest: None,
        require_presignature: false,
        participants,
        request_id: None,
        not_after: None,
        approvals: vec![],
    };
    let answer = d.client.post_typed("/api/v1/mpc/sign", &body).await;
    remember(&d, browser, &answer, false);
    relay(answer)
}

fn safe_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

async fn session(
    State(d): State<Arc<Demo>>,
    Extension(browser): Extension<BrowserId>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if !safe_id(&id) || !d.guard.browsers.owns(browser, Kind::Session, &id) {
        return not_yours("session");
    }
    relay(d.client.get(&format!("/api/v1/mpc/sessions/{id}")).await)
}

async fn account(
    State(d): State<Arc<Demo>>,
    Extension(browser): Extension<BrowserId>,
    UrlPath(id): UrlPath<String>,
) -> Response {
    if !safe_id(&id) || !d.guard.browsers.owns(browser, Kind::Account, &id) {
        return not_yours("account");
    }
    relay(d.client.get(&format!("/api/v1/mpc/accounts/{id}")).await)
}
