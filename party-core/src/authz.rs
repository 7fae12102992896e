//! Account policies and approvals: what every party checks before it signs.
//!
//! A [`Policy`] is fixed at keygen (it travels in the signed keygen
//! descriptor) and each party keeps its own sealed copy. From then on a
//! signing session for the account runs only if its descriptor carries an
//! [`Authorization`]: approvals by a quorum of the policy's approvers, each a
//! signature over the [`statement`] of exactly what is signed. A party checks
//! the approvals against *its own* stored policy ([`authorize`]), so a
//! coordinator that holds its descriptor-signing key but not the approvers'
//! keys cannot make it sign.
//!
//! # The approval statement (version 1)
//!
//! Every variable-length field is prefixed with its length as a big-endian
//! `u32`; integers are big-endian.
//!
//! ```text
//! statement = len || "mpc/approval-statement/v1"
//!             len || account id (UTF-8)
//!             u8 operation           1 = sign, 2 = policy change
//!             u8 payload tag, then
//!                 1 = message:  u8 digest (1 = sha256, 2 = keccak256), len || message
//!                 2 = hash:     32 bytes (a bare hash)
//!                 3 = policy:   32 bytes (SHA-256 policy hash of the new policy)
//!             u32 path length || u32 per derivation-path index
//!             len || request id (UTF-8)
//!             u64 not_after (Unix seconds)
//! ```
//!
//! An Ed25519 approver signs the statement bytes (RFC 8032); a P-256 approver
//! signs them with ECDSA over SHA-256 (the signature as 64 bytes `r || s` or
//! DER). The test `statement_test_vector` pins the bytes.
//!
//! # The policy hash
//!
//! `SHA-256(canonical policy bytes)` with approvers sorted by id and digests
//! sorted ([`Policy::hash`]); every party reports it with its keygen result
//! and the keygen completes only when all agree.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::descriptor::{MessageDigest, SessionDescriptor, SessionKind};

/// Most approvers a policy may name.
pub const MAX_APPROVERS: usize = 16;
/// Longest approver id.
pub const MAX_APPROVER_ID: usize = 64;
/// Longest request id.
pub const MAX_REQUEST_ID: usize = 128;
/// Longest message an approval may name (bytes).
pub const MAX_MESSAGE: usize = 64 * 1024;

const STATEMENT_DOMAIN: &[u8] = b"mpc/approval-statement/v1";
const POLICY_DOMAIN: &[u8] = b"mpc/account-policy/v1";

/// Why an authorization or a policy was refused. [`AuthzError::code`] is the
/// stable machine-readable reason parties report and the API answers with.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthzError {
    /// The policy itself is malformed (quorum, approvers, digests, limits).
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),
    /// The account has a policy and the descriptor carries no authorization.
    #[error("the account's policy requires approvals")]
    ApprovalRequired,
    /// Fewer distinct valid approvals than the quorum.
    #[error("{have} of {need} approvals")]
    QuorumNotMet {
        /// distinct valid approvals
        have: usize,
        /// the policy's quorum
        need: usize,
    },
    /// An approval names an approver the stored policy does not have.
    #[error("approver {0:?} is not in the account's policy")]
    UnknownApprover(String),
    /// Two approvals by the same approver.
    #[error("approver {0:?} approved twice")]
    DuplicateApproval(String),
    /// An approval's signature does not verify over the statement.
    #[error("the approval of {0:?} does not verify")]
    BadApprovalSignature(String),
    /// An approval is malformed (too many, bad encoding, bad request id).
    #[error("malformed authorization: {0}")]
    Malformed(String),
    /// The hash to sign is not the digest of the approved message.
    #[error("the hash to sign is not the digest of the approved message")]
    HashMismatch,
    /// The policy does not allow this digest.
    #[error("the policy does not allow digest {0:?}")]
    DigestNotAllowed(MessageDigest),
    /// The policy does not allow signing a bare hash.
    #[error("the policy does not allow signing a bare hash")]
    BareHashNotAllowed,
    /// `not_after` has passed.
    #[error("the approvals expired")]
    Expired,
    /// The request id was already used for this account.
    #[error("request id already used for this account")]
    RequestIdReused,
    /// The policy's signing rate was reached.
    #[error("the account's signing rate limit is reached")]
    RateLimited,
    /// This party has already seen this session.
    #[error("session already seen by this party")]
    SessionReplayed,
    /// A device's descriptor signs something else than its user approved.
    #[error("the session does not sign what the user approved")]
    NotWhatWasApproved,
    /// A policy change for an account without a policy, or whose policy
    /// changed meanwhile.
    #[error("policy change refused: {0}")]
    PolicyChangeRefused(String),
}

