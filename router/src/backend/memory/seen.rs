//! The session ids this instance has registered, remembered past their
//! sessions' deadlines so a closed session is never registered again.
//!
//! Bounded twice: an id is forgotten [`CLOSED_ID_RETENTION_SECS`] after its
//! session's deadline, and past [`MAX_REMEMBERED_IDS`] the id forgotten
//! soonest anyway goes first (logged: a deployment registering that many
//! sessions a week runs several instances on Redis, which has no such cap).

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

use crate::backend::CLOSED_ID_RETENTION_SECS;

/// Most session ids remembered (about 100 bytes each).
pub(super) const MAX_REMEMBERED_IDS: usize = 1_000_000;

/// Registered session ids and when each may be forgotten.
#[derive(Debug)]
pub(super) struct SeenIds {
    forget_at: HashMap<Uuid, u64>,
    /// The same entries, soonest forgotten first.
    order: BTreeSet<(u64, Uuid)>,
    cap: usize,
}

impl Default for SeenIds {
    fn default() -> Self {
        Self::with_cap(MAX_REMEMBERED_IDS)
    }
}

impl SeenIds {
    pub(super) fn with_cap(cap: usize) -> Self {
        Self {
            forget_at: HashMap::new(),
            order: BTreeSet::new(),
            cap,
        }
    }

    pub(super) fn contains(&self, id: &Uuid) -> bool {
        self.forget_at.contains_key(id)
    }

    /// Remembers `id`, registered with deadline `expires_at`.
    pub(super) fn insert(&mut self, id: Uuid, expires_at: u64) {
        let forget_at = expires_at.saturating_add(CLOSED_ID_RETENTION_SECS);
        if let Some(old) = self.forget_at.insert(id, forget_at) {
            self.order.remove(&(old, id));
        }
        self.order.insert((forget_at, id));
        while self.forget_at.len() > self.cap {
            let Some((_, evicted)) = self.order.pop_first() else {
                break;
            };
            self.forget_at.remove(&evicted);
            tracing::warn!(
                session_id = %evicted,
                cap = self.cap,
                "too many session ids to remember: the oldest is forgotten early"
            );
        }
    }

    /// Forgets the ids whose retention has passed at `now`.
    pub(super) fn prune(&mut self, now: u64) {
        while let Some(&(forget_at, id)) = self.order.first() {
            if forget_at > now {
                break;
            }
            self.order.pop_first();
            self.forget_at.remove(&id);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.forget_at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> Uuid {
        Uuid::from_bytes([b; 16])
    }

    #[test]
    fn ids_are_kept_for_the_retention_past_their_deadline() {
        let mut seen = SeenIds::default();
        seen.insert(id(1), 100);
        seen.insert(id(2), 200);
        seen.prune(100 + CLOSED_ID_RETENTION_SECS - 1);
        assert!(seen.contains(&id(1)) && seen.contains(&id(2)));
        seen.prune(100 + CLOSED_ID_RETENTION_SECS);
        assert!(!seen.contains(&id(1)));
        assert!(seen.contains(&id(2)));
    }

    #[test]
    fn past_the_cap_the_soonest_forgotten_goes_first() {
        let mut seen = SeenIds::with_cap(2);
        seen.insert(id(1), 300);
        seen.insert(id(2), 100);
        seen.insert(id(3), 200);
        assert_eq!(seen.len(), 2);
        assert!(!seen.contains(&id(2)));
        assert!(seen.contains(&id(1)) && seen.contains(&id(3)));
    }
}
