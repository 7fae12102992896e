//! The web demo's door (issue #14, finding 1): `/demo/api/*` answers only
//! the browser that opened the demo page (its HttpOnly, SameSite=Strict
//! cookie), from the demo's own origin and Host, and only about the wallets
//! and sessions that browser created: a wallet made through the REST API
//! cannot be signed with through the demo, with or without a cookie, and
//! nothing is created by a refused call. Every demo answer carries the
//! security headers. The browser party's vault has an origin of its own,
//! may be framed by the demo page only, and hands the coordinator nothing
//! but the device join and the reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::TempDir;
use mpc::client::Client;
use mpc::dev::DevSystem;
use mpc_api::rest::{KeygenRequest, Participant};
use serde_json::{json, Value};

async fn count_sessions(sys: &DevSystem) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE kind <> 'presign'")
        .fetch_one(sys.coordinator.store().pool())
        .await
        .unwrap()
}

struct Page {
    http: reqwest::Client,
    base: String,
    host: String,
}

impl Page {
    async fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        origin: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        let mut r = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        let res = r.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send().await.unwrap()
    }

    /// Opens the page: the cookie it sets (`name=value`).
    async fn open(&self) -> String {
        let res = self.get("/demo/", None).await;
        assert_eq!(res.status(), 200);
        let set = res
            .headers()
            .get("set-cookie")
            .expect("the page sets the demo cookie")
            .to_str()
            .unwrap()
            .to_string();
        assert!(set.contains("HttpOnly"), "{set}");
        assert!(set.contains("SameSite=Strict"), "{set}");
        let csp = res.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        assert_eq!(res.headers()["referrer-policy"], "no-referrer");
        set.split(';').next().unwrap().to_string()
    }
}

