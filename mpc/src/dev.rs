//! `mpc dev`: router, coordinator and server parties in one process on
//! SQLite under a data directory.
//!
//! Layout of the data directory (dev only: a production deployment keeps
//! master keys and the coordinator key in a secret store, never beside data):
//! ```text
//! coordinator.key   coordinator.db   api-key
//! party-N/master.key   party-N/party.db
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use coordinator::{Coordinator, CoordinatorConfig};
use party_core::identity::CoordinatorKey;
use party_core::seal::MasterKey;
use server_party::{PartyConfig, ServerParty};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Options of `mpc dev`.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Data directory.
    pub data_dir: PathBuf,
    /// REST API address (port 0 picks one).
    pub api_addr: SocketAddr,
    /// Router address (port 0 picks one): the public listener.
    pub router_addr: SocketAddr,
    /// The router's internal listener, which only the coordinator calls
    /// (port 0 picks one; keep it on loopback).
    pub router_internal_addr: SocketAddr,
    /// Number of server parties.
    pub parties: usize,
    /// TEST/DEV ONLY: public test primes instead of generated ones.
    pub insecure_test_primes: Option<PathBuf>,
    /// TEST/DEV ONLY: public pregenerated aux info for every party group.
    pub insecure_test_aux: Option<PathBuf>,
    /// Deadline of a keygen that generates aux info.
    pub keygen_aux_timeout: Duration,
    /// Deadline of a keygen that reuses aux info.
    pub keygen_timeout: Duration,
    /// Deadline of a signing session.
    pub sign_timeout: Duration,
    /// Caller allowlist (CIDRs); empty allows all.
    pub allowlist: Vec<ipnet::IpNet>,
    /// Prime sets each party keeps ready in its sealed pool.
    pub prime_pool: usize,
    /// How many sessions each party takes at once.
    pub session_limits: server_party::SessionLimits,
    /// Party `k`'s own session bounds at index `k - 1`; missing:
    /// `session_limits`.
    pub party_session_limits: Vec<server_party::SessionLimits>,
    /// The coordinator's database; `None`: SQLite in the data directory.
    pub coordinator_database_url: Option<String>,
    /// Party `k`'s database at index `k - 1`; missing: SQLite in the data
    /// directory.
    pub party_database_urls: Vec<String>,
    /// Redis for the router's state; `None`: in memory.
    pub redis_url: Option<String>,
    /// How long a party whose session connection dropped has to come back
    /// before its session fails (`party_disconnected`).
    pub disconnect_grace: Duration,
    /// Presignatures kept ready per signer set of each account (0: none;
    /// `new` starts with none, `mpc dev` sets `--presign-pool`).
    pub presign_pool: usize,
    /// Presign sessions running at once.
    pub presign_concurrency: usize,
    /// Repository root holding `web-demo/` and `party-wasm/`: serve the web
    /// demo at `/demo/` on the API address.
    pub demo_root: Option<PathBuf>,
    /// The demo's vault: the browser party's store and workers on an origin
    /// of their own (port 0 picks one; only with `demo_root`).
    pub vault_addr: SocketAddr,
    /// Per-API-key request rate and open-session quota (on by default).
    pub limits: coordinator::config::Limits,
}

impl DevOptions {
    /// Defaults: API on 127.0.0.1:8080, router on 127.0.0.1:8081 (its
    /// internal API on a free loopback port), 3 parties.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            api_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            router_addr: SocketAddr::from(([127, 0, 0, 1], 8081)),
            router_internal_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            parties: 3,
            insecure_test_primes: None,
            insecure_test_aux: None,
            keygen_aux_timeout: coordinator::config::DEFAULT_KEYGEN_AUX_TIMEOUT,
            keygen_timeout: coordinator::config::DEFAULT_KEYGEN_TIMEOUT,
            sign_timeout: coordinator::config::DEFAULT_SIGN_TIMEOUT,
            allowlist: Vec::new(),
            prime_pool: crate::cli::party::DEFAULT_PRIME_POOL,
            session_limits: server_party::SessionLimits::default(),
            party_session_limits: Vec::new(),
            coordinator_database_url: None,
            party_database_urls: Vec::new(),
            redis_url: None,
            disconnect_grace: router::config::DEFAULT_DISCONNECT_GRACE,
            presign_pool: 0,
            presign_concurrency: coordinator::config::DEFAULT_PRESIGN_CONCURRENCY,
            demo_root: None,
            vault_addr: SocketAddr::from(([127, 0, 0, 1], 8088)),
            limits: coordinator::config::Limits::default(),
        }
    }
}

