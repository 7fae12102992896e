//! Test harness: a router on 127.0.0.1 port 0, WebSocket clients speaking the
//! real handshake, and helpers for the internal API.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unused_macros)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use mpc_api::router::{ParticipantSlot, RegisterSession, SessionRegistered, SESSIONS_PATH};
use party_core::envelope::Channel;
use party_core::identity::{PartyIdentity, PartyPublicKey};
use party_core::wire::{control_message, join_message, ClientToRouter, RouterToClient};
use rand_core::{OsRng, RngCore as _};
use router::{Listeners, Router, RouterConfig};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

pub const INTERNAL_TOKEN: &str = "test-internal-token";
/// How long any single expected event may take.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestRouter {
    /// The public listener: `/ws`, health, readiness, metrics.
    pub addr: SocketAddr,
    /// The internal listener: the internal API.
    pub internal_addr: SocketAddr,
    pub router: Router,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    pub server: Option<JoinHandle<std::io::Result<()>>>,
}

/// Where a test router keeps its state. Every test of the generic suite runs
/// once per backend (see [`on_both_backends`]).
#[derive(Debug, Clone)]
pub enum TestBackend {
    Memory,
    /// Redis at this URL.
    Redis(String),
}

impl TestBackend {
    /// Redis at [`redis_url`], or `None` (after printing why) when it is
    /// down outside CI; with `CI=true` a missing Redis fails the test.
    pub async fn redis() -> Option<Self> {
        let url = redis_url();
        let reachable = match redis::Client::open(url.as_str()) {
            Ok(c) => {
                tokio::time::timeout(Duration::from_secs(2), c.get_multiplexed_async_connection())
                    .await
                    .is_ok_and(|r| r.is_ok())
            }
            Err(_) => false,
        };
        if !reachable {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("CI=true and Redis at {url} is unreachable");
            }
            eprintln!("skipped: Redis at {url} unreachable");
            return None;
        }
        Some(TestBackend::Redis(url))
    }
}

/// Runs each named `async fn(TestBackend)` as two tests, `NAME::memory` and
/// `NAME::redis` (skipped with a printed reason when Redis is down, outside
/// CI).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$name(crate::common::TestBackend::Memory).await;
            }

            #[tokio::test]
            async fn redis() {
                if let Some(backend) = crate::common::TestBackend::redis().await {
                    super::$name(backend).await;
                }
            }
        }
    )*};
}
#[allow(unused_imports)] // not every suite uses it
pub(crate) use on_both_backends;

impl TestRouter {
    /// A router with default limits on `backend`.
    pub async fn start(backend: &TestBackend) -> Self {
        Self::start_with(backend, RouterConfig::new(INTERNAL_TOKEN)).await
    }

    /// A router with `config`, its state on `backend`; with Redis, once it is
    /// ready.
    pub async fn start_with(backend: &TestBackend, mut config: RouterConfig) -> Self {
        if let TestBackend::Redis(url) = backend {
            config.redis_url = Some(url.clone());
        }
        let shared = config.redis_url.is_some();
        let listeners = listeners().await;
        let addr = listeners.public.local_addr().unwrap();
        let internal_addr = listeners.internal.local_addr().unwrap();
        let router = Router::new(config).unwrap();
        let (tx, rx) = oneshot::channel();
        let server = tokio::spawn(router.clone().serve(listeners, async {
            let _ = rx.await;
        }));
        if shared {
            let deadline = tokio::time::Instant::now() + WAIT;
            while !router.is_ready().await {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "router never became ready"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Self {
            addr,
            internal_addr,
            router,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// A router sharing state through Redis, or `None` (after printing why)
    /// when Redis is down outside CI; in CI a missing Redis fails the test.
    pub async fn start_shared() -> Option<Self> {
        let backend = TestBackend::redis().await?;
        Some(Self::start(&backend).await)
    }

    /// `GET /metrics`: the content type and the text.
    pub async fn metrics(&self) -> (String, String) {
        let resp = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (content_type, resp.text().await.unwrap())
    }

    /// Signals shutdown and waits for `serve` to return.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(WAIT, server)
                .await
                .expect("serve did not return")
                .unwrap()
                .unwrap();
        }
    }

    /// A URL of the public listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A URL of the internal listener.
    pub fn internal_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.internal_addr)
    }

    /// POST to the internal API with the internal token; returns status and
    /// JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_with(&self.internal_url(path), Some(INTERNAL_TOKEN), body)
            .await
    }

    /// POST `body` to `url` with `token` (if any) as `X-Internal-Token`.
    pub async fn post_with(&self, url: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self.http.post(url).json(body);
        if let Some(token) = token {
            req = req.header("X-Internal-Token", token);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .delete(self.internal_url(path))
            .header("X-Internal-Token", INTERNAL_TOKEN)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }

    /// Registers a session of `n` parties; slots listed in `bound` are bound to
    /// their party's identity up front (server parties), the others bind on
    /// first use (browser parties).
    pub async fn session(&self, n: usize, bound: &[u16]) -> TestSession {
        self.session_until(n, bound, now() + 3600).await
    }

    /// As [`TestRouter::session`], expiring at `expires_at` (Unix seconds).
    pub async fn session_until(&self, n: usize, bound: &[u16], expires_at: u64) -> TestSession {
        let session_id = random_uuid();
        let parties: Vec<TestParty> = (0..n)
            .map(|_| TestParty {
                identity: PartyIdentity::generate(&mut OsRng),
                token: random_token(),
            })
            .collect();
        // The request as the coordinator sends it (`mpc_api::router`).
        let participants = parties
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let position = u16::try_from(i).unwrap();
                ParticipantSlot {
                    position,
                    token_sha256: token_hash(&p.token),
                    identity: bound.contains(&position).then(|| p.identity.public()),
                }
            })
            .collect();
        let request: RegisterSession<PartyPublicKey> = RegisterSession {
            session_id,
            expires_at,
            participants,
        };
        let registration = serde_json::to_value(&request).unwrap();
        let (status, body) = self.post(SESSIONS_PATH, &registration).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["session_id"], json!(session_id));
        let answer: SessionRegistered = serde_json::from_value(body).unwrap();
        assert_eq!(answer, SessionRegistered { session_id });
        TestSession {
            session_id,
            parties,
            registration,
        }
    }
}

