//! Calls to the router's internal API.

use party_core::identity::PartyPublicKey;
use party_core::wire::Invitation;
use serde::Serialize;
use uuid::Uuid;

/// A client of the router's internal API.
#[derive(Clone)]
pub struct RouterClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for RouterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A participant slot registered with the router.
#[derive(Debug, Serialize)]
pub struct Slot {
    /// Position in the session.
    pub position: u16,
    /// SHA-256 of the join token, hex.
    pub token_sha256: String,
    /// The identity the slot is bound to, if known.
    pub identity: Option<PartyPublicKey>,
}

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

impl RouterClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8081`).
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: &serde_json::Value) -> Result<(), RouterError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("X-Internal-Token", &self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| RouterError::Unreachable(e.without_url().to_string()))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(RouterError::Refused(resp.status().as_u16()))
        }
    }

    /// Registers a session's slots.
    pub async fn register_session(
        &self,
        session_id: Uuid,
        expires_at: u64,
        slots: Vec<Slot>,
    ) -> Result<(), RouterError> {
        self.post(
            "/internal/v1/sessions",
            &serde_json::json!({ "session_id": session_id, "expires_at": expires_at, "participants": slots }),
        )
        .await
    }

    /// Sends an invitation to a server party's control connection.
    pub async fn invite(
        &self,
        identity: &PartyPublicKey,
        invitation: &Invitation,
    ) -> Result<(), RouterError> {
        self.post(
            "/internal/v1/invitations",
            &serde_json::json!({ "identity_ed25519": hex::encode(identity.ed25519), "invitation": invitation }),
        )
        .await
    }

    /// Tells the router a session ended (best effort, in the background).
    pub fn close_session(&self, session_id: Uuid) {
        let me = self.clone();
        tokio::spawn(async move {
            let r = me
                .http
                .delete(format!("{}/internal/v1/sessions/{session_id}", me.base))
                .header("X-Internal-Token", &me.token)
                .send()
                .await;
            if let Err(e) = r {
                tracing::debug!(session_id = %session_id, error = %e.without_url(), "router close failed");
            }
        });
    }
}
