//! # router
//!
//! The WebSocket relay between the parties of an MPC session. It never sees a
//! p2p plaintext: parties seal their frames with `party_core::envelope`, and
//! the router routes those sealed frames by their header, buffers them per
//! session so late joiners and reconnecting parties get what they missed, and
//! delivers session invitations to server parties over control connections.
//!
//! State lives in a backend chosen by the configuration (`redis_url`):
//! in this process (one instance, `mpc dev`) or in Redis, shared by every
//! instance using it, so a party may join, reconnect or fail over to any of
//! them. Layout:
//! - [`config`] — [`RouterConfig`] (limits, internal token, Redis URL).
//! - `listener`: the public listener's connection cap and each connection's
//!   pre-authentication guard (byte budget, idle deadline).
//! - `backend`: the `Backend` trait (register, join's storage steps, the
//!   frame log, leave, close, expire, control connections, invitations) and
//!   its `memory` and `redis` implementations.
//! - `policy`: the rules both backends share, written once: the join checks
//!   (token hash, identity bound once, signature, position), which frames
//!   are relayed, control connections and invitation deadlines.
//! - `conn`: the handle through which state reaches a connection task.
//! - `ws`: `GET /ws`, the challenge handshake and the frame loop.
//! - `departures`: a party whose session connection ended abruptly and did
//!   not come back within the grace period is recorded for the
//!   coordinators' disconnect feed.
//! - `internal`: the internal HTTP API the coordinator calls
//!   (`/internal/v1/...`, authenticated by `X-Internal-Token`, the
//!   coordinators' own credential; types in `mpc_api::router`).
//! - `metrics`: the Prometheus series, served at `GET /metrics`.
//!
//! [`Router::serve`] runs two HTTP servers, the backend's background work
//! and a sweeper that ends expired sessions every second: the **public**
//! listener (parties and browsers: `GET /ws`, `/health`, `/ready`,
//! `/metrics`, behind the connection cap) and the **internal** listener
//! (coordinators only: the internal API, nothing else), which deployments
//! keep on loopback or a private network.
#![forbid(unsafe_code)]

mod backend;
pub mod config;
mod conn;
mod departures;
mod internal;
mod listener;
mod metrics;
mod policy;
mod ws;

use std::future::{Future, IntoFuture as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::Json;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

pub use config::RouterConfig;
pub use listener::PRE_AUTH_MAX_BYTES;
pub use mpc_api::router::INTERNAL_TOKEN_HEADER;

use backend::{Backend, FrameTap};

/// Frames kept for slow `subscribe_frames` receivers before they lag.
const FRAME_TAP_CAPACITY: usize = 4096;
/// How often expired sessions and invitations are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The router's state. Cloning is cheap (one `Arc`).
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    config: RouterConfig,
    /// Sessions, frame logs, connections and invitations.
    backend: Arc<dyn Backend>,
    frames: FrameTap,
    next_conn_id: AtomicU64,
    /// Becomes true on shutdown; connection tasks and the sweeper watch it.
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("config", &self.inner.config)
            .field("backend", &self.inner.backend.kind())
            .finish_non_exhaustive()
    }
}

