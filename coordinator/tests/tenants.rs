//! Tenants and scoped, revocable API keys, through `app()` with
//! `tower::ServiceExt::oneshot` on a fresh database (SQLite, or PostgreSQL
//! with `MPC_TEST_DB=postgres`) and the fake router. The attacker is a key
//! of another tenant, or a key without the scope: each move is refused
//! with its code and nothing is created.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{json_request, parties, send, setup, TestApp, API_KEY};
use coordinator::fake_router::FakeRouter;
use coordinator::Coordinator;
use serde_json::{json, Value};

/// Creates a key through the admin API with `admin_key`; the plaintext key
/// and its id.
async fn new_key(t: &TestApp, admin_key: &str, body: Value) -> (String, String) {
    let (status, created) = t
        .post_with_key(Some(admin_key), "/api/v1/mpc/admin/keys", &body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["key"].as_str().unwrap().to_string(),
        created["id"].as_str().unwrap().to_string(),
    )
}

async fn delete(c: &Coordinator, key: &str, path: &str) -> (StatusCode, Value) {
    let req = Request::delete(path)
        .header("x-api-key", key)
        .body(Body::empty())
        .unwrap();
    send(c, req).await
}

async fn get_on(c: &Coordinator, key: &str, path: &str) -> (StatusCode, Value) {
    let req = Request::get(path)
        .header("x-api-key", key)
        .body(Body::empty())
        .unwrap();
    send(c, req).await
}

