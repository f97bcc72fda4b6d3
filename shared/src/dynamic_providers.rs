//! Dynamic providers: a user's own provider accounts (their own keys), used through the proxy
//! as `<provider name>/<model>` by that user's personal keys and nobody else's. The key goes to
//! the secret store (`providers/<id>/api-key`), never back out. Names are unique per user
//! (a lock item held while the provider lives) and follow the one name pattern (`names`).
//! Deleting a provider soft-deletes it: its key is destroyed and its name freed at once.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::invalidate::Invalidate;
use crate::pagination::{self, Direction, Pagination};
use crate::providers::ProviderType;
use crate::secrets::SecretStore;
use crate::store::{Attr, Cond, Index, Item, Key, Store, StoreError, TxOp, from_item, keyed_item, set_index};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DynamicProvider {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub provider_type: ProviderType,
    pub base_url: Option<String>,
    /// The models it may serve; empty means any.
    pub models: Vec<String>,
    /// Provider-specific configuration, kept as JSON text.
    pub config: Option<String>,
    pub is_enabled: bool,
    pub has_api_key: bool,
    /// What the provider offers in data sovereignty (JSON text), matched against keys'
    /// `sovereignty_requirements`.
    pub sovereignty: Option<String>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl DynamicProvider {
    pub fn secret_name(&self) -> String {
        secret_name(self.id)
    }

    /// Where its requests go: its base URL, else its type's default.
    pub fn endpoint(&self) -> Option<String> {
        self.base_url.clone().or_else(|| self.provider_type.default_base_url().map(str::to_string))
    }

    /// Whether it serves `model`.
    pub fn serves(&self, model: &str) -> bool {
        self.is_enabled && self.deleted_at.is_none() && (self.models.is_empty() || self.models.iter().any(|m| m == model))
    }
}

pub fn secret_name(id: Uuid) -> String {
    crate::catalog::provider_secret_name(id)
}

fn key(user_id: Uuid, id: Uuid) -> Key {
    Key::new(format!("USER#{user_id}"), format!("PROVIDER#{id}"))
}

fn name_key(user_id: Uuid, name: &str) -> Key {
    Key::new(format!("PROVIDERNAME#{user_id}#{name}"), "NAME")
}

fn partition(user_id: Uuid) -> String {
    format!("PROVIDERS#{user_id}")
}

fn item(provider: &DynamicProvider) -> ApiResult<Item> {
    let mut item = keyed_item(provider, &key(provider.user_id, provider.id))?;
    set_index(&mut item, Index::Gsi1, partition(provider.user_id), format!("{}#{}", provider.created_at.to_rfc3339(), provider.id));
    Ok(item)
}

fn name_lock(provider: &DynamicProvider) -> TxOp {
    let k = name_key(provider.user_id, &provider.name);
    let item = Item::from([("PK".into(), Attr::S(k.pk)), ("SK".into(), Attr::S(k.sk)), ("provider_id".into(), Attr::S(provider.id.to_string()))]);
    TxOp::Put { item, cond: Some(Cond::NotExists) }
}

/// The provider types that the gateway's own cloud identity could serve (the AWS credential
/// chain, Google's application default credentials): a user's provider of these types must
/// carry credentials of its own.
pub const CLOUD_TYPES: [&str; 2] = ["bedrock", "vertex"];

/// Checks what a provider says of itself: `has_key` is whether it has (or is given) a key, and
/// `policy` the addresses a user's URL may reach (a literal IP is refused here; a name is
/// checked at every connection).
pub fn validate(provider: &DynamicProvider, has_key: bool, policy: &crate::egress::AddressPolicy) -> ApiResult<()> {
    crate::names::validate("name", &provider.name)?;
    if !provider.provider_type.user_may_own() {
        return Err(ApiError::invalid_param("provider_type", format!("a provider of your own cannot be of type {}", provider.provider_type)));
    }
    if let Some(url) = &provider.base_url {
        let parsed = reqwest::Url::parse(url).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if parsed.is_none() {
            return Err(ApiError::invalid_param("base_url", "base_url must be an http(s) URL such as https://api.example.com/v1"));
        }
        crate::egress::check_literal(url, policy).map_err(|blocked| ApiError::invalid_param("base_url", format!("base_url: {blocked}")))?;
    } else if provider.endpoint().is_none() {
        return Err(ApiError::invalid_param("base_url", format!("a {} provider needs base_url", provider.provider_type)));
    }
    if !has_key && provider.provider_type.has_ambient_identity() {
        let shape = match provider.provider_type {
            ProviderType::Bedrock => "ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN] (the region comes from base_url), or a Bedrock API key",
            _ => "a service account's JSON key, or a Google API key",
        };
        return Err(ApiError::invalid_param(
            "api_key",
            format!(
                "a {} provider of your own needs its own credentials in api_key: {shape}. The gateway's own cloud identity serves only models an admin configured",
                provider.provider_type
            ),
        ));
    }
    if let Some(offer) = &provider.sovereignty {
        crate::sovereignty::offer(offer, "sovereignty")?;
    }
    if provider.models.len() > 1000 || provider.models.iter().any(|m| m.is_empty() || m.len() > 256 || m.chars().any(char::is_whitespace)) {
        return Err(ApiError::invalid_param("models", "models must be at most 1000 model names of 1-256 characters without spaces"));
    }
    Ok(())
}

/// A key as given: an empty one is none.
pub fn given(api_key: Option<SecretString>) -> Option<SecretString> {
    api_key.filter(|k| !secrecy::ExposeSecret::expose_secret(k).is_empty())
}

/// Creates a provider; its key (if any) goes to the secret store first.
pub async fn create(
    store: &dyn Store,
    secrets: &dyn SecretStore,
    policy: &crate::egress::AddressPolicy,
    mut provider: DynamicProvider,
    api_key: Option<SecretString>,
) -> ApiResult<DynamicProvider> {
    let api_key = given(api_key);
    validate(&provider, api_key.is_some(), policy)?;
    if let Some(k) = &api_key {
        secrets.put(&provider.secret_name(), k).await.map_err(ApiError::internal)?;
        provider.has_api_key = true;
    }
    match store.transact(vec![name_lock(&provider), TxOp::Put { item: item(&provider)?, cond: Some(Cond::NotExists) }]).await {
        Ok(()) => Ok(provider),
        Err(e) => {
            if api_key.is_some() {
                secrets.delete(&provider.secret_name()).await.map_err(ApiError::internal)?;
            }
            match e {
                StoreError::TransactionCancelled { .. } => {
                    Err(ApiError::conflict("provider_exists", format!("you already have a provider named {:?}", provider.name)))
                }
                e => Err(e.into()),
            }
        }
    }
}

pub async fn get(store: &dyn Store, user_id: Uuid, id: Uuid) -> ApiResult<DynamicProvider> {
    let missing = || ApiError::not_found(format!("you have no provider with id {id}"));
    let provider: DynamicProvider = from_item(store.get(&key(user_id, id)).await?.ok_or_else(missing)?)?;
    Ok(provider)
}

/// The user's live provider named `name`.
pub async fn by_name(store: &dyn Store, user_id: Uuid, name: &str) -> ApiResult<Option<DynamicProvider>> {
    let Some(lock) = store.get(&name_key(user_id, name)).await? else { return Ok(None) };
    let Some(id) = lock.get("provider_id").and_then(Attr::as_str).and_then(|s| s.parse().ok()) else { return Ok(None) };
    Ok(Some(get(store, user_id, id).await?).filter(|p| p.deleted_at.is_none()))
}

pub async fn list(
    store: &dyn Store,
    user_id: Uuid,
    limit: usize,
    cursor: Option<String>,
    direction: Direction,
    include_deleted: bool,
) -> ApiResult<(Vec<DynamicProvider>, Pagination)> {
    let keep = |item: &Item| include_deleted || matches!(item.get("deleted_at"), None | Some(Attr::Null));
    let (items, pagination) = pagination::page(store, Index::Gsi1, &partition(user_id), None, limit, cursor, direction, keep).await?;
    Ok((items.into_iter().map(from_item).collect::<Result<_, _>>()?, pagination))
}

/// Saves a changed provider (and its new key, if one is given), provided it still exists.
pub async fn save(
    store: &dyn Store,
    secrets: &dyn SecretStore,
    policy: &crate::egress::AddressPolicy,
    caches: &dyn Invalidate,
    mut provider: DynamicProvider,
    api_key: Option<SecretString>,
) -> ApiResult<DynamicProvider> {
    let api_key = given(api_key);
    validate(&provider, provider.has_api_key || api_key.is_some(), policy)?;
    if provider.deleted_at.is_some() {
        return Err(ApiError::conflict("provider_deleted", "a deleted provider cannot be changed"));
    }
    if let Some(k) = &api_key {
        secrets.put(&provider.secret_name(), k).await.map_err(ApiError::internal)?;
        provider.has_api_key = true;
    }
    match store.put(item(&provider)?, Some(Cond::Exists)).await {
        Ok(()) => {
            forget(caches, &provider);
            Ok(provider)
        }
        Err(StoreError::ConditionFailed) => Err(ApiError::not_found(format!("you have no provider with id {}", provider.id))),
        Err(e) => Err(e.into()),
    }
}

/// Soft-deletes a provider: it stops serving at once, its key is destroyed and its name freed.
pub async fn delete(
    store: &dyn Store,
    secrets: &dyn SecretStore,
    user_id: Uuid,
    id: Uuid,
    now: DateTime<Utc>,
    caches: &dyn Invalidate,
) -> ApiResult<DynamicProvider> {
    let mut provider = get(store, user_id, id).await?;
    if provider.deleted_at.is_some() {
        return Ok(provider);
    }
    provider.deleted_at = Some(now);
    provider.updated_at = now;
    provider.is_enabled = false;
    let ops = vec![
        TxOp::Put { item: item(&provider)?, cond: Some(Cond::Exists) },
        TxOp::Delete { key: name_key(user_id, &provider.name), cond: Some(Cond::eq("provider_id", id.to_string())) },
    ];
    store.transact(ops).await?;
    forget(caches, &provider);
    if provider.has_api_key {
        secrets.delete(&provider.secret_name()).await.map_err(ApiError::internal)?;
    }
    Ok(provider)
}

/// Drops this process's copies of a changed provider and its key.
fn forget(caches: &dyn Invalidate, provider: &DynamicProvider) {
    caches.provider(provider.user_id, &provider.name);
    caches.secret(&provider.secret_name());
}

/// Every live (not deleted) provider of a user, newest first.
pub async fn all_of(store: &dyn Store, user_id: Uuid) -> ApiResult<Vec<DynamicProvider>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let (page, pagination) = list(store, user_id, pagination::MAX_LIMIT, cursor, Direction::Forward, false).await?;
        out.extend(page);
        match pagination.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(out),
        }
    }
}

/// Deletes every provider of a user (account deletion); returns how many.
pub async fn delete_all(store: &dyn Store, secrets: &dyn SecretStore, user_id: Uuid, now: DateTime<Utc>, caches: &dyn Invalidate) -> ApiResult<usize> {
    let all = all_of(store, user_id).await?;
    for provider in &all {
        delete(store, secrets, user_id, provider.id, now, caches).await?;
    }
    Ok(all.len())
}
