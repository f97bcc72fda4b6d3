//! The embedded store on fjall (an LSM tree with its own journal), one of the engines compared
//! in `docs/embedded-engines.md` (`TOLLGATE_STORE_ENGINE=fjall`). Three keyspaces: the items
//! under their (pk, sk), and one per GSI holding (index pk, index sk, pk, sk) with no value.
//!
//! Writes go to one writer thread, which takes every transaction waiting and runs each as one
//! fjall single-writer transaction (reading its items as they stand, committed to the journal's
//! buffer and visible at once), then makes the batch durable with one `persist(SyncData)` (the
//! journal's fdatasync) when any of them waits for durability, or only hands it to the OS
//! (`persist(Buffer)`) when none does: group commit, as with redb's log. Buffered writes are
//! synced by the next durable batch or a flush within `FLUSH_EVERY`. (fjall's persist holds the
//! journal's lock while it syncs, so commits made meanwhile wait: on the writer thread, not on
//! the async runtime's.) Reads run on the caller's thread.

use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fjall::{KeyspaceCreateOptions, PersistMode, Readable, SingleWriterTxDatabase, SingleWriterTxKeyspace};

use super::{Cond, Index, Item, Key, Page, Query, SkCond, Store, StoreError, StoreResult, TxOp, Update, decode_cursor, index_key, is_expired, now_epoch, plan};

/// Buffered writes are synced within this long when no durable write comes to do it.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Above every character we put in keys, to close prefix ranges.
const HIGH: &str = "\u{10FFFF}";

/// What one transaction came to: the item its last write left (None for a delete or checks
/// only), or the index of the operation whose condition failed.
type Outcome = Result<Option<Item>, usize>;

struct Job {
    ops: Vec<TxOp>,
    durable: bool,
    reply: tokio::sync::oneshot::Sender<StoreResult<Outcome>>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    closing: bool,
}

struct Shared {
    db: SingleWriterTxDatabase,
    items: SingleWriterTxKeyspace,
    gsi: [SingleWriterTxKeyspace; 2],
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Clone)]
pub struct FjallStore {
    shared: Arc<Shared>,
    _writer: Arc<Writer>,
}

/// The writer thread, which commits and syncs what is queued and ends when the last handle is
/// dropped.
struct Writer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.queue().closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn backend<E: std::fmt::Display>(err: E) -> StoreError {
    StoreError::Backend(err.to_string())
}

/// Keys as bytes that sort as their parts do: each part with 0x00 escaped as 0x00 0xFF, ended
/// by 0x00 0x01.
fn push_part(out: &mut Vec<u8>, part: &str) {
    for &b in part.as_bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 1]);
}

fn key_of(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 2).sum());
    for part in parts {
        push_part(&mut out, part);
    }
    out
}

/// Just above every key that starts with `parts` (the last part's end marker raised).
fn key_after(parts: &[&str]) -> Vec<u8> {
    let mut out = key_of(parts);
    if let Some(last) = out.last_mut() {
        *last = 2;
    }
    out
}

