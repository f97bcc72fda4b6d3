//! The single-table store: exactly the DynamoDB operations the domain needs, behind one trait
//! with two implementations (DynamoDB and an embedded redb file). `docs/data-model.md` lists
//! every item type kept here. The conformance suite in `tests/store_conformance.rs` holds both
//! implementations to the same semantics.

mod attr_ser;
mod dynamo;
mod embedded;
mod entity;
mod item;

use std::collections::BTreeMap;

use async_trait::async_trait;
use base64::Engine;
use serde::{Deserialize, Serialize};

pub use dynamo::DynamoStore;
pub use embedded::EmbeddedStore;
pub use entity::{Encoded, Entity, EntityPut};
pub use item::{attr_of, from_attr, from_item, keyed_item, set_index, to_item};

pub const PK: &str = "PK";
pub const SK: &str = "SK";
/// Items with this numeric attribute (epoch seconds) expire at that instant: reads and
/// `NotExists` conditions treat them as absent, whenever the backend removes them physically.
pub const TTL: &str = "ttl";

/// One attribute value, mirroring the DynamoDB types we use. Numbers are integers on purpose:
/// money is kept in micro-dollars, never as floats.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Attr {
    S(String),
    N(i64),
    Bool(bool),
    Null,
    L(Vec<Attr>),
    M(BTreeMap<String, Attr>),
}

impl Attr {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Attr::S(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Attr::N(n) => Some(*n),
            _ => None,
        }
    }
}

impl From<&str> for Attr {
    fn from(s: &str) -> Self {
        Attr::S(s.to_string())
    }
}
impl From<String> for Attr {
    fn from(s: String) -> Self {
        Attr::S(s)
    }
}
impl From<i64> for Attr {
    fn from(n: i64) -> Self {
        Attr::N(n)
    }
}
impl From<bool> for Attr {
    fn from(b: bool) -> Self {
        Attr::Bool(b)
    }
}

pub type Item = BTreeMap<String, Attr>;

/// The attributes of `item` whose names start with `prefix`, found in the item's order rather
/// than by reading every attribute: a counters item carries a lease for each request in flight,
/// and a limit's counters are a handful among them.
pub fn prefixed<'a>(item: &'a Item, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a Attr)> + 'a {
    item.range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded)).take_while(move |(name, _)| name.starts_with(prefix))
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self { pk: pk.into(), sk: sk.into() }
    }
    pub fn of(item: &Item) -> Option<Key> {
        Some(Key::new(item.get(PK)?.as_str()?, item.get(SK)?.as_str()?))
    }
}

/// A condition on the item as it stands before a write (DynamoDB's ConditionExpression).
/// Comparisons against a missing attribute are false, as in DynamoDB.
#[derive(Clone, Debug)]
pub enum Cond {
    /// The item exists and has not expired.
    Exists,
    /// The item is absent or has expired.
    NotExists,
    AttrExists(String),
    AttrNotExists(String),
    Eq(String, Attr),
    Ne(String, Attr),
    Lt(String, i64),
    Le(String, i64),
    Gt(String, i64),
    Ge(String, i64),
    /// The attribute is absent, or a number at most this: a counter that may not pass a limit.
    /// `Or(AttrNotExists, Le)` in one condition, without the list and the name's second copy
    /// (a request checks one per limit).
    AbsentOrAtMost(String, i64),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

impl Cond {
    pub fn eq(name: &str, value: impl Into<Attr>) -> Self {
        Cond::Eq(name.to_string(), value.into())
    }
}

/// An update: SET, atomic ADD to numbers (missing counts as 0) and REMOVE. Like DynamoDB's
/// UpdateItem it creates the item when absent unless a condition says otherwise.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Update {
    pub set: Vec<(String, Attr)>,
    /// Set only where the attribute is absent (DynamoDB's `SET a = if_not_exists(a, :v)`):
    /// writes that must happen once, inside a transaction where a failed condition would
    /// cancel everything else.
    pub set_if_absent: Vec<(String, Attr)>,
    pub add: Vec<(String, i64)>,
    pub remove: Vec<String>,
}

impl Update {
    pub fn set(mut self, name: &str, value: impl Into<Attr>) -> Self {
        self.set.push((name.to_string(), value.into()));
        self
    }
    pub fn set_if_absent(mut self, name: &str, value: impl Into<Attr>) -> Self {
        self.set_if_absent.push((name.to_string(), value.into()));
        self
    }
    pub fn add(mut self, name: &str, delta: i64) -> Self {
        self.add.push((name.to_string(), delta));
        self
    }
    pub fn remove(mut self, name: &str) -> Self {
        self.remove.push(name.to_string());
        self
    }
}

