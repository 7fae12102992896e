//! The wire frame every party sends through the router.
//!
//! ```text
//! version u8 | session id [16] | stage u8 | sender u16 | recipient u16 | seq u64 | len u32 | body | [signature 64]
//! ```
//! The header is readable by the router (it routes on session, sender and
//! recipient) but proves nothing by itself:
//! - a **broadcast** frame (recipient `0xFFFF`) carries its payload in the clear
//!   and an Ed25519 signature by the sender over the execution ID, the header
//!   and the payload;
//! - a **p2p** frame's body is `nonce || AES-256-GCM(payload)` under a key
//!   agreed by X25519 between sender and recipient and expanded with HKDF over
//!   the execution ID and the direction; the AAD binds the execution ID and the
//!   whole header (session, stage, sender, recipient, sequence).
//!
//! [`Channel::open`] rejects a frame of another session, an unknown or spoofed
//! sender, a bad signature, a failed decryption or a replayed sequence number
//! with an [`EnvelopeError`] that names the claimed sender.

use std::collections::HashSet;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use uuid::Uuid;

use crate::identity::{PartyIdentity, PartyPublicKey};

/// Envelope format version.
pub const ENVELOPE_VERSION: u8 = 1;
/// Recipient value of a broadcast frame.
pub const BROADCAST: u16 = 0xFFFF;
/// Largest protocol payload a frame may carry.
pub const MAX_PAYLOAD: usize = 2 * 1024 * 1024;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 1 + 16 + 1 + 2 + 2 + 8 + 4;
const SIG_LEN: usize = 64;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Sub-protocol a frame belongs to. A session may run several in sequence
/// (aux info then DKG); the stage keeps their messages apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Stage {
    /// Aux info generation.
    AuxInfo = 1,
    /// Distributed key generation.
    Keygen = 2,
    /// Full signing.
    Sign = 3,
    /// Presignature generation.
    Presign = 4,
    /// Partial signatures from presignatures.
    Online = 5,
}

impl Stage {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Stage::AuxInfo,
            2 => Stage::Keygen,
            3 => Stage::Sign,
            4 => Stage::Presign,
            5 => Stage::Online,
            _ => return None,
        })
    }
    /// Name for logs and progress.
    pub fn name(self) -> &'static str {
        match self {
            Stage::AuxInfo => "aux_info",
            Stage::Keygen => "keygen",
            Stage::Sign => "sign",
            Stage::Presign => "presign",
            Stage::Online => "online_sign",
        }
    }
}

/// Why a frame was rejected. Variants about a frame name the sender it claims.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The frame is truncated, has trailing bytes or an unknown stage.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// Unknown envelope version.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// The payload exceeds [`MAX_PAYLOAD`].
    #[error("frame from party {sender} too large: {len} bytes")]
    TooLarge {
        /// claimed sender
        sender: u16,
        /// payload length
        len: usize,
    },
    /// The frame names another session.
    #[error("frame from party {sender} belongs to another session")]
    WrongSession {
        /// claimed sender
        sender: u16,
    },
    /// The sender index is not a participant (or is this party itself).
    #[error("frame from unknown sender {sender}")]
    UnknownSender {
        /// claimed sender
        sender: u16,
    },
    /// A p2p frame addressed to another party.
    #[error("frame from party {sender} is addressed to party {recipient}")]
    NotForUs {
        /// claimed sender
        sender: u16,
        /// recipient named in the frame
        recipient: u16,
    },
    /// A broadcast signature does not verify under the claimed sender's key.
    #[error("bad signature on frame from party {sender}")]
    BadSignature {
        /// claimed sender
        sender: u16,
    },
    /// A p2p frame failed authenticated decryption.
    #[error("frame from party {sender} failed decryption")]
    DecryptFailed {
        /// claimed sender
        sender: u16,
    },
    /// The sender's sequence number was already seen in this session.
    #[error("replayed frame from party {sender} (seq {seq})")]
    Replayed {
        /// claimed sender
        sender: u16,
        /// repeated sequence number
        seq: u64,
    },
    /// Sending failed (recipient out of range or payload too large).
    #[error("cannot send: {0}")]
    Send(&'static str),
}

impl EnvelopeError {
    /// The sender a rejected frame claimed, where the frame got that far.
    pub fn sender(&self) -> Option<u16> {
        match self {
            EnvelopeError::TooLarge { sender, .. }
            | EnvelopeError::WrongSession { sender }
            | EnvelopeError::UnknownSender { sender }
            | EnvelopeError::NotForUs { sender, .. }
            | EnvelopeError::BadSignature { sender }
            | EnvelopeError::DecryptFailed { sender }
            | EnvelopeError::Replayed { sender, .. } => Some(*sender),
            _ => None,
        }
    }
}

/// The routing header of a frame: what the router may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Session the frame belongs to.
    pub session_id: Uuid,
    /// Sub-protocol.
    pub stage: Stage,
    /// Sender's position in the session.
    pub sender: u16,
    /// Recipient's position, or [`BROADCAST`].
    pub recipient: u16,
    /// Sender's sequence number, unique per session.
    pub seq: u64,
}