/// How long start-up waits for a database.
const DB_WAIT: Duration = Duration::from_secs(60);

struct Service {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Service {
    fn spawn<F, Fut>(f: F) -> Self
    where
        F: FnOnce(oneshot::Receiver<()>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        Self {
            stop: Some(tx),
            task: tokio::spawn(f(rx)),
        }
    }
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// A running dev system.
pub struct DevSystem {
    /// REST API base URL.
    pub api_url: String,
    /// The bootstrap API key.
    pub api_key: String,
    /// Whether the API key was created by this start (print it once).
    pub api_key_is_new: bool,
    /// Router base URL (`http://...`): its public listener.
    pub router_url: String,
    /// Base URL of the router's internal listener (the coordinator's only).
    pub router_internal_url: String,
    /// The coordinator's descriptor-signing public key (hex).
    pub coordinator_public_key: String,
    /// The router (tests subscribe to the frames it relays).
    pub router: router::Router,
    /// The coordinator.
    pub coordinator: Coordinator,
    options: DevOptions,
    coordinator_key: CoordinatorKey,
    router_service: Option<Service>,
    coordinator_service: Option<Service>,
    /// The demo vault's origin (`http://127.0.0.1:8088`), with `demo_root`.
    pub vault_url: Option<String>,
    vault_service: Option<Service>,
    parties: Vec<Option<(ServerParty, Service)>>,
}

impl std::fmt::Debug for DevSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevSystem")
            .field("api_url", &self.api_url)
            .field("router_url", &self.router_url)
            .field("router_internal_url", &self.router_internal_url)
            .finish_non_exhaustive()
    }
}

fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<(String, bool)> {
    if path.exists() {
        let s =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        return Ok((s.trim().to_string(), false));
    }
    let v = make();
    write_secret(path, &v)?;
    Ok((v, true))
}

