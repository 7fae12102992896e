//! `mpc approve`: an approver signs the statement of a sign request or a
//! policy change. The statement is computed here, from the request's own
//! fields, with party-core's encoding ([`party_core::authz::Statement`]):
//! an approver does not ask the server what it is signing.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use party_core::authz::{Authorization, Operation, Payload, Policy, Statement};
use party_core::descriptor::MessageDigest;

use super::approver::ApproverKey;

/// What a sign request signs, as `mpc sign` and `mpc approve` take it: the
/// account and a message (with its digest) or a bare hash.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SignTarget {
    /// Account id.
    #[arg(long)]
    pub account: String,
    /// A bare 32-byte hash, hex (0x optional); always a full signing, and
    /// a policy must allow bare hashes.
    #[arg(long, conflicts_with_all = ["message", "message_text", "digest"])]
    pub hash: Option<String>,
    /// The message, hex (0x optional): hashed with --digest by the
    /// coordinator and checked by every party.
    #[arg(long, conflicts_with = "message_text")]
    pub message: Option<String>,
    /// The message as UTF-8 text (instead of --message).
    #[arg(long)]
    pub message_text: Option<String>,
    /// How the message is hashed: keccak256 (default) or sha256.
    #[arg(long, value_parser = parse_digest)]
    pub digest: Option<MessageDigest>,
}

fn parse_digest(s: &str) -> Result<MessageDigest, String> {
    match s {
        "keccak256" => Ok(MessageDigest::Keccak256),
        "sha256" => Ok(MessageDigest::Sha256),
        _ => Err("keccak256 or sha256".to_string()),
    }
}

/// The name of a digest in the API and the policy.
pub fn digest_name(d: MessageDigest) -> &'static str {
    match d {
        MessageDigest::Keccak256 => "keccak256",
        MessageDigest::Sha256 => "sha256",
    }
}

/// Hex with an optional `0x`.
pub fn parse_hex(what: &str, s: &str) -> anyhow::Result<Vec<u8>> {
    hex::decode(s.trim().trim_start_matches("0x")).with_context(|| format!("{what} must be hex"))
}

/// What is signed: a message and its digest, or a bare hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signed {
    /// A message, hashed with `digest`.
    Message {
        /// How it is hashed.
        digest: MessageDigest,
        /// The message.
        message: Vec<u8>,
    },
    /// A bare 32-byte hash.
    Hash([u8; 32]),
}

impl Signed {
    /// The statement payload.
    pub fn payload(&self) -> Payload<'_> {
        match self {
            Signed::Message { digest, message } => Payload::Message {
                digest: *digest,
                message,
            },
            Signed::Hash(h) => Payload::Hash(h),
        }
    }

    /// The 32-byte hash the parties sign.
    pub fn hash(&self) -> [u8; 32] {
        match self {
            Signed::Message { digest, message } => digest.hash(message),
            Signed::Hash(h) => *h,
        }
    }
}

impl SignTarget {
    /// The message or hash the flags name (exactly one).
    pub fn signed(&self) -> anyhow::Result<Signed> {
        let message = match (&self.message, &self.message_text) {
            (Some(hex), None) => Some(parse_hex("--message", hex)?),
            (None, Some(text)) => Some(text.as_bytes().to_vec()),
            (None, None) => None,
            (Some(_), Some(_)) => anyhow::bail!("give --message or --message-text, not both"),
        };
        match (message, &self.hash) {
            (Some(message), None) => {
                anyhow::ensure!(
                    message.len() <= party_core::authz::MAX_MESSAGE,
                    "the message is longer than {} bytes",
                    party_core::authz::MAX_MESSAGE
                );
                Ok(Signed::Message {
                    digest: self.digest.unwrap_or(MessageDigest::Keccak256),
                    message,
                })
            }
            (None, Some(hash)) => {
                anyhow::ensure!(self.digest.is_none(), "--digest goes with a message");
                let hash: [u8; 32] = parse_hex("--hash", hash)?
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("--hash must be 32 bytes"))?;
                Ok(Signed::Hash(hash))
            }
            (None, None) => {
                anyhow::bail!("name what is signed: --message, --message-text or --hash")
            }
            (Some(_), Some(_)) => anyhow::bail!("give a message or a hash, not both"),
        }
    }
}

/// Checks a request id and expiry the way every party will.
pub fn check_request(request_id: &str, not_after: u64) -> anyhow::Result<()> {
    Authorization {
        request_id: request_id.to_string(),
        not_after,
        message: None,
        approvals: vec![],
    }
    .validate()
    .map_err(|e| anyhow::anyhow!("--request-id: {e}"))
}

/// The statement bytes an approval of `payload` signs.
pub fn statement(
    account_id: &str,
    payload: Payload<'_>,
    request_id: &str,
    not_after: u64,
) -> Vec<u8> {
    Statement {
        account_id,
        operation: match payload {
            Payload::Policy(_) => Operation::PolicyChange,
            _ => Operation::Sign,
        },
        payload,
        derivation_path: &[],
        request_id,
        not_after,
    }
    .to_bytes()
}

/// `mpc approve`.
#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    /// The approver's key file (`mpc approver new`).
    #[arg(long)]
    pub key: PathBuf,
    /// The approver's id in the account policy.
    #[arg(long)]
    pub approver: String,
    #[command(flatten)]
    pub target: SignTarget,
    /// Approve replacing the account's policy with the one in this JSON
    /// file (instead of a signing).
    #[arg(long, value_name = "POLICY.json", conflicts_with_all = ["hash", "message", "message_text", "digest"])]
    pub policy_change: Option<PathBuf>,
    /// The request id the request will carry (unique per account).
    #[arg(long)]
    pub request_id: String,
    /// The last second (Unix) the approval may be used.
    #[arg(long)]
    pub not_after: u64,
    /// Write the approval here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Reads a policy JSON file (the `policy` of a keygen request) and checks it.
