//! The internal API and control connections (invitations).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    now, on_both_backends, random_token, random_uuid, token_hash, TestBackend, TestRouter,
};
use mpc_api::error::{ErrorBody, ErrorCode};
use mpc_api::router::{InviteRequest, InviteResponse, INVITATIONS_PATH};
use party_core::descriptor::{
    CurveName, Participant, SessionDescriptor, SessionKind, SignedDescriptor, DESCRIPTOR_VERSION,
};
use party_core::identity::{CoordinatorKey, PartyIdentity};
use party_core::wire::{ClientToRouter, Invitation, RouterToClient};
use rand_core::OsRng;
use serde_json::{json, Value};

on_both_backends!(
    internal_api_requires_the_token,
    session_registration_is_validated,
    invitation_reaches_a_connected_party,
    invitation_waits_for_the_party_to_connect,
    control_connection_is_replaced_by_a_newer_one,
    control_connection_with_bad_signature_is_refused,
    an_invitation_past_its_deadline_is_dropped_even_for_a_connected_party,
);

fn invitation(for_party: &PartyIdentity, expires_at: u64) -> Invitation {
    let other = PartyIdentity::generate(&mut OsRng);
    let descriptor = SessionDescriptor {
        version: DESCRIPTOR_VERSION,
        session_id: random_uuid(),
        kind: SessionKind::Sign {
            account_id: "acct-1".into(),
            message_hash: [9; 32],
            derivation_path: vec![],
        },
        curve: CurveName::Secp256k1,
        threshold: 2,
        parties: 3,
        participants: vec![
            Participant {
                party_id: "server-party-1".into(),
                keygen_index: 0,
                identity: for_party.public(),
            },
            Participant {
                party_id: "browser".into(),
                keygen_index: 2,
                identity: other.public(),
            },
        ],
        expires_at,
        authorization: None,
    };
    let signed: SignedDescriptor = descriptor
        .sign(&CoordinatorKey::generate(&mut OsRng))
        .unwrap();
    Invitation {
        descriptor: signed,
        join_token: random_token(),
    }
}

async fn invite(r: &TestRouter, party: &PartyIdentity, inv: &Invitation) -> bool {
    // The request as the coordinator sends it (`mpc_api::router`).
    let request = InviteRequest {
        identity_ed25519: hex::encode(party.public().ed25519),
        invitation: inv,
    };
    let (status, body) = r
        .post(INVITATIONS_PATH, &serde_json::to_value(&request).unwrap())
        .await;
    assert_eq!(status, 202, "{body}");
    let delivered = body["delivered"].as_bool().unwrap();
    let answer: InviteResponse = serde_json::from_value(body).unwrap();
    assert_eq!(answer, InviteResponse { delivered });
    delivered
}

fn expect_invitation(msg: RouterToClient, sent: &Invitation) {
    match msg {
        RouterToClient::Invitation(got) => {
            assert_eq!(got.descriptor, sent.descriptor);
            assert_eq!(got.join_token, sent.join_token);
        }
        other => panic!("expected Invitation, got {other:?}"),
    }
}

fn expect_registered(msg: RouterToClient, party_id: &str) {
    match msg {
        RouterToClient::Registered { party_id: p } => assert_eq!(p, party_id),
        other => panic!("expected Registered, got {other:?}"),
    }
}

async fn internal_api_requires_the_token(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let body = json!({"session_id": random_uuid(), "expires_at": now() + 60, "participants": []});
    for token in [None, Some("wrong"), Some("")] {
        let mut req = r
            .http
            .post(r.internal_url("/internal/v1/sessions"))
            .json(&body);
        if let Some(t) = token {
            req = req.header("X-Internal-Token", t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized");
        assert!(body["error"].is_string());
    }
    let resp = r
        .http
        .delete(r.internal_url(&format!("/internal/v1/sessions/{}", random_uuid())))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = r
        .http
        .post(r.internal_url("/internal/v1/invitations"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

async fn session_registration_is_validated(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let slot = |position: u16| json!({"position": position, "token_sha256": token_hash(&random_token()), "identity": null});
    let id = random_uuid();
    let good =
        json!({"session_id": id, "expires_at": now() + 60, "participants": [slot(0), slot(1)]});
    let (status, body) = r.post("/internal/v1/sessions", &good).await;
    assert_eq!(status, 201);
    assert_eq!(body, json!({"session_id": id}));

    // The same registration again (a retry) changes nothing and succeeds;
    // another registration of the same id is a conflict.
    let (status, body) = r.post("/internal/v1/sessions", &good).await;
    assert_eq!((status, body), (200, json!({"session_id": id})));
    let other = json!({"session_id": id, "expires_at": now() + 60, "participants": [slot(0)]});
    let (status, body) = r.post("/internal/v1/sessions", &other).await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], "conflict");
    // A deadline past the longest session lifetime (30 days).
    let far = json!({"session_id": random_uuid(), "expires_at": now() + 31 * 24 * 3600,
                     "participants": [slot(0)]});
    let (status, body) = r.post("/internal/v1/sessions", &far).await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("bad_request")),
        "{body}"
    );

    let bad_bodies = [
        // gap in positions
        json!({"session_id": random_uuid(), "expires_at": 1, "participants": [slot(0), slot(2)]}),
        // repeated position
        json!({"session_id": random_uuid(), "expires_at": 1, "participants": [slot(0), slot(0)]}),
        // no participants
        json!({"session_id": random_uuid(), "expires_at": 1, "participants": []}),
        // unknown field
        json!({"session_id": random_uuid(), "expires_at": 1, "participants": [slot(0)], "extra": 1}),
        // bad hash
        json!({"session_id": random_uuid(), "expires_at": 1,
               "participants": [{"position": 0, "token_sha256": "abcd", "identity": null}]}),
        // not a uuid
        json!({"session_id": "nope", "expires_at": 1, "participants": [slot(0)]}),
    ];
    for b in bad_bodies {
        let (status, resp) = r.post("/internal/v1/sessions", &b).await;
        assert_eq!(status, 400, "{b} -> {resp}");
        assert_eq!(resp["code"], "bad_request");
        // Exactly the shared error body.
        let e: ErrorBody = serde_json::from_value(resp).unwrap();
        assert_eq!(e.code, ErrorCode::BadRequest);
    }

    let (status, body) = r.delete("/internal/v1/sessions/not-a-uuid").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = r
        .delete(&format!("/internal/v1/sessions/{}", random_uuid()))
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "unknown_session");
    let e: ErrorBody = serde_json::from_value(body).unwrap();
    assert_eq!(e.code, ErrorCode::UnknownSession);
}

