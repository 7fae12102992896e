//! Party credentials (issue #14): a server party registers with a request
//! signed by the identity key an operator enrolled for its party id; no
//! shared token authorizes anything. Through `app()` with
//! `tower::ServiceExt::oneshot` on a fresh database (SQLite, or PostgreSQL
//! with `MPC_TEST_DB=postgres`) and the fake router. Each attacker's move
//! (another key, a swapped X25519 key, a replay, a stale request, the old
//! token, a non-operator key) is refused with its code and nothing changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::keys::{delete, get_on, new_key};
use common::{
    json_request, parties, registration, send, setup, signed_registration, unix_now, TestApp,
    API_KEY,
};
use party_core::identity::{PartyIdentity, PartyPublicKey};
use serde_json::{json, Value};

fn new_identity() -> PartyIdentity {
    PartyIdentity::generate(&mut rand_core::OsRng)
}

fn nonce() -> [u8; 16] {
    let mut n = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut n);
    n
}

/// (status, code) of an answer.
fn outcome(a: &(StatusCode, Value)) -> (u16, Option<&str>) {
    (a.0.as_u16(), a.1["code"].as_str())
}

async fn nonces(t: &TestApp) -> i64 {
    t.count("party_request_nonces").await
}

#[tokio::test]
async fn a_registration_signed_by_the_enrolled_key_is_accepted() {
    let Some(t) = setup(|_| {}).await else { return };
    let id = new_identity();
    t.enrol("p-ok", &id).await;
    let (s, a) = t.register(&registration("p-ok", &id)).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{a}");
    let rec = t.c.store().party("p-ok").await.unwrap().unwrap();
    assert_eq!(rec.identity, id.public());
    // The operator sees it enrolled and registered.
    let (s, list) = get_on(&t.c, API_KEY, "/api/v1/mpc/admin/parties").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let row = list["parties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["party_id"] == "p-ok")
        .unwrap();
    assert_eq!(row["ed25519"], hex::encode(id.public().ed25519));
    assert_eq!(row["registered"], true);
    assert!(row.get("revoked_at").is_none());
}

#[tokio::test]
async fn a_key_that_is_not_the_enrolled_one_is_refused_and_nothing_is_stored() {
    let Some(t) = setup(|_| {}).await else { return };
    let (enrolled, attacker) = (new_identity(), new_identity());
    t.enrol("p-a", &enrolled).await;
    // A valid signature, by a key of the attacker's choosing.
    let r = t.register(&registration("p-a", &attacker)).await;
    assert_eq!(outcome(&r), (403, Some("enrolment_mismatch")), "{}", r.1);
    assert!(!t.registered("p-a").await);
    // An enrolled party's id with another key, after it registered.
    let r = t.register(&registration("server-party-1", &attacker)).await;
    assert_eq!(outcome(&r), (403, Some("enrolment_mismatch")), "{}", r.1);
    let rec = t.c.store().party("server-party-1").await.unwrap().unwrap();
    assert_eq!(
        rec.identity,
        t.servers[0].public(),
        "the binding is unchanged"
    );
    assert_eq!(nonces(&t).await, 3, "only the three setup registrations");
}

#[tokio::test]
async fn an_unenrolled_party_id_is_refused() {
    let Some(t) = setup(|_| {}).await else { return };
    let id = new_identity();
    let r = t.register(&registration("p-nobody", &id)).await;
    assert_eq!(outcome(&r), (403, Some("party_not_enrolled")), "{}", r.1);
    assert!(!t.registered("p-nobody").await);
}

#[tokio::test]
async fn a_swapped_x25519_key_is_refused() {
    let Some(t) = setup(|_| {}).await else { return };
    let (id, other) = (new_identity(), new_identity());
    let swapped = PartyPublicKey {
        ed25519: id.public().ed25519,
        x25519: other.public().x25519,
    };
    // Swapped in transit, after the party signed: the signature fails.
    t.enrol("p-x", &id).await;
    let mut body = registration("p-x", &id);
    body["identity"]["x25519"] = json!(hex::encode(swapped.x25519));
    let r = t.register(&body).await;
    assert_eq!(outcome(&r), (401, Some("bad_signature")), "{}", r.1);
    // Validly signed by the enrolled Ed25519 key, but not the pinned
    // X25519 key.
    let (s, a) = t
        .put_enrolment(
            API_KEY,
            "p-x",
            &json!({ "ed25519": hex::encode(id.public().ed25519),
                     "x25519": hex::encode(id.public().x25519) }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    let body = signed_registration("p-x", "server", &id, swapped, unix_now(), nonce());
    let r = t.register(&body).await;
    assert_eq!(outcome(&r), (403, Some("enrolment_mismatch")), "{}", r.1);
    assert!(!t.registered("p-x").await);
    // The party's own keys register.
    let (s, a) = t.register(&registration("p-x", &id)).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{a}");
}

#[tokio::test]
async fn a_replayed_registration_is_refused() {
    let Some(t) = setup(|_| {}).await else { return };
    let id = new_identity();
    t.enrol("p-r", &id).await;
    let body = registration("p-r", &id);
    let (s, a) = t.register(&body).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{a}");
    let before = nonces(&t).await;
    let r = t.register(&body).await;
    assert_eq!(outcome(&r), (401, Some("request_replayed")), "{}", r.1);
    assert_eq!(nonces(&t).await, before, "nothing recorded");
    // After a revocation and a new enrolment of another key, the old
    // request still cannot bind anything.
    let (s, _) = delete(&t.c, API_KEY, "/api/v1/mpc/admin/parties/p-r").await;
    assert_eq!(s, StatusCode::OK);
    let r = t.register(&body).await;
    assert_eq!(outcome(&r), (403, Some("party_not_enrolled")), "{}", r.1);
}

#[tokio::test]
async fn a_stale_or_future_registration_is_refused_without_spending_its_nonce() {
    let Some(t) = setup(|_| {}).await else { return };
    let id = new_identity();
    t.enrol("p-s", &id).await;
    let n = nonce();
    for issued_at in [unix_now() - 121, unix_now() + 121, 0] {
        let body = signed_registration("p-s", "server", &id, id.public(), issued_at, n);
        let r = t.register(&body).await;
        assert_eq!(outcome(&r), (401, Some("request_stale")), "{}", r.1);
    }
    assert!(!t.registered("p-s").await);
    assert_eq!(nonces(&t).await, 3, "no nonce recorded");
    // Within the window, the same nonce is accepted once.
    let body = signed_registration("p-s", "server", &id, id.public(), unix_now() - 60, n);
    let (s, a) = t.register(&body).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{a}");
}

#[tokio::test]
async fn the_old_shared_token_alone_registers_nothing() {
    let Some(t) = setup(|_| {}).await else { return };
    let id = new_identity();
    t.enrol("p-t", &id).await;
    // The request of the old API, with the old header: not a registration.
    let mut req = json_request(
        "POST",
        "/internal/v1/parties",
        json!({ "party_id": "p-t", "device_type": "server", "identity": id.public() }).to_string(),
    );
    req.headers_mut().insert(
        "x-internal-token",
        "app-test-internal-token".parse().unwrap(),
    );
    let r = send(&t.c, req).await;
    assert_eq!(outcome(&r), (400, Some("invalid_json")), "{}", r.1);
    // With every field but a real signature: refused the same way with or
    // without a token.
    let mut body = registration("p-t", &id);
    body["signature"] = json!(hex::encode([0u8; 64]));
    let mut req = json_request("POST", "/internal/v1/parties", body.to_string());
    req.headers_mut().insert(
        "x-internal-token",
        "app-test-internal-token".parse().unwrap(),
    );
    let r = send(&t.c, req).await;
    assert_eq!(outcome(&r), (401, Some("bad_signature")), "{}", r.1);
    assert!(!t.registered("p-t").await);
}

#[tokio::test]
async fn only_operator_keys_enrol_list_and_revoke() {
    let Some(t) = setup(|_| {}).await else { return };
    let (tenant_admin, _) = new_key(
        &t,
        API_KEY,
        json!({ "name": "acme admin", "scopes": ["admin"], "tenant": "acme" }),
    )
    .await;
    let (no_admin, _) = new_key(
        &t,
        API_KEY,
        json!({ "name": "default signer", "scopes": ["read", "keygen", "sign"] }),
    )
    .await;
    let id = new_identity();
    let body = json!({ "ed25519": hex::encode(id.public().ed25519) });
    for key in [&tenant_admin, &no_admin] {
        let r = t.put_enrolment(key, "p-evil", &body).await;
        assert_eq!(outcome(&r), (403, Some("insufficient_scope")), "{}", r.1);
        let r = t.put_enrolment(key, "server-party-1", &body).await;
        assert_eq!(outcome(&r), (403, Some("insufficient_scope")), "{}", r.1);
        let r = get_on(&t.c, key, "/api/v1/mpc/admin/parties").await;
        assert_eq!(outcome(&r), (403, Some("insufficient_scope")), "{}", r.1);
        let r = delete(&t.c, key, "/api/v1/mpc/admin/parties/server-party-1").await;
        assert_eq!(outcome(&r), (403, Some("insufficient_scope")), "{}", r.1);
    }
    assert!(t.c.store().enrolment("p-evil").await.unwrap().is_none());
    let e =
        t.c.store()
            .enrolment("server-party-1")
            .await
            .unwrap()
            .unwrap();
    assert!(e.active(), "not revoked");
    assert_eq!(e.ed25519, t.servers[0].public().ed25519, "not replaced");
}

#[tokio::test]
async fn enrolment_requests_are_checked() {
    let Some(t) = setup(|_| {}).await else { return };
    let other = new_identity();
    for (party, body, status, code) in [
        (
            "p-1",
            json!({ "ed25519": "zz" }),
            400,
            "invalid_identity_key",
        ),
        (
            "p-1",
            json!({ "ed25519": hex::encode([0u8; 32]) }),
            400,
            "invalid_identity_key",
        ),
        (
            "p-1",
            json!({ "ed25519": hex::encode(other.public().ed25519), "x25519": hex::encode([0u8; 32]) }),
            400,
            "invalid_identity_key",
        ),
        (
            "p-1",
            json!({ "ed25519": hex::encode(other.public().ed25519), "extra": 1 }),
            400,
            "invalid_json",
        ),
        // A registered party keeps its keys.
        (
            "server-party-1",
            json!({ "ed25519": hex::encode(other.public().ed25519) }),
            409,
            "conflict",
        ),
    ] {
        let r = t.put_enrolment(API_KEY, party, &body).await;
        assert_eq!(outcome(&r), (status, Some(code)), "{body} -> {}", r.1);
    }
    assert!(t.c.store().enrolment("p-1").await.unwrap().is_none());
    let r = delete(&t.c, API_KEY, "/api/v1/mpc/admin/parties/p-none").await;
    assert_eq!(outcome(&r), (404, Some("not_found")), "{}", r.1);
}

#[tokio::test]
async fn a_revoked_party_is_refused_registration_and_new_sessions() {
    let Some(t) = setup(|_| {}).await else { return };
    let account = t.account().await;
    let sessions = t.count("sessions").await;
    let (s, revoked) = delete(&t.c, API_KEY, "/api/v1/mpc/admin/parties/server-party-3").await;
    assert_eq!(s, StatusCode::OK, "{revoked}");
    assert!(revoked["revoked_at"].is_u64());
    // Its registration is refused.
    let r = t
        .register(&registration("server-party-3", &t.servers[2]))
        .await;
    assert_eq!(outcome(&r), (403, Some("party_not_enrolled")), "{}", r.1);
    // No new session names it: keygen, or signing with it.
    let r = t
        .post(
            "/api/v1/mpc/keygen",
            &json!({ "threshold_n": 3, "threshold_t": 2, "participants": parties(&[1, 2, 3]) }),
        )
        .await;
    assert_eq!(outcome(&r), (403, Some("party_not_enrolled")), "{}", r.1);
    let sign = |signers: &[usize]| {
        json!({ "account_id": account["account_id"], "message_hash": hex::encode([7u8; 32]),
                "participants": parties(signers) })
    };
    let r = t.post("/api/v1/mpc/sign", &sign(&[1, 3])).await;
    assert_eq!(outcome(&r), (403, Some("party_not_enrolled")), "{}", r.1);
    assert_eq!(t.count("sessions").await, sessions, "nothing created");
    // The others still sign.
    let (s, a) = t.post("/api/v1/mpc/sign", &sign(&[1, 2])).await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    // Enrolled again (same key), it is chosen again.
    t.enrol("server-party-3", &t.servers[2]).await;
    let (s, a) = t.post("/api/v1/mpc/sign", &sign(&[2, 3])).await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
}
