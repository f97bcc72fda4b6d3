//! The embedded store on SQLite (WAL mode), one of the engines compared in
//! `docs/embedded-engines.md` (`TOLLGATE_STORE_ENGINE=sqlite`). One table of items, unique on
//! (pk, sk), with the GSI keys and the TTL as columns beside the item's JSON and an index per
//! GSI. A rowid table, not WITHOUT ROWID: items of ~2 KB (usage records) are past what a
//! WITHOUT ROWID row keeps in its page (~1 KB at 4 KiB pages), and their overflow pages left
//! the table half empty (5.6 KB on disk per proxied request against 2.1 KB of items).
//!
//! Writes go to one writer thread, which takes every transaction waiting, applies them all in
//! one SQLite transaction (a SAVEPOINT each, rolled back alone when it fails) and commits once:
//! group commit, everyone who arrived meanwhile shares the sync. A batch with a durable write
//! commits under `synchronous=FULL` (the WAL is fdatasync'ed at commit); a batch of buffered
//! writes only under `NORMAL` (written to the WAL, not synced), made durable by the next FULL
//! commit's sync of the same WAL or by a flush within `FLUSH_EVERY`. Reads go through a pool of
//! read connections, on the caller's thread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

use super::{
    Attr, Cond, Index, Item, Key, Page, Planned, Query, SkCond, Store, StoreError, StoreResult, TTL, TxOp, Update, decode_cursor, index_key, is_expired,
    now_epoch, plan,
};

/// Buffered writes are synced within this long when no durable write comes to do it.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Above every character we put in keys, to close prefix ranges.
const HIGH: &str = "\u{10FFFF}";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    pk TEXT NOT NULL, sk TEXT NOT NULL,
    g1pk TEXT, g1sk TEXT, g2pk TEXT, g2sk TEXT, ttl INTEGER,
    item BLOB NOT NULL,
    UNIQUE (pk, sk)
);
CREATE INDEX IF NOT EXISTS gsi1 ON items (g1pk, g1sk, pk, sk) WHERE g1pk IS NOT NULL;
CREATE INDEX IF NOT EXISTS gsi2 ON items (g2pk, g2sk, pk, sk) WHERE g2pk IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;
";

/// What one transaction came to: the item its last write left (None for a delete or checks
/// only), or the index of the operation whose condition failed.
type Outcome = Result<Option<Item>, usize>;

struct Job {
    ops: Vec<TxOp>,
    durable: bool,
    reply: tokio::sync::oneshot::Sender<StoreResult<Outcome>>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    closing: bool,
}

struct Shared {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    queue: Mutex<Queue>,
    wake: Condvar,
}

#[derive(Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
    _writer: Arc<Writer>,
}

/// The writer thread, which commits what is queued and ends when the last handle is dropped.
struct Writer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.queue().closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn backend<E: std::fmt::Display>(err: E) -> StoreError {
    StoreError::Backend(err.to_string())
}

fn connect(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(backend)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(backend)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(backend)?;
    // The writes' few statements and the queries' variants (index, direction, cursor).
    conn.set_prepared_statement_cache_capacity(64);
    // One plan per statement, whatever its parameters: otherwise a query's plan hung on its
    // bound values (the partial GSI indexes) and SQLite re-prepared it at every new binding,
    // ~2 re-prepares and ~10% of the instructions per proxied request.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(backend)?;
    Ok(conn)
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `work` on a read connection from the pool (a new one when all are taken).
    fn read<T>(&self, work: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let pooled = self.readers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => connect(&self.path)?,
        };
        let result = work(&conn);
        self.readers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(conn);
        result
    }
}

impl SqliteStore {
    /// Opens (or creates) the database file, in WAL mode, creating its folder as needed.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(backend)?;
        }
        let conn = connect(path)?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(backend)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!("SQLite refused WAL mode for {} (journal_mode is {mode})", path.display())));
        }
        conn.execute_batch(SCHEMA).map_err(backend)?;
        let shared = Arc::new(Shared { path: path.to_path_buf(), readers: Mutex::default(), queue: Mutex::default(), wake: Condvar::new() });
        let writer = shared.clone();
        let thread = std::thread::Builder::new().name("tollgate-sqlite-write".into()).spawn(move || run_writer(&writer, conn)).map_err(backend)?;
        Ok(Self { shared: shared.clone(), _writer: Arc::new(Writer { shared, thread: Some(thread) }) })
    }

    async fn write(&self, ops: Vec<TxOp>, durable: bool) -> StoreResult<Outcome> {
        if ops.len() > 100 {
            return Err(StoreError::Backend("a transaction holds at most 100 operations".into()));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.shared.queue().jobs.push(Job { ops, durable, reply });
        self.shared.wake.notify_one();
        answer.await.map_err(|_| StoreError::Backend("the store's writer thread has stopped".into()))?
    }

    async fn transact_with(&self, ops: Vec<TxOp>, durable: bool) -> StoreResult<()> {
        match self.write(ops, durable).await? {
            Ok(_) => Ok(()),
            Err(index) => Err(StoreError::TransactionCancelled { index }),
        }
    }
}

