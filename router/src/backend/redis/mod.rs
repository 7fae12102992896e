//! Router state shared through Redis, so several router instances serve one
//! session: any instance accepts any party of any session, and a party whose
//! router goes away reconnects to another and gets what it missed.
//!
//! Keys (`{sid}` a session id, `{key}` a party's Ed25519 key in hex), each
//! expiring a while after the session's deadline:
//! - `mpc:s:{sid}` — the registration (deadline, slots: token hashes and the
//!   identities known at registration), written once with `SET NX`.
//! - `mpc:s:{sid}:bind` — identities bound on first use (`HSETNX`, so two
//!   identities racing for one token cannot both win).
//! - `mpc:s:{sid}:f` — the session's frame log, a stream: sender, recipient,
//!   frame. It is the buffer late joiners and reconnecting parties replay.
//! - `mpc:s:{sid}:bytes` — bytes in the log, for the per-session limit.
//! - `mpc:inv:{key}` — invitations queued for a party (a list).
//! - `mpc:s:{sid}:live` — which connection (instance, id) holds each
//!   position, and `mpc:disconnects`, the disconnect feed (see
//!   [`disconnects`]).
//! - `mpc:seen:{sid}` — set with the registration and kept 7 days past the
//!   session's other keys: the id was used, so it is never registered again
//!   (by any instance) once the session has closed.
//!
//! Pub/sub tells instances when to look: `mpc:n:{sid}` (new frames),
//! `mpc:c:{sid}` (session closed), `mpc:r:{sid}` (a position's connection
//! moved), `mpc:i:{key}` (invitation queued), `mpc:d:all` (a disconnect
//! recorded). Each live connection has a
//! forwarder task that reads the log after the last entry it delivered, so a
//! missed notification only delays a frame (forwarders also look every
//! second), never loses or repeats one.
//!
//! [`sessions`] holds the session half, [`control`] the invitations; this
//! module the connection to Redis, the notices and the [`Backend`] impl.

mod control;
mod disconnects;
mod sessions;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt as _;
use mpc_api::router::{Disconnect, Disconnects};
use party_core::identity::PartyPublicKey;
use party_core::wire::Invitation;
use redis::aio::ConnectionManager;
use tokio::sync::{watch, Notify, OnceCell};
use uuid::Uuid;

use super::{
    AppendError, Backend, BackendError, BoxFuture, FrameTap, LogEntry, Registration, SessionRecord,
    SessionShape, Slot,
};
use crate::conn::Conn;

/// Keys live this long past the session deadline.
const KEY_GRACE_SECS: u64 = 300;

/// Why a live connection's forwarder stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Running,
    /// The session ended: send `SessionClosed`, then close.
    Closed,
    /// Another connection took the position: close.
    Replaced,
}

#[derive(Debug)]
struct Live {
    conn_id: u64,
    stop: watch::Sender<Stop>,
}

/// A session some connection of this instance belongs to.
#[derive(Debug)]
struct LocalSession {
    shape: SessionShape,
    notify: Arc<Notify>,
    live: HashMap<u16, Live>,
}

/// What only this instance knows: its live connections.
#[derive(Debug, Default)]
struct Local {
    sessions: HashMap<Uuid, LocalSession>,
    controls: HashMap<[u8; 32], (String, Conn)>,
}

/// The Redis-backed state of one router instance. Cloning is cheap.
#[derive(Debug, Clone)]
pub(crate) struct RedisBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: redis::Client,
    redis: OnceCell<ConnectionManager>,
    /// Identifies this instance in ownership notices.
    instance: String,
    local: Mutex<Local>,
    /// Wakes the disconnect polls of this instance (`mpc:d:all`).
    disconnect_added: Notify,
}

fn session_key(sid: Uuid) -> String {
    format!("mpc:s:{sid}")
}

fn seen_key(sid: Uuid) -> String {
    format!("mpc:seen:{sid}")
}

/// Seconds a key of a session with deadline `expires_at` should live.
fn ttl(expires_at: u64) -> i64 {
    let secs = expires_at
        .saturating_sub(crate::now_unix())
        .saturating_add(KEY_GRACE_SECS);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// The Redis client of `url` (TLS for `rediss://`, see [`RedisBackend::new`]).
pub(crate) fn client(url: &str, ca_pem: Option<Vec<u8>>) -> redis::RedisResult<redis::Client> {
    match ca_pem {
        Some(root_cert) if url.starts_with("rediss://") => {
            mpc_tls::install_default_provider();
            redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            )
        }
        _ => {
            mpc_tls::install_default_provider();
            redis::Client::open(url)
        }
    }
}

impl RedisBackend {
    /// State over the Redis at `url`; connects in the background
    /// ([`Backend::run`]). A `rediss://` URL speaks TLS, trusting only the
    /// certificates of `ca_pem` when given (the Mozilla roots otherwise).
    pub(crate) fn new(url: &str, ca_pem: Option<Vec<u8>>) -> Result<Self, BackendError> {
        Ok(Self {
            inner: Arc::new(Inner {
                client: client(url, ca_pem)?,
                redis: OnceCell::new(),
                instance: {
                    let mut id = [0u8; 16];
                    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
                    hex::encode(id)
                },
                local: Mutex::new(Local::default()),
                disconnect_added: Notify::new(),
            }),
        })
    }
}

