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
//!
//! Pub/sub tells instances when to look: `mpc:n:{sid}` (new frames),
//! `mpc:c:{sid}` (session closed), `mpc:r:{sid}` (a position's connection
//! moved), `mpc:i:{key}` (invitation queued). Each live connection has a
//! forwarder task that reads the log after the last entry it delivered, so a
//! missed notification only delays a frame (forwarders also look every
//! second), never loses or repeats one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use futures_util::StreamExt as _;
use party_core::envelope::BROADCAST;
use party_core::identity::PartyPublicKey;
use party_core::wire::{Invitation, RouterToClient};
use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use redis::AsyncCommands as _;
use serde::{Deserialize, Serialize};
use subtle::{Choice, ConstantTimeEq};
use tokio::sync::{watch, Notify, OnceCell};
use uuid::Uuid;

use crate::conn::Conn;
use crate::sessions::{AlreadyRegistered, JoinError, NewSlot, RelayError};

/// Keys live this long past the session deadline.
const KEY_GRACE_SECS: u64 = 300;
/// Invitations kept per party.
const MAX_QUEUED_PER_PARTY: isize = 256;
/// Log entries read per round trip.
const READ_BATCH: usize = 256;
/// A forwarder looks at the log at least this often.
const POLL_FALLBACK: Duration = Duration::from_secs(1);

/// Redis-backed state errors.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SharedError {
    #[error("redis is not connected yet")]
    NotReady,
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    expires_at: u64,
    slots: Vec<MetaSlot>,
}

#[derive(Debug, Serialize, Deserialize)]
struct MetaSlot {
    #[serde(with = "hex::serde")]
    token_sha256: [u8; 32],
    identity: Option<PartyPublicKey>,
}

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

#[derive(Debug)]
struct LocalSession {
    expires_at: u64,
    parties: u16,
    notify: Arc<Notify>,
    live: HashMap<u16, Live>,
}

#[derive(Debug, Default)]
struct Local {
    sessions: HashMap<Uuid, LocalSession>,
    controls: HashMap<[u8; 32], (String, Conn)>,
}

/// The Redis-backed state of one router instance.
#[derive(Debug)]
pub(crate) struct Shared {
    client: redis::Client,
    redis: OnceCell<ConnectionManager>,
    /// Identifies this instance in ownership notices.
    instance: String,
    max_session_bytes: usize,
    local: Mutex<Local>,
}

fn session_key(sid: Uuid) -> String {
    format!("mpc:s:{sid}")
}

fn ttl(expires_at: u64) -> u64 {
    expires_at
        .saturating_sub(crate::now_unix())
        .saturating_add(KEY_GRACE_SECS)
}

impl Shared {
    /// State over the Redis at `url`; connects in the background.
    pub(crate) fn new(url: &str, max_session_bytes: usize) -> Result<Arc<Self>, SharedError> {
        Ok(Arc::new(Self {
            client: redis::Client::open(url)?,
            redis: OnceCell::new(),
            instance: {
                let mut id = [0u8; 16];
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
                hex::encode(id)
            },
            max_session_bytes,
            local: Mutex::new(Local::default()),
        }))
    }