impl AuthzError {
    /// Stable code (the same as the API's error code).
    pub fn code(&self) -> &'static str {
        match self {
            AuthzError::InvalidPolicy(_) => "invalid_policy",
            AuthzError::ApprovalRequired => "approval_required",
            AuthzError::QuorumNotMet { .. } => "approval_quorum_not_met",
            AuthzError::UnknownApprover(_) => "unknown_approver",
            AuthzError::DuplicateApproval(_) => "duplicate_approval",
            AuthzError::BadApprovalSignature(_) => "bad_approval_signature",
            AuthzError::Malformed(_) => "malformed_approval",
            AuthzError::HashMismatch => "approval_hash_mismatch",
            AuthzError::DigestNotAllowed(_) => "digest_not_allowed",
            AuthzError::BareHashNotAllowed => "bare_hash_not_allowed",
            AuthzError::Expired => "approval_expired",
            AuthzError::RequestIdReused => "request_id_reused",
            AuthzError::RateLimited => "signing_rate_limited",
            AuthzError::SessionReplayed => "session_replayed",
            AuthzError::NotWhatWasApproved => "not_what_was_approved",
            AuthzError::PolicyChangeRefused(_) => "policy_change_refused",
        }
    }

    /// Every code [`AuthzError::code`] can return.
    pub const CODES: [&'static str; 16] = [
        "invalid_policy",
        "approval_required",
        "approval_quorum_not_met",
        "unknown_approver",
        "duplicate_approval",
        "bad_approval_signature",
        "malformed_approval",
        "approval_hash_mismatch",
        "digest_not_allowed",
        "bare_hash_not_allowed",
        "approval_expired",
        "request_id_reused",
        "signing_rate_limited",
        "session_replayed",
        "not_what_was_approved",
        "policy_change_refused",
    ];
}

/// An approver's public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApproverKey {
    /// Ed25519 verifying key.
    Ed25519([u8; 32]),
    /// P-256 ECDSA key, kept as compressed SEC1 (33 bytes).
    P256([u8; 33]),
}

/// One approver of a policy. JSON: `{"id": "alice", "ed25519": "<64 hex>"}`
/// or `{"id": "bob", "p256": "<SEC1 hex>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ApproverRepr", into = "ApproverRepr")]
pub struct Approver {
    /// Approver id, unique in the policy.
    pub id: String,
    /// Public key.
    pub key: ApproverKey,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproverRepr {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ed25519: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p256: Option<String>,
}

impl TryFrom<ApproverRepr> for Approver {
    type Error = AuthzError;
    fn try_from(r: ApproverRepr) -> Result<Self, AuthzError> {
        Approver::parse(r.id, r.ed25519.as_deref(), r.p256.as_deref())
    }
}

impl From<Approver> for ApproverRepr {
    fn from(a: Approver) -> Self {
        let (ed25519, p256) = match a.key {
            ApproverKey::Ed25519(k) => (Some(hex::encode(k)), None),
            ApproverKey::P256(k) => (None, Some(hex::encode(k))),
        };
        ApproverRepr {
            id: a.id,
            ed25519,
            p256,
        }
    }
}

fn valid_id(id: &str, max: usize) -> bool {
    !id.is_empty()
        && id.len() <= max
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b))
}

