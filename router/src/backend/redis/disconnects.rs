//! Disconnects in Redis: which connection holds each position of a session
//! (`mpc:s:{sid}:live`, a hash position → `"{instance}:{conn_id}"`, written
//! on attach), so the instance that saw a connection end can tell after the
//! grace period whether the party came back to any instance; and the feed
//! coordinators read, one stream (`mpc:disconnects`, capped) shared by every
//! instance, so a coordinator may poll any of them. `mpc:d:all` wakes
//! waiting polls.

use std::time::Duration;

use mpc_api::router::{Disconnect, Disconnects};
use redis::streams::StreamRangeReply;
use uuid::Uuid;

use super::{session_key, ttl, Inner};
use crate::backend::BackendError;

/// The feed stream.
const FEED: &str = "mpc:disconnects";
/// About this many notices are kept.
const FEED_LEN: usize = 1000;
/// Notices answered per poll.
const FEED_BATCH: usize = 100;
/// A waiting poll looks at the stream at least this often (a missed
/// pub/sub wake-up only delays a notice).
const FEED_FALLBACK: Duration = Duration::from_millis(250);

pub(super) fn live_key(session_id: Uuid) -> String {
    format!("{}:live", session_key(session_id))
}

/// `"{instance}:{conn_id}"`, the owner value of a live connection.
pub(super) fn owner(instance: &str, conn_id: u64) -> String {
    format!("{instance}:{conn_id}")
}

impl Inner {
    /// Records that `conn_id` of this instance holds `position`.
    pub(super) async fn mark_live(
        &self,
        session_id: Uuid,
        position: u16,
        conn_id: u64,
        expires_at: u64,
    ) -> Result<(), BackendError> {
        let mut con = self.con()?;
        let key = live_key(session_id);
        let _: () = redis::pipe()
            .hset(&key, position, owner(&self.instance, conn_id))
            .ignore()
            .expire(&key, ttl(expires_at))
            .ignore()
            .query_async(&mut con)
            .await?;
        Ok(())
    }

    pub(super) async fn came_back(
        &self,
        session_id: Uuid,
        position: u16,
        conn_id: u64,
    ) -> Result<Option<bool>, BackendError> {
        let mut con = self.con()?;
        let (meta, holder): (Option<String>, Option<String>) = redis::pipe()
            .get(session_key(session_id))
            .hget(live_key(session_id), position)
            .query_async(&mut con)
            .await?;
        let open = meta
            .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
            .and_then(|m| m.get("expires_at").and_then(serde_json::Value::as_u64))
            .is_some_and(|expires_at| crate::now_unix() < expires_at);
        if !open {
            return Ok(None);
        }
        let mine = owner(&self.instance, conn_id);
        Ok(Some(holder.is_some_and(|h| h != mine)))
    }

    pub(super) async fn record_disconnect(&self, notice: &Disconnect) -> Result<(), BackendError> {
        let mut con = self.con()?;
        let _: () = redis::pipe()
            .cmd("XADD")
            .arg(FEED)
            .arg("MAXLEN")
            .arg("~")
            .arg(FEED_LEN)
            .arg("*")
            .arg("s")
            .arg(notice.session_id.to_string())
            .arg("p")
            .arg(notice.position)
            .arg("l")
            .arg(notice.left_at_ms)
            .arg("g")
            .arg(notice.grace_ms)
            .ignore()
            .publish("mpc:d:all", "")
            .ignore()
            .query_async(&mut con)
            .await?;
        Ok(())
    }

    /// The id of the newest notice, `0-0` if none.
    async fn feed_end(&self) -> Result<String, BackendError> {
        let mut con = self.con()?;
        let reply: StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(FEED)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut con)
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_string(), |e| e.id))
    }

    async fn feed_after(&self, after: &str) -> Result<(String, Vec<Disconnect>), BackendError> {
        let mut con = self.con()?;
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(FEED)
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(FEED_BATCH)
            .query_async(&mut con)
            .await?;
        let mut cursor = after.to_string();
        let mut found = Vec::new();
        for e in reply.ids {
            let notice = (|| {
                let sid: String = e.get("s")?;
                Some(Disconnect {
                    session_id: Uuid::parse_str(&sid).ok()?,
                    position: e.get("p")?,
                    left_at_ms: e.get("l")?,
                    grace_ms: e.get("g")?,
                })
            })();
            found.extend(notice);
            cursor = e.id;
        }
        Ok((cursor, found))
    }

    pub(super) async fn disconnects(
        &self,
        after: Option<String>,
        wait: Duration,
    ) -> Result<Disconnects, BackendError> {
        // A cursor is a stream id; anything else reads from the start.
        let after = match after {
            Some(c) if valid_stream_id(&c) => c,
            Some(_) => "0-0".to_string(),
            None => self.feed_end().await?,
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let added = self.disconnect_added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            let (cursor, found) = self.feed_after(&after).await?;
            if !found.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(Disconnects {
                    cursor,
                    disconnects: found,
                });
            }
            tokio::select! {
                _ = &mut added => {}
                _ = tokio::time::sleep(FEED_FALLBACK) => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

/// `ms-seq`, both decimal.
fn valid_stream_id(s: &str) -> bool {
    s.split_once('-').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    })
}
