//! The one conversion of errors into responses: every failure on every path becomes
//! `{"error": {"code", "message", "param", "request_id", "type"}}` (the self-service seed's
//! envelope) with its status, and the request id is the same as the `x-request-id` header.
//! The Messages door lays the same error out as Anthropic's (`proxy::in_anthropic_shape`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{ApiError, current_request_id};

/// The status an error is answered with.
pub fn status_of(error: &ApiError) -> StatusCode {
    StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
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
        let status = status_of(&self);
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
        if let Self::TooManyRequests { retry_after_secs, .. } | Self::Overloaded { retry_after_secs, .. } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
        }
        response
    }
}
