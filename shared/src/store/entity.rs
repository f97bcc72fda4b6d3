//! An entity put whole (`TxOp::PutEntity`): the embedded store encodes it straight from its
//! fields, DynamoDB takes it as the item `keyed_item` makes. Every proxied request puts a usage
//! record of forty-odd attributes; building its item first (each name and value allocated into
//! a map), encoding that and freeing it was ~40k of the ~420k instructions of a request on the
//! embedded store (`scripts/bench-instructions`).

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use super::{Attr, Index, Item, Key, PK, SK, StoreResult};

/// What an entity put whole needs of it: its fields as attributes, or as the embedded store's
/// stored form. Every `Serialize` type has both.
pub trait Entity: Send + Sync + 'static {
    /// The entity's fields as an item's attributes (`to_item`).
    fn attrs(&self) -> StoreResult<Item>;
    /// The embedded store's stored form of the entity's fields, `extra` after them
    /// (`codec_ser::encode_entity`). Its format is the store's own: not for callers.
    #[doc(hidden)]
    fn encoded(&self, extra: &[(&'static str, Attr)]) -> StoreResult<Encoded>;
}

/// An entity's stored form in the embedded store.
pub struct Encoded {
    pub bytes: Vec<u8>,
    /// Whether any of the entity's own fields is named like an index's key (`GSI...`): then its
    /// index entries are read back from the bytes rather than from the attributes set beside it.
    pub names_index_keys: bool,
}

impl<T: Serialize + Send + Sync + 'static> Entity for T {
    fn attrs(&self) -> StoreResult<Item> {
        super::to_item(self)
    }
    fn encoded(&self, extra: &[(&'static str, Attr)]) -> StoreResult<Encoded> {
        super::embedded::encode_entity(self, extra)
    }
}

/// An entity to put under `key`, with attributes beside its own fields (index keys, a TTL) that
/// replace any of its fields of the same name.
#[derive(Clone)]
pub struct EntityPut {
    pub key: Key,
    pub entity: Arc<dyn Entity>,
    pub extra: Vec<(&'static str, Attr)>,
}

impl EntityPut {
    pub fn new(key: Key, entity: Arc<dyn Entity>) -> Self {
        EntityPut { key, entity, extra: Vec::new() }
    }

    pub fn set(&mut self, name: &'static str, value: Attr) {
        self.extra.push((name, value));
    }

    /// Files the item in a secondary index under (`pk`, `sk`), as `set_index` does.
    pub fn index(&mut self, index: Index, pk: String, sk: String) {
        let (ipk, isk) = index.key_names();
        self.set(ipk, Attr::S(pk));
        self.set(isk, Attr::S(sk));
    }

    /// The item it puts: the entity's fields, `extra` over them, and the key.
    pub fn item(&self) -> StoreResult<Item> {
        let mut item = self.entity.attrs()?;
        for (name, value) in &self.extra {
            item.insert((*name).to_string(), value.clone());
        }
        item.insert(PK.into(), Attr::S(self.key.pk.clone()));
        item.insert(SK.into(), Attr::S(self.key.sk.clone()));
        Ok(item)
    }
}

impl fmt::Debug for EntityPut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntityPut").field("key", &self.key).field("extra", &self.extra).finish_non_exhaustive()
    }
}