/// Which key a query walks: the table's own, or one of the two global secondary indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Index {
    Primary,
    Gsi1,
    Gsi2,
}

impl Index {
    pub fn key_names(self) -> (&'static str, &'static str) {
        match self {
            Index::Primary => (PK, SK),
            Index::Gsi1 => ("GSI1PK", "GSI1SK"),
            Index::Gsi2 => ("GSI2PK", "GSI2SK"),
        }
    }
    pub fn name(self) -> Option<&'static str> {
        match self {
            Index::Primary => None,
            Index::Gsi1 => Some("GSI1"),
            Index::Gsi2 => Some("GSI2"),
        }
    }
}

#[derive(Clone, Debug)]
pub enum SkCond {
    Prefix(String),
    /// Inclusive on both ends, as DynamoDB's BETWEEN.
    Between(String, String),
}

#[derive(Clone, Debug)]
pub struct Query {
    pub index: Index,
    pub pk: String,
    pub sk: Option<SkCond>,
    /// Ascending sort-key order when true.
    pub forward: bool,
    pub limit: usize,
    /// A cursor from a previous page of the same query.
    pub cursor: Option<String>,
}

impl Query {
    pub fn new(index: Index, pk: impl Into<String>) -> Self {
        Self { index, pk: pk.into(), sk: None, forward: true, limit: 100, cursor: None }
    }
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.sk = Some(SkCond::Prefix(prefix.into()));
        self
    }
    pub fn between(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.sk = Some(SkCond::Between(from.into(), to.into()));
        self
    }
    pub fn backward(mut self) -> Self {
        self.forward = false;
        self
    }
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }
    pub fn cursor(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }
}

#[derive(Debug)]
pub struct Page {
    pub items: Vec<Item>,
    /// Present exactly when more items follow; pass it back to get them.
    pub cursor: Option<String>,
}

/// One operation of a transaction. `PutEntity` puts an entity whole, made an item only by the
/// backends that store items (see `entity`).
#[derive(Clone, Debug)]
pub enum TxOp {
    Put { item: Item, cond: Option<Cond> },
    PutEntity { put: EntityPut, cond: Option<Cond> },
    Update { key: Key, update: Update, cond: Option<Cond> },
    Delete { key: Key, cond: Option<Cond> },
    Check { key: Key, cond: Cond },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the condition on the write did not hold")]
    ConditionFailed,
    /// Nothing in the transaction was written; `index` is the first operation whose condition
    /// failed.
    #[error("transaction cancelled: the condition of operation {index} did not hold")]
    TransactionCancelled { index: usize },
    #[error("the pagination cursor is malformed")]
    InvalidCursor,
    #[error("store backend error: {0}")]
    Backend(String),
    /// The embedded store failed to write to its disk since the machine started, and does not
    /// open again until it restarts (`embedded::failed` says why).
    #[error("{0}")]
    DiskFailed(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>>;
    async fn put(&self, item: Item, cond: Option<Cond>) -> StoreResult<()>;
    /// Applies the update atomically and returns the item as it is afterwards.
    async fn update(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<Item>;
    /// `update`, equally atomic and at once visible to every later operation, but which the
    /// store may make durable with its next durable write instead of syncing for it alone.
    /// For limit reservations: a crash can only lose the reservations of requests that were
    /// in flight with it, which then recorded nothing either. DynamoDB makes every write
    /// durable; the embedded store skips this write's own fsync.
    /// The item comes back shared: the embedded store hands out its own copy rather than a
    /// clone of a counters item that carries every lease in flight.
    async fn update_buffered(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<std::sync::Arc<Item>> {
        self.update(key, update, cond).await.map(std::sync::Arc::new)
    }
    async fn delete(&self, key: &Key, cond: Option<Cond>) -> StoreResult<()>;
    async fn query(&self, query: Query) -> StoreResult<Page>;
    /// All or nothing. At most 100 operations (DynamoDB's limit, which the embedded store
    /// keeps too), no two on the same item.
    async fn transact(&self, ops: Vec<TxOp>) -> StoreResult<()>;
    /// `transact`, made durable by the store's next durable write or periodic flush rather
    /// than synced alone (see `update_buffered`). Only for the embedded store's opt-in
    /// relaxed durability; DynamoDB makes every write durable.
    async fn transact_buffered(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        self.transact(ops).await
    }
}

/// The page a backend found: `found` holds up to one item more than `limit`, which, when
/// present, says there is more and the cursor continues after the last item kept.
pub(crate) fn page_of(mut found: Vec<Item>, limit: usize, index: Index) -> Page {
    let cursor = if found.len() > limit {
        found.truncate(limit);
        found.last().map(|last| cursor_of(last, index))
    } else {
        None
    };
    Page { items: found, cursor }
}

/// Which of `shards` partitions a write goes to, by a stable hash of `text` (a request id, a
/// key): hot partitions are spread over several, the same text always lands in the same one.
pub fn shard_of(text: &str, shards: u64) -> u64 {
    text.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))) % shards
}

