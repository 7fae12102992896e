//! The `mpc` command line. Each role's configuration is declared once, with
//! its defaults and environment variables, as a clap `Args` struct:
//! [`coordinator::CoordinatorArgs`], [`router::RouterArgs`] and
//! [`party::PartyArgs`] (`mpc coordinator|router|party`), which convert into
//! the libraries' `CoordinatorConfig`, `RouterConfig` and `PartyConfig`.
//! `mpc dev` ([`dev::DevArgs`]) composes the same settings structs
//! ([`coordinator::CoordinatorSettings`], [`party::PartySettings`]) and sets
//! only what it must itself: addresses, URLs, keys and databases.
//!
//! The PUBLIC test data (test primes and aux info, `party-core/test-data`) has
//! one switch everywhere: `--insecure-test-data DIR`; `--insecure-test-aux`
//! (coordinator, dev) is the flag that makes keygens reuse its aux info.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

pub mod approve;
pub mod approver;
pub mod client;
pub mod coordinator;
pub mod dev;
pub mod insecure;
pub mod keys;
pub mod parties;
pub mod party;
pub mod router;
pub mod tls;

/// `mpc`.
#[derive(Parser, Debug)]
#[command(name = "mpc", about = "Threshold ECDSA custody service", version)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Router, coordinator and server parties in one process on SQLite.
    Dev(dev::DevArgs),
    /// Run the router alone.
    Router(router::RouterArgs),
    /// Run the coordinator alone.
    Coordinator(coordinator::CoordinatorArgs),
    /// Run one server party alone.
    Party(party::PartyArgs),
    /// Benchmark the real system in-process through REST and the router.
    Bench(client::BenchArgs),
    /// Print a new random 256-bit key as hex (master keys, coordinator key).
    GenKey,
    /// Print the public key of a coordinator key file.
    CoordinatorPublicKey {
        /// Key file.
        file: PathBuf,
    },
    /// Create a wallet (distributed keygen) and wait for it.
    Keygen(client::KeygenArgs),
    /// Sign a message (or a bare hash) with t parties of an account, with
    /// the approvals its policy asks for, and wait for it.
    Sign(client::SignArgs),
    /// Make or show an approver key (account policies).
    #[command(subcommand)]
    Approver(approver::ApproverCommand),
    /// As an approver, sign the statement of a sign request or a policy
    /// change, computed here from the request (not asked of the server).
    Approve(approve::ApproveArgs),
    /// Replace an account's policy, with approvals under the current one.
    ChangePolicy(client::ChangePolicyArgs),
    /// Show a session.
    Session {
        #[command(flatten)]
        api: client::Api,
        /// Session id.
        id: String,
    },
    /// List accounts, or show one.
    Accounts {
        #[command(flatten)]
        api: client::Api,
        /// Account id.
        id: Option<String>,
    },
    /// Create, list and revoke API keys (an admin key).
    Keys(keys::KeysArgs),
    /// Enrol, list and revoke server parties' identity keys (an operator
    /// key: admin scope, default tenant).
    Parties(parties::PartiesArgs),
}

impl Command {
    /// Runs the command until it is done (services: until Ctrl-C).
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Dev(args) => dev::run(args).await,
            Command::Router(args) => router::run(args).await,
            Command::Coordinator(args) => coordinator::run(args).await,
            Command::Party(args) => party::run(args).await,
            Command::Bench(args) => client::bench(args).await,
            Command::GenKey => {
                println!(
                    "{}",
                    party_core::seal::MasterKey::generate().to_hex().as_str()
                );
                Ok(())
            }
            Command::CoordinatorPublicKey { file } => {
                let key =
                    party_core::identity::CoordinatorKey::from_secret_bytes(&read_hex_file(&file)?)
                        .map_err(|e| anyhow::anyhow!("signing key: {e}"))?;
                println!("{}", hex::encode(key.public()));
                Ok(())
            }
            Command::Keygen(args) => client::keygen(args).await,
            Command::Sign(args) => client::sign(args).await,
            Command::Approver(command) => approver::run(command),
            Command::Approve(args) => approve::run(args),
            Command::ChangePolicy(args) => client::change_policy(args).await,
            Command::Session { api, id } => client::session(api, id).await,
            Command::Accounts { api, id } => client::accounts(api, id).await,
            Command::Keys(args) => keys::run(args).await,
            Command::Parties(args) => parties::run(args).await,
        }
    }
}

