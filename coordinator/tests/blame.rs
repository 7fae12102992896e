//! Lying signed reports (issue #15): a party's failure report is evidence
//! about its sender's view, never a verdict. A session fails on the first
//! failure report and names a culprit only when the coordinator verified the
//! misbehaviour itself (a public key other than the one `max(2, t)` parties
//! reported, a signature that does not verify under the account key) or when
//! `max(2, t)` reporters other than the accused blame it and nobody
//! disagrees; otherwise it stays unidentified, with every accusation kept in
//! the session view. A report whose own signature fails is refused and
//! changes nothing (it proves nothing about who sent it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::*;
use party_core::signature::RecoverableSignature;
use party_core::wire::ReportBody;
use serde_json::{json, Value};
use uuid::Uuid;

async fn keygen(t: &TestApp) -> Uuid {
    let (status, created) = t
        .post(
            "/api/v1/mpc/keygen",
            &json!({ "threshold_n": 3, "threshold_t": 2, "participants": parties(&[1, 2, 3]) }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    Uuid::parse_str(created["session_id"].as_str().unwrap()).unwrap()
}

async fn session(t: &TestApp, sid: Uuid) -> Value {
    let (status, s) = t.get(&format!("/api/v1/mpc/sessions/{sid}")).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    s
}

fn failed(reason: &str, blamed: Option<u16>) -> ReportBody {
    ReportBody::Failed {
        reason: reason.into(),
        blamed,
    }
}

/// Position `pos` (server-party-(pos+1)) reports a failure blaming `blamed`.
async fn report_failure(t: &TestApp, sid: Uuid, pos: u16, blamed: Option<u16>) {
    let body = failed(&format!("party {pos}'s view"), blamed);
    let r = signed_report(sid, pos, body, &t.servers[usize::from(pos)]);
    let (status, b) = t.report(&r).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{b}");
}

fn accusations(s: &Value) -> Vec<(String, Value)> {
    s["error"]["accusations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| {
            (
                a["reporter"].as_str().unwrap().to_string(),
                a["accused"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_failure_report_blaming_an_honest_party_names_nobody() {
    let Some(t) = setup(|_| {}).await else { return };
    let sid = keygen(&t).await;
    // server-party-3 (the liar) blames server-party-1.
    report_failure(&t, sid, 2, Some(0)).await;
    let s = session(&t, sid).await;
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(s["error"]["blamed_party"], Value::Null, "one party's word");
    assert!(s["error"]["reason"]
        .as_str()
        .unwrap()
        .starts_with("server-party-3 reported:"));
    assert_eq!(
        accusations(&s),
        vec![(server(3), json!(server(1)))],
        "kept as evidence"
    );
    // The other honest party names nobody (its view: the protocol stalled):
    // still unidentified, both views kept.
    report_failure(&t, sid, 1, None).await;
    let s = session(&t, sid).await;
    assert_eq!(s["error"]["blamed_party"], Value::Null);
    assert_eq!(accusations(&s).len(), 2);
    // The accused's own counter-accusation does not name the liar either:
    // two reports against each other are two words, not a verdict.
    report_failure(&t, sid, 0, Some(2)).await;
    let s = session(&t, sid).await;
    assert_eq!(s["error"]["blamed_party"], Value::Null, "{s}");
    assert_eq!(accusations(&s).len(), 3);
    assert_eq!(t.count("accounts").await, 0, "no account");
}

#[tokio::test]
async fn agreeing_independent_reporters_name_the_culprit() {
    let Some(t) = setup(|_| {}).await else { return };
    let sid = keygen(&t).await;
    // The culprit (server-party-3) reports first, blaming an honest party.
    report_failure(&t, sid, 2, Some(0)).await;
    report_failure(&t, sid, 0, Some(2)).await;
    let s = session(&t, sid).await;
    assert_eq!(s["status"], "failed");
    assert_eq!(s["error"]["blamed_party"], Value::Null, "one honest word");
    // A second independent reporter agrees: t = 2 reporters other than the
    // accused, nobody else disagrees.
    report_failure(&t, sid, 1, Some(2)).await;
    let s = session(&t, sid).await;
    assert_eq!(s["error"]["blamed_party"], json!(server(3)), "{s}");
    assert_eq!(accusations(&s).len(), 3);
    // A repeated report (retries) adds nothing and changes nothing.
    report_failure(&t, sid, 1, Some(0)).await;
    let s = session(&t, sid).await;
    assert_eq!(accusations(&s).len(), 3);
    assert_eq!(s["error"]["blamed_party"], json!(server(3)));
    assert_eq!(t.count("accounts").await, 0, "no account");
    let kinds: Vec<String> =
        t.c.store()
            .events(sid)
            .await
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "accusation").count(), 3);
    assert_eq!(kinds.iter().filter(|k| *k == "blamed").count(), 1);
}

#[tokio::test]
async fn a_report_with_a_bad_signature_is_refused_and_changes_nothing() {
    let Some(t) = setup(|_| {}).await else { return };
    let sid = keygen(&t).await;
    // Signed by server-party-1's key but claiming position 2.
    let forged = signed_report(sid, 2, failed("forged", Some(0)), &t.servers[0]);
    let (status, b) = t.report(&forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{b}");
    assert_eq!(b["code"], "bad_signature");
    // A signature over other bytes.
    let mut tampered = signed_report(sid, 2, failed("x", Some(0)), &t.servers[2]);
    let text = tampered["report"]
        .as_str()
        .unwrap()
        .replace("\"x\"", "\"y\"");
    tampered["report"] = json!(text);
    let (status, b) = t.report(&tampered).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{b}");
    assert_eq!(b["code"], "bad_signature");
    let s = session(&t, sid).await;
    assert_ne!(s["status"], "failed", "nothing changed: {s}");
    assert!(s["error"].is_null(), "{s}");
    assert_eq!(t.count("accounts").await, 0);
}

fn public_key() -> [u8; 33] {
    let key = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    key.verifying_key()
        .to_encoded_point(true)
        .as_bytes()
        .try_into()
        .unwrap()
}

#[tokio::test]
async fn a_keygen_result_with_another_public_key_names_its_reporter() {
    let Some(t) = setup(|_| {}).await else { return };
    let sid = keygen(&t).await;
    let (honest, lie) = (public_key(), public_key());
    for (pos, pk) in [(0u16, honest), (1, lie), (2, honest)] {
        let body = ReportBody::KeygenResult {
            public_key: pk,
            policy_hash: None,
            aux_fingerprint: Some([0xaa; 32]),
        };
        let (status, b) = t
            .report(&signed_report(sid, pos, body, &t.servers[usize::from(pos)]))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{b}");
    }
    let s = session(&t, sid).await;
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(
        s["error"]["blamed_party"],
        json!(server(2)),
        "checked by the coordinator: 2 = t parties reported the other key"
    );
    assert_eq!(t.count("accounts").await, 0, "no account");
}

#[tokio::test]
async fn three_different_public_keys_name_nobody() {
    let Some(t) = setup(|_| {}).await else { return };
    let sid = keygen(&t).await;
    for pos in 0..3u16 {
        let body = ReportBody::KeygenResult {
            public_key: public_key(),
            policy_hash: None,
            aux_fingerprint: Some([0xaa; 32]),
        };
        let (status, b) = t
            .report(&signed_report(sid, pos, body, &t.servers[usize::from(pos)]))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{b}");
    }
    let s = session(&t, sid).await;
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(
        s["error"]["blamed_party"],
        Value::Null,
        "no key has t reporters"
    );
    assert_eq!(t.count("accounts").await, 0);
}

#[tokio::test]
async fn a_signature_that_does_not_verify_names_its_reporter() {
    let Some(t) = setup(|_| {}).await else { return };
    let account = t.account().await;
    let account_id = account["account_id"].as_str().unwrap();
    let hash = [7u8; 32];
    let (status, created) = t
        .post(
            "/api/v1/mpc/sign",
            &json!({ "account_id": account_id, "message_hash": hex::encode(hash),
                     "participants": parties(&[1, 3]) }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let sid = Uuid::parse_str(created["session_id"].as_str().unwrap()).unwrap();
    // A well-formed signature under some other key.
    let other = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let other_pk = other.verifying_key().to_encoded_point(true);
    let (sig, _) = other.sign_prehash_recoverable(&hash).unwrap();
    let mut rs = [0u8; 32];
    rs.copy_from_slice(&sig.r().to_bytes());
    let mut ss = [0u8; 32];
    ss.copy_from_slice(&sig.s().to_bytes());
    let bad = RecoverableSignature::from_parts(rs, ss, &hash, other_pk.as_bytes()).unwrap();
    // Signer position 1 is server-party-3.
    let r = signed_report(
        sid,
        1,
        ReportBody::Signature { signature: bad },
        &t.servers[2],
    );
    let (status, b) = t.report(&r).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{b}");
    let s = session(&t, sid).await;
    assert_eq!(s["status"], "failed", "{s}");
    assert_eq!(
        s["error"]["blamed_party"],
        json!(server(3)),
        "verified by the coordinator against the account key"
    );
}
