//! Reads that merge the overlay with redb: a query takes from the overlay only what decides its
//! range, a put waiting in its stored form reads as its item, and a query reads redb as it
//! stood when it read the overlay.

use std::time::Duration;

use super::EmbeddedStore;
use super::tests::NEVER;
use crate::store::{Attr, Key, Store, Update};

/// A primary query takes from the overlay only the keys of its own partition and range, and
/// those still decide over what redb holds: an item written again since redb's commit is
/// listed once, in its new version, one deleted since is not listed, and items pending in the
/// neighbouring partitions (`P0`, `O`) or outside the range are left out, whichever way the
/// query pages.
#[tokio::test]
async fn a_primary_query_sees_the_overlays_versions_of_its_own_range_only() {
    use crate::store::{Index, Query, keyed_item};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let put = |store: EmbeddedStore, pk: &'static str, sk: &'static str, v: i64| async move {
        store.put(keyed_item(&serde_json::json!({ "v": v }), &Key::new(pk, sk)).unwrap(), None).await.unwrap();
    };
    let store = EmbeddedStore::open(&path).unwrap();
    for sk in ["a", "b", "c", "d", "e"] {
        put(store.clone(), "P", sk, 1).await;
    }
    put(store.clone(), "P0", "a", 1).await;
    drop(store);
    // Committed to redb by the close; from here on every write stays in the overlay.
    let store = EmbeddedStore::open_with(&path, NEVER).unwrap();
    put(store.clone(), "P", "b", 2).await;
    put(store.clone(), "P", "e", 2).await;
    put(store.clone(), "P", "f", 2).await;
    store.delete(&Key::new("P", "d"), None).await.unwrap();
    put(store.clone(), "P0", "a", 2).await;
    put(store.clone(), "P0", "b", 2).await;
    put(store.clone(), "O", "z", 2).await;
    let listed = |items: &[crate::store::Item]| -> Vec<(String, i64)> {
        items.iter().map(|i| (i["SK"].as_str().unwrap().to_string(), i["v"].as_i64().unwrap())).collect()
    };
    let owned = |pairs: &[(&str, i64)]| pairs.iter().map(|(sk, v)| (sk.to_string(), *v)).collect::<Vec<_>>();

    let all = store.query(Query::new(Index::Primary, "P")).await.unwrap();
    assert_eq!(listed(&all.items), owned(&[("a", 1), ("b", 2), ("c", 1), ("e", 2), ("f", 2)]));
    let between = store.query(Query::new(Index::Primary, "P").between("b", "e")).await.unwrap();
    assert_eq!(listed(&between.items), owned(&[("b", 2), ("c", 1), ("e", 2)]), "both ends included");
    let prefixed = store.query(Query::new(Index::Primary, "P").prefix("e")).await.unwrap();
    assert_eq!(listed(&prefixed.items), owned(&[("e", 2)]));
    // A cursor from another query, before this one's range, does not widen it.
    let first = store.query(Query::new(Index::Primary, "P").limit(1)).await.unwrap();
    let narrowed = store.query(Query::new(Index::Primary, "P").between("c", "f").cursor(first.cursor)).await.unwrap();
    assert_eq!(listed(&narrowed.items), owned(&[("c", 1), ("e", 2), ("f", 2)]));
    let reversed = store.query(Query::new(Index::Primary, "P").between("e", "b")).await.unwrap();
    assert!(reversed.items.is_empty(), "a range whose start lies after its end is empty");
    assert_eq!(listed(&store.query(Query::new(Index::Primary, "P0")).await.unwrap().items), owned(&[("a", 2), ("b", 2)]));
    // Two at a time, both ways: each item once, in order.
    for backward in [false, true] {
        let (mut seen, mut cursor) = (Vec::new(), None);
        loop {
            let query = Query::new(Index::Primary, "P").limit(2).cursor(cursor);
            let page = store.query(if backward { query.backward() } else { query }).await.unwrap();
            seen.extend(listed(&page.items));
            cursor = page.cursor;
            if cursor.is_none() {
                break;
            }
        }
        let mut want = owned(&[("a", 1), ("b", 2), ("c", 1), ("e", 2), ("f", 2)]);
        if backward {
            want.reverse();
        }
        assert_eq!(seen, want, "backward: {backward}");
    }
}

