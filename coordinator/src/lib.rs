//! # coordinator
//!
//! Owns sessions, accounts and authorization. Callers use the REST API
//! ([`api`]); parties send signed reports to the internal API; the router
//! relays protocol traffic and invitations ([`router_client`]).
//!
//! Three layers, each using only the one below:
//!
//! - [`api`] — HTTP: handlers, authentication ([`auth`]: API keys, stored
//!   hashed, each of one tenant with scopes, revocable, rate-limited; and
//!   the IP allowlist) and
//!   [`error`], which answers a [`service::ServiceError`] with its code's
//!   status.
//! - [`service`] — what the coordinator does, on typed kinds, statuses and
//!   device types: session creation and validation, router launch, party
//!   reports, the presignature pool, device joins.
//! - [`store`] — the database (sqlx, migrations) and the session state machine
//!   `waiting → in_progress → completed | failed | expired`, with every
//!   transition conditional on the current status so completion is recorded
//!   once, and an append-only event log; its own [`store::StoreError`], no
//!   HTTP.
//!
//! Beside them: [`config`] (with the per-key [`config::Limits`]); [`idempotency`] (`Idempotency-Key` on session
//! creation); `metrics` (Prometheus series, `/metrics`); and the router
//! behind [`router_client::RouterApi`] (HTTP in
//! [`router_client::RouterClient`], a recording [`fake_router::FakeRouter`]
//! for tests). The [`api`] layer's handlers speak the `mpc-api` types and
//! serve the OpenAPI document.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod fake_router;
pub mod idempotency;
pub mod kill_point;
mod metrics;
pub mod router_client;
pub mod service;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use config::CoordinatorConfig;

/// Shared state of a coordinator instance.
#[derive(Clone, Debug)]
pub struct Coordinator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: CoordinatorConfig,
    store: store::Store,
    router: Arc<dyn router_client::RouterApi>,
    /// Parsed signed descriptors of running sessions, for their reports.
    descriptors: service::DescriptorCache,
    /// What this instance knows about API keys, briefly.
    key_cache: auth::ApiKeyCache,
    /// Set once the database is migrated and the bootstrap keys are stored.
    ready: mpc_db::Readiness,
    /// Presignatures to keep per signer set (starts at `config.presign_pool`).
    presign_pool: AtomicUsize,
    /// Wakes the presignature refill (a presignature was claimed).
    refill: tokio::sync::Notify,
}

