//! API keys, stored as SHA-256 hashes only.

use mpc_db::sqlx::{self, Row as _};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::{i, now, Store, StoreError};

/// SHA-256 of an API key: keys are random 256-bit strings, so a plain hash is
/// enough to make a database leak useless.
pub fn hash_api_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Store {
    /// Whether an API key hash is stored.
    pub async fn api_key_exists(&self, hash: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM api_keys WHERE key_sha256 = $1")
            .bind(hash.to_vec())
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Stores the hash of an API key if it is not there yet.
    pub async fn ensure_api_key(&self, key: &str, label: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_keys (id, key_sha256, label, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (key_sha256) DO NOTHING")
            .bind(Uuid::new_v4().to_string())
            .bind(hash_api_key(key).to_vec())
            .bind(label)
            .bind(i(now()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// All API key hashes.
    pub async fn api_key_hashes(&self) -> Result<Vec<[u8; 32]>, StoreError> {
        let rows = sqlx::query("SELECT key_sha256 FROM api_keys")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get::<Vec<u8>, _>(0).try_into().ok())
            .collect())
    }
}