/// Completes once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The `Ref` is dropped here, so callers' futures stay `Send`.
    let _ = stop.wait_for(|s| *s).await;
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Router {
    /// A router with no sessions. With `config.redis_url` set, session state
    /// lives in Redis and is shared with every instance using the same Redis
    /// (connected in the background by [`Router::serve`]); an invalid URL is
    /// an error.
    pub fn new(config: RouterConfig) -> Result<Router, RouterStartError> {
        let backend = backend::from_config(&config).map_err(|e| RouterStartError(e.to_string()))?;
        metrics::init();
        Ok(Router {
            inner: Arc::new(Inner {
                backend,
                config,
                frames: FrameTap::new(FRAME_TAP_CAPACITY),
                next_conn_id: AtomicU64::new(1),
                shutdown: watch::Sender::new(false),
            }),
        })
    }

    /// The state store.
    pub(crate) fn backend(&self) -> &dyn Backend {
        self.inner.backend.as_ref()
    }

    /// Whether the router can serve sessions now (Redis answers, if used).
    pub async fn is_ready(&self) -> bool {
        self.backend().ready().await
    }

    /// The public listener's routes: `GET /health`, `GET /ready`,
    /// `GET /metrics` and `GET /ws`. Sessions expire only while
    /// [`Router::serve`] runs its sweeper (joins to an expired session are
    /// refused either way).
    fn public_app(&self) -> axum::Router {
        axum::Router::new()
            .route("/health", get(health))
            .route("/ready", get(ready))
            .route("/metrics", get(metrics::serve))
            .route("/ws", get(ws::upgrade))
            .with_state(self.clone())
    }

    /// The internal listener's routes: the internal API only.
    fn internal_app(&self) -> axum::Router {
        internal::routes(self.clone()).with_state(self.clone())
    }

    /// Every frame the router accepts and relays, with its session id. For
    /// tests and diagnostics that inspect the traffic.
    pub fn subscribe_frames(&self) -> broadcast::Receiver<(Uuid, Vec<u8>)> {
        self.inner.frames.subscribe()
    }

    /// Serves the public routes on `listeners.public` and the internal API
    /// on `listeners.internal` until `shutdown` completes; then every
    /// WebSocket connection closes and the expiry sweeper, which runs
    /// meanwhile, stops. The router stays shut down afterwards: new
    /// handshakes are refused with `shutting_down`.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let this = self.clone();
        let signal = tokio::spawn(async move {
            shutdown.await;
            this.inner.shutdown.send_replace(true);
        });
        let sweeper = tokio::spawn(self.clone().sweep());
        let background = tokio::spawn(self.backend().run(self.shutdown_signal()));
        let config = self.config();
        let public = listener::PublicListener::new(
            listeners.public,
            config.max_connections,
            config.handshake_timeout.saturating_mul(2),
        );
        let tls = config.tls.clone();
        let public_app = self
            .public_app()
            .into_make_service_with_connect_info::<listener::Preauth>();
        let mut stop = self.shutdown_signal();
        let public: ServeFuture = match &tls {
            // TLS over the guarded connections: the cap and the
            // pre-authentication guard count the encrypted bytes, handshake
            // included.
            Some(tls) => {
                let public = mpc_tls::TlsListener::new(public, tls.clone())?;
                Box::pin(
                    axum::serve(public, public_app)
                        .with_graceful_shutdown(async move { stopped(&mut stop).await })
                        .into_future(),
                )
            }
            None => Box::pin(
                axum::serve(public, public_app)
                    .with_graceful_shutdown(async move { stopped(&mut stop).await })
                    .into_future(),
            ),
        };
        let mut stop = self.shutdown_signal();
        let internal_app = self.internal_app();
        let internal: ServeFuture = match &tls {
            Some(tls) => {
                let internal = mpc_tls::TlsListener::new(nodelay(listeners.internal), tls.clone())?;
                Box::pin(
                    axum::serve(internal, internal_app)
                        .with_graceful_shutdown(async move { stopped(&mut stop).await })
                        .into_future(),
                )
            }
            None => Box::pin(
                axum::serve(nodelay(listeners.internal), internal_app)
                    .with_graceful_shutdown(async move { stopped(&mut stop).await })
                    .into_future(),
            ),
        };
        // Either server ending (it fails only at start) ends the other.
        let (public, internal) = tokio::join!(
            async {
                let r = public.await;
                self.inner.shutdown.send_replace(true);
                r
            },
            async {
                let r = internal.await;
                self.inner.shutdown.send_replace(true);
                r
            }
        );
        signal.abort();
        let _ = sweeper.await;
        let _ = background.await;
        public.and(internal)
    }

    async fn sweep(self) {
        let mut stop = self.shutdown_signal();
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped(&mut stop) => return,
            }
            for session_id in self.expire(now_unix()) {
                tracing::info!(%session_id, "session expired");
            }
        }
    }

    pub(crate) fn config(&self) -> &RouterConfig {
        &self.inner.config
    }

    /// Becomes true when the router shuts down.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.inner.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Where relayed frames are published for `subscribe_frames`.
    pub(crate) fn tap(&self) -> &FrameTap {
        &self.inner.frames
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"service": "router", "status": "healthy"}))
}

async fn ready(
    axum::extract::State(router): axum::extract::State<Router>,
) -> (axum::http::StatusCode, Json<serde_json::Value>) {
    let ready = router.is_ready().await;
    let status = if ready {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({
            "service": "router",
            "ready": ready,
            "state": router.backend().kind(),
        })),
    )
}

/// One listener's server, TLS or not.
type ServeFuture = std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

/// Where [`Router::serve`] listens.
#[derive(Debug)]
pub struct Listeners {
    /// Parties and browsers: `GET /ws`, `/health`, `/ready`, `/metrics`.
    pub public: tokio::net::TcpListener,
    /// Coordinators: the internal API (keep it on loopback or a private
    /// network).
    pub internal: tokio::net::TcpListener,
}

/// The router could not be configured.
#[derive(Debug, thiserror::Error)]
#[error("router configuration: {0}")]
pub struct RouterStartError(String);

/// The listener with `TCP_NODELAY` on every accepted connection.
fn nodelay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt as _;
    fn set(tcp: &mut tokio::net::TcpStream) {
        listener::set_nodelay(tcp);
    }
    listener.tap_io(set as fn(&mut tokio::net::TcpStream))
}