fn single(outcome: StoreResult<Outcome>) -> StoreResult<Item> {
    match outcome? {
        Ok(item) => Ok(item.unwrap_or_default()),
        Err(_) => Err(StoreError::ConditionFailed),
    }
}

/// The writer thread: takes every queued transaction, applies them in one SQLite transaction
/// and commits once (synced when any of them is durable), then answers each.
fn run_writer(shared: &Shared, conn: Connection) {
    // Since when buffered writes wait for a sync.
    let mut unsynced: Option<Instant> = None;
    let mut synchronous_full = true;
    let mut flushes = 0i64;
    loop {
        let (mut jobs, closing) = {
            let mut queue = shared.queue();
            while queue.jobs.is_empty() && !queue.closing && unsynced.is_none_or(|since| since.elapsed() < FLUSH_EVERY) {
                let wait = unsynced.map_or(FLUSH_EVERY, |since| FLUSH_EVERY.saturating_sub(since.elapsed()));
                queue = shared.wake.wait_timeout(queue, wait).unwrap_or_else(std::sync::PoisonError::into_inner).0;
            }
            (std::mem::take(&mut queue.jobs), queue.closing)
        };
        let durable = jobs.iter().any(|j| j.durable) || (jobs.is_empty() && unsynced.is_some());
        if durable != synchronous_full {
            let pragma = if durable { "PRAGMA synchronous = FULL" } else { "PRAGMA synchronous = NORMAL" };
            if let Err(e) = conn.prepare_cached(pragma).and_then(|mut s| s.execute([])) {
                jobs.into_iter().for_each(|job| drop(job.reply.send(Err(backend(&e)))));
                continue;
            }
            synchronous_full = durable;
        }
        let outcomes = if jobs.is_empty() {
            if unsynced.is_none() {
                if closing {
                    return;
                }
                continue;
            }
            // A flush: a FULL commit syncs the WAL, with every buffered write before it.
            flushes += 1;
            let flushed = conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('flushes', ?1)", [flushes]);
            // A failed flush is tried again a period later.
            unsynced = flushed.is_err().then(Instant::now);
            Vec::new()
        } else {
            let outcomes = commit_batch(&conn, &mut jobs);
            if outcomes.is_ok() {
                unsynced = if durable { None } else { unsynced.or_else(|| Some(Instant::now())) };
            }
            match outcomes {
                Ok(outcomes) => outcomes,
                Err(e) => jobs.iter().map(|_| Err(backend(&e))).collect(),
            }
        };
        for (job, outcome) in jobs.into_iter().zip(outcomes) {
            let _ = job.reply.send(outcome);
        }
    }
}

/// Applies the jobs in one SQLite transaction, each under its own savepoint, and commits.
fn commit_batch(conn: &Connection, jobs: &mut [Job]) -> Result<Vec<StoreResult<Outcome>>, rusqlite::Error> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let outcomes: Vec<StoreResult<Outcome>> = jobs.iter_mut().map(|job| apply_job(conn, std::mem::take(&mut job.ops))).collect();
    if let Err(e) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e);
    }
    Ok(outcomes)
}

fn apply_job(conn: &Connection, ops: Vec<TxOp>) -> StoreResult<Outcome> {
    conn.prepare_cached("SAVEPOINT job").and_then(|mut s| s.execute([])).map_err(backend)?;
    let done = plan(ops, |key| read_item(conn, key)).and_then(|planned| match planned {
        Ok(writes) => {
            for write in &writes {
                write_item(conn, write)?;
            }
            Ok(Ok(writes.into_iter().next_back().and_then(|w| w.new)))
        }
        Err(index) => Ok(Err(index)),
    });
    // Nothing of a transaction whose condition failed, or whose write failed, stays.
    if !matches!(done, Ok(Ok(_))) {
        conn.prepare_cached("ROLLBACK TO job").and_then(|mut s| s.execute([])).map_err(backend)?;
    }
    conn.prepare_cached("RELEASE job").and_then(|mut s| s.execute([])).map_err(backend)?;
    done
}

