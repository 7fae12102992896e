//! # server-party
//!
//! A native party daemon. It keeps its identity and sealed shares in its own
//! database ([`store`]), registers its identity with the coordinator, keeps a
//! control connection to the router through which it receives invitations,
//! and runs each invited session ([`runner`]): it refuses descriptors not
//! signed by its coordinator, refuses to sign for accounts it holds no share
//! of, and reports results signed with its identity key.
#![forbid(unsafe_code)]

pub mod runner;
pub mod store;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use party_core::identity::PartyIdentity;
use party_core::seal::MasterKey;
use party_core::wire::{
    control_message, ClientToRouter, Report, ReportBody, RouterToClient, SignedReport,
};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

pub use store::PartyStore;

/// Where aux-info primes come from.
#[derive(Debug, Clone)]
pub enum PrimeSource {
    /// Real generation (minutes with num-bigint) on up to this many threads,
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
    /// Coordinator base URL (reports, registration).
    pub coordinator_url: String,
    /// The coordinator's descriptor-signing public key.
    pub coordinator_public_key: [u8; 32],
    /// Router WebSocket URL.
    pub router_ws_url: String,
    /// Internal token for registration.
    pub internal_token: String,
    /// Primes for aux info.
    pub primes: PrimeSource,
    /// TEST/DEV ONLY: the test-data directory whose aux info is used for a
    /// party group with no stored aux info.
    pub insecure_test_aux: Option<PathBuf>,
}

impl std::fmt::Debug for PartyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyConfig")
            .field("party_id", &self.party_id)
            .field("database_url", &self.database_url)
            .field("coordinator_url", &self.coordinator_url)
            .field("router_ws_url", &self.router_ws_url)
            .field("primes", &self.primes)
            .finish_non_exhaustive()
    }
}

/// Start-up and runtime failures.
#[derive(Debug, thiserror::Error)]
pub enum PartyError {
    /// Store.
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// Shared state of a running party.
#[derive(Debug)]
pub struct PartyState {
    pub(crate) config: PartyConfig,
    pub(crate) store: PartyStore,
    pub(crate) identity: PartyIdentity,
    pub(crate) http: reqwest::Client,
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
        let store = PartyStore::open(
            &config.database_url,
            config.master_key.clone(),
            &config.party_id,
        )
        .await?;
        let identity = store.load_or_create_identity().await?;
        Ok(Self {
            state: Arc::new(PartyState {
                config,
                store,
                identity,
                http: reqwest::Client::new(),
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
            let mut backoff = Duration::from_millis(100);
            loop {
                match control_connection(&state, &mut sessions).await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(e) => {
                        tracing::warn!(party_id = %state.config.party_id, error = %e, "control connection lost")
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
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

/// Keeps `target` sealed prime sets in the pool, one generation at a time on
/// one thread, so a new party group's aux info does not wait for primes.
async fn refill_prime_pool(state: Arc<PartyState>, target: usize) {
    let party_id = state.config.party_id.clone();
    loop {
        match state.store.prime_count().await {
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
        tracing::info!(%party_id, "prime pool: generating a set of 4 safe primes in the background");
        let started = std::time::Instant::now();
        let pid = party_id.clone();
        let generated = tokio::task::spawn_blocking(move || {
            party_core::primes::PrimeSet::generate_parallel(1, |done| {
                tracing::debug!(party_id = %pid, "prime pool: prime {done}/4");
            })
        })
        .await;
        match generated {
            Ok(Ok(primes)) => match state.store.put_primes(&primes).await {
                Ok(()) => {
                    tracing::info!(%party_id, elapsed = ?started.elapsed(), "prime pool: set stored")
                }
                Err(e) => tracing::error!(%party_id, error = %e, "prime pool: store failed"),
            },
            Ok(Err(e)) => tracing::error!(%party_id, error = %e, "prime pool: generation failed"),
            Err(e) => tracing::error!(%party_id, error = %e, "prime pool: task failed"),
        }
    }
}

async fn register(state: &PartyState) {
    let c = &state.config;
    let body = serde_json::json!({
        "party_id": c.party_id,
        "device_type": "server",
        "identity": state.identity.public(),
    });
    let mut backoff = Duration::from_millis(100);
    loop {
        let r = state
            .http
            .post(format!(
                "{}/internal/v1/parties",
                c.coordinator_url.trim_end_matches('/')
            ))
            .header("X-Internal-Token", &c.internal_token)
            .json(&body)
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => {
                tracing::info!(party_id = %c.party_id, "registered with the coordinator");
                return;
            }
            Ok(resp) => {
                tracing::error!(party_id = %c.party_id, status = %resp.status(), "coordinator refused registration")
            }
            Err(e) => {
                tracing::warn!(party_id = %c.party_id, error = %e.without_url(), "coordinator not reachable yet")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to the router and answers its challenge with `answer(nonce)`.
pub(crate) async fn router_handshake(
    url: &str,
    answer: impl FnOnce(&[u8; 32]) -> ClientToRouter,
) -> Result<(Ws, RouterToClient), String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| e.to_string())?;
    let nonce = match next_json(&mut ws).await? {
        RouterToClient::Challenge { nonce } => nonce,
        other => return Err(format!("expected a challenge, got {other:?}")),
    };
    let msg = serde_json::to_string(&answer(&nonce)).map_err(|e| e.to_string())?;
    ws.send(Message::text(msg))
        .await
        .map_err(|e| e.to_string())?;
    let reply = next_json(&mut ws).await?;
    if let RouterToClient::Error { code, message } = &reply {
        return Err(format!("router refused ({code}): {message}"));
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
            Some(Ok(other)) => return Err(format!("unexpected message {other:?}")),
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("connection closed".into()),
        }
    }
}

async fn control_connection(
    state: &Arc<PartyState>,
    sessions: &mut tokio::task::JoinSet<()>,
) -> Result<(), String> {
    let c = &state.config;
    let (mut ws, _) = router_handshake(&c.router_ws_url, |nonce| ClientToRouter::Control {
        party_id: c.party_id.clone(),
        identity: state.identity.public(),
        signature: state.identity.sign(&control_message(nonce, &c.party_id)),
    })
    .await?;
    tracing::info!(party_id = %c.party_id, "control connection up");
    while let Some(msg) = ws.next().await {
        match msg.map_err(|e| e.to_string())? {
            Message::Text(t) => match serde_json::from_str::<RouterToClient>(&t) {
                Ok(RouterToClient::Invitation(inv)) => {
                    let st = state.clone();
                    sessions.spawn(async move { runner::run_invitation(st, inv).await });
                }
                Ok(other) => {
                    tracing::debug!(party_id = %c.party_id, ?other, "control message ignored")
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
    /// Sends a signed report to the coordinator (a few retries).
    pub(crate) async fn report(&self, session_id: Uuid, position: u16, body: ReportBody) {
        let report = Report {
            session_id,
            position,
            body,
        };
        let Ok(signed) = SignedReport::sign(&report, &self.identity) else {
            return;
        };
        let url = format!(
            "{}/internal/v1/reports",
            self.config.coordinator_url.trim_end_matches('/')
        );
        for attempt in 0..5u32 {
            match self.http.post(&url).json(&signed).send().await {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => {
                    tracing::warn!(session_id = %session_id, status = %r.status(), "coordinator refused report");
                    return;
                }
                Err(e) => {
                    tracing::warn!(session_id = %session_id, attempt, error = %e.without_url(), "report failed");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
                }
            }
        }
    }
}
