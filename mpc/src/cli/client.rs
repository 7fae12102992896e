//! The client subcommands (`mpc keygen|sign|session|accounts`) and
//! `mpc bench`.

use std::path::PathBuf;
use std::time::Duration;

use crate::client::{progress_line, Client};

/// Where the REST API is and the key to call it with.
#[derive(clap::Args, Debug)]
pub struct Api {
    /// REST API base URL.
    #[arg(long, env = "MPC_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API key (printed by `mpc dev` on first start, kept in <data-dir>/api-key).
    #[arg(long, env = "MPC_API_KEY", hide_env_values = true)]
    pub api_key: String,
}

/// `mpc keygen`.
#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    #[command(flatten)]
    pub api: Api,
    /// Threshold t.
    #[arg(long, short = 't', default_value_t = 2)]
    pub threshold: u16,
    /// Comma-separated party ids (n = their number).
    #[arg(long, default_value = "server-party-1,server-party-2,server-party-3")]
    pub parties: String,
    /// How long to wait.
    #[arg(long, default_value_t = 1800)]
    pub timeout_secs: u64,
}

/// `mpc sign`.
#[derive(clap::Args, Debug)]
pub struct SignArgs {
    #[command(flatten)]
    pub api: Api,
    /// Account id.
    #[arg(long)]
    pub account: String,
    /// 32-byte message hash, hex (0x optional).
    #[arg(long)]
    pub hash: String,
    /// Comma-separated signer party ids.
    #[arg(long, default_value = "server-party-1,server-party-2")]
    pub parties: String,
    /// How long to wait.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

/// `mpc bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Sequential signatures to time.
    #[arg(long, default_value_t = 20)]
    pub signs: usize,
    /// Signatures in the throughput run.
    #[arg(long, default_value_t = 20)]
    pub throughput_signs: usize,
    /// Concurrent requests in the throughput run.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Wallets of an existing group to time.
    #[arg(long, default_value_t = 10)]
    pub keygens: usize,
    /// Skip the cold first keygen (primes generated on demand).
    #[arg(long)]
    pub skip_cold: bool,
    /// Presignatures per signer set during the sustained run.
    #[arg(long, default_value_t = 4)]
    pub pool: usize,
    /// Sign requests in the sustained run (pool refilling); 0 skips it.
    #[arg(long, default_value_t = 40)]
    pub sustained_signs: usize,
    /// Requests per second in the sustained run; 0: `--concurrency` at
    /// a time.
    #[arg(long, default_value_t = 1.0)]
    pub sustained_rate: f64,
    /// INSECURE (test builds only): groups use the PUBLIC test aux info.
    #[command(flatten)]
    pub insecure_test_data: super::insecure::TestData,
}

fn participants(list: &str) -> serde_json::Value {
    serde_json::Value::Array(
        super::comma_list(list)
            .into_iter()
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

/// `mpc keygen`.
pub async fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let p = participants(&args.parties);
    let n = p.as_array().map(Vec::len).unwrap_or(0);
    let body =
        serde_json::json!({ "threshold_n": n, "threshold_t": args.threshold, "participants": p });
    create_and_wait(&args.api, "/api/v1/mpc/keygen", body, args.timeout_secs).await
}

/// `mpc sign`.
pub async fn sign(args: SignArgs) -> anyhow::Result<()> {
    let body = serde_json::json!({ "account_id": args.account, "message_hash": args.hash, "participants": participants(&args.parties) });
    create_and_wait(&args.api, "/api/v1/mpc/sign", body, args.timeout_secs).await
}

/// `mpc session`.
pub async fn session(api: Api, id: String) -> anyhow::Result<()> {
    let a = Client::new(&api.url, &api.api_key)
        .get(&format!("/api/v1/mpc/sessions/{id}"))
        .await?;
    println!("{}", serde_json::to_string_pretty(&a.body)?);
    anyhow::ensure!(a.status == 200, "HTTP {}", a.status);
    Ok(())
}

/// `mpc accounts`.
pub async fn accounts(api: Api, id: Option<String>) -> anyhow::Result<()> {
    let path = match id {
        Some(id) => format!("/api/v1/mpc/accounts/{id}"),
        None => "/api/v1/mpc/accounts".to_string(),
    };
    let a = Client::new(&api.url, &api.api_key).get(&path).await?;
    println!("{}", serde_json::to_string_pretty(&a.body)?);
    anyhow::ensure!(a.status == 200, "HTTP {}", a.status);
    Ok(())
}

/// `mpc bench`.
pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let report = crate::bench::run(crate::bench::BenchOptions {
        signs: args.signs,
        throughput_signs: args.throughput_signs,
        concurrency: args.concurrency,
        keygens: args.keygens,
        skip_cold: args.skip_cold,
        pool: args.pool,
        sustained_signs: args.sustained_signs,
        sustained_rate: args.sustained_rate,
        insecure_test_aux: args.insecure_test_data.dir(),
    })
    .await?;
    print!("{}", crate::bench::table(&report));
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}
