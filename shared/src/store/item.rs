//! Entity <-> item conversion in one place: entities derive serde, and their JSON form maps
//! onto attribute values (integers only; a float in an entity is a bug we refuse to store).

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::attr_ser::to_attr;
use super::{Attr, Item, StoreError};

pub fn to_item<T: Serialize>(entity: &T) -> Result<Item, StoreError> {
    match to_attr(entity)? {
        Attr::M(map) => Ok(map),
        _ => Err(StoreError::Backend("entity must serialize to an object".into())),
    }
}

pub fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    let map = item.into_iter().map(|(k, v)| (k, from_attr(v))).collect();
    serde_json::from_value(Value::Object(map)).map_err(|e| StoreError::Backend(format!("stored item does not decode: {e}")))
}

/// An attribute as the JSON value it stores.
pub fn from_attr(attr: Attr) -> Value {
    match attr {
        Attr::Null => Value::Null,
        Attr::Bool(b) => Value::Bool(b),
        Attr::N(n) => Value::from(n),
        Attr::S(s) => Value::String(s),
        Attr::L(l) => Value::Array(l.into_iter().map(from_attr).collect()),
        Attr::M(m) => Value::Object(m.into_iter().map(|(k, v)| (k, from_attr(v))).collect()),
    }
}

/// An entity as a stored item under `key`.
pub fn keyed_item<T: Serialize>(entity: &T, key: &super::Key) -> Result<Item, StoreError> {
    let mut item = to_item(entity)?;
    item.insert(super::PK.into(), Attr::S(key.pk.clone()));
    item.insert(super::SK.into(), Attr::S(key.sk.clone()));
    Ok(item)
}

/// Places the item in a secondary index under (`pk`, `sk`).
pub fn set_index(item: &mut Item, index: super::Index, pk: impl Into<String>, sk: impl Into<String>) {
    let (ipk, isk) = index.key_names();
    item.insert(ipk.into(), Attr::S(pk.into()));
    item.insert(isk.into(), Attr::S(sk.into()));
}

/// Any serialisable value as one attribute (for SET in updates).
pub fn attr_of<T: Serialize>(value: &T) -> Result<Attr, StoreError> {
    to_attr(value)
}