impl FrameHeader {
    /// Whether the frame is a broadcast.
    pub fn is_broadcast(&self) -> bool {
        self.recipient == BROADCAST
    }

    fn encode(&self, body_len: usize) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = ENVELOPE_VERSION;
        h[1..17].copy_from_slice(self.session_id.as_bytes());
        h[17] = self.stage as u8;
        h[18..20].copy_from_slice(&self.sender.to_be_bytes());
        h[20..22].copy_from_slice(&self.recipient.to_be_bytes());
        h[22..30].copy_from_slice(&self.seq.to_be_bytes());
        // body_len <= MAX_PAYLOAD + overhead, checked by callers.
        h[30..34].copy_from_slice(&u32::try_from(body_len).unwrap_or(u32::MAX).to_be_bytes());
        h
    }

    /// Parses the header and checks the frame's length; does not authenticate.
    pub fn parse(frame: &[u8]) -> Result<(FrameHeader, &[u8], &[u8]), EnvelopeError> {
        if frame.len() < HEADER_LEN {
            return Err(EnvelopeError::Malformed("truncated header"));
        }
        if frame[0] != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(frame[0]));
        }
        let session_id = Uuid::from_bytes(
            frame[1..17]
                .try_into()
                .map_err(|_| EnvelopeError::Malformed("session id"))?,
        );
        let stage = Stage::from_u8(frame[17]).ok_or(EnvelopeError::Malformed("unknown stage"))?;
        let sender = u16::from_be_bytes([frame[18], frame[19]]);
        let recipient = u16::from_be_bytes([frame[20], frame[21]]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&frame[22..30]);
        let seq = u64::from_be_bytes(seq);
        let len = u32::from_be_bytes([frame[30], frame[31], frame[32], frame[33]]) as usize;
        if len > MAX_PAYLOAD + NONCE_LEN + TAG_LEN {
            return Err(EnvelopeError::TooLarge { sender, len });
        }
        let header = FrameHeader {
            session_id,
            stage,
            sender,
            recipient,
            seq,
        };
        let auth_len = if header.is_broadcast() { SIG_LEN } else { 0 };
        if frame.len() != HEADER_LEN + len + auth_len {
            return Err(EnvelopeError::Malformed("length mismatch"));
        }
        let body = &frame[HEADER_LEN..HEADER_LEN + len];
        let auth = &frame[HEADER_LEN + len..];
        Ok((header, body, auth))
    }
}

/// An authenticated, decrypted protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// Sub-protocol.
    pub stage: Stage,
    /// Sender's position in the session.
    pub sender: u16,
    /// Whether it was broadcast.
    pub broadcast: bool,
    /// Sender's sequence number.
    pub seq: u64,
    /// Protocol payload.
    pub payload: Vec<u8>,
}

/// One party's end of a session's secure channel.
pub struct Channel {
    session_id: Uuid,
    execution_id: [u8; 32],
    me: u16,
    identity: PartyIdentity,
    peers: Vec<PartyPublicKey>,
    next_seq: u64,
    seen: HashSet<(u16, u64)>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("session_id", &self.session_id)
            .field("me", &self.me)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

const DOMAIN_BROADCAST: &[u8] = b"mpc/envelope/broadcast/v1";
const DOMAIN_P2P_KEY: &[u8] = b"mpc/envelope/p2p-key/v1";
const DOMAIN_P2P_AAD: &[u8] = b"mpc/envelope/p2p-aad/v1";

impl Channel {
    /// A channel for party `me` among `peers` (all participants, in session
    /// order, including `me`).
    pub fn new(
        session_id: Uuid,
        execution_id: [u8; 32],
        me: u16,
        identity: PartyIdentity,
        peers: Vec<PartyPublicKey>,
    ) -> Self {
        Self {
            session_id,
            execution_id,
            me,
            identity,
            peers,
            next_seq: 0,
            seen: HashSet::new(),
        }
    }

    /// This party's position.
    pub fn me(&self) -> u16 {
        self.me
    }

