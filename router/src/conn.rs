//! The router's handle on one live WebSocket connection.
//!
//! Each connection task owns its socket and drains an unbounded queue of
//! [`Outbound`] messages; the state (sessions, control registry) holds the
//! only sender, a [`Conn`]. Dropping the `Conn` closes the connection once the
//! messages queued before it are written, so "send `SessionClosed`, then drop"
//! delivers the notice and then closes, and replacing a connection closes the
//! old one.
//!
//! The queue is unbounded on purpose: everything queued on a session
//! connection is a frame already held (shared, as [`Bytes`]) in that session's
//! bounded buffer, so a slow reader costs no extra memory beyond the buffer.

use axum::body::Bytes;
use party_core::wire::RouterToClient;
use tokio::sync::mpsc;

/// A message for a connection to write.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A JSON text message.
    Text(String),
    /// A binary frame.
    Binary(Bytes),
}

/// Sending half of a connection's queue, with the connection's unique id (so a
/// connection that was replaced cannot unregister its successor).
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) id: u64,
    tx: mpsc::UnboundedSender<Outbound>,
}

impl Conn {
    /// A connection handle and the receiver its task drains.
    pub(crate) fn new(id: u64) -> (Conn, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Conn { id, tx }, rx)
    }

    /// Queues a frame; false if the connection is gone.
    pub(crate) fn send_frame(&self, frame: Bytes) -> bool {
        self.tx.send(Outbound::Binary(frame)).is_ok()
    }

    /// Queues a JSON message; false if the connection is gone.
    pub(crate) fn send_json(&self, msg: &RouterToClient) -> bool {
        match serde_json::to_string(msg) {
            Ok(text) => self.tx.send(Outbound::Text(text)).is_ok(),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode router message");
                false
            }
        }
    }
}
