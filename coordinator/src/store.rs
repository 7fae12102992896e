//! The coordinator's database and session state machine.
//!
//! Every status change is an `UPDATE ... WHERE status IN (open states)`, so a
//! terminal state is written once whatever the order or repetition of party
//! reports; the account of a keygen is inserted in the same transaction as the
//! session's completion. `session_events` is append-only (triggers refuse
//! updates and deletes).

use std::time::{SystemTime, UNIX_EPOCH};

use mpc_db::sqlx::any::AnyRow;
use mpc_db::sqlx::{self, AnyPool, Row};
use mpc_db::{json_column, Db, Migrations};
use party_core::identity::PartyPublicKey;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::AppError;

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A party of an account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountParty {
    /// Party id.
    pub party_id: String,
    /// Keygen index.
    pub keygen_index: u16,
    /// Identity at keygen time.
    pub identity: PartyPublicKey,
}

/// An account (a distributed key).
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    /// Account id (the keygen session id).
    pub account_id: String,
    /// Compressed SEC1 public key, hex.
    pub public_key: String,
    /// EIP-55 Ethereum address.
    pub address: String,
    /// Threshold t.
    pub threshold_t: u16,
    /// Parties n.
    pub threshold_n: u16,
    /// The parties and their keygen indices.
    pub parties: Vec<AccountParty>,
    /// Keygen session.
    pub keygen_session_id: String,
    /// Unix seconds.
    pub created_at: u64,
}

/// A registered party.
#[derive(Debug, Clone)]
pub struct PartyRecord {
    /// Party id.
    pub party_id: String,
    /// `server`, `browser`, ...
    pub device_type: String,
    /// Identity.
    pub identity: PartyPublicKey,
}

/// A session row.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// Id.
    pub session_id: Uuid,
    /// `keygen` / `sign`.
    pub kind: String,
    /// Status.
    pub status: String,
    /// t.
    pub threshold_t: u16,
    /// n.
    pub threshold_n: u16,
    /// Account (sign sessions, and keygens once completed).
    pub account_id: Option<String>,
    /// Message hash (sign).
    pub message_hash: Option<Vec<u8>>,
    /// Signed descriptor JSON.
    pub descriptor: String,
    /// Aux-info group (keygen).
    pub group_id: Option<String>,
    /// Whether this keygen generates aux info.
    pub generate_aux: bool,
    /// Result JSON.
    pub result: Option<serde_json::Value>,
    /// Error reason.
    pub error: Option<String>,
    /// Blamed party id.
    pub blamed_party: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
}

/// A participant row.
#[derive(Debug, Clone)]
pub struct ParticipantRow {
    /// Position.
    pub position: u16,
    /// Party id.
    pub party_id: String,
    /// Device type.
    pub device_type: String,
    /// Joined the traffic.
    pub joined: bool,
    /// Last progress report.
    pub progress: Option<serde_json::Value>,
    /// Result report.
    pub result: Option<serde_json::Value>,
}

/// A new session to insert.
#[derive(Debug)]
pub struct NewSession<'a> {
    /// Row.
    pub row: &'a SessionRow,
    /// (position, party id, device type, token hash).
    pub participants: Vec<(u16, String, String, [u8; 32])>,
}

/// The coordinator's schema, per backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: &sqlx::migrate!("./migrations/sqlite"),
    postgres: &sqlx::migrate!("./migrations/postgres"),
};

/// The database (SQLite or PostgreSQL, by URL).
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    pool: AnyPool,
    /// Sessions this instance moved to a terminal state (long-poll wakeups).
    ended: tokio::sync::broadcast::Sender<Uuid>,
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

const OPEN: &str = "('waiting','in_progress')";

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
fn u16_(v: i64) -> u16 {
    u16::try_from(v).unwrap_or(0)
}

impl Store {
    /// A store whose pool connects on first use; migrations run in the
    /// background with backoff ([`Store::db`] says when they are done).
    pub fn open_lazy(url: &str) -> Result<Self, crate::StartError> {
        let db = Db::open_lazy(url, MIGRATIONS)?;
        Ok(Self {
            pool: db.pool().clone(),
            db,
            ended: tokio::sync::broadcast::channel(1024).0,
        })
    }

