//! The embedded store's write path. A transaction is checked and applied in memory, under one
//! lock, to the overlay: the items written since redb last committed. It is visible to every
//! later operation the moment the lock is released, with no thread hop and no disk write on the
//! caller's path. Two threads make writes durable. The logger, when someone waits for durability,
//! appends the transactions applied since its last record to the write-ahead log (group commit:
//! everyone who arrived meanwhile shares the sync). The committer commits the overlay to redb within `FLUSH_EVERY`, off the
//! waiters' path, and then drops what redb took from the overlay. Each transaction
//! is all-or-nothing in memory, and every log record and commit takes the overlay as it stood
//! between two transactions, so no half of one ever reaches the disk.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redb::Database;
use tokio::sync::oneshot::Receiver;

use super::commit::Stored;
use super::tables::Reader;
use super::wal::{Payload, Wal};
use crate::store::{Attr, Cond, Index, Item, Key, StoreError, StoreResult, TxOp, Update, added_values, apply_checked, holds, is_expired, now_epoch};

/// How long a write stays in the overlay (and the log) before redb takes it. Nobody waits for
/// this; it bounds the overlay's size and, for writes nobody waits on, what a crash can lose.
pub(super) const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// What one transaction came to: the item its last operation wrote when the caller asked for it
/// (None for a delete or a transaction of checks), or the index of the operation whose condition
/// failed (and then nothing of it was written).
pub(super) type TxOutcome = Result<Option<Arc<Item>>, usize>;

/// One operation of a transaction, made ready before the overlay's lock is taken: with its key
/// and condition, and for a put the item's stored form (and the item, unless an entity's).
enum Ready {
    Put(Option<Item>, Arc<Stored>),
    Update(Update),
    Delete,
    Check,
}

fn ready(op: TxOp) -> StoreResult<(Key, Option<Cond>, Ready)> {
    Ok(match op {
        TxOp::Put { item, cond } => {
            let key = Key::of(&item).ok_or_else(|| StoreError::Backend("item lacks a string PK and SK".into()))?;
            let stored = Arc::new(Stored::of(&item));
            (key, cond, Ready::Put(Some(item), stored))
        }
        TxOp::PutEntity { put, cond } => {
            let stored = Arc::new(Stored::encoded(&put)?);
            (put.key, cond, Ready::Put(None, stored))
        }
        TxOp::Update { key, update, cond } => (key, cond, Ready::Update(update)),
        TxOp::Delete { key, cond } => (key, cond, Ready::Delete),
        TxOp::Check { key, cond } => (key, Some(cond), Ready::Check),
    })
}

/// Whether two of a transaction's operations name one item (DynamoDB refuses such a
/// transaction whole, before checking any condition). The rollup consumer's transactions hold
/// 100 operations: compared pairwise, that was ~5,000 comparisons of keys that share their
/// partition, a few per proxied request.
fn touches_an_item_twice(ops: &[(Key, Option<Cond>, Ready)]) -> bool {
    if ops.len() <= 8 {
        return ops.iter().enumerate().any(|(i, (key, _, _))| ops[..i].iter().any(|(other, _, _)| other == key));
    }
    let mut keys: Vec<&Key> = ops.iter().map(|(key, _, _)| key).collect();
    keys.sort_unstable();
    keys.windows(2).any(|pair| pair[0] == pair[1])
}

/// One write of a transaction whose conditions all held.
enum Write {
    Put(Option<Item>, Arc<Stored>),
    Update { current: Option<Arc<Item>>, update: Update, added: Vec<(usize, i64)> },
    Delete,
}

/// One write of a transaction awaiting the log: an update as itself, not the item it made.
enum Journaled {
    /// The stored form of the item put, shared with the overlay (and through it the committer).
    Put(Arc<Stored>),
    Delete,
    /// `fresh`: the update made the item anew (it was absent or expired).
    Update {
        fresh: bool,
        update: Update,
    },
}

