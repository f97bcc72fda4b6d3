//! Usage rollups: per owner, UTC day and dimension (all, model, provider, pricing source, token), the
//! sums of the owner's usage records. Every usage view reads rollups: its cost depends on the
//! days and the dimension values asked for, never on how many records there are.
//!
//! Off the hot path, and exact. The transaction that writes a record also puts a small
//! pending item (`pending_op`: the record's owner, day, dimensions and sums); a consumer
//! (`roll_up`) adds pending items to their rollups and deletes them in one transaction, each
//! delete conditioned on the item still being there, so a record is added once however often
//! the consumer runs, retries or is replayed, and one the consumer has not reached yet waits
//! durably, across crashes and restarts. Locally the consumer (`roll_up`) runs every second in
//! process; on AWS the table's stream hands each new pending item to the usage group's
//! rollups function (`stream`), which adds it with the same `apply`, and a scheduled
//! `roll_up` there picks up whatever the stream could not deliver;
//! it merges a batch's additions per rollup, so a busy owner's rollups are written once per
//! batch, not once per request. On the proxy's path a record costs one more small put, in the
//! transaction it already makes.
//!
//! Items: rollups at `ROLLUP#<owner>` / `<dimension>#<YYYY-MM-DD>#<value>`, one partition per
//! owner; pending items at `ROLLUP_PENDING#<0-7>` / `<recorded at>#<request id>`, eight
//! partitions picked by request id, so no partition is shared by all of the gateway's traffic.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use serde::Serialize;

use super::UsageRecord;
use crate::error::ApiResult;
use crate::store::{Attr, Cond, EntityPut, Index, Item, Key, Query, Store, StoreError, TxOp, Update, query_all};

/// What a rollup is grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dimension {
    /// Everything of the day.
    All,
    Model,
    Provider,
    PricingSource,
    /// The API key (token) that made the request.
    Token,
}

pub const DIMENSIONS: [Dimension; 5] = [Dimension::All, Dimension::Model, Dimension::Provider, Dimension::PricingSource, Dimension::Token];

impl Dimension {
    fn tag(self) -> &'static str {
        match self {
            Dimension::All => "all",
            Dimension::Model => "model",
            Dimension::Provider => "provider",
            Dimension::PricingSource => "pricing",
            Dimension::Token => "token",
        }
    }
}

/// The sums a rollup keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub request_count: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micros: i64,
}

impl Totals {
    pub fn of(record: &UsageRecord) -> Totals {
        Totals { request_count: 1, input_tokens: record.input_tokens, output_tokens: record.output_tokens, cost_micros: record.cost_micros }
    }

    pub fn plus(self, other: Totals) -> Totals {
        Totals {
            request_count: self.request_count.saturating_add(other.request_count),
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
            cost_micros: self.cost_micros.saturating_add(other.cost_micros),
        }
    }

    fn from_item(item: &Item) -> Totals {
        let n = |name: &str| item.get(name).and_then(Attr::as_i64).unwrap_or(0);
        Totals { request_count: n("request_count"), input_tokens: n("input_tokens"), output_tokens: n("output_tokens"), cost_micros: n("cost_micros") }
    }
}

// Keys made for every record are joined with `concat` (`format!` costs several times a copy).
pub fn partition(owner: &str) -> String {
    ["ROLLUP#", owner].concat()
}

/// How many partitions pending items are spread over.
const PENDING_SHARDS: u64 = 8;
/// What every pending item's partition starts with (the stream's filter matches it).
pub const PENDING_PREFIX: &str = "ROLLUP_PENDING#";
/// The operations of one transaction (DynamoDB's limit, which the embedded store keeps).
const MAX_OPS: usize = 100;
/// Pending records read at a time: a batch is as many of them as fit one transaction with a
/// delete each and their rollups' updates (merged: 96 records of one owner and model need 5).
/// Fewer, fuller transactions made the consumer several times cheaper per record.
const READ: usize = 96;

fn pending_partition(shard: u64) -> String {
    const PARTITIONS: [&str; PENDING_SHARDS as usize] = [
        "ROLLUP_PENDING#0",
        "ROLLUP_PENDING#1",
        "ROLLUP_PENDING#2",
        "ROLLUP_PENDING#3",
        "ROLLUP_PENDING#4",
        "ROLLUP_PENDING#5",
        "ROLLUP_PENDING#6",
        "ROLLUP_PENDING#7",
    ];
    PARTITIONS[(shard % PENDING_SHARDS) as usize].to_string()
}

