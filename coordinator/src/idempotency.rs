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
/// A claim without an answer older than this is taken over (its request
/// died with its process before it stored the answer or let the key go).
const IN_FLIGHT_LEASE_SECS: u64 = 60;
/// Claims one request makes at most (a key let go and claimed again by
/// others in between, repeatedly).
const MAX_CLAIMS: usize = 4;

/// A client's idempotency key, scoped to the API key that sent it.
#[derive(Clone)]
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
        // From the raw API key (never stored), so that a database reader
        // cannot test guesses of client keys against the stored key hashes.
        let mut h = Sha256::new();
        h.update(b"mpc/idempotency/v1/id\0");
        h.update((api_key.len() as u64).to_be_bytes());
        h.update(api_key.as_bytes());
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
    ///
    /// The first request's creation runs in a task of its own: a client
    /// that disconnects (the usual reason to retry) does not cancel it
    /// half-way, so the key always ends answered or let go. A claim left
    /// without an answer by a process that died is taken over after
    /// [`IN_FLIGHT_LEASE_SECS`].
    pub async fn idempotent<T, F>(
        &self,
        key: &Scoped,
        fingerprint: &str,
        create: F,
    ) -> Result<Outcome<T>, AppError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
        F: std::future::Future<Output = Result<(T, uuid::Uuid), AppError>> + Send + 'static,
    {
        let store = self.store();
        let deadline = tokio::time::Instant::now() + IN_FLIGHT_WAIT;
        let mut create = Some(create);
        let mut claims = 0;
        loop {
            let t = now();
            if claims < MAX_CLAIMS {
                if let Some(work) = create.take() {
                    claims += 1;
                    if store
                        .claim_idempotency_key(
                            &key.id,
                            fingerprint,
                            t,
                            t.saturating_sub(RETENTION_SECS),
                            t.saturating_sub(IN_FLIGHT_LEASE_SECS),
                        )
                        .await?
                    {
                        return self.create_once(key.clone(), work).await;
                    }
                    create = Some(work);
                }
            }
            match store.idempotency_key(&key.id).await? {
                // The first request failed and let the key go: claim it.
                None if claims < MAX_CLAIMS => continue,
                None => {}
                Some(row) if row.fingerprint != fingerprint => {
                    return Err(AppError::code(
                        ErrorCode::IdempotencyKeyReused,
                        "this Idempotency-Key was used with a different request",
                    ));
                }
                Some(row) => {
                    if let Some(sealed) = row.sealed_answer {
                        let plain = Zeroizing::new(key.open(&sealed)?);
                        let answer = serde_json::from_slice(&plain).map_err(AppError::internal)?;
                        return Ok(Outcome::Repeat(answer));
                    }
                }
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

    /// The claimed key's creation, in a task the caller's disconnect cannot
    /// cancel: stores the sealed answer, or lets the key go on failure.
    async fn create_once<T, F>(&self, key: Scoped, create: F) -> Result<Outcome<T>, AppError>
    where
        T: serde::Serialize + Send + Sync + 'static,
        F: std::future::Future<Output = Result<(T, uuid::Uuid), AppError>> + Send + 'static,
    {
        let c = self.clone();
        let task = tokio::spawn(async move {
            let store = c.store();
            match create.await {
                Ok((answer, session_id)) => {
                    let stored = async {
                        let plain = Zeroizing::new(
                            serde_json::to_vec(&answer).map_err(AppError::internal)?,
                        );
                        let sealed = key.seal(&plain)?;
                        store
                            .finish_idempotency_key(&key.id, session_id, sealed)
                            .await?;
                        Ok::<_, AppError>(())
                    };
                    // The session exists: answer it even if the answer
                    // could not be stored (a repeat then waits out the lease).
                    if let Err(e) = stored.await {
                        tracing::error!(%session_id, error = %e.message, "idempotency: answer not stored");
                    }
                    Ok(Outcome::First(answer))
                }
                Err(e) => {
                    if let Err(r) = store.release_idempotency_key(&key.id).await {
                        tracing::error!(error = %r, "idempotency: key not let go");
                    }
                    Err(e)
                }
            }
        });
        task.await.map_err(AppError::internal)?
    }
}
