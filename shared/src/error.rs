//! The one error type of the API: what failed, by meaning, with the status it is answered
//! with as a number. `http::error` alone turns it into a response (the envelope).

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
    /// The gateway is at capacity (`overloaded`, 503 with `retry-after`; see `admission`).
    #[error("{message}")]
    Overloaded { message: String, retry_after_secs: u64 },
    /// A budget has no room for the request (`budget_exceeded`).
    #[error("{0}")]
    BudgetExceeded(String),
    #[error("{message}")]
    Status { status: u16, code: &'static str, message: String },
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
        Self::Status { status: 401, code, message: message.into() }
    }
    /// Nothing there, with a code of its own (`model_not_found`, ...).
    pub fn not_found_as(code: &'static str, message: impl Into<String>) -> Self {
        Self::Status { status: 404, code, message: message.into() }
    }
    /// Nothing can serve the request now (`no_route`).
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::Status { status: 503, code, message: message.into() }
    }
    /// An upstream failure as the caller sees it: `status` is what the upstream answered (a 4xx
    /// of its own is passed on), 502 when it failed otherwise, 504 when it did not answer.
    pub fn upstream(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self::Status { status: if (400..600).contains(&status) { status } else { 502 }, code, message: message.into() }
    }

    /// Whether this error carries `code`.
    pub fn is(&self, code: &str) -> bool {
        self.code() == code
    }

    /// The parameter a bad request names, if any.
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::BadRequest { param, .. } => param.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status it is answered with, as a number (what usage records keep).
    pub fn status_code(&self) -> u16 {
        match self {
            Self::BadRequest { .. } => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden { .. } => 403,
            Self::NotFound(_) => 404,
            Self::Conflict { .. } => 409,
            Self::TooManyRequests { .. } => 429,
            Self::BudgetExceeded(_) => 402,
            Self::Overloaded { .. } => 503,
            Self::Status { status, .. } => *status,
            Self::Internal(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Forbidden { code, .. }
            | Self::Conflict { code, .. }
            | Self::TooManyRequests { code, .. }
            | Self::Status { code, .. } => code,
            Self::Unauthorized(_) => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::BudgetExceeded(_) => "budget_exceeded",
            Self::Overloaded { .. } => "overloaded",
            Self::Internal(_) => "internal_error",
        }
    }

    /// The OpenAI `type` for this status.
    pub fn kind(&self) -> &'static str {
        match self.status_code() {
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

pub type ApiResult<T> = Result<T, ApiError>;
