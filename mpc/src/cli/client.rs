//! The client subcommands (`mpc keygen|sign|change-policy|session|accounts`)
//! and `mpc bench`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use mpc_api::rest::{
    AccountPolicy, Approval, Digest, KeygenRequest, Participant, PolicyChangeRequest, SignRequest,
};
use party_core::descriptor::MessageDigest;

use super::approve::{check_request, now_secs, read_policy, SignTarget, Signed};
use crate::client::{progress_line, Client};

/// Where the REST API is and the key to call it with.
#[derive(clap::Args, Debug)]
pub struct Api {
    /// REST API base URL.
    #[arg(long, env = "MPC_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API key (printed by `mpc dev` on first start, kept in <data-dir>/api-key).
    #[arg(long, env = "MPC_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// PEM CA bundle an `https://` API must present a certificate of (only
    /// these CAs are trusted; the Mozilla roots without it).
    #[arg(long, env = "MPC_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

impl Api {
    /// The REST client of these settings.
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(match &self.tls_ca {
            Some(ca) => {
                Client::with_tls(&self.url, &self.api_key, mpc_tls::client_config(Some(ca))?)
            }
            None => Client::new(&self.url, &self.api_key),
        })
    }
}

/// `mpc keygen`.
#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    #[command(flatten)]
    pub api: Api,
    /// Threshold t.
    #[arg(long, short = 't', default_value_t = 2)]
    pub threshold: u16,
    /// Comma-separated party ids (n = their number).
    #[arg(long, default_value = "server-party-1,server-party-2,server-party-3")]
    pub parties: String,
    /// The account's policy, JSON: `{"approvers": [{"id": ..., "ed25519":
    /// ...}], "quorum": ..., "digests": [...], "allow_bare_hash": ...,
    /// "max_signatures_per_hour": ...}`. Every party keeps it and signs only
    /// with a quorum of its approvers' approvals.
    #[arg(long, value_name = "POLICY.json")]
    pub policy: Option<PathBuf>,
    /// How long to wait.
    #[arg(long, default_value_t = 1800)]
    pub timeout_secs: u64,
}

/// `mpc sign`.
#[derive(clap::Args, Debug)]
pub struct SignArgs {
    #[command(flatten)]
    pub api: Api,
    #[command(flatten)]
    pub target: SignTarget,
    /// Comma-separated signer party ids.
    #[arg(long, default_value = "server-party-1,server-party-2")]
    pub parties: String,
    #[command(flatten)]
    pub approvals: ApprovalArgs,
    /// How long to wait.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

/// The approvals a request carries, and the request id and expiry they sign.
#[derive(clap::Args, Debug, Default)]
pub struct ApprovalArgs {
    /// An approval file (`mpc approve`); repeat for each approver.
    #[arg(long = "approval", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Request id, unique per account (default: a random one; with
    /// approvals, the one they approved).
    #[arg(long)]
    pub request_id: Option<String>,
    /// Last second (Unix) the approvals may be used (default: in 5 minutes;
    /// with approvals, the one they approved).
    #[arg(long)]
    pub not_after: Option<u64>,
}

/// How long a request without approvals stays valid by default.
pub const DEFAULT_VALIDITY_SECS: u64 = 300;

impl ApprovalArgs {
    /// The request id, expiry and approvals to send. Approvals sign a
    /// request id and an expiry, so with approvals both must be given.
    pub fn resolve(&self) -> anyhow::Result<(String, u64, Vec<Approval>)> {
        let approvals = self
            .files
            .iter()
            .map(|f| read_approval(f))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut seen = std::collections::BTreeSet::new();
        for a in &approvals {
            anyhow::ensure!(
                seen.insert(&a.approver),
                "two approvals by {:?}",
                a.approver
            );
        }
        let (request_id, not_after) = match (&self.request_id, self.not_after) {
            (Some(id), Some(t)) => (id.clone(), t),
            _ if !approvals.is_empty() => anyhow::bail!(
                "approvals sign a request id and an expiry: give the --request-id and \
                 --not-after the approvers approved"
            ),
            (id, t) => (
                id.clone()
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
                t.unwrap_or_else(|| now_secs() + DEFAULT_VALIDITY_SECS),
            ),
        };
        check_request(&request_id, not_after)?;
        Ok((request_id, not_after, approvals))
    }
}

/// Reads an approval file (`{"approver": ..., "signature": ...}`).
pub fn read_approval(path: &Path) -> anyhow::Result<Approval> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let a: Approval = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an approval", path.display()))?;
    hex::decode(&a.signature)
        .with_context(|| format!("{}: the signature is not hex", path.display()))?;
    Ok(a)
}

