//! How a writer waiting for durability hears of it: once, from the log record or the redb
//! commit that holds its transaction, or from the failure that stops the store. Each test runs
//! the write path's threads itself, one at a time, so which of them answers is not left to
//! timing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, ReadableDatabase};
use tokio::sync::oneshot::error::TryRecvError;

use super::{Heard, Wal, Writes};
use crate::store::embedded::appender::Appender;
use crate::store::embedded::{ITEMS, prepare, raw_get};
use crate::store::{Key, StoreError, StoreResult, TxOp, keyed_item};

/// Longer than any test: no commit happens unless the store closes.
const NEVER: Duration = Duration::from_secs(3600);

fn writes(dir: &Path) -> Arc<Writes> {
    let db = Database::create(dir.join("db")).unwrap();
    assert_eq!(prepare(&db).unwrap(), 0);
    Arc::new(Writes::new(Arc::new(db), Arc::default(), 0, NEVER, dir.join("db.failed")))
}

fn put(sk: &str) -> Vec<TxOp> {
    let item = keyed_item(&serde_json::json!({ "v": 1 }), &Key::new("W", sk)).unwrap();
    vec![TxOp::Put { item, cond: None }]
}

/// Applies `ops` durably; what will say that they are on disk.
fn waiting(writes: &Writes, ops: Vec<TxOp>) -> Heard {
    let (outcome, heard) = writes.apply(ops, true, false).unwrap();
    assert!(matches!(outcome, Ok(None)), "the write applies");
    heard.expect("a durable write waits for the disk")
}

/// What `heard` was told, now: it must have been answered already.
fn told(mut heard: Heard) -> StoreResult<()> {
    match heard.try_recv() {
        Ok(told) => told,
        Err(TryRecvError::Empty) => panic!("the waiter was never answered"),
        Err(TryRecvError::Closed) => panic!("the waiter was dropped unanswered"),
    }
}

fn in_redb(writes: &Writes, sk: &str) -> bool {
    let table = writes.db.begin_read().unwrap().open_table(ITEMS).unwrap();
    raw_get(&table, &Key::new("W", sk)).unwrap().is_some()
}

#[test]
fn a_waiter_the_log_has_not_reached_is_answered_by_the_commit_that_holds_its_write() {
    let dir = tempfile::tempdir().unwrap();
    let writes = writes(dir.path());
    let (first, second) = (waiting(&writes, put("a")), waiting(&writes, put("b")));
    // No logger runs: only the committer can answer, and it commits what is pending on closing.
    writes.close();
    let committer = writes.clone();
    let homes = crate::store::embedded::tables::Homes::load(&writes.db).unwrap();
    std::thread::spawn(move || committer.run_commit(homes)).join().unwrap();
    assert!(in_redb(&writes, "a") && in_redb(&writes, "b"), "the commit holds both writes");
    told(first).unwrap();
    told(second).unwrap();
    assert!(writes.overlay().waiters.is_empty());
}

#[test]
fn a_closing_store_logs_its_waiters_writes_before_the_logger_ends() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("db.wal");
    let (wal, replay) = Wal::open(&base, 0).unwrap();
    assert!(replay.is_empty());
    let writes = writes(dir.path());
    let heard = waiting(&writes, put("a"));
    let buffered = writes.apply(put("b"), false, false).unwrap();
    assert!(buffered.1.is_none(), "a buffered write waits for nothing");
    writes.close();
    let logger = writes.clone();
    std::thread::spawn(move || logger.run_log(wal)).join().unwrap();
    told(heard).unwrap();
    assert!(!in_redb(&writes, "a"), "no commit ran: the log alone holds the write");
    // The record holds both transactions, in order, as a restart would replay them.
    let (_, replay) = Wal::open(&base, 0).unwrap();
    let logged: Vec<_> = replay.iter().map(|(seq, writes)| (*seq, writes.iter().map(|(key, _)| key.sk.as_str()).collect::<Vec<_>>())).collect();
    assert_eq!(logged, [(1, vec!["a"]), (2, vec!["b"])]);
}

#[test]
#[cfg(target_os = "linux")]
fn a_log_that_cannot_be_written_fails_every_waiter_and_every_later_write() {
    let dir = tempfile::tempdir().unwrap();
    // Every write to /dev/full fails with ENOSPC, as a full disk would.
    let full = || Appender::open(Path::new("/dev/full"), false).unwrap();
    let wal = Wal::over([full(), full()]);
    let writes = writes(dir.path());
    let (first, second) = (waiting(&writes, put("a")), waiting(&writes, put("b")));
    writes.close();
    let logger = writes.clone();
    std::thread::spawn(move || logger.run_log(wal)).join().unwrap();
    for heard in [first, second] {
        match told(heard) {
            Err(StoreError::Backend(why)) => assert!(why.contains("could not write to disk"), "{why}"),
            other => panic!("a waiter must hear the failure, not {other:?}"),
        }
    }
    match writes.apply(put("c"), true, false) {
        Err(StoreError::Backend(why)) => assert!(why.contains("takes no more writes"), "{why}"),
        Err(other) => panic!("refused for the wrong reason: {other:?}"),
        Ok(_) => panic!("a failed store must refuse writes"),
    }
    // Nor does the committer write what the log could not hold.
    let committer = writes.clone();
    let homes = crate::store::embedded::tables::Homes::load(&writes.db).unwrap();
    std::thread::spawn(move || committer.run_commit(homes)).join().unwrap();
    assert!(!in_redb(&writes, "a"));
}

#[test]
fn a_transaction_naming_one_item_twice_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let writes = writes(dir.path());
    let key = |i: usize| Key::new("W", format!("k{i:03}"));
    let delete = |i: usize| TxOp::Delete { key: key(i), cond: None };
    // Small transactions are compared pair by pair, large ones (the rollup consumer's 100
    // operations) sorted: a repeat is found either way, wherever it is.
    for (len, repeat, at) in [(2, 0, 1), (8, 3, 0), (9, 0, 8), (100, 57, 99), (100, 98, 0), (100, 12, 40)] {
        let mut ops: Vec<TxOp> = (0..len - 1).map(|i| put(&format!("k{i:03}")).remove(0)).collect();
        ops.insert(at, delete(repeat));
        match writes.apply(ops, false, false) {
            Err(StoreError::Backend(why)) => assert!(why.contains("two operations on one item"), "{len} operations: {why}"),
            Err(other) => panic!("{len} operations: refused for the wrong reason: {other:?}"),
            Ok(_) => panic!("{len} operations, one item twice: must be refused"),
        }
        assert!(writes.overlay().dirty.is_empty(), "{len} operations: nothing of a refused transaction is written");
    }
    // The same sizes without a repeat apply.
    for len in [2, 8, 9, 100] {
        let ops: Vec<TxOp> = (0..len).map(|i| put(&format!("k{i:03}")).remove(0)).collect();
        assert!(matches!(writes.apply(ops, false, false), Ok((Ok(None), None))), "{len} distinct items apply");
        assert!(writes.overlay().dirty.contains_key(&key(len - 1)));
    }
}
