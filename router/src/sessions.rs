//! Per-session state: slots (join-token hashes and bound identities), the
//! frame buffer and the live connection of each position.
//!
//! [`SessionStore`] is plain synchronous state behind one lock, so joining
//! (register the connection, replay the buffer) and relaying (append, forward)
//! are atomic with respect to each other: a party never misses a frame nor gets
//! one twice, and frames reach every party in arrival order. A multi-instance
//! router replaces the buffer with a shared log; the methods stay the same.

use std::collections::HashMap;

use axum::body::Bytes;
use party_core::envelope::BROADCAST;
use party_core::identity::PartyPublicKey;
use party_core::wire::RouterToClient;
use subtle::{Choice, ConstantTimeEq};
use uuid::Uuid;

use crate::conn::Conn;

/// A slot of a session being registered.
#[derive(Debug, Clone)]
pub(crate) struct NewSlot {
    /// SHA-256 of the slot's join token.
    pub(crate) token_sha256: [u8; 32],
    /// Identity the slot is bound to from the start (server parties).
    pub(crate) identity: Option<PartyPublicKey>,
}

/// Why a join was refused; `code()` is what the client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
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
}

impl JoinError {
    /// Machine-readable code sent in `RouterToClient::Error`.
    pub(crate) fn code(self) -> &'static str {
        match self {
            JoinError::UnknownSession => "unknown_session",
            JoinError::Expired => "expired",
            JoinError::BadToken => "bad_token",
            JoinError::TokenBound => "token_bound",
            JoinError::BadSignature => "bad_signature",
        }
    }
}

/// Why a frame was not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RelayError {
    #[error("session is gone")]
    SessionGone,
    #[error("connection was replaced")]
    Replaced,
    #[error("recipient {0} is not another position of the session")]
    BadRecipient(u16),
    #[error("session buffer full")]
    BufferFull,
}

/// Registration refused because the id is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session already registered")]
pub(crate) struct AlreadyRegistered;

#[derive(Debug)]
struct Slot {
    token_sha256: [u8; 32],
    identity: Option<PartyPublicKey>,
    conn: Option<Conn>,
}

#[derive(Debug)]
struct Buffered {
    sender: u16,
    recipient: u16,
    frame: Bytes,
}

impl Buffered {
    fn is_for(&self, position: u16) -> bool {
        if self.recipient == BROADCAST {
            self.sender != position
        } else {
            self.recipient == position
        }
    }
}

#[derive(Debug)]
struct Session {
    expires_at: u64,
    slots: Vec<Slot>,
    frames: Vec<Buffered>,
    buffered_bytes: usize,
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

/// All sessions of this router instance.
#[derive(Debug)]
pub(crate) struct SessionStore {
    sessions: HashMap<Uuid, Session>,
    max_session_bytes: usize,
}

impl SessionStore {
    pub(crate) fn new(max_session_bytes: usize) -> Self {
        Self {
            sessions: HashMap::new(),
            max_session_bytes,
        }
    }

    /// Registers a session; slots are given in position order.
    pub(crate) fn register(
        &mut self,
        session_id: Uuid,
        expires_at: u64,
        slots: Vec<NewSlot>,
    ) -> Result<(), AlreadyRegistered> {
        if self.sessions.contains_key(&session_id) {
            return Err(AlreadyRegistered);
        }
        let slots = slots
            .into_iter()
            .map(|s| Slot {
                token_sha256: s.token_sha256,
                identity: s.identity,
                conn: None,
            })
            .collect();
        self.sessions.insert(
            session_id,
            Session {
                expires_at,
                slots,
                frames: Vec::new(),
                buffered_bytes: 0,
            },
        );
        Ok(())
    }

