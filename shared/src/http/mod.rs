//! The HTTP surface: one Router per resource group, the path -> group map, and the layers
//! every group shares (`edge`: request ids, envelopes for every error, connections closed
//! after unread bodies, panics caught; envelopes for unknown routes; body limits).

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod dashboard;
pub mod dynamic_providers;
pub mod edge;
pub mod error;
pub mod extract;
pub mod integrations;
pub mod me;
pub mod models;
pub mod oidc;
pub mod ops;
pub mod project_tokens;
pub mod projects;
pub mod proxy;
pub mod scim;
pub mod scim_admin;
pub mod settings;
pub mod tokens;
pub mod usage;
pub mod usage_export;
pub mod usage_records;
pub mod usage_views;
pub mod wire;
pub mod workspaces;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::middleware;
use axum::response::IntoResponse;
use tower::Layer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;

/// The resource groups; each is one Lambda function in AWS. This enum and `Group::routes` are
/// the one place that maps a path to its group: the SAM template and the local server are both
/// checked against it (tests/routes.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    Auth,
    Tokens,
    Members,
    Providers,
    Usage,
    Proxy,
}

impl Group {
    pub const ALL: [Group; 6] = [Group::Auth, Group::Tokens, Group::Members, Group::Providers, Group::Usage, Group::Proxy];

    pub fn name(self) -> &'static str {
        match self {
            Group::Auth => "auth",
            Group::Tokens => "tokens",
            Group::Members => "members",
            Group::Providers => "providers",
            Group::Usage => "usage",
            Group::Proxy => "proxy",
        }
    }

    /// The group's routes with their OpenAPI descriptions. Groups whose issue has not landed
    /// yet serve nothing.
    pub fn routes(self) -> OpenApiRouter<AppState> {
        match self {
            Group::Auth => auth::routes()
                .merge(oidc::routes())
                .merge(me::routes())
                .merge(settings::routes())
                .merge(audit::routes())
                .merge(dashboard::routes())
                .merge(scim::routes())
                .merge(scim_admin::routes())
                .routes(routes!(openapi_json)),
            Group::Tokens => api_keys::routes().merge(tokens::routes()).merge(project_tokens::routes()),
            Group::Providers => models::routes().merge(dynamic_providers::routes()).merge(integrations::routes()),
            Group::Usage => usage::routes().merge(usage_records::routes()).merge(usage_views::routes()).merge(usage_export::routes()),
            Group::Proxy => proxy::routes(),
            Group::Members => workspaces::routes().merge(projects::routes()),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tollgate",
        description = "LLM gateway: admin API and OpenAI-compatible proxy. Every error is {\"error\": {code, message, param, request_id, type}}."
    ),
    components(schemas(error::ErrorEnvelope))
)]
struct ApiDoc;

/// The OpenAPI document of every group.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut router = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi());
    for group in Group::ALL {
        router = router.merge(group.routes());
    }
    router.into_openapi()
}

/// This API's OpenAPI 3.1 document, generated from the handlers.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses((status = 200, body = Object)))]
async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(openapi())
}

/// The Router serving `groups`, with the shared layers.
pub fn app(state: AppState, groups: &[Group]) -> Router {
    let mut router = OpenApiRouter::<AppState>::new();
    for group in groups {
        router = router.merge(group.routes());
    }
    let (router, _) = router.split_for_parts();
    let routes = router
        .merge(ops::routes())
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        // The one layer around each route (it reads the route matched, so it runs after
        // routing); around the fallbacks too: an unknown route is counted as `unmatched`. It
        // catches panics as well: every layer `Router::layer` adds boxes each route again, and
        // each request then clones every box below it (with the body limit and a panic layer
        // here too, a proxied request made 13 more allocations: `scripts/bench-allocations`).
        .layer(middleware::from_fn_with_state(state.clone(), edge::edge))
        .with_state(state);
    // The body limit applies to every route alike: set once around the whole router.
    Router::new().fallback_service(DefaultBodyLimit::max(extract::MAX_BODY_BYTES).layer(routes))
}

/// The gateway's public URL as an operator set it: the settings' `publicUrl`, else
/// `TOLLGATE_PUBLIC_URL`.
async fn configured_public_url(state: &AppState) -> crate::error::ApiResult<Option<String>> {
    Ok(crate::settings::get(state.store.as_ref()).await?.public_url.or_else(|| state.config.public_url.clone()))
}

/// The gateway's own public URL, which invite links and the single sign-on redirect URI must
/// stay on: the configured one, else the local server's own address.
async fn public_url(state: &AppState) -> crate::error::ApiResult<reqwest::Url> {
    let text = configured_public_url(state).await?.unwrap_or_else(|| format!("http://{}/", state.config.listen));
    reqwest::Url::parse(&text).map_err(|e| ApiError::internal(format!("the gateway's public URL {text:?} is not a URL: {e}")))
}

/// SCIM clients read errors in SCIM's shape, unknown paths under `/scim/` included.
fn is_scim(uri: &Uri) -> bool {
    uri.path().starts_with("/scim/")
}

async fn unknown_route(method: Method, uri: Uri) -> axum::response::Response {
    if is_scim(&uri) {
        return scim::unknown(404, format!("no SCIM endpoint {method} {}; the resources are /Users and /Groups", uri.path()));
    }
    ApiError::Status { status: 404, code: "unknown_route", message: format!("no route for {method} {}; GET /openapi.json lists every route", uri.path()) }
        .into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> axum::response::Response {
    if is_scim(&uri) {
        return scim::unknown(405, format!("{} does not accept {method}", uri.path()));
    }
    ApiError::Status {
        status: 405,
        code: "method_not_allowed",
        message: format!("{} does not accept {method}; GET /openapi.json lists the methods of every route", uri.path()),
    }
    .into_response()
}