/// A time as a sort key: sort keys must order as times do, so a fixed-width UTC format
/// (`2026-12-05T05:06:55.760958Z`). chrono's RFC 3339 writer makes it without interpreting a
/// format string, which `format` does on every call.
pub fn time_key(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Every item a query matches, following cursors page by page.
pub async fn query_all(store: &dyn Store, query: Query) -> StoreResult<Vec<Item>> {
    let mut items = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.query(query.clone().cursor(cursor)).await?;
        items.extend(page.items);
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(items),
        }
    }
}

pub(crate) fn now_epoch() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(crate) fn is_expired(item: &Item, now: i64) -> bool {
    matches!(item.get(TTL), Some(Attr::N(t)) if *t <= now)
}

/// A cursor that continues a query of `index` just after `item`: it names the item by its
/// keys (table and index), the same way on both backends.
pub fn cursor_of(item: &Item, index: Index) -> String {
    let (ipk, isk) = index.key_names();
    let mut keys = BTreeMap::new();
    for name in [PK, SK, ipk, isk] {
        if let Some(Attr::S(v)) = item.get(name) {
            keys.insert(name.to_string(), v.clone());
        }
    }
    let json = serde_json::to_vec(&keys).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

pub(crate) fn decode_cursor(cursor: &str, index: Index) -> StoreResult<BTreeMap<String, String>> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| StoreError::InvalidCursor)?;
    let keys: BTreeMap<String, String> = serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidCursor)?;
    let (ipk, isk) = index.key_names();
    for name in [PK, SK, ipk, isk] {
        if !keys.contains_key(name) {
            return Err(StoreError::InvalidCursor);
        }
    }
    Ok(keys)
}

/// Evaluates a condition against the item as it stands (`None` when absent or expired). The
/// embedded store uses it directly; the DynamoDB store renders the same tree as an expression.
pub(crate) fn holds(cond: &Cond, item: Option<&Item>) -> bool {
    let attr = |name: &str| item.and_then(|i| i.get(name));
    let num = |name: &str| attr(name).and_then(Attr::as_i64);
    match cond {
        Cond::Exists => item.is_some(),
        Cond::NotExists => item.is_none(),
        Cond::AttrExists(n) => attr(n).is_some(),
        Cond::AttrNotExists(n) => attr(n).is_none(),
        Cond::Eq(n, v) => attr(n) == Some(v),
        Cond::Ne(n, v) => attr(n).is_some_and(|a| a != v),
        Cond::Lt(n, v) => num(n).is_some_and(|a| a < *v),
        Cond::Le(n, v) => num(n).is_some_and(|a| a <= *v),
        Cond::Gt(n, v) => num(n).is_some_and(|a| a > *v),
        Cond::Ge(n, v) => num(n).is_some_and(|a| a >= *v),
        Cond::AbsentOrAtMost(n, v) => attr(n).is_none_or(|a| a.as_i64().is_some_and(|a| a <= *v)),
        Cond::And(cs) => cs.iter().all(|c| holds(c, item)),
        Cond::Or(cs) => cs.iter().any(|c| holds(c, item)),
    }
}

/// Applies an update to an item (or to a new one holding only the key).
pub(crate) fn apply_update(key: &Key, current: Option<Item>, update: &Update) -> StoreResult<Item> {
    let added = added_values(current.as_ref(), update)?;
    Ok(apply_checked(key, current, update, added))
}

/// What each attribute an update ADDs to comes to on `item`, or why the update cannot apply
/// (an ADD to a value that is not a number, or past i64): checked before anything changes, so
/// a store can apply a transaction's updates in place once all of them are known to apply.
/// Each attribute is named by where in `update.add` it last appears, not by a copy of its name:
/// most are already on the item, which then needs no new name either.
pub(crate) fn added_values(item: Option<&Item>, update: &Update) -> StoreResult<Vec<(usize, i64)>> {
    let mut added: Vec<(usize, i64)> = Vec::with_capacity(update.add.len());
    for (at, (name, delta)) in update.add.iter().enumerate() {
        let current = match added.iter().position(|&(i, _)| update.add[i].0 == *name) {
            Some(i) => Some(Attr::N(added.swap_remove(i).1)),
            // As `apply_checked` leaves it before its ADDs: SET wins, then what is there, then
            // SET if absent.
            None => update
                .set
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .or_else(|| item.and_then(|i| i.get(name)).cloned())
                .or_else(|| update.set_if_absent.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())),
        };
        let current = match current {
            None => 0,
            Some(Attr::N(n)) => n,
            Some(_) => return Err(StoreError::Backend(format!("ADD to non-numeric attribute {name}"))),
        };
        let next = current.checked_add(*delta).ok_or_else(|| StoreError::Backend(format!("counter {name} overflowed")))?;
        added.push((at, next));
    }
    Ok(added)
}

