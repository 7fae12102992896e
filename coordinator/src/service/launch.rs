//! Storing a new session and launching a signed one: its slots registered
//! with the router, its server parties invited over their control
//! connections.

use std::sync::Arc;

use mpc_api::error::ErrorCode;
use mpc_api::rest::{SessionKind, SessionStatus};
use party_core::descriptor::{SessionDescriptor, SessionKind as ProtocolKind, SignedDescriptor};
use party_core::wire::Invitation;
use rand_core::{OsRng, RngCore};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::validate::bad;
use super::{Created, ServiceError};
use crate::router_client::Slot;
use crate::store::{now, DeviceSlot, DeviceType, NewSession, SessionQuota, SessionRow};
use crate::Coordinator;

fn router_unavailable() -> ServiceError {
    ServiceError::new(ErrorCode::RouterUnavailable, "router unavailable")
}

impl Coordinator {
    /// Registers a signed session with the router and invites its server
    /// parties (`server_tokens[pos]` is `Some` for a server party). On
    /// failure the session is failed and `router_unavailable` returned. The
    /// descriptor is kept in the cache for the session's reports.
    pub(super) async fn launch(
        &self,
        signed: SignedDescriptor,
        token_hashes: &[[u8; 32]],
        server_tokens: &[Option<String>],
    ) -> Result<(), ServiceError> {
        crate::kill_point::reached("coordinator:created");
        let signed = Arc::new(signed);
        let session_id = signed.descriptor.session_id;
        self.descriptors().insert(session_id, signed.clone());
        let participants = &signed.descriptor.participants;
        let slots = participants
            .iter()
            .zip(token_hashes)
            .enumerate()
            .map(|(pos, (p, h))| Slot {
                position: u16::try_from(pos).unwrap_or(u16::MAX),
                token_sha256: hex::encode(h),
                identity: Some(p.identity),
            })
            .collect();
        if let Err(e) = self
            .router()
            .register_session(session_id, signed.descriptor.expires_at, slots)
            .await
        {
            self.store()
                .fail(session_id, &format!("router unavailable: {e}"), None)
                .await?;
            self.descriptors().remove(session_id);
            return Err(router_unavailable());
        }
        for (p, token) in participants.iter().zip(server_tokens) {
            let Some(token) = token else { continue };
            let invitation = Invitation {
                descriptor: SignedDescriptor::clone(&signed),
                join_token: token.clone(),
            };
            if let Err(e) = self.router().invite(&p.identity, &invitation).await {
                self.store()
                    .fail(
                        session_id,
                        &format!("could not invite {}: {e}", p.party_id),
                        None,
                    )
                    .await?;
                self.close_session(session_id);
                return Err(router_unavailable());
            }
        }
        Ok(())
    }

    /// A session ended: the router drops it (best effort, in the background)
    /// and the descriptor cache forgets it.
    pub(crate) fn close_session(&self, session_id: Uuid) {
        self.descriptors().remove(session_id);
        self.router().close_session(session_id);
    }
}

/// A new join token and its SHA-256.
pub(super) fn new_token() -> (String, [u8; 32]) {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    let token = hex::encode(b);
    let hash = Sha256::digest(token.as_bytes()).into();
    (token, hash)
}

/// Who a new session belongs to: its tenant, and the API key that creates
/// it with that key's quota of open sessions (`None` for the coordinator's
/// own sessions).
#[derive(Debug, Clone)]
pub struct Owner {
    /// The tenant.
    pub tenant_id: String,
    /// The creating key and its quota.
    pub quota: Option<SessionQuota>,
}

