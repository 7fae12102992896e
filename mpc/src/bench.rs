//! `mpc bench`: the real system in-process (router, coordinator, three server
//! parties, SQLite), measured end to end through the REST API and the
//! WebSocket router on loopback.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::client::Client;
use crate::dev::{DevOptions, DevSystem};

mod approved;
mod refill;

/// Options of `mpc bench`.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Sequential signatures to time.
    pub signs: usize,
    /// Signatures for the throughput run.
    pub throughput_signs: usize,
    /// Concurrent requests in the throughput run.
    pub concurrency: usize,
    /// Keygens of an existing group to time.
    pub keygens: usize,
    /// Skip the cold first keygen (primes generated on demand: minutes).
    pub skip_cold: bool,
    /// Presignatures kept per signer set during the sustained run.
    pub pool: usize,
    /// Sign requests (with the message) in the sustained run, the pool
    /// refilling meanwhile; 0 skips it.
    pub sustained_signs: usize,
    /// Requests per second in the sustained run (open loop: sent on a
    /// schedule, whatever the answers); 0: `concurrency` at a time.
    pub sustained_rate: f64,
    /// INSECURE, quick runs only: every group uses the PUBLIC test aux info
    /// in this directory, so the prime and aux-info rows are skipped.
    pub insecure_test_aux: Option<std::path::PathBuf>,
    /// Also time full and pool signing of a policy account (2 approvers,
    /// quorum 2) with its approvals.
    pub approvals: bool,
    /// Full signatures timed idle and then while a new account's pool
    /// refills (`sign_full_refill_ms_*`); 0 skips the rows.
    pub refill_signs: usize,
    /// Presignatures per signer set the new account's pool refills to.
    pub refill_pool: usize,
    /// Only the refill rows (and the wallet they need): a cheap run.
    pub refill_only: bool,
}

fn percentile(mut v: Vec<f64>, p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(idx).copied()
}

fn participants(ids: &[usize]) -> Value {
    Value::Array(
        ids.iter()
            .map(|k| json!({ "party_id": DevSystem::party_id(*k) }))
            .collect(),
    )
}

async fn run_session(c: &Client, path: &str, body: Value) -> anyhow::Result<Value> {
    let done = c
        .run_session(path, &body, Duration::from_secs(3600), |_| {})
        .await?;
    anyhow::ensure!(
        done["status"] == "completed",
        "session {} ended {}: {}",
        done["session_id"],
        done["status"],
        done["error"]
    );
    Ok(done)
}

/// A 2-of-n wallet of the parties `order`: its account id and the seconds it took.
async fn keygen(c: &Client, order: &[usize]) -> anyhow::Result<(String, f64)> {
    let t = Instant::now();
    let s = run_session(
        c,
        "/api/v1/mpc/keygen",
        json!({ "threshold_n": order.len(), "threshold_t": 2, "participants": participants(order) }),
    )
    .await?;
    let secs = t.elapsed().as_secs_f64();
    let account = s["result"]["account_id"]
        .as_str()
        .context("keygen result without account_id")?;
    Ok((account.to_string(), secs))
}

