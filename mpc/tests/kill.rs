//! A kill at every round (issue #15): one running topology of plain `mpc`
//! processes (router, coordinator, two server parties, each with its own
//! database), and a matrix of deterministic kill points
//! (`MPC_TEST_KILL_AT`, compiled in only with the `insecure-test-data`
//! feature). For each point the test restarts one process with the point
//! set, starts the session that reaches it, and checks that the process
//! aborted there, that the session ended (a party's death noticed by the
//! router within 5 s, `party_disconnected`), that no share or presignature
//! was lost or used twice, and that the process, restarted without the
//! point, signs again with the group (checked with k256). Only the killed
//! process restarts; the points run one after another and the failures are
//! reported by point at the end.
//!
//! SQLite runs the whole matrix; `MPC_TEST_DB=postgres` (scripts/test's
//! PostgreSQL pass) one point per protocol and the coordinator's points.
//! The PUBLIC test primes and aux info keep it fast; aux-info rounds are
//! not in the matrix (a real aux-info run per point costs minutes here: the
//! in-process e2e test kills a party during aux info instead).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{random_hash, test_data, verify};
use mpc::client::Client;
use party_core::identity::CoordinatorKey;
use party_core::seal::MasterKey;
use serde_json::{json, Value};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row as _};

const API_KEY: &str = "mpc_kill_matrix_test_key_0123456789";
const ROUTER_TOKEN: &str = "kill-router-internal-token";
/// Deadlines (seconds): a keygen here is a DKG only (test aux info).
const KEYGEN_TIMEOUT: u64 = 6;
const SIGN_TIMEOUT: u64 = 60;
/// The router's grace period for a dropped party (milliseconds).
const GRACE_MS: u64 = 500;
/// A killed party's session must fail within this of the kill.
const NOTICED_WITHIN: Duration = Duration::from_secs(5);

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

    /// Starts the process, with `kill_at` as `MPC_TEST_KILL_AT` if given.
    fn start(&mut self, kill_at: Option<&str>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_mpc"));
        cmd.args(&self.args)
            .env("RUST_LOG", "info")
            // Background (presign) work at normal priority: this matrix
            // tests kills, not priorities, and runs beside other CI tests
            // that keep both cores busy, against which nice-19 presign steps
            // starved past their deadline (a flake seen in CI).
            .env("MPC_BACKGROUND_NICE", "0")
            .env_remove("MPC_DATABASE_URL")
            .env_remove("MPC_TEST_KILL_AT")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        if let Some(point) = kill_at {
            cmd.env("MPC_TEST_KILL_AT", point);
        }
        self.child = Some(cmd.spawn().unwrap());
    }

    /// Replaces the value that follows `flag` (takes effect at the next
    /// start).
    fn set_arg(&mut self, flag: &str, value: &str) {
        let i = self.args.iter().position(|a| a == flag).unwrap();
        self.args[i + 1] = value.to_string();
    }

    /// SIGKILL (if running) and wait.
    async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Waits up to `wait` for the process to abort at its kill point; true
    /// if it ended by SIGABRT.
    async fn aborted(&mut self, wait: Duration) -> Result<(), String> {
        let Some(child) = self.child.as_mut() else {
            return Err("not running".into());
        };
        match tokio::time::timeout(wait, child.wait()).await {
            Err(_) => Err(format!("{} did not reach its kill point", self.name)),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(status)) => {
                self.child = None;
                use std::os::unix::process::ExitStatusExt as _;
                if status.signal() == Some(6) {
                    Ok(())
                } else {
                    Err(format!("{} ended with {status}, not SIGABRT", self.name))
                }
            }
        }
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Waits for `{base}/ready`; dumps the logs of `procs` if it never comes.
async fn wait_ready(http: &reqwest::Client, base: &str, procs: &[&Proc]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/ready")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        if Instant::now() > deadline {
            for p in procs {
                eprintln!("--- {} ---\n{}", p.name, p.tail());
            }
            panic!("{base} never became ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn s(v: &str) -> String {
    v.to_string()
}

fn participants() -> Value {
    json!([
        { "party_id": "server-party-1", "device_type": "server" },
        { "party_id": "server-party-2", "device_type": "server" },
    ])
}

/// The running topology.
struct Topology {
    router: Proc,
    coordinator: Proc,
    parties: Vec<Proc>,
    api: String,
    client: Client,
    http: reqwest::Client,
    /// The coordinator's database and the parties', read by the checks.
    coordinator_db: AnyPool,
    party_dbs: Vec<AnyPool>,
    _dir: TempDirGuard,
}

struct TempDirGuard(PathBuf);

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn pool(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match AnyPoolOptions::new().max_connections(1).connect(url).await {
            Ok(p) => return p,
            Err(e) => assert!(Instant::now() < deadline, "database {url}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Topology {
    async fn start(urls: Vec<String>, dir: PathBuf) -> Self {
        let key = CoordinatorKey::generate(&mut rand_core::OsRng);
        let key_file = dir.join("coordinator.key");
        std::fs::write(&key_file, hex::encode(key.secret_bytes().as_ref())).unwrap();
        let (api_port, ws_port, internal_port) = (free_port(), free_port(), free_port());
        let api = format!("http://127.0.0.1:{api_port}");
        let router = Proc::new(
            "router",
            &dir,
            vec![
                s("router"),
                s("--listen"),
                format!("127.0.0.1:{ws_port}"),
                s("--internal-listen"),
                format!("127.0.0.1:{internal_port}"),
                s("--internal-token"),
                s(ROUTER_TOKEN),
                s("--disconnect-grace-ms"),
                GRACE_MS.to_string(),
            ],
        );
        let coordinator = Proc::new(
            "coordinator",
            &dir,
            vec![
                s("coordinator"),
                s("--listen"),
                format!("127.0.0.1:{api_port}"),
                s("--database-url"),
                urls[0].clone(),
                s("--signing-key-file"),
                key_file.display().to_string(),
                s("--api-key"),
                s(API_KEY),
                s("--router-internal-url"),
                format!("http://127.0.0.1:{internal_port}"),
                s("--router-internal-token"),
                s(ROUTER_TOKEN),
                s("--sign-timeout-secs"),
                SIGN_TIMEOUT.to_string(),
                s("--keygen-timeout-secs"),
                KEYGEN_TIMEOUT.to_string(),
                // No background presigning until the presign and online
                // points (then one presignature per signer set).
                s("--presign-pool"),
                s("0"),
                s("--presign-concurrency"),
                s("1"),
                s("--rate-limit"),
                s("1000000"),
                s("--insecure-test-aux"),
            ],
        );
        let mut parties = Vec::new();
        for (k, url) in urls.iter().enumerate().skip(1) {
            let mk = dir.join(format!("party-{k}.key"));
            std::fs::write(&mk, MasterKey::generate().to_hex().as_str()).unwrap();
            parties.push(Proc::new(
                &format!("party-{k}"),
                &dir,
                vec![
                    s("party"),
                    s("--party-id"),
                    format!("server-party-{k}"),
                    s("--database-url"),
                    url.clone(),
                    s("--master-key-file"),
                    mk.display().to_string(),
                    s("--coordinator-url"),
                    api.clone(),
                    s("--coordinator-public-key"),
                    hex::encode(key.public()),
                    s("--router-ws-url"),
                    format!("ws://127.0.0.1:{ws_port}/ws"),
                    s("--prime-pool"),
                    s("0"),
                    s("--insecure-test-data"),
                    test_data().display().to_string(),
                    s("--insecure-test-index"),
                    (k - 1).to_string(),
                ],
            ));
        }
        let (mut router, mut coordinator) = (router, coordinator);
        router.start(None);
        coordinator.start(None);
        let http = reqwest::Client::new();
        wait_ready(&http, &api, &[&router, &coordinator]).await;
        // The operator enrols each party's identity key before it starts.
        let operator = Client::new(&api, API_KEY);
        for p in &parties {
            common::enrol(&operator, &common::print_identity(&p.args).await).await;
        }
        for p in &mut parties {
            p.start(None);
        }
        let coordinator_db = pool(&urls[0]).await;
        let mut party_dbs = Vec::new();
        for url in &urls[1..=2] {
            party_dbs.push(pool(url).await);
        }
        Topology {
            router,
            coordinator,
            parties,
            client: Client::new(&api, API_KEY),
            api,
            http,
            coordinator_db,
            party_dbs,
            _dir: TempDirGuard(dir),
        }
    }

    async fn wait_coordinator(&self) {
        wait_ready(&self.http, &self.api, &[&self.router, &self.coordinator]).await;
    }

    fn dump(&self) {
        for p in [&self.router, &self.coordinator]
            .into_iter()
            .chain(&self.parties)
        {
            eprintln!("--- {} ---\n{}", p.name, p.tail());
        }
    }

    fn proc(&mut self, target: Target) -> &mut Proc {
        match target {
            Target::Coordinator => &mut self.coordinator,
            Target::Party(k) => &mut self.parties[k - 1],
        }
    }

    /// Restarts `target`, with `kill_at` if given.
    async fn restart(&mut self, target: Target, kill_at: Option<&str>) {
        let p = self.proc(target);
        p.stop().await;
        p.start(kill_at);
        if target == Target::Coordinator {
            self.wait_coordinator().await;
        }
    }

    async fn create(&self, path: &str, body: Value) -> Result<String, String> {
        let r = self
            .client
            .post(path, &body)
            .await
            .map_err(|e| e.to_string())?;
        if r.status != 201 {
            return Err(format!("{path}: {} {}", r.status, r.body));
        }
        Ok(r.body["session_id"].as_str().unwrap().to_string())
    }

    async fn keygen(&self) -> Result<String, String> {
        self.create(
            "/api/v1/mpc/keygen",
            json!({ "threshold_n": 2, "threshold_t": 2, "participants": participants() }),
        )
        .await
    }

    async fn sign(&self, account: &Value, hash: &[u8; 32]) -> Result<String, String> {
        self.create(
            "/api/v1/mpc/sign",
            json!({ "account_id": account["account_id"], "message_hash": hex::encode(hash),
                    "participants": participants() }),
        )
        .await
    }

    /// An online signing from the pool (`require_presignature`).
    async fn sign_online(&self, account: &Value, msg: &[u8]) -> Result<String, String> {
        self.create(
            "/api/v1/mpc/sign",
            json!({ "account_id": account["account_id"], "message": hex::encode(msg),
                    "digest": "keccak256", "require_presignature": true,
                    "participants": participants() }),
        )
        .await
    }

    async fn session(&self, id: &str) -> Value {
        self.client
            .get(&format!("/api/v1/mpc/sessions/{id}"))
            .await
            .map(|r| r.body)
            .unwrap_or(Value::Null)
    }

    /// Waits for a session to end (at most its deadline plus the sweep).
    async fn terminal(&self, id: &str) -> Result<Value, String> {
        let deadline = Instant::now() + Duration::from_secs(SIGN_TIMEOUT + 15);
        loop {
            let s = self.session(id).await;
            if matches!(
                s["status"].as_str(),
                Some("completed" | "failed" | "expired")
            ) {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(format!("session {id} never ended: {s}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Signs a fresh hash with both parties and checks it with k256.
    async fn signs_again(&self, account: &Value) -> Result<(), String> {
        let hash = random_hash();
        let id = self.sign(account, &hash).await?;
        let s = self.terminal(&id).await?;
        if s["status"] != "completed" {
            return Err(format!("signing after the restart: {s}"));
        }
        verify(
            &s["result"]["signature"],
            &hash,
            account["public_key"].as_str().unwrap(),
        );
        Ok(())
    }

    /// How many rows of presignature `id` each party holds, in party order.
    async fn party_presignature_counts(&self, id: &str) -> Vec<i64> {
        let mut counts = Vec::new();
        for db in &self.party_dbs {
            let n: i64 =
                sqlx::query("SELECT COUNT(*) FROM presignatures WHERE presignature_id = $1")
                    .bind(id)
                    .fetch_one(db)
                    .await
                    .unwrap()
                    .get(0);
            counts.push(n);
        }
        counts
    }

    async fn coordinator_rows(&self, sql: &str) -> Vec<sqlx::any::AnyRow> {
        sqlx::query(sql)
            .fetch_all(&self.coordinator_db)
            .await
            .unwrap()
    }

    /// The sessions of `kind` created at or after `since` (Unix s), newest
    /// first.
    async fn since(&self, kind: &str, since: u64) -> Vec<String> {
        self.coordinator_rows(&format!(
            "SELECT session_id FROM sessions WHERE kind LIKE '{kind}' AND created_at >= {since}
             ORDER BY created_at DESC"
        ))
        .await
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect()
    }

    async fn available_presignatures(&self) -> i64 {
        self.coordinator_rows("SELECT COUNT(*) FROM presignatures WHERE status = 'available'")
            .await[0]
            .get(0)
    }

    async fn wait_presignature(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(SIGN_TIMEOUT * 2 + 10);
        while self.available_presignatures().await < 1 {
            if Instant::now() > deadline {
                return Err("no presignature became available".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn wait_no_open_presign(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(SIGN_TIMEOUT * 2 + 10);
        loop {
            let open: i64 = self
                .coordinator_rows(
                    "SELECT COUNT(*) FROM sessions WHERE kind = 'presign'
                     AND status IN ('waiting', 'in_progress')",
                )
                .await[0]
                .get(0);
            if open == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("presign sessions still open".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// No share or presignature lost or used twice, and no session past its
    /// deadline.
    async fn invariants(&self) -> Result<(), String> {
        let now = now();
        // Sessions: terminal by their deadline (the sweep runs every 0.5 s).
        for r in self
            .coordinator_rows("SELECT session_id, status, expires_at, updated_at FROM sessions")
            .await
        {
            let (id, status): (String, String) = (r.get(0), r.get(1));
            let (expires_at, updated_at): (i64, i64) = (r.get(2), r.get(3));
            let open = matches!(status.as_str(), "waiting" | "in_progress");
            if open && now > u64::try_from(expires_at).unwrap() + 2 {
                return Err(format!("session {id} is {status} past its deadline"));
            }
            if !open && updated_at > expires_at + 2 {
                return Err(format!("session {id} ended {status} after its deadline"));
            }
        }
        // Shares: every account's share at both parties.
        for r in self
            .coordinator_rows("SELECT account_id FROM accounts")
            .await
        {
            let account: String = r.get(0);
            for (k, db) in self.party_dbs.iter().enumerate() {
                let n: i64 = sqlx::query("SELECT COUNT(*) FROM key_shares WHERE account_id = $1")
                    .bind(&account)
                    .fetch_one(db)
                    .await
                    .unwrap()
                    .get(0);
                if n != 1 {
                    return Err(format!("party {} lost the share of {account}", k + 1));
                }
            }
        }
        // Presignatures: each handed to one signing at most, and every
        // available one still held by both parties.
        let twice = self
            .coordinator_rows(
                "SELECT used_by FROM presignatures WHERE status = 'used'
                 GROUP BY used_by HAVING COUNT(*) > 1",
            )
            .await;
        if !twice.is_empty() {
            return Err("one signing took two presignatures".into());
        }
        let claimed: i64 = self
            .coordinator_rows(
                "SELECT COUNT(*) FROM presignatures p JOIN sessions s ON s.session_id = p.used_by",
            )
            .await[0]
            .get(0);
        let used: i64 = self
            .coordinator_rows("SELECT COUNT(*) FROM presignatures WHERE status = 'used'")
            .await[0]
            .get(0);
        if claimed != used {
            return Err(format!("{used} presignatures used, {claimed} by a signing"));
        }
        for r in self
            .coordinator_rows(
                "SELECT presignature_id FROM presignatures WHERE status = 'available'",
            )
            .await
        {
            let id: String = r.get(0);
            for (k, n) in self
                .party_presignature_counts(&id)
                .await
                .into_iter()
                .enumerate()
            {
                if n != 1 {
                    return Err(format!("party {} lost available presignature {id}", k + 1));
                }
            }
        }
        // A presignature a signing used is gone from every party that took
        // part (deleted before its partial signature left).
        for r in self
            .coordinator_rows(
                "SELECT p.presignature_id FROM presignatures p JOIN sessions s
                 ON s.session_id = p.used_by WHERE s.status = 'completed'",
            )
            .await
        {
            let id: String = r.get(0);
            for (k, n) in self
                .party_presignature_counts(&id)
                .await
                .into_iter()
                .enumerate()
            {
                if n != 0 {
                    return Err(format!(
                        "party {} still holds used presignature {id}",
                        k + 1
                    ));
                }
            }
        }
        Ok(())
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Coordinator,
    Party(usize),
}

/// The session a point kills: what the test starts to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Keygen,
    Sign,
    /// The pool's refill after an online signing consumed the presignature.
    Presign,
    Online,
}

struct Point {
    name: &'static str,
    target: Target,
    trigger: Trigger,
}

const fn party(name: &'static str, k: usize, trigger: Trigger) -> Point {
    Point {
        name,
        target: Target::Party(k),
        trigger,
    }
}

const fn coordinator(name: &'static str, trigger: Trigger) -> Point {
    Point {
        name,
        target: Target::Coordinator,
        trigger,
    }
}

/// Every round of each protocol as cggmp24's tracer counts them (keygen 5
/// with the reliability check, full signing 7, presigning 5, online signing
/// 1), on either party, and the coordinator's steps. Round `r` is reached
/// once the messages of the rounds before it are out; the first step of a
/// protocol sends round 1's messages and begins round 2, so `X:1` and `X:2`
/// stop a party at nearly the same place.
const MATRIX: &[Point] = &[
    party("keygen:1", 2, Trigger::Keygen),
    party("keygen:2", 1, Trigger::Keygen),
    party("keygen:3", 2, Trigger::Keygen),
    party("keygen:4", 1, Trigger::Keygen),
    party("keygen:5", 2, Trigger::Keygen),
    party("sign:1", 1, Trigger::Sign),
    party("sign:2", 2, Trigger::Sign),
    party("sign:3", 1, Trigger::Sign),
    party("sign:4", 2, Trigger::Sign),
    party("sign:5", 1, Trigger::Sign),
    party("sign:6", 2, Trigger::Sign),
    party("sign:7", 1, Trigger::Sign),
    coordinator("coordinator:created", Trigger::Keygen),
    coordinator("coordinator:report", Trigger::Sign),
    coordinator("coordinator:completing", Trigger::Sign),
    party("presign:1", 2, Trigger::Presign),
    party("presign:2", 1, Trigger::Presign),
    party("presign:3", 2, Trigger::Presign),
    party("presign:4", 1, Trigger::Presign),
    party("presign:5", 2, Trigger::Presign),
    party("online_sign:1", 2, Trigger::Online),
];

/// On PostgreSQL: one point per protocol and the coordinator's points.
const PG_POINTS: &[&str] = &[
    "keygen:2",
    "sign:2",
    "presign:2",
    "online_sign:1",
    "coordinator:created",
    "coordinator:report",
    "coordinator:completing",
];

/// Runs one point; `Ok(detail)` or why it failed.
async fn run_point(
    t: &mut Topology,
    account: &Value,
    p: &Point,
    n: usize,
) -> Result<String, String> {
    // The online point is reached by a signing that takes the pool's
    // presignature; a presign point by the refill for a new wallet (a new
    // one each time: a signer set whose presign sessions keep failing rests
    // a minute).
    if p.trigger == Trigger::Online {
        t.wait_presignature().await?;
    }
    if matches!(p.trigger, Trigger::Presign | Trigger::Online) {
        // No refill of an earlier point still running: the point's session
        // is the only presign session that starts.
        t.wait_no_open_presign().await?;
    }
    let since = now();
    t.restart(p.target, Some(p.name)).await;
    let msg = format!("kill matrix {n} {}", p.name).into_bytes();
    let hash = random_hash();
    let started = match p.trigger {
        Trigger::Keygen => t.keygen().await,
        Trigger::Sign => t.sign(account, &hash).await,
        Trigger::Presign => t.keygen().await,
        Trigger::Online => t.sign_online(account, &msg).await,
    };
    // The coordinator's `created` point aborts inside the request.
    let started = match (started, p.target) {
        (Ok(id), _) => Some(id),
        (Err(_), Target::Coordinator) => None,
        (Err(e), _) => return Err(e),
    };
    t.proc(p.target)
        .aborted(Duration::from_secs(SIGN_TIMEOUT))
        .await?;
    let killed = Instant::now();
    let detail = match p.target {
        Target::Party(k) => {
            let id = match (p.trigger, &started) {
                (Trigger::Presign, _) => t
                    .since("presign", since)
                    .await
                    .into_iter()
                    .next()
                    .ok_or("no presign session started")?,
                (_, Some(id)) => id.clone(),
                (_, None) => return Err("no session".into()),
            };
            let s = t.terminal(&id).await?;
            let took = killed.elapsed();
            if p.trigger == Trigger::Presign {
                // The wallet whose refill reached the point was made.
                let keygen = t.terminal(started.as_deref().unwrap_or_default()).await?;
                if keygen["status"] != "completed" {
                    return Err(format!("the keygen: {keygen}"));
                }
            }
            if s["status"] != "failed" || s["error"]["code"] != "party_disconnected" {
                return Err(format!("expected failed, party_disconnected: {s}"));
            }
            let named = format!("server-party-{k}");
            if !s["error"]["reason"]
                .as_str()
                .unwrap_or_default()
                .contains(&named)
            {
                return Err(format!("the failure does not name {named}: {s}"));
            }
            if took > NOTICED_WITHIN {
                return Err(format!("noticed {took:?} after the kill"));
            }
            t.restart(p.target, None).await;
            format!(
                "failed party_disconnected {:.1} s after the kill",
                took.as_secs_f64()
            )
        }
        Target::Coordinator => {
            t.restart(p.target, None).await;
            // Every session created since (the test's, and any presign
            // refill that reached the point first) ends by its deadline.
            let mut outcomes = Vec::new();
            for id in t.since("%", since).await {
                let s = t.terminal(&id).await?;
                let status = s["status"].as_str().unwrap_or("?").to_string();
                if Some(&id) == started.as_ref()
                    && status == "completed"
                    && p.trigger == Trigger::Sign
                {
                    verify(
                        &s["result"]["signature"],
                        &hash,
                        account["public_key"].as_str().unwrap(),
                    );
                }
                outcomes.push(format!(
                    "{} {status}",
                    s["session_type"].as_str().unwrap_or("?")
                ));
            }
            format!(
                "{} within {:.1} s of the kill",
                outcomes.join(", "),
                killed.elapsed().as_secs_f64()
            )
        }
    };
    t.invariants().await?;
    if p.trigger != Trigger::Keygen || p.target == Target::Coordinator {
        // After a keygen point the next point's session runs with the
        // restarted party, and the group signs once after the keygen
        // points (a full signing per point would double their cost).
        t.signs_again(account).await?;
    }
    Ok(detail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_at_every_round_ends_the_session_and_the_group_signs_again() {
    let dir = std::env::temp_dir().join(format!("mpc-kill-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let postgres = mpc_db::testing::test_backend() == mpc_db::Backend::Postgres;
    let urls = if postgres {
        let Some(urls) =
            mpc_db::testing::postgres_schema_urls(&["coordinator", "party1", "party2"]).await
        else {
            return;
        };
        urls
    } else {
        ["coordinator", "party-1", "party-2"]
            .iter()
            .map(|n| format!("sqlite://{}", dir.join(format!("{n}.db")).display()))
            .collect()
    };
    let mut t = Topology::start(urls, dir).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = t
            .coordinator_rows("SELECT COUNT(*) FROM parties WHERE party_id LIKE 'server-party-%'")
            .await[0]
            .get(0);
        if n == 2 {
            break;
        }
        if Instant::now() > deadline {
            t.dump();
            panic!("the parties never registered");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The account every point signs with afterwards.
    let id = t.keygen().await.unwrap();
    let s = t.terminal(&id).await.unwrap();
    assert_eq!(s["status"], "completed", "{s}");
    let account = t
        .client
        .get(&format!(
            "/api/v1/mpc/accounts/{}",
            s["result"]["account_id"].as_str().unwrap()
        ))
        .await
        .unwrap()
        .body;

    let points: Vec<&Point> = MATRIX
        .iter()
        .filter(|p| !postgres || PG_POINTS.contains(&p.name))
        .collect();
    let mut failures = Vec::new();
    let mut table = String::from("point | process | outcome | time\n");
    let mut pool_on = false;
    let mut keygen_points = false;
    for (n, p) in points.iter().enumerate() {
        if keygen_points && p.trigger != Trigger::Keygen {
            // The group that went through the keygen points signs.
            keygen_points = false;
            let started = Instant::now();
            let outcome = t.signs_again(&account).await;
            table.push_str(&format!(
                "(after the keygen points) | both parties | signs: {outcome:?} | {:.1} s\n",
                started.elapsed().as_secs_f64()
            ));
            if outcome.is_err() {
                failures.push("signing after the keygen points");
            }
        }
        keygen_points |= p.trigger == Trigger::Keygen && p.target != Target::Coordinator;
        if !pool_on && matches!(p.trigger, Trigger::Presign | Trigger::Online) {
            pool_on = true;
            t.coordinator.set_arg("--presign-pool", "1");
            t.restart(Target::Coordinator, None).await;
            t.wait_presignature().await.unwrap();
        }
        let started = Instant::now();
        let outcome = run_point(&mut t, &account, p, n).await;
        let secs = started.elapsed().as_secs_f64();
        let target = match p.target {
            Target::Coordinator => "coordinator".to_string(),
            Target::Party(k) => format!("party-{k}"),
        };
        match outcome {
            Ok(detail) => table.push_str(&format!(
                "{} | {target} | ok: {detail} | {secs:.1} s\n",
                p.name
            )),
            Err(e) => {
                table.push_str(&format!(
                    "{} | {target} | FAILED: {e} | {secs:.1} s\n",
                    p.name
                ));
                failures.push(p.name);
                t.dump();
                // Leave a clean topology for the next point.
                t.restart(p.target, None).await;
            }
        }
    }
    eprintln!("{table}");
    assert!(
        failures.is_empty(),
        "kill points failed: {failures:?}\n{table}"
    );
}
