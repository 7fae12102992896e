//! Control connections of server parties and the invitations waiting for them.
//!
//! A server party keeps one control connection, known by its Ed25519 identity
//! key. An invitation for a party that is not connected waits here until the
//! party connects or the invitation's descriptor expires.

use std::collections::{HashMap, VecDeque};

use party_core::wire::{Invitation, RouterToClient};

use crate::conn::Conn;

/// Most invitations kept for one party that is not connected; older ones are
/// dropped first.
pub(crate) const MAX_QUEUED_PER_PARTY: usize = 256;

#[derive(Debug)]
struct ControlConn {
    party_id: String,
    conn: Conn,
}

/// Control connections by identity key, and queued invitations.
#[derive(Debug, Default)]
pub(crate) struct ControlRegistry {
    conns: HashMap<[u8; 32], ControlConn>,
    queued: HashMap<[u8; 32], VecDeque<Invitation>>,
}

fn expired(inv: &Invitation, now: u64) -> bool {
    now >= inv.descriptor.descriptor.expires_at
}

impl ControlRegistry {
    /// Makes `conn` the control connection of `key` (closing an older one),
    /// queues `Registered` on it, then the invitations waiting for the party.
    /// Returns how many invitations were delivered.
    pub(crate) fn register(
        &mut self,
        key: [u8; 32],
        party_id: &str,
        conn: Conn,
        now: u64,
    ) -> usize {
        conn.send_json(&RouterToClient::Registered {
            party_id: party_id.to_owned(),
        });
        let mut delivered = 0;
        for inv in self.queued.remove(&key).unwrap_or_default() {
            if !expired(&inv, now) && conn.send_json(&RouterToClient::Invitation(inv)) {
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
    pub(crate) fn deliver(&mut self, key: [u8; 32], invitation: Invitation, now: u64) -> bool {
        if let Some(c) = self.conns.get(&key) {
            if c.conn
                .send_json(&RouterToClient::Invitation(invitation.clone()))
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
        if expired(&invitation, now) {
            return false;
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
    pub(crate) fn leave(&mut self, key: &[u8; 32], conn_id: u64) {
        if self.conns.get(key).is_some_and(|c| c.conn.id == conn_id) {
            self.conns.remove(key);
        }
    }

    /// Drops queued invitations whose descriptor has expired.
    pub(crate) fn expire(&mut self, now: u64) {
        self.queued.retain(|_, q| {
            q.retain(|inv| !expired(inv, now));
            !q.is_empty()
        });
    }
}
