//! Coordinator configuration.

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use party_core::identity::CoordinatorKey;

/// Default deadline of a keygen that generates aux info.
pub const DEFAULT_KEYGEN_AUX_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Default deadline of a keygen that reuses aux info.
pub const DEFAULT_KEYGEN_TIMEOUT: Duration = Duration::from_secs(120);
/// Default deadline of a signing session.
pub const DEFAULT_SIGN_TIMEOUT: Duration = Duration::from_secs(120);
/// Default number of presign sessions running at once.
pub const DEFAULT_PRESIGN_CONCURRENCY: usize = 1;
/// Default requests one API key may make per rate window, over all
/// coordinator instances.
pub const DEFAULT_RATE_LIMIT_REQUESTS: u64 = 200;
/// Default length of the rate window.
pub const DEFAULT_RATE_LIMIT_WINDOW: Duration = Duration::from_secs(10);
/// Default open (waiting or in-progress) sessions one API key may have.
pub const DEFAULT_MAX_OPEN_SESSIONS: u64 = 64;
/// How long an instance trusts what it read about an API key (valid or
/// unknown) before reading it again: a key revoked on another instance
/// stops working here within this time.
pub const DEFAULT_API_KEY_CACHE_TTL: Duration = Duration::from_secs(2);

/// Per-API-key limits, shared by every coordinator instance through the
/// database. Over them a request is answered 429 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests per window and key (`rate_limited` past it).
    pub requests: u64,
    /// The fixed window (whole seconds, at least one).
    pub window: Duration,
    /// Open sessions per key (`too_many_sessions` past it).
    pub max_open_sessions: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            requests: DEFAULT_RATE_LIMIT_REQUESTS,
            window: DEFAULT_RATE_LIMIT_WINDOW,
            max_open_sessions: DEFAULT_MAX_OPEN_SESSIONS,
        }
    }
}

/// Everything the coordinator needs to run. `Debug` hides secrets.
#[derive(Clone)]
pub struct CoordinatorConfig {
    /// sqlx URL of the database (`sqlite://path?mode=rwc`).
    pub database_url: String,
    /// Key that signs session descriptors.
    pub signing_key: CoordinatorKey,
    /// API keys to ensure exist at start-up (plaintext, hashed before storing).
    pub bootstrap_api_keys: Vec<String>,
    /// Caller addresses allowed on the REST API; empty allows all.
    pub allowlist: Vec<IpNet>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Base URLs of the routers' internal listeners (not their public
    /// WebSocket ones), e.g. `http://127.0.0.1:8091`; tried in turn, the
    /// next one when a router is unreachable.
    pub router_internal_urls: Vec<String>,
    /// Router WebSocket URL given to device parties, e.g. `ws://127.0.0.1:8081/ws`.
    pub router_public_ws_url: String,
    /// The routers' internal API credential, which only coordinators hold
    /// (parties have no shared secret: they sign their registration with
    /// their enrolled identity key). `new` leaves it empty, which every
    /// router refuses: set it.
    pub router_internal_token: String,
    /// Deadline of a keygen that generates aux info.
    pub keygen_aux_timeout: Duration,
    /// Deadline of a keygen that reuses aux info.
    pub keygen_timeout: Duration,
    /// Deadline of a signing session.
    pub sign_timeout: Duration,
    /// Presignatures to keep ready per signer set of each account held by
    /// server parties only (0: no pool; every signature is a full signing).
    pub presign_pool: usize,
    /// Presign sessions running at once, over all coordinator instances.
    pub presign_concurrency: usize,
    /// TEST/DEV ONLY: parties hold pregenerated aux info for every group, so
    /// keygens never run aux info generation. Loudly logged.
    pub insecure_test_aux: bool,
    /// Per-API-key request rate and open-session quota.
    pub limits: Limits,
    /// How long a key lookup (valid or unknown) is trusted; bounds how late
    /// a revocation made through another instance takes effect here.
    pub api_key_cache_ttl: Duration,
    /// Serve the API over TLS with this configuration (certificate and key
    /// from `--tls-cert`/`--tls-key`); plaintext when `None`.
    pub tls: Option<Arc<mpc_tls::ServerConfig>>,
    /// What calls to the routers' `https://` internal listeners trust
    /// (`--tls-ca`); the Mozilla roots when `None`.
    pub client_tls: Option<Arc<mpc_tls::ClientConfig>>,
}

impl std::fmt::Debug for CoordinatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorConfig")
            .field("database_url", &mpc_db::redact_url(&self.database_url))
            .field(
                "coordinator_public_key",
                &hex::encode(self.signing_key.public()),
            )
            .field("bootstrap_api_keys", &self.bootstrap_api_keys.len())
            .field("allowlist", &self.allowlist)
            .field("router_internal_urls", &self.router_internal_urls)
            .field("insecure_test_aux", &self.insecure_test_aux)
            .field("limits", &self.limits)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl CoordinatorConfig {
    /// Defaults for everything but the database, key and router.
    /// `router_url` is a router's internal listener; the public WebSocket URL
    /// is guessed from it (same host and port) until set.
    pub fn new(
        database_url: impl Into<String>,
        signing_key: CoordinatorKey,
        router_url: &str,
    ) -> Self {
        let router_url = router_url.trim_end_matches('/');
        Self {
            database_url: database_url.into(),
            signing_key,
            bootstrap_api_keys: Vec::new(),
            allowlist: Vec::new(),
            max_body_bytes: 64 * 1024,
            router_internal_urls: vec![router_url.to_string()],
            router_public_ws_url: format!("{}/ws", router_url.replacen("http", "ws", 1)),
            router_internal_token: String::new(),
            keygen_aux_timeout: DEFAULT_KEYGEN_AUX_TIMEOUT,
            keygen_timeout: DEFAULT_KEYGEN_TIMEOUT,
            sign_timeout: DEFAULT_SIGN_TIMEOUT,
            presign_pool: 0,
            presign_concurrency: DEFAULT_PRESIGN_CONCURRENCY,
            insecure_test_aux: false,
            limits: Limits::default(),
            api_key_cache_ttl: DEFAULT_API_KEY_CACHE_TTL,
            tls: None,
            client_tls: None,
        }
    }
}
