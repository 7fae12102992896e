//! Sessions in Redis: registration, bindings, the frame log and the
//! forwarder of each live connection of this instance.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use party_core::identity::PartyPublicKey;
use party_core::wire::RouterToClient;
use redis::streams::StreamRangeReply;
use redis::AsyncCommands as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use super::{seen_key, session_key, ttl, Inner, Live, LocalSession, Stop};
use crate::backend::{
    is_for, AppendError, BackendError, LogEntry, Registration, SessionRecord, SessionShape, Slot,
    CLOSED_ID_RETENTION_SECS,
};
use crate::conn::Conn;

/// Registers a session unless its id is taken, in one step.
/// KEYS: the session key, its seen key. ARGV: the registration (JSON), its
/// TTL, the seen key's TTL, now (Unix seconds). Returns 0 registered, 1 the
/// same registration is open, 2 another registration is open, 3 the id was
/// registered before and its session has closed.
const REGISTER: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, meta = pcall(cjson.decode, cur)
  if ok and type(meta) == 'table' and tonumber(meta.expires_at) and tonumber(meta.expires_at) <= tonumber(ARGV[4]) then
    return 3
  end
  if cur == ARGV[1] then return 1 end
  return 2
end
if redis.call('EXISTS', KEYS[2]) == 1 then return 3 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
return 0
";

/// Log entries read per round trip.
const READ_BATCH: usize = 256;
/// A forwarder looks at the log at least this often.
const POLL_FALLBACK: Duration = Duration::from_secs(1);

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

fn decode_identity(json: &str) -> Option<PartyPublicKey> {
    serde_json::from_str(json).ok()
}

impl Inner {
    /// Registers a session unless its id was registered before (see
    /// [`REGISTER`]); the id is remembered [`CLOSED_ID_RETENTION_SECS`] past
    /// the session's keys, by every instance.
    pub(super) async fn register(
        &self,
        session_id: Uuid,
        expires_at: u64,
        slots: Vec<Slot>,
    ) -> Result<Registration, BackendError> {
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
        let session_ttl = ttl(expires_at);
        let retention = i64::try_from(CLOSED_ID_RETENTION_SECS).unwrap_or(i64::MAX);
        let mut con = self.con()?;
        let outcome: i64 = redis::cmd("EVAL")
            .arg(REGISTER)
            .arg(2)
            .arg(session_key(session_id))
            .arg(seen_key(session_id))
            .arg(json)
            .arg(session_ttl)
            .arg(session_ttl.saturating_add(retention))
            .arg(crate::now_unix())
            .query_async(&mut con)
            .await?;
        Ok(match outcome {
            0 => Registration::Fresh,
            1 => Registration::Identical,
            2 => Registration::Conflict,
            _ => Registration::Closed,
        })
    }

    /// The registration and the identities bound since, in one round trip.
    pub(super) async fn session(
        &self,
        session_id: Uuid,
    ) -> Result<Option<SessionRecord>, BackendError> {
        let base = session_key(session_id);
        let mut con = self.con()?;
        let (meta, bound): (Option<String>, HashMap<u16, String>) = redis::pipe()
            .get(&base)
            .hgetall(format!("{base}:bind"))
            .query_async(&mut con)
            .await?;
        let Some(meta) = meta.and_then(|j| serde_json::from_str::<Meta>(&j).ok()) else {
            return Ok(None);
        };
        let slots = meta
            .slots
            .into_iter()
            .enumerate()
            .map(|(i, s)| Slot {
                token_sha256: s.token_sha256,
                identity: s.identity.or_else(|| {
                    u16::try_from(i)
                        .ok()
                        .and_then(|p| bound.get(&p))
                        .and_then(|j| decode_identity(j))
                }),
            })
            .collect();
        Ok(Some(SessionRecord {
            expires_at: meta.expires_at,
            slots,
        }))
    }

    /// `HSETNX`, then reads back whichever identity won.
    pub(super) async fn bind(
        &self,
        session_id: Uuid,
        position: u16,
        identity: PartyPublicKey,
        expires_at: u64,
    ) -> Result<Option<PartyPublicKey>, BackendError> {
        let bind_key = format!("{}:bind", session_key(session_id));
        let json = serde_json::to_string(&identity).unwrap_or_default();
        let mut con = self.con()?;
        let (bound,): (Option<String>,) = redis::pipe()
            .atomic()
            .hset_nx(&bind_key, position, &json)
            .ignore()
            .expire(&bind_key, ttl(expires_at))
            .ignore()
            .hget(&bind_key, position)
            .query_async(&mut con)
            .await?;
        Ok(bound.as_deref().and_then(decode_identity))
    }

