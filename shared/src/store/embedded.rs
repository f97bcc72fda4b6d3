//! The embedded store: one redb file on local disk. Every write goes to one writer thread,
//! which applies each transaction whole (all its conditions checked, then all its writes, or
//! none) in arrival order, and commits all that arrived together in one durable redb commit
//! (group commit): under concurrency, many requests share one fsync, while each transaction
//! keeps the all-or-nothing meaning it has in DynamoDB. Each GSI is a table of
//! (index pk, index sk, pk, sk) keys kept in step with the items in the same transaction.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition};

use super::{
    Cond, Index, Item, Key, Page, Query, SkCond, Store, StoreError, StoreResult, TxOp, Update, apply_update,
    decode_cursor, cursor_of, holds, is_expired, now_epoch,
};

const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("items");
const GSI1: TableDefinition<(&str, &str, &str, &str), ()> = TableDefinition::new("gsi1");
const GSI2: TableDefinition<(&str, &str, &str, &str), ()> = TableDefinition::new("gsi2");
/// Above every character we put in keys, to close prefix ranges.
const HIGH: &str = "\u{10FFFF}";

/// Transactions committed together at most.
const MAX_BATCH: usize = 256;
/// The longest a buffered commit waits to become durable.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: Arc<Writer>,
}

/// What one transaction came to: the last item it wrote, or the index of the operation whose
/// condition failed (and then nothing of it was written).
type TxOutcome = Result<Item, usize>;

struct Job {
    ops: Vec<TxOp>,
    /// Whether its commit must reach the disk before it is answered.
    durable: bool,
    reply: tokio::sync::oneshot::Sender<StoreResult<TxOutcome>>,
}

/// The writer thread and its queue. Dropped with the last store handle: the queue closes, the
/// thread finishes what it has and ends, and the file is closed when this returns.
struct Writer {
    queue: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn backend<E: std::fmt::Display>(err: E) -> StoreError {
    StoreError::Backend(err.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the store file, creating its folder as needed.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(backend)?;
        }
        let db = Database::create(path).map_err(backend)?;
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(ITEMS).map_err(backend)?;
        txn.open_table(GSI1).map_err(backend)?;
        txn.open_table(GSI2).map_err(backend)?;
        txn.commit().map_err(backend)?;
        let db = Arc::new(db);
        let (queue, jobs) = std::sync::mpsc::channel();
        let writer_db = db.clone();
        let thread = std::thread::Builder::new().name("tollgate-store-writer".into()).spawn(move || write_loop(&writer_db, &jobs)).map_err(backend)?;
        Ok(Self { db, writer: Arc::new(Writer { queue: Some(queue), thread: Some(thread) }) })
    }

    /// Queues a transaction for the writer and waits for its commit.
    async fn write(&self, ops: Vec<TxOp>) -> StoreResult<TxOutcome> {
        self.queue(ops, true).await
    }

    async fn transact_with(&self, ops: Vec<TxOp>, durable: bool) -> StoreResult<()> {
        if ops.len() > 100 {
            return Err(StoreError::Backend("a transaction holds at most 100 operations".into()));
        }
        match self.queue(ops, durable).await? {
            Ok(_) => Ok(()),
            Err(index) => Err(StoreError::TransactionCancelled { index }),
        }
    }

    async fn queue(&self, ops: Vec<TxOp>, durable: bool) -> StoreResult<TxOutcome> {
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let queue = self.writer.queue.as_ref().ok_or_else(|| StoreError::Backend("the store is closed".into()))?;
        queue.send(Job { ops, durable, reply }).map_err(|_| StoreError::Backend("the store's writer has stopped".into()))?;
        outcome.await.map_err(|_| StoreError::Backend("the store's writer dropped a write".into()))?
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db)).await.map_err(backend)?
    }
}

fn decode(bytes: &[u8]) -> StoreResult<Item> {
    serde_json::from_slice(bytes).map_err(backend)
}

fn raw_get(table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>, key: &Key) -> StoreResult<Option<Item>> {
    match table.get((key.pk.as_str(), key.sk.as_str())).map_err(backend)? {
        Some(guard) => Ok(Some(decode(guard.value())?)),
        None => Ok(None),
    }
}

