//! Store rows as the API's response types.

use mpc_api::rest::{
    AccountParty, AccountView, DeviceType, Progress, SessionCreated, SessionFailure, SessionKind,
    SessionParty, SessionResult, SessionStatus, SessionView, SigningMode,
};

use crate::sessions::Created;
use crate::store::{Account, ParticipantRow, SessionRow};

fn kind(row: &SessionRow) -> SessionKind {
    SessionKind::parse(&row.kind).unwrap_or(SessionKind::Sign)
}

fn status(row: &SessionRow) -> SessionStatus {
    SessionStatus::parse(&row.status).unwrap_or(SessionStatus::Failed)
}

fn result(row: &SessionRow) -> Option<SessionResult> {
    row.result
        .as_ref()
        .and_then(|r| serde_json::from_value(r.clone()).ok())
}

fn failure(row: &SessionRow) -> Option<SessionFailure> {
    row.error.as_ref().map(|e| SessionFailure {
        reason: e.clone(),
        blamed_party: row.blamed_party.clone(),
    })
}

/// The answer to a session creation.
pub fn created(c: &Created) -> SessionCreated {
    let kind = kind(&c.row);
    SessionCreated {
        session_id: c.row.session_id,
        session_type: kind,
        threshold_n: c.row.threshold_n,
        threshold_t: c.row.threshold_t,
        status: status(&c.row),
        account_id: c.row.account_id.clone(),
        join_tokens: c.device_tokens.iter().cloned().collect(),
        signing: (kind == SessionKind::Sign).then_some(if c.presignature {
            SigningMode::Presignature
        } else {
            SigningMode::Full
        }),
        expires_at: c.row.expires_at,
        result: None,
        error: None,
        signature: None,
        public_key: None,
        address: None,
    }
}

/// `created` once its session has ended: the status, and the result also at
/// the top level.
pub fn finished(mut created: SessionCreated, row: &SessionRow) -> SessionCreated {
    created.status = status(row);
    created.account_id = row.account_id.clone().or(created.account_id);
    created.result = result(row);
    created.error = failure(row);
    if let Some(r) = &created.result {
        created.signature = r.signature.clone();
        created.public_key = r.public_key.clone();
        created.address = r.address.clone();
        if r.account_id.is_some() {
            created.account_id = r.account_id.clone();
        }
    }
    created
}

/// Whether a session row has ended.
pub fn is_terminal(row: &SessionRow) -> bool {
    status(row).is_terminal()
}

/// `GET /sessions/{id}`.
pub fn session(s: &SessionRow, parts: &[ParticipantRow]) -> SessionView {
    SessionView {
        session_id: s.session_id,
        session_type: kind(s),
        status: status(s),
        threshold_t: s.threshold_t,
        threshold_n: s.threshold_n,
        total_parties: parts.len(),
        joined_parties: parts.iter().filter(|p| p.joined).count(),
        completed_parties: parts.iter().filter(|p| p.result.is_some()).count(),
        account_id: s.account_id.clone(),
        generates_aux_info: s.generate_aux,
        created_at: s.created_at,
        expires_at: s.expires_at,
        parties: parts
            .iter()
            .map(|p| SessionParty {
                party_id: p.party_id.clone(),
                position: p.position,
                device_type: DeviceType::parse(&p.device_type).unwrap_or(DeviceType::Device),
                joined: p.joined,
                done: p.result.is_some(),
                progress: p
                    .progress
                    .as_ref()
                    .and_then(|v| serde_json::from_value::<Progress>(v.clone()).ok()),
            })
            .collect(),
        message_hash: s
            .message_hash
            .as_ref()
            .map(|h| format!("0x{}", hex::encode(h))),
        result: result(s),
        error: failure(s),
    }
}

/// `GET /accounts/{id}`.
pub fn account(a: &Account) -> AccountView {
    AccountView {
        account_id: a.account_id.clone(),
        public_key: a.public_key.clone(),
        address: a.address.clone(),
        threshold_t: a.threshold_t,
        threshold_n: a.threshold_n,
        parties: a
            .parties
            .iter()
            .map(|p| AccountParty {
                party_id: p.party_id.clone(),
                keygen_index: p.keygen_index,
            })
            .collect(),
        keygen_session_id: a.keygen_session_id.clone(),
        created_at: a.created_at,
    }
}