async fn sign(c: &Client, account: &str, signers: &[usize]) -> anyhow::Result<f64> {
    let mut hash = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut hash);
    let t = Instant::now();
    run_session(
        c,
        "/api/v1/mpc/sign",
        json!({ "account_id": account, "message_hash": hex::encode(hash), "participants": participants(signers) }),
    )
    .await?;
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// Stocks every party's prime pool with one set (party 1's timed alone on
/// one core: the prime cost per party), then times the first wallet of a new
/// group whose aux info uses the pooled primes. Returns the account to sign
/// with (`account`, or the new one).
async fn pooled_keygen(
    sys: &DevSystem,
    c: &Client,
    report: &mut Value,
    account: Option<String>,
) -> anyhow::Result<String> {
    eprintln!("stocking prime pools...");
    let t = Instant::now();
    let first =
        tokio::task::spawn_blocking(|| party_core::primes::PrimeSet::generate_parallel(1, |_| {}))
            .await??;
    report["prime_gen_s_per_party"] = json!(t.elapsed().as_secs_f64());
    sys.party(1)
        .context("party")?
        .store()
        .put_primes(&first)
        .await?;
    let mut rest = tokio::task::JoinSet::new();
    for k in 2..=3usize {
        rest.spawn_blocking(move || {
            (
                k,
                party_core::primes::PrimeSet::generate_parallel(1, |_| {}),
            )
        });
    }
    while let Some(r) = rest.join_next().await {
        let (k, primes) = r?;
        sys.party(k)
            .context("party")?
            .store()
            .put_primes(&primes?)
            .await?;
    }

    // Pooled: another new group (other keygen order), primes from the pool.
    eprintln!("pooled keygen (aux info from pooled primes)...");
    let (pooled, secs) = keygen(c, &[3, 1, 2]).await?;
    report["keygen_pooled_s"] = json!(secs);
    Ok(account.unwrap_or(pooled))
}