/// `mpc change-policy`.
#[derive(clap::Args, Debug)]
pub struct ChangePolicyArgs {
    #[command(flatten)]
    pub api: Api,
    /// Account id.
    #[arg(long)]
    pub account: String,
    /// The new policy, JSON (as in `mpc keygen --policy`).
    #[arg(long, value_name = "POLICY.json")]
    pub policy: PathBuf,
    #[command(flatten)]
    pub approvals: ApprovalArgs,
    /// How long to wait.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

/// `mpc bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Sequential signatures to time.
    #[arg(long, default_value_t = 20)]
    pub signs: usize,
    /// Signatures in the throughput run.
    #[arg(long, default_value_t = 20)]
    pub throughput_signs: usize,
    /// Concurrent requests in the throughput run.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Wallets of an existing group to time.
    #[arg(long, default_value_t = 10)]
    pub keygens: usize,
    /// Skip the cold first keygen (primes generated on demand).
    #[arg(long)]
    pub skip_cold: bool,
    /// Skip the policy-account rows (full and pool signing with two
    /// approvals, quorum 2).
    #[arg(long)]
    pub skip_approvals: bool,
    /// Presignatures per signer set during the sustained run.
    #[arg(long, default_value_t = 4)]
    pub pool: usize,
    /// Sign requests in the sustained run (pool refilling); 0 skips it.
    #[arg(long, default_value_t = 40)]
    pub sustained_signs: usize,
    /// Requests per second in the sustained run; 0: `--concurrency` at
    /// a time.
    #[arg(long, default_value_t = 1.0)]
    pub sustained_rate: f64,
    /// Full signatures timed idle and then while a new account's
    /// presignature pool refills (`sign_full_refill_ms_*`); 0 skips them.
    #[arg(long, default_value_t = 20)]
    pub refill_signs: usize,
    /// Presignatures per signer set the new account's pool refills to.
    #[arg(long, default_value_t = 5)]
    pub refill_pool: usize,
    /// Only the refill rows (and the wallet they need).
    #[arg(long)]
    pub refill_only: bool,
    /// INSECURE (test builds only): groups use the PUBLIC test aux info.
    #[command(flatten)]
    pub insecure_test_data: super::insecure::TestData,
}

fn participants(list: &str) -> Vec<Participant> {
    super::comma_list(list)
        .into_iter()
        .map(|p| Participant {
            device_type: Some("server".into()),
            device_id: Some(p.clone()),
            party_id: p,
        })
        .collect()
}

async fn create_and_wait<T: serde::Serialize>(
    api: &Api,
    path: &str,
    body: &T,
    timeout: u64,
) -> anyhow::Result<serde_json::Value> {
    let client = api.client()?;
    let done = client
        .run_session(
            path,
            &serde_json::to_value(body)?,
            Duration::from_secs(timeout),
            |s| eprintln!("{}", progress_line(s)),
        )
        .await?;
    println!("{}", serde_json::to_string_pretty(&done)?);
    anyhow::ensure!(
        done["status"] == "completed",
        "session ended {}",
        done["status"]
    );
    Ok(done)
}

/// Reads a policy file as the API takes it, checked and hashed as every
/// party will.
fn read_account_policy(path: &Path) -> anyhow::Result<(AccountPolicy, [u8; 32])> {
    let hash = read_policy(path)?.hash();
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let policy = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a policy", path.display()))?;
    Ok((policy, hash))
}

/// `mpc keygen`.
pub async fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let participants = participants(&args.parties);
    let policy = match &args.policy {
        Some(path) => {
            let (policy, hash) = read_account_policy(path)?;
            eprintln!("policy hash {} (every party reports it)", hex::encode(hash));
            Some((policy, hash))
        }
        None => None,
    };
    let body = KeygenRequest {
        threshold_n: u16::try_from(participants.len())?,
        threshold_t: args.threshold,
        participants,
        policy: policy.as_ref().map(|(p, _)| p.clone()),
    };
    let done = create_and_wait(&args.api, "/api/v1/mpc/keygen", &body, args.timeout_secs).await?;
    if let Some((_, hash)) = policy {
        // The account must hold exactly the policy asked for.
        let account = done["result"]["account_id"]
            .as_str()
            .context("keygen result without account_id")?;
        let view = args.api.client()?.account(account).await?;
        anyhow::ensure!(
            view.policy_hash.as_deref() == Some(hex::encode(hash).as_str()),
            "the account's policy hash is {:?}, not the policy's {}",
            view.policy_hash,
            hex::encode(hash)
        );
        eprintln!("account {account} holds the policy {}", hex::encode(hash));
    }
    Ok(())
}

