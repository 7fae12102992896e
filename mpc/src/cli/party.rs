//! `mpc party`: a server party's configuration, declared once.

use std::path::PathBuf;

use party_core::seal::MasterKey;
use server_party::{
    PartyConfig, PrimeSource, ServerParty, SessionLimits, DEFAULT_MAX_BACKGROUND_SESSIONS,
    DEFAULT_MAX_SESSIONS,
};

use super::{comma_list, secret_hex, shutdown_signal};

/// The default of `--prime-pool`.
pub const DEFAULT_PRIME_POOL: usize = 2;

/// A server party's settings that `mpc dev` runs its parties with too.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct PartySettings {
    /// Prime sets to keep ready in the sealed pool.
    #[arg(long, env = "MPC_PRIME_POOL", default_value_t = DEFAULT_PRIME_POOL)]
    pub prime_pool: usize,
    /// Sessions a caller waits for (keygen, signing) that the party runs at
    /// once; over it a session is refused at once with `party_busy`.
    /// Presign refills start only while fewer sessions than this run.
    #[arg(long, env = "MPC_MAX_SESSIONS", default_value_t = DEFAULT_MAX_SESSIONS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_sessions: usize,
    /// Background sessions (presign refills) the party runs at once; over
    /// it a refill is refused with `party_busy`. Never takes a place from
    /// `--max-sessions`.
    #[arg(long, env = "MPC_MAX_BACKGROUND_SESSIONS", default_value_t = DEFAULT_MAX_BACKGROUND_SESSIONS)]
    pub max_background_sessions: usize,
}

impl PartySettings {
    /// The party's session bounds.
    pub fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            max_sessions: self.max_sessions,
            max_background_sessions: self.max_background_sessions,
        }
    }
}

/// Where a party's primes come from: generated (pool of `prime_pool`), or
/// the PUBLIC test primes of party `index` in `test_data`.
pub fn prime_source(test_data: Option<&PathBuf>, index: usize, prime_pool: usize) -> PrimeSource {
    match test_data {
        Some(dir) => PrimeSource::InsecureTestData {
            dir: dir.clone(),
            index,
        },
        None => PrimeSource::Generate {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            pool_target: prime_pool,
        },
    }
}

/// `mpc party`.
#[derive(clap::Args, Debug)]
pub struct PartyArgs {
    /// Party id.
    #[arg(long, env = "MPC_PARTY_ID")]
    pub party_id: String,
    /// sqlx URL of the party's own database.
    #[arg(long, env = "MPC_DATABASE_URL", default_value = "sqlite://party.db")]
    pub database_url: String,
    /// File holding the party's master key (64 hex digits, see `mpc gen-key`).
    #[arg(
        long,
        env = "MPC_MASTER_KEY_FILE",
        required_unless_present = "master_key"
    )]
    pub master_key_file: Option<PathBuf>,
    /// The master key itself (64 hex digits), e.g. from a secret store
    /// through the environment.
    #[arg(
        long,
        env = "MPC_MASTER_KEY",
        hide_env_values = true,
        conflicts_with = "master_key_file"
    )]
    pub master_key: Option<String>,
    /// Coordinator base URLs, comma-separated (tried in turn).
    #[arg(
        long,
        env = "MPC_COORDINATOR_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub coordinator_url: String,
    /// The coordinator's descriptor-signing public key (hex).
    #[arg(long, env = "MPC_COORDINATOR_PUBLIC_KEY")]
    pub coordinator_public_key: String,
    /// Router WebSocket URLs, comma-separated (the next one is used when a
    /// router goes away).
    #[arg(
        long,
        env = "MPC_ROUTER_WS_URL",
        default_value = "ws://127.0.0.1:8081/ws"
    )]
    pub router_ws_url: String,
    /// Print the party's public identity keys as JSON (creating the
    /// identity on first use) and exit, for an operator to enrol them
    /// (`mpc parties enrol`). Prints public keys only.
    #[arg(long)]
    pub print_identity: bool,
    /// Settings shared with `mpc dev`.
    #[command(flatten)]
    pub settings: PartySettings,
    /// INSECURE test data (test builds only).
    #[command(flatten)]
    pub insecure_test_data: super::insecure::TestData,
    /// Which party's test primes (test builds only).
    #[command(flatten)]
    pub insecure_test_index: super::insecure::TestIndex,
    /// Serve Prometheus metrics (`GET /metrics`) and `GET /health` on this
    /// address (a party has no other listener). Off when not given.
    #[arg(long, env = "MPC_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// TLS: the metrics listener's certificate, the CA of coordinators and
    /// routers.
    #[command(flatten)]
    pub tls: super::tls::TlsArgs,
}

