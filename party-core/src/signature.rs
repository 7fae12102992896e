//! Signature formats and addresses.

use k256::ecdsa::{RecoveryId, Signature as K256Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha3::{Digest as _, Keccak256};

use crate::Curve;

/// Why a signature could not be formatted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// `r` or `s` is out of range.
    #[error("signature scalars are invalid")]
    InvalidScalars,
    /// The public key is not a valid secp256k1 point.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// The signature does not verify under the public key for this hash.
    #[error("signature does not verify")]
    DoesNotVerify,
}

/// A verified, low-s ECDSA signature with its recovery id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverableSignature {
    /// `r`, 32 bytes big-endian.
    #[serde(with = "hex::serde")]
    pub r: [u8; 32],
    /// `s` (low-s), 32 bytes big-endian.
    #[serde(with = "hex::serde")]
    pub s: [u8; 32],
    /// Recovery id (0 or 1).
    pub v: u8,
}

impl RecoverableSignature {
    /// Normalises `s`, verifies the signature of `hash` under `public_key`
    /// (SEC1, 33 or 65 bytes) and finds the recovery id.
    pub fn from_parts(
        r: [u8; 32],
        s: [u8; 32],
        hash: &[u8; 32],
        public_key: &[u8],
    ) -> Result<Self, SignatureError> {
        let vk = VerifyingKey::from_sec1_bytes(public_key)
            .map_err(|_| SignatureError::InvalidPublicKey)?;
        let sig = K256Signature::from_scalars(r, s).map_err(|_| SignatureError::InvalidScalars)?;
        let sig = sig.normalize_s().unwrap_or(sig);
        use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
        vk.verify_prehash(hash, &sig)
            .map_err(|_| SignatureError::DoesNotVerify)?;
        let v = (0u8..=1)
            .find(|v| {
                RecoveryId::from_byte(*v)
                    .and_then(|id| VerifyingKey::recover_from_prehash(hash, &sig, id).ok())
                    .is_some_and(|rec| rec == vk)
            })
            .ok_or(SignatureError::DoesNotVerify)?;
        let bytes = sig.to_bytes();
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&bytes[..32]);
        s.copy_from_slice(&bytes[32..]);
        Ok(Self { r, s, v })
    }

    /// From a signature produced by the protocol library.
    pub fn from_cggmp(
        sig: &cggmp24::Signature<Curve>,
        hash: &[u8; 32],
        public_key: &[u8],
    ) -> Result<Self, SignatureError> {
        let mut rs = [0u8; 64];
        sig.write_to_slice(&mut rs);
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&rs[..32]);
        s.copy_from_slice(&rs[32..]);
        Self::from_parts(r, s, hash, public_key)
    }

    /// DER encoding.
    pub fn to_der(&self) -> Vec<u8> {
        match K256Signature::from_scalars(self.r, self.s) {
            Ok(sig) => sig.to_der().as_bytes().to_vec(),
            Err(_) => Vec::new(),
        }
    }

    /// 65 bytes `r || s || v`.
    pub fn to_bytes65(&self) -> [u8; 65] {
        let mut out = [0u8; 65];
        out[..32].copy_from_slice(&self.r);
        out[32..64].copy_from_slice(&self.s);
        out[64] = self.v;
        out
    }

    /// `0x`-prefixed hex of [`Self::to_bytes65`].
    pub fn to_hex65(&self) -> String {
        format!("0x{}", hex::encode(self.to_bytes65()))
    }
}

/// EIP-55 checksummed Ethereum address of a secp256k1 public key (SEC1).
pub fn ethereum_address(public_key: &[u8]) -> Result<String, SignatureError> {
    let vk =
        VerifyingKey::from_sec1_bytes(public_key).map_err(|_| SignatureError::InvalidPublicKey)?;
    let uncompressed = vk.to_encoded_point(false);
    let hash = Keccak256::digest(&uncompressed.as_bytes()[1..]);
    let addr = hex::encode(&hash[12..]);
    let check = Keccak256::digest(addr.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in addr.chars().enumerate() {
        let nibble = (check[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        if c.is_ascii_alphabetic() && nibble >= 8 {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// The compressed SEC1 public key of a key share.
pub fn public_key_of(share: &crate::KeyShare) -> [u8; 33] {
    let bytes = share.shared_public_key.to_bytes(true);
    let mut out = [0u8; 33];
    out.copy_from_slice(&bytes);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k256::ecdsa::SigningKey;

    #[test]
    fn ethereum_address_of_known_keys() {
        // Private key 1 -> the well-known address of the generator point.
        let mut one = [0u8; 32];
        one[31] = 1;
        let sk = SigningKey::from_slice(&one).unwrap();
        let pk = sk.verifying_key().to_encoded_point(true);
        assert_eq!(
            ethereum_address(pk.as_bytes()).unwrap(),
            "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"
        );
        assert_eq!(
            ethereum_address(&[5u8; 33]),
            Err(SignatureError::InvalidPublicKey)
        );
    }

    #[test]
    fn from_parts_normalises_s_finds_v_and_rejects_wrong_hash() {
        let sk = SigningKey::random(&mut rand_core::OsRng);
        let pk = sk.verifying_key().to_encoded_point(true);
        let hash = [42u8; 32];
        let (sig, rec) = sk.sign_prehash_recoverable(&hash).unwrap();
        let bytes = sig.to_bytes();
        // Feed the high-s twin: it must come back low-s with a matching v.
        let high = k256::ecdsa::Signature::from_scalars(sig.r(), -*sig.s()).unwrap();
        let hb = high.to_bytes();
        let (mut r, mut s) = ([0u8; 32], [0u8; 32]);
        r.copy_from_slice(&hb[..32]);
        s.copy_from_slice(&hb[32..]);
        let out = RecoverableSignature::from_parts(r, s, &hash, pk.as_bytes()).unwrap();
        assert_eq!(&out.s[..], &bytes[32..]);
        assert_eq!(out.v, rec.to_byte());
        assert_eq!(out.to_hex65().len(), 2 + 130);
        assert_eq!(
            RecoverableSignature::from_parts(r, s, &[0u8; 32], pk.as_bytes()),
            Err(SignatureError::DoesNotVerify)
        );
    }
}