#[tokio::test]
async fn a_key_of_another_tenant_sees_404_for_every_id_and_creates_nothing() {
    let Some(t) = setup(|_| {}).await else { return };
    // The default tenant's account (made with the bootstrap key) and its
    // keygen session.
    let account = t.account().await;
    let acc = account["account_id"].as_str().unwrap();
    let keygen_session = account["keygen_session_id"].as_str().unwrap();
    let (acme, _) = new_key(
        &t,
        API_KEY,
        json!({ "name": "acme app", "scopes": ["read", "keygen", "sign"], "tenant": "acme" }),
    )
    .await;
    let sessions = t.count("sessions").await;
    let accounts = t.count("accounts").await;

    let (status, list) = t.get_with_key(Some(&acme), "/api/v1/mpc/accounts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list["accounts"],
        json!([]),
        "another tenant's accounts are not listed"
    );
    let (status, body) = t
        .get_with_key(Some(&acme), &format!("/api/v1/mpc/accounts/{acc}"))
        .await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (404, Some("unknown_account"))
    );
    for path in [
        format!("/api/v1/mpc/sessions/{keygen_session}"),
        format!("/api/v1/mpc/sessions/{keygen_session}?wait_ms=50"),
    ] {
        let (status, body) = t.get_with_key(Some(&acme), &path).await;
        assert_eq!(
            (status.as_u16(), body["code"].as_str()),
            (404, Some("unknown_session")),
            "{path}"
        );
    }
    let hash = format!("0x{}", "ab".repeat(32));
    for wait in ["", "?wait_ms=100"] {
        let (status, body) = t
            .post_with_key(
                Some(&acme),
                &format!("/api/v1/mpc/sign{wait}"),
                &json!({ "account_id": acc, "message_hash": hash, "participants": parties(&[1, 2]) }),
            )
            .await;
        assert_eq!(
            (status.as_u16(), body["code"].as_str()),
            (404, Some("unknown_account")),
            "{body}"
        );
    }
    // The same answers as for ids that do not exist.
    let (_, missing) = t
        .get_with_key(Some(&acme), "/api/v1/mpc/accounts/no-such-account")
        .await;
    assert_eq!(missing["code"], "unknown_account");
    assert_eq!(t.count("sessions").await, sessions, "nothing created");
    assert_eq!(t.count("accounts").await, accounts);
    assert!(
        t.router.calls().invited.len() == 3,
        "no party was invited for the refused sign"
    );

    // Acme's own session is acme's: the default tenant cannot see it.
    let (status, created) = t
        .post_with_key(
            Some(&acme),
            "/api/v1/mpc/keygen",
            &json!({ "threshold_n": 2, "threshold_t": 2, "participants": parties(&[1, 2]) }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let theirs = created["session_id"].as_str().unwrap();
    let (status, _) = t
        .get_with_key(Some(&acme), &format!("/api/v1/mpc/sessions/{theirs}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = t.get(&format!("/api/v1/mpc/sessions/{theirs}")).await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (404, Some("unknown_session"))
    );
}

#[tokio::test]
async fn a_tenants_keygen_makes_an_account_of_that_tenant_only() {
    let Some(t) = setup(|_| {}).await else { return };
    let (acme, _) = new_key(
        &t,
        API_KEY,
        json!({ "name": "acme", "scopes": ["read", "keygen"], "tenant": "acme" }),
    )
    .await;
    let tenant: String = {
        // An account made by a keygen of acme's key lands in acme.
        let (status, created) = t
            .post_with_key(
                Some(&acme),
                "/api/v1/mpc/keygen",
                &json!({ "threshold_n": 3, "threshold_t": 2, "participants": parties(&[1, 2, 3]) }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let sid = uuid::Uuid::parse_str(created["session_id"].as_str().unwrap()).unwrap();
        let key = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let pk: [u8; 33] = key
            .verifying_key()
            .to_encoded_point(true)
            .as_bytes()
            .try_into()
            .unwrap();
        for (pos, id) in t.servers.iter().enumerate() {
            let r = common::signed_report(
                sid,
                pos as u16,
                party_core::wire::ReportBody::KeygenResult { public_key: pk },
                id,
            );
            assert_eq!(t.report(&r).await.0, StatusCode::NO_CONTENT);
        }
        let (_, list) = t.get_with_key(Some(&acme), "/api/v1/mpc/accounts").await;
        assert_eq!(list["accounts"].as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list["accounts"][0]["account_id"], sid.to_string());
        mpc_db::sqlx::query_scalar("SELECT tenant_id FROM accounts WHERE account_id = $1")
            .bind(sid.to_string())
            .fetch_one(t.c.store().pool())
            .await
            .unwrap()
    };
    assert_eq!(tenant, "acme");
    let (_, list) = t.get("/api/v1/mpc/accounts").await;
    assert_eq!(
        list["accounts"],
        json!([]),
        "the default tenant does not see it"
    );
}

#[tokio::test]
async fn a_key_without_the_scope_is_403_before_anything_is_read_or_created() {
    let Some(t) = setup(|_| {}).await else { return };
    let (reader, _) = new_key(
        &t,
        API_KEY,
        json!({ "name": "dashboard", "scopes": ["read"] }),
    )
    .await;
    let (signer, _) = new_key(&t, API_KEY, json!({ "name": "signer", "scopes": ["sign"] })).await;
    let sessions = t.count("sessions").await;
    let keygen = json!({ "threshold_n": 2, "threshold_t": 2, "participants": parties(&[1, 2]) });
    let refused = [
        t.post_with_key(Some(&reader), "/api/v1/mpc/keygen", &keygen)
            .await,
        // Even a malformed body: the scope is checked first.
        t.post_with_key(Some(&reader), "/api/v1/mpc/sign", &json!({ "x": 1 }))
            .await,
        t.post_with_key(
            Some(&reader),
            "/api/v1/mpc/admin/keys",
            &json!({ "name": "n", "scopes": ["admin"] }),
        )
        .await,
        t.get_with_key(Some(&reader), "/api/v1/mpc/admin/keys")
            .await,
        t.get_with_key(Some(&signer), "/api/v1/mpc/accounts").await,
        t.post_with_key(Some(&signer), "/api/v1/mpc/keygen", &keygen)
            .await,
    ];
    for (k, (status, body)) in refused.iter().enumerate() {
        assert_eq!(
            (status.as_u16(), body["code"].as_str()),
            (403, Some("insufficient_scope")),
            "case {k}: {body}"
        );
    }
    let (status, _) = delete(&t.c, &reader, "/api/v1/mpc/admin/keys/x").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(t.count("sessions").await, sessions);
    assert_eq!(t.count("api_keys").await, 3, "no key was created");
    let (status, _) = t.get_with_key(Some(&reader), "/api/v1/mpc/accounts").await;
    assert_eq!(status, StatusCode::OK, "the scope it has works");
}

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

#[tokio::test]
async fn idempotency_keys_stay_scoped_per_api_key_across_tenants() {
    let Some(t) = setup(|_| {}).await else { return };
    let (acme, _) = new_key(
        &t,
        API_KEY,
        json!({ "name": "acme", "scopes": ["read", "keygen"], "tenant": "acme" }),
    )
    .await;
    let body = json!({ "threshold_n": 2, "threshold_t": 2, "participants": parties(&[1, 2]) });
    let post = |key: &str| {
        let mut req = json_request("POST", "/api/v1/mpc/keygen", body.to_string());
        req.headers_mut().insert("x-api-key", key.parse().unwrap());
        req.headers_mut()
            .insert("idempotency-key", "order-1".parse().unwrap());
        req
    };
    let (status, ours) = send(&t.c, post(API_KEY)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, theirs) = send(&t.c, post(&acme)).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "acme's own first request: {theirs}"
    );
    assert_ne!(ours["session_id"], theirs["session_id"]);
    let (status, replay) = send(&t.c, post(&acme)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        replay["session_id"], theirs["session_id"],
        "acme's replay is acme's"
    );
    let (status, _) = t
        .get_with_key(
            Some(&acme),
            &format!(
                "/api/v1/mpc/sessions/{}",
                ours["session_id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
