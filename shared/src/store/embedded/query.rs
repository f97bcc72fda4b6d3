//! A query's read of redb: one partition's range, in the shared table or the partition's own
//! (see `tables`), its items merged with what the overlay decides.

use std::ops::Bound;

use redb::{ReadOnlyTable, StorageError};

use super::tables::{Bytes, Filed, OwnIndex, OwnItems, missing_is_empty, own_table};
use super::{HIGH, Overlaid, backend, codec, index_entry, position, shared_index};
use crate::store::{Index, Item, Key, Page, Query, StoreResult, is_expired, now_epoch};

pub(super) fn query_sync(q: &Query, lo: &str, hi: &str, after: Option<&(String, String, String)>, overlaid: Overlaid) -> StoreResult<Page> {
    let now = now_epoch();
    let Overlaid { keys, matching, redb: mut reader } = overlaid;
    let want = q.limit + 1;
    let mut found: Vec<Item> = Vec::new();
    let pk = q.pk.as_str();
    // Items the overlay decides are taken from it, not from redb.
    let mut take = |key: Key, item: Option<Item>| {
        if let Some(item) = item.filter(|i| !is_expired(i, now) && !keys.contains(&key)) {
            found.push(item);
        }
        found.len() == want
    };
    let cursor = after.map(|(isk, cpk, csk)| (isk.as_str(), cpk.as_str(), csk.as_str()));

    // Where the partition is in this snapshot: in its own table if it has one, else in the shared one.
    let home = match own_table(q.index, pk) {
        None => Home::Shared,
        Some(name) if q.index == Index::Primary => missing_is_empty(reader.txn().open_table(OwnItems::new(&name)))?.map_or(Home::Shared, Home::Items),
        Some(name) => missing_is_empty(reader.txn().open_table(OwnIndex::new(&name)))?.map_or(Home::Shared, Home::Entries),
    };
    match (q.index, home) {
        (Index::Primary, Home::Shared) => {
            let (lower, upper) = narrowed((pk, lo), (pk, hi), cursor.map(|(sk, _, _)| (sk, (pk, sk))), q.forward, lo, hi);
            if bounds_ok(&lower, &upper) {
                walk(reader.items().range::<(&str, &str)>((lower, upper)).map_err(backend)?, q.forward, |(k, value)| {
                    let (ipk, isk) = k.value();
                    let key = Key::new(ipk, isk);
                    let item = codec::decode(&key, value.value())?;
                    Ok(take(key, Some(item)))
                })?;
            }
        }
        (_, Home::Items(table)) => {
            let (lower, upper) = narrowed(lo, hi, cursor.map(|(sk, _, _)| (sk, sk)), q.forward, lo, hi);
            if bounds_ok(&lower, &upper) {
                walk(table.range::<&str>((lower, upper)).map_err(backend)?, q.forward, |(k, value)| {
                    let key = Key::new(pk, k.value());
                    let item = codec::decode(&key, value.value())?;
                    Ok(take(key, Some(item)))
                })?;
            }
        }
        (index, Home::Shared) => {
            let table = reader.txn().open_table(shared_index(index)).map_err(backend)?;
            let (lower, upper) = narrowed((pk, lo, "", ""), (pk, hi, HIGH, HIGH), cursor.map(|(isk, cpk, csk)| (isk, (pk, isk, cpk, csk))), q.forward, lo, hi);
            if bounds_ok(&lower, &upper) {
                walk(table.range::<(&str, &str, &str, &str)>((lower, upper)).map_err(backend)?, q.forward, |(k, _)| {
                    let (gpk, gsk, ipk, isk) = k.value();
                    let key = Key::new(ipk, isk);
                    // Only while the item is still filed there (see `Tables::write`).
                    let item = reader.get(&key)?.filter(|item| index_entry(item, index) == Some((gpk, gsk)));
                    Ok(take(key, item))
                })?;
            }
        }
        (index, Home::Entries(table)) => {
            let (lower, upper) = narrowed((lo, "", ""), (hi, HIGH, HIGH), cursor.map(|c| (c.0, c)), q.forward, lo, hi);
            if bounds_ok(&lower, &upper) {
                walk(table.range::<(&str, &str, &str)>((lower, upper)).map_err(backend)?, q.forward, |(k, _)| {
                    let (gsk, ipk, isk) = k.value();
                    let key = Key::new(ipk, isk);
                    let item = reader.get(&key)?.filter(|item| index_entry(item, index) == Some((pk, gsk)));
                    Ok(take(key, item))
                })?;
            }
        }
    }
    found.extend(matching);
    found.sort_by_cached_key(|item| position(item, q.index));
    if !q.forward {
        found.reverse();
    }
    Ok(crate::store::page_of(found, q.limit, q.index))
}

/// Where a partition is in one snapshot (see `tables`).
enum Home {
    Shared,
    Items(ReadOnlyTable<&'static str, Bytes>),
    Entries(ReadOnlyTable<Filed, ()>),
}

/// The range from `lower` to `upper`, past the cursor (`at`: its index sort key, and the table
/// key it stands for) when there is one. A cursor narrows the range; one outside it (a client's
/// own) does not widen it.
fn narrowed<K>(lower: K, upper: K, at: Option<(&str, K)>, forward: bool, lo: &str, hi: &str) -> (Bound<K>, Bound<K>) {
    match at {
        Some((sk, at)) if forward && sk >= lo => (Bound::Excluded(at), Bound::Included(upper)),
        Some((sk, at)) if !forward && sk <= hi => (Bound::Included(lower), Bound::Excluded(at)),
        _ => (Bound::Included(lower), Bound::Included(upper)),
    }
}

/// Hands `range`'s entries to `take`, forward or backward, until it says it has enough.
fn walk<T>(range: impl DoubleEndedIterator<Item = Result<T, StorageError>>, forward: bool, mut take: impl FnMut(T) -> StoreResult<bool>) -> StoreResult<()> {
    let entries: Box<dyn Iterator<Item = _>> = if forward { Box::new(range) } else { Box::new(range.rev()) };
    for entry in entries {
        if take(entry.map_err(backend)?)? {
            break;
        }
    }
    Ok(())
}

/// redb panics on a range whose start lies after its end; such a range is simply empty.
fn bounds_ok<T: PartialOrd>(lower: &Bound<T>, upper: &Bound<T>) -> bool {
    match (lower, upper) {
        (Bound::Included(a), Bound::Included(b)) => a <= b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a < b,
        _ => true,
    }
}
