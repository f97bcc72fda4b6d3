//! The committer's side of the embedded store: a batch of stored items written to redb's
//! tables, their index entries kept in step, in one durable commit; and, at opening, the log's
//! transactions that redb lacks replayed into it.

use std::collections::{BTreeMap, HashMap};

use redb::{Database, ReadableTable, Table, WriteTransaction};

use super::tables::{Bytes, COUNT_UPTO, Filed, Homes, Reader, filed, opened, own_table, partition};
use super::wal::{Logged, Tx};
use super::{GSI1, GSI2, ITEMS, META, backend, index_key};
use crate::store::{Encoded, EntityPut, Index, Item, Key, StoreError, StoreResult, apply_update};

/// An item as the log and redb keep it: its encoding, and its entries in the two indexes.
pub(super) struct Stored {
    pub(super) bytes: Vec<u8>,
    pub(super) indexes: [Option<(String, String)>; 2],
}

impl Stored {
    pub(super) fn of(item: &Item) -> Self {
        Stored { bytes: super::codec::encode(item), indexes: [index_key(item, Index::Gsi1), index_key(item, Index::Gsi2)] }
    }

    /// The stored form of an entity put whole, encoded from its fields. Its index entries are
    /// those its extra attributes name, unless its own fields are named like them too: then
    /// they are read back from the bytes, as the committer does (which, for every usage record,
    /// would cost ~9k instructions, a third of what encoding it does).
    pub(super) fn encoded(put: &EntityPut) -> StoreResult<Self> {
        let Encoded { bytes, names_index_keys } = put.entity.encoded(&put.extra)?;
        if names_index_keys {
            let indexes = super::codec::index_entries(&put.key, &bytes)?;
            return Ok(Stored { bytes, indexes });
        }
        // The last of a name wins, as it would inserted into an item.
        let named = |name: &str| put.extra.iter().rev().find(|(n, _)| *n == name).and_then(|(_, v)| v.as_str());
        let entry = |index: Index| {
            let (pk, sk) = index.key_names();
            Some((named(pk)?.to_string(), named(sk)?.to_string()))
        };
        Ok(Stored { bytes, indexes: [entry(Index::Gsi1), entry(Index::Gsi2)] })
    }

    /// Where the item is filed in a secondary `index` (None for the primary one).
    pub(super) fn filed(&self, index: Index) -> Option<&(String, String)> {
        match index {
            Index::Primary => None,
            Index::Gsi1 => self.indexes[0].as_ref(),
            Index::Gsi2 => self.indexes[1].as_ref(),
        }
    }
}

/// Brings redb up to date with the log after a crash: applies the logged transactions it
/// lacks (`txs`, in order) to what it holds, and commits what they come to.
pub(super) fn replay(db: &Database, homes: &mut Homes, txs: Vec<Tx>) -> StoreResult<u64> {
    let Some(&(last, _)) = txs.last() else { return Ok(0) };
    let mut items: BTreeMap<Key, Option<Item>> = BTreeMap::new();
    {
        let mut read = Reader::new(db)?;
        for (seq, writes) in txs {
            for (key, logged) in writes {
                let failed = |e: StoreError| backend(format!("replaying transaction {seq} of the write-ahead log on {key:?}: {e}"));
                let item = match logged {
                    Logged::Item(item) => Some(item),
                    Logged::Delete => None,
                    Logged::Update { fresh: true, update } => Some(apply_update(&key, None, &update).map_err(failed)?),
                    Logged::Update { fresh: false, update } => {
                        let current = match items.remove(&key) {
                            Some(item) => item,
                            None => read.get(&key)?,
                        };
                        Some(apply_update(&key, current, &update).map_err(failed)?)
                    }
                };
                items.insert(key, item);
            }
        }
    }
    let stored: Vec<(Key, Option<Stored>)> = items.into_iter().map(|(key, item)| (key, item.as_ref().map(Stored::of))).collect();
    commit(db, homes, stored.iter().map(|(key, item)| (key, item.as_ref())), last)?;
    Ok(last)
}

/// The tables one write transaction works on: the shared ones, and the own tables of the
/// partitions it has written so far (see `tables`).
struct Tables<'txn, 'h> {
    txn: &'txn WriteTransaction,
    homes: &'h mut Homes,
    items: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    gsi1: Table<'txn, (&'static str, &'static str, &'static str, &'static str), ()>,
    gsi2: Table<'txn, (&'static str, &'static str, &'static str, &'static str), ()>,
    own: HashMap<String, Table<'txn, &'static str, Bytes>>,
    own_index: HashMap<String, Table<'txn, Filed, ()>>,
}

impl<'txn, 'h> Tables<'txn, 'h> {
    fn open(txn: &'txn WriteTransaction, homes: &'h mut Homes) -> StoreResult<Self> {
        Ok(Tables {
            txn,
            homes,
            items: txn.open_table(ITEMS).map_err(backend)?,
            gsi1: txn.open_table(GSI1).map_err(backend)?,
            gsi2: txn.open_table(GSI2).map_err(backend)?,
            own: HashMap::new(),
            own_index: HashMap::new(),
        })
    }

