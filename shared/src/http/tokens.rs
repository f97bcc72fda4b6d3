//! Tokens group, workspace-admin family: a workspace's API tokens. Members may list them;
//! owners and admins create, revoke and delete them. Someone else's workspace or token is 404.

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
use super::extract::{ApiJson, ApiQuery, Caller, parse_uuid};
use super::workspaces::BusinessQuery;
use crate::error::{ApiError, ApiResult};
use crate::keys::workspace_tokens::{self, ResetInterval};
use crate::keys::{self, ApiKey, Owner};
use crate::state::AppState;
use crate::workspaces;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_tokens, create_token)).routes(routes!(revoke_token)).routes(routes!(delete_token))
}

#[derive(Serialize, ToSchema)]
pub struct TokenView {
    id: Uuid,
    name: String,
    business_id: Uuid,
    key_prefix: String,
    scopes: Option<Vec<String>>,
    /// Dollars per `budget_reset_interval`.
    budget_limit: Option<f64>,
    budget_reset_interval: Option<ResetInterval>,
    expires_at: Option<DateTime<Utc>>,
    /// The response cache, when the token opted in.
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<crate::response_cache::CacheSettings>,
    revoked_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    /// The token itself: present once, in the answer to its creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

fn view(key: ApiKey, business_id: Uuid, secret: Option<String>) -> TokenView {
    let budget = workspace_tokens::budget(&key);
    TokenView {
        id: key.id,
        name: key.settings.name,
        business_id,
        key_prefix: key.key_prefix,
        scopes: key.settings.scopes,
        budget_limit: budget.map(|b| b.0),
        budget_reset_interval: budget.map(|b| b.1),
        expires_at: key.settings.expires_at,
        cache: key.settings.cache,
        revoked_at: key.revoked_at,
        created_at: key.created_at,
        last_used_at: key.last_used_at,
        secret,
    }
}

#[derive(Serialize, ToSchema)]
pub struct TokenList {
    tokens: Vec<TokenView>,
}

/// The workspace's tokens, newest first; revoked ones stay listed until deleted.
#[utoipa::path(get, path = "/api/tokens", tag = "tokens", params(BusinessQuery),
    responses((status = 200, body = TokenList), (status = 404, body = ErrorEnvelope)))]
async fn list_tokens(State(state): State<AppState>, caller: Caller, ApiQuery(q): ApiQuery<BusinessQuery>) -> ApiResult<Json<TokenList>> {
    let store = state.store.as_ref();
    let (workspace, _) = workspaces::require_member(store, parse_uuid(&q.business_id, "business_id")?, caller.user.id).await?;
    let mut tokens: Vec<ApiKey> = keys::all_of(store, &Owner::Workspace { workspace_id: workspace.id }).await?;
    tokens.retain(|k| k.deleted_at.is_none());
    tokens.sort_by_key(|k| std::cmp::Reverse(k.created_at));
    Ok(Json(TokenList { tokens: tokens.into_iter().map(|k| view(k, workspace.id, None)).collect() }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    name: String,
    business_id: String,
    /// Omitted or null: every scope. `leaderboards:inference` grants chat, completions and
    /// embeddings; `leaderboards:read` grants models.
    scopes: Option<Vec<String>>,
    /// One of 1h, 1d, 7d, 30d, 90d, 180d, 1y; omitted or null: never.
    expires_in: Option<String>,
    /// Dollars per `budget_reset_interval`.
    budget_limit: Option<f64>,
    /// daily, weekly, monthly (the default) or never (a lifetime total).
    budget_reset_interval: Option<ResetInterval>,
    /// Answer a request the token sent before from the response cache: `{"ttl": seconds, "mode": "exact"}`.
    cache: Option<crate::response_cache::CacheSettings>,
}

/// Creates a workspace token; the answer holds its secret, once. Owners and admins only.
#[utoipa::path(post, path = "/api/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = TokenView), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn create_token(State(state): State<AppState>, caller: Caller, ApiJson(body): ApiJson<CreateToken>) -> ApiResult<(StatusCode, Json<TokenView>)> {
    let store = state.store.as_ref();
    let workspace_id = parse_uuid(&body.business_id, "business_id")?;
    let mut settings =
        workspace_tokens::settings(body.name, body.scopes, body.expires_in.as_deref(), body.budget_limit, body.budget_reset_interval, state.clock.now())?;
    settings.cache = body.cache;
    let (workspace, _) = workspaces::require_manager(store, workspace_id, caller.user.id).await?;
    let issued = keys::create(store, Owner::Workspace { workspace_id: workspace.id }, settings, None, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(view(issued.key, workspace.id, Some(issued.secret)))))
}

/// The workspace token `id` when the caller manages its workspace. A deleted token, and any
/// token of a workspace the caller is not in, is 404: its workspace is not named.
async fn managed_token(state: &AppState, caller: &Caller, id: &str) -> ApiResult<(Uuid, Uuid)> {
    let store = state.store.as_ref();
    let id = parse_uuid(id, "id")?;
    let missing = || ApiError::not_found(format!("no workspace token with id {id}"));
    let key = keys::get_any(store, id).await?.filter(|k| k.deleted_at.is_none()).ok_or_else(missing)?;
    let Owner::Workspace { workspace_id } = key.owner else { return Err(missing()) };
    let member = workspaces::membership(store, workspace_id, caller.user.id).await?.ok_or_else(missing)?;
    workspaces::require_manages(&member)?;
    Ok((workspace_id, id))
}

/// Revokes a token: it stops working at once and stays listed as revoked.
#[utoipa::path(post, path = "/api/tokens/{id}/revoke", tag = "tokens", params(("id" = Uuid, Path)),
    responses((status = 200, body = TokenView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn revoke_token(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<TokenView>> {
    retire(&state, &caller, &id, true).await
}

/// Deletes a token: revoked at once and gone from listings.
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "tokens", params(("id" = Uuid, Path)),
    responses((status = 200, body = TokenView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn delete_token(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<TokenView>> {
    retire(&state, &caller, &id, false).await
}

/// Revokes a managed token at once (dropping this process's cached copy), keeping it listed or not.
async fn retire(state: &AppState, caller: &Caller, id: &str, keep_listed: bool) -> ApiResult<Json<TokenView>> {
    let (workspace_id, id) = managed_token(state, caller, id).await?;
    let key = keys::retire(state.store.as_ref(), &Owner::Workspace { workspace_id }, id, keep_listed, state.clock.now(), state.hot.as_ref()).await?;
    Ok(Json(view(key, workspace_id, None)))
}
