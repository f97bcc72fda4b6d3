//! Providers group, self-service family: the caller's own provider accounts (dynamic
//! providers) and the providers configured at deploy time (the catalog's provider types and
//! their default endpoints). Rules live in `crate::dynamic_providers`; a key acting here needs
//! `usage:read` (or `keys:write`) to read and `keys:write` to change, as for keys.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ErrorEnvelope;
use super::extract::{ApiJson, ApiQuery, Me, parse_uuid};
use crate::dynamic_providers::{self, DynamicProvider};
use crate::error::{ApiError, ApiResult};
use crate::keys::lineage::KEYS_WRITE;
use crate::pagination::{ListParams, Pagination, check_limit};
use crate::providers::{self, Probe, ProviderType};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_providers, create_provider))
        .routes(routes!(test_credentials))
        .routes(routes!(get_provider, update_provider, delete_provider))
        .routes(routes!(test_provider))
        .routes(routes!(built_in_providers))
}

#[derive(Serialize, ToSchema)]
pub struct ProviderView {
    id: Uuid,
    name: String,
    provider_type: ProviderType,
    base_url: Option<String>,
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
    models: Vec<String>,
    is_enabled: bool,
    has_api_key: bool,
    #[schema(value_type = Option<Object>)]
    owner: Value,
    #[schema(value_type = Option<Object>)]
    sovereignty: Option<Value>,
    deleted_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn json_of(text: &Option<String>) -> Option<Value> {
    text.as_deref().and_then(|t| serde_json::from_str(t).ok())
}

impl From<DynamicProvider> for ProviderView {
    fn from(p: DynamicProvider) -> Self {
        ProviderView {
            id: p.id,
            owner: serde_json::json!({"type": "user", "user_id": p.user_id}),
            config: json_of(&p.config),
            sovereignty: json_of(&p.sovereignty),
            name: p.name,
            provider_type: p.provider_type,
            base_url: p.base_url,
            models: p.models,
            is_enabled: p.is_enabled,
            has_api_key: p.has_api_key,
            deleted_at: p.deleted_at,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ProviderList {
    data: Vec<ProviderView>,
    pagination: Pagination,
}

/// The caller's own providers, newest first.
#[utoipa::path(get, path = "/admin/v1/me/providers", tag = "me", params(ListParams),
    responses((status = 200, body = ProviderList), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)))]
async fn list_providers(State(state): State<AppState>, me: Me, ApiQuery(q): ApiQuery<ListParams>) -> ApiResult<Json<ProviderList>> {
    me.require_key_read()?;
    let limit = check_limit(q.limit)?;
    let (providers, pagination) =
        dynamic_providers::list(state.store.as_ref(), me.user_id, limit, q.cursor, q.direction.unwrap_or_default(), q.include_deleted.unwrap_or(false)).await?;
    Ok(Json(ProviderList { data: providers.into_iter().map(ProviderView::from).collect(), pagination }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProvider {
    /// Unique among your providers; requests name its models `<name>/<model>`.
    name: String,
    /// One of the enum's names (the dashboard offers its choice from this schema).
    #[schema(schema_with = own_provider_types)]
    provider_type: String,
    /// Required for azure (the deployment's URL), bedrock (the region's runtime endpoint), vertex (the publisher's URL) and openai-compatible.
    base_url: Option<String>,
    /// Stored in the secret store; answers only say `has_api_key`.
    #[schema(value_type = Option<String>)]
    api_key: Option<SecretString>,
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
    /// The models it may serve; empty or absent: any.
    models: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    sovereignty: Option<Value>,
}

/// The types a provider of your own may have, as the schema's enum: derived from
/// `ProviderType`, so neither the document nor the dashboard keeps a list of its own.
fn own_provider_types() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(ProviderType::user_owned().into_iter().map(ProviderType::name)))
        .build()
}

impl CreateProvider {
    fn into_provider(self, user_id: Uuid, now: DateTime<Utc>) -> ApiResult<(DynamicProvider, Option<SecretString>)> {
        let provider_type = ProviderType::parse_param(&self.provider_type, "provider_type", &ProviderType::user_owned())?;
        let provider = DynamicProvider {
            id: Uuid::new_v4(),
            user_id,
            name: self.name,
            provider_type,
            base_url: self.base_url,
            models: self.models.unwrap_or_default(),
            config: self.config.filter(|v| !v.is_null()).map(|v| v.to_string()),
            is_enabled: true,
            has_api_key: false,
            sovereignty: self.sovereignty.filter(|v| !v.is_null()).map(|v| v.to_string()),
            deleted_at: None,
            created_at: now,
            updated_at: now,
        };
        Ok((provider, self.api_key))
    }
}

/// Adds one of your own provider accounts. Its models are then `<name>/<model>` to your
/// personal keys (and to nobody else's).
#[utoipa::path(post, path = "/admin/v1/me/providers", tag = "me", request_body = CreateProvider,
    responses((status = 201, body = ProviderView), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn create_provider(State(state): State<AppState>, me: Me, ApiJson(body): ApiJson<CreateProvider>) -> ApiResult<(StatusCode, Json<ProviderView>)> {
    me.require_key_scope(KEYS_WRITE)?;
    let (provider, api_key) = body.into_provider(me.user_id, state.clock.now())?;
    let provider = dynamic_providers::create(state.store.as_ref(), state.secrets.as_ref(), &state.address_policy(), provider, api_key).await?;
    Ok((StatusCode::CREATED, Json(provider.into())))
}

/// Calls the provider with these credentials (its model list: nothing is generated or
/// billed), without saving anything.
#[utoipa::path(post, path = "/admin/v1/me/providers/test-credentials", tag = "me", request_body = CreateProvider,
    responses((status = 200, body = Probe), (status = 400, body = ErrorEnvelope)))]
async fn test_credentials(State(state): State<AppState>, me: Me, ApiJson(body): ApiJson<CreateProvider>) -> ApiResult<Json<Probe>> {
    me.require_key_scope(KEYS_WRITE)?;
    let (provider, api_key) = body.into_provider(me.user_id, state.clock.now())?;
    let api_key = dynamic_providers::given(api_key);
    dynamic_providers::validate(&provider, api_key.is_some(), &state.address_policy())?;
    let base = provider.endpoint().unwrap_or_default();
    Ok(Json(providers::probe(&state.gateway.http.restricted, provider.provider_type, &base, api_key.as_ref()).await))
}

#[utoipa::path(get, path = "/admin/v1/me/providers/{id}", tag = "me", params(("id" = Uuid, Path)),
    responses((status = 200, body = ProviderView), (status = 404, body = ErrorEnvelope)))]
