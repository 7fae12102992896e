//! # server-party
//!
//! A native party daemon. It keeps its identity and sealed shares in its own
//! database ([`store`]), registers its identity with the coordinator (a
//! request signed by that identity, whose key an operator enrolled), keeps a
//! control connection to the router through which it receives invitations,
//! and runs each invited session ([`runner`]): it refuses descriptors not
//! signed by its coordinator, refuses to sign for accounts it holds no share
//! of, and reports results signed with its identity key.
#![forbid(unsafe_code)]

mod inputs;
pub mod kill_point;
mod priority;
mod queue;
mod router_guard;
pub mod runner;
pub mod store;
mod tables;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use party_core::host::ReportOutcome;
use party_core::identity::PartyIdentity;
use party_core::seal::MasterKey;
use party_core::wire::{control_message, ClientToRouter, RouterToClient};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

pub(crate) use router_guard::{
    router_text, ws_config, Backoff, CONTROL_MAX_MESSAGE_BYTES, SESSION_MAX_MESSAGE_BYTES,
};

pub use queue::{SessionLimits, DEFAULT_MAX_BACKGROUND_SESSIONS, DEFAULT_MAX_SESSIONS, PARTY_BUSY};
pub use store::PartyStore;

/// Where aux-info primes come from.
#[derive(Debug, Clone)]
pub enum PrimeSource {
    /// Real generation (tens of seconds per set) on up to this many threads,
    /// after taking from the sealed pool when it has stock. A background task
    /// keeps `pool_target` sealed prime sets ready, generating on one thread.
    Generate {
        /// Threads for prime generation when the pool is empty.
        threads: usize,
        /// Prime sets to keep in the pool (0 disables the refill task).
        pool_target: usize,
    },
    /// TEST/DEV ONLY: public primes from the test-data directory, entry `index`.
    InsecureTestData {
        /// `party-core/test-data`.
        dir: PathBuf,
        /// Which party's primes.
        index: usize,
    },
}

/// Configuration of one server party. `Debug` hides secrets.
#[derive(Clone)]
pub struct PartyConfig {
    /// Registered party id.
    pub party_id: String,
    /// sqlx URL of the party's own database.
    pub database_url: String,
    /// Master key sealing every secret record.
    pub master_key: MasterKey,
    /// Coordinator base URLs (reports, registration); tried in turn, the next
    /// one after a failure.
    pub coordinator_urls: Vec<String>,
    /// The coordinator's descriptor-signing public key.
    pub coordinator_public_key: [u8; 32],
    /// Router WebSocket URLs; tried in turn, the next one after a failure, so
    /// a party moves to another router instance when its router goes away.
    pub router_ws_urls: Vec<String>,
    /// Primes for aux info.
    pub primes: PrimeSource,
    /// TEST/DEV ONLY: the test-data directory whose aux info is used for a
    /// party group with no stored aux info.
    pub insecure_test_aux: Option<PathBuf>,
    /// How many sessions the party takes at once; over it, a session is
    /// refused at once with `party_busy` ([`queue`]).
    pub limits: SessionLimits,
    /// What `https://` coordinators and `wss://` routers must present a
    /// certificate of (`--tls-ca`); the Mozilla roots when `None`.
    pub client_tls: Option<Arc<mpc_tls::ClientConfig>>,
}

impl std::fmt::Debug for PartyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyConfig")
            .field("party_id", &self.party_id)
            .field("database_url", &self.database_url)
            .field("coordinator_urls", &self.coordinator_urls)
            .field("router_ws_urls", &self.router_ws_urls)
            .field("primes", &self.primes)
            .field("limits", &self.limits)
            .field("client_tls", &self.client_tls.is_some())
            .finish_non_exhaustive()
    }
}

/// A list of equivalent endpoints and the one currently in use: callers use
/// [`Endpoints::current`] and call [`Endpoints::failed`] when it fails, which
/// moves everyone to the next.
#[derive(Debug)]
pub(crate) struct Endpoints {
    urls: Vec<String>,
    current: std::sync::atomic::AtomicUsize,
}