/// A put waits in the overlay in its stored form, not as the item: every read of it (a get, a
/// condition, an update, a query by either index) gets the item it stands for, and redb gets
/// the last version of each.
#[tokio::test]
async fn a_put_kept_in_its_stored_form_reads_as_its_item() {
    use crate::store::{Cond, Index, Query, StoreError, keyed_item, set_index};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let item = |sk: &str, v: i64, gsi: &str| {
        let mut item = keyed_item(&serde_json::json!({ "v": v, "note": "kept encoded" }), &Key::new("S", sk)).unwrap();
        set_index(&mut item, Index::Gsi1, gsi, sk);
        item
    };
    let store = EmbeddedStore::open_with(&path, NEVER).unwrap();
    store.put(item("a", 1, "G"), None).await.unwrap();
    store.put(item("b", 2, "H"), None).await.unwrap();
    assert_eq!(store.get(&Key::new("S", "a")).await.unwrap(), Some(item("a", 1, "G")));
    // A condition and an update read the put version.
    let refused = store.put(item("a", 9, "G"), Some(Cond::NotExists)).await;
    assert!(matches!(refused, Err(StoreError::ConditionFailed)), "{refused:?}");
    let updated = store.update(&Key::new("S", "a"), Update::default().add("v", 10), Some(Cond::Eq("v".into(), Attr::N(1)))).await.unwrap();
    assert_eq!(updated.get("v"), Some(&Attr::N(11)));
    assert_eq!(updated.get("note"), Some(&Attr::S("kept encoded".into())));
    // Queries by either index see each item once, as it now stands.
    let by_gsi = |pk: &'static str| {
        let store = store.clone();
        async move { store.query(Query::new(Index::Gsi1, pk)).await.unwrap().items }
    };
    assert_eq!(by_gsi("G").await.iter().map(|i| i["v"].as_i64()).collect::<Vec<_>>(), [Some(11)]);
    assert_eq!(by_gsi("H").await, [item("b", 2, "H")]);
    assert!(by_gsi("S").await.is_empty(), "filed under its index key, not its partition");
    let primary = store.query(Query::new(Index::Primary, "S")).await.unwrap().items;
    assert_eq!(primary.iter().map(|i| i["v"].as_i64()).collect::<Vec<_>>(), [Some(11), Some(2)]);
    drop(store);
    // Now redb files `b` under H; the put kept encoded moves it, and redb's entry must not show.
    let store = EmbeddedStore::open_with(&path, NEVER).unwrap();
    let by_gsi = |index: Index, pk: &'static str| {
        let store = store.clone();
        async move { store.query(Query::new(index, pk)).await.unwrap().items }
    };
    assert_eq!(by_gsi(Index::Gsi1, "H").await, [item("b", 2, "H")], "from redb");
    let mut moved = item("b", 3, "J");
    set_index(&mut moved, Index::Gsi2, "K", "b");
    store.put(moved.clone(), None).await.unwrap();
    assert!(by_gsi(Index::Gsi1, "H").await.is_empty(), "moved to another index key");
    assert_eq!(by_gsi(Index::Gsi1, "J").await, [moved.clone()]);
    assert_eq!(by_gsi(Index::Gsi2, "K").await, [moved.clone()]);
    assert!(by_gsi(Index::Gsi2, "J").await.is_empty());
    drop(store);
    let store = EmbeddedStore::open_with(&path, NEVER).unwrap();
    assert_eq!(store.get(&Key::new("S", "b")).await.unwrap(), Some(moved));
    assert_eq!(store.get(&Key::new("S", "a")).await.unwrap().and_then(|i| i["v"].as_i64()), Some(11));
}

