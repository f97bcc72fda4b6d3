//! Which redb table holds a partition. Most partitions share `items`, and their index entries
//! `gsi1` and `gsi2`. A partition that every proxied request appends to in time order (its
//! usage record, `USAGE#<owner>`, and that record's two index entries, `USAGEM#...` and
//! `USAGEO#...`) moves to a table of its own, keyed by what follows the partition key, once it
//! holds `PROMOTE_AT` items or entries.
//!
//! Why: redb splits a full leaf into two half-full ones, unless the new key is the greatest in
//! its tree, when it leaves the full leaf packed and starts a new one. In a shared table only
//! the last partition ends at the tree's end: every other owner's records were appended in the
//! middle of the tree, and each split left a half-full leaf behind that no later record comes
//! back to. In a table of its own, a partition written in time order always appends at the end.
//! But a table costs a page (4 KiB) however little it holds, so a partition waits in the shared
//! table until it is big enough to pay for one (`docs/embedded-engines.md` has the figures).
//!
//! Where a partition is, is what redb holds: a reader looks for its own table in the snapshot
//! it reads, and finds everything there if it exists, else everything in the shared table. A
//! partition moves whole, in one commit.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use redb::{ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, Table, TableDefinition, TableError, TableHandle, WriteTransaction};

use super::{GSI1, GSI2, ITEMS, backend, codec};
use crate::store::{Index, Item, Key, StoreResult};

/// The partition keys whose partitions move to tables of their own.
pub(super) const OWN: [&str; 3] = ["USAGE#", "USAGEM#", "USAGEO#"];

/// How many items (or index entries) a partition holds when it moves to a table of its own. A
/// usage record is ~0.8 KB and an index entry ~0.23 KB, and a half-full leaf wastes as much
/// again: past a few dozen, a partition wastes more than its own table's page costs.
pub(super) const PROMOTE_AT: usize = 32;

/// An own partition's items: sort key -> the item's stored form.
pub(super) type OwnItems<'a> = TableDefinition<'a, &'static str, Bytes>;
/// An own index partition's entries, each (index sort key, item pk, item sk).
pub(super) type OwnIndex<'a> = TableDefinition<'a, Filed, ()>;
pub(super) type Bytes = &'static [u8];
pub(super) type Filed = (&'static str, &'static str, &'static str);

/// The name of the table of its own that partition `pk` of `index` has, or will have once big.
pub(super) fn own_table(index: Index, pk: &str) -> Option<String> {
    if !OWN.iter().any(|prefix| pk.starts_with(prefix)) {
        return None;
    }
    let tag = match index {
        Index::Primary => "items:",
        Index::Gsi1 => "gsi1:",
        Index::Gsi2 => "gsi2:",
    };
    Some([tag, pk].concat())
}

/// The table called `name` among `open`, opened in `txn` (and made, if need be) the first time.
pub(super) fn opened<'m, 'txn, K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &'txn WriteTransaction,
    open: &'m mut HashMap<String, Table<'txn, K, V>>,
    name: String,
) -> StoreResult<&'m mut Table<'txn, K, V>> {
    match open.entry(name) {
        Entry::Occupied(table) => Ok(table.into_mut()),
        Entry::Vacant(new) => {
            let table = txn.open_table(TableDefinition::new(new.key())).map_err(backend)?;
            Ok(new.insert(table))
        }
    }
}

/// A table not made yet (no write has reached its partition) reads as empty.
pub(super) fn missing_is_empty<T>(opened: Result<T, TableError>) -> StoreResult<Option<T>> {
    match opened {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(backend(e)),
    }
}

/// Reads items by key from one read transaction, wherever they are: the shared table, or their
/// partition's own (the last one opened kept, as a query's items share one).
pub(super) struct Reader {
    txn: ReadTransaction,
    items: ReadOnlyTable<(&'static str, &'static str), &'static [u8]>,
    own: Option<(String, Option<ReadOnlyTable<&'static str, Bytes>>)>,
}

impl Reader {
    pub(super) fn new(db: &redb::Database) -> StoreResult<Self> {
        let txn = db.begin_read().map_err(backend)?;
        let items = txn.open_table(ITEMS).map_err(backend)?;
        Ok(Reader { txn, items, own: None })
    }

