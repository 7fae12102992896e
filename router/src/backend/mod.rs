//! Where the router keeps its state: the [`Backend`] trait and its two
//! implementations, [`memory`] (one instance, everything in this process) and
//! [`redis`] (several instances sharing sessions through Redis).
//!
//! A backend stores and fetches: sessions and their slots, identities bound
//! to slots, each session's frame log and its live connections, control
//! connections and queued invitations. It decides nothing: the checks a
//! join, a frame or an invitation must pass are in [`crate::policy`], written
//! once for both.

pub(crate) mod memory;
pub(crate) mod redis;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use std::time::Duration;

use axum::body::Bytes;
use mpc_api::router::{Disconnect, Disconnects};
use party_core::envelope::BROADCAST;
use party_core::identity::PartyPublicKey;
use party_core::wire::Invitation;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::conn::Conn;

/// A boxed, `Send` future: what [`Backend`]'s async methods return.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Most invitations kept for one party that is not connected; older ones are
/// dropped first.
pub(crate) const MAX_QUEUED_PER_PARTY: usize = 256;

/// How long past a session's deadline its id stays remembered, so that the
/// session cannot be registered again once it has closed (completed, failed
/// or expired): 7 days.
pub(crate) const CLOSED_ID_RETENTION_SECS: u64 = 7 * 24 * 3600;

/// What [`Backend::register`] did with a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Registration {
    /// A new session id: stored.
    Fresh,
    /// The session is open and was registered with exactly these deadline
    /// and slots: nothing changed (a retried registration).
    Identical,
    /// The session is open and was registered with another deadline or
    /// other slots: nothing changed.
    Conflict,
    /// The session id was registered before and that session has closed
    /// (completed, failed or expired): nothing changed, and it never runs
    /// again.
    Closed,
}

