//! Providers group, management family: the models catalog.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::canonical::extras as fees;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorEnvelope;
use super::extract::{ApiJson, Caller};
use crate::catalog::{self, Deployment, Model, ProviderType, RetryPolicy, Strategy, UpstreamApi};
use crate::error::{ApiError, ApiResult};
use crate::identity::roles::Permission;
use crate::money::{dollars_to_micros, micros_to_dollars};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_models, create_model))
        .routes(routes!(get_model, update_model, patch_model, delete_model))
        .routes(routes!(rotate_model_key))
}

/// A catalog model. Prices are dollars per million tokens; the key itself is never returned.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelView {
    id: String,
    provider: ProviderType,
    base_url: Option<String>,
    input_price: f64,
    output_price: f64,
    /// Dollars per million input tokens read from the provider's cache.
    cached_input_price: f64,
    /// Dollars per million input tokens written to the provider's cache (Anthropic's 5-minute cache).
    cache_write_price: f64,
    /// Dollars per million input tokens written to Anthropic's 1-hour cache.
    cache_write_1h_price: f64,
    context_window: i64,
    /// The most output tokens per answer; what a request without max_tokens is reserved at.
    max_output_tokens: i64,
    capabilities: Vec<String>,
    /// Dollars per call of each built-in tool requests may use with it (web_search,
    /// file_search, code_interpreter, image_generation, computer_use, mcp, local_shell).
    tool_call_prices: BTreeMap<String, f64>,
    /// Each service tier requests may ask for (priority, flex, scale), as a multiplier of its prices.
    service_tier_multipliers: BTreeMap<String, f64>,
    /// Whether requests may name objects stored at its provider (prompts, files, vector stores).
    allow_provider_objects: bool,
    /// What its provider offers in data sovereignty: {region, zero_data_retention, no_training, certifications}.
    #[schema(value_type = Option<Object>)]
    sovereignty: Option<serde_json::Value>,
    has_api_key: bool,
    /// Where it is served, when on more than its own provider (absent: the model's own
    /// provider, base URL and key).
    #[serde(skip_serializing_if = "Option::is_none")]
    deployments: Option<Vec<DeploymentView>>,
    /// How a deployment is chosen (absent: weighted).
    #[serde(skip_serializing_if = "Option::is_none")]
    routing_strategy: Option<Strategy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fallbacks: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    context_window_fallback: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry: Option<RetryView>,
    /// `responses` for a model its provider serves only on OpenAI's Responses API (absent: chat).
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_api: Option<UpstreamApi>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// One deployment of a model; its key is never returned.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentView {
    id: String,
    provider: ProviderType,
    base_url: Option<String>,
    region: Option<String>,
    weight: u32,
    rpm: Option<i64>,
    tpm: Option<i64>,
    /// Whether it has a key of its own (else it uses the model's).
    has_api_key: bool,
}

/// Attempts a request may make on the model, and how long all its attempts may take.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryView {
    /// Attempts on this model, across its deployments, retries of one included (1-16).
    max_attempts: u32,
    /// The most milliseconds all of a request's attempts may take together.
    max_total_ms: Option<u64>,
}

impl From<RetryView> for RetryPolicy {
    fn from(r: RetryView) -> Self {
        RetryPolicy { max_attempts: r.max_attempts, max_total_ms: r.max_total_ms }
    }
}

impl From<RetryPolicy> for RetryView {
    fn from(r: RetryPolicy) -> Self {
        RetryView { max_attempts: r.max_attempts, max_total_ms: r.max_total_ms }
    }
}

/// A deployment as a request gives it.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeploymentInput {
    /// Unique within the model (the same pattern as model ids).
    id: String,
    /// Default: the model's provider.
    provider: Option<String>,
    /// Default: the model's base URL, when the provider is the model's.
    base_url: Option<String>,
    /// Stored in the secret store; default: the model's key (on PUT, the key it had).
    #[schema(value_type = Option<String>)]
    api_key: Option<SecretString>,
    region: Option<String>,
    /// Its share of the traffic among healthy deployments; default 1.
    weight: Option<u32>,
    /// Requests per minute it takes; at this it is skipped until the minute ends.
    rpm: Option<i64>,
    /// Tokens per minute it takes.
    tpm: Option<i64>,
}

