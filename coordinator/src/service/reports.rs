//! Party reports (`POST /internal/v1/reports`): joins, progress, results and
//! failures, each signed by the party's identity; completing a session once
//! every party's result agrees.

use std::sync::Arc;

use mpc_api::error::ErrorCode;
use mpc_api::rest::{Progress, SessionKind, SessionResult, Signature};
use party_core::authz::Policy;
use party_core::descriptor::{SessionKind as ProtocolKind, SignedDescriptor};
use party_core::signature::{ethereum_address, RecoverableSignature};
use party_core::wire::{Report, ReportBody, SignedReport};
use uuid::Uuid;

use super::ServiceError;
use crate::store::sessions::Stored;
use crate::store::{now, Account, AccountParty, PartyResult, SessionRow};
use crate::Coordinator;

/// The signature in every form callers use.
pub fn signature_view(sig: &RecoverableSignature) -> Signature {
    Signature {
        r: format!("0x{}", hex::encode(sig.r)),
        s: format!("0x{}", hex::encode(sig.s)),
        v: sig.v,
        der: hex::encode(sig.to_der()),
        signature: sig.to_hex65(),
    }
}

/// Whether a report's body may come from a party of a session of `kind`:
/// each result only from its own kind; joins, progress, failures and
/// refusals from any.
fn fits(body: &ReportBody, kind: &ProtocolKind) -> bool {
    match body {
        ReportBody::KeygenResult { .. } => matches!(kind, ProtocolKind::Keygen { .. }),
        ReportBody::Signature { .. } => {
            matches!(
                kind,
                ProtocolKind::Sign { .. } | ProtocolKind::OnlineSign { .. }
            )
        }
        ReportBody::PresignatureStored => matches!(kind, ProtocolKind::Presign { .. }),
        ReportBody::PolicyChanged { .. } => matches!(kind, ProtocolKind::PolicyChange { .. }),
        ReportBody::Joined
        | ReportBody::Progress { .. }
        | ReportBody::Failed { .. }
        | ReportBody::Refused { .. } => true,
    }
}

fn body_name(body: &ReportBody) -> &'static str {
    match body {
        ReportBody::KeygenResult { .. } => "keygen result",
        ReportBody::Signature { .. } => "signature",
        ReportBody::PresignatureStored => "presignature",
        ReportBody::PolicyChanged { .. } => "policy changed",
        ReportBody::Joined => "joined",
        ReportBody::Progress { .. } => "progress",
        ReportBody::Failed { .. } => "failure",
        ReportBody::Refused { .. } => "refusal",
    }
}

fn hash_text(h: Option<&[u8; 32]>) -> String {
    h.map_or_else(|| "none".to_string(), hex::encode)
}

impl Coordinator {
    /// A session's signed descriptor: from the cache, else parsed from its
    /// row (once per session on this instance) and cached.
    fn session_descriptor(
        &self,
        session: &SessionRow,
    ) -> Result<Arc<SignedDescriptor>, ServiceError> {
        let id = session.session_id;
        if let Some(d) = self.descriptors().get(id) {
            return Ok(d);
        }
        let parsed: SignedDescriptor =
            serde_json::from_str(&session.descriptor).map_err(ServiceError::internal)?;
        let parsed = Arc::new(parsed);
        if !session.status.is_terminal() {
            self.descriptors().insert(id, parsed.clone());
        }
        Ok(parsed)
    }

    /// Fails a session once and, if this call did it, closes it.
    async fn fail_session(
        &self,
        id: Uuid,
        reason: &str,
        blamed: Option<&str>,
    ) -> Result<bool, ServiceError> {
        let failed = self.store().fail(id, reason, blamed).await?;
        if failed {
            self.close_session(id);
        }
        Ok(failed)
    }

