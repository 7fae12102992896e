//! Control connections of server parties and the invitations waiting for
//! them, in this process.

use std::collections::{HashMap, VecDeque};

use party_core::wire::{Invitation, RouterToClient};

use crate::backend::{invitation_expired, MAX_QUEUED_PER_PARTY};
use crate::conn::Conn;

#[derive(Debug)]
struct ControlConn {
    party_id: String,
    conn: Conn,
}

/// Control connections by identity key, and queued invitations.
#[derive(Debug, Default)]
pub(super) struct ControlRegistry {
    conns: HashMap<[u8; 32], ControlConn>,
    queued: HashMap<[u8; 32], VecDeque<Invitation>>,
}

impl ControlRegistry {
    /// Makes `conn` the control connection of `key` (closing an older one)
    /// after queueing on it the invitations waiting for the party. Returns
    /// how many invitations were delivered.
    pub(super) fn attach(&mut self, key: [u8; 32], party_id: &str, conn: Conn, now: u64) -> usize {
        let mut delivered = 0;
        for inv in self.queued.remove(&key).unwrap_or_default() {
            if !invitation_expired(&inv, now)
                && conn.send_json(&RouterToClient::Invitation(Box::new(inv)))
            {
                delivered += 1;
            }
        }
        let old = self.conns.insert(
            key,
            ControlConn {
                party_id: party_id.to_owned(),
                conn,
            },
        );
        if let Some(old) = old {
            tracing::info!(party_id = %old.party_id, "control connection replaced");
        }
        delivered
    }

    /// Sends an invitation to the party's control connection, or queues it.
    /// True if it was sent right away.
    pub(super) fn deliver(&mut self, key: [u8; 32], invitation: Invitation) -> bool {
        if let Some(c) = self.conns.get(&key) {
            if c.conn
                .send_json(&RouterToClient::Invitation(Box::new(invitation.clone())))
            {
                tracing::info!(
                    party_id = %c.party_id,
                    session_id = %invitation.descriptor.descriptor.session_id,
                    "invitation delivered"
                );
                return true;
            }
            // The connection task has ended; it unregisters shortly.
            self.conns.remove(&key);
        }
        let queue = self.queued.entry(key).or_default();
        if queue.len() >= MAX_QUEUED_PER_PARTY {
            queue.pop_front();
            tracing::warn!("invitation queue full for a party; oldest invitation dropped");
        }
        queue.push_back(invitation);
        false
    }

    /// Unregisters a control connection that ended, unless already replaced.
    pub(super) fn detach(&mut self, key: &[u8; 32], conn_id: u64) {
        if self.conns.get(key).is_some_and(|c| c.conn.id == conn_id) {
            self.conns.remove(key);
        }
    }

    /// Drops queued invitations whose descriptor has expired.
    pub(super) fn expire(&mut self, now: u64) {
        self.queued.retain(|_, q| {
            q.retain(|inv| !invitation_expired(inv, now));
            !q.is_empty()
        });
    }
}
