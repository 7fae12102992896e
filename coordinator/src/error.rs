//! One error type for every handler: a status, a stable code and a message
//! that never carries internals or secrets.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::service::ServiceError;
use crate::store::StoreError;

/// An API error: `{"error": message, "code": code}` with `status`.
#[derive(Debug)]
pub struct AppError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

impl AppError {
    /// 400
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// 404
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    /// Any status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// With a `Retry-After: secs` header.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
    /// The status and code of `code` (`mpc_api::error::ErrorCode`).
    pub fn code(code: mpc_api::error::ErrorCode, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code.as_str(),
            message,
        )
    }
    /// 500, logging the real cause and returning a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut res = (
            self.status,
            Json(serde_json::json!({ "error": self.message, "code": self.code })),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        res
    }
}

/// `Retry-After` of `too_many_sessions`: a session takes seconds.
const TOO_MANY_SESSIONS_RETRY_AFTER: u64 = 5;

/// `Retry-After` of `aux_info_in_progress`: aux info generation takes tens
/// of seconds (minutes when primes must be generated first).
const AUX_INFO_IN_PROGRESS_RETRY_AFTER: u64 = 15;

impl From<mpc_db::sqlx::Error> for AppError {
    fn from(e: mpc_db::sqlx::Error) -> Self {
        Self::internal(e)
    }
}

/// The service's refusal, answered with its code's status.
impl From<ServiceError> for AppError {
    fn from(e: ServiceError) -> Self {
        let retry_after = match e.code {
            mpc_api::error::ErrorCode::TooManySessions => Some(TOO_MANY_SESSIONS_RETRY_AFTER),
            mpc_api::error::ErrorCode::AuxInfoInProgress => Some(AUX_INFO_IN_PROGRESS_RETRY_AFTER),
            _ => None,
        };
        let err = Self::new(
            StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.code.as_str(),
            e.message,
        );
        match retry_after {
            Some(secs) => err.with_retry_after(secs),
            None => err,
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

/// `Json<T>` whose rejections are [`AppError`]s: 413 for an oversized body,
/// 415 without a JSON content type, 400 for malformed JSON or unknown fields.
#[derive(Debug)]
pub struct StrictJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for StrictJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(StrictJson(v)),
            Err(rejection) => Err(match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => AppError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body too large",
                ),
                StatusCode::UNSUPPORTED_MEDIA_TYPE => AppError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "expected Content-Type: application/json",
                ),
                _ => AppError::bad_request("invalid_json", rejection.body_text()),
            }),
        }
    }
}

/// `Query<T>` whose rejection is a JSON [`AppError`] (400 `invalid_query`).
#[derive(Debug)]
pub struct StrictQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for StrictQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| StrictQuery(v))
            .map_err(|r| AppError::bad_request("invalid_query", r.body_text()))
    }
}
