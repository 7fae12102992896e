//! The production topology as plain processes of the `mpc` binary, on real
//! PostgreSQL and Redis: two coordinators sharing one database, two routers
//! sharing one Redis, three server parties each with its own schema, parties
//! of one session on different routers. Every service of the project speaks
//! TLS (`https://`, `wss://`) with certificates of a CA made by the test
//! (rcgen); every client trusts only that CA. Started in reverse dependency order
//! (parties, then coordinators, then routers) to show start-up in any order.
//!
//! It shows: keygen through one coordinator and signing through the other;
//! a router killed (SIGKILL) mid-session; a coordinator killed mid-session and
//! restarted; accounts and sessions surviving; no session left open; the
//! routers' internal API only on its own listener, only with the
//! coordinators' credential (another gets 401), and a completed session
//! refused if registered again; a client that trusts another CA, and a
//! plaintext client, are refused by the services. Parties hold no shared
//! secret: each prints its public identity (`mpc party --print-identity`),
//! the operator enrols it through the admin API, and the party's signed
//! registration succeeds.
//! Uses the PUBLIC test primes and aux info (explicit test switches) so the
//! run takes seconds. Needs PostgreSQL and Redis: skipped with a printed
//! reason outside CI when they are down, a failure in CI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

mod common;

use common::pki::TestPki;
use common::{random_hash, test_data, verify};
use mpc::client::Client;
use party_core::identity::CoordinatorKey;
use party_core::seal::MasterKey;
use serde_json::{json, Value};

const API_KEY: &str = "mpc_topology_test_key_0123456789";
/// A credential that is not the routers' (parties hold none: they sign
/// their registration with their enrolled identity key).
const NOT_ROUTER_TOKEN: &str = "topology-some-other-token";
/// The routers' internal credential: coordinators only.
const ROUTER_TOKEN: &str = "topology-router-internal-token";
const REDIS: &str = "redis://127.0.0.1:6379";
/// Deadline of the signing sessions (seconds).
const SIGN_TIMEOUT: u64 = 30;

struct Proc {
    name: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<tokio::process::Child>,
}

