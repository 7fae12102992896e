//! Session creation: request validation, descriptors, join tokens, and the
//! rows of every session kind (keygen, sign, presign).

use mpc_api::error::ErrorCode;
use mpc_api::rest::{
    Digest, KeygenRequest, Participant as ParticipantRequest, SessionKind, SessionStatus,
    SignRequest,
};
use party_core::descriptor::{
    CurveName, MessageDigest, Participant, SessionDescriptor, SessionKind as ProtocolKind,
    DESCRIPTOR_VERSION,
};
use party_core::identity::PartyPublicKey;
use rand_core::{OsRng, RngCore};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::pool::signers_key;
use super::{parse_device_type, ServiceError};
use crate::store::{now, Account, AccountParty, DeviceSlot, DeviceType, NewSession, SessionRow};
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

/// A new join token and its SHA-256.
pub(super) fn new_token() -> (String, [u8; 32]) {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    let token = hex::encode(b);
    let hash = Sha256::digest(token.as_bytes()).into();
    (token, hash)
}

fn bad(code: ErrorCode, message: impl Into<String>) -> ServiceError {
    ServiceError::new(code, message)
}

/// Parses a 32-byte hash given as 64 hex digits with an optional `0x`.
pub fn parse_hash(s: &str) -> Result<[u8; 32], ServiceError> {
    let h = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if h.len() != 64 {
        return Err(bad(
            ErrorCode::InvalidMessageHash,
            format!(
                "message_hash must be 32 bytes (64 hex digits), got {} digits",
                h.len()
            ),
        ));
    }
    let bytes = hex::decode(h)
        .map_err(|_| bad(ErrorCode::InvalidMessageHash, "message_hash is not hex"))?;
    bytes.try_into().map_err(|_| {
        bad(
            ErrorCode::InvalidMessageHash,
            "message_hash must be 32 bytes",
        )
    })
}

/// The message of a sign request (hex, optional `0x`) with its digest.
fn parse_message(req: &SignRequest) -> Result<Option<(Vec<u8>, MessageDigest)>, ServiceError> {
    match &req.message {
        Some(m) => {
            let bytes = hex::decode(m.strip_prefix("0x").unwrap_or(m))
                .map_err(|_| bad(ErrorCode::InvalidMessage, "message must be hex"))?;
            if bytes.is_empty() {
                return Err(bad(ErrorCode::InvalidMessage, "message must not be empty"));
            }
            let digest = match req.digest.unwrap_or_default() {
                Digest::Keccak256 => MessageDigest::Keccak256,
                Digest::Sha256 => MessageDigest::Sha256,
            };
            Ok(Some((bytes, digest)))
        }
        None if req.digest.is_some() => {
            Err(bad(ErrorCode::InvalidMessage, "digest needs a message"))
        }
        None => Ok(None),
    }
}

fn check_unique(participants: &[ParticipantRequest]) -> Result<(), ServiceError> {
    let mut seen = std::collections::BTreeSet::new();
    for p in participants {
        if !seen.insert(p.party_id.as_str()) {
            return Err(bad(
                ErrorCode::DuplicateParticipant,
                format!("participant {} is listed twice", p.party_id),
            ));
        }
    }
    Ok(())
}

/// A device party id: 1..=128 characters of `[A-Za-z0-9._-]`.
fn check_device_party_id(id: &str) -> Result<(), ServiceError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(bad(
            ErrorCode::InvalidPartyId,
            "a device party_id must be 1..128 characters of A-Z a-z 0-9 . _ -",
        ))
    }
}

impl Coordinator {
    /// Creates a keygen session (`POST /keygen`): registered server parties
    /// and device parties (registered, or named for the first time).
    pub async fn create_keygen(&self, req: KeygenRequest) -> Result<Created, ServiceError> {
        let KeygenRequest {
            threshold_n: n,
            threshold_t: t,
            participants,
        } = req;
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
            },
            curve: CurveName::Secp256k1,
            threshold: t,
            parties: n,
            participants: listed,
            expires_at: 0,
        };
        let pending = devices.iter().any(|d| d.identity.is_none());
        let group_id = descriptor.group_id();
        // A device key never seen before makes a new party group: aux info
        // is generated (decided again when the descriptor is signed).
        let generate_aux = !self.config().insecure_test_aux
            && (pending || !self.store().aux_group_exists(&group_id).await?);
        descriptor.kind = ProtocolKind::Keygen { generate_aux };
        let timeout = if generate_aux {
            self.config().keygen_aux_timeout
        } else {
            self.config().keygen_timeout
        };
        descriptor.expires_at = now() + timeout.as_secs();
        let group_id = (!pending).then_some(group_id);
        self.start_session(descriptor, None, group_id, generate_aux, devices)
            .await
    }

    /// Creates a signing session for `t` parties of an account
    /// (`POST /sign`): from a presignature when the request carries the
    /// message, the signers are server parties and the pool has one; a full
    /// signing otherwise.
    pub async fn create_sign(&self, req: SignRequest) -> Result<Created, ServiceError> {
        let message = parse_message(&req)?;
        let SignRequest {
            account_id,
            message_hash,
            require_presignature,
            participants,
            ..
        } = req;
        if require_presignature && message.is_none() {
            return Err(bad(
                ErrorCode::InvalidMessage,
                "require_presignature needs the message, not only its hash",
            ));
        }
        let hash = match (message_hash.as_deref(), &message) {
            (Some(h), Some((m, digest))) => {
                let hash = parse_hash(h)?;
                if hash != digest.hash(m) {
                    return Err(bad(
                        ErrorCode::InvalidMessageHash,
                        "message_hash is not the digest of message",
                    ));
                }
                hash
            }
            (Some(h), None) => parse_hash(h)?,
            (None, Some((m, digest))) => digest.hash(m),
            (None, None) => {
                return Err(bad(
                    ErrorCode::InvalidMessageHash,
                    "give message_hash, or message (hex) with its digest",
                ))
            }
        };
        let account = self
            .store()
            .account(&account_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("account"))?;
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
        let descriptor = self.signing_descriptor(session_id, kind, &account, &signers);
        let mut created = self
            .start_session(
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
        self.start_session(
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

    /// Stores a new session (signed, or pending device keys) and launches a
    /// signed one.
    async fn start_session(
        &self,
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
        };
        let account_id = descriptor.kind.account_id().map(str::to_owned);
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
            blamed_party: None,
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
        };
        if devices.is_empty() {
            self.store().insert_session(new).await?;
        } else {
            self.store()
                .insert_device_session(new, &devices, pending_json.as_deref())
                .await?;
        }
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