    fn local(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn con(&self) -> Result<ConnectionManager, SharedError> {
        self.redis.get().cloned().ok_or(SharedError::NotReady)
    }

    /// Whether Redis answers now.
    pub(crate) async fn ping(&self) -> bool {
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
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
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

    async fn listen(self: &Arc<Self>) -> Result<(), SharedError> {
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
                // payload: "{position}:{instance}:{conn_id}" of the new owner.
                let Ok(sid) = Uuid::parse_str(id) else { return };
                let mut parts = payload.splitn(3, ':');
                let (Some(pos), Some(instance), Some(conn_id)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return;
                };
                let (Ok(pos), Ok(conn_id)) = (pos.parse::<u16>(), conn_id.parse::<u64>()) else {
                    return;
                };
                let mut local = self.local();
                if let Some(s) = local.sessions.get_mut(&sid) {
                    let stale = s
                        .live
                        .get(&pos)
                        .is_some_and(|l| instance != self.instance || l.conn_id != conn_id);
                    if stale {
                        if let Some(l) = s.live.remove(&pos) {
                            l.stop.send_replace(Stop::Replaced);
                            tracing::info!(session_id = %sid, position = pos, "connection replaced by a reconnect elsewhere");
                        }
                    }
                }
            }
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

    /// Registers a session; false if the id is taken.
    pub(crate) async fn register(
        &self,
        session_id: Uuid,
        expires_at: u64,
        slots: Vec<NewSlot>,
    ) -> Result<Result<(), AlreadyRegistered>, SharedError> {
        let meta = Meta {
            expires_at,
            slots: slots
                .into_iter()
                .map(|s| MetaSlot {
                    token_sha256: s.token_sha256,
                    identity: s.identity,
                })
                .collect(),
        };
        let json = serde_json::to_string(&meta).unwrap_or_default();
        let mut con = self.con()?;
        let set: Option<String> = redis::cmd("SET")
            .arg(session_key(session_id))
            .arg(json)
            .arg("NX")
            .arg("EX")
            .arg(ttl(expires_at))
            .query_async(&mut con)
            .await?;
        Ok(if set.is_some() {
            Ok(())
        } else {
            Err(AlreadyRegistered)
        })
    }

    async fn meta(&self, session_id: Uuid) -> Result<Option<Meta>, SharedError> {
        let mut con = self.con()?;
        let json: Option<String> = con.get(session_key(session_id)).await?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Admits `conn` to a session (see `SessionStore::join` for the checks and
    /// their order); its forwarder then replays the log for the position and
    /// follows it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn join(
        self: &Arc<Self>,
        session_id: Uuid,
        token_sha256: &[u8; 32],
        identity: &PartyPublicKey,
        signature_ok: bool,
        now: u64,
        conn: Conn,
    ) -> Result<Result<u16, JoinError>, SharedError> {
        let Some(meta) = self.meta(session_id).await? else {
            return Ok(Err(JoinError::UnknownSession));
        };
        if now >= meta.expires_at {
            return Ok(Err(JoinError::Expired));
        }
        let mut found: Option<usize> = None;
        for (i, slot) in meta.slots.iter().enumerate() {
            let eq: Choice = slot.token_sha256.ct_eq(token_sha256);
            if bool::from(eq) && found.is_none() {
                found = Some(i);
            }
        }
        let Some(index) = found else {
            return Ok(Err(JoinError::BadToken));
        };
        let Ok(position) = u16::try_from(index) else {
            return Ok(Err(JoinError::BadToken));
        };
        let bind_key = format!("{}:bind", session_key(session_id));
        let mut con = self.con()?;
        let bound = match meta.slots.get(index).and_then(|s| s.identity) {
            Some(id) => Some(id),
            None => {
                let b: Option<String> = con.hget(&bind_key, position).await?;
                b.and_then(|j| serde_json::from_str::<PartyPublicKey>(&j).ok())
            }
        };
        if bound.is_some_and(|b| b != *identity) {
            return Ok(Err(JoinError::TokenBound));
        }
        if !signature_ok {
            return Ok(Err(JoinError::BadSignature));
        }
        if bound.is_none() {
            let json = serde_json::to_string(identity).unwrap_or_default();
            let won: bool = con.hset_nx(&bind_key, position, &json).await?;
            let _: () = con
                .expire(
                    &bind_key,
                    i64::try_from(ttl(meta.expires_at)).unwrap_or(i64::MAX),
                )
                .await?;
            if !won {
                let b: Option<String> = con.hget(&bind_key, position).await?;
                if b.and_then(|j| serde_json::from_str::<PartyPublicKey>(&j).ok())
                    != Some(*identity)
                {
                    return Ok(Err(JoinError::TokenBound));
                }
            }
        }
        conn.send_json(&RouterToClient::Joined {
            session_id,
            position,
        });
        let conn_id = conn.id;
        let (stop_tx, stop_rx) = watch::channel(Stop::Running);
        let notify = {
            let mut local = self.local();
            let parties = u16::try_from(meta.slots.len()).unwrap_or(u16::MAX);
            let s = local
                .sessions
                .entry(session_id)
                .or_insert_with(|| LocalSession {
                    expires_at: meta.expires_at,
                    parties,
                    notify: Arc::new(Notify::new()),
                    live: HashMap::new(),
                });
            if let Some(old) = s.live.insert(
                position,
                Live {
                    conn_id,
                    stop: stop_tx,
                },
            ) {
                old.stop.send_replace(Stop::Replaced);
                tracing::info!(%session_id, position, "connection replaced by a reconnect");
            }
            s.notify.clone()
        };
        // Other instances drop an older connection of this position.
        let _: i64 = con
            .publish(
                format!("mpc:r:{session_id}"),
                format!("{position}:{}:{conn_id}", self.instance),
            )
            .await?;
        let me = self.clone();
        tokio::spawn(async move {
            me.forward(session_id, position, conn, stop_rx, notify)
                .await
        });
        Ok(Ok(position))
    }

    /// Delivers the log entries for `position` to `conn`, from the start,
    /// until the connection ends, is replaced or the session closes.
    async fn forward(
        &self,
        session_id: Uuid,
        position: u16,
        conn: Conn,
        mut stop: watch::Receiver<Stop>,
        notify: Arc<Notify>,
    ) {
        let log = format!("{}:f", session_key(session_id));
        let mut last = String::from("0-0");
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut full = false;
            match self.read_after(&log, &last).await {
                Ok(entries) => {
                    full = entries.len() >= READ_BATCH;
                    for (id, sender, recipient, frame) in entries {
                        last = id;
                        let for_me = if recipient == BROADCAST {
                            sender != position
                        } else {
                            recipient == position
                        };
                        if for_me && !conn.send_frame(frame) {
                            return;
                        }
                    }
                }
                Err(e) => tracing::warn!(%session_id, position, error = %e, "frame log unreadable"),
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(POLL_FALLBACK) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() == Stop::Closed {
                        conn.send_json(&RouterToClient::SessionClosed { session_id });
                    }
                    return;
                }
            }
            if *stop.borrow() != Stop::Running {
                if *stop.borrow() == Stop::Closed {
                    conn.send_json(&RouterToClient::SessionClosed { session_id });
                }
                return;
            }
        }
    }

    async fn read_after(
        &self,
        log: &str,
        last: &str,
    ) -> Result<Vec<(String, u16, u16, Bytes)>, SharedError> {
        let mut con = self.con()?;
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(log)
            .arg(format!("({last}"))
            .arg("+")
            .arg("COUNT")
            .arg(READ_BATCH)
            .query_async(&mut con)
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .filter_map(|e| {
                let sender: u16 = e.get("s")?;
                let recipient: u16 = e.get("r")?;
                let frame: Vec<u8> = e.get("f")?;
                Some((e.id, sender, recipient, Bytes::from(frame)))
            })
            .collect())
    }

