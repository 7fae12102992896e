//! Dead parties noticed early (issue #15): a joined party whose session
//! connection ends without a normal close and does not come back within the
//! grace period is reported on `GET /internal/v1/disconnects`; one that
//! comes back in time (to any instance), leaves with a normal close, or
//! whose session has closed is not. Every case on both backends; with
//! Redis also across two instances.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{on_both_backends, TestBackend, TestRouter, TestSession, INTERNAL_TOKEN};
use mpc_api::router::{Disconnect, Disconnects, DISCONNECTS_PATH};
use router::RouterConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use uuid::Uuid;

on_both_backends!(
    a_dropped_party_is_reported_after_the_grace_period,
    a_party_back_within_the_grace_period_is_not_reported,
    a_normal_close_is_not_reported,
    a_closed_session_reports_nothing,
    the_feed_needs_the_internal_token,
);

const GRACE: Duration = Duration::from_millis(300);

async fn router(backend: &TestBackend) -> TestRouter {
    let mut config = RouterConfig::new(INTERNAL_TOKEN);
    config.disconnect_grace = GRACE;
    TestRouter::start_with(backend, config).await
}

/// One poll of the feed.
async fn poll(r: &TestRouter, after: Option<&str>, wait_ms: u64) -> Disconnects {
    let mut query = vec![("wait_ms", wait_ms.to_string())];
    if let Some(after) = after {
        query.push(("after", after.to_string()));
    }
    let resp = r
        .http
        .get(r.internal_url(DISCONNECTS_PATH))
        .query(&query)
        .header("X-Internal-Token", INTERNAL_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

/// The feed's current end.
async fn cursor(r: &TestRouter) -> String {
    poll(r, None, 0).await.cursor
}

/// Polls from `after` until a notice for one of `sessions` arrives (other
/// tests share a Redis feed); returns the first such notice.
async fn first_notice(r: &TestRouter, after: &str, sessions: &[Uuid]) -> Disconnect {
    let deadline = Instant::now() + common::WAIT;
    let mut after = after.to_string();
    loop {
        assert!(Instant::now() < deadline, "no disconnect reported");
        let batch = poll(r, Some(&after), 5_000).await;
        if let Some(n) = batch
            .disconnects
            .into_iter()
            .find(|n| sessions.contains(&n.session_id))
        {
            return n;
        }
        after = batch.cursor;
    }
}

async fn a_dropped_party_is_reported_after_the_grace_period(backend: TestBackend) {
    let r = router(&backend).await;
    let s = r.session(2, &[0, 1]).await;
    let start = cursor(&r).await;
    let _c0 = s.join(&r, 0).await;
    let c1 = s.join(&r, 1).await;
    // A crash: the socket goes away without a close frame.
    let dropped = Instant::now();
    drop(c1);
    let n = first_notice(&r, &start, &[s.session_id]).await;
    assert!(
        dropped.elapsed() >= GRACE,
        "reported before the grace period"
    );
    assert_eq!((n.session_id, n.position), (s.session_id, 1));
    assert_eq!(n.grace_ms, 300);
    assert!(n.left_at_ms > 0);
}

/// Drops `position` abruptly, reconnects it within the grace period, then
/// drops `marker` for good: the first notice must be the marker's.
async fn back_in_time(r: &TestRouter, again: &TestRouter, s: &TestSession) {
    let start = cursor(r).await;
    let c0 = s.join(r, 0).await;
    let c1 = s.join(r, 1).await;
    drop(c1);
    let _c1 = s.join(again, 1).await;
    drop(c0);
    let n = first_notice(r, &start, &[s.session_id]).await;
    assert_eq!(n.position, 0, "the party that came back was reported");
}

async fn a_party_back_within_the_grace_period_is_not_reported(backend: TestBackend) {
    let r = router(&backend).await;
    let s = r.session(2, &[0, 1]).await;
    back_in_time(&r, &r, &s).await;
}

async fn a_normal_close_is_not_reported(backend: TestBackend) {
    let r = router(&backend).await;
    let s = r.session(2, &[0, 1]).await;
    let start = cursor(&r).await;
    let c0 = s.join(&r, 0).await;
    let mut c1 = s.join(&r, 1).await;
    c1.ws
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await
        .unwrap();
    c1.expect_closed().await;
    drop(c0);
    let n = first_notice(&r, &start, &[s.session_id]).await;
    assert_eq!(
        n.position, 0,
        "a party that left with a normal close was reported"
    );
}

async fn a_closed_session_reports_nothing(backend: TestBackend) {
    let r = router(&backend).await;
    let closed = r.session(2, &[0, 1]).await;
    let open = r.session(2, &[0, 1]).await;
    let start = cursor(&r).await;
    let c = closed.join(&r, 0).await;
    drop(c);
    let (status, _) = r
        .delete(&mpc_api::router::session_path(closed.session_id))
        .await;
    assert_eq!(status, 204);
    let marker = open.join(&r, 1).await;
    drop(marker);
    let n = first_notice(&r, &start, &[closed.session_id, open.session_id]).await;
    assert_eq!(
        (n.session_id, n.position),
        (open.session_id, 1),
        "a party of a closed session was reported"
    );
}

async fn the_feed_needs_the_internal_token(backend: TestBackend) {
    let r = router(&backend).await;
    for token in [None, Some("parties-token")] {
        let mut req = r.http.get(r.internal_url(DISCONNECTS_PATH));
        if let Some(t) = token {
            req = req.header("X-Internal-Token", t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized");
    }
    // Not on the public listener at all.
    let resp = r.http.get(r.url(DISCONNECTS_PATH)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    // A malformed query is refused with a typed error.
    let resp = r
        .http
        .get(r.internal_url(&format!("{DISCONNECTS_PATH}?wait_ms=soon")))
        .header("X-Internal-Token", INTERNAL_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "bad_request");
}

/// Redis: a party that fails over to another instance within the grace
/// period is not reported, and either instance serves the shared feed.
#[tokio::test]
async fn redis_a_party_back_on_another_instance_is_not_reported() {
    let Some(backend) = TestBackend::redis().await else {
        return;
    };
    let a = router(&backend).await;
    let b = router(&backend).await;
    let s = a.session(2, &[0, 1]).await;
    back_in_time(&a, &b, &s).await;

    // Recorded by A (which held the connection), read through B.
    let s2 = a.session(2, &[0, 1]).await;
    let start = cursor(&b).await;
    let c = s2.join(&a, 1).await;
    drop(c);
    let n = first_notice(&b, &start, &[s2.session_id]).await;
    assert_eq!(n.position, 1);
}
