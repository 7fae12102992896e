//! `mpc router`: the router's configuration, declared once.

use std::net::SocketAddr;

use router::RouterConfig;

use super::shutdown_signal;

/// `mpc router`.
#[derive(clap::Args, Debug)]
pub struct RouterArgs {
    /// Listen address.
    #[arg(long, env = "MPC_LISTEN", default_value = "0.0.0.0:8081")]
    pub listen: SocketAddr,
    /// Shared secret of the internal APIs.
    #[arg(long, env = "MPC_INTERNAL_TOKEN", hide_env_values = true)]
    pub internal_token: String,
    /// Redis URL: share session state with every router instance using
    /// the same Redis. Without it, state stays in this process.
    #[arg(long, env = "MPC_REDIS_URL")]
    pub redis_url: Option<String>,
}

impl RouterArgs {
    /// The router's configuration.
    pub fn into_config(self) -> RouterConfig {
        let mut config = RouterConfig::new(self.internal_token);
        config.redis_url = self.redis_url;
        config
    }
}

/// Runs the router until Ctrl-C.
pub async fn run(args: RouterArgs) -> anyhow::Result<()> {
    let listen = args.listen;
    let router = router::Router::new(args.into_config())?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "router listening");
    router.serve(listener, shutdown_signal()).await?;
    Ok(())
}
