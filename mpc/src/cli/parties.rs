//! `mpc parties enrol|list|revoke`: which identity key each server party
//! may register with (the admin API, operator keys: admin scope, default
//! tenant). A party's keys come from `mpc party --print-identity`.

use mpc_api::admin::PartyEnrol;

use super::client::Api;
use crate::client::Client;

/// `mpc parties`.
#[derive(clap::Args, Debug)]
pub struct PartiesArgs {
    #[command(flatten)]
    pub api: Api,
    /// What to do.
    #[command(subcommand)]
    pub command: PartiesCommand,
}

/// The `mpc parties` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum PartiesCommand {
    /// Enrol a server party's identity key (replaces an earlier enrolment
    /// and lifts a revocation).
    Enrol {
        /// Party id.
        party_id: String,
        /// Its Ed25519 identity key (64 hex digits).
        #[arg(long)]
        ed25519: String,
        /// Its X25519 key (64 hex digits): when given, registrations must
        /// carry exactly this one.
        #[arg(long)]
        x25519: Option<String>,
    },
    /// List enrolments (in force and revoked) and whether each party has
    /// registered.
    List,
    /// Revoke a party's enrolment: its registrations and new sessions
    /// naming it are refused.
    Revoke {
        /// Party id.
        party_id: String,
    },
}

/// Runs `mpc parties ...`.
pub async fn run(args: PartiesArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.api.url, &args.api.api_key);
    let answer = match args.command {
        PartiesCommand::Enrol {
            party_id,
            ed25519,
            x25519,
        } => serde_json::to_value(
            client
                .enrol_party(&party_id, &PartyEnrol { ed25519, x25519 })
                .await?,
        )?,
        PartiesCommand::List => serde_json::to_value(client.list_enrolments().await?)?,
        PartiesCommand::Revoke { party_id } => {
            serde_json::to_value(client.revoke_enrolment(&party_id).await?)?
        }
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::client::path_segment;

    fn parse(args: &[&str]) -> Option<PartiesCommand> {
        match Cli::try_parse_from(std::iter::once("mpc").chain(args.iter().copied())) {
            Ok(Cli {
                command: Command::Parties(p),
            }) => Some(p.command),
            _ => None,
        }
    }

    #[test]
    fn the_parties_subcommands_parse() {
        let enrol = parse(&[
            "parties",
            "--api-key",
            "k",
            "enrol",
            "server-party-1",
            "--ed25519",
            "aa",
            "--x25519",
            "bb",
        ]);
        assert!(
            matches!(&enrol, Some(PartiesCommand::Enrol { party_id, ed25519, x25519: Some(x) })
                if party_id == "server-party-1" && ed25519 == "aa" && x == "bb"),
            "{enrol:?}"
        );
        // The Ed25519 key is required; the X25519 key is not.
        assert!(parse(&["parties", "--api-key", "k", "enrol", "p"]).is_none());
        assert!(matches!(
            parse(&["parties", "--api-key", "k", "enrol", "p", "--ed25519", "aa"]),
            Some(PartiesCommand::Enrol { x25519: None, .. })
        ));
        assert!(matches!(
            parse(&["parties", "--api-key", "k", "list"]),
            Some(PartiesCommand::List)
        ));
        assert!(matches!(
            parse(&["parties", "--api-key", "k", "revoke", "p"]),
            Some(PartiesCommand::Revoke { party_id }) if party_id == "p"
        ));
    }

    #[test]
    fn a_party_id_is_one_path_segment() {
        assert_eq!(path_segment("server-party_1.x~"), "server-party_1.x~");
        assert_eq!(path_segment("a/b c?#%"), "a%2Fb%20c%3F%23%25");
    }
}
