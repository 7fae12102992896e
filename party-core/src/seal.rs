//! Sealing of secret records at rest (AES-256-GCM).
//!
//! ```text
//! sealed = format version u8 | record kind u8 | nonce [12] | ciphertext+tag
//! AAD    = "mpc/seal/v1" | len|party id | len|account id | kind | format version
//! ```
//! A fresh random nonce per record. Because the AAD binds party, account and
//! kind, a row copied to another account, another party or another column
//! fails to open ([`SealError::OpenFailed`]).

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

/// Current sealed-record format.
pub const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const DOMAIN: &[u8] = b"mpc/seal/v1";

/// What a sealed record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordKind {
    /// A complete key share.
    KeyShare = 1,
    /// Aux info of a party group.
    AuxInfo = 2,
    /// A set of pregenerated primes.
    Primes = 3,
    /// A presignature.
    Presignature = 4,
    /// A party identity seed.
    Identity = 5,
    /// An account's authorization policy.
    Policy = 6,
}

impl RecordKind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => RecordKind::KeyShare,
            2 => RecordKind::AuxInfo,
            3 => RecordKind::Primes,
            4 => RecordKind::Presignature,
            5 => RecordKind::Identity,
            6 => RecordKind::Policy,
            _ => return None,
        })
    }
}

/// Why a record could not be sealed or opened. Never carries key material.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// The sealed bytes are too short or have an unknown kind.
    #[error("sealed record is malformed")]
    Malformed,
    /// Unknown format version.
    #[error("unsupported sealed record version {0}")]
    UnsupportedVersion(u8),
    /// The record is of another kind than asked for.
    #[error("sealed record holds {found:?}, expected {expected:?}")]
    KindMismatch {
        /// kind asked for
        expected: RecordKind,
        /// kind in the record
        found: RecordKind,
    },
    /// Authentication failed: wrong master key, or the record was moved to
    /// another party or account, or altered.
    #[error("sealed record failed to open (wrong key, party, account or tampered)")]
    OpenFailed,
    /// Encryption failed.
    #[error("sealing failed")]
    SealFailed,
    /// The master key is not 32 bytes (64 hex digits).
    #[error("master key must be 32 bytes")]
    BadMasterKey,
}

/// Where a record belongs: bound into the AAD.
#[derive(Debug, Clone, Copy)]
pub struct RecordContext<'a> {
    /// Owning party id.
    pub party_id: &'a str,
    /// Account id (or group id / presignature id for non-share records; empty
    /// for records not tied to one).
    pub account_id: &'a str,
    /// Record kind.
    pub kind: RecordKind,
}

impl RecordContext<'_> {
    /// The AAD of a record sealed in the current format, for hosts that seal
    /// with another AES-GCM implementation (WebCrypto) in the same format.
    pub fn associated_data(&self) -> Vec<u8> {
        self.aad(SEAL_VERSION)
    }

    fn aad(&self, version: u8) -> Vec<u8> {
        let mut aad =
            Vec::with_capacity(DOMAIN.len() + self.party_id.len() + self.account_id.len() + 10);
        aad.extend_from_slice(DOMAIN);
        for part in [self.party_id.as_bytes(), self.account_id.as_bytes()] {
            aad.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad.push(self.kind as u8);
        aad.push(version);
        aad
    }
}

/// A party's 256-bit master key. Zeroized on drop; `Debug` is redacted.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(k.as_mut());
        Self(k)
    }
    /// From 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadMasterKey)?;
        Ok(Self(Zeroizing::new(arr)))
    }
    /// From 64 hex digits (as kept in an env var or key file).
    pub fn from_hex(hex_str: &str) -> Result<Self, SealError> {
        let bytes =
            Zeroizing::new(hex::decode(hex_str.trim()).map_err(|_| SealError::BadMasterKey)?);
        Self::from_bytes(&bytes)
    }
    /// The key as 64 hex digits, for writing a new key file. Handle as a secret.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.as_ref()))
    }

    fn cipher(&self) -> Result<Aes256Gcm, SealError> {
        Aes256Gcm::new_from_slice(self.0.as_ref()).map_err(|_| SealError::BadMasterKey)
    }

    /// Seals `plaintext` for `ctx` under a fresh nonce.
    pub fn seal(&self, ctx: RecordContext<'_>, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let aad = ctx.aad(SEAL_VERSION);
        let ct = self
            .cipher()?
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::SealFailed)?;
        let mut out = Vec::with_capacity(2 + NONCE_LEN + ct.len());
        out.push(SEAL_VERSION);
        out.push(ctx.kind as u8);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a record sealed for exactly `ctx`.
    pub fn open(
        &self,
        ctx: RecordContext<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() < 2 + NONCE_LEN + 16 {
            return Err(SealError::Malformed);
        }
        let version = sealed[0];
        if version != SEAL_VERSION {
            return Err(SealError::UnsupportedVersion(version));
        }
        let found = RecordKind::from_u8(sealed[1]).ok_or(SealError::Malformed)?;
        if found != ctx.kind {
            return Err(SealError::KindMismatch {
                expected: ctx.kind,
                found,
            });
        }
        let aad = ctx.aad(version);
        self.cipher()?
            .decrypt(
                Nonce::from_slice(&sealed[2..2 + NONCE_LEN]),
                Payload {
                    msg: &sealed[2 + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::OpenFailed)
    }
}

/// Errors of the typed seal helpers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Sealing layer.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The opened bytes are not a valid record of that type (a key share or
    /// aux info that fails the library's validation lands here).
    #[error("record content is invalid: {0}")]
    Invalid(#[from] crate::codec::CodecError),
    /// Primes failed validation.
    #[error(transparent)]
    Primes(#[from] crate::primes::PrimeError),
}

impl MasterKey {
    /// Encodes and seals a serializable secret value.
    pub fn seal_value<T: serde::Serialize>(
        &self,
        ctx: RecordContext<'_>,
        value: &T,
    ) -> Result<Vec<u8>, RecordError> {
        let bytes = Zeroizing::new(crate::codec::encode(value)?);
        Ok(self.seal(ctx, &bytes)?)
    }

    /// Opens and decodes a value; validating types (key shares, aux info) are
    /// validated while decoding, so an invalid share is never returned.
    pub fn open_value<T: serde::de::DeserializeOwned>(
        &self,
        ctx: RecordContext<'_>,
        sealed: &[u8],
    ) -> Result<T, RecordError> {
        let bytes = self.open(ctx, sealed)?;
        Ok(crate::codec::decode(&bytes)?)
    }

    /// Seals a prime set.
    pub fn seal_primes(
        &self,
        ctx: RecordContext<'_>,
        primes: &crate::primes::PrimeSet,
    ) -> Result<Vec<u8>, RecordError> {
        let bytes = primes.to_bytes()?;
        Ok(self.seal(ctx, &bytes)?)
    }

    /// Opens and validates a prime set.
    pub fn open_primes(
        &self,
        ctx: RecordContext<'_>,
        sealed: &[u8],
    ) -> Result<crate::primes::PrimeSet, RecordError> {
        let bytes = self.open(ctx, sealed)?;
        Ok(crate::primes::PrimeSet::from_bytes(&bytes)?)
    }
}
