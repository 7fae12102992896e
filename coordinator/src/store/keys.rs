//! API keys, stored as SHA-256 hashes only, each of one tenant with its
//! scopes; revoked keys keep their row. And the per-key request windows of
//! the rate limit (one row per key, shared by every coordinator instance).

use mpc_api::admin::{Scope, DEFAULT_TENANT};
use mpc_db::sqlx::any::AnyRow;
use mpc_db::sqlx::{self, Row as _};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::{i, now, u, Store, StoreError, OPEN};

/// SHA-256 of an API key: keys are random 256-bit strings, so a plain hash is
/// enough to make a database leak useless.
pub fn hash_api_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A stored API key: never the key or its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Id.
    pub id: String,
    /// Name (the `label` column).
    pub name: String,
    /// Tenant.
    pub tenant_id: String,
    /// Scopes, in [`Scope::ALL`] order.
    pub scopes: Vec<Scope>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds, once revoked.
    pub revoked_at: Option<u64>,
}

/// Scopes as stored: comma-separated names.
fn scopes_text(scopes: &[Scope]) -> String {
    Scope::ALL
        .iter()
        .filter(|s| scopes.contains(s))
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn key_from_row(r: &AnyRow) -> Result<ApiKeyRecord, StoreError> {
    let scopes = r
        .get::<String, _>(3)
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| Scope::parse(s).ok_or(StoreError::Malformed("API key scope")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ApiKeyRecord {
        id: r.get(0),
        name: r.get(1),
        tenant_id: r.get(2),
        scopes,
        created_at: u(r.get(4)),
        revoked_at: r.get::<Option<i64>, _>(5).map(u),
    })
}

const KEY_COLUMNS: &str = "id, label, tenant_id, scopes, created_at, revoked_at";

impl Store {
    /// The key with this hash, revoked or not.
    pub async fn api_key_by_hash(
        &self,
        hash: &[u8; 32],
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_sha256 = $1"
        ))
        .bind(hash.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    /// Stores the hash of a bootstrap API key (an admin key of the default
    /// tenant, every scope) if it is not there yet; a key already stored,
    /// revoked or not, is left as it is.
    pub async fn ensure_api_key(&self, key: &str, label: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_keys (id, key_sha256, label, created_at, tenant_id, scopes) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key_sha256) DO NOTHING")
            .bind(Uuid::new_v4().to_string())
            .bind(hash_api_key(key).to_vec())
            .bind(label)
            .bind(i(now()))
            .bind(DEFAULT_TENANT)
            .bind(scopes_text(&Scope::ALL))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a new key (by its hash) of `tenant` with `scopes`.
    pub async fn insert_api_key(
        &self,
        hash: &[u8; 32],
        name: &str,
        tenant: &str,
        scopes: &[Scope],
    ) -> Result<ApiKeyRecord, StoreError> {
        let rec = ApiKeyRecord {
            id: Uuid::new_v4().to_string(),
            name: name.to_string(),
            tenant_id: tenant.to_string(),
            scopes: Scope::ALL
                .into_iter()
                .filter(|s| scopes.contains(s))
                .collect(),
            created_at: now(),
            revoked_at: None,
        };
        sqlx::query("INSERT INTO api_keys (id, key_sha256, label, created_at, tenant_id, scopes) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&rec.id)
            .bind(hash.to_vec())
            .bind(&rec.name)
            .bind(i(rec.created_at))
            .bind(&rec.tenant_id)
            .bind(scopes_text(&rec.scopes))
            .execute(&self.pool)
            .await?;
        Ok(rec)
    }

    /// The keys of `tenant` (every tenant's with `None`), oldest first.
    pub async fn api_keys(&self, tenant: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE ($1 IS NULL OR tenant_id = $1)
             ORDER BY created_at, id"
        ))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Revokes key `id` of `tenant` (of any tenant with `None`); revoking it
    /// again keeps the first time. `None` when there is no such key.
    pub async fn revoke_api_key(
        &self,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1)
             WHERE id = $2 AND ($3 IS NULL OR tenant_id = $3)",
        )
        .bind(i(now()))
        .bind(id)
        .bind(tenant)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)"
        ))
        .bind(id)
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    /// Counts one request of key `key_id` in the fixed window starting at
    /// `window_start` (Unix seconds) and returns the window's count so far:
    /// one upsert, so every coordinator instance counts into the same row.
    /// A row of an older window starts over at 1; a request stamped with an
    /// older window than the row's (a slow clock) counts into the row's.
    pub async fn count_request(&self, key_id: &str, window_start: u64) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO api_key_usage (key_id, window_start, requests) VALUES ($1, $2, 1)
             ON CONFLICT (key_id) DO UPDATE SET
               requests = CASE WHEN api_key_usage.window_start >= excluded.window_start
                               THEN api_key_usage.requests + 1 ELSE 1 END,
               window_start = CASE WHEN api_key_usage.window_start >= excluded.window_start
                                   THEN api_key_usage.window_start ELSE excluded.window_start END
             RETURNING requests",
        )
        .bind(key_id)
        .bind(i(window_start))
        .fetch_one(&self.pool)
        .await?;
        Ok(u(row.get(0)))
    }

    /// Open (waiting or in-progress, not yet past their deadline) sessions
    /// created with key `key_id`.
    pub async fn open_sessions_of(&self, key_id: &str) -> Result<u64, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) FROM sessions WHERE api_key_id = $1 AND status IN {OPEN} AND expires_at > $2"
        ))
        .bind(key_id)
        .bind(i(now()))
        .fetch_one(&self.pool)
        .await?;
        Ok(u(row.get(0)))
    }
}
