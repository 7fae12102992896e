//! The harness of `app.rs`: a ready coordinator over a fresh database
//! (SQLite, or PostgreSQL with `MPC_TEST_DB=postgres`) and the fake router,
//! with three enrolled and registered server parties (signed registrations),
//! and requests sent through `app()`
//! with `tower::ServiceExt::oneshot`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod approvals;
pub mod keys;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use coordinator::fake_router::FakeRouter;
use coordinator::{Coordinator, CoordinatorConfig};
use mpc_db::sqlx::{self, Row as _};
use party_core::identity::{CoordinatorKey, PartyIdentity};
use party_core::wire::{device_join_message, Report, ReportBody, SignedReport};
use serde_json::{json, Value};
use tower::ServiceExt as _;
use uuid::Uuid;

pub const API_KEY: &str = "mpc_app_test_key";
/// The aux info fingerprint the fake parties report (all the same).
pub const TEST_AUX_FINGERPRINT: [u8; 32] = [0xa5; 32];

pub struct TestApp {
    pub c: Coordinator,
    pub router: Arc<FakeRouter>,
    /// Identities of `server-party-1..=3` (index k-1).
    pub servers: Vec<PartyIdentity>,
    dir: std::path::PathBuf,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A ready coordinator on a fresh database with the fake router and three
/// registered server parties; `None` when PostgreSQL is asked for and
/// missing outside CI.
pub async fn setup(tune: impl FnOnce(&mut CoordinatorConfig)) -> Option<TestApp> {
    let dir = std::env::temp_dir().join(format!("coord-app-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = mpc_db::testing::fresh_database_url(&dir, "c.db").await?;
    let mut config = CoordinatorConfig::new(
        url,
        CoordinatorKey::generate(&mut rand_core::OsRng),
        "http://127.0.0.1:1",
    );
    config.bootstrap_api_keys = vec![API_KEY.into()];
    config.insecure_test_aux = true;
    tune(&mut config);
    let router = Arc::new(FakeRouter::new());
    let c = Coordinator::with_router(config, router.clone()).unwrap();
    c.wait_ready(Duration::from_secs(30)).await.unwrap();
    let t = TestApp {
        c,
        router,
        servers: (0..3)
            .map(|_| PartyIdentity::generate(&mut rand_core::OsRng))
            .collect(),
        dir,
    };
    for (k, id) in t.servers.iter().enumerate() {
        // Enrolled through the store: the harness may run with an allowlist
        // that the admin API would apply (the admin routes have their tests).
        t.c.store()
            .enrol_party(&server(k + 1), id.public().ed25519, None, "test")
            .await
            .unwrap();
        let (status, body) = t.register(&registration(&server(k + 1), id)).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    Some(t)
}

pub fn server(k: usize) -> String {
    format!("server-party-{k}")
}

/// Server parties `server-party-k` as a participant list.
pub fn parties(ids: &[usize]) -> Value {
    Value::Array(
        ids.iter()
            .map(|k| json!({ "party_id": server(*k), "device_type": "server", "device_id": format!("d{k}") }))
            .collect(),
    )
}

/// Sends one request to a fresh `app()`; (status, JSON body or Null).
pub async fn send(c: &Coordinator, req: Request<Body>) -> (StatusCode, Value) {
    let resp = c.app().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

pub fn json_request(method: &str, path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

impl TestApp {
    pub async fn post_with_key(
        &self,
        key: Option<&str>,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let mut req = json_request("POST", path, body.to_string());
        if let Some(key) = key {
            req.headers_mut().insert("x-api-key", key.parse().unwrap());
        }
        send(&self.c, req).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post_with_key(Some(API_KEY), path, body).await
    }
    pub async fn post_raw(&self, path: &str, body: String) -> (StatusCode, Value) {
        let mut req = json_request("POST", path, body);
        req.headers_mut()
            .insert("x-api-key", API_KEY.parse().unwrap());
        send(&self.c, req).await
    }
    pub async fn get_with_key(&self, key: Option<&str>, path: &str) -> (StatusCode, Value) {
        let mut req = Request::get(path).body(Body::empty()).unwrap();
        if let Some(key) = key {
            req.headers_mut().insert("x-api-key", key.parse().unwrap());
        }
        send(&self.c, req).await
    }
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.get_with_key(Some(API_KEY), path).await
    }
    /// A party registration (no credential but its signature).
    pub async fn register(&self, body: &Value) -> (StatusCode, Value) {
        send(
            &self.c,
            json_request("POST", "/internal/v1/parties", body.to_string()),
        )
        .await
    }
    /// `PUT /admin/parties/{party_id}` with `key` and `body`.
    pub async fn put_enrolment(
        &self,
        key: &str,
        party_id: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let mut req = json_request(
            "PUT",
            &format!("/api/v1/mpc/admin/parties/{party_id}"),
            body.to_string(),
        );
        req.headers_mut().insert("x-api-key", key.parse().unwrap());
        send(&self.c, req).await
    }
    /// Enrols `id`'s Ed25519 key for `party_id` with the operator key.
    pub async fn enrol(&self, party_id: &str, id: &PartyIdentity) {
        let (status, body) = self
            .put_enrolment(
                API_KEY,
                party_id,
                &json!({ "ed25519": hex::encode(id.public().ed25519) }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    /// A device join (no API key).
    pub async fn join(&self, session: &str, body: &Value) -> (StatusCode, Value) {
        let req = json_request(
            "POST",
            &format!("/api/v1/mpc/sessions/{session}/join"),
            body.to_string(),
        );
        send(&self.c, req).await
    }
    /// A party report (no API key: the party's signature authenticates it).
    pub async fn report(&self, body: &Value) -> (StatusCode, Value) {
        send(
            &self.c,
            json_request("POST", "/internal/v1/reports", body.to_string()),
        )
        .await
    }
    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(self.c.store().pool())
            .await
            .unwrap()
            .get(0)
    }
    pub async fn device_rows(&self, session: &str) -> Vec<Option<String>> {
        sqlx::query("SELECT ed25519 FROM device_slots WHERE session_id = $1 ORDER BY position")
            .bind(session)
            .fetch_all(self.c.store().pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
    pub async fn registered(&self, party: &str) -> bool {
        self.c.store().party(party).await.unwrap().is_some()
    }

    /// A 2-of-3 account of the three server parties, made by a keygen whose
    /// results the parties "report" (same key from each).
    pub async fn account(&self) -> Value {
        let invited = self.router.calls().invited.len();
        let (status, created) = self
            .post(
                "/api/v1/mpc/keygen",
                &json!({ "threshold_n": 3, "threshold_t": 2, "participants": parties(&[1, 2, 3]) }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let sid = Uuid::parse_str(created["session_id"].as_str().unwrap()).unwrap();
        assert_eq!(
            self.router.calls().invited.len(),
            invited + 3,
            "three invitations"
        );
        let key = k256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let pk: [u8; 33] = key
            .verifying_key()
            .to_encoded_point(true)
            .as_bytes()
            .try_into()
            .unwrap();
        for (pos, id) in self.servers.iter().enumerate() {
            let r = signed_report(
                sid,
                pos as u16,
                ReportBody::KeygenResult {
                    public_key: pk,
                    policy_hash: None,
                    aux_fingerprint: Some(TEST_AUX_FINGERPRINT),
                },
                id,
            );
            let (status, body) = self.report(&r).await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        }
        let (status, s) = self.get(&format!("/api/v1/mpc/sessions/{sid}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(s["status"], "completed", "{s}");
        let account_id = s["result"]["account_id"].as_str().unwrap().to_string();
        let (status, a) = self
            .get(&format!("/api/v1/mpc/accounts/{account_id}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(a["public_key"], hex::encode(pk));
        a
    }

    /// Creates a 2-of-3 keygen with `browser` at position 0 and two server
    /// parties; returns (session id, the browser's join token).
    pub async fn keygen_with_browser(&self, browser: &str) -> (String, String) {
        let (status, body) = self
            .post(
                "/api/v1/mpc/keygen",
                &json!({ "threshold_n": 3, "threshold_t": 2, "participants": [
                    { "party_id": browser, "device_type": "browser" },
                    { "party_id": "server-party-1", "device_type": "server" },
                    { "party_id": "server-party-2" }]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"], "waiting");
        let tokens = body["join_tokens"].as_object().unwrap();
        assert_eq!(tokens.len(), 1, "only the device's token is returned");
        let token = tokens[browser].as_str().unwrap().to_string();
        (body["session_id"].as_str().unwrap().to_string(), token)
    }
}

pub fn signed_report(
    session_id: Uuid,
    position: u16,
    body: ReportBody,
    id: &PartyIdentity,
) -> Value {
    serde_json::to_value(
        SignedReport::sign(
            &Report {
                session_id,
                position,
                body,
            },
            id,
        )
        .unwrap(),
    )
    .unwrap()
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A server party's registration signed by `id` now, with a fresh nonce.
pub fn registration(party_id: &str, id: &PartyIdentity) -> Value {
    let mut nonce = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    signed_registration(party_id, "server", id, id.public(), unix_now(), nonce)
}

/// A registration of `identity` signed by `signer`, as given.
pub fn signed_registration(
    party_id: &str,
    device_type: &str,
    signer: &PartyIdentity,
    identity: party_core::identity::PartyPublicKey,
    issued_at: u64,
    nonce: [u8; 16],
) -> Value {
    let message = party_core::wire::party_register_message(
        party_id,
        device_type,
        &identity,
        issued_at,
        &nonce,
    );
    json!({
        "party_id": party_id,
        "device_type": device_type,
        "identity": identity,
        "issued_at": issued_at,
        "nonce": hex::encode(nonce),
        "signature": hex::encode(signer.sign(&message)),
    })
}

pub fn join_body(id: &PartyIdentity, session: &str, token: &str) -> Value {
    let sid = Uuid::parse_str(session).unwrap();
    json!({
        "join_token": token,
        "identity": id.public(),
        "signature": hex::encode(id.sign(&device_join_message(&sid, token, &id.public()))),
    })
}