    /// Admits `conn` to a session: finds the slot by token hash, checks and
    /// binds the identity, then queues `Joined` and every buffered frame for
    /// the position on `conn` and makes it the position's live connection
    /// (closing any previous one). `signature_ok` is the caller's check of the
    /// challenge signature, reported only after the token checks.
    pub(crate) fn join(
        &mut self,
        session_id: Uuid,
        token_sha256: &[u8; 32],
        identity: &PartyPublicKey,
        signature_ok: bool,
        now: u64,
        conn: Conn,
    ) -> Result<u16, JoinError> {
        let session = self
            .sessions
            .get_mut(&session_id)
            .ok_or(JoinError::UnknownSession)?;
        if now >= session.expires_at {
            return Err(JoinError::Expired);
        }
        // Compare against every slot without stopping early.
        let mut found: Option<usize> = None;
        for (i, slot) in session.slots.iter().enumerate() {
            let eq: Choice = slot.token_sha256.ct_eq(token_sha256);
            if bool::from(eq) && found.is_none() {
                found = Some(i);
            }
        }
        let index = found.ok_or(JoinError::BadToken)?;
        let position = u16::try_from(index).map_err(|_| JoinError::BadToken)?;
        let slot = &mut session.slots[index];
        if slot.identity.is_some_and(|bound| bound != *identity) {
            return Err(JoinError::TokenBound);
        }
        if !signature_ok {
            return Err(JoinError::BadSignature);
        }
        slot.identity = Some(*identity);
        conn.send_json(&RouterToClient::Joined {
            session_id,
            position,
        });
        for f in session.frames.iter().filter(|f| f.is_for(position)) {
            conn.send_frame(f.frame.clone());
        }
        if slot.conn.replace(conn).is_some() {
            tracing::info!(%session_id, position, "connection replaced by a reconnect");
        }
        Ok(position)
    }

    /// Buffers a frame from `position` (already checked to name this session
    /// and this sender) and forwards it to the connected recipients.
    pub(crate) fn relay(
        &mut self,
        session_id: Uuid,
        position: u16,
        conn_id: u64,
        recipient: u16,
        frame: Bytes,
    ) -> Result<(), RelayError> {
        let session = self
            .sessions
            .get_mut(&session_id)
            .ok_or(RelayError::SessionGone)?;
        let current = session
            .slots
            .get(usize::from(position))
            .and_then(|s| s.conn.as_ref())
            .map(|c| c.id);
        if current != Some(conn_id) {
            return Err(RelayError::Replaced);
        }
        if recipient != BROADCAST
            && (recipient == position || usize::from(recipient) >= session.slots.len())
        {
            return Err(RelayError::BadRecipient(recipient));
        }
        let total = session.buffered_bytes.saturating_add(frame.len());
        if total > self.max_session_bytes {
            return Err(RelayError::BufferFull);
        }
        session.buffered_bytes = total;
        let entry = Buffered {
            sender: position,
            recipient,
            frame,
        };
        for (i, slot) in session.slots.iter().enumerate() {
            let for_slot = u16::try_from(i).is_ok_and(|p| entry.is_for(p));
            if let (true, Some(conn)) = (for_slot, slot.conn.as_ref()) {
                conn.send_frame(entry.frame.clone());
            }
        }
        session.frames.push(entry);
        Ok(())
    }

    /// Unregisters a connection that ended, unless it was already replaced.
    pub(crate) fn leave(&mut self, session_id: Uuid, position: u16, conn_id: u64) {
        if let Some(slot) = self
            .sessions
            .get_mut(&session_id)
            .and_then(|s| s.slots.get_mut(usize::from(position)))
        {
            if slot.conn.as_ref().is_some_and(|c| c.id == conn_id) {
                slot.conn = None;
            }
        }
    }

    /// Ends a session: `SessionClosed` to its connections, buffer dropped.
    /// False if the session is unknown.
    pub(crate) fn close(&mut self, session_id: Uuid) -> bool {
        match self.sessions.remove(&session_id) {
            Some(mut session) => {
                session.close_connections(session_id);
                true
            }
            None => false,
        }
    }

