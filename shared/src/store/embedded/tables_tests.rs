//! Partitions that move to tables of their own (`tables`): the same operations give the same
//! answers as in the shared tables, with redb and the overlay both holding parts of a partition;
//! a partition moves whole once it is big enough, not before; what an earlier version wrote to
//! the shared tables for a partition that has moved is moved at opening; the log's replay
//! reads and writes where a partition is.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableHandle};

use super::tables::{MOVE_MAX, MOVE_STEP, OwnIndex, OwnItems, PROMOTE_AT};
use super::tests::{NEVER, crash_copy};
use super::{EmbeddedStore, GSI1, GSI2, ITEMS, codec};
use crate::store::{Attr, Cond, Index, Item, Key, Query, Store, StoreError, Update, keyed_item, set_index};

/// The names of a scenario's partitions: items, and the two index partitions they are filed in.
struct Names {
    pk: &'static str,
    by_model: &'static str,
    other_model: &'static str,
    by_outcome: &'static str,
}

const SHARED: Names = Names { pk: "SHARED#o", by_model: "SM#o#m", other_model: "SM#o#n", by_outcome: "SO#o#ok" };
const OWN: Names = Names { pk: "USAGE#o", by_model: "USAGEM#o#m", other_model: "USAGEM#o#n", by_outcome: "USAGEO#o#ok" };

fn sk(i: u32) -> String {
    format!("2026-01-0{i}#r{i}")
}

fn item(names: &Names, i: u32, by_model: &str) -> Item {
    filed(names, &sk(i), i, by_model)
}

/// An item of a month before the scenario's, which its queries leave out: enough of them make
/// the scenario's partitions big enough to move.
fn filler(names: &Names, i: u32) -> Item {
    filed(names, &format!("2025-12-{i:02}#f{i}"), i, names.by_model)
}

fn filed(names: &Names, sk: &str, n: u32, by_model: &str) -> Item {
    let mut item = keyed_item(&serde_json::json!({"n": n}), &Key::new(names.pk, sk)).unwrap();
    set_index(&mut item, Index::Gsi1, by_model, ["ok#", sk].concat());
    set_index(&mut item, Index::Gsi2, names.by_outcome, sk);
    item
}

const FILLERS: u32 = PROMOTE_AT as u32;

/// Each page of `query`, `size` at a time, as each item's sort key and `n` (a page ends the
/// query when nothing follows it, so none is empty).
async fn pages(store: &EmbeddedStore, query: Query, size: usize) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.query(query.clone().limit(size).cursor(cursor)).await.unwrap();
        pages.push(page.items.iter().map(|i| format!("{}={}", i["SK"].as_str().unwrap(), i["n"].as_i64().unwrap())).collect());
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return pages,
        }
    }
}

/// What a client sees of the scenario's partitions: every key, and each query both ways a page
/// at a time.
async fn seen(store: &EmbeddedStore, names: &Names) -> Vec<Vec<String>> {
    let mut seen = Vec::new();
    for i in 1..=7 {
        let got = store.get(&Key::new(names.pk, sk(i))).await.unwrap();
        seen.push(vec![got.map_or("absent".into(), |item| item["n"].as_i64().unwrap().to_string())]);
    }
    for query in [
        Query::new(Index::Primary, names.pk).prefix("2026"),
        Query::new(Index::Primary, names.pk).prefix("2026").backward(),
        Query::new(Index::Primary, names.pk).between(sk(2), sk(6)).backward(),
        Query::new(Index::Primary, names.pk).prefix("2026-01-05"),
        Query::new(Index::Gsi1, names.by_model).prefix("ok#2026"),
        Query::new(Index::Gsi1, names.by_model).backward().prefix("ok#2026"),
        Query::new(Index::Gsi1, names.other_model),
        Query::new(Index::Gsi2, names.by_outcome).prefix("2026").backward(),
    ] {
        seen.extend(pages(store, query, 2).await);
    }
    seen
}

