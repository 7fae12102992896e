//! The coordinator's public REST API (`/api/v1/mpc/...`, header `X-API-Key`).
//!
//! Requests refuse unknown fields. Hex values accept an optional `0x`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// What a session does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SessionKind {
    /// Distributed key generation (with aux info for a new party group).
    Keygen,
    /// Signing: full interactive, or one round from a presignature.
    Sign,
    /// A presignature for the pool (started by the coordinator).
    Presign,
    /// A change of an account's policy, approved under the current one.
    PolicyChange,
    /// New aux info for a party group (an operator's repair or rotation,
    /// `POST /admin/aux-groups/{group_id}/regenerate`).
    AuxInfo,
}

impl SessionKind {
    /// The stable name (as stored and sent).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keygen => "keygen",
            Self::Sign => "sign",
            Self::Presign => "presign",
            Self::PolicyChange => "policy_change",
            Self::AuxInfo => "aux_info",
        }
    }
    /// Parses [`SessionKind::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "keygen" => Self::Keygen,
            "sign" => Self::Sign,
            "presign" => Self::Presign,
            "policy_change" => Self::PolicyChange,
            "aux_info" => Self::AuxInfo,
            _ => return None,
        })
    }
}

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Created; parties joining.
    Waiting,
    /// Every party joined.
    InProgress,
    /// Finished with a result.
    Completed,
    /// Ended with a reason (and, where known, the blamed party).
    Failed,
    /// The deadline passed first.
    Expired,
}

impl SessionStatus {
    /// The stable name (as stored and sent).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }
    /// Parses [`SessionStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "waiting" => Self::Waiting,
            "in_progress" => Self::InProgress,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
    /// Completed, failed or expired: nothing changes any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Expired)
    }
}

/// The kind of machine a party runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceType {
    /// A registered server party: invited over its control connection.
    Server,
    /// A browser party.
    Browser,
    /// A mobile app party.
    Mobile,
    /// A desktop app party.
    Desktop,
    /// Any other device party.
    Device,
}

impl DeviceType {
    /// Every device type.
    pub const ALL: [DeviceType; 5] = [
        Self::Server,
        Self::Browser,
        Self::Mobile,
        Self::Desktop,
        Self::Device,
    ];
    /// The stable name (as stored and sent).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Browser => "browser",
            Self::Mobile => "mobile",
            Self::Desktop => "desktop",
            Self::Device => "device",
        }
    }
    /// Parses [`DeviceType::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
    /// A party that joins with a token instead of an invitation.
    pub fn is_device(self) -> bool {
        self != Self::Server
    }
}

/// How the message of a presignature signing is hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Digest {
    /// Keccak-256 (Ethereum); the default.
    #[default]
    Keccak256,
    /// SHA-256.
    Sha256,
}

/// A participant as callers name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Participant {
    /// Registered party id (a device party's id is registered on its first join).
    pub party_id: String,
    /// `server` (the default) or a device type: `browser`, `mobile`,
    /// `desktop`, `device`. A device party joins with the token returned in
    /// `join_tokens`. Other values are refused with 422
    /// `unsupported_device_type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    /// Free-form device id (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

impl Participant {
    /// A server participant.
    pub fn server(party_id: impl Into<String>) -> Self {
        Self {
            party_id: party_id.into(),
            device_type: None,
            device_id: None,
        }
    }
}

/// `POST /api/v1/mpc/keygen`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeygenRequest {
    /// Number of parties n (2..=16).
    pub threshold_n: u16,
    /// Signers needed t (2..=n).
    pub threshold_t: u16,
    /// The n parties, in keygen-index order.
    pub participants: Vec<Participant>,
    /// The account's policy: every party stores it with its share and
    /// refuses any later signing without a quorum of its approvers'
    /// approvals. Without one the account signs whatever its API callers ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<AccountPolicy>,
}

/// One approver of an account policy: an id and exactly one public key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyApprover {
    /// Id, unique in the policy (1-64 of `[A-Za-z0-9-_.:@]`).
    pub id: String,
    /// Ed25519 public key, 64 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ed25519: Option<String>,
    /// P-256 public key, SEC1 (compressed or not), hex: passkeys, HSMs and
    /// cloud KMS keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p256: Option<String>,
}

/// An account policy: who approves signings, how many approvals a signing
/// needs, what may be signed and how often.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountPolicy {
    /// 1 to 16 approvers.
    pub approvers: Vec<PolicyApprover>,
    /// Distinct approvals a signing needs (1 to the number of approvers).
    pub quorum: u16,
    /// Digests a message may be signed with.
    #[serde(default)]
    pub digests: Vec<Digest>,
    /// Whether a bare 32-byte hash may be signed (the approvers then sign
    /// the hash, not a message).
    #[serde(default)]
    pub allow_bare_hash: bool,
    /// Signatures per rolling hour each party allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_signatures_per_hour: Option<u32>,
}

