//! The REST surface of issue #12 against a running system (coordinator,
//! router, server parties in-process on port 0, public test aux info):
//! the generated OpenAPI document and `/docs`, JSON 404s, synchronous
//! answers with a wait, `Idempotency-Key` (one session, also through a
//! second coordinator instance on the same database; another body refused;
//! another API key is another scope) and `/metrics` moving. Every signature
//! is checked with k256 (verify, and recovery of the key from `v`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{parties, random_hash, verify, TempDir};
use mpc::client::Client;
use mpc::dev::DevSystem;
use mpc_api::rest::{KeygenRequest, Participant, SessionKind, SessionStatus, SignRequest};
use serde_json::{json, Value};
use sha3::Digest as _;
use sqlx::Row as _;

fn client(sys: &DevSystem) -> Client {
    Client::new(&sys.api_url, &sys.api_key)
}

async fn start(name: &str) -> (TempDir, DevSystem) {
    let dir = TempDir::new(name);
    let sys = DevSystem::start(dir.fast(3).await).await.unwrap();
    (dir, sys)
}

fn servers(ids: &[usize]) -> Vec<Participant> {
    ids.iter()
        .map(|k| Participant::server(DevSystem::party_id(*k)))
        .collect()
}

const WAIT: Duration = Duration::from_secs(30);

/// A 2-of-3 wallet of the three server parties, through the typed client
/// with a wait.
async fn keygen_2_of_3(c: &Client) -> mpc_api::rest::SessionCreated {
    c.keygen(
        &KeygenRequest {
            threshold_n: 3,
            threshold_t: 2,
            participants: servers(&[1, 2, 3]),
            policy: None,
        },
        WAIT,
    )
    .await
    .unwrap()
}

