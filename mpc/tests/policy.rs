//! A policy account end to end (issue #13), with real server parties on
//! public test data: keygen with a policy (every party reports its hash),
//! the account shows it, a signing approved by alice (Ed25519) and bob
//! (P-256) is verified with k256, one approval or a reused request id is
//! refused with 403 and no session, and the presignature pool signs with
//! approvals too. The policy change test needs parties that store policies
//! (the server-party side of issue #13).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{parties, verify, TempDir};
use ed25519_dalek::Signer as _;
use mpc::client::Client;
use mpc::dev::{DevOptions, DevSystem};
use party_core::authz::{Operation, Payload, Policy, Statement};
use party_core::descriptor::MessageDigest;
use serde_json::{json, Value};
use sqlx::Row as _;

const WAIT: Duration = Duration::from_secs(180);

struct Approvers {
    alice: ed25519_dalek::SigningKey,
    bob: p256::ecdsa::SigningKey,
    carol: ed25519_dalek::SigningKey,
}

impl Approvers {
    fn new() -> Self {
        Self {
            alice: ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng),
            bob: p256::ecdsa::SigningKey::random(&mut rand_core::OsRng),
            carol: ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng),
        }
    }
    fn policy(&self) -> Value {
        json!({
            "approvers": [
                { "id": "alice", "ed25519": hex::encode(self.alice.verifying_key().as_bytes()) },
                { "id": "bob", "p256": hex::encode(self.bob.verifying_key().to_encoded_point(true).as_bytes()) },
            ],
            "quorum": 2,
            "digests": ["keccak256"],
            "max_signatures_per_hour": 50,
        })
    }
    fn carol_policy(&self) -> Value {
        json!({
            "approvers": [{ "id": "carol", "ed25519": hex::encode(self.carol.verifying_key().as_bytes()) }],
            "quorum": 1,
            "digests": ["keccak256"],
        })
    }
    fn ed(id: &str, key: &ed25519_dalek::SigningKey, st: &[u8]) -> Value {
        json!({ "approver": id, "signature": hex::encode(key.sign(st).to_bytes()) })
    }
    fn alice(&self, st: &[u8]) -> Value {
        Self::ed("alice", &self.alice, st)
    }
    fn carol(&self, st: &[u8]) -> Value {
        Self::ed("carol", &self.carol, st)
    }
    fn bob(&self, st: &[u8]) -> Value {
        use p256::ecdsa::signature::Signer as _;
        let sig: p256::ecdsa::Signature = self.bob.sign(st);
        json!({ "approver": "bob", "signature": hex::encode(sig.to_der().as_bytes()) })
    }
}

fn not_after() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600
}

/// The statement, written out with party-core's encoder by the client.
fn statement(account: &str, payload: Payload<'_>, request_id: &str, not_after: u64) -> Vec<u8> {
    let operation = match payload {
        Payload::Policy(_) => Operation::PolicyChange,
        _ => Operation::Sign,
    };
    Statement {
        account_id: account,
        operation,
        payload,
        derivation_path: &[],
        request_id,
        not_after,
    }
    .to_bytes()
}

fn message_payload(msg: &[u8]) -> Payload<'_> {
    Payload::Message {
        digest: MessageDigest::Keccak256,
        message: msg,
    }
}

async fn options(dir: &TempDir) -> DevOptions {
    let mut o = dir.fast(3).await;
    o.presign_pool = 0;
    o.presign_concurrency = 1;
    o
}

