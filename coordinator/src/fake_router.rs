//! A [`RouterApi`] that records calls instead of making them, for tests of
//! `app()` without a router: sessions register, invitations are kept, and
//! the router can be made unreachable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use party_core::identity::PartyPublicKey;
use party_core::wire::Invitation;
use uuid::Uuid;

use crate::router_client::{RouterApi, RouterError, RouterFuture, Slot};

/// A router that answers from memory.
#[derive(Debug, Default)]
pub struct FakeRouter {
    down: AtomicBool,
    calls: Mutex<Calls>,
}

/// What a [`FakeRouter`] was asked.
#[derive(Debug, Default, Clone)]
pub struct Calls {
    /// Registered sessions: (session id, expires at, slot count).
    pub registered: Vec<(Uuid, u64, usize)>,
    /// Invitations: (invited identity, invitation).
    pub invited: Vec<(PartyPublicKey, Invitation)>,
    /// Closed sessions.
    pub closed: Vec<Uuid>,
}

impl FakeRouter {
    /// An answering router.
    pub fn new() -> Self {
        Self::default()
    }
    /// Makes every later register/invite fail as unreachable (`true`) or
    /// succeed again (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }
    /// A copy of the calls so far.
    pub fn calls(&self) -> Calls {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
    fn answer(&self) -> Result<(), RouterError> {
        if self.down.load(Ordering::Relaxed) {
            Err(RouterError::Unreachable("fake router is down".into()))
        } else {
            Ok(())
        }
    }
}

impl RouterApi for FakeRouter {
    fn register_session(
        &self,
        session_id: Uuid,
        expires_at: u64,
        slots: Vec<Slot>,
    ) -> RouterFuture<'_> {
        let r = self.answer();
        if r.is_ok() {
            if let Ok(mut c) = self.calls.lock() {
                c.registered.push((session_id, expires_at, slots.len()));
            }
        }
        Box::pin(async move { r })
    }

    fn invite<'a>(
        &'a self,
        identity: &'a PartyPublicKey,
        invitation: &'a Invitation,
    ) -> RouterFuture<'a> {
        let r = self.answer();
        if r.is_ok() {
            if let Ok(mut c) = self.calls.lock() {
                c.invited.push((*identity, invitation.clone()));
            }
        }
        Box::pin(async move { r })
    }

    fn close_session(&self, session_id: Uuid) {
        if let Ok(mut c) = self.calls.lock() {
            c.closed.push(session_id);
        }
    }
}
