//! The embedded store: one redb file on local disk, with the DynamoDB semantics the store
//! conformance suite pins. Writes go through an in-memory overlay made durable by two threads,
//! through a write-ahead log and then redb (see `writes`, `wal`, `commit`); reads see the overlay first,
//! then redb. Each GSI is a table of (index pk, index sk, pk, sk) keys kept in step with the
//! items in the same commit.

mod appender;
mod codec;
mod codec_ser;
mod commit;
mod disk;
mod failed;
mod query;
#[cfg(test)]
mod reads_tests;
mod tables;
#[cfg(test)]
mod tables_tests;
#[cfg(test)]
mod tests;
mod wal;
mod writes;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};

use super::{Cond, Index, Item, Key, Page, Query, SkCond, Store, StoreError, StoreResult, TxOp, Update, decode_cursor, is_expired, now_epoch};
pub(super) use codec_ser::encode_entity;
use writes::{TxOutcome, Writes};

const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("items");
const GSI1: TableDefinition<(&str, &str, &str, &str), ()> = TableDefinition::new("gsi1");
const GSI2: TableDefinition<(&str, &str, &str, &str), ()> = TableDefinition::new("gsi2");

/// The shared table of index `index`'s entries (`Gsi1` or `Gsi2`).
fn shared_index(index: Index) -> TableDefinition<'static, (&'static str, &'static str, &'static str, &'static str), ()> {
    if index == Index::Gsi1 { GSI1 } else { GSI2 }
}
/// Bookkeeping: which transaction redb holds up to (`commit::APPLIED`).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// redb's page cache. The hot items (keys, counters, models) fit many times over; what grows is
/// the usage records, which are written once and rarely read. With redb's default of 1 GiB the
/// cache grew by a page per recorded request until full, and the kernel zeroing those fresh
/// pages cost ~10% of a proxied request's CPU (measured with `scripts/bench`).
const CACHE_BYTES: usize = 64 << 20;
/// Above every character we put in keys, to close prefix ranges.
const HIGH: &str = "\u{10FFFF}";

#[derive(Clone)]
pub struct EmbeddedStore {
    writes: Arc<Writes>,
    _writer: Arc<Writer>,
}

/// The logger and committer threads. Dropped with the last store handle: the committer commits
/// what is pending, both end, and the files are closed when this returns.
struct Writer {
    writes: Arc<Writes>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.writes.close();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Makes the store's tables in `db` where they are missing, so that reads find them before
/// any commit; returns the last transaction redb holds.
fn prepare(db: &Database) -> StoreResult<u64> {
    let txn = db.begin_write().map_err(backend)?;
    txn.open_table(ITEMS).map_err(backend)?;
    txn.open_table(GSI1).map_err(backend)?;
    txn.open_table(GSI2).map_err(backend)?;
    let durable = txn.open_table(META).map_err(backend)?.get(commit::APPLIED).map_err(backend)?.map_or(0, |v| v.value());
    txn.commit().map_err(backend)?;
    Ok(durable)
}

fn backend<E: std::fmt::Display>(err: E) -> StoreError {
    StoreError::Backend(err.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the store file and its write-ahead log (`<file>.wal-0`, `-1`), creating their
    /// folder as needed, and first replays into redb whatever the log holds that redb does not.
    pub fn open(path: &Path) -> StoreResult<Self> {
        Self::open_with(path, writes::FLUSH_EVERY)
    }

    fn open_with(path: &Path, flush_every: std::time::Duration) -> StoreResult<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(backend)?;
        }
        let marker = failed::marker(path);
        failed::check(&marker)?;
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(backend)?;
        let disk = Arc::new(disk::Disk::default());
        let file = disk::SlicedFile::new(file, disk.clone()).map_err(backend)?;
        let db = Database::builder().set_cache_size(CACHE_BYTES).create_with_backend(file).map_err(backend)?;
        let durable = prepare(&db)?;
        let mut homes = tables::Homes::load(&db)?;
        let mut log_base = path.as_os_str().to_owned();
        log_base.push(".wal");
        let (wal, replay) = wal::Wal::open(Path::new(&log_base), durable)?;
        let durable = if replay.is_empty() { durable } else { commit::replay(&db, &mut homes, replay)? };
        let writes = Arc::new(Writes::new(Arc::new(db), disk, durable, flush_every, marker));
        let (logger, committer) = (writes.clone(), writes.clone());
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| std::thread::Builder::new().name(name.into()).spawn(run).map_err(backend);
        let threads = vec![
            spawn("tollgate-store-log", Box::new(move || logger.run_log(wal)))?,
            spawn("tollgate-store-commit", Box::new(move || committer.run_commit(homes)))?,
        ];
        Ok(Self { writes: writes.clone(), _writer: Arc::new(Writer { writes, threads }) })
    }

