//! What every handler shares: the store, the secret store, the JWT keys and configuration.
//! Built once per process (a warm Lambda reuses it across invocations).

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;

use crate::budget_events::Alerts;
use crate::clock::SharedClock;
use crate::config::{Config, SecretsKind, StoreKind};
use crate::identity::jwt::JwtKeys;
use crate::metrics::{Metrics, Sink};
use crate::notify::Notifier;
use crate::outbox::Outbox;
use crate::proxy::{Gateway, Hot, Tuning};
use crate::secrets::{EmbeddedSecrets, SecretStore, SecretsManagerStore};
use crate::store::{DynamoStore, EmbeddedStore, Store, StoreError};

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn SecretStore>,
    /// The time every rule is decided by (tests move it).
    pub clock: SharedClock,
    /// Loaded on first use: the proxy group never needs it, and so needs no access to it.
    jwt: tokio::sync::OnceCell<JwtKeys>,
    pub config: Config,
    pub started: Instant,
    /// The proxy, with its warm caches (`hot`, shared here so admin changes clear them).
    pub gateway: Arc<Gateway>,
    pub hot: Arc<Hot>,
    pub alerts: Arc<Alerts>,
    pub notifier: Notifier,
    pub outbox: Outbox,
    pub metrics: Arc<Metrics>,
    /// What the background task reports, for readiness.
    pub heartbeat: Arc<crate::health::Heartbeat>,
    /// The single sign-on provider's metadata and keys, cached (`identity::oidc`).
    pub oidc: Arc<crate::identity::oidc::discovery::Discovery>,
}

/// What every handler is given: the services wired together once per process. The domain
/// never sees it; handlers pass each service what it uses.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The AWS SDK configuration shared by both clients: the usual credential chain, and
/// us-east-1 when no region is configured (emulators accept any).
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    let region = RegionProviderChain::default_provider().or_else("us-east-1");
    aws_config::defaults(BehaviorVersion::latest()).region(region).load().await
}

async fn dynamo_store(config: &Config) -> DynamoStore {
    let sdk = aws_sdk_config().await;
    let mut builder = aws_sdk_dynamodb::config::Builder::from(&sdk);
    if let Some(endpoint) = &config.dynamodb_endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(builder.build()), &config.table)
}

async fn secrets_manager(config: &Config) -> SecretsManagerStore {
    let sdk = aws_sdk_config().await;
    let mut builder = aws_sdk_secretsmanager::config::Builder::from(&sdk);
    if let Some(endpoint) = &config.secrets_endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    SecretsManagerStore::new(aws_sdk_secretsmanager::Client::from_conf(builder.build()), &config.secrets_prefix)
}

fn data_dir_problem(config: &Config, what: &str, err: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cannot open {what} in {} ({err}): TOLLGATE_DATA_DIR must be a directory this user can read and write", config.data_dir.display())
}

pub async fn open_store(config: &Config, create_table: bool) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match config.store {
        StoreKind::Embedded => {
            Arc::new(EmbeddedStore::open(&config.data_dir.join("tollgate.redb")).map_err(|e| match e {
                // Not the directory's fault: the message says what to do.
                StoreError::DiskFailed(why) => anyhow::anyhow!("{why}"),
                e => data_dir_problem(config, "the embedded store", e),
            })?)
        }
        StoreKind::DynamoDb => {
            let store = dynamo_store(config).await;
            if create_table && let Err(e) = store.create_table_if_missing().await {
                let endpoint = config.dynamodb_endpoint.as_deref().unwrap_or("AWS");
                anyhow::bail!("could not create the DynamoDB table {} at {endpoint}: {e}", config.table);
            }
            Arc::new(store)
        }
    })
}

pub async fn open_secrets(config: &Config) -> anyhow::Result<Arc<dyn SecretStore>> {
    Ok(match config.secrets {
        SecretsKind::Embedded => Arc::new(EmbeddedSecrets::open(&config.data_dir).map_err(|e| match e {
            // The master key's own message says what to do.
            crate::secrets::SecretError::Backend(m) if m.contains("master key") => anyhow::anyhow!(m),
            e => data_dir_problem(config, "the embedded secret store", e),
        })?),
        SecretsKind::SecretsManager => Arc::new(secrets_manager(config).await),
    })
}