    /// Makes `conn` this instance's live connection of `position`, tells the
    /// other instances (which drop theirs) and starts its forwarder.
    pub(super) async fn attach(
        self: &Arc<Self>,
        session_id: Uuid,
        position: u16,
        shape: SessionShape,
        conn: Conn,
    ) -> Result<bool, BackendError> {
        let conn_id = conn.id;
        let (stop_tx, stop_rx) = watch::channel(Stop::Running);
        let notify = {
            let mut local = self.local();
            let s = local
                .sessions
                .entry(session_id)
                .or_insert_with(|| LocalSession {
                    shape,
                    notify: Arc::new(Notify::new()),
                    live: HashMap::new(),
                });
            let live = Live {
                conn_id,
                stop: stop_tx,
            };
            if let Some(old) = s.live.insert(position, live) {
                old.stop.send_replace(Stop::Replaced);
                tracing::info!(%session_id, position, "connection replaced by a reconnect");
            }
            s.notify.clone()
        };
        // Other instances drop an older connection of this position.
        let published = async {
            self.mark_live(session_id, position, conn_id, shape.expires_at)
                .await?;
            let mut con = self.con()?;
            let owner = format!("{position}:{}:{conn_id}", self.instance);
            let _: i64 = con.publish(format!("mpc:r:{session_id}"), owner).await?;
            Ok::<(), BackendError>(())
        }
        .await;
        if let Err(e) = published {
            self.leave(session_id, position, conn_id);
            return Err(e);
        }
        let me = self.clone();
        tokio::spawn(async move {
            me.forward(session_id, position, conn, stop_rx, notify)
                .await
        });
        Ok(true)
    }

    /// A notice that `position` of `session_id` has a new owner
    /// (`"{position}:{instance}:{conn_id}"`): a local connection that is not
    /// that one stops.
    pub(super) fn on_moved(&self, session_id: Uuid, payload: &str) {
        let mut parts = payload.splitn(3, ':');
        let (Some(pos), Some(instance), Some(conn_id)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let (Ok(pos), Ok(conn_id)) = (pos.parse::<u16>(), conn_id.parse::<u64>()) else {
            return;
        };
        let mut local = self.local();
        if let Some(s) = local.sessions.get_mut(&session_id) {
            let stale = s
                .live
                .get(&pos)
                .is_some_and(|l| instance != self.instance || l.conn_id != conn_id);
            if stale {
                if let Some(l) = s.live.remove(&pos) {
                    l.stop.send_replace(Stop::Replaced);
                    tracing::info!(%session_id, position = pos, "connection replaced by a reconnect elsewhere");
                }
            }
        }
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
                        if is_for(sender, recipient, position) && !conn.send_frame(frame) {
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
            let state = *stop.borrow();
            if state != Stop::Running {
                if state == Stop::Closed {
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
    ) -> Result<Vec<(String, u16, u16, Bytes)>, BackendError> {
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

    /// Appends a frame to the session's log and tells every instance.
    pub(super) async fn append(
        &self,
        entry: &LogEntry,
        conn_id: u64,
        max_session_bytes: usize,
    ) -> Result<Result<(), AppendError>, BackendError> {
        let session_id = entry.session_id;
        let expires_at = {
            let local = self.local();
            let Some(s) = local.sessions.get(&session_id) else {
                return Ok(Err(AppendError::SessionGone));
            };
            if s.live.get(&entry.sender).map(|l| l.conn_id) != Some(conn_id) {
                return Ok(Err(AppendError::Replaced));
            }
            s.shape.expires_at
        };
        let base = session_key(session_id);
        let bytes_key = format!("{base}:bytes");
        let len = i64::try_from(entry.frame.len()).unwrap_or(i64::MAX);
        let mut con = self.con()?;
        let total: i64 = con.incr(&bytes_key, len).await?;
        if usize::try_from(total).unwrap_or(usize::MAX) > max_session_bytes {
            let _: i64 = con.decr(&bytes_key, len).await?;
            return Ok(Err(AppendError::BufferFull));
        }
        let expire = ttl(expires_at);
        let log = format!("{base}:f");
        let _: () = redis::pipe()
            .atomic()
            .cmd("XADD")
            .arg(&log)
            .arg("*")
            .arg("s")
            .arg(entry.sender)
            .arg("r")
            .arg(entry.recipient)
            .arg("f")
            .arg(&entry.frame[..])
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
    pub(super) fn leave(&self, session_id: Uuid, position: u16, conn_id: u64) {
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
    pub(super) async fn close(&self, session_id: Uuid) -> Result<bool, BackendError> {
        let base = session_key(session_id);
        let mut con = self.con()?;
        // A session past its deadline is already over (as on one instance,
        // where the sweeper removes it): its keys go, and it counts as unknown.
        let meta: Option<String> = con.get(&base).await?;
        let live = meta
            .and_then(|j| serde_json::from_str::<Meta>(&j).ok())
            .is_some_and(|m| crate::now_unix() < m.expires_at);
        let _: i64 = con
            .del(&[
                base.clone(),
                format!("{base}:bind"),
                format!("{base}:f"),
                format!("{base}:bytes"),
                format!("{base}:live"),
            ])
            .await?;
        let _: i64 = con.publish(format!("mpc:c:{session_id}"), "").await?;
        self.close_local(session_id);
        Ok(live)
    }

    /// Stops this instance's connections of a session with `SessionClosed`.
    pub(super) fn close_local(&self, session_id: Uuid) {
        if let Some(s) = self.local().sessions.remove(&session_id) {
            for l in s.live.into_values() {
                l.stop.send_replace(Stop::Closed);
            }
        }
    }

    /// Closes this instance's connections of sessions past their deadline.
    pub(super) fn expire_local(&self, now: u64) -> Vec<Uuid> {
        let overdue: Vec<Uuid> = self
            .local()
            .sessions
            .iter()
            .filter(|(_, s)| now >= s.shape.expires_at)
            .map(|(id, _)| *id)
            .collect();
        for id in &overdue {
            self.close_local(*id);
        }
        overdue
    }
}
