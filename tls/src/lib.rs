//! TLS for every service and client of the project, with rustls and the
//! `ring` crypto provider (no OpenSSL, no aws-lc).
//!
//! - [`server_config`]: a server's certificate chain and private key from
//!   PEM files (`--tls-cert`, `--tls-key`).
//! - [`client_config`]: what a client trusts. Without a CA bundle, the
//!   Mozilla roots of `webpki-roots`; with one (`--tls-ca`), **only** the
//!   certificates of that bundle (a private CA replaces the public roots, so
//!   a certificate from any public CA is refused).
//! - [`TlsListener`]: wraps an axum listener; handshakes run beside the
//!   accept loop, each with a deadline, so a slow client holds up no one.
//! - [`plaintext`]: the start-up check that refuses a plaintext URL or
//!   listener off loopback unless `--insecure-plaintext` was given.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

mod listener;
pub mod plaintext;

pub use listener::{TlsListener, HANDSHAKE_TIMEOUT};
pub use rustls::{ClientConfig, ServerConfig};

/// A TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{}: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong (never the file's content).
        reason: String,
    },
    /// rustls refused the configuration (e.g. the key does not match the
    /// certificate).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider of every TLS configuration: `ring`.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes `ring` the process-wide rustls provider, for the clients that build
/// their own configuration (sqlx, redis). Idempotent.
pub fn install_default_provider() {
    // Err: a provider is already installed (this one, by an earlier call).
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn pem_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The certificates of a PEM file (a chain, or a CA bundle).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no certificate in this PEM file"));
    }
    Ok(certs)
}

/// A server's configuration: the certificate chain (leaf first) and its
/// private key (PKCS#8, PKCS#1 or SEC1 PEM). Speaks HTTP/1.1 (WebSocket
/// upgrades need it).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    install_default_provider();
    let chain = load_certs(cert)?;
    // The key's bytes are not kept past this configuration, and never shown.
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            pem_error(key, "no private key in this PEM file")
        }
        other => pem_error(key, other),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client's configuration: trusts only the certificates of `ca` (a PEM
/// bundle) when given, the Mozilla roots (`webpki-roots`) otherwise.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    install_default_provider();
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in load_certs(path)? {
                roots.add(cert).map_err(|e| pem_error(path, e))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The PEM text of a CA bundle, checked to hold at least one certificate
/// (for clients that take PEM bytes, such as redis).
pub fn read_ca_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    load_certs(path)?;
    std::fs::read(path).map_err(|e| pem_error(path, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mpc-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_certificate_and_its_key_make_a_server_config() {
        let dir = tempdir("ok");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let c = write(&dir, "c.pem", &cert.cert.pem());
        let k = write(&dir, "k.pem", &cert.signing_key.serialize_pem());
        let config = server_config(&c, &k).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(client_config(Some(&c)).is_ok());
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let dir = tempdir("mismatch");
        let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let c = write(&dir, "c.pem", &a.cert.pem());
        let k = write(&dir, "k.pem", &b.signing_key.serialize_pem());
        assert!(matches!(server_config(&c, &k), Err(TlsError::Rustls(_))));
    }

    #[test]
    fn files_without_pem_items_are_refused_without_their_content() {
        let dir = tempdir("empty");
        let secret = "not-a-pem-but-a-secret";
        let junk = write(&dir, "junk.pem", secret);
        let err = client_config(Some(&junk)).unwrap_err().to_string();
        assert!(err.contains("no certificate"), "{err}");
        assert!(!err.contains(secret), "{err}");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let c = write(&dir, "c.pem", &cert.cert.pem());
        let err = server_config(&c, &junk).unwrap_err().to_string();
        assert!(err.contains("no private key"), "{err}");
        assert!(!err.contains(secret), "{err}");
        let missing = dir.join("missing.pem");
        assert!(matches!(load_certs(&missing), Err(TlsError::Pem { .. })));
    }
}
