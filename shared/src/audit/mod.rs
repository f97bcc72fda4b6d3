//! The audit log: every change made through the admin API, who made it, from where, and the
//! fields it changed (before and after, secrets redacted), written in the same transaction as
//! the change itself (`store::Audited`), so no change is ever kept without its event.
//!
//! Events form hash chains, one per shard: each carries its sequence number, the hash of the
//! one before it and its own (SHA-256 over the previous hash and its JSON), and each chain's
//! head item holds the last. `verify` walks the chains and names the first event that was
//! edited, removed or moved. Events expire after `TOLLGATE_AUDIT_RETENTION_DAYS` (a chain then
//! starts at its oldest event kept).

pub mod context;
pub mod listing;
pub mod store;
pub mod verify;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{Attr, Cond, Index, Item, Key, TTL, TxOp, Update, from_attr, set_index, time_key};

pub use context::{Actor, Scope};

/// How many chains events are spread over: concurrent changes in different chains do not
/// wait for each other.
pub const SHARDS: u64 = 4;

/// One change, as the log keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    /// The address the request came from.
    pub source: Option<String>,
    /// The route and method: `PUT /api/models/{id}`.
    pub action: String,
    /// The route's parameters: `id=gpt-4o`.
    pub target: String,
    pub request_id: String,
    /// Each item the change wrote.
    pub changes: Vec<Change>,
}

/// One stored item's changed fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// The item's kind (its key's first part, ids left out).
    pub item: String,
    /// `created`, `updated` or `deleted`.
    pub op: String,
    /// The changed fields before, and after (secrets as `[redacted]`).
    #[schema(value_type = Object)]
    pub before: serde_json::Map<String, serde_json::Value>,
    #[schema(value_type = Object)]
    pub after: serde_json::Map<String, serde_json::Value>,
}

/// Fields whose values are secrets or stand for one: shown as redacted.
fn secret_field(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["hash", "secret", "password", "token", "lease"].iter().any(|s| name.contains(s)) && !name.ends_with("_id") && !name.ends_with("_at")
}

/// A key part that is an id or a hash is not the item's kind.
fn kind_of(key: &Key) -> String {
    key.pk.split('#').next().unwrap_or_default().to_string()
}

/// The fields that differ between an item before and after a write.
pub fn change(key: &Key, before: Option<&Item>, after: Option<&Item>) -> Option<Change> {
    let op = match (before, after) {
        (None, Some(_)) => "created",
        (Some(_), None) => "deleted",
        (Some(_), Some(_)) => "updated",
        (None, None) => return None,
    };
    let empty = Item::new();
    let (b, a) = (before.unwrap_or(&empty), after.unwrap_or(&empty));
    let names: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    let shown = |item: &Item, name: &str| {
        item.get(name).map(|v| if secret_field(name) { serde_json::Value::String("[redacted]".into()) } else { from_attr(v.clone()) })
    };
    let (mut was, mut is) = (serde_json::Map::new(), serde_json::Map::new());
    for name in names {
        if matches!(name.as_str(), "PK" | "SK" | "GSI1PK" | "GSI1SK" | "GSI2PK" | "GSI2SK") || b.get(name) == a.get(name) {
            continue;
        }
        if let Some(v) = shown(b, name) {
            was.insert(name.clone(), v);
        }
        if let Some(v) = shown(a, name) {
            is.insert(name.clone(), v);
        }
    }
    if op == "updated" && was.is_empty() && is.is_empty() {
        return None;
    }
    Some(Change { item: kind_of(key), op: op.into(), before: was, after: is })
}

/// A chain's head: the last event's sequence number and hash.
pub fn head_key(shard: u64) -> Key {
    Key::new("AUDIT#HEAD", format!("shard#{shard}"))
}

pub fn event_key(shard: u64, seq: i64) -> Key {
    Key::new(format!("AUDIT#{shard}"), format!("{seq:012}"))
}

/// The partition every event is listed by time in (GSI2).
pub const BY_TIME: &str = "AUDIT";

/// The hash that seals an event: over the previous event's hash and this one's JSON.
pub fn seal(previous: &str, event_json: &str) -> String {
    crate::identity::sha256_hex(&format!("{previous}\n{event_json}"))
}

/// The two writes that append `event` to chain `shard` after `(seq, hash)` (the head as read):
/// the event, and the head moved on only if no one else moved it first.
pub fn append_ops(shard: u64, head: (i64, String), event: &Event, expires_at: Option<i64>) -> (Vec<TxOp>, String) {
    let json = serde_json::to_string(event).expect("an event serialises");
    let (seq, previous) = head;
    let hash = seal(&previous, &json);
    let key = event_key(shard, seq + 1);
    let mut item = Item::new();
    item.insert("PK".into(), Attr::S(key.pk.clone()));
    item.insert("SK".into(), Attr::S(key.sk.clone()));
    set_index(&mut item, Index::Gsi2, BY_TIME, format!("{}#{}", time_key(event.at), event.id));
    item.insert("event".into(), Attr::S(json));
    item.insert("prev".into(), Attr::S(previous));
    item.insert("hash".into(), Attr::S(hash.clone()));
    item.insert("seq".into(), Attr::N(seq + 1));
    if let Some(at) = expires_at {
        item.insert(TTL.into(), Attr::N(at));
    }
    let moved = if seq == 0 { Cond::Or(vec![Cond::NotExists, Cond::eq("seq", 0i64)]) } else { Cond::eq("seq", seq) };
    let head = TxOp::Update { key: head_key(shard), update: Update::default().set("seq", seq + 1).set("last", hash.clone()), cond: Some(moved) };
    (vec![TxOp::Put { item, cond: Some(Cond::NotExists) }, head], hash)
}

/// Where chain `shard` stands: its last sequence number and hash (`(0, "")` when empty).
pub async fn head(store: &dyn crate::store::Store, shard: u64) -> crate::store::StoreResult<(i64, String)> {
    Ok(match store.get(&head_key(shard)).await? {
        Some(item) => (item.get("seq").and_then(Attr::as_i64).unwrap_or(0), item.get("last").and_then(Attr::as_str).unwrap_or_default().to_string()),
        None => (0, String::new()),
    })
}
