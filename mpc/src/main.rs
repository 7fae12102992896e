//! `mpc`: run the system (`mpc dev`, or one role per subcommand) or call its
//! REST API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use coordinator::{Coordinator, CoordinatorConfig};
use mpc::client::{progress_line, Client};
use mpc::dev::{DevOptions, DevSystem};
use party_core::identity::CoordinatorKey;
use party_core::seal::MasterKey;
use server_party::{PartyConfig, PrimeSource, ServerParty};

#[derive(Parser)]
#[command(name = "mpc", about = "Threshold ECDSA custody service", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Api {
    /// REST API base URL.
    #[arg(long, env = "MPC_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// API key (printed by `mpc dev` on first start, kept in <data-dir>/api-key).
    #[arg(long, env = "MPC_API_KEY", hide_env_values = true)]
    api_key: String,
}

#[derive(Subcommand)]
enum Command {
    /// Router, coordinator and server parties in one process on SQLite.
    Dev {
        /// Data directory.
        #[arg(long, default_value = "mpc-data")]
        data_dir: PathBuf,
        /// REST API address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        api: SocketAddr,
        /// Router address.
        #[arg(long, default_value = "127.0.0.1:8081")]
        router: SocketAddr,
        /// Number of server parties.
        #[arg(long, default_value_t = 3)]
        parties: usize,
        /// INSECURE, dev/test only: use the PUBLIC test primes in this
        /// directory instead of generating primes (skips minutes of work).
        #[arg(long, value_name = "TEST_DATA_DIR")]
        insecure_test_primes: Option<PathBuf>,
        /// Presignatures kept ready per signer set of each account (0: off).
        #[arg(long, default_value_t = 2)]
        presign_pool: usize,
        /// INSECURE, dev/test only: every party group reuses the PUBLIC test
        /// aux info in this directory (keygen is a DKG only).
        #[arg(long, value_name = "TEST_DATA_DIR")]
        insecure_test_aux: Option<PathBuf>,
        /// Serve the web demo at /demo/ from this repository root (holding
        /// web-demo/ and party-wasm/). Default: the current directory, if it
        /// holds the demo.
        #[arg(long, value_name = "REPO_DIR")]
        demo: Option<PathBuf>,
    },
    /// Run the router alone.
    Router {
        /// Listen address.
        #[arg(long, env = "MPC_LISTEN", default_value = "0.0.0.0:8081")]
        listen: SocketAddr,
        /// Shared secret of the internal APIs.
        #[arg(long, env = "MPC_INTERNAL_TOKEN", hide_env_values = true)]
        internal_token: String,
        /// Redis URL: share session state with every router instance using
        /// the same Redis. Without it, state stays in this process.
        #[arg(long, env = "MPC_REDIS_URL")]
        redis_url: Option<String>,
    },
    /// Run the coordinator alone.
    Coordinator {
        /// Listen address.
        #[arg(long, env = "MPC_LISTEN", default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        /// sqlx database URL.
        #[arg(
            long,
            env = "MPC_DATABASE_URL",
            default_value = "sqlite://coordinator.db"
        )]
        database_url: String,
        /// File holding the descriptor-signing key (64 hex digits, see `mpc gen-key`).
        #[arg(
            long,
            env = "MPC_COORDINATOR_KEY_FILE",
            required_unless_present = "signing_key"
        )]
        signing_key_file: Option<PathBuf>,
        /// The descriptor-signing key itself (64 hex digits), e.g. from a
        /// secret store through the environment.
        #[arg(
            long,
            env = "MPC_COORDINATOR_KEY",
            hide_env_values = true,
            conflicts_with = "signing_key_file"
        )]
        signing_key: Option<String>,
        /// An API key to accept (stored hashed).
        #[arg(long, env = "MPC_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// Comma-separated CIDRs allowed to call the REST API (empty: all).
        #[arg(long, env = "MPC_ALLOWLIST", default_value = "")]
        allowlist: String,
        /// Router base URLs, comma-separated (any instance serves any call).
        #[arg(long, env = "MPC_ROUTER_URL", default_value = "http://127.0.0.1:8081")]
        router_url: String,
        /// Shared secret of the internal APIs.
        #[arg(long, env = "MPC_INTERNAL_TOKEN", hide_env_values = true)]
        internal_token: String,
        /// Deadline of a keygen that generates aux info, seconds.
        #[arg(long, env = "MPC_KEYGEN_AUX_TIMEOUT_SECS", default_value_t = 1800)]
        keygen_aux_timeout_secs: u64,
        /// Deadline of a keygen that reuses aux info, seconds.
        #[arg(long, env = "MPC_KEYGEN_TIMEOUT_SECS", default_value_t = 120)]
        keygen_timeout_secs: u64,
        /// Deadline of a signing session, seconds.
        #[arg(long, env = "MPC_SIGN_TIMEOUT_SECS", default_value_t = 120)]
        sign_timeout_secs: u64,
        /// INSECURE, test only: parties use PUBLIC pregenerated aux info, so
        /// keygens skip aux-info generation.
        #[arg(long)]
        insecure_test_aux: bool,
        /// Presignatures kept ready per signer set of each server-only
        /// account (0: off).
        #[arg(long, env = "MPC_PRESIGN_POOL", default_value_t = 2)]
        presign_pool: usize,
        /// Presign sessions running at once, over all coordinator instances.
        #[arg(long, env = "MPC_PRESIGN_CONCURRENCY", default_value_t = 1)]
        presign_concurrency: usize,
    },
    /// Run one server party alone.
    Party {
        /// Party id.
        #[arg(long, env = "MPC_PARTY_ID")]
        party_id: String,
        /// sqlx URL of the party's own database.
        #[arg(long, env = "MPC_DATABASE_URL", default_value = "sqlite://party.db")]
        database_url: String,
        /// File holding the party's master key (64 hex digits, see `mpc gen-key`).
        #[arg(
            long,
            env = "MPC_MASTER_KEY_FILE",
            required_unless_present = "master_key"
        )]
        master_key_file: Option<PathBuf>,
        /// The master key itself (64 hex digits), e.g. from a secret store
        /// through the environment.
        #[arg(
            long,
            env = "MPC_MASTER_KEY",
            hide_env_values = true,
            conflicts_with = "master_key_file"
        )]
        master_key: Option<String>,
        /// Coordinator base URLs, comma-separated (tried in turn).
        #[arg(
            long,
            env = "MPC_COORDINATOR_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        coordinator_url: String,
        /// The coordinator's descriptor-signing public key (hex).
        #[arg(long, env = "MPC_COORDINATOR_PUBLIC_KEY")]
        coordinator_public_key: String,
        /// Router WebSocket URLs, comma-separated (the next one is used when a
        /// router goes away).
        #[arg(
            long,
            env = "MPC_ROUTER_WS_URL",
            default_value = "ws://127.0.0.1:8081/ws"
        )]
        router_ws_url: String,
        /// Shared secret of the internal APIs.
        #[arg(long, env = "MPC_INTERNAL_TOKEN", hide_env_values = true)]
        internal_token: String,
        /// Prime sets to keep ready in the sealed pool.
        #[arg(long, env = "MPC_PRIME_POOL", default_value_t = 2)]
        prime_pool: usize,
        /// INSECURE, test only: PUBLIC test primes and aux info from this
        /// directory (party-core/test-data) instead of generated ones.
        #[arg(long, value_name = "TEST_DATA_DIR")]
        insecure_test_data: Option<PathBuf>,
        /// Which party's test primes to use (0-based), with --insecure-test-data.
        #[arg(long, default_value_t = 0)]
        insecure_test_index: usize,
    },
    /// Benchmark the real system in-process through REST and the router.
    Bench {
        /// Write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Sequential signatures to time.
        #[arg(long, default_value_t = 20)]
        signs: usize,
        /// Signatures in the throughput run.
        #[arg(long, default_value_t = 20)]
        throughput_signs: usize,
        /// Concurrent requests in the throughput run.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Wallets of an existing group to time.
        #[arg(long, default_value_t = 10)]
        keygens: usize,
        /// Skip the cold first keygen (primes generated on demand).
        #[arg(long)]
        skip_cold: bool,
        /// Presignatures per signer set during the sustained run.
        #[arg(long, default_value_t = 4)]
        pool: usize,
        /// Sign requests in the sustained run (pool refilling); 0 skips it.
        #[arg(long, default_value_t = 40)]
        sustained_signs: usize,
        /// Requests per second in the sustained run; 0: `--concurrency` at
        /// a time.
        #[arg(long, default_value_t = 1.0)]
        sustained_rate: f64,
        /// INSECURE, quick runs only: groups use the PUBLIC test aux info in
        /// this directory (no prime or aux-info rows).
        #[arg(long, value_name = "TEST_DATA_DIR")]
        insecure_test_aux: Option<PathBuf>,
    },
    /// Print a new random 256-bit key as hex (master keys, coordinator key).
    GenKey,
    /// Print the public key of a coordinator key file.
    CoordinatorPublicKey {
        /// Key file.
        file: PathBuf,
    },
    /// Create a wallet (distributed keygen) and wait for it.
    Keygen {
        #[command(flatten)]
        api: Api,
        /// Threshold t.
        #[arg(long, short = 't', default_value_t = 2)]
        threshold: u16,
        /// Comma-separated party ids (n = their number).
        #[arg(long, default_value = "server-party-1,server-party-2,server-party-3")]
        parties: String,
        /// How long to wait.
        #[arg(long, default_value_t = 1800)]
        timeout_secs: u64,
    },
    /// Sign a 32-byte hash with t parties of an account and wait for it.
    Sign {
        #[command(flatten)]
        api: Api,
        /// Account id.
        #[arg(long)]
        account: String,
        /// 32-byte message hash, hex (0x optional).
        #[arg(long)]
        hash: String,
        /// Comma-separated signer party ids.
        #[arg(long, default_value = "server-party-1,server-party-2")]
        parties: String,
        /// How long to wait.
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
    },
    /// Show a session.
    Session {
        #[command(flatten)]
        api: Api,
        /// Session id.
        id: String,
    },
    /// List accounts, or show one.
    Accounts {
        #[command(flatten)]
        api: Api,
        /// Account id.
        id: Option<String>,
    },
}