/// `mpc sign`.
pub async fn sign(args: SignArgs) -> anyhow::Result<()> {
    let (request_id, not_after, approvals) = args.approvals.resolve()?;
    let (message_hash, message, digest) = match args.target.signed()? {
        Signed::Hash(h) => (Some(hex::encode(h)), None, None),
        Signed::Message { digest, message } => (
            None,
            Some(hex::encode(message)),
            Some(match digest {
                MessageDigest::Keccak256 => Digest::Keccak256,
                MessageDigest::Sha256 => Digest::Sha256,
            }),
        ),
    };
    eprintln!("request id {request_id}, valid until unix {not_after}");
    let body = SignRequest {
        account_id: args.target.account.clone(),
        message_hash,
        message,
        digest,
        require_presignature: false,
        participants: participants(&args.parties),
        request_id: Some(request_id),
        not_after: Some(not_after),
        approvals,
    };
    create_and_wait(&args.api, "/api/v1/mpc/sign", &body, args.timeout_secs)
        .await
        .map(drop)
}

/// `mpc change-policy`.
pub async fn change_policy(args: ChangePolicyArgs) -> anyhow::Result<()> {
    let (request_id, not_after, approvals) = args.approvals.resolve()?;
    let (policy, hash) = read_account_policy(&args.policy)?;
    eprintln!("new policy hash {}", hex::encode(hash));
    let body = PolicyChangeRequest {
        policy,
        request_id,
        not_after,
        approvals,
    };
    let path = format!("/api/v1/mpc/accounts/{}/policy", args.account);
    create_and_wait(&args.api, &path, &body, args.timeout_secs)
        .await
        .map(drop)
}

/// `mpc session`.
pub async fn session(api: Api, id: String) -> anyhow::Result<()> {
    let a = api
        .client()?
        .get(&format!("/api/v1/mpc/sessions/{id}"))
        .await?;
    println!("{}", serde_json::to_string_pretty(&a.body)?);
    anyhow::ensure!(a.status == 200, "HTTP {}", a.status);
    Ok(())
}

/// `mpc accounts`.
pub async fn accounts(api: Api, id: Option<String>) -> anyhow::Result<()> {
    let path = match id {
        Some(id) => format!("/api/v1/mpc/accounts/{id}"),
        None => "/api/v1/mpc/accounts".to_string(),
    };
    let a = api.client()?.get(&path).await?;
    println!("{}", serde_json::to_string_pretty(&a.body)?);
    anyhow::ensure!(a.status == 200, "HTTP {}", a.status);
    Ok(())
}