impl Endpoints {
    fn new(urls: &[String]) -> Self {
        Self {
            urls: urls.to_vec(),
            current: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The endpoint in use and its index (pass the index to `failed`).
    pub(crate) fn current(&self) -> (usize, &str) {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        (
            i,
            self.urls
                .get(i % self.urls.len().max(1))
                .map_or("", String::as_str),
        )
    }

    /// Moves to the next endpoint if `index` is still the one in use.
    pub(crate) fn failed(&self, index: usize) {
        let next = (index + 1) % self.urls.len().max(1);
        let _ = self.current.compare_exchange(
            index,
            next,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// How many endpoints there are.
    pub(crate) fn len(&self) -> usize {
        self.urls.len()
    }
}

/// Start-up and runtime failures.
#[derive(Debug, thiserror::Error)]
pub enum PartyError {
    /// Store.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Configuration.
    #[error("configuration: {0}")]
    Config(&'static str),
    /// TLS configuration.
    #[error(transparent)]
    Tls(#[from] mpc_tls::TlsError),
}

/// How long start-up waits for the party's database.
const STORE_WAIT: Duration = Duration::from_secs(120);

/// Shared state of a running party.
#[derive(Debug)]
pub struct PartyState {
    pub(crate) config: PartyConfig,
    pub(crate) store: PartyStore,
    pub(crate) identity: PartyIdentity,
    pub(crate) http: reqwest::Client,
    /// What `wss://` routers are checked against.
    pub(crate) tls: Arc<mpc_tls::ClientConfig>,
    pub(crate) coordinators: Endpoints,
    pub(crate) routers: Endpoints,
    pub(crate) primes: std::sync::Mutex<PrimeWork>,
    /// Held while this party generates a prime set on demand: one set at a
    /// time.
    pub(crate) prime_set: tokio::sync::Mutex<()>,
    pub(crate) tables: tables::TableCache,
    /// The bounded session queue.
    pub(crate) queue: Arc<queue::SessionQueue>,
}

/// Prime generation shared by the background refill and on-demand needs.
#[derive(Debug, Default)]
pub(crate) struct PrimeWork {
    /// Primes the refill has found towards its next set; an on-demand need
    /// takes them and finds only the rest.
    partial: party_core::primes::PartialPrimes,
    /// On-demand generations running; the refill pauses while any is.
    demand: usize,
}

/// Marks an on-demand prime generation for as long as it lives.
#[derive(Debug)]
pub(crate) struct DemandGuard<'a>(&'a PartyState);

impl Drop for DemandGuard<'_> {
    fn drop(&mut self) {
        let mut w = self.0.prime_work();
        w.demand = w.demand.saturating_sub(1);
    }
}

impl PartyState {
    fn prime_work(&self) -> std::sync::MutexGuard<'_, PrimeWork> {
        self.primes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts an on-demand generation: the refill pauses, and the primes it
    /// had found are handed over.
    pub(crate) fn demand_primes(&self) -> (DemandGuard<'_>, party_core::primes::PartialPrimes) {
        let mut w = self.prime_work();
        w.demand += 1;
        let partial = std::mem::take(&mut w.partial);
        drop(w);
        (DemandGuard(self), partial)
    }

    /// Gives unused primes back to the refill.
    pub(crate) fn return_primes(&self, partial: party_core::primes::PartialPrimes) {
        self.prime_work().partial.absorb(partial);
    }
}

/// A running server party.
#[derive(Debug, Clone)]
pub struct ServerParty {
    state: Arc<PartyState>,
}

impl ServerParty {
    /// Opens the store and loads (or creates) the identity.
    pub async fn open(config: PartyConfig) -> Result<Self, PartyError> {
        if let PrimeSource::InsecureTestData { .. } = config.primes {
            tracing::warn!(party_id = %config.party_id, "INSECURE TEST MODE: aux info uses PUBLIC test primes; never use this for real keys");
        }
        if config.insecure_test_aux.is_some() {
            tracing::warn!(party_id = %config.party_id, "INSECURE TEST MODE: party groups get PUBLIC pregenerated aux info; never use this for real keys");
        }
        if config.coordinator_urls.is_empty() || config.router_ws_urls.is_empty() {
            return Err(PartyError::Config(
                "at least one coordinator URL and one router URL are needed",
            ));
        }
        let store = PartyStore::open(
            &config.database_url,
            config.master_key.clone(),
            &config.party_id,
            STORE_WAIT,
        )
        .await?;
        let identity = store.load_or_create_identity().await?;
        let tls = match &config.client_tls {
            Some(tls) => tls.clone(),
            None => mpc_tls::client_config(None)?,
        };
        Ok(Self {
            state: Arc::new(PartyState {
                coordinators: Endpoints::new(&config.coordinator_urls),
                routers: Endpoints::new(&config.router_ws_urls),
                primes: std::sync::Mutex::new(PrimeWork::default()),
                prime_set: tokio::sync::Mutex::new(()),
                tables: tables::TableCache::default(),
                queue: queue::SessionQueue::new(config.limits),
                config,
                store,
                identity,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .use_preconfigured_tls((*tls).clone())
                    .build()
                    .unwrap_or_default(),
                tls,
            }),
        })
    }

    /// The party's public identity.
    pub fn public_identity(&self) -> party_core::identity::PartyPublicKey {
        self.state.identity.public()
    }

    /// The store.
    pub fn store(&self) -> &PartyStore {
        &self.state.store
    }

    /// Registers with the coordinator and serves invitations until
    /// `shutdown` resolves. Connections retry with backoff.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let state = self.state.clone();
        let mut sessions = tokio::task::JoinSet::new();
        if let PrimeSource::Generate { pool_target, .. } = state.config.primes {
            if pool_target > 0 {
                let st = state.clone();
                sessions.spawn(async move { refill_prime_pool(st, pool_target).await });
            }
        }
        let work = async {
            register(&state).await;
            let mut backoff = Backoff::default();
            loop {
                let started = tokio::time::Instant::now();
                match control_connection(&state, &mut sessions).await {
                    Ok(()) => {
                        tracing::info!(party_id = %state.config.party_id, "control connection closed")
                    }
                    Err(e) => {
                        tracing::warn!(party_id = %state.config.party_id, error = %e, "control connection lost")
                    }
                }
                // Only a connection that stayed up a while resets the
                // backoff: a router that accepts and drops at once is not
                // retried in a tight loop.
                tokio::time::sleep(backoff.next(started.elapsed())).await;
            }
        };
        tokio::select! {
            _ = work => {}
            _ = shutdown => {}
        }
        // Dropping the set aborts sessions in flight, as a crash would.
        sessions.abort_all();
        state.store.pool().close().await;
    }
}

/// Keeps `target` sealed prime sets in the pool, one prime at a time on the
/// background executor (lowest priority, yielding to sessions a caller waits
/// for), so a new party group's aux info does not wait for primes. It
/// pauses while an on-demand generation runs (which takes the primes it had
/// found), so the two never compete for the cores.
async fn refill_prime_pool(state: Arc<PartyState>, target: usize) {
    let party_id = state.config.party_id.clone();
    let mut started = std::time::Instant::now();
    loop {
        let count = state.store.prime_count().await;
        if let Ok(n) = &count {
            metrics::gauge!("mpc_party_prime_pool", "party" => party_id.clone()).set(*n as f64);
        }
        match count {
            Ok(n) if usize::try_from(n).unwrap_or(0) >= target => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(%party_id, error = %e, "prime pool unavailable");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        }
        if state.prime_work().demand > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        // Lowest priority, behind foreground work, one prime search at a
        // time in the process (crate::priority).
        let found = priority::scheduler()
            .long_background(|| {
                let mut one = party_core::primes::PartialPrimes::default();
                one.find_one();
                one
            })
            .await;
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(%party_id, error = %e, "prime pool: generation task failed");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let full = {
            let mut w = state.prime_work();
            w.partial.absorb(found);
            tracing::debug!(%party_id, found = w.partial.len(), "prime pool: safe prime found");
            (w.partial.len() == 4).then(|| std::mem::take(&mut w.partial))
        };
        let Some(full) = full else { continue };
        match full.into_set() {
            Ok(primes) => match state.store.put_primes(&primes).await {
                Ok(()) => {
                    tracing::info!(%party_id, elapsed = ?started.elapsed(), "prime pool: set stored");
                    started = std::time::Instant::now();
                }
                Err(e) => tracing::error!(%party_id, error = %e, "prime pool: store failed"),
            },
            Err(e) => tracing::error!(%party_id, error = %e, "prime pool: invalid set"),
        }
    }
}

/// The party's registration, signed by its identity key over
/// `party_core::wire::party_register_message` with the current time and a
/// fresh nonce (the coordinator accepts each once, while fresh).
fn signed_registration(state: &PartyState) -> mpc_api::party::RegisterParty {
    use rand_core::RngCore as _;
    let c = &state.config;
    let identity = state.identity.public();
    let device_type = mpc_api::rest::DeviceType::Server.as_str();
    let issued_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut nonce = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut nonce);
    let message = party_core::wire::party_register_message(
        &c.party_id,
        device_type,
        &identity,
        issued_at,
        &nonce,
    );
    mpc_api::party::RegisterParty {
        party_id: c.party_id.clone(),
        device_type: device_type.to_owned(),
        identity: mpc_api::party::Identity {
            ed25519: hex::encode(identity.ed25519),
            x25519: hex::encode(identity.x25519),
        },
        issued_at,
        nonce: hex::encode(nonce),
        signature: hex::encode(state.identity.sign(&message)),
    }
}

async fn register(state: &PartyState) {
    let c = &state.config;
    let mut backoff = Duration::from_millis(100);
    loop {
        let (index, base) = state.coordinators.current();
        let r = state
            .http
            .post(format!(
                "{}/internal/v1/parties",
                base.trim_end_matches('/')
            ))
            .json(&signed_registration(state))
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => {
                tracing::info!(party_id = %c.party_id, "registered with the coordinator");
                return;
            }
            Ok(resp) => {
                let status = resp.status();
                let code = resp
                    .json::<mpc_api::error::ErrorBody>()
                    .await
                    .map(|b| b.code.as_str())
                    .unwrap_or("unknown");
                if code == "party_not_enrolled" || code == "enrolment_mismatch" {
                    let identity = state.identity.public();
                    tracing::error!(party_id = %c.party_id, %status, code,
                        ed25519 = %hex::encode(identity.ed25519), x25519 = %hex::encode(identity.x25519),
                        "coordinator refused registration: an operator must enrol this identity (`mpc parties enrol`)");
                } else {
                    tracing::error!(party_id = %c.party_id, %status, code, "coordinator refused registration");
                    state.coordinators.failed(index);
                }
            }
            Err(e) => {
                tracing::warn!(party_id = %c.party_id, error = %e.without_url(), "coordinator not reachable yet");
                state.coordinators.failed(index);
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why a router handshake did not succeed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The router answered with a refusal.
    #[error("router refused ({code}): {message}")]
    Refused { code: String, message: String },
    /// Connection or protocol failure.
    #[error("{0}")]
    Io(String),
}

impl From<String> for HandshakeError {
    fn from(s: String) -> Self {
        HandshakeError::Io(s)
    }
}

/// Opens a WebSocket to a router: TLS with `tls` for `wss://`, no Nagle.
pub(crate) async fn connect_ws(
    url: &str,
    tls: &Arc<mpc_tls::ClientConfig>,
    max_message: usize,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        Some(ws_config(max_message)),
        true,
        Some(tokio_tungstenite::Connector::Rustls(tls.clone())),
    )
    .await?;
    Ok(ws)
}

/// Connects to the router (taking messages of at most `max_message` bytes)
/// and answers its challenge with `answer(nonce)`.
pub(crate) async fn router_handshake(
    url: &str,
    tls: &Arc<mpc_tls::ClientConfig>,
    max_message: usize,
    answer: impl FnOnce(&[u8; 32]) -> ClientToRouter,
) -> Result<(Ws, RouterToClient), HandshakeError> {
    let mut ws = tokio::time::timeout(
        Duration::from_secs(10),
        // No Nagle: protocol rounds are small frames that must go out at
        // once (with Nagle and delayed ACKs each round waited ~40 ms).
        connect_ws(url, tls, max_message),
    )
    .await
    .map_err(|_| "router connection timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let nonce = match next_json(&mut ws).await? {
        RouterToClient::Challenge { nonce } => nonce,
        other => return Err(format!("expected a challenge, got {other:?}").into()),
    };
    let msg = serde_json::to_string(&answer(&nonce)).map_err(|e| e.to_string())?;
    ws.send(Message::text(msg))
        .await
        .map_err(|e| e.to_string())?;
    let reply = next_json(&mut ws).await?;
    if let RouterToClient::Error { code, message } = reply {
        return Err(HandshakeError::Refused {
            code: router_text(&code),
            message: router_text(&message),
        });
    }
    Ok((ws, reply))
}

async fn next_json(ws: &mut Ws) -> Result<RouterToClient, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(&t).map_err(|e| e.to_string())
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => {
                return Err(format!(
                    "unexpected {} message of {} bytes",
                    message_kind(&other),
                    other.len()
                ))
            }
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("connection closed".into()),
        }
    }
}