/// Writes items 1-5 and the fillers and commits them to redb (the own partitions move to their
/// tables then, all but the other model's index partition, which is too small); then, in the overlay, items 6 and 7, an update
/// of 1, item 3 filed under another model, item 2 deleted, and a put refused because item 4
/// exists (read from redb). Returns what is seen then, and after a reopening.
async fn scenario(path: &Path, names: &Names) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let store = EmbeddedStore::open(path).unwrap();
    for i in 1..=5 {
        store.put(item(names, i, names.by_model), None).await.unwrap();
    }
    for i in 1..=FILLERS {
        store.put(filler(names, i), None).await.unwrap();
    }
    drop(store);
    let store = EmbeddedStore::open(path).unwrap();
    for i in 6..=7 {
        store.put(item(names, i, names.by_model), None).await.unwrap();
    }
    store.update(&Key::new(names.pk, sk(1)), Update::default().add("n", 10), None).await.unwrap();
    store.put(item(names, 3, names.other_model), None).await.unwrap();
    store.delete(&Key::new(names.pk, sk(2)), None).await.unwrap();
    let refused = store.put(item(names, 4, names.by_model), Some(Cond::NotExists)).await;
    assert!(matches!(refused, Err(StoreError::ConditionFailed)), "{refused:?}");
    let before = seen(&store, names).await;
    drop(store);
    let after = seen(&EmbeddedStore::open(path).unwrap(), names).await;
    (before, after)
}

#[tokio::test]
async fn own_partitions_answer_as_shared_ones_do() {
    let dir = tempfile::tempdir().unwrap();
    let (shared, shared_reopened) = scenario(&dir.path().join("shared"), &SHARED).await;
    let (own, own_reopened) = scenario(&dir.path().join("own"), &OWN).await;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let expected: Vec<Vec<String>> = vec![
        s(&["11"]),
        s(&["absent"]),
        s(&["3"]),
        s(&["4"]),
        s(&["5"]),
        s(&["6"]),
        s(&["7"]),
        // Forward, two a page.
        s(&["2026-01-01#r1=11", "2026-01-03#r3=3"]),
        s(&["2026-01-04#r4=4", "2026-01-05#r5=5"]),
        s(&["2026-01-06#r6=6", "2026-01-07#r7=7"]),
        // Backward.
        s(&["2026-01-07#r7=7", "2026-01-06#r6=6"]),
        s(&["2026-01-05#r5=5", "2026-01-04#r4=4"]),
        s(&["2026-01-03#r3=3", "2026-01-01#r1=11"]),
        // Between items 2 and 6, backward.
        s(&["2026-01-06#r6=6", "2026-01-05#r5=5"]),
        s(&["2026-01-04#r4=4", "2026-01-03#r3=3"]),
        // A prefix.
        s(&["2026-01-05#r5=5"]),
        // The model's index: item 3 has moved to the other model's, item 2 is gone.
        s(&["2026-01-01#r1=11", "2026-01-04#r4=4"]),
        s(&["2026-01-05#r5=5", "2026-01-06#r6=6"]),
        s(&["2026-01-07#r7=7"]),
        s(&["2026-01-07#r7=7", "2026-01-06#r6=6"]),
        s(&["2026-01-05#r5=5", "2026-01-04#r4=4"]),
        s(&["2026-01-01#r1=11"]),
        s(&["2026-01-03#r3=3"]),
        // The outcome's index, backward.
        s(&["2026-01-07#r7=7", "2026-01-06#r6=6"]),
        s(&["2026-01-05#r5=5", "2026-01-04#r4=4"]),
        s(&["2026-01-03#r3=3", "2026-01-01#r1=11"]),
    ];
    assert_eq!(shared, expected);
    assert_eq!(shared_reopened, expected);
    assert_eq!(own, expected);
    assert_eq!(own_reopened, expected);

    // The shared tables hold nothing of the partitions that moved, and what they hold is in their
    // own tables; the other model's index partition, with one entry, stays in the shared table.
    let db = Database::open(dir.path().join("own")).unwrap();
    let read = db.begin_read().unwrap();
    assert_eq!(read.open_table(ITEMS).unwrap().len().unwrap(), 0);
    assert_eq!((read.open_table(GSI1).unwrap().len().unwrap(), read.open_table(GSI2).unwrap().len().unwrap()), (1, 0));
    let fillers = u64::from(FILLERS);
    assert_eq!(read.open_table(OwnItems::new("items:USAGE#o")).unwrap().len().unwrap(), 6 + fillers);
    assert_eq!(read.open_table(OwnIndex::new("gsi1:USAGEM#o#m")).unwrap().len().unwrap(), 5 + fillers);
    assert_eq!(read.open_table(OwnIndex::new("gsi2:USAGEO#o#ok")).unwrap().len().unwrap(), 6 + fillers);
    assert!(read.open_table(OwnIndex::new("gsi1:USAGEM#o#n")).is_err(), "too small to move");
}

