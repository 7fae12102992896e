//! Per-API-key limits, through `app()` on a fresh database (SQLite, or
//! PostgreSQL with `MPC_TEST_DB=postgres`) and the fake router: a burst over
//! the request rate and sessions over the open-session quota are answered
//! 429 with `Retry-After`, and create nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{json_request, parties, setup, TestApp, API_KEY};
use coordinator::config::{Limits, DEFAULT_RATE_LIMIT_REQUESTS};
use serde_json::{json, Value};
use tower::ServiceExt as _;

/// Status, `Retry-After` (seconds) and body.
async fn send_full(t: &TestApp, req: Request<Body>) -> (u16, Option<u64>, Value) {
    let resp = t.c.app().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        retry,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn keygen_request(key: &str) -> Request<Body> {
    let body = json!({ "threshold_n": 2, "threshold_t": 2, "participants": parties(&[1, 2]) });
    let mut req = json_request("POST", "/api/v1/mpc/keygen", body.to_string());
    req.headers_mut().insert("x-api-key", key.parse().unwrap());
    req
}

fn get_request(key: &str, path: &str) -> Request<Body> {
    Request::get(path)
        .header("x-api-key", key)
        .body(Body::empty())
        .unwrap()
}

async fn other_key(t: &TestApp) -> String {
    let (status, created) = t
        .post(
            "/api/v1/mpc/admin/keys",
            &json!({ "name": "other", "scopes": ["read", "keygen"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["key"].as_str().unwrap().to_string()
}

/// A window of an hour: the test cannot straddle two windows unless it
/// runs across the top of the hour.
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn a_burst_over_a_keys_rate_is_429_with_retry_after_and_creates_no_session() {
    let Some(t) = setup(|c| {
        c.limits = Limits {
            requests: 5,
            window: HOUR,
            ..Limits::default()
        }
    })
    .await
    else {
        return;
    };
    // Another key, created first (that request counts too).
    let other = other_key(&t).await;
    for _ in 0..4 {
        let (status, _, body) = send_full(&t, keygen_request(API_KEY)).await;
        assert_eq!(status, 201, "{body}");
    }
    let sessions = t.count("sessions").await;
    let invited = t.router.calls().invited.len();
    for _ in 0..3 {
        let (status, retry, body) = send_full(&t, keygen_request(API_KEY)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (429, Some("rate_limited")),
            "{body}"
        );
        let retry = retry.expect("Retry-After");
        assert!((1..=3600).contains(&retry), "Retry-After: {retry}");
    }
    // Reads are counted and refused the same way.
    let (status, retry, _) = send_full(&t, get_request(API_KEY, "/api/v1/mpc/accounts")).await;
    assert_eq!((status, retry.is_some()), (429, true));
    assert_eq!(t.count("sessions").await, sessions, "no session created");
    assert_eq!(t.router.calls().invited.len(), invited, "nobody invited");
    // The limit is per key.
    let (status, _, body) = send_full(&t, keygen_request(&other)).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_burst_of_1000_requests_exceeds_the_default_rate() {
    use futures_util::StreamExt as _;
    let Some(t) = setup(|_| {}).await else { return };
    let limits = t.c.config().limits;
    assert_eq!(limits, Limits::default());
    let started = std::time::Instant::now();
    let statuses: Vec<(u16, Option<u64>)> = futures_util::stream::iter(0..1000)
        .map(|_| async {
            let (status, retry, _) =
                send_full(&t, get_request(API_KEY, "/api/v1/mpc/accounts")).await;
            (status, retry)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count() as u64;
    let limited = statuses
        .iter()
        .filter(|(s, retry)| *s == 429 && retry.is_some())
        .count() as u64;
    assert_eq!(ok + limited, 1000, "only 200s and 429s with Retry-After");
    assert!(limited > 0, "1000 requests went through");
    // Fixed windows: a burst spanning k windows gets at most k limits.
    let windows = started.elapsed().as_secs() / limits.window.as_secs() + 2;
    assert!(
        ok <= windows * DEFAULT_RATE_LIMIT_REQUESTS,
        "{ok} went through in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn past_its_open_session_quota_a_key_gets_429_too_many_sessions() {
    let Some(t) = setup(|c| c.limits.max_open_sessions = 2).await else {
        return;
    };
    let other = other_key(&t).await;
    for _ in 0..2 {
        let (status, _, body) = send_full(&t, keygen_request(API_KEY)).await;
        assert_eq!(status, 201, "{body}");
    }
    let sessions = t.count("sessions").await;
    let invited = t.router.calls().invited.len();
    let (status, retry, body) = send_full(&t, keygen_request(API_KEY)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_sessions")),
        "{body}"
    );
    assert!(retry.is_some_and(|r| r >= 1), "Retry-After");
    assert_eq!(t.count("sessions").await, sessions, "nothing created");
    assert_eq!(t.router.calls().invited.len(), invited);
    // Per key: another key still has room.
    let (status, _, _) = send_full(&t, keygen_request(&other)).await;
    assert_eq!(status, 201);
    // A session that ends frees its place.
    let open: String = mpc_db::sqlx::query_scalar(
        "SELECT s.session_id FROM sessions s JOIN api_keys k ON k.id = s.api_key_id
         WHERE k.label = 'bootstrap' LIMIT 1",
    )
    .fetch_one(t.c.store().pool())
    .await
    .unwrap();
    t.c.store()
        .fail(uuid::Uuid::parse_str(&open).unwrap(), "test", None)
        .await
        .unwrap();
    let (status, _, body) = send_full(&t, keygen_request(API_KEY)).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn concurrent_requests_cannot_overshoot_the_session_quota() {
    let Some(t) = setup(|c| c.limits.max_open_sessions = 3).await else {
        return;
    };
    quota_holds_under_concurrency(t).await;
}

/// The same on PostgreSQL (row lock on the key), whatever `MPC_TEST_DB`
/// says (skipped without a server outside CI, as `race.rs`), through two
/// coordinator instances at once.
#[tokio::test]
async fn concurrent_requests_cannot_overshoot_the_session_quota_postgres() {
    let Some(url) = mpc_db::testing::postgres_or_skip().await else {
        return;
    };
    let Some(t) = setup(move |c| {
        c.database_url = url;
        c.limits.max_open_sessions = 3;
    })
    .await
    else {
        return;
    };
    let b = coordinator::Coordinator::with_router(
        t.c.config().clone(),
        std::sync::Arc::new(coordinator::fake_router::FakeRouter::new()),
    )
    .unwrap();
    b.wait_ready(Duration::from_secs(30)).await.unwrap();
    let on = |c: &coordinator::Coordinator| {
        let app = c.app();
        async move {
            let resp = app.oneshot(keygen_request(API_KEY)).await.unwrap();
            resp.status().as_u16()
        }
    };
    let answers =
        futures_util::future::join_all((0..8).map(|k| on(if k % 2 == 0 { &t.c } else { &b })))
            .await;
    let created = answers.iter().filter(|s| **s == 201).count();
    let refused = answers.iter().filter(|s| **s == 429).count();
    assert_eq!((created, refused), (3, 5), "{answers:?}");
    assert_eq!(t.count("sessions").await, 3);
}

async fn quota_holds_under_concurrency(t: TestApp) {
    let answers =
        futures_util::future::join_all((0..8).map(|_| send_full(&t, keygen_request(API_KEY))))
            .await;
    let created = answers.iter().filter(|(s, _, _)| *s == 201).count();
    let refused = answers
        .iter()
        .filter(|(s, _, b)| *s == 429 && b["code"] == "too_many_sessions")
        .count();
    assert_eq!((created, refused), (3, 5), "{answers:?}");
    assert_eq!(t.count("sessions").await, 3);
}
