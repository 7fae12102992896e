//! API keys: the admin API (create, list, revoke; never a key shown
//! twice), revocation reaching a second coordinator instance on the same
//! database within 5 s, and the negative cache of unknown keys. Through
//! `app()` with `tower::ServiceExt::oneshot` and the fake router.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::keys::{delete, get_on, new_key};
use common::{setup, TestApp, API_KEY};
use coordinator::fake_router::FakeRouter;
use coordinator::Coordinator;
use serde_json::json;

#[tokio::test]
async fn the_admin_api_creates_lists_and_revokes_keys_and_never_shows_a_key_again() {
    let Some(t) = setup(|_| {}).await else { return };
    let (status, created) = t
        .post(
            "/api/v1/mpc/admin/keys",
            &json!({ "name": "acme admin", "scopes": ["admin", "read"], "tenant": "acme" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["tenant"], "acme");
    assert_eq!(created["scopes"], json!(["read", "admin"]));
    let acme_admin = created["key"].as_str().unwrap().to_string();
    let acme_admin_id = created["id"].as_str().unwrap().to_string();
    assert!(acme_admin.starts_with("mpc_") && acme_admin.len() == 68);

    // The list: ids, names, scopes, tenants; never a key or its hash.
    let (status, list) = t.get("/api/v1/mpc/admin/keys").await;
    assert_eq!(status, StatusCode::OK);
    let text = list.to_string();
    let hash = hex::encode(coordinator::auth::hash_api_key(&acme_admin));
    assert!(!text.contains(&acme_admin) && !text.contains(&hash) && !text.contains(API_KEY));
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "the bootstrap key and acme's: {list}");
    let by_tenant = |t: &str| keys.iter().find(|k| k["tenant"] == t).unwrap();
    assert_eq!(
        by_tenant("default")["scopes"],
        json!(["read", "keygen", "sign", "admin"])
    );
    assert_eq!(by_tenant("acme")["name"], "acme admin");
    assert_eq!(by_tenant("acme")["id"], acme_admin_id.as_str());
    assert!(by_tenant("acme").get("revoked_at").is_none());

    // Acme's admin manages acme only.
    let (acme_reader, acme_reader_id) = new_key(
        &t,
        &acme_admin,
        json!({ "name": "acme reader", "scopes": ["read"] }),
    )
    .await;
    let (_, mine) = t
        .get_with_key(Some(&acme_admin), "/api/v1/mpc/admin/keys")
        .await;
    let tenants: Vec<&str> = mine["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, ["acme", "acme"]);
    let bootstrap_id = by_tenant("default")["id"].as_str().unwrap();
    let keys_before = t.count("api_keys").await;
    for (status, body, want) in [
        {
            let (s, b) = t
                .post_with_key(
                    Some(&acme_admin),
                    "/api/v1/mpc/admin/keys",
                    &json!({ "name": "x", "scopes": ["admin"], "tenant": "default" }),
                )
                .await;
            (s, b, (403, "insufficient_scope"))
        },
        {
            let (s, b) = t
                .get_with_key(Some(&acme_admin), "/api/v1/mpc/admin/keys?tenant=default")
                .await;
            (s, b, (403, "insufficient_scope"))
        },
        {
            let (s, b) = delete(
                &t.c,
                &acme_admin,
                &format!("/api/v1/mpc/admin/keys/{bootstrap_id}"),
            )
            .await;
            (s, b, (404, "unknown_api_key"))
        },
        {
            let (s, b) = t
                .post(
                    "/api/v1/mpc/admin/keys",
                    &json!({ "name": "x", "scopes": [] }),
                )
                .await;
            (s, b, (400, "invalid_key_request"))
        },
        {
            let (s, b) = t
                .post(
                    "/api/v1/mpc/admin/keys",
                    &json!({ "name": "x", "scopes": ["read"], "tenant": "Acme Corp" }),
                )
                .await;
            (s, b, (400, "invalid_key_request"))
        },
        {
            let (s, b) = t
                .post(
                    "/api/v1/mpc/admin/keys",
                    &json!({ "name": " ", "scopes": ["read"] }),
                )
                .await;
            (s, b, (400, "invalid_key_request"))
        },
        {
            let (s, b) = t
                .post(
                    "/api/v1/mpc/admin/keys",
                    &json!({ "name": "x", "scopes": ["root"] }),
                )
                .await;
            (s, b, (400, "invalid_json"))
        },
        {
            let (s, b) = delete(&t.c, API_KEY, "/api/v1/mpc/admin/keys/no-such-key").await;
            (s, b, (404, "unknown_api_key"))
        },
    ] {
        assert_eq!(
            (status.as_u16(), body["code"].as_str().unwrap()),
            want,
            "{body}"
        );
    }
    assert_eq!(t.count("api_keys").await, keys_before, "nothing created");
    let (status, _) = get_on(&t.c, bootstrap_id, "/api/v1/mpc/accounts").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an id is not a key");

    // Revocation: the key is refused at once on this instance, and listed
    // with its time.
    let (status, _) = t
        .get_with_key(Some(&acme_reader), "/api/v1/mpc/accounts")
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, revoked) = delete(
        &t.c,
        &acme_admin,
        &format!("/api/v1/mpc/admin/keys/{acme_reader_id}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(revoked["revoked_at"].as_u64().is_some());
    let (status, body) = t
        .get_with_key(Some(&acme_reader), "/api/v1/mpc/accounts")
        .await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (401, Some("unauthorized"))
    );
    // Revoking again keeps the first time.
    let (_, again) = delete(
        &t.c,
        &acme_admin,
        &format!("/api/v1/mpc/admin/keys/{acme_reader_id}"),
    )
    .await;
    assert_eq!(again["revoked_at"], revoked["revoked_at"]);
    // The operator revokes any tenant's key.
    let (status, _) = delete(
        &t.c,
        API_KEY,
        &format!("/api/v1/mpc/admin/keys/{acme_admin_id}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = t
        .get_with_key(Some(&acme_admin), "/api/v1/mpc/admin/keys")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// A second coordinator instance on the same database, with its own cache.
async fn second_instance(t: &TestApp) -> Coordinator {
    let mut config = t.c.config().clone();
    config.bootstrap_api_keys = Vec::new();
    let c = Coordinator::with_router(config, Arc::new(FakeRouter::new())).unwrap();
    c.wait_ready(Duration::from_secs(30)).await.unwrap();
    c
}

#[tokio::test]
async fn a_key_revoked_on_one_instance_is_refused_by_another_within_5_s() {
    let Some(t) = setup(|_| {}).await else { return };
    revoked_on_one_instance_refused_by_another(t).await;
}

/// The same two instances on PostgreSQL, whatever `MPC_TEST_DB` says
/// (skipped without a server outside CI, as `race.rs`).
#[tokio::test]
async fn a_key_revoked_on_one_instance_is_refused_by_another_within_5_s_postgres() {
    let Some(url) = mpc_db::testing::postgres_or_skip().await else {
        return;
    };
    let Some(t) = setup(move |c| c.database_url = url).await else {
        return;
    };
    revoked_on_one_instance_refused_by_another(t).await;
}

async fn revoked_on_one_instance_refused_by_another(t: TestApp) {
    let b = second_instance(&t).await;
    let (key, id) = new_key(&t, API_KEY, json!({ "name": "app", "scopes": ["read"] })).await;
    // B has seen the key valid (and cached it).
    let (status, _) = get_on(&b, &key, "/api/v1/mpc/accounts").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = delete(&t.c, API_KEY, &format!("/api/v1/mpc/admin/keys/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let revoked = Instant::now();
    loop {
        let (status, body) = get_on(&b, &key, "/api/v1/mpc/accounts").await;
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(body["code"], "unauthorized");
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            revoked.elapsed() < Duration::from_secs(5),
            "the revoked key still works on the other instance"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(revoked.elapsed() < Duration::from_secs(5));
    // And stays refused.
    let (status, _) = get_on(&b, &key, "/api/v1/mpc/sessions/x").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unknown_key_is_looked_up_once_per_ttl_not_per_request() {
    let Some(t) = setup(|c| c.api_key_cache_ttl = Duration::from_secs(3)).await else {
        return;
    };
    let key = coordinator::auth::new_api_key();
    let (status, _) = t.get_with_key(Some(&key), "/api/v1/mpc/accounts").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The key now exists in the database, but this instance answers from
    // its negative cache without asking it...
    t.c.store().ensure_api_key(&key, "late").await.unwrap();
    let (status, _) = t.get_with_key(Some(&key), "/api/v1/mpc/accounts").await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the unknown key was looked up again at once"
    );
    // ...until the entry expires.
    let since = Instant::now();
    loop {
        let (status, _) = t.get_with_key(Some(&key), "/api/v1/mpc/accounts").await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "never looked up again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
