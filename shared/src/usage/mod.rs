//! Usage records: one per proxied request, written in the same transaction as the settlement
//! of its reservation, and idempotent on the request id (a marker item written with the
//! record), so a retried write can neither record nor settle twice.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::pagination::{self, Direction, Pagination};
use crate::store::{Attr, Cond, EntityPut, Index, Item, Key, SkCond, Store, StoreError, TxOp, from_item};

pub mod grouped;
pub mod listing;
pub mod owners;
pub mod rollups;
pub mod stream;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Error,
    BudgetExceeded,
    Timeout,
    /// Answered from the response cache.
    CacheHit,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [Outcome::Success, Outcome::Error, Outcome::BudgetExceeded, Outcome::Timeout, Outcome::CacheHit];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error => "error",
            Outcome::BudgetExceeded => "budget_exceeded",
            Outcome::Timeout => "timeout",
            Outcome::CacheHit => "cache_hit",
        }
    }
}

/// One attempt at one upstream, for the routing trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    pub model: String,
    pub provider: String,
    /// Which of the model's deployments it went to (absent: the model's own provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A time as chrono's serde writes one (RFC 3339, `Z`, as many digits of the second's fraction
/// as it needs), made with `to_rfc3339_opts`, which writes into one string: chrono's own
/// `Serialize` goes through `Display` and cost ~3x as much, twice on every record.
fn rfc3339<S: serde::Serializer>(at: &DateTime<Utc>, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

fn rfc3339_or_none<S: serde::Serializer>(at: &Option<DateTime<Utc>>, to: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, to),
        None => to.serialize_none(),
    }
}

/// A request's usage record. Optional fields that hold nothing, and cache-write tokens when
/// none, are left out of the stored item and read back as their default: each field is
/// encoded, logged and committed on every request, and most of these are empty on most.
/// Only fields that earlier versions also read as absent are left out (an `Option`, or one
/// marked `serde(default)` in a release before): a version being deployed or rolled back
/// reads the same records. Cached and reasoning tokens, streamed and cancelled are marked
/// `default` now and can be left out a release later.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub id: Uuid,
    pub request_id: String,
    /// `user#<id>`, `workspace#<id>` or `project#<id>`: whose usage this is.
    pub owner: String,
    pub api_key_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<Uuid>,
    pub endpoint: String,
    pub model: String,
    pub provider: String,
    pub provider_source: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    #[serde(default)]
    pub cached_tokens: i64,
    /// Input tokens written to the provider's prompt cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_tokens: i64,
    /// Of those, the tokens written to Anthropic's 1-hour cache (left out when none: most
    /// records have none, and each field is encoded and decoded on the hot path).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_1h_tokens: i64,
    #[serde(default)]
    pub reasoning_tokens: i64,
    pub cost_micros: i64,
    /// The prices the request was charged at (per million tokens of each class).
    pub input_price_micros: i64,
    pub output_price_micros: i64,
    #[serde(default)]
    pub cached_input_price_micros: i64,
    #[serde(default)]
    pub cache_write_price_micros: i64,
    #[serde(default)]
    pub cache_write_1h_price_micros: i64,
    /// `catalog` (each token class at the model's prices) or `provider` (what the provider
    /// reported it charged, `provider_cost_micros`).
    pub pricing_source: String,
    /// The cost the provider reported, where it reports one (OpenRouter), whether or not it
    /// was charged: a budget is charged at most the request's reserved worst case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_cost_micros: Option<i64>,
    pub latency_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<i64>,
    pub status_code: i64,
    pub outcome: Outcome,
    #[serde(default)]
    pub streamed: bool,
    #[serde(default)]
    pub cancelled: bool,
    pub finish_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_referer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every model the request could have been served by, in routing order.
    #[serde(default)]
    pub candidates: Vec<String>,
    /// Every upstream attempt, in order: the last one served (or failed) the request.
    pub routing: Vec<Attempt>,
    #[serde(serialize_with = "rfc3339")]
    pub recorded_at: DateTime<Utc>,
    /// When the record expires (`TOLLGATE_USAGE_RETENTION_DAYS`): the store's TTL removes it,
    /// and its idempotency marker, then; its rollups stay.
    #[serde(default, serialize_with = "rfc3339_or_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

pub(crate) use crate::store::time_key;

