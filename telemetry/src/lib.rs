//! # mpc-telemetry
//!
//! One Prometheus recorder per process, installed on first use. Every
//! service (coordinator, router, party) records through the `metrics` facade
//! and serves [`render`] at `GET /metrics`; in `mpc dev`, where all roles
//! share a process, each `/metrics` shows every role's series.
//!
//! Labels never carry a secret or the id of one (no account, session, party
//! or key ids): only kinds, outcomes and roles.
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub use metrics;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder if no recorder is installed yet.
/// Returns `false` when another recorder was installed first (then this
/// crate's [`render`] has nothing to show).
pub fn init() -> bool {
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .is_some()
}

/// The current metrics in the Prometheus text format.
pub fn render() -> String {
    init();
    match HANDLE.get() {
        Some(Some(h)) => h.render(),
        _ => String::new(),
    }
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A `GET /metrics` answer: the `Content-Type` header and [`render`]'s
/// text, in the shape an axum handler can return as it is.
pub fn scrape() -> ([(&'static str, &'static str); 1], String) {
    ([("content-type", CONTENT_TYPE)], render())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_counter_shows_up_in_the_rendering() {
        assert!(super::init());
        metrics::counter!("mpc_telemetry_selftest_total", "kind" => "test").increment(3);
        let text = super::render();
        assert!(
            text.contains("mpc_telemetry_selftest_total{kind=\"test\"} 3"),
            "{text}"
        );
    }
}
