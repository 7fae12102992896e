//! A small client of the REST API, used by the `mpc` subcommands and tests.

use std::time::Duration;

use anyhow::Context as _;
use mpc_api::admin::{
    ApiKeyCreate, ApiKeyCreated, ApiKeyList, ApiKeyView, PartyEnrol, PartyEnrolment,
    PartyEnrolmentList,
};
use mpc_api::error::ErrorBody;
use mpc_api::rest::{AccountView, KeygenRequest, SessionCreated, SessionView, SignRequest};
use serde_json::Value;

/// `s` as one URL path segment: every byte but `A-Z a-z 0-9 - . _ ~`
/// percent-encoded.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// REST API client.
#[derive(Clone)]
pub struct Client {
    base: String,
    api_key: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// An HTTP answer: status and JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// JSON body (`Null` when empty).
    pub body: Value,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`) with an API key;
    /// an `https://` server must present a certificate of a public CA (the
    /// Mozilla roots).
    pub fn new(base: &str, api_key: &str) -> Self {
        let tls = mpc_tls::client_config(None).ok();
        Self::build(base, api_key, tls)
    }

    /// [`Client::new`] trusting only the CAs of `tls` (`--tls-ca`).
    pub fn with_tls(base: &str, api_key: &str, tls: std::sync::Arc<mpc_tls::ClientConfig>) -> Self {
        Self::build(base, api_key, Some(tls))
    }

    fn build(
        base: &str,
        api_key: &str,
        tls: Option<std::sync::Arc<mpc_tls::ClientConfig>>,
    ) -> Self {
        let mut http = reqwest::Client::builder();
        if let Some(tls) = tls {
            http = http.use_preconfigured_tls((*tls).clone());
        }
        Self {
            base: base.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            http: http.build().unwrap_or_default(),
        }
    }

