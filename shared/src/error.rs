//! The one error type of the API. Every failure on every path becomes
//! `{"error": {"code", "message", "param", "request_id", "type"}}` (the self-service seed's
//! envelope) with a fitting status, and the request id is the same as the `x-request-id` header.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

tokio::task_local! {
    /// Set by the request-id middleware for the whole life of a request, so an error built
    /// anywhere below it can name the request without the id being threaded through every call.
    pub static REQUEST_ID: String;
}

/// The current request's id, or a fresh one outside a request (tests, background work).
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_else(|_| uuid::Uuid::new_v4().to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or a value is out of range; `param` names the field when known.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String, param: Option<String> },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{message}")]
    TooManyRequests { code: &'static str, message: String, retry_after_secs: u64 },
    /// A budget has no room for the request (`budget_exceeded`).
    #[error("{0}")]
    BudgetExceeded(String),
    #[error("{message}")]
    Status { status: StatusCode, code: &'static str, message: String },
    /// Something broke on our side. The detail is logged, never sent: it may name internals.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest { code, message: message.into(), param: None }
    }
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self::BadRequest { code: "invalid_value", message: message.into(), param: Some(param.to_string()) }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized(message.into())
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden { code, message: message.into() }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict { code, message: message.into() }
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }
    /// Not authenticated, with a code of its own (`invalid_api_key`, ...).
    pub fn unauthorized_as(code: &'static str, message: impl Into<String>) -> Self {
        Self::Status { status: StatusCode::UNAUTHORIZED, code, message: message.into() }
    }
    /// Nothing there, with a code of its own (`model_not_found`, ...).
    pub fn not_found_as(code: &'static str, message: impl Into<String>) -> Self {
        Self::Status { status: StatusCode::NOT_FOUND, code, message: message.into() }
    }
    /// Nothing can serve the request now (`no_route`).
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Status { status: StatusCode::SERVICE_UNAVAILABLE, code, message: message.into() }
    }
    /// An upstream failure as the caller sees it: `status` is what the upstream answered (a 4xx
    /// of its own is passed on), 502 when it failed otherwise, 504 when it did not answer.
    pub fn upstream(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self::Status { status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), code, message: message.into() }
    }

    /// Whether this error carries `code`.
    pub fn is(&self, code: &str) -> bool {
        self.code() == code
    }

    /// The HTTP status it is answered with, as a number (what usage records keep).
    pub fn status_code(&self) -> u16 {
        self.status().as_u16()
    }

    /// The parameter a bad request names, if any.
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::BadRequest { param, .. } => param.as_deref(),
            _ => None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BudgetExceeded(_) => StatusCode::PAYMENT_REQUIRED,
            Self::Status { status, .. } => *status,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Forbidden { code, .. }
            | Self::Conflict { code, .. }
            | Self::TooManyRequests { code, .. }
            | Self::Status { code, .. } => code,
            Self::Unauthorized(_) => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::BudgetExceeded(_) => "budget_exceeded",
            Self::Internal(_) => "internal_error",
        }
    }

    /// The OpenAI `type` for this status.
    fn kind(&self) -> &'static str {
        match self.status().as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            429 => "rate_limit_error",
            500..=599 => "api_error",
            _ => "invalid_request_error",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::InvalidCursor => ApiError::invalid_param("cursor", "cursor is not one this API returned; drop it to start from the beginning"),
            other => ApiError::internal(other),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    pub request_id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "The server failed to handle this request; it has been logged. Retry, and report the request_id if it persists.".to_string()
            }
            other => other.to_string(),
        };
        let param = match &self {
            Self::BadRequest { param, .. } => param.clone(),
            _ => None,
        };
        let body = ErrorEnvelope {
            error: ErrorBody { code: self.code().to_string(), message, param, request_id: current_request_id(), kind: self.kind().to_string() },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::TooManyRequests { retry_after_secs, .. } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
