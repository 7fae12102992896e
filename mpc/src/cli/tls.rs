//! `--tls-cert`, `--tls-key`, `--tls-ca`, `--insecure-plaintext`: the TLS
//! settings every role takes, and the start-up check that refuses plaintext
//! off loopback ([`mpc_tls::plaintext`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use mpc_tls::plaintext::{self, PlaintextError};
use mpc_tls::{ClientConfig, ServerConfig};

/// A role's TLS settings.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsArgs {
    /// PEM certificate chain (leaf first) this process's listeners serve
    /// TLS with. With --tls-key.
    #[arg(long, env = "MPC_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "MPC_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: the ONLY certificates trusted for the `https://`,
    /// `wss://` and `rediss://` servers this process calls (it replaces
    /// the Mozilla roots, which are used without it). PostgreSQL takes its
    /// CA in the URL (`sslrootcert=`).
    #[arg(long, env = "MPC_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// INSECURE: allow plaintext (`http://`, `ws://`, `redis://`, PostgreSQL
    /// without sslmode=require|verify-ca|verify-full, listeners without a
    /// certificate) to and on non-loopback addresses.
    #[arg(long, env = "MPC_INSECURE_PLAINTEXT")]
    pub insecure_plaintext: bool,
}

impl TlsArgs {
    /// The listeners' TLS configuration, when a certificate was given.
    pub fn server_config(&self) -> anyhow::Result<Option<Arc<ServerConfig>>> {
        Ok(match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(mpc_tls::server_config(cert, key)?),
            _ => None,
        })
    }

    /// What the clients of this process trust.
    pub fn client_config(&self) -> anyhow::Result<Arc<ClientConfig>> {
        Ok(mpc_tls::client_config(self.tls_ca.as_deref())?)
    }

    /// The PEM text of --tls-ca (for Redis), when given.
    pub fn ca_pem(&self) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(match &self.tls_ca {
            Some(ca) => Some(mpc_tls::read_ca_pem(ca)?),
            None => None,
        })
    }

    /// Refuses a listener off loopback without a certificate.
    pub fn check_listener(&self, what: &str, addr: SocketAddr) -> Result<(), PlaintextError> {
        plaintext::check_listener(what, addr, self.tls_cert.is_some(), self.insecure_plaintext)
    }

    /// Refuses plaintext URLs off loopback.
    pub fn check_urls<'a>(
        &self,
        what: &str,
        urls: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), PlaintextError> {
        plaintext::check_urls(what, urls, self.insecure_plaintext)
    }
}