/// A 2-of-3 keygen with `policy`; the account as `GET /accounts/{id}` shows it.
async fn policy_keygen(c: &Client, policy: &Value) -> Value {
    let s = c
        .run_session(
            "/api/v1/mpc/keygen",
            &json!({ "threshold_n": 3, "threshold_t": 2, "participants": parties(&[1, 2, 3]), "policy": policy }),
            WAIT,
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

async fn sessions(sys: &DevSystem) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM sessions")
        .fetch_one(sys.coordinator.store().pool())
        .await
        .unwrap()
        .get(0)
}

async fn sign(c: &Client, body: &Value) -> (u16, Value) {
    let a = c.post("/api/v1/mpc/sign", body).await.unwrap();
    (a.status, a.body)
}

async fn finish(c: &Client, created: &Value) -> Value {
    let id = created["session_id"].as_str().unwrap();
    c.wait_session(id, WAIT, |_| {}).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_account_signs_with_its_quorum_only() {
    let dir = TempDir::new("policy");
    let sys = DevSystem::start(options(&dir).await).await.unwrap();
    let c = Client::new(&sys.api_url, &sys.api_key);
    let a = Approvers::new();
    let account = policy_keygen(&c, &a.policy()).await;
    let expected: Policy = serde_json::from_value(a.policy()).unwrap();
    assert_eq!(
        account["policy_hash"],
        hex::encode(expected.hash()),
        "{account}"
    );
    assert_eq!(account["policy"]["quorum"], 2);
    let id = account["account_id"].as_str().unwrap().to_string();
    let pk = account["public_key"].as_str().unwrap().to_string();

    // Full signing approved by alice (Ed25519) and bob (P-256, DER).
    let msg = b"pay 10 USDC to carol";
    let later = not_after();
    let st = statement(&id, message_payload(msg), "r1", later);
    let body = |approvals: Value, request_id: &str| {
        json!({ "account_id": id, "message": hex::encode(msg), "digest": "keccak256", "participants": parties(&[1, 3]),
                "request_id": request_id, "not_after": later, "approvals": approvals })
    };
    let (status, created) = sign(&c, &body(json!([a.alice(&st), a.bob(&st)]), "r1")).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["signing"], "full");
    let done = finish(&c, &created).await;
    assert_eq!(done["status"], "completed", "{done}");
    verify(
        &done["result"]["signature"],
        &MessageDigest::Keccak256.hash(msg),
        &pk,
    );

    // One approval, or the quorum again under a spent request id: 403, no
    // session.
    let before = sessions(&sys).await;
    let st2 = statement(&id, message_payload(msg), "r2", later);
    let (status, refused) = sign(&c, &body(json!([a.alice(&st2)]), "r2")).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (403, Some("approval_quorum_not_met")),
        "{refused}"
    );
    let (status, refused) = sign(&c, &body(json!([a.alice(&st), a.bob(&st)]), "r1")).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (403, Some("request_id_reused")),
        "{refused}"
    );
    assert_eq!(sessions(&sys).await, before, "nothing created");

    // The pool: a presignature for {1, 2}, then a one-round signing whose
    // descriptor names the message and carries the approvals.
    sys.coordinator.set_presign_pool(1);
    let set = format!("{},{}", DevSystem::party_id(1), DevSystem::party_id(2));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while sys
        .coordinator
        .store()
        .presignature_stock(&id, &set)
        .await
        .unwrap()
        .0
        < 1
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no presignature made"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pool_msg = b"pay 3 USDC to dave";
    let st3 = statement(&id, message_payload(pool_msg), "r3", later);
    let (status, created) = sign(
        &c,
        &json!({ "account_id": id, "message": hex::encode(pool_msg), "participants": parties(&[1, 2]),
                 "require_presignature": true, "request_id": "r3", "not_after": later,
                 "approvals": [a.bob(&st3), a.alice(&st3)] }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["signing"], "presignature");
    let done = finish(&c, &created).await;
    assert_eq!(done["status"], "completed", "{done}");
    verify(
        &done["result"]["signature"],
        &MessageDigest::Keccak256.hash(pool_msg),
        &pk,
    );
    sys.shutdown().await;
}

/// Needs server parties that store the policy at keygen and answer
/// admissions from it (the server-party side of issue #13): every party
/// stores the new policy, after which carol alone approves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_change_is_stored_by_every_party() {
    let dir = TempDir::new("policy-change");
    let sys = DevSystem::start(options(&dir).await).await.unwrap();
    let c = Client::new(&sys.api_url, &sys.api_key);
    let a = Approvers::new();
    let account = policy_keygen(&c, &a.policy()).await;
    let id = account["account_id"].as_str().unwrap().to_string();
    let pk = account["public_key"].as_str().unwrap().to_string();
    let later = not_after();
    let new: Policy = serde_json::from_value(a.carol_policy()).unwrap();
    let st = statement(&id, Payload::Policy(new.hash()), "c1", later);
    let answer = c
        .post(
            &format!("/api/v1/mpc/accounts/{id}/policy"),
            &json!({ "policy": a.carol_policy(), "request_id": "c1", "not_after": later,
                     "approvals": [a.alice(&st), a.bob(&st)] }),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 201, "{}", answer.body);
    let done = finish(&c, &answer.body).await;
    assert_eq!(done["status"], "completed", "{done}");
    let shown = c
        .get(&format!("/api/v1/mpc/accounts/{id}"))
        .await
        .unwrap()
        .body;
    assert_eq!(shown["policy_hash"], hex::encode(new.hash()), "{shown}");

    let msg = b"signed under the new policy";
    let st = statement(&id, message_payload(msg), "r-new", later);
    let (status, created) = sign(
        &c,
        &json!({ "account_id": id, "message": hex::encode(msg), "participants": parties(&[2, 3]),
                 "request_id": "r-new", "not_after": later, "approvals": [a.carol(&st)] }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let done = finish(&c, &created).await;
    assert_eq!(done["status"], "completed", "{done}");
    verify(
        &done["result"]["signature"],
        &MessageDigest::Keccak256.hash(msg),
        &pk,
    );
    sys.shutdown().await;
}
