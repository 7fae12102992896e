//! Policy changes (`POST /accounts/{id}/policy`) and approval statements
//! (`POST /approvals/statement`).

use mpc_api::error::ErrorCode;
use mpc_api::rest::{PolicyChangeRequest, StatementRequest};
use party_core::authz::{AuthzError, Policy};
use party_core::descriptor::{
    CurveName, Participant, SessionDescriptor, SessionKind as ProtocolKind, DESCRIPTOR_VERSION,
};
use uuid::Uuid;

use super::authz::{
    authorization, authz_error, policy_change_statement, policy_from_api, precheck, sign_statement,
};
use super::validate::{bad, hash_to_sign, parse_message};
use super::{Created, Owner, ServiceError};
use crate::store::{now, Account, DeviceSlot};
use crate::Coordinator;

fn request_fields(
    request_id: Option<&str>,
    not_after: Option<u64>,
) -> Result<(&str, u64), ServiceError> {
    match (request_id, not_after) {
        (Some(r), Some(n)) => Ok((r, n)),
        _ => Err(bad(
            ErrorCode::MalformedApproval,
            "a statement needs request_id and not_after",
        )),
    }
}

impl Coordinator {
    /// An account of `tenant` (another tenant's is `unknown_account`, as
    /// one that does not exist).
    async fn existing_account(
        &self,
        tenant: &str,
        account_id: &str,
    ) -> Result<Account, ServiceError> {
        self.store()
            .account_of(tenant, account_id)
            .await?
            .ok_or_else(super::unknown_account)
    }

    /// The statement approvers sign for a sign request or a policy change
    /// (`POST /approvals/statement`): the bytes every party will verify the
    /// approvals over.
    pub async fn approval_statement(
        &self,
        owner: &Owner,
        req: StatementRequest,
    ) -> Result<Vec<u8>, ServiceError> {
        match req {
            StatementRequest::Sign(req) => {
                let message = parse_message(&req)?;
                let hash = hash_to_sign(req.message_hash.as_deref(), message.as_ref())?;
                let (request_id, not_after) =
                    request_fields(req.request_id.as_deref(), req.not_after)?;
                let account = self
                    .existing_account(&owner.tenant_id, &req.account_id)
                    .await?;
                Ok(sign_statement(
                    &account.account_id,
                    &hash,
                    message.as_ref(),
                    request_id,
                    not_after,
                ))
            }
            StatementRequest::PolicyChange(req) => {
                let policy = policy_from_api(&req.policy)?;
                let account = self
                    .existing_account(&owner.tenant_id, &req.account_id)
                    .await?;
                Ok(policy_change_statement(
                    &account.account_id,
                    &policy,
                    &req.request_id,
                    req.not_after,
                ))
            }
        }
    }

    /// Starts a policy change of an account with a policy: a session of all
    /// n parties (devices must be online to take part), approved by a quorum
    /// of the current policy, checked here first as every party will check
    /// it. The account's policy is replaced when every party has reported
    /// storing the new one.
    pub async fn create_policy_change(
        &self,
        owner: &Owner,
        account_id: &str,
        req: PolicyChangeRequest,
    ) -> Result<Created, ServiceError> {
        let account = self.existing_account(&owner.tenant_id, account_id).await?;
        let Some(current) = &account.policy else {
            return Err(authz_error(&AuthzError::PolicyChangeRefused(
                "the account has no policy".to_string(),
            )));
        };
        let new: Policy = policy_from_api(&req.policy)?;
        let auth = authorization(
            Some(&req.request_id),
            Some(req.not_after),
            &req.approvals,
            current,
        )?;
        let mut parties: Vec<_> = account.parties.iter().collect();
        parties.sort_by_key(|p| p.keygen_index);
        let mut devices = Vec::new();
        for (pos, p) in parties.iter().enumerate() {
            let device_type = self.store().device_type_of(&p.party_id).await?;
            if !device_type.is_device() {
                self.ensure_enrolled(&p.party_id).await?;
            }
            if device_type.is_device() {
                devices.push(DeviceSlot {
                    position: u16::try_from(pos).unwrap_or(u16::MAX),
                    party_id: p.party_id.clone(),
                    device_type,
                    identity: Some(p.identity),
                });
            }
        }
        let descriptor = SessionDescriptor {
            version: DESCRIPTOR_VERSION,
            session_id: Uuid::new_v4(),
            kind: ProtocolKind::PolicyChange {
                account_id: account.account_id.clone(),
                policy: new,
            },
            curve: CurveName::Secp256k1,
            threshold: account.threshold_t,
            parties: account.threshold_n,
            participants: parties
                .iter()
                .map(|p| Participant {
                    party_id: p.party_id.clone(),
                    keygen_index: p.keygen_index,
                    identity: p.identity,
                })
                .collect(),
            expires_at: now() + self.config().sign_timeout.as_secs(),
            authorization: Some(auth),
        };
        precheck(&descriptor, current)?;
        if self
            .store()
            .request_id_spent(&account.account_id, &req.request_id)
            .await?
        {
            return Err(authz_error(&AuthzError::RequestIdReused));
        }
        self.start_session(owner, descriptor, None, None, false, devices)
            .await
    }
}
