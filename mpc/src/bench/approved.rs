//! The policy-account rows of `mpc bench`: a wallet whose policy has two
//! approvers (one Ed25519, one P-256) and quorum 2, signed in full and from
//! the presignature pool with both approvals, beside the rows without.
//! Approvals are made before each request's clock starts (they are the
//! approvers' work, not the system's); what is timed is the request through
//! the coordinator and every party's check of them.

use std::time::Instant;

use anyhow::Context as _;
use mpc_api::rest::{
    AccountPolicy, Digest, KeygenRequest, Participant, PolicyApprover, SignRequest,
};
use serde_json::{json, Value};

use super::{percentile, presignatures, run_session, BenchOptions};
use crate::cli::approve::{approve, now_secs, Approved, Signed};
use crate::cli::approver::ApproverKey;
use crate::client::Client;
use crate::dev::DevSystem;

/// The two approvers of the bench account.
struct Approvers {
    keys: [(&'static str, ApproverKey); 2],
}

impl Approvers {
    fn new() -> Self {
        Self {
            keys: [
                ("alice", ApproverKey::generate(false)),
                ("bob", ApproverKey::generate(true)),
            ],
        }
    }

    /// Quorum 2 of the two; keccak256 messages and bare hashes (the full
    /// signing rows sign a bare hash, as the rows without approvals do).
    fn policy(&self) -> AccountPolicy {
        AccountPolicy {
            approvers: self
                .keys
                .iter()
                .map(|(id, key)| {
                    let (kind, public) = key.public_hex();
                    PolicyApprover {
                        id: (*id).to_string(),
                        ed25519: (kind == "ed25519").then(|| public.clone()),
                        p256: (kind == "p256").then_some(public),
                    }
                })
                .collect(),
            quorum: 2,
            digests: vec![Digest::Keccak256],
            allow_bare_hash: true,
            max_signatures_per_hour: None,
        }
    }

    /// A sign request for `signed` with both approvals, a fresh request id
    /// and ten minutes to live.
    fn request(
        &self,
        account: &str,
        signed: Signed,
        signers: &[usize],
    ) -> anyhow::Result<SignRequest> {
        let request_id = format!("bench-{}", uuid::Uuid::new_v4());
        let not_after = now_secs() + 600;
        let what = Approved::Sign(signed.clone());
        let approvals = self
            .keys
            .iter()
            .map(|(id, key)| approve(key, id, account, &what, &request_id, not_after))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (message_hash, message, digest, require_presignature) = match signed {
            Signed::Hash(h) => (Some(hex::encode(h)), None, None, false),
            Signed::Message { message, .. } => (
                None,
                Some(hex::encode(message)),
                Some(Digest::Keccak256),
                true,
            ),
        };
        Ok(SignRequest {
            account_id: account.to_string(),
            message_hash,
            message,
            digest,
            require_presignature,
            participants: signers
                .iter()
                .map(|k| Participant::server(DevSystem::party_id(*k)))
                .collect(),
            request_id: Some(request_id),
            not_after: Some(not_after),
            approvals,
        })
    }
}

/// Times approved signings on a new policy account of the group `order`:
/// `sign_full_approved_ms_*` and `sign_pool_approved_ms_*`.
pub(super) async fn run(
    sys: &DevSystem,
    c: &Client,
    report: &mut Value,
    order: &[usize],
    options: &BenchOptions,
) -> anyhow::Result<()> {
    eprintln!("policy account (2 approvers, quorum 2)...");
    let approvers = Approvers::new();
    let policy = approvers.policy();
    let keygen = KeygenRequest {
        threshold_n: u16::try_from(order.len())?,
        threshold_t: 2,
        participants: order
            .iter()
            .map(|k| Participant::server(DevSystem::party_id(*k)))
            .collect(),
        policy: Some(policy.clone()),
    };
    let done = run_session(c, "/api/v1/mpc/keygen", serde_json::to_value(&keygen)?).await?;
    let account = done["result"]["account_id"]
        .as_str()
        .context("keygen result without account_id")?
        .to_string();
    let want: party_core::authz::Policy = serde_json::from_value(serde_json::to_value(&policy)?)?;
    let view = c.account(&account).await?;
    anyhow::ensure!(
        view.policy_hash.as_deref() == Some(hex::encode(want.hash()).as_str()),
        "the policy account reports policy hash {:?}",
        view.policy_hash
    );

    eprintln!("full signing with approvals...");
    let mut full = Vec::new();
    for i in 0..options.signs {
        let mut hash = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut hash);
        let req = approvers.request(
            &account,
            Signed::Hash(hash),
            &[[1, 2], [1, 3], [2, 3]][i % 3],
        )?;
        let t = Instant::now();
        run_session(c, "/api/v1/mpc/sign", serde_json::to_value(&req)?).await?;
        full.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    report["sign_full_approved_ms_p50"] = json!(percentile(full.clone(), 0.5));
    report["sign_full_approved_ms_p99"] = json!(percentile(full, 0.99));

    eprintln!(
        "presignatures for the policy account ({})...",
        options.signs
    );
    presignatures(sys, c, &account, options.signs).await?;
    eprintln!("signing from the pool with approvals...");
    let mut pooled = Vec::new();
    for i in 0..options.signs {
        let signed = Signed::Message {
            digest: party_core::descriptor::MessageDigest::Keccak256,
            message: format!("approved bench payment {i}").into_bytes(),
        };
        let req = approvers.request(&account, signed, &[1, 2])?;
        let t = Instant::now();
        let done = run_session(c, "/api/v1/mpc/sign", serde_json::to_value(&req)?).await?;
        pooled.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(done["result"]["signature"].is_object(), "no signature");
    }
    report["sign_pool_approved_ms_p50"] = json!(percentile(pooled.clone(), 0.5));
    report["sign_pool_approved_ms_p99"] = json!(percentile(pooled, 0.99));
    Ok(())
}
