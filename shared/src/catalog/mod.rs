//! The models catalog: what the proxy can route to, at what price. A model's provider key goes
//! to the secret store; the model only says whether one is set.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::provider_type::ProviderType;
pub use routing::{Deployment, RetryPolicy, Routing, Strategy, UpstreamApi};

pub mod routing;

use crate::error::{ApiError, ApiResult};
use crate::invalidate::Invalidate;
use crate::secrets::SecretStore;
use crate::store::{Cond, Index, Key, Query, Store, StoreError, from_item, keyed_item, query_all, set_index};

/// The largest context window a model may declare (today's largest are ~10 million tokens).
/// With it, and prices of at most $1e9 per million tokens, a request's worst case stays far
/// inside i64/i128 arithmetic.
pub const MAX_CONTEXT_WINDOW: i64 = 100_000_000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Model {
    pub id: String,
    pub provider: ProviderType,
    pub base_url: Option<String>,
    /// Micro-dollars per million tokens.
    pub input_price_micros: i64,
    pub output_price_micros: i64,
    /// Per million input tokens read from the provider's prompt cache (default: the input price).
    #[serde(default)]
    pub cached_input_price_micros: Option<i64>,
    /// Per million input tokens written to the provider's prompt cache (default: the input price).
    #[serde(default)]
    pub cache_write_price_micros: Option<i64>,
    /// Per million input tokens written to Anthropic's cache for an hour (default: the cache
    /// write price).
    #[serde(default)]
    pub cache_write_1h_price_micros: Option<i64>,
    pub context_window: i64,
    /// The most output tokens the model writes in one answer (default: its context window):
    /// a request without `max_tokens` is reserved at this.
    #[serde(default)]
    pub max_output_tokens: Option<i64>,
    pub capabilities: Vec<String>,
    /// Micro-dollars per call of each built-in tool it may use (`proxy::fees`); a tool without
    /// a price is refused.
    #[serde(default)]
    pub tool_call_prices_micros: std::collections::BTreeMap<String, i64>,
    /// Each service tier it may be asked for, as a percentage of its prices.
    #[serde(default)]
    pub service_tier_percent: std::collections::BTreeMap<String, i64>,
    /// Whether requests may name objects stored at its provider (prompts, files, vector stores).
    #[serde(default)]
    pub allow_provider_objects: bool,
    /// What its provider offers in data sovereignty (`sovereignty::Offer`, as JSON text).
    #[serde(default)]
    pub sovereignty: Option<String>,
    pub has_api_key: bool,
    /// Names the model's key in the secret store (ids may hold characters secret names cannot).
    pub secret_id: Uuid,
    /// Set when the model is `<provider name>/<model>` on a caller's own (dynamic) provider:
    /// never stored, made per request from the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<DynamicRef>,
    /// Its deployments, strategy, retries and fallbacks (`routing`).
    #[serde(default, skip_serializing_if = "Routing::is_default")]
    pub routing: Routing,
    /// Set on a copy made for one of its deployments (`Model::deployed`): never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where a caller's own provider's key is kept.
pub fn provider_secret_name(provider_id: Uuid) -> String {
    format!("providers/{provider_id}/api-key")
}

/// A model served by a caller's own provider (or their workspace's integration).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DynamicRef {
    /// Where the account's key is kept.
    pub secret_name: String,
    /// The model's name at the provider.
    pub model: String,
    /// Whether the catalog prices it (a model of the same id); unpriced, it costs $0 and no
    /// budget could hold it.
    #[serde(default)]
    pub priced: bool,
    /// A workspace's integration (its saved key), rather than a user's own provider.
    #[serde(default)]
    pub integration: bool,
}

impl Model {
    pub fn secret_name(&self) -> String {
        if let Some(d) = &self.dynamic {
            return d.secret_name.clone();
        }
        match self.deployment.as_deref().filter(|id| self.routing.deployments.iter().any(|d| d.id == *id && d.has_api_key)) {
            Some(deployment) => routing::deployment_secret_name(self.secret_id, deployment),
            None => ["models/", self.secret_id.hyphenated().encode_lower(&mut Uuid::encode_buffer()), "/api-key"].concat(),
        }
    }

