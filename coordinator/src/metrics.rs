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
use mpc_db::sqlx::{self, Row};
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
            let labels = [("kind", s.kind.clone()), ("outcome", s.status.clone())];
            counter!("mpc_sessions_ended_total", &labels).increment(1);
            let secs = crate::store::now().saturating_sub(s.created_at);
            histogram!("mpc_session_duration_seconds", &labels).record(secs as f64);
        }
    }

    /// Refreshes the gauges read from the database (at each scrape).
    pub(crate) async fn update_gauges(&self) {
        if !self.is_ready() {
            return;
        }
        let pool = self.store().pool();
        let open = sqlx::query(
            "SELECT kind, COUNT(*) FROM sessions WHERE status IN ('waiting','in_progress') GROUP BY kind",
        )
        .fetch_all(pool)
        .await;
        if let Ok(rows) = open {
            for kind in ["keygen", "sign", "presign"] {
                let n = rows
                    .iter()
                    .find(|r| r.try_get::<String, _>(0).is_ok_and(|k| k == kind))
                    .and_then(|r| r.try_get::<i64, _>(1).ok())
                    .unwrap_or(0);
                gauge!("mpc_sessions_open", "kind" => kind).set(n as f64);
            }
        }
        let available =
            sqlx::query("SELECT COUNT(*) FROM presignatures WHERE status = 'available'")
                .fetch_one(pool)
                .await
                .and_then(|r| r.try_get::<i64, _>(0));
        if let Ok(n) = available {
            gauge!("mpc_presignatures_available").set(n as f64);
        }
        if let Ok(n) = self.store().running_presigns().await {
            gauge!("mpc_presign_sessions_running").set(n as f64);
        }
    }
}