    /// Applies `ops`; with `returning`, the outcome carries the item the last one wrote.
    async fn write(&self, ops: Vec<TxOp>, durable: bool, returning: bool) -> StoreResult<TxOutcome> {
        self.writes.transact(ops, durable, returning).await
    }

    async fn transact_with(&self, ops: Vec<TxOp>, durable: bool) -> StoreResult<()> {
        if ops.len() > 100 {
            return Err(StoreError::Backend("a transaction holds at most 100 operations".into()));
        }
        match self.write(ops, durable, false).await? {
            Ok(_) => Ok(()),
            Err(index) => Err(StoreError::TransactionCancelled { index }),
        }
    }

    async fn blocking<T: Send + 'static>(&self, work: impl FnOnce(&Database) -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
        let writes = self.writes.clone();
        tokio::task::spawn_blocking(move || work(&writes.db)).await.map_err(backend)?
    }
}

fn raw_get(table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>, key: &Key) -> StoreResult<Option<Item>> {
    match table.get((key.pk.as_str(), key.sk.as_str())).map_err(backend)? {
        Some(guard) => Ok(Some(codec::decode(key, guard.value())?)),
        None => Ok(None),
    }
}

fn live(item: Option<Item>, now: i64) -> Option<Item> {
    item.filter(|i| !is_expired(i, now))
}

fn index_key(item: &Item, index: Index) -> Option<(String, String)> {
    index_entry(item, index).map(|(pk, sk)| (pk.to_string(), sk.to_string()))
}

/// Where `item` is filed in `index`, borrowed.
fn index_entry(item: &Item, index: Index) -> Option<(&str, &str)> {
    let (ipk, isk) = index.key_names();
    Some((item.get(ipk)?.as_str()?, item.get(isk)?.as_str()?))
}

fn single(result: StoreResult<TxOutcome>) -> StoreResult<Arc<Item>> {
    match result? {
        Ok(item) => Ok(item.unwrap_or_default()),
        Err(_) => Err(StoreError::ConditionFailed),
    }
}

/// Where an item sorts in a query of `index`: by the index's sort key, then the table keys
/// (for the primary index the first and last are both the SK).
fn position(item: &Item, index: Index) -> (String, String, String) {
    let text = |name: &str| item.get(name).and_then(super::Attr::as_str).unwrap_or_default().to_string();
    (text(index.key_names().1), text(super::PK), text(super::SK))
}

/// What the overlay holds for one query: the keys it decides, and those of its live items that
/// the query matches; and redb's items as they were then, for the rest.
struct Overlaid {
    keys: BTreeSet<Key>,
    matching: Vec<Item>,
    redb: tables::Reader,
}

