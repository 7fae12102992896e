//! One party's side of one session as a sans-I/O state machine: everything
//! a party host does between an invitation (a verified descriptor) and its
//! final report, without opening a socket or reading a clock.
//!
//! [`PartyHost`] owns
//! - admission, before anything else: what the user approved (devices) is
//!   compared with the descriptor; the account's stored policy is asked for
//!   ([`Action::NeedPolicy`]) and the descriptor's approvals checked against
//!   it ([`crate::authz::authorize`]); then the host records the session id
//!   (and an approval's request id) durably ([`Action::Record`]) and refuses
//!   a session it has seen. A refusal is reported with its typed code
//!   ([`crate::wire::ReportBody::Refused`]) and no frame is ever sent;
//! - the input the descriptor needs ([`InputRequest`], fulfilled by the host
//!   from its store: primes, aux info, a key share or a presignature);
//! - driving the [`crate::session::PartySession`];
//! - the router connection's life: connect to router URL *i*, answer the
//!   challenge, join; after a connection failure or a dropped connection the
//!   next URL (round-robin, with backoff), and after a rejoin every frame
//!   sent so far again (recipients drop copies they have as replays);
//! - the deadline: the session fails once `expires_at` passes;
//! - the reports (joined, progress once per step, the final result or
//!   failure with the blamed position) and their retry schedule: progress is
//!   best effort (one try per coordinator), every other report is retried with
//!   backoff until the deadline plus [`REPORT_GRACE_MS`].
//!
//! Hosts (server-party's tokio runner, party-wasm's JS host) feed it events
//! with the current time in Unix milliseconds (`connection_closed`,
//! `text_received`, `frame_received`, `report_result`, `tick`, ...), execute
//! the [`Action`]s it queues ([`PartyHost::poll_action`]) and call
//! [`PartyHost::tick`] at [`PartyHost::wake_at`].

mod machine;
mod reports;
mod router;
#[cfg(test)]
mod tests;

pub use machine::PartyHost;

use crate::authz::{Approved, Policy};
use crate::descriptor::{DescriptorError, MessageDigest};
use crate::session::SessionOutput;

/// First delay between two connection attempts or two report attempts.
pub const BACKOFF_START_MS: u64 = 100;
/// Longest delay between two attempts.
pub const BACKOFF_MAX_MS: u64 = 2_000;
/// How long after the session's deadline a report (other than progress) is
/// still retried, so a coordinator restart loses no result.
pub const REPORT_GRACE_MS: u64 = 30_000;

/// How the host reaches the session's router and coordinator.
#[derive(Clone)]
pub struct HostConfig {
    /// Router WebSocket URLs, in order of preference.
    pub router_urls: Vec<String>,
    /// Index in `router_urls` of the router to try first.
    pub first_router: usize,
    /// This party's join token for the session (secret).
    pub join_token: String,
    /// How many coordinator endpoints the host rotates through (a progress
    /// report is tried once on each).
    pub coordinators: usize,
    /// What the user approved (device hosts): a descriptor that would sign
    /// anything else is refused before any connection.
    pub approved: Option<UserApproved>,
}

/// What a device's user saw and approved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserApproved {
    /// A 32-byte hash.
    Hash([u8; 32]),
    /// A message and the digest it is signed with.
    Message {
        /// The message.
        message: Vec<u8>,
        /// Its digest.
        digest: MessageDigest,
    },
}

/// What the host records durably, in one transaction, before the session
/// starts ([`Action::Record`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    /// Refuse [`crate::authz::AuthzError::SessionReplayed`] if this session id is recorded.
    pub session_id: uuid::Uuid,
    /// The approval to record, for an account with a policy.
    pub approved: Option<Approved>,
}

impl std::fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConfig")
            .field("router_urls", &self.router_urls)
            .field("first_router", &self.first_router)
            .field("join_token", &"<redacted>")
            .field("coordinators", &self.coordinators)
            .field("approved", &self.approved)
            .finish()
    }
}

/// Why a host could not be created (nothing was reported: the session is
/// not this party's to speak about).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The descriptor does not list this party.
    #[error(transparent)]
    Descriptor(#[from] DescriptorError),
    /// No router URL to join through.
    #[error("no router URL configured")]
    NoRouter,
}

/// The secret input the descriptor asks of this party; the host answers
/// with [`PartyHost::provide_input`] or [`PartyHost::input_failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputRequest {
    /// A keygen that generates aux info, or an aux-info session: four safe
    /// primes.
    Primes,
    /// A keygen that reuses the party group's aux info.
    AuxInfo {
        /// The party group (aux info is kept per group).
        group_id: String,
        /// Group size.
        parties: u16,
        /// This party's index in the group.
        index: u16,
        /// The fingerprint of the aux info to use, when the descriptor
        /// names one (the group's agreed aux info); `None`: the group's
        /// first.
        fingerprint: Option<[u8; 32]>,
    },
    /// A full signing or presign session: the account's key share.
    Share {
        /// The account.
        account_id: String,
    },
    /// An online signing session: the presignature, removed from the store
    /// before it is handed over (it is used once, whatever happens next).
    Presignature {
        /// The presign session that made it.
        presignature_id: uuid::Uuid,
        /// The account.
        account_id: String,
    },
}

