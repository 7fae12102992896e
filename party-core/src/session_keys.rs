//! Per-session ephemeral X25519 keys: forward secrecy for p2p payloads.
//!
//! At the start of a session each party makes a fresh X25519 key pair and
//! broadcasts the public half in a frame signed by its identity key (stage
//! [`crate::envelope::Stage::SessionKey`]; the signature covers the execution
//! ID and the sender's position, see [`crate::envelope`]). The key of each
//! direction between two parties is
//!
//! ```text
//! HKDF-SHA256(salt = execution ID, ikm = X25519(eph_a, eph_b),
//!             info = "mpc/envelope/p2p-key/v2" || sender || recipient
//!                    || eph_sender || eph_recipient)
//! ```
//!
//! The ephemeral secret is dropped (and zeroized) as soon as every peer's key
//! is known, and the derived keys when the session ends, so the identity seeds
//! and every recorded frame together still do not open a p2p payload of a
//! finished session.

use hkdf::Hkdf;
use rand_core::OsRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::identity::check_x25519;

const DOMAIN_P2P_KEY: &[u8] = b"mpc/envelope/p2p-key/v2";

/// Why a peer's session key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyError {
    /// Not 32 bytes, all zero, of low order or not a canonical curve point.
    Weak,
    /// The peer already sent another key in this session.
    Changed,
    /// The session's keys are gone (session over).
    Closed,
}

/// The two directional AES-256-GCM keys shared with one peer.
struct PeerKeys {
    public: [u8; 32],
    send: Zeroizing<[u8; 32]>,
    recv: Zeroizing<[u8; 32]>,
}

/// One party's ephemeral key pair and the keys agreed with each peer so far.
pub(crate) struct SessionKeys {
    me: u16,
    /// `None` once every peer's key is known, or after [`Self::forget`].
    secret: Option<x25519_dalek::StaticSecret>,
    public: [u8; 32],
    peers: Vec<Option<PeerKeys>>,
    closed: bool,
}

impl SessionKeys {
    /// A fresh key pair for party `me` of `n`.
    pub(crate) fn generate(me: u16, n: usize) -> Self {
        let secret = x25519_dalek::StaticSecret::random_from_rng(OsRng);
        let public = x25519_dalek::PublicKey::from(&secret).to_bytes();
        Self {
            me,
            secret: Some(secret),
            public,
            peers: (0..n).map(|_| None).collect(),
            closed: false,
        }
    }

    /// This party's ephemeral public key.
    pub(crate) fn public(&self) -> [u8; 32] {
        self.public
    }

    /// Whether `peer`'s key is known (and the keys with it derived).
    pub(crate) fn has(&self, peer: u16) -> bool {
        matches!(self.peers.get(usize::from(peer)), Some(Some(_)))
    }

    /// The key this party encrypts with for `peer`.
    pub(crate) fn send_key(&self, peer: u16) -> Option<&[u8; 32]> {
        self.peers
            .get(usize::from(peer))?
            .as_ref()
            .map(|k| &*k.send)
    }

    /// The key `peer` encrypts with for this party.
    pub(crate) fn recv_key(&self, peer: u16) -> Option<&[u8; 32]> {
        self.peers
            .get(usize::from(peer))?
            .as_ref()
            .map(|k| &*k.recv)
    }

