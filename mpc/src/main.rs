//! `mpc`: run the system (`mpc dev`, or one role per subcommand) or call its
//! REST API. The command line is [`mpc::cli`].

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mpc_tls::install_default_provider();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    mpc::cli::Cli::parse().command.run().await
}
