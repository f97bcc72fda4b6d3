//! Which catalog models may serve a request: the requested one, or for a project token the
//! project's models in routing order; and the models a key may use, as the doors list them.

use serde_json::{Value, json};

use super::Gateway;
use crate::canonical::Endpoint;
use crate::catalog::{self, Model, ProviderType};
use crate::error::{ApiError, ApiResult};
use crate::keys::ApiKey;

/// The default context window of a model on a caller's own provider that the catalog does not
/// know (it bounds the worst case of a request without max_tokens).
pub const DYNAMIC_CONTEXT_WINDOW: i64 = 128_000;

/// The model a key asks for: `<provider name>/<model>` on the key's user's own provider (a
/// personal key's, and only its), `openrouter/<model>` or `huggingface/<model>` through the
/// workspace's saved integration (a workspace token's), else a catalog model.
pub(super) async fn resolve_for(gw: &Gateway, key: &ApiKey, id: &str) -> ApiResult<Model> {
    let own = match (id.split_once('/'), &key.owner) {
        (Some((name, model)), crate::keys::Owner::User { user_id }) => dynamic_model(gw, *user_id, name, model, id).await?,
        (Some((service, model)), crate::keys::Owner::Workspace { workspace_id }) => integration_model(gw, *workspace_id, service, model, id).await?,
        _ => None,
    };
    match own {
        Some(model) => Ok(model),
        None => resolve_model(gw, id).await,
    }
}

/// `model` through the workspace's `service` integration, if it has one; priced as the
/// catalog's model of the same name (or last segment); unpriced otherwise, and then refused
/// unless the service reports what it charged (`priced`).
async fn integration_model(gw: &Gateway, workspace_id: uuid::Uuid, service: &str, model: &str, id: &str) -> ApiResult<Option<Model>> {
    use crate::integrations::{self, Service};
    let Some(service) = Service::parse(service) else { return Ok(None) };
    let load = async { Ok::<_, ApiError>(integrations::get(gw.store.as_ref(), workspace_id, service).await?.map(std::sync::Arc::new)) };
    let Some(integration) = gw.hot.integrations.get_or_load((workspace_id, service.name()), load).await? else { return Ok(None) };
    let base_url = match service {
        Service::OpenRouter => gw.integrations.openrouter.clone(),
        Service::HuggingFace => gw.integrations.huggingface.clone(),
    };
    // A catalog id has no `/`: a model such as meta-llama/Llama-3.1-8B-Instruct is priced by
    // its last segment.
    let priced = match resolve_model(gw, model.rsplit('/').next().unwrap_or(model)).await {
        Ok(m) => Some(m),
        Err(e) if e.is("model_not_found") => None,
        Err(e) => return Err(e),
    };
    let dynamic = catalog::DynamicRef {
        secret_name: integrations::secret_name(workspace_id, service),
        model: model.to_string(),
        priced: priced.is_some(),
        integration: true,
    };
    let provider = match service {
        Service::OpenRouter => ProviderType::OpenRouter,
        Service::HuggingFace => ProviderType::HuggingFace,
    };
    Ok(Some(own_model(id, provider, Some(base_url), priced, None, true, dynamic, integration.saved_at)))
}

/// A model on an account of the caller's own, priced as the catalog's `priced` when known.
#[allow(clippy::too_many_arguments)]
fn own_model(
    id: &str,
    provider: ProviderType,
    base_url: Option<String>,
    priced: Option<Model>,
    sovereignty: Option<String>,
    has_api_key: bool,
    dynamic: catalog::DynamicRef,
    at: chrono::DateTime<chrono::Utc>,
) -> Model {
    Model {
        id: id.to_string(),
        provider,
        base_url,
        input_price_micros: priced.as_ref().map_or(0, |m| m.input_price_micros),
        output_price_micros: priced.as_ref().map_or(0, |m| m.output_price_micros),
        cached_input_price_micros: priced.as_ref().and_then(|m| m.cached_input_price_micros),
        cache_write_price_micros: priced.as_ref().and_then(|m| m.cache_write_price_micros),
        cache_write_1h_price_micros: priced.as_ref().and_then(|m| m.cache_write_1h_price_micros),
        context_window: priced.as_ref().map_or(DYNAMIC_CONTEXT_WINDOW, |m| m.context_window),
        max_output_tokens: priced.as_ref().and_then(|m| m.max_output_tokens),
        capabilities: vec![],
        tool_call_prices_micros: Default::default(),
        service_tier_percent: Default::default(),
        allow_provider_objects: false,
        sovereignty,
        has_api_key,
        secret_id: uuid::Uuid::nil(),
        dynamic: Some(dynamic),
        routing: Default::default(),
        deployment: None,
        created_at: at,
        updated_at: at,
    }
}