    /// Appends a frame from `position` to the session's log and tells every
    /// instance.
    pub(crate) async fn relay(
        &self,
        session_id: Uuid,
        position: u16,
        conn_id: u64,
        recipient: u16,
        frame: &Bytes,
    ) -> Result<Result<(), RelayError>, SharedError> {
        let (parties, expires_at) = {
            let local = self.local();
            let Some(s) = local.sessions.get(&session_id) else {
                return Ok(Err(RelayError::SessionGone));
            };
            if s.live.get(&position).map(|l| l.conn_id) != Some(conn_id) {
                return Ok(Err(RelayError::Replaced));
            }
            (s.parties, s.expires_at)
        };
        if recipient != BROADCAST && (recipient == position || recipient >= parties) {
            return Ok(Err(RelayError::BadRecipient(recipient)));
        }
        let base = session_key(session_id);
        let bytes_key = format!("{base}:bytes");
        let len = i64::try_from(frame.len()).unwrap_or(i64::MAX);
        let mut con = self.con()?;
        let total: i64 = con.incr(&bytes_key, len).await?;
        if usize::try_from(total).unwrap_or(usize::MAX) > self.max_session_bytes {
            let _: i64 = con.decr(&bytes_key, len).await?;
            return Ok(Err(RelayError::BufferFull));
        }
        let expire = i64::try_from(ttl(expires_at)).unwrap_or(i64::MAX);
        let log = format!("{base}:f");
        let _: () = redis::pipe()
            .atomic()
            .cmd("XADD")
            .arg(&log)
            .arg("*")
            .arg("s")
            .arg(position)
            .arg("r")
            .arg(recipient)
            .arg("f")
            .arg(&frame[..])
            .ignore()
            .expire(&log, expire)
            .ignore()
            .expire(&bytes_key, expire)
            .ignore()
            .publish(format!("mpc:n:{session_id}"), "")
            .ignore()
            .query_async(&mut con)
            .await?;
        Ok(Ok(()))
    }

    /// Unregisters a connection that ended, unless it was replaced.
    pub(crate) fn leave(&self, session_id: Uuid, position: u16, conn_id: u64) {
        let mut local = self.local();
        if let Some(s) = local.sessions.get_mut(&session_id) {
            if s.live.get(&position).is_some_and(|l| l.conn_id == conn_id) {
                if let Some(l) = s.live.remove(&position) {
                    l.stop.send_replace(Stop::Replaced);
                }
            }
            if s.live.is_empty() {
                local.sessions.remove(&session_id);
            }
        }
    }

