//! Sessions and their participants: creation, joins, progress, party
//! results, and the terminal states (each written once).

use mpc_api::rest::{Progress, SessionResult};
use mpc_db::json_column;
use mpc_db::sqlx::{self, Row as _};
use party_core::signature::RecoverableSignature;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::event;
use super::{
    i, lock_session, now, u, u16_, DeviceType, SessionKind, SessionStatus, Store, StoreError, Tx,
    OPEN,
};

/// A session row.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// Id.
    pub session_id: Uuid,
    /// The tenant it belongs to (its API key's; a presign session's is its
    /// account's).
    pub tenant_id: String,
    /// Keygen, sign or presign.
    pub kind: SessionKind,
    /// Status.
    pub status: SessionStatus,
    /// t.
    pub threshold_t: u16,
    /// n.
    pub threshold_n: u16,
    /// Account (sign sessions, and keygens once completed).
    pub account_id: Option<String>,
    /// Message hash (sign).
    pub message_hash: Option<Vec<u8>>,
    /// Signed descriptor JSON (empty while a keygen waits for device keys).
    pub descriptor: String,
    /// Aux-info group (keygen); the signer set (presign, online sign).
    pub group_id: Option<String>,
    /// Whether this keygen generates aux info.
    pub generate_aux: bool,
    /// Result (completed).
    pub result: Option<SessionResult>,
    /// Error reason.
    pub error: Option<String>,
    /// The stable code of a party's refusal, when one failed the session.
    pub error_code: Option<String>,
    /// Blamed party id (see [`super::blame`]: never on one party's word).
    pub blamed_party: Option<String>,
    /// The parties' failure reports, kept as evidence.
    pub accusations: Vec<mpc_api::rest::Accusation>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
}

/// What one party reported as its result, as stored in
/// `session_participants.result` (the JSON shapes are the stored format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PartyResult {
    /// `{"public_key": hex}` (keygen), with `"policy_hash": hex` when the
    /// keygen fixed a policy and `"aux_fingerprint": hex` when the party
    /// reported it.
    Keygen {
        /// Compressed SEC1 public key, hex.
        public_key: String,
        /// The reported hash of the stored policy, hex.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy_hash: Option<String>,
        /// The reported fingerprint of the share's aux info, hex.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        aux_fingerprint: Option<String>,
    },
    /// `{"signature": {r, s, v}, "valid": bool}` (sign).
    Signature {
        /// The signature as reported.
        signature: RecoverableSignature,
        /// Whether it verified under the account key with its `v`.
        valid: bool,
    },
    /// `{"presignature": "stored"}` (presign).
    Presignature {
        /// Always [`Stored::Stored`].
        presignature: Stored,
    },
    /// `{"policy_hash": hex}` (policy change): the party stored the new
    /// policy.
    PolicyChanged {
        /// Hash of the policy the party stored, hex.
        policy_hash: String,
    },
    /// `{"aux_fingerprint": hex}` (aux info): the party stored new aux
    /// info of the group. Last: a keygen result also has the field.
    AuxInfo {
        /// The fingerprint of the new aux info, hex.
        aux_fingerprint: String,
    },
}

/// The one value of [`PartyResult::Presignature`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stored {
    /// `"stored"`.
    Stored,
}

/// A participant row.
#[derive(Debug, Clone)]
pub struct ParticipantRow {
    /// Position.
    pub position: u16,
    /// Party id.
    pub party_id: String,
    /// Device type.
    pub device_type: DeviceType,
    /// Joined the traffic.
    pub joined: bool,
    /// Last progress report.
    pub progress: Option<Progress>,
    /// Result report.
    pub result: Option<PartyResult>,
}

/// A new session to insert.
#[derive(Debug)]
pub struct NewSession<'a> {
    /// Row.
    pub row: &'a SessionRow,
    /// (position, party id, device type, token hash).
    pub participants: Vec<(u16, String, DeviceType, [u8; 32])>,
    /// The API key that creates it and its quota of open sessions (`None`
    /// for the coordinator's own sessions: presignatures).
    pub quota: Option<SessionQuota>,
    /// The approval request id the session spends (of `row.account_id`):
    /// refused with [`StoreError::RequestIdReused`] if already spent.
    pub request_id: Option<String>,
}