    /// Ends every session whose deadline has passed; returns their ids.
    pub(crate) fn expire(&mut self, now: u64) -> Vec<Uuid> {
        let expired = overdue(&self.sessions, now, |s| s.expires_at);
        for id in &expired {
            self.close(*id);
        }
        expired
    }
}

/// The ids of the sessions in `sessions` whose deadline (`expires_at`) has
/// passed at `now`.
pub(crate) fn overdue<S>(
    sessions: &HashMap<Uuid, S>,
    now: u64,
    expires_at: impl Fn(&S) -> u64,
) -> Vec<Uuid> {
    sessions
        .iter()
        .filter(|(_, s)| now >= expires_at(s))
        .map(|(id, _)| *id)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::conn::Outbound;
    use tokio::sync::mpsc::UnboundedReceiver;

    fn key(b: u8) -> PartyPublicKey {
        PartyPublicKey {
            ed25519: [b; 32],
            x25519: [b; 32],
        }
    }

    fn store_with(slots: usize, expires_at: u64) -> (SessionStore, Uuid) {
        let mut store = SessionStore::new(1000);
        let id = Uuid::from_bytes([1; 16]);
        let slots = (0..slots)
            .map(|i| NewSlot {
                token_sha256: [u8::try_from(i).unwrap(); 32],
                identity: None,
            })
            .collect();
        store.register(id, expires_at, slots).unwrap();
        (store, id)
    }

    fn drain(rx: &mut UnboundedReceiver<Outbound>) -> Vec<Outbound> {
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            out.push(m);
        }
        out
    }

    #[test]
    fn expiry_is_checked_against_now() {
        let (mut store, id) = store_with(2, 100);
        let (c, _rx) = Conn::new(1);
        assert_eq!(
            store.join(id, &[0; 32], &key(1), true, 100, c),
            Err(JoinError::Expired)
        );
        let (c, _rx) = Conn::new(2);
        assert_eq!(store.join(id, &[0; 32], &key(1), true, 99, c), Ok(0));
        assert_eq!(store.expire(99), Vec::<Uuid>::new());
        assert_eq!(store.expire(100), vec![id]);
        let (c, _rx) = Conn::new(3);
        assert_eq!(
            store.join(id, &[0; 32], &key(1), true, 50, c),
            Err(JoinError::UnknownSession)
        );
    }

    #[test]
    fn token_checks_come_before_the_signature() {
        let (mut store, id) = store_with(2, 100);
        let (c, _rx) = Conn::new(1);
        assert_eq!(
            store.join(id, &[9; 32], &key(1), false, 0, c),
            Err(JoinError::BadToken)
        );
        let (c, _rx) = Conn::new(2);
        assert_eq!(
            store.join(id, &[1; 32], &key(1), false, 0, c),
            Err(JoinError::BadSignature)
        );
        // A refused signature does not bind the slot.
        let (c, _rx) = Conn::new(3);
        assert_eq!(store.join(id, &[1; 32], &key(2), true, 0, c), Ok(1));
        let (c, _rx) = Conn::new(4);
        assert_eq!(
            store.join(id, &[1; 32], &key(1), true, 0, c),
            Err(JoinError::TokenBound)
        );
    }

    #[test]
    fn buffer_limit_and_recipients() {
        let (mut store, id) = store_with(2, 100);
        let (c, mut rx) = Conn::new(1);
        store.join(id, &[0; 32], &key(1), true, 0, c).unwrap();
        assert_eq!(
            store.relay(id, 0, 1, 0, Bytes::from_static(b"x")),
            Err(RelayError::BadRecipient(0))
        );
        assert_eq!(
            store.relay(id, 0, 1, 2, Bytes::from_static(b"x")),
            Err(RelayError::BadRecipient(2))
        );
        assert_eq!(
            store.relay(id, 0, 7, 1, Bytes::from_static(b"x")),
            Err(RelayError::Replaced)
        );
        assert_eq!(
            store.relay(id, 0, 1, 1, Bytes::from(vec![0u8; 1000])),
            Ok(())
        );
        assert_eq!(
            store.relay(id, 0, 1, 1, Bytes::from_static(b"x")),
            Err(RelayError::BufferFull)
        );
        // Only Joined reached the sender itself.
        assert_eq!(drain(&mut rx).len(), 1);
    }
}
