//! Aux-info agreement end to end (issue #15): coordinator, router and server
//! parties in-process, SQLite or PostgreSQL (`MPC_TEST_DB=postgres`).
//!
//! - Five concurrent first keygens of one new party group, with real aux
//!   info generation (from the PUBLIC test primes, so it takes seconds, not
//!   minutes): exactly one generates, the others are refused with
//!   `aux_info_in_progress` and create nothing; the wallet signs with every
//!   t-subset; then five concurrent keygens of the group reuse its aux info
//!   and each wallet signs (k256 verify + key recovery). `AUX_RACE_ROUNDS`
//!   (default 1) repeats it on further new groups.
//! - A party whose stored aux info was replaced by hand (public parameters
//!   of another party changed): the group's next keygen, which names the
//!   group's agreed aux info, fails with `aux_info_mismatch` and no account
//!   (the party does not hold the named aux info); the group is listed as
//!   inconsistent and its later keygens are refused; the existing wallet
//!   still signs. Then the repair: an aux-info session
//!   (`POST /admin/aux-groups/{group}/regenerate`, operator keys only, one
//!   at a time) gives every party new aux info; the group is usable again,
//!   a new wallet signs with every 2-subset, the old wallet still signs, and
//!   no party's stored aux info was replaced.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{parties, random_hash, verify, TempDir};
use mpc::client::Client;
use mpc::dev::DevSystem;
use serde_json::{json, Value};
use sqlx::Row as _;

fn client(sys: &DevSystem) -> Client {
    Client::new(&sys.api_url, &sys.api_key)
}

fn keygen_body(ids: &[usize]) -> Value {
    json!({ "threshold_n": ids.len(), "threshold_t": 2, "participants": parties(ids) })
}

async fn wait(c: &Client, id: &str, secs: u64) -> Value {
    c.wait_session(id, Duration::from_secs(secs), |_| {})
        .await
        .unwrap()
}