impl Approver {
    /// An approver from its id and exactly one hex public key.
    pub fn parse(
        id: String,
        ed25519: Option<&str>,
        p256: Option<&str>,
    ) -> Result<Self, AuthzError> {
        if !valid_id(&id, MAX_APPROVER_ID) {
            return Err(AuthzError::InvalidPolicy(format!(
                "approver id must be 1-{MAX_APPROVER_ID} characters of [A-Za-z0-9-_.:@]"
            )));
        }
        let bad = |what: &str| AuthzError::InvalidPolicy(format!("approver {id:?}: {what}"));
        let key = match (ed25519, p256) {
            (Some(k), None) => {
                let bytes: [u8; 32] = hex::decode(k)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| bad("ed25519 key must be 32 bytes of hex"))?;
                let vk = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map_err(|_| bad("not an Ed25519 public key"))?;
                if vk.is_weak() {
                    return Err(bad("weak (small-order) Ed25519 key"));
                }
                ApproverKey::Ed25519(bytes)
            }
            (None, Some(k)) => {
                let bytes = hex::decode(k).map_err(|_| bad("p256 key must be hex"))?;
                let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&bytes)
                    .map_err(|_| bad("not a P-256 SEC1 public key"))?;
                let compressed = vk.to_encoded_point(true);
                let c: [u8; 33] = compressed
                    .as_bytes()
                    .try_into()
                    .map_err(|_| bad("not a P-256 SEC1 public key"))?;
                ApproverKey::P256(c)
            }
            _ => return Err(bad("give exactly one of ed25519 and p256")),
        };
        Ok(Self { id, key })
    }

    fn key_bytes(&self) -> (u8, &[u8]) {
        match &self.key {
            ApproverKey::Ed25519(k) => (1, k),
            ApproverKey::P256(k) => (2, k),
        }
    }

    /// Whether `signature` is this approver's over `statement`.
    pub fn verifies(&self, statement: &[u8], signature: &[u8]) -> bool {
        match &self.key {
            ApproverKey::Ed25519(k) => {
                let (Ok(vk), Ok(sig)) = (
                    ed25519_dalek::VerifyingKey::from_bytes(k),
                    ed25519_dalek::Signature::from_slice(signature),
                ) else {
                    return false;
                };
                vk.verify_strict(statement, &sig).is_ok()
            }
            ApproverKey::P256(k) => {
                use p256::ecdsa::signature::Verifier as _;
                let Ok(vk) = p256::ecdsa::VerifyingKey::from_sec1_bytes(k) else {
                    return false;
                };
                let sig = if signature.len() == 64 {
                    p256::ecdsa::Signature::from_slice(signature)
                } else {
                    p256::ecdsa::Signature::from_der(signature)
                };
                sig.is_ok_and(|s| vk.verify(statement, &s).is_ok())
            }
        }
    }
}

/// An account's policy: who approves, how many, what may be signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The approvers (1 to [`MAX_APPROVERS`]).
    pub approvers: Vec<Approver>,
    /// Distinct approvals a signing needs (1 to the number of approvers).
    pub quorum: u16,
    /// Digests a message may be signed with.
    #[serde(default)]
    pub digests: Vec<MessageDigest>,
    /// Whether a bare 32-byte hash (no message) may be signed.
    #[serde(default)]
    pub allow_bare_hash: bool,
    /// Signatures per rolling hour each party allows, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_signatures_per_hour: Option<u32>,
}

