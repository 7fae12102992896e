//! `mpc keys create|list|revoke`: the admin API (`admin` scope) through the
//! typed client.

use mpc_api::admin::{ApiKeyCreate, Scope};

use super::client::Api;

/// `mpc keys`.
#[derive(clap::Args, Debug)]
pub struct KeysArgs {
    #[command(flatten)]
    pub api: Api,
    /// What to do.
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// The `mpc keys` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a key; prints it once (it is stored hashed).
    Create {
        /// A name for people.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: read, keygen, sign, admin.
        #[arg(long, default_value = "read")]
        scopes: String,
        /// The key's tenant (default: the caller's; another one needs an
        /// admin key of the default tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List keys (never the keys themselves).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key by id (effective on every coordinator within seconds).
    Revoke {
        /// Key id.
        id: String,
    },
}

/// The scopes of `--scopes`.
pub fn parse_scopes(list: &str) -> anyhow::Result<Vec<Scope>> {
    super::comma_list(list)
        .iter()
        .map(|s| {
            Scope::parse(s)
                .ok_or_else(|| anyhow::anyhow!("unknown scope {s} (read, keygen, sign, admin)"))
        })
        .collect()
}

/// Runs `mpc keys ...`.
pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    let client = args.api.client()?;
    match args.command {
        KeysCommand::Create {
            name,
            scopes,
            tenant,
        } => {
            let created = client
                .create_key(&ApiKeyCreate {
                    name,
                    scopes: parse_scopes(&scopes)?,
                    tenant,
                })
                .await?;
            eprintln!("The key is shown this once; store it now.");
            println!("{}", serde_json::to_string_pretty(&created)?);
        }
        KeysCommand::List { tenant } => {
            let list = client.list_keys(tenant.as_deref()).await?;
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        KeysCommand::Revoke { id } => {
            let revoked = client.revoke_key(&id).await?;
            println!("{}", serde_json::to_string_pretty(&revoked)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_unknown_ones_are_refused() {
        assert_eq!(
            parse_scopes("read, sign").ok(),
            Some(vec![Scope::Read, Scope::Sign])
        );
        assert!(parse_scopes("read,root").is_err());
    }
}