impl DevSystem {
    /// Starts router, coordinator and parties.
    pub async fn start(options: DevOptions) -> anyhow::Result<Self> {
        let dir = &options.data_dir;
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let (key_hex, _) = read_or_create(&dir.join("coordinator.key"), || {
            hex::encode(
                CoordinatorKey::generate(&mut rand_core::OsRng)
                    .secret_bytes()
                    .as_ref(),
            )
        })?;
        let coordinator_key = CoordinatorKey::from_secret_bytes(&hex::decode(key_hex.trim())?)
            .map_err(|e| anyhow::anyhow!("coordinator.key: {e}"))?;
        let (api_key, api_key_is_new) =
            read_or_create(&dir.join("api-key"), coordinator::auth::new_api_key)?;
        // Parties register with the coordinator by signing with their
        // identity key, which `start_party` enrols (this process made the
        // parties, so it knows their keys); only the coordinator holds the
        // router's own credential.
        let router_token = coordinator::auth::new_api_key();

        let router_listeners = router::Listeners {
            public: tokio::net::TcpListener::bind(options.router_addr).await?,
            internal: tokio::net::TcpListener::bind(options.router_internal_addr).await?,
        };
        let router_addr = router_listeners.public.local_addr()?;
        let router_url = format!("http://{router_addr}");
        let router_internal_url = format!("http://{}", router_listeners.internal.local_addr()?);
        let mut router_config = router::RouterConfig::new(router_token.clone());
        router_config.redis_url = options.redis_url.clone();
        router_config.disconnect_grace = options.disconnect_grace;
        let router = router::Router::new(router_config)?;
        let r = router.clone();
        let router_service = Service::spawn(move |rx| async move {
            if let Err(e) = r
                .serve(router_listeners, async move {
                    let _ = rx.await;
                })
                .await
            {
                tracing::error!(error = %e, "router stopped");
            }
        });

        let mut config = CoordinatorConfig::new(
            options
                .coordinator_database_url
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}", dir.join("coordinator.db").display())),
            coordinator_key.clone(),
            &router_internal_url,
        );
        config.router_internal_token = router_token;
        config.router_public_ws_url = format!("ws://{router_addr}/ws");
        config.bootstrap_api_keys = vec![api_key.clone()];
        config.insecure_test_aux = options.insecure_test_aux.is_some();
        config.keygen_aux_timeout = options.keygen_aux_timeout;
        config.keygen_timeout = options.keygen_timeout;
        config.sign_timeout = options.sign_timeout;
        config.allowlist = options.allowlist.clone();
        config.presign_pool = options.presign_pool;
        config.presign_concurrency = options.presign_concurrency;
        config.limits = options.limits;
        let coordinator = Coordinator::new(config)?;
        coordinator.wait_ready(DB_WAIT).await?;
        let api_listener = tokio::net::TcpListener::bind(options.api_addr).await?;
        let api_addr = api_listener.local_addr()?;
        let (demo, vault_service, vault_url) = match &options.demo_root {
            Some(root) => {
                let vault_listener = tokio::net::TcpListener::bind(options.vault_addr).await?;
                let vault_addr = vault_listener.local_addr()?;
                let vault_origin = format!("http://{vault_addr}");
                let allowed_hosts = crate::demo::hosts_for(api_addr);
                let vault = crate::demo::vault::router(crate::demo::vault::VaultConfig {
                    root: root.clone(),
                    allowed_hosts: crate::demo::hosts_for(vault_addr),
                    parent_origins: crate::demo::vault::origins(&allowed_hosts),
                    coordinator: coordinator.app(),
                    coordinator_public_key: hex::encode(coordinator_key.public()),
                    router_ws_url: format!("ws://{router_addr}/ws"),
                    insecure_test_primes: options.insecure_test_primes.clone(),
                    insecure_test_aux: options.insecure_test_aux.clone(),
                });
                let vault_service = Service::spawn(move |rx| async move {
                    let app = vault.into_make_service_with_connect_info::<SocketAddr>();
                    if let Err(e) = axum::serve(vault_listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = rx.await;
                        })
                        .await
                    {
                        tracing::error!(error = %e, "demo vault stopped");
                    }
                });
                let demo = crate::demo::router(crate::demo::DemoConfig {
                    root: root.clone(),
                    api_url: format!("http://{api_addr}"),
                    api_key: api_key.clone(),
                    insecure_test_primes: options.insecure_test_primes.clone(),
                    insecure_test_aux: options.insecure_test_aux.clone(),
                    allowed_hosts,
                    vault_origin: vault_origin.clone(),
                });
                (demo, Some(vault_service), Some(vault_origin))
            }
            None => (axum::Router::new(), None, None),
        };
        let c = coordinator.clone();
        let coordinator_service = Service::spawn(move |rx| async move {
            if let Err(e) = c
                .serve_with(api_listener, demo, async move {
                    let _ = rx.await;
                })
                .await
            {
                tracing::error!(error = %e, "coordinator stopped");
            }
        });

        let mut sys = Self {
            api_url: format!("http://{api_addr}"),
            api_key,
            api_key_is_new,
            router_url,
            router_internal_url,
            coordinator_public_key: hex::encode(coordinator_key.public()),
            router,
            coordinator,
            options: options.clone(),
            coordinator_key,
            router_service: Some(router_service),
            coordinator_service: Some(coordinator_service),
            vault_url,
            vault_service,
            parties: Vec::new(),
        };
        for k in 1..=options.parties {
            sys.parties.push(None);
            sys.start_party(k).await?;
        }
        sys.wait_registered().await?;
        Ok(sys)
    }

    /// Party ids, `server-party-1` ...
    pub fn party_id(k: usize) -> String {
        format!("server-party-{k}")
    }

    fn party_config(&self, k: usize) -> anyhow::Result<PartyConfig> {
        let dir = self.options.data_dir.join(format!("party-{k}"));
        std::fs::create_dir_all(&dir)?;
        let (mk, _) = read_or_create(&dir.join("master.key"), || {
            MasterKey::generate().to_hex().to_string()
        })?;
        let master_key =
            MasterKey::from_hex(&mk).map_err(|e| anyhow::anyhow!("master.key: {e}"))?;
        Ok(PartyConfig {
            party_id: Self::party_id(k),
            database_url: self
                .options
                .party_database_urls
                .get(k - 1)
                .cloned()
                .unwrap_or_else(|| format!("sqlite://{}", dir.join("party.db").display())),
            master_key,
            coordinator_urls: vec![self.api_url.clone()],
            coordinator_public_key: self.coordinator_key.public(),
            router_ws_urls: vec![format!("{}/ws", self.router_url.replacen("http", "ws", 1))],
            primes: crate::cli::party::prime_source(
                self.options.insecure_test_primes.as_ref(),
                k - 1,
                self.options.prime_pool,
            ),
            insecure_test_aux: self.options.insecure_test_aux.clone(),
            limits: self
                .options
                .party_session_limits
                .get(k - 1)
                .copied()
                .unwrap_or(self.options.session_limits),
            client_tls: None,
        })
    }

    /// Starts (or restarts) party `k` (1-based), enrolling its identity key
    /// with the coordinator first if it is not enrolled yet (an operator's
    /// revocation of a party whose key did not change is kept).
    pub async fn start_party(&mut self, k: usize) -> anyhow::Result<()> {
        let party = ServerParty::open(self.party_config(k)?).await?;
        let identity = party.public_identity();
        let party_id = Self::party_id(k);
        let store = self.coordinator.store();
        let enrolled = store.enrolment(&party_id).await?;
        if enrolled.is_none_or(|e| e.ed25519 != identity.ed25519) {
            store
                .enrol_party(
                    &party_id,
                    identity.ed25519,
                    Some(identity.x25519),
                    "mpc-dev",
                )
                .await?;
        }
        let p = party.clone();
        let service = Service::spawn(move |rx| async move {
            p.run(async move {
                let _ = rx.await;
            })
            .await;
        });
        if let Some(slot) = self.parties.get_mut(k - 1) {
            *slot = Some((party, service));
        }
        Ok(())
    }

    /// Stops party `k` at once, as a crash would: sessions in flight are dropped.
    pub async fn kill_party(&mut self, k: usize) {
        if let Some(slot) = self.parties.get_mut(k - 1) {
            if let Some((_, service)) = slot.take() {
                service.stop().await;
            }
        }
    }

    /// Party `k`, if running.
    pub fn party(&self, k: usize) -> Option<&ServerParty> {
        self.parties
            .get(k - 1)
            .and_then(|p| p.as_ref())
            .map(|(p, _)| p)
    }

    async fn wait_registered(&self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for k in 1..=self.options.parties {
            loop {
                if self
                    .coordinator
                    .store()
                    .party(&Self::party_id(k))
                    .await?
                    .is_some()
                {
                    break;
                }
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "party {k} did not register"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// Stops everything.
    pub async fn shutdown(mut self) {
        for k in 1..=self.parties.len() {
            self.kill_party(k).await;
        }
        if let Some(s) = self.coordinator_service.take() {
            s.stop().await;
        }
        if let Some(s) = self.vault_service.take() {
            s.stop().await;
        }
        if let Some(s) = self.router_service.take() {
            s.stop().await;
        }
    }
}
