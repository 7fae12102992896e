//! The router's disconnect notices (issue #15), applied by the coordinator:
//! a session fails once, with `party_disconnected`, naming the party and
//! its position as the router's observation and blaming nobody; a party
//! that already reported its result is not failed for leaving; an ended or
//! unknown session is left alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::{parties, setup, signed_report};
use mpc_api::router::Disconnect;
use party_core::wire::ReportBody;
use serde_json::json;
use uuid::Uuid;

fn notice(session_id: Uuid, position: u16) -> Disconnect {
    Disconnect {
        session_id,
        position,
        left_at_ms: 1,
        grace_ms: 3_000,
    }
}

#[tokio::test]
async fn a_disconnect_fails_the_session_once_and_spares_a_party_that_reported() {
    let Some(t) = setup(|_| {}).await else { return };
    let (status, created) = t
        .post(
            "/api/v1/mpc/keygen",
            &json!({ "threshold_n": 2, "threshold_t": 2, "participants": parties(&[1, 2]) }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let sid = Uuid::parse_str(created["session_id"].as_str().unwrap()).unwrap();

    // Party 1 (position 0) has reported its result: leaving is no failure.
    let result = ReportBody::KeygenResult {
        public_key: [2; 33],
        policy_hash: None,
        aux_fingerprint: Some([0xaa; 32]),
    };
    let (s, a) = t
        .report(&signed_report(sid, 0, result, &t.servers[0]))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{a}");
    assert!(!t.c.on_disconnect(&notice(sid, 0)).await.unwrap());
    let (_, session) = t.get(&format!("/api/v1/mpc/sessions/{sid}")).await;
    assert_eq!(session["status"], "waiting", "{session}");

    // Party 2 (position 1) has not: the session fails on the router's word.
    assert!(t.c.on_disconnect(&notice(sid, 1)).await.unwrap());
    let (_, session) = t.get(&format!("/api/v1/mpc/sessions/{sid}")).await;
    assert_eq!(session["status"], "failed", "{session}");
    assert_eq!(session["error"]["code"], "party_disconnected", "{session}");
    assert!(session["error"]["blamed_party"].is_null(), "{session}");
    let reason = session["error"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the router observed server-party-2 (position 1)"),
        "{reason}"
    );
    assert_eq!(t.router.calls().closed, vec![sid]);

    // Once: the same notice again (another coordinator instance, a retried
    // poll) changes nothing, and neither does one for an unknown session.
    assert!(!t.c.on_disconnect(&notice(sid, 1)).await.unwrap());
    assert!(!t.c.on_disconnect(&notice(Uuid::new_v4(), 0)).await.unwrap());
    let (_, again) = t.get(&format!("/api/v1/mpc/sessions/{sid}")).await;
    assert_eq!(again["error"], session["error"]);
    assert_eq!(t.router.calls().closed, vec![sid]);
    let failed_events = t.count("session_events WHERE kind = 'failed'").await;
    assert_eq!(failed_events, 1);
}
