//! The party's bounded session queue: how many sessions it takes at once.
//!
//! Every admitted session holds a [`Ticket`] from its admission until it
//! ends (running, waiting for the CPU or for its peers). A session over the
//! bound is refused at once: the party sends a signed refusal with the code
//! [`PARTY_BUSY`] and the coordinator fails the session with it, instead of
//! the session waiting out its deadline behind the others.
//!
//! Foreground sessions (a caller waits for them) and background ones
//! (presign refills) are counted apart, so a refill never makes a
//! foreground session be refused:
//! - a foreground session is admitted while fewer than
//!   [`SessionLimits::max_sessions`] foreground sessions run;
//! - a background session is admitted only while fewer than
//!   [`SessionLimits::max_background_sessions`] background sessions run
//!   *and* fewer than `max_sessions` sessions of both lanes run: refills
//!   are refused first, and never take a foreground place.
//!
//! At most `max_sessions + max_background_sessions` sessions exist at
//! once. A second copy of a session that holds a place takes none and is
//! not refused as busy: it goes on to the admission record, which refuses
//! it as a replay (`session_replayed`), as before the queue.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use uuid::Uuid;

use crate::priority::Lane;

/// The stable code of a refusal at the bound (`mpc_api::error::ErrorCode::
/// PartyBusy`).
pub const PARTY_BUSY: &str = "party_busy";

/// Default of [`SessionLimits::max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 64;
/// Default of [`SessionLimits::max_background_sessions`].
pub const DEFAULT_MAX_BACKGROUND_SESSIONS: usize = 16;

/// How many sessions a party takes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Foreground sessions at once (keygen, signing, online signing,
    /// policy change); also the bound of both lanes together, above which a
    /// background session is refused. At least 1.
    pub max_sessions: usize,
    /// Background sessions (presign refills) at once. 0 refuses every
    /// refill.
    pub max_background_sessions: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_background_sessions: DEFAULT_MAX_BACKGROUND_SESSIONS,
        }
    }
}

/// What the queue decided about a new session.
#[derive(Debug)]
pub(crate) enum Admit {
    /// Taken; the ticket holds its place until dropped.
    Admitted(Ticket),
    /// Over the bound; the reason for the refusal (no secrets).
    Busy(String),
    /// This session already holds a place here (a second copy: no place
    /// is taken for it).
    Duplicate,
}

#[derive(Debug, Default)]
struct Counts {
    foreground: usize,
    background: usize,
    sessions: HashSet<Uuid>,
}

/// The counts of one party's sessions.
#[derive(Debug)]
pub(crate) struct SessionQueue {
    limits: SessionLimits,
    counts: Mutex<Counts>,
}

