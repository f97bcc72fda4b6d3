//! API tokens: one entity for personal keys, workspace tokens and project tokens. A token is
//! stored twice in one transaction: the record under its id (listed by owner through GSI1),
//! and a copy under the SHA-256 of its secret, so the proxy authenticates with one read. The
//! secret itself (`tg_` + 32 random bytes) is returned once and never stored.

pub mod lineage;
pub mod workspace_tokens;

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::identity::{random_secret, sha256_hex};
use crate::invalidate::Invalidate;
use crate::limits::{Limit, Metric, Mode, Unit, Window};
use crate::money::MICROS_PER_CENT;
use crate::pagination::{self, Direction, Pagination};
use crate::store::{Cond, Index, Item, Key, Store, StoreError, TxOp, from_item, keyed_item, set_index};

pub const SECRET_PREFIX: &str = "tg_";
/// How much of the secret is kept, so people can recognise their keys.
pub const KEY_PREFIX_LEN: usize = 10;
pub const DEFAULT_GRACE_SECS: i64 = 86_400;
pub const MAX_GRACE_SECS: i64 = 604_800;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Owner {
    User { user_id: Uuid },
    Workspace { workspace_id: Uuid },
    Project { project_id: Uuid },
}

/// `prefix` and the id's hyphenated form, without `format!` (keys made on every request).
fn tagged(prefix: &str, id: &Uuid) -> String {
    [prefix, id.hyphenated().encode_lower(&mut Uuid::encode_buffer())].concat()
}

