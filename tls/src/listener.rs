//! [`TlsListener`]: TLS over any axum listener.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use rustls::ServerConfig;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for `accept`.
const QUEUE: usize = 64;

/// An axum listener whose connections are TLS over those of `L`.
///
/// A task accepts connections of `L` and runs each handshake in a task of
/// its own (deadline [`HANDSHAKE_TIMEOUT`]), so a client that stalls its
/// handshake delays no other; failed handshakes are logged at debug level
/// and dropped. The task ends with the listener.
pub struct TlsListener<L: Listener> {
    incoming: mpsc::Receiver<(TlsStream<L::Io>, L::Addr)>,
    local_addr: L::Addr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl<L> TlsListener<L>
where
    L: Listener,
    L::Addr: Clone + Send + 'static,
{
    /// Serves TLS with `config` on the connections of `inner`.
    pub fn new(inner: L, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local_addr = inner.local_addr()?;
        let (tx, incoming) = mpsc::channel(QUEUE);
        let accept_task = tokio::spawn(accept_loop(inner, TlsAcceptor::from(config), tx));
        Ok(Self {
            incoming,
            local_addr,
            accept_task,
        })
    }
}

async fn accept_loop<L>(
    mut inner: L,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<L::Io>, L::Addr)>,
) where
    L: Listener,
    L::Addr: Send + 'static,
{
    loop {
        let (io, addr) = tokio::select! {
            accepted = inner.accept() => accepted,
            _ = tx.closed() => return,
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                Ok(Ok(stream)) => {
                    // Err: the listener is gone; the connection closes.
                    let _ = tx.send((stream, addr)).await;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        });
    }
}

impl<L: Listener> std::fmt::Debug for TlsListener<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener").finish_non_exhaustive()
    }
}

impl<L: Listener> Drop for TlsListener<L> {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl<L> Listener for TlsListener<L>
where
    L: Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    type Io = TlsStream<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(conn) => conn,
            // The accept task ended (only when the runtime shuts down).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr.clone())
    }
}