    /// The pool (tests inspect the database through it).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Ids of the sessions this instance ends from now on, as they end.
    /// (Another instance's endings are seen by reading the database.)
    pub fn subscribe_ended(&self) -> tokio::sync::broadcast::Receiver<Uuid> {
        self.ended.subscribe()
    }

    /// The database handle (backend, readiness).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Whether an API key hash is stored.
    pub async fn api_key_exists(&self, hash: &[u8; 32]) -> Result<bool, sqlx::Error> {
        Ok(sqlx::query("SELECT 1 FROM api_keys WHERE key_sha256 = $1")
            .bind(hash.to_vec())
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Stores the hash of an API key if it is not there yet.
    pub async fn ensure_api_key(&self, key: &str, label: &str) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO api_keys (id, key_sha256, label, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (key_sha256) DO NOTHING")
            .bind(Uuid::new_v4().to_string())
            .bind(crate::auth::hash_api_key(key).to_vec())
            .bind(label)
            .bind(i(now()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// All API key hashes.
    pub async fn api_key_hashes(&self) -> Result<Vec<[u8; 32]>, sqlx::Error> {
        let rows = sqlx::query("SELECT key_sha256 FROM api_keys")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get::<Vec<u8>, _>(0).try_into().ok())
            .collect())
    }

    /// Registers a party; the same id with another key is a conflict.
    pub async fn register_party(
        &self,
        party_id: &str,
        device_type: &str,
        identity: PartyPublicKey,
    ) -> Result<(), AppError> {
        if let Some(existing) = self.party(party_id).await? {
            if existing.identity == identity {
                return Ok(());
            }
            return Err(AppError::new(
                axum::http::StatusCode::CONFLICT,
                "conflict",
                "party id already registered with another key",
            ));
        }
        sqlx::query("INSERT INTO parties (party_id, device_type, ed25519, x25519, registered_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(party_id)
            .bind(device_type)
            .bind(identity.ed25519.to_vec())
            .bind(identity.x25519.to_vec())
            .bind(i(now()))
            .execute(&self.pool)
            .await
            .map_err(|e| match e {
                sqlx::Error::Database(d) if d.is_unique_violation() => AppError::new(
                    axum::http::StatusCode::CONFLICT,
                    "conflict",
                    "identity key already registered",
                ),
                e => AppError::internal(e),
            })?;
        Ok(())
    }

    /// A registered party.
    pub async fn party(&self, party_id: &str) -> Result<Option<PartyRecord>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT party_id, device_type, ed25519, x25519 FROM parties WHERE party_id = $1",
        )
        .bind(party_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|r| {
            Some(PartyRecord {
                party_id: r.get(0),
                device_type: r.get(1),
                identity: PartyPublicKey {
                    ed25519: r.get::<Vec<u8>, _>(2).try_into().ok()?,
                    x25519: r.get::<Vec<u8>, _>(3).try_into().ok()?,
                },
            })
        }))
    }

    /// Whether aux info exists for a party group.
    pub async fn aux_group_exists(&self, group_id: &str) -> Result<bool, sqlx::Error> {
        Ok(sqlx::query("SELECT 1 FROM aux_groups WHERE group_id = $1")
            .bind(group_id)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Inserts a session, its participants and its first event.
    pub async fn insert_session(&self, s: NewSession<'_>) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        insert_session_rows(&mut tx, &s).await?;
        tx.commit().await
    }
}

/// The inserts of [`Store::insert_session`], inside the caller's transaction.
async fn insert_session_rows(tx: &mut Tx<'_>, s: &NewSession<'_>) -> Result<(), sqlx::Error> {
    crate::metrics::session_created(&s.row.kind);
    {
        let r = s.row;
        sqlx::query(
            "INSERT INTO sessions (session_id, kind, status, threshold_t, threshold_n, account_id, message_hash,
             descriptor, group_id, generate_aux, created_at, updated_at, expires_at)
             VALUES ($1, $2, 'waiting', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(r.session_id.to_string())
        .bind(&r.kind)
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
            .bind(device_type)
            .bind(token_hash.to_vec())
            .execute(&mut **tx)
            .await?;
        }
        event(
            tx,
            r.session_id,
            "created",
            None,
            &serde_json::json!({ "kind": r.kind }),
        )
        .await?;
        Ok(())
    }
}

impl Store {
    /// A session.
    pub async fn session(&self, id: Uuid) -> Result<Option<SessionRow>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT session_id, kind, status, threshold_t, threshold_n, account_id, message_hash, descriptor,
             group_id, generate_aux, result, error, blamed_party, created_at, expires_at
             FROM sessions WHERE session_id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| SessionRow {
            session_id: id,
            kind: r.get(1),
            status: r.get(2),
            threshold_t: u16_(r.get(3)),
            threshold_n: u16_(r.get(4)),
            account_id: r.get(5),
            message_hash: r.get(6),
            descriptor: r.get(7),
            group_id: r.get(8),
            generate_aux: r.get::<i64, _>(9) != 0,
            result: json_column(&r, 10),
            error: r.get(11),
            blamed_party: r.get(12),
            created_at: u(r.get(13)),
            expires_at: u(r.get(14)),
        }))
    }