/// The sort keys of the records made from `from` to `to` (both included; either open), or a
/// 400 when `from` is after `to`.
pub(crate) fn time_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> ApiResult<(String, String)> {
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(ApiError::invalid_param("from", "from must not be after to"));
    }
    let lo = from.map_or_else(|| "0".to_string(), time_key);
    // `~` sorts after every request id character, so `to` itself is included.
    let hi = to.map_or_else(|| "9".to_string(), |t| format!("{}~", time_key(t)));
    Ok((lo, hi))
}

// Keys made on every request are joined with `concat`: `format!` costs several times a copy.
pub(crate) fn partition(owner: &str) -> String {
    ["USAGE#", owner].concat()
}

/// A request id's marker: where the request's usage record is, and proof that it has one.
#[derive(Serialize)]
struct Marker {
    usage_pk: String,
    usage_sk: String,
}

fn marker_key(request_id: &str) -> Key {
    Key::new(["REQ#", request_id].concat(), "USAGE")
}

/// Writes the record with `extra` operations (the settlement) in one transaction. Returns
/// false, writing nothing, when this request id was already recorded. With `buffered`, the
/// store may make it durable a little later (the embedded store's relaxed durability).
pub async fn write(store: &dyn Store, record: &UsageRecord, extra: Vec<TxOp>) -> ApiResult<bool> {
    write_with(store, record, extra, false).await
}

pub async fn write_with(store: &dyn Store, record: &UsageRecord, extra: Vec<TxOp>, buffered: bool) -> ApiResult<bool> {
    transact_record(store, &Arc::new(record.clone()), extra, buffered).await.map_err(Into::into)
}

