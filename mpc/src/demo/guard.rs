//! What keeps the demo's door shut: every request must name an allowed
//! `Host` (no DNS rebinding), every state-changing one must come from the
//! demo's own origin, and every `/demo/api/` call must carry the per-browser
//! session cookie the page received (HttpOnly, SameSite=Strict). Each browser
//! sees and signs only the wallets and sessions it created itself. Every
//! answer carries a strict Content-Security-Policy and the other security
//! headers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::header::{
    CONTENT_SECURITY_POLICY, COOKIE, HOST, ORIGIN, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use rand_core::{OsRng, RngCore};

use super::error;

/// The demo's session cookie.
pub const COOKIE_NAME: &str = "mpc_demo";
/// Browsers remembered at once; the oldest is forgotten past it.
const MAX_BROWSERS: usize = 10_000;
/// Wallets or sessions one browser may own.
const MAX_OWNED: usize = 1_000;

/// A browser's id: the hash of its cookie (the cookie itself is not kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BrowserId([u8; 32]);

#[derive(Default)]
struct Owned {
    accounts: HashSet<String>,
    sessions: HashSet<String>,
    seq: u64,
}

/// The browsers the demo knows and what each created.
#[derive(Default)]
pub struct Browsers {
    inner: Mutex<(HashMap<BrowserId, Owned>, u64)>,
}

/// What a browser may own.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A wallet (account id).
    Account,
    /// A session id.
    Session,
}

impl Browsers {
    fn with<T>(&self, f: impl FnOnce(&mut (HashMap<BrowserId, Owned>, u64)) -> T) -> T {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g)
    }

    fn knows(&self, id: BrowserId) -> bool {
        self.with(|(m, _)| m.contains_key(&id))
    }

    fn add(&self, id: BrowserId) {
        self.with(|(m, seq)| {
            if m.len() >= MAX_BROWSERS {
                if let Some(oldest) = m.iter().min_by_key(|(_, o)| o.seq).map(|(k, _)| *k) {
                    m.remove(&oldest);
                }
            }
            *seq += 1;
            m.insert(
                id,
                Owned {
                    seq: *seq,
                    ..Owned::default()
                },
            );
        });
    }

    /// Whether `browser` created `id`.
    pub fn owns(&self, browser: BrowserId, kind: Kind, id: &str) -> bool {
        self.with(|(m, _)| {
            m.get(&browser).is_some_and(|o| match kind {
                Kind::Account => o.accounts.contains(id),
                Kind::Session => o.sessions.contains(id),
            })
        })
    }

    /// Records that `browser` created `id`.
    pub fn record(&self, browser: BrowserId, kind: Kind, id: &str) {
        self.with(|(m, _)| {
            if let Some(o) = m.get_mut(&browser) {
                let set = match kind {
                    Kind::Account => &mut o.accounts,
                    Kind::Session => &mut o.sessions,
                };
                if set.len() < MAX_OWNED {
                    set.insert(id.to_string());
                }
            }
        });
    }
}

/// What the guard checks against.
pub struct Guard {
    /// `Host` values the demo answers to (`127.0.0.1:8080`, `localhost:8080`...).
    pub allowed_hosts: Vec<String>,
    /// The browsers.
    pub browsers: Browsers,
    csp: HeaderValue,
}

/// The Content-Security-Policy of every demo answer: the page's own
/// scripts and calls (no wasm, no workers, no WebSockets: the party runs in
/// the vault), and one frame, the vault's origin.
fn page_csp(vault_origin: &str) -> HeaderValue {
    let value = format!(
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; frame-src {vault_origin}; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"))
}

impl Guard {
    /// A guard for the demo answering to the `Host` values `allowed_hosts`,
    /// framing the vault at `vault_origin`.
    pub fn new(allowed_hosts: Vec<String>, vault_origin: &str) -> Self {
        Self {
            allowed_hosts,
            browsers: Browsers::default(),
            csp: page_csp(vault_origin),
        }
    }
}

fn cookie_of(headers: &HeaderMap) -> Option<BrowserId> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .and_then(|(_, v)| hex::decode(v).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(|b| {
            use sha2::Digest as _;
            BrowserId(sha2::Sha256::digest(b).into())
        })
}

/// `res` with `csp`, `nosniff` and `no-referrer` (the page's and the
/// vault's answers alike).
pub(super) fn with_policy(mut res: Response, csp: &HeaderValue) -> Response {
    let h = res.headers_mut();
    h.insert(CONTENT_SECURITY_POLICY, csp.clone());
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    res
}

fn secure_headers(g: &Guard, res: Response) -> Response {
    let mut res = with_policy(res, &g.csp);
    res.headers_mut()
        .insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

/// The request's `Host`, lower-case ("" when missing or not text).
pub(super) fn host_of(headers: &HeaderMap) -> String {
    headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The middleware: Host, Origin and cookie checks, security headers.
pub async fn guard(State(g): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let host = host_of(req.headers());
    if !g.allowed_hosts.contains(&host) {
        return secure_headers(
            &g,
            error(StatusCode::FORBIDDEN, "bad_host", "unexpected Host header"),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let origin = req.headers().get(ORIGIN).and_then(|v| v.to_str().ok());
        let expected = format!("http://{host}");
        if origin != Some(expected.as_str()) {
            return secure_headers(
                &g,
                error(
                    StatusCode::FORBIDDEN,
                    "bad_origin",
                    "requests must come from the demo page itself",
                ),
            );
        }
    }
    let browser = cookie_of(req.headers()).filter(|b| g.browsers.knows(*b));
    let is_api = req.uri().path().starts_with("/demo/api/");
    let mut new_cookie = None;
    let browser = match browser {
        Some(b) => b,
        None if is_api => {
            return secure_headers(
                &g,
                error(
                    StatusCode::UNAUTHORIZED,
                    "no_demo_session",
                    "open the demo page first (no demo session cookie)",
                ),
            );
        }
        None => {
            let mut secret = [0u8; 32];
            OsRng.fill_bytes(&mut secret);
            let value = hex::encode(secret);
            let id = {
                use sha2::Digest as _;
                BrowserId(sha2::Sha256::digest(secret).into())
            };
            g.browsers.add(id);
            new_cookie = Some(format!(
                "{COOKIE_NAME}={value}; Path=/demo; HttpOnly; SameSite=Strict"
            ));
            id
        }
    };
    req.extensions_mut().insert(browser);
    let mut res = next.run(req).await;
    if let Some(c) = new_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        res.headers_mut().append(SET_COOKIE, c);
    }
    secure_headers(&g, res)
}

/// The `Host` values a demo served on `addr` answers to: the address itself,
/// and `localhost` for a loopback one.
pub fn hosts_for(addr: std::net::SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![addr.to_string()];
    if addr.ip().is_loopback() {
        hosts.push(format!("localhost:{port}"));
        hosts.push(format!("127.0.0.1:{port}"));
        hosts.push(format!("[::1]:{port}"));
    }
    hosts.dedup();
    hosts
}
