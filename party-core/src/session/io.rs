//! What goes into and comes out of a [`super::PartySession`], and its errors.

use crate::descriptor::DescriptorError;
use crate::driver::{DriverError, Progress};
use crate::envelope::EnvelopeError;
use crate::primes::PrimeSet;
use crate::signature::{RecoverableSignature, SignatureError};
use crate::{AuxInfo, KeyShare};

use super::StoredPresignature;

/// Why a session could not start or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The descriptor is not acceptable to this party.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    /// A frame was rejected; the session goes on (the host logs and drops it).
    #[error(transparent)]
    Frame(#[from] EnvelopeError),
    /// The protocol failed; the session is over for this party.
    #[error(transparent)]
    Protocol(#[from] DriverError),
    /// The inputs do not match the descriptor (wrong share, wrong aux info...).
    #[error("input does not match the session: {0}")]
    InputMismatch(&'static str),
    /// The final signature did not verify.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// Combining partial signatures failed; names the signer whose partial
    /// signature is inconsistent with the presignature, where known.
    #[error("partial signatures do not combine (suspect party {suspect:?})")]
    Combine {
        /// position of a signer whose partial signature is invalid
        suspect: Option<u16>,
    },
    /// The session already produced its output.
    #[error("session already finished")]
    Finished,
    /// A participant's identity is one no honest party makes (an all-zero
    /// or low-order X25519 key, a small-order Ed25519 key).
    #[error("participant {position} has an invalid identity key")]
    InvalidIdentity {
        /// position of the participant
        position: u16,
    },
}

/// How many p2p frames that arrived before their sender's session key a
/// session keeps (the router delivers each sender's frames in order, so this
/// is a margin, not a queue).
pub const MAX_HELD_FRAMES: usize = 256;

impl SessionError {
    /// Whether the session cannot continue after this error (a rejected frame
    /// is not fatal).
    pub fn is_fatal(&self) -> bool {
        !matches!(self, SessionError::Frame(_))
    }

    /// The position of the party the failure is blamed on, where known: the
    /// protocol library's culprit, the sender of an undecodable message, or
    /// the signer whose partial signature does not combine.
    pub fn culprit(&self) -> Option<u16> {
        match self {
            SessionError::Protocol(e) => e.culprit(),
            SessionError::Combine { suspect } => *suspect,
            _ => None,
        }
    }
}

/// Where a keygen's aux info comes from.
pub enum AuxSource {
    /// Generate aux info for the group from these primes (slow).
    Generate(PrimeSet),
    /// Reuse aux info already generated for this party group.
    Existing(Box<AuxInfo>),
}

impl std::fmt::Debug for AuxSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuxSource::Generate(_) => "AuxSource::Generate(<redacted>)",
            AuxSource::Existing(_) => "AuxSource::Existing(<redacted>)",
        })
    }
}

/// The secret inputs a party brings to a session.
#[non_exhaustive]
pub enum SessionInput {
    /// For a keygen session.
    Keygen(AuxSource),
    /// For a full signing or presign session.
    Share(Box<KeyShare>),
    /// For an online signing session: the presignature, already removed from
    /// the party's store (it must never be used twice).
    Presignature(Box<StoredPresignature>),
}

impl std::fmt::Debug for SessionInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SessionInput::Keygen(_) => "SessionInput::Keygen(<redacted>)",
            SessionInput::Share(_) => "SessionInput::Share(<redacted>)",
            SessionInput::Presignature(_) => "SessionInput::Presignature(<redacted>)",
        })
    }
}

/// What a finished session produced.
#[non_exhaustive]
pub enum SessionOutput {
    /// A new key share; `new_aux_info` is set when aux info was generated in
    /// this session (to keep for later keygens of the same group).
    Keygen {
        /// The complete key share.
        share: Box<KeyShare>,
        /// Compressed SEC1 public key of the account.
        public_key: [u8; 33],
        /// Aux info generated in this session, if any.
        new_aux_info: Option<Box<AuxInfo>>,
    },
    /// A verified signature.
    Signature(RecoverableSignature),
    /// A presignature to seal and store.
    Presignature(Box<StoredPresignature>),
    /// New aux info of the party group (an aux-info session): kept beside
    /// the group's current aux info, used once a keygen names it.
    AuxInfo(Box<AuxInfo>),
}

impl std::fmt::Debug for SessionOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionOutput::Keygen { public_key, .. } => f
                .debug_struct("SessionOutput::Keygen")
                .field("public_key", &hex::encode(public_key))
                .finish_non_exhaustive(),
            SessionOutput::Signature(s) => {
                f.debug_tuple("SessionOutput::Signature").field(s).finish()
            }
            SessionOutput::Presignature(p) => f
                .debug_tuple("SessionOutput::Presignature")
                .field(p)
                .finish(),
            SessionOutput::AuxInfo(_) => f.write_str("SessionOutput::AuxInfo(<redacted>)"),
        }
    }
}

/// What a call into the session produced.
#[derive(Debug, Default)]
pub struct Pump {
    /// Sealed frames to send through the router.
    pub frames: Vec<Vec<u8>>,
    /// Progress events.
    pub progress: Vec<Progress>,
    /// The session's output, once finished.
    pub output: Option<SessionOutput>,
}