impl Proc {
    fn new(name: &str, dir: &Path, args: Vec<String>) -> Self {
        Self {
            name: name.into(),
            args,
            log: dir.join(format!("{name}.log")),
            child: None,
        }
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mpc"))
            .args(&self.args)
            .env("RUST_LOG", "info")
            .env_remove("MPC_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL, as a crash.
    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn redis_up() -> bool {
    let Ok(c) = redis::Client::open(REDIS) else {
        return false;
    };
    tokio::time::timeout(Duration::from_secs(2), c.get_multiplexed_async_connection())
        .await
        .is_ok_and(|r| r.is_ok())
}

async fn wait_ready(http: &reqwest::Client, base: &str, procs: &[Proc]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(r) = http.get(format!("{base}/ready")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        if tokio::time::Instant::now() > deadline {
            for p in procs {
                eprintln!("--- {} ---\n{}", p.name, p.tail());
            }
            panic!("{base} never became ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn participants(ids: &[usize]) -> Value {
    Value::Array(
        ids.iter()
            .map(|k| json!({ "party_id": format!("server-party-{k}"), "device_type": "server" }))
            .collect(),
    )
}

/// Creates a signing session and returns its id.
async fn start_sign(c: &Client, account: &Value, ids: &[usize], hash: &[u8; 32]) -> String {
    let created = c
        .post(
            "/api/v1/mpc/sign",
            &json!({ "account_id": account["account_id"], "message_hash": hex::encode(hash), "participants": participants(ids) }),
        )
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    created.body["session_id"].as_str().unwrap().to_string()
}

/// Polls a session until `pred` holds for it (or it is terminal).
async fn poll_until(c: &Client, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(SIGN_TIMEOUT + 30);
    loop {
        if let Ok(a) = c.get(&format!("/api/v1/mpc/sessions/{id}")).await {
            if a.status == 200 && pred(&a.body) {
                return a.body;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "session {id} stuck");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn terminal(s: &Value) -> bool {
    matches!(
        s["status"].as_str(),
        Some("completed" | "failed" | "expired")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_coordinators_two_routers_survive_crashes() {
    if !redis_up().await {
        assert!(
            !mpc_db::testing::services_required(),
            "CI=true and Redis is unreachable"
        );
        eprintln!("skipped: Redis at {REDIS} unreachable");
        return;
    }
    let Some(urls) =
        mpc_db::testing::postgres_schema_urls(&["coordinator", "party1", "party2", "party3"]).await
    else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("mpc-topology-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = CoordinatorKey::generate(&mut rand_core::OsRng);
    let key_file = dir.join("coordinator.key");
    std::fs::write(&key_file, hex::encode(key.secret_bytes().as_ref())).unwrap();
    let test_data = test_data();
    let pki = TestPki::new(&dir, "topology");

    let (ca, cb, ra, rb) = (free_port(), free_port(), free_port(), free_port());
    // The routers' internal listeners.
    let (ia, ib) = (free_port(), free_port());
    let c_url = |p: u16| format!("https://127.0.0.1:{p}");
    let r_ws = |p: u16| format!("wss://127.0.0.1:{p}/ws");
    let s = |v: &str| v.to_string();

    let mut parties = Vec::new();
    for (k, database_url) in urls.iter().enumerate().skip(1) {
        let mk = dir.join(format!("party-{k}.key"));
        std::fs::write(&mk, MasterKey::generate().to_hex().as_str()).unwrap();
        // Parties 1 and 3 prefer router A and coordinator A; party 2 the Bs.
        let (coords, routers) = if k == 2 {
            (
                format!("{},{}", c_url(cb), c_url(ca)),
                format!("{},{}", r_ws(rb), r_ws(ra)),
            )
        } else {
            (
                format!("{},{}", c_url(ca), c_url(cb)),
                format!("{},{}", r_ws(ra), r_ws(rb)),
            )
        };
        parties.push(Proc::new(
            &format!("party-{k}"),
            &dir,
            [
                s("party"),
                s("--party-id"),
                format!("server-party-{k}"),
                s("--database-url"),
                database_url.clone(),
                s("--master-key-file"),
                mk.display().to_string(),
                s("--coordinator-url"),
                coords,
                s("--coordinator-public-key"),
                hex::encode(key.public()),
                s("--router-ws-url"),
                routers,
                s("--prime-pool"),
                s("0"),
                s("--insecure-test-data"),
                test_data.display().to_string(),
                s("--insecure-test-index"),
                (k - 1).to_string(),
            ]
            .into_iter()
            .chain(pki.args())
            .collect(),
        ));
    }
    let coordinator = |name: &str, port: u16, routers: String| {
        Proc::new(
            name,
            &dir,
            [
                s("coordinator"),
                s("--listen"),
                format!("127.0.0.1:{port}"),
                s("--database-url"),
                urls[0].clone(),
                s("--signing-key-file"),
                key_file.display().to_string(),
                s("--api-key"),
                s(API_KEY),
                s("--router-internal-url"),
                routers,
                s("--router-internal-token"),
                s(ROUTER_TOKEN),
                s("--sign-timeout-secs"),
                SIGN_TIMEOUT.to_string(),
                // No background presign sessions: every session here is one
                // the test starts and follows.
                s("--presign-pool"),
                s("0"),
                // The test follows sessions by polling every 5 ms (to kill
                // a service mid-session): more than the default 200
                // requests per 10 s of its one key.
                s("--rate-limit"),
                s("1000000"),
                s("--insecure-test-aux"),
            ]
            .into_iter()
            .chain(pki.args())
            .collect(),
        )
    };
    let mut coord_a = coordinator("coordinator-a", ca, format!("{},{}", c_url(ia), c_url(ib)));
    let mut coord_b = coordinator("coordinator-b", cb, format!("{},{}", c_url(ib), c_url(ia)));
    let router = |name: &str, port: u16, internal: u16| {
        Proc::new(
            name,
            &dir,
            [
                s("router"),
                s("--listen"),
                format!("127.0.0.1:{port}"),
                s("--internal-listen"),
                format!("127.0.0.1:{internal}"),
                s("--internal-token"),
                s(ROUTER_TOKEN),
                s("--redis-url"),
                s(REDIS),
            ]
            .into_iter()
            .chain(pki.args())
            .collect(),
        )
    };
    let mut router_a = router("router-a", ra, ia);
    let mut router_b = router("router-b", rb, ib);

    // Each party prints its public identity (creating it in its database)
    // for the operator to enrol, as docs/operations.md describes.
    let mut identities = Vec::new();
    for p in &parties {
        identities.push(common::print_identity(&p.args).await);
    }
    // Reverse dependency order: everyone retries until its peers are up.
    for p in &mut parties {
        p.start();
    }
    coord_a.start();
    coord_b.start();
    router_a.start();
    router_b.start();

    let http = pki.http();
    let dump = |procs: &[&Proc]| {
        for p in procs {
            eprintln!("--- {} ---\n{}", p.name, p.tail());
        }
    };
    for base in [c_url(ca), c_url(cb), c_url(ra), c_url(rb)] {
        wait_ready(&http, &base, &[]).await;
    }
    let tls = mpc_tls::client_config(Some(&pki.ca)).unwrap();
    let a = Client::with_tls(&c_url(ca), API_KEY, tls.clone());
    let b = Client::with_tls(&c_url(cb), API_KEY, tls);

    // A client that trusts another CA is refused by every service, and a
    // plaintext client gets no answer from a TLS port.
    let stranger = TestPki::new(&dir, "stranger").http();
    for base in [c_url(ca), c_url(ra), c_url(ia)] {
        let err = stranger
            .get(format!("{base}/health"))
            .send()
            .await
            .expect_err("a certificate of another CA was accepted");
        let chain = format!("{err:?}");
        assert!(
            chain.contains("InvalidCertificate(UnknownIssuer)"),
            "{base}: {chain}"
        );
        let plain = base.replacen("https://", "http://", 1);
        assert!(
            reqwest::Client::new()
                .get(format!("{plain}/health"))
                .send()
                .await
                .is_err(),
            "{plain} answered plaintext"
        );
    }
    // The operator enrols the parties (through either coordinator: they
    // share the database); the parties' registrations then succeed.
    for id in &identities {
        common::enrol(&b, id).await;
    }

    // The routers' internal API: not on the public listener, and not for
    // the token every party holds.
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let registration = |session_id: &str| {
        json!({ "session_id": session_id, "expires_at": soon,
                "participants": [{ "position": 0, "token_sha256": "22".repeat(32), "identity": null }] })
    };
    let post = |url: String, token: &'static str, body: Value| {
        let http = http.clone();
        async move {
            let r = http
                .post(url)
                .header("X-Internal-Token", token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let probe = uuid::Uuid::new_v4().to_string();
    for (public, internal) in [(ra, ia), (rb, ib)] {
        let (status, body) = post(
            format!("{}/internal/v1/sessions", c_url(internal)),
            NOT_ROUTER_TOKEN,
            registration(&probe),
        )
        .await;
        assert_eq!(
            (status, &body["code"]),
            (401, &json!("unauthorized")),
            "{body}"
        );
        let (status, _) = post(
            format!("{}/internal/v1/sessions", c_url(public)),
            ROUTER_TOKEN,
            registration(&probe),
        )
        .await;
        assert_eq!(status, 404, "the internal API is served on the public port");
    }

    // Keygen through A, once every party has registered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let created = loop {
        let r = a
            .post(
                "/api/v1/mpc/keygen",
                &json!({ "threshold_n": 3, "threshold_t": 2, "participants": participants(&[1, 2, 3]) }),
            )
            .await
            .unwrap();
        if r.status == 201 {
            break r;
        }
        assert_eq!(r.body["code"], "unknown_participant", "{}", r.body);
        assert!(
            tokio::time::Instant::now() < deadline,
            "parties never registered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let keygen_id = created.body["session_id"].as_str().unwrap().to_string();
    let done = b
        .wait_session(&keygen_id, Duration::from_secs(120), |_| {})
        .await
        .unwrap();
    if done["status"] != "completed" {
        dump(&[
            &parties[0],
            &parties[1],
            &parties[2],
            &coord_a,
            &coord_b,
            &router_a,
            &router_b,
        ]);
    }
    assert_eq!(done["status"], "completed", "{done}");
    let account_id = done["result"]["account_id"].as_str().unwrap().to_string();
    let account = b
        .get(&format!("/api/v1/mpc/accounts/{account_id}"))
        .await
        .unwrap()
        .body;
    let public_key = account["public_key"].as_str().unwrap().to_string();

    // The completed keygen cannot be registered again, through either router
    // (the coordinator closes it in the background: until then another
    // registration of the open id is a conflict).
    for internal in [ia, ib] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = post(
                format!("{}/internal/v1/sessions", c_url(internal)),
                ROUTER_TOKEN,
                registration(&keygen_id),
            )
            .await;
            if status == 410 {
                assert_eq!(body["code"], "session_closed");
                break;
            }
            assert_eq!(status, 409, "{body}");
            assert!(tokio::time::Instant::now() < deadline, "never closed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Signing through B, parties 1 (router A) and 2 (router B).
    let hash = random_hash();
    let id = start_sign(&b, &account, &[1, 2], &hash).await;
    let s1 = poll_until(&a, &id, terminal).await;
    assert_eq!(s1["status"], "completed", "{s1}");
    verify(&s1["result"]["signature"], &hash, &public_key);

    // Router A killed mid-session (parties 1 and 3 both use it).
    let hash = random_hash();
    let id = start_sign(&a, &account, &[1, 3], &hash).await;
    poll_until(&a, &id, |s| s["status"] == "in_progress" || terminal(s)).await;
    router_a.kill().await;
    let s2 = poll_until(&a, &id, terminal).await;
    // The parties rejoined through router B (resending what they had sent),
    // which replayed the session's log from Redis: the session completes.
    if s2["status"] != "completed" {
        dump(&[&parties[0], &parties[2], &coord_a, &router_b]);
    }
    assert_eq!(s2["status"], "completed", "{s2}");
    verify(&s2["result"]["signature"], &hash, &public_key);
    // With router A gone, the same parties sign through router B.
    let hash = random_hash();
    let id = start_sign(&a, &account, &[1, 3], &hash).await;
    let s3 = poll_until(&a, &id, terminal).await;
    if s3["status"] != "completed" {
        dump(&[&parties[0], &parties[2], &coord_a, &router_b]);
    }
    assert_eq!(s3["status"], "completed", "{s3}");
    verify(&s3["result"]["signature"], &hash, &public_key);

    // Coordinator B killed mid-session and restarted.
    let hash = random_hash();
    let id = start_sign(&b, &account, &[2, 3], &hash).await;
    poll_until(&b, &id, |s| s["status"] == "in_progress" || terminal(s)).await;
    coord_b.kill().await;
    coord_b.start();
    wait_ready(&http, &c_url(cb), &[]).await;
    let s4 = poll_until(&b, &id, terminal).await;
    if s4["status"] != "completed" {
        dump(&[&parties[1], &parties[2], &coord_a, &coord_b, &router_b]);
    }
    assert_eq!(s4["status"], "completed", "{s4}");
    verify(&s4["result"]["signature"], &hash, &public_key);

    // Accounts and sessions survived, readable through either coordinator.
    for c in [&a, &b] {
        let acc = c
            .get(&format!("/api/v1/mpc/accounts/{account_id}"))
            .await
            .unwrap();
        assert_eq!(acc.body["public_key"], public_key.as_str());
        let k = c
            .get(&format!("/api/v1/mpc/sessions/{keygen_id}"))
            .await
            .unwrap();
        assert_eq!(k.body["status"], "completed");
    }
    // No session is left open.
    let pool = mpc_db::Db::open(
        &urls[0],
        coordinator::store::MIGRATIONS,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let open: i64 = mpc_db::sqlx::Row::get(
        &mpc_db::sqlx::query(
            "SELECT COUNT(*) FROM sessions WHERE status IN ('waiting','in_progress')",
        )
        .fetch_one(pool.pool())
        .await
        .unwrap(),
        0,
    );
    assert_eq!(open, 0, "no session left open");
    let _ = std::fs::remove_dir_all(&dir);
}