impl Coordinator {
    /// Stores a new session (signed, or pending device keys) of `owner` and
    /// launches a signed one.
    pub(super) async fn start_session(
        &self,
        owner: &Owner,
        descriptor: SessionDescriptor,
        message_hash: Option<Vec<u8>>,
        group_id: Option<String>,
        generate_aux: bool,
        devices: Vec<DeviceSlot>,
    ) -> Result<Created, ServiceError> {
        let session_id = descriptor.session_id;
        let expires_at = descriptor.expires_at;
        let kind = match descriptor.kind {
            ProtocolKind::Keygen { .. } => SessionKind::Keygen,
            ProtocolKind::Presign { .. } => SessionKind::Presign,
            ProtocolKind::Sign { .. } | ProtocolKind::OnlineSign { .. } => SessionKind::Sign,
            ProtocolKind::PolicyChange { .. } => SessionKind::PolicyChange,
            ProtocolKind::AuxInfo {} => SessionKind::AuxInfo,
        };
        let account_id = descriptor.kind.account_id().map(str::to_owned);
        // The approval request id is spent with the session's rows (refused
        // there if another session spent it meanwhile).
        let request_id = descriptor
            .authorization
            .as_ref()
            .map(|a| a.request_id.clone());
        let participants = descriptor.participants.clone();
        let (threshold_t, threshold_n) = (descriptor.threshold, descriptor.parties);
        let pending = devices.iter().any(|d| d.identity.is_none());
        let (descriptor_json, pending_json, signed) = if pending {
            let unsigned = serde_json::to_string(&descriptor).map_err(ServiceError::internal)?;
            (String::new(), Some(unsigned), None)
        } else {
            let signed = descriptor
                .sign(&self.config().signing_key)
                .map_err(|e| bad(ErrorCode::InvalidSession, e.to_string()))?;
            let json = serde_json::to_string(&signed).map_err(ServiceError::internal)?;
            (json, None, Some(signed))
        };
        let tokens: Vec<(String, [u8; 32])> = participants.iter().map(|_| new_token()).collect();
        let device_type_at = |pos: usize| {
            devices
                .iter()
                .find(|d| usize::from(d.position) == pos)
                .map_or(DeviceType::Server, |d| d.device_type)
        };
        let row = SessionRow {
            session_id,
            tenant_id: owner.tenant_id.clone(),
            kind,
            status: SessionStatus::Waiting,
            threshold_t,
            threshold_n,
            account_id,
            message_hash,
            descriptor: descriptor_json,
            group_id,
            generate_aux,
            result: None,
            error: None,
            error_code: None,
            blamed_party: None,
            accusations: Vec::new(),
            created_at: now(),
            expires_at,
        };
        let new = NewSession {
            row: &row,
            participants: participants
                .iter()
                .zip(&tokens)
                .enumerate()
                .map(|(pos, (p, (_, h)))| {
                    (
                        u16::try_from(pos).unwrap_or(u16::MAX),
                        p.party_id.clone(),
                        device_type_at(pos),
                        *h,
                    )
                })
                .collect(),
            quota: owner.quota.clone(),
            request_id,
        };
        if devices.is_empty() {
            self.store().insert_session(new).await?;
        } else {
            self.store()
                .insert_device_session(new, &devices, pending_json.as_deref())
                .await?;
        }
        crate::metrics::session_created(kind.as_str());
        let device_tokens: Vec<(String, String)> = devices
            .iter()
            .filter_map(|d| {
                tokens
                    .get(usize::from(d.position))
                    .map(|(t, _)| (d.party_id.clone(), t.clone()))
            })
            .collect();
        if let Some(signed) = signed {
            let token_hashes: Vec<[u8; 32]> = tokens.iter().map(|(_, h)| *h).collect();
            let server_tokens: Vec<Option<String>> = tokens
                .iter()
                .enumerate()
                .map(|(pos, (t, _))| (device_type_at(pos) == DeviceType::Server).then(|| t.clone()))
                .collect();
            self.launch(signed, &token_hashes, &server_tokens).await?;
        }
        tracing::info!(session_id = %session_id, kind = kind.as_str(), generate_aux, pending, "session created");
        Ok(Created {
            row,
            device_tokens,
            presignature: false,
        })
    }
}
