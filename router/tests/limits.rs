//! The router's doors: the internal API only on its own listener and only
//! with the coordinators' credential; the connection cap; the
//! pre-authentication limit; and a normal session under all of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{now, on_both_backends, random_uuid, Client, TestBackend, TestRouter, WAIT};
use futures_util::SinkExt as _;
use mpc_api::router::{INVITATIONS_PATH, SESSIONS_PATH};
use party_core::envelope::Stage;
use party_core::wire::RouterToClient;
use router::{RouterConfig, PRE_AUTH_MAX_BYTES};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

on_both_backends!(
    a_party_credential_is_refused_by_the_internal_api,
    the_internal_api_is_not_on_the_public_listener,
    connections_past_the_cap_are_refused,
    five_mib_before_authentication_is_cut_off,
    a_hello_over_4_kib_is_cut_off,
    a_session_works_under_the_limits,
);

/// The value of a series in this process's metrics (0 when absent).
fn counter(series: &str) -> f64 {
    mpc_telemetry::render()
        .lines()
        .find_map(|l| {
            let (name, v) = l.rsplit_once(' ')?;
            (name == series).then(|| v.parse::<f64>().unwrap())
        })
        .unwrap_or(0.0)
}

const CAP_REFUSALS: &str = r#"mpc_router_connections_refused_total{reason="cap"}"#;
const PRE_AUTH_REFUSALS: &str = r#"mpc_router_connections_refused_total{reason="pre_auth_limit"}"#;

fn registration() -> serde_json::Value {
    json!({"session_id": random_uuid(), "expires_at": now() + 60, "participants": [
        {"position": 0, "token_sha256": "11".repeat(32), "identity": null}
    ]})
}

async fn a_party_credential_is_refused_by_the_internal_api(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    // What parties hold (they register with the coordinator using it): not
    // the router's internal credential.
    let party_token = "the-token-parties-register-with";
    let body = registration();
    let (status, answer) = r
        .post_with(&r.internal_url(SESSIONS_PATH), Some(party_token), &body)
        .await;
    assert_eq!((status, &answer["code"]), (401, &json!("unauthorized")));
    let (status, answer) = r
        .post_with(
            &r.internal_url(INVITATIONS_PATH),
            Some(party_token),
            &json!({}),
        )
        .await;
    assert_eq!((status, &answer["code"]), (401, &json!("unauthorized")));
    // Nothing was registered: the coordinators' credential registers it now.
    let (status, answer) = r.post(SESSIONS_PATH, &body).await;
    assert_eq!(status, 201, "{answer}");
}

