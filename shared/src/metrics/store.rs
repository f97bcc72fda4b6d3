//! A store that times each round trip to the one it wraps (`tollgate_store_round_trip_seconds`).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::Metrics;
use crate::store::{Cond, Item, Key, Page, Query, Store, StoreResult, TxOp, Update};

pub struct Timed {
    pub inner: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
}

impl Timed {
    async fn timed<T>(&self, op: &'static str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        self.metrics.store(op, started.elapsed());
        out
    }
}

#[async_trait]
impl Store for Timed {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        self.timed("get", self.inner.get(key)).await
    }
    async fn put(&self, item: Item, cond: Option<Cond>) -> StoreResult<()> {
        self.timed("put", self.inner.put(item, cond)).await
    }
    async fn update(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<Item> {
        self.timed("update", self.inner.update(key, update, cond)).await
    }
    async fn update_buffered(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<std::sync::Arc<Item>> {
        self.timed("update", self.inner.update_buffered(key, update, cond)).await
    }
    async fn delete(&self, key: &Key, cond: Option<Cond>) -> StoreResult<()> {
        self.timed("delete", self.inner.delete(key, cond)).await
    }
    async fn query(&self, query: Query) -> StoreResult<Page> {
        self.timed("query", self.inner.query(query)).await
    }
    async fn transact(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        self.timed("transact", self.inner.transact(ops)).await
    }
    async fn transact_buffered(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        self.timed("transact", self.inner.transact_buffered(ops)).await
    }
}