    /// Takes `peer`'s (already authenticated) ephemeral public key and
    /// derives the keys of both directions. The same key again is a no-op.
    pub(crate) fn accept(
        &mut self,
        execution_id: &[u8; 32],
        peer: u16,
        key: &[u8],
    ) -> Result<(), KeyError> {
        let key: [u8; 32] = key.try_into().map_err(|_| KeyError::Weak)?;
        let slot = self.peers.get(usize::from(peer)).ok_or(KeyError::Weak)?;
        if let Some(known) = slot {
            return if known.public == key {
                Ok(())
            } else {
                Err(KeyError::Changed)
            };
        }
        if self.closed {
            return Err(KeyError::Closed);
        }
        check_x25519(&key).map_err(|_| KeyError::Weak)?;
        let secret = self.secret.as_ref().ok_or(KeyError::Closed)?;
        let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(key));
        if !shared.was_contributory() {
            return Err(KeyError::Weak);
        }
        let hk = Hkdf::<Sha256>::new(Some(execution_id), shared.as_bytes());
        let send = direction_key(&hk, (self.me, &self.public), (peer, &key))?;
        let recv = direction_key(&hk, (peer, &key), (self.me, &self.public))?;
        if let Some(slot) = self.peers.get_mut(usize::from(peer)) {
            *slot = Some(PeerKeys {
                public: key,
                send,
                recv,
            });
        }
        // Every key agreed: the secret has no further use.
        let me = usize::from(self.me);
        if self
            .peers
            .iter()
            .enumerate()
            .all(|(k, p)| k == me || p.is_some())
        {
            self.secret = None;
        }
        Ok(())
    }

    /// Forgets the ephemeral secret and every derived key (the session is
    /// over); all of them are zeroized as they drop.
    pub(crate) fn forget(&mut self) {
        self.secret = None;
        self.peers.iter_mut().for_each(|p| *p = None);
        self.closed = true;
    }

    /// Whether the ephemeral secret is still held (tests).
    #[cfg(test)]
    pub(crate) fn holds_secret(&self) -> bool {
        self.secret.is_some()
    }
}

fn direction_key(
    hk: &Hkdf<Sha256>,
    (sender, sender_key): (u16, &[u8; 32]),
    (recipient, recipient_key): (u16, &[u8; 32]),
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let mut info = Vec::with_capacity(DOMAIN_P2P_KEY.len() + 4 + 64);
    info.extend_from_slice(DOMAIN_P2P_KEY);
    info.extend_from_slice(&sender.to_be_bytes());
    info.extend_from_slice(&recipient.to_be_bytes());
    info.extend_from_slice(sender_key);
    info.extend_from_slice(recipient_key);
    let mut key = Zeroizing::new([0u8; 32]);
    hk.expand(&info, key.as_mut())
        .map_err(|_| KeyError::Closed)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn both_ends_derive_mirrored_keys_and_drop_the_secret_when_complete() {
        let eid = [7u8; 32];
        let mut a = SessionKeys::generate(0, 3);
        let mut b = SessionKeys::generate(1, 3);
        let c = SessionKeys::generate(2, 3);
        a.accept(&eid, 1, &b.public()).unwrap();
        b.accept(&eid, 0, &a.public()).unwrap();
        assert_eq!(a.send_key(1), b.recv_key(0));
        assert_eq!(a.recv_key(1), b.send_key(0));
        assert_ne!(a.send_key(1), a.recv_key(1));
        assert!(a.holds_secret(), "party 2's key is still to come");
        a.accept(&eid, 2, &c.public()).unwrap();
        assert!(!a.holds_secret(), "every key agreed: the secret is gone");
        // The same key again is fine; another one is refused.
        a.accept(&eid, 1, &b.public()).unwrap();
        assert_eq!(a.accept(&eid, 1, &c.public()), Err(KeyError::Changed));
        a.forget();
        assert!(!a.has(1) && a.send_key(1).is_none());
        assert_eq!(a.accept(&eid, 1, &b.public()), Err(KeyError::Closed));
    }

    #[test]
    fn low_order_and_malformed_peer_keys_are_refused() {
        let mut a = SessionKeys::generate(0, 2);
        let mut one = [0u8; 32];
        one[0] = 1;
        for bad in [[0u8; 32], one, [0xFF; 32]] {
            assert_eq!(a.accept(&[1; 32], 1, &bad), Err(KeyError::Weak));
        }
        assert_eq!(a.accept(&[1; 32], 1, &[9u8; 31]), Err(KeyError::Weak));
        assert_eq!(a.accept(&[1; 32], 5, &a.public()), Err(KeyError::Weak));
        assert!(!a.has(1));
    }
}