impl SessionQueue {
    pub(crate) fn new(limits: SessionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits: SessionLimits {
                max_sessions: limits.max_sessions.max(1),
                ..limits
            },
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits session `id` of `lane`, or says why not.
    pub(crate) fn try_admit(self: &Arc<Self>, id: Uuid, lane: Lane) -> Admit {
        let mut c = self.counts();
        if c.sessions.contains(&id) {
            return Admit::Duplicate;
        }
        let SessionLimits {
            max_sessions,
            max_background_sessions,
        } = self.limits;
        match lane {
            Lane::Foreground if c.foreground >= max_sessions => {
                return Admit::Busy(format!(
                    "this party already runs {} sessions, its bound (max_sessions {max_sessions})",
                    c.foreground
                ));
            }
            Lane::Background if c.background >= max_background_sessions => {
                return Admit::Busy(format!(
                    "this party already runs {} background sessions, its bound (max_background_sessions {max_background_sessions})",
                    c.background
                ));
            }
            Lane::Background if c.foreground + c.background >= max_sessions => {
                return Admit::Busy(format!(
                    "this party already runs {} sessions; background sessions only below max_sessions {max_sessions}",
                    c.foreground + c.background
                ));
            }
            Lane::Foreground => c.foreground += 1,
            Lane::Background => c.background += 1,
        }
        c.sessions.insert(id);
        drop(c);
        Admit::Admitted(Ticket {
            queue: self.clone(),
            id,
            lane,
        })
    }

    /// Sessions held now: (foreground, background).
    #[cfg(test)]
    pub(crate) fn load(&self) -> (usize, usize) {
        let c = self.counts();
        (c.foreground, c.background)
    }
}

/// A session's place in the queue, given back when dropped (the session
/// ended, or its task was aborted).
#[derive(Debug)]
pub(crate) struct Ticket {
    queue: Arc<SessionQueue>,
    id: Uuid,
    lane: Lane,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self.queue.counts();
        c.sessions.remove(&self.id);
        match self.lane {
            Lane::Foreground => c.foreground = c.foreground.saturating_sub(1),
            Lane::Background => c.background = c.background.saturating_sub(1),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn limits(max_sessions: usize, max_background_sessions: usize) -> Arc<SessionQueue> {
        SessionQueue::new(SessionLimits {
            max_sessions,
            max_background_sessions,
        })
    }

    fn admitted(a: Admit) -> Ticket {
        match a {
            Admit::Admitted(t) => t,
            other => panic!("not admitted: {other:?}"),
        }
    }

    fn busy(a: Admit) -> String {
        match a {
            Admit::Busy(reason) => reason,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn foreground_sessions_past_the_bound_are_refused_until_one_ends() {
        let q = limits(2, 1);
        let a = admitted(q.try_admit(Uuid::new_v4(), Lane::Foreground));
        let _b = admitted(q.try_admit(Uuid::new_v4(), Lane::Foreground));
        let reason = busy(q.try_admit(Uuid::new_v4(), Lane::Foreground));
        assert!(reason.contains("max_sessions 2"), "{reason}");
        assert_eq!(q.load(), (2, 0));
        drop(a);
        assert_eq!(q.load(), (1, 0));
        let _c = admitted(q.try_admit(Uuid::new_v4(), Lane::Foreground));
    }

    #[test]
    fn refills_never_take_a_foreground_place() {
        let q = limits(1, 4);
        // A refill runs; a sign still gets in.
        let refill = admitted(q.try_admit(Uuid::new_v4(), Lane::Background));
        let sign = admitted(q.try_admit(Uuid::new_v4(), Lane::Foreground));
        assert_eq!(q.load(), (1, 1));
        // Both lanes at max_sessions: the next refill is refused first.
        busy(q.try_admit(Uuid::new_v4(), Lane::Background));
        drop(refill);
        // One foreground session fills max_sessions: refills wait for it.
        busy(q.try_admit(Uuid::new_v4(), Lane::Background));
        drop(sign);
        let _r = admitted(q.try_admit(Uuid::new_v4(), Lane::Background));
    }

    #[test]
    fn background_sessions_have_their_own_smaller_bound() {
        let q = limits(8, 2);
        let _r1 = admitted(q.try_admit(Uuid::new_v4(), Lane::Background));
        let _r2 = admitted(q.try_admit(Uuid::new_v4(), Lane::Background));
        let reason = busy(q.try_admit(Uuid::new_v4(), Lane::Background));
        assert!(reason.contains("max_background_sessions 2"), "{reason}");
        assert_eq!(q.load(), (0, 2));
        // Zero background places refuses every refill.
        busy(limits(8, 0).try_admit(Uuid::new_v4(), Lane::Background));
    }

    #[test]
    fn a_session_delivered_twice_takes_one_place_and_is_not_refused_as_busy() {
        let q = limits(1, 1);
        let id = Uuid::new_v4();
        let t = admitted(q.try_admit(id, Lane::Foreground));
        assert!(matches!(
            q.try_admit(id, Lane::Foreground),
            Admit::Duplicate
        ));
        assert_eq!(q.load(), (1, 0));
        drop(t);
        // Ended: the id holds no place any more.
        assert_eq!(q.load(), (0, 0));
        let _again = admitted(q.try_admit(id, Lane::Foreground));
    }
}
