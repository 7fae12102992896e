//! Session creation: request validation, descriptors, join tokens, and the
//! rows of every session kind (keygen, sign, presign).

use mpc_api::error::ErrorCode;
use mpc_api::rest::{KeygenRequest, Participant as ParticipantRequest, SignRequest};
use party_core::authz::{ApprovedMessage, AuthzError};
use party_core::descriptor::{
    CurveName, Participant, SessionDescriptor, SessionKind as ProtocolKind, DESCRIPTOR_VERSION,
};
use party_core::identity::PartyPublicKey;
use uuid::Uuid;

use super::authz::{authorization, authz_error, policy_from_api, precheck};
use super::pool::signers_key;
use super::validate::{
    bad, check_device_party_id, check_unique, hash_to_sign, parse_device_type, parse_message,
};
use super::{Owner, ServiceError};
use crate::store::{now, Account, AccountParty, DeviceSlot, DeviceType, SessionRow};
use crate::Coordinator;

/// Largest n accepted through the API.
pub const MAX_PARTIES: usize = 16;

/// What session creation returns.
#[derive(Debug)]
pub struct Created {
    /// The session.
    pub row: SessionRow,
    /// Join tokens of non-server participants, by party id.
    pub device_tokens: Vec<(String, String)>,
    /// A signing session that uses a presignature from the pool.
    pub presignature: bool,
}

impl Coordinator {
    /// Creates a keygen session (`POST /keygen`) of `owner`: registered
    /// server parties and device parties (registered, or named for the
    /// first time). A policy goes into the descriptor; every party stores
    /// it with its share.
    pub async fn create_keygen(
        &self,
        owner: &Owner,
        req: KeygenRequest,
    ) -> Result<Created, ServiceError> {
        let KeygenRequest {
            threshold_n: n,
            threshold_t: t,
            participants,
            policy,
        } = req;
        let policy = policy.as_ref().map(policy_from_api).transpose()?;
        if participants.len() != usize::from(n) {
            return Err(bad(
                ErrorCode::InvalidParticipants,
                format!(
                    "threshold_n is {n} but {} participants were given",
                    participants.len()
                ),
            ));
        }
        if !(2..=MAX_PARTIES).contains(&usize::from(n)) || !(2..=n).contains(&t) {
            return Err(bad(
                ErrorCode::InvalidThreshold,
                format!("need 2 <= threshold_t <= threshold_n <= {MAX_PARTIES}"),
            ));
        }
        check_unique(&participants)?;
        let mut listed = Vec::new();
        let mut devices = Vec::new();
        for (k, p) in participants.iter().enumerate() {
            let position = u16::try_from(k).unwrap_or(u16::MAX);
            let (party_id, device_type, identity) = self.resolve_party(p).await?;
            if device_type.is_device() {
                devices.push(DeviceSlot {
                    position,
                    party_id: party_id.clone(),
                    device_type,
                    identity,
                });
            }
            listed.push(Participant {
                party_id,
                keygen_index: position,
                // Zero keys stand for device keys not presented yet; such a
                // descriptor is kept unsigned until every device has joined.
                identity: identity.unwrap_or(PartyPublicKey {
                    ed25519: [0; 32],
                    x25519: [0; 32],
                }),
            });
        }
        let mut descriptor = SessionDescriptor {
            version: DESCRIPTOR_VERSION,
            session_id: Uuid::new_v4(),
            kind: ProtocolKind::Keygen {
                generate_aux: false,
                policy: policy.clone(),
            },
            curve: CurveName::Secp256k1,
            threshold: t,
            parties: n,
            participants: listed,
            expires_at: 0,
            authorization: None,
        };
        let pending = devices.iter().any(|d| d.identity.is_none());
        let group_id = descriptor.group_id();
        // A device key never seen before makes a new party group: aux info
        // is generated (decided again when the descriptor is signed).
        let generate_aux = !self.config().insecure_test_aux
            && (pending || !self.store().aux_group_exists(&group_id).await?);
        descriptor.kind = ProtocolKind::Keygen {
            generate_aux,
            policy,
        };
        let timeout = if generate_aux {
            self.config().keygen_aux_timeout
        } else {
            self.config().keygen_timeout
        };
        descriptor.expires_at = now() + timeout.as_secs();
        let group_id = (!pending).then_some(group_id);
        self.start_session(owner, descriptor, None, group_id, generate_aux, devices)
            .await
    }

