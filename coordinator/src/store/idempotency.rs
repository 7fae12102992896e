//! Idempotency keys (`crate::idempotency` has the protocol): one row per
//! scoped key, with the request's fingerprint and, once the first request
//! has created its session, its sealed answer.

use mpc_db::sqlx::{self, Row as _};
use uuid::Uuid;

use super::{i, Store, StoreError};

/// A stored idempotency key.
#[derive(Debug)]
pub struct IdempotencyRow {
    /// SHA-256 of the route and the request.
    pub fingerprint: String,
    /// The first answer, sealed; `None` while it is being created.
    pub sealed_answer: Option<Vec<u8>>,
}

impl Store {
    /// Forgets keys created before `expired_before` and claims without an
    /// answer made before `lease_before`, then claims `key_id` for a first
    /// request. Returns whether this call claimed it (a primary-key
    /// conflict decides between instances).
    pub async fn claim_idempotency_key(
        &self,
        key_id: &str,
        fingerprint: &str,
        now: u64,
        expired_before: u64,
        lease_before: u64,
    ) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(i(expired_before))
            .execute(self.pool())
            .await?;
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE key_hash = $1 AND response IS NULL AND created_at < $2",
        )
        .bind(key_id)
        .bind(i(lease_before))
        .execute(self.pool())
        .await?;
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (key_hash, fingerprint, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(key_id)
        .bind(fingerprint)
        .bind(i(now))
        .execute(self.pool())
        .await?
        .rows_affected()
            == 1;
        Ok(claimed)
    }

    /// Stores the first request's session and sealed answer.
    pub async fn finish_idempotency_key(
        &self,
        key_id: &str,
        session_id: Uuid,
        sealed_answer: Vec<u8>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE idempotency_keys SET session_id = $1, response = $2 WHERE key_hash = $3",
        )
        .bind(session_id.to_string())
        .bind(sealed_answer)
        .bind(key_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Lets a key go (its first request failed to create a session).
    pub async fn release_idempotency_key(&self, key_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM idempotency_keys WHERE key_hash = $1")
            .bind(key_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// A stored key.
    pub async fn idempotency_key(
        &self,
        key_id: &str,
    ) -> Result<Option<IdempotencyRow>, StoreError> {
        let row =
            sqlx::query("SELECT fingerprint, response FROM idempotency_keys WHERE key_hash = $1")
                .bind(key_id)
                .fetch_optional(self.pool())
                .await?;
        row.map(|r| {
            Ok(IdempotencyRow {
                fingerprint: r.try_get(0)?,
                sealed_answer: r.try_get(1)?,
            })
        })
        .transpose()
    }

    /// Open sessions by kind, available presignatures and running presign
    /// sessions: the gauges of `/metrics`.
    pub async fn gauges(&self) -> Result<Gauges, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, COUNT(*) FROM sessions WHERE status IN ('waiting','in_progress') GROUP BY kind",
        )
        .fetch_all(self.pool())
        .await?;
        let mut open = Vec::new();
        for r in rows {
            open.push((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?));
        }
        let available: i64 =
            sqlx::query("SELECT COUNT(*) FROM presignatures WHERE status = 'available'")
                .fetch_one(self.pool())
                .await?
                .try_get(0)?;
        Ok(Gauges {
            open_sessions: open,
            presignatures_available: available,
        })
    }
}

/// What `/metrics` reads from the database.
#[derive(Debug)]
pub struct Gauges {
    /// (kind, open sessions).
    pub open_sessions: Vec<(String, i64)>,
    /// Available presignatures, every account.
    pub presignatures_available: i64,
}
