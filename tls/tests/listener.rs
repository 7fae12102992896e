//! [`mpc_tls::TlsListener`] under axum with a CA made by the test: a client
//! that trusts the CA is served; one that trusts another CA, and a
//! plaintext client, are refused; a client that stalls its handshake holds
//! up no other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::routing::get;

struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn pki(dir: &Path, name: &str) -> Pki {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("test CA {name}"));
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let write = |file: &str, text: String| {
        let path = dir.join(format!("{name}-{file}"));
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", ca.as_ref().pem()),
        cert: write("cert.pem", cert.pem()),
        key: write("key.pem", key.serialize_pem()),
    }
}

fn client(ca: &Path) -> reqwest::Client {
    let tls = mpc_tls::client_config(Some(ca)).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(Arc::unwrap_or_clone(tls))
        .build()
        .unwrap()
}

#[tokio::test]
async fn only_clients_of_the_ca_are_served() {
    let dir = std::env::temp_dir().join(format!("mpc-tls-listener-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ours = pki(&dir, "ours");
    let theirs = pki(&dir, "theirs");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let config = mpc_tls::server_config(&ours.cert, &ours.key).unwrap();
    let listener = mpc_tls::TlsListener::new(tcp, config).unwrap();
    let app = axum::Router::new().route("/hello", get(|| async { "hello over TLS" }));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("https://127.0.0.1:{}/hello", addr.port());

    // A client that stalls in the handshake (connected, silent) first.
    let _stalled = tokio::net::TcpStream::connect(addr).await.unwrap();

    let answer = client(&ours.ca).get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "hello over TLS");

    let err = client(&theirs.ca)
        .get(&url)
        .send()
        .await
        .expect_err("a certificate of another CA was accepted");
    assert!(
        format!("{err:?}").contains("InvalidCertificate(UnknownIssuer)"),
        "{err:?}"
    );

    let plain = url.replacen("https://", "http://", 1);
    let answer = reqwest::Client::new().get(&plain).send().await;
    assert!(
        answer.as_ref().map_or(true, |a| a.status() != 200),
        "a plaintext request was answered: {answer:?}"
    );

    // The server still serves after the failed handshakes.
    let answer = client(&ours.ca).get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
