//! The presignature pool: one row per completed presign session, claimed by
//! exactly one sign request with a conditional UPDATE.

use mpc_db::sqlx::{self, Row as _};
use uuid::Uuid;

use super::{i, now, Store, StoreError, Tx, OPEN};

impl Store {
    /// Claims the oldest available presignature of a signer set for
    /// `session_id`. One conditional UPDATE per try: of concurrent claimers
    /// exactly one wins each row, and a used row is never handed out again.
    pub async fn claim_presignature(
        &self,
        account_id: &str,
        signers: &str,
        session_id: Uuid,
    ) -> Result<Option<Uuid>, StoreError> {
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
    ) -> Result<(i64, i64), StoreError> {
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
    pub async fn presignatures_available(&self, account_id: &str) -> Result<i64, StoreError> {
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
    ) -> Result<i64, StoreError> {
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

    /// Parties taking part in an open session that a caller waits for (any
    /// kind but presign): the pool refill leaves their signer sets alone
    /// until those sessions end.
    pub async fn parties_in_foreground(
        &self,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT DISTINCT p.party_id FROM session_participants p
             JOIN sessions s ON s.session_id = p.session_id
             WHERE s.status IN {OPEN} AND s.kind <> 'presign'"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    /// Presign sessions running, over all accounts.
    pub async fn running_presigns(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query(&format!(
            "SELECT COUNT(*) FROM sessions WHERE kind = 'presign' AND status IN {OPEN}"
        ))
        .fetch_one(&self.pool)
        .await?
        .get(0))
    }
}

/// Adds the presignature of presign session `id`, available, inside the
/// caller's transaction (the one that completes the session).
pub(super) async fn insert_presignature(
    tx: &mut Tx<'_>,
    id: Uuid,
    account_id: &str,
    signers: &str,
) -> Result<(), sqlx::Error> {
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
    Ok(())
}