/// A public and an internal listener on 127.0.0.1, ports picked by the OS.
pub async fn listeners() -> Listeners {
    Listeners {
        public: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        internal: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    }
}

impl Drop for TestRouter {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub struct TestParty {
    pub identity: PartyIdentity,
    pub token: String,
}

pub struct TestSession {
    pub session_id: Uuid,
    pub parties: Vec<TestParty>,
    /// The registration as it was posted.
    pub registration: Value,
}

/// Exchanges the channels' signed session keys in memory (what parties do
/// with their first frame), so that they can seal p2p frames to each other.
pub fn exchange_keys(channels: &mut [&mut Channel]) {
    let frames: Vec<Vec<u8>> = channels
        .iter_mut()
        .map(|c| c.session_key_frame().unwrap())
        .collect();
    for (from, frame) in frames.iter().enumerate() {
        for (to, c) in channels.iter_mut().enumerate() {
            if from != to {
                c.open(frame).unwrap();
            }
        }
    }
}

impl TestSession {
    pub fn peers(&self) -> Vec<PartyPublicKey> {
        self.parties.iter().map(|p| p.identity.public()).collect()
    }

    /// The secure channel of the party at `position`.
    pub fn channel(&self, position: u16) -> Channel {
        Channel::new(
            self.session_id,
            [0u8; 32],
            position,
            self.parties[usize::from(position)].identity.clone(),
            self.peers(),
        )
    }

    /// Connects the party at `position` and expects `Joined` with it.
    pub async fn join(&self, router: &TestRouter, position: u16) -> Client {
        let party = &self.parties[usize::from(position)];
        let mut client = router.client().await;
        let reply = client
            .join(self.session_id, &party.token, &party.identity)
            .await;
        match reply {
            RouterToClient::Joined {
                session_id,
                position: p,
            } => {
                assert_eq!(session_id, self.session_id);
                assert_eq!(p, position);
            }
            other => panic!("expected Joined, got {other:?}"),
        }
        client
    }
}

/// The Redis tests use (`MPC_TEST_REDIS_URL`, default the local server).
pub fn redis_url() -> String {
    std::env::var("MPC_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn random_uuid() -> Uuid {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

pub fn random_token() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A WebSocket client that has read the router's challenge.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub nonce: [u8; 32],
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .unwrap();
        let mut client = Client { ws, nonce: [0; 32] };
        match client.next_json().await {
            RouterToClient::Challenge { nonce } => client.nonce = nonce,
            other => panic!("expected Challenge, got {other:?}"),
        }
        client
    }

    pub async fn send_json(&mut self, msg: &ClientToRouter) {
        let text = serde_json::to_string(msg).unwrap();
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// Sends `JoinSession` signed by `identity` and returns the reply.
    pub async fn join(
        &mut self,
        session_id: Uuid,
        token: &str,
        identity: &PartyIdentity,
    ) -> RouterToClient {
        let signature = identity.sign(&join_message(&self.nonce, &session_id));
        self.send_json(&ClientToRouter::JoinSession {
            session_id,
            token: token.to_owned(),
            identity: identity.public(),
            signature,
        })
        .await;
        self.next_json().await
    }

    /// Sends `Control` signed by `identity` and returns the reply.
    pub async fn control(&mut self, party_id: &str, identity: &PartyIdentity) -> RouterToClient {
        let signature = identity.sign(&control_message(&self.nonce, party_id));
        self.send_json(&ClientToRouter::Control {
            party_id: party_id.to_owned(),
            identity: identity.public(),
            signature,
        })
        .await;
        self.next_json().await
    }

    pub async fn send_frame(&mut self, frame: Vec<u8>) {
        self.ws.send(Message::binary(frame)).await.unwrap();
    }

    /// The next data or close message (None when the stream ended), skipping
    /// ping and pong; panics after [`WAIT`].
    pub async fn next(&mut self) -> Option<Message> {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(m)) => return Some(m),
                    Some(Err(_)) | None => return None,
                }
            }
        })
        .await
        .expect("timed out waiting for a message")
    }

    pub async fn next_json(&mut self) -> RouterToClient {
        match self.next().await {
            Some(Message::Text(t)) => serde_json::from_str(t.as_str()).unwrap(),
            other => panic!("expected a JSON message, got {other:?}"),
        }
    }

    pub async fn next_frame(&mut self) -> Vec<u8> {
        match self.next().await {
            Some(Message::Binary(b)) => b.to_vec(),
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// Expects the router to close the connection next.
    pub async fn expect_closed(&mut self) {
        match self.next().await {
            Some(Message::Close(_)) | None => {}
            other => panic!("expected close, got {other:?}"),
        }
    }

    /// Expects an `Error` with `code`, then the close; returns the message.
    pub async fn expect_error(&mut self, reply: RouterToClient, code: &str) -> String {
        match reply {
            RouterToClient::Error { code: c, message } => {
                assert_eq!(c, code, "message: {message}");
                self.expect_closed().await;
                message
            }
            other => panic!("expected Error {code}, got {other:?}"),
        }
    }
}