    async fn answer(resp: reqwest::Response) -> anyhow::Result<Answer> {
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Answer { status, body })
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header("X-API-Key", &self.api_key)
            .send()
            .await
            .context("API unreachable")?;
        Self::answer(resp).await
    }

    /// DELETE `path`.
    pub async fn delete(&self, path: &str) -> anyhow::Result<Answer> {
        let resp = self
            .http
            .delete(format!("{}{path}", self.base))
            .header("X-API-Key", &self.api_key)
            .send()
            .await
            .context("API unreachable")?;
        Self::answer(resp).await
    }

    /// PUT a typed request (an `mpc-api` type) to `path`.
    pub async fn put_typed<T: serde::Serialize>(
        &self,
        path: &str,
        body: &T,
    ) -> anyhow::Result<Answer> {
        let resp = self
            .http
            .put(format!("{}{path}", self.base))
            .header("X-API-Key", &self.api_key)
            .header("Content-Type", "application/json")
            .body(serde_json::to_string(body)?)
            .send()
            .await
            .context("API unreachable")?;
        Self::answer(resp).await
    }

    /// POST `body` (raw JSON text) to `path`.
    pub async fn post_raw(&self, path: &str, body: String) -> anyhow::Result<Answer> {
        self.post_raw_with(path, body, &[]).await
    }

    /// POST JSON to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        self.post_raw(path, body.to_string()).await
    }

    /// POST a typed request (an `mpc-api` type) to `path`.
    pub async fn post_typed<T: serde::Serialize>(
        &self,
        path: &str,
        body: &T,
    ) -> anyhow::Result<Answer> {
        self.post_raw_with(path, serde_json::to_string(body)?, &[])
            .await
    }

    /// POST JSON to `path` with extra headers (`Idempotency-Key`, `Prefer`).
    pub async fn post_with(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Answer> {
        self.post_raw_with(path, body.to_string(), headers).await
    }

    /// POST raw JSON text to `path` with extra headers.
    pub async fn post_raw_with(
        &self,
        path: &str,
        body: String,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Answer> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("X-API-Key", &self.api_key)
            .header("Content-Type", "application/json")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Self::answer(req.send().await.context("API unreachable")?).await
    }

    async fn typed<T: serde::de::DeserializeOwned>(a: Answer, want: &[u16]) -> anyhow::Result<T> {
        if !want.contains(&a.status) {
            match serde_json::from_value::<ErrorBody>(a.body.clone()) {
                Ok(e) => anyhow::bail!("HTTP {} {}: {}", a.status, e.code, e.error),
                Err(_) => anyhow::bail!("HTTP {}: {}", a.status, a.body),
            }
        }
        serde_json::from_value(a.body).context("unexpected answer")
    }

    /// `POST /keygen`, waiting up to `wait` for the keygen to end.
    pub async fn keygen(
        &self,
        req: &KeygenRequest,
        wait: Duration,
    ) -> anyhow::Result<SessionCreated> {
        let path = format!("/api/v1/mpc/keygen?wait_ms={}", wait.as_millis());
        let a = self.post_typed(&path, req).await?;
        Self::typed(a, &[200, 201]).await
    }

    /// `POST /sign`, waiting up to `wait` for the signing to end.
    pub async fn sign(&self, req: &SignRequest, wait: Duration) -> anyhow::Result<SessionCreated> {
        let path = format!("/api/v1/mpc/sign?wait_ms={}", wait.as_millis());
        let a = self.post_typed(&path, req).await?;
        Self::typed(a, &[200, 201]).await
    }

    /// `GET /sessions/{id}`, waiting up to `wait` for it to end.
    pub async fn session(&self, id: &str, wait: Duration) -> anyhow::Result<SessionView> {
        let a = self
            .get(&format!(
                "/api/v1/mpc/sessions/{id}?wait_ms={}",
                wait.as_millis()
            ))
            .await?;
        Self::typed(a, &[200]).await
    }

    /// `GET /accounts/{id}`.
    pub async fn account(&self, id: &str) -> anyhow::Result<AccountView> {
        let a = self.get(&format!("/api/v1/mpc/accounts/{id}")).await?;
        Self::typed(a, &[200]).await
    }

    /// `POST /admin/keys`: a new API key (shown in this answer only).
    pub async fn create_key(&self, req: &ApiKeyCreate) -> anyhow::Result<ApiKeyCreated> {
        let a = self.post_typed("/api/v1/mpc/admin/keys", req).await?;
        Self::typed(a, &[201]).await
    }

    /// `GET /admin/keys[?tenant=T]`.
    pub async fn list_keys(&self, tenant: Option<&str>) -> anyhow::Result<ApiKeyList> {
        let path = match tenant {
            Some(t) => format!("/api/v1/mpc/admin/keys?tenant={t}"),
            None => "/api/v1/mpc/admin/keys".to_string(),
        };
        let a = self.get(&path).await?;
        Self::typed(a, &[200]).await
    }

    /// `DELETE /admin/keys/{id}`.
    pub async fn revoke_key(&self, id: &str) -> anyhow::Result<ApiKeyView> {
        let a = self.delete(&format!("/api/v1/mpc/admin/keys/{id}")).await?;
        Self::typed(a, &[200]).await
    }

    /// `PUT /admin/parties/{party_id}`: enrols a server party's identity key.
    pub async fn enrol_party(
        &self,
        party_id: &str,
        req: &PartyEnrol,
    ) -> anyhow::Result<PartyEnrolment> {
        let path = format!("/api/v1/mpc/admin/parties/{}", path_segment(party_id));
        let a = self.put_typed(&path, req).await?;
        Self::typed(a, &[200]).await
    }

    /// `GET /admin/parties`.
    pub async fn list_enrolments(&self) -> anyhow::Result<PartyEnrolmentList> {
        let a = self.get("/api/v1/mpc/admin/parties").await?;
        Self::typed(a, &[200]).await
    }

    /// `DELETE /admin/parties/{party_id}`.
    pub async fn revoke_enrolment(&self, party_id: &str) -> anyhow::Result<PartyEnrolment> {
        let path = format!("/api/v1/mpc/admin/parties/{}", path_segment(party_id));
        let a = self.delete(&path).await?;
        Self::typed(a, &[200]).await
    }

    /// Creates a session (`POST path`) and waits until it is terminal; returns
    /// the final session view.
    pub async fn run_session(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
        on_change: impl FnMut(&Value),
    ) -> anyhow::Result<Value> {
        let created = self.post(path, body).await?;
        anyhow::ensure!(
            created.status == 201,
            "HTTP {}: {}",
            created.status,
            created.body
        );
        let id = created.body["session_id"]
            .as_str()
            .context("no session_id in the answer")?
            .to_string();
        self.wait_session(&id, timeout, on_change).await
    }

    /// Follows a session until it is terminal (or `timeout`), calling
    /// `on_change` whenever its status or progress changes.
    pub async fn wait_session(
        &self,
        session_id: &str,
        timeout: Duration,
        mut on_change: impl FnMut(&Value),
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = Value::Null;
        loop {
            // Long poll: the coordinator answers as soon as the session
            // ends, or after a second to show progress.
            let a = self
                .get(&format!("/api/v1/mpc/sessions/{session_id}?wait_ms=1000"))
                .await?;
            anyhow::ensure!(a.status == 200, "session lookup failed: {}", a.body);
            let view =
                serde_json::json!({ "status": a.body["status"], "parties": a.body["parties"] });
            if view != last {
                on_change(&a.body);
                last = view;
            }
            let status = a.body["status"].as_str().unwrap_or_default();
            if matches!(status, "completed" | "failed" | "expired") {
                return Ok(a.body);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for session {session_id}"
            );
        }
    }
}

/// One line describing a session's progress.
pub fn progress_line(s: &Value) -> String {
    let parties: Vec<String> = s["parties"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let state = if p["done"].as_bool() == Some(true) {
                        "done".to_string()
                    } else if let Some(stage) = p["progress"]["stage"].as_str() {
                        match p["progress"]["percent"].as_u64() {
                            Some(pc) => format!("{stage} {pc}%"),
                            None => format!("{stage} round {}", p["progress"]["round"]),
                        }
                    } else if p["joined"].as_bool() == Some(true) {
                        "joined".into()
                    } else {
                        "invited".into()
                    };
                    format!("{}: {state}", p["party_id"].as_str().unwrap_or("?"))
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "[{}] {}",
        s["status"].as_str().unwrap_or("?"),
        parties.join(", ")
    )
}
