//! Extractors that turn every malformed request into the error envelope, with a message that
//! says what to fix, and the authenticated caller.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::identity::roles::{self, Permission};
use crate::identity::sessions::{self, Session};
use crate::identity::users::User;
use crate::state::AppState;

/// The largest body the admin API reads.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// `axum::Json`, with its rejections as envelopes.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = is_json(req.headers());
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| json_rejection(JsonRejection::BytesRejection(e)))?;
        if !is_json {
            return Err(unsupported_media_type());
        }
        parse_object(&bytes).map(ApiJson)
    }
}

/// Like `ApiJson`, but an empty body means `T::default()` (for POSTs whose fields are all
/// optional).
pub struct ApiJsonOrEmpty<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for ApiJsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = is_json(req.headers());
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| json_rejection(JsonRejection::BytesRejection(e)))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(ApiJsonOrEmpty(T::default()));
        }
        if !is_json {
            return Err(unsupported_media_type());
        }
        parse_object(&bytes).map(ApiJsonOrEmpty)
    }
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| m.type_() == "application" && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json")))
}

fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would also read a struct from an array (`["a@b.co", "pw"]`); we take objects only.
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        None => return Err(ApiError::bad_request("invalid_json", "the body is empty; send a JSON object")),
        Some(_) => return Err(ApiError::bad_request("invalid_body", "the body must be a JSON object ({...})")),
    }
    axum::Json::<T>::from_bytes(bytes).map(|axum::Json(v)| v).map_err(json_rejection)
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let detail = rejection.body_text();
    let detail = detail.split_once(": ").map_or(detail.as_str(), |(_, rest)| rest).to_string();
    match rejection {
        JsonRejection::JsonDataError(_) => ApiError::BadRequest {
            code: "invalid_body",
            param: field_named_in(&detail),
            message: format!("the JSON body does not have the expected fields and types: {detail}"),
        },
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {detail}")),
        JsonRejection::MissingJsonContentType(_) => unsupported_media_type(),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::Status { status: 413, code: "payload_too_large", message: format!("the body is larger than the {MAX_BODY_BYTES}-byte limit") }
        }
        _ => ApiError::bad_request("invalid_body", format!("the body could not be read: {detail}")),
    }
}

fn unsupported_media_type() -> ApiError {
    ApiError::Status { status: 415, code: "unsupported_media_type", message: "send the body as JSON with the header Content-Type: application/json".into() }
}

/// serde names the offending field in backticks ("missing field `email`", "unknown field `x`").
fn field_named_in(detail: &str) -> Option<String> {
    let start = detail.find("field `")? + "field `".len();
    let len = detail[start..].find('`')?;
    Some(detail[start..start + len].to_string())
}

/// `axum::extract::Query`, with its rejections as envelopes.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state).await.map(|q| ApiQuery(q.0)).map_err(|r: QueryRejection| {
            let detail = r.body_text();
            let detail = detail.split_once(": ").map_or(detail.as_str(), |(_, rest)| rest).to_string();
            ApiError::BadRequest { code: "invalid_query", param: field_named_in(&detail), message: format!("the query string is not valid: {detail}") }
        })
    }
}

/// Parses a path segment that must be a UUID.
pub fn parse_uuid(raw: &str, name: &str) -> ApiResult<Uuid> {
    raw.parse().map_err(|_| ApiError::invalid_param(name, format!("{name} must be a UUID such as 550e8400-e29b-41d4-a716-446655440000, not {raw:?}")))
}

/// The signed-in user behind a session access token.
pub struct Caller {
    pub user: User,
    pub session: Session,
    pub permissions: Vec<Permission>,
}

impl Caller {
    /// 403 unless the caller is a global admin: for what decides who may do anything (the
    /// audit log, single sign-on, provisioning), which no custom role's permissions reach.
    /// `what` says what is theirs alone, as the message's start.
    pub fn require_global_admin(&self, what: &str) -> ApiResult<()> {
        if self.user.role == "admin" { Ok(()) } else { Err(ApiError::forbidden("admin_required", format!("{what} for global admins"))) }
    }

    /// 403 unless the caller's role grants `permission`.
    pub fn require(&self, permission: Permission) -> ApiResult<()> {
        if self.permissions.contains(&permission) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "insufficient_permissions",
                format!("this needs the {} permission, which your role {} does not grant", permission.as_str(), self.user.role),
            ))
        }
    }
}

pub fn bearer(parts: &Parts) -> ApiResult<&str> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("send the header Authorization: Bearer <token>; get a token from POST /api/auth/login"))?;
    header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let (user, session) = sessions::authenticate(state.store.as_ref(), state.jwt().await?, state.clock.now(), token).await?;
        let permissions = roles::permissions_of(state.store.as_ref(), &user.role).await?.unwrap_or_default();
        crate::audit::context::identify(crate::audit::Actor::User { id: user.id });
        Ok(Caller { user, session, permissions })
    }
}

