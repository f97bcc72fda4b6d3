//! Who has usage: every owner of an API key (`user#`, `workspace#`, `project#`), registered
//! when its first key is made, in the transaction that makes it. Every usage record is made by
//! a key, so the registry names every owner a record can have: a global admin's usage views
//! (which cover everyone) read it to know whose partitions to read, rather than scanning
//! records. It is written on key creation only, never per request, so its one partition
//! carries no traffic.

use crate::error::ApiResult;
use crate::store::{Attr, Index, Item, Key, Query, Store, TxOp, query_all};

const PARTITION: &str = "USAGE_OWNERS";

/// The (idempotent) put registering `owner`.
pub fn register_op(owner: &str) -> TxOp {
    let item = Item::from([("PK".into(), Attr::S(PARTITION.into())), ("SK".into(), Attr::S(owner.to_string()))]);
    TxOp::Put { item, cond: None }
}

/// Every registered owner.
pub async fn all(store: &dyn Store) -> ApiResult<Vec<String>> {
    let items = query_all(store, Query::new(Index::Primary, PARTITION)).await?;
    Ok(items.iter().filter_map(|i| i.get("SK").and_then(Attr::as_str).map(str::to_string)).collect())
}

/// Forgets `owner` (its records and rollups erased).
pub async fn forget(store: &dyn Store, owner: &str) -> ApiResult<()> {
    store.delete(&Key::new(PARTITION, owner), None).await?;
    Ok(())
}