    /// Number of participants.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether the channel has no participants.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    fn p2p_cipher(&self, sender: u16, recipient: u16) -> Result<Aes256Gcm, EnvelopeError> {
        let peer = if sender == self.me { recipient } else { sender };
        let peer_key = self
            .peers
            .get(usize::from(peer))
            .ok_or(EnvelopeError::UnknownSender { sender })?;
        let shared = self.identity.agree(&peer_key.x25519);
        let hk = Hkdf::<Sha256>::new(Some(&self.execution_id), shared.as_ref());
        let mut info = Vec::with_capacity(DOMAIN_P2P_KEY.len() + 4);
        info.extend_from_slice(DOMAIN_P2P_KEY);
        info.extend_from_slice(&sender.to_be_bytes());
        info.extend_from_slice(&recipient.to_be_bytes());
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        hk.expand(&info, key.as_mut())
            .map_err(|_| EnvelopeError::Send("key derivation"))?;
        Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| EnvelopeError::Send("key length"))
    }

    fn broadcast_message(&self, header: &[u8], body: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(DOMAIN_BROADCAST.len() + 32 + header.len() + body.len());
        m.extend_from_slice(DOMAIN_BROADCAST);
        m.extend_from_slice(&self.execution_id);
        m.extend_from_slice(header);
        m.extend_from_slice(body);
        m
    }

    fn p2p_aad(&self, header: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(DOMAIN_P2P_AAD.len() + 32 + header.len());
        aad.extend_from_slice(DOMAIN_P2P_AAD);
        aad.extend_from_slice(&self.execution_id);
        aad.extend_from_slice(header);
        aad
    }

    fn next_header(&mut self, stage: Stage, recipient: u16) -> FrameHeader {
        let seq = self.next_seq;
        self.next_seq += 1;
        FrameHeader {
            session_id: self.session_id,
            stage,
            sender: self.me,
            recipient,
            seq,
        }
    }

    /// Builds a signed broadcast frame.
    pub fn seal_broadcast(
        &mut self,
        stage: Stage,
        payload: &[u8],
    ) -> Result<Vec<u8>, EnvelopeError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(EnvelopeError::Send("payload too large"));
        }
        let header = self.next_header(stage, BROADCAST).encode(payload.len());
        let sig = self
            .identity
            .sign(&self.broadcast_message(&header, payload));
        let mut frame = Vec::with_capacity(HEADER_LEN + payload.len() + SIG_LEN);
        frame.extend_from_slice(&header);
        frame.extend_from_slice(payload);
        frame.extend_from_slice(&sig);
        Ok(frame)
    }

    /// Builds an encrypted p2p frame for `recipient`.
    pub fn seal_p2p(
        &mut self,
        stage: Stage,
        recipient: u16,
        payload: &[u8],
    ) -> Result<Vec<u8>, EnvelopeError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(EnvelopeError::Send("payload too large"));
        }
        if recipient == self.me || usize::from(recipient) >= self.peers.len() {
            return Err(EnvelopeError::Send("recipient out of range"));
        }
        let cipher = self.p2p_cipher(self.me, recipient)?;
        let header = self
            .next_header(stage, recipient)
            .encode(NONCE_LEN + payload.len() + TAG_LEN);
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let aad = self.p2p_aad(&header);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: payload,
                    aad: &aad,
                },
            )
            .map_err(|_| EnvelopeError::Send("encryption failed"))?;
        let mut frame = Vec::with_capacity(HEADER_LEN + NONCE_LEN + ct.len());
        frame.extend_from_slice(&header);
        frame.extend_from_slice(&nonce);
        frame.extend_from_slice(&ct);
        Ok(frame)
    }

    /// Authenticates (and for p2p decrypts) a frame addressed to this party.
    pub fn open(&mut self, frame: &[u8]) -> Result<Inbound, EnvelopeError> {
        let (header, body, auth) = FrameHeader::parse(frame)?;
        let sender = header.sender;
        if header.session_id != self.session_id {
            return Err(EnvelopeError::WrongSession { sender });
        }
        let Some(sender_key) = self.peers.get(usize::from(sender)).copied() else {
            return Err(EnvelopeError::UnknownSender { sender });
        };
        if sender == self.me {
            return Err(EnvelopeError::UnknownSender { sender });
        }
        let header_bytes = &frame[..HEADER_LEN];
        let payload = if header.is_broadcast() {
            let sig: [u8; SIG_LEN] = auth
                .try_into()
                .map_err(|_| EnvelopeError::Malformed("signature"))?;
            sender_key
                .verify(&self.broadcast_message(header_bytes, body), &sig)
                .map_err(|_| EnvelopeError::BadSignature { sender })?;
            body.to_vec()
        } else {
            if header.recipient != self.me {
                return Err(EnvelopeError::NotForUs {
                    sender,
                    recipient: header.recipient,
                });
            }
            if body.len() < NONCE_LEN + TAG_LEN {
                return Err(EnvelopeError::DecryptFailed { sender });
            }
            let cipher = self.p2p_cipher(sender, self.me)?;
            let aad = self.p2p_aad(header_bytes);
            cipher
                .decrypt(
                    Nonce::from_slice(&body[..NONCE_LEN]),
                    Payload {
                        msg: &body[NONCE_LEN..],
                        aad: &aad,
                    },
                )
                .map_err(|_| EnvelopeError::DecryptFailed { sender })?
        };
        // Only an authenticated frame may claim a sequence number.
        if !self.seen.insert((sender, header.seq)) {
            return Err(EnvelopeError::Replayed {
                sender,
                seq: header.seq,
            });
        }
        Ok(Inbound {
            stage: header.stage,
            sender,
            broadcast: header.is_broadcast(),
            seq: header.seq,
            payload,
        })
    }
}
