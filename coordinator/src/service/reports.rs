//! Party reports (`POST /internal/v1/reports`): joins, progress, results,
//! failures and refusals, each signed by the party's identity and checked
//! against its session's kind ([`super::results`] completes a session once
//! every party's result agrees).

use std::sync::Arc;

use mpc_api::error::ErrorCode;
use mpc_api::rest::{Accusation, Progress, SessionKind};
use party_core::authz::Policy;
use party_core::descriptor::{SessionKind as ProtocolKind, SignedDescriptor};
use party_core::wire::{Report, ReportBody, SignedReport};
use uuid::Uuid;

use super::ServiceError;
use crate::store::blame;
use crate::store::sessions::Stored;
use crate::store::{PartyResult, SessionRow};
use crate::Coordinator;
use party_core::aux_fingerprint::AUX_INFO_MISSING;

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
        ReportBody::AuxInfoStored { .. } => matches!(kind, ProtocolKind::AuxInfo {}),
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
        ReportBody::AuxInfoStored { .. } => "aux info stored",
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
    pub(super) async fn fail_session(
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
        // A failure report on a failed session is still evidence (the
        // other parties' views of the same failure); anything else on a
        // terminal session changes nothing.
        let late_failure = session.status == mpc_api::rest::SessionStatus::Failed
            && matches!(report.body, ReportBody::Failed { .. });
        if session.status.is_terminal() && !late_failure {
            return Ok(());
        }
        let is_result = matches!(
            report.body,
            ReportBody::KeygenResult { .. }
                | ReportBody::Signature { .. }
                | ReportBody::PresignatureStored
                | ReportBody::AuxInfoStored { .. }
        );
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
                aux_fingerprint,
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
                            aux_fingerprint: aux_fingerprint.map(hex::encode),
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
                    crate::kill_point::reached("coordinator:completing");
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
            ReportBody::Failed { reason, .. }
                if reason.starts_with(AUX_INFO_MISSING)
                    && matches!(descriptor.descriptor.kind, ProtocolKind::Keygen { .. }) =>
            {
                // The party does not hold the group's agreed aux info: no
                // wallet of the group can be made (or signed) with it. The
                // group is recorded as inconsistent, for the operator's
                // repair; this is the party's word about its own store, and
                // costs only availability, which a party can always deny.
                let failure = format!("{} reported: {reason}", participant.party_id);
                if self
                    .store()
                    .fail_aux_mismatch(id, &failure, session.group_id.as_deref())
                    .await?
                {
                    tracing::warn!(session_id = %id, group_id = ?session.group_id, reason = %failure, "keygen failed: a party lacks the group's aux info; group recorded as inconsistent");
                    self.close_session(id);
                }
            }
            ReportBody::AuxInfoStored { aux_fingerprint } => {
                self.on_aux_info_stored(&session, participant, pos, aux_fingerprint)
                    .await?;
            }
            ReportBody::Failed { reason, blamed } => {
                // The session fails on the first report, naming nobody: a
                // report is its sender's view, not a verdict. It is kept as
                // evidence, and the accusations name a culprit only when
                // enough independent reporters agree (store::blame).
                let accused = blamed
                    .and_then(|b| descriptor.descriptor.participants.get(usize::from(b)))
                    .map(|p| p.party_id.clone());
                let failure = format!("{} reported: {reason}", participant.party_id);
                if self.fail_session(id, &failure, None).await? {
                    tracing::warn!(session_id = %id, reason = %failure, "session failed");
                }
                let accusation = Accusation {
                    reporter: participant.party_id.clone(),
                    accused,
                    reason,
                };
                let quorum = blame::quorum(descriptor.descriptor.threshold);
                if let Some(named) = self.store().accuse(id, accusation, quorum).await? {
                    tracing::warn!(session_id = %id, blamed_party = %named, "culprit named by agreeing reports");
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
        if is_result {
            // Reached by the first result of a session too (the others not
            // in yet), before the party hears back.
            crate::kill_point::reached("coordinator:report");
        }
        Ok(())
    }
}
