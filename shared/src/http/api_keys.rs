//! Tokens group, self-service family: the caller's personal API keys.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::response_cache::CacheSettings;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ErrorEnvelope;
use super::extract::{ApiJson, ApiJsonOrEmpty, ApiQuery, Me, parse_uuid};
use crate::error::ApiResult;
use crate::keys::{self, ApiKey, BudgetPeriod, KeySettings, Owner};
use crate::pagination::{ListParams, Pagination, check_limit};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_keys, create_key)).routes(routes!(get_key, revoke_key)).routes(routes!(rotate_key))
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    id: Uuid,
    name: String,
    key_prefix: String,
    #[schema(value_type = Object)]
    owner: Value,
    scopes: Option<Vec<String>>,
    allowed_models: Option<Vec<String>>,
    ip_allowlist: Option<Vec<String>>,
    budget_limit_cents: Option<i64>,
    budget_period: Option<BudgetPeriod>,
    rate_limit_rpm: Option<i64>,
    rate_limit_tpm: Option<i64>,
    #[schema(value_type = Option<Object>)]
    sovereignty_requirements: Option<Value>,
    expires_at: Option<DateTime<Utc>>,
    fit_max_tokens: bool,
    /// The response cache, when the key opted in.
    #[serde(skip_serializing_if = "Option::is_none")]
    cache: Option<CacheSettings>,
    revoked_at: Option<DateTime<Utc>>,
    rotated_from_key_id: Option<Uuid>,
    rotation_grace_until: Option<DateTime<Utc>>,
    /// The API key that made this one (it counts against that key's limits too), when a key
    /// rather than a session made it.
    parent_key_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    /// The secret: present once, in the answer to a creation or rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl KeyView {
    fn of(k: ApiKey, secret: Option<String>) -> Self {
        let s = k.settings;
        KeyView {
            id: k.id,
            name: s.name,
            key_prefix: k.key_prefix,
            owner: serde_json::to_value(&k.owner).unwrap_or(Value::Null),
            scopes: s.scopes,
            allowed_models: s.allowed_models,
            ip_allowlist: s.ip_allowlist,
            budget_limit_cents: s.budget_limit_cents,
            budget_period: s.budget_period,
            rate_limit_rpm: s.rate_limit_rpm,
            rate_limit_tpm: s.rate_limit_tpm,
            sovereignty_requirements: s.sovereignty_requirements.and_then(|s| serde_json::from_str(&s).ok()),
            expires_at: s.expires_at,
            fit_max_tokens: s.fit_max_tokens,
            cache: s.cache,
            revoked_at: k.revoked_at,
            rotated_from_key_id: k.rotated_from_key_id,
            rotation_grace_until: k.rotation_grace_until,
            parent_key_id: k.parent_key_id,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            key: secret,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    data: Vec<KeyView>,
    pagination: Pagination,
}

#[utoipa::path(get, path = "/admin/v1/me/api-keys", tag = "me", params(ListParams),
    responses((status = 200, body = KeyList), (status = 401, body = ErrorEnvelope)))]
async fn list_keys(State(state): State<AppState>, me: Me, ApiQuery(q): ApiQuery<ListParams>) -> ApiResult<Json<KeyList>> {
    me.require_key_read()?;
    let limit = check_limit(q.limit)?;
    let owner = Owner::User { user_id: me.user_id };
    let (keys, pagination) =
        keys::list(state.store.as_ref(), &owner, limit, q.cursor, q.direction.unwrap_or_default(), q.include_deleted.unwrap_or(false)).await?;
    Ok(Json(KeyList { data: keys.into_iter().map(|k| KeyView::of(k, None)).collect(), pagination }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    /// Exact model names or prefixes ending in `*`; null = every model.
    allowed_models: Option<Vec<String>>,
    budget_limit_cents: Option<i64>,
    budget_period: Option<BudgetPeriod>,
    expires_at: Option<DateTime<Utc>>,
    /// IPs or CIDRs; null = every address.
    ip_allowlist: Option<Vec<String>>,
    rate_limit_rpm: Option<i64>,
    rate_limit_tpm: Option<i64>,
    /// null = every scope, [] = none.
    scopes: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    sovereignty_requirements: Option<Value>,
    /// When a request's worst case does not fit what a budget has left, lower its max_tokens to
    /// what the budget can still pay for (the answer's `x-tollgate-max-tokens-lowered` header
    /// says to what) instead of refusing it with 402. Default false.
    #[serde(default)]
    fit_max_tokens: bool,
    /// Answer a request this key sent before from the response cache: `{"ttl": seconds,
    /// "mode": "exact"}`. A hit says `x-tollgate-cache: hit` and is charged what the operator
    /// set (`TOLLGATE_CACHE_HIT_PERCENT` of the first answer's cost, 0 by default).
    cache: Option<CacheSettings>,
}

/// Creates a key; its secret is in `key`, shown this once. An API key (with `keys:write`) may
/// create keys no wider than itself, which also count against its limits.
#[utoipa::path(post, path = "/admin/v1/me/api-keys", tag = "me", request_body = CreateKey,
    responses((status = 201, body = KeyView), (status = 400, body = ErrorEnvelope)))]
