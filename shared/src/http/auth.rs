//! Auth group, management family: setup, login and refresh, the caller's profile, users and
//! roles. Thin handlers: validation of shapes here, rules in `identity`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ErrorEnvelope;
use super::extract::{ApiJson, Caller, ClientIp, UserAgent, parse_uuid};
use crate::error::{ApiError, ApiResult};
use crate::identity::roles::{self, Permission};
use crate::identity::users::{self, User};
use crate::identity::{accounts, normalize_email, sessions};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(setup_status))
        .routes(routes!(first_admin))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(get_me, update_me))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(list_roles, create_role))
        .routes(routes!(update_role, delete_role))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    id: Uuid,
    email: String,
    name: Option<String>,
    role: String,
    /// The permissions the role grants.
    permissions: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

async fn view(state: &AppState, user: &User) -> ApiResult<UserView> {
    let permissions = roles::permissions_of(state.store.as_ref(), &user.role).await?.unwrap_or_default();
    Ok(UserView {
        id: user.id,
        email: user.email.clone(),
        name: user.name.clone(),
        role: user.role.clone(),
        permissions: permissions.iter().map(|p| p.as_str().to_string()).collect(),
        created_at: user.created_at,
        updated_at: user.updated_at,
    })
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SessionResponse {
    /// JWT access token, valid one hour.
    token: String,
    /// Opaque, single use; exchange it at POST /api/auth/refresh.
    refresh_token: String,
    user: UserView,
}

pub(super) async fn session_response(state: &AppState, tokens: sessions::Tokens, user: &User) -> ApiResult<SessionResponse> {
    Ok(SessionResponse { token: tokens.access_token, refresh_token: tokens.refresh_token, user: view(state, user).await? })
}

#[derive(Serialize, ToSchema)]
pub struct SetupStatus {
    configured: bool,
}

#[utoipa::path(get, path = "/api/setup/status", tag = "setup", responses((status = 200, body = SetupStatus)))]
async fn setup_status(State(state): State<AppState>) -> ApiResult<Json<SetupStatus>> {
    Ok(Json(SetupStatus { configured: accounts::is_configured(state.store.as_ref()).await? }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    email: String,
    password: String,
}

/// Creates the first admin and signs them in; only while setup status says `configured: false`.
#[utoipa::path(post, path = "/api/setup/first-admin", tag = "setup", request_body = Credentials,
    responses((status = 201, body = SessionResponse), (status = 409, body = ErrorEnvelope)))]
async fn first_admin(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    UserAgent(agent): UserAgent,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<(StatusCode, Json<SessionResponse>)> {
    let email = normalize_email(&body.email, "email")?;
    let user = accounts::setup_first_admin(state.store.as_ref(), email, &body.password, state.clock.now()).await?;
    let tokens = sessions::start(state.store.as_ref(), state.jwt().await?, state.clock.now(), &user, ip.map(|i| i.to_string()), agent).await?;
    Ok((StatusCode::CREATED, Json(session_response(&state, tokens, &user).await?)))
}

#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = Credentials,
    responses((status = 200, body = SessionResponse), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope)))]
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    UserAgent(agent): UserAgent,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Json<SessionResponse>> {
    let email = normalize_email(&body.email, "email")?;
    let ip_text = ip.map(|i| i.to_string());
    let user = accounts::login(state.store.as_ref(), &email, &body.password, ip_text.as_deref(), state.clock.now()).await?;
    let tokens = sessions::start(state.store.as_ref(), state.jwt().await?, state.clock.now(), &user, ip_text, agent).await?;
    Ok(Json(session_response(&state, tokens, &user).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

/// Rotates the refresh token. Re-using a spent one revokes the whole session.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = SessionResponse), (status = 401, body = ErrorEnvelope)))]
async fn refresh(State(state): State<AppState>, ApiJson(body): ApiJson<RefreshRequest>) -> ApiResult<Json<SessionResponse>> {
    let (tokens, user) = sessions::refresh(state.store.as_ref(), state.jwt().await?, state.clock.now(), &body.refresh_token).await?;
    Ok(Json(session_response(&state, tokens, &user).await?))
}

#[utoipa::path(get, path = "/api/me", tag = "me", responses((status = 200, body = UserView), (status = 401, body = ErrorEnvelope)))]
async fn get_me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<UserView>> {
    Ok(Json(view(&state, &caller.user).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateMe {
    email: Option<String>,
    name: Option<String>,
    /// Required to change the email or the password.
    current_password: Option<String>,
    new_password: Option<String>,
}

/// Changes the caller's email, name or password. A password change signs out every other session.
#[utoipa::path(put, path = "/api/me", tag = "me", request_body = UpdateMe,
    responses((status = 200, body = UserView), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn update_me(State(state): State<AppState>, caller: Caller, ApiJson(body): ApiJson<UpdateMe>) -> ApiResult<Json<UserView>> {
    let change = accounts::OwnChange {
        email: body.email.as_deref().map(|e| normalize_email(e, "email")).transpose()?,
        name: body.name,
        current_password: body.current_password,
        new_password: body.new_password,
    };
    let after = accounts::change_own(state.store.as_ref(), &caller.user, caller.session.id, change, state.clock.now()).await?;
    Ok(Json(view(&state, &after).await?))
}

#[utoipa::path(get, path = "/api/users", tag = "users", responses((status = 200, body = Vec<UserView>), (status = 403, body = ErrorEnvelope)))]
async fn list_users(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<UserView>>> {
    caller.require(Permission::UserRead)?;
    let mut out = Vec::new();
    for user in users::list(state.store.as_ref()).await? {
        out.push(view(&state, &user).await?);
    }
    Ok(Json(out))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    email: String,
    password: String,
    role: String,
    name: Option<String>,
}

#[utoipa::path(post, path = "/api/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = UserView), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn create_user(State(state): State<AppState>, caller: Caller, ApiJson(body): ApiJson<CreateUser>) -> ApiResult<(StatusCode, Json<UserView>)> {
    caller.require(Permission::UserWrite)?;
    let email = normalize_email(&body.email, "email")?;
    let user = accounts::create_user(state.store.as_ref(), email, &body.password, body.role, body.name, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(view(&state, &user).await?)))
}

#[utoipa::path(get, path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)),
    responses((status = 200, body = UserView), (status = 404, body = ErrorEnvelope)))]
async fn get_user(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<UserView>> {
    caller.require(Permission::UserRead)?;
    let user = users::require(state.store.as_ref(), parse_uuid(&id, "id")?).await?;
    Ok(Json(view(&state, &user).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    email: Option<String>,
    password: Option<String>,
    role: Option<String>,
    name: Option<String>,
}

/// A new password signs the user out everywhere.
#[utoipa::path(put, path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)), request_body = UpdateUser,
    responses((status = 200, body = UserView), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn update_user(State(state): State<AppState>, caller: Caller, Path(id): Path<String>, ApiJson(body): ApiJson<UpdateUser>) -> ApiResult<Json<UserView>> {
    caller.require(Permission::UserWrite)?;
    let change = accounts::UserChange {
        email: body.email.as_deref().map(|e| normalize_email(e, "email")).transpose()?,
        password: body.password,
        role: body.role,
        name: body.name,
    };
    let actor = (caller.user.id, caller.session.id);
    let after = accounts::change_user(state.store.as_ref(), actor, parse_uuid(&id, "id")?, change, state.clock.now()).await?;
    Ok(Json(view(&state, &after).await?))
}

#[utoipa::path(delete, path = "/api/users/{id}", tag = "users", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn delete_user(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    caller.require(Permission::UserWrite)?;
    let id = parse_uuid(&id, "id")?;
    if id == caller.user.id {
        return Err(ApiError::bad_request("cannot_delete_self", "you cannot delete yourself here; use DELETE /admin/v1/me"));
    }
    let user = users::require(state.store.as_ref(), id).await?;
    crate::account_deletion::delete(state.store.as_ref(), state.secrets.as_ref(), &user, Some(caller.user.id), state.clock.now(), state.hot.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleView {
    name: String,
    permissions: Vec<String>,
    built_in: bool,
}

impl From<roles::Role> for RoleView {
    fn from(role: roles::Role) -> Self {
        RoleView { name: role.name, permissions: role.permissions.iter().map(|p| p.as_str().into()).collect(), built_in: role.built_in }
    }
}

#[utoipa::path(get, path = "/api/roles", tag = "roles", responses((status = 200, body = Vec<RoleView>)))]
async fn list_roles(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<RoleView>>> {
    caller.require(Permission::UserRead)?;
    Ok(Json(roles::list(state.store.as_ref()).await?.into_iter().map(RoleView::from).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    name: String,
    permissions: Vec<String>,
}

#[utoipa::path(post, path = "/api/roles", tag = "roles", request_body = CreateRole,
    responses((status = 201, body = RoleView), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn create_role(State(state): State<AppState>, caller: Caller, ApiJson(body): ApiJson<CreateRole>) -> ApiResult<(StatusCode, Json<RoleView>)> {
    caller.require(Permission::UserWrite)?;
    let permissions = roles::parse_permissions(&body.permissions)?;
    let role = roles::create(state.store.as_ref(), &body.name, permissions).await?;
    Ok((StatusCode::CREATED, Json(role.into())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRole {
    permissions: Vec<String>,
}

#[utoipa::path(put, path = "/api/roles/{name}", tag = "roles", params(("name" = String, Path)), request_body = UpdateRole,
    responses((status = 200, body = RoleView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn update_role(State(state): State<AppState>, caller: Caller, Path(name): Path<String>, ApiJson(body): ApiJson<UpdateRole>) -> ApiResult<Json<RoleView>> {
    caller.require(Permission::UserWrite)?;
    let permissions = roles::parse_permissions(&body.permissions)?;
    Ok(Json(roles::update(state.store.as_ref(), &name, permissions).await?.into()))
}

#[utoipa::path(delete, path = "/api/roles/{name}", tag = "roles", params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn delete_role(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<StatusCode> {
    caller.require(Permission::UserWrite)?;
    roles::delete(state.store.as_ref(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
