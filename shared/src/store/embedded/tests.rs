//! Crash recovery through the write-ahead log. A crash is a copy of the store's files taken
//! while the store runs: what the disk holds at that instant is all a restart gets.

use std::path::Path;
use std::time::Duration;

use super::EmbeddedStore;
use crate::store::{Attr, Key, Store, Update};

const NEVER: Duration = Duration::from_secs(3600);

fn crash_copy(from: &Path, to: &Path, with_log: bool) {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(from.join("db"), to.join("db")).unwrap();
    if with_log {
        for log in ["db.wal-0", "db.wal-1"] {
            std::fs::copy(from.join(log), to.join(log)).unwrap();
        }
    }
}

async fn counter(store: &EmbeddedStore) -> Option<i64> {
    count(store, "c").await
}

async fn count(store: &EmbeddedStore, name: &str) -> Option<i64> {
    let item = store.get(&Key::new("C", name)).await.unwrap()?;
    match item.get("n") {
        Some(Attr::N(n)) => Some(*n),
        _ => None,
    }
}

#[tokio::test]
async fn durable_writes_survive_a_crash_before_redb_takes_them_and_replay_once() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    // redb never takes these writes while the store runs: only the log can bring them back.
    let store = EmbeddedStore::open_with(&live.join("db"), NEVER).unwrap();
    let key = Key::new("C", "c");
    store.update_buffered(&key, Update::default().add("n", 2), None).await.unwrap();
    store.update(&key, Update::default().add("n", 3), None).await.unwrap();
    store.delete(&Key::new("absent", "x"), None).await.unwrap();

    let crashed = dir.path().join("crashed");
    crash_copy(&live, &crashed, true);
    let without_log = dir.path().join("without-log");
    crash_copy(&live, &without_log, false);
    drop(store);

    assert_eq!(counter(&EmbeddedStore::open(&without_log.join("db")).unwrap()).await, None, "redb alone must not have the writes");

    let restarted = EmbeddedStore::open_with(&crashed.join("db"), NEVER).unwrap();
    assert_eq!(counter(&restarted).await, Some(5), "both writes come back, the buffered one with the durable one after it");
    restarted.update(&key, Update::default().add("n", 10), None).await.unwrap();
    let crashed_again = dir.path().join("crashed-again");
    crash_copy(&crashed, &crashed_again, true);
    drop(restarted);
    // The replayed writes are in redb now and are not applied twice; the new one is in the log.
    assert_eq!(counter(&EmbeddedStore::open(&crashed_again.join("db")).unwrap()).await, Some(15));
    // A clean close leaves everything in redb.
    assert_eq!(counter(&EmbeddedStore::open(&crashed.join("db")).unwrap()).await, Some(15));
}

#[tokio::test]
async fn a_crash_amid_many_rounds_of_the_log_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    // redb commits every 2 ms, so the log's files take turns many times over.
    let store = EmbeddedStore::open_with(&live.join("db"), Duration::from_millis(2)).unwrap();
    let key = Key::new("C", "c");
    for i in 0..200 {
        if i % 2 == 1 {
            store.update_buffered(&Key::new("C", format!("b{i}")), Update::default().add("n", 1), None).await.unwrap();
        }
        store.update(&key, Update::default().add("n", 1), None).await.unwrap();
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(7)).await;
        }
    }
    let crashed = dir.path().join("crashed");
    crash_copy(&live, &crashed, true);
    drop(store);
    let restarted = EmbeddedStore::open(&crashed.join("db")).unwrap();
    assert_eq!(counter(&restarted).await, Some(200));
    for i in (1..200).step_by(2) {
        assert_eq!(count(&restarted, &format!("b{i}")).await, Some(1), "buffered write b{i}, made durable by the durable one after it");
    }
}

#[tokio::test]
async fn a_logged_update_replays_onto_the_item_it_was_made_on() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let store = EmbeddedStore::open_with(&live.join("db"), NEVER).unwrap();
    // An item that has expired, which an update therefore makes anew: replayed later, when the
    // log holds the item's put, the update must not land on what it did not see.
    let (expired, kept) = (Key::new("C", "expired"), Key::new("C", "c"));
    let mut item = crate::store::Item::from([("PK".into(), Attr::from("C")), ("SK".into(), Attr::from("expired"))]);
    item.insert("n".into(), Attr::N(5));
    item.insert("old".into(), Attr::S("gone with the item".into()));
    item.insert(crate::store::TTL.into(), Attr::N(crate::store::now_epoch() - 10));
    store.put(item, None).await.unwrap();
    store.update(&expired, Update::default().add("n", 1), None).await.unwrap();
    store.update(&kept, Update::default().add("n", 2).set("s", "a").set("gone", "b"), None).await.unwrap();
    store.update(&kept, Update::default().add("n", 3).set_if_absent("s", "not this").remove("gone"), None).await.unwrap();
    let crashed = dir.path().join("crashed");
    crash_copy(&live, &crashed, true);
    drop(store);

    let restarted = EmbeddedStore::open(&crashed.join("db")).unwrap();
    let remade = restarted.get(&expired).await.unwrap().expect("made anew by the update");
    assert_eq!((remade.get("n"), remade.get("old")), (Some(&Attr::N(1)), None));
    let item = restarted.get(&kept).await.unwrap().unwrap();
    assert_eq!((item.get("n"), item.get("s"), item.get("gone")), (Some(&Attr::N(5)), Some(&Attr::S("a".into())), None));
}
