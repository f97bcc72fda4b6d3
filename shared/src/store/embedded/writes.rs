//! The embedded store's write path. A transaction is checked and applied in memory, under one
//! lock, to the overlay: the items written since redb last committed. It is visible to every
//! later operation the moment the lock is released, with no thread hop and no disk write on the
//! caller's path. One writer thread commits the overlay to redb: at once when someone waits for
//! durability (group commit: everyone who arrived meanwhile shares the fsync), otherwise within
//! `FLUSH_EVERY`. Each transaction is all-or-nothing in memory, and every commit takes the
//! overlay as it stood between two transactions, so no half of one ever reaches the disk.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use redb::{Database, ReadableDatabase, Table};

use super::{GSI1, GSI2, ITEMS, backend, index_key, raw_get};
use crate::store::{Index, Item, Key, StoreError, StoreResult, TxOp, apply_update, holds, is_expired, now_epoch};

/// The longest a write that nobody waits on stays in memory only.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// What one transaction came to: the last item it wrote, or the index of the operation whose
/// condition failed (and then nothing of it was written).
pub(super) type TxOutcome = Result<Item, usize>;

/// An item written since the last commit: its newest version (None: deleted) and the
/// transaction that wrote it.
#[derive(Clone)]
pub(super) struct Pending {
    pub item: Option<Arc<Item>>,
    seq: u64,
}

#[derive(Default)]
pub(super) struct Overlay {
    pub dirty: BTreeMap<Key, Pending>,
    /// When `dirty` last became non-empty.
    dirty_since: Option<Instant>,
    /// The last transaction applied.
    applied: u64,
    /// The last transaction someone waits to see committed.
    wanted: u64,
    closing: bool,
    /// A commit that failed: the store refuses writes from then on.
    failed: Option<String>,
}

/// How far the writer has come: every transaction up to `done` is durable in redb.
#[derive(Clone, Default)]
struct Progress {
    done: u64,
    failed: Option<String>,
}

pub(super) struct Writes {
    pub db: Arc<Database>,
    overlay: Mutex<Overlay>,
    wake: Condvar,
    progress: tokio::sync::watch::Sender<Progress>,
}

impl Writes {
    pub fn new(db: Arc<Database>) -> Self {
        Self { db, overlay: Mutex::default(), wake: Condvar::new(), progress: tokio::sync::watch::Sender::new(Progress::default()) }
    }

    pub fn overlay(&self) -> MutexGuard<'_, Overlay> {
        // A panic while holding the lock cannot leave a transaction half-applied (the overlay
        // is only changed after every condition held), so a poisoned lock is still sound.
        self.overlay.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies a transaction; with `durable`, returns once it is on disk.
    pub async fn transact(&self, ops: &[TxOp], durable: bool) -> StoreResult<TxOutcome> {
        let (outcome, seq) = self.apply(ops, durable)?;
        if let Some(seq) = seq.filter(|_| durable) {
            let mut progress = self.progress.subscribe();
            let reached = progress
                .wait_for(|p| p.done >= seq || p.failed.is_some())
                .await
                .map_err(|_| StoreError::Backend("the store's writer has stopped".into()))?;
            if let Some(failed) = &reached.failed {
                return Err(StoreError::Backend(failed.clone()));
            }
        }
        Ok(outcome)
    }

