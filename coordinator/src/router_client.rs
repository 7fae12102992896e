//! Calls to the router's internal API: the [`RouterApi`] the service layer
//! uses, and [`RouterClient`], its HTTP implementation. Tests use
//! [`crate::fake_router::FakeRouter`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mpc_api::router::{
    session_path, Disconnects, InviteRequest, ParticipantSlot, RegisterSession, DISCONNECTS_PATH,
    INTERNAL_TOKEN_HEADER, INVITATIONS_PATH, SESSIONS_PATH,
};
use party_core::identity::PartyPublicKey;
use party_core::wire::Invitation;
use serde::Serialize;
use uuid::Uuid;

/// A client of the router's internal API. With several router instances
/// (sharing state through Redis) any of them serves a call: a call goes to the
/// instance that last answered and moves on to the next when it is
/// unreachable or answers 5xx.
#[derive(Clone)]
pub struct RouterClient {
    bases: Arc<Vec<String>>,
    current: Arc<AtomicUsize>,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for RouterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterClient")
            .field("bases", &self.bases)
            .finish_non_exhaustive()
    }
}

/// A participant slot registered with the router: position, SHA-256 of the
/// join token (hex) and the identity the slot is bound to, if known.
pub type Slot = ParticipantSlot<PartyPublicKey>;

/// Router call failures.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// Transport error.
    #[error("router unreachable: {0}")]
    Unreachable(String),
    /// The router refused.
    #[error("router refused: HTTP {0}")]
    Refused(u16),
}

/// What a [`RouterApi`] call returns.
pub type RouterFuture<'a> = Pin<Box<dyn Future<Output = Result<(), RouterError>> + Send + 'a>>;

/// What [`RouterApi::disconnects`] returns.
pub type DisconnectsFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Disconnects, RouterError>> + Send + 'a>>;

/// The router as the coordinator's service layer sees it.
pub trait RouterApi: Send + Sync + std::fmt::Debug {
    /// Registers a session's slots.
    fn register_session(
        &self,
        session_id: Uuid,
        expires_at: u64,
        slots: Vec<Slot>,
    ) -> RouterFuture<'_>;

    /// Sends an invitation to a server party's control connection.
    fn invite<'a>(
        &'a self,
        identity: &'a PartyPublicKey,
        invitation: &'a Invitation,
    ) -> RouterFuture<'a>;

    /// Tells the router a session ended (best effort, in the background).
    fn close_session(&self, session_id: Uuid);

    /// The parties the router recorded as disconnected after `after` (a
    /// cursor it returned; `None`: from now on), waiting up to `wait` for
    /// one. A router that reports none (the default, e.g. a fake) answers
    /// after `wait` with nothing.
    fn disconnects<'a>(&'a self, after: Option<&'a str>, wait: Duration) -> DisconnectsFuture<'a> {
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            Ok(Disconnects {
                cursor: after.unwrap_or_default().to_string(),
                disconnects: Vec::new(),
            })
        })
    }
}

impl RouterApi for RouterClient {
    fn register_session(
        &self,
        session_id: Uuid,
        expires_at: u64,
        slots: Vec<Slot>,
    ) -> RouterFuture<'_> {
        Box::pin(RouterClient::register_session(
            self, session_id, expires_at, slots,
        ))
    }

    fn invite<'a>(
        &'a self,
        identity: &'a PartyPublicKey,
        invitation: &'a Invitation,
    ) -> RouterFuture<'a> {
        Box::pin(RouterClient::invite(self, identity, invitation))
    }

    fn close_session(&self, session_id: Uuid) {
        RouterClient::close_session(self, session_id);
    }

    fn disconnects<'a>(&'a self, after: Option<&'a str>, wait: Duration) -> DisconnectsFuture<'a> {
        Box::pin(RouterClient::disconnects(self, after, wait))
    }
}

impl RouterClient {
    /// A client for the internal listeners of the router instances at
    /// `bases` (e.g. `http://127.0.0.1:8091`), presenting `token`, the
    /// routers' internal credential.
    pub fn new(bases: &[String], token: &str) -> Self {
        Self::with_tls(bases, token, None)
    }

