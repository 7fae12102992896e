//! Session connections: the join handshake, relaying, buffering, reconnects,
//! dropped frames, closing, and what the router can see.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    now, on_both_backends, random_token, random_uuid, token_hash, Client, TestBackend, TestRouter,
};
use futures_util::SinkExt as _;
use mpc_api::router::SESSIONS_PATH;
use party_core::envelope::{Channel, Stage};
use party_core::identity::PartyIdentity;
use party_core::wire::RouterToClient;
use rand_core::OsRng;
use router::RouterConfig;
use serde_json::json;

on_both_backends!(
    health_reports_healthy,
    join_with_valid_token_gets_its_position,
    wrong_token_is_refused,
    bound_slot_refuses_another_identity,
    two_identities_racing_for_one_slot_bind_it_once,
    bad_signature_is_refused,
    unknown_session_is_refused,
    handshake_times_out,
    malformed_handshake_is_refused,
    broadcast_and_p2p_reach_only_their_recipients,
    late_joiner_receives_buffered_frames_in_order,
    reconnecting_party_receives_the_buffer_again,
    bad_frames_are_dropped_without_disconnecting,
    oversized_frames_and_full_buffers_are_dropped,
    delete_closes_the_session,
    the_sweeper_closes_expired_sessions,
    the_router_sees_no_p2p_plaintext,
    shutdown_closes_connections_and_serve_returns,
    a_closed_session_cannot_be_registered_again,
    an_expired_session_cannot_be_registered_again,
    re_registering_an_open_session_changes_nothing,
);

async fn health_reports_healthy(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let resp = reqwest::get(r.url("/health")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body, json!({"service": "router", "status": "healthy"}));
}

async fn join_with_valid_token_gets_its_position(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let s = r.session(3, &[0]).await;
    // Joined in any order, each party gets its own slot's position.
    let _c2 = s.join(&r, 2).await;
    let _c0 = s.join(&r, 0).await;
    let _c1 = s.join(&r, 1).await;
}

async fn wrong_token_is_refused(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let s = r.session(2, &[]).await;
    let mut c = r.client().await;
    let token = "not-a-token-of-this-session-0123456789";
    let reply = c.join(s.session_id, token, &s.parties[0].identity).await;
    let message = c.expect_error(reply, "bad_token").await;
    assert!(!message.contains(token));
    // A valid token of another slot still works afterwards.
    let _c = s.join(&r, 0).await;
}

async fn bound_slot_refuses_another_identity(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let s = r.session(2, &[0]).await;
    let stranger = PartyIdentity::generate(&mut OsRng);

    // Slot 0 is bound at registration (server party).
    let mut c = r.client().await;
    let reply = c.join(s.session_id, &s.parties[0].token, &stranger).await;
    let message = c.expect_error(reply, "token_bound").await;
    assert!(!message.contains(&s.parties[0].token));

    // Slot 1 binds to the first identity that uses it (browser party).
    let first = s.join(&r, 1).await;
    drop(first);
    let mut c = r.client().await;
    let reply = c.join(s.session_id, &s.parties[1].token, &stranger).await;
    c.expect_error(reply, "token_bound").await;
    // The identity it is bound to may come back.
    let _again = s.join(&r, 1).await;
}

async fn two_identities_racing_for_one_slot_bind_it_once(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let s = r.session(2, &[]).await;
    let token = &s.parties[1].token;
    let (first, second) = (
        PartyIdentity::generate(&mut OsRng),
        PartyIdentity::generate(&mut OsRng),
    );
    let mut a = r.client().await;
    let mut b = r.client().await;
    let (ra, rb) = tokio::join!(
        a.join(s.session_id, token, &first),
        b.join(s.session_id, token, &second)
    );
    let (winner, mut loser, refusal) = match (&ra, &rb) {
        (RouterToClient::Joined { .. }, _) => (&first, b, rb),
        (_, RouterToClient::Joined { .. }) => (&second, a, ra),
        other => panic!("neither join was admitted: {other:?}"),
    };
    loser.expect_error(refusal, "token_bound").await;
    // The slot stays bound to the winner.
    let mut again = r.client().await;
    match again.join(s.session_id, token, winner).await {
        RouterToClient::Joined { position, .. } => assert_eq!(position, 1),
        other => panic!("expected Joined, got {other:?}"),
    }
}

