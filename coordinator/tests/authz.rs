//! Account policies and approvals at the coordinator (issue #13), through
//! `app()` with the fake router: a malformed policy or approval is a 400, an
//! approval the parties would refuse a 403 with their code, and neither
//! creates a session, spends a request id or invites a party; the statement
//! endpoint answers party-core's bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::approvals::{in_secs, policy_of, sign_statement, Approvers};
use common::{parties, setup, TestApp};
use party_core::authz::{authorize, statement_of, Operation, Payload, Statement};
use party_core::descriptor::{MessageDigest, SessionKind};
use serde_json::{json, Value};

/// Sessions, accounts, spent request ids and invitations: what a refused
/// request must leave as it was.
async fn footprint(t: &TestApp) -> (i64, i64, i64, usize) {
    (
        t.count("sessions").await,
        t.count("accounts").await,
        t.count("approval_requests").await,
        t.router.calls().invited.len(),
    )
}

#[tokio::test]
async fn a_malformed_policy_is_a_400_and_creates_nothing() {
    let Some(t) = setup(|_| {}).await else { return };
    let a = Approvers::new();
    let good = a.policy();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut p = good.clone();
        f(&mut p);
        p
    };
    let alice_key = good["approvers"][0]["ed25519"].clone();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "quorum 0",
            with(&|p| p["quorum"] = json!(0)),
            "invalid_policy",
        ),
        (
            "quorum above the approvers",
            with(&|p| p["quorum"] = json!(3)),
            "invalid_policy",
        ),
        (
            "no approvers",
            with(&|p| p["approvers"] = json!([])),
            "invalid_policy",
        ),
        (
            "an approver with two keys",
            with(&|p| p["approvers"][1]["ed25519"] = alice_key.clone()),
            "invalid_policy",
        ),
        (
            "an approver without a key",
            with(&|p| p["approvers"][1] = json!({ "id": "bob" })),
            "invalid_policy",
        ),
        (
            "an unknown key type",
            with(&|p| p["approvers"][1] = json!({ "id": "bob", "rsa": "00" })),
            "invalid_json",
        ),
        (
            "a bad Ed25519 key encoding",
            with(&|p| p["approvers"][0]["ed25519"] = json!("zz".repeat(32))),
            "invalid_policy",
        ),
        (
            "a short Ed25519 key",
            with(&|p| p["approvers"][0]["ed25519"] = json!("ab".repeat(31))),
            "invalid_policy",
        ),
        (
            "a P-256 key off the curve",
            with(&|p| p["approvers"][1]["p256"] = json!(format!("04{}", "01".repeat(64)))),
            "invalid_policy",
        ),
        (
            "the same approver twice",
            with(&|p| p["approvers"][1] = p["approvers"][0].clone()),
            "invalid_policy",
        ),
        (
            "a bad approver id",
            with(&|p| p["approvers"][0]["id"] = json!("al ice")),
            "invalid_policy",
        ),
        (
            "nothing may be signed",
            with(&|p| p["digests"] = json!([])),
            "invalid_policy",
        ),
        (
            "a zero rate",
            with(&|p| p["max_signatures_per_hour"] = json!(0)),
            "invalid_policy",
        ),
        (
            "an unknown digest",
            with(&|p| p["digests"] = json!(["md5"])),
            "invalid_json",
        ),
    ];
    let before = footprint(&t).await;
    for (what, policy, code) in cases {
        let (status, body) = t
            .post(
                "/api/v1/mpc/keygen",
                &json!({ "threshold_n": 3, "threshold_t": 2, "participants": parties(&[1, 2, 3]), "policy": policy }),
            )
            .await;
        assert_eq!(
            (status.as_u16(), body["code"].as_str()),
            (400, Some(code)),
            "{what}: {body}"
        );
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}"
        );
    }
    assert_eq!(footprint(&t).await, before, "nothing created");
}

