//! What every handler shares: the store, the secret store, the JWT keys and configuration.
//! Built once per process (a warm Lambda reuses it across invocations).

use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;

use secrecy::SecretString;

use crate::cache::TtlCache;
use crate::catalog::Model;
use crate::config::{Config, SecretsKind, StoreKind};
use crate::identity::jwt::JwtKeys;
use crate::keys::ApiKey;
use crate::secrets::{EmbeddedSecrets, SecretStore, SecretsManagerStore};
use crate::store::{DynamoStore, EmbeddedStore, Store};

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn SecretStore>,
    /// Loaded on first use: the proxy group never needs it, and so needs no access to it.
    jwt: tokio::sync::OnceCell<JwtKeys>,
    pub config: Config,
    pub started: Instant,
    pub hot: HotCaches,
    /// One pooled client for every upstream call.
    pub http: reqwest::Client,
}

/// The proxy's warm-process caches, all bounded by `config.key_cache`.
pub struct HotCaches {
    pub keys: TtlCache<String, ApiKey>,
    pub models: TtlCache<String, Model>,
    pub secrets: TtlCache<String, Arc<SecretString>>,
    /// What a workspace or project token needs beyond itself (its project, its workspace),
    /// by owner tag.
    pub owners: TtlCache<String, Arc<crate::proxy::levels::OwnerContext>>,
    /// Budget events this process already saw sent, so it does not ask the store again.
    pub events: TtlCache<String, ()>,
    /// The settings' budget alert threshold (percent).
    pub alert_threshold: TtlCache<(), i64>,
    /// Upstream URLs parsed once (a pure function of their text, so not bound by the key TTL).
    pub upstream_urls: TtlCache<String, reqwest::Url>,
    /// When this process last looked for pending budget events (epoch seconds).
    pub outbox_polled: std::sync::atomic::AtomicI64,
}

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
            Arc::new(EmbeddedStore::open(&config.data_dir.join("tollgate.redb")).map_err(|e| data_dir_problem(config, "the embedded store", e))?)
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
        let jwt = tokio::sync::OnceCell::new();
        let ttl = config.key_cache;
        let hot = HotCaches {
            keys: TtlCache::new(ttl, 100_000),
            models: TtlCache::new(ttl, 10_000),
            secrets: TtlCache::new(ttl, 10_000),
            owners: TtlCache::new(ttl, 10_000),
            events: TtlCache::new(std::time::Duration::from_secs(3600), 100_000),
            alert_threshold: TtlCache::new(ttl, 1),
            upstream_urls: TtlCache::new(std::time::Duration::from_secs(3600), 10_000),
            outbox_polled: std::sync::atomic::AtomicI64::new(0),
        };
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).tcp_nodelay(true).build()?;
        Ok(Self(Arc::new(Inner { store, secrets, jwt, config, started: Instant::now(), hot, http })))
    }
}
