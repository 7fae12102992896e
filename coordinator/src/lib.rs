//! # coordinator
//!
//! Owns sessions, accounts and authorization. Callers use the REST API
//! ([`api`]); parties send signed reports to the internal API; the router
//! relays protocol traffic and invitations ([`router_client`]).
//!
//! - [`config`] — configuration.
//! - [`auth`] — API keys (stored hashed, compared in constant time) and the IP
//!   allowlist.
//! - [`store`] — the database (sqlx, migrations) and the session state machine
//!   `waiting → in_progress → completed | failed | expired`, with every
//!   transition conditional on the current status so completion is recorded
//!   once, and an append-only event log.
//! - [`sessions`] — creating sessions (descriptors, join tokens, invitations)
//!   and applying party reports.
//! - [`api`] — HTTP handlers.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod router_client;
pub mod sessions;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
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
    router: router_client::RouterClient,
    api_keys: auth::ApiKeys,
}

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl Coordinator {
    /// Opens the database, runs migrations and loads API keys.
    pub async fn new(config: CoordinatorConfig) -> Result<Self, StartError> {
        if config.insecure_test_aux {
            tracing::warn!(
                "INSECURE TEST MODE: keygens reuse pregenerated public aux info; never use this for real keys"
            );
        }
        let store = store::Store::open(&config.database_url).await?;
        for key in &config.bootstrap_api_keys {
            store.ensure_api_key(key, "bootstrap").await?;
        }
        let api_keys = auth::ApiKeys::new(store.api_key_hashes().await?);
        let router =
            router_client::RouterClient::new(&config.router_internal_url, &config.internal_token);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                store,
                router,
                api_keys,
            }),
        })
    }

    /// Configuration.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.inner.config
    }
    /// Database.
    pub fn store(&self) -> &store::Store {
        &self.inner.store
    }
    pub(crate) fn router(&self) -> &router_client::RouterClient {
        &self.inner.router
    }
    pub(crate) fn api_keys(&self) -> &auth::ApiKeys {
        &self.inner.api_keys
    }

    /// Creates a new API key, returning its plaintext once.
    pub async fn create_api_key(&self, label: &str) -> Result<String, sqlx::Error> {
        let key = auth::new_api_key();
        self.inner.store.ensure_api_key(&key, label).await?;
        self.inner.api_keys.add(auth::hash_api_key(&key));
        Ok(key)
    }

    /// Registers (or confirms) a party's identity.
    pub async fn register_party(
        &self,
        party_id: &str,
        device_type: &str,
        identity: party_core::identity::PartyPublicKey,
    ) -> Result<(), error::AppError> {
        self.inner
            .store
            .register_party(party_id, device_type, identity)
            .await
    }

    /// The axum application.
    pub fn app(&self) -> axum::Router {
        api::app(self.clone())
    }

    /// Serves the API on `listener` until `shutdown` resolves; runs the
    /// deadline sweeper meanwhile.
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
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let sweeper = {
            let me = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tokio::select! {
                        _ = tick.tick() => me.expire_overdue().await,
                        _ = stop_rx.changed() => break,
                    }
                }
            })
        };
        let app = self
            .app()
            .merge(extra)
            .into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            })
            .await;
        sweeper.abort();
        result
    }

    /// Marks every open session past its deadline `expired`.
    pub async fn expire_overdue(&self) {
        match self.inner.store.expire_overdue(store::now()).await {
            Ok(expired) => {
                for id in expired {
                    tracing::warn!(session_id = %id, "session expired");
                    self.inner.router.close_session(id);
                }
            }
            Err(e) => tracing::error!(error = %e, "deadline sweep failed"),
        }
    }
}
