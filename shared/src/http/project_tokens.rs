//! Tokens group, management family: a project's tokens, with `limits: [{metric, limit,
//! window, mode}]`. Viewers list them; editors and admins create, change and delete them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::response_cache::CacheSettings;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ErrorEnvelope;
use super::extract::{ApiJson, Caller, parse_uuid};
use super::projects::viewer;
use crate::error::ApiResult;
use crate::keys::{self, ApiKey, KeySettings, Owner};
use crate::limits::{self, LimitSpec};
use crate::projects::{self, Role};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_tokens, create_token)).routes(routes!(update_token, delete_token))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectTokenView {
    id: Uuid,
    name: String,
    project_id: Uuid,
    token_prefix: String,
    limits: Vec<LimitSpec>,
    expires_at: Option<DateTime<Utc>>,
    fit_max_tokens: bool,
    /// The response cache, when the token opted in itself (else its project's applies).
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<CacheSettings>,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    /// The token itself: present once, in the answer to its creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

fn view(key: ApiKey, project_id: Uuid, secret: Option<String>) -> ProjectTokenView {
    ProjectTokenView {
        id: key.id,
        name: key.settings.name,
        project_id,
        token_prefix: key.key_prefix,
        limits: key.settings.limits.iter().map(LimitSpec::of).collect(),
        expires_at: key.settings.expires_at,
        fit_max_tokens: key.settings.fit_max_tokens,
        cache: key.settings.cache,
        created_at: key.created_at,
        last_used_at: key.last_used_at,
        token: secret,
    }
}

#[utoipa::path(operation_id = "list_project_tokens", get, path = "/api/projects/{slug}/tokens", tag = "projects", params(("slug" = String, Path)),
    responses((status = 200, body = Vec<ProjectTokenView>), (status = 404, body = ErrorEnvelope)))]
async fn list_tokens(State(state): State<AppState>, caller: Caller, Path(slug): Path<String>) -> ApiResult<Json<Vec<ProjectTokenView>>> {
    let store = state.store.as_ref();
    let (project, _) = projects::require(store, &slug, &viewer(&caller), Role::Viewer).await?;
    let mut tokens = keys::all_of(store, &Owner::Project { project_id: project.id }).await?;
    tokens.retain(|k| k.revoked_at.is_none());
    tokens.sort_by_key(|k| std::cmp::Reverse(k.created_at));
    Ok(Json(tokens.into_iter().map(|k| view(k, project.id, None)).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProjectToken {
    name: String,
    /// Combined with the project's (and its workspace's) limits by each limit's `mode`.
    #[serde(default)]
    limits: Vec<LimitSpec>,
    expires_at: Option<DateTime<Utc>>,
    /// When a request's worst case does not fit what a budget has left, lower its max_tokens to
    /// what the budget can still pay for (the answer's `x-tollgate-max-tokens-lowered` header
    /// says to what) instead of refusing it with 402. Default false.
    #[serde(default)]
    fit_max_tokens: bool,
    /// The response cache for this token (`{"ttl": seconds, "mode": "exact"}`), over the project's.
    cache: Option<CacheSettings>,
}

/// Creates a project token; the answer holds the token, once. Editors and admins.
#[utoipa::path(operation_id = "create_project_token", post, path = "/api/projects/{slug}/tokens", tag = "projects", params(("slug" = String, Path)), request_body = CreateProjectToken,
    responses((status = 201, body = ProjectTokenView), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<CreateProjectToken>,
) -> ApiResult<(StatusCode, Json<ProjectTokenView>)> {
    let store = state.store.as_ref();
    let (project, _) = projects::require(store, &slug, &viewer(&caller), Role::Editor).await?;
    let settings = KeySettings {
        name: body.name,
        limits: limits::from_specs(&body.limits)?,
        expires_at: body.expires_at,
        fit_max_tokens: body.fit_max_tokens,
        cache: body.cache,
        ..KeySettings::default()
    };
    let issued = keys::create(store, Owner::Project { project_id: project.id }, settings, None, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(view(issued.key, project.id, Some(issued.secret)))))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateProjectToken {
    name: Option<String>,
    /// Replaces the token's limits; a limit kept on the same metric and window keeps its count.
    limits: Option<Vec<LimitSpec>>,
    /// See the creation's fitMaxTokens.
    fit_max_tokens: Option<bool>,
    /// See the creation's cache.
    cache: Option<CacheSettings>,
}

#[utoipa::path(put, path = "/api/projects/{slug}/tokens/{tokenId}", tag = "projects", params(("slug" = String, Path), ("tokenId" = Uuid, Path)), request_body = UpdateProjectToken,
    responses((status = 200, body = ProjectTokenView), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn update_token(
    State(state): State<AppState>,
    caller: Caller,
    Path((slug, token_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateProjectToken>,
) -> ApiResult<Json<ProjectTokenView>> {
    let store = state.store.as_ref();
    let (project, _) = projects::require(store, &slug, &viewer(&caller), Role::Editor).await?;
    let limits = body.limits.as_deref().map(limits::from_specs).transpose()?;
    let owner = Owner::Project { project_id: project.id };
    let key = keys::update(store, &owner, parse_uuid(&token_id, "tokenId")?, state.clock.now(), state.hot.as_ref(), |settings| {
        if let Some(name) = body.name {
            settings.name = name;
        }
        if let Some(limits) = limits {
            settings.limits = limits;
        }
        if let Some(fit) = body.fit_max_tokens {
            settings.fit_max_tokens = fit;
        }
        if let Some(cache) = body.cache {
            settings.cache = Some(cache);
        }
        Ok(())
    })
    .await?;
    Ok(Json(view(key, project.id, None)))
}

/// Deletes (revokes) a project token: it stops working at once.
#[utoipa::path(operation_id = "delete_project_token", delete, path = "/api/projects/{slug}/tokens/{tokenId}", tag = "projects", params(("slug" = String, Path), ("tokenId" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn delete_token(State(state): State<AppState>, caller: Caller, Path((slug, token_id)): Path<(String, String)>) -> ApiResult<StatusCode> {
    let store = state.store.as_ref();
    let (project, _) = projects::require(store, &slug, &viewer(&caller), Role::Editor).await?;
    let owner = Owner::Project { project_id: project.id };
    let id = parse_uuid(&token_id, "tokenId")?;
    let key = keys::get(store, &owner, id).await?;
    if key.revoked_at.is_some() {
        return Err(crate::error::ApiError::not_found(format!("no API key with id {id}")));
    }
    keys::revoke(store, &owner, id, state.clock.now(), state.hot.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