    /// The model's name at its provider.
    pub fn upstream_id(&self) -> &str {
        self.dynamic.as_ref().map_or(&self.id, |d| &d.model)
    }

    /// `built-in` (the catalog's) or `dynamic` (a caller's own provider).
    pub fn provider_source(&self) -> &'static str {
        if self.dynamic.is_some() { "dynamic" } else { "built-in" }
    }

    pub fn prices(&self) -> crate::money::Prices {
        crate::money::Prices {
            input: self.input_price_micros,
            cached_input: self.cached_input_price_micros.unwrap_or(self.input_price_micros),
            cache_write: self.cache_write_price_micros.unwrap_or(self.input_price_micros),
            cache_write_1h: self.cache_write_1h_price_micros.or(self.cache_write_price_micros).unwrap_or(self.input_price_micros),
            output: self.output_price_micros,
        }
    }

    /// Whether serving it spends the operator's money without a price to meter it at: a
    /// catalog or integration model (not the built-in mock, not a user's own provider paid by
    /// the user's key) whose token prices are both zero or unknown.
    pub fn unpriced(&self) -> bool {
        match &self.dynamic {
            Some(d) => d.integration && !d.priced,
            None => self.provider != ProviderType::Mock && self.input_price_micros == 0 && self.output_price_micros == 0,
        }
    }

    /// The most output tokens one answer can have.
    pub fn output_cap(&self) -> i64 {
        self.max_output_tokens.unwrap_or(self.context_window).min(self.context_window).max(1)
    }

    /// Where requests for this model go (none for the built-in mock).
    pub fn endpoint(&self) -> Option<String> {
        self.base_url.clone().or_else(|| self.provider.default_base_url().map(str::to_string))
    }
}

fn key(id: &str) -> Key {
    Key::new(format!("MODEL#{id}"), "MODEL")
}

/// A model id follows the one name pattern (`names`).
pub fn validate_id(id: &str) -> ApiResult<()> {
    crate::names::validate("id", id)
}

/// Refuses a provider that needs a base URL without one, or a base URL that is not http(s).
pub(crate) fn validate_endpoint(provider: ProviderType, base_url: Option<&str>, param: &str) -> ApiResult<()> {
    if provider.needs_base_url() && base_url.is_none() {
        let what = match provider {
            ProviderType::Azure => ": its deployment's URL, https://<resource>.openai.azure.com/openai/deployments/<deployment>",
            ProviderType::Vertex => {
                ": its publisher's URL, https://<location>-aiplatform.googleapis.com/v1/projects/<project>/locations/<location>/publishers/google"
            }
            _ => "",
        };
        return Err(ApiError::invalid_param(
            param,
            format!("a{} {provider} model needs {param}{what}", if provider == ProviderType::Azure { "n" } else { "" }),
        ));
    }
    if let Some(url) = base_url {
        let parsed = reqwest::Url::parse(url).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if parsed.is_none() {
            return Err(ApiError::invalid_param(param, format!("{param} must be an http(s) URL such as https://api.example.com/v1")));
        }
    }
    Ok(())
}

pub fn validate(model: &Model) -> ApiResult<()> {
    validate_id(&model.id)?;
    validate_endpoint(model.provider, model.base_url.as_deref(), "baseUrl")?;
    routing::validate(model)?;
    if !(1..=MAX_CONTEXT_WINDOW).contains(&model.context_window) {
        return Err(ApiError::invalid_param("contextWindow", format!("contextWindow must be from 1 to {MAX_CONTEXT_WINDOW} tokens")));
    }
    if let Some(offer) = &model.sovereignty {
        crate::sovereignty::offer(offer, "sovereignty")?;
    }
    if let Some(max) = model.max_output_tokens
        && !(1..=model.context_window).contains(&max)
    {
        return Err(ApiError::invalid_param("maxOutputTokens", format!("maxOutputTokens must be from 1 to the context window ({})", model.context_window)));
    }
    Ok(())
}

