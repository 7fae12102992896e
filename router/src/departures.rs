//! Dead parties noticed early (issue #15): when a joined party's session
//! connection ends without a normal WebSocket close, the instance that held
//! it waits [`RouterConfig::disconnect_grace`](crate::RouterConfig) and, if
//! no connection holds the position again (on any instance) while the
//! session is still open, records a [`Disconnect`] in the feed that
//! coordinators long-poll (`GET /internal/v1/disconnects`).
//!
//! Why a long poll from the coordinator rather than a call from the router:
//! the coordinator already authenticates to the router's internal listener
//! with the coordinators-only credential, so nothing new has to be trusted
//! or configured. A router→coordinator call would need a router credential
//! at the coordinator (today a router holds no secret the coordinator
//! checks) and a route to every coordinator instance. The router stays
//! trusted for availability only: a notice is its observation, and the
//! coordinator fails the session saying so.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mpc_api::router::Disconnect;
use uuid::Uuid;

use crate::{stopped, Router};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Watches a position whose connection `conn_id` just ended abruptly (in
/// the background).
pub(crate) fn watch(router: Router, session_id: Uuid, position: u16, conn_id: u64) {
    let left_at_ms = now_ms();
    tokio::spawn(async move {
        let grace = router.config().disconnect_grace;
        let mut stop = router.shutdown_signal();
        tokio::select! {
            _ = tokio::time::sleep(grace) => {}
            // A router shutting down observes nothing more.
            _ = stopped(&mut stop) => return,
        }
        match router
            .backend()
            .came_back(session_id, position, conn_id)
            .await
        {
            Ok(Some(false)) => {}
            Ok(Some(true)) => {
                tracing::debug!(%session_id, position, "party came back within the grace period");
                return;
            }
            // Closed, past its deadline or unknown: nothing to report.
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%session_id, position, error = %e, "disconnect not checked: shared state unavailable");
                return;
            }
        }
        let notice = Disconnect {
            session_id,
            position,
            left_at_ms,
            grace_ms: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
        };
        match router.backend().record_disconnect(notice).await {
            Ok(()) => {
                crate::metrics::disconnect_recorded();
                tracing::warn!(%session_id, position, grace = ?grace, "party disconnected and did not come back");
            }
            Err(e) => {
                tracing::warn!(%session_id, position, error = %e, "disconnect not recorded: shared state unavailable");
            }
        }
    });
}

/// Longest wait of one poll.
pub(crate) fn poll_wait(wait_ms: u64) -> Duration {
    Duration::from_millis(wait_ms.min(mpc_api::router::MAX_DISCONNECTS_WAIT_MS))
}
