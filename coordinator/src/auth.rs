//! API keys (tenant, scopes, revocation, request rate) and the IP
//! allowlist.
//!
//! A key is looked up by its hash and the answer (valid, or unknown/revoked)
//! is cached for [`crate::config::CoordinatorConfig::api_key_cache_ttl`]: an
//! unknown key costs one database query per TTL, not one per request, and a
//! key revoked through another instance stops working here within the TTL
//! (at once on the instance that revoked it). Both caches are bounded.
//! Every authenticated request is then counted in its key's rate window
//! (one upsert, shared by every instance) and carries a [`Caller`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use mini_moka::sync::Cache;
use mpc_api::admin::{Scope, DEFAULT_TENANT};
use mpc_api::error::ErrorCode;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::error::AppError;
use crate::service::Owner;
use crate::store::{ApiKeyRecord, SessionQuota, Store, StoreError};
use crate::Coordinator;

/// A new random API key (`mpc_` + 64 hex digits).
pub fn new_api_key() -> String {
    let mut b = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(b.as_mut());
    format!("mpc_{}", hex::encode(b.as_ref()))
}

pub use crate::store::hash_api_key;

/// Keys cached per kind (valid, unknown): past it the oldest go.
const KEY_CACHE_CAPACITY: u64 = 10_000;

/// What this instance knows about API keys, for a short while.
#[derive(Clone)]
pub struct ApiKeyCache {
    /// Valid keys by hash.
    known: Cache<[u8; 32], Arc<ApiKeyRecord>>,
    /// Hashes of keys that are unknown or revoked.
    unknown: Cache<[u8; 32], ()>,
}

impl std::fmt::Debug for ApiKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyCache")
            .field("known", &self.known.entry_count())
            .field("unknown", &self.unknown.entry_count())
            .finish()
    }
}

impl ApiKeyCache {
    /// A cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            known: Cache::builder()
                .max_capacity(KEY_CACHE_CAPACITY)
                .time_to_live(ttl)
                .build(),
            unknown: Cache::builder()
                .max_capacity(KEY_CACHE_CAPACITY)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The valid key with this hash: from the cache, else from the store
    /// (and then cached either way).
    pub async fn lookup(
        &self,
        store: &Store,
        hash: &[u8; 32],
    ) -> Result<Option<Arc<ApiKeyRecord>>, StoreError> {
        if let Some(rec) = self.known.get(hash) {
            return Ok(Some(rec));
        }
        if self.unknown.contains_key(hash) {
            return Ok(None);
        }
        match store.api_key_by_hash(hash).await? {
            Some(rec) if rec.revoked_at.is_none() => {
                let rec = Arc::new(rec);
                self.known.insert(*hash, rec.clone());
                Ok(Some(rec))
            }
            _ => {
                self.unknown.insert(*hash, ());
                Ok(None)
            }
        }
    }

    /// Forgets every valid key (a key was revoked through this instance:
    /// it stops working here at once).
    pub fn forget_valid(&self) {
        self.known.invalidate_all();
    }
}

/// The authenticated caller of a request (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The API key's id.
    pub key_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// Its scopes.
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// Whether the key has `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// An admin key of the default tenant: manages every tenant's keys.
    pub fn is_operator(&self) -> bool {
        self.tenant_id == DEFAULT_TENANT && self.has(Scope::Admin)
    }

    /// The owner of the sessions this caller creates: its tenant, under its
    /// key's quota of open sessions.
    pub fn owner(&self, max_open_sessions: u64) -> Owner {
        Owner {
            tenant_id: self.tenant_id.clone(),
            quota: Some(SessionQuota {
                api_key_id: self.key_id.clone(),
                max_open: max_open_sessions,
            }),
        }
    }
}

impl From<&ApiKeyRecord> for Caller {
    fn from(r: &ApiKeyRecord) -> Self {
        Self {
            key_id: r.id.clone(),
            tenant_id: r.tenant_id.clone(),
            scopes: r.scopes.clone(),
        }
    }
}

/// Refuses callers outside the allowlist (403), requests without a valid
/// `X-API-Key` (401) and requests over the key's rate (429 with
/// `Retry-After`); the request then carries its [`Caller`].
pub async fn require_api_key(
    State(c): State<Coordinator>,
    mut req: Request,
    next: Next,
) -> Result<Response, AppError> {
    check_allowlist(&c, &req)?;
    let Some(key) = req.headers().get("x-api-key") else {
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing X-API-Key header",
        ));
    };
    let hash = hash_api_key(key.to_str().unwrap_or_default());
    let Some(rec) = c.key_cache().lookup(c.store(), &hash).await? else {
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "invalid API key",
        ));
    };
    check_rate(&c, &rec.id).await?;
    req.extensions_mut().insert(Caller::from(rec.as_ref()));
    Ok(next.run(req).await)
}

/// Counts the request in its key's fixed window; 429 `rate_limited` past
/// the limit, with `Retry-After` = the seconds until the next window.
async fn check_rate(c: &Coordinator, key_id: &str) -> Result<(), AppError> {
    let limits = c.config().limits;
    let window = limits.window.as_secs().max(1);
    let now = crate::store::now();
    let start = now - now % window;
    let count = c.store().count_request(key_id, start).await?;
    if count > limits.requests {
        return Err(AppError::code(
            ErrorCode::RateLimited,
            format!(
                "this API key made more than {} requests in {window} s",
                limits.requests
            ),
        )
        .with_retry_after((start + window).saturating_sub(now).max(1)));
    }
    Ok(())
}

/// 403 `insufficient_scope` unless the caller's key has `scope` (a route
/// layer inside [`require_api_key`]).
pub async fn require_scope(
    State(scope): State<Scope>,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    let allowed = req
        .extensions()
        .get::<Caller>()
        .is_some_and(|caller| caller.has(scope));
    if allowed {
        Ok(next.run(req).await)
    } else {
        Err(AppError::code(
            ErrorCode::InsufficientScope,
            format!("this API key lacks the `{scope}` scope"),
        ))
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