async fn invitation_reaches_a_connected_party(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let party = PartyIdentity::generate(&mut OsRng);
    let mut c = r.client().await;
    expect_registered(c.control("server-party-1", &party).await, "server-party-1");

    let inv = invitation(&party, now() + 600);
    assert!(invite(&r, &party, &inv).await);
    expect_invitation(c.next_json().await, &inv);

    // An invitation for someone else does not reach this connection.
    let stranger = PartyIdentity::generate(&mut OsRng);
    assert!(!invite(&r, &stranger, &invitation(&stranger, now() + 600)).await);
    let inv2 = invitation(&party, now() + 600);
    assert!(invite(&r, &party, &inv2).await);
    expect_invitation(c.next_json().await, &inv2);
}

async fn invitation_waits_for_the_party_to_connect(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let party = PartyIdentity::generate(&mut OsRng);
    let expired = invitation(&party, now().saturating_sub(10));
    let first = invitation(&party, now() + 600);
    let second = invitation(&party, now() + 600);
    assert!(!invite(&r, &party, &expired).await);
    assert!(!invite(&r, &party, &first).await);
    assert!(!invite(&r, &party, &second).await);

    let mut c = r.client().await;
    expect_registered(c.control("server-party-1", &party).await, "server-party-1");
    expect_invitation(c.next_json().await, &first);
    expect_invitation(c.next_json().await, &second);
    // The expired one was dropped: the next message is a fresh invitation.
    let third = invitation(&party, now() + 600);
    assert!(invite(&r, &party, &third).await);
    expect_invitation(c.next_json().await, &third);
}

async fn control_connection_is_replaced_by_a_newer_one(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let party = PartyIdentity::generate(&mut OsRng);
    let mut old = r.client().await;
    expect_registered(old.control("p1", &party).await, "p1");
    let mut new = r.client().await;
    expect_registered(new.control("p1", &party).await, "p1");
    old.expect_closed().await;
    let inv = invitation(&party, now() + 600);
    assert!(invite(&r, &party, &inv).await);
    expect_invitation(new.next_json().await, &inv);
}

async fn control_connection_with_bad_signature_is_refused(backend: TestBackend) {
    let r = TestRouter::start(&backend).await;
    let party = PartyIdentity::generate(&mut OsRng);
    let mut c = r.client().await;
    // Signed for another party id than the one claimed.
    let signature = party.sign(&party_core::wire::control_message(&c.nonce, "other"));
    c.send_json(&ClientToRouter::Control {
        party_id: "p1".into(),
        identity: party.public(),
        signature,
    })
    .await;
    let reply = c.next_json().await;
    c.expect_error(reply, "bad_signature").await;
    // Nothing was registered for that key.
    assert!(!invite(&r, &party, &invitation(&party, now() + 600)).await);
}

async fn an_invitation_past_its_deadline_is_dropped_even_for_a_connected_party(
    backend: TestBackend,
) {
    let r = TestRouter::start(&backend).await;
    let party = PartyIdentity::generate(&mut OsRng);
    let mut c = r.client().await;
    expect_registered(c.control("server-party-1", &party).await, "server-party-1");
    assert!(!invite(&r, &party, &invitation(&party, now().saturating_sub(1))).await);
    // The next message on the connection is the fresh invitation.
    let fresh = invitation(&party, now() + 600);
    assert!(invite(&r, &party, &fresh).await);
    expect_invitation(c.next_json().await, &fresh);
}