async fn bad_signature_is_refused(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let s = r.session(2, &[]).await;
    let mut c = r.client().await;
    let party = &s.parties[1];
    // Signed over another nonce: a replayed or forged answer.
    let signature = party
        .identity
        .sign(&party_core::wire::join_message(&[7u8; 32], &s.session_id));
    c.send_json(&party_core::wire::ClientToRouter::JoinSession {
        session_id: s.session_id,
        token: party.token.clone(),
        identity: party.identity.public(),
        signature,
    })
    .await;
    let reply = c.next_json().await;
    c.expect_error(reply, "bad_signature").await;
    // The failed attempt did not bind the browser slot to anything.
    let _c = s.join(&r, 1).await;
}

async fn unknown_session_is_refused(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let mut c = r.client().await;
    let identity = PartyIdentity::generate(&mut OsRng);
    let reply = c.join(random_uuid(), "whatever", &identity).await;
    c.expect_error(reply, "unknown_session").await;
}

async fn handshake_times_out(backend: TestBackend) {
    let mut config = RouterConfig::new(common::INTERNAL_TOKEN);
    config.handshake_timeout = Duration::from_millis(200);
    let r = TestRouter::start_with(&backend, config).await;
    let mut c = r.client().await;
    let reply = c.next_json().await;
    c.expect_error(reply, "handshake_timeout").await;
}

async fn malformed_handshake_is_refused(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let mut c = r.client().await;
    c.ws.send(tokio_tungstenite::tungstenite::Message::text(
        "{\"type\":\"hello\"}",
    ))
    .await
    .unwrap();
    let reply = c.next_json().await;
    c.expect_error(reply, "bad_request").await;
}

async fn broadcast_and_p2p_reach_only_their_recipients(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let s = r.session(3, &[]).await;
    let mut c0 = s.join(&r, 0).await;
    let mut c1 = s.join(&r, 1).await;
    let mut c2 = s.join(&r, 2).await;
    let mut ch0 = s.channel(0);
    let mut ch1 = s.channel(1);
    let mut ch2 = s.channel(2);
    common::exchange_keys(&mut [&mut ch0, &mut ch1, &mut ch2]);

    let b = ch0.seal_broadcast(Stage::Sign, b"round one").unwrap();
    c0.send_frame(b.clone()).await;
    for (c, ch) in [(&mut c1, &mut ch1), (&mut c2, &mut ch2)] {
        let got = c.next_frame().await;
        assert_eq!(got, b);
        let inbound = ch.open(&got).unwrap();
        assert!(inbound.broadcast);
        assert_eq!(inbound.sender, 0);
        assert_eq!(inbound.payload, b"round one");
    }

    // p2p 0 -> 1: only party 1 gets it.
    let p = ch0.seal_p2p(Stage::Sign, 1, b"for one only").unwrap();
    c0.send_frame(p).await;
    let inbound = ch1.open(&c1.next_frame().await).unwrap();
    assert!(!inbound.broadcast);
    assert_eq!(inbound.sender, 0);
    assert_eq!(inbound.payload, b"for one only");

    // Party 2 broadcasts: its next message at 0 and 1 is that broadcast, and
    // party 2 never sees its own frame nor the p2p frame for 1.
    let b2 = ch2.seal_broadcast(Stage::Sign, b"from two").unwrap();
    c2.send_frame(b2.clone()).await;
    assert_eq!(
        ch0.open(&c0.next_frame().await).unwrap().payload,
        b"from two"
    );
    assert_eq!(
        ch1.open(&c1.next_frame().await).unwrap().payload,
        b"from two"
    );
    let p10 = ch1.seal_p2p(Stage::Sign, 2, b"one to two").unwrap();
    c1.send_frame(p10).await;
    let inbound = ch2.open(&c2.next_frame().await).unwrap();
    assert_eq!(
        (inbound.sender, inbound.payload.as_slice()),
        (1, &b"one to two"[..])
    );
}

