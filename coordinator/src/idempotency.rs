//! `Idempotency-Key` on `POST /keygen` and `POST /sign` (IETF
//! draft-ietf-httpapi-idempotency-key-header): the same key with the same
//! request creates one session, whichever coordinator instance each request
//! reaches; the same key with another request is refused.
//!
//! One row per (API key, client key) in the shared database, kept 24 h:
//! - the row's id is SHA-256 over the API key's hash and the client's key
//!   (neither is stored, and one API key cannot see another's keys);
//! - the fingerprint is SHA-256 of the route and the request as parsed (so
//!   whitespace and field order do not matter);
//! - the first answer is stored sealed (AES-256-GCM) under a key derived from
//!   the API key itself and the client's key, which the coordinator keeps
//!   nowhere: the answer may carry device join tokens, and a database reader
//!   must not get them.
//!
//! The first request inserts the row (a primary-key conflict decides who is
//! first across instances), creates its session and stores the answer. A
//! repeat with the same fingerprint gets the stored answer (waiting up to
//! [`IN_FLIGHT_WAIT`] while the first is still creating it, then 409
//! `idempotency_key_in_flight`); another fingerprint gets 422
//! `idempotency_key_reused`. A first request that fails to create its
//! session deletes the row, so the client may retry with the same key.

use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use mpc_api::error::ErrorCode;
use mpc_db::sqlx::{self, Row};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::AppError;
use crate::store::now;
use crate::Coordinator;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// How long a key is remembered.
pub const RETENTION_SECS: u64 = 24 * 3600;
/// Longest client key.
pub const MAX_KEY_LEN: usize = 255;
/// How long a repeat waits for the first request to finish creating.
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(5);
const IN_FLIGHT_RECHECK: Duration = Duration::from_millis(25);

/// A client's idempotency key, scoped to the API key that sent it.
pub struct Scoped {
    id: String,
    seal_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Scoped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scoped(<redacted>)")
    }
}

/// The `Idempotency-Key` header, if any: 1..=255 printable ASCII characters.
pub fn key_of(headers: &axum::http::HeaderMap) -> Result<Option<String>, AppError> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    let ok = v
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= MAX_KEY_LEN)
        .filter(|s| s.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    match ok {
        Some(s) => Ok(Some(s.to_string())),
        None => Err(AppError::code(
            ErrorCode::InvalidIdempotencyKey,
            "Idempotency-Key must be 1..255 printable ASCII characters without spaces",
        )),
    }
}

impl Scoped {
    /// Scopes `key` to `api_key`.
    pub fn new(api_key: &str, key: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"mpc/idempotency/v1/id\0");
        h.update(crate::auth::hash_api_key(api_key));
        h.update(key.as_bytes());
        let id = hex::encode(h.finalize());
        let mut h = Sha256::new();
        h.update(b"mpc/idempotency/v1/seal\0");
        h.update((api_key.len() as u64).to_be_bytes());
        h.update(api_key.as_bytes());
        h.update(key.as_bytes());
        Self {
            id,
            seal_key: Zeroizing::new(h.finalize().into()),
        }
    }

    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, AppError> {
        let cipher =
            Aes256Gcm::new_from_slice(self.seal_key.as_slice()).map_err(AppError::internal)?;
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                aes_gcm::aead::Payload {
                    msg: plain,
                    aad: self.id.as_bytes(),
                },
            )
            .map_err(|_| AppError::internal("idempotency: sealing failed"))?;
        Ok([nonce.as_slice(), &ct].concat())
    }

    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, AppError> {
        let cipher =
            Aes256Gcm::new_from_slice(self.seal_key.as_slice()).map_err(AppError::internal)?;
        let (nonce, ct) = sealed
            .split_at_checked(12)
            .ok_or_else(|| AppError::internal("idempotency: stored answer too short"))?;
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                aes_gcm::aead::Payload {
                    msg: ct,
                    aad: self.id.as_bytes(),
                },
            )
            .map_err(|_| AppError::internal("idempotency: stored answer does not open"))
    }
}

/// SHA-256 of the route and the request as parsed.
pub fn fingerprint<T: serde::Serialize>(route: &str, req: &T) -> Result<String, AppError> {
    let body = serde_json::to_vec(req).map_err(AppError::internal)?;
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update([0]);
    h.update(&body);
    Ok(hex::encode(h.finalize()))
}

/// What [`Coordinator::idempotent`] found.
#[derive(Debug)]
pub enum Outcome<T> {
    /// This request was the first: its answer.
    First(T),
    /// A repeat: the first request's answer.
    Repeat(T),
}

impl Coordinator {
    /// Runs `create` once per scoped key and fingerprint (see the module
    /// docs); `T` is the answer stored and replayed.
    pub async fn idempotent<T, F>(
        &self,
        key: &Scoped,
        fingerprint: &str,
        create: F,
    ) -> Result<Outcome<T>, AppError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: std::future::Future<Output = Result<(T, uuid::Uuid), AppError>>,
    {
        let pool = self.store().pool();
        let t = now();
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(i64::try_from(t.saturating_sub(RETENTION_SECS)).unwrap_or(0))
            .execute(pool)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (key_hash, fingerprint, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(&key.id)
        .bind(fingerprint)
        .bind(i64::try_from(t).unwrap_or(i64::MAX))
        .execute(pool)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            return match create.await {
                Ok((answer, session_id)) => {
                    let plain =
                        Zeroizing::new(serde_json::to_vec(&answer).map_err(AppError::internal)?);
                    let sealed = key.seal(&plain)?;
                    sqlx::query(
                        "UPDATE idempotency_keys SET session_id = $1, response = $2 WHERE key_hash = $3",
                    )
                    .bind(session_id.to_string())
                    .bind(sealed)
                    .bind(&key.id)
                    .execute(pool)
                    .await?;
                    Ok(Outcome::First(answer))
                }
                Err(e) => {
                    sqlx::query("DELETE FROM idempotency_keys WHERE key_hash = $1")
                        .bind(&key.id)
                        .execute(pool)
                        .await?;
                    Err(e)
                }
            };
        }
        let deadline = tokio::time::Instant::now() + IN_FLIGHT_WAIT;
        loop {
            let row = sqlx::query(
                "SELECT fingerprint, response FROM idempotency_keys WHERE key_hash = $1",
            )
            .bind(&key.id)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else {
                // The first request failed and let the key go: this one may
                // create (the client retried after an error).
                return Box::pin(self.idempotent(key, fingerprint, create)).await;
            };
            let stored: String = row.try_get(0)?;
            if stored != fingerprint {
                return Err(AppError::code(
                    ErrorCode::IdempotencyKeyReused,
                    "this Idempotency-Key was used with a different request",
                ));
            }
            if let Some(sealed) = row.try_get::<Option<Vec<u8>>, _>(1)? {
                let plain = Zeroizing::new(key.open(&sealed)?);
                let answer = serde_json::from_slice(&plain).map_err(AppError::internal)?;
                return Ok(Outcome::Repeat(answer));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AppError::code(
                    ErrorCode::IdempotencyKeyInFlight,
                    "the first request with this Idempotency-Key is still being processed",
                ));
            }
            tokio::time::sleep(IN_FLIGHT_RECHECK).await;
        }
    }
}