/// An item's newest version in the overlay.
#[derive(Clone)]
pub(super) enum Version {
    Deleted,
    /// Made by an update, kept whole: the next update of it changes it in place.
    Item(Arc<Item>),
    /// Put: kept as the log and redb take it. The writer encodes the item and lets it go on its
    /// own thread; kept whole, each of a usage record's ~80 allocations was freed by the
    /// committer, on another thread, which costs both threads more (`perf record`: a sixth of
    /// the committer's time went to dropping items). Reads decode it; puts are rarely read
    /// before redb takes them.
    Stored(Arc<Stored>),
}

impl Version {
    /// The item (None: deleted), decoded if need be; for a transaction's checks, under the lock.
    pub(super) fn item(&self, key: &Key) -> StoreResult<Option<Arc<Item>>> {
        match self {
            // Shared, not copied: the update that reads it then changes it in place.
            Version::Item(item) => Ok(Some(item.clone())),
            other => Ok(other.read().item(key)?.map(Arc::new)),
        }
    }

    /// What a read takes of it under the overlay's lock: an updated item is copied there, since a
    /// reference kept past the lock would make the next update of it (a limit's counters, read
    /// after each reservation) copy it whole; a put's stored form is shared, and decoded after.
    pub(super) fn read(&self) -> Read {
        match self {
            Version::Deleted => Read::Deleted,
            Version::Item(item) => Read::Item(Item::clone(item)),
            Version::Stored(stored) => Read::Stored(stored.clone()),
        }
    }

    /// Whether the item may be filed in `index` under `pk`, told without decoding it.
    pub(super) fn may_be_under(&self, index: Index, pk: &str) -> bool {
        let (ipk, _) = index.key_names();
        match (self, index) {
            (Version::Deleted, _) => false,
            (Version::Item(item), _) => item.get(ipk).and_then(Attr::as_str) == Some(pk),
            // A primary query asks only about keys of its own partition.
            (Version::Stored(_), Index::Primary) => true,
            (Version::Stored(stored), index) => stored.filed(index).is_some_and(|(gpk, _)| gpk == pk),
        }
    }
}

/// A version as a read took it from the overlay.
pub(super) enum Read {
    Deleted,
    Item(Item),
    Stored(Arc<Stored>),
}

impl Read {
    /// The item (None: deleted), decoded if need be.
    pub(super) fn item(self, key: &Key) -> StoreResult<Option<Item>> {
        match self {
            Read::Deleted => Ok(None),
            Read::Item(item) => Ok(Some(item)),
            Read::Stored(stored) => super::codec::decode(key, &stored.bytes).map(Some),
        }
    }
}

/// An item written since the last commit: its newest version and the transaction that wrote it.
#[derive(Clone)]
pub(super) struct Pending {
    pub version: Version,
    seq: u64,
}

/// A pending write's stored form, as redb takes it (None: deleted).
type Taken = Option<Arc<Stored>>;

impl Pending {
    /// The stored form, made now for an updated item, without the item: the committer lets go
    /// of the item before its disk work, since `apply` updates an item in place only while
    /// nobody else holds it, and copies it whole otherwise (a counters item carries a lease for
    /// every request in flight: at 1,024 in flight those copies were a quarter of the gateway's
    /// CPU).
    fn take(self) -> Taken {
        match self.version {
            Version::Deleted => None,
            Version::Item(item) => Some(Arc::new(Stored::of(&item))),
            Version::Stored(stored) => Some(stored),
        }
    }
}