/// The pending item of `record` (`sk`: the record's own sort key, time first), for the
/// transaction that writes it.
pub fn pending_op(record: &UsageRecord, sk: &str) -> TxOp {
    let shard = crate::store::shard_of(&record.request_id, PENDING_SHARDS);
    let t = Totals::of(record);
    // One string, tab-separated: a pending item is written on every request, and one
    // attribute encodes several times faster than nine. (A model named by a caller could hold
    // a tab; it is counted under the name with a space there.) The key comes last, so that an
    // item written before it was kept still reads.
    fn clean(s: &str) -> Cow<'_, str> {
        if s.contains('\t') { Cow::Owned(s.replace('\t', " ")) } else { Cow::Borrowed(s) }
    }
    let mut uuid = uuid::Uuid::encode_buffer();
    let key = record.api_key_id.map_or("", |k| k.hyphenated().encode_lower(&mut uuid));
    // The record's day: its sort key starts with its time in RFC 3339, UTC.
    let day = match sk.get(..10) {
        Some(day) if sk.as_bytes().get(10) == Some(&b'T') => Cow::Borrowed(day),
        _ => Cow::Owned(record.recorded_at.date_naive().to_string()),
    };
    let mut numbers = [itoa::Buffer::new(), itoa::Buffer::new(), itoa::Buffer::new()];
    let [input, output, cost] = &mut numbers;
    let what = [
        record.owner.as_str(),
        "\t",
        &day,
        "\t",
        &clean(&record.model),
        "\t",
        &clean(&record.provider),
        "\t",
        &record.pricing_source,
        "\t",
        input.format(t.input_tokens),
        "\t",
        output.format(t.output_tokens),
        "\t",
        cost.format(t.cost_micros),
        "\t",
        key,
    ]
    .concat();
    // Put whole, as the record is (an item's names and map were more allocations than its value).
    let put = EntityPut::new(Key::new(pending_partition(shard), sk), Arc::new(Pending { r: what }));
    TxOp::PutEntity { put, cond: None }
}

/// A pending item's one attribute: what its record adds to the rollups (see `pending_op`).
#[derive(Serialize)]
struct Pending {
    r: String,
}

/// What a pending item adds to the rollups: its owner, its day, its value of each dimension
/// (in `DIMENSIONS`' order) and its sums, borrowed from the item.
struct Addition<'a> {
    owner: &'a str,
    day: &'a str,
    values: [&'a str; DIMENSIONS.len()],
    totals: Totals,
}

impl Addition<'_> {
    /// The rollup of `DIMENSIONS[dim]` this adds to.
    fn key(owner: &str, dim: usize, day: &str, value: &str) -> Key {
        Key::new(partition(owner), [DIMENSIONS[dim].tag(), "#", day, "#", value].concat())
    }
}

fn additions(pending: &Item) -> Option<Addition<'_>> {
    let mut parts = pending.get("r").and_then(Attr::as_str)?.split('\t');
    let [owner, day, model, provider, pricing] = [(); 5].map(|_| parts.next().unwrap_or_default());
    let mut n = || parts.next().and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let totals = Totals { request_count: 1, input_tokens: n(), output_tokens: n(), cost_micros: n() };
    let token = parts.next().unwrap_or_default();
    // A day names its rollups between two `#`s (`batch_ops` merges by it): one holding a `#`
    // is not one `pending_op` wrote.
    if owner.is_empty() || day.is_empty() || day.contains('#') {
        return None;
    }
    // In `DIMENSIONS`' order: all, model, provider, pricing source, token.
    Some(Addition { owner, day, values: ["", model, provider, pricing, token], totals })
}

/// One transaction adding `batch` (pending items) to their rollups, merged per rollup, and
/// deleting each while it is still there. Merged by what the pending items hold, borrowed:
/// a rollup's key is made once per batch, not five times per record.
fn batch_ops(batch: &[Item]) -> Vec<TxOp> {
    // (owner, dimension, day, value): each names one rollup (a day holds no `#`).
    let mut sums: BTreeMap<(&str, usize, &str, &str), Totals> = BTreeMap::new();
    let mut ops = Vec::with_capacity(batch.len() * 2);
    for pending in batch {
        let Some(key) = Key::of(pending) else { continue };
        ops.push(TxOp::Delete { key, cond: Some(Cond::Exists) });
        if let Some(add) = additions(pending) {
            for (dim, value) in add.values.into_iter().enumerate() {
                let sum = sums.entry((add.owner, dim, add.day, value)).or_default();
                *sum = sum.plus(add.totals);
            }
        }
    }
    ops.extend(sums.into_iter().map(|((owner, dim, day, value), t)| {
        let update = Update::default()
            .add("request_count", t.request_count)
            .add("input_tokens", t.input_tokens)
            .add("output_tokens", t.output_tokens)
            .add("cost_micros", t.cost_micros);
        TxOp::Update { key: Addition::key(owner, dim, day, value), update, cond: None }
    }));
    ops
}