/// A progress step to show locally (the matching report is queued too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressInfo {
    /// Stage name (`primes`, `aux_info`, `keygen`, `sign`, ...).
    pub stage: String,
    /// Round within the stage.
    pub round: u16,
    /// Percent done where known.
    pub percent: Option<u8>,
    /// Round or step name from the protocol library.
    pub detail: Option<&'static str>,
}

/// How a session ended for this party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The output was stored and its report settled.
    Completed,
    /// The session failed; the failure report settled.
    Failed {
        /// Why (no secrets).
        reason: String,
        /// Position of the party blamed, where known.
        blamed: Option<u16>,
    },
}

/// What the coordinator made of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    /// Accepted (2xx).
    Delivered,
    /// Refused (4xx): final, the same signed bytes cannot do better.
    Refused,
    /// Not reachable, timed out or 5xx: try again (the host moves to its
    /// next coordinator).
    Unavailable,
}

/// Something the host has to do.
#[non_exhaustive]
pub enum Action {
    /// Load this party's own stored policy of the account, then call
    /// [`PartyHost::provide_policy`] (or [`PartyHost::host_failed`]).
    NeedPolicy {
        /// The account.
        account_id: String,
    },
    /// Durably record the admission (refusing a seen session id, a used
    /// request id, a rate over the policy's limit), then call
    /// [`PartyHost::admission_recorded`].
    Record(Admission),
    /// Replace the account's stored policy by `policy`, only if its hash is
    /// still `previous`; then call [`PartyHost::output_stored`] or
    /// [`PartyHost::output_store_failed`].
    StorePolicy {
        /// The account.
        account_id: String,
        /// The new policy.
        policy: Policy,
        /// Hash of the policy the approvals were checked against.
        previous: [u8; 32],
    },
    /// Fetch the session's input from the store.
    NeedInput(InputRequest),
    /// Open a WebSocket to `url` (router `router`), dropping any other
    /// session connection; then feed its messages.
    Connect {
        /// Index in the configured router URLs.
        router: usize,
        /// The router's WebSocket URL.
        url: String,
    },
    /// Send a text message (the signed join; it holds the join token).
    SendText(String),
    /// Send a binary frame.
    SendFrame(Vec<u8>),
    /// Close the session connection.
    CloseConnection,
    /// The router failed or dropped the connection (hosts that share a
    /// "current router" between sessions move it on).
    RouterFailed {
        /// Index in the configured router URLs.
        router: usize,
    },
    /// Joined the session's traffic (again, after a `rejoin`).
    Joined {
        /// Index in the configured router URLs.
        router: usize,
        /// Whether this is a rejoin (buffered frames were resent).
        rejoin: bool,
    },
    /// A new progress step (reported once).
    Progress(ProgressInfo),
    /// A received frame was rejected and dropped; the session goes on.
    FrameDropped(String),
    /// POST this signed report (JSON body) to the coordinator's
    /// `/internal/v1/reports`, then call [`PartyHost::report_result`].
    SendReport {
        /// Report id for `report_result`.
        id: u64,
        /// The request body (a signed report).
        body: String,
        /// Progress: one short try per coordinator is enough.
        best_effort: bool,
    },
    /// Keep the session's output (seal the share, store the presignature),
    /// then call [`PartyHost::output_stored`] or
    /// [`PartyHost::output_store_failed`].
    StoreOutput(SessionOutput),
    /// The session is over for this party.
    Finished(Outcome),
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::NeedPolicy { account_id } => f
                .debug_struct("NeedPolicy")
                .field("account_id", account_id)
                .finish(),
            Action::Record(a) => f.debug_tuple("Record").field(a).finish(),
            Action::StorePolicy { account_id, .. } => f
                .debug_struct("StorePolicy")
                .field("account_id", account_id)
                .finish_non_exhaustive(),
            Action::NeedInput(r) => f.debug_tuple("NeedInput").field(r).finish(),
            Action::Connect { router, url } => f
                .debug_struct("Connect")
                .field("router", router)
                .field("url", url)
                .finish(),
            Action::SendText(_) => f.write_str("SendText(<redacted>)"),
            Action::SendFrame(b) => write!(f, "SendFrame({} bytes)", b.len()),
            Action::CloseConnection => f.write_str("CloseConnection"),
            Action::RouterFailed { router } => f
                .debug_struct("RouterFailed")
                .field("router", router)
                .finish(),
            Action::Joined { router, rejoin } => f
                .debug_struct("Joined")
                .field("router", router)
                .field("rejoin", rejoin)
                .finish(),
            Action::Progress(p) => f.debug_tuple("Progress").field(p).finish(),
            Action::FrameDropped(r) => f.debug_tuple("FrameDropped").field(r).finish(),
            Action::SendReport {
                id, best_effort, ..
            } => f
                .debug_struct("SendReport")
                .field("id", id)
                .field("best_effort", best_effort)
                .finish_non_exhaustive(),
            Action::StoreOutput(o) => f.debug_tuple("StoreOutput").field(o).finish(),
            Action::Finished(o) => f.debug_tuple("Finished").field(o).finish(),
        }
    }
}
