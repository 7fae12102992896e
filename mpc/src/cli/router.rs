//! `mpc router`: the router's configuration, declared once.

use std::net::SocketAddr;

use router::config::DEFAULT_MAX_CONNECTIONS;
use router::{Listeners, RouterConfig};

use super::shutdown_signal;

/// The default of `--internal-listen`.
pub const DEFAULT_INTERNAL_LISTEN: &str = "127.0.0.1:8091";

/// `mpc router`.
#[derive(clap::Args, Debug)]
pub struct RouterArgs {
    /// Public listen address, for parties and browsers: `/ws`, `/health`,
    /// `/ready`, `/metrics`.
    #[arg(long, env = "MPC_LISTEN", default_value = "0.0.0.0:8081")]
    pub listen: SocketAddr,
    /// Listen address of the internal API, which only coordinators call:
    /// keep it on loopback or a private network, never published.
    #[arg(long, env = "MPC_ROUTER_INTERNAL_LISTEN", default_value = DEFAULT_INTERNAL_LISTEN)]
    pub internal_listen: SocketAddr,
    /// The internal API's credential. Only coordinators hold it (parties
    /// hold no shared secret).
    #[arg(long, env = "MPC_ROUTER_INTERNAL_TOKEN", hide_env_values = true)]
    pub internal_token: String,
    /// Most connections open at once on the public listener; past it a
    /// connection is answered 503 and closed. Keep the open-file limit
    /// (`ulimit -n`) above it.
    #[arg(long, env = "MPC_ROUTER_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Redis URL: share session state with every router instance using
    /// the same Redis. Without it, state stays in this process.
    #[arg(long, env = "MPC_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Milliseconds a joined party whose session connection dropped (no
    /// normal close) has to come back before the router reports it to the
    /// coordinators, which then fail its session (`party_disconnected`).
    #[arg(long, env = "MPC_ROUTER_DISCONNECT_GRACE_MS", default_value_t = DEFAULT_GRACE_MS)]
    pub disconnect_grace_ms: u64,
    /// TLS: both listeners' certificate, Redis's CA.
    #[command(flatten)]
    pub tls: super::tls::TlsArgs,
}

/// The default of `--disconnect-grace-ms`.
const DEFAULT_GRACE_MS: u64 = 3_000;

impl RouterArgs {
    /// The router's configuration.
    pub fn into_config(self) -> anyhow::Result<RouterConfig> {
        anyhow::ensure!(
            !self.internal_token.trim().is_empty(),
            "--internal-token (MPC_ROUTER_INTERNAL_TOKEN) must not be empty"
        );
        anyhow::ensure!(
            self.max_connections > 0,
            "--max-connections must be above 0"
        );
        let mut config = RouterConfig::new(self.internal_token);
        config.max_connections = self.max_connections;
        config.redis_url = self.redis_url;
        config.disconnect_grace = std::time::Duration::from_millis(self.disconnect_grace_ms);
        config.tls = self.tls.server_config()?;
        config.redis_ca_pem = self.tls.ca_pem()?;
        Ok(config)
    }

    /// Refuses plaintext off loopback (unless --insecure-plaintext): both
    /// listeners and the Redis URL.
    pub fn check_transport(&self) -> anyhow::Result<()> {
        self.tls.check_listener("--listen", self.listen)?;
        self.tls
            .check_listener("--internal-listen", self.internal_listen)?;
        if let Some(url) = &self.redis_url {
            self.tls.check_urls("--redis-url", [url.as_str()])?;
        }
        Ok(())
    }
}

/// Runs the router until Ctrl-C.
pub async fn run(args: RouterArgs) -> anyhow::Result<()> {
    args.check_transport()?;
    let (listen, internal_listen) = (args.listen, args.internal_listen);
    let tls = args.tls.tls_cert.is_some();
    let router = router::Router::new(args.into_config()?)?;
    let listeners = Listeners {
        public: tokio::net::TcpListener::bind(listen).await?,
        internal: tokio::net::TcpListener::bind(internal_listen).await?,
    };
    tracing::info!(
        public = %listeners.public.local_addr()?,
        internal = %listeners.internal.local_addr()?,
        tls,
        "router listening"
    );
    router.serve(listeners, shutdown_signal()).await?;
    Ok(())
}