/// Adds every pending record to its rollups; returns how many it added. A batch another
/// consumer got to first in part is done one record at a time, each once.
pub async fn roll_up(store: &dyn Store) -> ApiResult<usize> {
    // Bookkeeping, never an audited change, even when a request runs it inline (its batches fill
    // a transaction's 100 operations already).
    crate::audit::context::unaudited(roll_up_all(store)).await
}

async fn roll_up_all(store: &dyn Store) -> ApiResult<usize> {
    let mut added = 0;
    for shard in 0..PENDING_SHARDS {
        loop {
            let page = store.query(Query::new(Index::Primary, pending_partition(shard)).limit(READ)).await?;
            if page.items.is_empty() {
                break;
            }
            let (done, taken) = apply_some(store, &page.items).await?;
            added += done;
            if page.cursor.is_none() && taken == page.items.len() {
                break;
            }
        }
    }
    Ok(added)
}

/// When the oldest usage record still waiting for its rollups was made, if one waits: a
/// pending item's sort key starts with its record's time.
pub async fn oldest_pending(store: &dyn Store) -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
    let mut oldest = None;
    for shard in 0..PENDING_SHARDS {
        let page = store.query(Query::new(Index::Primary, pending_partition(shard)).limit(1)).await?;
        let at = page
            .items
            .first()
            .and_then(Key::of)
            .and_then(|key| chrono::DateTime::parse_from_rfc3339(key.sk.split('#').next()?).ok())
            .map(|at| at.with_timezone(&chrono::Utc));
        oldest = match (oldest, at) {
            (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
            (a, b) => a.or(b),
        };
    }
    Ok(oldest)
}

/// Adds `pending` items (as read, or as a stream delivered them) to their rollups and deletes
/// them, each at most once: an item already gone (added before, by this consumer or another,
/// or a replayed stream record) adds nothing. Returns how many it added.
pub async fn apply(store: &dyn Store, pending: &[Item]) -> ApiResult<usize> {
    let (mut added, mut at) = (0, 0);
    while at < pending.len() {
        let (done, taken) = apply_some(store, &pending[at..]).await?;
        added += done;
        at += taken;
    }
    Ok(added)
}

