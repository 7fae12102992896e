//! The foreground-before-background rows of `mpc bench`: full signing (a
//! bare hash) of a NEW account while its presignature pool refills, beside
//! full signing with nothing else running, measured in the same run.
//!
//! As a new user meets it: a wallet is made, the pool starts refilling for
//! it (`refill_pool` per signer set), and signatures are asked for at once.
//! The first signature starts once a presign session of the new account is
//! running, so the measurement overlaps the refill from its first request.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{json, Value};

use super::{keygen, percentile, sign, BenchOptions};
use crate::client::Client;
use crate::dev::DevSystem;

/// Signer pairs, in turn.
const PAIRS: [[usize; 2]; 3] = [[1, 2], [1, 3], [2, 3]];

/// `sign_full_idle_ms_*` (no refill), then `sign_full_refill_ms_*` on a new
/// account of `group` whose pool refills, and their p50 ratio. The pool is
/// switched off again and its sessions finish before returning.
pub(super) async fn run(
    sys: &DevSystem,
    c: &Client,
    report: &mut Value,
    account: &str,
    group: &[usize],
    options: &BenchOptions,
) -> anyhow::Result<()> {
    let store = sys.coordinator.store();
    eprintln!(
        "full signing, idle ({} signatures)...",
        options.refill_signs
    );
    let mut idle = Vec::new();
    for i in 0..options.refill_signs {
        idle.push(sign(c, account, &PAIRS[i % 3]).await?);
    }

    eprintln!(
        "full signing of a new account while its pool refills ({} per signer set)...",
        options.refill_pool
    );
    let (fresh, _) = keygen(c, group).await?;
    sys.coordinator.set_presign_pool(options.refill_pool);
    let t = Instant::now();
    while store.running_presigns().await? == 0 {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(60),
            "the refill did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut during = Vec::new();
    for i in 0..options.refill_signs {
        during.push(sign(c, &fresh, &PAIRS[i % 3]).await?);
    }
    // How much the refill did while the signatures were measured: the
    // figure means little if it did nothing.
    let stocked = store.presignatures_available(&fresh).await?;
    sys.coordinator.set_presign_pool(0);
    while store.running_presigns().await? > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let idle_p50 = percentile(idle.clone(), 0.5).context("no idle signatures")?;
    let refill_p50 = percentile(during.clone(), 0.5).context("no signatures")?;
    report["sign_full_idle_ms_p50"] = json!(idle_p50);
    report["sign_full_idle_ms_p95"] = json!(percentile(idle, 0.95));
    report["sign_full_refill_ms_p50"] = json!(refill_p50);
    report["sign_full_refill_ms_p95"] = json!(percentile(during, 0.95));
    report["sign_full_refill_ratio"] = json!(refill_p50 / idle_p50);
    report["refill_pool"] = json!(options.refill_pool);
    report["refill_presignatures_made"] = json!(stocked);
    Ok(())
}