    /// Creates a signing session for `t` parties of an account
    /// (`POST /sign`): from a presignature when the request carries the
    /// message, the signers are server parties and the pool has one; a full
    /// signing otherwise. An account of another tenant than `owner`'s is
    /// `unknown_account`, as one that does not exist. For an account with a
    /// policy the descriptor carries the request's approvals, checked here
    /// first as every party will check them.
    pub async fn create_sign(
        &self,
        owner: &Owner,
        req: SignRequest,
    ) -> Result<Created, ServiceError> {
        let message = parse_message(&req)?;
        let SignRequest {
            account_id,
            message_hash,
            require_presignature,
            participants,
            request_id,
            not_after,
            approvals,
            ..
        } = req;
        if require_presignature && message.is_none() {
            return Err(bad(
                ErrorCode::InvalidMessage,
                "require_presignature needs the message, not only its hash",
            ));
        }
        let hash = hash_to_sign(message_hash.as_deref(), message.as_ref())?;
        let account = self
            .store()
            .account_of(&owner.tenant_id, &account_id)
            .await?
            .ok_or_else(super::unknown_account)?;
        check_unique(&participants)?;
        if participants.len() != usize::from(account.threshold_t) {
            return Err(bad(
                ErrorCode::InvalidParticipants,
                format!(
                    "account {} needs exactly {} signers, got {}",
                    account.account_id,
                    account.threshold_t,
                    participants.len()
                ),
            ));
        }
        let mut signers: Vec<&AccountParty> = Vec::new();
        for p in &participants {
            let ap = account
                .parties
                .iter()
                .find(|a| a.party_id == p.party_id)
                .ok_or_else(|| {
                    bad(
                        ErrorCode::UnknownParticipant,
                        format!("party {} holds no share of this account", p.party_id),
                    )
                })?;
            signers.push(ap);
        }
        signers.sort_by_key(|a| a.keygen_index);
        let mut devices = Vec::new();
        for (pos, a) in signers.iter().enumerate() {
            let device_type = self
                .store()
                .party(&a.party_id)
                .await?
                .map_or(DeviceType::Server, |p| p.device_type);
            if device_type.is_device() {
                devices.push(DeviceSlot {
                    position: u16::try_from(pos).unwrap_or(u16::MAX),
                    party_id: a.party_id.clone(),
                    device_type,
                    identity: Some(a.identity),
                });
            }
        }
        let session_id = Uuid::new_v4();
        // With the message itself (never a bare hash: ePrint 2021/1330) and
        // server signers only, a presignature from the pool makes it one
        // round; the claim is final even if the session then fails.
        let mut kind = ProtocolKind::Sign {
            account_id: account.account_id.clone(),
            message_hash: hash,
            derivation_path: vec![],
        };
        // A full signing names the approved message in its authorization;
        // an online one in its kind. Both are the same statement, so the
        // check below holds for either, and runs before a presignature is
        // claimed.
        let mut auth = match &account.policy {
            Some(policy) => {
                let mut auth = authorization(request_id.as_deref(), not_after, &approvals, policy)?;
                auth.message = message.as_ref().map(|(m, digest)| ApprovedMessage {
                    message: m.clone(),
                    digest: *digest,
                });
                let mut full =
                    self.signing_descriptor(session_id, kind.clone(), &account, &signers);
                full.authorization = Some(auth.clone());
                precheck(&full, policy)?;
                if self
                    .store()
                    .request_id_spent(&account.account_id, &auth.request_id)
                    .await?
                {
                    return Err(authz_error(&AuthzError::RequestIdReused));
                }
                Some(auth)
            }
            None => None,
        };
        let signer_set = signers_key(&signers);
        if let (Some((m, digest)), true) = (message, devices.is_empty()) {
            if let Some(presignature_id) = self
                .store()
                .claim_presignature(&account.account_id, &signer_set, session_id)
                .await?
            {
                self.want_refill();
                kind = ProtocolKind::OnlineSign {
                    account_id: account.account_id.clone(),
                    presignature_id,
                    message: m,
                    digest,
                };
            }
        }
        let online = matches!(kind, ProtocolKind::OnlineSign { .. });
        if require_presignature && !online {
            return Err(bad(
                ErrorCode::NoPresignature,
                "no presignature is ready for this signer set",
            ));
        }
        if online {
            if let Some(auth) = &mut auth {
                auth.message = None;
            }
        }
        let mut descriptor = self.signing_descriptor(session_id, kind, &account, &signers);
        descriptor.authorization = auth;
        if let (Some(policy), true) = (&account.policy, online) {
            precheck(&descriptor, policy)?;
        }
        let mut created = self
            .start_session(
                owner,
                descriptor,
                Some(hash.to_vec()),
                online.then_some(signer_set),
                false,
                devices,
            )
            .await?;
        created.presignature = online;
        Ok(created)
    }