    /// Applies a party's signed report.
    pub async fn apply_report(&self, signed: SignedReport) -> Result<(), ServiceError> {
        let claimed = signed.peek().ok_or_else(|| {
            ServiceError::new(ErrorCode::InvalidReport, "report is not valid JSON")
        })?;
        let session = self
            .store()
            .session(claimed.session_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("session"))?;
        if session.descriptor.is_empty() {
            return Err(ServiceError::new(
                ErrorCode::SessionNotStarted,
                "the session is waiting for its device parties",
            ));
        }
        let descriptor = self.session_descriptor(&session)?;
        let participant = descriptor
            .descriptor
            .participants
            .get(usize::from(claimed.position))
            .ok_or_else(|| ServiceError::new(ErrorCode::InvalidReport, "no such position"))?;
        let report: Report = signed.verify(&participant.identity).map_err(|_| {
            ServiceError::new(ErrorCode::BadSignature, "report signature does not verify")
        })?;
        let id = report.session_id;
        let pos = report.position;
        // A result only of its own session kind: a keygen result on a sign
        // session, a signature on a keygen, ... is refused, nothing changed.
        if !fits(&report.body, &descriptor.descriptor.kind) {
            return Err(ServiceError::new(
                ErrorCode::InvalidReport,
                format!(
                    "a {} report does not fit a {} session",
                    body_name(&report.body),
                    descriptor.descriptor.kind.name()
                ),
            ));
        }
        if session.status.is_terminal() {
            return Ok(());
        }
        match report.body {
            ReportBody::Joined => self.store().mark_joined(id, pos).await?,
            ReportBody::Progress {
                stage,
                round,
                percent,
            } => {
                self.store()
                    .set_progress(
                        id,
                        pos,
                        &Progress {
                            stage,
                            round,
                            percent,
                        },
                    )
                    .await?;
            }
            ReportBody::KeygenResult {
                public_key,
                policy_hash,
            } => {
                // Every party must have stored the descriptor's policy (or
                // none): a party that reports another hash fails the keygen,
                // named as the reporter, not as a culprit.
                let expected = match &descriptor.descriptor.kind {
                    ProtocolKind::Keygen { policy, .. } => policy.as_ref().map(Policy::hash),
                    _ => None,
                };
                if policy_hash != expected {
                    let reason = format!(
                        "{} reported policy hash {} but the keygen's policy hashes to {}",
                        participant.party_id,
                        hash_text(policy_hash.as_ref()),
                        hash_text(expected.as_ref()),
                    );
                    if self.fail_session(id, &reason, None).await? {
                        tracing::warn!(session_id = %id, %reason, "keygen failed");
                    }
                    return Ok(());
                }
                let results = self
                    .store()
                    .set_party_result(
                        id,
                        pos,
                        &PartyResult::Keygen {
                            public_key: hex::encode(public_key),
                            policy_hash: policy_hash.map(hex::encode),
                        },
                    )
                    .await?;
                self.maybe_complete_keygen(&session, &descriptor, results)
                    .await?;
            }
            ReportBody::Signature { signature } => {
                self.on_signature(&session, pos, signature).await?;
            }
            ReportBody::PresignatureStored => {
                let results = self
                    .store()
                    .set_party_result(
                        id,
                        pos,
                        &PartyResult::Presignature {
                            presignature: Stored::Stored,
                        },
                    )
                    .await?;
                if session.kind == SessionKind::Presign && results.iter().all(Option::is_some) {
                    let account_id = session.account_id.clone().unwrap_or_default();
                    let signers = session.group_id.clone().unwrap_or_default();
                    if self
                        .store()
                        .complete_presign(id, &account_id, &signers)
                        .await?
                    {
                        self.close_session(id);
                    }
                }
            }
            ReportBody::Failed { reason, blamed } => {
                let blamed_party = blamed
                    .and_then(|b| descriptor.descriptor.participants.get(usize::from(b)))
                    .map(|p| p.party_id.clone());
                let reason = format!("{} reported: {reason}", participant.party_id);
                if self
                    .fail_session(id, &reason, blamed_party.as_deref())
                    .await?
                {
                    tracing::warn!(session_id = %id, %reason, "session failed");
                }
            }
            ReportBody::Refused { code, reason } => {
                let reason = format!("{} refused ({code}): {reason}", participant.party_id);
                // A code the API knows is kept as the failure's code; any
                // other stays in the reason only.
                let failed = match ErrorCode::parse(&code) {
                    Some(known) => {
                        self.store()
                            .fail_refused(id, &reason, known.as_str())
                            .await?
                    }
                    None => self.store().fail(id, &reason, None).await?,
                };
                if failed {
                    self.close_session(id);
                    tracing::warn!(session_id = %id, %reason, "session refused by a party");
                }
            }
            ReportBody::PolicyChanged { policy_hash } => {
                self.on_policy_changed(&session, &descriptor, participant, pos, policy_hash)
                    .await?;
            }
        }
        Ok(())
    }

    async fn on_policy_changed(
        &self,
        session: &SessionRow,
        d: &SignedDescriptor,
        participant: &party_core::descriptor::Participant,
        pos: u16,
        policy_hash: [u8; 32],
    ) -> Result<(), ServiceError> {
        let id = session.session_id;
        let ProtocolKind::PolicyChange { account_id, policy } = &d.descriptor.kind else {
            return Err(ServiceError::internal(
                "policy report on another session kind",
            ));
        };
        let expected = policy.hash();
        if policy_hash != expected {
            let reason = format!(
                "{} reported storing policy hash {} but the change is to {}",
                participant.party_id,
                hex::encode(policy_hash),
                hex::encode(expected),
            );
            if self.fail_session(id, &reason, None).await? {
                tracing::warn!(session_id = %id, %reason, "policy change failed");
            }
            return Ok(());
        }
        let results = self
            .store()
            .set_party_result(
                id,
                pos,
                &PartyResult::PolicyChanged {
                    policy_hash: hex::encode(policy_hash),
                },
            )
            .await?;
        if results.iter().all(Option::is_some)
            && self
                .store()
                .complete_policy_change(id, account_id, policy)
                .await?
        {
            tracing::info!(session_id = %id, account_id = %account_id, "policy changed");
            self.close_session(id);
        }
        Ok(())
    }