/// `mpc bench`.
pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let report = crate::bench::run(crate::bench::BenchOptions {
        signs: args.signs,
        throughput_signs: args.throughput_signs,
        concurrency: args.concurrency,
        keygens: args.keygens,
        skip_cold: args.skip_cold,
        approvals: !args.skip_approvals,
        pool: args.pool,
        sustained_signs: args.sustained_signs,
        sustained_rate: args.sustained_rate,
        refill_signs: args.refill_signs,
        refill_pool: args.refill_pool,
        refill_only: args.refill_only,
        insecure_test_aux: args.insecure_test_data.dir(),
    })
    .await?;
    print!("{}", crate::bench::table(&report));
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser as _;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir() -> Dir {
        let d = std::env::temp_dir().join(format!("mpc-cli-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn approval_file(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        path
    }

    fn sign_args(args: &[&str]) -> SignArgs {
        let all = ["mpc", "sign", "--api-key", "k", "--account", "a"];
        match Cli::try_parse_from(all.iter().chain(args)).unwrap().command {
            Command::Sign(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn approvals_are_sent_with_the_request_id_and_expiry_they_signed() {
        let d = dir();
        let a = approval_file(&d.0, "a.json", r#"{"approver":"alice","signature":"00ff"}"#);
        let b = approval_file(&d.0, "b.json", r#"{"approver":"bob","signature":"11"}"#);
        let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
        let args = sign_args(&[
            "--hash",
            "00",
            "--approval",
            a,
            "--approval",
            b,
            "--request-id",
            "pay-1",
            "--not-after",
            "1900000000",
        ]);
        let (rid, not_after, approvals) = args.approvals.resolve().unwrap();
        assert_eq!((rid.as_str(), not_after), ("pay-1", 1_900_000_000));
        let who: Vec<&str> = approvals.iter().map(|a| a.approver.as_str()).collect();
        assert_eq!(who, ["alice", "bob"]);
        // Without the request id (or the expiry) they signed: refused, not
        // sent with a made-up one the parties would refuse.
        for missing in [
            &["--not-after", "1900000000"][..],
            &["--request-id", "pay-1"],
        ] {
            let mut v = vec!["--hash", "00", "--approval", a];
            v.extend_from_slice(missing);
            let err = sign_args(&v).approvals.resolve().unwrap_err();
            assert!(err.to_string().contains("--request-id"), "{err}");
        }
    }

    #[test]
    fn without_approvals_the_request_gets_a_random_id_and_five_minutes() {
        let (rid1, not_after, approvals) =
            sign_args(&["--hash", "00"]).approvals.resolve().unwrap();
        let (rid2, ..) = sign_args(&["--hash", "00"]).approvals.resolve().unwrap();
        assert!(approvals.is_empty());
        assert_ne!(rid1, rid2);
        let now = now_secs();
        assert!(
            (now + DEFAULT_VALIDITY_SECS - 5..=now + DEFAULT_VALIDITY_SECS).contains(&not_after)
        );
        check_request(&rid1, not_after).unwrap();
    }

    #[test]
    fn bad_approval_files_are_refused_before_anything_is_sent() {
        let d = dir();
        for (name, body) in [
            ("not-hex.json", r#"{"approver":"alice","signature":"zz"}"#),
            (
                "extra.json",
                r#"{"approver":"alice","signature":"00","note":"x"}"#,
            ),
            ("missing.json", r#"{"approver":"alice"}"#),
            ("garbage.json", "alice approves"),
        ] {
            let f = approval_file(&d.0, name, body);
            let args = ApprovalArgs {
                files: vec![f],
                request_id: Some("r".into()),
                not_after: Some(1),
            };
            assert!(args.resolve().is_err(), "{name}");
        }
        let f = approval_file(&d.0, "a.json", r#"{"approver":"alice","signature":"00"}"#);
        let twice = ApprovalArgs {
            files: vec![f.clone(), f],
            request_id: Some("r".into()),
            not_after: Some(1),
        };
        let err = twice.resolve().unwrap_err();
        assert!(err.to_string().contains("two approvals"), "{err}");
        let bad_id = ApprovalArgs {
            files: vec![],
            request_id: Some("no spaces allowed".into()),
            not_after: None,
        };
        assert!(bad_id.resolve().is_err());
    }

    #[test]
    fn the_approver_subcommands_parse() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("mpc").chain(args.iter().copied()))
                .map(|c| c.command)
        };
        assert!(matches!(
            parse(&["approver", "new", "--out", "k.pem", "--p256"]),
            Ok(Command::Approver(
                crate::cli::approver::ApproverCommand::New { p256: true, .. }
            ))
        ));
        let Ok(Command::Approve(a)) = parse(&[
            "approve",
            "--key",
            "k.pem",
            "--approver",
            "alice",
            "--account",
            "a",
            "--policy-change",
            "p.json",
            "--request-id",
            "r",
            "--not-after",
            "5",
        ]) else {
            panic!("approve")
        };
        assert_eq!(a.policy_change, Some(PathBuf::from("p.json")));
        // A policy change names no message; an approval needs its request.
        assert!(parse(&[
            "approve",
            "--key",
            "k",
            "--approver",
            "a",
            "--account",
            "a",
            "--policy-change",
            "p",
            "--hash",
            "00",
            "--request-id",
            "r",
            "--not-after",
            "5",
        ])
        .is_err());
        assert!(parse(&[
            "approve",
            "--key",
            "k",
            "--approver",
            "a",
            "--account",
            "a",
            "--hash",
            "00"
        ])
        .is_err());
        let Ok(Command::Keygen(k)) = parse(&["keygen", "--api-key", "k", "--policy", "p.json"])
        else {
            panic!("keygen")
        };
        assert_eq!(k.policy, Some(PathBuf::from("p.json")));
    }
}
