//! Sessions of policy accounts at the coordinator (issue #13), through
//! `app()` with the fake router and reports signed with the parties' keys:
//! reports checked against their session, a party's refusal code on the
//! failed session, pool signing with approvals, policy changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::approvals::{in_secs, policy_of, random_public_key, sign_statement, Approvers};
use common::{parties, setup, signed_report, TestApp};
use party_core::authz::{authorize, Operation, Payload, Statement};
use party_core::descriptor::SessionKind;
use party_core::signature::RecoverableSignature;
use party_core::wire::ReportBody;
use serde_json::{json, Value};
use uuid::Uuid;

fn sid(created: &Value) -> Uuid {
    Uuid::parse_str(created["session_id"].as_str().unwrap()).unwrap()
}

async fn session(t: &TestApp, id: Uuid) -> Value {
    let (status, s) = t.get(&format!("/api/v1/mpc/sessions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    s
}

/// A signing of `msg` by parties 1 and 2 of `account`, approved by alice
/// and bob.
fn approved_sign(a: &Approvers, account: &str, msg: &[u8], request_id: &str) -> Value {
    let later = in_secs(600);
    let st = sign_statement(account, msg, request_id, later);
    json!({ "account_id": account, "message": hex::encode(msg), "participants": parties(&[1, 2]),
            "request_id": request_id, "not_after": later, "approvals": [a.alice(&st), a.bob(&st, true)] })
}

fn a_signature() -> RecoverableSignature {
    RecoverableSignature {
        r: [1; 32],
        s: [2; 32],
        v: 0,
    }
}

#[tokio::test]
async fn reports_are_checked_against_their_session() {
    let Some(t) = setup(|_| {}).await else { return };
    let a = Approvers::new();
    let account = t.policy_account(&a.policy()).await;
    let (status, keygen) = t
        .post(
            "/api/v1/mpc/keygen",
            &json!({ "threshold_n": 2, "threshold_t": 2, "participants": parties(&[1, 2]) }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{keygen}");
    let keygen = sid(&keygen);
    let (status, sign) = t
        .post("/api/v1/mpc/sign", &approved_sign(&a, &account, b"m", "r1"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sign}");
    let sign = sid(&sign);
    let keygen_result = || ReportBody::KeygenResult {
        public_key: random_public_key(),
        policy_hash: None,
        aux_fingerprint: None,
    };
    let signature = || ReportBody::Signature {
        signature: a_signature(),
    };
    let changed = || ReportBody::PolicyChanged {
        policy_hash: [7; 32],
    };
    let cases: Vec<(&str, Uuid, u16, ReportBody, usize, u16, &str)> = vec![
        (
            "a signature on a keygen",
            keygen,
            0,
            signature(),
            0,
            400,
            "invalid_report",
        ),
        (
            "a presignature on a keygen",
            keygen,
            1,
            ReportBody::PresignatureStored,
            1,
            400,
            "invalid_report",
        ),
        (
            "a policy change on a keygen",
            keygen,
            0,
            changed(),
            0,
            400,
            "invalid_report",
        ),
        (
            "a keygen result on a sign session",
            sign,
            0,
            keygen_result(),
            0,
            400,
            "invalid_report",
        ),
        (
            "a presignature on a sign session",
            sign,
            1,
            ReportBody::PresignatureStored,
            1,
            400,
            "invalid_report",
        ),
        (
            "a policy change on a sign session",
            sign,
            0,
            changed(),
            0,
            400,
            "invalid_report",
        ),
        // server-party-3 is no signer: no position 2, and its signature
        // does not verify for another's position.
        (
            "a non-participant's position",
            sign,
            2,
            signature(),
            2,
            400,
            "invalid_report",
        ),
        (
            "a non-participant as a signer",
            sign,
            0,
            signature(),
            2,
            401,
            "bad_signature",
        ),
    ];
    let events = t.count("session_events").await;
    for (what, id, pos, body, signer, status, code) in cases {
        let r = signed_report(id, pos, body, &t.servers[signer]);
        let (s, b) = t.report(&r).await;
        assert_eq!(
            (s.as_u16(), b["code"].as_str()),
            (status, Some(code)),
            "{what}: {b}"
        );
    }
    for id in [keygen, sign] {
        let s = session(&t, id).await;
        assert_eq!(s["status"], "waiting", "{s}");
        assert_eq!(s["completed_parties"], 0, "{s}");
    }
    assert_eq!(t.count("session_events").await, events, "nothing recorded");
    assert_eq!(t.count("accounts").await, 1);
}

/// A party's refusal fails the session with the party's code, and a sign
/// request waiting for its session answers with it.
#[tokio::test]
async fn a_refusal_fails_the_session_with_the_partys_code() {
    let Some(t) = setup(|_| {}).await else { return };
    let a = Approvers::new();
    let account = t.policy_account(&a.policy()).await;
    let invited = t.router.calls().invited.len();
    let req = approved_sign(&a, &account, b"pay 5", "r-refused");
    let waiting = t.post("/api/v1/mpc/sign?wait_ms=20000", &req);
    let refuse = async {
        // The refusal follows the invitation, as a party's would.
        let mut calls = t.router.calls();
        while calls.invited.len() < invited + 2 {
            tokio::task::yield_now().await;
            calls = t.router.calls();
        }
        let d = &calls.invited.last().unwrap().1.descriptor.descriptor;
        let body = ReportBody::Refused {
            code: "session_replayed".into(),
            reason: "session already seen by this party".into(),
        };
        let (s, b) = t
            .report(&signed_report(d.session_id, 1, body, &t.servers[1]))
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
        d.session_id
    };
    let ((status, answer), id) = tokio::join!(waiting, refuse);
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["status"], "failed", "{answer}");
    assert_eq!(answer["error"]["code"], "session_replayed", "{answer}");
    let reason = answer["error"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("server-party-2 refused (session_replayed)"),
        "{reason}"
    );
    assert_eq!(answer["error"]["blamed_party"], Value::Null);
    let s = session(&t, id).await;
    assert_eq!(s["error"], answer["error"]);
    assert!(t.router.calls().closed.contains(&id), "the router drops it");

    // An unknown code stays in the reason only.
    let (_, created) = t
        .post(
            "/api/v1/mpc/sign",
            &approved_sign(&a, &account, b"pay 6", "r-odd"),
        )
        .await;
    let id = sid(&created);
    let body = ReportBody::Refused {
        code: "no_such_code".into(),
        reason: "?".into(),
    };
    let (st, _) = t.report(&signed_report(id, 0, body, &t.servers[0])).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let s = session(&t, id).await;
    assert_eq!(s["status"], "failed");
    assert!(s["error"].get("code").is_none(), "{s}");
    assert!(s["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("no_such_code"));
}

/// With a presignature in the pool a policy account signs in one round: the
/// online descriptor names the message in its kind and carries the
/// approvals, which the parties check there too.
#[tokio::test]
async fn pool_signing_carries_the_approvals() {
    let Some(t) = setup(|_| {}).await else { return };
    let a = Approvers::new();
    let account = t.policy_account(&a.policy()).await;
    t.c.set_presign_pool(1);
    t.c.refill_presignatures().await.unwrap();
    let calls = t.router.calls();
    let presign = calls
        .invited
        .iter()
        .map(|(_, inv)| &inv.descriptor.descriptor)
        .find(|d| {
            matches!(d.kind, SessionKind::Presign { .. })
                && d.participants
                    .iter()
                    .map(|p| p.party_id.as_str())
                    .collect::<Vec<_>>()
                    == ["server-party-1", "server-party-2"]
        })
        .unwrap()
        .clone();
    for pos in 0..2u16 {
        let r = signed_report(
            presign.session_id,
            pos,
            ReportBody::PresignatureStored,
            &t.servers[usize::from(pos)],
        );
        let (s, b) = t.report(&r).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    }
    // One approval: refused before the presignature is claimed.
    let msg = b"pay 7 from the pool";
    let mut one = approved_sign(&a, &account, msg, "pool-1");
    one["approvals"].as_array_mut().unwrap().pop();
    one["require_presignature"] = json!(true);
    let (s, b) = t.post("/api/v1/mpc/sign", &one).await;
    assert_eq!(
        (s.as_u16(), b["code"].as_str()),
        (403, Some("approval_quorum_not_met"))
    );
    let mut req = approved_sign(&a, &account, msg, "pool-1");
    req["require_presignature"] = json!(true);
    let (s, created) = t.post("/api/v1/mpc/sign", &req).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["signing"], "presignature");
    let d = t.last_descriptor();
    let SessionKind::OnlineSign { message, .. } = &d.kind else {
        panic!("not an online signing: {:?}", d.kind);
    };
    assert_eq!(message, msg);
    let auth = d.authorization.as_ref().unwrap();
    assert!(auth.message.is_none(), "the message is in the kind");
    assert_eq!(auth.approvals.len(), 2);
    authorize(&d, &policy_of(&a.policy()), in_secs(0))
        .unwrap()
        .unwrap();
}

fn change_statement(account: &str, policy: &Value, request_id: &str, not_after: u64) -> Vec<u8> {
    Statement {
        account_id: account,
        operation: Operation::PolicyChange,
        payload: Payload::Policy(policy_of(policy).hash()),
        derivation_path: &[],
        request_id,
        not_after,
    }
    .to_bytes()
}

/// A policy change approved under the current policy runs on all n parties
/// and replaces the account's policy once each has stored the new one;
/// afterwards the old approvers no longer count.
#[tokio::test]
async fn a_policy_change_replaces_the_policy_once_every_party_stored_it() {
    let Some(t) = setup(|_| {}).await else { return };
    let a = Approvers::new();
    let account = t.policy_account(&a.policy()).await;
    let path = format!("/api/v1/mpc/accounts/{account}/policy");
    let later = in_secs(600);
    let new = a.carol_policy();
    let st = change_statement(&account, &new, "c1", later);
    let before = (t.count("sessions").await, t.router.calls().invited.len());
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "one approval",
            json!({ "policy": new, "request_id": "c1", "not_after": later, "approvals": [a.alice(&st)] }),
            403,
            "approval_quorum_not_met",
        ),
        (
            "approvals by the new approver",
            json!({ "policy": new, "request_id": "c1", "not_after": later, "approvals": [a.carol(&st), a.alice(&st)] }),
            403,
            "unknown_approver",
        ),
        (
            "approvals of another policy",
            json!({ "policy": a.policy(), "request_id": "c1", "not_after": later, "approvals": [a.alice(&st), a.bob(&st, true)] }),
            403,
            "bad_approval_signature",
        ),
        (
            "an invalid new policy",
            json!({ "policy": { "approvers": [], "quorum": 1 }, "request_id": "c1", "not_after": later, "approvals": [] }),
            400,
            "invalid_policy",
        ),
    ];
    for (what, body, status, code) in cases {
        let (s, b) = t.post(&path, &body).await;
        assert_eq!(
            (s.as_u16(), b["code"].as_str()),
            (status, Some(code)),
            "{what}: {b}"
        );
    }
    assert_eq!(
        (t.count("sessions").await, t.router.calls().invited.len()),
        before
    );
    let plain = t.account().await;
    let (s, b) = t
        .post(
            &format!(
                "/api/v1/mpc/accounts/{}/policy",
                plain["account_id"].as_str().unwrap()
            ),
            &json!({ "policy": new, "request_id": "c1", "not_after": later, "approvals": [] }),
        )
        .await;
    assert_eq!(
        (s.as_u16(), b["code"].as_str()),
        (409, Some("policy_change_refused")),
        "{b}"
    );

    let body = json!({ "policy": new, "request_id": "c1", "not_after": later, "approvals": [a.alice(&st), a.bob(&st, false)] });
    let (s, created) = t.post(&path, &body).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["session_type"], "policy_change");
    let id = sid(&created);
    let d = t.last_descriptor();
    assert_eq!(d.participants.len(), 3, "every party of the account");
    assert!(
        matches!(&d.kind, SessionKind::PolicyChange { policy, .. } if *policy == policy_of(&new))
    );
    let new_hash = policy_of(&new).hash();
    for pos in 0..3u16 {
        let r = signed_report(
            id,
            pos,
            ReportBody::PolicyChanged {
                policy_hash: new_hash,
            },
            &t.servers[usize::from(pos)],
        );
        let (s, b) = t.report(&r).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
        let (_, view) = t.get(&format!("/api/v1/mpc/accounts/{account}")).await;
        let shown = if pos < 2 {
            policy_of(&a.policy()).hash()
        } else {
            new_hash
        };
        assert_eq!(
            view["policy_hash"],
            hex::encode(shown),
            "after {} reports",
            pos + 1
        );
    }
    assert_eq!(session(&t, id).await["status"], "completed");
    let (_, view) = t.get(&format!("/api/v1/mpc/accounts/{account}")).await;
    assert_eq!(view["policy"]["approvers"][0]["id"], "carol");

    // The old approvers no longer count; carol alone does.
    let (s, b) = t
        .post(
            "/api/v1/mpc/sign",
            &approved_sign(&a, &account, b"after", "r-after"),
        )
        .await;
    assert_eq!(
        (s.as_u16(), b["code"].as_str()),
        (403, Some("unknown_approver")),
        "{b}"
    );
    let st = sign_statement(&account, b"after", "r-after", later);
    let (s, b) = t
        .post(
            "/api/v1/mpc/sign",
            &json!({ "account_id": account, "message": hex::encode(b"after"), "participants": parties(&[1, 3]),
                     "request_id": "r-after", "not_after": later, "approvals": [a.carol(&st)] }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // The change's request id is spent.
    let st = change_statement(&account, &a.policy(), "c1", later);
    let (s, b) = t
        .post(&path, &json!({ "policy": a.policy(), "request_id": "c1", "not_after": later, "approvals": [a.carol(&st)] }))
        .await;
    assert_eq!(
        (s.as_u16(), b["code"].as_str()),
        (403, Some("request_id_reused")),
        "{b}"
    );
}

/// A party that reports storing another policy fails the change, named as
/// the reporter; the account keeps its policy.
#[tokio::test]
async fn a_policy_change_fails_when_a_party_stored_another_policy() {
    let Some(t) = setup(|_| {}).await else { return };
    let a = Approvers::new();
    let account = t.policy_account(&a.policy()).await;
    let later = in_secs(600);
    let new = a.carol_policy();
    let st = change_statement(&account, &new, "c2", later);
    let (s, created) = t
        .post(
            &format!("/api/v1/mpc/accounts/{account}/policy"),
            &json!({ "policy": new, "request_id": "c2", "not_after": later, "approvals": [a.alice(&st), a.bob(&st, true)] }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = sid(&created);
    let r = signed_report(
        id,
        2,
        ReportBody::PolicyChanged {
            policy_hash: [9; 32],
        },
        &t.servers[2],
    );
    let (s, _) = t.report(&r).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let s = session(&t, id).await;
    assert_eq!(s["status"], "failed");
    assert!(
        s["error"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("server-party-3 reported storing policy hash"),
        "{s}"
    );
    assert_eq!(s["error"]["blamed_party"], Value::Null);
    let (_, view) = t.get(&format!("/api/v1/mpc/accounts/{account}")).await;
    assert_eq!(
        view["policy_hash"],
        hex::encode(policy_of(&a.policy()).hash())
    );
}
