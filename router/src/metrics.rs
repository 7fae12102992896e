//! The router's Prometheus series, recorded through the `metrics` facade
//! (`mpc_telemetry`'s recorder) and served at `GET /metrics`.
//!
//! Labels are kinds and reasons only: never a session id, a party id, a key
//! or a token.
//!
//! | Series | Type | Labels |
//! |---|---|---|
//! | `mpc_router_connections` | gauge | `kind`: `session`, `control` |
//! | `mpc_router_frames_relayed_total` | counter | |
//! | `mpc_router_frame_bytes_relayed_total` | counter | |
//! | `mpc_router_frames_dropped_total` | counter | `reason` |
//! | `mpc_router_sessions_registered_total` | counter | |
//! | `mpc_router_sessions_closed_total` | counter | |
//! | `mpc_router_sessions_expired_total` | counter | |
//! | `mpc_router_join_refusals_total` | counter | `reason` (the refusal's code) |
//! | `mpc_router_registrations_refused_total` | counter | `reason`: `conflict`, `session_closed` |
//! | `mpc_router_connections_refused_total` | counter | `reason`: `cap`, `pre_auth_limit` |
//! | `mpc_router_disconnects_total` | counter | |

use axum::response::IntoResponse;
use mpc_telemetry::metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

const CONNECTIONS: &str = "mpc_router_connections";
const FRAMES_RELAYED: &str = "mpc_router_frames_relayed_total";
const FRAME_BYTES_RELAYED: &str = "mpc_router_frame_bytes_relayed_total";
const FRAMES_DROPPED: &str = "mpc_router_frames_dropped_total";
const SESSIONS_REGISTERED: &str = "mpc_router_sessions_registered_total";
const SESSIONS_CLOSED: &str = "mpc_router_sessions_closed_total";
const SESSIONS_EXPIRED: &str = "mpc_router_sessions_expired_total";
const JOIN_REFUSALS: &str = "mpc_router_join_refusals_total";
const REGISTRATIONS_REFUSED: &str = "mpc_router_registrations_refused_total";
const CONNECTIONS_REFUSED: &str = "mpc_router_connections_refused_total";
const DISCONNECTS: &str = "mpc_router_disconnects_total";

/// Installs the process-wide recorder (so nothing recorded before the first
/// scrape is lost) and describes the series.
pub(crate) fn init() {
    mpc_telemetry::init();
    describe_gauge!(CONNECTIONS, "Open WebSocket connections, by kind");
    describe_counter!(
        FRAMES_RELAYED,
        "Frames appended to a session log and relayed"
    );
    describe_counter!(
        FRAME_BYTES_RELAYED,
        Unit::Bytes,
        "Bytes of the frames relayed"
    );
    describe_counter!(FRAMES_DROPPED, "Frames dropped, by reason");
    describe_counter!(SESSIONS_REGISTERED, "Sessions registered");
    describe_counter!(SESSIONS_CLOSED, "Sessions closed through the internal API");
    describe_counter!(
        SESSIONS_EXPIRED,
        "Sessions this instance ended at their deadline"
    );
    describe_counter!(JOIN_REFUSALS, "Session joins refused, by reason");
    describe_counter!(
        DISCONNECTS,
        "Parties recorded as disconnected (gone past the grace period)"
    );
    describe_counter!(
        REGISTRATIONS_REFUSED,
        "Session registrations refused: the id is open with other slots, or closed"
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections refused or closed before authentication: over the connection cap, or over the pre-authentication byte limit"
    );
}

/// `GET /metrics`.
pub(crate) async fn serve() -> impl IntoResponse {
    mpc_telemetry::scrape()
}

/// Kind of a WebSocket connection.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ConnKind {
    Session,
    Control,
}

impl ConnKind {
    fn label(self) -> &'static str {
        match self {
            ConnKind::Session => "session",
            ConnKind::Control => "control",
        }
    }
}

/// Counts an open connection in `mpc_router_connections` while it lives.
#[derive(Debug)]
pub(crate) struct OpenConnection(ConnKind);

impl OpenConnection {
    pub(crate) fn new(kind: ConnKind) -> Self {
        gauge!(CONNECTIONS, "kind" => kind.label()).increment(1.0);
        Self(kind)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        gauge!(CONNECTIONS, "kind" => self.0.label()).decrement(1.0);
    }
}

pub(crate) fn frame_relayed(bytes: usize) {
    counter!(FRAMES_RELAYED).increment(1);
    counter!(FRAME_BYTES_RELAYED).increment(u64::try_from(bytes).unwrap_or(u64::MAX));
}

pub(crate) fn frame_dropped(reason: &'static str) {
    counter!(FRAMES_DROPPED, "reason" => reason).increment(1);
}

pub(crate) fn session_registered() {
    counter!(SESSIONS_REGISTERED).increment(1);
}

pub(crate) fn session_closed() {
    counter!(SESSIONS_CLOSED).increment(1);
}

pub(crate) fn sessions_expired(n: usize) {
    if n > 0 {
        counter!(SESSIONS_EXPIRED).increment(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

pub(crate) fn join_refused(reason: &'static str) {
    counter!(JOIN_REFUSALS, "reason" => reason).increment(1);
}

pub(crate) fn registration_refused(reason: &'static str) {
    counter!(REGISTRATIONS_REFUSED, "reason" => reason).increment(1);
}

pub(crate) fn connection_refused(reason: &'static str) {
    counter!(CONNECTIONS_REFUSED, "reason" => reason).increment(1);
}

pub(crate) fn disconnect_recorded() {
    counter!(DISCONNECTS).increment(1);
}