    /// A session's participants.
    pub async fn participants(&self, id: Uuid) -> Result<Vec<ParticipantRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT position, party_id, device_type, joined, progress, result FROM session_participants
             WHERE session_id = $1 ORDER BY position",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| ParticipantRow {
                position: u16_(r.get(0)),
                party_id: r.get(1),
                device_type: r.get(2),
                joined: r.get::<i64, _>(3) != 0,
                progress: json_column(r, 4),
                result: json_column(r, 5),
            })
            .collect())
    }

    /// Records that a party joined; moves the session to `in_progress` when
    /// everyone has.
    pub async fn mark_joined(&self, id: Uuid, position: u16) -> Result<(), sqlx::Error> {
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
        tx.commit().await
    }

    /// Stores a party's latest progress.
    pub async fn set_progress(
        &self,
        id: Uuid,
        position: u16,
        progress: &serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE session_participants SET progress = $1 WHERE session_id = $2 AND position = $3",
        )
        .bind(progress.to_string())
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
        result: &serde_json::Value,
    ) -> Result<Vec<Option<serde_json::Value>>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        lock_session(&mut tx, id).await?;
        let changed = sqlx::query(
            "UPDATE session_participants SET result = $1 WHERE session_id = $2 AND position = $3 AND result IS NULL",
        )
        .bind(result.to_string())
        .bind(id.to_string())
        .bind(i64::from(position))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 1 {
            event(&mut tx, id, "party_result", Some(position), result).await?;
        }
        let rows = sqlx::query(
            "SELECT result FROM session_participants WHERE session_id = $1 ORDER BY position",
        )
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows.iter().map(|r| json_column(r, 0)).collect())
    }

    /// Completes a keygen: inserts the account and marks the session completed,
    /// once. Returns whether this call did it.
    pub async fn complete_keygen(
        &self,
        id: Uuid,
        account: &Account,
        generate_aux_group: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        let result = serde_json::json!({
            "account_id": account.account_id,
            "public_key": account.public_key,
            "address": account.address,
        });
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
    pub async fn complete(
        &self,
        id: Uuid,
        result: &serde_json::Value,
    ) -> Result<bool, sqlx::Error> {
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

    /// Fails a session, once. Returns whether this call did it.
    pub async fn fail(
        &self,
        id: Uuid,
        reason: &str,
        blamed: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
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
    ) -> Result<bool, sqlx::Error> {
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
    pub async fn expire_overdue(&self, now: u64) -> Result<Vec<Uuid>, sqlx::Error> {
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

    /// An account.
    pub async fn account(&self, account_id: &str) -> Result<Option<Account>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT account_id, public_key, address, threshold_t, threshold_n, parties, keygen_session_id, created_at
             FROM accounts WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| account_from_row(&r)))
    }

    /// All accounts, newest first.
    pub async fn accounts(&self, limit: i64) -> Result<Vec<Account>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT account_id, public_key, address, threshold_t, threshold_n, parties, keygen_session_id, created_at
             FROM accounts ORDER BY created_at DESC, account_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(account_from_row).collect())
    }

    /// Completes a presign session and adds its presignature to the pool, in
    /// one transaction, once. Returns whether this call did it.
    pub async fn complete_presign(
        &self,
        id: Uuid,
        account_id: &str,
        signers: &str,
    ) -> Result<bool, sqlx::Error> {
        let result = serde_json::json!({ "presignature_id": id.to_string(), "signers": signers });
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

    /// Claims the oldest available presignature of a signer set for
    /// `session_id`. One conditional UPDATE per try: of concurrent claimers
    /// exactly one wins each row, and a used row is never handed out again.
    pub async fn claim_presignature(
        &self,
        account_id: &str,
        signers: &str,
        session_id: Uuid,
    ) -> Result<Option<Uuid>, sqlx::Error> {
        loop {
            let candidates = sqlx::query(
                "SELECT presignature_id FROM presignatures
                 WHERE account_id = $1 AND signers = $2 AND status = 'available'
                 ORDER BY created_at, presignature_id LIMIT 8",
            )
            .bind(account_id)
            .bind(signers)
            .fetch_all(&self.pool)
            .await?;
            if candidates.is_empty() {
                return Ok(None);
            }
            for r in candidates {
                let pid: String = r.get(0);
                let won = sqlx::query(
                    "UPDATE presignatures SET status = 'used', used_by = $1, used_at = $2
                     WHERE presignature_id = $3 AND status = 'available'",
                )
                .bind(session_id.to_string())
                .bind(i(now()))
                .bind(&pid)
                .execute(&self.pool)
                .await?
                .rows_affected()
                    == 1;
                if won {
                    return Ok(Uuid::parse_str(&pid).ok());
                }
            }
            // Every candidate went to someone else meanwhile: look again.
        }
    }

    /// Available presignatures of a signer set, plus presign sessions for it
    /// still running.
    pub async fn presignature_stock(
        &self,
        account_id: &str,
        signers: &str,
    ) -> Result<(i64, i64), sqlx::Error> {
        let available: i64 = sqlx::query(
            "SELECT COUNT(*) FROM presignatures WHERE account_id = $1 AND signers = $2 AND status = 'available'",
        )
        .bind(account_id)
        .bind(signers)
        .fetch_one(&self.pool)
        .await?
        .get(0);
        let running: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) FROM sessions WHERE kind = 'presign' AND account_id = $1 AND group_id = $2 AND status IN {OPEN}"
        ))
        .bind(account_id)
        .bind(signers)
        .fetch_one(&self.pool)
        .await?
        .get(0);
        Ok((available, running))
    }

    /// Available presignatures of an account, over all its signer sets.
    pub async fn presignatures_available(&self, account_id: &str) -> Result<i64, sqlx::Error> {
        Ok(sqlx::query(
            "SELECT COUNT(*) FROM presignatures WHERE account_id = $1 AND status = 'available'",
        )
        .bind(account_id)
        .fetch_one(&self.pool)
        .await?
        .get(0))
    }

    /// Presign sessions of a signer set that failed or expired since `since`
    /// (the refill's circuit breaker).
    pub async fn recent_presign_failures(
        &self,
        account_id: &str,
        signers: &str,
        since: u64,
    ) -> Result<i64, sqlx::Error> {
        Ok(sqlx::query(
            "SELECT COUNT(*) FROM sessions WHERE kind = 'presign' AND account_id = $1 AND group_id = $2
             AND status IN ('failed', 'expired') AND created_at >= $3",
        )
        .bind(account_id)
        .bind(signers)
        .bind(i(since))
        .fetch_one(&self.pool)
        .await?
        .get(0))
    }

    /// Presign sessions running, over all accounts.
    pub async fn running_presigns(&self) -> Result<i64, sqlx::Error> {
        Ok(sqlx::query(&format!(
            "SELECT COUNT(*) FROM sessions WHERE kind = 'presign' AND status IN {OPEN}"
        ))
        .fetch_one(&self.pool)
        .await?
        .get(0))
    }

    /// A session's event log.
    pub async fn events(&self, id: Uuid) -> Result<Vec<serde_json::Value>, sqlx::Error> {
        let rows = sqlx::query("SELECT at, kind, position, detail FROM session_events WHERE session_id = $1 ORDER BY id")
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "at": r.get::<i64, _>(0),
                    "kind": r.get::<String, _>(1),
                    "position": r.get::<Option<i64>, _>(2),
                    "detail": serde_json::from_str::<serde_json::Value>(&r.get::<String, _>(3)).unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Appends an event.
    pub async fn log_event(
        &self,
        id: Uuid,
        kind: &str,
        position: Option<u16>,
        detail: &serde_json::Value,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        event(&mut tx, id, kind, position, detail).await?;
        tx.commit().await
    }
}

