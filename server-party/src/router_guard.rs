//! What a server party accepts from a router, which it does not trust: a
//! bounded message size on each connection, router-supplied text cut short
//! before it is logged, and a reconnect backoff that a router accepting and
//! dropping connections cannot turn into a tight loop.

use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Largest message taken from a router on a control connection
/// (invitations: a signed descriptor and a join token, a few KiB).
pub(crate) const CONTROL_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Largest message taken from a router on a session connection: the
/// router's default frame limit (4 MiB) and its slack (64 KiB).
pub(crate) const SESSION_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024 + 64 * 1024;
/// Longest router-supplied text (error codes and messages) that is logged
/// or kept.
pub(crate) const MAX_ROUTER_TEXT: usize = 256;

/// A WebSocket client configuration taking messages of at most `max` bytes.
pub(crate) fn ws_config(max: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Text a router sent, cut to [`MAX_ROUTER_TEXT`] characters with control
/// characters replaced, so it can be logged: a hostile router cannot flood
/// the logs or forge log lines.
pub(crate) fn router_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_ROUTER_TEXT)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(MAX_ROUTER_TEXT).is_some() {
        out.push('…');
    }
    out
}

/// A text message from a router as the session machine should see it: an
/// `Error`'s code and message cut by [`router_text`] (the machine puts them
/// in the failure reason it logs and reports); anything else unchanged.
pub(crate) fn capped_router_message(text: &str) -> std::borrow::Cow<'_, str> {
    use party_core::wire::RouterToClient;
    match serde_json::from_str::<RouterToClient>(text) {
        Ok(RouterToClient::Error { code, message }) => {
            let capped = RouterToClient::Error {
                code: router_text(&code),
                message: router_text(&message),
            };
            match serde_json::to_string(&capped) {
                Ok(json) => std::borrow::Cow::Owned(json),
                Err(_) => std::borrow::Cow::Borrowed(text),
            }
        }
        _ => std::borrow::Cow::Borrowed(text),
    }
}

/// The control connection's reconnect delay: doubling from 100 ms to 30 s,
/// back to 100 ms only after a connection that lasted
/// [`Backoff::STABLE`].
#[derive(Debug)]
pub(crate) struct Backoff {
    delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { delay: Self::FIRST }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(30);
    /// A connection up at least this long was a good one.
    const STABLE: Duration = Duration::from_secs(30);

    /// The delay before the next attempt, after one that lasted `lasted`.
    pub(crate) fn next(&mut self, lasted: Duration) -> Duration {
        if lasted >= Self::STABLE {
            self.delay = Self::FIRST;
        }
        let delay = self.delay;
        self.delay = (self.delay * 2).min(Self::MAX);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_text_is_cut_and_cleaned() {
        let long = "x".repeat(10_000);
        let cut = router_text(&long);
        assert_eq!(cut.chars().count(), MAX_ROUTER_TEXT + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(router_text("bad\nline\u{1b}[31m"), "bad?line?[31m");
        assert_eq!(router_text("short"), "short");
    }

    #[test]
    fn a_routers_error_text_is_capped_before_the_machine_sees_it() {
        use party_core::wire::RouterToClient;
        let huge = serde_json::to_string(&RouterToClient::Error {
            code: "c".repeat(5000),
            message: "m".repeat(100_000),
        })
        .unwrap_or_default();
        let capped = capped_router_message(&huge);
        assert!(
            capped.len() < 2 * (MAX_ROUTER_TEXT + 8) + 64,
            "{}",
            capped.len()
        );
        match serde_json::from_str::<RouterToClient>(&capped) {
            Ok(RouterToClient::Error { code, message }) => {
                assert!(code.starts_with("ccc") && message.starts_with("mmm"));
            }
            other => panic!("not an Error: {other:?}"),
        }
        let joined =
            r#"{"type":"joined","session_id":"00000000-0000-0000-0000-000000000000","position":1}"#;
        assert_eq!(capped_router_message(joined), joined);
    }

    #[test]
    fn backoff_grows_until_a_connection_lasts() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(1);
        let delays: Vec<Duration> = (0..12).map(|_| b.next(quick)).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        // Connections dropped at once: the delay keeps growing, to the cap.
        assert!(delays.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*delays.last().unwrap_or(&Duration::ZERO), Backoff::MAX);
        // After a connection that stayed up, it starts over.
        assert_eq!(b.next(Backoff::STABLE), Duration::from_millis(100));
    }

    #[test]
    fn the_message_limits_are_set() {
        let c = ws_config(1234);
        assert_eq!(c.max_message_size, Some(1234));
        assert_eq!(c.max_frame_size, Some(1234));
    }
}
