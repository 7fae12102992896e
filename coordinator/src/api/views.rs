//! Store rows as the API's response types.

use mpc_api::rest::{
    AccountParty, AccountView, SessionCreated, SessionFailure, SessionKind, SessionParty,
    SessionView, SigningMode,
};

use mpc_api::error::ErrorCode;

use crate::service::authz::policy_to_api;
use crate::service::Created;
use crate::store::{Account, ParticipantRow, SessionRow};

fn failure(row: &SessionRow) -> Option<SessionFailure> {
    row.error.as_ref().map(|e| SessionFailure {
        reason: e.clone(),
        blamed_party: row.blamed_party.clone(),
        code: row.error_code.as_deref().and_then(ErrorCode::parse),
        accusations: row.accusations.clone(),
    })
}

/// The answer to a session creation.
pub fn created(c: &Created) -> SessionCreated {
    let kind = c.row.kind;
    SessionCreated {
        session_id: c.row.session_id,
        session_type: kind,
        threshold_n: c.row.threshold_n,
        threshold_t: c.row.threshold_t,
        status: c.row.status,
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
    created.status = row.status;
    created.account_id = row.account_id.clone().or(created.account_id);
    created.result = row.result.clone();
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

/// `GET /sessions/{id}`.
pub fn session(s: &SessionRow, parts: &[ParticipantRow]) -> SessionView {
    SessionView {
        session_id: s.session_id,
        session_type: s.kind,
        status: s.status,
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
                device_type: p.device_type,
                joined: p.joined,
                done: p.result.is_some(),
                progress: p.progress.clone(),
            })
            .collect(),
        message_hash: s
            .message_hash
            .as_ref()
            .map(|h| format!("0x{}", hex::encode(h))),
        result: s.result.clone(),
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
        policy: a.policy.as_ref().map(policy_to_api),
        policy_hash: a.policy.as_ref().map(|p| hex::encode(p.hash())),
    }
}