#[derive(Default)]
pub(super) struct Overlay {
    /// The items written since redb's last commit, by key. Hashed, not sorted: a proxied
    /// request finds and replaces a handful of items here, and with a commit's worth of items
    /// pending a sorted map's walks of key comparisons were ~12k instructions per request
    /// (`scripts/bench-instructions`, 16 at a time); the committer sorts its batch instead,
    /// and a query picks out its range.
    pub dirty: foldhash::HashMap<Key, Pending>,
    /// The transactions applied since the log's last record that redb does not hold yet, in
    /// order, for the logger.
    journal: Vec<(u64, Vec<(Key, Journaled)>)>,
    /// When `dirty` last became non-empty.
    dirty_since: Option<Instant>,
    /// The last transaction applied.
    applied: u64,
    /// Who waits for a transaction to be durable, in the order of the transactions: the logger
    /// or a commit answers each once the disk holds it, and only those (a channel every waiter
    /// watched woke all of them at each sync, most of them only to wait again).
    waiters: VecDeque<(u64, Synced)>,
    /// The logger is waiting for work: set by it, cleared by the first writer to wake it, so
    /// the others (and a writer while the logger syncs) make no wakeup call.
    logger_idle: bool,
    /// Which round of the log new records belong to: a new round starts whenever the committer
    /// takes a batch (see `Wal::append`).
    round: u64,
    closing: bool,
    /// A commit that failed: the store refuses writes from then on.
    failed: Option<String>,
    /// redb's items as of its last commit, kept open for the checks of items the overlay lacks:
    /// beginning a read per transaction was ~2% of a proxied request's CPU. Dropped at each
    /// commit, when it would miss what redb just took from the overlay.
    snapshot: Option<Reader>,
}

/// Tells a waiting writer that its transaction is on disk, or why it never will be.
type Synced = tokio::sync::oneshot::Sender<StoreResult<()>>;
/// What the writer waits on.
type Heard = Receiver<StoreResult<()>>;

/// Answers `waiters`. The logger and the committer do so after releasing the lock that gave
/// them up, so that a woken writer's task does not find the overlay still locked (only a
/// failure, which ends all writing, answers under it).
/// `failed` says why the store failed, if it did.
fn answer(waiters: impl IntoIterator<Item = (u64, Synced)>, failed: Option<&str>) {
    for (_, waiter) in waiters {
        // A writer that stopped waiting (its request was dropped) has nothing to hear.
        let _ = waiter.send(failed.map_or(Ok(()), |why| Err(StoreError::Backend(why.to_string()))));
    }
}

pub(super) struct Writes {
    pub db: Arc<Database>,
    overlay: Mutex<Overlay>,
    /// Wakes the logger: someone waits for durability, or the store closes.
    log_wake: Condvar,
    /// Wakes the committer when the store closes.
    commit_wake: Condvar,
    /// Taken for each of the log's appends and for each slice of redb's sync (`disk`), the log
    /// first: concurrent syncs were slower here than one after the other, and the log's wait
    /// behind redb's sync set the tail latency.
    pub(super) disk: Arc<super::disk::Disk>,
    flush_every: Duration,
    /// Where a failure is noted (`failed`).
    marker: std::path::PathBuf,
}

impl Writes {
    /// The write path over `db`, which holds every transaction up to `durable`.
    pub fn new(db: Arc<Database>, disk: Arc<super::disk::Disk>, durable: u64, flush_every: Duration, marker: std::path::PathBuf) -> Self {
        let overlay = Overlay { applied: durable, ..Overlay::default() };
        Self { db, overlay: Mutex::new(overlay), log_wake: Condvar::new(), commit_wake: Condvar::new(), disk, flush_every, marker }
    }

