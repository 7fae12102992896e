//! `GET /ws`: the challenge handshake, then a session connection (sealed
//! binary frames both ways) or a control connection (invitations to the
//! client).
//!
//! Each connection is one task that owns its socket and selects between the
//! client's messages, its outbound queue ([`crate::conn`]) and the router's
//! shutdown signal. It ends when the client goes away, when the state drops
//! its queue (session closed, connection replaced) or on shutdown.
//!
//! Before the client has authenticated (joined a session, or opened a
//! control connection with a valid signature), at most
//! [`PRE_AUTH_MAX_BYTES`] are read from its socket ([`crate::listener`]);
//! a client that sends more is cut off without the rest being read.

use axum::body::Bytes;
use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use futures_util::SinkExt as _;
use party_core::identity::{verify_ed25519, PartyPublicKey};
use party_core::wire::{control_message, join_message, ClientToRouter, RouterToClient};
use rand_core::{OsRng, RngCore as _};
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::conn::{Conn, Outbound};
use crate::listener::{Preauth, PRE_AUTH_MAX_BYTES};
use crate::metrics::{self, ConnKind, OpenConnection};
use crate::policy::{JoinError, JoinRequest, Joined, RelayError};
use crate::{now_unix, stopped, Router};

/// Room above `max_frame_bytes` for the WebSocket message limit, so a frame
/// just over the limit is dropped and logged rather than ending the connection.
const MESSAGE_SLACK: usize = 64 * 1024;
/// Initial read buffer of a connection (it grows for larger messages):
/// small, so that connections waiting to authenticate cost little.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// `GET /ws`: arms the connection's pre-authentication byte budget, then
/// upgrades.
pub(crate) async fn upgrade(
    State(router): State<Router>,
    ConnectInfo(preauth): ConnectInfo<Preauth>,
    ws: WebSocketUpgrade,
) -> Response {
    let limit = router
        .config()
        .max_frame_bytes
        .saturating_add(MESSAGE_SLACK);
    preauth.limit(PRE_AUTH_MAX_BYTES);
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| handle(router, socket, preauth))
}

/// Why the handshake produced no request.
enum HandshakeEnd {
    /// The client went away.
    Closed,
    /// The client sent something other than one `ClientToRouter` message.
    Malformed,
}

async fn handle(router: Router, mut socket: WebSocket, preauth: Preauth) {
    let mut stop = router.shutdown_signal();
    let mut nonce = [0u8; 32];
    OsRng.fill_bytes(&mut nonce);
    if send_json(&mut socket, &RouterToClient::Challenge { nonce })
        .await
        .is_err()
    {
        return;
    }
    let timeout = router.config().handshake_timeout;
    let hello = tokio::select! {
        r = tokio::time::timeout(timeout, read_hello(&mut socket)) => r,
        _ = stopped(&mut stop) => {
            refuse(&mut socket, "shutting_down", "the router is shutting down").await;
            return;
        }
    };
    let hello = match hello {
        Ok(Ok(hello)) => hello,
        Ok(Err(HandshakeEnd::Closed)) if preauth.exceeded() => {
            metrics::connection_refused("pre_auth_limit");
            debug!("connection cut off: over the pre-authentication limit");
            // Best effort: nothing more is read from this client.
            refuse(
                &mut socket,
                "too_large",
                "more than the pre-authentication limit before authenticating",
            )
            .await;
            return;
        }
        Ok(Err(HandshakeEnd::Closed)) => return,
        Ok(Err(HandshakeEnd::Malformed)) => {
            debug!("malformed handshake");
            refuse(
                &mut socket,
                "bad_request",
                "expected one JSON join_session or control message",
            )
            .await;
            return;
        }
        Err(_) => {
            debug!("handshake timed out");
            refuse(
                &mut socket,
                "handshake_timeout",
                "no answer to the challenge in time",
            )
            .await;
            return;
        }
    };
    match hello {
        ClientToRouter::JoinSession {
            session_id,
            token,
            identity,
            signature,
        } => {
            let token_sha256: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            drop(token);
            let signature_ok = verify_ed25519(
                &identity.ed25519,
                &join_message(&nonce, &session_id),
                &signature,
            )
            .is_ok();
            let join = JoinRequest {
                session_id,
                token_sha256,
                identity,
                signature_ok,
            };
            session_connection(router, socket, stop, join, preauth).await;
        }
        ClientToRouter::Control {
            party_id,
            identity,
            signature,
        } => {
            let signature_ok = verify_ed25519(
                &identity.ed25519,
                &control_message(&nonce, &party_id),
                &signature,
            )
            .is_ok();
            let hello = ControlHello {
                party_id,
                identity,
                signature_ok,
            };
            control_connection(router, socket, stop, hello, preauth).await;
        }
    }
}

/// Reads the client's answer to the challenge.
async fn read_hello(socket: &mut WebSocket) -> Result<ClientToRouter, HandshakeEnd> {
    loop {
        match socket.recv().await {
            Some(Ok(Message::Text(text))) => {
                // The parse error is not echoed: it may quote the token.
                return serde_json::from_str(text.as_str()).map_err(|_| HandshakeEnd::Malformed);
            }
            Some(Ok(Message::Binary(_))) => return Err(HandshakeEnd::Malformed),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(HandshakeEnd::Closed),
        }
    }
}