async fn the_internal_api_is_not_on_the_public_listener(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let body = registration();
    // Even with the right credential, the public listener has no such routes.
    let (status, _) = r
        .post_with(&r.url(SESSIONS_PATH), Some(common::INTERNAL_TOKEN), &body)
        .await;
    assert_eq!(status, 404);
    let (status, _) = r
        .post_with(
            &r.url(INVITATIONS_PATH),
            Some(common::INTERNAL_TOKEN),
            &json!({}),
        )
        .await;
    assert_eq!(status, 404);
    let resp = r
        .http
        .delete(r.url(&format!("{SESSIONS_PATH}/{}", random_uuid())))
        .header("X-Internal-Token", common::INTERNAL_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    // The session was not registered through the public listener.
    let (status, answer) = r.post(SESSIONS_PATH, &body).await;
    assert_eq!(status, 201, "{answer}");
    // And the internal listener serves nothing but the internal API.
    for path in ["/ws", "/health", "/ready", "/metrics"] {
        let resp = r.http.get(r.internal_url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 404, "{path}");
    }
    let resp = r.http.get(r.url("/health")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

async fn connections_past_the_cap_are_refused(backend: TestBackend) {
    let mut config = RouterConfig::new(common::INTERNAL_TOKEN);
    config.max_connections = 2;
    let r = TestRouter::start_with(&backend, config).await;
    let s = r.session(2, &[]).await;
    let refused_before = counter(CAP_REFUSALS);
    // Two connections hold the two places, one of them not authenticated.
    let mut c0 = s.join(&r, 0).await;
    let waiting = Client::connect(r.addr).await;
    // A third is refused at once: answered 503 or closed, never upgraded.
    let third = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{}/ws", r.addr)),
    )
    .await
    .expect("a refused connection must not hang");
    match third {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503);
        }
        Err(_) => {}
        Ok(_) => panic!("a connection past the cap was upgraded"),
    }
    assert!(counter(CAP_REFUSALS) >= refused_before + 1.0);
    // Plain HTTP counts too.
    let health = reqwest::Client::new().get(r.url("/health")).send().await;
    assert!(
        health.as_ref().map_or(true, |resp| resp.status() == 503),
        "{health:?}"
    );

    // A place frees when a connection ends: party 1 gets in.
    drop(waiting);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut c1 = loop {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(format!("ws://{}/ws", r.addr)).await {
            let mut c = Client { ws, nonce: [0; 32] };
            match c.next_json().await {
                RouterToClient::Challenge { nonce } => c.nonce = nonce,
                other => panic!("expected Challenge, got {other:?}"),
            }
            break c;
        }
        assert!(tokio::time::Instant::now() < deadline, "no place freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let party = &s.parties[1];
    match c1.join(s.session_id, &party.token, &party.identity).await {
        RouterToClient::Joined { position, .. } => assert_eq!(position, 1),
        other => panic!("expected Joined, got {other:?}"),
    }
    let mut ch0 = s.channel(0);
    let frame = ch0.seal_broadcast(Stage::Sign, b"under the cap").unwrap();
    c0.send_frame(frame.clone()).await;
    assert_eq!(c1.next_frame().await, frame);
}

/// A router that would wait a minute for the handshake: whatever closes a
/// connection sooner is the pre-authentication limit.
async fn patient_router(backend: &TestBackend) -> TestRouter {
    let mut config = RouterConfig::new(common::INTERNAL_TOKEN);
    config.handshake_timeout = Duration::from_secs(60);
    TestRouter::start_with(backend, config).await
}

/// Sends `size` bytes as one message before authenticating and expects the
/// router to close the connection (well before its handshake timeout).
async fn send_before_authentication(r: &TestRouter, size: usize) {
    let mut c = Client::connect(r.addr).await;
    let big = vec![b' '; size];
    // The router stops reading and closes: the send may fail.
    let _ = tokio::time::timeout(
        WAIT,
        c.ws.send(Message::text(String::from_utf8(big).unwrap())),
    )
    .await;
    match c.next().await {
        None | Some(Message::Close(_)) => {}
        Some(Message::Text(t)) => {
            assert!(t.as_str().contains("too_large"), "{t}");
            c.expect_closed().await;
        }
        other => panic!("expected the connection to close, got {other:?}"),
    }
}

async fn five_mib_before_authentication_is_cut_off(backend: TestBackend) {
    let r = patient_router(&backend).await;
    // 5 MiB: past the message limit too, refused from its frame header.
    send_before_authentication(&r, 5 * 1024 * 1024).await;
    // 3 MiB: within the message limit, so only the pre-authentication
    // limit stops it, after 4 KiB.
    let before = counter(PRE_AUTH_REFUSALS);
    send_before_authentication(&r, 3 * 1024 * 1024).await;
    assert!(counter(PRE_AUTH_REFUSALS) >= before + 1.0);
}

async fn a_hello_over_4_kib_is_cut_off(backend: TestBackend) {
    let r = patient_router(&backend).await;
    let before = counter(PRE_AUTH_REFUSALS);
    let mut c = Client::connect(r.addr).await;
    // A control message whose party id alone is past the limit: cut off
    // before it is parsed (so not `bad_request`).
    let hello = json!({"type": "control", "party_id": "p".repeat(PRE_AUTH_MAX_BYTES + 1024)});
    c.ws.send(Message::text(hello.to_string())).await.unwrap();
    match c.next().await {
        None | Some(Message::Close(_)) => {}
        Some(Message::Text(t)) => {
            assert!(t.as_str().contains("too_large"), "{t}");
            c.expect_closed().await;
        }
        other => panic!("expected the connection to close, got {other:?}"),
    }
    assert!(counter(PRE_AUTH_REFUSALS) >= before + 1.0);
}

async fn a_session_works_under_the_limits(backend: TestBackend) {
    let mut config = RouterConfig::new(common::INTERNAL_TOKEN);
    config.max_connections = 3;
    let r = TestRouter::start_with(&backend, config).await;
    let s = r.session(3, &[]).await;
    let mut c0 = s.join(&r, 0).await;
    let mut c1 = s.join(&r, 1).await;
    let mut c2 = s.join(&r, 2).await;
    let (mut ch0, mut ch1, mut ch2) = (s.channel(0), s.channel(1), s.channel(2));
    common::exchange_keys(&mut [&mut ch0, &mut ch1, &mut ch2]);
    // After authentication a frame far above 4 KiB goes through.
    let payload = vec![9u8; 1024 * 1024];
    let big = ch0.seal_broadcast(Stage::Sign, &payload).unwrap();
    c0.send_frame(big).await;
    assert_eq!(ch1.open(&c1.next_frame().await).unwrap().payload, payload);
    assert_eq!(ch2.open(&c2.next_frame().await).unwrap().payload, payload);
    let p = ch2.seal_p2p(Stage::Sign, 0, b"back to zero").unwrap();
    c2.send_frame(p).await;
    assert_eq!(
        ch0.open(&c0.next_frame().await).unwrap().payload,
        b"back to zero"
    );
}
