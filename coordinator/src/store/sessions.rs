//! Sessions and their participants: creation, joins, progress, party
//! results, and the terminal states (each written once).

use mpc_api::rest::{Progress, SessionResult};
use mpc_db::json_column;
use mpc_db::sqlx::{self, Row as _};
use party_core::signature::RecoverableSignature;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::accounts::insert_account;
use super::events::event;
use super::{
    i, lock_session, now, u, u16_, Account, DeviceType, SessionKind, SessionStatus, Store,
    StoreError, Tx, OPEN,
};

/// A session row.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// Id.
    pub session_id: Uuid,
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
    /// Blamed party id.
    pub blamed_party: Option<String>,
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
    /// `{"public_key": hex}` (keygen).
    Keygen {
        /// Compressed SEC1 public key, hex.
        public_key: String,
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
             group_id, generate_aux, result, error, blamed_party, created_at, expires_at
             FROM sessions WHERE session_id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        Ok(Some(SessionRow {
            session_id: id,
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

    /// Completes a keygen: inserts the account and marks the session completed,
    /// once. Returns whether this call did it.
    pub async fn complete_keygen(
        &self,
        id: Uuid,
        account: &Account,
        generate_aux_group: Option<&str>,
    ) -> Result<bool, StoreError> {
        let result = SessionResult {
            account_id: Some(account.account_id.clone()),
            public_key: Some(account.public_key.clone()),
            address: Some(account.address.clone()),
            ..SessionResult::default()
        };
        self.close_one(
            id,
            Close::Completed {
                result: &result,
                account_id: Some(&account.account_id),
            },
            Insert::Account {
                account,
                aux_group: generate_aux_group,
            },
        )
        .await
    }

    /// Completes a session with a result, once. Returns whether this call did it.
    pub async fn complete(&self, id: Uuid, result: &SessionResult) -> Result<bool, StoreError> {
        self.close_one(
            id,
            Close::Completed {
                result,
                account_id: None,
            },
            Insert::Nothing,
        )
        .await
    }

    /// Completes a presign session and adds its presignature to the pool, in
    /// one transaction, once. Returns whether this call did it.
    pub async fn complete_presign(
        &self,
        id: Uuid,
        account_id: &str,
        signers: &str,
    ) -> Result<bool, StoreError> {
        let result = SessionResult {
            presignature_id: Some(id.to_string()),
            signers: Some(signers.to_string()),
            ..SessionResult::default()
        };
        self.close_one(
            id,
            Close::Completed {
                result: &result,
                account_id: None,
            },
            Insert::Presignature {
                account_id,
                signers,
            },
        )
        .await
    }

    /// Fails a session, once. Returns whether this call did it.
    pub async fn fail(
        &self,
        id: Uuid,
        reason: &str,
        blamed: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.close_one(id, Close::Failed { reason, blamed }, Insert::Nothing)
            .await
    }

    /// Closes a session and inserts what its outcome adds, in one
    /// transaction, once; tells the long polls. Returns whether this call
    /// did it.
    async fn close_one(
        &self,
        id: Uuid,
        how: Close<'_>,
        insert: Insert<'_>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        if !close(&mut tx, id, how).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        insert.run(&mut tx, id).await?;
        tx.commit().await?;
        let _ = self.ended.send(id);
        Ok(true)
    }

    /// Expires open sessions past their deadline; returns their ids.
    pub async fn expire_overdue(&self, now: u64) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT session_id FROM sessions WHERE status IN {OPEN} AND expires_at <= $1"
        ))
        .bind(i(now))
        .fetch_all(&self.pool)
        .await?;
        let mut expired = Vec::new();
        for r in rows {
            let Ok(id) = Uuid::parse_str(&r.get::<String, _>(0)) else {
                continue;
            };
            let parts = self.participants(id).await?;
            let missing: Vec<&str> = parts
                .iter()
                .filter(|p| p.result.is_none())
                .map(|p| p.party_id.as_str())
                .collect();
            let reason = if missing.is_empty() {
                "deadline passed before the party results were combined".to_string()
            } else {
                format!(
                    "deadline passed without a result from: {}",
                    missing.join(", ")
                )
            };
            if self
                .close_one(id, Close::Expired { reason: &reason }, Insert::Nothing)
                .await?
            {
                expired.push(id);
            }
        }
        Ok(expired)
    }
}

/// The inserts of [`Store::insert_session`], inside the caller's transaction.
pub(super) async fn insert_session_rows(
    tx: &mut Tx<'_>,
    s: &NewSession<'_>,
) -> Result<(), sqlx::Error> {
    let r = s.row;
    sqlx::query(
        "INSERT INTO sessions (session_id, kind, status, threshold_t, threshold_n, account_id, message_hash,
         descriptor, group_id, generate_aux, created_at, updated_at, expires_at)
         VALUES ($1, $2, 'waiting', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
    .await
}

/// What a session's outcome adds, in the transaction that closes it.
enum Insert<'a> {
    Nothing,
    /// A completed keygen: the account, and the party group if this keygen
    /// generated its aux info.
    Account {
        account: &'a Account,
        aux_group: Option<&'a str>,
    },
    /// A completed presign session: its presignature, available.
    Presignature {
        account_id: &'a str,
        signers: &'a str,
    },
}

impl Insert<'_> {
    async fn run(self, tx: &mut Tx<'_>, id: Uuid) -> Result<(), sqlx::Error> {
        match self {
            Insert::Nothing => Ok(()),
            Insert::Account { account, aux_group } => {
                insert_account(tx, id, account, aux_group).await
            }
            Insert::Presignature {
                account_id,
                signers,
            } => super::presignatures::insert_presignature(tx, id, account_id, signers).await,
        }
    }
}

/// How a session ends.
enum Close<'a> {
    Completed {
        result: &'a SessionResult,
        account_id: Option<&'a str>,
    },
    Failed {
        reason: &'a str,
        blamed: Option<&'a str>,
    },
    Expired {
        reason: &'a str,
    },
}

/// Moves an open session to its terminal state and logs the event; false if
/// it was already terminal (so each ending is recorded once).
async fn close(tx: &mut Tx<'_>, id: Uuid, how: Close<'_>) -> Result<bool, StoreError> {
    let (status, result, account_id, error, blamed, detail) = match how {
        Close::Completed { result, account_id } => {
            let detail = serde_json::to_value(result)
                .map_err(|_| StoreError::Malformed("session result to store"))?;
            (
                SessionStatus::Completed,
                Some(detail.to_string()),
                account_id,
                None,
                None,
                detail,
            )
        }
        Close::Failed { reason, blamed } => (
            SessionStatus::Failed,
            None,
            None,
            Some(reason),
            blamed,
            serde_json::json!({ "reason": reason, "blamed_party": blamed }),
        ),
        Close::Expired { reason } => (
            SessionStatus::Expired,
            None,
            None,
            Some(reason),
            None,
            serde_json::json!({ "reason": reason }),
        ),
    };
    let changed = sqlx::query(&format!(
        "UPDATE sessions SET status = $1, result = COALESCE($2, result), account_id = COALESCE($3, account_id),
         error = $4, blamed_party = $5, updated_at = $6 WHERE session_id = $7 AND status IN {OPEN}"
    ))
    .bind(status.as_str())
    .bind(result)
    .bind(account_id)
    .bind(error)
    .bind(blamed)
    .bind(i(now()))
    .bind(id.to_string())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if changed == 1 {
        event(tx, id, status.as_str(), None, &detail).await?;
    }
    Ok(changed == 1)
}
