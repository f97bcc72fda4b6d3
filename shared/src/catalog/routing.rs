//! How a catalog model is served: on which deployments (the same model at several providers,
//! regions or accounts), chosen how, retried how often, and which models stand in for it.
//!
//! A model without deployments is its own one deployment (its provider, base URL and key), and
//! its seed shape is unchanged. Deployments are kept on the model's item: the catalog is read
//! once per model into the warm cache, so choosing among them costs no store round trip.

use serde::{Deserialize, Serialize};

use super::{Model, ProviderType};
use crate::error::{ApiError, ApiResult};

/// The most deployments, fallbacks and attempts a model may have: enough for every region of
/// every provider, few enough that a request's worst case (every attempt timing out) stays
/// bounded.
pub const MAX_DEPLOYMENTS: usize = 32;
pub const MAX_FALLBACKS: usize = 8;
pub const MAX_ATTEMPTS: u32 = 16;
/// The longest total time a request's attempts may be given: ten minutes.
pub const MAX_TOTAL_MS: u64 = 600_000;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Routing {
    #[serde(default)]
    pub deployments: Vec<Deployment>,
    #[serde(default)]
    pub strategy: Strategy,
    /// Models tried, in order, once this one's attempts are spent.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// A larger model for requests too long for this one's context window.
    #[serde(default)]
    pub context_window_fallback: Option<String>,
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    /// The API its provider serves it on.
    #[serde(default)]
    pub upstream_api: UpstreamApi,
}

impl Routing {
    pub fn is_default(&self) -> bool {
        self.deployments.is_empty()
            && self.strategy == Strategy::Weighted
            && self.fallbacks.is_empty()
            && self.context_window_fallback.is_none()
            && self.retry.is_none()
            && self.upstream_api == UpstreamApi::Chat
    }
}

/// Which of OpenAI's APIs a model is served on: chat completions (every provider's canonical
/// or translated wire), or only the Responses API (OpenAI's o1-pro, o3-pro and codex models),
/// to which chat and messages requests are translated and their answers back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamApi {
    #[default]
    Chat,
    Responses,
}

/// One place a model is served: a provider account, in a region, with its share of the traffic
/// and its own capacity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// Unique within the model; names it in the routing trace, the metrics and the key's
    /// secret name.
    pub id: String,
    pub provider: ProviderType,
    #[serde(default)]
    pub base_url: Option<String>,
    /// Where it runs (informational: the trace and the dashboard show it).
    #[serde(default)]
    pub region: Option<String>,
    /// Its share of the traffic among the healthy deployments (weighted strategy).
    pub weight: u32,
    /// Requests and tokens per minute it takes; at either, it is skipped until the minute ends.
    #[serde(default)]
    pub rpm: Option<i64>,
    #[serde(default)]
    pub tpm: Option<i64>,
    /// Whether it has a key of its own in the secret store (else it uses the model's).
    #[serde(default)]
    pub has_api_key: bool,
}

/// How a deployment is chosen among the healthy ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// At random, in proportion to the weights.
    #[default]
    Weighted,
    /// The one answering fastest lately (a moving average of its time to an answer's head).
    LeastLatency,
    /// The one with the fewest requests in flight from this process.
    LeastBusy,
}

/// How many attempts a request may make on a model (across its deployments, retries of the same
/// one included), and how long all of a request's attempts may take together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    #[serde(default)]
    pub max_total_ms: Option<u64>,
}

/// The deployment a model without any is: the model's own provider, base URL and key.
pub const OWN: &str = "default";

impl Model {
    /// Where the model is served: its deployments, or itself as its one deployment.
    pub fn deployments(&self) -> Vec<Deployment> {
        if !self.routing.deployments.is_empty() {
            return self.routing.deployments.clone();
        }
        vec![Deployment {
            id: OWN.into(),
            provider: self.provider,
            base_url: self.base_url.clone(),
            region: None,
            weight: 1,
            rpm: None,
            tpm: None,
            has_api_key: false,
        }]
    }

    /// This model as served by `deployment`: its provider, its base URL (the model's when it
    /// has none and the provider is the model's), its key (the model's when it has none).
    pub fn deployed(&self, deployment: &Deployment) -> Model {
        let mut model = self.clone();
        if deployment.id == OWN && self.routing.deployments.is_empty() {
            return model;
        }
        model.base_url = deployment.base_url.clone().or_else(|| self.base_url.clone().filter(|_| deployment.provider == self.provider));
        model.provider = deployment.provider;
        model.has_api_key = deployment.has_api_key || self.has_api_key;
        model.deployment = Some(deployment.id.clone());
        model
    }

    /// The deployment this copy is served by (`default` for a model without deployments).
    pub fn deployment_id(&self) -> &str {
        self.deployment.as_deref().unwrap_or(OWN)
    }

    /// How many attempts a request may make on it: its policy's, else one per deployment.
    pub fn max_attempts(&self) -> u32 {
        self.routing.retry.map_or(self.routing.deployments.len().max(1) as u32, |r| r.max_attempts)
    }
}

