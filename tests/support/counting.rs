//! A store wrapper that logs every operation, to pin the proxy's round trips per request and
//! to prove counters only ever change by atomic ADD.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tollgate::store::{Cond, Item, Key, Page, Query, Store, StoreResult, TxOp, Update};

#[derive(Clone, Debug)]
pub enum Op {
    Get(Key),
    Put(Key),
    Update(Key, Update),
    Delete(Key),
    Query(String),
    Transact(Vec<TxOp>),
}

pub struct CountingStore {
    inner: Arc<dyn Store>,
    pub ops: Mutex<Vec<Op>>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner, ops: Mutex::new(Vec::new()) }
    }

    /// A test app whose store counts, and the counter.
    pub async fn app(backend: crate::Backend) -> (crate::TestApp, Arc<CountingStore>) {
        let counting: Arc<std::sync::OnceLock<Arc<CountingStore>>> = Arc::new(std::sync::OnceLock::new());
        let slot = counting.clone();
        let wrap = move |inner: Arc<dyn Store>| -> Arc<dyn Store> {
            let c = Arc::new(CountingStore::new(inner));
            let _ = slot.set(c.clone());
            c
        };
        let app = crate::TestApp::start_with(backend, &tollgate::Group::ALL, |_| {}, Some(&wrap)).await;
        let store = counting.get().expect("the app's store").clone();
        (app, store)
    }

    /// Takes the operations logged so far.
    pub fn take(&self) -> Vec<Op> {
        std::mem::take(&mut *self.ops.lock().unwrap())
    }

    fn log(&self, op: Op) {
        self.ops.lock().unwrap().push(op);
    }
}

#[async_trait]
impl Store for CountingStore {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        self.log(Op::Get(key.clone()));
        self.inner.get(key).await
    }
    async fn put(&self, item: Item, cond: Option<Cond>) -> StoreResult<()> {
        self.log(Op::Put(Key::of(&item).unwrap()));
        self.inner.put(item, cond).await
    }
    async fn update(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<Item> {
        self.log(Op::Update(key.clone(), update.clone()));
        self.inner.update(key, update, cond).await
    }
    async fn update_buffered(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<std::sync::Arc<Item>> {
        self.log(Op::Update(key.clone(), update.clone()));
        self.inner.update_buffered(key, update, cond).await
    }
    async fn delete(&self, key: &Key, cond: Option<Cond>) -> StoreResult<()> {
        self.log(Op::Delete(key.clone()));
        self.inner.delete(key, cond).await
    }
    async fn query(&self, query: Query) -> StoreResult<Page> {
        self.log(Op::Query(query.pk.clone()));
        self.inner.query(query).await
    }
    async fn transact(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        self.log(Op::Transact(ops.clone()));
        self.inner.transact(ops).await
    }
}
