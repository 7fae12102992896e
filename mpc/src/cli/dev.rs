//! `mpc dev`: the roles' settings ([`CoordinatorSettings`],
//! [`PartySettings`]) composed, with only addresses, the data directory and
//! the demo its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::coordinator::CoordinatorSettings;
use super::party::PartySettings;
use crate::dev::{DevOptions, DevSystem};

/// `mpc dev`.
#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Data directory.
    #[arg(long, default_value = "mpc-data")]
    pub data_dir: PathBuf,
    /// REST API address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub api: SocketAddr,
    /// Router address (its public listener: WebSocket, health, metrics).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub router: SocketAddr,
    /// The router's internal API address, which only the coordinator calls
    /// (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub router_internal: SocketAddr,
    /// Number of server parties.
    #[arg(long, default_value_t = 3)]
    pub parties: usize,
    /// INSECURE test data (test builds only); with --insecure-test-aux its
    /// aux info too (keygen is a DKG only).
    #[command(flatten)]
    pub insecure_test_data: super::insecure::TestData,
    /// Serve the web demo at /demo/ from this repository root (holding
    /// web-demo/ and party-wasm/; the current directory when no REPO_DIR is
    /// given). Off unless given; only on a loopback --api address unless
    /// --demo-public.
    #[arg(long, value_name = "REPO_DIR", num_args = 0..=1, default_missing_value = ".")]
    pub demo: Option<PathBuf>,
    /// Allow --demo on a non-loopback --api address.
    #[arg(long, requires = "demo")]
    pub demo_public: bool,
    /// The demo vault's address: the browser party's store, keys and
    /// workers on an origin of their own, framed by the demo page (port 0:
    /// any free port).
    #[arg(long, default_value = "127.0.0.1:8088", requires = "demo")]
    pub demo_vault: SocketAddr,
    /// The coordinator's settings (as `mpc coordinator`).
    #[command(flatten)]
    pub coordinator: CoordinatorSettings,
    /// The server parties' settings (as `mpc party`).
    #[command(flatten)]
    pub party: PartySettings,
    /// INSECURE: allow --api, --router or --router-internal on a
    /// non-loopback address (`mpc dev` serves plaintext only; run the roles
    /// with --tls-cert for TLS).
    #[arg(long)]
    pub insecure_plaintext: bool,
}

impl DevArgs {
    /// The dev system's options.
    pub fn options(&self) -> anyhow::Result<DevOptions> {
        for (what, addr) in [
            ("--api", self.api),
            ("--router", self.router),
            ("--router-internal", self.router_internal),
        ] {
            anyhow::ensure!(
                addr.ip().is_loopback() || self.insecure_plaintext,
                "{what} {addr} is not loopback: `mpc dev` serves plaintext only; pass \
                 --insecure-plaintext to allow it (or run the roles with --tls-cert)"
            );
        }
        anyhow::ensure!(
            !self.coordinator.insecure_test_aux.on() || self.insecure_test_data.dir().is_some(),
            "--insecure-test-aux reuses the aux info of --insecure-test-data DIR: give both"
        );
        let c = &self.coordinator;
        let mut o = DevOptions::new(&self.data_dir);
        o.api_addr = self.api;
        o.router_addr = self.router;
        o.router_internal_addr = self.router_internal;
        o.parties = self.parties;
        o.insecure_test_primes = self.insecure_test_data.dir();
        o.insecure_test_aux = self
            .insecure_test_data
            .dir()
            .filter(|_| c.insecure_test_aux.on());
        o.keygen_aux_timeout = Duration::from_secs(c.keygen_aux_timeout_secs);
        o.keygen_timeout = Duration::from_secs(c.keygen_timeout_secs);
        o.sign_timeout = Duration::from_secs(c.sign_timeout_secs);
        o.allowlist = c.allowlist()?;
        o.presign_pool = c.presign_pool;
        o.presign_concurrency = c.presign_concurrency;
        o.limits = c.limits();
        o.prime_pool = self.party.prime_pool;
        o.session_limits = self.party.session_limits();
        o.demo_root = match &self.demo {
            Some(dir) => {
                anyhow::ensure!(
                    crate::demo::available(dir),
                    "--demo {}: no web-demo/static/index.html there",
                    dir.display()
                );
                Some(dir.clone())
            }
            None => None,
        };
        anyhow::ensure!(
            o.demo_root.is_none()
                || (self.api.ip().is_loopback() && self.demo_vault.ip().is_loopback())
                || self.demo_public,
            "--demo serves on loopback --api and --demo-vault addresses only, unless --demo-public"
        );
        anyhow::ensure!(
            self.demo_vault.ip().is_loopback() || self.insecure_plaintext,
            "--demo-vault {} is not loopback: `mpc dev` serves plaintext only; pass \
             --insecure-plaintext to allow it",
            self.demo_vault
        );
        o.vault_addr = self.demo_vault;
        Ok(o)
    }
}

/// Runs the dev system until Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let options = args.options()?;
    let has_demo = options.demo_root.is_some();
    let sys = DevSystem::start(options).await?;
    println!("mpc dev is running");
    println!("  API:     {}", sys.api_url);
    println!("  router:  {}", sys.router_url);
    println!("  router internal API: {}", sys.router_internal_url);
    println!("  coordinator key: {}", sys.coordinator_public_key);
    if has_demo {
        println!("  demo:    {}/demo/", sys.api_url);
        if let Some(vault) = &sys.vault_url {
            println!(
                "  demo vault: {vault}/   (the browser party's own origin, framed by the demo)"
            );
        }
    }
    if sys.api_key_is_new {
        println!(
            "  API key: {}   (shown once; also kept in the data directory's api-key file)",
            sys.api_key
        );
    } else {
        println!("  API key: in the data directory's api-key file");
    }
    println!(
        "  parties: {}",
        (1..=args.parties)
            .map(DevSystem::party_id)
            .collect::<Vec<_>>()
            .join(", ")
    );
    tokio::signal::ctrl_c().await?;
    eprintln!("shutting down");
    sys.shutdown().await;
    Ok(())
}
