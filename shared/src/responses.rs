//! Stored responses (the Responses API's `store`): a response, the whole conversation it ends
//! (what `previous_response_id` continues) and which of those items were its own input. Each
//! belongs to the owner of the key that made it — another owner's is as absent as one never
//! made — and expires with the table's TTL (`TOLLGATE_RESPONSES_TTL_DAYS`).
//!
//! Items: `RESPONSE#<id>` / `HEAD` (owner, expiry, the data when it fits one item) and, for a
//! conversation past `PART_BYTES`, `RESPONSE#<id>` / `PART#nnnn` holding its JSON in pieces, so
//! no item nears DynamoDB's 400 KB. The head is written in the request's settlement
//! transaction (no extra round trip); parts, when there are any, just before it, so a head is
//! never found without its parts.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::store::{Attr, Item, Key, PK, Query, SK, Store, TTL, TxOp, query_all};

/// The most JSON one item holds.
const PART_BYTES: usize = 300 * 1024;

/// A stored response, as read back.
pub struct Stored {
    pub response: Value,
    /// The conversation: earlier turns, this response's input, its output.
    pub items: Vec<Value>,
    /// Where its own input lies in `items`.
    pub input: std::ops::Range<usize>,
}

#[derive(serde::Serialize, Deserialize)]
struct Data {
    response: Value,
    items: Vec<Value>,
    input_start: usize,
    input_end: usize,
}

fn partition(id: &str) -> String {
    format!("RESPONSE#{id}")
}

/// Writes what a stored response needs beyond its head (its parts, if it is large) and returns
/// the head's write, for the settlement's transaction.
pub async fn save(store: &dyn Store, owner: &str, stored: Stored, expires_at: i64) -> ApiResult<TxOp> {
    let id = stored.response.get("id").and_then(Value::as_str).ok_or_else(|| ApiError::internal("a response without an id"))?.to_string();
    let data = Data { response: stored.response, items: stored.items, input_start: stored.input.start, input_end: stored.input.end };
    let text = serde_json::to_string(&data).map_err(ApiError::internal)?;
    let pk = partition(&id);
    let mut head = Item::from([
        (PK.into(), Attr::S(pk.clone())),
        (SK.into(), Attr::S("HEAD".into())),
        ("owner".into(), Attr::S(owner.into())),
        (TTL.into(), Attr::N(expires_at)),
    ]);
    if text.len() <= PART_BYTES {
        head.insert("data".into(), Attr::S(text));
        head.insert("parts".into(), Attr::N(0));
        return Ok(TxOp::Put { item: head, cond: None });
    }
    let pieces = split(&text, PART_BYTES);
    head.insert("parts".into(), Attr::N(pieces.len() as i64));
    let writes = pieces.iter().enumerate().map(|(n, piece)| {
        let item = Item::from([
            (PK.into(), Attr::S(pk.clone())),
            (SK.into(), Attr::S(format!("PART#{n:04}"))),
            ("data".into(), Attr::S(piece.to_string())),
            (TTL.into(), Attr::N(expires_at)),
        ]);
        store.put(item, None)
    });
    for written in futures::future::join_all(writes).await {
        written?;
    }
    Ok(TxOp::Put { item: head, cond: None })
}

/// `text` in pieces of at most `size` bytes, cut between characters.
fn split(text: &str, size: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = size.min(rest.len());
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        pieces.push(&rest[..end]);
        rest = &rest[end..];
    }
    pieces
}

/// The owner's stored response `id`; `None` when it does not exist, has expired by `now` (epoch
/// seconds: the table's TTL removes items only eventually) or is another owner's.
pub async fn load(store: &dyn Store, owner: &str, id: &str, now: i64) -> ApiResult<Option<Stored>> {
    let Some((head, parts_found)) = owned_items(store, owner, id, now).await? else { return Ok(None) };
    let parts = head.get("parts").and_then(Attr::as_i64).unwrap_or(0);
    let text: String = if parts == 0 {
        head.get("data").and_then(Attr::as_str).unwrap_or_default().to_string()
    } else {
        let pieces: Vec<&str> = parts_found.iter().filter_map(|i| i.get("data").and_then(Attr::as_str)).collect();
        if pieces.len() as i64 != parts {
            return Err(ApiError::internal(format!("stored response {id} has {} of its {parts} parts", pieces.len())));
        }
        pieces.concat()
    };
    let data: Data = serde_json::from_str(&text).map_err(ApiError::internal)?;
    let input = data.input_start.min(data.items.len())..data.input_end.min(data.items.len());
    Ok(Some(Stored { response: data.response, items: data.items, input }))
}