    /// Checks and applies a transaction in memory: its outcome, and its sequence number when it
    /// wrote anything.
    fn apply(&self, ops: &[TxOp], durable: bool) -> StoreResult<(TxOutcome, Option<u64>)> {
        let mut overlay = self.overlay();
        if let Some(failed) = &overlay.failed {
            return Err(StoreError::Backend(failed.clone()));
        }
        // Read under the lock, so nothing can change between the check and the write. These
        // are point reads of items not written lately; redb serves them from its cache.
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(ITEMS).map_err(backend)?;
        let now = now_epoch();
        let mut checked: Vec<Key> = Vec::with_capacity(ops.len());
        let mut writes: Vec<(Key, Option<Item>)> = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let owned;
            let key = match op {
                TxOp::Put { item, .. } => {
                    owned = Key::of(item).ok_or_else(|| StoreError::Backend("item lacks a string PK and SK".into()))?;
                    &owned
                }
                TxOp::Update { key, .. } | TxOp::Delete { key, .. } | TxOp::Check { key, .. } => key,
            };
            if checked.contains(key) || writes.iter().any(|(k, _)| k == key) {
                return Err(StoreError::Backend("a transaction cannot include two operations on one item".into()));
            }
            let current = match overlay.dirty.get(key) {
                Some(pending) => pending.item.as_deref().cloned(),
                None => raw_get(&table, key)?,
            }
            .filter(|item| !is_expired(item, now));
            let cond = match op {
                TxOp::Put { cond, .. } | TxOp::Update { cond, .. } | TxOp::Delete { cond, .. } => cond.as_ref(),
                TxOp::Check { cond, .. } => Some(cond),
            };
            if !cond.is_none_or(|c| holds(c, current.as_ref())) {
                return Ok((Err(i), None));
            }
            let write = match op {
                TxOp::Put { item, .. } => Some(Some(item.clone())),
                TxOp::Update { update, .. } => Some(Some(apply_update(key, current, update)?)),
                TxOp::Delete { .. } => Some(None),
                TxOp::Check { .. } => None,
            };
            match write {
                Some(item) => writes.push((key.clone(), item)),
                None => checked.push(key.clone()),
            }
        }
        if writes.is_empty() {
            return Ok((Ok(Item::new()), None));
        }
        overlay.applied += 1;
        let seq = overlay.applied;
        let mut last = Item::new();
        for (key, item) in writes {
            if let Some(item) = &item {
                last = item.clone();
            }
            overlay.dirty.insert(key, Pending { item: item.map(Arc::new), seq });
        }
        overlay.dirty_since.get_or_insert_with(Instant::now);
        if durable {
            overlay.wanted = seq;
            self.wake.notify_one();
        }
        Ok((Ok(last), Some(seq)))
    }

    /// Asks the writer to finish: it commits what is pending and ends.
    pub fn close(&self) {
        self.overlay().closing = true;
        self.wake.notify_one();
    }

    /// The writer thread: commits the overlay whenever someone waits for it, when the oldest
    /// pending write is `FLUSH_EVERY` old, and when the store closes.
    pub fn run(&self) {
        let mut overlay = self.overlay();
        loop {
            let due = overlay.dirty_since.is_some_and(|since| since.elapsed() >= FLUSH_EVERY);
            let commit_now = overlay.failed.is_none() && !overlay.dirty.is_empty() && (overlay.wanted > self.progress.borrow().done || due || overlay.closing);
            if !commit_now {
                if overlay.closing {
                    return;
                }
                let wait = overlay.dirty_since.map_or(FLUSH_EVERY, |since| FLUSH_EVERY.saturating_sub(since.elapsed()));
                overlay = self.wake.wait_timeout(overlay, wait).unwrap_or_else(std::sync::PoisonError::into_inner).0;
                continue;
            }
            let upto = overlay.applied;
            let batch: Vec<(Key, Pending)> = overlay.dirty.iter().map(|(k, p)| (k.clone(), p.clone())).collect();
            drop(overlay);
            // A panic in redb must fail the waiting writers, not leave them waiting forever.
            let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| commit(&self.db, &batch)))
                .unwrap_or_else(|_| Err(StoreError::Backend("redb panicked while committing".into())));
            overlay = self.overlay();
            match committed {
                Ok(()) => {
                    for (key, pending) in batch {
                        // Written again meanwhile: the newer version stays for the next commit.
                        if overlay.dirty.get(&key).is_some_and(|p| p.seq == pending.seq) {
                            overlay.dirty.remove(&key);
                        }
                    }
                    overlay.dirty_since = (!overlay.dirty.is_empty()).then(Instant::now);
                    self.progress.send_modify(|p| p.done = upto);
                }
                Err(e) => {
                    let failed = format!("the embedded store could not write to disk ({e}); it takes no more writes until restarted");
                    tracing::error!("{failed}");
                    overlay.failed = Some(failed.clone());
                    self.progress.send_modify(|p| p.failed = Some(failed));
                }
            }
        }
    }
}

/// The tables one write transaction works on.
struct Tables<'txn> {
    items: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    gsi1: Table<'txn, (&'static str, &'static str, &'static str, &'static str), ()>,
    gsi2: Table<'txn, (&'static str, &'static str, &'static str, &'static str), ()>,
}

impl Tables<'_> {
    /// Replaces what is stored at `key` with `new`, keeping the indexes in step.
    fn write(&mut self, key: &Key, new: Option<&Item>) -> StoreResult<()> {
        let old = raw_get(&self.items, key)?;
        for (index, table) in [(Index::Gsi1, &mut self.gsi1), (Index::Gsi2, &mut self.gsi2)] {
            let (old_entry, new_entry) = (old.as_ref().and_then(|o| index_key(o, index)), new.and_then(|n| index_key(n, index)));
            if old_entry == new_entry {
                continue;
            }
            if let Some((gpk, gsk)) = old_entry {
                table.remove((gpk.as_str(), gsk.as_str(), key.pk.as_str(), key.sk.as_str())).map_err(backend)?;
            }
            if let Some((gpk, gsk)) = new_entry {
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

/// Writes a batch of pending items in one durable redb commit.
fn commit(db: &Database, batch: &[(Key, Pending)]) -> StoreResult<()> {
    let txn = db.begin_write().map_err(backend)?;
    {
        let mut tables = Tables {
            items: txn.open_table(ITEMS).map_err(backend)?,
            gsi1: txn.open_table(GSI1).map_err(backend)?,
            gsi2: txn.open_table(GSI2).map_err(backend)?,
        };
        for (key, pending) in batch {
            tables.write(key, pending.item.as_deref())?;
        }
    }
    txn.commit().map_err(backend)
}