async fn create_key(State(state): State<AppState>, me: Me, ApiJson(body): ApiJson<CreateKey>) -> ApiResult<(StatusCode, Json<KeyView>)> {
    me.require_key_scope(keys::lineage::KEYS_WRITE)?;
    let settings = KeySettings {
        name: body.name,
        scopes: body.scopes,
        allowed_models: body.allowed_models,
        ip_allowlist: body.ip_allowlist,
        budget_limit_cents: body.budget_limit_cents,
        budget_period: body.budget_period,
        rate_limit_rpm: body.rate_limit_rpm,
        rate_limit_tpm: body.rate_limit_tpm,
        limits: vec![],
        sovereignty_requirements: body.sovereignty_requirements.filter(|v| !v.is_null()).map(|v| v.to_string()),
        expires_at: body.expires_at,
        fit_max_tokens: body.fit_max_tokens,
        cache: body.cache,
    };
    let issued = keys::create(state.store.as_ref(), Owner::User { user_id: me.user_id }, settings, me.key(), state.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(KeyView::of(issued.key, Some(issued.secret)))))
}

#[utoipa::path(get, path = "/admin/v1/me/api-keys/{key_id}", tag = "me", params(("key_id" = Uuid, Path)),
    responses((status = 200, body = KeyView), (status = 404, body = ErrorEnvelope)))]
async fn get_key(State(state): State<AppState>, me: Me, Path(key_id): Path<String>) -> ApiResult<Json<KeyView>> {
    me.require_key_read()?;
    let key = keys::get(state.store.as_ref(), &Owner::User { user_id: me.user_id }, parse_uuid(&key_id, "key_id")?).await?;
    Ok(Json(KeyView::of(key, None)))
}

/// Revokes the key at once (within the key-cache bound in other warm processes), and the keys
/// made from it by keys. An API key may revoke only itself and the keys descended from it.
#[utoipa::path(delete, path = "/admin/v1/me/api-keys/{key_id}", tag = "me", params(("key_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
async fn revoke_key(State(state): State<AppState>, me: Me, Path(key_id): Path<String>) -> ApiResult<StatusCode> {
    me.require_key_scope(keys::lineage::KEYS_WRITE)?;
    let owner = Owner::User { user_id: me.user_id };
    let id = parse_uuid(&key_id, "key_id")?;
    me.require_may_manage(&keys::get(state.store.as_ref(), &owner, id).await?)?;
    keys::revoke(state.store.as_ref(), &owner, id, state.clock.now(), state.hot.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// Seconds the old key keeps working: default 86400, 1 to 604800.
    grace_period_seconds: Option<i64>,
}

/// A new key with every setting of the old one; the old one works until `rotation_grace_until`.
/// An API key may rotate only itself and the keys descended from it.
#[utoipa::path(post, path = "/admin/v1/me/api-keys/{key_id}/rotate", tag = "me", params(("key_id" = Uuid, Path)), request_body = RotateKey,
    responses((status = 201, body = KeyView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn rotate_key(
    State(state): State<AppState>,
    me: Me,
    Path(key_id): Path<String>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<RotateKey>,
) -> ApiResult<(StatusCode, Json<KeyView>)> {
    me.require_key_scope(keys::lineage::KEYS_WRITE)?;
    let owner = Owner::User { user_id: me.user_id };
    let id = parse_uuid(&key_id, "key_id")?;
    me.require_may_manage(&keys::get(state.store.as_ref(), &owner, id).await?)?;
    let grace = body.grace_period_seconds.unwrap_or(keys::DEFAULT_GRACE_SECS);
    let issued = keys::rotate(state.store.as_ref(), &owner, id, grace, state.clock.now(), state.hot.as_ref()).await?;
    Ok((StatusCode::CREATED, Json(KeyView::of(issued.key, Some(issued.secret)))))
}
