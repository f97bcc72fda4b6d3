//! What the proxy works with, wired once per process: the stores, the clock, the upstream
//! client, the warm caches, and the budget alerts it writes with each settlement.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use super::levels::OwnerContext;
use crate::budget_events::Alerts;
use crate::cache::TtlCache;
use crate::catalog::Model;
use crate::clock::SharedClock;
use crate::dynamic_providers::DynamicProvider;
use crate::keys::ApiKey;
use crate::secrets::SecretStore;
use crate::store::Store;

/// The proxy's warm-process caches, each bounded by the key cache's TTL: what another process
/// changes reaches this one within it. (Changes made here clear them at once.)
pub struct Hot {
    /// Keys by the hash of their secret.
    pub keys: TtlCache<String, Arc<ApiKey>>,
    pub models: TtlCache<String, Model>,
    /// Provider keys, by secret name.
    pub secrets: TtlCache<String, Arc<SecretString>>,
    /// What a workspace or project token needs beyond itself (its project, its workspace),
    /// by owner tag.
    pub owners: TtlCache<String, Arc<OwnerContext>>,
    /// Upstream URLs parsed once (a pure function of their text, so not bound by the key TTL).
    pub upstream_urls: TtlCache<String, super::upstream::Target>,
    /// Callers' own providers, by (user, provider name).
    pub dynamic: TtlCache<(uuid::Uuid, String), Arc<DynamicProvider>>,
    /// Workspaces' integrations, by (workspace, service name).
    pub integrations: TtlCache<(uuid::Uuid, &'static str), Arc<crate::integrations::Integration>>,
}

impl crate::invalidate::Invalidate for Hot {
    fn key(&self, key_hash: &str) {
        self.keys.remove(key_hash);
    }
    fn model(&self, id: &str) {
        self.models.remove(id);
    }
    fn provider(&self, user_id: uuid::Uuid, name: &str) {
        self.dynamic.remove(&(user_id, name.to_string()));
    }
    fn secret(&self, name: &str) {
        self.secrets.remove(name);
    }
    fn integration(&self, workspace_id: uuid::Uuid, service: &'static str) {
        self.integrations.remove(&(workspace_id, service));
    }
    fn owners(&self) {
        self.owners.clear();
    }
}

impl Hot {
    pub fn new(ttl: Duration) -> Self {
        Hot {
            keys: TtlCache::new(ttl, 100_000),
            models: TtlCache::new(ttl, 10_000),
            secrets: TtlCache::new(ttl, 10_000),
            owners: TtlCache::new(ttl, 10_000),
            upstream_urls: TtlCache::new(Duration::from_secs(3600), 10_000),
            dynamic: TtlCache::new(ttl, 10_000),
            integrations: TtlCache::new(ttl, 10_000),
        }
    }
}

/// How the proxy's bookkeeping is tuned (from `Config`).
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// How long an upstream may take when the token's project does not say.
    pub upstream_timeout: Duration,
    /// How long a stream's upstream may send nothing before the stream is ended as timed out.
    pub stream_idle_timeout: Duration,
    /// How long past its upstream timeout a request's reservation is held before it is taken
    /// for dead and released.
    pub lease_margin: Duration,
    /// Settlements written without waiting for durability (the embedded store only).
    pub relaxed_durability: bool,
    /// How long usage records are kept (`None`: forever).
    pub usage_retention: Option<chrono::Duration>,
    /// How long a stored response (the Responses API's `store`) is kept.
    pub responses_ttl: chrono::Duration,
    /// What a response-cache hit is charged, as a percentage of the first answer's cost.
    pub cache_hit_percent: u8,
}

pub struct Gateway {
    /// How each model's deployments are doing here: the choice among them, their cooldowns.
    pub balancer: Arc<super::balance::Balancer>,
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn SecretStore>,
    pub clock: SharedClock,
    /// The upstream clients: one for what admins configured, one restricted to public
    /// addresses for what anyone else supplied (`egress`).
    pub http: crate::egress::Egress,
    pub hot: Arc<Hot>,
    pub alerts: Arc<Alerts>,
    pub tuning: Tuning,
    /// Where workspaces' integrations (OpenRouter, Hugging Face) are served.
    pub integrations: crate::integrations::Endpoints,
    /// The app providers that attribute usage are told of when the caller names none.
    pub app: crate::providers::App,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Spans of proxied requests, when an OTLP endpoint is configured.
    pub traces: Option<crate::traces::Tracing>,
    /// The bound on requests in flight at once.
    pub admission: crate::admission::Admission,
}
