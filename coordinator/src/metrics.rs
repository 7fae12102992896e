//! The coordinator's Prometheus series. Labels are kinds, outcomes, routes
//! and status codes: never an account, session, party or key id.
//!
//! - `mpc_http_requests_total{route, status}`: every answered request, by
//!   route template (`/api/v1/mpc/sessions/{id}`, not the id).
//! - `mpc_sessions_created_total{kind}`.
//! - `mpc_sessions_ended_total{kind, outcome}` and
//!   `mpc_session_duration_seconds{kind, outcome}` (creation to end), for the
//!   sessions this instance ended.
//! - Gauges, read from the database at each scrape (so they are right
//!   whichever instance changed them): `mpc_sessions_open{kind}`,
//!   `mpc_presignatures_available`, `mpc_presign_sessions_running`.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::atomic::{AtomicU64, Ordering};

use mpc_api::rest::SessionKind;
use mpc_telemetry::metrics::{counter, gauge, histogram};

use crate::Coordinator;

/// Counts every answered request by route template and status.
pub(crate) async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let res = next.run(req).await;
    counter!("mpc_http_requests_total", "route" => route, "status" => res.status().as_u16().to_string())
        .increment(1);
    res
}

/// A session was created.
pub(crate) fn session_created(kind: &str) {
    counter!("mpc_sessions_created_total", "kind" => kind.to_owned()).increment(1);
}

impl Coordinator {
    /// Records the end of every session this instance ends, until the
    /// store's channel closes.
    pub(crate) async fn record_ended_sessions(self) {
        let mut ended = self.store().subscribe_ended();
        loop {
            let id = match ended.recv().await {
                Ok(id) => id,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            let Ok(Some(s)) = self.store().session(id).await else {
                continue;
            };
            let labels = [
                ("kind", s.kind.as_str().to_owned()),
                ("outcome", s.status.as_str().to_owned()),
            ];
            counter!("mpc_sessions_ended_total", &labels).increment(1);
            let secs = crate::store::now().saturating_sub(s.created_at);
            histogram!("mpc_session_duration_seconds", &labels).record(secs as f64);
        }
    }

    /// Refreshes the gauges read from the database (at a scrape, at most
    /// once a second whatever the scrape rate).
    pub(crate) async fn update_gauges(&self) {
        static LAST: AtomicU64 = AtomicU64::new(0);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let last = LAST.load(Ordering::Relaxed);
        if !self.is_ready()
            || now_ms.saturating_sub(last) < 1000
            || LAST
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Ok(g) = self.store().gauges().await {
            for kind in [SessionKind::Keygen, SessionKind::Sign, SessionKind::Presign] {
                let n = g
                    .open_sessions
                    .iter()
                    .find(|(k, _)| k == kind.as_str())
                    .map_or(0, |(_, n)| *n);
                gauge!("mpc_sessions_open", "kind" => kind.as_str()).set(n as f64);
            }
            gauge!("mpc_presignatures_available").set(g.presignatures_available as f64);
        }
        if let Ok(n) = self.store().running_presigns().await {
            gauge!("mpc_presign_sessions_running").set(n as f64);
        }
    }
}
