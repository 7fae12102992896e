//! Creating sessions (descriptor, join tokens, router registration,
//! invitations) and applying party reports.

use axum::http::StatusCode;
use party_core::descriptor::{
    CurveName, Participant, SessionDescriptor, SessionKind, DESCRIPTOR_VERSION,
};
use party_core::signature::{ethereum_address, RecoverableSignature};
use party_core::wire::{Invitation, Report, ReportBody, SignedReport};
use rand_core::{OsRng, RngCore};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::AppError;
use crate::router_client::Slot;
use crate::store::{now, Account, AccountParty, NewSession, SessionRow};
use crate::Coordinator;

/// Largest n accepted through the API.
pub const MAX_PARTIES: usize = 16;

/// A participant as callers name it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantRequest {
    /// Registered party id.
    pub party_id: String,
    /// `server` (browser/device parties arrive with their own join flow).
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
}

fn new_token() -> (String, [u8; 32]) {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    let token = hex::encode(b);
    let hash = Sha256::digest(token.as_bytes()).into();
    (token, hash)
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
        for (k, p) in participants.iter().enumerate() {
            let rec = self.resolve_party(p).await?;
            listed.push(Participant {
                party_id: rec.party_id,
                keygen_index: u16::try_from(k).unwrap_or(u16::MAX),
                identity: rec.identity,
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
        let group_id = descriptor.group_id();
        let generate_aux =
            !self.config().insecure_test_aux && !self.store().aux_group_exists(&group_id).await?;
        descriptor.kind = SessionKind::Keygen { generate_aux };
        let timeout = if generate_aux {
            self.config().keygen_aux_timeout
        } else {
            self.config().keygen_timeout
        };
        descriptor.expires_at = now() + timeout.as_secs();
        self.start_session(descriptor, None, Some(group_id), generate_aux)
            .await
    }

    /// Creates a signing session for `t` parties of an account.
    pub async fn create_sign(
        &self,
        account_id: &str,
        message_hash: &str,
        participants: Vec<ParticipantRequest>,
    ) -> Result<Created, AppError> {
        let hash = parse_hash(message_hash)?;
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
        let descriptor = SessionDescriptor {
            version: DESCRIPTOR_VERSION,
            session_id: Uuid::new_v4(),
            kind: SessionKind::Sign {
                account_id: account.account_id.clone(),
                message_hash: hash,
                derivation_path: vec![],
            },
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
        };
        self.start_session(descriptor, Some(hash.to_vec()), None, false)
            .await
    }

    async fn resolve_party(
        &self,
        p: &ParticipantRequest,
    ) -> Result<crate::store::PartyRecord, AppError> {
        let rec = self.store().party(&p.party_id).await?.ok_or_else(|| {
            AppError::bad_request(
                "unknown_participant",
                format!("unknown party {}", p.party_id),
            )
        })?;
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
        if rec.device_type != "server" {
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unsupported_device_type",
                "only server parties can take part in sessions created through this API",
            ));
        }
        Ok(rec)
    }

    async fn start_session(
        &self,
        descriptor: SessionDescriptor,
        message_hash: Option<Vec<u8>>,
        group_id: Option<String>,
        generate_aux: bool,
    ) -> Result<Created, AppError> {
        let session_id = descriptor.session_id;
        let expires_at = descriptor.expires_at;
        let kind = match descriptor.kind {
            SessionKind::Keygen { .. } => "keygen",
            _ => "sign",
        };
        let account_id = descriptor.kind.account_id().map(str::to_owned);
        let participants = descriptor.participants.clone();
        let signed = descriptor
            .sign(&self.config().signing_key)
            .map_err(|e| AppError::bad_request("invalid_session", e.to_string()))?;
        let tokens: Vec<(String, [u8; 32])> = participants.iter().map(|_| new_token()).collect();
        let row = SessionRow {
            session_id,
            kind: kind.into(),
            status: "waiting".into(),
            threshold_t: signed.descriptor.threshold,
            threshold_n: signed.descriptor.parties,
            account_id,
            message_hash,
            descriptor: serde_json::to_string(&signed).map_err(AppError::internal)?,
            group_id,
            generate_aux,
            result: None,
            error: None,
            blamed_party: None,
            created_at: now(),
            expires_at,
        };
        self.store()
            .insert_session(NewSession {
                row: &row,
                participants: participants
                    .iter()
                    .zip(&tokens)
                    .enumerate()
                    .map(|(pos, (p, (_, h)))| {
                        (
                            u16::try_from(pos).unwrap_or(u16::MAX),
                            p.party_id.clone(),
                            "server".to_string(),
                            *h,
                        )
                    })
                    .collect(),
            })
            .await?;
        let slots = participants
            .iter()
            .zip(&tokens)
            .enumerate()
            .map(|(pos, (p, (_, h)))| Slot {
                position: u16::try_from(pos).unwrap_or(u16::MAX),
                token_sha256: hex::encode(h),
                identity: Some(p.identity),
            })
            .collect();
        if let Err(e) = self
            .router()
            .register_session(session_id, expires_at, slots)
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
        for (p, (token, _)) in participants.iter().zip(&tokens) {
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
        tracing::info!(session_id = %session_id, kind, generate_aux, "session created");
        Ok(Created {
            row,
            device_tokens: Vec::new(),
        })
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
            ReportBody::PresignatureStored => {}
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