#[tokio::test]
async fn the_demo_acts_only_for_its_own_browser_and_wallets() {
    let dir = TempDir::new("demo-door");
    let mut o = dir.fast(3).await;
    o.demo_root = Some(std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.."
    )));
    let sys = DevSystem::start(o).await.unwrap();
    let api = Client::new(&sys.api_url, &sys.api_key);
    let wallet = api
        .keygen(
            &KeygenRequest {
                threshold_n: 3,
                threshold_t: 2,
                participants: (1..=3)
                    .map(|k| Participant::server(DevSystem::party_id(k)))
                    .collect(),
                policy: None,
            },
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let account = wallet.account_id.clone().unwrap();
    let page = Page {
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: sys.api_url.clone(),
        host: sys.api_url.trim_start_matches("http://").to_string(),
    };
    let origin = format!("http://{}", page.host);
    let before = count_sessions(&sys).await;
    let sign = json!({ "account_id": account, "message_hash": hex::encode([7u8; 32]), "signers": "servers" });

    // What the review did: no API key, no cookie → refused, nothing created.
    let (status, body) = page
        .post("/demo/api/sign", None, Some(&origin), &sign)
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "no_demo_session");
    let (status, _) = page.post("/demo/api/sign", None, None, &sign).await;
    assert_eq!(status, 403, "no Origin");

    // A real browser of the demo still cannot sign with a REST-made wallet.
    let cookie = page.open().await;
    let (status, body) = page
        .post("/demo/api/sign", Some(&cookie), Some(&origin), &sign)
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "unknown_account");
    let res = page
        .get(&format!("/demo/api/accounts/{account}"), Some(&cookie))
        .await;
    assert_eq!(res.status(), 404);

    // Another origin (a page elsewhere) or another Host (DNS rebinding).
    let (status, body) = page
        .post(
            "/demo/api/sign",
            Some(&cookie),
            Some("http://evil.example"),
            &sign,
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("bad_origin")));
    let res = page
        .http
        .post(format!("{}/demo/api/wallets", page.base))
        .header("host", "evil.example")
        .header("origin", "http://evil.example")
        .header("cookie", &cookie)
        .json(&json!({ "party_id": "browser-x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "bad_host");
    // A forged cookie is no session.
    let forged = format!("mpc_demo={}", "ab".repeat(32));
    let (status, _) = page
        .post(
            "/demo/api/wallets",
            Some(&forged),
            Some(&origin),
            &json!({ "party_id": "browser-x" }),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(count_sessions(&sys).await, before, "nothing was created");

    // The demo's own flow works, and what it made is this browser's only.
    let (status, created) = page
        .post(
            "/demo/api/wallets",
            Some(&cookie),
            Some(&origin),
            &json!({ "party_id": "browser-x" }),
        )
        .await;
    assert!(status == 201 || status == 200, "{status} {created}");
    let session = created["session_id"].as_str().unwrap();
    assert_eq!(count_sessions(&sys).await, before + 1);
    let res = page
        .get(&format!("/demo/api/sessions/{session}"), Some(&cookie))
        .await;
    assert_eq!(res.status(), 200);
    let other = page.open().await;
    let res = page
        .get(&format!("/demo/api/sessions/{session}"), Some(&other))
        .await;
    assert_eq!(res.status(), 404, "another browser's session");

    // The vault: the browser party's own origin (another port), framed by
    // the page and by nothing else.
    let vault = sys.vault_url.clone().expect("--demo serves a vault");
    let vault_host = vault.trim_start_matches("http://").to_string();
    assert_ne!(vault_host, page.host, "the vault has an origin of its own");
    let res = page.get("/demo/", Some(&cookie)).await;
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains(&format!("frame-src {vault};")), "{csp}");
    assert!(
        !csp.contains("wasm-unsafe-eval") && !csp.contains("ws:"),
        "the page runs no party: {csp}"
    );
    let vault_page = Page {
        http: page.http.clone(),
        base: vault.clone(),
        host: vault_host.clone(),
    };
    let res = vault_page.get("/", None).await;
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    let ancestors = csp.split("frame-ancestors ").nth(1).unwrap();
    assert!(
        ancestors.split(' ').all(|a| a.starts_with("http://")) && ancestors.contains(&origin),
        "{csp}"
    );
    assert!(!ancestors.contains('*'), "{csp}");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert!(
        res.headers().get("set-cookie").is_none(),
        "the vault sets no cookie"
    );
    let config: Value = vault_page
        .get("/config.json", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        config["coordinator_public_key"],
        sys.coordinator_public_key.as_str()
    );
    assert!(
        config["parent_origins"]
            .as_array()
            .unwrap()
            .contains(&json!(origin)),
        "{config}"
    );
    // Only the device join and the reports reach the coordinator through
    // the vault's origin: the REST API is not served there, with or without
    // the API key, and nothing is created.
    for (method, path) in [
        ("POST", "/api/v1/mpc/keygen"),
        ("GET", "/api/v1/mpc/accounts"),
        ("GET", &format!("/api/v1/mpc/sessions/{session}")),
        ("POST", "/internal/v1/parties"),
        ("GET", "/openapi.json"),
    ] {
        let res = page
            .http
            .request(method.parse().unwrap(), format!("{vault}{path}"))
            .header("x-api-key", &sys.api_key)
            .header("origin", format!("http://{vault_host}"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert!(
            matches!(res.status().as_u16(), 404 | 405),
            "{method} {path}: {}",
            res.status()
        );
    }
    let join = format!("/api/v1/mpc/sessions/{session}/join");
    let (status, body) = vault_page
        .post(&join, None, Some("http://evil.example"), &json!({}))
        .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("bad_origin")));
    let (status, body) = vault_page
        .post(
            &join,
            None,
            Some(&format!("http://{vault_host}")),
            &json!({}),
        )
        .await;
    assert!(
        (400..500).contains(&status) && body["code"].is_string(),
        "the coordinator answers the join itself: {status} {body}"
    );
    let res = vault_page
        .http
        .get(format!("{vault}/"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "DNS rebinding onto the vault");
    assert_eq!(
        count_sessions(&sys).await,
        before + 1,
        "nothing more was created"
    );

    // Test mode (this system runs with the test aux info): the vault serves
    // the PUBLIC test aux info of a keygen index, and bad queries get a JSON
    // 400.
    let res = vault_page
        .get("/api/test-aux?parties=3&index=1", None)
        .await;
    assert_eq!(res.status(), 200);
    let served = res.json::<Value>().await.unwrap();
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../party-core/test-data/aux-n3.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(served["aux_info"], file["aux"][1]);
    for bad in ["parties=3&index=3", "parties=1&index=0", "parties=x", ""] {
        let res = vault_page.get(&format!("/api/test-aux?{bad}"), None).await;
        assert_eq!(res.status(), 400, "{bad}");
        assert_eq!(
            res.json::<Value>().await.unwrap()["code"],
            "invalid_request"
        );
    }
    sys.shutdown().await;
}