/// The refill also looks this often without being woken: for presignatures
/// claimed through other coordinator instances.
const REFILL_FALLBACK: Duration = Duration::from_secs(5);
/// The least time between two refill passes.
const REFILL_MIN_GAP: Duration = Duration::from_millis(100);

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(#[from] mpc_db::DbError),
    /// A database query failed.
    #[error("database: {0}")]
    Query(#[from] mpc_db::sqlx::Error),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] store::StoreError),
    /// Configuration.
    #[error("configuration: {0}")]
    Config(&'static str),
    /// The coordinator did not become ready in time.
    #[error("not ready after {0:?}")]
    NotReady(Duration),
}

impl Coordinator {
    /// A coordinator that serves at once: the database is connected and
    /// migrated in the background, with backoff, and the bootstrap API keys
    /// stored after that. Until then `/ready` answers 503 and so do the APIs
    /// (`/health` answers from the start). See [`Coordinator::wait_ready`].
    pub fn new(config: CoordinatorConfig) -> Result<Self, StartError> {
        if config.insecure_test_aux {
            tracing::warn!(
                "INSECURE TEST MODE: keygens reuse pregenerated public aux info; never use this for real keys"
            );
        }
        if config.router_internal_urls.is_empty() {
            return Err(StartError::Config("at least one router URL is needed"));
        }
        let router = router_client::RouterClient::with_tls(
            &config.router_internal_urls,
            &config.router_internal_token,
            config.client_tls.clone(),
        );
        Self::with_router(config, Arc::new(router))
    }

    /// [`Coordinator::new`] with another router implementation (tests pass a
    /// [`fake_router::FakeRouter`]).
    pub fn with_router(
        config: CoordinatorConfig,
        router: Arc<dyn router_client::RouterApi>,
    ) -> Result<Self, StartError> {
        mpc_telemetry::init();
        let store = store::Store::open_lazy(&config.database_url)?;
        let presign_pool = config.presign_pool;
        let key_cache = auth::ApiKeyCache::new(config.api_key_cache_ttl);
        let c = Self {
            inner: Arc::new(Inner {
                config,
                store,
                router,
                descriptors: service::DescriptorCache::default(),
                key_cache,
                ready: mpc_db::Readiness::default(),
                presign_pool: AtomicUsize::new(presign_pool),
                refill: tokio::sync::Notify::new(),
            }),
        };
        let me = c.clone();
        tokio::spawn(async move { me.start_up().await });
        Ok(c)
    }

    /// Waits for the database, then stores the bootstrap API keys; retries
    /// with backoff.
    async fn start_up(self) {
        let mut pause = Duration::from_millis(100);
        loop {
            if self.store().db().is_ready() {
                match self.load_keys().await {
                    Ok(()) => {
                        self.inner.ready.set();
                        tracing::info!("coordinator ready");
                        self.want_refill();
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "loading API keys failed"),
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    async fn load_keys(&self) -> Result<(), store::StoreError> {
        for key in &self.config().bootstrap_api_keys {
            self.store().ensure_api_key(key, "bootstrap").await?;
        }
        Ok(())
    }

    /// Whether start-up has finished (database migrated, keys loaded).
    pub fn is_ready(&self) -> bool {
        self.inner.ready.is_set()
    }

    /// Waits up to `wait` for [`Coordinator::is_ready`].
    pub async fn wait_ready(&self, wait: Duration) -> Result<(), StartError> {
        if self.inner.ready.wait(wait).await {
            Ok(())
        } else {
            Err(StartError::NotReady(wait))
        }
    }

    /// Configuration.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.inner.config
    }

    /// Presignatures kept ready per signer set of each server-only account.
    pub fn presign_pool(&self) -> usize {
        self.inner.presign_pool.load(Ordering::Relaxed)
    }

    /// Changes the presignature pool size at run time (0 stops refilling;
    /// presignatures already made stay usable).
    pub fn set_presign_pool(&self, n: usize) {
        self.inner.presign_pool.store(n, Ordering::Relaxed);
        self.want_refill();
    }

    /// Wakes the presignature refill.
    pub(crate) fn want_refill(&self) {
        self.inner.refill.notify_one();
    }
    /// Database.
    pub fn store(&self) -> &store::Store {
        &self.inner.store
    }
    pub(crate) fn router(&self) -> &dyn router_client::RouterApi {
        self.inner.router.as_ref()
    }
    pub(crate) fn descriptors(&self) -> &service::DescriptorCache {
        &self.inner.descriptors
    }
    pub(crate) fn key_cache(&self) -> &auth::ApiKeyCache {
        &self.inner.key_cache
    }

    /// Creates a new API key of the default tenant with every scope (as the
    /// bootstrap keys are), returning its plaintext once. Keys of other
    /// tenants or scopes: [`Coordinator::create_key`].
    pub async fn create_api_key(&self, label: &str) -> Result<String, store::StoreError> {
        let key = auth::new_api_key();
        self.inner.store.ensure_api_key(&key, label).await?;
        Ok(key)
    }

    /// The axum application.
    pub fn app(&self) -> axum::Router {
        api::app(self.clone())
    }

    /// Serves the API on `listener` until `shutdown` resolves; runs the
    /// deadline sweeper, the presignature refill and the router's disconnect
    /// feed meanwhile.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_with(listener, axum::Router::new(), shutdown)
            .await
    }

    /// [`Coordinator::serve`] with extra routes on the same listener (`mpc
    /// dev` serves the web demo beside the API).
    pub async fn serve_with(
        self,
        listener: tokio::net::TcpListener,
        extra: axum::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let sweeper = {
            let me = self.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tokio::select! {
                        _ = tick.tick() => me.expire_overdue().await,
                        _ = stop.changed() => break,
                    }
                }
            })
        };
        let refiller = tokio::spawn(self.clone().refill_loop(stop_rx.clone()));
        let recorder = tokio::spawn(self.clone().record_ended_sessions());
        let disconnects = tokio::spawn(self.clone().watch_disconnects(stop_rx.clone()));
        let tls = self.inner.config.tls.clone();
        let app = self
            .app()
            .merge(extra)
            .into_make_service_with_connect_info::<SocketAddr>();
        let shutdown = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        let result = match tls {
            // TapIo outermost: axum's `ConnectInfo<SocketAddr>` (the IP
            // allowlist and rate limits) comes through it.
            Some(tls) => {
                let listener = mpc_tls::TlsListener::new(nodelay(listener), tls)?;
                let listener = axum::serve::ListenerExt::tap_io(listener, no_tap as NoTap);
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            None => {
                axum::serve(nodelay(listener), app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        };
        sweeper.abort();
        refiller.abort();
        recorder.abort();
        disconnects.abort();
        result
    }

    /// Keeps the presignature pool stocked. Runs when woken (a presignature
    /// was claimed, a session ended on this instance, the pool size changed,
    /// start-up finished) and every [`REFILL_FALLBACK`] otherwise, never
    /// more often than [`REFILL_MIN_GAP`]; backs off after a failed pass.
    async fn refill_loop(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut ended = self.store().subscribe_ended();
        let mut gap = REFILL_MIN_GAP;
        loop {
            tokio::select! {
                _ = self.inner.refill.notified() => {}
                r = ended.recv() => {
                    if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        return;
                    }
                }
                _ = tokio::time::sleep(REFILL_FALLBACK) => {}
                _ = stop.changed() => return,
            }
            // Passes are paced: at most one per REFILL_MIN_GAP (a burst of
            // wake-ups is served by one pass), and after a failed pass (the
            // router or the database down) the gap grows up to 30 s.
            tokio::select! {
                _ = tokio::time::sleep(gap) => {}
                _ = stop.changed() => return,
            }
            while ended.try_recv().is_ok() {}
            if self.is_ready() && self.presign_pool() > 0 {
                match self.refill_presignatures().await {
                    Ok(()) => gap = REFILL_MIN_GAP,
                    Err(e) => {
                        gap = (gap * 2)
                            .max(Duration::from_secs(1))
                            .min(Duration::from_secs(30));
                        tracing::warn!(error = ?e, retry_in = ?gap, "presignature refill failed");
                    }
                }
            }
        }
    }

    /// Marks every open session past its deadline `expired`. Every instance
    /// runs this; the conditional update records each expiry once.
    pub async fn expire_overdue(&self) {
        if !self.is_ready() {
            return;
        }
        match self.inner.store.expire_overdue(store::now()).await {
            Ok(expired) => {
                for id in expired {
                    tracing::warn!(session_id = %id, "session expired");
                    self.close_session(id);
                }
            }
            Err(e) => tracing::error!(error = %e, "deadline sweep failed"),
        }
    }
}

type TlsIo = <mpc_tls::TlsListener<NodelayListener> as axum::serve::Listener>::Io;
type NoTap = fn(&mut TlsIo);
type NodelayListener = axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)>;

/// Nothing to do on a TLS connection (`TCP_NODELAY` is set below it).
fn no_tap(_: &mut TlsIo) {}

/// The listener with `TCP_NODELAY` on every accepted connection: protocol
/// frames and reports are small and must not wait for Nagle's algorithm
/// (with delayed ACKs, ~40 ms per round trip).
fn nodelay(listener: tokio::net::TcpListener) -> NodelayListener {
    use axum::serve::ListenerExt as _;
    fn set(tcp: &mut tokio::net::TcpStream) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    }
    listener.tap_io(set as fn(&mut tokio::net::TcpStream))
}