async fn get_provider(State(state): State<AppState>, me: Me, Path(id): Path<String>) -> ApiResult<Json<ProviderView>> {
    me.require_key_read()?;
    Ok(Json(dynamic_providers::get(state.store.as_ref(), me.user_id, parse_uuid(&id, "id")?).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProvider {
    #[schema(value_type = Option<String>)]
    api_key: Option<SecretString>,
    base_url: Option<String>,
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
    is_enabled: Option<bool>,
    models: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    sovereignty: Option<Value>,
}

#[utoipa::path(patch, path = "/admin/v1/me/providers/{id}", tag = "me", params(("id" = Uuid, Path)), request_body = UpdateProvider,
    responses((status = 200, body = ProviderView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn update_provider(
    State(state): State<AppState>,
    me: Me,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateProvider>,
) -> ApiResult<Json<ProviderView>> {
    me.require_key_scope(KEYS_WRITE)?;
    let mut provider = dynamic_providers::get(state.store.as_ref(), me.user_id, parse_uuid(&id, "id")?).await?;
    if let Some(url) = body.base_url {
        provider.base_url = Some(url);
    }
    if let Some(config) = body.config {
        provider.config = Some(config).filter(|v| !v.is_null()).map(|v| v.to_string());
    }
    if let Some(enabled) = body.is_enabled {
        provider.is_enabled = enabled;
    }
    if let Some(models) = body.models {
        provider.models = models;
    }
    if let Some(sovereignty) = body.sovereignty {
        provider.sovereignty = Some(sovereignty).filter(|v| !v.is_null()).map(|v| v.to_string());
    }
    provider.updated_at = state.clock.now();
    let provider =
        dynamic_providers::save(state.store.as_ref(), state.secrets.as_ref(), &state.address_policy(), state.hot.as_ref(), provider, body.api_key).await?;
    Ok(Json(provider.into()))
}

/// Deletes the provider: it stops serving at once here (within the key cache's bound in other
/// processes), its key is destroyed and its name may be used again.
#[utoipa::path(delete, path = "/admin/v1/me/providers/{id}", tag = "me", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
async fn delete_provider(State(state): State<AppState>, me: Me, Path(id): Path<String>) -> ApiResult<StatusCode> {
    me.require_key_scope(KEYS_WRITE)?;
    dynamic_providers::delete(state.store.as_ref(), state.secrets.as_ref(), me.user_id, parse_uuid(&id, "id")?, state.clock.now(), state.hot.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Calls one of your providers with its stored key and reports how that went.
#[utoipa::path(post, path = "/admin/v1/me/providers/{id}/test", tag = "me", params(("id" = Uuid, Path)),
    responses((status = 200, body = Probe), (status = 404, body = ErrorEnvelope)))]
async fn test_provider(State(state): State<AppState>, me: Me, Path(id): Path<String>) -> ApiResult<Json<Probe>> {
    me.require_key_read()?;
    let provider = dynamic_providers::get(state.store.as_ref(), me.user_id, parse_uuid(&id, "id")?).await?;
    if provider.deleted_at.is_some() {
        return Err(ApiError::conflict("provider_deleted", "this provider was deleted; its key is gone"));
    }
    let key = match provider.has_api_key {
        true => state.secrets.get(&provider.secret_name()).await.map_err(ApiError::internal)?,
        false => None,
    };
    let base = provider.endpoint().unwrap_or_default();
    Ok(Json(providers::probe(&state.gateway.http.restricted, provider.provider_type, &base, key.as_ref()).await))
}

#[derive(Serialize, ToSchema)]
pub struct BuiltInProvider {
    name: String,
    provider_type: ProviderType,
    /// Shown only to callers whose global role has `model:read` (base URLs can name internal
    /// hosts, or carry credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    base_url: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct BuiltInList {
    data: Vec<BuiltInProvider>,
}

/// The providers this deployment is configured with: every provider and endpoint the models
/// catalog routes to (without keys), named `<type>` or, for a second endpoint of a type,
/// `<type>@<host>`.
#[utoipa::path(get, path = "/admin/v1/me/built-in-providers", tag = "me", responses((status = 200, body = BuiltInList), (status = 401, body = ErrorEnvelope)))]
async fn built_in_providers(State(state): State<AppState>, me: Me) -> ApiResult<Json<BuiltInList>> {
    me.require_key_read()?;
    let sees_urls = me.has_permission(&state, crate::identity::roles::Permission::ModelRead).await?;
    let mut data: Vec<BuiltInProvider> = Vec::new();
    for model in crate::catalog::list(state.store.as_ref()).await? {
        let base_url = model.endpoint();
        if data.iter().any(|p| p.provider_type == model.provider && p.base_url == base_url) {
            continue;
        }
        let host = base_url.as_deref().and_then(|u| u.parse::<axum::http::Uri>().ok()).and_then(|u| u.host().map(str::to_string));
        let taken = data.iter().any(|p| p.provider_type == model.provider);
        let name = match host {
            Some(host) if taken => format!("{}@{host}", model.provider),
            _ => model.provider.to_string(),
        };
        data.push(BuiltInProvider { name, provider_type: model.provider, base_url });
    }
    if !sees_urls {
        // Without model:read, types and names only; names stay distinct (`type@host` would
        // name the host), so a second endpoint of a type is numbered instead.
        let mut seen: Vec<ProviderType> = Vec::new();
        for provider in &mut data {
            provider.base_url = None;
            let count = seen.iter().filter(|t| **t == provider.provider_type).count();
            provider.name = if count == 0 { provider.provider_type.to_string() } else { format!("{}#{}", provider.provider_type, count + 1) };
            seen.push(provider.provider_type);
        }
    }
    Ok(Json(BuiltInList { data }))
}