    /// The descriptor of a signing-type session (full, presign, online) of
    /// `signers` (in keygen-index order) of `account`.
    fn signing_descriptor(
        &self,
        session_id: Uuid,
        kind: ProtocolKind,
        account: &Account,
        signers: &[&AccountParty],
    ) -> SessionDescriptor {
        SessionDescriptor {
            version: DESCRIPTOR_VERSION,
            session_id,
            kind,
            curve: CurveName::Secp256k1,
            threshold: account.threshold_t,
            parties: account.threshold_n,
            participants: signers
                .iter()
                .map(|a| Participant {
                    party_id: a.party_id.clone(),
                    keygen_index: a.keygen_index,
                    identity: a.identity,
                })
                .collect(),
            expires_at: now() + self.config().sign_timeout.as_secs(),
            authorization: None,
        }
    }

    /// Starts a presign session for one signer set of an account (server
    /// parties only); its presignature joins the pool when every signer has
    /// stored it.
    pub async fn create_presign(
        &self,
        account: &Account,
        signers: &[&AccountParty],
    ) -> Result<Created, ServiceError> {
        let kind = ProtocolKind::Presign {
            account_id: account.account_id.clone(),
        };
        let descriptor = self.signing_descriptor(Uuid::new_v4(), kind, account, signers);
        // The coordinator's own session, in its account's tenant.
        let owner = Owner {
            tenant_id: self
                .store()
                .account_tenant(&account.account_id)
                .await?
                .unwrap_or_else(|| mpc_api::admin::DEFAULT_TENANT.to_string()),
            quota: None,
        };
        self.start_session(
            &owner,
            descriptor,
            None,
            Some(signers_key(signers)),
            false,
            Vec::new(),
        )
        .await
    }

    /// A participant's party id, device type and identity (`None` for a
    /// device party that has not presented its key yet).
    async fn resolve_party(
        &self,
        p: &ParticipantRequest,
    ) -> Result<(String, DeviceType, Option<PartyPublicKey>), ServiceError> {
        let requested = p
            .device_type
            .as_deref()
            .map(parse_device_type)
            .transpose()?;
        let Some(rec) = self.store().party(&p.party_id).await? else {
            return match requested {
                Some(dt) if dt.is_device() => {
                    check_device_party_id(&p.party_id)?;
                    Ok((p.party_id.clone(), dt, None))
                }
                _ => Err(bad(
                    ErrorCode::UnknownParticipant,
                    format!("unknown party {}", p.party_id),
                )),
            };
        };
        if let Some(dt) = requested {
            if dt != rec.device_type {
                return Err(bad(
                    ErrorCode::InvalidParticipants,
                    format!(
                        "party {} is a {} party, not {}",
                        p.party_id,
                        rec.device_type.as_str(),
                        dt.as_str()
                    ),
                ));
            }
        }
        Ok((rec.party_id, rec.device_type, Some(rec.identity)))
    }
}