/// The non-empty, trimmed items of a comma-separated list.
pub fn comma_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A secret given as hex, either inline (environment) or in a file.
pub fn secret_hex(
    inline: Option<String>,
    file: Option<PathBuf>,
) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    match (inline, file) {
        (Some(hex_str), _) => {
            let hex_str = zeroize::Zeroizing::new(hex_str);
            Ok(zeroize::Zeroizing::new(
                hex::decode(hex_str.trim()).map_err(|_| anyhow::anyhow!("key must be hex"))?,
            ))
        }
        (None, Some(path)) => read_hex_file(&path),
        (None, None) => anyhow::bail!("a key or a key file is required"),
    }
}

/// A hex file's bytes (key files).
pub fn read_hex_file(path: &Path) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?,
    );
    Ok(zeroize::Zeroizing::new(
        hex::decode(text.trim()).with_context(|| format!("{} is not hex", path.display()))?,
    ))
}

/// Resolves on Ctrl-C.
pub async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Command {
        match Cli::try_parse_from(std::iter::once("mpc").chain(args.iter().copied())) {
            Ok(cli) => cli.command,
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    #[test]
    fn dev_and_the_roles_share_their_defaults() {
        let Command::Dev(dev) = parse(&["dev"]) else {
            panic!("not dev")
        };
        let Command::Coordinator(c) = parse(&[
            "coordinator",
            "--router-internal-token",
            "r",
            "--signing-key",
            "00",
        ]) else {
            panic!("not coordinator")
        };
        let Command::Party(p) = parse(&[
            "party",
            "--party-id",
            "p",
            "--master-key",
            "00",
            "--coordinator-public-key",
            "00",
        ]) else {
            panic!("not party")
        };
        assert_eq!(dev.coordinator, c.settings);
        assert_eq!(dev.party, p.settings);
        assert!(!p.print_identity, "a party runs unless asked to print");
        assert_eq!(c.settings.presign_pool, 2);
        // Limits are on by default, `mpc dev` included.
        assert_eq!(
            dev.options().map(|o| o.limits).ok(),
            Some(::coordinator::config::Limits::default())
        );
        assert_eq!(
            c.settings.limits(),
            ::coordinator::config::Limits::default()
        );
        assert_eq!(p.settings.prime_pool, 2);
        // The party's session bound is on by default, documented values.
        assert_eq!(
            p.settings.session_limits(),
            server_party::SessionLimits::default()
        );
        assert_eq!(
            dev.options().map(|o| o.session_limits).ok(),
            Some(server_party::SessionLimits::default())
        );
    }

    #[test]
    #[cfg(feature = "insecure-test-data")]
    fn the_test_data_switch_has_one_name_and_the_old_ones_still_parse() {
        let Command::Dev(dev) = parse(&["dev", "--insecure-test-data", "d", "--insecure-test-aux"])
        else {
            panic!("not dev")
        };
        assert_eq!(dev.insecure_test_data.dir(), Some(PathBuf::from("d")));
        assert!(dev.coordinator.insecure_test_aux.on());
        let Command::Dev(dev) = parse(&["dev", "--insecure-test-primes", "d"]) else {
            panic!("not dev")
        };
        assert_eq!(dev.insecure_test_data.dir(), Some(PathBuf::from("d")));
        assert!(!dev.coordinator.insecure_test_aux.on());
        let Command::Bench(b) = parse(&["bench", "--insecure-test-data", "d"]) else {
            panic!("not bench")
        };
        assert_eq!(b.insecure_test_data.dir(), Some(PathBuf::from("d")));
        // The aux info comes from the test data.
        let Command::Dev(dev) = parse(&["dev", "--insecure-test-aux"]) else {
            panic!("not dev")
        };
        assert!(dev.options().is_err());
    }

    #[test]
    fn dev_refuses_a_non_loopback_address_unless_told() {
        let Command::Dev(dev) = parse(&["dev", "--api", "0.0.0.0:8080"]) else {
            panic!("not dev")
        };
        let Err(err) = dev.options() else {
            panic!("a non-loopback --api was accepted")
        };
        let err = err.to_string();
        assert!(
            err.contains("0.0.0.0:8080") && err.contains("--insecure-plaintext"),
            "{err}"
        );
        let Command::Dev(dev) = parse(&["dev", "--router", "[::]:8081", "--insecure-plaintext"])
        else {
            panic!("not dev")
        };
        assert!(dev.options().is_ok());
        // The defaults stay on loopback.
        let Command::Dev(dev) = parse(&["dev"]) else {
            panic!("not dev")
        };
        assert!(dev.options().is_ok());
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn the_roles_check_every_url_and_listener() {
        let Command::Party(p) = parse(&[
            "party",
            "--party-id",
            "p",
            "--master-key",
            "00",
            "--coordinator-public-key",
            "00",
            "--coordinator-url",
            "https://c.example",
            "--router-ws-url",
            "wss://r.example/ws",
            "--metrics-addr",
            "0.0.0.0:9100",
        ]) else {
            panic!("not party")
        };
        let err = p.check_transport().unwrap_err().to_string();
        assert!(err.contains("--metrics-addr 0.0.0.0:9100"), "{err}");
        let Command::Coordinator(c) = parse(&[
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--router-internal-token",
            "r",
            "--signing-key",
            "00",
            "--database-url",
            "postgres://c@db.example/c?sslmode=verify-full",
        ]) else {
            panic!("not coordinator")
        };
        assert!(c.check_transport().is_ok());
        let Command::Router(r) = parse(&[
            "router",
            "--internal-token",
            "t",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--internal-listen",
            "10.0.0.1:8091",
            "--redis-url",
            "rediss://redis.example",
        ]) else {
            panic!("not router")
        };
        assert!(r.check_transport().is_ok());
    }

    fn coordinator_with(router: &str) -> anyhow::Result<coordinator::CoordinatorArgs> {
        let key = hex::encode([7u8; 32]);
        match parse(&[
            "coordinator",
            "--router-internal-token",
            router,
            "--signing-key",
            &key,
        ]) {
            Command::Coordinator(c) => Ok(c),
            other => anyhow::bail!("not coordinator: {other:?}"),
        }
    }

    #[test]
    #[allow(clippy::unwrap_used, clippy::expect_used)]
    fn the_routers_credential_is_the_coordinators_only_secret() {
        assert!(coordinator_with(" ").unwrap().into_config().is_err());
        let config = coordinator_with("coordinators-only")
            .unwrap()
            .into_config()
            .unwrap();
        assert_eq!(config.router_internal_token, "coordinators-only");
        // Parties hold no shared secret: the token they once registered
        // with is no longer an option of either role.
        for role in [
            &[
                "coordinator",
                "--router-internal-token",
                "r",
                "--signing-key",
                "00",
            ][..],
            &[
                "party",
                "--party-id",
                "p",
                "--master-key",
                "00",
                "--coordinator-public-key",
                "00",
            ][..],
        ] {
            let mut args = vec!["mpc"];
            args.extend_from_slice(role);
            args.extend_from_slice(&["--internal-token", "t"]);
            assert!(Cli::try_parse_from(args).is_err(), "{role:?}");
        }
        // By default the coordinator calls a router's internal listener,
        // which listens on loopback.
        assert_eq!(config.router_internal_urls, vec!["http://127.0.0.1:8091"]);
        let Command::Router(r) = parse(&["router", "--internal-token", "coordinators-only"]) else {
            panic!("not router")
        };
        assert!(r.internal_listen.ip().is_loopback());
        assert_ne!(r.internal_listen.port(), r.listen.port());
        assert_eq!(r.into_config().unwrap().internal_token, "coordinators-only");
        let Command::Router(r) = parse(&["router", "--internal-token", ""]) else {
            panic!("not router")
        };
        assert!(r.into_config().is_err());
    }
}
