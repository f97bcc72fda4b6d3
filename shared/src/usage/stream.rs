//! The rollups' consumer on AWS: the table's DynamoDB stream (view type `NEW_IMAGE`, filtered
//! to the inserts of pending items) invokes the usage group's rollups function with batches of
//! stream records, in the shape Lambda delivers them
//! (`{"Records": [{"eventName": "INSERT", "dynamodb": {"NewImage": {"PK": {"S": ...}}}}]}`).
//! Each new image is a pending item; `rollups::apply` adds it and deletes it in one
//! transaction, conditioned on it still being there, so a replayed or duplicated stream record
//! (Lambda delivers at least once) adds nothing the second time.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::rollups;
use crate::error::ApiResult;
use crate::store::{Attr, Item, Store};

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "Records", default)]
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    #[serde(default)]
    dynamodb: Option<Change>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(rename = "NewImage", default)]
    new_image: Option<HashMap<String, HashMap<String, Value>>>,
}

/// Whether `event` is a batch of stream records (rather than, say, a scheduled event).
pub fn is_stream_batch(event: &Value) -> bool {
    event.get("Records").is_some()
}

/// The pending items inserted in a batch of stream records; anything else (removals, other
/// items, attributes of other types) is passed over.
pub fn pending_items(event: Value) -> Result<Vec<Item>, serde_json::Error> {
    let event: Event = serde_json::from_value(event)?;
    Ok(event
        .records
        .into_iter()
        .filter(|r| r.event_name == "INSERT")
        .filter_map(|r| r.dynamodb?.new_image)
        .filter_map(|image| {
            let text = |name: &str| image.get(name)?.get("S")?.as_str().map(str::to_string);
            let (pk, sk, r) = (text("PK")?, text("SK")?, text("r")?);
            pk.starts_with(rollups::PENDING_PREFIX).then(|| Item::from([("PK".into(), Attr::S(pk)), ("SK".into(), Attr::S(sk)), ("r".into(), Attr::S(r))]))
        })
        .collect())
}

/// Handles one invocation of the rollups function: a stream batch adds its pending items; any
/// other event (the schedule) adds every pending item still in the table, which is where the
/// records of a batch the stream gave up on (sent to the dead-letter queue) still wait.
pub async fn handle(store: &dyn Store, event: Value) -> ApiResult<usize> {
    if is_stream_batch(&event) {
        let items = pending_items(event).map_err(|e| crate::error::ApiError::invalid_param("Records", format!("not a DynamoDB stream batch: {e}")))?;
        rollups::apply(store, &items).await
    } else {
        rollups::roll_up(store).await
    }
}
