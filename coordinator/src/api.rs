//! HTTP handlers. Public API under `/api/v1/mpc` (API key + allowlist);
//! internal API under `/internal/v1` (party reports are authenticated by the
//! party's signature, party registration by the internal token).

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use party_core::identity::PartyPublicKey;
use party_core::wire::SignedReport;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::{AppError, StrictJson, StrictQuery};
use crate::service::Created;
use crate::Coordinator;
use mpc_api::rest::{KeygenRequest, SessionKind, SignRequest};

/// The whole application.
pub fn app(c: Coordinator) -> Router {
    let limit = c.config().max_body_bytes;
    let public = Router::new()
        .route("/api/v1/mpc/keygen", post(keygen))
        .route("/api/v1/mpc/sign", post(sign))
        .route("/api/v1/mpc/sessions/{id}", get(session))
        .route("/api/v1/mpc/accounts", get(accounts))
        .route("/api/v1/mpc/accounts/{id}", get(account))
        .route_layer(middleware::from_fn_with_state(
            c.clone(),
            crate::auth::require_api_key,
        ));
    // Device parties authenticate with their join token and identity key.
    let device = Router::new().route("/api/v1/mpc/sessions/{id}/join", post(device_join));
    let internal = Router::new()
        .route("/internal/v1/reports", post(report))
        .route("/internal/v1/parties", post(register_party));
    let gated = public
        .merge(device)
        .merge(internal)
        .route_layer(middleware::from_fn_with_state(c.clone(), require_ready));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .merge(gated)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(c)
}

/// Liveness: the process serves HTTP.
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "service": "coordinator", "status": "healthy" }))
}

/// Readiness: started up and the database answers now.
async fn ready(State(c): State<Coordinator>) -> (StatusCode, Json<serde_json::Value>) {
    let database = c.is_ready() && c.store().db().ping().await;
    let status = if database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({
            "service": "coordinator",
            "ready": database,
            "database": if database { "up" } else { "down" },
        })),
    )
}

/// 503 `not_ready` until start-up has finished.
async fn require_ready(
    State(c): State<Coordinator>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Result<axum::response::Response, AppError> {
    if c.is_ready() {
        Ok(next.run(req).await)
    } else {
        Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the coordinator is starting: its database is not ready yet",
        ))
    }
}

fn created_json(c: &Created) -> serde_json::Value {
    let tokens: serde_json::Map<String, serde_json::Value> = c
        .device_tokens
        .iter()
        .map(|(p, t)| (p.clone(), serde_json::Value::String(t.clone())))
        .collect();
    serde_json::json!({
        "session_id": c.row.session_id,
        "session_type": c.row.kind,
        "threshold_n": c.row.threshold_n,
        "threshold_t": c.row.threshold_t,
        "status": c.row.status,
        "account_id": c.row.account_id,
        "join_tokens": tokens,
        "signing": if c.row.kind == SessionKind::Sign { Some(if c.presignature { "presignature" } else { "full" }) } else { None },
        "expires_at": c.row.expires_at,
    })
}

async fn keygen(
    State(c): State<Coordinator>,
    StrictJson(req): StrictJson<KeygenRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let created = c.create_keygen(req).await?;
    Ok((StatusCode::CREATED, Json(created_json(&created))))
}

async fn sign(
    State(c): State<Coordinator>,
    StrictJson(req): StrictJson<SignRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let created = c.create_sign(req).await?;
    Ok((StatusCode::CREATED, Json(created_json(&created))))
}

fn parse_id(id: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(id).map_err(|_| AppError::not_found("session"))
}

/// `?wait_ms=N` (at most 30 000): answer once the session has ended, or
/// after N ms, whichever comes first (long poll).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionQuery {
    wait_ms: Option<u64>,
}

/// Longest long poll.
const MAX_WAIT_MS: u64 = 30_000;
/// How often a long poll re-reads the database (sessions another coordinator
/// instance ends do not wake this one).
const LONG_POLL_RECHECK: std::time::Duration = std::time::Duration::from_millis(50);

