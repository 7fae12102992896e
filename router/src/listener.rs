//! The public listener's guards, below HTTP and WebSocket: a cap on open
//! connections, and for each connection a pre-authentication guard.
//!
//! - **Connection cap**: an accepted connection takes a permit of a
//!   semaphore of `max_connections` and holds it until it closes. Past the
//!   cap a connection is answered `503` (`unavailable`, best effort: one
//!   non-blocking write) and closed at once, before any of its bytes are read.
//! - **Pre-authentication guard** ([`Preauth`]): until the connection's
//!   WebSocket client has authenticated (joined a session or opened a
//!   control connection), a read that waits longer than twice the
//!   handshake timeout fails, so an idle or silent connection (plain HTTP
//!   keep-alive included) does not hold a permit for ever. (Twice: the
//!   WebSocket handshake's own timeout, which answers with a reason, comes
//!   first.) Once `GET /ws` upgrades it, a byte budget
//!   ([`PRE_AUTH_MAX_BYTES`]) bounds what is read from the socket before the
//!   client authenticates: a client that sends more is cut off there, with
//!   no more of its bytes read, let alone buffered. The WebSocket message
//!   limit (`max_frame_bytes`) applies only after that.
//!
//! The guard is shared with the request handlers through axum's
//! `ConnectInfo`: `GET /ws` arms the budget, and the WebSocket task lifts
//! both limits once the client has authenticated.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use crate::metrics;

/// Most bytes read from a WebSocket connection before its client
/// authenticates, frame headers included: 4 KiB. A join or control message
/// is well under 1 KiB.
pub const PRE_AUTH_MAX_BYTES: usize = 4 * 1024;

/// No budget armed (plain HTTP, or authenticated).
const UNLIMITED: usize = usize::MAX;

/// What a connection past the cap is told before it is closed.
const OVER_CAP_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
connection: close\r\n\
content-length: 66\r\n\r\n\
{\"error\":\"too many connections, retry later\",\"code\":\"unavailable\"}";

#[derive(Debug)]
struct PreauthState {
    /// Bytes that may still be read; [`UNLIMITED`] when no budget is armed.
    budget: AtomicUsize,
    /// The budget ran out: the connection was cut off.
    exceeded: AtomicBool,
    /// The client authenticated: no budget, no idle deadline.
    authenticated: AtomicBool,
}

/// The pre-authentication guard of one connection (cheap to clone).
#[derive(Debug, Clone)]
pub(crate) struct Preauth(Arc<PreauthState>);

impl Preauth {
    fn new() -> Self {
        Self(Arc::new(PreauthState {
            budget: AtomicUsize::new(UNLIMITED),
            exceeded: AtomicBool::new(false),
            authenticated: AtomicBool::new(false),
        }))
    }

    /// Arms the byte budget: from now on at most `bytes` are read until
    /// [`Preauth::authenticated`].
    pub(crate) fn limit(&self, bytes: usize) {
        if !self.0.authenticated.load(Ordering::Acquire) {
            self.0.budget.store(bytes, Ordering::Release);
        }
    }

    /// The client authenticated: reads are no longer limited.
    pub(crate) fn authenticated(&self) {
        self.0.authenticated.store(true, Ordering::Release);
        self.0.budget.store(UNLIMITED, Ordering::Release);
    }

    /// Whether the connection was cut off for sending too much before it
    /// authenticated.
    pub(crate) fn exceeded(&self) -> bool {
        self.0.exceeded.load(Ordering::Acquire)
    }

    fn is_authenticated(&self) -> bool {
        self.0.authenticated.load(Ordering::Acquire)
    }
}

impl Connected<IncomingStream<'_, PublicListener>> for Preauth {
    fn connect_info(stream: IncomingStream<'_, PublicListener>) -> Self {
        stream.io().preauth.clone()
    }
}

impl Connected<IncomingStream<'_, mpc_tls::TlsListener<PublicListener>>> for Preauth {
    fn connect_info(stream: IncomingStream<'_, mpc_tls::TlsListener<PublicListener>>) -> Self {
        stream.io().get_ref().0.preauth.clone()
    }
}

/// The public TCP listener with the connection cap; its connections are
/// [`GuardedStream`]s with `TCP_NODELAY` set.
#[derive(Debug)]
pub(crate) struct PublicListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    idle_timeout: Duration,
}

impl PublicListener {
    pub(crate) fn new(inner: TcpListener, max_connections: usize, idle_timeout: Duration) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS))),
            idle_timeout,
        }
    }
}

