//! `mpc coordinator`: the coordinator's configuration, declared once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use coordinator::config::{
    Limits, DEFAULT_KEYGEN_AUX_TIMEOUT, DEFAULT_KEYGEN_TIMEOUT, DEFAULT_MAX_OPEN_SESSIONS,
    DEFAULT_PRESIGN_CONCURRENCY, DEFAULT_RATE_LIMIT_REQUESTS, DEFAULT_RATE_LIMIT_WINDOW,
    DEFAULT_SIGN_TIMEOUT,
};
use coordinator::{Coordinator, CoordinatorConfig};
use party_core::identity::CoordinatorKey;

use super::{comma_list, secret_hex, shutdown_signal};

/// The default of `--presign-pool` (`mpc coordinator` and `mpc dev`).
pub const DEFAULT_PRESIGN_POOL: usize = 2;

/// The coordinator's settings that `mpc dev` runs with too (the defaults of
/// both commands).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorSettings {
    /// Comma-separated CIDRs allowed to call the REST API (empty: all).
    #[arg(long, env = "MPC_ALLOWLIST", default_value = "")]
    pub allowlist: String,
    /// Deadline of a keygen that generates aux info, seconds.
    #[arg(long, env = "MPC_KEYGEN_AUX_TIMEOUT_SECS", default_value_t = DEFAULT_KEYGEN_AUX_TIMEOUT.as_secs())]
    pub keygen_aux_timeout_secs: u64,
    /// Deadline of a keygen that reuses aux info, seconds.
    #[arg(long, env = "MPC_KEYGEN_TIMEOUT_SECS", default_value_t = DEFAULT_KEYGEN_TIMEOUT.as_secs())]
    pub keygen_timeout_secs: u64,
    /// Deadline of a signing session, seconds.
    #[arg(long, env = "MPC_SIGN_TIMEOUT_SECS", default_value_t = DEFAULT_SIGN_TIMEOUT.as_secs())]
    pub sign_timeout_secs: u64,
    /// Presignatures kept ready per signer set of each server-only
    /// account (0: off). (`CoordinatorConfig::new` and `DevOptions::new`,
    /// the libraries' constructors for embedding and tests, start with none.)
    #[arg(long, env = "MPC_PRESIGN_POOL", default_value_t = DEFAULT_PRESIGN_POOL)]
    pub presign_pool: usize,
    /// Presign sessions running at once, over all coordinator instances.
    #[arg(long, env = "MPC_PRESIGN_CONCURRENCY", default_value_t = DEFAULT_PRESIGN_CONCURRENCY)]
    pub presign_concurrency: usize,
    /// Requests one API key may make per rate window, over all coordinator
    /// instances (429 `rate_limited` past it).
    #[arg(long, env = "MPC_RATE_LIMIT", default_value_t = DEFAULT_RATE_LIMIT_REQUESTS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_limit: u64,
    /// The rate window, seconds.
    #[arg(long, env = "MPC_RATE_WINDOW_SECS", default_value_t = DEFAULT_RATE_LIMIT_WINDOW.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_window_secs: u64,
    /// Open sessions one API key may have (429 `too_many_sessions` past it).
    #[arg(long, env = "MPC_MAX_OPEN_SESSIONS", default_value_t = DEFAULT_MAX_OPEN_SESSIONS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_open_sessions: u64,
    /// INSECURE (test builds only): reuse the PUBLIC test aux info.
    #[command(flatten)]
    pub insecure_test_aux: super::insecure::TestAux,
}

impl CoordinatorSettings {
    /// Sets these settings on `config`.
    pub fn apply(&self, config: &mut CoordinatorConfig) -> anyhow::Result<()> {
        config.keygen_aux_timeout = Duration::from_secs(self.keygen_aux_timeout_secs);
        config.keygen_timeout = Duration::from_secs(self.keygen_timeout_secs);
        config.sign_timeout = Duration::from_secs(self.sign_timeout_secs);
        config.insecure_test_aux = self.insecure_test_aux.on();
        config.presign_pool = self.presign_pool;
        config.presign_concurrency = self.presign_concurrency;
        config.allowlist = self.allowlist()?;
        config.limits = self.limits();
        Ok(())
    }

    /// The per-API-key limits.
    pub fn limits(&self) -> Limits {
        Limits {
            requests: self.rate_limit,
            window: Duration::from_secs(self.rate_window_secs),
            max_open_sessions: self.max_open_sessions,
        }
    }

