//! Start-up in any order: the coordinator serves `/health` at once, answers
//! 503 on `/ready` and on its APIs until its database is up, and becomes
//! ready when it is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use coordinator::{Coordinator, CoordinatorConfig};
use party_core::identity::CoordinatorKey;
use tower::ServiceExt as _;

async fn get(c: &Coordinator, path: &str) -> (StatusCode, serde_json::Value) {
    let resp = c
        .app()
        .oneshot(
            Request::get(path)
                .header("x-api-key", "mpc_whatever")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

fn config(url: &str) -> CoordinatorConfig {
    CoordinatorConfig::new(
        url,
        CoordinatorKey::generate(&mut rand_core::OsRng),
        "http://127.0.0.1:1",
    )
}

#[tokio::test]
async fn without_its_database_the_coordinator_is_live_but_not_ready() {
    // Nothing listens on port 1.
    let c = Coordinator::new(config("postgres://postgres@127.0.0.1:1/nowhere")).unwrap();
    assert_eq!(get(&c, "/health").await.0, StatusCode::OK);
    let (status, body) = get(&c, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["database"], "down");
    let (status, body) = get(&c, "/api/v1/mpc/accounts").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], "not_ready");
    assert!(!c.is_ready());
}

#[tokio::test]
async fn the_coordinator_becomes_ready_once_its_database_answers() {
    let dir = std::env::temp_dir().join(format!("coord-ready-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = match mpc_db::testing::test_backend() {
        mpc_db::Backend::Postgres => match mpc_db::testing::postgres_or_skip().await {
            Some(u) => u,
            None => return,
        },
        mpc_db::Backend::Sqlite => format!("sqlite://{}", dir.join("c.db").display()),
    };
    let mut cfg = config(&url);
    cfg.bootstrap_api_keys = vec!["mpc_ready_test_key".into()];
    let c = Coordinator::new(cfg).unwrap();
    c.wait_ready(Duration::from_secs(30)).await.unwrap();
    let (status, body) = get(&c, "/ready").await;
    assert_eq!(
        (status, body["ready"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    // The bootstrap key was stored: a second instance on the same database
    // accepts it without having been given it.
    let other = Coordinator::new(config(&url)).unwrap();
    other.wait_ready(Duration::from_secs(30)).await.unwrap();
    let resp = other
        .app()
        .oneshot(
            Request::get("/api/v1/mpc/accounts")
                .header("x-api-key", "mpc_ready_test_key")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let _ = std::fs::remove_dir_all(dir);
}
