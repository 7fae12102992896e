//! Dead parties noticed early (issue #15): every coordinator instance
//! long-polls the router's disconnect feed (`GET /internal/v1/disconnects`,
//! authenticated with the coordinators' own router credential, so the
//! router needs no credential towards the coordinator) and fails a session
//! whose party the router saw leave and not come back within its grace
//! period, instead of waiting out the deadline.
//!
//! A router is trusted for availability only: the failure says it is the
//! router's observation (code `party_disconnected`, the party and position
//! in the reason) and blames nobody (`blamed_party` stays empty: a router
//! that drops a party's traffic looks the same). A party that has already
//! reported its result is not failed for leaving afterwards, and every
//! instance may apply the same notice: the conditional update records one
//! failure.

use std::time::Duration;

use mpc_api::error::ErrorCode;
use mpc_api::router::Disconnect;
use tokio::sync::watch;

use super::ServiceError;
use crate::Coordinator;

/// One long poll's wait.
const POLL_WAIT: Duration = Duration::from_secs(20);
/// Most time between two attempts when the router does not answer.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Coordinator {
    /// Follows the router's disconnect feed until `stop`. Notices recorded
    /// while no coordinator polls are not seen (the first poll starts from
    /// now): those sessions end at their deadline, as before.
    pub(crate) async fn watch_disconnects(self, mut stop: watch::Receiver<bool>) {
        let mut cursor: Option<String> = None;
        let mut backoff = Duration::from_millis(200);
        loop {
            if !self.is_ready() {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    _ = stop.changed() => return,
                }
            }
            let polled = tokio::select! {
                r = self.router().disconnects(cursor.as_deref(), POLL_WAIT) => r,
                _ = stop.changed() => return,
            };
            match polled {
                Ok(batch) => {
                    backoff = Duration::from_millis(200);
                    for notice in &batch.disconnects {
                        if let Err(e) = self.on_disconnect(notice).await {
                            tracing::warn!(session_id = %notice.session_id, position = notice.position, error = %e, "disconnect notice not applied");
                        }
                    }
                    cursor = Some(batch.cursor);
                }
                Err(e) => {
                    tracing::debug!(error = %e, retry_in = ?backoff, "router disconnect feed unavailable");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Fails the notice's session (once) unless it has ended or the party
    /// already reported its result. Returns whether this call failed it.
    pub async fn on_disconnect(&self, notice: &Disconnect) -> Result<bool, ServiceError> {
        let id = notice.session_id;
        let Some(session) = self.store().session(id).await? else {
            return Ok(false);
        };
        if session.status.is_terminal() {
            return Ok(false);
        }
        let participants = self.store().participants(id).await?;
        let Some(party) = participants.iter().find(|p| p.position == notice.position) else {
            return Ok(false);
        };
        if party.result.is_some() {
            return Ok(false);
        }
        let reason = format!(
            "the router observed {} (position {}) disconnect and not return within {} ms",
            party.party_id, notice.position, notice.grace_ms
        );
        let failed = self
            .store()
            .fail_refused(id, &reason, ErrorCode::PartyDisconnected.as_str())
            .await?;
        if failed {
            tracing::warn!(session_id = %id, party_id = %party.party_id, position = notice.position, "session failed: party disconnected (router's observation)");
            self.close_session(id);
        }
        Ok(failed)
    }
}
