//! A certificate authority made at test time (rcgen), and a certificate it
//! issued for `localhost` and 127.0.0.1, written as PEM files.

use std::path::{Path, PathBuf};

/// PEM files of a test CA and of a server certificate it issued.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA's certificate (what clients trust: `--tls-ca`).
    pub ca: PathBuf,
    /// The server's certificate (`--tls-cert`).
    pub cert: PathBuf,
    /// The server's private key (`--tls-key`).
    pub key: PathBuf,
}

impl TestPki {
    /// A new CA and server certificate in `dir`, file names prefixed with
    /// `name`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("mpc test CA {name}"));
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
        let write = |file: &str, text: String| {
            let path = dir.join(format!("{name}-{file}"));
            std::fs::write(&path, text).unwrap();
            path
        };
        Self {
            ca: write("ca.pem", ca.as_ref().pem()),
            cert: write("cert.pem", leaf.pem()),
            key: write("key.pem", leaf_key.serialize_pem()),
        }
    }

    /// `--tls-cert C --tls-key K --tls-ca A`.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
            "--tls-ca".into(),
            self.ca.display().to_string(),
        ]
    }

    /// A reqwest client that trusts only this CA.
    pub fn http(&self) -> reqwest::Client {
        let tls = mpc_tls::client_config(Some(&self.ca)).unwrap();
        reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .build()
            .unwrap()
    }
}