fn decode(bytes: &[u8]) -> StoreResult<Item> {
    serde_json::from_slice(bytes).map_err(backend)
}

fn read_item(conn: &Connection, key: &Key) -> StoreResult<Option<Item>> {
    let mut stmt = conn.prepare_cached("SELECT item FROM items WHERE pk = ?1 AND sk = ?2").map_err(backend)?;
    let bytes: Option<Vec<u8>> = stmt.query_row([&key.pk, &key.sk], |row| row.get(0)).optional().map_err(backend)?;
    bytes.map(|b| decode(&b)).transpose()
}

fn write_item(conn: &Connection, write: &Planned) -> StoreResult<()> {
    let key = &write.key;
    match &write.new {
        Some(item) => {
            let (g1, g2) = (index_key(item, Index::Gsi1).unzip(), index_key(item, Index::Gsi2).unzip());
            let ttl = item.get(TTL).and_then(Attr::as_i64);
            // An item is a map of string keys to plain values: serde_json has nothing to refuse.
            let bytes = serde_json::to_vec(item).map_err(backend)?;
            let mut stmt = conn
                .prepare_cached(
                    "INSERT INTO items (pk, sk, g1pk, g1sk, g2pk, g2sk, ttl, item) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (pk, sk) DO UPDATE \
                     SET g1pk = excluded.g1pk, g1sk = excluded.g1sk, g2pk = excluded.g2pk, g2sk = excluded.g2sk, ttl = excluded.ttl, item = excluded.item",
                )
                .map_err(backend)?;
            stmt.execute(rusqlite::params![key.pk, key.sk, g1.0, g1.1, g2.0, g2.1, ttl, bytes]).map_err(backend)?;
        }
        None => {
            let mut stmt = conn.prepare_cached("DELETE FROM items WHERE pk = ?1 AND sk = ?2").map_err(backend)?;
            stmt.execute([&key.pk, &key.sk]).map_err(backend)?;
        }
    }
    Ok(())
}