    /// Ends a session everywhere; false if it is unknown.
    pub(crate) async fn close(&self, session_id: Uuid) -> Result<bool, SharedError> {
        let base = session_key(session_id);
        // A session past its deadline is already over (as on one instance,
        // where the sweeper removes it): its keys go, and it counts as unknown.
        let live = self
            .meta(session_id)
            .await?
            .is_some_and(|m| crate::now_unix() < m.expires_at);
        let mut con = self.con()?;
        let _: i64 = con.del(&base).await?;
        let _: i64 = con
            .del(&[
                format!("{base}:bind"),
                format!("{base}:f"),
                format!("{base}:bytes"),
            ])
            .await?;
        let _: i64 = con.publish(format!("mpc:c:{session_id}"), "").await?;
        self.close_local(session_id);
        Ok(live)
    }

    fn close_local(&self, session_id: Uuid) {
        if let Some(s) = self.local().sessions.remove(&session_id) {
            for l in s.live.into_values() {
                l.stop.send_replace(Stop::Closed);
            }
        }
    }

    /// Closes this instance's connections of sessions past their deadline
    /// (Redis expires the keys itself).
    pub(crate) fn expire(&self, now: u64) -> Vec<Uuid> {
        let ids = crate::sessions::overdue(&self.local().sessions, now, |s| s.expires_at);
        for id in &ids {
            self.close_local(*id);
        }
        ids
    }

    /// Makes `conn` this instance's control connection for `key` and hands it
    /// the invitations queued for the party.
    pub(crate) async fn register_control(
        self: &Arc<Self>,
        key: [u8; 32],
        party_id: &str,
        conn: Conn,
    ) {
        conn.send_json(&RouterToClient::Registered {
            party_id: party_id.to_owned(),
        });
        if let Some((old, _)) = self
            .local()
            .controls
            .insert(key, (party_id.to_owned(), conn))
        {
            tracing::info!(party_id = %old, "control connection replaced");
        }
        self.drain_invitations(key).await;
    }

    /// Unregisters a control connection that ended, unless replaced.
    pub(crate) fn leave_control(&self, key: &[u8; 32], conn_id: u64) {
        let mut local = self.local();
        if local
            .controls
            .get(key)
            .is_some_and(|(_, c)| c.id == conn_id)
        {
            local.controls.remove(key);
        }
    }

    /// Queues an invitation for a party and tells every instance; the one
    /// holding the party's control connection hands it over. True when that
    /// is this instance (delivered now); an expired invitation is dropped.
    pub(crate) async fn deliver(
        &self,
        key: [u8; 32],
        invitation: &Invitation,
    ) -> Result<bool, SharedError> {
        if crate::now_unix() >= invitation.descriptor.descriptor.expires_at {
            return Ok(false);
        }
        let list = format!("mpc:inv:{}", hex::encode(key));
        let json = serde_json::to_string(invitation).unwrap_or_default();
        let expire =
            i64::try_from(ttl(invitation.descriptor.descriptor.expires_at)).unwrap_or(i64::MAX);
        let mut con = self.con()?;
        let _: () = redis::pipe()
            .atomic()
            .rpush(&list, json)
            .ignore()
            .ltrim(&list, -MAX_QUEUED_PER_PARTY, -1)
            .ignore()
            .expire(&list, expire)
            .ignore()
            .publish(format!("mpc:i:{}", hex::encode(key)), "")
            .ignore()
            .query_async(&mut con)
            .await?;
        if self.local().controls.contains_key(&key) {
            self.drain_invitations(key).await;
            return Ok(true);
        }
        Ok(false)
    }

    /// Pops the party's queued invitations onto its local control connection.
    async fn drain_invitations(&self, key: [u8; 32]) {
        let list = format!("mpc:inv:{}", hex::encode(key));
        let Ok(mut con) = self.con() else { return };
        loop {
            let popped: Result<Option<String>, _> = con.lpop(&list, None).await;
            let json = match popped {
                Ok(Some(j)) => j,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "invitation queue unreadable");
                    return;
                }
            };
            let Ok(inv) = serde_json::from_str::<Invitation>(&json) else {
                continue;
            };
            if crate::now_unix() >= inv.descriptor.descriptor.expires_at {
                continue;
            }
            let session_id = inv.descriptor.descriptor.session_id;
            let sent = match self.local().controls.get(&key) {
                Some((party_id, conn)) => {
                    let ok = conn.send_json(&RouterToClient::Invitation(inv));
                    if ok {
                        tracing::info!(%party_id, %session_id, "invitation delivered");
                    }
                    ok
                }
                None => false,
            };
            if !sent {
                // The connection went away: put it back for the next one.
                let _: Result<i64, _> = con.lpush(&list, json).await;
                return;
            }
        }
    }
}
