//! The one error body of every service: `{"error": message, "code": code}`.
//!
//! [`ErrorCode`] lists every failure a client can see, each with a stable
//! snake_case code (its serde name, never renamed once shipped) and the HTTP
//! status it is answered with. Messages are for people and never carry
//! internals or secrets; clients branch on `code`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error code of the coordinator's and the router's HTTP APIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    // 400
    /// The body is not valid JSON for this route, or has unknown fields.
    InvalidJson,
    /// The query string is malformed or has unknown parameters.
    InvalidQuery,
    /// A request field is malformed (router internal API).
    BadRequest,
    /// `message_hash` is not 32 bytes of hex.
    InvalidMessageHash,
    /// `message` is not hex, is empty, or `digest` came without it.
    InvalidMessage,
    /// The participants list is malformed (count, roles, membership).
    InvalidParticipants,
    /// A participant is named twice.
    DuplicateParticipant,
    /// `threshold_t` / `threshold_n` out of range.
    InvalidThreshold,
    /// A party id is empty or too long.
    InvalidPartyId,
    /// A party report is malformed or does not fit its session.
    InvalidReport,
    /// The session is not in a state or shape that allows this.
    InvalidSession,
    /// `wait_ms` / `Prefer: wait` is not a number of milliseconds.
    InvalidWait,
    /// `Idempotency-Key` is empty, too long or not printable ASCII.
    InvalidIdempotencyKey,
    /// An identity key no honest party makes: an X25519 key that is all
    /// zero, of low order or not a canonical curve point, or an Ed25519 key
    /// of small order.
    InvalidIdentityKey,
    /// An API key request with an empty or too long name, no scopes, or a
    /// malformed tenant.
    InvalidKeyRequest,
    /// An account policy is malformed (approvers, keys, quorum, digests,
    /// limits).
    InvalidPolicy,
    /// Approvals that cannot be checked: bad hex, a signature encoding the
    /// approver's key type does not have, too many, a bad request id, or
    /// `request_id` / `not_after` missing.
    MalformedApproval,
    // 401
    /// Missing or unknown API key.
    Unauthorized,
    /// A join token that is not valid for this session.
    InvalidToken,
    /// A signature that does not verify under the claimed identity.
    BadSignature,
    /// A signed party request whose nonce was already used.
    RequestReplayed,
    /// A signed party request whose `issued_at` is too far from the
    /// coordinator's clock (±120 s).
    RequestStale,
    // 403
    /// The caller's address is not in the allowlist.
    Forbidden,
    /// The API key lacks the scope this route needs (or, on the admin API,
    /// names another tenant without being an operator key).
    InsufficientScope,
    /// The account's policy requires approvals and the request has none.
    ApprovalRequired,
    /// Fewer distinct valid approvals than the policy's quorum.
    ApprovalQuorumNotMet,
    /// An approval names an approver the account's policy does not have.
    UnknownApprover,
    /// Two approvals by the same approver.
    DuplicateApproval,
    /// An approval's signature does not verify over the statement.
    BadApprovalSignature,
    /// The hash to sign is not the digest of the approved message.
    ApprovalHashMismatch,
    /// The account's policy does not allow this digest.
    DigestNotAllowed,
    /// The account's policy does not allow signing a bare hash.
    BareHashNotAllowed,
    /// The approvals' `not_after` has passed.
    ApprovalExpired,
    /// The request id was already used for this account.
    RequestIdReused,
    /// A device's session does not sign what its user approved (a party's
    /// refusal).
    NotWhatWasApproved,
    /// A server party that no operator enrolled, or whose enrolment was
    /// revoked: it may not register, and no new session names it.
    PartyNotEnrolled,
    /// A party registration signed by a key other than the enrolled one
    /// (Ed25519, or the pinned X25519 key).
    EnrolmentMismatch,
    // 404
    /// No such route, session, account or party.
    NotFound,
    /// No such session in the caller's tenant; on the router's internal
    /// API, a session the router does not know, or one already ended.
    UnknownSession,
    /// A participant that is not a registered party or not in the account.
    UnknownParticipant,
    /// No such account in the caller's tenant.
    UnknownAccount,
    /// No such API key in the caller's tenant.
    UnknownApiKey,
    // 409
    /// A state conflict (e.g. a session id registered twice).
    Conflict,
    /// `require_presignature` and no presignature is ready for the signers.
    NoPresignature,
    /// A report on a session still waiting for device keys.
    SessionNotStarted,
    /// A join token already bound to another identity.
    TokenBound,
    /// A party id already bound to another identity.
    PartyBound,
    /// An identity key already bound to another party.
    IdentityInUse,
    /// The first request with this `Idempotency-Key` is still being created.
    IdempotencyKeyInFlight,
    /// A party had already seen this session (a party's refusal).
    SessionReplayed,
    /// A policy change for an account without a policy, or whose policy
    /// changed meanwhile.
    PolicyChangeRefused,
    /// Another keygen of the same new party group is generating the group's
    /// aux info; `Retry-After` suggests when to try again (the group's
    /// later keygens reuse it).
    AuxInfoInProgress,
    /// The parties of a keygen reported aux info of different runs (or
    /// other than the group's recorded one): the keygen failed, no account
    /// was created, and the party group is recorded as inconsistent.
    AuxInfoMismatch,
    /// The party group's parties hold different aux info (found by an
    /// earlier keygen): no keygen of the group is created until it is
    /// repaired.
    AuxInfoInconsistent,
    // 410
    /// The session has ended (expired, failed or completed).
    SessionClosed,
    // 413
    /// The body is over the size limit.
    PayloadTooLarge,
    // 415
    /// The body is not `Content-Type: application/json`.
    UnsupportedMediaType,
    // 422
    /// A device type this deployment does not support.
    UnsupportedDeviceType,
    /// The same `Idempotency-Key` with a different request (422, as the
    /// IETF idempotency-key draft asks).
    IdempotencyKeyReused,
    // 429
    /// The API key's request rate is over its limit; `Retry-After` says
    /// when the next window starts.
    RateLimited,
    /// The API key has as many open sessions as it may; `Retry-After`
    /// suggests when to try again.
    TooManySessions,
    /// The account policy's signing rate is reached (a party's refusal).
    SigningRateLimited,
    // 500
    /// An internal failure; the cause is logged, not returned.
    Internal,
    // 503
    /// Start-up has not finished (database not ready).
    NotReady,
    /// No router answered.
    RouterUnavailable,
    /// A session failed because the router observed a party's connection
    /// close and not come back within its grace period (the router's
    /// observation, not a protocol verdict against the party).
    PartyDisconnected,
    /// A server party refused the session because it already runs as many
    /// sessions as its bound allows (`--max-sessions`; a presign refill
    /// also at `--max-background-sessions`): the session failed at once,
    /// nobody is blamed, and trying again later may succeed.
    PartyBusy,
    /// Shared state (Redis) did not answer.
    Unavailable,
}