async fn late_joiner_receives_buffered_frames_in_order(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let s = r.session(3, &[]).await;
    let mut c0 = s.join(&r, 0).await;
    let mut c2 = s.join(&r, 2).await;
    let mut ch0 = s.channel(0);
    let mut ch1 = s.channel(1);
    let mut ch2 = s.channel(2);
    common::exchange_keys(&mut [&mut ch0, &mut ch1, &mut ch2]);

    let b = ch0.seal_broadcast(Stage::Sign, b"bcast").unwrap();
    let p1 = ch0.seal_p2p(Stage::Sign, 1, b"to one").unwrap();
    let p2 = ch0.seal_p2p(Stage::Sign, 2, b"to two").unwrap();
    for f in [&b, &p1, &p2] {
        c0.send_frame(f.clone()).await;
    }
    // Party 2 is live: it sees the broadcast and its p2p frame, in order.
    assert_eq!(c2.next_frame().await, b);
    assert_eq!(c2.next_frame().await, p2);

    // Party 1 joins late: the broadcast, then its p2p frame, then live traffic.
    let mut c1 = s.join(&r, 1).await;
    assert_eq!(ch1.open(&c1.next_frame().await).unwrap().payload, b"bcast");
    assert_eq!(ch1.open(&c1.next_frame().await).unwrap().payload, b"to one");
    let live = ch0.seal_broadcast(Stage::Sign, b"live").unwrap();
    c0.send_frame(live).await;
    assert_eq!(ch1.open(&c1.next_frame().await).unwrap().payload, b"live");
}

async fn reconnecting_party_receives_the_buffer_again(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let s = r.session(2, &[]).await;
    let mut c0 = s.join(&r, 0).await;
    let mut c1 = s.join(&r, 1).await;
    let mut ch0 = s.channel(0);
    let mut ch1 = s.channel(1);
    common::exchange_keys(&mut [&mut ch0, &mut ch1]);
    let b = ch0.seal_broadcast(Stage::Sign, b"one").unwrap();
    let p = ch0.seal_p2p(Stage::Sign, 1, b"two").unwrap();
    c0.send_frame(b.clone()).await;
    c0.send_frame(p.clone()).await;
    assert_eq!(c1.next_frame().await, b);
    assert_eq!(c1.next_frame().await, p);

    // The same party connects again: the old connection is closed, the new one
    // gets everything addressed to it so far.
    let mut again = s.join(&r, 1).await;
    c1.expect_closed().await;
    assert_eq!(again.next_frame().await, b);
    assert_eq!(again.next_frame().await, p);
    // The party's channel (its session state outlived the connection) opens
    // them.
    ch1.open(&b).unwrap();
    ch1.open(&p).unwrap();

    // Live frames now go to the new connection.
    let live = ch0.seal_broadcast(Stage::Sign, b"three").unwrap();
    c0.send_frame(live.clone()).await;
    assert_eq!(again.next_frame().await, live);

    // And the reconnected party can send.
    let back = ch1.seal_p2p(Stage::Sign, 0, b"back").unwrap();
    again.send_frame(back).await;
    assert_eq!(ch0.peek_open(&c0.next_frame().await), b"back");
}

/// Opening helper so the test above reads naturally.
trait PeekOpen {
    fn peek_open(&mut self, frame: &[u8]) -> Vec<u8>;
}