/// Sustained signing with the presignature pool refilling: the pool is
/// stocked (`options.pool` per signer set), then `sustained_signs` requests
/// carrying the message go out `sustained_rate` per second (or
/// `concurrency` at a time) over the three signer pairs. A request finds a presignature (one round) or falls back to full
/// signing; the refill competes for the same cores. The pool is switched
/// off again and its running sessions finish before the next phase.
async fn sustained(
    sys: &DevSystem,
    c: &Client,
    report: &mut Value,
    account: &str,
    options: &BenchOptions,
) -> anyhow::Result<()> {
    let store = sys.coordinator.store();
    let want = i64::try_from(options.pool * 3)?;
    eprintln!("stocking the presignature pool ({want})...");
    sys.coordinator.set_presign_pool(options.pool);
    let t = Instant::now();
    while store.presignatures_available(account).await? < want {
        anyhow::ensure!(t.elapsed() < Duration::from_secs(600), "pool not stocked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    report["pool_stock_s"] = json!(t.elapsed().as_secs_f64());
    let rate = options.sustained_rate;
    eprintln!(
        "sustained: {} signatures, {}, pool refilling...",
        options.sustained_signs,
        if rate > 0.0 {
            format!("{rate} per second")
        } else {
            format!("{} concurrent", options.concurrency)
        }
    );
    let permits = if rate > 0.0 {
        tokio::sync::Semaphore::MAX_PERMITS
    } else {
        options.concurrency.max(1)
    };
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(permits));
    let t = Instant::now();
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..options.sustained_signs {
        let (c, account, sem) = (c.clone(), account.to_string(), sem.clone());
        let at = start + Duration::from_secs_f64(if rate > 0.0 { i as f64 / rate } else { 0.0 });
        tasks.spawn(async move {
            tokio::time::sleep_until(at).await;
            let _permit = sem.acquire_owned().await?;
            let message = format!("sustained payment {i}");
            let started = Instant::now();
            let created = c
                .post(
                    "/api/v1/mpc/sign",
                    &json!({ "account_id": account, "message": hex::encode(message.as_bytes()),
                             "digest": "keccak256", "participants": participants(&[[1, 2], [1, 3], [2, 3]][i % 3]) }),
                )
                .await?;
            anyhow::ensure!(created.status == 201, "HTTP {}: {}", created.status, created.body);
            let id = created.body["session_id"].as_str().context("session_id")?;
            let done = c.wait_session(id, Duration::from_secs(600), |_| {}).await?;
            anyhow::ensure!(done["status"] == "completed", "sign ended {}", done["status"]);
            Ok((
                started.elapsed().as_secs_f64() * 1000.0,
                created.body["signing"] == "presignature",
            ))
        });
    }
    let mut latencies = Vec::new();
    let mut hits = 0usize;
    while let Some(r) = tasks.join_next().await {
        let (ms, hit) = r??;
        latencies.push(ms);
        hits += usize::from(hit);
    }
    let secs = t.elapsed().as_secs_f64();
    report["sustained_sigs_per_s"] = json!(options.sustained_signs as f64 / secs);
    report["sustained_pool_hits"] = json!(hits);
    report["sustained_signs"] = json!(options.sustained_signs);
    report["sustained_rate"] = json!(rate);
    report["sustained_ms_p50"] = json!(percentile(latencies.clone(), 0.5));
    report["sustained_ms_p99"] = json!(percentile(latencies, 0.99));
    sys.coordinator.set_presign_pool(0);
    while store.running_presigns().await? > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Makes `n` presignatures for signer set {1, 2} of `account`, one after
/// another, each timed to its session's completion (ms).
async fn presignatures(
    sys: &DevSystem,
    c: &Client,
    account: &str,
    n: usize,
) -> anyhow::Result<Vec<f64>> {
    let acc = sys
        .coordinator
        .store()
        .account(account)
        .await?
        .context("account")?;
    let mut signers: Vec<&coordinator::store::AccountParty> = acc
        .parties
        .iter()
        .filter(|p| p.party_id == DevSystem::party_id(1) || p.party_id == DevSystem::party_id(2))
        .collect();
    signers.sort_by_key(|p| p.keygen_index);
    let mut presign = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let created = sys
            .coordinator
            .create_presign(&acc, &signers)
            .await
            .map_err(|e| anyhow::anyhow!("presign: {e:?}"))?;
        let id = created.row.session_id.to_string();
        let done = c
            .wait_session(&id, Duration::from_secs(600), |_| {})
            .await?;
        anyhow::ensure!(
            done["status"] == "completed",
            "presign ended {}",
            done["status"]
        );
        presign.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(presign)
}

/// Runs the benchmark and returns the report.
pub async fn run(options: BenchOptions) -> anyhow::Result<Value> {
    let dir = std::env::temp_dir().join(format!("mpc-bench-{}", uuid::Uuid::new_v4()));
    let mut dev = DevOptions::new(&dir);
    dev.api_addr = "127.0.0.1:0".parse()?;
    dev.router_addr = "127.0.0.1:0".parse()?;
    dev.prime_pool = 0;
    dev.keygen_timeout = Duration::from_secs(600);
    dev.sign_timeout = Duration::from_secs(600);
    dev.insecure_test_aux = options.insecure_test_aux.clone();
    // The bench measures the protocol, not the limiter: its one key may
    // make as many requests and sessions as the runs ask for.
    dev.limits = coordinator::config::Limits {
        requests: 100_000,
        max_open_sessions: 10_000,
        ..coordinator::config::Limits::default()
    };
    let quick = options.insecure_test_aux.is_some();
    let sys = DevSystem::start(dev).await?;
    let c = Client::new(&sys.api_url, &sys.api_key);
    let mut report = json!({
        "backend": party_core::active_backend(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "parties": 3,
        "threshold": "2-of-3",
        "insecure_test_aux": quick,
    });

    // Cold: a new party group, primes generated on demand.
    let account = if options.skip_cold || quick || options.refill_only {
        report["keygen_cold_s"] = Value::Null;
        None
    } else {
        eprintln!("cold keygen (primes generated now; about a minute with num-bigint)...");
        let (cold, secs) = keygen(&c, &[1, 2, 3]).await?;
        report["keygen_cold_s"] = json!(secs);
        Some(cold)
    };

    let account = if quick {
        report["prime_gen_s_per_party"] = Value::Null;
        report["keygen_pooled_s"] = Value::Null;
        keygen(&c, &[3, 1, 2]).await?.0
    } else {
        pooled_keygen(&sys, &c, &mut report, account).await?
    };

    // Reused aux info: further wallets of an existing group are a DKG only.
    let group = if options.skip_cold || quick || options.refill_only {
        [3, 1, 2]
    } else {
        [1, 2, 3]
    };
    if options.refill_only {
        refill::run(&sys, &c, &mut report, &account, &group, &options).await?;
        sys.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(report);
    }

    if options.sustained_signs > 0 {
        sustained(&sys, &c, &mut report, &account, &options).await?;
    }

    let mut reused = Vec::new();
    for _ in 0..options.keygens {
        reused.push(keygen(&c, &group).await?.1 * 1000.0);
    }
    report["keygen_reused_aux_ms_p50"] = json!(percentile(reused, 0.5));

    eprintln!("full signing...");
    let mut full = Vec::new();
    for i in 0..options.signs {
        let pair = [[1, 2], [1, 3], [2, 3]][i % 3];
        full.push(sign(&c, &account, &pair).await?);
    }
    report["sign_full_ms_p50"] = json!(percentile(full.clone(), 0.5));
    report["sign_full_ms_p99"] = json!(percentile(full, 0.99));

    eprintln!(
        "throughput ({} signatures, {} concurrent)...",
        options.throughput_signs, options.concurrency
    );
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..options.throughput_signs {
        let (c, account, sem) = (c.clone(), account.clone(), sem.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await?;
            sign(&c, &account, &[[1, 2], [1, 3], [2, 3]][i % 3]).await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    report["throughput_sigs_per_s"] =
        json!(options.throughput_signs as f64 / t.elapsed().as_secs_f64());
    report["throughput_concurrency"] = json!(options.concurrency);

    if options.refill_signs > 0 {
        refill::run(&sys, &c, &mut report, &account, &group, &options).await?;
    }

    // Presignatures for signer set {1, 2}, made one after another (each a
    // presign session through the router, timed to its completion), then
    // spent by sign requests that carry the message.
    eprintln!("presignatures ({})...", options.signs);
    let presign = presignatures(&sys, &c, &account, options.signs).await?;
    report["presign_ms_p50"] = json!(percentile(presign, 0.5));
    eprintln!("signing from the pool...");
    let mut pooled = Vec::new();
    for i in 0..options.signs {
        let message = format!("bench payment {i}");
        let t = Instant::now();
        let done = run_session(
            &c,
            "/api/v1/mpc/sign",
            json!({ "account_id": account, "message": hex::encode(message.as_bytes()), "digest": "keccak256",
                    "require_presignature": true, "participants": participants(&[1, 2]) }),
        )
        .await?;
        pooled.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(done["result"]["signature"].is_object(), "no signature");
    }
    report["sign_pool_ms_p50"] = json!(percentile(pooled.clone(), 0.5));
    report["sign_pool_ms_p99"] = json!(percentile(pooled, 0.99));

    if options.approvals {
        approved::run(&sys, &c, &mut report, &group, &options).await?;
    }

    sys.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}

/// The report as a table.
pub fn table(report: &Value) -> String {
    let mut out = format!(
        "backend {} on {} cores, {} through REST + router on loopback\n",
        report["backend"].as_str().unwrap_or("?"),
        report["cores"],
        report["threshold"].as_str().unwrap_or("?")
    );
    for key in [
        "keygen_cold_s",
        "prime_gen_s_per_party",
        "keygen_pooled_s",
        "keygen_reused_aux_ms_p50",
        "sign_full_ms_p50",
        "sign_full_ms_p99",
        "sign_full_idle_ms_p50",
        "sign_full_idle_ms_p95",
        "sign_full_refill_ms_p50",
        "sign_full_refill_ms_p95",
        "sign_full_refill_ratio",
        "refill_presignatures_made",
        "throughput_sigs_per_s",
        "presign_ms_p50",
        "sign_pool_ms_p50",
        "sign_pool_ms_p99",
        "sign_full_approved_ms_p50",
        "sign_full_approved_ms_p99",
        "sign_pool_approved_ms_p50",
        "sign_pool_approved_ms_p99",
        "pool_stock_s",
        "sustained_sigs_per_s",
        "sustained_pool_hits",
        "sustained_ms_p50",
        "sustained_ms_p99",
    ] {
        let v = match report[key].as_f64() {
            Some(v) => format!("{v:.2}"),
            None => "n/a".into(),
        };
        out.push_str(&format!("  {key:<28} {v:>12}\n"));
    }
    out
}