/// `model` on the user's provider `name`, priced as the catalog's model of the same id (free,
/// with a default window, when the catalog has none); `None` when the user has no such provider.
async fn dynamic_model(gw: &Gateway, user_id: uuid::Uuid, name: &str, model: &str, id: &str) -> ApiResult<Option<Model>> {
    let load = async { Ok::<_, ApiError>(crate::dynamic_providers::by_name(gw.store.as_ref(), user_id, name).await?.map(std::sync::Arc::new)) };
    let Some(provider) = gw.hot.dynamic.get_or_load((user_id, name.to_string()), load).await? else { return Ok(None) };
    if !provider.serves(model) {
        return Err(ApiError::not_found_as(
            "model_not_found",
            format!("your provider {name:?} does not serve {model:?} (it is disabled, or the model is not among its models)"),
        ));
    }
    let priced = match resolve_model(gw, model).await {
        Ok(m) => Some(m),
        Err(e) if e.is("model_not_found") => None,
        Err(e) => return Err(e),
    };
    let dynamic = catalog::DynamicRef { secret_name: provider.secret_name(), model: model.to_string(), priced: priced.is_some(), integration: false };
    let (endpoint, sovereignty) = (provider.endpoint(), provider.sovereignty.clone());
    Ok(Some(own_model(id, provider.provider_type, endpoint, priced, sovereignty, provider.has_api_key, dynamic, provider.updated_at)))
}

pub(super) async fn resolve_model(gw: &super::Gateway, id: &str) -> ApiResult<Model> {
    if let Some(model) = gw.hot.models.get(id) {
        return Ok(model);
    }
    let model = catalog::get(gw.store.as_ref(), id)
        .await?
        .ok_or_else(|| ApiError::not_found_as("model_not_found", format!("there is no model {id:?}; GET /v1/models lists the models this key may use")))?;
    gw.hot.models.insert(id.to_string(), model.clone());
    Ok(model)
}

/// A project token's routing candidates: the project's models in order, the requested one
/// first when it is among them. Models since removed from the catalog are skipped.
pub(super) async fn route(gw: &super::Gateway, project: &crate::projects::Project, requested: &str) -> ApiResult<Vec<Model>> {
    let mut order: Vec<&String> = project.models.iter().collect();
    if let Some(i) = order.iter().position(|m| *m == requested) {
        let first = order.remove(i);
        order.insert(0, first);
    }
    let mut out = Vec::with_capacity(order.len());
    for id in order {
        match resolve_model(gw, id).await {
            Ok(model) => out.push(model),
            Err(e) if e.is("model_not_found") => continue,
            Err(e) => return Err(e),
        }
    }
    if out.is_empty() {
        return Err(ApiError::unavailable(
            "no_route",
            format!("project {:?} has no catalog models to route to; set its models with PUT /api/projects/{}", project.slug, project.slug),
        ));
    }
    Ok(out)
}

/// The models a request may be served by, in order: each routed model (or, when the request is
/// too long for its context window by the gateway's estimate, its `contextWindowFallback`),
/// then its `fallbacks`, for every kind of key. A fallback the key may not use, or that the
/// catalog no longer has, is left out; each model appears once.
pub(super) async fn with_fallbacks(gw: &Gateway, key: &ApiKey, estimated_input: i64, routed: Vec<Model>) -> ApiResult<Vec<Model>> {
    if routed.iter().all(|m| m.routing.fallbacks.is_empty() && m.routing.context_window_fallback.is_none()) {
        return Ok(routed);
    }
    let mut chain: Vec<Model> = Vec::with_capacity(routed.len());
    let usable = async |id: &str| -> ApiResult<Option<Model>> {
        if !key.allows_model(id) {
            return Ok(None);
        }
        match resolve_model(gw, id).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is("model_not_found") => Ok(None),
            Err(e) => Err(e),
        }
    };
    for mut model in routed {
        // At most a few hops, each to a larger window.
        for _ in 0..3 {
            let Some(larger) = model.routing.context_window_fallback.clone().filter(|_| estimated_input > model.context_window) else { break };
            match usable(&larger).await? {
                Some(m) => model = m,
                None => break,
            }
        }
        let fallbacks = model.routing.fallbacks.clone();
        if !chain.iter().any(|m| m.id == model.id) {
            chain.push(model);
        }
        for id in fallbacks {
            if chain.iter().any(|m| m.id == id) {
                continue;
            }
            if let Some(m) = usable(&id).await? {
                chain.push(m);
            }
        }
    }
    Ok(chain)
}

/// `GET /v1/models/{id}`: one model this key may use, as OpenAI shows it (with the fields
/// Anthropic's models API has, too).
pub async fn get_model(gw: &Gateway, key: &ApiKey, id: &str) -> ApiResult<Value> {
    super::require_scope(key, "models")?;
    let missing = || ApiError::not_found_as("model_not_found", format!("there is no model {id:?} this key may use; GET /v1/models lists them"));
    if !key.allows_model(id) {
        return Err(missing());
    }
    let m = catalog::get(gw.store.as_ref(), id).await?.ok_or_else(missing)?;
    Ok(json!({"id": m.id, "object": "model", "created": m.created_at.timestamp(), "owned_by": m.provider,
              "type": "model", "display_name": m.id, "created_at": m.created_at.to_rfc3339()}))
}