/// For the local server at start: whether the AWS backends it is configured for exist and
/// answer, as one line naming the problem and its fix. (Lambda functions skip this: their
/// table and secrets come with the stack, and a cold start should not pay for the check.)
pub async fn check_ready(config: &Config) -> anyhow::Result<()> {
    use crate::readiness::explain;
    if config.store == StoreKind::DynamoDb {
        let endpoint = config.dynamodb_endpoint.clone().unwrap_or_else(|| "AWS".into());
        if let Err(unready) = dynamo_store(config).await.ready().await {
            let what = format!("the DynamoDB table {:?}", config.table);
            let fix = "start with `tollgate serve --create-table` to create it, or deploy infra/template.yaml (and set TOLLGATE_TABLE to its table)";
            anyhow::bail!(explain(&unready, &what, &endpoint, "TOLLGATE_DYNAMODB_ENDPOINT", fix));
        }
    }
    if config.secrets == SecretsKind::SecretsManager {
        let endpoint = config.secrets_endpoint.clone().unwrap_or_else(|| "AWS".into());
        if let Err(unready) = secrets_manager(config).await.ready().await {
            anyhow::bail!(explain(&unready, "Secrets Manager", &endpoint, "TOLLGATE_SECRETS_ENDPOINT", "check TOLLGATE_SECRETS_ENDPOINT"));
        }
    }
    Ok(())
}

impl AppState {
    /// The addresses URLs supplied by users may reach (`egress`).
    pub fn address_policy(&self) -> crate::egress::AddressPolicy {
        crate::egress::AddressPolicy { private_allowed: self.config.private_upstreams.clone() }
    }

    /// The JWT keys, loaded from the secret store (created there on first start) on first use.
    pub async fn jwt(&self) -> crate::error::ApiResult<&JwtKeys> {
        self.jwt.get_or_try_init(|| JwtKeys::load_or_create(self.secrets.as_ref())).await.map_err(crate::error::ApiError::internal)
    }

    /// Opens the configured backends and loads (or, on first start, creates) the JWT key.
    pub async fn open(config: Config, create_table: bool) -> anyhow::Result<Self> {
        let store = open_store(&config, create_table).await?;
        let secrets = open_secrets(&config).await?;
        Self::with_backends(config, store, secrets).await
    }

    pub async fn with_backends(config: Config, store: Arc<dyn Store>, secrets: Arc<dyn SecretStore>) -> anyhow::Result<Self> {
        Self::wire(config, store, secrets, crate::clock::system())
    }