impl Policy {
    /// Structural checks.
    pub fn validate(&self) -> Result<(), AuthzError> {
        let bad = |m: String| Err(AuthzError::InvalidPolicy(m));
        if self.approvers.is_empty() || self.approvers.len() > MAX_APPROVERS {
            return bad(format!("1 to {MAX_APPROVERS} approvers"));
        }
        if self.quorum == 0 || usize::from(self.quorum) > self.approvers.len() {
            return bad(format!(
                "quorum must be 1 to the number of approvers ({})",
                self.approvers.len()
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut keys = std::collections::BTreeSet::new();
        for a in &self.approvers {
            // Re-checked here for policies built in code rather than parsed.
            Approver::try_from(ApproverRepr::from(a.clone()))?;
            if !ids.insert(a.id.as_str()) {
                return bad(format!("approver {:?} appears twice", a.id));
            }
            if !keys.insert(a.key_bytes()) {
                return bad(format!("approver {:?} repeats another's key", a.id));
            }
        }
        let mut digests = std::collections::BTreeSet::new();
        for d in &self.digests {
            if !digests.insert(digest_tag(*d)) {
                return bad("a digest appears twice".to_string());
            }
        }
        if self.digests.is_empty() && !self.allow_bare_hash {
            return bad("allow at least one digest or bare hashes".to_string());
        }
        if self.max_signatures_per_hour == Some(0) {
            return bad("max_signatures_per_hour must be at least 1".to_string());
        }
        Ok(())
    }

    /// Canonical bytes: approvers sorted by id, digests sorted.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut c = Canon::default();
        c.bytes(POLICY_DOMAIN);
        let mut approvers: Vec<&Approver> = self.approvers.iter().collect();
        approvers.sort_by(|a, b| a.id.cmp(&b.id));
        c.u32(approvers.len());
        for a in approvers {
            c.bytes(a.id.as_bytes());
            let (tag, key) = a.key_bytes();
            c.u8(tag);
            c.bytes(key);
        }
        c.0.extend_from_slice(&self.quorum.to_be_bytes());
        let mut digests: Vec<u8> = self.digests.iter().map(|d| digest_tag(*d)).collect();
        digests.sort_unstable();
        c.bytes(&digests);
        c.u8(u8::from(self.allow_bare_hash));
        match self.max_signatures_per_hour {
            Some(m) => {
                c.u8(1);
                c.0.extend_from_slice(&m.to_be_bytes());
            }
            None => c.u8(0),
        }
        c.0
    }

    /// `SHA-256` of [`Policy::canonical_bytes`].
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_bytes()).into()
    }

    fn approver(&self, id: &str) -> Option<&Approver> {
        self.approvers.iter().find(|a| a.id == id)
    }
}

fn digest_tag(d: MessageDigest) -> u8 {
    match d {
        MessageDigest::Sha256 => 1,
        MessageDigest::Keccak256 => 2,
    }
}

#[derive(Default)]
struct Canon(Vec<u8>);

impl Canon {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: usize) {
        let v = u32::try_from(v).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len());
        self.0.extend_from_slice(v);
    }
}

/// One approver's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// Approver id.
    pub approver: String,
    /// Signature over the statement, hex (Ed25519: 64 bytes; P-256: 64-byte
    /// `r || s` or DER).
    #[serde(with = "hex::serde")]
    pub signature: Vec<u8>,
}

/// A message and the digest it is signed with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovedMessage {
    /// The message, hex.
    #[serde(with = "hex::serde")]
    pub message: Vec<u8>,
    /// How it is hashed.
    pub digest: MessageDigest,
}

/// What a descriptor carries to show a signing (or policy change) was
/// approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// Client-chosen id, unique per account.
    pub request_id: String,
    /// Last second (Unix) the approvals may be used.
    pub not_after: u64,
    /// For a full signing of a message: the message the hash is the digest
    /// of. Absent for a bare hash, for an online signing (the message is in
    /// the session kind) and for a policy change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<ApprovedMessage>,
    /// The approvals.
    pub approvals: Vec<Approval>,
}

impl Authorization {
    /// Canonical bytes (part of the descriptor's canonical bytes).
    pub(crate) fn canonical_bytes(&self, out: &mut Vec<u8>) {
        let mut c = Canon(std::mem::take(out));
        c.bytes(self.request_id.as_bytes());
        c.0.extend_from_slice(&self.not_after.to_be_bytes());
        match &self.message {
            Some(m) => {
                c.u8(1);
                c.u8(digest_tag(m.digest));
                c.bytes(&m.message);
            }
            None => c.u8(0),
        }
        c.u32(self.approvals.len());
        for a in &self.approvals {
            c.bytes(a.approver.as_bytes());
            c.bytes(&a.signature);
        }
        *out = c.0;
    }