fn message_kind(m: &Message) -> &'static str {
    match m {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
        Message::Ping(_) => "ping",
        Message::Pong(_) => "pong",
        Message::Close(_) => "close",
        Message::Frame(_) => "frame",
    }
}

async fn control_connection(
    state: &Arc<PartyState>,
    sessions: &mut tokio::task::JoinSet<()>,
) -> Result<(), String> {
    let c = &state.config;
    let (index, url) = state.routers.current();
    let connected = router_handshake(url, &state.tls, CONTROL_MAX_MESSAGE_BYTES, |nonce| {
        ClientToRouter::Control {
            party_id: c.party_id.clone(),
            identity: state.identity.public(),
            signature: state.identity.sign(&control_message(nonce, &c.party_id)),
        }
    })
    .await;
    let mut ws = match connected {
        Ok((ws, _)) => ws,
        Err(e) => {
            state.routers.failed(index);
            return Err(e.to_string());
        }
    };
    tracing::info!(party_id = %c.party_id, "control connection up");
    while let Some(msg) = ws.next().await {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                state.routers.failed(index);
                return Err(e.to_string());
            }
        };
        match msg {
            Message::Text(t) => match serde_json::from_str::<RouterToClient>(&t) {
                Ok(RouterToClient::Invitation(inv)) => {
                    let st = state.clone();
                    sessions.spawn(async move { runner::run_invitation(st, *inv).await });
                }
                Ok(RouterToClient::Error { code, message }) => {
                    tracing::warn!(
                        party_id = %c.party_id,
                        code = %router_text(&code),
                        message = %router_text(&message),
                        "router error on the control connection"
                    )
                }
                Ok(_) => {
                    tracing::debug!(party_id = %c.party_id, "control message ignored")
                }
                Err(e) => tracing::warn!(party_id = %c.party_id, error = %e, "bad control message"),
            },
            Message::Close(_) => break,
            _ => {}
        }
        while sessions.try_join_next().is_some() {}
    }
    Ok(())
}

