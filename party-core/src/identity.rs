//! A party's long-term identity.
//!
//! One 32-byte secret seed yields two keys through domain-separated SHA-512:
//! an Ed25519 key that signs broadcast frames, result reports and descriptors,
//! and an X25519 key from which p2p encryption keys are agreed. The public half
//! ([`PartyPublicKey`]) is what the coordinator registers and lists in session
//! descriptors.

use std::fmt;

use ed25519_dalek::{Signer as _, Verifier as _};
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

    /// X25519 agreement with a peer's public key: the raw shared secret.
    pub(crate) fn agree(&self, peer: &[u8; 32]) -> Zeroizing<[u8; 32]> {
        let x = x25519_dalek::StaticSecret::from(*derive(&self.seed, b"x25519"));
        let shared = x.diffie_hellman(&x25519_dalek::PublicKey::from(*peer));
        Zeroizing::new(shared.to_bytes())
    }
}

impl PartyPublicKey {
    /// Verifies an Ed25519 signature made by [`PartyIdentity::sign`].
    pub fn verify(&self, msg: &[u8], signature: &[u8; 64]) -> Result<(), IdentityError> {
        verify_ed25519(&self.ed25519, msg, signature)
    }
}

/// Verifies an Ed25519 signature under a raw 32-byte verifying key.
pub fn verify_ed25519(
    key: &[u8; 32],
    msg: &[u8],
    signature: &[u8; 64],
) -> Result<(), IdentityError> {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(key)
        .map_err(|_| IdentityError::InvalidPublicKey)?;
    vk.verify(msg, &ed25519_dalek::Signature::from_bytes(signature))
        .map_err(|_| IdentityError::BadSignature)
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
