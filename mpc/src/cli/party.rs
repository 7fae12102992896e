//! `mpc party`: a server party's configuration, declared once.

use std::path::PathBuf;

use party_core::seal::MasterKey;
use server_party::{PartyConfig, PrimeSource, ServerParty};

use super::{comma_list, secret_hex, shutdown_signal};

/// The default of `--prime-pool`.
pub const DEFAULT_PRIME_POOL: usize = 2;

/// A server party's settings that `mpc dev` runs its parties with too.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct PartySettings {
    /// Prime sets to keep ready in the sealed pool.
    #[arg(long, env = "MPC_PRIME_POOL", default_value_t = DEFAULT_PRIME_POOL)]
    pub prime_pool: usize,
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
}

impl PartyArgs {
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
        Some(addr) => Some(serve_metrics(addr).await?),
        None => None,
    };
    let party = ServerParty::open(args.into_config()?).await?;
    party.run(shutdown_signal()).await;
    if let Some(task) = metrics {
        task.abort();
    }
    Ok(())
}

/// `GET /metrics` (this process's Prometheus series) and `GET /health` on
/// `addr`, for a role without an HTTP listener of its own.
async fn serve_metrics(addr: std::net::SocketAddr) -> anyhow::Result<tokio::task::JoinHandle<()>> {
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
    tracing::info!(addr = %listener.local_addr()?, "party metrics at /metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    }))
}