impl PartyState {
    /// One attempt to deliver a signed report (the request body) to the
    /// coordinator in use; moves to the next coordinator when this one is
    /// unavailable. The retry schedule is the session machine's
    /// (`party_core::host`).
    pub(crate) async fn post_report(
        &self,
        session_id: Uuid,
        body: String,
        best_effort: bool,
    ) -> ReportOutcome {
        let (index, base) = self.coordinators.current();
        let url = format!("{}/internal/v1/reports", base.trim_end_matches('/'));
        let mut request = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if best_effort {
            request = request.timeout(Duration::from_secs(2));
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => ReportOutcome::Delivered,
            // A refusal is final (bad report, unknown session): retrying
            // the same signed bytes cannot change it.
            Ok(r) if r.status().is_client_error() => {
                tracing::warn!(%session_id, status = %r.status(), "coordinator refused report");
                ReportOutcome::Refused
            }
            Ok(r) => {
                tracing::warn!(%session_id, status = %r.status(), "coordinator unavailable for report");
                self.coordinators.failed(index);
                ReportOutcome::Unavailable
            }
            Err(e) => {
                tracing::warn!(%session_id, error = %e.without_url(), "report failed");
                self.coordinators.failed(index);
                ReportOutcome::Unavailable
            }
        }
    }
}

/// Now, in Unix milliseconds (the session machine's clock).
pub(crate) fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
