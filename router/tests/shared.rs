//! Several router instances sharing session state through Redis: parties of
//! one session on different instances, late joins and reconnects served by
//! another instance, bindings, invitations and closing across instances, and
//! readiness while Redis is away. Needs Redis (`MPC_TEST_REDIS_URL`); skipped
//! with a printed reason outside CI when it is down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, TestRouter, INTERNAL_TOKEN};
use party_core::descriptor::{
    CurveName, Participant, SessionDescriptor, SessionKind, DESCRIPTOR_VERSION,
};
use party_core::envelope::Stage;
use party_core::identity::{CoordinatorKey, PartyIdentity};
use party_core::wire::{Invitation, RouterToClient};
use rand_core::OsRng;
use router::RouterConfig;
use serde_json::json;

async fn pair() -> Option<(TestRouter, TestRouter)> {
    let a = TestRouter::start_shared().await?;
    let b = TestRouter::start_shared().await?;
    Some((a, b))
}

#[tokio::test]
async fn parties_on_different_instances_exchange_frames() {
    let Some((a, b)) = pair().await else { return };
    let s = a.session(3, &[]).await;
    let mut c0 = s.join(&a, 0).await;
    let mut c1 = s.join(&b, 1).await;
    let mut c2 = s.join(&b, 2).await;
    let (mut ch0, mut ch1, mut ch2) = (s.channel(0), s.channel(1), s.channel(2));
    common::exchange_keys(&mut [&mut ch0, &mut ch1, &mut ch2]);

    let bc = ch0.seal_broadcast(Stage::Sign, b"from A").unwrap();
    c0.send_frame(bc.clone()).await;
    assert_eq!(ch1.open(&c1.next_frame().await).unwrap().payload, b"from A");
    assert_eq!(ch2.open(&c2.next_frame().await).unwrap().payload, b"from A");

    // p2p from B to A reaches only its recipient.
    let p = ch1.seal_p2p(Stage::Sign, 0, b"one to zero").unwrap();
    c1.send_frame(p).await;
    let got = ch0.open(&c0.next_frame().await).unwrap();
    assert_eq!(
        (got.sender, got.payload.as_slice()),
        (1, &b"one to zero"[..])
    );
    let bc2 = ch2.seal_broadcast(Stage::Sign, b"from B").unwrap();
    c2.send_frame(bc2).await;
    // Party 2's next frame at 0 is the broadcast, not 1's p2p to 0 again, and
    // party 1 gets the broadcast next (it never saw its own p2p frame).
    assert_eq!(ch0.open(&c0.next_frame().await).unwrap().payload, b"from B");
    assert_eq!(ch1.open(&c1.next_frame().await).unwrap().payload, b"from B");
}

#[tokio::test]
async fn a_party_whose_router_stops_rejoins_elsewhere_and_misses_nothing() {
    let Some((mut a, b)) = pair().await else {
        return;
    };
    let s = b.session(2, &[]).await;
    let mut c0 = s.join(&b, 0).await;
    let mut c1 = s.join(&a, 1).await;
    let mut ch0 = s.channel(0);
    let mut ch1 = s.channel(1);
    common::exchange_keys(&mut [&mut ch0, &mut ch1]);
    let first = ch0.seal_broadcast(Stage::Sign, b"first").unwrap();
    c0.send_frame(first.clone()).await;
    assert_eq!(c1.next_frame().await, first);

    // Router A goes away; party 1's connection ends.
    a.stop().await;
    c1.expect_closed().await;
    // Meanwhile party 0 keeps talking.
    let second = ch0.seal_p2p(Stage::Sign, 1, b"second").unwrap();
    c0.send_frame(second.clone()).await;

    // Party 1 rejoins through B: the whole log for it, in order, then live.
    let mut again = s.join(&b, 1).await;
    assert_eq!(again.next_frame().await, first);
    assert_eq!(again.next_frame().await, second);
    ch1.open(&first).unwrap();
    assert_eq!(ch1.open(&second).unwrap().payload, b"second");
    let back = ch1.seal_p2p(Stage::Sign, 0, b"back").unwrap();
    again.send_frame(back).await;
    assert_eq!(ch0.open(&c0.next_frame().await).unwrap().payload, b"back");
}

#[tokio::test]
async fn a_reconnect_on_another_instance_replaces_the_old_connection() {
    let Some((a, b)) = pair().await else { return };
    let s = a.session(2, &[]).await;
    let mut c0 = s.join(&a, 0).await;
    let mut old = s.join(&a, 1).await;
    let mut new = s.join(&b, 1).await;
    old.expect_closed().await;
    let mut ch0 = s.channel(0);
    let f = ch0.seal_broadcast(Stage::Sign, b"to the new one").unwrap();
    c0.send_frame(f.clone()).await;
    assert_eq!(new.next_frame().await, f);
}

#[tokio::test]
async fn a_token_bound_on_one_instance_refuses_another_identity_on_the_other() {
    let Some((a, b)) = pair().await else { return };
    let s = a.session(2, &[]).await;
    let _c0 = s.join(&a, 0).await;
    let intruder = PartyIdentity::generate(&mut OsRng);
    let mut c = Client::connect(b.addr).await;
    let reply = c.join(s.session_id, &s.parties[0].token, &intruder).await;
    c.expect_error(reply, "token_bound").await;
}

