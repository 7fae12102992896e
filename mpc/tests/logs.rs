//! Secrets never reach the logs (issue #14): the logs of a whole run at
//! DEBUG level (a wallet, full and presignature signings, a device keygen
//! handing out a join token, refused calls) are collected and searched for
//! the API key, the coordinator's signing key, each party's master key, the
//! device join token and the primes of the test data. None may appear.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{random_hash, test_data, TempDir};
use mpc::client::Client;
use mpc::dev::DevSystem;
use mpc_api::rest::{KeygenRequest, Participant};
use serde_json::json;

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// 32-hex-digit windows of `hex_text` (a long secret in hex), to find a
/// part of it logged in any layout.
fn windows(hex_text: &str) -> Vec<String> {
    let t = hex_text
        .trim()
        .trim_start_matches("0x")
        .to_ascii_lowercase();
    (0..t.len().saturating_sub(32))
        .step_by(97)
        .map(|i| t[i..i + 32].to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_run_logs_no_secret() {
    let sink = Sink::default();
    let writer = sink.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let dir = TempDir::new("logs");
    let mut o = dir.fast(3).await;
    o.presign_pool = 1;
    let sys = DevSystem::start(o).await.unwrap();
    let c = Client::new(&sys.api_url, &sys.api_key);
    let wait = Duration::from_secs(60);
    let wallet = c
        .keygen(
            &KeygenRequest {
                threshold_n: 3,
                threshold_t: 2,
                participants: (1..=3)
                    .map(|k| Participant::server(DevSystem::party_id(k)))
                    .collect(),
                policy: None,
            },
            wait,
        )
        .await
        .unwrap();
    let account = wallet.account_id.clone().unwrap();
    let signers = json!([
        { "party_id": DevSystem::party_id(1) },
        { "party_id": DevSystem::party_id(2) }
    ]);
    for body in [
        json!({ "account_id": account, "message_hash": hex::encode(random_hash()), "participants": signers }),
        json!({ "account_id": account, "message": hex::encode(b"log test"), "participants": signers }),
    ] {
        let done = c
            .run_session("/api/v1/mpc/sign", &body, Duration::from_secs(120), |_| {})
            .await
            .unwrap();
        assert_eq!(done["status"], "completed", "{done}");
    }
    // A device keygen: the answer carries the device's join token.
    let device = c
        .post(
            "/api/v1/mpc/keygen",
            &json!({ "threshold_n": 2, "threshold_t": 2, "participants": [
                { "party_id": "phone-1", "device_type": "mobile", "device_id": "phone-1" },
                { "party_id": DevSystem::party_id(1) }
            ]}),
        )
        .await
        .unwrap();
    let tokens: Vec<String> = device.body["join_tokens"]
        .as_object()
        .expect("a device keygen hands out a join token")
        .values()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(!tokens.is_empty());
    // Refused calls log their refusal, not the key they were given.
    let wrong = Client::new(&sys.api_url, &format!("{}x", sys.api_key));
    assert_eq!(wrong.get("/api/v1/mpc/accounts").await.unwrap().status, 401);
    let api_key = sys.api_key.clone();
    sys.shutdown().await;

    let logs = String::from_utf8_lossy(&sink.0.lock().unwrap()).to_ascii_lowercase();
    assert!(
        logs.len() > 1_000,
        "the run logged something: {} bytes",
        logs.len()
    );
    let mut secrets: Vec<(String, String)> = vec![
        ("API key".into(), api_key.to_ascii_lowercase()),
        (
            "API key (hex part)".into(),
            api_key.trim_start_matches("mpc_").to_ascii_lowercase(),
        ),
    ];
    for t in tokens {
        secrets.push(("join token".into(), t.to_ascii_lowercase()));
    }
    let coordinator_key = std::fs::read_to_string(dir.0.join("coordinator.key")).unwrap();
    for w in windows(&coordinator_key) {
        secrets.push(("coordinator key".into(), w));
    }
    for k in 1..=3 {
        let mk = std::fs::read_to_string(dir.0.join(format!("party-{k}/master.key"))).unwrap();
        for w in windows(&mk) {
            secrets.push((format!("party {k} master key"), w));
        }
    }
    let primes: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(test_data().join("primes.json")).unwrap())
            .unwrap();
    for set in primes["parties"].as_array().unwrap() {
        for w in windows(set.as_str().unwrap()) {
            secrets.push(("test prime set".into(), w));
        }
    }
    assert!(secrets.len() > 20);
    for (what, s) in &secrets {
        assert!(!logs.contains(s.as_str()), "the logs hold a {what}");
    }
}
