//! The in-process backend: one router instance (`mpc dev`, a single
//! deployment), all state behind two locks.
//!
//! Attaching a connection (replay the log, become live) and appending a frame
//! (log, forward) hold the sessions lock, so they are atomic with respect to
//! each other: a party never misses a frame nor gets one twice, and frames
//! reach every party in log order. No lock is held across an `.await`: every
//! method does its work before returning a ready future.

mod control;
mod disconnects;
mod seen;

use std::collections::HashMap;
use std::future::ready;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mpc_api::router::{Disconnect, Disconnects};
use party_core::identity::PartyPublicKey;
use party_core::wire::{Invitation, RouterToClient};
use tokio::sync::watch;
use uuid::Uuid;

use self::control::ControlRegistry;
use self::disconnects::Feed;
use self::seen::SeenIds;
use super::{
    registration_digest, AppendError, Backend, BackendError, BoxFuture, FrameTap, LogEntry,
    Registration, SessionRecord, SessionShape, Slot,
};
use crate::conn::Conn;

#[derive(Debug)]
struct StoredSlot {
    token_sha256: [u8; 32],
    identity: Option<PartyPublicKey>,
    conn: Option<Conn>,
}

#[derive(Debug)]
struct Session {
    /// [`registration_digest`] of the registration, to tell a retry from
    /// another registration of the same id.
    registration: [u8; 32],
    expires_at: u64,
    slots: Vec<StoredSlot>,
    log: Vec<LogEntry>,
    logged_bytes: usize,
}

impl Session {
    /// Sends `SessionClosed` to every connection and drops them (which closes
    /// them once the notice is written).
    fn close_connections(&mut self, session_id: Uuid) {
        let msg = RouterToClient::SessionClosed { session_id };
        for slot in &mut self.slots {
            if let Some(conn) = slot.conn.take() {
                conn.send_json(&msg);
            }
        }
    }
}

/// Open sessions and every session id registered lately.
#[derive(Debug, Default)]
struct Sessions {
    open: HashMap<Uuid, Session>,
    seen: SeenIds,
}

/// All state of this router instance, in memory.
#[derive(Debug, Default)]
pub(crate) struct MemoryBackend {
    sessions: Mutex<Sessions>,
    control: Mutex<ControlRegistry>,
    disconnects: Feed,
}

impl MemoryBackend {
    fn all_sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The open sessions.
    fn sessions(&self) -> OpenSessions<'_> {
        OpenSessions(self.all_sessions())
    }

    fn control(&self) -> MutexGuard<'_, ControlRegistry> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close_now(&self, session_id: Uuid) -> bool {
        match self.sessions().remove(&session_id) {
            Some(mut session) => {
                session.close_connections(session_id);
                true
            }
            None => false,
        }
    }
}

impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(ready(true))
    }

    fn run(&self, _stop: watch::Receiver<bool>) -> BoxFuture<'static, ()> {
        Box::pin(ready(()))
    }

    fn register(
        &self,
        session_id: Uuid,
        expires_at: u64,
        slots: Vec<Slot>,
    ) -> BoxFuture<'_, Result<Registration, BackendError>> {
        let registration = registration_digest(expires_at, &slots);
        let mut all = self.all_sessions();
        let outcome = if let Some(open) = all.open.get(&session_id) {
            if crate::now_unix() >= open.expires_at {
                // Past its deadline, not swept yet: over all the same.
                Registration::Closed
            } else if open.registration == registration {
                Registration::Identical
            } else {
                Registration::Conflict
            }
        } else if all.seen.contains(&session_id) {
            Registration::Closed
        } else {
            let slots = slots
                .into_iter()
                .map(|s| StoredSlot {
                    token_sha256: s.token_sha256,
                    identity: s.identity,
                    conn: None,
                })
                .collect();
            all.seen.insert(session_id, expires_at);
            all.open.insert(
                session_id,
                Session {
                    registration,
                    expires_at,
                    slots,
                    log: Vec::new(),
                    logged_bytes: 0,
                },
            );
            Registration::Fresh
        };
        Box::pin(ready(Ok(outcome)))
    }

    fn session(
        &self,
        session_id: Uuid,
    ) -> BoxFuture<'_, Result<Option<SessionRecord>, BackendError>> {
        let record = self.sessions().get(&session_id).map(|s| SessionRecord {
            expires_at: s.expires_at,
            slots: s
                .slots
                .iter()
                .map(|slot| Slot {
                    token_sha256: slot.token_sha256,
                    identity: slot.identity,
                })
                .collect(),
        });
        Box::pin(ready(Ok(record)))
    }

    fn bind(
        &self,
        session_id: Uuid,
        position: u16,
        identity: PartyPublicKey,
        _expires_at: u64,
    ) -> BoxFuture<'_, Result<Option<PartyPublicKey>, BackendError>> {
        let bound = self
            .sessions()
            .get_mut(&session_id)
            .and_then(|s| s.slots.get_mut(usize::from(position)))
            .map(|slot| *slot.identity.get_or_insert(identity));
        Box::pin(ready(Ok(bound)))
    }

    fn attach(
        &self,
        session_id: Uuid,
        position: u16,
        _session: SessionShape,
        conn: Conn,
    ) -> BoxFuture<'_, Result<bool, BackendError>> {
        let mut sessions = self.sessions();
        let attached = match sessions.get_mut(&session_id) {
            Some(session) => {
                for entry in session.log.iter().filter(|e| e.is_for(position)) {
                    conn.send_frame(entry.frame.clone());
                }
                match session.slots.get_mut(usize::from(position)) {
                    Some(slot) => {
                        if slot.conn.replace(conn).is_some() {
                            tracing::info!(%session_id, position, "connection replaced by a reconnect");
                        }
                        true
                    }
                    None => false,
                }
            }
            None => false,
        };
        Box::pin(ready(Ok(attached)))
    }

    fn append<'a>(
        &'a self,
        entry: LogEntry,
        conn_id: u64,
        max_session_bytes: usize,
        tap: &'a FrameTap,
    ) -> BoxFuture<'a, Result<Result<(), AppendError>, BackendError>> {
        let mut sessions = self.sessions();
        let appended = (|| {
            let session = sessions
                .get_mut(&entry.session_id)
                .ok_or(AppendError::SessionGone)?;
            let current = session
                .slots
                .get(usize::from(entry.sender))
                .and_then(|s| s.conn.as_ref())
                .map(|c| c.id);
            if current != Some(conn_id) {
                return Err(AppendError::Replaced);
            }
            let total = session.logged_bytes.saturating_add(entry.frame.len());
            if total > max_session_bytes {
                return Err(AppendError::BufferFull);
            }
            session.logged_bytes = total;
            for (i, slot) in session.slots.iter().enumerate() {
                let for_slot = u16::try_from(i).is_ok_and(|p| entry.is_for(p));
                if let (true, Some(conn)) = (for_slot, slot.conn.as_ref()) {
                    conn.send_frame(entry.frame.clone());
                }
            }
            // Published under the lock, so observers see log order.
            tap.publish(entry.session_id, &entry.frame);
            session.log.push(entry);
            Ok(())
        })();
        drop(sessions);
        Box::pin(ready(Ok(appended)))
    }

    fn leave(&self, session_id: Uuid, position: u16, conn_id: u64) {
        if let Some(slot) = self
            .sessions()
            .get_mut(&session_id)
            .and_then(|s| s.slots.get_mut(usize::from(position)))
        {
            if slot.conn.as_ref().is_some_and(|c| c.id == conn_id) {
                slot.conn = None;
            }
        }
    }

    fn came_back(
        &self,
        session_id: Uuid,
        position: u16,
        conn_id: u64,
    ) -> BoxFuture<'_, Result<Option<bool>, BackendError>> {
        let now = crate::now_unix();
        let back = self
            .sessions()
            .get(&session_id)
            .filter(|s| now < s.expires_at)
            .and_then(|s| s.slots.get(usize::from(position)))
            .map(|slot| slot.conn.as_ref().is_some_and(|c| c.id != conn_id));
        Box::pin(ready(Ok(back)))
    }

    fn record_disconnect(&self, notice: Disconnect) -> BoxFuture<'_, Result<(), BackendError>> {
        self.disconnects.push(notice);
        Box::pin(ready(Ok(())))
    }

    fn disconnects(
        &self,
        after: Option<String>,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Disconnects, BackendError>> {
        Box::pin(async move { Ok(self.disconnects.read(after, wait).await) })
    }

    fn close(&self, session_id: Uuid) -> BoxFuture<'_, Result<bool, BackendError>> {
        Box::pin(ready(Ok(self.close_now(session_id))))
    }

    fn expire(&self, now: u64) -> Vec<Uuid> {
        let overdue: Vec<Uuid> = self
            .sessions()
            .iter()
            .filter(|(_, s)| now >= s.expires_at)
            .map(|(id, _)| *id)
            .collect();
        for id in &overdue {
            self.close_now(*id);
        }
        self.all_sessions().seen.prune(now);
        self.control().expire(now);
        overdue
    }

    fn attach_control<'a>(
        &'a self,
        key: [u8; 32],
        party_id: &'a str,
        conn: Conn,
        now: u64,
    ) -> BoxFuture<'a, usize> {
        Box::pin(ready(self.control().attach(key, party_id, conn, now)))
    }

    fn detach_control(&self, key: &[u8; 32], conn_id: u64) {
        self.control().detach(key, conn_id);
    }

    fn invite(
        &self,
        key: [u8; 32],
        invitation: Invitation,
    ) -> BoxFuture<'_, Result<bool, BackendError>> {
        Box::pin(ready(Ok(self.control().deliver(key, invitation))))
    }
}

/// The open sessions, behind the sessions lock.
struct OpenSessions<'a>(MutexGuard<'a, Sessions>);

impl std::ops::Deref for OpenSessions<'_> {
    type Target = HashMap<Uuid, Session>;
    fn deref(&self) -> &Self::Target {
        &self.0.open
    }
}

impl std::ops::DerefMut for OpenSessions<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0.open
    }
}
