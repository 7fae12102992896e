//! Accounts: the distributed keys keygens made.

use mpc_db::sqlx::any::AnyRow;
use mpc_db::sqlx::{self, Row as _};
use party_core::authz::Policy;
use party_core::identity::PartyPublicKey;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{i, u, u16_, Store, StoreError, Tx};

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
    /// The policy every party holds (fixed at keygen, replaced by a
    /// completed policy change), if the account has one.
    pub policy: Option<Policy>,
}

const COLUMNS: &str = "account_id, public_key, address, threshold_t, threshold_n, parties, \
                       keygen_session_id, created_at, policy";

impl Store {
    /// An account.
    pub async fn account(&self, account_id: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM accounts WHERE account_id = $1"
        ))
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| account_from_row(&r)).transpose()
    }

    /// An account of `tenant` (`None` for another tenant's: the caller
    /// cannot tell it from one that does not exist).
    pub async fn account_of(
        &self,
        tenant: &str,
        account_id: &str,
    ) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM accounts WHERE account_id = $1 AND tenant_id = $2"
        ))
        .bind(account_id)
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| account_from_row(&r)).transpose()
    }

    /// The accounts of `tenant`, newest first.
    pub async fn accounts_of(&self, tenant: &str, limit: i64) -> Result<Vec<Account>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM accounts WHERE tenant_id = $1 \
             ORDER BY created_at DESC, account_id LIMIT $2"
        ))
        .bind(tenant)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(account_from_row).collect()
    }

    /// The tenant of an account.
    pub async fn account_tenant(&self, account_id: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query("SELECT tenant_id FROM accounts WHERE account_id = $1")
                .bind(account_id)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.get(0)),
        )
    }

    /// All accounts of every tenant, newest first (the presignature pool).
    pub async fn accounts(&self, limit: i64) -> Result<Vec<Account>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM accounts ORDER BY created_at DESC, account_id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(account_from_row).collect()
    }
}

/// A policy as stored: party-core's JSON form.
fn policy_text(policy: &Policy) -> Result<String, sqlx::Error> {
    serde_json::to_string(policy).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

fn account_from_row(r: &AnyRow) -> Result<Account, StoreError> {
    let policy = r
        .get::<Option<String>, _>(8)
        .map(|p| serde_json::from_str::<Policy>(&p))
        .transpose()
        .map_err(|_| StoreError::Malformed("account policy"))?;
    Ok(Account {
        account_id: r.get(0),
        public_key: hex::encode(r.get::<Vec<u8>, _>(1)),
        address: r.get(2),
        threshold_t: u16_(r.get(3)),
        threshold_n: u16_(r.get(4)),
        parties: serde_json::from_str(&r.get::<String, _>(5)).unwrap_or_default(),
        keygen_session_id: r.get(6),
        created_at: u(r.get(7)),
        policy,
    })
}

/// Inserts a keygen's account, in the tenant of its keygen session `id`,
/// inside the caller's transaction.
pub(super) async fn insert_account(
    tx: &mut Tx<'_>,
    id: Uuid,
    account: &Account,
) -> Result<(), sqlx::Error> {
    let policy = account.policy.as_ref().map(policy_text).transpose()?;
    let policy_hash = account.policy.as_ref().map(|p| hex::encode(p.hash()));
    sqlx::query(&format!(
        "INSERT INTO accounts ({COLUMNS}, policy_hash, tenant_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, (SELECT tenant_id FROM sessions WHERE session_id = $11))"
    ))
    .bind(&account.account_id)
    .bind(hex::decode(&account.public_key).unwrap_or_default())
    .bind(&account.address)
    .bind(i64::from(account.threshold_t))
    .bind(i64::from(account.threshold_n))
    .bind(serde_json::to_string(&account.parties).unwrap_or_default())
    .bind(&account.keygen_session_id)
    .bind(i(account.created_at))
    .bind(policy)
    .bind(policy_hash)
    .bind(id.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Replaces an account's policy (a completed policy change), inside the
/// caller's transaction.
pub(super) async fn replace_policy(
    tx: &mut Tx<'_>,
    account_id: &str,
    policy: &Policy,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts SET policy = $1, policy_hash = $2 WHERE account_id = $3")
        .bind(policy_text(policy)?)
        .bind(hex::encode(policy.hash()))
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