async fn account_of(c: &Client, s: &Value) -> Value {
    assert_eq!(s["status"], "completed", "{s}");
    let id = s["result"]["account_id"].as_str().unwrap();
    let a = c.get(&format!("/api/v1/mpc/accounts/{id}")).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

/// Signs through REST; the signature is checked with k256.
async fn sign_and_verify(c: &Client, account: &Value, ids: &[usize]) {
    let hash = random_hash();
    let created = c
        .post(
            "/api/v1/mpc/sign",
            &json!({ "account_id": account["account_id"], "message_hash": format!("0x{}", hex::encode(hash)), "participants": parties(ids) }),
        )
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let s = wait(c, created.body["session_id"].as_str().unwrap(), 300).await;
    assert_eq!(s["status"], "completed", "{ids:?}: {s}");
    verify(
        &s["result"]["signature"],
        &hash,
        account["public_key"].as_str().unwrap(),
    );
}

/// Every 2-subset of `ids`.
fn pairs(ids: &[usize]) -> Vec<[usize; 2]> {
    let mut out = Vec::new();
    for (k, a) in ids.iter().enumerate() {
        for b in &ids[k + 1..] {
            out.push([*a, *b]);
        }
    }
    out
}

/// Five keygens of `ids` at once; the answers.
async fn five_keygens(c: &Client, ids: &[usize]) -> Vec<mpc::client::Answer> {
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let c = c.clone();
            let body = keygen_body(ids);
            tokio::spawn(async move { c.post("/api/v1/mpc/keygen", &body).await.unwrap() })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn count(sys: &DevSystem, table: &str) -> i64 {
    sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(sys.coordinator.store().pool())
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_keygens_of_a_group_agree_on_aux_info_and_sign() {
    let rounds: usize = std::env::var("AUX_RACE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .clamp(1, 3);
    let dir = TempDir::new("auxrace");
    let mut o = dir.fast(5).await;
    // Real aux info generation (test primes), decided by the coordinator.
    o.insecure_test_aux = None;
    o.keygen_aux_timeout = Duration::from_secs(600);
    let sys = DevSystem::start(o).await.unwrap();
    let c = client(&sys);
    let groups: [[usize; 3]; 3] = [[1, 2, 3], [1, 2, 4], [3, 4, 5]];
    for (round, ids) in groups.iter().take(rounds).enumerate() {
        let started = std::time::Instant::now();
        let sessions_before = count(&sys, "sessions").await;
        let answers = five_keygens(&c, ids).await;
        let created: Vec<&Value> = answers
            .iter()
            .filter(|a| a.status == 201)
            .map(|a| &a.body)
            .collect();
        for a in answers.iter().filter(|a| a.status != 201) {
            assert_eq!(a.status, 409, "{}", a.body);
            assert_eq!(a.body["code"], "aux_info_in_progress", "{}", a.body);
        }
        assert_eq!(created.len(), 1, "one keygen generates: {answers:?}");
        assert_eq!(
            count(&sys, "sessions").await,
            sessions_before + 1,
            "nothing created for a refusal"
        );
        let s = wait(&c, created[0]["session_id"].as_str().unwrap(), 600).await;
        assert_eq!(s["generates_aux_info"], true, "{s}");
        let first = account_of(&c, &s).await;
        for p in pairs(ids) {
            sign_and_verify(&c, &first, &p).await;
        }

        // The group has its aux info: five keygens at once all reuse it.
        let answers = five_keygens(&c, ids).await;
        let mut wallets = Vec::new();
        for a in &answers {
            assert_eq!(a.status, 201, "{}", a.body);
            let s = wait(&c, a.body["session_id"].as_str().unwrap(), 300).await;
            assert_eq!(s["generates_aux_info"], false, "{s}");
            wallets.push(account_of(&c, &s).await);
        }
        // Each wallet signs; together they cover every t-subset (the first
        // wallet signed with all of them above).
        let subsets = pairs(ids);
        for (k, w) in wallets.iter().enumerate() {
            sign_and_verify(&c, w, &subsets[k % subsets.len()]).await;
        }
        eprintln!(
            "round {}: group {ids:?}: 1 created + {} refused (aux_info_in_progress), then 5/5 reused; {} signatures verified; {:.1} s",
            round + 1,
            answers.len() - 1,
            subsets.len() + wallets.len(),
            started.elapsed().as_secs_f64()
        );
    }
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_holding_other_aux_info_is_detected_and_its_group_refused() {
    let dir = TempDir::new("auxplant");
    let sys = DevSystem::start(dir.fast(3).await).await.unwrap();
    let c = client(&sys);
    let ids = [1, 2, 3];
    let created = c
        .post("/api/v1/mpc/keygen", &keygen_body(&ids))
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let s = wait(&c, created.body["session_id"].as_str().unwrap(), 120).await;
    let wallet = account_of(&c, &s).await;

    // Plant: party 3's stored aux info replaced by hand by aux info whose
    // public part differs (two other parties' ring-Pedersen `s` swapped: it
    // still validates), as a party that kept another run's aux info would.
    let store = sys.party(3).unwrap().store();
    let group: String = sqlx::query("SELECT group_id FROM aux_infos")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0);
    let aux = store.aux_info(&group).await.unwrap().unwrap();
    let before = party_core::aux_fingerprint::aux_fingerprint(&aux);
    let mut dirty = aux.into_inner();
    let (a, b) = dirty.pedersen_params.split_at_mut(1);
    std::mem::swap(&mut a[0].s, &mut b[0].s);
    let planted = party_core::cggmp24::key_share::Validate::validate(dirty)
        .map_err(|e| e.into_error())
        .expect("still valid aux info");
    assert_ne!(
        party_core::aux_fingerprint::aux_fingerprint(&planted),
        before
    );
    sqlx::query("DELETE FROM aux_infos WHERE group_id = $1")
        .bind(&group)
        .execute(store.pool())
        .await
        .unwrap();
    store.put_aux_info(&group, &planted).await.unwrap();

    // The group's next keygen names the group's agreed aux info, which
    // party 3 no longer holds: it fails the keygen before its DKG.
    let accounts = count(&sys, "accounts").await;
    let created = c
        .post("/api/v1/mpc/keygen", &keygen_body(&ids))
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let s = wait(&c, created.body["session_id"].as_str().unwrap(), 120).await;
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(s["error"]["code"], "aux_info_mismatch", "{s}");
    assert_eq!(count(&sys, "accounts").await, accounts, "no account");

    // Detected and listed; the group's keygens are refused, nothing made.
    let listed = c
        .get("/api/v1/mpc/admin/aux-groups?inconsistent=true")
        .await
        .unwrap();
    assert_eq!(listed.status, 200, "{}", listed.body);
    let groups = listed.body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{}", listed.body);
    assert_eq!(groups[0]["group_id"], group.as_str());
    assert_eq!(groups[0]["state"], "inconsistent");
    let sessions = count(&sys, "sessions").await;
    let refused = c
        .post("/api/v1/mpc/keygen", &keygen_body(&ids))
        .await
        .unwrap();
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.body["code"], "aux_info_inconsistent");
    assert_eq!(count(&sys, "sessions").await, sessions, "nothing created");

    // The wallet made before carries its own (agreed) aux info: it signs.
    sign_and_verify(&c, &wallet, &[1, 3]).await;

    // The repair runs real aux info generation (about a minute on a busy
    // 2-core host): on SQLite only. On PostgreSQL its store paths are
    // covered by coordinator/tests/aux_agreement.rs and the party store's
    // aux tests.
    if std::env::var("MPC_TEST_DB").as_deref() == Ok("postgres") {
        sys.shutdown().await;
        return;
    }

    // Repair. Refused first: a key that is admin of another tenant (not
    // the operator), and an unknown group; nothing created.
    let other = c
        .post(
            "/api/v1/mpc/admin/keys",
            &json!({ "name": "tenant admin", "scopes": ["read", "keygen", "sign", "admin"], "tenant": "acme" }),
        )
        .await
        .unwrap();
    assert_eq!(other.status, 201, "{}", other.body);
    let acme = Client::new(&sys.api_url, other.body["key"].as_str().unwrap());
    let regenerate = format!("/api/v1/mpc/admin/aux-groups/{group}/regenerate");
    let sessions = count(&sys, "sessions").await;
    let forbidden = acme.post(&regenerate, &json!({})).await.unwrap();
    assert_eq!(forbidden.status, 403, "{}", forbidden.body);
    let unknown = c
        .post(
            &format!(
                "/api/v1/mpc/admin/aux-groups/{}/regenerate",
                "ab".repeat(32)
            ),
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(count(&sys, "sessions").await, sessions, "nothing created");

    // The operator's repair; a second one while it runs is refused.
    let started = c.post(&regenerate, &json!({})).await.unwrap();
    assert_eq!(started.status, 201, "{}", started.body);
    let again = c.post(&regenerate, &json!({})).await.unwrap();
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.body["code"], "aux_info_in_progress");
    let repaired = wait(&c, started.body["session_id"].as_str().unwrap(), 300).await;
    assert_eq!(repaired["status"], "completed", "{repaired}");
    assert_eq!(repaired["session_type"], "aux_info", "{repaired}");
    let fingerprint = repaired["result"]["aux_fingerprint"].as_str().unwrap();
    assert_eq!(repaired["result"]["group_id"], group.as_str());

    // Every party keeps the new aux info beside its first one (party 3's
    // planted row is still there: nothing is replaced).
    let fp: [u8; 32] = hex::decode(fingerprint).unwrap().try_into().unwrap();
    for k in 1..=3 {
        let store = sys.party(k).unwrap().store();
        let named = store.aux_info_named(&group, &fp).await.unwrap().unwrap();
        assert_eq!(party_core::aux_fingerprint::aux_fingerprint(&named), fp);
    }
    let kept = store.aux_info(&group).await.unwrap().unwrap();
    assert_eq!(
        party_core::aux_fingerprint::aux_fingerprint(&kept),
        party_core::aux_fingerprint::aux_fingerprint(&planted)
    );

    // Listed ready with the new fingerprint; the group makes wallets again.
    let listed = c.get("/api/v1/mpc/admin/aux-groups").await.unwrap();
    let entry = listed.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group_id"] == group.as_str())
        .cloned()
        .unwrap();
    assert_eq!(entry["state"], "ready", "{}", listed.body);
    assert_eq!(entry["fingerprint"], fingerprint, "{}", listed.body);
    let created = c
        .post("/api/v1/mpc/keygen", &keygen_body(&ids))
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    let s = wait(&c, created.body["session_id"].as_str().unwrap(), 120).await;
    let repaired_wallet = account_of(&c, &s).await;
    for pair in pairs(&ids) {
        sign_and_verify(&c, &repaired_wallet, &pair).await;
    }
    // The wallet from before the plant still signs.
    sign_and_verify(&c, &wallet, &[2, 3]).await;
    sys.shutdown().await;
}
