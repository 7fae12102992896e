//! Creating sessions (descriptor, join tokens, router registration,
//! invitations) and applying party reports.

use axum::http::StatusCode;
use party_core::descriptor::{
    CurveName, MessageDigest, Participant, SessionDescriptor, SessionKind, SignedDescriptor,
    DESCRIPTOR_VERSION,
};
use party_core::identity::PartyPublicKey;
use party_core::signature::{ethereum_address, RecoverableSignature};
use party_core::wire::{Invitation, Report, ReportBody, SignedReport};
use rand_core::{OsRng, RngCore};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::AppError;
use crate::router_client::Slot;
use crate::store::{now, Account, AccountParty, DeviceSlot, NewSession, SessionRow};
use crate::Coordinator;

/// Largest n accepted through the API.
pub const MAX_PARTIES: usize = 16;

/// Device types of parties that join with a token instead of an invitation.
pub const DEVICE_TYPES: &[&str] = &["browser", "mobile", "desktop", "device"];

/// A participant as callers name it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantRequest {
    /// Registered party id.
    pub party_id: String,
    /// `server` (the default), or a device type (`browser`, `mobile`,
    /// `desktop`, `device`): a device party joins with the token returned in
    /// `join_tokens` and presents its identity key then.
    #[serde(default)]
    pub device_type: Option<String>,
    /// Free-form device id (informational).
    #[serde(default)]
    pub device_id: Option<String>,
}

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

/// Failed presign sessions of one signer set within
/// [`PRESIGN_FAILURE_WINDOW`] seconds that pause its refill.
const PRESIGN_FAILURES_TO_REST: i64 = 3;
/// Seconds the refill looks back for failed presign sessions.
const PRESIGN_FAILURE_WINDOW: u64 = 60;

fn new_token() -> (String, [u8; 32]) {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    let token = hex::encode(b);
    let hash = Sha256::digest(token.as_bytes()).into();
    (token, hash)
}

/// A signer set as stored: party ids in keygen-index order, comma-separated.
fn signers_key(signers: &[&AccountParty]) -> String {
    signers
        .iter()
        .map(|a| a.party_id.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Every `k`-element subset of `items`, each in the order of `items`.
fn subsets<'a, T>(items: &[&'a T], k: usize) -> Vec<Vec<&'a T>> {
    if k == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for (i, first) in items.iter().enumerate() {
        let rest = items.get(i + 1..).unwrap_or_default();
        for mut tail in subsets(rest, k - 1) {
            tail.insert(0, *first);
            out.push(tail);
        }
    }
    out
}

/// Parses a 32-byte hash given as 64 hex digits with an optional `0x`.
pub fn parse_hash(s: &str) -> Result<[u8; 32], AppError> {
    let h = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if h.len() != 64 {
        return Err(AppError::bad_request(
            "invalid_message_hash",
            format!(
                "message_hash must be 32 bytes (64 hex digits), got {} digits",
                h.len()
            ),
        ));
    }
    let bytes = hex::decode(h)
        .map_err(|_| AppError::bad_request("invalid_message_hash", "message_hash is not hex"))?;
    bytes
        .try_into()
        .map_err(|_| AppError::bad_request("invalid_message_hash", "message_hash must be 32 bytes"))
}

fn check_unique(participants: &[ParticipantRequest]) -> Result<(), AppError> {
    let mut seen = std::collections::BTreeSet::new();
    for p in participants {
        if !seen.insert(p.party_id.as_str()) {
            return Err(AppError::bad_request(
                "duplicate_participant",
                format!("participant {} is listed twice", p.party_id),
            ));
        }
    }
    Ok(())
}