async fn session_connection(
    router: Router,
    mut socket: WebSocket,
    mut stop: watch::Receiver<bool>,
    join: JoinRequest,
    preauth: Preauth,
) {
    let session_id = join.session_id;
    let conn_id = router.next_conn_id();
    let (conn, mut rx) = Conn::new(conn_id);
    let joined = match router.join(&join, now_unix(), conn).await {
        Ok(joined) => joined,
        Err(e) => {
            match &e {
                JoinError::Unavailable(cause) => {
                    warn!(%session_id, error = %cause, "join failed: shared state unavailable");
                }
                _ => warn!(%session_id, code = e.code(), "join refused"),
            }
            refuse(&mut socket, e.code(), &e.to_string()).await;
            return;
        }
    };
    preauth.authenticated();
    let position = joined.position;
    let _open = OpenConnection::new(ConnKind::Session);
    info!(%session_id, position, identity = ?join.identity, "party joined");
    let end = pump(&mut socket, &mut rx, &mut stop, |frame| {
        on_frame(&router, session_id, joined, conn_id, frame)
    })
    .await;
    router.backend().leave(session_id, position, conn_id);
    info!(%session_id, position, ?end, "party connection ended");
    if end == End::Dropped {
        crate::departures::watch(router, session_id, position, conn_id);
    }
}

/// Relays a frame from `joined`'s position, or drops it with a log line.
async fn on_frame(router: &Router, session_id: Uuid, joined: Joined, conn_id: u64, frame: Bytes) {
    let len = frame.len();
    let position = joined.position;
    let Err(e) = router.relay_frame(session_id, joined, conn_id, frame).await else {
        return;
    };
    match e {
        RelayError::TooLarge
        | RelayError::WrongSession
        | RelayError::Malformed(_)
        | RelayError::BadRecipient(_) => {
            warn!(%session_id, position, len, reason = %e, "frame dropped");
        }
        RelayError::SpoofedSender(claimed_sender) => warn!(
            %session_id,
            position,
            claimed_sender,
            reason = "spoofed sender index",
            "frame dropped"
        ),
        RelayError::BufferFull => {
            error!(%session_id, position, len, reason = %e, "frame dropped");
        }
        RelayError::SessionGone | RelayError::Replaced => {
            debug!(%session_id, position, reason = %e, "frame dropped");
        }
        RelayError::Unavailable(cause) => {
            error!(%session_id, position, len, error = %cause, "frame dropped: shared state unavailable");
        }
    }
}

/// A control connection's answer to the challenge.
struct ControlHello {
    party_id: String,
    identity: PartyPublicKey,
    signature_ok: bool,
}

async fn control_connection(
    router: Router,
    mut socket: WebSocket,
    mut stop: watch::Receiver<bool>,
    hello: ControlHello,
    preauth: Preauth,
) {
    let ControlHello {
        party_id,
        identity,
        signature_ok,
    } = hello;
    if let Err(e) = Router::check_control(&party_id, signature_ok) {
        if e == crate::policy::ControlError::BadSignature {
            warn!(%party_id, "control connection refused: bad signature");
        }
        refuse(&mut socket, e.code(), &e.to_string()).await;
        return;
    }
    preauth.authenticated();
    let conn_id = router.next_conn_id();
    let (conn, mut rx) = Conn::new(conn_id);
    let delivered = router
        .attach_control(identity.ed25519, &party_id, conn, now_unix())
        .await;
    let _open = OpenConnection::new(ConnKind::Control);
    info!(%party_id, ?identity, delivered, "control connection registered");
    let _ = pump(&mut socket, &mut rx, &mut stop, |_| async {
        debug!(%party_id, "binary message on a control connection ignored");
    })
    .await;
    router.backend().detach_control(&identity.ed25519, conn_id);
    info!(%party_id, "control connection ended");
}

/// How a connection's frame loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The router ended it: the session closed, the connection was replaced,
    /// or the router is shutting down.
    ByRouter,
    /// The client closed it with a normal close (1000): it left on purpose.
    Left,
    /// Anything else: the socket failed or went away, or the client closed
    /// with another code. A party that does not come back is reported.
    Dropped,
}

/// Moves messages between the socket and the outbound queue until either side
/// ends or the router shuts down. Text from the client is ignored.
async fn pump<F, Fut>(
    socket: &mut WebSocket,
    rx: &mut mpsc::UnboundedReceiver<Outbound>,
    stop: &mut watch::Receiver<bool>,
    mut on_binary: F,
) -> End
where
    F: FnMut(Bytes) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        tokio::select! {
            out = rx.recv() => {
                let msg = match out {
                    Some(Outbound::Text(text)) => Message::Text(text.into()),
                    Some(Outbound::Binary(frame)) => Message::Binary(frame),
                    // The state dropped this connection: closed or replaced.
                    None => {
                        close(socket, close_code::NORMAL).await;
                        return End::ByRouter;
                    }
                };
                if socket.send(msg).await.is_err() {
                    return End::Dropped;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(frame))) => on_binary(frame).await,
                Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    // Flush the close reply tungstenite queued.
                    let _ = socket.close().await;
                    let normal = frame.is_some_and(|f| f.code == close_code::NORMAL);
                    return if normal { End::Left } else { End::Dropped };
                }
                Some(Err(_)) | None => return End::Dropped,
            },
            _ = stopped(stop) => {
                close(socket, close_code::AWAY).await;
                return End::ByRouter;
            }
        }
    }
}

async fn send_json(socket: &mut WebSocket, msg: &RouterToClient) -> Result<(), ()> {
    let text = serde_json::to_string(msg).map_err(|_| ())?;
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|_| ())
}

async fn close(socket: &mut WebSocket, code: u16) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(""),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// Sends `Error` and closes. `message` must hold no secret.
async fn refuse(socket: &mut WebSocket, code: &str, message: &str) {
    let err = RouterToClient::Error {
        code: code.to_owned(),
        message: message.to_owned(),
    };
    let _ = send_json(socket, &err).await;
    close(socket, close_code::POLICY).await;
}
