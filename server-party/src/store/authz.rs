//! What the party keeps for authorization (issue #13): each account's policy,
//! sealed and bound to the party and the account, and the admission records
//! written before a session's first frame (seen session ids, used request ids,
//! the signings of the rate limit's window).
//!
//! Every refusal comes from the database's own constraints inside one
//! transaction, never from a read followed by a write: a session id or a
//! request id is inserted with `ON CONFLICT DO NOTHING` and a row count of 0 is
//! the refusal; the rate limit is counted after the account's policy row was
//! updated, which takes that row's write lock (PostgreSQL) or the database's
//! (SQLite), so two concurrent admissions of one account are serialized.

use mpc_db::sqlx::{self, Row};
use party_core::authz::{AuthzError, Policy};
use party_core::host::Admission;
use party_core::seal::RecordKind;

use super::{now, PartyStore, StoreError};

/// The rate limit's window.
const RATE_WINDOW_SECS: i64 = 3600;

/// Why an admission was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// Refused with a typed reason: seen session, used request id, rate
    /// limit. Nothing was recorded.
    #[error(transparent)]
    Refused(#[from] AuthzError),
    /// The account's policy changed after the approvals were checked against
    /// it (a policy change committed meanwhile). Nothing was recorded.
    #[error("the account's policy changed during admission")]
    PolicyChanged,
    /// The store failed; nothing was recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AdmissionError {
    fn from(e: sqlx::Error) -> Self {
        AdmissionError::Store(StoreError::Db(e))
    }
}

impl PartyStore {
    /// Seals a policy for `account_id`: the sealed bytes and the policy hash.
    pub(super) fn seal_policy(
        &self,
        account_id: &str,
        policy: &Policy,
    ) -> Result<(Vec<u8>, [u8; 32]), StoreError> {
        let sealed = self
            .key
            .seal_value(self.ctx(account_id, RecordKind::Policy), policy)?;
        Ok((sealed, policy.hash()))
    }

    /// The account's stored policy (`None`: the account has none), opened,
    /// validated, and checked against its recorded hash.
    pub async fn policy(&self, account_id: &str) -> Result<Option<Policy>, StoreError> {
        let row = sqlx::query("SELECT sealed, policy_hash FROM policies WHERE account_id = $1")
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let policy: Policy = self.key.open_value(
            self.ctx(account_id, RecordKind::Policy),
            &row.get::<Vec<u8>, _>(0),
        )?;
        if policy.validate().is_err() || policy.hash().as_slice() != row.get::<Vec<u8>, _>(1) {
            return Err(StoreError::PolicyCorrupt);
        }
        Ok(Some(policy))
    }

    /// Replaces the account's policy by `policy` only if the stored one's
    /// hash is still `previous` (compare and swap): otherwise
    /// [`StoreError::PolicyConflict`] and nothing changes.
    pub async fn replace_policy(
        &self,
        account_id: &str,
        policy: &Policy,
        previous: &[u8; 32],
    ) -> Result<(), StoreError> {
        policy.validate().map_err(|_| StoreError::PolicyCorrupt)?;
        let (sealed, hash) = self.seal_policy(account_id, policy)?;
        let updated = sqlx::query(
            "UPDATE policies SET sealed = $1, policy_hash = $2, updated_at = $3
             WHERE account_id = $4 AND policy_hash = $5",
        )
        .bind(sealed)
        .bind(hash.to_vec())
        .bind(now())
        .bind(account_id)
        .bind(previous.to_vec())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated != 1 {
            return Err(StoreError::PolicyConflict);
        }
        Ok(())
    }

    /// Records an admission in one transaction, or refuses it and records
    /// nothing: the session id (refused [`AuthzError::SessionReplayed`] if
    /// recorded), and for an approved session the (account, request id)
    /// pair (refused [`AuthzError::RequestIdReused`]) and, under a rate limit,
    /// the signing, refused [`AuthzError::RateLimited`] when this party
    /// admitted `max_per_hour` signings of the account in the last hour.
    ///
    /// `checked_policy` is the hash of the policy the approvals were checked
    /// against; if the account's policy is another by now, the admission is
    /// refused ([`AdmissionError::PolicyChanged`]).
    pub async fn record_admission(
        &self,
        admission: &Admission,
        kind: &str,
        checked_policy: Option<&[u8; 32]>,
    ) -> Result<(), AdmissionError> {
        let at = now();
        let session_id = admission.session_id.to_string();
        let mut tx = self.pool.begin().await?;
        if let Some(approved) = &admission.approved {
            // First statement, a write: it takes the account's lock, so what
            // follows is counted with no concurrent admission of the account.
            let hash = checked_policy.ok_or(AdmissionError::PolicyChanged)?;
            let locked = sqlx::query(
                "UPDATE policies SET admissions = admissions + 1
                 WHERE account_id = $1 AND policy_hash = $2",
            )
            .bind(&approved.account_id)
            .bind(hash.to_vec())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if locked != 1 {
                return Err(AdmissionError::PolicyChanged);
            }
        }
        let new_session = sqlx::query(
            "INSERT INTO admitted_sessions (session_id, kind, admitted_at) VALUES ($1, $2, $3)
             ON CONFLICT (session_id) DO NOTHING",
        )
        .bind(&session_id)
        .bind(kind)
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if new_session != 1 {
            return Err(AuthzError::SessionReplayed.into());
        }
        if let Some(approved) = &admission.approved {
            if let (Some(max), true) = (approved.max_per_hour, approved.signs) {
                let recent: i64 = sqlx::query(
                    "SELECT COUNT(*) FROM approved_requests
                     WHERE account_id = $1 AND signs = 1 AND admitted_at > $2",
                )
                .bind(&approved.account_id)
                .bind(at - RATE_WINDOW_SECS)
                .fetch_one(&mut *tx)
                .await?
                .get(0);
                if recent >= i64::from(max) {
                    return Err(AuthzError::RateLimited.into());
                }
            }
            let new_request = sqlx::query(
                "INSERT INTO approved_requests (account_id, request_id, session_id, signs, admitted_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (account_id, request_id) DO NOTHING",
            )
            .bind(&approved.account_id)
            .bind(&approved.request_id)
            .bind(&session_id)
            .bind(i64::from(approved.signs))
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if new_request != 1 {
                return Err(AuthzError::RequestIdReused.into());
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether this party was admitted to the session.
    pub async fn was_admitted(&self, session_id: &uuid::Uuid) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT COUNT(*) FROM admitted_sessions WHERE session_id = $1")
                .bind(session_id.to_string())
                .fetch_one(&self.pool)
                .await?
                .get::<i64, _>(0)
                == 1,
        )
    }
}

#[cfg(test)]
#[path = "authz_tests.rs"]
mod tests;