    /// The parsed allowlist.
    pub fn allowlist(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        comma_list(&self.allowlist)
            .iter()
            .map(|s| s.parse().with_context(|| format!("allowlist entry {s}")))
            .collect()
    }
}

/// `mpc coordinator`.
#[derive(clap::Args, Debug)]
pub struct CoordinatorArgs {
    /// Listen address.
    #[arg(long, env = "MPC_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// sqlx database URL.
    #[arg(
        long,
        env = "MPC_DATABASE_URL",
        default_value = "sqlite://coordinator.db"
    )]
    pub database_url: String,
    /// File holding the descriptor-signing key (64 hex digits, see `mpc gen-key`).
    #[arg(
        long,
        env = "MPC_COORDINATOR_KEY_FILE",
        required_unless_present = "signing_key"
    )]
    pub signing_key_file: Option<PathBuf>,
    /// The descriptor-signing key itself (64 hex digits), e.g. from a
    /// secret store through the environment.
    #[arg(
        long,
        env = "MPC_COORDINATOR_KEY",
        hide_env_values = true,
        conflicts_with = "signing_key_file"
    )]
    pub signing_key: Option<String>,
    /// An API key to accept (stored hashed).
    #[arg(long, env = "MPC_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Base URLs of the routers' internal listeners (`mpc router
    /// --internal-listen`), comma-separated (any instance serves any call).
    #[arg(
        long,
        alias = "router-url",
        env = "MPC_ROUTER_INTERNAL_URL",
        default_value = "http://127.0.0.1:8091"
    )]
    pub router_internal_url: String,
    /// The routers' internal API credential (their
    /// `MPC_ROUTER_INTERNAL_TOKEN`); only coordinators hold it.
    #[arg(long, env = "MPC_ROUTER_INTERNAL_TOKEN", hide_env_values = true)]
    pub router_internal_token: String,
    /// Settings shared with `mpc dev`.
    #[command(flatten)]
    pub settings: CoordinatorSettings,
    /// TLS: the API's certificate, the routers' CA.
    #[command(flatten)]
    pub tls: super::tls::TlsArgs,
}

impl CoordinatorArgs {
    /// The coordinator's configuration.
    pub fn into_config(self) -> anyhow::Result<CoordinatorConfig> {
        let key = CoordinatorKey::from_secret_bytes(&secret_hex(
            self.signing_key,
            self.signing_key_file,
        )?)
        .map_err(|e| anyhow::anyhow!("signing key: {e}"))?;
        anyhow::ensure!(
            !self.router_internal_token.trim().is_empty(),
            "--router-internal-token (MPC_ROUTER_INTERNAL_TOKEN) must not be empty"
        );
        let routers = comma_list(&self.router_internal_url);
        let first = routers.first().cloned().unwrap_or_default();
        let mut config = CoordinatorConfig::new(self.database_url, key, &first);
        config.router_internal_urls = routers;
        config.router_internal_token = self.router_internal_token;
        config.bootstrap_api_keys = self.api_key.into_iter().collect();
        config.tls = self.tls.server_config()?;
        config.client_tls = Some(self.tls.client_config()?);
        self.settings.apply(&mut config)?;
        Ok(config)
    }

    /// Refuses plaintext off loopback (unless --insecure-plaintext): the
    /// listener, the routers' URLs and the database URL.
    pub fn check_transport(&self) -> anyhow::Result<()> {
        self.tls.check_listener("--listen", self.listen)?;
        self.tls.check_urls(
            "--router-internal-url",
            comma_list(&self.router_internal_url)
                .iter()
                .map(String::as_str),
        )?;
        self.tls
            .check_urls("--database-url", [self.database_url.as_str()])?;
        Ok(())
    }
}

/// Runs the coordinator until Ctrl-C.
pub async fn run(args: CoordinatorArgs) -> anyhow::Result<()> {
    args.check_transport()?;
    let listen = args.listen;
    let tls = args.tls.tls_cert.is_some();
    let config = args.into_config()?;
    tracing::info!(public_key = %hex::encode(config.signing_key.public()), "coordinator descriptor-signing key");
    let c = Coordinator::new(config)?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, tls, "coordinator listening");
    c.serve(listener, shutdown_signal()).await?;
    Ok(())
}