fn live(item: Option<Item>, now: i64) -> Option<Item> {
    item.filter(|i| !is_expired(i, now))
}

fn index_key(item: &Item, index: Index) -> Option<(String, String)> {
    let (ipk, isk) = index.key_names();
    Some((item.get(ipk)?.as_str()?.to_string(), item.get(isk)?.as_str()?.to_string()))
}

/// The tables one write transaction works on.
struct Tables<'txn> {
    items: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    gsi1: Table<'txn, (&'static str, &'static str, &'static str, &'static str), ()>,
    gsi2: Table<'txn, (&'static str, &'static str, &'static str, &'static str), ()>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn redb::WriteTransaction) -> StoreResult<Self> {
        Ok(Self {
            items: txn.open_table(ITEMS).map_err(backend)?,
            gsi1: txn.open_table(GSI1).map_err(backend)?,
            gsi2: txn.open_table(GSI2).map_err(backend)?,
        })
    }

    fn get_raw(&self, key: &Key) -> StoreResult<Option<Item>> {
        raw_get(&self.items, key)
    }

    /// Replaces `old`, what is stored at `key` (expired or not), with `new`, keeping indexes
    /// in step.
    fn write(&mut self, key: &Key, old: Option<&Item>, new: Option<&Item>) -> StoreResult<()> {
        for (index, table) in [(Index::Gsi1, &mut self.gsi1), (Index::Gsi2, &mut self.gsi2)] {
            if let Some((gpk, gsk)) = old.and_then(|o| index_key(o, index)) {
                table.remove((gpk.as_str(), gsk.as_str(), key.pk.as_str(), key.sk.as_str())).map_err(backend)?;
            }
            if let Some((gpk, gsk)) = new.and_then(|n| index_key(n, index)) {
                table.insert((gpk.as_str(), gsk.as_str(), key.pk.as_str(), key.sk.as_str()), ()).map_err(backend)?;
            }
        }
        match new {
            Some(item) => {
                let bytes = serde_json::to_vec(item).map_err(backend)?;
                self.items.insert((key.pk.as_str(), key.sk.as_str()), bytes.as_slice()).map_err(backend)?;
            }
            None => {
                self.items.remove((key.pk.as_str(), key.sk.as_str())).map_err(backend)?;
            }
        }
        Ok(())
    }
}

fn check(cond: Option<&Cond>, current: Option<&Item>) -> bool {
    cond.is_none_or(|c| holds(c, current))
}

fn key_of(item: &Item) -> StoreResult<Key> {
    Key::of(item).ok_or_else(|| StoreError::Backend("item lacks a string PK and SK".into()))
}

fn write_loop(db: &Database, jobs: &std::sync::mpsc::Receiver<Job>) {
    // Whether buffered commits have happened since the last durable one.
    let mut unsynced = false;
    loop {
        let first = match jobs.recv_timeout(FLUSH_EVERY) {
            Ok(job) => job,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if unsynced && flush(db).is_ok() {
                    unsynced = false;
                }
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let _ = flush(db);
                return;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Buffered transactions commit (and are answered) first, without waiting for the
        // durable ones' fsync. Transactions queued together were concurrent, so any order
        // between them is one they could have had; each client's own writes keep theirs.
        let (durable, buffered): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(|job| job.durable);
        unsynced = (unsynced || !buffered.is_empty()) && durable.is_empty();
        for group in [buffered, durable] {
            if group.is_empty() {
                continue;
            }
            let outcomes = commit_batch(db, &group);
            for (job, outcome) in group.into_iter().zip(outcomes) {
                let _ = job.reply.send(outcome);
            }
        }
    }
}

/// An empty durable commit: makes every buffered commit before it durable.
fn flush(db: &Database) -> StoreResult<()> {
    db.begin_write().map_err(backend)?.commit().map_err(backend)
}

/// Applies every transaction of the batch in order, then commits once. A storage failure fails
/// the whole batch (nothing of it is written); a failed condition fails only its transaction.
fn commit_batch(db: &Database, batch: &[Job]) -> Vec<StoreResult<TxOutcome>> {
    let fail_all = |e: StoreError| batch.iter().map(|_| Err(StoreError::Backend(e.to_string()))).collect();
    let now = now_epoch();
    let mut txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => return fail_all(backend(e)),
    };
    // A durable commit also makes every earlier buffered one durable.
    if !batch.iter().any(|job| job.durable) {
        if let Err(e) = txn.set_durability(redb::Durability::None) {
            return fail_all(backend(e));
        }
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut tables = match Tables::open(&txn) {
            Ok(t) => t,
            Err(e) => return fail_all(e),
        };
        for job in batch {
            let outcome = match plan(&tables, &job.ops, now) {
                // Malformed, or a condition failed: nothing of this transaction is written.
                Err(e) => Err(e),
                Ok(Err(index)) => Ok(Err(index)),
                Ok(Ok(planned)) => match write_planned(&mut tables, &planned) {
                    Ok(last) => Ok(Ok(last)),
                    // A storage failure after writing began: dropping `txn` uncommitted
                    // discards the whole batch.
                    Err(fatal) => return fail_all(fatal),
                },
            };
            outcomes.push(outcome);
        }
    }
    match txn.commit() {
        Ok(()) => outcomes,
        Err(e) => fail_all(backend(e)),
    }
}