impl PeekOpen for Channel {
    fn peek_open(&mut self, frame: &[u8]) -> Vec<u8> {
        self.open(frame).unwrap().payload
    }
}

async fn bad_frames_are_dropped_without_disconnecting(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let s = r.session(3, &[]).await;
    let other = r.session(3, &[]).await;
    let mut c0 = s.join(&r, 0).await;
    let mut c1 = s.join(&r, 1).await;
    let mut ch0 = s.channel(0);
    let mut ch1 = s.channel(1);
    let mut ch2 = s.channel(2);
    common::exchange_keys(&mut [&mut ch0, &mut ch1, &mut ch2]);

    // A frame claiming to come from party 2, sent on party 0's connection.
    let spoofed = s.channel(2).seal_broadcast(Stage::Sign, b"spoof").unwrap();
    c0.send_frame(spoofed).await;
    // A valid frame of another session.
    let foreign = other
        .channel(0)
        .seal_broadcast(Stage::Sign, b"other")
        .unwrap();
    c0.send_frame(foreign).await;
    // Not a frame at all.
    c0.send_frame(b"garbage".to_vec()).await;
    // A p2p frame to itself (recipient must be another position).
    let mut to_self = ch0.seal_p2p(Stage::Sign, 1, b"x").unwrap();
    to_self[20..22].copy_from_slice(&0u16.to_be_bytes());
    c0.send_frame(to_self).await;
    // A p2p frame to a position past the session.
    let mut out_of_range = ch0.seal_p2p(Stage::Sign, 2, b"x").unwrap();
    out_of_range[20..22].copy_from_slice(&3u16.to_be_bytes());
    c0.send_frame(out_of_range).await;

    // The connection is still up and the next thing party 1 gets is this.
    let good = ch0.seal_broadcast(Stage::Sign, b"good").unwrap();
    c0.send_frame(good.clone()).await;
    let got = c1.next_frame().await;
    assert_eq!(got, good);
    assert_eq!(ch1.open(&got).unwrap().payload, b"good");

    // The dropped frames were not buffered either: a late joiner gets only
    // the good frame.
    let mut c2 = s.join(&r, 2).await;
    assert_eq!(c2.next_frame().await, good);
    let good2 = ch0.seal_p2p(Stage::Sign, 2, b"next").unwrap();
    c0.send_frame(good2.clone()).await;
    assert_eq!(c2.next_frame().await, good2);
}

async fn oversized_frames_and_full_buffers_are_dropped(backend: TestBackend) {
    let mut config = RouterConfig::new(common::INTERNAL_TOKEN);
    config.max_frame_bytes = 1024;
    // Frames carry 98 bytes of header and signature: two 900-byte payloads
    // (1996 bytes) and a 1-byte one (99 bytes) fit, a third 900 does not.
    config.max_session_bytes = 2100;
    let r = TestRouter::start_with(&backend, config).await;
    let s = r.session(2, &[]).await;
    let mut c0 = s.join(&r, 0).await;
    let mut c1 = s.join(&r, 1).await;
    let mut ch0 = s.channel(0);

    let big = ch0.seal_broadcast(Stage::Sign, &[1u8; 2000]).unwrap();
    c0.send_frame(big).await;
    let a = ch0.seal_broadcast(Stage::Sign, &[2u8; 900]).unwrap();
    c0.send_frame(a.clone()).await;
    assert_eq!(c1.next_frame().await, a);

    let b = ch0.seal_broadcast(Stage::Sign, &[3u8; 900]).unwrap();
    c0.send_frame(b.clone()).await;
    assert_eq!(c1.next_frame().await, b);
    let c = ch0.seal_broadcast(Stage::Sign, &[4u8; 900]).unwrap();
    c0.send_frame(c).await; // would make 2994 bytes: dropped
    let small = ch0.seal_broadcast(Stage::Sign, b"s").unwrap();
    c0.send_frame(small.clone()).await;
    assert_eq!(c1.next_frame().await, small);
}

