//! The rules every backend shares, written once: who may join a session and
//! at which position, which frames are relayed ([`sessions`]), who may hold a
//! control connection and which invitations are still worth delivering
//! ([`control`]). The [`Backend`](crate::backend::Backend) only stores and
//! fetches; the metrics of each decision are recorded here too.

mod control;
mod sessions;

use party_core::identity::PartyPublicKey;
use uuid::Uuid;

use crate::backend::{AppendError, BackendError};

/// Longest party id accepted on a control connection.
pub(crate) const MAX_PARTY_ID_LEN: usize = 128;

/// A checked-over join request (the token only as its hash; no `Debug`, so
/// not even that is printed).
pub(crate) struct JoinRequest {
    pub(crate) session_id: Uuid,
    pub(crate) token_sha256: [u8; 32],
    pub(crate) identity: PartyPublicKey,
    /// The caller's check of the signature over the challenge, reported
    /// only after the token checks.
    pub(crate) signature_ok: bool,
}

/// An admitted party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Joined {
    pub(crate) position: u16,
    /// Positions in the session.
    pub(crate) parties: u16,
}

/// Why a join was refused; `code()` is what the client sees.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JoinError {
    #[error("unknown session")]
    UnknownSession,
    #[error("session expired")]
    Expired,
    #[error("join token not valid for this session")]
    BadToken,
    #[error("join token is bound to another identity")]
    TokenBound,
    #[error("signature over the challenge does not verify")]
    BadSignature,
    #[error("the router cannot reach its state store")]
    Unavailable(#[source] BackendError),
}

impl From<BackendError> for JoinError {
    fn from(e: BackendError) -> Self {
        JoinError::Unavailable(e)
    }
}

impl JoinError {
    /// Machine-readable code sent in `RouterToClient::Error` (and the
    /// `reason` label of the refusal counter).
    pub(crate) fn code(&self) -> &'static str {
        match self {
            JoinError::UnknownSession => "unknown_session",
            JoinError::Expired => "expired",
            JoinError::BadToken => "bad_token",
            JoinError::TokenBound => "token_bound",
            JoinError::BadSignature => "bad_signature",
            JoinError::Unavailable(_) => "not_ready",
        }
    }
}

/// Why a frame was not relayed (it is dropped; the connection stays).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    #[error("frame too large")]
    TooLarge,
    #[error("{0}")]
    Malformed(String),
    #[error("frame names another session")]
    WrongSession,
    #[error("spoofed sender index {0}")]
    SpoofedSender(u16),
    #[error("recipient {0} is not another position of the session")]
    BadRecipient(u16),
    #[error("session buffer full")]
    BufferFull,
    #[error("session is gone")]
    SessionGone,
    #[error("connection was replaced")]
    Replaced,
    #[error("the router cannot reach its state store")]
    Unavailable(#[source] BackendError),
}

impl RelayError {
    /// The `reason` label of the dropped-frames counter.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            RelayError::TooLarge => "too_large",
            RelayError::Malformed(_) => "malformed",
            RelayError::WrongSession => "wrong_session",
            RelayError::SpoofedSender(_) => "spoofed_sender",
            RelayError::BadRecipient(_) => "bad_recipient",
            RelayError::BufferFull => "buffer_full",
            RelayError::SessionGone => "session_gone",
            RelayError::Replaced => "replaced",
            RelayError::Unavailable(_) => "unavailable",
        }
    }
}

impl From<AppendError> for RelayError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::SessionGone => RelayError::SessionGone,
            AppendError::Replaced => RelayError::Replaced,
            AppendError::BufferFull => RelayError::BufferFull,
        }
    }
}

/// Why a control connection was refused: `(code, message)` for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ControlError {
    #[error("invalid party id")]
    BadPartyId,
    #[error("signature over the challenge does not verify")]
    BadSignature,
}

impl ControlError {
    pub(crate) fn code(self) -> &'static str {
        match self {
            ControlError::BadPartyId => "bad_request",
            ControlError::BadSignature => "bad_signature",
        }
    }
}