/// The items key at the end of a GSI key: what follows its first two parts.
fn item_key_in(gsi_key: &[u8]) -> &[u8] {
    let mut ends = 0;
    let mut i = 0;
    while i + 1 < gsi_key.len() {
        if gsi_key[i] == 0 {
            if gsi_key[i + 1] == 1 {
                ends += 1;
                if ends == 2 {
                    return &gsi_key[i + 2..];
                }
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    &[]
}

fn decode(bytes: &[u8]) -> StoreResult<Item> {
    serde_json::from_slice(bytes).map_err(backend)
}

impl FjallStore {
    /// Opens (or creates) the database folder.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let db = SingleWriterTxDatabase::builder(path).open().map_err(backend)?;
        let keyspace = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default).map_err(backend);
        let (items, gsi) = (keyspace("items")?, [keyspace("gsi1")?, keyspace("gsi2")?]);
        let shared = Arc::new(Shared { db, items, gsi, queue: Mutex::default(), wake: Condvar::new() });
        let writer = shared.clone();
        let thread = std::thread::Builder::new().name("tollgate-fjall-write".into()).spawn(move || run_writer(&writer)).map_err(backend)?;
        Ok(Self { shared: shared.clone(), _writer: Arc::new(Writer { shared, thread: Some(thread) }) })
    }

    async fn write(&self, ops: Vec<TxOp>, durable: bool) -> StoreResult<Outcome> {
        if ops.len() > 100 {
            return Err(StoreError::Backend("a transaction holds at most 100 operations".into()));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.shared.queue().jobs.push(Job { ops, durable, reply });
        self.shared.wake.notify_one();
        answer.await.map_err(|_| StoreError::Backend("the store's writer thread has stopped".into()))?
    }

    async fn transact_with(&self, ops: Vec<TxOp>, durable: bool) -> StoreResult<()> {
        match self.write(ops, durable).await? {
            Ok(_) => Ok(()),
            Err(index) => Err(StoreError::TransactionCancelled { index }),
        }
    }

    fn query_sync(&self, q: &Query) -> StoreResult<Page> {
        let s = &*self.shared;
        let (lo, hi) = match &q.sk {
            None => (String::new(), HIGH.to_string()),
            Some(SkCond::Prefix(p)) => (p.clone(), format!("{p}{HIGH}")),
            Some(SkCond::Between(a, b)) => (a.clone(), b.clone()),
        };
        let mut lower = Bound::Included(key_of(&[&q.pk, &lo]));
        let mut upper = Bound::Excluded(key_after(&[&q.pk, &hi]));
        if let Some(cursor) = &q.cursor {
            let c = decode_cursor(cursor, q.index)?;
            let (_, isk) = q.index.key_names();
            let after = match q.index {
                Index::Primary => key_of(&[&q.pk, &c[super::SK]]),
                _ => key_of(&[&q.pk, &c[isk], &c[super::PK], &c[super::SK]]),
            };
            if q.forward {
                lower = Bound::Excluded(after);
            } else {
                upper = Bound::Excluded(after);
            }
        }
        let (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) = (&lower, &upper) else { unreachable!() };
        if a >= b {
            return Ok(Page { items: Vec::new(), cursor: None });
        }
        let snapshot = s.db.read_tx();
        let now = now_epoch();
        let want = q.limit + 1;
        let mut found = Vec::new();
        let keyspace = match q.index {
            Index::Primary => &s.items,
            Index::Gsi1 => &s.gsi[0],
            Index::Gsi2 => &s.gsi[1],
        };
        let range = snapshot.range(keyspace, (lower, upper));
        let entries: Box<dyn Iterator<Item = fjall::Guard>> = if q.forward { Box::new(range) } else { Box::new(range.rev()) };
        for entry in entries {
            let (key, value) = entry.into_inner().map_err(backend)?;
            let bytes = match q.index {
                Index::Primary => Some(value),
                _ => snapshot.get(&s.items, item_key_in(&key)).map_err(backend)?,
            };
            if let Some(item) = bytes.map(|b| decode(&b)).transpose()?.filter(|i| !is_expired(i, now)) {
                found.push(item);
                if found.len() == want {
                    break;
                }
            }
        }
        Ok(super::page_of(found, q.limit, q.index))
    }
}

/// The writer thread: takes every queued transaction, commits each, then syncs the journal
/// once when any of them is durable (or buffered ones have waited `FLUSH_EVERY`) and answers.
fn run_writer(s: &Shared) {
    let mut unsynced: Option<Instant> = None;
    loop {
        let (mut jobs, closing) = {
            let mut queue = s.queue();
            while queue.jobs.is_empty() && !queue.closing && unsynced.is_none_or(|since| since.elapsed() < FLUSH_EVERY) {
                let wait = unsynced.map_or(FLUSH_EVERY, |since| FLUSH_EVERY.saturating_sub(since.elapsed()));
                queue = s.wake.wait_timeout(queue, wait).unwrap_or_else(std::sync::PoisonError::into_inner).0;
            }
            (std::mem::take(&mut queue.jobs), queue.closing)
        };
        if jobs.is_empty() && unsynced.is_none() {
            if closing {
                return;
            }
            continue;
        }
        let mut outcomes: Vec<StoreResult<Outcome>> = jobs.iter_mut().map(|job| apply(s, std::mem::take(&mut job.ops))).collect();
        let durable = jobs.iter().any(|j| j.durable) || (jobs.is_empty() && unsynced.is_some());
        match s.db.persist(if durable { PersistMode::SyncData } else { PersistMode::Buffer }) {
            Ok(()) if durable => unsynced = None,
            Ok(()) => unsynced = unsynced.or_else(|| Some(Instant::now())),
            Err(e) => {
                // fjall takes no more writes after a failed persist; those waiting hear why.
                tracing::error!("the embedded store could not sync its journal: {e}");
                unsynced = Some(Instant::now());
                outcomes.iter_mut().for_each(|o| *o = Err(backend(&e)));
            }
        }
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            let _ = job.reply.send(outcome);
        }
    }
}

/// Runs one transaction as a fjall transaction committed to the journal's buffer (the writer
/// thread flushes or syncs it after the batch).
fn apply(s: &Shared, ops: Vec<TxOp>) -> StoreResult<Outcome> {
    let mut tx = s.db.write_tx().durability(None);
    let planned = plan(ops, |key| tx.get(&s.items, key_of(&[&key.pk, &key.sk])).map_err(backend)?.map(|v| decode(&v)).transpose())?;
    let writes = match planned {
        Ok(writes) => writes,
        Err(index) => return Ok(Err(index)),
    };
    for write in &writes {
        let key = &write.key;
        for (n, index) in [Index::Gsi1, Index::Gsi2].into_iter().enumerate() {
            let new = write.new.as_ref().and_then(|item| index_key(item, index));
            if write.old_index[n] == new {
                continue;
            }
            if let Some((gpk, gsk)) = &write.old_index[n] {
                tx.remove(&s.gsi[n], key_of(&[gpk, gsk, &key.pk, &key.sk]));
            }
            if let Some((gpk, gsk)) = &new {
                tx.insert(&s.gsi[n], key_of(&[gpk, gsk, &key.pk, &key.sk]), []);
            }
        }
        let item_key = key_of(&[&key.pk, &key.sk]);
        match &write.new {
            // An item is a map of string keys to plain values: serde_json has nothing to refuse.
            Some(item) => tx.insert(&s.items, item_key, serde_json::to_vec(item).map_err(backend)?),
            None => tx.remove(&s.items, item_key),
        }
    }
    tx.commit().map_err(backend)?;
    Ok(Ok(writes.into_iter().next_back().and_then(|w| w.new)))
}

#[async_trait]
impl Store for FjallStore {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        let bytes = self.shared.items.get(key_of(&[&key.pk, &key.sk])).map_err(backend)?;
        Ok(bytes.map(|b| decode(&b)).transpose()?.filter(|i| !is_expired(i, now_epoch())))
    }

    async fn put(&self, item: Item, cond: Option<Cond>) -> StoreResult<()> {
        single(self.write(vec![TxOp::Put { item, cond }], true).await).map(|_| ())
    }

    async fn update(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<Item> {
        single(self.write(vec![TxOp::Update { key: key.clone(), update, cond }], true).await)
    }

    async fn update_buffered(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<Item> {
        single(self.write(vec![TxOp::Update { key: key.clone(), update, cond }], false).await)
    }

    async fn delete(&self, key: &Key, cond: Option<Cond>) -> StoreResult<()> {
        single(self.write(vec![TxOp::Delete { key: key.clone(), cond }], true).await).map(|_| ())
    }

    async fn query(&self, query: Query) -> StoreResult<Page> {
        self.query_sync(&query)
    }

    async fn transact(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        self.transact_with(ops, true).await
    }

    async fn transact_buffered(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        self.transact_with(ops, false).await
    }
}

fn single(outcome: StoreResult<Outcome>) -> StoreResult<Item> {
    match outcome? {
        Ok(item) => Ok(item.unwrap_or_default()),
        Err(_) => Err(StoreError::ConditionFailed),
    }
}

#[cfg(test)]
mod tests {
    //! Crash recovery: a crash is a copy of the store's files taken while it runs.
    use super::*;
    use crate::store::Attr;

    fn crash_copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                crash_copy(&entry.path(), &to.join(entry.file_name()));
            } else {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }

    async fn count(store: &FjallStore, name: &str) -> Option<i64> {
        store.get(&Key::new("C", name)).await.unwrap()?.get("n").and_then(Attr::as_i64)
    }

    #[test]
    fn keys_sort_as_their_parts_and_gsi_keys_end_in_the_item_key() {
        let pairs = [("a", "b"), ("a", "b\0"), ("a", "b\0c"), ("a", "ba"), ("a\0", ""), ("ab", "")];
        let keys: Vec<Vec<u8>> = pairs.iter().map(|(a, b)| key_of(&[a, b])).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert!(key_of(&["a", "b", "z"]) < key_after(&["a", "b"]) && key_after(&["a", "b"]) < key_of(&["a", "b\0"]));
        assert_eq!(item_key_in(&key_of(&["g\0", "s", "p", "k\0"])), key_of(&["p", "k\0"]));
    }

    #[tokio::test]
    async fn durable_writes_and_the_buffered_ones_before_them_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        let store = FjallStore::open(&live).unwrap();
        let key = Key::new("C", "c");
        for i in 0..200 {
            if i % 2 == 1 {
                store.update_buffered(&Key::new("C", format!("b{i}")), Update::default().add("n", 1), None).await.unwrap();
            }
            store.update(&key, Update::default().add("n", 1), None).await.unwrap();
        }
        store.delete(&Key::new("absent", "x"), None).await.unwrap();
        let crashed = dir.path().join("crashed");
        crash_copy(&live, &crashed);
        drop(store);
        let restarted = FjallStore::open(&crashed).unwrap();
        assert_eq!(count(&restarted, "c").await, Some(200));
        for i in (1..200).step_by(2) {
            assert_eq!(count(&restarted, &format!("b{i}")).await, Some(1), "buffered write b{i}, made durable by the durable one after it");
        }
    }

    #[tokio::test]
    async fn concurrent_transactions_share_syncs_and_a_crash_keeps_none_half() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        let store = FjallStore::open(&live).unwrap();
        // Each transaction moves one unit from A to B: any state the disk holds sums to zero.
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..20 {
                        let ops = vec![
                            TxOp::Update { key: Key::new("T", "a"), update: Update::default().add("n", -1), cond: None },
                            TxOp::Update { key: Key::new("T", "b"), update: Update::default().add("n", 1), cond: None },
                        ];
                        store.transact(ops).await.unwrap();
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let crashed = dir.path().join("crashed");
        crash_copy(&live, &crashed);
        for task in tasks {
            task.await.unwrap();
        }
        let get =
            |store: FjallStore, sk: &'static str| async move { store.get(&Key::new("T", sk)).await.unwrap().and_then(|i| i.get("n").and_then(Attr::as_i64)) };
        assert_eq!(get(store.clone(), "a").await, Some(-640));
        drop(store);
        let restarted = FjallStore::open(&crashed).unwrap();
        let (a, b) = (get(restarted.clone(), "a").await.unwrap_or(0), get(restarted, "b").await.unwrap_or(0));
        assert_eq!(a + b, 0, "a crash copy holds whole transactions only (a={a}, b={b})");
    }
}