async fn session(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
    StrictQuery(q): StrictQuery<SessionQuery>,
) -> Result<Json<serde_json::Value>, AppError> {
    let id = parse_id(&id)?;
    let mut ended = c.store().subscribe_ended();
    let mut s = c
        .store()
        .session(id)
        .await?
        .ok_or_else(|| AppError::not_found("session"))?;
    if let Some(wait) = q.wait_ms.filter(|w| *w > 0) {
        let deadline =
            tokio::time::Instant::now() + std::time::Duration::from_millis(wait.min(MAX_WAIT_MS));
        while !s.status.is_terminal() && tokio::time::Instant::now() < deadline {
            tokio::select! {
                got = ended.recv() => {
                    if matches!(got, Ok(ended_id) if ended_id != id) {
                        continue;
                    }
                }
                _ = tokio::time::sleep(LONG_POLL_RECHECK) => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
            s = c
                .store()
                .session(id)
                .await?
                .ok_or_else(|| AppError::not_found("session"))?;
        }
    }
    let parts = c.store().participants(id).await?;
    let completed = parts.iter().filter(|p| p.result.is_some()).count();
    let mut body = serde_json::json!({
        "session_id": s.session_id,
        "session_type": s.kind,
        "status": s.status,
        "threshold_t": s.threshold_t,
        "threshold_n": s.threshold_n,
        "total_parties": parts.len(),
        "joined_parties": parts.iter().filter(|p| p.joined).count(),
        "completed_parties": completed,
        "account_id": s.account_id,
        "generates_aux_info": s.generate_aux,
        "created_at": s.created_at,
        "expires_at": s.expires_at,
        "parties": parts.iter().map(|p| serde_json::json!({
            "party_id": p.party_id,
            "position": p.position,
            "device_type": p.device_type,
            "joined": p.joined,
            "done": p.result.is_some(),
            "progress": p.progress,
        })).collect::<Vec<_>>(),
    });
    if let Some(h) = &s.message_hash {
        body["message_hash"] = serde_json::json!(format!("0x{}", hex::encode(h)));
    }
    if let Some(r) = s.result {
        body["result"] = serde_json::to_value(r).map_err(AppError::internal)?;
    }
    if let Some(e) = s.error {
        body["error"] = serde_json::json!({ "reason": e, "blamed_party": s.blamed_party });
    }
    Ok(Json(body))
}

async fn account(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, AppError> {
    let a = c
        .store()
        .account(&id)
        .await?
        .ok_or_else(|| AppError::not_found("account"))?;
    Ok(Json(account_json(&a)))
}

fn account_json(a: &crate::store::Account) -> serde_json::Value {
    serde_json::json!({
        "account_id": a.account_id,
        "public_key": a.public_key,
        "address": a.address,
        "threshold_t": a.threshold_t,
        "threshold_n": a.threshold_n,
        "parties": a.parties.iter().map(|p| serde_json::json!({
            "party_id": p.party_id, "keygen_index": p.keygen_index
        })).collect::<Vec<_>>(),
        "keygen_session_id": a.keygen_session_id,
        "created_at": a.created_at,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<i64>,
}

async fn accounts(
    State(c): State<Coordinator>,
    StrictQuery(q): StrictQuery<ListQuery>,
) -> Result<Json<serde_json::Value>, AppError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let list = c.store().accounts(limit).await?;
    Ok(Json(serde_json::json!({
        "accounts": list.iter().map(account_json).collect::<Vec<_>>(),
    })))
}

async fn report(
    State(c): State<Coordinator>,
    StrictJson(signed): StrictJson<SignedReport>,
) -> Result<StatusCode, AppError> {
    c.apply_report(signed).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterParty {
    party_id: String,
    device_type: String,
    identity: PartyPublicKey,
}

async fn register_party(
    State(c): State<Coordinator>,
    headers: HeaderMap,
    StrictJson(req): StrictJson<RegisterParty>,
) -> Result<StatusCode, AppError> {
    crate::auth::check_internal(&c, &headers)?;
    c.register_party(&req.party_id, &req.device_type, req.identity)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn device_join(
    State(c): State<Coordinator>,
    Path(id): Path<String>,
    StrictJson(req): StrictJson<crate::service::DeviceJoin>,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let id = Uuid::parse_str(&id).map_err(|_| {
        AppError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "join token is not valid for this session",
        )
    })?;
    Ok(match c.device_join(id, req).await? {
        crate::service::Joined::Ready {
            descriptor,
            position,
        } => (
            StatusCode::OK,
            Json(serde_json::json!({
                "session_id": id,
                "status": "ready",
                "position": position,
                "descriptor": descriptor,
            })),
        ),
        crate::service::Joined::WaitingForDevices => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({
                "session_id": id,
                "status": "waiting_for_devices",
            })),
        ),
    })
}