fn account_from_row(r: &AnyRow) -> Account {
    Account {
        account_id: r.get(0),
        public_key: hex::encode(r.get::<Vec<u8>, _>(1)),
        address: r.get(2),
        threshold_t: u16_(r.get(3)),
        threshold_n: u16_(r.get(4)),
        parties: serde_json::from_str(&r.get::<String, _>(5)).unwrap_or_default(),
        keygen_session_id: r.get(6),
        created_at: u(r.get(7)),
    }
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
            Insert::Nothing => {}
            Insert::Account { account, aux_group } => {
                sqlx::query(
                    "INSERT INTO accounts (account_id, public_key, address, threshold_t, threshold_n, parties, keygen_session_id, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&account.account_id)
                .bind(hex::decode(&account.public_key).unwrap_or_default())
                .bind(&account.address)
                .bind(i64::from(account.threshold_t))
                .bind(i64::from(account.threshold_n))
                .bind(serde_json::to_string(&account.parties).unwrap_or_default())
                .bind(&account.keygen_session_id)
                .bind(i(account.created_at))
                .execute(&mut **tx)
                .await?;
                if let Some(group) = aux_group {
                    sqlx::query("INSERT INTO aux_groups (group_id, session_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (group_id) DO NOTHING")
                        .bind(group)
                        .bind(id.to_string())
                        .bind(i(now()))
                        .execute(&mut **tx)
                        .await?;
                }
            }
            Insert::Presignature {
                account_id,
                signers,
            } => {
                sqlx::query(
                    "INSERT INTO presignatures (presignature_id, account_id, signers, status, created_at)
                     VALUES ($1, $2, $3, 'available', $4)",
                )
                .bind(id.to_string())
                .bind(account_id)
                .bind(signers)
                .bind(i(now()))
                .execute(&mut **tx)
                .await?;
            }
        }
        Ok(())
    }
}