    /// Wires every service over the given backends and clock.
    pub fn wire(config: Config, store: Arc<dyn Store>, secrets: Arc<dyn SecretStore>, clock: SharedClock) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new(config.metrics_sink, config.metrics_key_labels));
        // Round trips are timed where /metrics can show them (a Lambda's EMF lines carry only
        // the requests' own figures).
        let store: Arc<dyn Store> =
            if config.metrics_sink == Sink::Prometheus { Arc::new(crate::metrics::store::Timed { inner: store, metrics: metrics.clone() }) } else { store };
        // Handlers write through the audited store: a change made by an admin request goes in
        // one transaction with its audit event. The proxy and background work use the store itself.
        let retention = (config.audit_retention_days > 0).then(|| chrono::Duration::days(i64::from(config.audit_retention_days)));
        let audited: Arc<dyn Store> = Arc::new(crate::audit::store::Audited { inner: store.clone(), clock: clock.clone(), retention });
        let http = crate::egress::Egress::new(config.private_upstreams.clone())?;
        let notifier = Notifier { store: store.clone(), secrets: secrets.clone(), http: http.restricted.clone(), clock: clock.clone() };
        let outbox = Outbox::new(notifier.clone());
        let alerts = Arc::new(Alerts::new(store.clone(), outbox.clone(), config.key_cache));
        let hot = Arc::new(Hot::new(config.key_cache));
        let tuning = Tuning {
            upstream_timeout: config.upstream_timeout,
            stream_idle_timeout: config.stream_idle_timeout,
            lease_margin: config.lease_margin,
            relaxed_durability: config.relaxed_durability,
            responses_ttl: chrono::Duration::days(i64::from(config.responses_ttl_days)),
            cache_hit_percent: config.cache_hit_percent,
            usage_retention: (config.usage_retention_days > 0).then(|| chrono::Duration::days(i64::from(config.usage_retention_days))),
        };
        let integrations = crate::integrations::Endpoints {
            openrouter: config.openrouter_url.clone(),
            huggingface: config.huggingface_url.clone(),
            huggingface_hub: config.huggingface_hub_url.clone(),
        };
        let traces = crate::traces::Tracing::start(&config.traces, http.trusted.clone(), metrics.clone())?;
        // The identity provider is the operator's (environment, or a global admin's settings).
        let oidc = Arc::new(crate::identity::oidc::discovery::Discovery::new(http.trusted.clone()));
        // Cooldowns are shared through the store where several processes serve one table.
        let shared = (config.store == crate::config::StoreKind::DynamoDb).then(|| store.clone());
        let balancer = Arc::new(crate::proxy::balance::Balancer::new(config.cooldown, shared, metrics.clone()));
        let gateway = Arc::new(Gateway {
            balancer,
            store: store.clone(),
            secrets: secrets.clone(),
            clock: clock.clone(),
            http,
            hot: hot.clone(),
            alerts: alerts.clone(),
            tuning,
            integrations,
            app: crate::providers::App { referer: config.app_url.clone(), title: config.app_title.clone() },
            metrics: metrics.clone(),
            traces,
            admission: crate::admission::Admission::new(config.max_in_flight, config.admission_wait),
        });
        let jwt = tokio::sync::OnceCell::new();
        Ok(Self(Arc::new(Inner {
            store: audited,
            secrets,
            clock,
            jwt,
            config,
            started: Instant::now(),
            gateway,
            hot,
            alerts,
            notifier,
            outbox,
            metrics,
            heartbeat: Default::default(),
            oidc,
        })))
    }

    /// The outbox's backlog and the rollups' lag, for `/metrics` and readiness.
    async fn observe_background(&self) {
        let backlog = self.outbox.backlog(crate::health::MAX_BACKLOG + 1).await;
        let oldest = crate::usage::rollups::oldest_pending(self.store.as_ref()).await;
        match (backlog, oldest) {
            (Ok(backlog), Ok(oldest)) => {
                let lag = oldest.map_or(0, |at| (self.clock.now() - at).num_milliseconds().max(0));
                self.metrics.background(backlog, std::time::Duration::from_millis(lag as u64));
                self.heartbeat.backlog(backlog);
            }
            (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "counting the outbox's backlog and the rollups' lag failed"),
        }
    }

    /// A long-running process's background work, for the life of the process: a pass over
    /// the outbox and the usage records pending for their rollups every second, and every 30 seconds the account deletions a crash cut short.
    /// (Lambda functions run neither between invocations; see `outbox` and `accounts`.)
    pub fn spawn_background(&self) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            for pass in 0u64.. {
                tick.tick().await;
                if let Err(e) = state.outbox.deliver_pending().await {
                    tracing::warn!(error = %e, "delivering budget events failed; they stay pending");
                }
                if let Err(e) = crate::usage::rollups::roll_up(state.store.as_ref()).await {
                    tracing::warn!(error = %e, "adding usage records to their rollups failed; they stay pending");
                }
                // The figures operators watch: counted every 10 s, not every pass (each is a
                // query per shard); recorded latencies folded into their buckets every pass.
                if pass % 10 == 0 {
                    state.observe_background().await;
                }
                state.metrics.cooling(&state.gateway.balancer.cooling(state.clock.now().timestamp_millis()));
                state.metrics.upkeep();
                state.heartbeat.beat(state.clock.now().timestamp_millis());
                if pass % 30 == 0
                    && let Err(e) =
                        crate::account_deletion::resume_deletions(state.store.as_ref(), state.secrets.as_ref(), state.clock.now(), state.hot.as_ref()).await
                {
                    tracing::warn!(error = %e, "finishing interrupted account deletions failed; the next pass tries again");
                }
            }
        })
    }
}
