//! Aux-info sessions (issue #15): the repair of a party group whose parties
//! hold aux info of different runs, and a rotation of a group's Paillier
//! keys (`POST /api/v1/mpc/admin/aux-groups/{group_id}/regenerate`).
//!
//! Every party of the group generates new aux info with fresh primes and
//! keeps it **beside** the group's current aux info (it never replaces
//! stored aux info), then reports its fingerprint. The switch needs no
//! second round: a keygen descriptor names the aux info to use by its
//! fingerprint, and the coordinator names the new one only after every
//! party reported the same fingerprint, in the transaction that completes
//! the session. Until then (and if the session fails, expires, or the
//! parties report different fingerprints) the group stays as it was:
//! a consistent group keeps making wallets with its current aux info, an
//! inconsistent one stays refused. Keygens created before the switch
//! complete with the aux info they named. A party cannot be made to use
//! aux info it did not agree on: it checks the named fingerprint against
//! the aux info it loads (`party_core::session`), and a party that lacks it
//! fails the keygen (`aux_info_missing`), which records the group as
//! inconsistent for the next repair.
//!
//! Existing wallets are not touched: each key share carries the aux info
//! it was made with.

use mpc_api::error::ErrorCode;
use party_core::descriptor::{
    SessionDescriptor, SessionKind as ProtocolKind, SignedDescriptor, DESCRIPTOR_VERSION,
};
use uuid::Uuid;

use super::{Created, Owner, ServiceError};
use crate::auth::Caller;
use crate::store::{now, AuxClaim, PartyResult, SessionRow};
use crate::Coordinator;

impl Coordinator {
    /// Starts an aux-info session for a known party group (operator keys
    /// only): the parties of the session that recorded the group, at the
    /// same keygen indices with the same identity keys (so the same group
    /// id). Refused while another aux generation of the group runs, and
    /// for groups with device parties (their hosts do not run aux-info
    /// sessions yet).
    pub async fn regenerate_aux(
        &self,
        caller: &Caller,
        owner: &Owner,
        group_id: &str,
    ) -> Result<Created, ServiceError> {
        if !caller.is_operator() {
            return Err(ServiceError::new(
                ErrorCode::Forbidden,
                "party groups are repaired by operator keys only (admin, default tenant)",
            ));
        }
        let not_found = || ServiceError::not_found("party group");
        let origin = self
            .store()
            .aux_group_session(group_id)
            .await?
            .ok_or_else(not_found)?;
        let origin = Uuid::parse_str(&origin).map_err(|_| not_found())?;
        let row = self.store().session(origin).await?.ok_or_else(not_found)?;
        let signed: SignedDescriptor =
            serde_json::from_str(&row.descriptor).map_err(|_| not_found())?;
        let recorded = signed.descriptor;
        if recorded.group_id() != group_id {
            return Err(not_found());
        }
        for p in &recorded.participants {
            let device_type = self.store().device_type_of(&p.party_id).await?;
            if device_type.is_device() {
                return Err(ServiceError::new(
                    ErrorCode::UnsupportedDeviceType,
                    format!(
                        "party {} is a {} party: aux-info sessions run on server parties only",
                        p.party_id,
                        device_type.as_str()
                    ),
                ));
            }
        }
        let descriptor = SessionDescriptor {
            version: DESCRIPTOR_VERSION,
            session_id: Uuid::new_v4(),
            kind: ProtocolKind::AuxInfo {},
            curve: recorded.curve,
            threshold: recorded.threshold,
            parties: recorded.parties,
            participants: recorded.participants,
            expires_at: now() + self.config().keygen_aux_timeout.as_secs(),
            authorization: None,
        };
        match self
            .store()
            .claim_aux_regeneration(group_id, descriptor.session_id, descriptor.expires_at)
            .await?
        {
            AuxClaim::Claimed => {}
            AuxClaim::Ready | AuxClaim::Held { .. } => {
                return Err(ServiceError::new(
                    ErrorCode::AuxInfoInProgress,
                    "another session is generating this party group's aux info; \
                     retry when it has ended",
                ))
            }
        }
        let session_id = descriptor.session_id;
        let created = self
            .start_session(
                owner,
                descriptor,
                None,
                Some(group_id.to_string()),
                true,
                Vec::new(),
            )
            .await;
        if created.is_err() {
            // Nothing started: the claim goes with it.
            if let Err(e) = self
                .store()
                .release_aux_claim(group_id, &session_id.to_string())
                .await
            {
                tracing::warn!(group_id, error = %e, "could not release an aux claim");
            }
        }
        created
    }

    /// A party stored the new aux info of an aux-info session: once every
    /// party did, the session completes if all fingerprints agree (the
    /// group then uses the new aux info), and fails `aux_info_mismatch`
    /// otherwise (the group stays as it was).
    pub(super) async fn on_aux_info_stored(
        &self,
        session: &SessionRow,
        participant: &party_core::descriptor::Participant,
        pos: u16,
        fingerprint: [u8; 32],
    ) -> Result<(), ServiceError> {
        let id = session.session_id;
        let results = self
            .store()
            .set_party_result(
                id,
                pos,
                &PartyResult::AuxInfo {
                    aux_fingerprint: hex::encode(fingerprint),
                },
            )
            .await?;
        tracing::info!(session_id = %id, party_id = %participant.party_id, fingerprint = %hex::encode(fingerprint), "aux info stored by a party");
        if results.iter().any(Option::is_none) {
            return Ok(());
        }
        let reported: Vec<&str> = results
            .iter()
            .flatten()
            .filter_map(|r| match r {
                PartyResult::AuxInfo { aux_fingerprint } => Some(aux_fingerprint.as_str()),
                _ => None,
            })
            .collect();
        let group_id = session.group_id.as_deref().unwrap_or_default();
        let first = reported.first().copied().unwrap_or_default();
        if reported.len() != results.len() || reported.iter().any(|f| *f != first) {
            let list: Vec<String> = reported
                .iter()
                .enumerate()
                .map(|(k, f)| format!("position {k}: {f}"))
                .collect();
            let reason = format!(
                "parties reported different aux info ({}); the group keeps its aux info",
                list.join(", ")
            );
            if self
                .store()
                .fail_refused(id, &reason, ErrorCode::AuxInfoMismatch.as_str())
                .await?
            {
                tracing::warn!(session_id = %id, group_id, %reason, "aux-info session failed");
                self.close_session(id);
            }
            return Ok(());
        }
        crate::kill_point::reached("coordinator:completing");
        if self.store().complete_aux_info(id, group_id, first).await? {
            tracing::info!(session_id = %id, group_id, fingerprint = first, "party group switched to new aux info");
            self.close_session(id);
        }
        Ok(())
    }
}