    pub fn overlay(&self) -> MutexGuard<'_, Overlay> {
        // A panic while holding the lock cannot leave a transaction half-applied (the overlay
        // is only changed after every condition held), so a poisoned lock is still sound.
        self.overlay.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies a transaction; with `durable`, returns once it is on disk. With `returning`, the
    /// outcome carries the item the last operation wrote: for an update, shared with the overlay
    /// when the write is buffered and the caller's own when it waits for the disk; for a put,
    /// the caller's own (the overlay keeps its stored form).
    pub async fn transact(&self, ops: Vec<TxOp>, durable: bool, returning: bool) -> StoreResult<TxOutcome> {
        let (outcome, synced) = self.apply(ops, durable, returning)?;
        let Some(synced) = synced else { return Ok(outcome) };
        // Not the overlay's item while waiting for the sync: every update of it meanwhile (other
        // requests reserving on the same counters item) would copy it whole, since `apply`
        // updates in place only what nobody else holds.
        let outcome = outcome.map(|item| item.map(|shared| Arc::new(Item::clone(&shared))));
        synced.await.map_err(|_| StoreError::Backend("the store's writer threads have stopped".into()))??;
        Ok(outcome)
    }

    /// Checks and applies a transaction in memory: its outcome, and when it wrote anything and
    /// `durable`, what will say that it is on disk.
    fn apply(&self, ops: Vec<TxOp>, durable: bool, returning: bool) -> StoreResult<(TxOutcome, Option<Heard>)> {
        let ops = ops.into_iter().map(ready).collect::<StoreResult<Vec<_>>>()?;
        if touches_an_item_twice(&ops) {
            return Err(StoreError::Backend("a transaction cannot include two operations on one item".into()));
        }
        let mut overlay = self.overlay();
        if let Some(failed) = &overlay.failed {
            return Err(StoreError::Backend(failed.clone()));
        }
        // Read under the lock, so nothing can change between the check and the write. Items
        // written lately (a limit's counters, say) are in the overlay; only the others are read
        // from redb, which serves them from its cache.
        let now = now_epoch();
        let mut writes: Vec<(Key, Write)> = Vec::with_capacity(ops.len());
        for (i, (key, cond, op)) in ops.into_iter().enumerate() {
            // Only a condition or an update reads the item: a plain put or delete replaces it
            // whatever it was (two of the four items a proxied request writes).
            let reads = cond.is_some() || matches!(op, Ready::Update(_));
            let current = match (reads, overlay.dirty.get(&key)) {
                (false, _) => None,
                (true, Some(pending)) => pending.version.item(&key)?,
                (true, None) => {
                    let snapshot = match &mut overlay.snapshot {
                        Some(reader) => reader,
                        empty => empty.insert(Reader::new(&self.db)?),
                    };
                    snapshot.get(&key)?.map(Arc::new)
                }
            }
            .filter(|item| !is_expired(item, now));
            if !cond.is_none_or(|c| holds(&c, current.as_deref())) {
                return Ok((Err(i), None));
            }
            match op {
                Ready::Put(item, stored) => {
                    // An entity's item, made only for a caller who asks for it.
                    let item = match item {
                        None if returning => Some(super::codec::decode(&key, &stored.bytes)?),
                        item => item,
                    };
                    writes.push((key, Write::Put(item, stored)));
                }
                Ready::Update(update) => {
                    let added = added_values(current.as_deref(), &update)?;
                    writes.push((key, Write::Update { current, update, added }));
                }
                Ready::Delete => writes.push((key, Write::Delete)),
                Ready::Check => {}
            }
        }
        if writes.is_empty() {
            return Ok((Ok(None), None));
        }
        // Every condition held and every update applies: from here nothing fails.
        overlay.applied += 1;
        let seq = overlay.applied;
        let mut last = None;
        // The items put, let go once the lock is released.
        let mut put = Vec::new();
        let mut journaled = Vec::with_capacity(writes.len());
        for (key, write) in writes {
            // Found once, for both the update in place and the new version below.
            let mut slot = overlay.dirty.get_mut(&key);
            let (version, written, logged) = match write {
                Write::Put(item, stored) => {
                    let written = if returning {
                        item.map(Arc::new)
                    } else {
                        put.extend(item);
                        None
                    };
                    (Version::Stored(stored.clone()), written, Journaled::Put(stored))
                }
                Write::Delete => (Version::Deleted, None, Journaled::Delete),
                Write::Update { current, update, added } => {
                    // The overlay's copy of the item is replaced below: dropped first, the item
                    // is updated in place rather than copied whole (a counters item carries a
                    // lease for every request in flight), unless a commit is reading it.
                    if let Some(pending) = slot.as_deref_mut() {
                        pending.version = Version::Deleted;
                    }
                    let fresh = current.is_none();
                    let item = Arc::new(apply_checked(&key, current.map(Arc::unwrap_or_clone), &update, added));
                    (Version::Item(item.clone()), Some(item), Journaled::Update { fresh, update })
                }
            };
            if returning {
                last = written;
            }
            // An item the overlay holds already (a limit's counters, written by most requests)
            // keeps its key there: only a new one costs a copy of the key.
            match slot {
                Some(pending) => {
                    *pending = Pending { version, seq };
                    journaled.push((key, logged));
                }
                None => {
                    journaled.push((key.clone(), logged));
                    overlay.dirty.insert(key, Pending { version, seq });
                }
            }
        }
        overlay.journal.push((seq, journaled));
        overlay.dirty_since.get_or_insert_with(Instant::now);
        let waiting = durable.then(|| {
            let (synced, heard) = tokio::sync::oneshot::channel();
            overlay.waiters.push_back((seq, synced));
            (heard, std::mem::take(&mut overlay.logger_idle))
        });
        // Woken under the lock, the logger would wake only to wait for it.
        drop(overlay);
        let heard = waiting.map(|(heard, wake)| {
            if wake {
                self.log_wake.notify_one();
            }
            heard
        });
        drop(put);
        Ok((Ok(last), heard))
    }