impl Inner {
    fn local(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn con(&self) -> Result<ConnectionManager, BackendError> {
        self.redis.get().cloned().ok_or(BackendError::NotReady)
    }

    /// Whether Redis answers now.
    async fn ping(&self) -> bool {
        let Ok(mut con) = self.con() else {
            return false;
        };
        tokio::time::timeout(
            Duration::from_secs(2),
            redis::cmd("PING").query_async::<String>(&mut con),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// Connects (retrying with backoff), then listens to the notices of
    /// every instance until `stop`; re-subscribes if the connection drops.
    async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut pause = Duration::from_millis(100);
        while self.redis.get().is_none() {
            match self.client.get_connection_manager().await {
                Ok(con) => {
                    let _ = self.redis.set(con);
                    tracing::info!("redis connected");
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?pause, "redis not reachable yet");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = crate::stopped(&mut stop) => return,
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
        loop {
            tokio::select! {
                r = self.listen() => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "redis notices interrupted; resubscribing");
                    }
                }
                _ = crate::stopped(&mut stop) => return,
            }
            // Wake every forwarder: notices may have been missed meanwhile.
            for s in self.local().sessions.values() {
                s.notify.notify_waiters();
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = crate::stopped(&mut stop) => return,
            }
        }
    }

    async fn listen(self: &Arc<Self>) -> Result<(), BackendError> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.psubscribe("mpc:*").await?;
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let channel = msg.get_channel_name().to_owned();
            let payload: String = msg.get_payload().unwrap_or_default();
            self.on_notice(&channel, &payload);
        }
        Ok(())
    }

    fn on_notice(self: &Arc<Self>, channel: &str, payload: &str) {
        let Some((kind, id)) = channel
            .strip_prefix("mpc:")
            .and_then(|rest| rest.split_once(':'))
        else {
            return;
        };
        match kind {
            "n" => {
                if let Ok(sid) = Uuid::parse_str(id) {
                    if let Some(s) = self.local().sessions.get(&sid) {
                        s.notify.notify_waiters();
                    }
                }
            }
            "c" => {
                if let Ok(sid) = Uuid::parse_str(id) {
                    self.close_local(sid);
                }
            }
            "r" => {
                if let Ok(sid) = Uuid::parse_str(id) {
                    self.on_moved(sid, payload);
                }
            }
            "d" => self.disconnect_added.notify_waiters(),
            "i" => {
                if let Ok(key) = <[u8; 32]>::try_from(hex::decode(id).unwrap_or_default()) {
                    if self.local().controls.contains_key(&key) {
                        let me = self.clone();
                        tokio::spawn(async move { me.drain_invitations(key).await });
                    }
                }
            }
            _ => {}
        }
    }
}

impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(self.inner.ping())
    }

    fn run(&self, stop: watch::Receiver<bool>) -> BoxFuture<'static, ()> {
        Box::pin(self.inner.clone().run(stop))
    }

    fn register(
        &self,
        session_id: Uuid,
        expires_at: u64,
        slots: Vec<Slot>,
    ) -> BoxFuture<'_, Result<Registration, BackendError>> {
        Box::pin(self.inner.register(session_id, expires_at, slots))
    }

    fn session(
        &self,
        session_id: Uuid,
    ) -> BoxFuture<'_, Result<Option<SessionRecord>, BackendError>> {
        Box::pin(self.inner.session(session_id))
    }

    fn bind(
        &self,
        session_id: Uuid,
        position: u16,
        identity: PartyPublicKey,
        expires_at: u64,
    ) -> BoxFuture<'_, Result<Option<PartyPublicKey>, BackendError>> {
        Box::pin(self.inner.bind(session_id, position, identity, expires_at))
    }

    fn attach(
        &self,
        session_id: Uuid,
        position: u16,
        session: SessionShape,
        conn: Conn,
    ) -> BoxFuture<'_, Result<bool, BackendError>> {
        Box::pin(self.inner.attach(session_id, position, session, conn))
    }

    fn append<'a>(
        &'a self,
        entry: LogEntry,
        conn_id: u64,
        max_session_bytes: usize,
        tap: &'a FrameTap,
    ) -> BoxFuture<'a, Result<Result<(), AppendError>, BackendError>> {
        Box::pin(async move {
            let appended = self
                .inner
                .append(&entry, conn_id, max_session_bytes)
                .await?;
            if appended.is_ok() {
                tap.publish(entry.session_id, &entry.frame);
            }
            Ok(appended)
        })
    }

    fn leave(&self, session_id: Uuid, position: u16, conn_id: u64) {
        self.inner.leave(session_id, position, conn_id);
    }

    fn came_back(
        &self,
        session_id: Uuid,
        position: u16,
        conn_id: u64,
    ) -> BoxFuture<'_, Result<Option<bool>, BackendError>> {
        Box::pin(self.inner.came_back(session_id, position, conn_id))
    }

    fn record_disconnect(&self, notice: Disconnect) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move { self.inner.record_disconnect(&notice).await })
    }

    fn disconnects(
        &self,
        after: Option<String>,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Disconnects, BackendError>> {
        Box::pin(self.inner.disconnects(after, wait))
    }

    fn close(&self, session_id: Uuid) -> BoxFuture<'_, Result<bool, BackendError>> {
        Box::pin(self.inner.close(session_id))
    }

    fn expire(&self, now: u64) -> Vec<Uuid> {
        // Redis expires the keys (sessions and invitation queues) itself.
        self.inner.expire_local(now)
    }

    fn attach_control<'a>(
        &'a self,
        key: [u8; 32],
        party_id: &'a str,
        conn: Conn,
        _now: u64,
    ) -> BoxFuture<'a, usize> {
        Box::pin(self.inner.attach_control(key, party_id, conn))
    }

    fn detach_control(&self, key: &[u8; 32], conn_id: u64) {
        self.inner.detach_control(key, conn_id);
    }

    fn invite(
        &self,
        key: [u8; 32],
        invitation: Invitation,
    ) -> BoxFuture<'_, Result<bool, BackendError>> {
        Box::pin(async move { self.inner.invite(key, &invitation).await })
    }
}
