//! Router instances sharing state through Redis over TLS (`rediss://`): a
//! `redis-server` of the test's own, on a TLS port with a certificate of a
//! CA made by the test (rcgen). Frames cross from one instance to the other
//! through it; a router that trusts another CA never gets a connection.
//! Needs `redis-server` built with TLS (Debian's is): skipped with a printed
//! reason outside CI when it is missing, a failure in CI.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{TestBackend, TestRouter, INTERNAL_TOKEN, WAIT};
use party_core::envelope::Stage;
use router::RouterConfig;

/// A CA (its PEM) and a certificate it issued for 127.0.0.1, as files.
fn pki(
    dir: &Path,
    name: &str,
) -> (
    String,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("redis test CA {name}"));
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
    let ca_pem = ca.as_ref().pem();
    let (ca_file, cert, key) = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&ca_file, &ca_pem).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    (ca_pem, ca_file, cert, key)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether this machine has a `redis-server`.
fn redis_server_present() -> bool {
    std::process::Command::new("redis-server")
        .arg("--help")
        .output()
        .is_ok()
}

fn skip(reason: &str) -> bool {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and {reason}"
    );
    eprintln!("skipped: {reason}");
    true
}

#[tokio::test]
async fn routers_share_sessions_through_redis_over_tls() {
    if !redis_server_present() && skip("no redis-server") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mpc-redis-tls-{}", common::random_uuid()));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca_pem, ca_file, cert, key) = pki(&dir, "redis");
    let port = free_port();
    let mut server = tokio::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--tls-port")
        .arg(port.to_string())
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .arg("--tls-ca-cert-file")
        .arg(&ca_file)
        .args(["--tls-auth-clients", "no", "--loglevel", "verbose", "--dir"])
        .arg(&dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Wait for the TLS port (or the server's exit: no TLS in this build).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        if let Some(status) = server.try_wait().unwrap() {
            if skip(&format!(
                "redis-server exited ({status}): built without TLS?"
            )) {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis-server never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let url = format!("rediss://127.0.0.1:{port}");
    let config = |ca: &str| {
        let mut c = RouterConfig::new(INTERNAL_TOKEN);
        c.redis_url = Some(url.clone());
        c.redis_ca_pem = Some(ca.as_bytes().to_vec());
        c
    };
    // Both wait until their Redis connection is up (`start_with`).
    let a = TestRouter::start_with(&TestBackend::Memory, config(&ca_pem)).await;
    let b = TestRouter::start_with(&TestBackend::Memory, config(&ca_pem)).await;

    // A frame from a party on A reaches a party on B, through Redis.
    let s = a.session(2, &[]).await;
    let mut c0 = s.join(&a, 0).await;
    let mut c1 = s.join(&b, 1).await;
    let (mut ch0, mut ch1) = (s.channel(0), s.channel(1));
    common::exchange_keys(&mut [&mut ch0, &mut ch1]);
    let frame = ch0.seal_broadcast(Stage::Sign, b"over rediss").unwrap();
    c0.send_frame(frame).await;
    assert_eq!(
        ch1.open(&c1.next_frame().await).unwrap().payload,
        b"over rediss"
    );
    let ready = b.http.get(b.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["state"], "redis", "{body}");

    // A router that trusts another CA refuses the server's certificate: it
    // stays unready while the server is up.
    let (other_ca, ..) = pki(&dir, "other");
    let mut stranger = config(&other_ca);
    stranger.redis_url = Some(url.clone());
    let router = router::Router::new(stranger).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(router.clone().serve(common::listeners().await, async {
        let _ = rx.await;
    }));
    // The server sees the router abort the handshake (its certificate is of
    // an unknown CA), and the router stays unready.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
        if log.contains("unknown ca") || log.contains("bad certificate") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refused handshake in the server's log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !router.is_ready().await,
        "connected with an untrusted certificate"
    );
    // (Its Redis connection attempt may still be backing off: not waited for.)
    let _ = tx.send(());
    serving.abort();
    server.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
