//! Completing sessions from their parties' results: a keygen once every
//! party reported the same public key, the descriptor's policy hash and the
//! same aux info fingerprint (the account inserted with it), a signing once every signer reported the
//! same signature and it verifies under the account key, a policy change
//! once every party stored the new policy (the account's policy replaced).

use mpc_api::rest::{SessionResult, Signature};
use party_core::descriptor::{SessionKind as ProtocolKind, SignedDescriptor};
use party_core::signature::{ethereum_address, RecoverableSignature};

use super::aux::Agreement;
use super::ServiceError;
use crate::store::{now, Account, AccountParty, AuxRecord, PartyResult, SessionRow};
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

/// Why a keygen whose parties reported different public keys failed, and
/// whom the coordinator can name for it: honest parties of a DKG always
/// derive the same key (its broadcasts are reliable), and a key reported by
/// at least `max(2, t)` parties was reported by at least one honest party
/// (the trust model allows `t - 1` colluders). So when exactly one key has
/// that many reporters, every party that reported another key lied, checked
/// by the coordinator from signed results, not taken from anyone's word.
fn key_disagreement(keys: &[&str], d: &SignedDescriptor) -> (String, Option<String>) {
    let quorum = crate::store::blame::quorum(d.descriptor.threshold);
    let mut distinct: Vec<&str> = keys.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let backed: Vec<&str> = distinct
        .into_iter()
        .filter(|k| keys.iter().filter(|x| *x == k).count() >= quorum)
        .collect();
    let [honest] = backed[..] else {
        return ("parties reported different public keys".to_string(), None);
    };
    if keys.len() != d.descriptor.participants.len() {
        return ("parties reported different public keys".to_string(), None);
    }
    let liars: Vec<String> = keys
        .iter()
        .zip(&d.descriptor.participants)
        .filter(|(k, _)| **k != honest)
        .map(|(_, p)| p.party_id.clone())
        .collect();
    let reason = format!(
        "{} reported a public key other than the one at least {quorum} parties reported",
        liars.join(", ")
    );
    (reason, liars.into_iter().next())
}

impl Coordinator {
    pub(super) async fn on_policy_changed(
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

    pub(super) async fn maybe_complete_keygen(
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
            let (reason, blamed) = key_disagreement(&keys, d);
            self.fail_session(id, &reason, blamed.as_deref()).await?;
            return Ok(());
        }
        // Every party's new share must carry the same aux info, the
        // group's recorded one if it has one ([`super::aux`]).
        let named = match &d.descriptor.kind {
            ProtocolKind::Keygen {
                aux_fingerprint, ..
            } => *aux_fingerprint,
            _ => None,
        };
        let fingerprint = match self
            .aux_agreement(session.group_id.as_deref(), named, &results)
            .await?
        {
            Agreement::Agreed(f) => f,
            Agreement::Mismatch(reason) => {
                if self
                    .store()
                    .fail_aux_mismatch(id, &reason, session.group_id.as_deref())
                    .await?
                {
                    tracing::warn!(session_id = %id, group_id = ?session.group_id, %reason, "keygen failed: aux info mismatch; party group recorded as inconsistent");
                    self.close_session(id);
                }
                return Ok(());
            }
        };
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
        let group = session.group_id.as_deref().map(|group_id| AuxRecord {
            group_id,
            generated: session.generate_aux,
            fingerprint: fingerprint.as_deref(),
        });
        crate::kill_point::reached("coordinator:completing");
        if self.store().complete_keygen(id, &account, group).await? {
            tracing::info!(session_id = %id, address = %account.address, "keygen completed");
            self.close_session(id);
        }
        Ok(())
    }

    pub(super) async fn on_signature(
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
        crate::kill_point::reached("coordinator:completing");
        if self.store().complete(id, &result).await? {
            tracing::info!(session_id = %id, "signing completed");
            self.close_session(id);
        }
        Ok(())
    }
}