/// Whether partition `pk` has a table of its own in the store at `path`, and how many items it
/// holds in the shared table.
fn where_is(path: &Path, pk: &str) -> (bool, usize) {
    let db = Database::open(path).unwrap();
    let read = db.begin_read().unwrap();
    let own = read.list_tables().unwrap().any(|t| t.name() == ["items:", pk].concat());
    let shared = read.open_table(ITEMS).unwrap().range::<(&str, &str)>((pk, "")..=(pk, "~")).unwrap().count();
    (own, shared)
}

#[tokio::test]
async fn a_partition_moves_whole_once_it_is_big_enough() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = EmbeddedStore::open(&path).unwrap();
    for i in 1..PROMOTE_AT as u32 {
        store.put(filler(&OWN, i), None).await.unwrap();
    }
    drop(store);
    assert_eq!(where_is(&path, OWN.pk), (false, PROMOTE_AT - 1), "one short: still shared");
    // After a restart, the partition's size is counted from what redb holds.
    let store = EmbeddedStore::open(&path).unwrap();
    store.put(filler(&OWN, PROMOTE_AT as u32), None).await.unwrap();
    drop(store);
    assert_eq!(where_is(&path, OWN.pk), (true, 0), "moved whole");
    let store = EmbeddedStore::open(&path).unwrap();
    let all = pages(&store, Query::new(Index::Primary, OWN.pk), 1000).await.concat();
    assert_eq!(all.len(), PROMOTE_AT);
    assert_eq!(all[0], "2025-12-01#f1=1");
    assert_eq!(pages(&store, Query::new(Index::Gsi2, OWN.by_outcome).backward().limit(1), 1).await.len(), PROMOTE_AT);
}

/// A store in `dir` whose partition `OWN.pk` has moved to its own table; its file's path.
async fn moved_partition(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("db");
    let store = EmbeddedStore::open(&path).unwrap();
    for i in 1..=FILLERS {
        store.put(filler(&OWN, i), None).await.unwrap();
    }
    drop(store);
    assert_eq!(where_is(&path, OWN.pk), (true, 0));
    path
}

#[tokio::test]
async fn what_an_earlier_version_wrote_to_the_shared_table_for_a_moved_partition_is_moved_at_opening() {
    let dir = tempfile::tempdir().unwrap();
    let path = moved_partition(dir.path()).await;
    // An earlier version, which knows nothing of tables of their own, ran on this file.
    {
        let db = Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let item = item(&OWN, 1, OWN.by_model);
            txn.open_table(ITEMS).unwrap().insert((OWN.pk, sk(1).as_str()), codec::encode(&item).as_slice()).unwrap();
            txn.open_table(GSI2).unwrap().insert((OWN.by_outcome, sk(1).as_str(), OWN.pk, sk(1).as_str()), ()).unwrap();
        }
        txn.commit().unwrap();
    }
    assert_eq!(where_is(&path, OWN.pk), (true, 1));
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.get(&Key::new(OWN.pk, sk(1))).await.unwrap().map(|i| i["n"].clone()), Some(Attr::N(1)));
    assert_eq!(pages(&store, Query::new(Index::Gsi2, OWN.by_outcome).prefix("2026"), 5).await, vec![vec!["2026-01-01#r1=1"]]);
    drop(store);
    assert_eq!(where_is(&path, OWN.pk), (true, 0));
}

