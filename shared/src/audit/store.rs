//! The store the admin API writes through: inside an audited request, each write (a put, an
//! update, a delete or a transaction) goes in one transaction with the event that describes it
//! and its chain's head; outside one, writes pass straight through. Reads always do.

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use super::context::{self, Scope};
use super::{Event, SHARDS, append_ops, change, head};
use crate::clock::SharedClock;
use crate::store::{Cond, Item, Key, Page, Query, Store, StoreError, StoreResult, TxOp, Update};

/// The most writes an audited change may make: a transaction holds 100 operations, and the
/// event and its chain's head take two.
const MAX_CHANGE_OPS: usize = 98;

/// How many times a write is tried again when other changes moved its chain's head first.
const TRIES: usize = 32;

pub struct Audited {
    pub inner: Arc<dyn Store>,
    pub clock: SharedClock,
    /// How long events are kept (`TOLLGATE_AUDIT_RETENTION_DAYS`); none: for good.
    pub retention: Option<chrono::Duration>,
}

/// The item a write leaves, from the item before it (`None`: the write deletes it).
fn after_write(op: &TxOp, before: Option<&Item>) -> StoreResult<Option<Item>> {
    Ok(match op {
        TxOp::Put { item, .. } => Some(item.clone()),
        // An entity that cannot be made an item cannot be written either: say why now.
        TxOp::PutEntity { put, .. } => Some(put.item()?),
        TxOp::Delete { .. } => None,
        TxOp::Update { key, update, .. } => crate::store::apply_update(key, before.cloned(), update).ok(),
        TxOp::Check { .. } => before.cloned(),
    })
}

fn key_of(op: &TxOp) -> Option<Key> {
    match op {
        TxOp::Put { item, .. } => Key::of(item),
        TxOp::PutEntity { put, .. } => Some(put.key.clone()),
        TxOp::Update { key, .. } | TxOp::Delete { key, .. } => Some(key.clone()),
        TxOp::Check { .. } => None,
    }
}

impl Audited {
    /// Writes `ops` with their event in one transaction. `single`: the caller made one write,
    /// whose refusal it expects as `ConditionFailed`.
    async fn commit(&self, scope: &Scope, ops: Vec<TxOp>, single: bool) -> StoreResult<()> {
        // The event and the chain's head take two of a transaction's 100 operations.
        if ops.len() > MAX_CHANGE_OPS {
            return Err(StoreError::Backend(format!(
                "an audited change of {} writes is more than one transaction can hold with its event ({MAX_CHANGE_OPS}); split it",
                ops.len()
            )));
        }
        let mut changes = Vec::new();
        for op in &ops {
            let Some(key) = key_of(op) else { continue };
            let before = self.inner.get(&key).await?;
            changes.extend(change(&key, before.as_ref(), after_write(op, before.as_ref())?.as_ref()));
        }
        if changes.is_empty() {
            return self.pass(ops, single).await;
        }
        let now = self.clock.now();
        let event = Event {
            id: Uuid::now_v7(),
            at: now,
            actor: scope.actor(),
            source: scope.source.clone(),
            action: scope.action.clone(),
            target: scope.target.clone(),
            request_id: scope.request_id.clone(),
            changes,
        };
        let expires_at = self.retention.map(|keep| (now + keep).timestamp());
        let shard = crate::store::shard_of(&scope.request_id, SHARDS);
        let own = ops.len();
        for _ in 0..TRIES {
            let (chain, _) = append_ops(shard, head(self.inner.as_ref(), shard).await?, &event, expires_at);
            match self.inner.transact(ops.iter().cloned().chain(chain).collect()).await {
                Ok(()) => return Ok(()),
                // Another change took the chain's next place first: read its head again.
                Err(StoreError::TransactionCancelled { index }) if index >= own => continue,
                Err(StoreError::TransactionCancelled { .. }) if single => return Err(StoreError::ConditionFailed),
                Err(other) => return Err(other),
            }
        }
        Err(StoreError::Backend(format!("the audit chain {shard} stayed busy through {TRIES} tries")))
    }

    /// Writes without an event (nothing changed, or no audited request).
    async fn pass(&self, ops: Vec<TxOp>, single: bool) -> StoreResult<()> {
        if !single {
            return self.inner.transact(ops).await;
        }
        match ops.into_iter().next() {
            Some(TxOp::Put { item, cond }) => self.inner.put(item, cond).await,
            Some(TxOp::Update { key, update, cond }) => self.inner.update(&key, update, cond).await.map(|_| ()),
            Some(TxOp::Delete { key, cond }) => self.inner.delete(&key, cond).await,
            Some(op) => self.inner.transact(vec![op]).await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Store for Audited {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        self.inner.get(key).await
    }

    async fn put(&self, item: Item, cond: Option<Cond>) -> StoreResult<()> {
        match context::current() {
            Some(scope) => self.commit(&scope, vec![TxOp::Put { item, cond }], true).await,
            None => self.inner.put(item, cond).await,
        }
    }

    async fn update(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<Item> {
        match context::current() {
            Some(scope) => {
                self.commit(&scope, vec![TxOp::Update { key: key.clone(), update, cond }], true).await?;
                self.inner.get(key).await?.ok_or_else(|| StoreError::Backend("an updated item was gone at once".into()))
            }
            None => self.inner.update(key, update, cond).await,
        }
    }

    async fn update_buffered(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<std::sync::Arc<Item>> {
        match context::current() {
            Some(_) => self.update(key, update, cond).await.map(std::sync::Arc::new),
            None => self.inner.update_buffered(key, update, cond).await,
        }
    }

    async fn delete(&self, key: &Key, cond: Option<Cond>) -> StoreResult<()> {
        match context::current() {
            Some(scope) => self.commit(&scope, vec![TxOp::Delete { key: key.clone(), cond }], true).await,
            None => self.inner.delete(key, cond).await,
        }
    }

    async fn query(&self, query: Query) -> StoreResult<Page> {
        self.inner.query(query).await
    }

    async fn transact(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        match context::current() {
            Some(scope) => self.commit(&scope, ops, false).await,
            None => self.inner.transact(ops).await,
        }
    }

    async fn transact_buffered(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        match context::current() {
            Some(scope) => self.commit(&scope, ops, false).await,
            None => self.inner.transact_buffered(ops).await,
        }
    }
}