/// One approver's signature over the approval statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The approver's id in the account policy.
    pub approver: String,
    /// Signature over the statement, hex: Ed25519 (64 bytes) or P-256 ECDSA
    /// over SHA-256 (64-byte `r || s` or DER).
    pub signature: String,
}

/// `POST /api/v1/mpc/approvals/statement`: the statement bytes approvers
/// sign for a sign request (or policy change).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalStatement {
    /// The canonical statement, hex (see docs/api.md, "Approvals").
    pub statement: String,
    /// Statement format version.
    pub version: u8,
}

/// `POST /api/v1/mpc/approvals/statement`: the body of a sign request
/// (approvals, if any, are ignored), or of a policy change with the account
/// named. A body with a `policy` field is a policy change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum StatementRequest {
    /// The statement of a signing.
    Sign(SignRequest),
    /// The statement of a policy change.
    PolicyChange(PolicyChangeStatementRequest),
}

impl<'de> Deserialize<'de> for StatementRequest {
    /// By the presence of `policy`, so a malformed body gets the error of
    /// the one shape it meant, not "matches no variant".
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let policy = v.get("policy").is_some();
        if policy {
            serde_json::from_value(v)
                .map(Self::PolicyChange)
                .map_err(serde::de::Error::custom)
        } else {
            serde_json::from_value(v)
                .map(Self::Sign)
                .map_err(serde::de::Error::custom)
        }
    }
}

/// The statement of a policy change: [`PolicyChangeRequest`] with the
/// account it is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyChangeStatementRequest {
    /// The account.
    pub account_id: String,
    /// The new policy.
    pub policy: AccountPolicy,
    /// Client-chosen id, unique per account.
    pub request_id: String,
    /// Last second (Unix) the approvals may be used.
    pub not_after: u64,
    /// Ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
}

/// `POST /api/v1/mpc/accounts/{id}/policy`: replace the account's policy,
/// approved by a quorum of the current one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyChangeRequest {
    /// The new policy.
    pub policy: AccountPolicy,
    /// Client-chosen id, unique per account.
    pub request_id: String,
    /// Last second (Unix) the approvals may be used.
    pub not_after: u64,
    /// Approvals under the current policy (omitted when asking for the
    /// statement).
    #[serde(default)]
    pub approvals: Vec<Approval>,
}

/// `POST /api/v1/mpc/sign`: a 32-byte hash, or the message itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The account (its keygen session id).
    pub account_id: String,
    /// The 32-byte hash to sign, hex. A bare hash is always signed with a
    /// full (interactive) signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_hash: Option<String>,
    /// The message itself, hex: with server signers the coordinator signs it
    /// from a presignature when the pool has one for the signer set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How `message` is hashed (default `keccak256`); needs `message`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Answer 409 `no_presignature` rather than fall back to a full signing
    /// when the pool has no presignature for the signer set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_presignature: bool,
    /// The t signers.
    pub participants: Vec<Participant>,
    /// Client-chosen id, unique per account (required by a policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Last second (Unix) the approvals may be used (required by a policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<u64>,
    /// Approvals by the account policy's approvers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
}

/// How a sign session signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SigningMode {
    /// One round from a presignature of the pool.
    Presignature,
    /// The full interactive protocol.
    Full,
}

/// A signature in every form callers use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// r, 32 bytes, `0x` hex.
    pub r: String,
    /// s (low-s), 32 bytes, `0x` hex.
    pub s: String,
    /// Recovery id (0 or 1).
    pub v: u8,
    /// DER encoding, hex.
    pub der: String,
    /// r ‖ s ‖ v, 65 bytes, `0x` hex.
    pub signature: String,
}

/// What a completed session produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub struct SessionResult {
    /// The account (keygen and sign).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Compressed SEC1 public key, hex (keygen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// EIP-55 Ethereum address (keygen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The signature (sign).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
    /// The presignature made (presign).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presignature_id: Option<String>,
    /// The signer set of a presignature: party ids in keygen-index order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signers: Option<String>,
    /// The party group (aux info).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// The fingerprint of the group's new aux info, the same at every
    /// party (aux info), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux_fingerprint: Option<String>,
}