/// One page of a query: the index's key columns compared in SQL, expired items left out there
/// too, so LIMIT counts only what the page may hold.
fn query_sync(conn: &Connection, q: &Query) -> StoreResult<Page> {
    let (lo, hi) = match &q.sk {
        None => (String::new(), HIGH.to_string()),
        Some(SkCond::Prefix(p)) => (p.clone(), format!("{p}{HIGH}")),
        Some(SkCond::Between(a, b)) => (a.clone(), b.clone()),
    };
    let (ipk, isk, order) = match q.index {
        Index::Primary => ("pk", "sk", vec!["sk"]),
        Index::Gsi1 => ("g1pk", "g1sk", vec!["g1sk", "pk", "sk"]),
        Index::Gsi2 => ("g2pk", "g2sk", vec!["g2sk", "pk", "sk"]),
    };
    let mut sql = format!("SELECT item FROM items WHERE {ipk} = ?1 AND {isk} >= ?2 AND {isk} <= ?3 AND (ttl IS NULL OR ttl > ?4)");
    let mut params: Vec<Value> = vec![q.pk.clone().into(), lo.into(), hi.into(), now_epoch().into(), ((q.limit + 1) as i64).into()];
    if let Some(cursor) = &q.cursor {
        let c = decode_cursor(cursor, q.index)?;
        let (_, cursor_isk) = q.index.key_names();
        let after: Vec<&String> = if q.index == Index::Primary { vec![&c[super::SK]] } else { vec![&c[cursor_isk], &c[super::PK], &c[super::SK]] };
        let marks: Vec<String> = (0..after.len()).map(|i| format!("?{}", i + 6)).collect();
        sql += &format!(" AND ({}) {} ({})", order.join(", "), if q.forward { ">" } else { "<" }, marks.join(", "));
        params.extend(after.into_iter().map(|v| Value::from(v.clone())));
    }
    let direction = if q.forward { "" } else { " DESC" };
    sql += &format!(" ORDER BY {} LIMIT ?5", order.iter().map(|c| format!("{c}{direction}")).collect::<Vec<_>>().join(", "));
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(params), |row| row.get::<_, Vec<u8>>(0)).map_err(backend)?;
    let found = rows.map(|bytes| decode(&bytes.map_err(backend)?)).collect::<StoreResult<Vec<Item>>>()?;
    Ok(super::page_of(found, q.limit, q.index))
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        let item = self.shared.read(|conn| read_item(conn, key))?;
        Ok(item.filter(|i| !is_expired(i, now_epoch())))
    }

    async fn put(&self, item: Item, cond: Option<Cond>) -> StoreResult<()> {
        single(self.write(vec![TxOp::Put { item, cond }], true).await).map(|_| ())
    }

    async fn update(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<Item> {
        single(self.write(vec![TxOp::Update { key: key.clone(), update, cond }], true).await)
    }

    async fn update_buffered(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<Item> {
        single(self.write(vec![TxOp::Update { key: key.clone(), update, cond }], false).await)
    }

    async fn delete(&self, key: &Key, cond: Option<Cond>) -> StoreResult<()> {
        single(self.write(vec![TxOp::Delete { key: key.clone(), cond }], true).await).map(|_| ())
    }

    async fn query(&self, query: Query) -> StoreResult<Page> {
        self.shared.read(|conn| query_sync(conn, &query))
    }

    async fn transact(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        self.transact_with(ops, true).await
    }

    async fn transact_buffered(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        self.transact_with(ops, false).await
    }
}

#[cfg(test)]
mod tests {
    //! Crash recovery: a crash is a copy of the store's files taken while it runs.
    use super::*;

    fn crash_copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for name in ["db", "db-wal"] {
            std::fs::copy(from.join(name), to.join(name)).unwrap();
        }
    }

    async fn count(store: &SqliteStore, name: &str) -> Option<i64> {
        store.get(&Key::new("C", name)).await.unwrap()?.get("n").and_then(Attr::as_i64)
    }

    #[tokio::test]
    async fn durable_writes_and_the_buffered_ones_before_them_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        let store = SqliteStore::open(&live.join("db")).unwrap();
        let key = Key::new("C", "c");
        for i in 0..200 {
            if i % 2 == 1 {
                store.update_buffered(&Key::new("C", format!("b{i}")), Update::default().add("n", 1), None).await.unwrap();
            }
            store.update(&key, Update::default().add("n", 1), None).await.unwrap();
        }
        store.delete(&Key::new("absent", "x"), None).await.unwrap();
        let crashed = dir.path().join("crashed");
        crash_copy(&live, &crashed);
        drop(store);
        let restarted = SqliteStore::open(&crashed.join("db")).unwrap();
        assert_eq!(count(&restarted, "c").await, Some(200));
        for i in (1..200).step_by(2) {
            assert_eq!(count(&restarted, &format!("b{i}")).await, Some(1), "buffered write b{i}, made durable by the durable one after it");
        }
    }

    #[tokio::test]
    async fn concurrent_transactions_share_commits_and_a_crash_keeps_none_half() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        let store = SqliteStore::open(&live.join("db")).unwrap();
        // Each transaction moves one unit from A to B: any state the disk holds sums to zero.
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..20 {
                        let ops = vec![
                            TxOp::Update { key: Key::new("T", "a"), update: Update::default().add("n", -1), cond: None },
                            TxOp::Update { key: Key::new("T", "b"), update: Update::default().add("n", 1), cond: None },
                        ];
                        store.transact(ops).await.unwrap();
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let crashed = dir.path().join("crashed");
        crash_copy(&live, &crashed);
        for task in tasks {
            task.await.unwrap();
        }
        let get =
            |store: SqliteStore, sk: &'static str| async move { store.get(&Key::new("T", sk)).await.unwrap().and_then(|i| i.get("n").and_then(Attr::as_i64)) };
        assert_eq!(get(store.clone(), "a").await, Some(-640));
        drop(store);
        let restarted = SqliteStore::open(&crashed.join("db")).unwrap();
        let (a, b) = (get(restarted.clone(), "a").await.unwrap_or(0), get(restarted, "b").await.unwrap_or(0));
        assert_eq!(a + b, 0, "a crash copy holds whole transactions only (a={a}, b={b})");
    }

    #[tokio::test]
    async fn a_failed_transaction_in_a_shared_commit_leaves_the_others_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        store.put(Item::from([("PK".into(), Attr::from("X")), ("SK".into(), Attr::from("1"))]), None).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..16i64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut ops = vec![TxOp::Update { key: Key::new("Y", i.to_string()), update: Update::default().add("n", 1), cond: None }];
                if i % 2 == 0 {
                    ops.push(TxOp::Check { key: Key::new("X", "1"), cond: Cond::NotExists });
                }
                store.transact(ops).await
            }));
        }
        for (i, task) in tasks.into_iter().enumerate() {
            let result = task.await.unwrap();
            let written = store.get(&Key::new("Y", i.to_string())).await.unwrap().is_some();
            if i % 2 == 0 {
                assert!(matches!(result, Err(StoreError::TransactionCancelled { index: 1 })), "{result:?}");
                assert!(!written);
            } else {
                assert!(result.is_ok() && written);
            }
        }
    }
}
