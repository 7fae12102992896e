//! Tenants and scopes, through `app()` with
//! `tower::ServiceExt::oneshot` on a fresh database (SQLite, or PostgreSQL
//! with `MPC_TEST_DB=postgres`) and the fake router. The attacker is a key
//! of another tenant, or a key without the scope: each move is refused
//! with its code and nothing is created.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::StatusCode;
use common::keys::{delete, new_key};
use common::{json_request, parties, send, setup, API_KEY};
use serde_json::json;

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
                party_core::wire::ReportBody::KeygenResult {
                    public_key: pk,
                    policy_hash: None,
                    aux_fingerprint: Some(common::TEST_AUX_FINGERPRINT),
                },
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
