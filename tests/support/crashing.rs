//! A store wrapper that stands for a process dying midway through a multi-step write: once a
//! write matching its trigger has gone through, every later write fails (reads still work,
//! as they would for whoever looks afterwards) until `recover`. It crashes once; `arm` makes
//! it crash again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use tollgate::store::{Cond, Item, Key, Page, Query, Store, StoreError, StoreResult, TxOp, Update};

type Trigger = dyn Fn(&Key, &Update) -> bool + Send + Sync;

pub struct CrashingStore {
    inner: Arc<dyn Store>,
    trigger: Box<Trigger>,
    armed: AtomicBool,
    crashed: AtomicBool,
}

impl CrashingStore {
    /// Crashes right after the first update that `trigger` matches.
    pub fn after_update(inner: Arc<dyn Store>, trigger: impl Fn(&Key, &Update) -> bool + Send + Sync + 'static) -> Self {
        Self { inner, trigger: Box::new(trigger), armed: AtomicBool::new(true), crashed: AtomicBool::new(false) }
    }

    pub fn crashed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    /// Crashes again at the trigger's next match.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// The process is back: writes go through again.
    pub fn recover(&self) {
        self.crashed.store(false, Ordering::SeqCst);
    }

    fn check(&self) -> StoreResult<()> {
        if self.crashed() { Err(StoreError::Backend("injected crash: this process is gone".into())) } else { Ok(()) }
    }
}

#[async_trait]
impl Store for CrashingStore {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        self.inner.get(key).await
    }
    async fn put(&self, item: Item, cond: Option<Cond>) -> StoreResult<()> {
        self.check()?;
        self.inner.put(item, cond).await
    }
    async fn update(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<Item> {
        self.check()?;
        let crash = self.armed.load(Ordering::SeqCst) && (self.trigger)(key, &update);
        let out = self.inner.update(key, update, cond).await;
        if crash && out.is_ok() {
            self.armed.store(false, Ordering::SeqCst);
            self.crashed.store(true, Ordering::SeqCst);
        }
        out
    }
    async fn update_buffered(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<std::sync::Arc<Item>> {
        self.check()?;
        self.inner.update_buffered(key, update, cond).await
    }
    async fn delete(&self, key: &Key, cond: Option<Cond>) -> StoreResult<()> {
        self.check()?;
        self.inner.delete(key, cond).await
    }
    async fn query(&self, query: Query) -> StoreResult<Page> {
        self.inner.query(query).await
    }
    /// A transaction holding a matching update crashes after it too (the admin API's store
    /// writes a change with its audit event in one transaction).
    async fn transact(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        self.check()?;
        let crash = self.armed.load(Ordering::SeqCst) && ops.iter().any(|op| matches!(op, TxOp::Update { key, update, .. } if (self.trigger)(key, update)));
        let out = self.inner.transact(ops).await;
        if crash && out.is_ok() {
            self.armed.store(false, Ordering::SeqCst);
            self.crashed.store(true, Ordering::SeqCst);
        }
        out
    }
}