/// The state store of a router instance.
///
/// Used as `Arc<dyn Backend>`, so the trait is object-safe: its async methods
/// return boxed futures rather than being `async fn` (which a trait object
/// cannot call). The backend is chosen at run time from the configuration
/// (`redis_url`), `Router` stays one non-generic public type, and the HTTP and
/// WebSocket code is compiled once; one allocation per call is nothing next to
/// the WebSocket frame or Redis round trip it serves.
///
/// Methods that cannot fail on either backend and never wait (`leave`,
/// `detach_control`, `expire`) are plain functions. A [`Conn`] handed to a
/// backend belongs to it from then on: dropping it closes the connection.
pub(crate) trait Backend: Send + Sync + fmt::Debug + 'static {
    /// `"memory"` or `"redis"`, as `/ready` reports it.
    fn kind(&self) -> &'static str;

    /// Whether the store answers now.
    fn ready(&self) -> BoxFuture<'_, bool>;

    /// Background work (connecting, listening to other instances) until
    /// `stop` turns true.
    fn run(&self, stop: watch::Receiver<bool>) -> BoxFuture<'static, ()>;

    /// Stores a new session; slots in position order. A session id is
    /// stored once: while the session is open another registration changes
    /// nothing, and after it has closed the id is remembered for
    /// [`CLOSED_ID_RETENTION_SECS`] past its deadline and refused.
    fn register(
        &self,
        session_id: Uuid,
        expires_at: u64,
        slots: Vec<Slot>,
    ) -> BoxFuture<'_, Result<Registration, BackendError>>;

    /// A session's deadline and slots, with the identities bound so far;
    /// `None` if it is unknown or has ended.
    fn session(
        &self,
        session_id: Uuid,
    ) -> BoxFuture<'_, Result<Option<SessionRecord>, BackendError>>;

    /// Binds `identity` to the slot at `position` unless an identity is
    /// bound already (set once, even when two joins race); returns the
    /// identity bound afterwards, `None` if the session is gone.
    fn bind(
        &self,
        session_id: Uuid,
        position: u16,
        identity: PartyPublicKey,
        expires_at: u64,
    ) -> BoxFuture<'_, Result<Option<PartyPublicKey>, BackendError>>;

    /// Makes `conn` the live connection of `position`, replacing (closing)
    /// any other, and delivers to it every logged frame for the position,
    /// then the frames that follow, in log order. False if the session is
    /// gone.
    fn attach(
        &self,
        session_id: Uuid,
        position: u16,
        session: SessionShape,
        conn: Conn,
    ) -> BoxFuture<'_, Result<bool, BackendError>>;

    /// Appends a frame (already checked: header, sender, recipient) to the
    /// session's log, unless `conn_id` is no longer the sender's live
    /// connection or the log would pass `max_session_bytes`, delivers it to
    /// the recipients' live connections and publishes it on `tap`.
    fn append<'a>(
        &'a self,
        frame: LogEntry,
        conn_id: u64,
        max_session_bytes: usize,
        tap: &'a FrameTap,
    ) -> BoxFuture<'a, Result<Result<(), AppendError>, BackendError>>;

    /// Forgets a connection that ended, unless it was already replaced.
    fn leave(&self, session_id: Uuid, position: u16, conn_id: u64);

    /// Whether `position` of an open session has come back since its
    /// connection `conn_id` ended: `Some(true)` if another connection holds
    /// the position now (on any instance), `Some(false)` if none does,
    /// `None` if the session is closed, past its deadline or unknown.
    fn came_back(
        &self,
        session_id: Uuid,
        position: u16,
        conn_id: u64,
    ) -> BoxFuture<'_, Result<Option<bool>, BackendError>>;

    /// Appends a disconnect notice to the feed coordinators read (shared by
    /// every instance in Redis).
    fn record_disconnect(&self, notice: Disconnect) -> BoxFuture<'_, Result<(), BackendError>>;

    /// The notices after `after` (a cursor this backend returned; `None`:
    /// only those recorded from now on), waiting up to `wait` for one.
    fn disconnects(
        &self,
        after: Option<String>,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Disconnects, BackendError>>;

    /// Ends a session: `SessionClosed` to its connections (on every
    /// instance), log and slots dropped. False if it was unknown (or, in
    /// Redis, already past its deadline).
    fn close(&self, session_id: Uuid) -> BoxFuture<'_, Result<bool, BackendError>>;

    /// Ends the sessions past their deadline at `now` (`SessionClosed` to
    /// their connections) and drops expired queued invitations; returns the
    /// ids of the sessions it ended. In Redis, which expires keys itself,
    /// that is the sessions with connections on this instance.
    fn expire(&self, now: u64) -> Vec<Uuid>;

    /// Makes `conn` the control connection of the party with Ed25519 key
    /// `key` (replacing an older one) and hands it the invitations queued for
    /// the party that are not past their deadline at `now`; returns how many.
    fn attach_control<'a>(
        &'a self,
        key: [u8; 32],
        party_id: &'a str,
        conn: Conn,
        now: u64,
    ) -> BoxFuture<'a, usize>;

    /// Forgets a control connection that ended, unless it was replaced.
    fn detach_control(&self, key: &[u8; 32], conn_id: u64);

    /// Hands an invitation (not past its deadline) to the party's control
    /// connection, wherever it is, or queues it for the party's next one
    /// (at most [`MAX_QUEUED_PER_PARTY`], oldest dropped first). True if it
    /// went to a control connection of this instance right away.
    fn invite(
        &self,
        key: [u8; 32],
        invitation: Invitation,
    ) -> BoxFuture<'_, Result<bool, BackendError>>;
}

/// The backend `config` asks for: Redis when `redis_url` is set (connected in
/// the background by [`Backend::run`]), else memory.
pub(crate) fn from_config(config: &crate::RouterConfig) -> Result<Arc<dyn Backend>, BackendError> {
    Ok(match &config.redis_url {
        Some(url) => Arc::new(redis::RedisBackend::new(url, config.redis_ca_pem.clone())?),
        None => Arc::new(memory::MemoryBackend::default()),
    })
}