/// How a session ends.
enum Close<'a> {
    Completed {
        result: &'a serde_json::Value,
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
async fn close(tx: &mut Tx<'_>, id: Uuid, how: Close<'_>) -> Result<bool, sqlx::Error> {
    let (status, result, account_id, error, blamed, detail) = match how {
        Close::Completed { result, account_id } => (
            "completed",
            Some(result.to_string()),
            account_id,
            None,
            None,
            result.clone(),
        ),
        Close::Failed { reason, blamed } => (
            "failed",
            None,
            None,
            Some(reason),
            blamed,
            serde_json::json!({ "reason": reason, "blamed_party": blamed }),
        ),
        Close::Expired { reason } => (
            "expired",
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
    .bind(status)
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
        event(tx, id, status, None, &detail).await?;
    }
    Ok(changed == 1)
}

/// Serialises transactions on one session: the first statement writes the
/// session's row, which PostgreSQL locks until commit (SQLite takes its
/// database write lock). Without it, two coordinator instances recording the
/// last two party reports at once would each read the other's report as
/// missing (read committed), and neither would complete the session.
async fn lock_session(tx: &mut Tx<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET updated_at = $1 WHERE session_id = $2")
        .bind(i(now()))
        .bind(id.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn event(
    tx: &mut Tx<'_>,
    id: Uuid,
    kind: &str,
    position: Option<u16>,
    detail: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO session_events (session_id, at, kind, position, detail) VALUES ($1, $2, $3, $4, $5)")
        .bind(id.to_string())
        .bind(i(now()))
        .bind(kind)
        .bind(position.map(i64::from))
        .bind(detail.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Device parties (issue #4): device slots, pending descriptors, token binding.
// Tables from migrations/0002_devices.sql. Portable SQL: `$n` placeholders,
// no SQLite-only syntax.
// ---------------------------------------------------------------------------

/// A device party's slot in a session.
#[derive(Debug, Clone)]
pub struct DeviceSlot {
    /// Position in the session.
    pub position: u16,
    /// Party id.
    pub party_id: String,
    /// `browser`, `mobile`, ...
    pub device_type: String,
    /// The identity the slot is bound to (known in advance for a registered
    /// device, else set when the device first presents its join token).
    pub identity: Option<PartyPublicKey>,
}

/// A device slot with its join-token hash, for the join check.
#[derive(Debug, Clone)]
pub struct DeviceSlotRow {
    /// The slot.
    pub slot: DeviceSlot,
    /// SHA-256 of the slot's join token.
    pub token_sha256: Vec<u8>,
}

/// Why binding a device identity was refused.
#[derive(Debug)]
pub enum BindError {
    /// The slot is already bound to another identity.
    SlotBound,
    /// The party id is registered with another identity key.
    PartyBound,
    /// The identity key is registered under another party id.
    KeyInUse,
    /// Database failure.
    Db(sqlx::Error),
}

impl From<sqlx::Error> for BindError {
    fn from(e: sqlx::Error) -> Self {
        BindError::Db(e)
    }
}

fn public_from_hex(ed: Option<String>, x: Option<String>) -> Option<PartyPublicKey> {
    Some(PartyPublicKey {
        ed25519: hex::decode(ed?).ok()?.try_into().ok()?,
        x25519: hex::decode(x?).ok()?.try_into().ok()?,
    })
}

impl Store {
    /// Inserts a session with device slots in one transaction; `pending` is
    /// the unsigned descriptor of a keygen still waiting for device keys.
    pub async fn insert_device_session(
        &self,
        s: NewSession<'_>,
        devices: &[DeviceSlot],
        pending: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        insert_session_rows(&mut tx, &s).await?;
        for d in devices {
            sqlx::query(
                "INSERT INTO device_slots (session_id, position, party_id, device_type, ed25519, x25519, bound_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(s.row.session_id.to_string())
            .bind(i64::from(d.position))
            .bind(&d.party_id)
            .bind(&d.device_type)
            .bind(d.identity.map(|k| hex::encode(k.ed25519)))
            .bind(d.identity.map(|k| hex::encode(k.x25519)))
            .bind(d.identity.map(|_| i(now())))
            .execute(&mut *tx)
            .await?;
        }
        if let Some(descriptor) = pending {
            sqlx::query("INSERT INTO pending_descriptors (session_id, descriptor) VALUES ($1, $2)")
                .bind(s.row.session_id.to_string())
                .bind(descriptor)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }

    /// A session's device slots with their token hashes.
    pub async fn device_slots(&self, id: Uuid) -> Result<Vec<DeviceSlotRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT d.position, d.party_id, d.device_type, d.ed25519, d.x25519, p.token_sha256
             FROM device_slots d JOIN session_participants p
               ON p.session_id = d.session_id AND p.position = d.position
             WHERE d.session_id = $1 ORDER BY d.position",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| DeviceSlotRow {
                slot: DeviceSlot {
                    position: u16_(r.get(0)),
                    party_id: r.get(1),
                    device_type: r.get(2),
                    identity: public_from_hex(r.get(3), r.get(4)),
                },
                token_sha256: r.get(5),
            })
            .collect())
    }

    /// Binds a device slot to an identity, registering the device party
    /// (party id ↔ key) on its first use; all or nothing. Binding again with
    /// the same identity is a no-op.
    pub async fn bind_device(
        &self,
        id: Uuid,
        slot: &DeviceSlot,
        identity: PartyPublicKey,
    ) -> Result<(), BindError> {
        let mut tx = self.pool.begin().await?;
        let bound = sqlx::query(
            "SELECT ed25519, x25519 FROM device_slots WHERE session_id = $1 AND position = $2",
        )
        .bind(id.to_string())
        .bind(i64::from(slot.position))
        .fetch_optional(&mut *tx)
        .await?
        .and_then(|r| public_from_hex(r.get(0), r.get(1)));
        if let Some(bound) = bound {
            return if bound == identity {
                Ok(())
            } else {
                Err(BindError::SlotBound)
            };
        }
        let party = sqlx::query("SELECT ed25519, x25519 FROM parties WHERE party_id = $1")
            .bind(&slot.party_id)
            .fetch_optional(&mut *tx)
            .await?;
        match party {
            Some(r) => {
                let ed: Vec<u8> = r.get(0);
                let x: Vec<u8> = r.get(1);
                if ed != identity.ed25519 || x != identity.x25519 {
                    return Err(BindError::PartyBound);
                }
            }
            None => {
                let taken = sqlx::query("SELECT 1 FROM parties WHERE ed25519 = $1")
                    .bind(identity.ed25519.to_vec())
                    .fetch_optional(&mut *tx)
                    .await?;
                if taken.is_some() {
                    return Err(BindError::KeyInUse);
                }
                sqlx::query(
                    "INSERT INTO parties (party_id, device_type, ed25519, x25519, registered_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(&slot.party_id)
                .bind(&slot.device_type)
                .bind(identity.ed25519.to_vec())
                .bind(identity.x25519.to_vec())
                .bind(i(now()))
                .execute(&mut *tx)
                .await?;
            }
        }
        let changed = sqlx::query(
            "UPDATE device_slots SET ed25519 = $1, x25519 = $2, bound_at = $3
             WHERE session_id = $4 AND position = $5 AND ed25519 IS NULL",
        )
        .bind(hex::encode(identity.ed25519))
        .bind(hex::encode(identity.x25519))
        .bind(i(now()))
        .bind(id.to_string())
        .bind(i64::from(slot.position))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            // Another request bound it first; it may have been this identity.
            tx.rollback().await?;
            let again = self.device_slots(id).await?;
            return match again.iter().find(|d| d.slot.position == slot.position) {
                Some(d) if d.slot.identity == Some(identity) => Ok(()),
                _ => Err(BindError::SlotBound),
            };
        }
        event(
            &mut tx,
            id,
            "device_bound",
            Some(slot.position),
            &serde_json::json!({ "party_id": slot.party_id, "ed25519": hex::encode(identity.ed25519) }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The join-token hashes of a session's slots, in position order.
    pub async fn session_token_hashes(&self, id: Uuid) -> Result<Vec<[u8; 32]>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT token_sha256 FROM session_participants WHERE session_id = $1 ORDER BY position",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.get::<Vec<u8>, _>(0).try_into().unwrap_or([0; 32]))
            .collect())
    }

    /// Replaces a slot's join-token hash (server slots of a pending keygen
    /// get their tokens when the session is launched).
    pub async fn set_token_hash(
        &self,
        id: Uuid,
        position: u16,
        hash: &[u8; 32],
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE session_participants SET token_sha256 = $1 WHERE session_id = $2 AND position = $3",
        )
        .bind(hash.to_vec())
        .bind(id.to_string())
        .bind(i64::from(position))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The unsigned descriptor of a keygen waiting for device keys.
    pub async fn pending_descriptor(&self, id: Uuid) -> Result<Option<String>, sqlx::Error> {
        Ok(
            sqlx::query("SELECT descriptor FROM pending_descriptors WHERE session_id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.get(0)),
        )
    }

    /// Stores the signed descriptor of a session that was waiting for device
    /// keys, once: returns whether this call did it (so one caller registers
    /// the session with the router and invites the server parties).
    pub async fn launch_pending(
        &self,
        id: Uuid,
        signed_descriptor: &str,
        group_id: &str,
        generate_aux: bool,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE sessions SET descriptor = $1, group_id = $2, generate_aux = $3, updated_at = $4
             WHERE session_id = $5 AND descriptor = '' AND status = 'waiting'",
        )
        .bind(signed_descriptor)
        .bind(group_id)
        .bind(i64::from(generate_aux))
        .bind(i(now()))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 1 {
            event(
                &mut tx,
                id,
                "descriptor_signed",
                None,
                &serde_json::json!({}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }
}