#[tokio::test]
async fn closing_through_one_instance_closes_connections_on_the_other() {
    let Some((a, b)) = pair().await else { return };
    let s = a.session(2, &[]).await;
    let mut c1 = s.join(&b, 1).await;
    let (status, _) = a
        .delete(&format!("/internal/v1/sessions/{}", s.session_id))
        .await;
    assert_eq!(status, 204);
    match c1.next_json().await {
        RouterToClient::SessionClosed { session_id } => assert_eq!(session_id, s.session_id),
        other => panic!("expected SessionClosed, got {other:?}"),
    }
    c1.expect_closed().await;
    // Gone everywhere.
    let (status, _) = b
        .delete(&format!("/internal/v1/sessions/{}", s.session_id))
        .await;
    assert_eq!(status, 404);
    let mut c = Client::connect(b.addr).await;
    let reply = c
        .join(s.session_id, &s.parties[0].token, &s.parties[0].identity)
        .await;
    c.expect_error(reply, "unknown_session").await;
}

fn invitation_for(party: &PartyIdentity) -> Invitation {
    let key = CoordinatorKey::generate(&mut OsRng);
    let d = SessionDescriptor {
        version: DESCRIPTOR_VERSION,
        session_id: common::random_uuid(),
        kind: SessionKind::Keygen {
            generate_aux: false,
            policy: None,
            aux_fingerprint: None,
        },
        curve: CurveName::Secp256k1,
        threshold: 2,
        parties: 2,
        participants: vec![
            Participant {
                party_id: "p".into(),
                keygen_index: 0,
                identity: party.public(),
            },
            Participant {
                party_id: "q".into(),
                keygen_index: 1,
                identity: PartyIdentity::generate(&mut OsRng).public(),
            },
        ],
        expires_at: common::now() + 600,
        authorization: None,
    };
    Invitation {
        descriptor: d.sign(&key).unwrap(),
        join_token: common::random_token(),
    }
}

async fn invite(r: &TestRouter, party: &PartyIdentity, inv: &Invitation) {
    let (status, body) = r
        .post(
            "/internal/v1/invitations",
            &json!({ "identity_ed25519": hex::encode(party.public().ed25519), "invitation": inv }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
}

async fn expect_invitation(c: &mut Client, inv: &Invitation) {
    match c.next_json().await {
        RouterToClient::Invitation(got) => assert_eq!(
            got.descriptor.descriptor.session_id,
            inv.descriptor.descriptor.session_id
        ),
        other => panic!("expected an invitation, got {other:?}"),
    }
}

#[tokio::test]
async fn invitations_reach_a_party_connected_to_another_instance_or_wait_for_it() {
    let Some((a, b)) = pair().await else { return };
    let party = PartyIdentity::generate(&mut OsRng);
    // Queued while the party is offline, delivered when it connects to B.
    let queued = invitation_for(&party);
    invite(&a, &party, &queued).await;
    let mut c = Client::connect(b.addr).await;
    assert!(matches!(
        c.control("p", &party).await,
        RouterToClient::Registered { .. }
    ));
    expect_invitation(&mut c, &queued).await;
    // Live: posted to A, pushed through B.
    let live = invitation_for(&party);
    invite(&a, &party, &live).await;
    expect_invitation(&mut c, &live).await;
}

#[tokio::test]
async fn a_session_closed_through_one_instance_cannot_be_registered_on_another() {
    let Some((a, b)) = pair().await else { return };
    let s = a.session(2, &[]).await;
    let (status, _) = a
        .delete(&format!("/internal/v1/sessions/{}", s.session_id))
        .await;
    assert_eq!(status, 204);
    for r in [&a, &b] {
        let (status, body) = r
            .post(mpc_api::router::SESSIONS_PATH, &s.registration)
            .await;
        assert_eq!(
            (status, &body["code"]),
            (410, &json!("session_closed")),
            "{body}"
        );
    }
    // An instance started afterwards knows it too: the id is kept in Redis.
    let Some(c) = TestRouter::start_shared().await else {
        return;
    };
    let (status, body) = c
        .post(mpc_api::router::SESSIONS_PATH, &s.registration)
        .await;
    assert_eq!(
        (status, &body["code"]),
        (410, &json!("session_closed")),
        "{body}"
    );
    let mut client = c.client().await;
    let reply = client
        .join(s.session_id, &s.parties[0].token, &s.parties[0].identity)
        .await;
    client.expect_error(reply, "unknown_session").await;
}

#[tokio::test]
async fn without_redis_the_router_is_live_but_not_ready() {
    let mut config = RouterConfig::new(INTERNAL_TOKEN);
    config.redis_url = Some("redis://127.0.0.1:1".into());
    let listeners = common::listeners().await;
    let addr = listeners.public.local_addr().unwrap();
    let internal_addr = listeners.internal.local_addr().unwrap();
    let router = router::Router::new(config).unwrap();
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(router.clone().serve(listeners, async {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let health = http
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = http
        .get(format!("http://{addr}/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let reg = http
        .post(format!("http://{internal_addr}/internal/v1/sessions"))
        .header("X-Internal-Token", INTERNAL_TOKEN)
        .json(&json!({ "session_id": common::random_uuid(), "expires_at": common::now() + 60,
                       "participants": [{ "position": 0, "token_sha256": "00".repeat(32), "identity": null }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(reg.status(), 503);
    let mut c = Client::connect(addr).await;
    let s = PartyIdentity::generate(&mut OsRng);
    let reply = c.join(common::random_uuid(), "t", &s).await;
    c.expect_error(reply, "not_ready").await;
}