/// The store did not answer (Redis down or not connected yet).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    #[error("state store not connected yet")]
    NotReady,
    #[error("state store: {0}")]
    Store(#[from] ::redis::RedisError),
}

/// A slot of a session: who may take its position.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    /// SHA-256 of the slot's join token.
    pub(crate) token_sha256: [u8; 32],
    /// Identity the slot is bound to: from the start (server parties, at
    /// registration) or on first use (browser and device parties).
    pub(crate) identity: Option<PartyPublicKey>,
}

/// A stored session as a join sees it.
#[derive(Debug, Clone)]
pub(crate) struct SessionRecord {
    /// Deadline, Unix seconds.
    pub(crate) expires_at: u64,
    /// In position order; `identity` is the one bound at registration or on
    /// first use.
    pub(crate) slots: Vec<Slot>,
}

impl SessionRecord {
    pub(crate) fn shape(&self) -> SessionShape {
        SessionShape {
            expires_at: self.expires_at,
            parties: u16::try_from(self.slots.len()).unwrap_or(u16::MAX),
        }
    }
}

/// What a connection of a session needs to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionShape {
    /// Deadline, Unix seconds.
    pub(crate) expires_at: u64,
    /// Number of positions.
    pub(crate) parties: u16,
}

/// A frame of a session's log.
#[derive(Debug, Clone)]
pub(crate) struct LogEntry {
    pub(crate) session_id: Uuid,
    pub(crate) sender: u16,
    pub(crate) recipient: u16,
    pub(crate) frame: Bytes,
}

impl LogEntry {
    /// Whether the party at `position` gets this frame.
    pub(crate) fn is_for(&self, position: u16) -> bool {
        is_for(self.sender, self.recipient, position)
    }
}

/// Whether a frame from `sender` to `recipient` goes to `position`: a
/// broadcast to everyone but its sender, a p2p frame to its recipient.
pub(crate) fn is_for(sender: u16, recipient: u16, position: u16) -> bool {
    if recipient == BROADCAST {
        sender != position
    } else {
        recipient == position
    }
}

/// Why a backend did not append a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppendError {
    /// The session ended.
    SessionGone,
    /// Another connection took the sender's position.
    Replaced,
    /// The log would pass the session's byte limit.
    BufferFull,
}

/// Whether an invitation is past its descriptor's deadline at `now`.
pub(crate) fn invitation_expired(invitation: &Invitation, now: u64) -> bool {
    now >= invitation.descriptor.descriptor.expires_at
}

/// Every frame the router relays, for `Router::subscribe_frames`.
#[derive(Debug)]
pub(crate) struct FrameTap(broadcast::Sender<(Uuid, Vec<u8>)>);

impl FrameTap {
    pub(crate) fn new(capacity: usize) -> Self {
        Self(broadcast::channel(capacity).0)
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<(Uuid, Vec<u8>)> {
        self.0.subscribe()
    }

    /// Publishes a relayed frame (a copy only when someone listens).
    pub(crate) fn publish(&self, session_id: Uuid, frame: &[u8]) {
        if self.0.receiver_count() > 0 {
            let _ = self.0.send((session_id, frame.to_vec()));
        }
    }
}

/// A digest of a registration as it was sent (deadline, then each slot's
/// token hash and the identity bound at registration), to tell a retried
/// registration from a different one.
pub(crate) fn registration_digest(expires_at: u64, slots: &[Slot]) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(b"mpc-router/registration/v1");
    h.update(expires_at.to_be_bytes());
    h.update(u64::try_from(slots.len()).unwrap_or(u64::MAX).to_be_bytes());
    for slot in slots {
        h.update(slot.token_sha256);
        match &slot.identity {
            Some(key) => {
                h.update([1]);
                h.update(key.ed25519);
                h.update(key.x25519);
            }
            None => h.update([0]),
        }
    }
    h.finalize().into()
}