impl Owner {
    /// The owner as a key fragment: `user#<id>`.
    pub fn tag(&self) -> String {
        match self {
            Owner::User { user_id } => tagged("user#", user_id),
            Owner::Workspace { workspace_id } => tagged("workspace#", workspace_id),
            Owner::Project { project_id } => tagged("project#", project_id),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    Daily,
    Weekly,
    Monthly,
}

impl BudgetPeriod {
    fn window(self) -> Window {
        match self {
            BudgetPeriod::Daily => Window::Daily,
            BudgetPeriod::Weekly => Window::Weekly,
            BudgetPeriod::Monthly => Window::Monthly,
        }
    }
}

/// A stored token. Holds only the hash of its secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: Uuid,
    pub owner: Owner,
    pub key_prefix: String,
    pub key_hash: String,
    /// What the owner chose (and what a rotation copies); stored flat beside the rest.
    #[serde(flatten)]
    pub settings: KeySettings,
    pub revoked_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub rotated_from_key_id: Option<Uuid>,
    pub rotation_grace_until: Option<DateTime<Utc>>,
    /// The first key of the rotation chain: every key of a chain shares its limit counters,
    /// so rotating a key does not reset its budget.
    pub counters_id: Option<Uuid>,
    /// The key that made this one, when an API key did (not a session).
    #[serde(default)]
    pub parent_key_id: Option<Uuid>,
    /// The keys above one made by a key: it counts against their limits too.
    #[serde(default)]
    pub ancestors: Vec<lineage::Ancestor>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// The settings of a token.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KeySettings {
    pub name: String,
    pub scopes: Option<Vec<String>>,
    pub allowed_models: Option<Vec<String>>,
    pub ip_allowlist: Option<Vec<String>>,
    pub budget_limit_cents: Option<i64>,
    pub budget_period: Option<BudgetPeriod>,
    pub rate_limit_rpm: Option<i64>,
    pub rate_limit_tpm: Option<i64>,
    /// Limits beyond the personal-key fields (workspace and project tokens).
    #[serde(default)]
    pub limits: Vec<Limit>,
    /// What the providers serving this key must offer (`sovereignty::Requirements`, as JSON
    /// text); enforced at routing.
    pub sovereignty_requirements: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Opt-in: when a request's worst case does not fit what a budget has left, lower its
    /// `max_tokens` to what the budget can still pay for (and say so) instead of refusing it.
    #[serde(default)]
    pub fit_max_tokens: bool,
    /// Opt-in: answer a request this key sent before from the response cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<crate::response_cache::CacheSettings>,
}

/// Every scope a token may hold.
pub const SCOPES: [&str; 9] = ["chat", "completions", "embeddings", "models", "usage:read", "keys:write", "*", "leaderboards:inference", "leaderboards:read"];

impl KeySettings {
    pub fn validate(&self, now: DateTime<Utc>) -> ApiResult<()> {
        if let Some(cache) = &self.cache {
            cache.validate("cache")?;
        }
        if self.name.trim().is_empty() || self.name.chars().count() > 128 {
            return Err(ApiError::invalid_param("name", "name must be 1-128 characters"));
        }
        for scope in self.scopes.iter().flatten() {
            if !SCOPES.contains(&scope.as_str()) {
                return Err(ApiError::invalid_param("scopes", format!("unknown scope {scope:?}; valid scopes are {}", SCOPES.join(", "))));
            }
        }
        for pattern in self.allowed_models.iter().flatten() {
            let star = pattern.find('*');
            if pattern.is_empty() || star.is_some_and(|i| i != pattern.len() - 1) {
                return Err(ApiError::invalid_param("allowed_models", format!("{pattern:?} is not a model name or a prefix ending in a single trailing *")));
            }
        }
        for entry in self.ip_allowlist.iter().flatten() {
            parse_net(entry).ok_or_else(|| ApiError::invalid_param("ip_allowlist", format!("{entry:?} is not an IP address or CIDR such as 10.0.0.0/8")))?;
        }
        let max_cents = crate::limits::MAX_COST_MICROS / MICROS_PER_CENT;
        if self.budget_limit_cents.is_some_and(|c| !(0..=max_cents).contains(&c)) {
            return Err(ApiError::invalid_param("budget_limit_cents", format!("budget_limit_cents must be from 0 to {max_cents} ($1,000,000,000)")));
        }
        if self.budget_period.is_some() && self.budget_limit_cents.is_none() {
            return Err(ApiError::invalid_param("budget_period", "budget_period needs budget_limit_cents"));
        }
        for (value, name) in [(self.rate_limit_rpm, "rate_limit_rpm"), (self.rate_limit_tpm, "rate_limit_tpm")] {
            if value.is_some_and(|v| !(1..=crate::limits::MAX_COUNT).contains(&v)) {
                return Err(ApiError::invalid_param(name, format!("{name} must be from 1 to {}", crate::limits::MAX_COUNT)));
            }
        }
        if self.expires_at.is_some_and(|e| e <= now) {
            return Err(ApiError::invalid_param("expires_at", "expires_at must be in the future"));
        }
        if let Some(required) = &self.sovereignty_requirements {
            crate::sovereignty::requirements(required, "sovereignty_requirements")?;
        }
        self.limits.iter().try_for_each(crate::limits::validate)
    }
}

fn parse_net(entry: &str) -> Option<IpNet> {
    entry.parse::<IpNet>().ok().or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from))
}

impl ApiKey {
    /// Every limit of this token: the personal-key fields as limits, then any others.
    pub fn all_limits(&self) -> Vec<Limit> {
        let s = &self.settings;
        let mut out = Vec::new();
        if let Some(cents) = s.budget_limit_cents {
            let window = s.budget_period.map_or(Window::Monthly, BudgetPeriod::window);
            out.push(Limit { id: "budget".into(), metric: Metric::Cost, limit: cents.saturating_mul(MICROS_PER_CENT), window, mode: Mode::Replace });
        }
        let minute = Window::Rolling(crate::limits::Rolling { every: 1, unit: Unit::Minute });
        if let Some(rpm) = s.rate_limit_rpm {
            out.push(Limit { id: "rpm".into(), metric: Metric::Calls, limit: rpm, window: minute, mode: Mode::Replace });
        }
        if let Some(tpm) = s.rate_limit_tpm {
            out.push(Limit { id: "tpm".into(), metric: Metric::TotalTokens, limit: tpm, window: minute, mode: Mode::Replace });
        }
        out.extend(s.limits.iter().cloned());
        out
    }

    pub fn counters_key_id(&self) -> Uuid {
        self.counters_id.unwrap_or(self.id)
    }

