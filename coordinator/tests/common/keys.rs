//! Helpers of the tenant and API key tests: keys made through the admin
//! API, requests with any key to any instance.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use coordinator::Coordinator;
use serde_json::Value;

use super::{send, TestApp};

/// Creates a key through the admin API with `admin_key`; the plaintext key
/// and its id.
pub async fn new_key(t: &TestApp, admin_key: &str, body: Value) -> (String, String) {
    let (status, created) = t
        .post_with_key(Some(admin_key), "/api/v1/mpc/admin/keys", &body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["key"].as_str().unwrap().to_string(),
        created["id"].as_str().unwrap().to_string(),
    )
}

pub async fn delete(c: &Coordinator, key: &str, path: &str) -> (StatusCode, Value) {
    let req = Request::delete(path)
        .header("x-api-key", key)
        .body(Body::empty())
        .unwrap();
    send(c, req).await
}

pub async fn get_on(c: &Coordinator, key: &str, path: &str) -> (StatusCode, Value) {
    let req = Request::get(path)
        .header("x-api-key", key)
        .body(Body::empty())
        .unwrap();
    send(c, req).await
}