/// One operation of a transaction, once its condition has held.
struct Planned {
    key: Key,
    /// What is stored there now, expired or not (its index entries must go).
    old: Option<Item>,
    /// What to store: None for a check, Some(None) for a delete.
    write: Option<Option<Item>>,
}

/// A transaction's writes, as `plan` decided them; returns the last item written.
fn write_planned(tables: &mut Tables, planned: &[Planned]) -> StoreResult<Item> {
    let mut last = Item::new();
    for p in planned {
        if let Some(new) = &p.write {
            tables.write(&p.key, p.old.as_ref(), new.as_ref())?;
            if let Some(item) = new {
                last = item.clone();
            }
        }
    }
    Ok(last)
}

/// Checks every condition of a transaction against the tables as they stand: the writes to
/// make, or the index of the first operation whose condition fails. Writes nothing.
fn plan(tables: &Tables, ops: &[TxOp], now: i64) -> StoreResult<Result<Vec<Planned>, usize>> {
    let mut planned: Vec<Planned> = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let key = match op {
            TxOp::Put { item, .. } => key_of(item)?,
            TxOp::Update { key, .. } | TxOp::Delete { key, .. } | TxOp::Check { key, .. } => key.clone(),
        };
        if planned.iter().any(|p| p.key == key) {
            return Err(StoreError::Backend("a transaction cannot include two operations on one item".into()));
        }
        let old = tables.get_raw(&key)?;
        let current = old.as_ref().filter(|item| !is_expired(item, now));
        let (cond, write) = match op {
            TxOp::Put { item, cond } => (cond.as_ref(), Some(Some(item.clone()))),
            TxOp::Update { update, cond, .. } => (cond.as_ref(), Some(Some(apply_update(&key, current.cloned(), update)?))),
            TxOp::Delete { cond, .. } => (cond.as_ref(), Some(None)),
            TxOp::Check { cond, .. } => (Some(cond), None),
        };
        if !check(cond, current) {
            return Ok(Err(i));
        }
        planned.push(Planned { key, old, write });
    }
    Ok(Ok(planned))
}

fn single(result: StoreResult<TxOutcome>) -> StoreResult<Item> {
    match result? {
        Ok(item) => Ok(item),
        Err(_) => Err(StoreError::ConditionFailed),
    }
}

