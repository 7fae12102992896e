//! Multiexp tables per party group, kept in memory (see `party_core::accel`).
//!
//! Built off the async threads the first time a group signs or presigns
//! (about 0.1 s with GMP for three parties), then attached to every share of
//! that group for the life of the process. Concurrent sessions of one group
//! wait for a single build. Tables are public data and never stored.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use party_core::accel::MultiexpTables;
use party_core::cggmp24::key_share::DirtyAuxInfo;
use party_core::KeyShare;
use tokio::sync::OnceCell;

use crate::priority::{scheduler, Lane};

/// Groups whose tables are kept (about 1 MB each for three parties).
const CAPACITY: usize = 64;

type Slot = Arc<OnceCell<Option<Arc<MultiexpTables>>>>;

#[derive(Debug, Default)]
pub(crate) struct TableCache {
    inner: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    by_group: HashMap<[u8; 32], Slot>,
    order: VecDeque<[u8; 32]>,
}

impl TableCache {
    fn slot(&self, key: [u8; 32]) -> Slot {
        let mut s = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = s.by_group.get(&key) {
            return slot.clone();
        }
        if s.order.len() >= CAPACITY {
            if let Some(old) = s.order.pop_front() {
                s.by_group.remove(&old);
            }
        }
        let slot = Slot::default();
        s.by_group.insert(key, slot.clone());
        s.order.push_back(key);
        slot
    }

    /// `share` with its group's tables attached, building them on first use
    /// in the lane of the session that needs them (a presign's build yields
    /// to foreground work; a foreground session that finds a background
    /// build under way waits for it). Tables are an optimization: when they
    /// cannot be had, the share is returned as it is and signing runs
    /// without them.
    pub(crate) async fn accelerate(&self, share: KeyShare, lane: Lane) -> KeyShare {
        let key = MultiexpTables::key_of(&share.aux);
        let slot = self.slot(key);
        // The aux info is copied only for the one build, not on every signing.
        let tables = slot
            .get_or_init(|| build(share.aux.clone(), lane))
            .await
            .clone();
        match tables {
            Some(t) => match t.attach(&share) {
                Ok(fast) => fast,
                Err(e) => {
                    tracing::warn!(error = %e, "multiexp tables not attached; signing without");
                    share
                }
            },
            None => share,
        }
    }
}

/// Builds a group's tables off the async threads, in `lane`; `None`
/// (logged) when they cannot be had.
async fn build(aux: DirtyAuxInfo<party_core::Level>, lane: Lane) -> Option<Arc<MultiexpTables>> {
    match scheduler()
        .step(lane, move || MultiexpTables::build(&aux))
        .await
    {
        Ok(Ok(t)) => Some(Arc::new(t)),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "multiexp tables not built; signing without");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "multiexp table task failed");
            None
        }
    }
}