async fn delete_closes_the_session(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let s = r.session(2, &[]).await;
    let mut c0 = s.join(&r, 0).await;
    let mut c1 = s.join(&r, 1).await;

    let (status, _) = r
        .delete(&format!("/internal/v1/sessions/{}", s.session_id))
        .await;
    assert_eq!(status, 204);
    for c in [&mut c0, &mut c1] {
        match c.next_json().await {
            RouterToClient::SessionClosed { session_id } => assert_eq!(session_id, s.session_id),
            other => panic!("expected SessionClosed, got {other:?}"),
        }
        c.expect_closed().await;
    }

    let (status, body) = r
        .delete(&format!("/internal/v1/sessions/{}", s.session_id))
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "unknown_session");
    let mut c = r.client().await;
    let reply = c
        .join(s.session_id, &s.parties[0].token, &s.parties[0].identity)
        .await;
    c.expect_error(reply, "unknown_session").await;
}

async fn the_sweeper_closes_expired_sessions(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    // Two seconds or more left to join; the sweeper runs every second.
    let s = r.session_until(2, &[], common::now() + 3).await;
    let mut c0 = s.join(&r, 0).await;
    match c0.next_json().await {
        RouterToClient::SessionClosed { session_id } => assert_eq!(session_id, s.session_id),
        other => panic!("expected SessionClosed, got {other:?}"),
    }
    c0.expect_closed().await;
    let (status, _) = r
        .delete(&format!("/internal/v1/sessions/{}", s.session_id))
        .await;
    assert_eq!(status, 404);
}

async fn the_router_sees_no_p2p_plaintext(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let mut tap = r.router.subscribe_frames();
    let s = r.session(2, &[]).await;
    let mut c0 = s.join(&r, 0).await;
    let mut c1 = s.join(&r, 1).await;
    let mut ch0 = s.channel(0);
    let mut ch1 = s.channel(1);
    common::exchange_keys(&mut [&mut ch0, &mut ch1]);

    let secret = b"SECRET-SHARE-PLAINTEXT-0123456789abcdef";
    let p = ch0.seal_p2p(Stage::Sign, 1, secret).unwrap();
    c0.send_frame(p).await;
    let delivered = c1.next_frame().await;
    assert_eq!(ch1.open(&delivered).unwrap().payload, secret);

    let (session_id, seen) = tokio::time::timeout(common::WAIT, tap.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session_id, s.session_id);
    assert_eq!(seen, delivered);
    assert!(!seen.windows(secret.len()).any(|w| w == secret));
}

async fn shutdown_closes_connections_and_serve_returns(backend: TestBackend) {
    let mut r = TestRouter::start(&backend).await;
    let s = r.session(2, &[]).await;
    let mut c0 = s.join(&r, 0).await;
    let mut pending = Client::connect(r.addr).await;
    r.stop().await;
    c0.expect_closed().await;
    match pending.next().await {
        Some(tokio_tungstenite::tungstenite::Message::Text(t)) => {
            assert!(t.as_str().contains("shutting_down"));
            pending.expect_closed().await;
        }
        Some(tokio_tungstenite::tungstenite::Message::Close(_)) | None => {}
        other => panic!("unexpected {other:?}"),
    }
}