/// Why a session failed or expired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionFailure {
    /// What happened.
    pub reason: String,
    /// The party named as the culprit, only where that does not rest on one
    /// party's word: the coordinator verified the misbehaviour itself (a
    /// signature that does not verify under the account key, a public key
    /// that differs from the one at least `t` parties reported), or at least
    /// `max(2, t)` reporters other than the accused blamed it and no other
    /// reporter named someone else. `null` means unidentified (see
    /// `accusations`).
    pub blamed_party: Option<String>,
    /// The stable code of a party's refusal (e.g. `approval_quorum_not_met`,
    /// `request_id_reused`, `session_replayed`), when a party refused the
    /// session before it started; `party_disconnected` when the router
    /// observed a party leave and not come back within its grace period
    /// (the reason names the party and its position; nobody is blamed);
    /// `party_busy` when a server party was at its session bound and
    /// refused the session at once (nobody is blamed; retry later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::error::ErrorCode>,
    /// The parties' failure reports, kept as evidence (each is its sender's
    /// view of the failure, not a verdict), in the order they arrived.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accusations: Vec<Accusation>,
}

/// One party's signed failure report on a session: whom it blamed, if
/// anyone, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Accusation {
    /// The reporting party.
    pub reporter: String,
    /// The party it blamed (`null`: it named nobody).
    pub accused: Option<String>,
    /// Its reason, as reported.
    pub reason: String,
}

/// `201` answer of `POST /keygen` and `POST /sign`: the session to follow,
/// or, when it ended within the requested wait, the finished session with
/// its result also at the top level (`signature`; `account_id`,
/// `public_key`, `address`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionCreated {
    /// Session id.
    pub session_id: Uuid,
    /// Kind.
    pub session_type: SessionKind,
    /// n.
    pub threshold_n: u16,
    /// t.
    pub threshold_t: u16,
    /// Status (terminal when the session ended within the wait).
    pub status: SessionStatus,
    /// The account (sign; keygen once completed).
    pub account_id: Option<String>,
    /// Join tokens of device participants, by party id (server parties get
    /// theirs in invitations).
    pub join_tokens: BTreeMap<String, String>,
    /// Sign sessions: from a presignature or full.
    pub signing: Option<SigningMode>,
    /// Deadline, unix seconds.
    pub expires_at: u64,
    /// The result, when completed within the wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<SessionResult>,
    /// Why it failed or expired, when it ended within the wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SessionFailure>,
    /// The signature (a sign session completed within the wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
    /// The public key (a keygen completed within the wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The address (a keygen completed within the wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl std::fmt::Debug for SessionCreated {
    /// Join tokens are secrets: only the party ids they are for.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCreated")
            .field("session_id", &self.session_id)
            .field("session_type", &self.session_type)
            .field("status", &self.status)
            .field("account_id", &self.account_id)
            .field(
                "join_tokens_for",
                &self.join_tokens.keys().collect::<Vec<_>>(),
            )
            .field("signing", &self.signing)
            .field("expires_at", &self.expires_at)
            .field("result", &self.result)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// A party's progress through the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    /// Stage (`primes`, `aux_info`, `keygen`, `sign`, ...).
    pub stage: String,
    /// Round within the stage.
    pub round: u16,
    /// Percent of the stage, where known.
    #[serde(default)]
    pub percent: Option<u8>,
}

/// One participant of a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionParty {
    /// Party id.
    pub party_id: String,
    /// Position in the descriptor.
    pub position: u16,
    /// Device type.
    pub device_type: DeviceType,
    /// Joined the session's traffic.
    pub joined: bool,
    /// Reported its result.
    pub done: bool,
    /// Last progress report.
    pub progress: Option<Progress>,
}

/// `GET /api/v1/mpc/sessions/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    /// Session id.
    pub session_id: Uuid,
    /// Kind.
    pub session_type: SessionKind,
    /// Status.
    pub status: SessionStatus,
    /// t.
    pub threshold_t: u16,
    /// n.
    pub threshold_n: u16,
    /// Participants.
    pub total_parties: usize,
    /// Participants that joined.
    pub joined_parties: usize,
    /// Participants that reported a result.
    pub completed_parties: usize,
    /// The account (sign; keygen once completed).
    pub account_id: Option<String>,
    /// Whether this keygen generates aux info for a new party group.
    pub generates_aux_info: bool,
    /// Unix seconds.
    pub created_at: u64,
    /// Deadline, unix seconds.
    pub expires_at: u64,
    /// Participants in descriptor order.
    pub parties: Vec<SessionParty>,
    /// The hash signed (sign), `0x` hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_hash: Option<String>,
    /// The result (completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<SessionResult>,
    /// Why it failed or expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SessionFailure>,
}