/// A session when the request brings one (an `Authorization` header), none otherwise; a
/// header that does not authenticate is still a 401.
impl axum::extract::OptionalFromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, ApiError> {
        if parts.headers.contains_key(axum::http::header::AUTHORIZATION) {
            <Caller as FromRequestParts<AppState>>::from_request_parts(parts, state).await.map(Some)
        } else {
            Ok(None)
        }
    }
}

/// The user behind an `/admin/v1/me*` request: a session access token, or one of their own
/// API keys (as the self-service family allows).
pub struct Me {
    pub user_id: Uuid,
    /// The key, when the request came with one rather than with a session.
    key: Option<std::sync::Arc<crate::keys::ApiKey>>,
}

impl Me {
    /// A key must hold `scope` to act here (sessions may do anything their user may).
    pub fn require_key_scope(&self, scope: &str) -> ApiResult<()> {
        match &self.key {
            Some(key) if !key.grants(scope) => Err(ApiError::forbidden("insufficient_scope", format!("this API key lacks the {scope} scope"))),
            _ => Ok(()),
        }
    }

    /// Reading the user's keys: `usage:read` or `keys:write`.
    pub fn require_key_read(&self) -> ApiResult<()> {
        match &self.key {
            Some(key) if !key.grants("usage:read") && !key.grants(crate::keys::lineage::KEYS_WRITE) => {
                Err(ApiError::forbidden("insufficient_scope", "reading API keys needs the usage:read or keys:write scope"))
            }
            _ => Ok(()),
        }
    }

    /// The API key acting, when a key (not a session) made the request.
    pub fn key(&self) -> Option<&crate::keys::ApiKey> {
        self.key.as_deref()
    }

    /// Whether the user's global role grants `permission` (a key acting here never does: its
    /// scopes are the self-service family's, not the management family's permissions).
    pub async fn has_permission(&self, state: &AppState, permission: Permission) -> ApiResult<bool> {
        if self.key.is_some() {
            return Ok(false);
        }
        let Some(user) = crate::identity::users::get(state.store.as_ref(), self.user_id).await? else { return Ok(false) };
        Ok(roles::permissions_of(state.store.as_ref(), &user.role).await?.unwrap_or_default().contains(&permission))
    }

    /// An API key may rotate or revoke only itself and the keys descended from it.
    pub fn require_may_manage(&self, target: &crate::keys::ApiKey) -> ApiResult<()> {
        match &self.key {
            Some(actor) if !crate::keys::lineage::may_manage(actor, target) => Err(ApiError::forbidden(
                "not_your_key_lineage",
                "an API key may rotate or revoke only itself and the keys made from it; use a session for the others",
            )),
            _ => Ok(()),
        }
    }
}

impl FromRequestParts<AppState> for Me {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if token.starts_with(crate::keys::SECRET_PREFIX) {
            let ip = client_ip(parts, &state.config.trusted_proxies);
            let key = crate::proxy::authenticate(&state.gateway, Some(token), ip).await?;
            crate::audit::context::identify(crate::audit::Actor::Key { id: key.id, owner: key.owner.tag() });
            return match key.owner {
                crate::keys::Owner::User { user_id } => Ok(Me { user_id, key: Some(key) }),
                _ => Err(ApiError::forbidden("not_a_personal_key", "only a personal API key (or a session) can act on /admin/v1/me")),
            };
        }
        let (user, _) = sessions::authenticate(state.store.as_ref(), state.jwt().await?, state.clock.now(), token).await?;
        crate::audit::context::identify(crate::audit::Actor::User { id: user.id });
        Ok(Me { user_id: user.id, key: None })
    }
}

/// Where a request came from: the peer address, or, when the peer is a trusted proxy, the
/// nearest untrusted address in X-Forwarded-For. Behind API Gateway, the address it reports.
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(ClientIp(client_ip(parts, &state.config.trusted_proxies)))
    }
}

pub fn client_ip(parts: &Parts, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    client_ip_of(&parts.headers, &parts.extensions, trusted)
}

/// `client_ip` from a request's headers and extensions (what the edge has before extracting).
pub fn client_ip_of(headers: &HeaderMap, extensions: &Extensions, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let peer = extensions
        .get::<ConnectInfo<super::wire::Peer>>()
        .map(|c| c.0.0.ip())
        .or_else(|| extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
        .or_else(|| lambda_source_ip(extensions))?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    let hops: Vec<IpAddr> = forwarded.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    Some(hops.into_iter().rev().find(|ip| !is_trusted(ip)).unwrap_or(peer))
}

fn lambda_source_ip(extensions: &Extensions) -> Option<IpAddr> {
    use lambda_http::request::RequestContext;
    match extensions.get::<RequestContext>()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.as_deref()?.parse().ok(),
        RequestContext::ApiGatewayV1(ctx) => ctx.identity.source_ip.as_deref()?.parse().ok(),
        _ => None,
    }
}

pub fn user_agent(parts: &Parts) -> Option<String> {
    parts.headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(256).collect())
}

/// The caller's User-Agent header.
pub struct UserAgent(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for UserAgent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(UserAgent(user_agent(parts)))
    }
}