    /// The item holding this token's limit counters.
    pub fn counters(&self) -> Key {
        Key::new(tagged("LIMITS#token#", &self.counters_key_id()), "COUNTERS")
    }

    /// Whether the token grants `scope` (`null` = every scope, `[]` = none).
    pub fn grants(&self, scope: &str) -> bool {
        let Some(scopes) = &self.settings.scopes else { return true };
        scopes.iter().any(|s| {
            s == "*"
                || (s == scope && scope != "*")
                || (s == "leaderboards:inference" && matches!(scope, "chat" | "completions" | "embeddings"))
                || (s == "leaderboards:read" && scope == "models")
        })
    }

    pub fn allows_model(&self, model: &str) -> bool {
        let Some(patterns) = &self.settings.allowed_models else { return true };
        patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => model.starts_with(prefix),
            None => p == model,
        })
    }

    pub fn allows_ip(&self, ip: Option<IpAddr>) -> bool {
        let Some(list) = &self.settings.ip_allowlist else { return true };
        ip.is_some_and(|ip| list.iter().filter_map(|e| parse_net(e)).any(|net| net.contains(&ip)))
    }

    /// 401 unless the token may be used at `now`: not revoked, not expired, not rotated past its
    /// grace period.
    pub fn check_usable(&self, now: DateTime<Utc>) -> ApiResult<()> {
        let refuse = |why: &str| Err(ApiError::unauthorized_as("invalid_api_key", why.to_string()));
        if self.revoked_at.is_some() {
            return refuse("this API key has been revoked");
        }
        if self.settings.expires_at.is_some_and(|e| e <= now) {
            return refuse("this API key has expired");
        }
        if self.rotation_grace_until.is_some_and(|g| g <= now) {
            return refuse("this API key was rotated and its grace period is over; use the new key");
        }
        Ok(())
    }
}

fn record_key(id: Uuid) -> Key {
    Key::new(format!("TOKEN#{id}"), "TOKEN")
}

fn lookup_key(hash: &str) -> Key {
    Key::new(format!("KEYHASH#{hash}"), "KEY")
}

fn owner_partition(owner: &Owner) -> String {
    format!("OWNER#{}#TOKENS", owner.tag())
}

fn items(key: &ApiKey) -> ApiResult<(Item, Item)> {
    let mut record = keyed_item(key, &record_key(key.id))?;
    set_index(&mut record, Index::Gsi1, owner_partition(&key.owner), format!("{}#{}", key.created_at.to_rfc3339(), key.id));
    Ok((record, keyed_item(key, &lookup_key(&key.key_hash))?))
}

/// A token with its secret, as returned once at creation or rotation.
pub struct Issued {
    pub key: ApiKey,
    pub secret: String,
}

fn mint(owner: Owner, settings: KeySettings, now: DateTime<Utc>) -> Issued {
    let secret = random_secret(SECRET_PREFIX);
    let key = ApiKey {
        id: Uuid::new_v4(),
        owner,
        key_prefix: secret.chars().take(KEY_PREFIX_LEN).collect(),
        key_hash: sha256_hex(&secret),
        settings,
        revoked_at: None,
        deleted_at: None,
        rotated_from_key_id: None,
        rotation_grace_until: None,
        counters_id: None,
        parent_key_id: None,
        ancestors: vec![],
        created_at: now,
        last_used_at: None,
    };
    Issued { key, secret }
}

/// Creates a token; `parent` is the API key creating it, when a key (not a session) asks: the
/// new key must then fit within it and counts against its limits too (see `lineage`).
pub async fn create(store: &dyn Store, owner: Owner, settings: KeySettings, parent: Option<&ApiKey>, now: DateTime<Utc>) -> ApiResult<Issued> {
    settings.validate(now)?;
    let ancestors = match parent {
        Some(parent) => {
            lineage::check_within(&settings, parent)?;
            lineage::ancestors_under(parent)?
        }
        None => vec![],
    };
    let mut issued = mint(owner, settings, now);
    issued.key.parent_key_id = parent.map(|p| p.id);
    issued.key.ancestors = ancestors;
    let (record, lookup) = items(&issued.key)?;
    // Its owner may have usage from now on: the registry the usage views of everyone read.
    let register = crate::usage::owners::register_op(&issued.key.owner.tag());
    store.transact(vec![TxOp::Put { item: record, cond: Some(Cond::NotExists) }, TxOp::Put { item: lookup, cond: Some(Cond::NotExists) }, register]).await?;
    Ok(issued)
}