impl EmbeddedStore {
    fn overlaid(&self, q: &Query, lo: &str, hi: &str, after: Option<&(String, String, String)>) -> StoreResult<Overlaid> {
        let now = now_epoch();
        let (ipk, isk) = q.index.key_names();
        let mut keys = BTreeSet::new();
        let mut candidates = Vec::new();
        let redb = {
            let overlay = self.writes.overlay();
            // In redb a primary query meets only items of its partition and range, so only those
            // of the overlay's keys can decide anything. Taking them all, under the lock, was ~3%
            // of a proxied request's CPU at 16 connections (`perf record`): the rollup consumer
            // queries its partition at every pass, with a commit's worth of other items pending.
            // (The overlay is hashed, so they are picked out by a pass over it, which copies
            // nothing it passes over.) An index can point at any item.
            let primary = q.index == Index::Primary;
            let decided = overlay.dirty.iter().filter(|(key, _)| !primary || (key.pk == q.pk && key.sk.as_str() >= lo && key.sk.as_str() <= hi));
            for (key, pending) in decided {
                keys.insert(key.clone());
                if pending.version.may_be_under(q.index, &q.pk) {
                    candidates.push((key.clone(), pending.version.read()));
                }
            }
            // redb read as of this moment, under the same lock: every key a commit changes stays
            // in the overlay until redb holds it, so together the two are the store between two
            // transactions. Opened later, a commit in between could show one item of a
            // transaction from redb beside another's older version taken from the overlay.
            tables::Reader::new(&self.writes.db)?
        };
        // Decoded, where a put is kept encoded, after the lock is released.
        let mut matching = Vec::new();
        for (key, read) in candidates {
            let Some(item) = read.item(&key)? else { continue };
            if is_expired(&item, now)
                || item.get(ipk).and_then(super::Attr::as_str) != Some(q.pk.as_str())
                || item.get(isk).and_then(super::Attr::as_str).is_none()
            {
                continue;
            }
            let at = position(&item, q.index);
            if at.0.as_str() >= lo && at.0.as_str() <= hi && after.is_none_or(|c| if q.forward { at > *c } else { at < *c }) {
                matching.push(item);
            }
        }
        Ok(Overlaid { keys, matching, redb })
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        let pending = self.writes.overlay().dirty.get(key).map(|p| p.version.read());
        if let Some(read) = pending {
            return Ok(live(read.item(key)?, now_epoch()));
        }
        let key = key.clone();
        self.blocking(move |db| Ok(live(tables::Reader::new(db)?.get(&key)?, now_epoch()))).await
    }

    async fn put(&self, item: Item, cond: Option<Cond>) -> StoreResult<()> {
        single(self.write(vec![TxOp::Put { item, cond }], true, false).await).map(|_| ())
    }

    async fn update(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<Item> {
        single(self.write(vec![TxOp::Update { key: key.clone(), update, cond }], true, true).await).map(Arc::unwrap_or_clone)
    }

    async fn update_buffered(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<std::sync::Arc<Item>> {
        single(self.write(vec![TxOp::Update { key: key.clone(), update, cond }], false, true).await)
    }

    async fn delete(&self, key: &Key, cond: Option<Cond>) -> StoreResult<()> {
        single(self.write(vec![TxOp::Delete { key: key.clone(), cond }], true, false).await).map(|_| ())
    }

    async fn query(&self, query: Query) -> StoreResult<Page> {
        let (lo, hi) = match &query.sk {
            None => (String::new(), HIGH.to_string()),
            Some(SkCond::Prefix(p)) => (p.clone(), [p.as_str(), HIGH].concat()),
            Some(SkCond::Between(a, b)) => (a.clone(), b.clone()),
        };
        let after = match query.cursor.as_deref() {
            Some(c) => {
                let c = decode_cursor(c, query.index)?;
                let (_, isk) = query.index.key_names();
                Some((c[isk].clone(), c[super::PK].clone(), c[super::SK].clone()))
            }
            None => None,
        };
        let overlaid = self.overlaid(&query, &lo, &hi, after.as_ref())?;
        tokio::task::spawn_blocking(move || query::query_sync(&query, &lo, &hi, after.as_ref(), overlaid)).await.map_err(backend)?
    }

    async fn transact(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        self.transact_with(ops, true).await
    }

    async fn transact_buffered(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        self.transact_with(ops, false).await
    }
}