impl ErrorCode {
    /// The HTTP status this code is answered with.
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidJson
            | InvalidQuery
            | BadRequest
            | InvalidMessageHash
            | InvalidMessage
            | InvalidParticipants
            | DuplicateParticipant
            | InvalidThreshold
            | InvalidPartyId
            | InvalidReport
            | InvalidSession
            | InvalidWait
            | InvalidIdempotencyKey
            | InvalidIdentityKey
            | InvalidKeyRequest
            | InvalidPolicy
            | MalformedApproval
            | UnknownParticipant => 400,
            Unauthorized | InvalidToken | BadSignature | RequestReplayed | RequestStale => 401,
            Forbidden | InsufficientScope | ApprovalRequired | ApprovalQuorumNotMet
            | UnknownApprover | DuplicateApproval | BadApprovalSignature | ApprovalHashMismatch
            | DigestNotAllowed | BareHashNotAllowed | ApprovalExpired | RequestIdReused
            | NotWhatWasApproved | PartyNotEnrolled | EnrolmentMismatch => 403,
            NotFound | UnknownSession | UnknownAccount | UnknownApiKey => 404,
            Conflict
            | NoPresignature
            | SessionNotStarted
            | TokenBound
            | PartyBound
            | IdentityInUse
            | IdempotencyKeyInFlight
            | SessionReplayed
            | PolicyChangeRefused
            | AuxInfoInProgress
            | AuxInfoMismatch
            | AuxInfoInconsistent => 409,
            SessionClosed => 410,
            PayloadTooLarge => 413,
            UnsupportedMediaType => 415,
            UnsupportedDeviceType | IdempotencyKeyReused => 422,
            RateLimited | TooManySessions | SigningRateLimited => 429,
            Internal => 500,
            NotReady | RouterUnavailable | PartyDisconnected | PartyBusy | Unavailable => 503,
        }
    }

    /// The stable code string (the serde name).
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidJson => "invalid_json",
            InvalidQuery => "invalid_query",
            BadRequest => "bad_request",
            InvalidMessageHash => "invalid_message_hash",
            InvalidMessage => "invalid_message",
            InvalidParticipants => "invalid_participants",
            DuplicateParticipant => "duplicate_participant",
            InvalidThreshold => "invalid_threshold",
            InvalidPartyId => "invalid_party_id",
            InvalidReport => "invalid_report",
            InvalidSession => "invalid_session",
            InvalidWait => "invalid_wait",
            InvalidIdempotencyKey => "invalid_idempotency_key",
            InvalidIdentityKey => "invalid_identity_key",
            InvalidKeyRequest => "invalid_key_request",
            InvalidPolicy => "invalid_policy",
            MalformedApproval => "malformed_approval",
            ApprovalRequired => "approval_required",
            ApprovalQuorumNotMet => "approval_quorum_not_met",
            UnknownApprover => "unknown_approver",
            DuplicateApproval => "duplicate_approval",
            BadApprovalSignature => "bad_approval_signature",
            ApprovalHashMismatch => "approval_hash_mismatch",
            DigestNotAllowed => "digest_not_allowed",
            BareHashNotAllowed => "bare_hash_not_allowed",
            ApprovalExpired => "approval_expired",
            RequestIdReused => "request_id_reused",
            NotWhatWasApproved => "not_what_was_approved",
            PartyNotEnrolled => "party_not_enrolled",
            EnrolmentMismatch => "enrolment_mismatch",
            RequestReplayed => "request_replayed",
            RequestStale => "request_stale",
            SessionReplayed => "session_replayed",
            PolicyChangeRefused => "policy_change_refused",
            AuxInfoInProgress => "aux_info_in_progress",
            AuxInfoMismatch => "aux_info_mismatch",
            AuxInfoInconsistent => "aux_info_inconsistent",
            SigningRateLimited => "signing_rate_limited",
            Unauthorized => "unauthorized",
            InvalidToken => "invalid_token",
            BadSignature => "bad_signature",
            Forbidden => "forbidden",
            InsufficientScope => "insufficient_scope",
            NotFound => "not_found",
            UnknownSession => "unknown_session",
            UnknownParticipant => "unknown_participant",
            UnknownAccount => "unknown_account",
            UnknownApiKey => "unknown_api_key",
            Conflict => "conflict",
            NoPresignature => "no_presignature",
            SessionNotStarted => "session_not_started",
            TokenBound => "token_bound",
            PartyBound => "party_bound",
            IdentityInUse => "identity_in_use",
            IdempotencyKeyReused => "idempotency_key_reused",
            IdempotencyKeyInFlight => "idempotency_key_in_flight",
            SessionClosed => "session_closed",
            PayloadTooLarge => "payload_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            UnsupportedDeviceType => "unsupported_device_type",
            RateLimited => "rate_limited",
            TooManySessions => "too_many_sessions",
            Internal => "internal",
            NotReady => "not_ready",
            RouterUnavailable => "router_unavailable",
            PartyDisconnected => "party_disconnected",
            PartyBusy => "party_busy",
            Unavailable => "unavailable",
        }
    }

    /// The code whose stable string is `s` (e.g. a party's refusal code).
    pub fn parse(s: &str) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.as_str() == s)
    }

    /// Every code, for documentation and for the test that pins them.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::InvalidJson,
        ErrorCode::InvalidQuery,
        ErrorCode::BadRequest,
        ErrorCode::InvalidMessageHash,
        ErrorCode::InvalidMessage,
        ErrorCode::InvalidParticipants,
        ErrorCode::DuplicateParticipant,
        ErrorCode::InvalidThreshold,
        ErrorCode::InvalidPartyId,
        ErrorCode::InvalidReport,
        ErrorCode::InvalidSession,
        ErrorCode::InvalidWait,
        ErrorCode::InvalidIdempotencyKey,
        ErrorCode::InvalidIdentityKey,
        ErrorCode::InvalidKeyRequest,
        ErrorCode::InvalidPolicy,
        ErrorCode::MalformedApproval,
        ErrorCode::Unauthorized,
        ErrorCode::InvalidToken,
        ErrorCode::BadSignature,
        ErrorCode::RequestReplayed,
        ErrorCode::RequestStale,
        ErrorCode::Forbidden,
        ErrorCode::InsufficientScope,
        ErrorCode::ApprovalRequired,
        ErrorCode::ApprovalQuorumNotMet,
        ErrorCode::UnknownApprover,
        ErrorCode::DuplicateApproval,
        ErrorCode::BadApprovalSignature,
        ErrorCode::ApprovalHashMismatch,
        ErrorCode::DigestNotAllowed,
        ErrorCode::BareHashNotAllowed,
        ErrorCode::ApprovalExpired,
        ErrorCode::RequestIdReused,
        ErrorCode::NotWhatWasApproved,
        ErrorCode::PartyNotEnrolled,
        ErrorCode::EnrolmentMismatch,
        ErrorCode::NotFound,
        ErrorCode::UnknownSession,
        ErrorCode::UnknownParticipant,
        ErrorCode::UnknownAccount,
        ErrorCode::UnknownApiKey,
        ErrorCode::Conflict,
        ErrorCode::NoPresignature,
        ErrorCode::SessionNotStarted,
        ErrorCode::TokenBound,
        ErrorCode::PartyBound,
        ErrorCode::IdentityInUse,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::SigningRateLimited,
        ErrorCode::IdempotencyKeyInFlight,
        ErrorCode::SessionReplayed,
        ErrorCode::PolicyChangeRefused,
        ErrorCode::AuxInfoInProgress,
        ErrorCode::AuxInfoMismatch,
        ErrorCode::AuxInfoInconsistent,
        ErrorCode::SessionClosed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::UnsupportedDeviceType,
        ErrorCode::RateLimited,
        ErrorCode::TooManySessions,
        ErrorCode::Internal,
        ErrorCode::NotReady,
        ErrorCode::RouterUnavailable,
        ErrorCode::PartyDisconnected,
        ErrorCode::PartyBusy,
        ErrorCode::Unavailable,
    ];
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of every error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What went wrong, for people. Never carries internals or secrets.
    pub error: String,
    /// What went wrong, for programs: stable across releases.
    pub code: ErrorCode,
}

