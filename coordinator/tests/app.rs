//! Every validation error of the coordinator's HTTP API, through `app()`
//! with `tower::ServiceExt::oneshot`, a fresh database (SQLite, or PostgreSQL
//! with `MPC_TEST_DB=postgres`) and a fake router: no parties run. Sessions
//! that need party results get them as reports signed with the registered
//! parties' identity keys. Also: the presignature refill yields to
//! sessions a caller waits for.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use common::{
    join_body, json_request, parties, send, setup, signed_registration, signed_report, unix_now,
    API_KEY,
};
use mpc_db::sqlx::{self, Row as _};
use party_core::identity::PartyIdentity;
use party_core::wire::ReportBody;
use serde_json::{json, Value};
use uuid::Uuid;

/// Moved from `mpc/tests/e2e.rs` (the account now comes from reports instead
/// of running parties; the assertions are the same).
#[tokio::test]
async fn bad_requests_get_clear_errors_and_create_nothing() {
    let Some(t) = setup(|_| {}).await else { return };
    let account = t.account().await;
    let acc = account["account_id"].as_str().unwrap();
    let sessions_before = t.count("sessions").await;
    let accounts_before = t.count("accounts").await;
    let hash = format!("0x{}", "ab".repeat(32));
    let sign = |hash: &str, ids: Value| json!({ "account_id": acc, "message_hash": hash, "participants": ids });

    // Authentication.
    let (status, body) = t.get_with_key(None, "/api/v1/mpc/accounts").await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "unauthorized");
    let (status, body) = t
        .post_with_key(
            Some("mpc_wrong"),
            "/api/v1/mpc/sign",
            &sign(&hash, parties(&[1, 2])),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (401, Some("unauthorized"))
    );

    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({ "account_id": "no-such-account", "message_hash": hash, "participants": parties(&[1, 2]) }),
            404,
            "unknown_account",
        ),
        (
            sign(&format!("0x{}", "a".repeat(63)), parties(&[1, 2])),
            400,
            "invalid_message_hash",
        ),
        (
            sign(&format!("0x{}", "a".repeat(65)), parties(&[1, 2])),
            400,
            "invalid_message_hash",
        ),
        (
            sign(&format!("0x{}", "zz".repeat(32)), parties(&[1, 2])),
            400,
            "invalid_message_hash",
        ),
        (sign(&hash, parties(&[1])), 400, "invalid_participants"),
        (sign(&hash, parties(&[1, 1])), 400, "duplicate_participant"),
        (
            sign(
                &hash,
                json!([{ "party_id": "server-party-1" }, { "party_id": "mallory" }]),
            ),
            400,
            "unknown_participant",
        ),
        (
            json!({ "threshold_n": 3, "threshold_t": 2, "participants": parties(&[1, 2, 3]), "admin": true }),
            400,
            "invalid_json",
        ),
        (
            json!({ "threshold_n": 3, "threshold_t": 4, "participants": parties(&[1, 2, 3]) }),
            400,
            "invalid_threshold",
        ),
        (
            json!({ "threshold_n": 2, "threshold_t": 2, "participants": parties(&[1, 2, 3]) }),
            400,
            "invalid_participants",
        ),
        (
            json!({ "threshold_n": 3, "threshold_t": 2, "participants": [{ "party_id": "nobody" }, { "party_id": "server-party-1" }, { "party_id": "server-party-2" }] }),
            400,
            "unknown_participant",
        ),
    ];
    for (body, status, code) in cases {
        let path = if body.get("threshold_n").is_some() {
            "/api/v1/mpc/keygen"
        } else {
            "/api/v1/mpc/sign"
        };
        let (s, a) = t.post(path, &body).await;
        assert_eq!(s, status, "{body} -> {a}");
        assert_eq!(a["code"], code, "{body} -> {a}");
        assert!(a["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let big = format!(
        "{{\"account_id\":\"{}\",\"message_hash\":\"{hash}\",\"participants\":[]}}",
        "x".repeat(100_000)
    );
    let (status, body) = t.post_raw("/api/v1/mpc/sign", big).await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let (status, _) = t.get("/api/v1/mpc/sessions/not-a-session").await;
    assert_eq!(status, 404);

    assert_eq!(
        t.count("sessions").await,
        sessions_before,
        "no session created"
    );
    assert_eq!(
        t.count("accounts").await,
        accounts_before,
        "no account created"
    );
}

/// The sign request's message, digest and presignature checks.
#[tokio::test]
async fn sign_message_errors() {
    let Some(t) = setup(|_| {}).await else { return };
    let account = t.account().await;
    let acc = account["account_id"].as_str().unwrap();
    let sessions_before = t.count("sessions").await;
    let msg = hex::encode(b"hello");
    let keccak = hex::encode(party_core::descriptor::MessageDigest::Keccak256.hash(b"hello"));
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({ "account_id": acc, "message": "xyz", "participants": parties(&[1, 2]) }),
            400,
            "invalid_message",
        ),
        (
            json!({ "account_id": acc, "message": "0x", "participants": parties(&[1, 2]) }),
            400,
            "invalid_message",
        ),
        (
            json!({ "account_id": acc, "message_hash": keccak, "digest": "sha256", "participants": parties(&[1, 2]) }),
            400,
            "invalid_message",
        ),
        (
            json!({ "account_id": acc, "message_hash": keccak, "require_presignature": true, "participants": parties(&[1, 2]) }),
            400,
            "invalid_message",
        ),
        (
            json!({ "account_id": acc, "message": msg, "message_hash": "ab".repeat(32), "participants": parties(&[1, 2]) }),
            400,
            "invalid_message_hash",
        ),
        (
            json!({ "account_id": acc, "participants": parties(&[1, 2]) }),
            400,
            "invalid_message_hash",
        ),
        (
            json!({ "account_id": acc, "message": msg, "digest": "md5", "participants": parties(&[1, 2]) }),
            400,
            "invalid_json",
        ),
        (
            json!({ "account_id": acc, "message": msg, "participants": [{ "party_id": "server-party-1", "role": "x" }, { "party_id": "server-party-2" }] }),
            400,
            "invalid_json",
        ),
        (
            json!({ "account_id": acc, "message": msg, "require_presignature": true, "participants": parties(&[1, 2]) }),
            409,
            "no_presignature",
        ),
    ];
    for (body, status, code) in cases {
        let (s, a) = t.post("/api/v1/mpc/sign", &body).await;
        assert_eq!(s, status, "{body} -> {a}");
        assert_eq!(a["code"], code, "{body} -> {a}");
        assert!(a["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    assert_eq!(
        t.count("sessions").await,
        sessions_before,
        "no session created"
    );

    // The message with its matching hash is accepted: a full signing.
    let (s, a) = t
        .post(
            "/api/v1/mpc/sign",
            &json!({ "account_id": acc, "message": msg, "message_hash": keccak, "participants": parties(&[1, 2]) }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    assert_eq!(a["signing"], "full");
}

#[tokio::test]
async fn keygen_errors() {
    let Some(t) = setup(|_| {}).await else { return };
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({ "threshold_n": 1, "threshold_t": 1, "participants": parties(&[1]) }),
            400,
            "invalid_threshold",
        ),
        (
            json!({ "threshold_n": 3, "threshold_t": 1, "participants": parties(&[1, 2, 3]) }),
            400,
            "invalid_threshold",
        ),
        (
            json!({ "threshold_n": 3, "threshold_t": 2, "participants": parties(&[1, 2, 2]) }),
            400,
            "duplicate_participant",
        ),
        (
            json!({ "threshold_n": 3, "threshold_t": 2 }),
            400,
            "invalid_json",
        ),
        (
            json!({ "threshold_n": 2, "threshold_t": 2, "participants": [{ "party_id": "server-party-1", "admin": true }, { "party_id": "server-party-2" }] }),
            400,
            "invalid_json",
        ),
    ];
    for (body, status, code) in cases {
        let (s, a) = t.post("/api/v1/mpc/keygen", &body).await;
        assert_eq!(s, status, "{body} -> {a}");
        assert_eq!(a["code"], code, "{body} -> {a}");
    }
    let (s, a) = t.post_raw("/api/v1/mpc/keygen", "{not json".into()).await;
    assert_eq!(
        (s.as_u16(), a["code"].as_str()),
        (400, Some("invalid_json"))
    );
    // Without a JSON content type.
    let req = Request::post("/api/v1/mpc/keygen")
        .header("x-api-key", API_KEY)
        .body(Body::from(
            json!({ "threshold_n": 2, "threshold_t": 2, "participants": parties(&[1, 2]) })
                .to_string(),
        ))
        .unwrap();
    let (s, a) = send(&t.c, req).await;
    assert_eq!(
        (s.as_u16(), a["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    assert_eq!(t.count("sessions").await, 0);

    // The router down: 503, and the session is failed, not left waiting.
    t.router.set_down(true);
    let (s, a) = t
        .post(
            "/api/v1/mpc/keygen",
            &json!({ "threshold_n": 2, "threshold_t": 2, "participants": parties(&[1, 2]) }),
        )
        .await;
    assert_eq!(
        (s.as_u16(), a["code"].as_str()),
        (503, Some("router_unavailable")),
        "{a}"
    );
    let status: String = sqlx::query("SELECT status FROM sessions")
        .fetch_one(t.c.store().pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "failed");
}

#[tokio::test]
async fn session_and_account_lookup_errors() {
    let Some(t) = setup(|_| {}).await else { return };
    for (path, status, code) in [
        (
            format!("/api/v1/mpc/sessions/{}", Uuid::new_v4()),
            404,
            "unknown_session",
        ),
        (
            "/api/v1/mpc/sessions/not-a-session".to_string(),
            404,
            "unknown_session",
        ),
        (
            format!("/api/v1/mpc/sessions/{}?wait_ms=soon", Uuid::new_v4()),
            400,
            "invalid_query",
        ),
        (
            format!("/api/v1/mpc/sessions/{}?bogus=1", Uuid::new_v4()),
            400,
            "invalid_query",
        ),
        (
            "/api/v1/mpc/accounts/no-such-account".to_string(),
            404,
            "unknown_account",
        ),
        (
            "/api/v1/mpc/accounts?limit=many".to_string(),
            400,
            "invalid_query",
        ),
        (
            "/api/v1/mpc/accounts?bogus=1".to_string(),
            400,
            "invalid_query",
        ),
    ] {
        let (s, a) = t.get(&path).await;
        assert_eq!(s, status, "{path} -> {a}");
        assert_eq!(a["code"], code, "{path} -> {a}");
    }
    let (s, a) = t
        .get_with_key(Some("mpc_wrong"), "/api/v1/mpc/accounts")
        .await;
    assert_eq!(
        (s.as_u16(), a["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (s, a) = t
        .get_with_key(None, "/api/v1/mpc/sessions/not-a-session")
        .await;
    assert_eq!(
        (s.as_u16(), a["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (s, a) = t.get("/api/v1/mpc/accounts").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(a["accounts"], json!([]));
}

#[tokio::test]
async fn callers_outside_the_allowlist_get_403() {
    let Some(t) = setup(|c| c.allowlist = vec!["10.0.0.0/8".parse().unwrap()]).await else {
        return;
    };
    let at = |ip: &str, mut req: Request<Body>| {
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(ip.parse().unwrap(), 40000)));
        req
    };
    let req = Request::get("/api/v1/mpc/accounts")
        .header("x-api-key", API_KEY)
        .body(Body::empty())
        .unwrap();
    let (s, a) = send(&t.c, at("127.0.0.1", req)).await;
    assert_eq!((s.as_u16(), a["code"].as_str()), (403, Some("forbidden")));
    let mut req = json_request(
        "POST",
        "/api/v1/mpc/keygen",
        json!({ "threshold_n": 2, "threshold_t": 2, "participants": parties(&[1, 2]) }).to_string(),
    );
    req.headers_mut()
        .insert("x-api-key", API_KEY.parse().unwrap());
    let (s, _) = send(&t.c, at("127.0.0.1", req)).await;
    assert_eq!(s, 403);
    assert_eq!(t.count("sessions").await, 0);
    let req = Request::get("/api/v1/mpc/accounts")
        .header("x-api-key", API_KEY)
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&t.c, at("10.1.2.3", req)).await.0, StatusCode::OK);
    // /metrics takes no API key (Prometheus scrapes it) but the allowlist.
    let metrics = || Request::get("/metrics").body(Body::empty()).unwrap();
    let (s, a) = send(&t.c, at("127.0.0.1", metrics())).await;
    assert_eq!((s.as_u16(), a["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(
        send(&t.c, at("10.1.2.3", metrics())).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn register_party_errors() {
    let Some(t) = setup(|_| {}).await else { return };
    let id = PartyIdentity::generate(&mut rand_core::OsRng);
    t.enrol("p-new", &id).await;
    let signed = |party: &str, device: &str, key: &PartyIdentity| {
        let mut nonce = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        signed_registration(party, device, key, key.public(), unix_now(), nonce)
    };
    let mut bad_nonce = signed("p-new", "server", &id);
    bad_nonce["nonce"] = json!("zz");
    for (b, status, code) in [
        (signed("", "server", &id), 400, "invalid_party_id"),
        (
            signed(&"p".repeat(129), "server", &id),
            400,
            "invalid_party_id",
        ),
        (
            signed("p-new", "toaster", &id),
            422,
            "unsupported_device_type",
        ),
        (
            json!({ "party_id": "p-new", "device_type": "server" }),
            400,
            "invalid_json",
        ),
        (
            json!({ "party_id": "p-new", "device_type": "server", "identity": { "ed25519": "zz", "x25519": "00" },
                    "issued_at": 1, "nonce": "00", "signature": "00" }),
            400,
            "invalid_json",
        ),
        (bad_nonce, 400, "invalid_json"),
        // A registered party with a key that is not its enrolled one.
        (
            signed("server-party-1", "server", &id),
            403,
            "enrolment_mismatch",
        ),
    ] {
        let (s, a) = t.register(&b).await;
        assert_eq!(s, status, "{b} -> {a}");
        assert_eq!(a["code"], code, "{b} -> {a}");
    }
    // A registered key under another (enrolled) party id.
    t.enrol("p-other", &t.servers[0]).await;
    let (s, a) = t
        .register(&signed("p-other", "server", &t.servers[0]))
        .await;
    assert_eq!((s.as_u16(), a["code"].as_str()), (409, Some("conflict")));
    assert!(!t.registered("p-new").await);
    assert!(!t.registered("p-other").await);
    // Registering again with the same key is fine.
    let (s, _) = t
        .register(&signed("server-party-1", "server", &t.servers[0]))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn report_errors() {
    let Some(t) = setup(|_| {}).await else { return };
    let (status, created) = t
        .post(
            "/api/v1/mpc/keygen",
            &json!({ "threshold_n": 2, "threshold_t": 2, "participants": parties(&[1, 2]) }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let sid = Uuid::parse_str(created["session_id"].as_str().unwrap()).unwrap();
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({ "report": "{}" }), 400, "invalid_json"),
        (
            json!({ "report": "not json", "signature": "00".repeat(64) }),
            400,
            "invalid_report",
        ),
        (
            signed_report(Uuid::new_v4(), 0, ReportBody::Joined, &t.servers[0]),
            404,
            "not_found",
        ),
        (
            signed_report(sid, 2, ReportBody::Joined, &t.servers[0]),
            400,
            "invalid_report",
        ),
        // Signed by party 1 for party 2's position.
        (
            signed_report(sid, 1, ReportBody::Joined, &t.servers[0]),
            401,
            "bad_signature",
        ),
    ];
    for (body, status, code) in cases {
        let (s, a) = t.report(&body).await;
        assert_eq!(s, status, "{body} -> {a}");
        assert_eq!(a["code"], code, "{body} -> {a}");
    }
    let (_, s) = t.get(&format!("/api/v1/mpc/sessions/{sid}")).await;
    assert_eq!(s["joined_parties"], 0);
    // A progress report is recorded as sent.
    let progress = ReportBody::Progress {
        stage: "keygen".into(),
        round: 2,
        percent: None,
    };
    let (st, _) = t
        .report(&signed_report(sid, 0, progress, &t.servers[0]))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, s) = t.get(&format!("/api/v1/mpc/sessions/{sid}")).await;
    assert_eq!(
        s["parties"][0]["progress"],
        json!({ "stage": "keygen", "round": 2, "percent": null })
    );

    // A report before a pending keygen's descriptor is signed.
    let (bsid, _) = t.keygen_with_browser("browser-r").await;
    let device = PartyIdentity::generate(&mut rand_core::OsRng);
    let r = signed_report(
        Uuid::parse_str(&bsid).unwrap(),
        0,
        ReportBody::Joined,
        &device,
    );
    let (s, a) = t.report(&r).await;
    assert_eq!(
        (s.as_u16(), a["code"].as_str()),
        (409, Some("session_not_started"))
    );
}

/// Moved from `mpc/tests/device_join.rs`.
#[tokio::test]
async fn bad_device_participants_get_clear_errors_and_create_nothing() {
    let Some(t) = setup(|_| {}).await else { return };
    let keygen = |p0: Value| {
        json!({ "threshold_n": 3, "threshold_t": 2, "participants": [
            p0, { "party_id": "server-party-1" }, { "party_id": "server-party-2" }]})
    };
    for (p0, status, code) in [
        (
            json!({ "party_id": "toaster-1", "device_type": "toaster" }),
            422,
            "unsupported_device_type",
        ),
        (
            json!({ "party_id": "bad id!", "device_type": "browser" }),
            400,
            "invalid_party_id",
        ),
        (json!({ "party_id": "nobody" }), 400, "unknown_participant"),
    ] {
        let (s, a) = t.post("/api/v1/mpc/keygen", &keygen(p0)).await;
        assert_eq!(s, status, "{a}");
        assert_eq!(a["code"], code, "{a}");
    }
    // A registered server party cannot be named as a browser.
    let (s, a) = t
        .post(
            "/api/v1/mpc/keygen",
            &json!({ "threshold_n": 2, "threshold_t": 2, "participants": [
                { "party_id": "server-party-1", "device_type": "browser" },
                { "party_id": "server-party-2" }]}),
        )
        .await;
    assert_eq!(s, 400, "{a}");
    assert_eq!(a["code"], "invalid_participants");
    let (s, a) = t
        .post(
            "/api/v1/mpc/keygen",
            &keygen(json!({ "party_id": "server-party-3x", "device_type": "browser" })),
        )
        .await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(
        t.count("sessions").await,
        1,
        "only the valid request created a session"
    );
    // An unknown session id is indistinguishable from a wrong token.
    let device = PartyIdentity::generate(&mut rand_core::OsRng);
    let other = Uuid::new_v4().to_string();
    let (s, a) = t.join(&other, &join_body(&device, &other, "ab")).await;
    assert_eq!(s, 401, "{a}");
    let (s, a) = t.join("not-a-uuid", &json!({})).await;
    assert!(s == 400 || s == 401, "{s} {a}");
}

/// The join errors of `mpc/tests/device_join.rs`'s binding test (which keeps
/// them), plus the bound party id.
#[tokio::test]
async fn device_join_errors() {
    let Some(t) = setup(|_| {}).await else { return };
    let (sid, token) = t.keygen_with_browser("browser-a").await;
    let device = PartyIdentity::generate(&mut rand_core::OsRng);
    let other = PartyIdentity::generate(&mut rand_core::OsRng);

    // A wrong token: 401, nothing bound, nobody registered.
    let (s, a) = t
        .join(&sid, &join_body(&device, &sid, &"0".repeat(64)))
        .await;
    assert_eq!(s, 401, "{a}");
    assert_eq!(a["code"], "invalid_token");
    assert!(a["error"].is_string());
    // The right token with a signature by another key.
    let mut forged = join_body(&other, &sid, &token);
    forged["identity"] = json!(device.public());
    let (s, a) = t.join(&sid, &forged).await;
    assert_eq!(s, 401, "{a}");
    assert_eq!(a["code"], "bad_signature");
    // Malformed bodies.
    let (s, a) = t.join(&sid, &json!({ "join_token": token })).await;
    assert_eq!(
        (s.as_u16(), a["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let mut short = join_body(&device, &sid, &token);
    short["signature"] = json!("00");
    let (s, a) = t.join(&sid, &short).await;
    assert_eq!(
        (s.as_u16(), a["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let (s, a) = t
        .join("not-a-uuid", &join_body(&device, &sid, &token))
        .await;
    assert_eq!(
        (s.as_u16(), a["code"].as_str()),
        (401, Some("invalid_token"))
    );
    assert_eq!(t.device_rows(&sid).await, vec![None]);
    assert!(!t.registered("browser-a").await);

    // A second pending keygen names browser-a too, before it has a key.
    let (sid2, token2) = t.keygen_with_browser("browser-a").await;

    // The device joins the first: ready, the servers invited.
    let invited = t.router.calls().invited.len();
    let (s, a) = t.join(&sid, &join_body(&device, &sid, &token)).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["position"], 0);
    assert_eq!(t.router.calls().invited.len(), invited + 2);
    // Another identity for the bound token.
    let (s, a) = t.join(&sid, &join_body(&other, &sid, &token)).await;
    assert_eq!((s.as_u16(), a["code"].as_str()), (409, Some("token_bound")));
    // Another identity for browser-a in the second keygen: the party id is
    // bound to the first key now.
    let (s, a) = t.join(&sid2, &join_body(&other, &sid2, &token2)).await;
    assert_eq!(
        (s.as_u16(), a["code"].as_str()),
        (409, Some("party_bound")),
        "{a}"
    );
    assert_eq!(t.device_rows(&sid2).await, vec![None]);
}

/// Moved from `mpc/tests/device_join.rs`.
#[tokio::test]
async fn a_key_bound_to_one_device_party_cannot_be_presented_for_another() {
    let Some(t) = setup(|_| {}).await else { return };
    let device = PartyIdentity::generate(&mut rand_core::OsRng);
    let (sid, token) = t.keygen_with_browser("browser-b").await;
    let (status, _) = t.join(&sid, &join_body(&device, &sid, &token)).await;
    assert_eq!(status, 200);
    // The same key under a new party id: 409, and nothing is recorded.
    let (sid2, token2) = t.keygen_with_browser("browser-c").await;
    let (status, body) = t.join(&sid2, &join_body(&device, &sid2, &token2)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "identity_in_use");
    assert_eq!(t.device_rows(&sid2).await, vec![None]);
    assert!(!t.registered("browser-c").await);
    // A server party's key presented by a device: refused the same way.
    let server = t.c.store().party("server-party-1").await.unwrap().unwrap();
    let mut body = join_body(&device, &sid2, &token2);
    body["identity"] = json!(server.identity);
    let (status, _) = t.join(&sid2, &body).await;
    // (the signature is by another key, so it fails proof of possession)
    assert_eq!(status, 401);
}

/// Moved from `mpc/tests/device_join.rs`: the session's deadline is now
/// (timeouts of 0 s) and the sweep runs once, instead of waiting a second.
#[tokio::test]
async fn an_expired_session_refuses_the_device_with_410_and_binds_nothing() {
    let Some(t) = setup(|c| {
        c.keygen_timeout = Duration::ZERO;
        c.keygen_aux_timeout = Duration::ZERO;
    })
    .await
    else {
        return;
    };
    let (sid, token) = t.keygen_with_browser("browser-d").await;
    t.c.expire_overdue().await;
    let (_, s) = t.get(&format!("/api/v1/mpc/sessions/{sid}")).await;
    assert_eq!(s["status"], "expired", "{s}");
    assert!(
        s["error"]["reason"].as_str().unwrap().contains("browser-d"),
        "{s}"
    );
    let device = PartyIdentity::generate(&mut rand_core::OsRng);
    let (status, body) = t.join(&sid, &join_body(&device, &sid, &token)).await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["code"], "session_closed");
    assert_eq!(t.device_rows(&sid).await, vec![None]);
    assert!(!t.registered("browser-d").await);
}

/// Foreground before background (issue #15): while a sign session of an
/// account's parties is open, the presignature refill starts no presign
/// session for them; once it ended, the refill goes on.
#[tokio::test]
async fn the_refill_starts_no_presign_beside_an_open_foreground_session() {
    let Some(t) = setup(|_| {}).await else { return };
    let account = t.account().await;
    let acc = account["account_id"].as_str().unwrap();
    let presigns = |t: &common::TestApp| {
        t.router
            .calls()
            .invited
            .iter()
            .filter(|(_, inv)| {
                matches!(
                    inv.descriptor.descriptor.kind,
                    party_core::descriptor::SessionKind::Presign { .. }
                )
            })
            .count()
    };
    let (status, created) = t
        .post(
            "/api/v1/mpc/sign",
            &json!({ "account_id": acc, "message_hash": hex::encode([7u8; 32]), "participants": parties(&[1, 2]) }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    // Every signer set of a 2-of-3 account shares a party with {1, 2}.
    t.c.set_presign_pool(1);
    t.c.refill_presignatures().await.unwrap();
    assert_eq!(presigns(&t), 0, "a presign was launched beside the sign");
    assert_eq!(t.c.store().running_presigns().await.unwrap(), 0);
    // The sign session ends (here: past its deadline); the refill goes on.
    let expired =
        t.c.store()
            .expire_overdue(coordinator::store::now() + 3600)
            .await
            .unwrap();
    assert_eq!(expired.len(), 1);
    t.c.refill_presignatures().await.unwrap();
    assert_eq!(t.c.store().running_presigns().await.unwrap(), 1);
    assert_eq!(presigns(&t), 2, "one presign session, two parties invited");
}