impl Coordinator {
    /// Creates a keygen session for registered server parties.
    pub async fn create_keygen(
        &self,
        t: u16,
        n: u16,
        participants: Vec<ParticipantRequest>,
    ) -> Result<Created, AppError> {
        if participants.len() != usize::from(n) {
            return Err(AppError::bad_request(
                "invalid_participants",
                format!(
                    "threshold_n is {n} but {} participants were given",
                    participants.len()
                ),
            ));
        }
        if !(2..=MAX_PARTIES).contains(&usize::from(n)) || !(2..=n).contains(&t) {
            return Err(AppError::bad_request(
                "invalid_threshold",
                format!("need 2 <= threshold_t <= threshold_n <= {MAX_PARTIES}"),
            ));
        }
        check_unique(&participants)?;
        let mut listed = Vec::new();
        let mut devices = Vec::new();
        for (k, p) in participants.iter().enumerate() {
            let position = u16::try_from(k).unwrap_or(u16::MAX);
            let (party_id, device_type, identity) = self.resolve_party(p).await?;
            if device_type != "server" {
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
            kind: SessionKind::Keygen {
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
        descriptor.kind = SessionKind::Keygen { generate_aux };
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

    /// Creates a signing session for `t` parties of an account.
    pub async fn create_sign(
        &self,
        account_id: &str,
        message_hash: Option<&str>,
        message: Option<(Vec<u8>, MessageDigest)>,
        require_presignature: bool,
        participants: Vec<ParticipantRequest>,
    ) -> Result<Created, AppError> {
        if require_presignature && message.is_none() {
            return Err(AppError::bad_request(
                "invalid_message",
                "require_presignature needs the message, not only its hash",
            ));
        }
        let hash = match (message_hash, &message) {
            (Some(h), Some((m, digest))) => {
                let hash = parse_hash(h)?;
                if hash != digest.hash(m) {
                    return Err(AppError::bad_request(
                        "invalid_message_hash",
                        "message_hash is not the digest of message",
                    ));
                }
                hash
            }
            (Some(h), None) => parse_hash(h)?,
            (None, Some((m, digest))) => digest.hash(m),
            (None, None) => {
                return Err(AppError::bad_request(
                    "invalid_message_hash",
                    "give message_hash, or message (hex) with its digest",
                ))
            }
        };
        let account = self
            .store()
            .account(account_id)
            .await?
            .ok_or_else(|| AppError::not_found("account"))?;
        check_unique(&participants)?;
        if participants.len() != usize::from(account.threshold_t) {
            return Err(AppError::bad_request(
                "invalid_participants",
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
                    AppError::bad_request(
                        "unknown_participant",
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
                .map(|p| p.device_type)
                .unwrap_or_else(|| "server".into());
            if device_type != "server" {
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
        let mut kind = SessionKind::Sign {
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
                kind = SessionKind::OnlineSign {
                    account_id: account.account_id.clone(),
                    presignature_id,
                    message: m,
                    digest,
                };
            }
        }
        let online = matches!(kind, SessionKind::OnlineSign { .. });
        if require_presignature && !online {
            return Err(AppError::new(
                StatusCode::CONFLICT,
                "no_presignature",
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
        kind: SessionKind,
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
    ) -> Result<Created, AppError> {
        let kind = SessionKind::Presign {
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

    /// Keeps `presign_pool` presignatures ready for every signer set of every
    /// account held by server parties only, starting at most
    /// `presign_concurrency` presign sessions at a time (over all
    /// coordinator instances, counted in the database).
    pub async fn refill_presignatures(&self) -> Result<(), AppError> {
        let target = i64::try_from(self.presign_pool()).unwrap_or(0);
        let max_running = i64::try_from(self.config().presign_concurrency).unwrap_or(0);
        if target == 0 || max_running == 0 {
            return Ok(());
        }
        let mut running = self.store().running_presigns().await?;
        for account in self.store().accounts(1000).await? {
            if running >= max_running {
                return Ok(());
            }
            let mut servers_only = true;
            for p in &account.parties {
                let device_type = self
                    .store()
                    .party(&p.party_id)
                    .await?
                    .map(|r| r.device_type);
                servers_only &= device_type.as_deref() == Some("server");
            }
            if !servers_only {
                continue;
            }
            let mut parties: Vec<&AccountParty> = account.parties.iter().collect();
            parties.sort_by_key(|p| p.keygen_index);
            for set in subsets(&parties, usize::from(account.threshold_t)) {
                if running >= max_running {
                    return Ok(());
                }
                let key = signers_key(&set);
                let (available, in_flight) = self
                    .store()
                    .presignature_stock(&account.account_id, &key)
                    .await?;
                // A signer set whose presign sessions keep failing (a party
                // down, a share missing) rests a while instead of failing
                // one session after another.
                if available + in_flight < target
                    && self
                        .store()
                        .recent_presign_failures(
                            &account.account_id,
                            &key,
                            now().saturating_sub(PRESIGN_FAILURE_WINDOW),
                        )
                        .await?
                        < PRESIGN_FAILURES_TO_REST
                {
                    self.create_presign(&account, &set).await?;
                    running += 1;
                }
            }
        }
        Ok(())
    }

    /// A participant's party id, device type and identity (`None` for a
    /// device party that has not presented its key yet).
    async fn resolve_party(
        &self,
        p: &ParticipantRequest,
    ) -> Result<(String, String, Option<PartyPublicKey>), AppError> {
        if let Some(dt) = &p.device_type {
            if dt != "server" && !DEVICE_TYPES.contains(&dt.as_str()) {
                return Err(AppError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unsupported_device_type",
                    format!(
                        "device_type must be server or one of {}",
                        DEVICE_TYPES.join(", ")
                    ),
                ));
            }
        }
        let Some(rec) = self.store().party(&p.party_id).await? else {
            return match p.device_type.as_deref() {
                Some(dt) if dt != "server" => {
                    check_device_party_id(&p.party_id)?;
                    Ok((p.party_id.clone(), dt.to_string(), None))
                }
                _ => Err(AppError::bad_request(
                    "unknown_participant",
                    format!("unknown party {}", p.party_id),
                )),
            };
        };
        if let Some(dt) = &p.device_type {
            if *dt != rec.device_type {
                return Err(AppError::bad_request(
                    "invalid_participants",
                    format!(
                        "party {} is a {} party, not {dt}",
                        p.party_id, rec.device_type
                    ),
                ));
            }
        }
        Ok((rec.party_id, rec.device_type, Some(rec.identity)))
    }

    async fn start_session(
        &self,
        descriptor: SessionDescriptor,
        message_hash: Option<Vec<u8>>,
        group_id: Option<String>,
        generate_aux: bool,
        devices: Vec<DeviceSlot>,
    ) -> Result<Created, AppError> {
        let session_id = descriptor.session_id;
        let expires_at = descriptor.expires_at;
        let kind = match descriptor.kind {
            SessionKind::Keygen { .. } => "keygen",
            SessionKind::Presign { .. } => "presign",
            SessionKind::Sign { .. } | SessionKind::OnlineSign { .. } => "sign",
        };
        let account_id = descriptor.kind.account_id().map(str::to_owned);
        let participants = descriptor.participants.clone();
        let (threshold_t, threshold_n) = (descriptor.threshold, descriptor.parties);
        let pending = devices.iter().any(|d| d.identity.is_none());
        let (descriptor_json, pending_json, signed) = if pending {
            let unsigned = serde_json::to_string(&descriptor).map_err(AppError::internal)?;
            (String::new(), Some(unsigned), None)
        } else {
            let signed = descriptor
                .sign(&self.config().signing_key)
                .map_err(|e| AppError::bad_request("invalid_session", e.to_string()))?;
            let json = serde_json::to_string(&signed).map_err(AppError::internal)?;
            (json, None, Some(signed))
        };
        let tokens: Vec<(String, [u8; 32])> = participants.iter().map(|_| new_token()).collect();
        let device_type_at = |pos: usize| {
            devices
                .iter()
                .find(|d| usize::from(d.position) == pos)
                .map(|d| d.device_type.clone())
                .unwrap_or_else(|| "server".to_string())
        };
        let row = SessionRow {
            session_id,
            kind: kind.into(),
            status: "waiting".into(),
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
                .map(|(pos, (t, _))| (device_type_at(pos) == "server").then(|| t.clone()))
                .collect();
            self.launch(&signed, &token_hashes, &server_tokens).await?;
        }
        tracing::info!(session_id = %session_id, kind, generate_aux, pending, "session created");
        Ok(Created {
            row,
            device_tokens,
            presignature: false,
        })
    }

    /// Registers a signed session with the router and invites its server
    /// parties (`server_tokens[pos]` is `Some` for a server party). On failure
    /// the session is failed and 503 returned.
    async fn launch(
        &self,
        signed: &SignedDescriptor,
        token_hashes: &[[u8; 32]],
        server_tokens: &[Option<String>],
    ) -> Result<(), AppError> {
        let session_id = signed.descriptor.session_id;
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
            return Err(AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "router_unavailable",
                "router unavailable",
            ));
        }
        for (p, token) in participants.iter().zip(server_tokens) {
            let Some(token) = token else { continue };
            let invitation = Invitation {
                descriptor: signed.clone(),
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
                self.router().close_session(session_id);
                return Err(AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "router_unavailable",
                    "router unavailable",
                ));
            }
        }
        Ok(())
    }

    /// Applies a party's signed report.
    pub async fn apply_report(&self, signed: SignedReport) -> Result<(), AppError> {
        let claimed = signed
            .peek()
            .ok_or_else(|| AppError::bad_request("invalid_report", "report is not valid JSON"))?;
        let session = self
            .store()
            .session(claimed.session_id)
            .await?
            .ok_or_else(|| AppError::not_found("session"))?;
        if session.descriptor.is_empty() {
            return Err(AppError::new(
                StatusCode::CONFLICT,
                "session_not_started",
                "the session is waiting for its device parties",
            ));
        }
        let descriptor: party_core::descriptor::SignedDescriptor =
            serde_json::from_str(&session.descriptor).map_err(AppError::internal)?;
        let participant = descriptor
            .descriptor
            .participants
            .get(usize::from(claimed.position))
            .ok_or_else(|| AppError::bad_request("invalid_report", "no such position"))?;
        let report: Report = signed.verify(&participant.identity).map_err(|_| {
            AppError::new(
                StatusCode::UNAUTHORIZED,
                "bad_signature",
                "report signature does not verify",
            )
        })?;
        let id = report.session_id;
        let pos = report.position;
        if session.status != "waiting" && session.status != "in_progress" {
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
                        &serde_json::json!({ "stage": stage, "round": round, "percent": percent }),
                    )
                    .await?;
            }
            ReportBody::KeygenResult { public_key } => {
                let results = self
                    .store()
                    .set_party_result(
                        id,
                        pos,
                        &serde_json::json!({ "public_key": hex::encode(public_key) }),
                    )
                    .await?;
                self.maybe_complete_keygen(&session, &descriptor.descriptor, results)
                    .await?;
            }
            ReportBody::Signature { signature } => {
                self.on_signature(&session, pos, signature).await?;
            }
            ReportBody::PresignatureStored => {
                let results = self
                    .store()
                    .set_party_result(id, pos, &serde_json::json!({ "presignature": "stored" }))
                    .await?;
                if session.kind == "presign" && results.iter().all(Option::is_some) {
                    let account_id = session.account_id.clone().unwrap_or_default();
                    let signers = session.group_id.clone().unwrap_or_default();
                    if self
                        .store()
                        .complete_presign(id, &account_id, &signers)
                        .await?
                    {
                        self.router().close_session(id);
                    }
                }
            }
            ReportBody::Failed { reason, blamed } => {
                let blamed_party = blamed
                    .and_then(|b| descriptor.descriptor.participants.get(usize::from(b)))
                    .map(|p| p.party_id.clone());
                let reason = format!("{} reported: {reason}", participant.party_id);
                if self
                    .store()
                    .fail(id, &reason, blamed_party.as_deref())
                    .await?
                {
                    tracing::warn!(session_id = %id, %reason, "session failed");
                    self.router().close_session(id);
                }
            }
        }
        Ok(())
    }

    async fn maybe_complete_keygen(
        &self,
        session: &SessionRow,
        d: &SessionDescriptor,
        results: Vec<Option<serde_json::Value>>,
    ) -> Result<(), AppError> {
        if results.iter().any(Option::is_none) {
            return Ok(());
        }
        let keys: Vec<&str> = results
            .iter()
            .flatten()
            .filter_map(|r| r["public_key"].as_str())
            .collect();
        let id = session.session_id;
        if keys.len() != results.len() || keys.iter().any(|k| *k != keys[0]) {
            if self
                .store()
                .fail(id, "parties reported different public keys", None)
                .await?
            {
                self.router().close_session(id);
            }
            return Ok(());
        }
        let pk = hex::decode(keys[0]).map_err(AppError::internal)?;
        let Ok(address) = ethereum_address(&pk) else {
            self.store()
                .fail(id, "reported public key is not a valid point", None)
                .await?;
            return Ok(());
        };
        let account = Account {
            account_id: id.to_string(),
            public_key: keys[0].to_string(),
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
            self.router().close_session(id);
        }
        Ok(())
    }

    async fn on_signature(
        &self,
        session: &SessionRow,
        pos: u16,
        sig: RecoverableSignature,
    ) -> Result<(), AppError> {
        let id = session.session_id;
        let account_id = session.account_id.clone().unwrap_or_default();
        let account = self
            .store()
            .account(&account_id)
            .await?
            .ok_or_else(|| AppError::internal("sign session without account"))?;
        let hash: [u8; 32] = session
            .message_hash
            .clone()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| AppError::internal("sign session without hash"))?;
        let pk = hex::decode(&account.public_key).map_err(AppError::internal)?;
        // Verify independently of the party: same r, s must verify and v must
        // recover the account key.
        let checked = RecoverableSignature::from_parts(sig.r, sig.s, &hash, &pk);
        let valid = matches!(&checked, Ok(c) if c.v == sig.v && c.s == sig.s);
        let results = self
            .store()
            .set_party_result(
                id,
                pos,
                &serde_json::json!({ "signature": sig, "valid": valid }),
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
            if self
                .store()
                .fail(
                    id,
                    "a party reported an invalid signature",
                    blamed.as_deref(),
                )
                .await?
            {
                self.router().close_session(id);
            }
            return Ok(());
        }
        if results.iter().any(Option::is_none) {
            return Ok(());
        }
        let all_same = results
            .iter()
            .flatten()
            .all(|r| r["signature"] == serde_json::json!(sig));
        if !all_same {
            if self
                .store()
                .fail(id, "parties reported different signatures", None)
                .await?
            {
                self.router().close_session(id);
            }
            return Ok(());
        }
        let result =
            serde_json::json!({ "signature": signature_json(&sig), "account_id": account_id });
        if self.store().complete(id, &result).await? {
            tracing::info!(session_id = %id, "signing completed");
            self.router().close_session(id);
        }
        Ok(())
    }
}

/// The signature in all the forms callers use.
pub fn signature_json(sig: &RecoverableSignature) -> serde_json::Value {
    serde_json::json!({
        "r": format!("0x{}", hex::encode(sig.r)),
        "s": format!("0x{}", hex::encode(sig.s)),
        "v": sig.v,
        "der": hex::encode(sig.to_der()),
        "signature": sig.to_hex65(),
    })
}

// ---------------------------------------------------------------------------
// Device parties (issue #4): the token-authenticated join.
// ---------------------------------------------------------------------------

/// A device party id: 1..=128 characters of `[A-Za-z0-9._-]`.
fn check_device_party_id(id: &str) -> Result<(), AppError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request(
            "invalid_party_id",
            "a device party_id must be 1..128 characters of A-Z a-z 0-9 . _ -",
        ))
    }
}

/// A device's join request: its token, its identity, and the identity's
/// signature over [`party_core::wire::device_join_message`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceJoin {
    /// The join token from `join_tokens`.
    pub join_token: String,
    /// The device's identity keys.
    pub identity: PartyPublicKey,
    /// Ed25519 signature by the identity (proof of possession).
    #[serde(with = "hex::serde")]
    pub signature: [u8; 64],
}

/// The answer to a device join.
#[derive(Debug)]
pub enum Joined {
    /// The signed descriptor and the device's position in it.
    Ready {
        /// Signed descriptor.
        descriptor: Box<SignedDescriptor>,
        /// The device's position.
        position: u16,
    },
    /// Other device parties of the session have not joined yet; ask again.
    WaitingForDevices,
}

impl Coordinator {
    /// A device presents its join token and identity: the token's slot is
    /// bound to the identity (and the party id to the key, on first use);
    /// once every device slot of a pending keygen is bound the descriptor is
    /// signed, the session registered with the router and the server parties
    /// invited. Idempotent for the same identity.
    pub async fn device_join(&self, session_id: Uuid, req: DeviceJoin) -> Result<Joined, AppError> {
        use subtle::ConstantTimeEq as _;
        let unauthorized = || {
            AppError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "join token is not valid for this session",
            )
        };
        let session = self
            .store()
            .session(session_id)
            .await?
            .ok_or_else(unauthorized)?;
        let hash: [u8; 32] = Sha256::digest(req.join_token.as_bytes()).into();
        // Compare against every device slot, in constant time each.
        let mut found = None;
        for row in self.store().device_slots(session_id).await? {
            if bool::from(row.token_sha256.as_slice().ct_eq(&hash)) {
                found = Some(row.slot);
            }
        }
        let slot = found.ok_or_else(unauthorized)?;
        let message = party_core::wire::device_join_message(&session_id, &req.join_token);
        req.identity.verify(&message, &req.signature).map_err(|_| {
            AppError::new(
                StatusCode::UNAUTHORIZED,
                "bad_signature",
                "the signature does not prove possession of the identity key",
            )
        })?;
        if !matches!(session.status.as_str(), "waiting" | "in_progress")
            || session.expires_at <= now()
        {
            return Err(AppError::new(
                StatusCode::GONE,
                "session_closed",
                format!("the session is {}", session.status),
            ));
        }
        self.store()
            .bind_device(session_id, &slot, req.identity)
            .await
            .map_err(|e| match e {
                crate::store::BindError::SlotBound => AppError::new(
                    StatusCode::CONFLICT,
                    "token_bound",
                    "this join token is bound to another identity",
                ),
                crate::store::BindError::PartyBound => AppError::new(
                    StatusCode::CONFLICT,
                    "party_bound",
                    format!("party {} is bound to another identity key", slot.party_id),
                ),
                crate::store::BindError::KeyInUse => AppError::new(
                    StatusCode::CONFLICT,
                    "identity_in_use",
                    "this identity key belongs to another party",
                ),
                crate::store::BindError::Db(e) => AppError::internal(e),
            })?;
        if session.descriptor.is_empty() {
            self.maybe_launch_pending(session_id).await?;
        }
        let session = self
            .store()
            .session(session_id)
            .await?
            .ok_or_else(|| AppError::internal("session vanished"))?;
        if session.descriptor.is_empty() {
            return Ok(Joined::WaitingForDevices);
        }
        if session.status == "failed" {
            return Err(AppError::new(
                StatusCode::GONE,
                "session_closed",
                "the session failed",
            ));
        }
        let descriptor: SignedDescriptor =
            serde_json::from_str(&session.descriptor).map_err(AppError::internal)?;
        Ok(Joined::Ready {
            descriptor: Box::new(descriptor),
            position: slot.position,
        })
    }

    /// Signs and launches a pending keygen once all its device slots are bound.
    async fn maybe_launch_pending(&self, session_id: Uuid) -> Result<(), AppError> {
        let slots = self.store().device_slots(session_id).await?;
        if slots.iter().any(|d| d.slot.identity.is_none()) {
            return Ok(());
        }
        let Some(pending) = self.store().pending_descriptor(session_id).await? else {
            return Ok(());
        };
        let mut descriptor: SessionDescriptor =
            serde_json::from_str(&pending).map_err(AppError::internal)?;
        for d in &slots {
            if let (Some(p), Some(identity)) = (
                descriptor
                    .participants
                    .get_mut(usize::from(d.slot.position)),
                d.slot.identity,
            ) {
                p.identity = identity;
            }
        }
        let group_id = descriptor.group_id();
        let generate_aux =
            !self.config().insecure_test_aux && !self.store().aux_group_exists(&group_id).await?;
        descriptor.kind = SessionKind::Keygen { generate_aux };
        let signed = match descriptor.sign(&self.config().signing_key) {
            Ok(s) => s,
            Err(e) => {
                // e.g. a device presented a server party's key.
                self.store()
                    .fail(session_id, &format!("invalid session: {e}"), None)
                    .await?;
                return Err(AppError::new(
                    StatusCode::CONFLICT,
                    "invalid_session",
                    e.to_string(),
                ));
            }
        };
        let json = serde_json::to_string(&signed).map_err(AppError::internal)?;
        if !self
            .store()
            .launch_pending(session_id, &json, &group_id, generate_aux)
            .await?
        {
            return Ok(());
        }
        let participants = self.store().participants(session_id).await?;
        let mut hashes = self.store().session_token_hashes(session_id).await?;
        let mut server_tokens: Vec<Option<String>> = participants.iter().map(|_| None).collect();
        // Server parties of a pending session get fresh tokens now: their
        // original tokens were never sent anywhere.
        for p in participants.iter().filter(|p| p.device_type == "server") {
            let (token, hash) = new_token();
            self.store()
                .set_token_hash(session_id, p.position, &hash)
                .await?;
            if let Some(h) = hashes.get_mut(usize::from(p.position)) {
                *h = hash;
            }
            if let Some(t) = server_tokens.get_mut(usize::from(p.position)) {
                *t = Some(token);
            }
        }
        tracing::info!(%session_id, generate_aux, "device keys bound; descriptor signed");
        self.launch(&signed, &hashes, &server_tokens).await
    }
}