/// The deployments a request gives, with their keys.
fn deployments(model: &Model, inputs: Vec<DeploymentInput>) -> ApiResult<Vec<(Deployment, Option<SecretString>)>> {
    inputs
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let provider = match d.provider {
                Some(p) => ProviderType::parse_param(&p, &format!("deployments[{i}].provider"), &ProviderType::ALL)?,
                None => model.provider,
            };
            let deployment = Deployment {
                id: d.id,
                provider,
                base_url: d.base_url,
                region: d.region,
                weight: d.weight.unwrap_or(1),
                rpm: d.rpm,
                tpm: d.tpm,
                has_api_key: false,
            };
            Ok((deployment, d.api_key))
        })
        .collect()
}

/// Applies the routing fields of a create or an update to `model` (deployments without their
/// keys: `catalog::routing::set_deployments` stores those once the whole model is valid).
fn apply_routing(
    model: &mut Model,
    strategy: Option<Strategy>,
    fallbacks: Option<Vec<String>>,
    context_window_fallback: Option<String>,
    retry: Option<RetryView>,
    upstream_api: Option<UpstreamApi>,
) {
    if let Some(api) = upstream_api {
        model.routing.upstream_api = api;
    }
    if let Some(s) = strategy {
        model.routing.strategy = s;
    }
    if let Some(f) = fallbacks {
        model.routing.fallbacks = f;
    }
    if let Some(f) = context_window_fallback {
        // An empty id clears it.
        model.routing.context_window_fallback = Some(f).filter(|f| !f.is_empty());
    }
    if let Some(r) = retry {
        model.routing.retry = Some(r.into());
    }
}

/// Validates `model` with the new deployments in place, then stores their keys.
async fn place_deployments(state: &AppState, model: &mut Model, inputs: Option<Vec<DeploymentInput>>) -> ApiResult<()> {
    let Some(inputs) = inputs else { return catalog::validate(model) };
    let wanted = deployments(model, inputs)?;
    let mut candidate = model.clone();
    candidate.routing.deployments = wanted.iter().map(|(d, _)| d.clone()).collect();
    catalog::validate(&candidate)?;
    catalog::routing::set_deployments(state.secrets.as_ref(), model, wanted).await
}

