//! The session connection: which router, handshake state, failover.

use super::{BACKOFF_MAX_MS, BACKOFF_START_MS};

/// Where the session connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    /// No connection and none wanted (before the input, after the end).
    Idle,
    /// `Connect` was emitted; waiting for the router's challenge.
    Connecting,
    /// The signed join was sent; waiting for `joined`.
    Answered,
    /// Joined: frames flow.
    Joined,
    /// Waiting until this time (Unix ms) before the next attempt.
    Backoff(u64),
}

/// The routers and the connection to one of them.
#[derive(Debug)]
pub(super) struct Routers {
    urls: Vec<String>,
    index: usize,
    backoff: u64,
    pub link: Link,
    /// Whether the session was ever joined (later joins are rejoins).
    pub ever_joined: bool,
    /// Attempts that failed since the last successful join.
    pub failures: u32,
}

impl Routers {
    pub fn new(urls: Vec<String>, first: usize) -> Self {
        let index = first % urls.len().max(1);
        Self {
            urls,
            index,
            backoff: BACKOFF_START_MS,
            link: Link::Idle,
            ever_joined: false,
            failures: 0,
        }
    }

    /// Index and URL of the router in use.
    pub fn current(&self) -> (usize, String) {
        (
            self.index,
            self.urls.get(self.index).cloned().unwrap_or_default(),
        )
    }

    /// Starts an attempt on the current router.
    pub fn connect(&mut self) -> (usize, String) {
        self.link = Link::Connecting;
        self.current()
    }

    /// The connection is up and joined.
    pub fn joined(&mut self) {
        self.link = Link::Joined;
        self.backoff = BACKOFF_START_MS;
        self.failures = 0;
    }

    /// The connection failed or dropped: move to the next router. A drop of
    /// a joined connection is retried at once; a failed attempt after the
    /// backoff, which doubles up to [`BACKOFF_MAX_MS`]. Returns the router
    /// that failed and whether to connect now.
    pub fn lost(&mut self, now: u64) -> (usize, bool) {
        let failed = self.index;
        let was_joined = self.link == Link::Joined;
        self.index = (self.index + 1) % self.urls.len().max(1);
        if was_joined {
            self.backoff = BACKOFF_START_MS;
            self.link = Link::Idle;
            return (failed, true);
        }
        self.failures += 1;
        self.link = Link::Backoff(now.saturating_add(self.backoff));
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX_MS);
        (failed, false)
    }

    /// Whether the connection is in use (a socket is or may be open).
    pub fn open(&self) -> bool {
        matches!(self.link, Link::Connecting | Link::Answered | Link::Joined)
    }
}