pub fn read_policy(path: &Path) -> anyhow::Result<Policy> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let policy: Policy = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a policy", path.display()))?;
    policy
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(policy)
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn when(secs: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.min(253_402_300_799));
    format!("{} (unix {secs})", httpdate::fmt_http_date(t))
}

/// A message as a person reads it: quoted text (control characters
/// escaped, so a message cannot drive the terminal) or hex.
fn shown(message: &[u8]) -> String {
    match std::str::from_utf8(message) {
        Ok(text) => format!("{text:?} ({} bytes, UTF-8)", message.len()),
        Err(_) => format!("0x{} ({} bytes)", hex::encode(message), message.len()),
    }
}

/// What a policy says, one line per item.
pub fn describe_policy(policy: &Policy) -> Vec<String> {
    let mut lines = vec![format!(
        "quorum {} of {} approvers:",
        policy.quorum,
        policy.approvers.len()
    )];
    for a in &policy.approvers {
        let (kind, key) = match &a.key {
            party_core::authz::ApproverKey::Ed25519(k) => ("ed25519", hex::encode(k)),
            party_core::authz::ApproverKey::P256(k) => ("p256", hex::encode(k)),
        };
        lines.push(format!("  {:?} {kind} {key}", a.id));
    }
    let digests: Vec<&str> = policy.digests.iter().map(|d| digest_name(*d)).collect();
    lines.push(format!(
        "digests: {}; bare hashes: {}",
        if digests.is_empty() {
            "none".to_string()
        } else {
            digests.join(", ")
        },
        if policy.allow_bare_hash {
            "allowed"
        } else {
            "refused"
        }
    ));
    lines.push(match policy.max_signatures_per_hour {
        Some(m) => format!("at most {m} signatures per hour (each party counts)"),
        None => "no rate limit".to_string(),
    });
    lines.push(format!("policy hash {}", hex::encode(policy.hash())));
    lines
}

/// What is approved, for a person to read before the approval is used.
pub fn describe(account_id: &str, what: &Approved<'_>, request_id: &str, not_after: u64) -> String {
    let mut out = format!("approving, for account {account_id:?}:\n");
    match what {
        Approved::Sign(Signed::Message { digest, message }) => {
            out.push_str("  operation    sign a message\n");
            out.push_str(&format!("  message      {}\n", shown(message)));
            out.push_str(&format!(
                "  digest       {} -> hash 0x{}\n",
                digest_name(*digest),
                hex::encode(digest.hash(message))
            ));
        }
        Approved::Sign(Signed::Hash(h)) => {
            out.push_str(
                "  operation    sign a BARE HASH (the message behind it is not known here)\n",
            );
            out.push_str(&format!("  hash         0x{}\n", hex::encode(h)));
        }
        Approved::PolicyChange(policy) => {
            out.push_str("  operation    REPLACE THE ACCOUNT POLICY with\n");
            for line in describe_policy(policy) {
                out.push_str(&format!("               {line}\n"));
            }
        }
    }
    out.push_str(&format!("  request id   {request_id}\n"));
    out.push_str(&format!("  valid until  {}\n", when(not_after)));
    out
}

/// What `mpc approve` approves.
#[derive(Debug)]
pub enum Approved<'a> {
    /// A signing.
    Sign(Signed),
    /// A new policy.
    PolicyChange(&'a Policy),
}

/// The approval (`{"approver", "signature"}`) of `what` by `key` as
/// `approver_id`, checked to verify over the statement before it is given out.
pub fn approve(
    key: &ApproverKey,
    approver_id: &str,
    account_id: &str,
    what: &Approved<'_>,
    request_id: &str,
    not_after: u64,
) -> anyhow::Result<mpc_api::rest::Approval> {
    check_request(request_id, not_after)?;
    let approver = key.approver(approver_id)?;
    let payload = match what {
        Approved::Sign(s) => s.payload(),
        Approved::PolicyChange(p) => Payload::Policy(p.hash()),
    };
    let bytes = statement(account_id, payload, request_id, not_after);
    let signature = key.sign(&bytes);
    anyhow::ensure!(
        approver.verifies(&bytes, &signature),
        "the approval does not verify (key or encoding broken)"
    );
    Ok(mpc_api::rest::Approval {
        approver: approver_id.to_string(),
        signature: hex::encode(signature),
    })
}

/// `mpc approve`.
pub fn run(args: ApproveArgs) -> anyhow::Result<()> {
    let key = ApproverKey::read(&args.key)?;
    let policy;
    let what = match &args.policy_change {
        Some(path) => {
            policy = read_policy(path)?;
            Approved::PolicyChange(&policy)
        }
        None => Approved::Sign(args.target.signed()?),
    };
    let now = now_secs();
    anyhow::ensure!(
        args.not_after > now,
        "--not-after {} has passed (now {now})",
        args.not_after
    );
    eprint!(
        "{}",
        describe(
            &args.target.account,
            &what,
            &args.request_id,
            args.not_after
        )
    );
    let approval = approve(
        &key,
        &args.approver,
        &args.target.account,
        &what,
        &args.request_id,
        args.not_after,
    )?;
    let json = serde_json::to_string(&approval)? + "\n";
    match &args.out {
        Some(path) => {
            std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
            eprintln!(
                "approval by {:?} written to {}",
                args.approver,
                path.display()
            );
        }
        None => print!("{json}"),
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "approve_tests.rs"]
mod tests;
