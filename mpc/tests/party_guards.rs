//! What a server party refuses, end to end through REST (issue #14): a
//! session over its bound (`party_busy`, at once, nobody blamed, the others
//! complete), and, in what a production build does, a key share made from
//! the PUBLIC test data (the session fails with that reason). Runs on
//! SQLite, or on PostgreSQL with `MPC_TEST_DB=postgres`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{parties, random_hash, verify, TempDir};
use mpc::client::Client;
use mpc::dev::DevSystem;
use serde_json::{json, Value};
use server_party::SessionLimits;
use sqlx::Row as _;

async fn keygen(c: &Client) -> Value {
    let s = c
        .run_session(
            "/api/v1/mpc/keygen",
            &json!({ "threshold_n": 3, "threshold_t": 2, "participants": parties(&[1, 2, 3]) }),
            Duration::from_secs(300),
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

/// Starts a full signing by parties 1 and 2; the created session.
async fn start_sign(c: &Client, account: &Value, hash: &[u8; 32]) -> Value {
    let created = c
        .post(
            "/api/v1/mpc/sign",
            &json!({ "account_id": account["account_id"], "message_hash": format!("0x{}", hex::encode(hash)), "participants": parties(&[1, 2]) }),
        )
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    created.body
}

/// Party 1 takes one session at a time (and no refills); four signings
/// with it at once: the first it receives completes with a valid
/// signature, every other fails at once with `party_busy`, blaming nobody,
/// and party 1 recorded none of them; its place is given back afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_over_a_partys_bound_are_refused_at_once_and_the_others_complete() {
    let dir = TempDir::new("busy");
    let mut o = dir.fast(3).await;
    o.party_session_limits = vec![SessionLimits {
        max_sessions: 1,
        max_background_sessions: 0,
    }];
    let sign_timeout = o.sign_timeout;
    let sys = DevSystem::start(o).await.unwrap();
    let c = Client::new(&sys.api_url, &sys.api_key);
    let account = keygen(&c).await;
    let public_key = account["public_key"].as_str().unwrap().to_string();

    let runs: Vec<_> = (0..4)
        .map(|_| {
            let c = Client::new(&sys.api_url, &sys.api_key);
            let account = account.clone();
            tokio::spawn(async move {
                let hash = random_hash();
                let started = Instant::now();
                let created = start_sign(&c, &account, &hash).await;
                let id = created["session_id"].as_str().unwrap().to_string();
                let done = c
                    .wait_session(&id, Duration::from_secs(180), |_| {})
                    .await
                    .unwrap();
                (hash, id, done, started.elapsed())
            })
        })
        .collect();
    let mut completed = 0;
    let mut busy = Vec::new();
    for r in runs {
        let (hash, id, done, took) = r.await.unwrap();
        match done["status"].as_str() {
            Some("completed") => {
                verify(&done["result"]["signature"], &hash, &public_key);
                completed += 1;
            }
            Some("failed") => {
                let e = &done["error"];
                assert_eq!(e["code"], "party_busy", "{done}");
                assert!(
                    e["blamed_party"].is_null(),
                    "being busy blames nobody: {done}"
                );
                assert!(
                    e.get("accusations")
                        .is_none_or(|a| a.as_array().unwrap().is_empty()),
                    "nobody accused: {done}"
                );
                let reason = e["reason"].as_str().unwrap();
                assert!(reason.contains(&DevSystem::party_id(1)), "{reason}");
                // Refused at once, not after waiting out the deadline.
                assert!(
                    took < sign_timeout / 4,
                    "refused after {took:?} (deadline {sign_timeout:?})"
                );
                busy.push(id);
            }
            other => panic!("unexpected {other:?}: {done}"),
        }
    }
    assert!(completed >= 1, "the session party 1 took completes");
    assert!(!busy.is_empty(), "sessions past the bound are refused");
    assert_eq!(completed + busy.len(), 4);
    // Nothing of a refused session is kept at party 1: not even its
    // admission record (the refusal came before it).
    let pool = sys.party(1).unwrap().store().pool().clone();
    for id in &busy {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM admitted_sessions WHERE session_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "a refused session was recorded");
    }
    // The place is given back when a session ends: the next one runs.
    let hash = random_hash();
    let created = start_sign(&c, &account, &hash).await;
    let done = c
        .wait_session(
            created["session_id"].as_str().unwrap(),
            Duration::from_secs(180),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    verify(&done["result"]["signature"], &hash, &public_key);
    sys.shutdown().await;
}

/// A key share made with the PUBLIC test aux info is sealed marked as test
/// data; a party that does not accept test data (what every release build
/// is) refuses to use it, and the signing fails with that reason instead
/// of signing with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_made_from_test_data_is_refused_where_test_data_is_not_accepted() {
    let dir = TempDir::new("testdata");
    let sys = DevSystem::start(dir.fast(3).await).await.unwrap();
    let c = Client::new(&sys.api_url, &sys.api_key);
    let account = keygen(&c).await;
    let account_id = account["account_id"].as_str().unwrap();
    let store = sys.party(1).unwrap().store().clone();
    let (_, provenance) = store.key_share_marked(account_id).await.unwrap().unwrap();
    assert_eq!(provenance, party_core::seal::Provenance::TestData);

    store.set_accept_test_data(false);
    let hash = random_hash();
    let created = start_sign(&c, &account, &hash).await;
    let done = c
        .wait_session(
            created["session_id"].as_str().unwrap(),
            Duration::from_secs(180),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(done["status"], "failed", "{done}");
    let reason = done["error"]["reason"].as_str().unwrap();
    assert!(reason.contains("made from public test data"), "{reason}");
    assert!(reason.contains(&DevSystem::party_id(1)), "{reason}");
    assert!(done
        .get("result")
        .is_none_or(|r| r.get("signature").is_none()));

    // The record is intact: a build for tests signs with it again.
    store.set_accept_test_data(true);
    let created = start_sign(&c, &account, &hash).await;
    let done = c
        .wait_session(
            created["session_id"].as_str().unwrap(),
            Duration::from_secs(180),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    verify(
        &done["result"]["signature"],
        &hash,
        account["public_key"].as_str().unwrap(),
    );
    sys.shutdown().await;
}
