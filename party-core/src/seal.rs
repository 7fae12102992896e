//! Sealing of secret records at rest (AES-256-GCM).
//!
//! ```text
//! sealed = format version u8 | kind byte u8 | nonce [12] | ciphertext+tag
//! AAD    = "mpc/seal/v1" | len|party id | len|account id | kind byte | format version
//! kind byte = record kind | 0x80 if made from PUBLIC test data
//! ```
//! A fresh random nonce per record. Because the AAD binds party, account and
//! kind, a row copied to another account, another party or another column
//! fails to open ([`SealError::OpenFailed`]).
//!
//! A record made from the PUBLIC test data (test primes, test aux info, or a
//! key share whose aux info came from them) carries the test-data bit
//! ([`Provenance::TestData`]) in its kind byte, which the AAD binds: clearing
//! the bit makes the record fail to open, so a marked record cannot be made
//! to look like a production one. A production record has the bit clear,
//! so its bytes and AAD are those of every earlier build. [`MasterKey::open`]
//! refuses a marked record ([`SealError::TestData`]); only a host that
//! accepts test data (a build made for tests) opens one, through
//! [`MasterKey::open_checked`].

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

/// Current sealed-record format.
pub const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const DOMAIN: &[u8] = b"mpc/seal/v1";
/// The kind byte's test-data bit.
const TEST_DATA_BIT: u8 = 0x80;

/// Where a record's secret came from, bound into the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Provenance {
    /// Real secrets: every record of a production deployment.
    #[default]
    Production,
    /// Made from the PUBLIC test data (test primes or test aux info, or a
    /// key share or presignature made with them): never a real secret.
    TestData,
}

impl Provenance {
    fn bit(self) -> u8 {
        match self {
            Provenance::Production => 0,
            Provenance::TestData => TEST_DATA_BIT,
        }
    }
}

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
    /// The record is authentic but was made from PUBLIC test data, and
    /// this build (or host) does not accept test data.
    #[error("sealed record was made from public test data; this build refuses it")]
    TestData,
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
        self.aad(SEAL_VERSION, Provenance::Production)
    }

    fn aad(&self, version: u8, provenance: Provenance) -> Vec<u8> {
        let mut aad =
            Vec::with_capacity(DOMAIN.len() + self.party_id.len() + self.account_id.len() + 10);
        aad.extend_from_slice(DOMAIN);
        for part in [self.party_id.as_bytes(), self.account_id.as_bytes()] {
            aad.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad.push(self.kind as u8 | provenance.bit());
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

    /// Seals `plaintext` for `ctx` under a fresh nonce (a production
    /// record).
    pub fn seal(&self, ctx: RecordContext<'_>, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        self.seal_as(ctx, Provenance::Production, plaintext)
    }

    /// Seals `plaintext` for `ctx`, marked with its provenance.
    pub fn seal_as(
        &self,
        ctx: RecordContext<'_>,
        provenance: Provenance,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let aad = ctx.aad(SEAL_VERSION, provenance);
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
        out.push(ctx.kind as u8 | provenance.bit());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a production record sealed for exactly `ctx`; a record made
    /// from test data is refused ([`SealError::TestData`]).
    pub fn open(
        &self,
        ctx: RecordContext<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        self.open_checked(ctx, sealed, false)
            .map(|(bytes, _)| bytes)
    }

    /// Opens a record sealed for exactly `ctx` and tells its provenance. A
    /// record made from test data opens only if `accept_test_data`; it is
    /// authenticated first, so a record whose mark was altered fails with
    /// [`SealError::OpenFailed`], an authentic marked one with
    /// [`SealError::TestData`].
    pub fn open_checked(
        &self,
        ctx: RecordContext<'_>,
        sealed: &[u8],
        accept_test_data: bool,
    ) -> Result<(Zeroizing<Vec<u8>>, Provenance), SealError> {
        if sealed.len() < 2 + NONCE_LEN + 16 {
            return Err(SealError::Malformed);
        }
        let version = sealed[0];
        if version != SEAL_VERSION {
            return Err(SealError::UnsupportedVersion(version));
        }
        let provenance = if sealed[1] & TEST_DATA_BIT == 0 {
            Provenance::Production
        } else {
            Provenance::TestData
        };
        let found = RecordKind::from_u8(sealed[1] & !TEST_DATA_BIT).ok_or(SealError::Malformed)?;
        if found != ctx.kind {
            return Err(SealError::KindMismatch {
                expected: ctx.kind,
                found,
            });
        }
        let aad = ctx.aad(version, provenance);
        let plain = self
            .cipher()?
            .decrypt(
                Nonce::from_slice(&sealed[2..2 + NONCE_LEN]),
                Payload {
                    msg: &sealed[2 + NONCE_LEN..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::OpenFailed)?;
        if provenance == Provenance::TestData && !accept_test_data {
            return Err(SealError::TestData);
        }
        Ok((plain, provenance))
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
        self.seal_value_as(ctx, Provenance::Production, value)
    }

    /// Encodes and seals a serializable secret value, marked with its
    /// provenance.
    pub fn seal_value_as<T: serde::Serialize>(
        &self,
        ctx: RecordContext<'_>,
        provenance: Provenance,
        value: &T,
    ) -> Result<Vec<u8>, RecordError> {
        let bytes = Zeroizing::new(crate::codec::encode(value)?);
        Ok(self.seal_as(ctx, provenance, &bytes)?)
    }

    /// [`Self::open_value`] that also opens a test-data record when
    /// `accept_test_data`, and tells the record's provenance.
    pub fn open_value_checked<T: serde::de::DeserializeOwned>(
        &self,
        ctx: RecordContext<'_>,
        sealed: &[u8],
        accept_test_data: bool,
    ) -> Result<(T, Provenance), RecordError> {
        let (bytes, provenance) = self.open_checked(ctx, sealed, accept_test_data)?;
        Ok((crate::codec::decode(&bytes)?, provenance))
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
        self.seal_primes_as(ctx, Provenance::Production, primes)
    }

    /// Seals a prime set, marked with its provenance.
    pub fn seal_primes_as(
        &self,
        ctx: RecordContext<'_>,
        provenance: Provenance,
        primes: &crate::primes::PrimeSet,
    ) -> Result<Vec<u8>, RecordError> {
        let bytes = primes.to_bytes()?;
        Ok(self.seal_as(ctx, provenance, &bytes)?)
    }

    /// [`Self::open_primes`] that also opens a test-data record when
    /// `accept_test_data`, and tells the record's provenance.
    pub fn open_primes_checked(
        &self,
        ctx: RecordContext<'_>,
        sealed: &[u8],
        accept_test_data: bool,
    ) -> Result<(crate::primes::PrimeSet, Provenance), RecordError> {
        let (bytes, provenance) = self.open_checked(ctx, sealed, accept_test_data)?;
        Ok((crate::primes::PrimeSet::from_bytes(&bytes)?, provenance))
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