/// A query reads redb as it stood when it read the overlay. Here a transaction that changes an
/// item the overlay holds (`a`) and one only redb holds (`b`) is applied, and redb takes it,
/// between the two reads: the query sees neither half of it. When it opened redb only after
/// reading the overlay, it listed the overlay's older `a` beside redb's newer `b`, half of a
/// transaction.
#[tokio::test]
async fn a_query_reads_redb_as_it_stood_when_it_read_the_overlay() {
    use crate::store::{Index, Query, TxOp, keyed_item};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let item = |sk: &str, v: i64| keyed_item(&serde_json::json!({ "v": v }), &Key::new("P", sk)).unwrap();
    let store = EmbeddedStore::open(&path).unwrap();
    store.put(item("a", 0), None).await.unwrap();
    store.put(item("b", 0), None).await.unwrap();
    drop(store);
    // Committed to redb by the close; from here on writes stay in the overlay until it closes.
    let store = EmbeddedStore::open_with(&path, NEVER).unwrap();
    store.put(item("a", 1), None).await.unwrap();
    let query = Query::new(Index::Primary, "P");
    let (lo, hi) = (String::new(), super::HIGH.to_string());
    let overlaid = store.overlaid(&query, &lo, &hi, None).unwrap();
    store.transact(vec![TxOp::Put { item: item("a", 2), cond: None }, TxOp::Put { item: item("b", 2), cond: None }]).await.unwrap();
    // The close makes the committer commit what is pending; redb then holds both at 2.
    store.writes.close();
    for _ in 0..60_000 {
        if store.writes.overlay().dirty.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(store.writes.overlay().dirty.is_empty(), "the committer took the overlay");
    let page = super::query::query_sync(&query, &lo, &hi, None, overlaid).unwrap();
    let seen: Vec<(&str, i64)> = page.items.iter().map(|i| (i["SK"].as_str().unwrap(), i["v"].as_i64().unwrap())).collect();
    assert_eq!(seen, [("a", 1), ("b", 0)], "the store as it stood after `a` became 1, whole");
    let now = super::query::query_sync(&query, &lo, &hi, None, store.overlaid(&query, &lo, &hi, None).unwrap()).unwrap();
    assert_eq!(now.items.iter().map(|i| i["v"].as_i64().unwrap()).collect::<Vec<_>>(), [2, 2], "and then the transaction whole");
}

/// An item whose index sort key is not a string is not filed in that index (redb files only
/// string keys, as DynamoDB does): a query of the index leaves it out while it waits in the
/// overlay, put or updated, as it does once redb holds it.
#[tokio::test]
async fn an_item_whose_index_sort_key_is_not_a_string_is_in_no_query_of_that_index() {
    use crate::store::{Index, Item, Query};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let item = |sk: &str, gsk: Attr| {
        Item::from([("PK".into(), Attr::S("P".into())), ("SK".into(), Attr::S(sk.into())), ("GSI1PK".into(), Attr::S("G".into())), ("GSI1SK".into(), gsk)])
    };
    let listed = |store: EmbeddedStore| async move {
        store.query(Query::new(Index::Gsi1, "G")).await.unwrap().items.iter().map(|i| i["SK"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let store = EmbeddedStore::open_with(&path, NEVER).unwrap();
    store.put(item("a", Attr::S("x".into())), None).await.unwrap();
    store.put(item("b", Attr::N(7)), None).await.unwrap();
    // Made by an update, it waits as an item, not in the stored form a put's index entries
    // come with.
    store.update(&Key::new("P", "c"), Update::default().set("GSI1PK", "G").set("GSI1SK", 8), None).await.unwrap();
    assert_eq!(listed(store.clone()).await, ["a"], "in the overlay");
    drop(store);
    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(listed(store.clone()).await, ["a"], "in redb");
}