#[tokio::test]
async fn a_policy_account_shows_the_policy_every_party_reported() {
    let Some(t) = setup(|_| {}).await else { return };
    let a = Approvers::new();
    let account = t.policy_account(&a.policy()).await;
    let expected = policy_of(&a.policy());
    let (status, view) = t.get(&format!("/api/v1/mpc/accounts/{account}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["policy_hash"], hex::encode(expected.hash()));
    assert_eq!(view["policy"]["quorum"], 2);
    assert_eq!(view["policy"]["digests"], json!(["keccak256"]));
    assert_eq!(view["policy"]["max_signatures_per_hour"], 100);
    assert_eq!(view["policy"]["approvers"][0]["id"], "alice");
    // bob's key was given uncompressed and is kept compressed (33 bytes).
    let bob = view["policy"]["approvers"][1]["p256"].as_str().unwrap();
    assert_eq!(
        bob,
        hex::encode(a.bob.verifying_key().to_encoded_point(true).as_bytes())
    );
    let (_, list) = t.get("/api/v1/mpc/accounts").await;
    assert_eq!(list["accounts"][0]["policy_hash"], view["policy_hash"]);
    // An account without a policy shows none.
    let plain = t.account().await;
    assert!(
        plain.get("policy").is_none() && plain.get("policy_hash").is_none(),
        "{plain}"
    );
}

#[tokio::test]
async fn a_keygen_fails_naming_the_party_that_reported_another_policy_hash() {
    use common::approvals::random_public_key;
    use common::signed_report;
    use party_core::wire::ReportBody;
    let Some(t) = setup(|_| {}).await else { return };
    let a = Approvers::new();
    let (status, created) = t
        .post(
            "/api/v1/mpc/keygen",
            &json!({ "threshold_n": 3, "threshold_t": 2, "participants": parties(&[1, 2, 3]), "policy": a.policy() }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let sid = uuid::Uuid::parse_str(created["session_id"].as_str().unwrap()).unwrap();
    let good = policy_of(&a.policy()).hash();
    let pk = random_public_key();
    let hashes = [Some(good), None, Some(good)];
    for (pos, h) in hashes.into_iter().enumerate() {
        let body = ReportBody::KeygenResult {
            public_key: pk,
            policy_hash: h,
            aux_fingerprint: Some(common::TEST_AUX_FINGERPRINT),
        };
        let (status, b) = t
            .report(&signed_report(sid, pos as u16, body, &t.servers[pos]))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{b}");
    }
    let (_, s) = t.get(&format!("/api/v1/mpc/sessions/{sid}")).await;
    assert_eq!(s["status"], "failed", "{s}");
    let reason = s["error"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("server-party-2 reported policy hash none"),
        "{reason}"
    );
    assert_eq!(
        s["error"]["blamed_party"],
        Value::Null,
        "a reporter, not a culprit"
    );
    assert_eq!(t.count("accounts").await, 0);
}

/// Each approval the parties would refuse is refused by the coordinator
/// first, with the party's code, and nothing is created or spent; then the
/// quorum signs, and the descriptor carries exactly what every party checks.
#[tokio::test]
async fn sign_approvals_are_checked_before_anything_is_created() {
    let Some(t) = setup(|_| {}).await else { return };
    let a = Approvers::new();
    let account = t.policy_account(&a.policy()).await;
    let msg = b"pay 10 USDC to carol";
    let m = hex::encode(msg);
    let later = in_secs(600);
    let st = sign_statement(&account, msg, "r1", later);
    let other = sign_statement(&account, b"pay 10000 USDC to mallory", "r1", later);
    let body = |approvals: Value| {
        json!({ "account_id": account, "message": m, "digest": "keccak256", "participants": parties(&[1, 2]),
                "request_id": "r1", "not_after": later, "approvals": approvals })
    };
    let expired = in_secs(0) - 10;
    let st_expired = sign_statement(&account, msg, "r1", expired);
    let hash = format!("0x{}", hex::encode(MessageDigest::Keccak256.hash(msg)));
    let bare_st = Statement {
        account_id: &account,
        operation: Operation::Sign,
        payload: Payload::Hash(&MessageDigest::Keccak256.hash(msg)),
        derivation_path: &[],
        request_id: "r1",
        not_after: later,
    }
    .to_bytes();
    let mut short = a.alice(&st);
    short["signature"] = json!(&short["signature"].as_str().unwrap()[2..]);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "no approvals",
            json!({ "account_id": account, "message": m, "participants": parties(&[1, 2]) }),
            403,
            "approval_required",
        ),
        (
            "one approval",
            body(json!([a.alice(&st)])),
            403,
            "approval_quorum_not_met",
        ),
        (
            "the same approver twice",
            body(json!([a.alice(&st), a.alice(&st)])),
            403,
            "duplicate_approval",
        ),
        (
            "an approver not in the policy",
            body(json!([a.alice(&st), a.carol(&st)])),
            403,
            "unknown_approver",
        ),
        (
            "an approval of another message",
            body(json!([a.alice(&st), a.bob(&other, true)])),
            403,
            "bad_approval_signature",
        ),
        (
            "an approval for another account",
            body(json!([
                a.alice(&st),
                a.bob(&sign_statement("another-account", msg, "r1", later), false)
            ])),
            403,
            "bad_approval_signature",
        ),
        (
            "expired approvals",
            json!({ "account_id": account, "message": m, "participants": parties(&[1, 2]), "request_id": "r1",
                    "not_after": expired, "approvals": [a.alice(&st_expired), a.bob(&st_expired, true)] }),
            403,
            "approval_expired",
        ),
        (
            "a bare hash",
            json!({ "account_id": account, "message_hash": hash, "participants": parties(&[1, 2]), "request_id": "r1",
                    "not_after": later, "approvals": [a.alice(&bare_st), a.bob(&bare_st, true)] }),
            403,
            "bare_hash_not_allowed",
        ),
        (
            "a digest the policy does not allow",
            json!({ "account_id": account, "message": m, "digest": "sha256", "participants": parties(&[1, 2]),
                    "request_id": "r1", "not_after": later, "approvals": [a.alice(&st), a.bob(&st, true)] }),
            403,
            "digest_not_allowed",
        ),
        (
            "a signature that is not hex",
            body(json!([a.alice(&st), { "approver": "bob", "signature": "zz" }])),
            400,
            "malformed_approval",
        ),
        (
            "an Ed25519 signature of 63 bytes",
            body(json!([short, a.bob(&st, true)])),
            400,
            "malformed_approval",
        ),
        (
            "a P-256 signature neither r || s nor DER",
            body(json!([a.alice(&st), { "approver": "bob", "signature": "30".repeat(40) }])),
            400,
            "malformed_approval",
        ),
        (
            "too many approvals",
            body(Value::Array((0..17).map(|_| a.alice(&st)).collect())),
            400,
            "malformed_approval",
        ),
        (
            "approvals without a request id",
            json!({ "account_id": account, "message": m, "participants": parties(&[1, 2]), "not_after": later,
                    "approvals": [a.alice(&st), a.bob(&st, true)] }),
            400,
            "malformed_approval",
        ),
        (
            "a request id with a space",
            json!({ "account_id": account, "message": m, "participants": parties(&[1, 2]), "request_id": "r 1",
                    "not_after": later, "approvals": [a.alice(&st), a.bob(&st, true)] }),
            400,
            "malformed_approval",
        ),
    ];
    let before = footprint(&t).await;
    for (what, req, status, code) in cases {
        let (s, b) = t.post("/api/v1/mpc/sign", &req).await;
        assert_eq!(
            (s.as_u16(), b["code"].as_str()),
            (status, Some(code)),
            "{what}: {b}"
        );
        assert_eq!(footprint(&t).await, before, "{what}: nothing created");
    }

    // The quorum: alice (Ed25519) and bob (P-256, r || s).
    let (s, created) = t
        .post(
            "/api/v1/mpc/sign",
            &body(json!([a.alice(&st), a.bob(&st, false)])),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["signing"], "full");
    let d = t.last_descriptor();
    assert!(matches!(d.kind, SessionKind::Sign { .. }));
    let auth = d.authorization.as_ref().unwrap();
    assert_eq!(auth.message.as_ref().unwrap().message, msg);
    // What each party will check passes on the invited descriptor.
    let policy = policy_of(&a.policy());
    let approved = authorize(&d, &policy, in_secs(0)).unwrap().unwrap();
    assert_eq!((approved.request_id.as_str(), approved.signs), ("r1", true));
    assert_eq!(t.count("approval_requests").await, 1);

    // The same request id again, with fresh valid approvals: refused.
    let before = footprint(&t).await;
    let (s, b) = t
        .post(
            "/api/v1/mpc/sign",
            &body(json!([a.alice(&st), a.bob(&st, true)])),
        )
        .await;
    assert_eq!(
        (s.as_u16(), b["code"].as_str()),
        (403, Some("request_id_reused")),
        "{b}"
    );
    assert_eq!(footprint(&t).await, before);
}

/// An account without a policy signs as before, approvals or not.
#[tokio::test]
async fn an_account_without_a_policy_needs_no_approvals() {
    let Some(t) = setup(|_| {}).await else { return };
    let account = t.account().await;
    let acc = account["account_id"].as_str().unwrap();
    let (s, b) = t
        .post(
            "/api/v1/mpc/sign",
            &json!({ "account_id": acc, "message_hash": format!("0x{}", "ab".repeat(32)), "participants": parties(&[1, 3]) }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert!(t.last_descriptor().authorization.is_none());
}

async fn statement(t: &TestApp, v: &Value) -> (StatusCode, Value) {
    t.post("/api/v1/mpc/approvals/statement", v).await
}

/// The statement endpoint answers the bytes of party-core's encoder, which
/// are the bytes the parties verify the approvals over.
#[tokio::test]
async fn the_statement_endpoint_answers_what_the_parties_verify() {
    let Some(t) = setup(|_| {}).await else { return };
    let a = Approvers::new();
    let account = t.policy_account(&a.carol_policy()).await;
    let later = in_secs(600);
    let msg = b"pay 1";
    let hash = MessageDigest::Keccak256.hash(msg);
    let message_req = json!({ "account_id": account, "message": hex::encode(msg), "participants": parties(&[1, 2]),
                              "request_id": "s1", "not_after": later });
    let (s, b) = statement(&t, &message_req).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["version"], 1);
    let st = hex::decode(b["statement"].as_str().unwrap()).unwrap();
    assert_eq!(st, sign_statement(&account, msg, "s1", later));
    // The bare hash (0x-prefixed) names the hash.
    let hash_req = json!({ "account_id": account, "message_hash": format!("0x{}", hex::encode(hash)),
                           "participants": parties(&[1, 2]), "request_id": "s2", "not_after": later });
    let (s, b) = statement(&t, &hash_req).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let bare = hex::decode(b["statement"].as_str().unwrap()).unwrap();
    let expected = Statement {
        account_id: &account,
        operation: Operation::Sign,
        payload: Payload::Hash(&hash),
        derivation_path: &[],
        request_id: "s2",
        not_after: later,
    };
    assert_eq!(bare, expected.to_bytes());

    // The session made from the same request verifies over those bytes.
    for (req, st) in [(message_req, &st), (hash_req, &bare)] {
        let mut req = req;
        req["approvals"] = json!([a.carol(st)]);
        let (s, b) = t.post("/api/v1/mpc/sign", &req).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let d = t.last_descriptor();
        let of = statement_of(&d, &policy_of(&a.carol_policy()))
            .unwrap()
            .unwrap();
        assert_eq!(&of.to_bytes(), st);
    }

    // A policy change names the new policy's hash.
    let (s, b) = statement(&t, &json!({ "account_id": account, "policy": a.policy(), "request_id": "p1", "not_after": later })).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let change = Statement {
        account_id: &account,
        operation: Operation::PolicyChange,
        payload: Payload::Policy(policy_of(&a.policy()).hash()),
        derivation_path: &[],
        request_id: "p1",
        not_after: later,
    };
    assert_eq!(
        hex::decode(b["statement"].as_str().unwrap()).unwrap(),
        change.to_bytes()
    );

    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({ "account_id": account, "message": "00", "participants": [], "not_after": later }),
            400,
            "malformed_approval",
        ),
        (
            json!({ "account_id": "no-such-account", "message": "00", "participants": [], "request_id": "x", "not_after": later }),
            404,
            "unknown_account",
        ),
        (
            json!({ "account_id": account, "policy": { "approvers": [], "quorum": 1 }, "request_id": "x", "not_after": later }),
            400,
            "invalid_policy",
        ),
        (
            json!({ "account_id": account, "participants": [], "request_id": "x", "not_after": later }),
            400,
            "invalid_message_hash",
        ),
        (
            json!({ "account_id": account, "message": "00", "participants": [], "x": 1 }),
            400,
            "invalid_json",
        ),
    ];
    for (req, status, code) in cases {
        let (s, b) = statement(&t, &req).await;
        assert_eq!(
            (s.as_u16(), b["code"].as_str()),
            (status, Some(code)),
            "{req}: {b}"
        );
    }
}