    pub(super) fn txn(&self) -> &ReadTransaction {
        &self.txn
    }

    pub(super) fn items(&self) -> &ReadOnlyTable<(&'static str, &'static str), &'static [u8]> {
        &self.items
    }

    /// The item stored at `key`, if any.
    pub(super) fn get(&mut self, key: &Key) -> StoreResult<Option<Item>> {
        if let Some(name) = own_table(Index::Primary, &key.pk) {
            if self.own.as_ref().is_none_or(|(open, _)| *open != name) {
                let table = missing_is_empty(self.txn.open_table(OwnItems::new(&name)))?;
                self.own = Some((name, table));
            }
            if let Some((_, Some(table))) = &self.own {
                return match table.get(key.sk.as_str()).map_err(backend)? {
                    Some(guard) => Ok(Some(codec::decode(key, guard.value())?)),
                    None => Ok(None),
                };
            }
        }
        super::raw_get(&self.items, key)
    }
}

/// The committer's record of the partitions with tables of their own, and of how many items the
/// others have in the shared tables (counted from redb the first time one grows).
pub(super) struct Homes {
    own: HashSet<String>,
    sizes: HashMap<String, usize>,
    /// Partitions that have reached `PROMOTE_AT` in this commit, to move at its end.
    due: Vec<(Index, String, String)>,
}

impl Homes {
    /// Finds the tables of their own that redb holds. Moves into them whatever an earlier
    /// version, which knew nothing of them, wrote to the shared tables for their partitions.
    pub(super) fn load(db: &redb::Database) -> StoreResult<Homes> {
        let read = db.begin_read().map_err(backend)?;
        let own: HashSet<String> = read.list_tables().map_err(backend)?.map(|t| t.name().to_string()).filter(|n| home_of(n).is_some()).collect();
        let items = read.open_table(ITEMS).map_err(backend)?;
        let (gsi1, gsi2) = (read.open_table(GSI1).map_err(backend)?, read.open_table(GSI2).map_err(backend)?);
        let mut homes = Homes { own, sizes: HashMap::new(), due: Vec::new() };
        for name in &homes.own {
            let (index, pk) = home_of(name).expect("filtered above");
            let left = match index {
                Index::Primary => items.range::<(&str, &str)>(partition(pk)).map_err(backend)?.next().is_some(),
                index => {
                    let shared = if index == Index::Gsi1 { &gsi1 } else { &gsi2 };
                    shared.range::<(&str, &str, &str, &str)>(filed(pk)).map_err(backend)?.next().is_some()
                }
            };
            if left {
                homes.due.push((index, name.clone(), pk.to_string()));
            }
        }
        drop((items, gsi1, gsi2, read));
        if !homes.due.is_empty() {
            let txn = db.begin_write().map_err(backend)?;
            homes.move_due(&txn)?;
            txn.commit().map_err(backend)?;
        }
        Ok(homes)
    }

    pub(super) fn has_own(&self, name: &str) -> bool {
        self.own.contains(name)
    }

    /// Notes one more item (or entry) of partition `pk` of `index` in its shared table, whose
    /// own table would be `name`; `counted` counts what the shared table holds of it, the first
    /// time. At `PROMOTE_AT`, the partition is due to move at the commit's end.
    pub(super) fn grew(&mut self, index: Index, name: String, pk: &str, counted: impl FnOnce() -> StoreResult<usize>) -> StoreResult<()> {
        let size = match self.sizes.get_mut(&name) {
            Some(size) => {
                *size += 1;
                *size
            }
            None => *self.sizes.entry(name.clone()).or_insert(counted()?),
        };
        if size >= PROMOTE_AT && !self.due.iter().any(|(_, due, _)| *due == name) {
            self.due.push((index, name, pk.to_string()));
        }
        Ok(())
    }

