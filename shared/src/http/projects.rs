//! Members group, management family: projects and their members.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::models::RetryView;
use crate::response_cache::CacheSettings;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ErrorEnvelope;
use super::extract::{ApiJson, Caller, parse_uuid};
use crate::catalog;
use crate::error::{ApiError, ApiResult};
use crate::identity::roles::Permission;
use crate::identity::users;
use crate::keys::{self, Owner};
use crate::limits::{self, LimitSpec};
use crate::projects::{self, Member, Project, Role, Viewer};
use crate::state::AppState;
use crate::workspaces;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_projects, create_project))
        .routes(routes!(get_project, update_project, delete_project))
        .routes(routes!(list_members, add_member))
        .routes(routes!(update_member, remove_member))
}

pub fn viewer(caller: &Caller) -> Viewer<'_> {
    Viewer { user_id: caller.user.id, permissions: &caller.permissions, global_admin: caller.user.role == "admin" }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectView {
    id: Uuid,
    name: String,
    slug: String,
    workspace_id: Option<Uuid>,
    /// Routing candidates, in order.
    models: Vec<String>,
    default_timeout_ms: i64,
    limits: Vec<LimitSpec>,
    /// The response cache for its tokens, when it opted in.
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<CacheSettings>,
    /// Attempts per model and total time for its tokens' requests, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry: Option<RetryView>,
    /// The caller's role on this project.
    role: Role,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn view(p: Project, role: Role) -> ProjectView {
    ProjectView {
        id: p.id,
        name: p.name,
        slug: p.slug,
        workspace_id: p.workspace_id,
        models: p.models,
        default_timeout_ms: p.default_timeout_ms,
        limits: p.limits.iter().map(LimitSpec::of).collect(),
        cache: p.cache,
        retry: p.retry.map(RetryView::from),
        role,
        created_at: p.created_at,
        updated_at: p.updated_at,
    }
}

/// Every model a project routes over must be in the catalog.
async fn check_models(state: &AppState, models: &[String]) -> ApiResult<()> {
    for id in models {
        if catalog::get(state.store.as_ref(), id).await?.is_none() {
            return Err(ApiError::invalid_param("models", format!("there is no catalog model {id:?}; GET /api/models lists them")));
        }
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/projects", tag = "projects", responses((status = 200, body = Vec<ProjectView>)))]
async fn list_projects(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ProjectView>>> {
    let store = state.store.as_ref();
    let who = viewer(&caller);
    let mut out = Vec::new();
    for project in projects::list_all(store).await? {
        if let Some(role) = projects::role_of(store, &project, &who).await? {
            out.push(view(project, role));
        }
    }
    Ok(Json(out))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProject {
    name: String,
    slug: String,
    default_timeout_ms: Option<i64>,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    limits: Vec<LimitSpec>,
    /// The workspace the project belongs to (its owners and admins may then create it).
    workspace_id: Option<String>,
    /// Answer a request its tokens sent before from the response cache: `{"ttl": seconds, "mode": "exact"}`.
    cache: Option<CacheSettings>,
    /// Attempts per model (across its deployments, then its fallbacks) and total time for its
    /// tokens' requests, over each model's own `retry`: `{"maxAttempts": 1-16, "maxTotalMs"}`.
    retry: Option<RetryView>,
}

/// Creates a project; the creator becomes its admin. Needs `project:write`, or, for a project
/// in a workspace, to be that workspace's owner or admin.
#[utoipa::path(post, path = "/api/projects", tag = "projects", request_body = CreateProject,
    responses((status = 201, body = ProjectView), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn create_project(State(state): State<AppState>, caller: Caller, ApiJson(body): ApiJson<CreateProject>) -> ApiResult<(StatusCode, Json<ProjectView>)> {
    let store = state.store.as_ref();
    let workspace_id = body.workspace_id.as_deref().map(|w| parse_uuid(w, "workspaceId")).transpose()?;
    match workspace_id {
        Some(ws) => {
            workspaces::require_manager(store, ws, caller.user.id).await?;
        }
        None => caller.require(Permission::ProjectWrite)?,
    }
    let now = state.clock.now();
    let project = Project {
        id: Uuid::new_v4(),
        name: body.name.trim().to_string(),
        slug: body.slug,
        workspace_id,
        models: body.models,
        default_timeout_ms: body.default_timeout_ms.unwrap_or(projects::DEFAULT_TIMEOUT_MS),
        limits: limits::from_specs(&body.limits)?,
        cache: body.cache,
        retry: body.retry.map(Into::into),
        created_at: now,
        updated_at: now,
    };
    projects::validate(&project)?;
    check_models(&state, &project.models).await?;
    projects::create(store, &project, caller.user.id).await?;
    Ok((StatusCode::CREATED, Json(view(project, Role::Admin))))
}

#[utoipa::path(get, path = "/api/projects/{slug}", tag = "projects", params(("slug" = String, Path)),
    responses((status = 200, body = ProjectView), (status = 404, body = ErrorEnvelope)))]
async fn get_project(State(state): State<AppState>, caller: Caller, Path(slug): Path<String>) -> ApiResult<Json<ProjectView>> {
    let (project, role) = projects::require(state.store.as_ref(), &slug, &viewer(&caller), Role::Viewer).await?;
    Ok(Json(view(project, role)))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateProject {
    name: Option<String>,
    /// A project's slug names it for good; sending a different one is refused.
    slug: Option<String>,
    default_timeout_ms: Option<i64>,
    models: Option<Vec<String>>,
    limits: Option<Vec<LimitSpec>>,
    /// The response cache for its tokens (`cacheOff: true` stops it).
    cache: Option<CacheSettings>,
    /// Stops caching its tokens' answers.
    cache_off: Option<bool>,
    /// Replaces its retry policy (`retryOff: true` removes it).
    retry: Option<RetryView>,
    retry_off: Option<bool>,
}

/// Changes a project: editors and admins.
#[utoipa::path(put, path = "/api/projects/{slug}", tag = "projects", params(("slug" = String, Path)), request_body = UpdateProject,
    responses((status = 200, body = ProjectView), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn update_project(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<UpdateProject>,
) -> ApiResult<Json<ProjectView>> {
    let store = state.store.as_ref();
    let (mut project, role) = projects::require(store, &slug, &viewer(&caller), Role::Editor).await?;
    if body.slug.as_ref().is_some_and(|s| *s != project.slug) {
        return Err(ApiError::invalid_param("slug", "a project's slug cannot change; create a new project for a new slug"));
    }
    if let Some(name) = body.name {
        project.name = name.trim().to_string();
    }
    if let Some(ms) = body.default_timeout_ms {
        project.default_timeout_ms = ms;
    }
    if let Some(models) = body.models {
        check_models(&state, &models).await?;
        project.models = models;
    }
    if let Some(cache) = body.cache {
        project.cache = Some(cache);
    }
    if body.cache_off == Some(true) {
        project.cache = None;
    }
    if let Some(retry) = body.retry {
        project.retry = Some(retry.into());
    }
    if body.retry_off == Some(true) {
        project.retry = None;
    }
    if let Some(specs) = body.limits {
        project.limits = limits::from_specs(&specs)?;
    }
    projects::save(store, &mut project, state.clock.now(), state.hot.as_ref()).await?;
    Ok(Json(view(project, role)))
}

/// Deletes a project and revokes its tokens: admins.
#[utoipa::path(delete, path = "/api/projects/{slug}", tag = "projects", params(("slug" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn delete_project(State(state): State<AppState>, caller: Caller, Path(slug): Path<String>) -> ApiResult<StatusCode> {
    let store = state.store.as_ref();
    let (project, _) = projects::require(store, &slug, &viewer(&caller), Role::Admin).await?;
    let owner = Owner::Project { project_id: project.id };
    for key in keys::all_of(store, &owner).await? {
        keys::revoke(store, &owner, key.id, state.clock.now(), state.hot.as_ref()).await?;
    }
    projects::delete(store, &project, state.hot.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
// The workspace family has a MemberView of its own; one name would make one schema of both.
#[schema(as = ProjectMemberView)]
pub struct MemberView {
    user_id: Uuid,
    email: String,
    role: Role,
    joined_at: DateTime<Utc>,
}

#[utoipa::path(operation_id = "list_project_members", get, path = "/api/projects/{slug}/members", tag = "projects", params(("slug" = String, Path)),
    responses((status = 200, body = Vec<MemberView>), (status = 404, body = ErrorEnvelope)))]
async fn list_members(State(state): State<AppState>, caller: Caller, Path(slug): Path<String>) -> ApiResult<Json<Vec<MemberView>>> {
    let store = state.store.as_ref();
    let (project, _) = projects::require(store, &slug, &viewer(&caller), Role::Viewer).await?;
    let mut out = Vec::new();
    for m in projects::members(store, project.id).await? {
        if let Some(user) = users::get(store, m.user_id).await? {
            out.push(MemberView { user_id: m.user_id, email: user.email, role: m.role, joined_at: m.joined_at });
        }
    }
    out.sort_by_key(|m| m.joined_at);
    Ok(Json(out))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddMember {
    user_id: String,
    /// viewer, editor or admin.
    role: Role,
}

/// Adds a member (or changes their role): admins. In a workspace's project, only the
/// workspace's members can join.
#[utoipa::path(post, path = "/api/projects/{slug}/members", tag = "projects", params(("slug" = String, Path)), request_body = AddMember,
    responses((status = 201, body = MemberView), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<AddMember>,
) -> ApiResult<(StatusCode, Json<MemberView>)> {
    let store = state.store.as_ref();
    let (project, _) = projects::require(store, &slug, &viewer(&caller), Role::Admin).await?;
    let user_id = parse_uuid(&body.user_id, "userId")?;
    let user = users::get(store, user_id).await?.ok_or_else(|| ApiError::invalid_param("userId", format!("there is no user {user_id}")))?;
    if let Some(ws) = project.workspace_id
        && workspaces::membership(store, ws, user_id).await?.is_none()
    {
        return Err(ApiError::invalid_param("userId", "this user is not a member of the project's workspace; invite them there first"));
    }
    let member = Member { project_id: project.id, user_id, role: body.role, joined_at: state.clock.now() };
    projects::set_member(store, &member).await?;
    Ok((StatusCode::CREATED, Json(MemberView { user_id, email: user.email, role: member.role, joined_at: member.joined_at })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    role: Role,
}

#[utoipa::path(put, path = "/api/projects/{slug}/members/{userId}", tag = "projects", params(("slug" = String, Path), ("userId" = Uuid, Path)), request_body = UpdateMember,
    responses((status = 200, body = MemberView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn update_member(
    State(state): State<AppState>,
    caller: Caller,
    Path((slug, user_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateMember>,
) -> ApiResult<Json<MemberView>> {
    let store = state.store.as_ref();
    let (project, _) = projects::require(store, &slug, &viewer(&caller), Role::Admin).await?;
    let user_id = parse_uuid(&user_id, "userId")?;
    let mut member = projects::membership(store, project.id, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {user_id} is not a member of this project")))?;
    member.role = body.role;
    projects::set_member(store, &member).await?;
    let email = users::get(store, user_id).await?.map(|u| u.email).unwrap_or_default();
    Ok(Json(MemberView { user_id, email, role: member.role, joined_at: member.joined_at }))
}

#[utoipa::path(delete, path = "/api/projects/{slug}/members/{userId}", tag = "projects", params(("slug" = String, Path), ("userId" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn remove_member(State(state): State<AppState>, caller: Caller, Path((slug, user_id)): Path<(String, String)>) -> ApiResult<StatusCode> {
    let store = state.store.as_ref();
    let (project, _) = projects::require(store, &slug, &viewer(&caller), Role::Admin).await?;
    projects::remove_member(store, project.id, parse_uuid(&user_id, "userId")?).await?;
    Ok(StatusCode::NO_CONTENT)
}