/// The owner's stored response `id` as its head and its parts, in one query; `None` when it does
/// not exist, has expired by `now` or is another owner's.
async fn owned_items(store: &dyn Store, owner: &str, id: &str, now: i64) -> ApiResult<Option<(Item, Vec<Item>)>> {
    // Ids are ours (`resp_` and hex); anything else cannot name one, and is not looked up.
    if !id.starts_with("resp_") || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Ok(None);
    }
    let items = query_all(store, Query::new(crate::store::Index::Primary, partition(id))).await?;
    let (heads, parts): (Vec<Item>, Vec<Item>) = items.into_iter().partition(|i| i.get(SK).and_then(Attr::as_str) == Some("HEAD"));
    let Some(head) = heads.into_iter().next() else { return Ok(None) };
    let mine = head.get("owner").and_then(Attr::as_str) == Some(owner) && head.get(TTL).and_then(Attr::as_i64).is_none_or(|t| t > now);
    Ok(mine.then_some((head, parts)))
}

/// The conversation a request with `previous_response_id` continues: every item of the owner's
/// stored response `id`. Another owner's, an expired or a deleted response is a 400 naming it.
pub async fn continued(store: &dyn Store, owner: &str, id: &str, now: i64) -> ApiResult<Vec<Value>> {
    match load(store, owner, id, now).await? {
        Some(stored) => Ok(stored.items),
        None => Err(ApiError::invalid_param(
            "previous_response_id",
            format!("no stored response {id:?} of yours to continue: it was not stored, has expired or was deleted"),
        )),
    }
}

/// Deletes the owner's stored response `id`; false when there is none of theirs.
pub async fn delete(store: &dyn Store, owner: &str, id: &str, now: i64) -> ApiResult<bool> {
    let Some((head, parts)) = owned_items(store, owner, id, now).await? else { return Ok(false) };
    // The head first: once it is gone the response is, whatever happens to its parts.
    for key in std::iter::once(&head).chain(&parts).filter_map(Key::of) {
        store.delete(&key, None).await?;
    }
    Ok(true)
}

/// The query of `GET /v1/responses/{id}/input_items`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemsQuery {
    /// 1 to 100, default 20.
    pub limit: Option<i64>,
    /// `asc` or `desc` (default): the order the items are listed in.
    pub order: Option<String>,
    /// List the items after this item id.
    pub after: Option<String>,
    /// List the items before this item id.
    pub before: Option<String>,
}

/// One page of a stored response's own input items, as OpenAI lists them.
pub fn input_items(stored: &Stored, query: &ItemsQuery) -> ApiResult<Value> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid_param("limit", "limit must be from 1 to 100"));
    }
    let mut items: Vec<&Value> = stored.items[stored.input.clone()].iter().collect();
    match query.order.as_deref() {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(_) => return Err(ApiError::invalid_param("order", "order must be asc or desc")),
    }
    let position = |param: &str, id: &str| {
        items
            .iter()
            .position(|i| i.get("id").and_then(Value::as_str) == Some(id))
            .ok_or_else(|| ApiError::invalid_param(param, format!("{id:?} is not an input item of this response")))
    };
    let mut window = 0..items.len();
    if let Some(after) = &query.after {
        window.start = position("after", after)? + 1;
    }
    if let Some(before) = &query.before {
        window.end = position("before", before)?.max(window.start);
    }
    let page: Vec<&Value> = items[window.clone()].iter().take(limit as usize).copied().collect();
    let id = |v: Option<&&Value>| v.and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
    Ok(json!({"object": "list", "data": page, "first_id": id(page.first()), "last_id": id(page.last()), "has_more": window.len() > page.len()}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_cut_between_characters() {
        let text = "aé".repeat(1000);
        let pieces = split(&text, 7);
        assert!(pieces.iter().all(|p| p.len() <= 7));
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn input_items_page_both_ways() {
        let items: Vec<Value> = (0..5).map(|n| json!({"id": format!("i{n}")})).collect();
        let stored = Stored { response: json!({}), items, input: 1..4 };
        let page = input_items(&stored, &ItemsQuery { limit: Some(2), ..Default::default() }).unwrap();
        assert_eq!((page["first_id"].as_str(), page["last_id"].as_str(), page["has_more"].as_bool()), (Some("i3"), Some("i2"), Some(true)));
        let next = input_items(&stored, &ItemsQuery { limit: Some(2), after: Some("i2".into()), ..Default::default() }).unwrap();
        assert_eq!((next["data"][0]["id"].as_str(), next["has_more"].as_bool()), (Some("i1"), Some(false)));
        let asc = input_items(&stored, &ItemsQuery { order: Some("asc".into()), ..Default::default() }).unwrap();
        assert_eq!(asc["data"].as_array().unwrap().len(), 3);
        assert!(input_items(&stored, &ItemsQuery { after: Some("i0".into()), ..Default::default() }).is_err(), "not its own input");
        assert!(input_items(&stored, &ItemsQuery { limit: Some(0), ..Default::default() }).is_err());
    }
}
