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
//! - a **session key** frame (a broadcast of stage [`Stage::SessionKey`]) is
//!   the first frame of a session with p2p messages: the sender's fresh
//!   ephemeral X25519 public key, signed by its identity key under its own
//!   domain tag over the execution ID and the header (so bound to the session
//!   and the sender's position);
//! - a **p2p** frame's body is `nonce || AES-256-GCM(payload)` under a key
//!   agreed by X25519 between the two parties' *ephemeral* keys and expanded
//!   with HKDF over the execution ID, the direction and both ephemeral keys
//!   ([`crate::session_keys`]); the AAD binds the execution ID and the whole
//!   header (session, stage, sender, recipient, sequence). The static X25519
//!   identity keys take no part, so a leaked identity seed does not open
//!   recorded frames once the session's ephemeral secrets are gone.
//!
//! [`Channel::open`] rejects a frame of another session, an unknown or spoofed
//! sender, a bad signature, a forged or low-order session key, a p2p frame
//! from a party whose session key is not known, a failed decryption or a
//! replayed sequence number with an [`EnvelopeError`] that names the claimed
//! sender.

use std::collections::HashSet;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{OsRng, RngCore};
use uuid::Uuid;

use crate::identity::{PartyIdentity, PartyPublicKey};
use crate::session_keys::{KeyError, SessionKeys};

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
    /// The sender's signed ephemeral X25519 key for this session.
    SessionKey = 6,
}

impl Stage {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Stage::AuxInfo,
            2 => Stage::Keygen,
            3 => Stage::Sign,
            4 => Stage::Presign,
            5 => Stage::Online,
            6 => Stage::SessionKey,
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
            Stage::SessionKey => "session_key",
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
    /// A session key frame whose signature does not verify under the claimed
    /// sender's identity, or whose key is malformed, all zero or of low order.
    #[error("forged or invalid session key from party {sender}")]
    BadSessionKey {
        /// claimed sender
        sender: u16,
    },
    /// A second, different session key from the same party.
    #[error("party {sender} sent a second, different session key")]
    SessionKeyChanged {
        /// claimed sender
        sender: u16,
    },
    /// A p2p frame from a party whose session key has not been received.
    #[error("p2p frame from party {sender} before its session key")]
    SessionKeyMissing {
        /// claimed sender
        sender: u16,
    },
    /// The session's keys are gone (the session is over).
    #[error("the session's keys are gone")]
    Closed,
    /// Sending a p2p frame to a party whose session key has not arrived yet
    /// (the session holds the payload until it does).
    #[error("no session key for party {peer} yet")]
    PeerKeyPending {
        /// recipient
        peer: u16,
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
            | EnvelopeError::BadSessionKey { sender }
            | EnvelopeError::SessionKeyChanged { sender }
            | EnvelopeError::SessionKeyMissing { sender }
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
    keys: SessionKeys,
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
const DOMAIN_SESSION_KEY: &[u8] = b"mpc/envelope/session-key/v1";
const DOMAIN_P2P_AAD: &[u8] = b"mpc/envelope/p2p-aad/v2";

impl Channel {
    /// A channel for party `me` among `peers` (all participants, in session
    /// order, including `me`), with a fresh ephemeral X25519 key pair.
    pub fn new(
        session_id: Uuid,
        execution_id: [u8; 32],
        me: u16,
        identity: PartyIdentity,
        peers: Vec<PartyPublicKey>,
    ) -> Self {
        let keys = SessionKeys::generate(me, peers.len());
        Self {
            session_id,
            execution_id,
            me,
            identity,
            peers,
            next_seq: 0,
            seen: HashSet::new(),
            keys,
        }
    }

    /// The signed frame announcing this party's ephemeral key: the first
    /// frame of every session that has p2p messages.
    pub fn session_key_frame(&mut self) -> Result<Vec<u8>, EnvelopeError> {
        let key = self.keys.public();
        self.seal_broadcast(Stage::SessionKey, &key)
    }

    /// Whether `peer`'s session key is known, so p2p frames to it can be sealed.
    pub fn has_session_key(&self, peer: u16) -> bool {
        self.keys.has(peer)
    }

    /// Forgets the ephemeral secret and every key derived from it (zeroized):
    /// called when the session ends. Afterwards p2p frames can neither be
    /// sealed nor opened.
    pub fn forget_keys(&mut self) {
        self.keys.forget();
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

    fn p2p_cipher(
        &self,
        key: Option<&[u8; 32]>,
        err: EnvelopeError,
    ) -> Result<Aes256Gcm, EnvelopeError> {
        let key = key.ok_or(err)?;
        Aes256Gcm::new_from_slice(key).map_err(|_| EnvelopeError::Send("key length"))
    }

    /// What a broadcast signature covers: the domain of its kind (a session
    /// key or a protocol message), the execution ID, the header and the body.
    fn broadcast_message(&self, stage: Stage, header: &[u8], body: &[u8]) -> Vec<u8> {
        let domain = if stage == Stage::SessionKey {
            DOMAIN_SESSION_KEY
        } else {
            DOMAIN_BROADCAST
        };
        let mut m = Vec::with_capacity(domain.len() + 32 + header.len() + body.len());
        m.extend_from_slice(domain);
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
            .sign(&self.broadcast_message(stage, &header, payload));
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
        let cipher = self.p2p_cipher(
            self.keys.send_key(recipient),
            EnvelopeError::PeerKeyPending { peer: recipient },
        )?;
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
            let verified = sender_key.verify(
                &self.broadcast_message(header.stage, header_bytes, body),
                &sig,
            );
            match (verified, header.stage) {
                (Ok(()), _) => {}
                (Err(_), Stage::SessionKey) => return Err(EnvelopeError::BadSessionKey { sender }),
                (Err(_), _) => return Err(EnvelopeError::BadSignature { sender }),
            }
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
            let cipher = self.p2p_cipher(
                self.keys.recv_key(sender),
                EnvelopeError::SessionKeyMissing { sender },
            )?;
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
        if self.seen.contains(&(sender, header.seq)) {
            return Err(EnvelopeError::Replayed {
                sender,
                seq: header.seq,
            });
        }
        if header.stage == Stage::SessionKey {
            if !header.is_broadcast() {
                return Err(EnvelopeError::Malformed("session key sent p2p"));
            }
            self.keys
                .accept(&self.execution_id, sender, &payload)
                .map_err(|e| match e {
                    KeyError::Weak => EnvelopeError::BadSessionKey { sender },
                    KeyError::Changed => EnvelopeError::SessionKeyChanged { sender },
                    KeyError::Closed => EnvelopeError::Closed,
                })?;
        }
        self.seen.insert((sender, header.seq));
        Ok(Inbound {
            stage: header.stage,
            sender,
            broadcast: header.is_broadcast(),
            seq: header.seq,
            payload,
        })
    }
}