impl axum::serve::Listener for PublicListener {
    type Io = GuardedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                metrics::connection_refused("cap");
                tracing::warn!(%addr, "connection refused: the connection cap is reached");
                // Best effort, never waits: the connection closes either way.
                let _ = stream.try_write(OVER_CAP_RESPONSE);
                drop(stream);
                continue;
            };
            set_nodelay(&stream);
            let io = GuardedStream {
                stream,
                preauth: Preauth::new(),
                idle_timeout: self.idle_timeout,
                idle: None,
                _permit: permit,
            };
            return (io, addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// `TCP_NODELAY`: protocol frames and reports are small and must not wait
/// for Nagle's algorithm (with delayed ACKs, ~40 ms per round trip).
pub(crate) fn set_nodelay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set");
    }
}

/// An accepted public connection: its socket, its guard and its permit
/// (released when the connection is dropped).
#[derive(Debug)]
pub(crate) struct GuardedStream {
    stream: TcpStream,
    preauth: Preauth,
    idle_timeout: Duration,
    /// Deadline of the read in progress, while not authenticated.
    idle: Option<Pin<Box<Sleep>>>,
    _permit: OwnedSemaphorePermit,
}

impl GuardedStream {
    /// The pending read has waited past the idle timeout (registers the
    /// waker otherwise).
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let timeout = self.idle_timeout;
        let idle = self
            .idle
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        idle.as_mut().poll(cx).is_ready()
    }

    fn data_read(&mut self) {
        if let Some(idle) = self.idle.as_mut() {
            idle.as_mut()
                .reset(tokio::time::Instant::now() + self.idle_timeout);
        }
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.preauth.is_authenticated() {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        let budget = this.preauth.0.budget.load(Ordering::Acquire);
        if budget == 0 {
            this.preauth.0.exceeded.store(true, Ordering::Release);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more than the pre-authentication limit",
            )));
        }
        let polled = if budget < buf.remaining() {
            // Read at most `budget` bytes, into initialised memory.
            let window = buf.initialize_unfilled_to(budget);
            let mut limited = ReadBuf::new(window);
            match Pin::new(&mut this.stream).poll_read(cx, &mut limited) {
                Poll::Ready(Ok(())) => {
                    let n = limited.filled().len();
                    buf.advance(n);
                    Poll::Ready(Ok(n))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        } else {
            let before = buf.filled().len();
            match Pin::new(&mut this.stream).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len() - before)),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        };
        match polled {
            Poll::Ready(Ok(n)) => {
                if budget != UNLIMITED {
                    // Only this task reads; `limit` may have re-armed it
                    // meanwhile, which only lowers what is left.
                    let _ = this.preauth.0.budget.fetch_update(
                        Ordering::AcqRel,
                        Ordering::Acquire,
                        |left| (left != UNLIMITED).then(|| left.saturating_sub(n)),
                    );
                }
                this.data_read();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.idle_expired(cx) {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no data before the handshake timeout",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn pair(idle: Duration) -> (GuardedStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut public = PublicListener::new(listener, 4, idle);
        let client = TcpStream::connect(addr).await.unwrap();
        let (io, _) = axum::serve::Listener::accept(&mut public).await;
        (io, client)
    }

    #[test]
    fn the_over_cap_answer_is_well_formed() {
        let text = std::str::from_utf8(OVER_CAP_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["code"], "unavailable");
    }

    #[tokio::test]
    async fn the_budget_cuts_off_reads_until_authenticated() {
        let (mut io, mut client) = pair(Duration::from_secs(30)).await;
        io.preauth.limit(10);
        client.write_all(&[7u8; 64]).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        let err = loop {
            match io.read(&mut buf).await {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(got.len(), 10, "exactly the budget was read");
        assert!(io.preauth.exceeded());
    }

    #[tokio::test]
    async fn after_authentication_reads_are_unlimited() {
        let (mut io, mut client) = pair(Duration::from_secs(30)).await;
        io.preauth.limit(10);
        let mut buf = [0u8; 64];
        client.write_all(&[1u8; 4]).await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 4);
        io.preauth.authenticated();
        client.write_all(&[2u8; 64]).await.unwrap();
        let mut n = 0;
        while n < 64 {
            n += io.read(&mut buf).await.unwrap();
        }
        assert!(!io.preauth.exceeded());
    }

    #[tokio::test]
    async fn a_silent_connection_times_out_before_authentication() {
        let (mut io, _client) = pair(Duration::from_millis(100)).await;
        let mut buf = [0u8; 8];
        let err = tokio::time::timeout(Duration::from_secs(10), io.read(&mut buf))
            .await
            .expect("the idle deadline did not fire")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