/// `POST /v1/messages/count_tokens`: the input tokens a canonical request is reserved at on
/// its model: an upper bound (bytes of text plus framing), not a tokenizer's count.
pub async fn count_input_tokens(gw: &Gateway, key: &ApiKey, canonical: Value) -> ApiResult<i64> {
    let req = crate::canonical::inspect_value(Endpoint::Chat, canonical)?;
    if !key.allows_model(&req.model) {
        return Err(ApiError::forbidden("model_not_allowed", format!("this API key may not use the model {:?}", req.model)));
    }
    let model = resolve_for(gw, key, &req.model).await?;
    Ok(req.worst_input_tokens(model.provider, model.upstream_id(), model.context_window))
}

/// `GET /v1/models`: the catalog models this key may use, as OpenAI lists them.
pub async fn list_models(gw: &Gateway, key: &ApiKey) -> ApiResult<Value> {
    super::require_scope(key, "models")?;
    let mut data: Vec<Value> = catalog::list(gw.store.as_ref())
        .await?
        .into_iter()
        .filter(|m| key.allows_model(&m.id))
        .map(|m| json!({"id": m.id, "object": "model", "created": m.created_at.timestamp(), "owned_by": m.provider}))
        .collect();
    // A personal key also sees the models its user's own providers list (as <name>/<model>).
    if let crate::keys::Owner::User { user_id } = &key.owner {
        for provider in crate::dynamic_providers::all_of(gw.store.as_ref(), *user_id).await?.iter().filter(|p| p.is_enabled) {
            for model in &provider.models {
                let id = format!("{}/{model}", provider.name);
                if key.allows_model(&id) {
                    data.push(json!({"id": id, "object": "model", "created": provider.created_at.timestamp(), "owned_by": provider.provider_type}));
                }
            }
        }
    }
    Ok(json!({"object": "list", "data": data}))
}

/// The candidates whose provider meets every sovereignty requirement of the key, in order;
/// 403 `sovereignty_unmet`, naming what the first candidate lacks, when none does.
pub(super) fn sovereign(key: &ApiKey, candidates: Vec<Model>) -> ApiResult<Vec<Model>> {
    let Some(required) = key.settings.sovereignty_requirements.as_deref() else { return Ok(candidates) };
    let required = crate::sovereignty::requirements(required, "sovereignty_requirements")?;
    let mut first_unmet = None;
    let mut kept = Vec::with_capacity(candidates.len());
    for model in candidates {
        let offer = model.sovereignty.as_deref().and_then(|o| crate::sovereignty::offer(o, "sovereignty").ok());
        let unmet = crate::sovereignty::unmet(&required, offer.as_ref());
        if unmet.is_empty() {
            kept.push(model);
        } else if first_unmet.is_none() {
            first_unmet = Some(format!("{}: {}", model.id, unmet.join("; ")));
        }
    }
    match (kept.is_empty(), first_unmet) {
        (true, Some(why)) => Err(ApiError::Forbidden {
            code: "sovereignty_unmet",
            message: format!("no model this request may use meets this key's sovereignty_requirements ({why})"),
        }),
        _ => Ok(kept),
    }
}

/// The candidates that have prices to be metered at (`Model::unpriced`), in order; 403
/// `model_unpriced`, naming the first, when none has: a request that spends the operator's
/// money is never metered at $0.
pub(super) fn priced(candidates: Vec<Model>) -> ApiResult<Vec<Model>> {
    // A provider that reports what it charged (OpenRouter) is metered at that.
    let unmetered = |m: &Model| m.unpriced() && !crate::providers::of(m.provider).reports_cost();
    let first = match candidates.iter().find(|m| unmetered(m)) {
        Some(m) => m.id.clone(),
        None => return Ok(candidates),
    };
    let kept: Vec<Model> = candidates.into_iter().filter(|m| !unmetered(m)).collect();
    if kept.is_empty() {
        return Err(ApiError::Forbidden {
            code: "model_unpriced",
            message: format!(
                "{first} has no price in the catalog, and serving it would spend money unmetered; an admin can price it (POST or PUT /api/models; a model served through an integration is priced by the catalog model named as its last segment)"
            ),
        });
    }
    Ok(kept)
}

/// Refuses a request that a budget would have to hold on a model of the caller's own account
/// that the catalog does not price: its cost would count as $0, and the budget would not hold.
pub(super) fn budgets_can_hold(levels: &[crate::limits::Level], candidates: &[Model]) -> ApiResult<()> {
    let budgeted =
        levels.iter().any(|l| l.limits.iter().any(|limit| limit.metric == crate::limits::Metric::Cost && limit.mode != crate::limits::Mode::Disable));
    match candidates.iter().find(|m| m.dynamic.as_ref().is_some_and(|d| !d.priced)) {
        Some(model) if budgeted => Err(ApiError::Forbidden {
            code: "model_unpriced",
            message: format!(
                "{} has no price in the catalog, so this key's budget could not hold it; an admin can add a model named {:?} with its prices (POST /api/models), or use a key without a budget",
                model.id,
                model.upstream_id()
            ),
        }),
        _ => Ok(()),
    }
}