fn item(model: &Model) -> ApiResult<crate::store::Item> {
    let mut item = keyed_item(model, &key(&model.id))?;
    set_index(&mut item, Index::Gsi1, "MODELS", model.id.clone());
    Ok(item)
}

pub async fn get(store: &dyn Store, id: &str) -> ApiResult<Option<Model>> {
    Ok(store.get(&key(id)).await?.map(from_item).transpose()?)
}

pub async fn require(store: &dyn Store, id: &str) -> ApiResult<Model> {
    get(store, id).await?.ok_or_else(|| ApiError::not_found(format!("no model with id {id:?}")))
}

pub async fn list(store: &dyn Store) -> ApiResult<Vec<Model>> {
    let items = query_all(store, Query::new(Index::Gsi1, "MODELS").limit(200)).await?;
    Ok(items.into_iter().map(from_item).collect::<Result<_, _>>()?)
}

/// Stores a new model; its key (if any) goes to the secret store first, so a model never
/// claims a key that is not there.
pub async fn create(store: &dyn Store, secrets: &dyn SecretStore, mut model: Model, api_key: Option<SecretString>) -> ApiResult<Model> {
    validate(&model)?;
    if let Some(k) = &api_key {
        secrets.put(&model.secret_name(), k).await.map_err(ApiError::internal)?;
        model.has_api_key = true;
    }
    match store.put(item(&model)?, Some(Cond::NotExists)).await {
        Ok(()) => Ok(model),
        Err(StoreError::ConditionFailed) => {
            if api_key.is_some() {
                secrets.delete(&model.secret_name()).await.map_err(ApiError::internal)?;
            }
            delete_deployment_keys(secrets, &model).await?;
            Err(ApiError::conflict("model_exists", format!("a model with id {:?} already exists", model.id)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Saves a changed model; this process's copies of it and its key are dropped at once.
pub async fn save(store: &dyn Store, model: &Model, caches: &dyn Invalidate) -> ApiResult<()> {
    validate(model)?;
    match store.put(item(model)?, Some(Cond::Exists)).await {
        Ok(()) => {
            forget(caches, model);
            Ok(())
        }
        Err(StoreError::ConditionFailed) => Err(ApiError::not_found(format!("no model with id {:?}", model.id))),
        Err(e) => Err(e.into()),
    }
}

pub async fn set_api_key(
    store: &dyn Store,
    secrets: &dyn SecretStore,
    id: &str,
    api_key: SecretString,
    now: DateTime<Utc>,
    caches: &dyn Invalidate,
) -> ApiResult<Model> {
    let mut model = require(store, id).await?;
    secrets.put(&model.secret_name(), &api_key).await.map_err(ApiError::internal)?;
    if !model.has_api_key {
        model.has_api_key = true;
        model.updated_at = now;
        save(store, &model, caches).await?;
    }
    forget(caches, &model);
    Ok(model)
}

pub async fn delete(store: &dyn Store, secrets: &dyn SecretStore, id: &str, caches: &dyn Invalidate) -> ApiResult<()> {
    let model = require(store, id).await?;
    match store.delete(&key(id), Some(Cond::Exists)).await {
        Ok(()) | Err(StoreError::ConditionFailed) => {}
        Err(e) => return Err(e.into()),
    }
    forget(caches, &model);
    delete_deployment_keys(secrets, &model).await?;
    secrets.delete(&model.secret_name()).await.map_err(ApiError::internal)
}

/// Deletes the keys the model's deployments have of their own.
async fn delete_deployment_keys(secrets: &dyn SecretStore, model: &Model) -> ApiResult<()> {
    for deployment in model.routing.deployments.iter().filter(|d| d.has_api_key) {
        secrets.delete(&routing::deployment_secret_name(model.secret_id, &deployment.id)).await.map_err(ApiError::internal)?;
    }
    Ok(())
}

/// Drops this process's copies of a model and its key; other warm processes follow within the
/// cache's TTL.
fn forget(caches: &dyn Invalidate, model: &Model) {
    caches.model(&model.id);
    caches.secret(&model.secret_name());
    for deployment in &model.routing.deployments {
        caches.secret(&routing::deployment_secret_name(model.secret_id, &deployment.id));
    }
}
