//! Router settings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Default largest frame a party may send: 4 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;
/// Default largest amount of frame bytes buffered per session: 64 MiB.
pub const DEFAULT_MAX_SESSION_BYTES: usize = 64 * 1024 * 1024;
/// Default time a client has to answer the challenge.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on open connections to the public listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default time a party whose session connection dropped has to come back
/// before the router reports it disconnected: 3 s.
pub const DEFAULT_DISCONNECT_GRACE: Duration = Duration::from_secs(3);

/// Router settings. `Debug` does not print the internal token.
#[derive(Clone)]
pub struct RouterConfig {
    /// The internal API's credential, which every request to the internal
    /// listener carries in `X-Internal-Token`. Only coordinators hold it: it
    /// is not the token parties register with. An empty token refuses every
    /// internal request.
    pub internal_token: String,
    /// Most connections open at once on the public listener (WebSocket and
    /// plain HTTP); past it a connection is answered 503 and closed. Keep
    /// the process's open-file limit above it.
    pub max_connections: usize,
    /// Largest binary frame accepted from a party; larger frames are dropped.
    pub max_frame_bytes: usize,
    /// Largest amount of frame bytes buffered per session; frames past it are
    /// dropped.
    pub max_session_bytes: usize,
    /// Time a client has to answer the challenge. A public connection that
    /// has not authenticated is also closed when a read waits twice as long.
    pub handshake_timeout: Duration,
    /// Redis URL: session state shared by every router instance using it.
    /// `None` keeps state in this process (one instance, `mpc dev`).
    pub redis_url: Option<String>,
    /// How long a joined party's session connection that closed without a
    /// normal WebSocket close (code 1000) may stay away before the router
    /// records it as disconnected for the coordinators
    /// (`GET /internal/v1/disconnects`). A reconnect within it, to any
    /// instance, records nothing.
    pub disconnect_grace: Duration,
    /// Serve both listeners over TLS with this configuration (`--tls-cert`,
    /// `--tls-key`); plaintext when `None`.
    pub tls: Option<Arc<mpc_tls::ServerConfig>>,
    /// PEM CA bundle that a `rediss://` Redis certificate must chain to
    /// (`--tls-ca`; only these certificates are trusted). `None`: the
    /// Mozilla roots.
    pub redis_ca_pem: Option<Vec<u8>>,
}

impl RouterConfig {
    /// Default limits with the given internal API token.
    pub fn new(internal_token: impl Into<String>) -> Self {
        Self {
            internal_token: internal_token.into(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_session_bytes: DEFAULT_MAX_SESSION_BYTES,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            redis_url: None,
            disconnect_grace: DEFAULT_DISCONNECT_GRACE,
            tls: None,
            redis_ca_pem: None,
        }
    }
}

impl fmt::Debug for RouterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterConfig")
            .field("internal_token", &"<redacted>")
            .field("max_connections", &self.max_connections)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("max_session_bytes", &self.max_session_bytes)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("redis", &self.redis_url.is_some())
            .field("disconnect_grace", &self.disconnect_grace)
            .field("tls", &self.tls.is_some())
            .field("redis_ca", &self.redis_ca_pem.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_token() {
        let c = RouterConfig::new("very-secret-token");
        let s = format!("{c:?}");
        assert!(!s.contains("very-secret-token"));
        assert!(s.contains("<redacted>"));
    }
}