    /// Replaces what is stored at `key` with `new` (None: deletes it), keeping the indexes in
    /// step. The old version, whose index entries are replaced, is the one redb's insert or
    /// remove hands back: looking it up first was a second descent of the tree per written
    /// item (~3k instructions each, four items a proxied request, `valgrind --tool=callgrind`).
    fn write(&mut self, key: &Key, new: Option<&Stored>) -> StoreResult<()> {
        let bytes = new.map(|n| n.bytes.as_slice());
        let entries = |guard: redb::AccessGuard<'_, &'static [u8]>| super::codec::index_entries(key, guard.value());
        let old = match own_table(Index::Primary, &key.pk) {
            Some(name) if self.homes.has_own(&name) => {
                let table = opened(self.txn, &mut self.own, name)?;
                match bytes {
                    Some(bytes) => table.insert(key.sk.as_str(), bytes),
                    None => table.remove(key.sk.as_str()),
                }
                .map_err(backend)?
                .map(entries)
            }
            name => {
                let at = (key.pk.as_str(), key.sk.as_str());
                let old = match bytes {
                    Some(bytes) => self.items.insert(at, bytes),
                    None => self.items.remove(at),
                }
                .map_err(backend)?
                .map(entries);
                // A new item of a partition that will have a table of its own once big.
                if let Some(name) = name
                    && old.is_none()
                    && bytes.is_some()
                {
                    let items = &self.items;
                    let count = || Ok(items.range::<(&str, &str)>(partition(&key.pk)).map_err(backend)?.take(COUNT_UPTO).count());
                    self.homes.grew(Index::Primary, name, &key.pk, count)?;
                }
                old
            }
        };
        let old = match old {
            Some(Ok(entries)) => entries,
            // An old version that cannot be read (a put or delete without a condition does not
            // read what it replaces) must not stop the store: it is replaced, and any index
            // entries it had stay behind, which queries skip (`query_sync`).
            Some(Err(e)) => {
                tracing::warn!(pk = %key.pk, sk = %key.sk, error = %e, "replacing an item whose stored form could not be read");
                [None, None]
            }
            None => [None, None],
        };
        for (i, (old_entry, index)) in old.into_iter().zip([Index::Gsi1, Index::Gsi2]).enumerate() {
            let new_entry = new.and_then(|n| n.indexes[i].as_ref());
            if old_entry.as_ref() == new_entry {
                continue;
            }
            if let Some((gpk, gsk)) = old_entry {
                self.file(index, (&gpk, &gsk), key, false)?;
            }
            if let Some((gpk, gsk)) = new_entry {
                self.file(index, (gpk, gsk), key, true)?;
            }
        }
        Ok(())
    }

    /// Adds (`present`) or removes the entry that files `key` under `entry` in `index`.
    fn file(&mut self, index: Index, (gpk, gsk): (&str, &str), key: &Key, present: bool) -> StoreResult<()> {
        let (pk, sk) = (key.pk.as_str(), key.sk.as_str());
        match own_table(index, gpk) {
            Some(name) if self.homes.has_own(&name) => {
                let table = opened(self.txn, &mut self.own_index, name)?;
                let at = (gsk, pk, sk);
                if present { table.insert(at, ()).map(drop) } else { table.remove(at).map(drop) }.map_err(backend)
            }
            name => {
                let table = if index == Index::Gsi1 { &mut self.gsi1 } else { &mut self.gsi2 };
                let at = (gpk, gsk, pk, sk);
                if !present {
                    return table.remove(at).map(drop).map_err(backend);
                }
                // A new entry of an index partition that will have a table of its own once big.
                if table.insert(at, ()).map_err(backend)?.is_none()
                    && let Some(name) = name
                {
                    let count = || Ok(table.range::<(&str, &str, &str, &str)>(filed(gpk)).map_err(backend)?.take(COUNT_UPTO).count());
                    self.homes.grew(index, name, gpk, count)?;
                }
                Ok(())
            }
        }
    }
}

/// Writes a batch of items in one durable redb commit, noting `upto` as the last transaction
/// redb holds. Its sync takes the disk a slice at a time, after the log (`disk::SlicedFile`).
pub(super) fn commit<'a>(db: &Database, homes: &mut Homes, batch: impl Iterator<Item = (&'a Key, Option<&'a Stored>)>, upto: u64) -> StoreResult<()> {
    let txn = db.begin_write().map_err(backend)?;
    {
        let mut tables = Tables::open(&txn, homes)?;
        for (i, (key, item)) in batch.enumerate() {
            tables.write(key, item)?;
            // Building the tables is milliseconds of CPU: let a thread that woke on this core
            // (the logger, a worker) run between every few items (see `disk`).
            if i % YIELD_EVERY == YIELD_EVERY - 1 {
                std::thread::yield_now();
            }
        }
    }
    // With the batch's tables closed: a move opens them itself.
    homes.move_due(&txn)?;
    txn.open_table(META).map_err(backend)?.insert(APPLIED, upto).map_err(backend)?;
    txn.commit().map_err(backend)
}

/// How many items go into the tables between two yields of the core (~50 µs of CPU).
const YIELD_EVERY: usize = 16;

/// The META entry naming the last transaction redb holds.
pub(super) const APPLIED: &str = "applied";
