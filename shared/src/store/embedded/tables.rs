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
//! partition moves whole, in one commit, and so at most `MOVE_MAX` items or entries: one that
//! an older version let grow past that stays in the shared table.

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

/// The most items (or entries) a partition moves with. A move is one commit, which holds what
/// it writes in memory until it ends, while the log and the overlay hold every write made
/// meanwhile: an older version's partition of 200,000 records took 2.6 s and 225 MB to move,
/// 400,000 took 5.8 s and 393 MB. A partition grows past `PROMOTE_AT` in the shared table only
/// where an older version wrote it, and one that grew past this stays there, as it was.
pub(super) const MOVE_MAX: usize = 20_000;

/// How far a partition's items are counted, the first time one grows: far enough to tell one
/// too big to move.
pub(super) const COUNT_UPTO: usize = MOVE_MAX + 1;

/// How many partitions' sizes the committer keeps. Past it, it forgets them all, and counts
/// each again from redb when it next grows: a caller that names a new model on every request
/// makes a new by-model partition each time.
const SIZES_MAX: usize = 100_000;

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
    due: Vec<Due>,
}

/// A partition due to move: its index, its own table's name and its partition key.
type Due = (Index, String, String);

impl Homes {
    /// Finds the tables of their own that redb holds. Moves into them whatever an earlier
    /// version, which knew nothing of them, wrote to the shared tables for their partitions,
    /// `MOVE_STEP` items or entries a commit: nobody reads before the store has opened, and a
    /// crash in between leaves the rest to move at the next opening. (An earlier version may
    /// have run for long: its writes there are not bounded by `MOVE_MAX`.)
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
        for (index, name, pk) in std::mem::take(&mut homes.due) {
            let moved = in_steps(|| {
                let txn = db.begin_write().map_err(backend)?;
                let step = move_step(&txn, index, &name, &pk)?;
                txn.commit().map_err(backend)?;
                Ok(step)
            })?;
            tracing::info!(partition = %pk, moved, "moved what an earlier version wrote to the shared table to the partition's own");
        }
        Ok(homes)
    }

    pub(super) fn has_own(&self, name: &str) -> bool {
        self.own.contains(name)
    }

    /// Notes one more item (or entry) of partition `pk` of `index` in its shared table, whose
    /// own table would be `name`; `counted` counts what the shared table holds of it, the first
    /// time (up to `COUNT_UPTO`). At `PROMOTE_AT`, the partition is due to move at the commit's
    /// end, unless it holds more than `MOVE_MAX`.
    pub(super) fn grew(&mut self, index: Index, name: String, pk: &str, counted: impl FnOnce() -> StoreResult<usize>) -> StoreResult<()> {
        let size = match self.sizes.get_mut(&name) {
            Some(size) => {
                *size = size.saturating_add(1);
                *size
            }
            None => {
                if self.sizes.len() >= SIZES_MAX {
                    self.sizes.clear();
                }
                *self.sizes.entry(name.clone()).or_insert(counted()?)
            }
        };
        if (PROMOTE_AT..=MOVE_MAX).contains(&size) && !self.due.iter().any(|(_, due, _)| *due == name) {
            self.due.push((index, name, pk.to_string()));
        }
        Ok(())
    }

    /// Moves the partitions that are due, each whole, into tables of their own.
    pub(super) fn move_due(&mut self, txn: &WriteTransaction) -> StoreResult<()> {
        for (index, name, pk) in std::mem::take(&mut self.due) {
            let moved = in_steps(|| move_step(txn, index, &name, &pk))?;
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
pub(super) const MOVE_STEP: usize = 10_000;

/// Runs `step` until one moves fewer than `MOVE_STEP` (nothing left); returns how many moved.
fn in_steps(mut step: impl FnMut() -> StoreResult<usize>) -> StoreResult<usize> {
    let mut moved = 0;
    loop {
        let done = step()?;
        moved += done;
        if done < MOVE_STEP {
            return Ok(moved);
        }
    }
}

/// Moves up to `MOVE_STEP` of partition `pk`'s items (or index entries) from the shared table
/// to its own, `name`, in `txn`. Returns how many: fewer than `MOVE_STEP` once none is left.
fn move_step(txn: &WriteTransaction, index: Index, name: &str, pk: &str) -> StoreResult<usize> {
    if index == Index::Primary {
        let (mut shared, mut own) = (txn.open_table(ITEMS).map_err(backend)?, txn.open_table(OwnItems::new(name)).map_err(backend)?);
        let step: Vec<(String, Vec<u8>)> = shared
            .range::<(&str, &str)>(partition(pk))
            .map_err(backend)?
            .take(MOVE_STEP)
            .map(|entry| entry.map(|(k, v)| (k.value().1.to_string(), v.value().to_vec())))
            .collect::<Result<_, _>>()
            .map_err(backend)?;
        for (sk, bytes) in &step {
            own.insert(sk.as_str(), bytes.as_slice()).map_err(backend)?;
            shared.remove((pk, sk.as_str())).map_err(backend)?;
        }
        return Ok(step.len());
    }
    let mut shared = txn.open_table(super::shared_index(index)).map_err(backend)?;
    let mut own = txn.open_table(OwnIndex::new(name)).map_err(backend)?;
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
    for [gsk, ipk, isk] in &step {
        own.insert((gsk.as_str(), ipk.as_str(), isk.as_str()), ()).map_err(backend)?;
        shared.remove((pk, gsk.as_str(), ipk.as_str(), isk.as_str())).map_err(backend)?;
    }
    Ok(step.len())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn homes() -> Homes {
        Homes { own: HashSet::new(), sizes: HashMap::new(), due: Vec::new() }
    }

    #[test]
    fn a_partition_is_due_from_promote_at_up_to_move_max_and_never_past_it() {
        let mut homes = homes();
        let grow = |homes: &mut Homes, pk: &str, counted: usize| homes.grew(Index::Primary, ["items:", pk].concat(), pk, || Ok(counted)).unwrap();
        grow(&mut homes, "USAGE#small", PROMOTE_AT - 1);
        grow(&mut homes, "USAGE#big", COUNT_UPTO);
        grow(&mut homes, "USAGE#big", COUNT_UPTO);
        assert!(homes.due.is_empty());
        grow(&mut homes, "USAGE#small", 0);
        grow(&mut homes, "USAGE#most", MOVE_MAX);
        let due: Vec<&str> = homes.due.iter().map(|(_, _, pk)| pk.as_str()).collect();
        assert_eq!(due, ["USAGE#small", "USAGE#most"]);
    }

    #[test]
    fn past_sizes_max_partitions_the_sizes_are_forgotten_and_counted_again() {
        let mut homes = homes();
        let counts = Cell::new(0);
        let grow = |homes: &mut Homes, pk: &str| {
            homes
                .grew(Index::Gsi1, ["gsi1:", pk].concat(), pk, || {
                    counts.set(counts.get() + 1);
                    Ok(1)
                })
                .unwrap()
        };
        for i in 0..SIZES_MAX {
            grow(&mut homes, &format!("USAGEM#o#m{i}"));
        }
        grow(&mut homes, "USAGEM#o#m0");
        assert_eq!((homes.sizes.len(), counts.get()), (SIZES_MAX, SIZES_MAX), "kept, and counted once each");
        grow(&mut homes, "USAGEM#o#new");
        assert_eq!(homes.sizes.len(), 1, "forgotten, but for the new one");
        grow(&mut homes, "USAGEM#o#m0");
        assert_eq!((homes.sizes.len(), counts.get()), (2, SIZES_MAX + 2), "counted again");
    }
}
