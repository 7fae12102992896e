//! The disconnect feed of one in-memory router: the latest notices in a
//! bounded queue, each with a sequence number. A cursor is
//! `"{epoch}-{seq}"`, the epoch a random id of this process, so a cursor
//! from before a restart (or from another instance) is recognised and
//! answered with every notice still held rather than with nothing.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mpc_api::router::{Disconnect, Disconnects};
use rand_core::{OsRng, RngCore as _};
use tokio::sync::Notify;

/// Notices kept for coordinators that poll late; older ones are dropped.
const KEPT: usize = 1024;

#[derive(Debug)]
pub(super) struct Feed {
    epoch: String,
    log: Mutex<Log>,
    added: Notify,
}

#[derive(Debug, Default)]
struct Log {
    /// Sequence number of the last notice added (0: none yet).
    last: u64,
    entries: VecDeque<(u64, Disconnect)>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            epoch: format!("{:016x}", OsRng.next_u64()),
            log: Mutex::new(Log::default()),
            added: Notify::new(),
        }
    }
}

impl Feed {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn push(&self, notice: Disconnect) {
        let mut log = self.log();
        log.last += 1;
        let seq = log.last;
        log.entries.push_back((seq, notice));
        while log.entries.len() > KEPT {
            log.entries.pop_front();
        }
        drop(log);
        self.added.notify_waiters();
    }

    /// The sequence number after which to answer for `after`.
    fn start(&self, after: Option<&str>) -> u64 {
        match after {
            None => self.log().last,
            Some(cursor) => match cursor.split_once('-') {
                Some((epoch, seq)) if epoch == self.epoch => seq.parse().unwrap_or(0),
                _ => 0,
            },
        }
    }

    pub(super) async fn read(&self, after: Option<String>, wait: Duration) -> Disconnects {
        let from = self.start(after.as_deref());
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let added = self.added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            let (last, found): (u64, Vec<Disconnect>) = {
                let log = self.log();
                let found = log
                    .entries
                    .iter()
                    .filter(|(seq, _)| *seq > from)
                    .map(|(_, n)| n.clone())
                    .collect();
                (log.last, found)
            };
            if !found.is_empty() || tokio::time::Instant::now() >= deadline {
                return Disconnects {
                    cursor: format!("{}-{}", self.epoch, last.max(from)),
                    disconnects: found,
                };
            }
            tokio::select! {
                _ = &mut added => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use uuid::Uuid;

    fn notice(position: u16) -> Disconnect {
        Disconnect {
            session_id: Uuid::nil(),
            position,
            left_at_ms: 1,
            grace_ms: 2,
        }
    }

    #[tokio::test]
    async fn a_cursor_returns_only_later_notices_and_a_foreign_one_everything_held() {
        let feed = Feed::default();
        feed.push(notice(0));
        let now = feed.read(None, Duration::ZERO).await;
        assert!(now.disconnects.is_empty(), "no cursor: from now on");
        feed.push(notice(1));
        let next = feed.read(Some(now.cursor.clone()), Duration::ZERO).await;
        assert_eq!(next.disconnects, vec![notice(1)]);
        let none = feed.read(Some(next.cursor), Duration::ZERO).await;
        assert!(none.disconnects.is_empty());
        let foreign = feed
            .read(Some("another-5".to_string()), Duration::ZERO)
            .await;
        assert_eq!(foreign.disconnects, vec![notice(0), notice(1)]);
    }

    #[tokio::test]
    async fn a_waiting_read_wakes_on_a_new_notice() {
        let feed = std::sync::Arc::new(Feed::default());
        let start = feed.read(None, Duration::ZERO).await.cursor;
        let f = feed.clone();
        let reader =
            tokio::spawn(async move { f.read(Some(start), Duration::from_secs(30)).await });
        // The reader is waiting (or about to): the notice wakes it or is
        // found on its first look.
        tokio::task::yield_now().await;
        feed.push(notice(3));
        let got = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.disconnects, vec![notice(3)]);
    }
}
