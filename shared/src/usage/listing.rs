//! The management family's record listing (`GET /api/usage`): the records of a set of owners
//! (whoever the caller may see), newest first, filtered through keys rather than in memory.
//!
//! Each record is reachable three ways, each a partition per owner, so no partition is shared
//! by all records (the old `USAGE` index partition took every record's write):
//! - its own item, `USAGE#<owner>` / `<time>#<request id>` (no filter);
//! - GSI1 `USAGEM#<owner>#<model>` / `<outcome>#<time>#<request id>` (model, with or without
//!   an outcome);
//! - GSI2 `USAGEO#<owner>#<outcome>` / `<time>#<request id>` (outcome alone).
//!
//! A page reads at most `offset + limit + 1` records from each source (an owner, and with a
//! model filter but no outcome, each outcome) and merges them by sort key. The cursor is the
//! last record's sort key: the next page reads below it, so a page costs the same however deep
//! it is. The offset, as the seed has it, reads the records it skips.

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use super::{Outcome, UsageRecord, partition, time_range};
use crate::error::{ApiError, ApiResult};
use crate::store::{Attr, Index, Item, Query, Store, from_item};

/// Sources read at once.
const CONCURRENCY: usize = 16;

#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub model: Option<String>,
    pub outcome: Option<Outcome>,
}

/// The index keys that file `record` by model and by outcome (see the module's comment).
pub fn index_keys(owner: &str, model: &str, outcome: Outcome, sk: &str) -> [(Index, String, String); 2] {
    let outcome = outcome.as_str();
    [
        (Index::Gsi1, ["USAGEM#", owner, "#", model].concat(), [outcome, "#", sk].concat()),
        (Index::Gsi2, ["USAGEO#", owner, "#", outcome].concat(), sk.to_string()),
    ]
}

/// One partition to read, its sort keys starting with `prefix`.
struct Source {
    index: Index,
    pk: String,
    prefix: String,
}

fn sources(owner: &str, filter: &Filter) -> Vec<Source> {
    match (&filter.model, filter.outcome) {
        (None, None) => vec![Source { index: Index::Primary, pk: partition(owner), prefix: String::new() }],
        (None, Some(outcome)) => vec![Source { index: Index::Gsi2, pk: format!("USAGEO#{owner}#{}", outcome.as_str()), prefix: String::new() }],
        (Some(model), outcome) => {
            let outcomes = outcome.map_or_else(|| Outcome::ALL.to_vec(), |o| vec![o]);
            outcomes.into_iter().map(|o| Source { index: Index::Gsi1, pk: format!("USAGEM#{owner}#{model}"), prefix: format!("{}#", o.as_str()) }).collect()
        }
    }
}

/// Where a page starts.
#[derive(Clone, Debug)]
pub enum Start {
    /// After skipping this many records from the newest.
    Offset(usize),
    /// Below a cursor of an earlier page, after skipping this many more.
    After(String, usize),
}

pub struct Page {
    pub records: Vec<UsageRecord>,
    pub has_more: bool,
    /// Where the next page starts, when there is one.
    pub next_cursor: Option<String>,
}

/// The record sort key a cursor stands for; a 400 naming `cursor` if it is not one of ours.
pub fn decode_cursor(cursor: &str) -> ApiResult<String> {
    use base64::Engine;
    let bad = || ApiError::invalid_param("cursor", "cursor is not one this API returned: pass next_cursor from a page as it is");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let sk = String::from_utf8(bytes).map_err(|_| bad())?;
    // A time key, `#`, a request id.
    let (time, _) = sk.split_once('#').ok_or_else(bad)?;
    DateTime::parse_from_rfc3339(time).map_err(|_| bad())?;
    Ok(sk)
}

fn encode_cursor(sk: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk)
}

/// A page of the records of `owners` matching `filter`, newest first.
pub async fn page(store: &dyn Store, owners: &[String], filter: &Filter, start: Start, limit: usize) -> ApiResult<Page> {
    let (lo, mut hi) = time_range(filter.from, filter.to)?;
    let (below, skip) = match start {
        Start::Offset(skip) => (None, skip),
        Start::After(sk, skip) => (Some(sk), skip),
    };
    let want = skip.saturating_add(limit).saturating_add(1);
    if let Some(below) = &below
        && *below < hi
    {
        hi = below.clone();
    }
    let all: Vec<Source> = owners.iter().flat_map(|owner| sources(owner, filter)).collect();
    let reads = futures::stream::iter(all.into_iter().map(|source| read(store, source, &lo, &hi, below.as_deref(), want)));
    let mut items: Vec<(String, Item)> = reads.buffer_unordered(CONCURRENCY).try_concat().await?;
    items.sort_unstable_by(|a, b| b.0.cmp(&a.0));
    let has_more = items.len() > skip + limit;
    let chosen: Vec<(String, Item)> = items.into_iter().skip(skip).take(limit).collect();
    let next_cursor = if has_more { chosen.last().map(|(sk, _)| encode_cursor(sk)) } else { None };
    let records = chosen.into_iter().map(|(_, item)| from_item(item)).collect::<Result<_, _>>()?;
    Ok(Page { records, has_more, next_cursor })
}

/// Up to `want` records of one source between `lo` and `hi` (record sort keys), strictly
/// below `below`, newest first, with their sort keys.
async fn read(store: &dyn Store, source: Source, lo: &str, hi: &str, below: Option<&str>, want: usize) -> ApiResult<Vec<(String, Item)>> {
    let query = Query::new(source.index, source.pk).between(format!("{}{lo}", source.prefix), format!("{}{hi}", source.prefix)).backward();
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.query(query.clone().limit(want - out.len()).cursor(cursor)).await?;
        for item in page.items {
            let Some(sk) = item.get("SK").and_then(Attr::as_str).map(str::to_string) else { continue };
            if below.is_none_or(|b| sk.as_str() < b) {
                out.push((sk, item));
            }
        }
        match page.cursor {
            Some(c) if out.len() < want => cursor = Some(c),
            _ => return Ok(out),
        }
    }
}