    async fn maybe_complete_keygen(
        &self,
        session: &SessionRow,
        d: &SignedDescriptor,
        results: Vec<Option<PartyResult>>,
    ) -> Result<(), ServiceError> {
        if results.iter().any(Option::is_none) {
            return Ok(());
        }
        let keys: Vec<&str> = results
            .iter()
            .flatten()
            .filter_map(|r| match r {
                PartyResult::Keygen { public_key, .. } => Some(public_key.as_str()),
                _ => None,
            })
            .collect();
        let id = session.session_id;
        let Some(first) = keys.first().copied() else {
            self.fail_session(id, "parties reported different public keys", None)
                .await?;
            return Ok(());
        };
        if keys.len() != results.len() || keys.iter().any(|k| *k != first) {
            self.fail_session(id, "parties reported different public keys", None)
                .await?;
            return Ok(());
        }
        let pk = hex::decode(first).map_err(ServiceError::internal)?;
        let Ok(address) = ethereum_address(&pk) else {
            self.store()
                .fail(id, "reported public key is not a valid point", None)
                .await?;
            return Ok(());
        };
        let d = &d.descriptor;
        let policy = match &d.kind {
            ProtocolKind::Keygen { policy, .. } => policy.clone(),
            _ => None,
        };
        let account = Account {
            account_id: id.to_string(),
            public_key: first.to_string(),
            address,
            threshold_t: d.threshold,
            threshold_n: d.parties,
            parties: d
                .participants
                .iter()
                .map(|p| AccountParty {
                    party_id: p.party_id.clone(),
                    keygen_index: p.keygen_index,
                    identity: p.identity,
                })
                .collect(),
            keygen_session_id: id.to_string(),
            created_at: now(),
            policy,
        };
        let group = session
            .generate_aux
            .then(|| session.group_id.clone())
            .flatten();
        if self
            .store()
            .complete_keygen(id, &account, group.as_deref())
            .await?
        {
            tracing::info!(session_id = %id, address = %account.address, "keygen completed");
            self.close_session(id);
        }
        Ok(())
    }

    async fn on_signature(
        &self,
        session: &SessionRow,
        pos: u16,
        sig: RecoverableSignature,
    ) -> Result<(), ServiceError> {
        let id = session.session_id;
        let account_id = session.account_id.clone().unwrap_or_default();
        let account = self
            .store()
            .account(&account_id)
            .await?
            .ok_or_else(|| ServiceError::internal("sign session without account"))?;
        let hash: [u8; 32] = session
            .message_hash
            .clone()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| ServiceError::internal("sign session without hash"))?;
        let pk = hex::decode(&account.public_key).map_err(ServiceError::internal)?;
        // Verify independently of the party: same r, s must verify and v must
        // recover the account key.
        let checked = RecoverableSignature::from_parts(sig.r, sig.s, &hash, &pk);
        let valid = matches!(&checked, Ok(c) if c.v == sig.v && c.s == sig.s);
        let results = self
            .store()
            .set_party_result(
                id,
                pos,
                &PartyResult::Signature {
                    signature: sig,
                    valid,
                },
            )
            .await?;
        if !valid {
            let party = self
                .store()
                .participants(id)
                .await?
                .into_iter()
                .find(|p| p.position == pos);
            let blamed = party.map(|p| p.party_id);
            self.fail_session(
                id,
                "a party reported an invalid signature",
                blamed.as_deref(),
            )
            .await?;
            return Ok(());
        }
        if results.iter().any(Option::is_none) {
            return Ok(());
        }
        let all_same = results
            .iter()
            .flatten()
            .all(|r| matches!(r, PartyResult::Signature { signature, .. } if *signature == sig));
        if !all_same {
            self.fail_session(id, "parties reported different signatures", None)
                .await?;
            return Ok(());
        }
        let result = SessionResult {
            account_id: Some(account_id),
            signature: Some(signature_view(&sig)),
            ..SessionResult::default()
        };
        if self.store().complete(id, &result).await? {
            tracing::info!(session_id = %id, "signing completed");
            self.close_session(id);
        }
        Ok(())
    }
}
