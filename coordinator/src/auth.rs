//! API keys and the IP allowlist.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::AppError;
use crate::Coordinator;

/// A new random API key (`mpc_` + 64 hex digits).
pub fn new_api_key() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    format!("mpc_{}", hex::encode(b))
}

pub use crate::store::hash_api_key;

/// The hashes of valid API keys, held in memory.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys(Arc<RwLock<Vec<[u8; 32]>>>);

impl ApiKeys {
    /// From stored hashes.
    pub fn new(hashes: Vec<[u8; 32]>) -> Self {
        Self(Arc::new(RwLock::new(hashes)))
    }
    /// Adds a hash.
    pub fn add(&self, hash: [u8; 32]) {
        if let Ok(mut g) = self.0.write() {
            g.push(hash);
        }
    }
    /// Whether `key` is valid; compares against every hash in constant time.
    pub fn check(&self, key: &str) -> bool {
        let h = hash_api_key(key);
        let Ok(g) = self.0.read() else {
            return false;
        };
        g.iter().fold(0u8, |acc, k| acc | k.ct_eq(&h).unwrap_u8()) == 1
    }
}

/// Refuses callers outside the allowlist (403) and requests without a valid
/// `X-API-Key` (401).
pub async fn require_api_key(
    State(c): State<Coordinator>,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    check_allowlist(&c, &req)?;
    let key = req.headers().get("x-api-key").and_then(|v| v.to_str().ok());
    match key {
        Some(k) if c.api_keys().check(k) => Ok(next.run(req).await),
        // A key created through another coordinator instance: look it up
        // (by hash) and remember it.
        Some(k) if c.store().api_key_exists(&hash_api_key(k)).await? => {
            c.api_keys().add(hash_api_key(k));
            Ok(next.run(req).await)
        }
        Some(_) => Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "invalid API key",
        )),
        None => Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing X-API-Key header",
        )),
    }
}

/// 403 for a caller outside the allowlist (when one is configured).
fn check_allowlist(c: &Coordinator, req: &Request) -> Result<(), AppError> {
    let allow = &c.config().allowlist;
    if allow.is_empty() {
        return Ok(());
    }
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip());
    if ip.is_some_and(|ip| allow.iter().any(|net| net.contains(&ip))) {
        Ok(())
    } else {
        Err(AppError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "caller address is not allowed",
        ))
    }
}

/// Refuses callers outside the allowlist (403): for `/metrics`, which
/// Prometheus scrapes without an API key.
pub async fn require_allowed(
    State(c): State<Coordinator>,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    check_allowlist(&c, &req)?;
    Ok(next.run(req).await)
}

/// Internal API guard: `X-Internal-Token` must match (constant time).
pub fn check_internal(c: &Coordinator, headers: &axum::http::HeaderMap) -> Result<(), AppError> {
    let given = headers
        .get("x-internal-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let want = c.config().internal_token.as_bytes();
    let ok = !want.is_empty()
        && bool::from(Sha256::digest(given.as_bytes()).ct_eq(&Sha256::digest(want)));
    if ok {
        Ok(())
    } else {
        Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "invalid internal token",
        ))
    }
}
