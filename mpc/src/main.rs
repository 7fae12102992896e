//! `mpc`: run the system (`mpc dev`, or one role per subcommand) or call its
//! REST API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mpc::client::{progress_line, Client};
use mpc::dev::{DevOptions, DevSystem};

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
    let created = client.post(path, &body).await?;
    anyhow::ensure!(
        created.status == 201,
        "HTTP {}: {}",
        created.status,
        created.body
    );
    let id = created.body["session_id"]
        .as_str()
        .context("no session_id")?
        .to_string();
    eprintln!("session {id} created");
    let done = client
        .wait_session(&id, Duration::from_secs(timeout), |s| {
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
        } => {
            let mut options = DevOptions::new(data_dir);
            options.api_addr = api;
            options.router_addr = router;
            options.parties = parties;
            options.insecure_test_primes = insecure_test_primes;
            let sys = DevSystem::start(options).await?;
            println!("mpc dev is running");
            println!("  API:     {}", sys.api_url);
            println!("  router:  {}", sys.router_url);
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