    /// Size checks that need no policy.
    pub fn validate(&self) -> Result<(), AuthzError> {
        let bad = |m: &str| Err(AuthzError::Malformed(m.to_string()));
        if !valid_id(&self.request_id, MAX_REQUEST_ID) {
            return bad("request_id must be 1-128 characters of [A-Za-z0-9-_.:@]");
        }
        if self.approvals.len() > MAX_APPROVERS {
            return bad("too many approvals");
        }
        if self
            .message
            .as_ref()
            .is_some_and(|m| m.message.len() > MAX_MESSAGE)
        {
            return bad("message too long");
        }
        for a in &self.approvals {
            if a.approver.len() > MAX_APPROVER_ID || a.signature.len() > 80 {
                return bad("approval too long");
            }
        }
        Ok(())
    }
}

/// What an approval is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Signing.
    Sign,
    /// Replacing the account's policy.
    PolicyChange,
}

/// What is approved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// A message and its digest.
    Message {
        /// How it is hashed.
        digest: MessageDigest,
        /// The message.
        message: &'a [u8],
    },
    /// A bare 32-byte hash.
    Hash(&'a [u8; 32]),
    /// The hash of a new policy.
    Policy([u8; 32]),
}

/// The fields an approval signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Statement<'a> {
    /// The account.
    pub account_id: &'a str,
    /// What is done.
    pub operation: Operation,
    /// What is signed or set.
    pub payload: Payload<'a>,
    /// Derivation path (empty for the account's own key).
    pub derivation_path: &'a [u32],
    /// Request id.
    pub request_id: &'a str,
    /// Expiry, Unix seconds.
    pub not_after: u64,
}

impl Statement<'_> {
    /// The statement bytes approvers sign (see the module documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut c = Canon::default();
        c.bytes(STATEMENT_DOMAIN);
        c.bytes(self.account_id.as_bytes());
        c.u8(match self.operation {
            Operation::Sign => 1,
            Operation::PolicyChange => 2,
        });
        match self.payload {
            Payload::Message { digest, message } => {
                c.u8(1);
                c.u8(digest_tag(digest));
                c.bytes(message);
            }
            Payload::Hash(h) => {
                c.u8(2);
                c.0.extend_from_slice(h);
            }
            Payload::Policy(h) => {
                c.u8(3);
                c.0.extend_from_slice(&h);
            }
        }
        c.u32(self.derivation_path.len());
        for i in self.derivation_path {
            c.0.extend_from_slice(&i.to_be_bytes());
        }
        c.bytes(self.request_id.as_bytes());
        c.0.extend_from_slice(&self.not_after.to_be_bytes());
        c.0
    }
}

/// What a party must record durably, in one transaction, before it sends a
/// frame of an authorized session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approved {
    /// The account.
    pub account_id: String,
    /// The request id (refuse [`AuthzError::RequestIdReused`] if recorded).
    pub request_id: String,
    /// For a signing under a rate limit: at most this many admitted signings
    /// in the last hour (refuse [`AuthzError::RateLimited`] otherwise).
    pub max_per_hour: Option<u32>,
    /// Whether the session signs (counts toward the rate).
    pub signs: bool,
}