impl PartyArgs {
    /// The party's configuration.
    /// Refuses plaintext off loopback (unless --insecure-plaintext): the
    /// coordinators', routers' and database URLs and the metrics listener.
    pub fn check_transport(&self) -> anyhow::Result<()> {
        let tls = &self.tls;
        tls.check_urls(
            "--coordinator-url",
            comma_list(&self.coordinator_url).iter().map(String::as_str),
        )?;
        tls.check_urls(
            "--router-ws-url",
            comma_list(&self.router_ws_url).iter().map(String::as_str),
        )?;
        tls.check_urls("--database-url", [self.database_url.as_str()])?;
        if let Some(addr) = self.metrics_addr {
            tls.check_listener("--metrics-addr", addr)?;
        }
        Ok(())
    }

    /// The party's configuration.
    pub fn into_config(self) -> anyhow::Result<PartyConfig> {
        let master_key = MasterKey::from_bytes(&secret_hex(self.master_key, self.master_key_file)?)
            .map_err(|e| anyhow::anyhow!("master key: {e}"))?;
        let coordinator_public_key: [u8; 32] = hex::decode(self.coordinator_public_key.trim())?
            .try_into()
            .map_err(|_| anyhow::anyhow!("coordinator public key must be 32 bytes"))?;
        Ok(PartyConfig {
            party_id: self.party_id,
            database_url: self.database_url,
            master_key,
            coordinator_urls: comma_list(&self.coordinator_url),
            coordinator_public_key,
            router_ws_urls: comma_list(&self.router_ws_url),
            primes: prime_source(
                self.insecure_test_data.dir().as_ref(),
                self.insecure_test_index.index(),
                self.settings.prime_pool,
            ),
            insecure_test_aux: self.insecure_test_data.dir(),
            limits: self.settings.session_limits(),
            client_tls: Some(self.tls.client_config()?),
        })
    }
}

/// What `mpc party --print-identity` prints: the party id and its public
/// keys, the body of an enrolment.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct PrintedIdentity {
    /// Party id.
    pub party_id: String,
    /// Ed25519 identity key, hex.
    pub ed25519: String,
    /// X25519 key, hex.
    pub x25519: String,
}

/// Runs the party until Ctrl-C (or, with `--print-identity`, prints its
/// public identity and returns).
pub async fn run(args: PartyArgs) -> anyhow::Result<()> {
    args.check_transport()?;
    if args.print_identity {
        let party_id = args.party_id.clone();
        let identity = ServerParty::open(args.into_config()?)
            .await?
            .public_identity();
        let printed = PrintedIdentity {
            party_id,
            ed25519: hex::encode(identity.ed25519),
            x25519: hex::encode(identity.x25519),
        };
        println!("{}", serde_json::to_string(&printed)?);
        return Ok(());
    }
    mpc_telemetry::init();
    let metrics = match args.metrics_addr {
        Some(addr) => Some(serve_metrics(addr, args.tls.server_config()?).await?),
        None => None,
    };
    let party = ServerParty::open(args.into_config()?).await?;
    party.run(shutdown_signal()).await;
    if let Some(task) = metrics {
        task.abort();
    }
    Ok(())
}

/// A TLS or a plain listener.
enum Either<A, B> {
    Left(A),
    Right(B),
}

/// `GET /metrics` (this process's Prometheus series) and `GET /health` on
/// `addr`, for a role without an HTTP listener of its own.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    tls: Option<std::sync::Arc<mpc_tls::ServerConfig>>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/metrics", get(|| async { mpc_telemetry::scrape() }))
        .route(
            "/health",
            get(|| async {
                axum::Json(serde_json::json!({ "service": "party", "status": "healthy" }))
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, tls = tls.is_some(), "party metrics at /metrics");
    let listener = match tls {
        Some(tls) => Either::Left(mpc_tls::TlsListener::new(listener, tls)?),
        None => Either::Right(listener),
    };
    Ok(tokio::spawn(async move {
        let result = match listener {
            Either::Left(tls) => axum::serve(tls, app).await,
            Either::Right(plain) => axum::serve(plain, app).await,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    }))
}