/// The per-key quota a new session is held to, checked in the transaction
/// that inserts it (the key's row is locked first, so two instances cannot
/// both take the last place).
#[derive(Debug, Clone)]
pub struct SessionQuota {
    /// The creating API key.
    pub api_key_id: String,
    /// Open sessions the key may have, this one included.
    pub max_open: u64,
}

/// JSON text of a value as stored: through `serde_json::Value`, so objects
/// are written with the same key order as the `json!` values stored before
/// the types existed (rows written by either read the same).
pub(super) fn json_text<T: Serialize>(v: &T) -> Result<String, StoreError> {
    Ok(serde_json::to_value(v)
        .map_err(|_| StoreError::Malformed("value to store"))?
        .to_string())
}

fn parse_json<T: serde::de::DeserializeOwned>(
    v: Option<serde_json::Value>,
    what: &'static str,
) -> Result<Option<T>, StoreError> {
    v.map(|v| serde_json::from_value(v).map_err(|_| StoreError::Malformed(what)))
        .transpose()
}

impl Store {
    /// Whether `request_id` was spent by a session of `account_id`.
    pub async fn request_id_spent(
        &self,
        account_id: &str,
        request_id: &str,
    ) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) FROM approval_requests WHERE account_id = $1 AND request_id = $2",
        )
        .bind(account_id)
        .bind(request_id)
        .fetch_one(&self.pool)
        .await?
        .get(0);
        Ok(n > 0)
    }

    /// Inserts a session, its participants and its first event.
    pub async fn insert_session(&self, s: NewSession<'_>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_session_rows(&mut tx, &s).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A session.
    pub async fn session(&self, id: Uuid) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(
            "SELECT session_id, kind, status, threshold_t, threshold_n, account_id, message_hash, descriptor,
             group_id, generate_aux, result, error, blamed_party, created_at, expires_at, tenant_id, error_code,
             accusations FROM sessions WHERE session_id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        Ok(Some(SessionRow {
            session_id: id,
            tenant_id: r.get(15),
            kind: SessionKind::parse(&r.get::<String, _>(1))
                .ok_or(StoreError::Malformed("session kind"))?,
            status: SessionStatus::parse(&r.get::<String, _>(2))
                .ok_or(StoreError::Malformed("session status"))?,
            threshold_t: u16_(r.get(3)),
            threshold_n: u16_(r.get(4)),
            account_id: r.get(5),
            message_hash: r.get(6),
            descriptor: r.get(7),
            group_id: r.get(8),
            generate_aux: r.get::<i64, _>(9) != 0,
            result: parse_json(json_column(&r, 10), "session result")?,
            error: r.get(11),
            blamed_party: r.get(12),
            created_at: u(r.get(13)),
            expires_at: u(r.get(14)),
            error_code: r.get(16),
            accusations: super::blame::accusations_of(json_column(&r, 17)),
        }))
    }

    /// A session's participants.
    pub async fn participants(&self, id: Uuid) -> Result<Vec<ParticipantRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT position, party_id, device_type, joined, progress, result FROM session_participants
             WHERE session_id = $1 ORDER BY position",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ParticipantRow {
                    position: u16_(r.get(0)),
                    party_id: r.get(1),
                    device_type: DeviceType::parse(&r.get::<String, _>(2))
                        .ok_or(StoreError::Malformed("participant device type"))?,
                    joined: r.get::<i64, _>(3) != 0,
                    progress: parse_json(json_column(r, 4), "progress")?,
                    result: parse_json(json_column(r, 5), "party result")?,
                })
            })
            .collect()
    }

    /// Records that a party joined; moves the session to `in_progress` when
    /// everyone has.
    pub async fn mark_joined(&self, id: Uuid, position: u16) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_session(&mut tx, id).await?;
        let changed = sqlx::query(
            "UPDATE session_participants SET joined = 1 WHERE session_id = $1 AND position = $2 AND joined = 0",
        )
        .bind(id.to_string())
        .bind(i64::from(position))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 1 {
            event(
                &mut tx,
                id,
                "joined",
                Some(position),
                &serde_json::json!({}),
            )
            .await?;
            let waiting: i64 = sqlx::query(
                "SELECT COUNT(*) FROM session_participants WHERE session_id = $1 AND joined = 0",
            )
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?
            .get(0);
            if waiting == 0 {
                let moved = sqlx::query(
                    "UPDATE sessions SET status = 'in_progress', updated_at = $1 WHERE session_id = $2 AND status = 'waiting'",
                )
                .bind(i(now()))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if moved == 1 {
                    event(&mut tx, id, "in_progress", None, &serde_json::json!({})).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores a party's latest progress.
    pub async fn set_progress(
        &self,
        id: Uuid,
        position: u16,
        progress: &Progress,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE session_participants SET progress = $1 WHERE session_id = $2 AND position = $3",
        )
        .bind(json_text(progress)?)
        .bind(id.to_string())
        .bind(i64::from(position))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores a party's result report (first one wins). Returns all results
    /// so far, in position order (`None` where missing).
    pub async fn set_party_result(
        &self,
        id: Uuid,
        position: u16,
        result: &PartyResult,
    ) -> Result<Vec<Option<PartyResult>>, StoreError> {
        let detail = serde_json::to_value(result)
            .map_err(|_| StoreError::Malformed("party result to store"))?;
        let mut tx = self.pool.begin().await?;
        lock_session(&mut tx, id).await?;
        let changed = sqlx::query(
            "UPDATE session_participants SET result = $1 WHERE session_id = $2 AND position = $3 AND result IS NULL",
        )
        .bind(detail.to_string())
        .bind(id.to_string())
        .bind(i64::from(position))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 1 {
            event(&mut tx, id, "party_result", Some(position), &detail).await?;
        }
        let rows = sqlx::query(
            "SELECT result FROM session_participants WHERE session_id = $1 ORDER BY position",
        )
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| parse_json(json_column(r, 0), "party result"))
            .collect()
    }
}

/// The inserts of [`Store::insert_session`], inside the caller's transaction.
pub(super) async fn insert_session_rows(
    tx: &mut Tx<'_>,
    s: &NewSession<'_>,
) -> Result<(), StoreError> {
    let r = s.row;
    if let Some(q) = &s.quota {
        // Locks the key's row (PostgreSQL: until commit; SQLite holds its
        // write lock), so the count below cannot race another instance's.
        sqlx::query("UPDATE api_keys SET revoked_at = revoked_at WHERE id = $1")
            .bind(&q.api_key_id)
            .execute(&mut **tx)
            .await?;
        let open: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) FROM sessions WHERE api_key_id = $1 AND status IN {OPEN} AND expires_at > $2"
        ))
        .bind(&q.api_key_id)
        .bind(i(now()))
        .fetch_one(&mut **tx)
        .await?
        .get(0);
        if u(open) >= q.max_open {
            return Err(StoreError::TooManySessions);
        }
    }
    if let Some(request_id) = &s.request_id {
        let account_id = r.account_id.as_deref().unwrap_or_default();
        let spent = sqlx::query(
            "INSERT INTO approval_requests (account_id, request_id, session_id, created_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, request_id) DO NOTHING",
        )
        .bind(account_id)
        .bind(request_id)
        .bind(r.session_id.to_string())
        .bind(i(r.created_at))
        .execute(&mut **tx)
        .await?
        .rows_affected()
            == 0;
        if spent {
            return Err(StoreError::RequestIdReused);
        }
    }
    sqlx::query(
        "INSERT INTO sessions (session_id, kind, status, threshold_t, threshold_n, account_id, message_hash,
         descriptor, group_id, generate_aux, created_at, updated_at, expires_at, tenant_id, api_key_id)
         VALUES ($1, $2, 'waiting', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(r.session_id.to_string())
    .bind(r.kind.as_str())
    .bind(i64::from(r.threshold_t))
    .bind(i64::from(r.threshold_n))
    .bind(&r.account_id)
    .bind(&r.message_hash)
    .bind(&r.descriptor)
    .bind(&r.group_id)
    .bind(i64::from(r.generate_aux))
    .bind(i(r.created_at))
    .bind(i(r.created_at))
    .bind(i(r.expires_at))
    .bind(&r.tenant_id)
    .bind(s.quota.as_ref().map(|q| q.api_key_id.as_str()))
    .execute(&mut **tx)
    .await?;
    for (pos, party_id, device_type, token_hash) in &s.participants {
        sqlx::query(
            "INSERT INTO session_participants (session_id, position, party_id, device_type, token_sha256)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(r.session_id.to_string())
        .bind(i64::from(*pos))
        .bind(party_id)
        .bind(device_type.as_str())
        .bind(token_hash.to_vec())
        .execute(&mut **tx)
        .await?;
    }
    event(
        tx,
        r.session_id,
        "created",
        None,
        &serde_json::json!({ "kind": r.kind.as_str() }),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use mpc_api::rest::Signature;
    use serde_json::json;

    /// The typed values are stored as the same bytes the `json!` values of
    /// earlier versions were, and those rows read back as the typed values.
    #[test]
    fn stored_json_is_byte_compatible_with_earlier_rows() {
        let sig = RecoverableSignature {
            r: [1; 32],
            s: [2; 32],
            v: 1,
        };
        let cases: Vec<(String, String)> = vec![
            (
                json_text(&PartyResult::Keygen {
                    public_key: "02ab".into(),
                    policy_hash: None,
                    aux_fingerprint: None,
                })
                .unwrap(),
                json!({ "public_key": "02ab" }).to_string(),
            ),
            (
                json_text(&PartyResult::Signature {
                    signature: sig,
                    valid: true,
                })
                .unwrap(),
                json!({ "signature": sig, "valid": true }).to_string(),
            ),
            (
                json_text(&PartyResult::Presignature {
                    presignature: Stored::Stored,
                })
                .unwrap(),
                json!({ "presignature": "stored" }).to_string(),
            ),
            (
                json_text(&Progress {
                    stage: "sign".into(),
                    round: 3,
                    percent: None,
                })
                .unwrap(),
                json!({ "stage": "sign", "round": 3, "percent": None::<u8> }).to_string(),
            ),
            (
                json_text(&SessionResult {
                    account_id: Some("acc".into()),
                    public_key: Some("02ab".into()),
                    address: Some("0xAb".into()),
                    ..SessionResult::default()
                })
                .unwrap(),
                json!({ "account_id": "acc", "public_key": "02ab", "address": "0xAb" }).to_string(),
            ),
            (
                json_text(&SessionResult {
                    account_id: Some("acc".into()),
                    signature: Some(Signature {
                        r: "0x01".into(),
                        s: "0x02".into(),
                        v: 1,
                        der: "30".into(),
                        signature: "0x0102".into(),
                    }),
                    ..SessionResult::default()
                })
                .unwrap(),
                json!({ "signature": { "r": "0x01", "s": "0x02", "v": 1, "der": "30", "signature": "0x0102" }, "account_id": "acc" }).to_string(),
            ),
            (
                json_text(&SessionResult {
                    presignature_id: Some("p".into()),
                    signers: Some("a,b".into()),
                    ..SessionResult::default()
                })
                .unwrap(),
                json!({ "presignature_id": "p", "signers": "a,b" }).to_string(),
            ),
        ];
        for (typed, earlier) in &cases {
            assert_eq!(typed, earlier);
        }
        let read: PartyResult =
            serde_json::from_str(&json!({ "signature": sig, "valid": false }).to_string()).unwrap();
        assert_eq!(
            read,
            PartyResult::Signature {
                signature: sig,
                valid: false
            }
        );
        // The shapes added with policies read back as themselves.
        for r in [
            PartyResult::Keygen {
                public_key: "02ab".into(),
                policy_hash: Some("cd".into()),
                aux_fingerprint: None,
            },
            PartyResult::Keygen {
                public_key: "02ab".into(),
                policy_hash: None,
                aux_fingerprint: Some("ef".into()),
            },
            PartyResult::PolicyChanged {
                policy_hash: "cd".into(),
            },
            PartyResult::AuxInfo {
                aux_fingerprint: "ef".into(),
            },
        ] {
            let back: PartyResult = serde_json::from_str(&json_text(&r).unwrap()).unwrap();
            assert_eq!(back, r);
        }
        let read: SessionResult = serde_json::from_str(&cases[5].1).unwrap();
        assert_eq!(read.signature.unwrap().v, 1);
    }
}
