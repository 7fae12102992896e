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