impl ErrorBody {
    /// An error body.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: message.into(),
            code,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_code_serializes_as_its_stable_string_and_back() {
        for &c in ErrorCode::ALL {
            let json = serde_json::to_value(c).unwrap();
            assert_eq!(json, serde_json::Value::String(c.as_str().to_string()));
            let back: ErrorCode = serde_json::from_value(json).unwrap();
            assert_eq!(back, c);
            assert!((400..600).contains(&c.status()), "{c}");
        }
    }

    /// The codes of tenants, scopes and limits, with their statuses: shipped
    /// names, never renamed.
    #[test]
    fn tenant_scope_and_limit_codes_are_pinned() {
        let pinned = [
            (ErrorCode::InvalidKeyRequest, "invalid_key_request", 400),
            (ErrorCode::InsufficientScope, "insufficient_scope", 403),
            (ErrorCode::UnknownAccount, "unknown_account", 404),
            (ErrorCode::UnknownApiKey, "unknown_api_key", 404),
            (ErrorCode::UnknownSession, "unknown_session", 404),
            (ErrorCode::RateLimited, "rate_limited", 429),
            (ErrorCode::TooManySessions, "too_many_sessions", 429),
            (ErrorCode::AuxInfoInProgress, "aux_info_in_progress", 409),
            (ErrorCode::AuxInfoMismatch, "aux_info_mismatch", 409),
            (ErrorCode::AuxInfoInconsistent, "aux_info_inconsistent", 409),
            (ErrorCode::PartyBusy, "party_busy", 503),
            (ErrorCode::PartyNotEnrolled, "party_not_enrolled", 403),
            (ErrorCode::EnrolmentMismatch, "enrolment_mismatch", 403),
            (ErrorCode::RequestReplayed, "request_replayed", 401),
            (ErrorCode::RequestStale, "request_stale", 401),
        ];
        for (c, name, status) in pinned {
            assert_eq!((c.as_str(), c.status()), (name, status));
            assert!(ErrorCode::ALL.contains(&c), "{c} missing from ALL");
        }
    }

    #[test]
    fn every_code_parses_from_its_string() {
        for &c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
        }
        assert_eq!(ErrorCode::parse("no_such_code"), None);
    }

    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
        }
    }

    #[test]
    fn error_body_refuses_unknown_fields() {
        let err =
            serde_json::from_str::<ErrorBody>(r#"{"error":"x","code":"not_found","extra":1}"#);
        assert!(err.is_err());
    }
}
