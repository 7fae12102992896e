//! The presignature pool end to end through REST: presignatures are made in
//! the background, a sign request with the message takes one and finishes in
//! one round, each is used exactly once (100 concurrent requests race for a
//! pool of 4), an empty pool falls back to full signing, and a restart keeps
//! the pool and reuses nothing. Every signature is checked with k256 against
//! the digest of the message, with recovery from `v`. Runs on SQLite, or on
//! PostgreSQL with `MPC_TEST_DB=postgres`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{parties, verify, TempDir};
use mpc::client::Client;
use mpc::dev::{DevOptions, DevSystem};
use party_core::descriptor::MessageDigest;
use serde_json::{json, Value};
use sqlx::Row as _;

async fn options(dir: &TempDir, pool: usize) -> DevOptions {
    let mut o = dir.fast(3).await;
    o.presign_pool = pool;
    o.presign_concurrency = 2;
    o
}

async fn keygen(c: &Client) -> Value {
    let s = c
        .run_session(
            "/api/v1/mpc/keygen",
            &json!({ "threshold_n": 3, "threshold_t": 2, "participants": parties(&[1, 2, 3]) }),
            Duration::from_secs(120),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(s["status"], "completed", "{s}");
    let id = s["result"]["account_id"].as_str().unwrap();
    c.get(&format!("/api/v1/mpc/accounts/{id}"))
        .await
        .unwrap()
        .body
}

/// The signer set {1, 2} as the coordinator stores it.
fn set12() -> String {
    format!("{},{}", DevSystem::party_id(1), DevSystem::party_id(2))
}

/// Available presignatures of the signer set {1, 2}.
async fn available(sys: &DevSystem, account_id: &str) -> i64 {
    sys.coordinator
        .store()
        .presignature_stock(account_id, &set12())
        .await
        .unwrap()
        .0
}

/// Waits (polling the database, up to 5 minutes) for `n` presignatures.
async fn wait_for_stock(sys: &DevSystem, account_id: &str, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while available(sys, account_id).await < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "pool never reached {n}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn message(i: usize) -> Vec<u8> {
    format!("pay {i} USDC to alice").into_bytes()
}

async fn sign_message(c: &Client, account: &Value, msg: &[u8], require: bool) -> (u16, Value) {
    let a = c
        .post(
            "/api/v1/mpc/sign",
            &json!({ "account_id": account["account_id"], "message": hex::encode(msg), "digest": "keccak256",
                     "require_presignature": require, "participants": parties(&[1, 2]) }),
        )
        .await
        .unwrap();
    (a.status, a.body)
}

async fn finish(c: &Client, created: &Value) -> Value {
    let id = created["session_id"].as_str().unwrap();
    c.wait_session(id, Duration::from_secs(120), |_| {})
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_presignature_is_used_once_under_100_concurrent_requests() {
    let dir = TempDir::new("race");
    let sys = DevSystem::start(options(&dir, 4).await).await.unwrap();
    let c = Client::new(&sys.api_url, &sys.api_key);
    let account = keygen(&c).await;
    let account_id = account["account_id"].as_str().unwrap().to_string();
    wait_for_stock(&sys, &account_id, 4).await;
    let pool = sys.coordinator.store().pool().clone();
    let before = available(&sys, &account_id).await;

    let requests: Vec<_> = (0..100)
        .map(|i| {
            let c = Client::new(&sys.api_url, &sys.api_key);
            let account = account.clone();
            tokio::spawn(async move { (i, sign_message(&c, &account, &message(i), true).await) })
        })
        .collect();
    let mut won = Vec::new();
    let mut refused = 0;
    for r in requests {
        let (i, (status, body)) = r.await.unwrap();
        match status {
            201 => {
                assert_eq!(body["signing"], "presignature");
                won.push((i, body));
            }
            409 => {
                assert_eq!(body["code"], "no_presignature");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    // Exactly the stock (plus whatever the refill finished meanwhile) won.
    let used: Vec<(String, String)> = sqlx::query(
        "SELECT presignature_id, used_by FROM presignatures WHERE account_id = $1 AND status = 'used'",
    )
    .bind(&account_id)
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(won.len() + refused, 100);
    assert!(won.len() as i64 >= before, "{} won of {before}", won.len());
    assert_eq!(
        used.len(),
        won.len(),
        "one presignature per winning request"
    );
    let ids: HashSet<&String> = used.iter().map(|(p, _)| p).collect();
    let sessions: HashSet<&String> = used.iter().map(|(_, s)| s).collect();
    assert_eq!(ids.len(), used.len(), "no presignature claimed twice");
    assert_eq!(sessions.len(), used.len(), "no session got two");
    for (i, created) in &won {
        let done = finish(&c, created).await;
        assert_eq!(done["status"], "completed", "{done}");
        let hash = MessageDigest::Keccak256.hash(&message(*i));
        verify(
            &done["result"]["signature"],
            &hash,
            account["public_key"].as_str().unwrap(),
        );
    }
    // The parties hold none of the used presignatures any more.
    for k in 1..=2 {
        let store = sys.party(k).unwrap().store();
        for (pid, _) in &used {
            assert!(store
                .take_presignature(pid, &account_id)
                .await
                .unwrap()
                .is_none());
        }
    }
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_pool_falls_back_to_full_signing() {
    let dir = TempDir::new("empty");
    let sys = DevSystem::start(options(&dir, 0).await).await.unwrap();
    let c = Client::new(&sys.api_url, &sys.api_key);
    let account = keygen(&c).await;
    let msg = b"no presignature for this one".to_vec();
    let (status, body) = sign_message(&c, &account, &msg, true).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("no_presignature"))
    );
    let (status, created) = sign_message(&c, &account, &msg, false).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["signing"], "full");
    let done = finish(&c, &created).await;
    assert_eq!(done["status"], "completed", "{done}");
    let hash = MessageDigest::Keccak256.hash(&msg);
    assert_eq!(done["message_hash"], format!("0x{}", hex::encode(hash)));
    verify(
        &done["result"]["signature"],
        &hash,
        account["public_key"].as_str().unwrap(),
    );
    // A hash that is not the digest of the message is refused.
    let bad = c
        .post(
            "/api/v1/mpc/sign",
            &json!({ "account_id": account["account_id"], "message": hex::encode(&msg), "message_hash": hex::encode([7u8; 32]),
                     "participants": parties(&[1, 2]) }),
        )
        .await
        .unwrap();
    assert_eq!(
        (bad.status, bad.body["code"].as_str()),
        (400, Some("invalid_message_hash"))
    );
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_pool_and_reuses_nothing() {
    let dir = TempDir::new("restart");
    let sys = DevSystem::start(options(&dir, 2).await).await.unwrap();
    let c = Client::new(&sys.api_url, &sys.api_key);
    let account = keygen(&c).await;
    let account_id = account["account_id"].as_str().unwrap().to_string();
    wait_for_stock(&sys, &account_id, 2).await;
    // Use one before the restart.
    let (status, first) = sign_message(&c, &account, &message(1), true).await;
    assert_eq!(status, 201, "{first}");
    let done = finish(&c, &first).await;
    assert_eq!(done["status"], "completed", "{done}");
    sys.shutdown().await;

    // Restart without refill: the pool is what was stored.
    let sys = DevSystem::start(options(&dir, 0).await).await.unwrap();
    let c = Client::new(&sys.api_url, &sys.api_key);
    let left = available(&sys, &account_id).await;
    assert!(left >= 1, "the pool survived the restart");
    let held = sys
        .party(1)
        .unwrap()
        .store()
        .presignature_count(&account_id)
        .await
        .unwrap();
    assert!(
        held >= left,
        "party 1 still holds the presignatures ({held} < {left})"
    );
    let mut signed = 0;
    for i in 2..2 + left {
        let msg = message(usize::try_from(i).unwrap());
        let (status, created) = sign_message(&c, &account, &msg, true).await;
        assert_eq!(status, 201, "{created}");
        let done = finish(&c, &created).await;
        assert_eq!(done["status"], "completed", "{done}");
        verify(
            &done["result"]["signature"],
            &MessageDigest::Keccak256.hash(&msg),
            account["public_key"].as_str().unwrap(),
        );
        signed += 1;
    }
    assert_eq!(signed, left);
    // Nothing left to reuse.
    let (status, body) = sign_message(&c, &account, &message(99), true).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("no_presignature")),
        "{body}"
    );
    sys.shutdown().await;
}
