//! What every request passes on its way in and out, before and after any handler: a request id,
//! the error envelope for answers that layers below the handlers produce in plain text, and
//! `Connection: close` when an answer leaves part of the request body unread.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use http_body::{Frame, SizeHint};

use crate::error::{ApiError, REQUEST_ID};
use crate::state::AppState;

/// Gives every request an id, visible to errors built below (through `REQUEST_ID`) and
/// returned as `x-request-id`; puts answers that are not yet envelopes into one; and closes
/// the connection after an answer that left the request body unread.
///
/// It also counts and times the answer (`ops`), and runs a mutating admin request in its audit
/// scope (`audit`): one layer for all of it, since each layer around every route costs every
/// request a copy of its future.
pub async fn edge(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Time-ordered (v7): keys made from request ids sort by time, so they land next to each
    // other in the store's B-tree instead of touching a random page each.
    let id = uuid::Uuid::now_v7().to_string();
    let seen = super::ops::seen(&state, &request);
    let audit = super::audit::scope_for(&state, &request, &id);
    let (request, body_read) = track_body(request);
    let run = async move {
        match audit {
            // Boxed: only admin changes have an audit scope, and inline its future would make
            // every request's larger.
            Some(scope) => Box::pin(crate::audit::context::scoped(scope, async move { envelope(guarded(next, request).await).await })).await,
            None => envelope(guarded(next, request).await).await,
        }
    };
    let mut response = REQUEST_ID.scope(id.clone(), run).await;
    super::ops::answered(&state, seen, &id, response.status().as_u16());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    // An answer given before the body was read (a 401 ahead of a large upload, a 413) leaves
    // the rest of the body on the wire; the server then drops the connection, and a pooled
    // client that reuses it sees "server disconnected". Saying so lets it open a new one.
    if body_read.is_some_and(|read| !read.load(Ordering::Relaxed)) {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The handler's answer, or a 500 in the envelope if it panicked: the panic is caught here, in
/// the request's scope, so that the answer still carries the request id and is counted.
async fn guarded(next: Next, request: Request) -> Response {
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(_) => ApiError::internal("a handler panicked").into_response(),
    }
}

/// Whether the request has a body to read at all (a length above zero, or chunked).
fn has_body(request: &Request) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()).is_some_and(|n| n > 0)
}

/// Wraps the body of a request that has one, to learn whether it was read to its end.
fn track_body(request: Request) -> (Request, Option<Arc<AtomicBool>>) {
    if !has_body(&request) {
        return (request, None);
    }
    let read = Arc::new(AtomicBool::new(false));
    let (parts, body) = request.into_parts();
    let body = Body::new(Tracked { inner: body, read: read.clone() });
    (Request::from_parts(parts, body), Some(read))
}

struct Tracked {
    inner: Body,
    read: Arc<AtomicBool>,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The code an error status gets when a layer below the handlers answered it in plain text
/// (axum's extractors and body limits).
fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        411 => "length_required",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "invalid_request",
        431 => "headers_too_large",
        500..=599 => "internal_error",
        _ => "error",
    }
}

/// What to fix, for the plain-text answers the layers below give.
fn advice(status: StatusCode, text: &str) -> String {
    match status.as_u16() {
        413 => format!("the body is larger than this path accepts ({text}); send a smaller one"),
        400 if text.contains("UTF-8") || text.contains("utf-8") || text.contains("Invalid URL") => {
            format!("the path is not valid: {text}; percent-encode it as UTF-8")
        }
        _ if text.is_empty() => format!("the request was refused with {status}"),
        _ => text.to_string(),
    }
}

/// Turns an error answer that is not JSON (axum's rejections: a body over its limit, a path
/// that is not UTF-8, ...) into the API's envelope. Our own errors are JSON and pass as they
/// are; so does every success.
async fn envelope(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), 4096).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let error = ApiError::Status { status: status.as_u16(), code: code_for(status), message: advice(status, &text) };
    error.into_response()
}

/// JSON, and SCIM's `application/scim+json` (whose errors have their own shape).
fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("application/scim+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn plain_text_rejections_become_envelopes() {
        let plain = (StatusCode::PAYLOAD_TOO_LARGE, "Failed to buffer the request body").into_response();
        let response = envelope(plain).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body: serde_json::Value = serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 4096).await.unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "payload_too_large");
        assert!(body["error"]["message"].as_str().unwrap().contains("Failed to buffer"));
        let ok = envelope((StatusCode::OK, "fine").into_response()).await;
        assert_eq!(axum::body::to_bytes(ok.into_body(), 64).await.unwrap(), "fine");
    }

    async fn boom() -> &'static str {
        panic!("a bug in a handler")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_in_the_envelope() {
        use tower::ServiceExt;
        let app = axum::Router::new()
            .route("/boom", axum::routing::get(boom))
            .route("/fine", axum::routing::get(|| async { "fine" }))
            .layer(axum::middleware::from_fn(|request: Request, next: Next| guarded(next, request)));
        let call = |path: &'static str| app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap());
        let response = call("/boom").await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body: serde_json::Value = serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 4096).await.unwrap()).unwrap();
        assert_eq!(body["error"]["code"], "internal_error", "{body}");
        let fine = call("/fine").await.unwrap();
        assert_eq!(fine.status(), StatusCode::OK);
    }
}