/// Applies an update whose ADDs `added_values` has worked out.
pub(crate) fn apply_checked(key: &Key, current: Option<Item>, update: &Update, added: Vec<(usize, i64)>) -> Item {
    let mut item = current.unwrap_or_else(|| {
        let mut i = Item::new();
        i.insert(PK.into(), Attr::S(key.pk.clone()));
        i.insert(SK.into(), Attr::S(key.sk.clone()));
        i
    });
    for (name, value) in &update.set {
        put_attr(&mut item, name, value.clone());
    }
    for (name, value) in &update.set_if_absent {
        item.entry(name.clone()).or_insert_with(|| value.clone());
    }
    for (at, value) in added {
        put_attr(&mut item, &update.add[at].0, Attr::N(value));
    }
    for name in &update.remove {
        item.remove(name);
    }
    item
}

/// Sets `name` on `item`, copying the name only when the item lacks it (most updates change
/// attributes already there).
fn put_attr(item: &mut Item, name: &str, value: Attr) {
    match item.get_mut(name) {
        Some(current) => *current = value,
        None => {
            item.insert(name.to_string(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_add_after_their_sets_and_refuse_before_changing_anything() {
        let key = Key::new("P", "S");
        let item = Item::from([("n".to_string(), Attr::N(5)), ("s".to_string(), Attr::S("x".into())), ("kept".to_string(), Attr::N(1))]);
        let update = Update::default()
            .add("n", 2)
            .add("n", 3)
            .set("m", 10)
            .add("m", 1)
            .set_if_absent("n", 100)
            .set_if_absent("fresh", 7)
            .add("fresh", 1)
            .add("zero", -4)
            .remove("kept");
        let after = apply_update(&key, Some(item.clone()), &update).unwrap();
        let n = |name: &str| after.get(name).and_then(Attr::as_i64);
        assert_eq!((n("n"), n("m"), n("fresh"), n("zero"), n("kept")), (Some(10), Some(11), Some(8), Some(-4), None));
        assert!(added_values(Some(&item), &Update::default().add("n", 1).add("s", 1)).is_err(), "an ADD to a string");
        assert!(added_values(Some(&item), &Update::default().add("n", i64::MAX)).is_err(), "past i64");
        let fresh = apply_update(&key, None, &Update::default().add("c", 1)).unwrap();
        assert_eq!(fresh, Item::from([("PK".to_string(), Attr::S("P".into())), ("SK".to_string(), Attr::S("S".into())), ("c".to_string(), Attr::N(1))]));
    }

    #[test]
    fn time_keys_are_fixed_width_and_order_as_times_do() {
        let times = ["2026-01-02T03:04:05Z", "2026-01-02T03:04:05.000001Z", "2026-12-31T23:59:59.999999999Z"];
        let keys: Vec<String> = times.iter().map(|t| super::time_key(t.parse().unwrap())).collect();
        assert_eq!(keys, ["2026-01-02T03:04:05.000000Z", "2026-01-02T03:04:05.000001Z", "2026-12-31T23:59:59.999999Z"]);
        for (t, key) in times.iter().zip(&keys) {
            let at: chrono::DateTime<chrono::Utc> = t.parse().unwrap();
            assert_eq!(*key, at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(), "the same keys as before");
        }
    }

    #[test]
    fn prefixed_finds_exactly_the_names_that_start_so() {
        let names = ["lease_a", "lease_b", "u_b_1", "u_b_2", "u_b", "u_bb_1", "u_a_9", "PK", "u_b_"];
        let item: Item = names.iter().map(|n| (n.to_string(), Attr::N(1))).collect();
        let found = |p: &str| prefixed(&item, p).map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(found("u_b_"), ["u_b_", "u_b_1", "u_b_2"]);
        assert_eq!(found("lease_"), ["lease_a", "lease_b"]);
        assert!(found("u_c_").is_empty());
        assert_eq!(found("").len(), names.len());
    }
}