impl From<Model> for ModelView {
    fn from(m: Model) -> Self {
        let prices = m.prices();
        let max_output_tokens = m.output_cap();
        ModelView {
            id: m.id,
            provider: m.provider,
            base_url: m.base_url,
            input_price: micros_to_dollars(prices.input),
            output_price: micros_to_dollars(prices.output),
            cached_input_price: micros_to_dollars(prices.cached_input),
            cache_write_price: micros_to_dollars(prices.cache_write),
            cache_write_1h_price: micros_to_dollars(prices.cache_write_1h),
            context_window: m.context_window,
            max_output_tokens,
            capabilities: m.capabilities,
            tool_call_prices: m.tool_call_prices_micros.iter().map(|(k, v)| (k.clone(), micros_to_dollars(*v))).collect(),
            service_tier_multipliers: m.service_tier_percent.iter().map(|(k, v)| (k.clone(), *v as f64 / 100.0)).collect(),
            allow_provider_objects: m.allow_provider_objects,
            sovereignty: m.sovereignty.as_deref().and_then(|s| serde_json::from_str(s).ok()),
            has_api_key: m.has_api_key,
            deployments: Some(m.routing.deployments).filter(|d| !d.is_empty()).map(|ds| {
                ds.into_iter()
                    .map(|d| DeploymentView {
                        id: d.id,
                        provider: d.provider,
                        base_url: d.base_url,
                        region: d.region,
                        weight: d.weight,
                        rpm: d.rpm,
                        tpm: d.tpm,
                        has_api_key: d.has_api_key,
                    })
                    .collect()
            }),
            routing_strategy: Some(m.routing.strategy).filter(|s| *s != Strategy::Weighted),
            fallbacks: Some(m.routing.fallbacks).filter(|f| !f.is_empty()),
            context_window_fallback: m.routing.context_window_fallback,
            retry: m.routing.retry.map(RetryView::from),
            upstream_api: Some(m.routing.upstream_api).filter(|a| *a != UpstreamApi::Chat),
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[utoipa::path(get, path = "/api/models", tag = "models", responses((status = 200, body = Vec<ModelView>), (status = 403, body = ErrorEnvelope)))]
async fn list_models(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<ModelView>>> {
    caller.require(Permission::ModelRead)?;
    Ok(Json(catalog::list(state.store.as_ref()).await?.into_iter().map(ModelView::from).collect()))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateModel {
    id: String,
    provider: String,
    /// Stored in the secret store; responses only say `hasApiKey`.
    #[schema(value_type = Option<String>)]
    api_key: Option<SecretString>,
    /// Dollars per million input tokens.
    input_price: f64,
    /// Dollars per million output tokens (reasoning tokens included).
    output_price: f64,
    /// Dollars per million input tokens read from the provider's prompt cache; default: inputPrice.
    cached_input_price: Option<f64>,
    /// Dollars per million input tokens written to the provider's prompt cache (Anthropic's
    /// 5-minute cache); default: inputPrice.
    cache_write_price: Option<f64>,
    /// Dollars per million input tokens written to Anthropic's 1-hour cache; default: cacheWritePrice.
    cache_write_1h_price: Option<f64>,
    context_window: i64,
    /// The most output tokens per answer; default: contextWindow. A request without max_tokens
    /// is reserved at this.
    max_output_tokens: Option<i64>,
    #[serde(default)]
    capabilities: Vec<String>,
    /// Dollars per call of each built-in tool requests may use with it; a tool without a price
    /// is refused (web_search, file_search, code_interpreter, image_generation, computer_use, mcp, local_shell).
    tool_call_prices: Option<BTreeMap<String, f64>>,
    /// Each service tier requests may ask for (priority, flex, scale), as a multiplier of its
    /// prices (priority at 1.75 bills 175%); a tier without one is refused.
    service_tier_multipliers: Option<BTreeMap<String, f64>>,
    /// Whether requests may name objects stored at its provider (prompts, files, vector stores);
    /// default false.
    allow_provider_objects: Option<bool>,
    /// What its provider offers in data sovereignty, matched against keys' requirements:
    /// {region, zero_data_retention, no_training, certifications}, each optional.
    #[schema(value_type = Option<Object>)]
    sovereignty: Option<serde_json::Value>,
    /// Any OpenAI-compatible endpoint (our addition to the seed).
    base_url: Option<String>,
    /// Where it is served, when on more than its own provider: each deployment's provider,
    /// base URL, key, region, weight and rpm/tpm capacity.
    deployments: Option<Vec<DeploymentInput>>,
    /// How a deployment is chosen among the healthy ones; default weighted.
    routing_strategy: Option<Strategy>,
    /// Models tried, in order, once this one's attempts are spent (each reserved and charged at
    /// its own prices).
    fallbacks: Option<Vec<String>>,
    /// A larger model for requests too long for this one's context window.
    context_window_fallback: Option<String>,
    /// Attempts and total time (default: one attempt per deployment, within the timeout).
    retry: Option<RetryView>,
    /// `responses` for a model served only on OpenAI's Responses API (o1-pro, o3-pro, codex):
    /// chat and messages requests are translated to it and back. Default `chat`.
    upstream_api: Option<UpstreamApi>,
}

#[utoipa::path(post, path = "/api/models", tag = "models", request_body = CreateModel,
    responses((status = 201, body = ModelView), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn create_model(State(state): State<AppState>, caller: Caller, ApiJson(body): ApiJson<CreateModel>) -> ApiResult<(StatusCode, Json<ModelView>)> {
    caller.require(Permission::ModelWrite)?;
    let now = state.clock.now();
    let model = Model {
        id: body.id,
        provider: ProviderType::parse_param(&body.provider, "provider", &ProviderType::ALL)?,
        base_url: body.base_url,
        input_price_micros: dollars_to_micros(body.input_price, "inputPrice")?,
        output_price_micros: dollars_to_micros(body.output_price, "outputPrice")?,
        cached_input_price_micros: body.cached_input_price.map(|p| dollars_to_micros(p, "cachedInputPrice")).transpose()?,
        cache_write_price_micros: body.cache_write_price.map(|p| dollars_to_micros(p, "cacheWritePrice")).transpose()?,
        cache_write_1h_price_micros: body.cache_write_1h_price.map(|p| dollars_to_micros(p, "cacheWrite1hPrice")).transpose()?,
        context_window: body.context_window,
        max_output_tokens: body.max_output_tokens,
        capabilities: body.capabilities,
        tool_call_prices_micros: tool_prices(body.tool_call_prices)?,
        service_tier_percent: tier_percents(body.service_tier_multipliers)?,
        allow_provider_objects: body.allow_provider_objects.unwrap_or(false),
        sovereignty: body.sovereignty.filter(|v| !v.is_null()).map(|v| v.to_string()),
        has_api_key: false,
        secret_id: uuid::Uuid::new_v4(),
        dynamic: None,
        routing: Default::default(),
        deployment: None,
        created_at: now,
        updated_at: now,
    };
    let mut model = model;
    apply_routing(&mut model, body.routing_strategy, body.fallbacks, body.context_window_fallback, body.retry, body.upstream_api);
    place_deployments(&state, &mut model, body.deployments).await?;
    let model = catalog::create(state.store.as_ref(), state.secrets.as_ref(), model, body.api_key).await?;
    Ok((StatusCode::CREATED, Json(model.into())))
}

#[utoipa::path(get, path = "/api/models/{id}", tag = "models", params(("id" = String, Path)),
    responses((status = 200, body = ModelView), (status = 404, body = ErrorEnvelope)))]
async fn get_model(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<ModelView>> {
    caller.require(Permission::ModelRead)?;
    Ok(Json(catalog::require(state.store.as_ref(), &id).await?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateModel {
    provider: Option<String>,
    #[schema(value_type = Option<String>)]
    api_key: Option<SecretString>,
    input_price: Option<f64>,
    output_price: Option<f64>,
    cached_input_price: Option<f64>,
    cache_write_price: Option<f64>,
    cache_write_1h_price: Option<f64>,
    context_window: Option<i64>,
    max_output_tokens: Option<i64>,
    capabilities: Option<Vec<String>>,
    tool_call_prices: Option<BTreeMap<String, f64>>,
    service_tier_multipliers: Option<BTreeMap<String, f64>>,
    allow_provider_objects: Option<bool>,
    #[schema(value_type = Option<Object>)]
    sovereignty: Option<serde_json::Value>,
    base_url: Option<String>,
    /// Replaces the deployments; a deployment listed without apiKey keeps the key it had.
    /// An empty list serves the model from its own provider again.
    deployments: Option<Vec<DeploymentInput>>,
    routing_strategy: Option<Strategy>,
    fallbacks: Option<Vec<String>>,
    /// An empty string removes it.
    context_window_fallback: Option<String>,
    retry: Option<RetryView>,
    upstream_api: Option<UpstreamApi>,
    /// Removes its retry policy (back to one attempt per deployment).
    retry_off: Option<bool>,
}

/// `toolCallPrices` (dollars per call) in micro-dollars, each tool one the gateway knows.
fn tool_prices(prices: Option<BTreeMap<String, f64>>) -> ApiResult<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for (tool, price) in prices.unwrap_or_default() {
        if !fees::HOSTED_TOOLS.contains(&tool.as_str()) {
            return Err(ApiError::invalid_param("toolCallPrices", format!("{tool:?} is not a built-in tool; price one of {}", fees::HOSTED_TOOLS.join(", "))));
        }
        out.insert(tool, dollars_to_micros(price, "toolCallPrices")?);
    }
    Ok(out)
}

/// `serviceTierMultipliers` as whole percentages of the model's prices.
fn tier_percents(multipliers: Option<BTreeMap<String, f64>>) -> ApiResult<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for (tier, multiplier) in multipliers.unwrap_or_default() {
        if !fees::SERVICE_TIERS.contains(&tier.as_str()) {
            return Err(ApiError::invalid_param("serviceTierMultipliers", format!("{tier:?} is not a service tier; use {}", fees::SERVICE_TIERS.join(", "))));
        }
        if !(multiplier.is_finite() && (0.01..=100.0).contains(&multiplier)) {
            return Err(ApiError::invalid_param("serviceTierMultipliers", format!("the {tier} multiplier must be between 0.01 and 100")));
        }
        out.insert(tier, (multiplier * 100.0).round() as i64);
    }
    Ok(out)
}

#[utoipa::path(put, path = "/api/models/{id}", tag = "models", params(("id" = String, Path)), request_body = UpdateModel,
    responses((status = 200, body = ModelView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn update_model(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateModel>,
) -> ApiResult<Json<ModelView>> {
    caller.require(Permission::ModelWrite)?;
    let mut model = catalog::require(state.store.as_ref(), &id).await?;
    if let Some(p) = body.provider {
        model.provider = ProviderType::parse_param(&p, "provider", &ProviderType::ALL)?;
    }
    if let Some(p) = body.input_price {
        model.input_price_micros = dollars_to_micros(p, "inputPrice")?;
    }
    if let Some(p) = body.output_price {
        model.output_price_micros = dollars_to_micros(p, "outputPrice")?;
    }
    if let Some(p) = body.cached_input_price {
        model.cached_input_price_micros = Some(dollars_to_micros(p, "cachedInputPrice")?);
    }
    if let Some(p) = body.cache_write_price {
        model.cache_write_price_micros = Some(dollars_to_micros(p, "cacheWritePrice")?);
    }
    if let Some(p) = body.cache_write_1h_price {
        model.cache_write_1h_price_micros = Some(dollars_to_micros(p, "cacheWrite1hPrice")?);
    }
    if let Some(c) = body.context_window {
        model.context_window = c;
    }
    if let Some(m) = body.max_output_tokens {
        model.max_output_tokens = Some(m);
    }
    if let Some(c) = body.capabilities {
        model.capabilities = c;
    }
    if body.tool_call_prices.is_some() {
        model.tool_call_prices_micros = tool_prices(body.tool_call_prices)?;
    }
    if body.service_tier_multipliers.is_some() {
        model.service_tier_percent = tier_percents(body.service_tier_multipliers)?;
    }
    if let Some(allow) = body.allow_provider_objects {
        model.allow_provider_objects = allow;
    }
    if let Some(s) = body.sovereignty {
        model.sovereignty = Some(s).filter(|v| !v.is_null()).map(|v| v.to_string());
    }
    if let Some(u) = body.base_url {
        model.base_url = Some(u);
    }
    apply_routing(&mut model, body.routing_strategy, body.fallbacks, body.context_window_fallback, body.retry, body.upstream_api);
    if body.retry_off == Some(true) {
        model.routing.retry = None;
    }
    place_deployments(&state, &mut model, body.deployments).await?;
    if let Some(key) = body.api_key {
        state.secrets.put(&model.secret_name(), &key).await.map_err(ApiError::internal)?;
        model.has_api_key = true;
    }
    model.updated_at = state.clock.now();
    catalog::save(state.store.as_ref(), &model, state.hot.as_ref()).await?;
    Ok(Json(model.into()))
}

/// The same partial update as PUT (whose fields are all optional): only what is sent changes.
#[utoipa::path(patch, path = "/api/models/{id}", tag = "models", params(("id" = String, Path)), request_body = UpdateModel,
    responses((status = 200, body = ModelView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn patch_model(state: State<AppState>, caller: Caller, id: Path<String>, body: ApiJson<UpdateModel>) -> ApiResult<Json<ModelView>> {
    update_model(state, caller, id, body).await
}

#[utoipa::path(delete, path = "/api/models/{id}", tag = "models", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
async fn delete_model(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    caller.require(Permission::ModelWrite)?;
    catalog::delete(state.store.as_ref(), state.secrets.as_ref(), &id, state.hot.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateModelKey {
    #[schema(value_type = String)]
    api_key: SecretString,
}

/// Replaces the model's provider key in the secret store.
#[utoipa::path(post, path = "/api/models/{id}/apikey", tag = "models", params(("id" = String, Path)), request_body = RotateModelKey,
    responses((status = 200, body = ModelView), (status = 404, body = ErrorEnvelope)))]
async fn rotate_model_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RotateModelKey>,
) -> ApiResult<Json<ModelView>> {
    caller.require(Permission::ModelWrite)?;
    let model = catalog::set_api_key(state.store.as_ref(), state.secrets.as_ref(), &id, body.api_key, state.clock.now(), state.hot.as_ref()).await?;
    Ok(Json(model.into()))
}