/// The log's replay after a crash reads what it updates from a partition's own table, and
/// writes there.
#[tokio::test]
async fn a_crash_before_redb_takes_an_own_partitions_writes_replays_them_there() {
    let dir = tempfile::tempdir().unwrap();
    let (live, crashed) = (dir.path().join("live"), dir.path().join("crashed"));
    let store = EmbeddedStore::open(&live.join("db")).unwrap();
    store.put(item(&OWN, 1, OWN.by_model), None).await.unwrap();
    for i in 1..=FILLERS {
        store.put(filler(&OWN, i), None).await.unwrap();
    }
    drop(store);
    assert_eq!(where_is(&live.join("db"), OWN.pk), (true, 0));
    // redb never takes these writes while the store runs: only the log can bring them back.
    let store = EmbeddedStore::open_with(&live.join("db"), NEVER).unwrap();
    store.update(&Key::new(OWN.pk, sk(1)), Update::default().add("n", 10), None).await.unwrap();
    store.put(item(&OWN, 2, OWN.other_model), None).await.unwrap();
    crash_copy(&live, &crashed, true);
    drop(store);
    let restarted = EmbeddedStore::open(&crashed.join("db")).unwrap();
    assert_eq!(pages(&restarted, Query::new(Index::Primary, OWN.pk).prefix("2026"), 5).await, vec![vec!["2026-01-01#r1=11", "2026-01-02#r2=2"]]);
    assert_eq!(pages(&restarted, Query::new(Index::Gsi1, OWN.other_model), 5).await, vec![vec!["2026-01-02#r2=2"]]);
}

/// Writes `n` items of partition `pk` (and their entries in its by-outcome index partition)
/// straight into redb's shared tables, as a version that knew nothing of tables of their own
/// did: sort keys `old-<i>`.
fn written_by_an_earlier_version(path: &Path, names: &Names, n: usize) {
    let db = Database::open(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let (mut items, mut gsi2) = (txn.open_table(ITEMS).unwrap(), txn.open_table(GSI2).unwrap());
        for i in 0..n {
            let sk = format!("old-{i:06}");
            let mut item = keyed_item(&serde_json::json!({"n": i}), &Key::new(names.pk, sk.as_str())).unwrap();
            set_index(&mut item, Index::Gsi2, names.by_outcome, sk.as_str());
            items.insert((names.pk, sk.as_str()), codec::encode(&item).as_slice()).unwrap();
            gsi2.insert((names.by_outcome, sk.as_str(), names.pk, sk.as_str()), ()).unwrap();
        }
    }
    txn.commit().unwrap();
}

#[tokio::test]
async fn a_partition_an_earlier_version_let_grow_past_move_max_stays_shared() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(EmbeddedStore::open(&path).unwrap());
    written_by_an_earlier_version(&path, &OWN, MOVE_MAX + 1);
    let store = EmbeddedStore::open(&path).unwrap();
    store.put(item(&OWN, 1, OWN.by_model), None).await.unwrap();
    drop(store);
    // Moving it would be one commit of all of it: it stays where it is, and reads as before.
    assert_eq!(where_is(&path, OWN.pk), (false, MOVE_MAX + 2));
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(pages(&store, Query::new(Index::Primary, OWN.pk), 1000).await.concat().len(), MOVE_MAX + 2);
    assert_eq!(pages(&store, Query::new(Index::Gsi2, OWN.by_outcome).prefix("old-").backward(), 5000).await.concat().len(), MOVE_MAX + 1);
    assert_eq!(store.get(&Key::new(OWN.pk, "old-000007")).await.unwrap().map(|i| i["n"].clone()), Some(Attr::N(7)));
}

#[tokio::test]
async fn what_an_earlier_version_wrote_for_a_moved_partition_moves_at_opening_however_much() {
    let dir = tempfile::tempdir().unwrap();
    let path = moved_partition(dir.path()).await;
    // More than one commit's step of it: it moves a step at a time, all of it.
    let left = MOVE_STEP + 3;
    written_by_an_earlier_version(&path, &OWN, left);
    assert_eq!(where_is(&path, OWN.pk), (true, left));
    let store = EmbeddedStore::open(&path).unwrap();
    drop(store);
    assert_eq!(where_is(&path, OWN.pk), (true, 0));
    let store = EmbeddedStore::open(&path).unwrap();
    let all = pages(&store, Query::new(Index::Primary, OWN.pk), 2000).await.concat();
    assert_eq!(all.len(), FILLERS as usize + left);
    assert_eq!(all.last().map(String::as_str), Some(format!("old-{:06}={}", left - 1, left - 1).as_str()));
    assert_eq!(pages(&store, Query::new(Index::Gsi2, OWN.by_outcome).prefix("old-"), 5000).await.concat().len(), left);
}