fn participants(list: &str) -> serde_json::Value {
    serde_json::Value::Array(
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|p| serde_json::json!({ "party_id": p, "device_type": "server", "device_id": p }))
            .collect(),
    )
}

async fn create_and_wait(
    api: &Api,
    path: &str,
    body: serde_json::Value,
    timeout: u64,
) -> anyhow::Result<()> {
    let client = Client::new(&api.url, &api.api_key);
    let done = client
        .run_session(path, &body, Duration::from_secs(timeout), |s| {
            eprintln!("{}", progress_line(s))
        })
        .await?;
    println!("{}", serde_json::to_string_pretty(&done)?);
    anyhow::ensure!(
        done["status"] == "completed",
        "session ended {}",
        done["status"]
    );
    Ok(())
}

/// The non-empty, trimmed items of a comma-separated list.
fn comma_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A secret given as hex, either inline (environment) or in a file.
fn secret_hex(
    inline: Option<String>,
    file: Option<PathBuf>,
) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    match (inline, file) {
        (Some(hex_str), _) => {
            let hex_str = zeroize::Zeroizing::new(hex_str);
            Ok(zeroize::Zeroizing::new(
                hex::decode(hex_str.trim()).map_err(|_| anyhow::anyhow!("key must be hex"))?,
            ))
        }
        (None, Some(path)) => read_hex_file(&path),
        (None, None) => anyhow::bail!("a key or a key file is required"),
    }
}