    /// Moves the partitions that are due, each whole, into tables of their own.
    pub(super) fn move_due(&mut self, txn: &WriteTransaction) -> StoreResult<()> {
        for (index, name, pk) in std::mem::take(&mut self.due) {
            let moved = match index {
                Index::Primary => move_items(txn, &name, &pk)?,
                Index::Gsi1 | Index::Gsi2 => move_entries(txn, index, &name, &pk)?,
            };
            tracing::debug!(partition = %pk, moved, "a partition moved to a table of its own");
            self.sizes.remove(&name);
            self.own.insert(name);
        }
        Ok(())
    }
}

/// The index and partition of an own table's name.
fn home_of(name: &str) -> Option<(Index, &str)> {
    let (tag, pk) = name.split_once(':')?;
    let index = match tag {
        "items" => Index::Primary,
        "gsi1" => Index::Gsi1,
        "gsi2" => Index::Gsi2,
        _ => return None,
    };
    OWN.iter().any(|prefix| pk.starts_with(prefix)).then_some((index, pk))
}

/// The shared items table's range of partition `pk`.
pub(super) fn partition(pk: &str) -> std::ops::RangeInclusive<(&str, &str)> {
    (pk, "")..=(pk, super::HIGH)
}

/// A shared index table's range of index partition `pk`.
pub(super) fn filed(pk: &str) -> std::ops::RangeInclusive<(&str, &str, &str, &str)> {
    (pk, "", "", "")..=(pk, super::HIGH, super::HIGH, super::HIGH)
}

/// How many of a partition's items one step of a move holds in memory.
const MOVE_STEP: usize = 10_000;

/// Moves partition `pk`'s items from the shared table to its own, `name`. Returns how many.
fn move_items(txn: &WriteTransaction, name: &str, pk: &str) -> StoreResult<usize> {
    let (mut shared, mut own) = (txn.open_table(ITEMS).map_err(backend)?, txn.open_table(OwnItems::new(name)).map_err(backend)?);
    let mut moved = 0;
    loop {
        let step: Vec<(String, Vec<u8>)> = shared
            .range::<(&str, &str)>(partition(pk))
            .map_err(backend)?
            .take(MOVE_STEP)
            .map(|entry| entry.map(|(k, v)| (k.value().1.to_string(), v.value().to_vec())))
            .collect::<Result<_, _>>()
            .map_err(backend)?;
        if step.is_empty() {
            return Ok(moved);
        }
        moved += step.len();
        for (sk, bytes) in step {
            own.insert(sk.as_str(), bytes.as_slice()).map_err(backend)?;
            shared.remove((pk, sk.as_str())).map_err(backend)?;
        }
    }
}

/// Moves index partition `pk`'s entries from the shared index table to its own, `name`.
fn move_entries(txn: &WriteTransaction, index: Index, name: &str, pk: &str) -> StoreResult<usize> {
    let mut shared = txn.open_table(if index == Index::Gsi1 { GSI1 } else { GSI2 }).map_err(backend)?;
    let mut own = txn.open_table(OwnIndex::new(name)).map_err(backend)?;
    let mut moved = 0;
    loop {
        let step: Vec<[String; 3]> = shared
            .range::<(&str, &str, &str, &str)>(filed(pk))
            .map_err(backend)?
            .take(MOVE_STEP)
            .map(|entry| {
                entry.map(|(k, _)| {
                    let (_, gsk, ipk, isk) = k.value();
                    [gsk, ipk, isk].map(str::to_string)
                })
            })
            .collect::<Result<_, _>>()
            .map_err(backend)?;
        if step.is_empty() {
            return Ok(moved);
        }
        moved += step.len();
        for [gsk, ipk, isk] in step {
            own.insert((gsk.as_str(), ipk.as_str(), isk.as_str()), ()).map_err(backend)?;
            shared.remove((pk, gsk.as_str(), ipk.as_str(), isk.as_str())).map_err(backend)?;
        }
    }
}