/// The statement a signing-type descriptor asks approvals for, and the
/// checks of the descriptor against the policy that need no signature.
/// `Ok(None)`: the session needs no approvals (keygen, presign).
pub fn statement_of<'a>(
    d: &'a SessionDescriptor,
    policy: &Policy,
) -> Result<Option<Statement<'a>>, AuthzError> {
    let auth = d.authorization.as_ref();
    let need = || auth.ok_or(AuthzError::ApprovalRequired);
    let (account_id, operation, payload, path) = match &d.kind {
        SessionKind::Keygen { .. } | SessionKind::Presign { .. } | SessionKind::AuxInfo {} => {
            return Ok(None)
        }
        SessionKind::Sign {
            account_id,
            message_hash,
            derivation_path,
        } => {
            let auth = need()?;
            let payload = match &auth.message {
                Some(m) => {
                    if !policy.digests.contains(&m.digest) {
                        return Err(AuthzError::DigestNotAllowed(m.digest));
                    }
                    if m.digest.hash(&m.message) != *message_hash {
                        return Err(AuthzError::HashMismatch);
                    }
                    Payload::Message {
                        digest: m.digest,
                        message: &m.message,
                    }
                }
                None if policy.allow_bare_hash => Payload::Hash(message_hash),
                None => return Err(AuthzError::BareHashNotAllowed),
            };
            (
                account_id,
                Operation::Sign,
                payload,
                derivation_path.as_slice(),
            )
        }
        SessionKind::OnlineSign {
            account_id,
            message,
            digest,
            ..
        } => {
            let auth = need()?;
            if auth.message.is_some() {
                return Err(AuthzError::Malformed(
                    "an online signing names its message in the session".to_string(),
                ));
            }
            if !policy.digests.contains(digest) {
                return Err(AuthzError::DigestNotAllowed(*digest));
            }
            let payload = Payload::Message {
                digest: *digest,
                message,
            };
            (account_id, Operation::Sign, payload, &[][..])
        }
        SessionKind::PolicyChange {
            account_id,
            policy: new_policy,
        } => {
            let auth = need()?;
            if auth.message.is_some() {
                return Err(AuthzError::Malformed(
                    "a policy change names no message".to_string(),
                ));
            }
            (
                account_id,
                Operation::PolicyChange,
                Payload::Policy(new_policy.hash()),
                &[][..],
            )
        }
    };
    let auth = need()?;
    Ok(Some(Statement {
        account_id,
        operation,
        payload,
        derivation_path: path,
        request_id: &auth.request_id,
        not_after: auth.not_after,
    }))
}

/// Checks a verified descriptor's authorization against the party's own
/// stored `policy` of the account, at `now` (Unix seconds). On success
/// returns what the party must record before it joins (`None`: nothing to
/// record beyond the session id). Request-id reuse and the rate limit are
/// the caller's to check against its durable state.
pub fn authorize(
    d: &SessionDescriptor,
    policy: &Policy,
    now: u64,
) -> Result<Option<Approved>, AuthzError> {
    let Some(statement) = statement_of(d, policy)? else {
        return Ok(None);
    };
    let auth = d
        .authorization
        .as_ref()
        .ok_or(AuthzError::ApprovalRequired)?;
    auth.validate()?;
    if now > auth.not_after {
        return Err(AuthzError::Expired);
    }
    let bytes = statement.to_bytes();
    let mut seen = std::collections::BTreeSet::new();
    for a in &auth.approvals {
        let approver = policy
            .approver(&a.approver)
            .ok_or_else(|| AuthzError::UnknownApprover(a.approver.clone()))?;
        if !seen.insert(a.approver.as_str()) {
            return Err(AuthzError::DuplicateApproval(a.approver.clone()));
        }
        if !approver.verifies(&bytes, &a.signature) {
            return Err(AuthzError::BadApprovalSignature(a.approver.clone()));
        }
    }
    if seen.len() < usize::from(policy.quorum) {
        return Err(AuthzError::QuorumNotMet {
            have: seen.len(),
            need: usize::from(policy.quorum),
        });
    }
    let signs = statement.operation == Operation::Sign;
    Ok(Some(Approved {
        account_id: statement.account_id.to_string(),
        request_id: auth.request_id.clone(),
        max_per_hour: if signs {
            policy.max_signatures_per_hour
        } else {
            None
        },
        signs,
    }))
}

#[cfg(test)]
#[path = "authz_tests.rs"]
mod tests;
