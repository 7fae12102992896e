//! How sessions end: completed (with what the outcome adds — an account, a
//! presignature — in the same transaction), failed or expired, each written
//! once whatever the order or repetition of the calls.

use mpc_api::rest::SessionResult;
use mpc_db::sqlx::{self, Row as _};
use uuid::Uuid;

use party_core::authz::Policy;

use super::accounts::{insert_account, replace_policy};
use super::aux::{record_aux_group, record_inconsistent, record_regenerated, AuxRecord};
use super::events::event;
use super::{i, now, Account, SessionStatus, Store, StoreError, Tx, OPEN};

impl Store {
    /// Completes a keygen: inserts the account, records its party group's
    /// aux info (the group's row if this keygen generated it, the agreed
    /// fingerprint) and marks the session completed, once. Returns whether
    /// this call did it.
    pub async fn complete_keygen(
        &self,
        id: Uuid,
        account: &Account,
        aux_group: Option<AuxRecord<'_>>,
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
            Insert::Account { account, aux_group },
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

    /// Completes a policy change and replaces the account's policy, in one
    /// transaction, once. Returns whether this call did it.
    pub async fn complete_policy_change(
        &self,
        id: Uuid,
        account_id: &str,
        policy: &Policy,
    ) -> Result<bool, StoreError> {
        let result = SessionResult {
            account_id: Some(account_id.to_string()),
            ..SessionResult::default()
        };
        self.close_one(
            id,
            Close::Completed {
                result: &result,
                account_id: None,
            },
            Insert::Policy { account_id, policy },
        )
        .await
    }

    /// Completes an aux-info session whose parties all reported aux info
    /// `fingerprint`, and makes it the group's, in one transaction, once.
    /// Returns whether this call did it.
    pub async fn complete_aux_info(
        &self,
        id: Uuid,
        group_id: &str,
        fingerprint: &str,
    ) -> Result<bool, StoreError> {
        let result = SessionResult {
            group_id: Some(group_id.to_string()),
            aux_fingerprint: Some(fingerprint.to_string()),
            ..SessionResult::default()
        };
        self.close_one(
            id,
            Close::Completed {
                result: &result,
                account_id: None,
            },
            Insert::AuxRegenerated {
                group_id,
                fingerprint,
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
        let how = Close::Failed {
            reason,
            blamed,
            code: None,
        };
        self.close_one(id, how, Insert::Nothing).await
    }

    /// Fails a keygen whose parties reported different aux info
    /// fingerprints (code `aux_info_mismatch`) and records its party group
    /// as inconsistent, in one transaction, once. Returns whether this call
    /// did it.
    pub async fn fail_aux_mismatch(
        &self,
        id: Uuid,
        reason: &str,
        group_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let how = Close::Failed {
            reason,
            blamed: None,
            code: Some(mpc_api::error::ErrorCode::AuxInfoMismatch.as_str()),
        };
        self.close_one(id, how, Insert::AuxInconsistent { group_id })
            .await
    }

    /// Fails a session with a stable `code` (a party's refusal before it
    /// started, or `party_disconnected`), blaming nobody, once. Returns
    /// whether this call did it.
    pub async fn fail_refused(
        &self,
        id: Uuid,
        reason: &str,
        code: &str,
    ) -> Result<bool, StoreError> {
        let how = Close::Failed {
            reason,
            blamed: None,
            code: Some(code),
        };
        self.close_one(id, how, Insert::Nothing).await
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

/// What a session's outcome adds, in the transaction that closes it.
enum Insert<'a> {
    Nothing,
    /// A completed keygen: the account, and what it tells about its party
    /// group's aux info.
    Account {
        account: &'a Account,
        aux_group: Option<AuxRecord<'a>>,
    },
    /// A keygen failed on different aux info: its group, inconsistent.
    AuxInconsistent {
        group_id: Option<&'a str>,
    },
    /// A completed aux-info session: the group's new aux info.
    AuxRegenerated {
        group_id: &'a str,
        fingerprint: &'a str,
    },
    /// A completed presign session: its presignature, available.
    Presignature {
        account_id: &'a str,
        signers: &'a str,
    },
    /// A completed policy change: the account's new policy.
    Policy {
        account_id: &'a str,
        policy: &'a Policy,
    },
}

impl Insert<'_> {
    async fn run(self, tx: &mut Tx<'_>, id: Uuid) -> Result<(), sqlx::Error> {
        match self {
            Insert::Nothing => Ok(()),
            Insert::Account { account, aux_group } => {
                insert_account(tx, id, account).await?;
                match aux_group {
                    Some(group) => record_aux_group(tx, id, &group).await,
                    None => Ok(()),
                }
            }
            Insert::AuxInconsistent { group_id } => match group_id {
                Some(group) => record_inconsistent(tx, id, group).await,
                None => Ok(()),
            },
            Insert::AuxRegenerated {
                group_id,
                fingerprint,
            } => record_regenerated(tx, id, group_id, fingerprint).await,
            Insert::Presignature {
                account_id,
                signers,
            } => super::presignatures::insert_presignature(tx, id, account_id, signers).await,
            Insert::Policy { account_id, policy } => replace_policy(tx, account_id, policy).await,
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
        code: Option<&'a str>,
    },
    Expired {
        reason: &'a str,
    },
}

/// Moves an open session to its terminal state and logs the event; false if
/// it was already terminal (so each ending is recorded once).
async fn close(tx: &mut Tx<'_>, id: Uuid, how: Close<'_>) -> Result<bool, StoreError> {
    let (status, result, account_id, error, blamed, code, detail) = match how {
        Close::Completed { result, account_id } => {
            let detail = serde_json::to_value(result)
                .map_err(|_| StoreError::Malformed("session result to store"))?;
            (
                SessionStatus::Completed,
                Some(detail.to_string()),
                account_id,
                None,
                None,
                None,
                detail,
            )
        }
        Close::Failed {
            reason,
            blamed,
            code,
        } => (
            SessionStatus::Failed,
            None,
            None,
            Some(reason),
            blamed,
            code,
            match code {
                Some(code) => {
                    serde_json::json!({ "reason": reason, "blamed_party": blamed, "code": code })
                }
                None => serde_json::json!({ "reason": reason, "blamed_party": blamed }),
            },
        ),
        Close::Expired { reason } => (
            SessionStatus::Expired,
            None,
            None,
            Some(reason),
            None,
            None,
            serde_json::json!({ "reason": reason }),
        ),
    };
    let changed = sqlx::query(&format!(
        "UPDATE sessions SET status = $1, result = COALESCE($2, result), account_id = COALESCE($3, account_id),
         error = $4, blamed_party = $5, updated_at = $6, error_code = $7 WHERE session_id = $8 AND status IN {OPEN}"
    ))
    .bind(status.as_str())
    .bind(result)
    .bind(account_id)
    .bind(error)
    .bind(blamed)
    .bind(i(now()))
    .bind(code)
    .bind(id.to_string())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if changed == 1 {
        event(tx, id, status.as_str(), None, &detail).await?;
    }
    Ok(changed == 1)
}