    /// [`RouterClient::new`] trusting `tls` for `https://` instances (the
    /// Mozilla roots when `None`).
    pub fn with_tls(
        bases: &[String],
        token: &str,
        tls: Option<std::sync::Arc<mpc_tls::ClientConfig>>,
    ) -> Self {
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(10));
        match tls.map_or_else(|| mpc_tls::client_config(None), Ok) {
            Ok(tls) => http = http.use_preconfigured_tls((*tls).clone()),
            Err(e) => tracing::error!(error = %e, "router client TLS configuration"),
        }
        Self {
            bases: Arc::new(
                bases
                    .iter()
                    .map(|b| b.trim_end_matches('/').to_string())
                    .collect(),
            ),
            current: Arc::new(AtomicUsize::new(0)),
            token: token.to_string(),
            http: http.build().unwrap_or_default(),
        }
    }

    /// Sends `make(base)` to the instances in turn until one answers below
    /// 500. A 4xx is the router's answer and is not retried elsewhere.
    async fn call(
        &self,
        make: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<(), RouterError> {
        let n = self.bases.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = RouterError::Unreachable("no router configured".into());
        for k in 0..n {
            let i = (start + k) % n;
            let Some(base) = self.bases.get(i) else {
                continue;
            };
            match make(base)
                .header(INTERNAL_TOKEN_HEADER, &self.token)
                .send()
                .await
            {
                Ok(resp) if resp.status().is_success() => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(());
                }
                Ok(resp) if resp.status().is_client_error() => {
                    self.current.store(i, Ordering::Relaxed);
                    return Err(RouterError::Refused(resp.status().as_u16()));
                }
                Ok(resp) => last = RouterError::Refused(resp.status().as_u16()),
                Err(e) => last = RouterError::Unreachable(e.without_url().to_string()),
            }
            tracing::warn!(router = %base, error = %last, "router instance unavailable, trying the next");
        }
        Err(last)
    }

    async fn post(&self, path: &str, body: &impl Serialize) -> Result<(), RouterError> {
        self.call(|base| self.http.post(format!("{base}{path}")).json(body))
            .await
    }

    /// Registers a session's slots.
    pub async fn register_session(
        &self,
        session_id: Uuid,
        expires_at: u64,
        slots: Vec<Slot>,
    ) -> Result<(), RouterError> {
        let body = RegisterSession {
            session_id,
            expires_at,
            participants: slots,
        };
        self.post(SESSIONS_PATH, &body).await
    }

    /// Sends an invitation to a server party's control connection.
    pub async fn invite(
        &self,
        identity: &PartyPublicKey,
        invitation: &Invitation,
    ) -> Result<(), RouterError> {
        let body = InviteRequest {
            identity_ed25519: hex::encode(identity.ed25519),
            invitation,
        };
        self.post(INVITATIONS_PATH, &body).await
    }

    /// `GET /internal/v1/disconnects`, a long poll of up to `wait`, on the
    /// instance that last answered (the next one when it fails). With Redis
    /// every instance serves the same feed, so a cursor is good on any.
    pub async fn disconnects(
        &self,
        after: Option<&str>,
        wait: Duration,
    ) -> Result<Disconnects, RouterError> {
        let n = self.bases.len();
        let start = self.current.load(Ordering::Relaxed);
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let mut query = vec![("wait_ms", wait_ms.to_string())];
        if let Some(after) = after {
            query.push(("after", after.to_string()));
        }
        let mut last = RouterError::Unreachable("no router configured".into());
        for k in 0..n {
            let i = (start + k) % n;
            let Some(base) = self.bases.get(i) else {
                continue;
            };
            let sent = self
                .http
                .get(format!("{base}{DISCONNECTS_PATH}"))
                .query(&query)
                .header(INTERNAL_TOKEN_HEADER, &self.token)
                .timeout(wait + Duration::from_secs(10))
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => {
                    self.current.store(i, Ordering::Relaxed);
                    return resp
                        .json::<Disconnects>()
                        .await
                        .map_err(|e| RouterError::Unreachable(e.without_url().to_string()));
                }
                Ok(resp) if resp.status().is_client_error() => {
                    return Err(RouterError::Refused(resp.status().as_u16()));
                }
                Ok(resp) => last = RouterError::Refused(resp.status().as_u16()),
                Err(e) => last = RouterError::Unreachable(e.without_url().to_string()),
            }
        }
        Err(last)
    }

    /// Tells the router a session ended (best effort, in the background).
    pub fn close_session(&self, session_id: Uuid) {
        let me = self.clone();
        tokio::spawn(async move {
            let r = me
                .call(|base| {
                    me.http
                        .delete(format!("{base}{}", session_path(session_id)))
                })
                .await;
            if let Err(e) = r {
                tracing::debug!(session_id = %session_id, error = %e, "router close failed");
            }
        });
    }
}
