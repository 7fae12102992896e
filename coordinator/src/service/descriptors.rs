//! Parsed signed descriptors, cached by session id.
//!
//! A party report is verified against the identity its descriptor lists at
//! the report's position, and a keygen's completion needs the descriptor's
//! participants. The signed descriptor never changes once stored (a pending
//! keygen's is written once, when its devices have joined), so a parsed copy
//! stays valid for the session's life, on every coordinator instance.
//! Sessions this instance creates or launches are cached without parsing
//! (the creator has the descriptor in hand); another instance's session is
//! parsed once, on its first report here. Entries leave when the session
//! ends through this instance, and the oldest leave first past the bound,
//! so memory stays bounded whatever happens to sessions elsewhere.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use party_core::descriptor::SignedDescriptor;
use uuid::Uuid;

/// Descriptors kept at most (a 16-party descriptor is a few KiB).
pub const DESCRIPTOR_CACHE_SIZE: usize = 4096;

/// A bounded map from session id to its parsed signed descriptor, oldest
/// evicted first.
#[derive(Debug)]
pub struct DescriptorCache {
    inner: Mutex<Entries>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<Uuid, Arc<SignedDescriptor>>,
    order: VecDeque<Uuid>,
}

impl Default for DescriptorCache {
    fn default() -> Self {
        Self::new(DESCRIPTOR_CACHE_SIZE)
    }
}

impl DescriptorCache {
    /// A cache of at most `capacity` descriptors (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Entries::default()),
            capacity: capacity.max(1),
        }
    }

    /// The cached descriptor of a session.
    pub fn get(&self, id: Uuid) -> Option<Arc<SignedDescriptor>> {
        self.inner.lock().ok()?.map.get(&id).cloned()
    }

    /// Caches a session's descriptor, evicting the oldest past the bound.
    pub fn insert(&self, id: Uuid, descriptor: Arc<SignedDescriptor>) {
        let Ok(mut e) = self.inner.lock() else {
            return;
        };
        if e.map.insert(id, descriptor).is_none() {
            e.order.push_back(id);
        }
        while e.map.len() > self.capacity {
            let Some(old) = e.order.pop_front() else {
                break;
            };
            e.map.remove(&old);
        }
    }

    /// Forgets a session.
    pub fn remove(&self, id: Uuid) {
        if let Ok(mut e) = self.inner.lock() {
            if e.map.remove(&id).is_some() {
                e.order.retain(|x| *x != id);
            }
        }
    }

    /// Descriptors cached.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|e| e.map.len()).unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use party_core::descriptor::{CurveName, SessionDescriptor, SessionKind, DESCRIPTOR_VERSION};

    fn signed(id: Uuid) -> Arc<SignedDescriptor> {
        Arc::new(SignedDescriptor {
            descriptor: SessionDescriptor {
                version: DESCRIPTOR_VERSION,
                session_id: id,
                kind: SessionKind::Presign {
                    account_id: "a".into(),
                },
                curve: CurveName::Secp256k1,
                threshold: 2,
                parties: 2,
                participants: Vec::new(),
                expires_at: 0,
                authorization: None,
            },
            signature: [0; 64],
        })
    }

    #[test]
    fn the_oldest_entries_leave_past_the_bound() {
        let cache = DescriptorCache::new(2);
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            cache.insert(*id, signed(*id));
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.get(ids[0]).is_none());
        assert!(cache.get(ids[2]).is_some());
        cache.remove(ids[2]);
        assert!(cache.get(ids[2]).is_none());
        cache.insert(ids[0], signed(ids[0]));
        assert_eq!(cache.len(), 2);
    }
}