fn query_sync(db: &Database, q: &Query) -> StoreResult<Page> {
    let now = now_epoch();
    let txn = db.begin_read().map_err(backend)?;
    let items_table = txn.open_table(ITEMS).map_err(backend)?;
    let (lo, hi) = match &q.sk {
        None => (String::new(), HIGH.to_string()),
        Some(SkCond::Prefix(p)) => (p.clone(), format!("{p}{HIGH}")),
        Some(SkCond::Between(a, b)) => (a.clone(), b.clone()),
    };
    let after = q.cursor.as_deref().map(|c| decode_cursor(c, q.index)).transpose()?;
    let want = q.limit + 1;
    let mut found: Vec<Item> = Vec::new();
    let pk = q.pk.as_str();

    match q.index {
        Index::Primary => {
            let mut lower = Bound::Included((pk, lo.as_str()));
            let mut upper = Bound::Included((pk, hi.as_str()));
            if let Some(c) = &after {
                let sk = c[super::SK].as_str();
                if q.forward {
                    lower = Bound::Excluded((pk, sk));
                } else {
                    upper = Bound::Excluded((pk, sk));
                }
            }
            if !bounds_ok(&lower, &upper) {
                return Ok(Page { items: vec![], cursor: None });
            }
            let range = items_table.range::<(&str, &str)>((lower, upper)).map_err(backend)?;
            let iter: Box<dyn Iterator<Item = _>> = if q.forward { Box::new(range) } else { Box::new(range.rev()) };
            for entry in iter {
                let (_, value) = entry.map_err(backend)?;
                let item = decode(value.value())?;
                if !is_expired(&item, now) {
                    found.push(item);
                    if found.len() == want {
                        break;
                    }
                }
            }
        }
        Index::Gsi1 | Index::Gsi2 => {
            let table = txn.open_table(if q.index == Index::Gsi1 { GSI1 } else { GSI2 }).map_err(backend)?;
            let mut lower = Bound::Included((pk, lo.as_str(), "", ""));
            let mut upper = Bound::Included((pk, hi.as_str(), HIGH, HIGH));
            let (_, isk_name) = q.index.key_names();
            if let Some(c) = &after {
                let k = (pk, c[isk_name].as_str(), c[super::PK].as_str(), c[super::SK].as_str());
                if q.forward {
                    lower = Bound::Excluded(k);
                } else {
                    upper = Bound::Excluded(k);
                }
            }
            if !bounds_ok(&lower, &upper) {
                return Ok(Page { items: vec![], cursor: None });
            }
            let range = table.range::<(&str, &str, &str, &str)>((lower, upper)).map_err(backend)?;
            let iter: Box<dyn Iterator<Item = _>> = if q.forward { Box::new(range) } else { Box::new(range.rev()) };
            for entry in iter {
                let (k, _) = entry.map_err(backend)?;
                let (_, _, ipk, isk) = k.value();
                if let Some(item) = live(raw_get(&items_table, &Key::new(ipk, isk))?, now) {
                    found.push(item);
                    if found.len() == want {
                        break;
                    }
                }
            }
        }
    }
    let cursor = if found.len() > q.limit {
        found.truncate(q.limit);
        found.last().map(|last| cursor_of(last, q.index))
    } else {
        None
    };
    Ok(Page { items: found, cursor })
}

/// redb panics on a range whose start lies after its end; such a range is simply empty.
fn bounds_ok<T: PartialOrd>(lower: &Bound<T>, upper: &Bound<T>) -> bool {
    match (lower, upper) {
        (Bound::Included(a), Bound::Included(b)) => a <= b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a < b,
        _ => true,
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        let key = key.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(ITEMS).map_err(backend)?;
            Ok(live(raw_get(&table, &key)?, now_epoch()))
        })
        .await
    }

    async fn put(&self, item: Item, cond: Option<Cond>) -> StoreResult<()> {
        single(self.write(vec![TxOp::Put { item, cond }]).await).map(|_| ())
    }

    async fn update(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<Item> {
        single(self.write(vec![TxOp::Update { key: key.clone(), update, cond }]).await)
    }

    async fn update_buffered(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<Item> {
        single(self.queue(vec![TxOp::Update { key: key.clone(), update, cond }], false).await)
    }

    async fn delete(&self, key: &Key, cond: Option<Cond>) -> StoreResult<()> {
        single(self.write(vec![TxOp::Delete { key: key.clone(), cond }]).await).map(|_| ())
    }

    async fn query(&self, query: Query) -> StoreResult<Page> {
        self.blocking(move |db| query_sync(db, &query)).await
    }

    async fn transact(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        self.transact_with(ops, true).await
    }

    async fn transact_buffered(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        self.transact_with(ops, false).await
    }
}
