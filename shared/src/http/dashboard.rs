//! The web dashboard (source in `web/`, built bundle committed in `web/dist`), embedded in the
//! binary so that `cargo run` serves it at `/` without Node. It talks only to the public JSON
//! API, like any other client. Served by the auth group: on AWS from the same HTTP API as
//! `/api`, so it needs no CORS.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorEnvelope;
use crate::error::ApiError;
use crate::state::AppState;

static DIST: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../web/dist");

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(index)).routes(routes!(asset))
}

/// The page may load its own scripts and styles only, and never be framed.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

fn file(path: &str, cache: &'static str) -> Response {
    match DIST.get_file(path) {
        Some(f) => {
            let mut resp = (StatusCode::OK, f.contents()).into_response();
            let headers = resp.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
            headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            resp
        }
        None => ApiError::not_found(format!("no dashboard file {path}")).into_response(),
    }
}

/// The dashboard.
#[utoipa::path(get, path = "/", tag = "dashboard", responses((status = 200, description = "The dashboard's page", content_type = "text/html")))]
async fn index() -> Response {
    // Always checked again: it names the current bundle's files.
    file("index.html", "no-cache")
}

/// One of the dashboard's bundled files (their names carry their content's hash).
#[utoipa::path(get, path = "/assets/{file}", tag = "dashboard", params(("file" = String, Path)),
    responses((status = 200, description = "A script, style sheet or image", content_type = "application/octet-stream"), (status = 404, body = ErrorEnvelope)))]
async fn asset(Path(file_name): Path<String>) -> Response {
    file(&format!("assets/{file_name}"), "public, max-age=31536000, immutable")
}
