//! A party's long-term identity.
//!
//! One 32-byte secret seed yields two keys through domain-separated SHA-512:
//! an Ed25519 key that signs broadcast frames, result reports, join proofs and
//! each session's ephemeral X25519 key ([`crate::envelope`]), and a static
//! X25519 key that is registered and listed with it (p2p payloads are *not*
//! encrypted under it: they use the signed per-session ephemeral keys, so a
//! leaked seed does not open recorded frames). The public half
//! ([`PartyPublicKey`]) is what the coordinator registers and lists in session
//! descriptors; [`PartyPublicKey::validate`] refuses keys no honest party
//! makes (an Ed25519 key of small order, an X25519 key of low order, off the
//! curve or not canonically encoded), and every Ed25519 signature is checked
//! with `verify_strict`.

use std::fmt;

use ed25519_dalek::Signer as _;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha512};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Errors about keys and signatures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// Bytes do not form a valid public key.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// An identity seed must be exactly 32 bytes.
    #[error("identity secret must be 32 bytes")]
    InvalidSecret,
    /// A signature did not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// An Ed25519 key of small order: signatures under it prove nothing.
    #[error("the Ed25519 key is of small order")]
    WeakEd25519Key,
    /// An X25519 key that is all zero, of low order, not on the curve or not
    /// canonically encoded: agreement with it yields a predictable secret.
    #[error("the X25519 key is all zero, of low order or not a canonical curve point")]
    WeakX25519Key,
}

/// A party's secret identity. `Debug` prints only the public key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PartyIdentity {
    seed: [u8; 32],
    #[zeroize(skip)]
    signing: ed25519_dalek::SigningKey,
    #[zeroize(skip)]
    public: PartyPublicKey,
}

impl fmt::Debug for PartyIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartyIdentity")
            .field("public", &self.public)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The public identity of a party: Ed25519 verifying key and X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PartyPublicKey {
    /// Ed25519 verifying key (32 bytes, hex in JSON).
    #[serde(with = "hex::serde")]
    pub ed25519: [u8; 32],
    /// X25519 public key (32 bytes, hex in JSON).
    #[serde(with = "hex::serde")]
    pub x25519: [u8; 32],
}

impl fmt::Debug for PartyPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartyPublicKey({})", hex::encode(&self.ed25519[..8]))
    }
}

fn derive(seed: &[u8; 32], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut h = Sha512::new();
    h.update(b"mpc/identity/v1/");
    h.update(label);
    h.update(seed);
    let digest = h.finalize();
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&digest[..32]);
    out
}

impl PartyIdentity {
    /// A fresh random identity.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::from_seed(&seed)
    }

    /// Rebuilds an identity from its 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = ed25519_dalek::SigningKey::from_bytes(&derive(seed, b"ed25519"));
        let x = x25519_dalek::StaticSecret::from(*derive(seed, b"x25519"));
        let public = PartyPublicKey {
            ed25519: signing.verifying_key().to_bytes(),
            x25519: x25519_dalek::PublicKey::from(&x).to_bytes(),
        };
        Self {
            seed: *seed,
            signing,
            public,
        }
    }

    /// Rebuilds an identity from a byte slice holding the seed.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let seed: Zeroizing<[u8; 32]> =
            Zeroizing::new(bytes.try_into().map_err(|_| IdentityError::InvalidSecret)?);
        Ok(Self::from_seed(&seed))
    }

    /// The secret seed, for sealing into storage. Handle as a secret.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.seed)
    }

    /// The public identity.
    pub fn public(&self) -> PartyPublicKey {
        self.public
    }

    /// Signs `msg` with the Ed25519 identity key.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }
}

impl PartyPublicKey {
    /// A public identity from its two keys, if both pass [`Self::validate`].
    pub fn new(ed25519: [u8; 32], x25519: [u8; 32]) -> Result<Self, IdentityError> {
        let key = Self { ed25519, x25519 };
        key.validate()?;
        Ok(key)
    }

    /// Refuses keys no honest party makes: an Ed25519 key that is not a
    /// point or is of small order, and an X25519 key that is all zero, of low
    /// order, off the curve or not canonically encoded. Every place that
    /// accepts an identity from outside (registration, device join, a
    /// descriptor's participants) calls this.
    pub fn validate(&self) -> Result<(), IdentityError> {
        check_ed25519(&self.ed25519)?;
        check_x25519(&self.x25519)
    }

    /// Verifies an Ed25519 signature made by [`PartyIdentity::sign`].
    pub fn verify(&self, msg: &[u8], signature: &[u8; 64]) -> Result<(), IdentityError> {
        verify_ed25519(&self.ed25519, msg, signature)
    }
}

/// Verifies an Ed25519 signature under a raw 32-byte verifying key, strictly
/// (`verify_strict`: no small-order key or `R`, no non-canonical encodings).
pub fn verify_ed25519(
    key: &[u8; 32],
    msg: &[u8],
    signature: &[u8; 64],
) -> Result<(), IdentityError> {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(key)
        .map_err(|_| IdentityError::InvalidPublicKey)?;
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(signature))
        .map_err(|_| IdentityError::BadSignature)
}

/// Checks an X25519 public key: a canonical encoding of a point on the curve
/// (not its twist) whose order is not small. The all-zero key, the other
/// low-order points and their non-canonical aliases are all refused.
pub fn check_x25519(key: &[u8; 32]) -> Result<(), IdentityError> {
    let point = curve25519_dalek::montgomery::MontgomeryPoint(*key);
    let edwards = point.to_edwards(0).ok_or(IdentityError::WeakX25519Key)?;
    if edwards.is_small_order() || edwards.to_montgomery().to_bytes() != *key {
        return Err(IdentityError::WeakX25519Key);
    }
    Ok(())
}

/// Checks an Ed25519 public key: a valid point encoding, not of small order.
pub fn check_ed25519(key: &[u8; 32]) -> Result<(), IdentityError> {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(key)
        .map_err(|_| IdentityError::InvalidPublicKey)?;
    if vk.is_weak() {
        return Err(IdentityError::WeakEd25519Key);
    }
    Ok(())
}

/// The coordinator's signing key (Ed25519), used to sign session descriptors.
#[derive(Clone)]
pub struct CoordinatorKey(ed25519_dalek::SigningKey);

impl fmt::Debug for CoordinatorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CoordinatorKey({})", hex::encode(&self.public()[..8]))
    }
}

impl CoordinatorKey {
    /// A fresh random coordinator key.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        Self(ed25519_dalek::SigningKey::generate(rng))
    }
    /// Rebuilds the key from its 32-byte secret.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let seed: Zeroizing<[u8; 32]> =
            Zeroizing::new(bytes.try_into().map_err(|_| IdentityError::InvalidSecret)?);
        Ok(Self(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }
    /// The secret bytes, for sealing into storage.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }
    /// The verifying key parties are configured with.
    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }
    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}