/// The owner's token, or 404 (also for someone else's: ids are not secrets, but existence is).
pub async fn get(store: &dyn Store, owner: &Owner, id: Uuid) -> ApiResult<ApiKey> {
    get_any(store, id).await?.filter(|k| k.owner == *owner).ok_or_else(|| ApiError::not_found(format!("no API key with id {id}")))
}

/// The token with this id, whoever owns it (callers check the owner).
pub async fn get_any(store: &dyn Store, id: Uuid) -> ApiResult<Option<ApiKey>> {
    Ok(store.get(&record_key(id)).await?.map(from_item).transpose()?)
}

/// The token whose secret has this SHA-256, if any.
pub async fn by_hash(store: &dyn Store, hash: &str) -> ApiResult<Option<ApiKey>> {
    Ok(store.get(&lookup_key(hash)).await?.map(from_item).transpose()?)
}

/// Operations that stamp `last_used_at` on both copies of a token (in the settlement).
pub fn touch_ops(key: &ApiKey, now: DateTime<Utc>) -> ApiResult<Vec<TxOp>> {
    let stamp = crate::store::attr_of(&Some(now))?;
    Ok([record_key(key.id), lookup_key(&key.key_hash)]
        .into_iter()
        .map(|k| TxOp::Update { key: k, update: crate::store::Update::default().set("last_used_at", stamp.clone()), cond: Some(Cond::Exists) })
        .collect())
}

pub async fn list(
    store: &dyn Store,
    owner: &Owner,
    limit: usize,
    cursor: Option<String>,
    direction: Direction,
    include_deleted: bool,
) -> ApiResult<(Vec<ApiKey>, Pagination)> {
    let keep = |item: &Item| include_deleted || matches!(item.get("deleted_at"), None | Some(crate::store::Attr::Null));
    let (items, pagination) = pagination::page(store, Index::Gsi1, &owner_partition(owner), None, limit, cursor, direction, keep).await?;
    Ok((items.into_iter().map(from_item).collect::<Result<_, _>>()?, pagination))
}

/// Every token of an owner, revoked ones included.
pub async fn all_of(store: &dyn Store, owner: &Owner) -> ApiResult<Vec<ApiKey>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let (page, pagination) = list(store, owner, pagination::MAX_LIMIT, cursor, Direction::Forward, true).await?;
        out.extend(page);
        match pagination.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// Writes a changed token (record and lookup copy together), provided it is unchanged since
/// `before` was read, and drops this process's cached copy of it.
async fn save(store: &dyn Store, before: &ApiKey, after: &ApiKey, extra: Vec<TxOp>, caches: &dyn Invalidate) -> ApiResult<()> {
    let (record, lookup) = items(after)?;
    let unchanged = Cond::Eq("revoked_at".into(), crate::store::attr_of(&before.revoked_at)?);
    let still = Cond::And(vec![Cond::Exists, unchanged, Cond::Eq("rotation_grace_until".into(), crate::store::attr_of(&before.rotation_grace_until)?)]);
    let mut ops = vec![TxOp::Put { item: record, cond: Some(still) }, TxOp::Put { item: lookup, cond: None }];
    ops.extend(extra);
    match store.transact(ops).await {
        Ok(()) => {
            caches.key(&before.key_hash);
            Ok(())
        }
        Err(StoreError::TransactionCancelled { index: 0 }) => {
            Err(ApiError::conflict("key_changed", "this API key changed while we were updating it; read it again and retry"))
        }
        Err(e) => Err(e.into()),
    }
}