fn read_hex_file(path: &std::path::Path) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?,
    );
    Ok(zeroize::Zeroizing::new(
        hex::decode(text.trim()).with_context(|| format!("{} is not hex", path.display()))?,
    ))
}

async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Dev {
            data_dir,
            api,
            router,
            parties,
            insecure_test_primes,
            presign_pool,
            insecure_test_aux,
            demo,
        } => {
            let mut options = DevOptions::new(data_dir);
            options.presign_pool = presign_pool;
            options.api_addr = api;
            options.router_addr = router;
            options.parties = parties;
            options.insecure_test_primes = insecure_test_primes;
            options.insecure_test_aux = insecure_test_aux;
            options.demo_root = match demo {
                Some(dir) => {
                    anyhow::ensure!(
                        mpc::demo::available(&dir),
                        "--demo {}: no web-demo/static/index.html there",
                        dir.display()
                    );
                    Some(dir)
                }
                None => Some(PathBuf::from(".")).filter(|d| mpc::demo::available(d)),
            };
            let has_demo = options.demo_root.is_some();
            let sys = DevSystem::start(options).await?;
            println!("mpc dev is running");
            println!("  API:     {}", sys.api_url);
            println!("  router:  {}", sys.router_url);
            println!("  coordinator key: {}", sys.coordinator_public_key);
            if has_demo {
                println!("  demo:    {}/demo/", sys.api_url);
            }
            if sys.api_key_is_new {
                println!(
                    "  API key: {}   (shown once; also kept in the data directory's api-key file)",
                    sys.api_key
                );
            } else {
                println!("  API key: in the data directory's api-key file");
            }
            println!(
                "  parties: {}",
                (1..=parties)
                    .map(DevSystem::party_id)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            tokio::signal::ctrl_c().await?;
            eprintln!("shutting down");
            sys.shutdown().await;
        }
        Command::Router {
            listen,
            internal_token,
            redis_url,
        } => {
            let mut config = router::RouterConfig::new(internal_token);
            config.redis_url = redis_url;
            let router = router::Router::new(config)?;
            let listener = tokio::net::TcpListener::bind(listen).await?;
            tracing::info!(addr = %listener.local_addr()?, "router listening");
            router.serve(listener, shutdown_signal()).await?;
        }
        Command::Coordinator {
            listen,
            database_url,
            signing_key_file,
            signing_key,
            api_key,
            allowlist,
            router_url,
            internal_token,
            keygen_aux_timeout_secs,
            keygen_timeout_secs,
            sign_timeout_secs,
            insecure_test_aux,
            presign_pool,
            presign_concurrency,
        } => {
            let key =
                CoordinatorKey::from_secret_bytes(&secret_hex(signing_key, signing_key_file)?)
                    .map_err(|e| anyhow::anyhow!("signing key: {e}"))?;
            tracing::info!(public_key = %hex::encode(key.public()), "coordinator descriptor-signing key");
            let routers = comma_list(&router_url);
            let first = routers.first().cloned().unwrap_or_default();
            let mut config = CoordinatorConfig::new(database_url, key, &first, internal_token);
            config.router_internal_urls = routers;
            config.bootstrap_api_keys = api_key.into_iter().collect();
            config.keygen_aux_timeout = Duration::from_secs(keygen_aux_timeout_secs);
            config.keygen_timeout = Duration::from_secs(keygen_timeout_secs);
            config.sign_timeout = Duration::from_secs(sign_timeout_secs);
            config.insecure_test_aux = insecure_test_aux;
            config.presign_pool = presign_pool;
            config.presign_concurrency = presign_concurrency;
            config.allowlist = allowlist
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().with_context(|| format!("allowlist entry {s}")))
                .collect::<anyhow::Result<_>>()?;
            let c = Coordinator::new(config)?;
            let listener = tokio::net::TcpListener::bind(listen).await?;
            tracing::info!(addr = %listener.local_addr()?, "coordinator listening");
            c.serve(listener, shutdown_signal()).await?;
        }
        Command::Party {
            party_id,
            database_url,
            master_key_file,
            master_key,
            coordinator_url,
            coordinator_public_key,
            router_ws_url,
            internal_token,
            prime_pool,
            insecure_test_data,
            insecure_test_index,
        } => {
            let master_key = MasterKey::from_bytes(&secret_hex(master_key, master_key_file)?)
                .map_err(|e| anyhow::anyhow!("master key: {e}"))?;
            let coordinator_public_key: [u8; 32] = hex::decode(coordinator_public_key.trim())?
                .try_into()
                .map_err(|_| anyhow::anyhow!("coordinator public key must be 32 bytes"))?;
            let party = ServerParty::open(PartyConfig {
                party_id,
                database_url,
                master_key,
                coordinator_urls: comma_list(&coordinator_url),
                coordinator_public_key,
                router_ws_urls: comma_list(&router_ws_url),
                internal_token,
                primes: match &insecure_test_data {
                    Some(dir) => PrimeSource::InsecureTestData {
                        dir: dir.clone(),
                        index: insecure_test_index,
                    },
                    None => PrimeSource::Generate {
                        threads: std::thread::available_parallelism()
                            .map(|n| n.get())
                            .unwrap_or(1),
                        pool_target: prime_pool,
                    },
                },
                insecure_test_aux: insecure_test_data,
            })
            .await?;
            party.run(shutdown_signal()).await;
        }
        Command::Bench {
            json,
            signs,
            throughput_signs,
            concurrency,
            keygens,
            skip_cold,
            pool,
            sustained_signs,
            sustained_rate,
            insecure_test_aux,
        } => {
            let report = mpc::bench::run(mpc::bench::BenchOptions {
                signs,
                throughput_signs,
                concurrency,
                keygens,
                skip_cold,
                pool,
                sustained_signs,
                sustained_rate,
                insecure_test_aux,
            })
            .await?;
            print!("{}", mpc::bench::table(&report));
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
                eprintln!("report written to {}", path.display());
            }
        }
        Command::GenKey => println!("{}", MasterKey::generate().to_hex().as_str()),
        Command::CoordinatorPublicKey { file } => {
            let key = CoordinatorKey::from_secret_bytes(&read_hex_file(&file)?)
                .map_err(|e| anyhow::anyhow!("signing key: {e}"))?;
            println!("{}", hex::encode(key.public()));
        }
        Command::Keygen {
            api,
            threshold,
            parties,
            timeout_secs,
        } => {
            let p = participants(&parties);
            let n = p.as_array().map(Vec::len).unwrap_or(0);
            let body = serde_json::json!({ "threshold_n": n, "threshold_t": threshold, "participants": p });
            create_and_wait(&api, "/api/v1/mpc/keygen", body, timeout_secs).await?;
        }
        Command::Sign {
            api,
            account,
            hash,
            parties,
            timeout_secs,
        } => {
            let body = serde_json::json!({ "account_id": account, "message_hash": hash, "participants": participants(&parties) });
            create_and_wait(&api, "/api/v1/mpc/sign", body, timeout_secs).await?;
        }
        Command::Session { api, id } => {
            let a = Client::new(&api.url, &api.api_key)
                .get(&format!("/api/v1/mpc/sessions/{id}"))
                .await?;
            println!("{}", serde_json::to_string_pretty(&a.body)?);
            anyhow::ensure!(a.status == 200, "HTTP {}", a.status);
        }
        Command::Accounts { api, id } => {
            let path = match id {
                Some(id) => format!("/api/v1/mpc/accounts/{id}"),
                None => "/api/v1/mpc/accounts".to_string(),
            };
            let a = Client::new(&api.url, &api.api_key).get(&path).await?;
            println!("{}", serde_json::to_string_pretty(&a.body)?);
            anyhow::ensure!(a.status == 200, "HTTP {}", a.status);
        }
    }
    Ok(())
}
