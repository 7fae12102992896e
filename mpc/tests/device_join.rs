//! The device join endpoint (`POST /api/v1/mpc/sessions/{id}/join`): a device
//! party presents its join token and identity key; the coordinator binds
//! them, signs the descriptor once every device has joined, and starts the
//! session. The protocol run of a device itself is tested from Node
//! (`web-demo/tests/node-device.test.mjs`) and Chromium.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::TempDir;
use mpc::client::Client;
use mpc::dev::DevSystem;
use party_core::descriptor::SignedDescriptor;
use party_core::identity::PartyIdentity;
use party_core::wire::device_join_message;
use serde_json::{json, Value};
use sqlx::Row as _;
use uuid::Uuid;

async fn system(dir: &TempDir, keygen_timeout: Duration) -> DevSystem {
    let mut o = dir.fast(2).await;
    o.keygen_timeout = keygen_timeout;
    DevSystem::start(o).await.unwrap()
}

/// Creates a 2-of-3 keygen with `browser` at position 0 and both server
/// parties; returns (session id, the browser's join token).
async fn keygen_with_browser(c: &Client, browser: &str) -> (String, String) {
    let a = c
        .post(
            "/api/v1/mpc/keygen",
            &json!({ "threshold_n": 3, "threshold_t": 2, "participants": [
                { "party_id": browser, "device_type": "browser" },
                { "party_id": "server-party-1", "device_type": "server" },
                { "party_id": "server-party-2" }]}),
        )
        .await
        .unwrap();
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["status"], "waiting");
    let tokens = a.body["join_tokens"].as_object().unwrap();
    assert_eq!(tokens.len(), 1, "only the device's token is returned");
    let token = tokens[browser].as_str().unwrap().to_string();
    (a.body["session_id"].as_str().unwrap().to_string(), token)
}

fn join_body(id: &PartyIdentity, session: &str, token: &str) -> Value {
    let sid = Uuid::parse_str(session).unwrap();
    json!({
        "join_token": token,
        "identity": id.public(),
        "signature": hex::encode(id.sign(&device_join_message(&sid, token, &id.public()))),
    })
}

/// POSTs a join without any API key; returns (status, body).
async fn join(sys: &DevSystem, session: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/mpc/sessions/{session}/join",
            sys.api_url
        ))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn device_rows(sys: &DevSystem, session: &str) -> Vec<Option<String>> {
    sqlx::query("SELECT ed25519 FROM device_slots WHERE session_id = $1 ORDER BY position")
        .bind(session)
        .fetch_all(sys.coordinator.store().pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn registered(sys: &DevSystem, party: &str) -> bool {
    sys.coordinator
        .store()
        .party(party)
        .await
        .unwrap()
        .is_some()
}

async fn session(c: &Client, id: &str) -> Value {
    c.get(&format!("/api/v1/mpc/sessions/{id}"))
        .await
        .unwrap()
        .body
}

/// Polls the session until `what` holds (2 minutes at most).
async fn wait_for(c: &Client, id: &str, what: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let s = session(c, id).await;
        if what(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never met: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_join_binds_the_token_signs_the_descriptor_and_invites_the_servers() {
    let dir = TempDir::new("bind");
    let sys = system(&dir, Duration::from_secs(120)).await;
    let c = Client::new(&sys.api_url, &sys.api_key);
    let (sid, token) = keygen_with_browser(&c, "browser-a").await;
    let device = PartyIdentity::generate(&mut rand_core::OsRng);

    // Before the device joins, nothing is signed and no server is invited.
    let s = session(&c, &sid).await;
    assert_eq!(s["status"], "waiting");
    assert_eq!(s["parties"][0]["device_type"], "browser");
    assert_eq!(s["joined_parties"], 0);
    let report = party_core::wire::SignedReport::sign(
        &party_core::wire::Report {
            session_id: Uuid::parse_str(&sid).unwrap(),
            position: 0,
            body: party_core::wire::ReportBody::Joined,
        },
        &device,
    )
    .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/internal/v1/reports", sys.api_url))
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 409, "no reports before the descriptor");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "session_not_started");

    // A wrong token: 401, nothing bound, nobody registered.
    let (status, body) = join(&sys, &sid, &join_body(&device, &sid, &"0".repeat(64))).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "invalid_token");
    assert!(body["error"].is_string());
    // The right token with a signature by another key: 401 (no proof of
    // possession), nothing bound.
    let other = PartyIdentity::generate(&mut rand_core::OsRng);
    let mut forged = join_body(&other, &sid, &token);
    forged["identity"] = json!(device.public());
    let (status, body) = join(&sys, &sid, &forged).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "bad_signature");
    // Malformed body: 400 with a JSON error.
    let (status, body) = join(&sys, &sid, &json!({ "join_token": token })).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_json");
    assert_eq!(device_rows(&sys, &sid).await, vec![None]);
    assert!(!registered(&sys, "browser-a").await);

    // The device joins: the descriptor comes back signed by the coordinator
    // and lists the device's key at its position.
    let (status, body) = join(&sys, &sid, &join_body(&device, &sid, &token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["position"], 0);
    let signed: SignedDescriptor = serde_json::from_value(body["descriptor"].clone()).unwrap();
    let verified = signed
        .verify(&sys.coordinator.config().signing_key.public())
        .unwrap();
    assert_eq!(verified.position_of(&device.public()).unwrap(), 0);
    assert_eq!(
        device_rows(&sys, &sid).await,
        vec![Some(hex::encode(device.public().ed25519))]
    );
    let rec = sys
        .coordinator
        .store()
        .party("browser-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.identity, device.public());
    assert_eq!(rec.device_type.as_str(), "browser");

    // The server parties were invited: both join the router.
    wait_for(&c, &sid, |s| s["joined_parties"] == 2).await;

    // Idempotent for the same identity: the same descriptor again.
    let (status, again) = join(&sys, &sid, &join_body(&device, &sid, &token)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["descriptor"], body["descriptor"]);

    // A second identity for the bound token: 409, the binding stays.
    let (status, body) = join(&sys, &sid, &join_body(&other, &sid, &token)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "token_bound");
    assert_eq!(
        device_rows(&sys, &sid).await,
        vec![Some(hex::encode(device.public().ed25519))]
    );

    // The party id stays bound to its key in later sessions: a new keygen
    // naming browser-a lists its key at once, and another key is refused.
    let (sid2, token2) = keygen_with_browser(&c, "browser-a").await;
    let (status, body) = join(&sys, &sid2, &join_body(&other, &sid2, &token2)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "token_bound");
    let (status, body) = join(&sys, &sid2, &join_body(&device, &sid2, &token2)).await;
    assert_eq!(status, 200, "{body}");
    sys.shutdown().await;
}