/// Applies as many of `pending` (from the first) as fit one transaction; returns how many it
/// added and how many it took.
async fn apply_some(store: &dyn Store, pending: &[Item]) -> ApiResult<(usize, usize)> {
    // Each record adds at most five updates: 16 always fit.
    let mut take = pending.len().min(READ);
    let mut ops = batch_ops(&pending[..take]);
    while ops.len() > MAX_OPS {
        take = (take * 2 / 3).max(1);
        ops = batch_ops(&pending[..take]);
    }
    let batch = &pending[..take];
    // Buffered: a batch a crash loses is lost whole, its pending items with it, and the next
    // pass adds them again.
    match store.transact_buffered(ops).await {
        Ok(()) => Ok((batch.len(), take)),
        Err(StoreError::TransactionCancelled { .. }) => {
            let mut added = 0;
            for one in batch {
                match store.transact(batch_ops(std::slice::from_ref(one))).await {
                    Ok(()) => added += 1,
                    Err(StoreError::TransactionCancelled { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok((added, take))
        }
        Err(e) => Err(e.into()),
    }
}

/// One rollup as read: its day, its dimension's value (empty for `All`), its sums.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub day: NaiveDate,
    pub value: String,
    pub totals: Totals,
}

/// An owner's rollups of `dim` for the days from `start` to `end` (both included; either
/// open), by day, then value.
pub async fn read(store: &dyn Store, owner: &str, dim: Dimension, start: Option<NaiveDate>, end: Option<NaiveDate>) -> ApiResult<Vec<Row>> {
    let tag = dim.tag();
    let lo = start.map_or_else(|| format!("{tag}#"), |d| format!("{tag}#{d}#"));
    // `$` sorts right after `#`: past every value of the end day, before the next day.
    let hi = end.map_or_else(|| format!("{tag}$"), |d| format!("{tag}#{d}$"));
    let items = query_all(store, Query::new(Index::Primary, partition(owner)).between(lo, hi)).await?;
    Ok(items.iter().filter_map(row_of).map(|(_, row)| row).collect())
}

/// A rollup item as its dimension's tag and its row.
fn row_of(item: &Item) -> Option<(String, Row)> {
    let sk = item.get("SK").and_then(Attr::as_str)?;
    let (dim, rest) = sk.split_once('#')?;
    let (day, value) = rest.split_once('#')?;
    Some((dim.to_string(), Row { day: day.parse().ok()?, value: value.to_string(), totals: Totals::from_item(item) }))
}

/// Every rollup of an owner, with its dimension's name (`all`, `model`, `provider`,
/// `pricing`, `token`), for the owner's data export.
pub async fn all_of(store: &dyn Store, owner: &str) -> ApiResult<Vec<(String, Row)>> {
    let items = query_all(store, Query::new(Index::Primary, partition(owner))).await?;
    Ok(items.iter().filter_map(row_of).collect())
}

/// Rows summed over their days, by value (the `by-model`, `by-provider`, ... views).
pub fn by_value(rows: &[Row]) -> BTreeMap<String, Totals> {
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    for row in rows {
        let sum = out.entry(row.value.clone()).or_default();
        *sum = sum.plus(row.totals);
    }
    out
}

/// Deletes every rollup of an owner; returns how many.
pub async fn erase(store: &dyn Store, owner: &str) -> ApiResult<usize> {
    let items = query_all(store, Query::new(Index::Primary, partition(owner))).await?;
    for item in &items {
        if let Some(key) = Key::of(item) {
            store.delete(&key, None).await?;
        }
    }
    Ok(items.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_partitions_are_the_prefix_and_the_shard() {
        for shard in 0..PENDING_SHARDS {
            assert_eq!(pending_partition(shard), format!("{PENDING_PREFIX}{shard}"));
        }
    }

    #[test]
    fn a_pending_item_adds_its_record_to_each_dimension_of_its_day() {
        let at = "2026-12-05T23:59:59.123456Z".parse().unwrap();
        let lease = crate::usage::lease_record("user#u1", uuid::Uuid::nil(), "gpt", "chat", None);
        let mut record = crate::usage::lost("r1", &lease, at).expect("a record");
        (record.model, record.provider, record.pricing_source) = ("gpt\tx".into(), "openai".into(), "catalog".into());
        (record.input_tokens, record.output_tokens, record.cost_micros) = (12, 5, 1_234);
        let sk = [crate::store::time_key(record.recorded_at).as_str(), "#r1"].concat();
        let TxOp::PutEntity { put, .. } = pending_op(&record, &sk) else { panic!("a put") };
        let item = put.item().expect("the pending item");
        let add = additions(&item).expect("additions");
        assert_eq!(add.totals, Totals { request_count: 1, input_tokens: 12, output_tokens: 5, cost_micros: 1_234 });
        let keys: Vec<Key> = add.values.iter().enumerate().map(|(dim, value)| Addition::key(add.owner, dim, add.day, value)).collect();
        let sks: Vec<&str> = keys.iter().map(|k| k.sk.as_str()).collect();
        assert_eq!(
            sks,
            [
                "all#2026-12-05#",
                "model#2026-12-05#gpt x",
                "provider#2026-12-05#openai",
                "pricing#2026-12-05#catalog",
                "token#2026-12-05#00000000-0000-0000-0000-000000000000"
            ]
        );
        assert!(keys.iter().all(|k| k.pk == "ROLLUP#user#u1"));
    }

    #[test]
    fn a_pending_item_whose_day_could_name_another_rollup_adds_nothing() {
        let item = |r: &str| Item::from([("r".to_string(), Attr::S(r.into()))]);
        assert!(additions(&item("user#u1\t2026-12-05\tgpt\topenai\tcatalog\t1\t2\t3\tk")).is_some());
        // `day#value` read as another day and value would merge two rollups into one key.
        assert!(additions(&item("user#u1\t2026#12\tgpt\topenai\tcatalog\t1\t2\t3\tk")).is_none());
        assert!(additions(&item("\t2026-12-05\tgpt")).is_none(), "no owner");
    }
}