/// `write_with`, the store's own error kept (a cancellation at index 0: already recorded). The
/// record is shared with the transaction, which the embedded store encodes straight from it.
pub async fn transact_record(store: &dyn Store, record: &Arc<UsageRecord>, extra: Vec<TxOp>, buffered: bool) -> Result<bool, StoreError> {
    let mut ops = record_ops(record).map_err(|e| StoreError::Backend(e.to_string()))?;
    ops.extend(extra);
    let written = if buffered { store.transact_buffered(ops).await } else { store.transact(ops).await };
    match written {
        Ok(()) => Ok(true),
        Err(StoreError::TransactionCancelled { index: 0 }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The operations that write a record: its idempotency marker (first, conditioned on not
/// existing), the record itself, and its pending item for the owner's rollups (see `rollups`).
pub fn record_ops(record: &Arc<UsageRecord>) -> ApiResult<Vec<TxOp>> {
    let sk = [time_key(record.recorded_at).as_str(), "#", &record.request_id].concat();
    let mut put = EntityPut::new(Key::new(partition(&record.owner), sk.clone()), record.clone());
    // Two indexes' keys and a TTL.
    put.extra.reserve_exact(5);
    for (index, pk, index_sk) in listing::index_keys(&record.owner, &record.model, record.outcome, &sk) {
        put.index(index, pk, index_sk);
    }
    // Put whole, as the record is: as an item, its names, map and key were a dozen allocations.
    let mut marker = EntityPut::new(marker_key(&record.request_id), Arc::new(Marker { usage_pk: partition(&record.owner), usage_sk: sk.clone() }));
    if let Some(expires) = record.expires_at {
        put.set(crate::store::TTL, Attr::N(expires.timestamp()));
        marker.set(crate::store::TTL, Attr::N(expires.timestamp()));
    }
    let pending = rollups::pending_op(record, &sk);
    Ok(vec![TxOp::PutEntity { put: marker, cond: Some(Cond::NotExists) }, TxOp::PutEntity { put, cond: None }, pending])
}

/// When an owner's first and last records between `from` and `to` were made (two reads of one
/// record each, however many there are).
pub async fn first_and_last(
    store: &dyn Store,
    owner: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> ApiResult<(Option<DateTime<Utc>>, Option<DateTime<Utc>>)> {
    let (lo, hi) = time_range(from, to)?;
    let query = crate::store::Query::new(Index::Primary, partition(owner)).between(lo, hi).limit(1);
    let at = |items: Vec<Item>| -> ApiResult<Option<DateTime<Utc>>> {
        Ok(items.into_iter().next().map(from_item::<UsageRecord>).transpose()?.map(|r| r.recorded_at))
    };
    let first = at(store.query(query.clone()).await?.items)?;
    let last = at(store.query(query.backward()).await?.items)?;
    Ok((first, last))
}

/// What a reservation's lease keeps of its request, to record it by should it never settle:
/// `owner`, key id, model, endpoint and when its record expires (epoch seconds, or empty) on
/// one short line.
pub fn lease_record(owner: &str, api_key_id: Uuid, model: &str, endpoint: &str, expires_at: Option<DateTime<Utc>>) -> String {
    let expires = expires_at.map(|t| t.timestamp().to_string()).unwrap_or_default();
    let key = api_key_id.hyphenated().encode_lower(&mut Uuid::encode_buffer()).to_string();
    [owner, "\t", &key, "\t", model, "\t", endpoint, "\t", &expires].concat()
}

/// The record of a request whose lease lapsed unsettled (the process serving it died): what it
/// was, charged nothing, with what happened in `error`.
pub fn lost(request_id: &str, lease_record: &str, released_at: DateTime<Utc>) -> Option<UsageRecord> {
    let mut parts = lease_record.split('\t');
    let (owner, key, model, endpoint) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let expires_at = parts.next().and_then(|t| t.parse::<i64>().ok()).and_then(|t| DateTime::from_timestamp(t, 0));
    let owner_id = |kind: &str| owner.strip_prefix(kind).and_then(|id| id.parse::<Uuid>().ok());
    Some(UsageRecord {
        id: Uuid::new_v4(),
        request_id: request_id.to_string(),
        owner: owner.to_string(),
        api_key_id: key.parse().ok(),
        user_id: owner_id("user#"),
        org_id: owner_id("workspace#"),
        project_id: owner_id("project#"),
        endpoint: endpoint.to_string(),
        model: model.to_string(),
        provider: String::new(),
        provider_source: String::new(),
        input_tokens: 0,
        output_tokens: 0,
        cached_tokens: 0,
        cache_write_tokens: 0,
        cache_write_1h_tokens: 0,
        reasoning_tokens: 0,
        cost_micros: 0,
        input_price_micros: 0,
        output_price_micros: 0,
        cached_input_price_micros: 0,
        cache_write_price_micros: 0,
        cache_write_1h_price_micros: 0,
        pricing_source: "catalog".into(),
        provider_cost_micros: None,
        latency_ms: 0,
        ttft_ms: None,
        status_code: 0,
        outcome: Outcome::Error,
        streamed: false,
        cancelled: true,
        finish_reason: None,
        http_referer: None,
        error: Some("the request never settled (the process serving it stopped); its reservation lapsed and was released, and nothing was charged".into()),
        candidates: vec![],
        routing: vec![],
        recorded_at: released_at,
        expires_at,
    })
}

/// The record of a request id, wherever it is filed.
pub async fn by_request_id(store: &dyn Store, request_id: &str) -> ApiResult<Option<UsageRecord>> {
    let Some(marker) = store.get(&marker_key(request_id)).await? else { return Ok(None) };
    let (Some(pk), Some(sk)) = (marker.get("usage_pk").and_then(Attr::as_str), marker.get("usage_sk").and_then(Attr::as_str)) else {
        return Ok(None);
    };
    Ok(store.get(&Key::new(pk, sk)).await?.map(from_item).transpose()?)
}

/// Deletes every record of an owner (and its idempotency marker), then its rollups; returns
/// how many records.
pub async fn erase(store: &dyn Store, owner: &str) -> ApiResult<usize> {
    let mut erased = 0;
    loop {
        let page = store.query(crate::store::Query::new(Index::Primary, partition(owner)).limit(100)).await?;
        if page.items.is_empty() {
            // Pending records first, so none makes a rollup of this owner again afterwards.
            rollups::roll_up(store).await?;
            rollups::erase(store, owner).await?;
            owners::forget(store, owner).await?;
            return Ok(erased);
        }
        for item in page.items {
            let (Some(key), Some(request_id)) = (Key::of(&item), item.get("request_id").and_then(Attr::as_str)) else { continue };
            store.transact(vec![TxOp::Delete { key, cond: None }, TxOp::Delete { key: marker_key(request_id), cond: None }]).await?;
            erased += 1;
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct LogFilter {
    pub api_key_id: Option<Uuid>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub provider_source: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// An owner's records, newest first, filtered and cursor-paginated.
pub async fn logs(
    store: &dyn Store,
    owner: &str,
    filter: &LogFilter,
    limit: usize,
    cursor: Option<String>,
    direction: Direction,
) -> ApiResult<(Vec<UsageRecord>, Pagination)> {
    let (lo, hi) = time_range(filter.from, filter.to)?;
    let text = |item: &Item, name: &str| item.get(name).and_then(Attr::as_str).map(str::to_string);
    let keep = |item: &Item| {
        filter.api_key_id.is_none_or(|id| text(item, "api_key_id") == Some(id.to_string()))
            && filter.model.as_ref().is_none_or(|m| text(item, "model").as_ref() == Some(m))
            && filter.provider.as_ref().is_none_or(|p| text(item, "provider").as_ref() == Some(p))
            && filter.provider_source.as_ref().is_none_or(|p| text(item, "provider_source").as_ref() == Some(p))
    };
    let sk = Some(SkCond::Between(lo, hi));
    let (items, pagination) = pagination::page(store, Index::Primary, &partition(owner), sk, limit, cursor, direction, keep).await?;
    Ok((items.into_iter().map(from_item).collect::<Result<_, _>>()?, pagination))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::to_item;

    #[test]
    fn a_record_is_written_with_a_marker_that_points_at_it() {
        let at: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        let lease = lease_record("user#u1", Uuid::nil(), "gpt", "chat", Some(at));
        let ops = record_ops(&Arc::new(lost("req-1", &lease, at).expect("a record"))).unwrap();
        let [TxOp::PutEntity { put: marker, cond: Some(Cond::NotExists) }, TxOp::PutEntity { put: record, cond: None }, _] = &ops[..] else {
            panic!("the marker (once only), the record, its pending item: {ops:?}")
        };
        let item = marker.item().unwrap();
        let s = |v: &str| Some(Attr::S(v.to_string()));
        assert_eq!((item.get("PK").cloned(), item.get("SK").cloned()), (s("REQ#req-1"), s("USAGE")));
        assert_eq!((item.get("usage_pk").cloned(), item.get("usage_sk").cloned()), (s(&record.key.pk), s(&record.key.sk)));
        assert_eq!(item.get(crate::store::TTL), Some(&Attr::N(at.timestamp())));
        assert_eq!(item.len(), 5, "{item:?}");
    }

    #[test]
    fn a_record_keeps_only_what_it_holds_and_reads_back_whole() {
        let at = "2026-12-05T10:00:00Z".parse().unwrap();
        let lease = lease_record("user#u1", Uuid::nil(), "m", "chat", None);
        let mut record = lost("r1", &lease, at).expect("a record");
        (record.cancelled, record.error) = (false, None);
        let item = to_item(&record).unwrap();
        for absent in ["cache_write_tokens", "provider_cost_micros", "ttft_ms", "http_referer", "error", "org_id", "project_id"] {
            assert!(!item.contains_key(absent), "{absent} is at its default and left out");
        }
        // Earlier versions require these: they stay until every version reads them as optional.
        for kept in ["cached_tokens", "reasoning_tokens", "streamed", "cancelled"] {
            assert!(item.contains_key(kept), "{kept} is kept");
        }
        assert_eq!(from_item::<UsageRecord>(item).unwrap(), record);

        (record.cached_tokens, record.reasoning_tokens, record.ttft_ms, record.streamed, record.cancelled) = (3, 4, Some(5), true, true);
        (record.error, record.http_referer, record.provider_cost_micros) = (Some("cut".into()), Some("https://app.example".into()), Some(6));
        let item = to_item(&record).unwrap();
        for present in ["cached_tokens", "reasoning_tokens", "ttft_ms", "streamed", "cancelled", "error", "http_referer", "provider_cost_micros"] {
            assert!(item.contains_key(present), "{present} holds something and is kept");
        }
        assert_eq!(from_item::<UsageRecord>(item).unwrap(), record);
    }

    #[test]
    fn times_are_written_as_chronos_serde_writes_them() {
        let lease = lease_record("user#u1", Uuid::nil(), "m", "chat", None);
        for at in ["2026-12-05T10:00:00Z", "2026-12-05T10:00:00.120Z", "2026-12-05T10:00:00.123456Z", "2026-12-05T10:00:00.000000001Z", "1970-01-01T00:00:00Z"]
        {
            let at: DateTime<Utc> = at.parse().unwrap();
            let mut record = lost("r1", &lease, at).expect("a record");
            record.expires_at = Some(at);
            let item = to_item(&record).unwrap();
            let chrono = serde_json::to_value(at).unwrap();
            assert_eq!(item["recorded_at"], Attr::S(chrono.as_str().unwrap().to_string()), "{at:?}");
            assert_eq!(item["expires_at"], item["recorded_at"]);
            record.expires_at = None;
            assert_eq!(to_item(&record).unwrap()["expires_at"], Attr::Null);
        }
    }
}