async fn count_sessions(sys: &DevSystem) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM sessions WHERE kind <> 'presign'")
        .fetch_one(sys.coordinator.store().pool())
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openapi_document_docs_page_and_json_404() {
    let (_dir, sys) = start("openapi").await;
    let http = reqwest::Client::new();
    let doc: Value = http
        .get(format!("{}/openapi.json", sys.api_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/mpc/keygen", "post"),
        ("/api/v1/mpc/sign", "post"),
        ("/api/v1/mpc/sessions/{id}", "get"),
        ("/api/v1/mpc/accounts", "get"),
        ("/api/v1/mpc/accounts/{id}", "get"),
        ("/api/v1/mpc/sessions/{id}/join", "post"),
    ] {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} missing");
        let responses = op["responses"].as_object().unwrap();
        // Every public route documents its error answers with the error body.
        let errors: Vec<&String> = responses.keys().filter(|s| s.starts_with('4')).collect();
        assert!(!errors.is_empty(), "{path} documents no error");
        for code in errors {
            let schema = &responses[code]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(schema, "#/components/schemas/ErrorBody", "{path} {code}");
        }
        if path != "/api/v1/mpc/sessions/{id}/join" {
            assert_eq!(op["security"], json!([{ "api_key": [] }]), "{path}");
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"],
        json!({ "type": "apiKey", "in": "header", "name": "X-API-Key", "description": "The caller's API key" })
    );
    // The error codes are in the document, generated from the enum.
    let codes = doc["components"]["schemas"]["ErrorCode"].to_string();
    assert!(codes.contains("idempotency_key_reused") && codes.contains("no_presignature"));

    let docs = http
        .get(format!("{}/docs", sys.api_url))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    // Our own page under a strict policy: no third-party script on the API's origin.
    let csp = docs.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let page = docs.text().await.unwrap();
    assert!(
        !page.contains("https://") && page.contains("/docs/docs.js"),
        "{page}"
    );
    let script = http
        .get(format!("{}/docs/docs.js", sys.api_url))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert!(script.text().await.unwrap().contains("/openapi.json"));

    for (method, path) in [
        ("GET", "/nope"),
        ("POST", "/api/v1/mpc/nope"),
        ("GET", "/api/v2"),
    ] {
        let r = http
            .request(method.parse().unwrap(), format!("{}{path}", sys.api_url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "not_found", "{method} {path}: {body}");
        assert!(body["error"].is_string());
    }
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keygen_and_sign_answer_with_the_result_within_a_wait() {
    let (_dir, sys) = start("wait").await;
    let c = client(&sys);
    // The seed's integration guide: the result straight from the POST.
    let kg = keygen_2_of_3(&c).await;
    assert_eq!(kg.status, SessionStatus::Completed, "{kg:?}");
    assert_eq!(kg.session_type, SessionKind::Keygen);
    let account_id = kg.account_id.clone().unwrap();
    let public_key = kg.public_key.clone().unwrap();
    let account = c.account(&account_id).await.unwrap();
    assert_eq!(account.public_key, public_key);
    assert_eq!(Some(account.address), kg.address);

    // `Prefer: wait=S` (RFC 7240), a bare hash, signers 1 and 3.
    let hash = random_hash();
    let body = json!({
        "account_id": account_id,
        "message_hash": format!("0x{}", hex::encode(hash)),
        "participants": parties(&[1, 3]),
    });
    let a = c
        .post_with("/api/v1/mpc/sign", &body, &[("Prefer", "wait=30")])
        .await
        .unwrap();
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["status"], "completed", "{}", a.body);
    verify(&a.body["signature"], &hash, &public_key);
    assert_eq!(a.body["signature"], a.body["result"]["signature"]);

    // The message itself, `?wait_ms=`, through the typed client.
    let msg = b"pay 10 USDC to alice";
    let signed = c
        .sign(
            &SignRequest {
                account_id: account_id.clone(),
                message_hash: None,
                message: Some(hex::encode(msg)),
                digest: None,
                require_presignature: false,
                participants: servers(&[2, 3]),
                request_id: None,
                not_after: None,
                approvals: vec![],
            },
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(signed.status, SessionStatus::Completed, "{signed:?}");
    let digest: [u8; 32] = sha3::Keccak256::digest(msg).into();
    verify(
        &serde_json::to_value(signed.signature.unwrap()).unwrap(),
        &digest,
        &public_key,
    );

    // A malformed wait is refused before anything is created.
    let before = count_sessions(&sys).await;
    let a = c
        .post_with("/api/v1/mpc/sign", &body, &[("Prefer", "wait=soon")])
        .await
        .unwrap();
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (400, Some("invalid_wait"))
    );
    assert_eq!(count_sessions(&sys).await, before);
    sys.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_key_gives_one_session_also_through_a_second_coordinator() {
    let (_dir, sys) = start("idempotency").await;
    let c = client(&sys);
    let keygen = json!({ "threshold_n": 3, "threshold_t": 2, "participants": parties(&[1, 2, 3]) });
    let key = [("Idempotency-Key", "order-4711")];
    let first = c
        .post_with("/api/v1/mpc/keygen", &keygen, &key)
        .await
        .unwrap();
    assert_eq!(first.status, 201, "{}", first.body);
    let before = count_sessions(&sys).await;
    // The same request again (other whitespace and field order are the same
    // request): the first answer, no new session.
    let again = c
        .post_raw_with(
            "/api/v1/mpc/keygen",
            format!(
                "{{ \"participants\": {}, \"threshold_t\": 2,  \"threshold_n\": 3 }}",
                parties(&[1, 2, 3])
            ),
            &key,
        )
        .await
        .unwrap();
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["session_id"], first.body["session_id"]);
    assert_eq!(count_sessions(&sys).await, before);

    // The same key with another request: refused, nothing created.
    let other = json!({ "threshold_n": 2, "threshold_t": 2, "participants": parties(&[1, 2]) });
    let refused = c
        .post_with("/api/v1/mpc/keygen", &other, &key)
        .await
        .unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.body["code"], "idempotency_key_reused");
    assert_eq!(count_sessions(&sys).await, before);

    // Another API key is another scope: the same key creates its own session.
    let other_key = sys
        .coordinator
        .create_api_key("second tenant")
        .await
        .unwrap();
    let c2 = Client::new(&sys.api_url, &other_key);
    let theirs = c2
        .post_with("/api/v1/mpc/keygen", &keygen, &key)
        .await
        .unwrap();
    assert_eq!(theirs.status, 201, "{}", theirs.body);
    assert_ne!(theirs.body["session_id"], first.body["session_id"]);

    // The database holds the first answer sealed: neither the session id
    // nor the client's key appear in the stored row.
    let rows = sqlx::query("SELECT key_hash, fingerprint, response FROM idempotency_keys")
        .fetch_all(sys.coordinator.store().pool())
        .await
        .unwrap();
    assert!(!rows.is_empty());
    let first_id = first.body["session_id"].as_str().unwrap();
    for r in &rows {
        let sealed: Vec<u8> = r.get(2);
        let key_hash: String = r.get(0);
        assert!(!String::from_utf8_lossy(&sealed).contains(first_id));
        assert!(
            !key_hash.contains("order-4711") && !sealed.windows(10).any(|w| w == b"order-4711")
        );
    }

    // A malformed key is refused.
    let bad = c
        .post_with(
            "/api/v1/mpc/keygen",
            &keygen,
            &[("Idempotency-Key", "has space")],
        )
        .await
        .unwrap();
    assert_eq!(
        (bad.status, bad.body["code"].as_str()),
        (400, Some("invalid_idempotency_key"))
    );

    // A second coordinator instance on the same database and router.
    let b = coordinator::Coordinator::new(sys.coordinator.config().clone()).unwrap();
    b.wait_ready(Duration::from_secs(30)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(b.serve(listener, async move {
        let _ = stopped.await;
    }));
    let cb = Client::new(&b_url, &sys.api_key);
    let sign_key = [("Idempotency-Key", "payout-2026-12-02-0001")];
    let account_id = c
        .wait_session(first.body["session_id"].as_str().unwrap(), WAIT, |_| {})
        .await
        .unwrap()["result"]["account_id"]
        .clone();
    let sign = json!({
        "account_id": account_id,
        "message_hash": format!("0x{}", hex::encode(random_hash())),
        "participants": parties(&[1, 2]),
    });
    let before = count_sessions(&sys).await;
    let (on_a, on_b) = tokio::join!(
        c.post_with("/api/v1/mpc/sign", &sign, &sign_key),
        cb.post_with("/api/v1/mpc/sign", &sign, &sign_key),
    );
    let (on_a, on_b) = (on_a.unwrap(), on_b.unwrap());
    let mut statuses = [on_a.status, on_b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 201], "{} / {}", on_a.body, on_b.body);
    assert_eq!(on_a.body["session_id"], on_b.body["session_id"]);
    assert_eq!(count_sessions(&sys).await, before + 1);
    let _ = stop.send(());
    served.await.unwrap().unwrap();
    sys.shutdown().await;
}

/// The value of one series in a Prometheus text rendering (0 when absent).
fn series(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_move_after_a_keygen_and_a_signature() {
    let (_dir, sys) = start("metrics").await;
    let c = client(&sys);
    let http = reqwest::Client::new();
    let scrape = || async {
        let r = http
            .get(format!("{}/metrics", sys.api_url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    };
    let keygens = r#"mpc_sessions_created_total{kind="keygen"}"#;
    let signed = r#"mpc_sessions_ended_total{kind="sign",outcome="completed"}"#;
    let posts = r#"mpc_http_requests_total{route="/api/v1/mpc/sign",status="201"}"#;
    // The parties' series (in `mpc dev` every role shares the process).
    let party_signed =
        r#"mpc_party_sessions_total{party="server-party-1",kind="sign",outcome="completed"}"#;
    let before = scrape().await;
    let kg = keygen_2_of_3(&c).await;
    let hash = random_hash();
    let s = c
        .sign(
            &SignRequest {
                account_id: kg.account_id.clone().unwrap(),
                message_hash: Some(hex::encode(hash)),
                message: None,
                digest: None,
                require_presignature: false,
                participants: servers(&[1, 2]),
                request_id: None,
                not_after: None,
                approvals: vec![],
            },
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(s.status, SessionStatus::Completed);
    verify(
        &serde_json::to_value(s.signature.unwrap()).unwrap(),
        &hash,
        &kg.public_key.unwrap(),
    );
    // The end of a session is recorded by a task that follows the store:
    // scrape until it shows (bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let after = loop {
        let t = scrape().await;
        if series(&t, signed) > series(&before, signed)
            && series(&t, party_signed) > series(&before, party_signed)
        {
            break t;
        }
        assert!(tokio::time::Instant::now() < deadline, "{t}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        series(&after, keygens) > series(&before, keygens),
        "{after}"
    );
    assert!(series(&after, posts) > series(&before, posts), "{after}");
    assert!(
        series(&after, party_signed) > series(&before, party_signed),
        "{after}"
    );
    assert!(after.contains("mpc_session_duration_seconds"), "{after}");
    assert!(
        after.contains("mpc_sessions_open{kind=\"sign\"}"),
        "{after}"
    );
    // No id of anything in a label.
    assert!(!after.contains(&kg.session_id.to_string()));
    sys.shutdown().await;
}

/// Tenants through the real system and the typed client that `mpc keys`
/// uses: the operator makes a key of tenant `acme`; with it the default
/// tenant's wallet answers 404 to reading and signing and nothing is
/// created; `mpc keys revoke` ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_of_another_tenant_cannot_read_or_sign_with_a_wallet_and_is_revocable() {
    use mpc::cli::client::Api;
    use mpc::cli::keys::{KeysArgs, KeysCommand};
    use mpc_api::admin::{ApiKeyCreate, Scope};

    let (_dir, sys) = start("tenants").await;
    let operator = client(&sys);
    let wallet = keygen_2_of_3(&operator).await;
    let account_id = wallet.account_id.unwrap();
    let created = operator
        .create_key(&ApiKeyCreate {
            name: "acme signer".into(),
            scopes: vec![Scope::Read, Scope::Sign],
            tenant: Some("acme".into()),
        })
        .await
        .unwrap();
    assert!(!format!("{created:?}").contains(&created.key));
    let acme = Client::new(&sys.api_url, &created.key);
    let before = count_sessions(&sys).await;

    let err = acme.account(&account_id).await.unwrap_err().to_string();
    assert!(err.contains("404 unknown_account"), "{err}");
    let refused = acme
        .sign(
            &SignRequest {
                account_id: account_id.clone(),
                message_hash: Some(hex::encode(random_hash())),
                message: None,
                digest: None,
                require_presignature: false,
                participants: servers(&[1, 2]),
                request_id: None,
                not_after: None,
                approvals: vec![],
            },
            WAIT,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(refused.contains("404 unknown_account"), "{refused}");
    let listed = acme.get("/api/v1/mpc/accounts").await.unwrap();
    assert_eq!(listed.body["accounts"], json!([]));
    assert_eq!(count_sessions(&sys).await, before, "nothing created");

    let keys = operator.list_keys(Some("acme")).await.unwrap().keys;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].id, created.id);
    mpc::cli::keys::run(KeysArgs {
        api: Api {
            url: sys.api_url.clone(),
            api_key: sys.api_key.clone(),
            tls_ca: None,
        },
        command: KeysCommand::Revoke {
            id: created.id.clone(),
        },
    })
    .await
    .unwrap();
    let after = acme.get("/api/v1/mpc/accounts").await.unwrap();
    assert_eq!(after.status, 401, "{}", after.body);
    sys.shutdown().await;
}