/// The secret name of a deployment's own key.
pub fn deployment_secret_name(model_secret_id: uuid::Uuid, deployment: &str) -> String {
    ["models/", model_secret_id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()), "/deployments/", deployment, "/api-key"].concat()
}

/// Refuses routing that could not be served: duplicate or malformed deployment ids, a
/// deployment that needs a base URL without one, zero total weight, a model that falls back to
/// itself, limits out of range.
pub fn validate(model: &Model) -> ApiResult<()> {
    let routing = &model.routing;
    if routing.deployments.len() > MAX_DEPLOYMENTS {
        return Err(ApiError::invalid_param("deployments", format!("a model may have at most {MAX_DEPLOYMENTS} deployments")));
    }
    for (i, d) in routing.deployments.iter().enumerate() {
        crate::names::validate(&format!("deployments[{i}].id"), &d.id)?;
        if routing.deployments[..i].iter().any(|other| other.id == d.id) {
            return Err(ApiError::invalid_param("deployments", format!("two deployments are called {:?}; each needs its own id", d.id)));
        }
        if d.provider == ProviderType::Mock && model.provider != ProviderType::Mock {
            return Err(ApiError::invalid_param(&format!("deployments[{i}].provider"), "only a mock model may have mock deployments"));
        }
        let base_url = d.base_url.clone().or_else(|| model.base_url.clone().filter(|_| d.provider == model.provider));
        super::validate_endpoint(d.provider, base_url.as_deref(), &format!("deployments[{i}].baseUrl"))?;
        if !(1..=1_000_000).contains(&d.weight) {
            return Err(ApiError::invalid_param(&format!("deployments[{i}].weight"), "weight must be from 1 to 1000000"));
        }
        for (name, cap) in [("rpm", d.rpm), ("tpm", d.tpm)] {
            if cap.is_some_and(|c| c < 1) {
                return Err(ApiError::invalid_param(&format!("deployments[{i}].{name}"), format!("{name} must be at least 1 (leave it out for no cap)")));
            }
        }
    }
    if routing.fallbacks.len() > MAX_FALLBACKS {
        return Err(ApiError::invalid_param("fallbacks", format!("a model may have at most {MAX_FALLBACKS} fallbacks")));
    }
    for (i, id) in routing.fallbacks.iter().chain(&routing.context_window_fallback).enumerate() {
        let param = if i < routing.fallbacks.len() { "fallbacks" } else { "contextWindowFallback" };
        crate::names::validate(param, id)?;
        if *id == model.id {
            return Err(ApiError::invalid_param(param, format!("{} cannot fall back to itself", model.id)));
        }
    }
    if routing.upstream_api == UpstreamApi::Responses {
        let served_by = std::iter::once(model.provider).chain(routing.deployments.iter().map(|d| d.provider));
        if let Some(other) = served_by.into_iter().find(|p| !matches!(p, ProviderType::OpenAi | ProviderType::OpenAiCompatible)) {
            return Err(ApiError::invalid_param(
                "upstreamApi",
                format!("upstreamApi responses is OpenAI's Responses API: every deployment must be openai or openai-compatible, not {other}"),
            ));
        }
    }
    if let Some(retry) = routing.retry {
        retry.validate()?;
    }
    Ok(())
}

impl RetryPolicy {
    /// Refuses limits out of range, naming the field.
    pub fn validate(&self) -> ApiResult<()> {
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(ApiError::invalid_param("retry.maxAttempts", format!("maxAttempts must be from 1 to {MAX_ATTEMPTS}")));
        }
        if self.max_total_ms.is_some_and(|t| !(1..=MAX_TOTAL_MS).contains(&t)) {
            return Err(ApiError::invalid_param("retry.maxTotalMs", format!("maxTotalMs must be from 1 to {MAX_TOTAL_MS}")));
        }
        Ok(())
    }
}

/// Replaces `model`'s deployments with `wanted`, each with its key if one came: the keys go to
/// the secret store first (a deployment never claims a key that is not there); one that came
/// without a key keeps the key it had under the same id; keys of deployments no longer listed
/// are deleted (saving the model forgets their cached copies).
pub async fn set_deployments(
    secrets: &dyn crate::secrets::SecretStore,
    model: &mut Model,
    wanted: Vec<(Deployment, Option<secrecy::SecretString>)>,
) -> ApiResult<()> {
    let old = std::mem::take(&mut model.routing.deployments);
    let mut new = Vec::with_capacity(wanted.len());
    for (mut deployment, key) in wanted {
        match key {
            Some(key) => {
                crate::names::validate("deployments[].id", &deployment.id)?;
                secrets.put(&deployment_secret_name(model.secret_id, &deployment.id), &key).await.map_err(ApiError::internal)?;
                deployment.has_api_key = true;
            }
            None => deployment.has_api_key = old.iter().any(|o| o.id == deployment.id && o.has_api_key),
        }
        new.push(deployment);
    }
    for gone in old.iter().filter(|o| o.has_api_key && !new.iter().any(|n| n.id == o.id)) {
        secrets.delete(&deployment_secret_name(model.secret_id, &gone.id)).await.map_err(ApiError::internal)?;
    }
    model.routing.deployments = new;
    Ok(())
}