async fn a_closed_session_cannot_be_registered_again(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let s = r.session(2, &[0]).await;
    let mut c0 = s.join(&r, 0).await;
    // The coordinator closes it (completed or failed).
    let (status, _) = r
        .delete(&format!("/internal/v1/sessions/{}", s.session_id))
        .await;
    assert_eq!(status, 204);
    assert!(matches!(
        c0.next_json().await,
        RouterToClient::SessionClosed { .. }
    ));

    // The very same registration (a replay) is refused with a typed reason.
    let (status, body) = r.post(SESSIONS_PATH, &s.registration).await;
    assert_eq!(
        (status, &body["code"]),
        (410, &json!("session_closed")),
        "{body}"
    );
    assert!(body["error"].is_string());
    // So is the same id with a later deadline and fresh tokens.
    let token = random_token();
    let mut fresh = s.registration.clone();
    fresh["expires_at"] = json!(now() + 7200);
    fresh["participants"] = json!([
        {"position": 0, "token_sha256": token_hash(&token), "identity": null}
    ]);
    let (status, body) = r.post(SESSIONS_PATH, &fresh).await;
    assert_eq!(
        (status, &body["code"]),
        (410, &json!("session_closed")),
        "{body}"
    );
    // Nothing was registered: neither the old tokens nor the new one join.
    let mut c = r.client().await;
    let reply = c
        .join(s.session_id, &s.parties[0].token, &s.parties[0].identity)
        .await;
    c.expect_error(reply, "unknown_session").await;
    let mut c = r.client().await;
    let reply = c.join(s.session_id, &token, &s.parties[1].identity).await;
    c.expect_error(reply, "unknown_session").await;
}

async fn an_expired_session_cannot_be_registered_again(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let s = r.session_until(2, &[], now() + 2).await;
    // Until its deadline the same registration is a harmless retry; from
    // the deadline on, the session is over and the id is refused.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    let body = loop {
        let (status, body) = r.post(SESSIONS_PATH, &s.registration).await;
        if status != 200 {
            assert_eq!(status, 410, "{body}");
            break body;
        }
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["code"], "session_closed");
    assert!(now() >= s.registration["expires_at"].as_u64().unwrap());
    let mut again = s.registration.clone();
    again["expires_at"] = json!(now() + 3600);
    let (status, body) = r.post(SESSIONS_PATH, &again).await;
    assert_eq!(
        (status, &body["code"]),
        (410, &json!("session_closed")),
        "{body}"
    );
    let mut c = r.client().await;
    let reply = c
        .join(s.session_id, &s.parties[0].token, &s.parties[0].identity)
        .await;
    match reply {
        RouterToClient::Error { code, .. } => {
            assert!(code == "expired" || code == "unknown_session", "{code}");
            c.expect_closed().await;
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn re_registering_an_open_session_changes_nothing(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let s = r.session(2, &[]).await;
    let mut c0 = s.join(&r, 0).await;
    let mut c1 = s.join(&r, 1).await;

    // The same registration again (the coordinator retrying): 200, and
    // the session, its bindings and its connections are untouched.
    let (status, body) = r.post(SESSIONS_PATH, &s.registration).await;
    assert_eq!((status, body), (200, json!({"session_id": s.session_id})));

    // Another registration of the open id, e.g. to swap slot 1's token and
    // identity: refused, nothing changed.
    let intruder = PartyIdentity::generate(&mut OsRng);
    let token = random_token();
    let mut swapped = s.registration.clone();
    swapped["participants"][1] = json!({
        "position": 1, "token_sha256": token_hash(&token), "identity": intruder.public()
    });
    let (status, body) = r.post(SESSIONS_PATH, &swapped).await;
    assert_eq!((status, &body["code"]), (409, &json!("conflict")), "{body}");
    let mut c = r.client().await;
    let reply = c.join(s.session_id, &token, &intruder).await;
    c.expect_error(reply, "bad_token").await;
    // Slot 1 stays bound to the identity that joined it.
    let mut c = r.client().await;
    let reply = c.join(s.session_id, &s.parties[1].token, &intruder).await;
    c.expect_error(reply, "token_bound").await;

    // Frames still flow between the original parties.
    let mut ch0 = s.channel(0);
    let mut ch1 = s.channel(1);
    let b = ch0.seal_broadcast(Stage::Sign, b"still here").unwrap();
    c0.send_frame(b).await;
    assert_eq!(
        ch1.open(&c1.next_frame().await).unwrap().payload,
        b"still here"
    );
}
