//! Auth group, management family: what a global admin sets up for provisioning. SCIM tokens
//! (`/api/scim/tokens`, the secret shown once) and the group mapping
//! (`/api/settings/group-mapping`) that SCIM and sign-in through the identity provider share.

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
use super::extract::{ApiJson, Caller, parse_uuid};
use crate::error::ApiResult;
use crate::group_mapping::{self, GroupMapping};
use crate::identity::roles::NO_ROLE;
use crate::scim::tokens::{self, ScimToken};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_scim_tokens, create_scim_token))
        .routes(routes!(delete_scim_token))
        .routes(routes!(get_group_mapping, put_group_mapping))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScimTokenView {
    id: Uuid,
    name: String,
    /// The secret's first characters.
    prefix: String,
    created_by: Uuid,
    created_at: DateTime<Utc>,
}

fn view(t: ScimToken) -> ScimTokenView {
    ScimTokenView { id: t.id, name: t.name, prefix: t.prefix, created_by: t.created_by, created_at: t.created_at }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedScimToken {
    #[serde(flatten)]
    info: ScimTokenView,
    /// The bearer token to give the identity provider. Shown this once: only its hash is kept.
    token: String,
    /// The SCIM base path to give the identity provider (prefix it with this server's URL).
    base_path: &'static str,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateScimToken {
    /// What the token is for, such as "Okta".
    name: String,
}

#[utoipa::path(get, path = "/api/scim/tokens", tag = "scim",
    responses((status = 200, body = Vec<ScimTokenView>), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
async fn list_scim_tokens(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ScimTokenView>>> {
    caller.require_global_admin("SCIM provisioning is")?;
    Ok(Json(tokens::list(state.store.as_ref()).await?.into_iter().map(view).collect()))
}

#[utoipa::path(post, path = "/api/scim/tokens", tag = "scim", request_body = CreateScimToken,
    responses((status = 201, body = CreatedScimToken), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn create_scim_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateScimToken>,
) -> ApiResult<(StatusCode, Json<CreatedScimToken>)> {
    caller.require_global_admin("SCIM provisioning is")?;
    let (token, secret) = tokens::create(state.store.as_ref(), &body.name, caller.user.id, state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(CreatedScimToken { info: view(token), token: secret, base_path: "/scim/v2" })))
}

#[utoipa::path(delete, path = "/api/scim/tokens/{id}", tag = "scim", params(("id" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn delete_scim_token(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    caller.require_global_admin("SCIM provisioning is")?;
    tokens::delete(state.store.as_ref(), parse_uuid(&id, "id")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The saved mapping, or the one in force when none was saved (no rules; roles left alone).
#[utoipa::path(get, path = "/api/settings/group-mapping", tag = "settings",
    responses((status = 200, body = GroupMapping), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
async fn get_group_mapping(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<GroupMapping>> {
    caller.require_global_admin("SCIM provisioning is")?;
    let mapping = group_mapping::get(state.store.as_ref()).await?;
    Ok(Json(mapping.unwrap_or_else(|| GroupMapping { default_role: NO_ROLE.into(), rules: vec![] })))
}

/// Replaces the mapping. It applies to each user the next time the identity provider sends
/// their groups (a SCIM change or a sign-in).
#[utoipa::path(put, path = "/api/settings/group-mapping", tag = "settings", request_body = GroupMapping,
    responses((status = 200, body = GroupMapping), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
async fn put_group_mapping(State(state): State<AppState>, caller: Caller, ApiJson(body): ApiJson<GroupMapping>) -> ApiResult<Json<GroupMapping>> {
    caller.require_global_admin("SCIM provisioning is")?;
    Ok(Json(group_mapping::save(state.store.as_ref(), body).await?))
}