/// `?wait_ms=N` on `GET /sessions/{id}`, `POST /keygen` and `POST /sign`
/// (at most 30 000; `Prefer: wait=S` in seconds also works on the POSTs):
/// answer once the session has ended, or after N ms.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Milliseconds to wait for the session to end (0..=30000).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// A party of an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountParty {
    /// Party id.
    pub party_id: String,
    /// Its keygen index.
    pub keygen_index: u16,
}

/// `GET /api/v1/mpc/accounts/{id}`: a distributed key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    /// Account id (the keygen session id).
    pub account_id: String,
    /// Compressed SEC1 public key, hex.
    pub public_key: String,
    /// EIP-55 Ethereum address.
    pub address: String,
    /// t.
    pub threshold_t: u16,
    /// n.
    pub threshold_n: u16,
    /// The parties and their keygen indices.
    pub parties: Vec<AccountParty>,
    /// The keygen session.
    pub keygen_session_id: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The account's policy, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<AccountPolicy>,
    /// SHA-256 hash of the canonical policy (what every party reported), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
}

/// `GET /api/v1/mpc/accounts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountList {
    /// Newest first.
    pub accounts: Vec<AccountView>,
}

/// `?limit=N` on `GET /accounts` (1..=1000, default 100).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many (1..=1000, default 100).
    #[serde(default)]
    pub limit: Option<i64>,
}

/// `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// The service.
    pub service: String,
    /// `healthy`.
    pub status: String,
}

/// `GET /ready`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    /// The service.
    pub service: String,
    /// Whether it serves its API.
    pub ready: bool,
    /// `up` or `down`.
    pub database: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_their_names() {
        for k in [SessionKind::Keygen, SessionKind::Sign, SessionKind::Presign] {
            assert_eq!(SessionKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for s in [
            SessionStatus::Waiting,
            SessionStatus::InProgress,
            SessionStatus::Completed,
            SessionStatus::Failed,
            SessionStatus::Expired,
        ] {
            assert_eq!(SessionStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for d in DeviceType::ALL {
            assert_eq!(DeviceType::parse(d.as_str()), Some(d));
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
        assert_eq!(DeviceType::parse("toaster"), None);
    }

    #[test]
    fn debug_output_hides_join_tokens() {
        let created = SessionCreated {
            session_id: Uuid::nil(),
            session_type: SessionKind::Keygen,
            threshold_n: 3,
            threshold_t: 2,
            status: SessionStatus::Waiting,
            account_id: None,
            join_tokens: [("browser-1".to_string(), "s3cr3t-token".to_string())].into(),
            signing: None,
            expires_at: 0,
            result: None,
            error: None,
            signature: None,
            public_key: None,
            address: None,
        };
        let shown = format!("{created:?}");
        assert!(
            shown.contains("browser-1") && !shown.contains("s3cr3t-token"),
            "{shown}"
        );
        let join = crate::party::DeviceJoinRequest {
            join_token: "s3cr3t-token".into(),
            identity: crate::party::Identity {
                ed25519: "00".repeat(32),
                x25519: "11".repeat(32),
            },
            signature: "22".repeat(64),
        };
        assert!(!format!("{join:?}").contains("s3cr3t-token"));
    }

    #[test]
    fn a_statement_request_is_a_policy_change_exactly_when_it_names_a_policy() {
        let sign: StatementRequest = serde_json::from_str(
            r#"{"account_id":"a","message_hash":"00","participants":[],"request_id":"r","not_after":5}"#,
        )
        .unwrap();
        assert!(matches!(sign, StatementRequest::Sign(s) if s.request_id.as_deref() == Some("r")));
        let change: StatementRequest = serde_json::from_str(
            r#"{"account_id":"a","policy":{"approvers":[],"quorum":1},"request_id":"r","not_after":5}"#,
        )
        .unwrap();
        assert!(matches!(change, StatementRequest::PolicyChange(c) if c.account_id == "a"));
        // Each shape refuses unknown fields with its own error.
        let err = serde_json::from_str::<StatementRequest>(
            r#"{"account_id":"a","policy":{"approvers":[],"quorum":1},"request_id":"r","not_after":5,"x":1}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `x`"), "{err}");
        let err = serde_json::from_str::<StatementRequest>(
            r#"{"account_id":"a","participants":[],"y":1}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `y`"), "{err}");
    }

    #[test]
    fn requests_refuse_unknown_fields() {
        let r = serde_json::from_str::<KeygenRequest>(
            r#"{"threshold_n":3,"threshold_t":2,"participants":[],"x":1}"#,
        );
        assert!(r.is_err());
        let r = serde_json::from_str::<SignRequest>(
            r#"{"account_id":"a","participants":[{"party_id":"p","role":"x"}]}"#,
        );
        assert!(r.is_err());
    }
}