    /// Asks the threads to finish: the committer commits what is pending, and both end.
    pub fn close(&self) {
        let mut overlay = self.overlay();
        overlay.closing = true;
        overlay.snapshot = None;
        drop(overlay);
        self.log_wake.notify_one();
        self.commit_wake.notify_one();
    }

    fn wait<'a>(&self, wake: &Condvar, overlay: MutexGuard<'a, Overlay>, timeout: Duration) -> MutexGuard<'a, Overlay> {
        wake.wait_timeout(overlay, timeout).unwrap_or_else(std::sync::PoisonError::into_inner).0
    }

    /// The logger thread: whenever someone waits for durability, appends to the log every
    /// transaction applied since the last record (or redb commit) and wakes the waiters.
    pub fn run_log(&self, mut wal: Wal) {
        let mut overlay = self.overlay();
        loop {
            if overlay.failed.is_some() || overlay.waiters.is_empty() {
                if overlay.closing {
                    return;
                }
                overlay.logger_idle = true;
                overlay = self.wait(&self.log_wake, overlay, self.flush_every);
                overlay.logger_idle = false;
                continue;
            }
            let (upto, round) = (overlay.applied, overlay.round);
            let txs = std::mem::take(&mut overlay.journal);
            // Every waiter's transaction is among `txs` (or in redb already): each was applied,
            // and given its number, under this lock.
            let waiters = std::mem::take(&mut overlay.waiters);
            drop(overlay);
            let logged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let payload = payload(txs);
                let _disk = self.disk.first();
                wal.append(round, upto, &payload)
            }))
            .unwrap_or_else(|_| Err(StoreError::Backend("the write-ahead log panicked".into())));
            let failed = logged.err().map(|e| self.fail(&mut self.overlay(), &e));
            answer(waiters, failed.as_deref());
            overlay = self.overlay();
        }
    }

    /// The committer thread: commits the overlay to redb when its oldest write is `flush_every`
    /// old, and when the store closes. It alone keeps `homes`.
    pub fn run_commit(&self, mut homes: super::tables::Homes) {
        let mut overlay = self.overlay();
        loop {
            let due = overlay.dirty_since.is_some_and(|since| since.elapsed() >= self.flush_every);
            if overlay.failed.is_some() || overlay.dirty.is_empty() || !(due || overlay.closing) {
                if overlay.closing {
                    return;
                }
                let wait = overlay.dirty_since.map_or(self.flush_every, |since| self.flush_every.saturating_sub(since.elapsed()));
                overlay = self.wait(&self.commit_wake, overlay, wait);
                continue;
            }
            let upto = overlay.applied;
            let mut batch: Vec<(Key, Pending)> = overlay.dirty.iter().map(|(k, p)| (k.clone(), p.clone())).collect();
            // Records logged from now on may hold writes this commit lacks; they start a new
            // round, which the log keeps apart from the records this commit makes redundant.
            overlay.round += 1;
            drop(overlay);
            // A panic here (in redb, or encoding an item) must fail the waiting writers, not
            // end this thread and leave the store taking writes that never reach redb.
            let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // In key order, as redb's pages are: neighbours are written while their page is at hand.
                batch.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                let batch: Vec<(Key, u64, Taken)> = batch.into_iter().map(|(k, p)| (k, p.seq, p.take())).collect();
                super::commit::commit(&self.db, &mut homes, batch.iter().map(|(k, _, t)| (k, t.as_deref())), upto).map(|()| batch)
            }))
            .unwrap_or_else(|_| Err(StoreError::Backend("the commit to redb panicked".into())));
            overlay = self.overlay();
            match committed {
                Ok(batch) => {
                    overlay.snapshot = None;
                    // What redb now holds need not be logged.
                    let held = overlay.journal.partition_point(|(seq, _)| *seq <= upto);
                    overlay.journal.drain(..held);
                    for (key, seq, _) in &batch {
                        // Written again meanwhile: the newer version stays for the next commit.
                        if overlay.dirty.get(key).is_some_and(|p| p.seq == *seq) {
                            overlay.dirty.remove(key);
                        }
                    }
                    overlay.dirty_since = (!overlay.dirty.is_empty()).then(Instant::now);
                    // Those whose transactions this commit made durable need not wait for the log.
                    let held = overlay.waiters.partition_point(|(seq, _)| *seq <= upto);
                    let waiters: Vec<_> = overlay.waiters.drain(..held).collect();
                    drop(overlay);
                    answer(waiters, None);
                    // The batch's stored forms are freed here, not under the lock.
                    drop(batch);
                    overlay = self.overlay();
                }
                Err(e) => {
                    self.fail(&mut overlay, &e);
                }
            }
        }
    }

    /// A write to disk failed: the store takes no more writes, everyone waiting hears why, and
    /// the failure is noted beside its files (`failed`), so that it does not open again in this
    /// boot.
    /// Returns the reason, for the waiters a caller has already taken.
    pub(super) fn fail(&self, overlay: &mut Overlay, e: &StoreError) -> String {
        let failed = format!("the embedded store could not write to disk ({e}); it takes no more writes, and opens again only once the machine restarts");
        tracing::error!("{failed}");
        super::failed::mark(&self.marker, &e.to_string());
        overlay.failed = Some(failed.clone());
        answer(overlay.waiters.drain(..), Some(&failed));
        failed
    }
}

/// The log record of `txs`: their puts' stored forms (made by their writers), their deletes,
/// and their updates as the updates themselves.
fn payload(txs: Vec<(u64, Vec<(Key, Journaled)>)>) -> Payload {
    let mut payload = Payload::new(txs.len());
    for (seq, writes) in &txs {
        payload.tx(*seq, writes.len());
        for (key, write) in writes {
            match write {
                Journaled::Put(stored) => payload.put(key, &stored.bytes),
                Journaled::Delete => payload.delete(key),
                Journaled::Update { fresh, update } => payload.update(key, *fresh, update),
            }
        }
    }
    payload
}

#[cfg(test)]
#[path = "writes_tests.rs"]
mod tests;