/// Revokes (and soft-deletes) a token: it stops working at once, and leaves listings unless
/// `include_deleted` is asked for. When it is the live key of its chain (not an old key in its
/// rotation grace), the keys made from it by keys go with it. Returns every key revoked.
pub async fn revoke(store: &dyn Store, owner: &Owner, id: Uuid, now: DateTime<Utc>, caches: &dyn Invalidate) -> ApiResult<Vec<ApiKey>> {
    let key = retire(store, owner, id, false, now, caches).await?;
    let mut out = vec![];
    if matches!(owner, Owner::User { .. }) && key.rotation_grace_until.is_none() {
        let chain = key.counters_key_id();
        for child in all_of(store, owner).await? {
            if child.revoked_at.is_none() && child.ancestors.iter().any(|a| a.counters_id == chain) {
                out.push(retire(store, owner, child.id, false, now, caches).await?);
            }
        }
    }
    out.insert(0, key);
    Ok(out)
}

/// Revokes a token (it stops working at once); with `keep_listed`, it stays in listings as
/// revoked, otherwise it is soft-deleted too. Retiring a retired token changes nothing.
pub async fn retire(store: &dyn Store, owner: &Owner, id: Uuid, keep_listed: bool, now: DateTime<Utc>, caches: &dyn Invalidate) -> ApiResult<ApiKey> {
    let before = get(store, owner, id).await?;
    let deleted_at = if keep_listed { before.deleted_at } else { before.deleted_at.or(Some(now)) };
    let after = ApiKey { revoked_at: before.revoked_at.or(Some(now)), deleted_at, ..before.clone() };
    if after.revoked_at == before.revoked_at && after.deleted_at == before.deleted_at {
        caches.key(&before.key_hash);
        return Ok(before);
    }
    save(store, &before, &after, vec![], caches).await?;
    Ok(after)
}

/// Changes a token's settings (name, limits, ...): both copies change together; this process's
/// cache drops it at once, others' within their TTL.
pub async fn update(
    store: &dyn Store,
    owner: &Owner,
    id: Uuid,
    now: DateTime<Utc>,
    caches: &dyn Invalidate,
    change: impl FnOnce(&mut KeySettings) -> ApiResult<()>,
) -> ApiResult<ApiKey> {
    let before = get(store, owner, id).await?;
    if before.revoked_at.is_some() {
        return Err(ApiError::conflict("key_revoked", "a revoked token cannot be changed"));
    }
    let mut after = before.clone();
    change(&mut after.settings)?;
    after.settings.validate(now - Duration::seconds(1))?;
    save(store, &before, &after, vec![], caches).await?;
    Ok(after)
}

/// Replaces a token with a new secret that copies every setting. The old secret keeps working
/// for `grace_secs`.
pub async fn rotate(store: &dyn Store, owner: &Owner, id: Uuid, grace_secs: i64, now: DateTime<Utc>, caches: &dyn Invalidate) -> ApiResult<Issued> {
    if !(1..=MAX_GRACE_SECS).contains(&grace_secs) {
        return Err(ApiError::invalid_param("grace_period_seconds", format!("grace_period_seconds must be between 1 and {MAX_GRACE_SECS}")));
    }
    let before = get(store, owner, id).await?;
    if before.revoked_at.is_some() {
        return Err(ApiError::conflict("key_revoked", "a revoked API key cannot be rotated"));
    }
    if before.rotation_grace_until.is_some() {
        return Err(ApiError::conflict("key_rotating", "this API key has already been rotated; rotate the new key instead"));
    }
    before.check_usable(now)?;
    let mut issued = mint(before.owner.clone(), before.settings.clone(), now);
    issued.key.rotated_from_key_id = Some(before.id);
    issued.key.counters_id = Some(before.counters_key_id());
    issued.key.parent_key_id = before.parent_key_id;
    issued.key.ancestors = before.ancestors.clone();
    let after = ApiKey { rotation_grace_until: Some(now + Duration::seconds(grace_secs)), ..before.clone() };
    let (record, lookup) = items(&issued.key)?;
    let extra = vec![TxOp::Put { item: record, cond: Some(Cond::NotExists) }, TxOp::Put { item: lookup, cond: Some(Cond::NotExists) }];
    // The old key's cached copy lacks its grace deadline.
    save(store, &before, &after, extra, caches).await?;
    Ok(issued)
}
