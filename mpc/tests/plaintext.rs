//! Start-up refusals: a role given a plaintext URL to a non-loopback host,
//! or a listener off loopback without a certificate, exits non-zero before
//! it touches anything, naming the URL (without its credentials) and
//! `--insecure-plaintext`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

fn dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mpc-plaintext-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `mpc ARGS` and returns its exit status and stderr; it must end by
/// itself within 30 s.
async fn run(args: &[&str]) -> (std::process::ExitStatus, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mpc"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the process did not refuse to start")
    .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn refused(args: &[&str], names: &[&str], db: &Path) -> String {
    let (status, stderr) = run(args).await;
    assert!(!status.success(), "{args:?} started: {stderr}");
    for name in names.iter().chain(&["--insecure-plaintext"]) {
        assert!(stderr.contains(name), "{args:?}: no {name} in: {stderr}");
    }
    assert!(
        !db.exists(),
        "{args:?}: the database was created before the refusal"
    );
    stderr
}

fn party_args<'a>(db: &'a str, coordinator: &'a str, router: &'a str) -> Vec<&'a str> {
    vec![
        "party",
        "--party-id",
        "server-party-1",
        "--database-url",
        db,
        "--master-key",
        "1111111111111111111111111111111111111111111111111111111111111111",
        "--coordinator-public-key",
        "2222222222222222222222222222222222222222222222222222222222222222",
        "--coordinator-url",
        coordinator,
        "--router-ws-url",
        router,
    ]
}

#[tokio::test]
async fn a_party_refuses_plaintext_urls_off_loopback() {
    let dir = dir();
    let db = dir.join("party.db");
    let sqlite = format!("sqlite://{}?mode=rwc", db.display());
    refused(
        &party_args(
            &sqlite,
            "http://coordinator.example:8080",
            "wss://router.example/ws",
        ),
        &["--coordinator-url", "http://coordinator.example:8080"],
        &db,
    )
    .await;
    refused(
        &party_args(
            &sqlite,
            "https://127.0.0.1:1,http://10.1.2.3:8080",
            "ws://127.0.0.1:1/ws",
        ),
        &["http://10.1.2.3:8080"],
        &db,
    )
    .await;
    refused(
        &party_args(
            &sqlite,
            "https://coordinator.example",
            "ws://router.example:8081/ws",
        ),
        &["--router-ws-url", "ws://router.example:8081", "wss://"],
        &db,
    )
    .await;
    // A PostgreSQL URL without sslmode=require|verify-*: named without its
    // password.
    let stderr = refused(
        &party_args(
            "postgres://party:pg-s3cret@db.example:5432/party1",
            "https://coordinator.example",
            "wss://router.example/ws",
        ),
        &["--database-url", "postgres://db.example:5432", "sslmode"],
        &db,
    )
    .await;
    assert!(!stderr.contains("pg-s3cret"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_coordinator_refuses_plaintext_off_loopback() {
    let dir = dir();
    let db = dir.join("coordinator.db");
    let sqlite = format!("sqlite://{}?mode=rwc", db.display());
    let args = |listen: &'static str, router: &'static str| {
        vec![
            "coordinator".to_string(),
            "--listen".into(),
            listen.into(),
            "--database-url".into(),
            sqlite.clone(),
            "--signing-key".into(),
            "33".repeat(32),
            "--router-internal-token".into(),
            "coordinators".into(),
            "--router-internal-url".into(),
            router.into(),
        ]
    };
    let a = args("127.0.0.1:0", "http://router.internal:8091");
    refused(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &[
            "--router-internal-url",
            "http://router.internal:8091",
            "https://",
        ],
        &db,
    )
    .await;
    // Listening on every interface without a certificate.
    let a = args("0.0.0.0:0", "http://127.0.0.1:8091");
    refused(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
        &["--listen", "0.0.0.0:0", "--tls-cert"],
        &db,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_router_refuses_plaintext_redis_off_loopback() {
    let dir = dir();
    let none = dir.join("nothing");
    let stderr = refused(
        &[
            "router",
            "--listen",
            "127.0.0.1:0",
            "--internal-listen",
            "127.0.0.1:0",
            "--internal-token",
            "coordinators",
            "--redis-url",
            "redis://:r3dis-pass@redis.example:6379",
        ],
        &["--redis-url", "redis://redis.example:6379", "rediss://"],
        &none,
    )
    .await;
    assert!(!stderr.contains("r3dis-pass"), "{stderr}");
    // The default public listener (every interface) without a certificate.
    refused(
        &["router", "--internal-token", "coordinators"],
        &["--listen", "0.0.0.0:8081"],
        &none,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
