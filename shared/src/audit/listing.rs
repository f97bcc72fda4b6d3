//! Reading the log: events newest first, filtered by actor, target, action and time, a page at
//! a time.

use chrono::{DateTime, Utc};

use super::{BY_TIME, Event};
use crate::error::{ApiError, ApiResult};
use crate::store::{Attr, Index, Query, Store, cursor_of, time_key};

/// What to list.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// A user's or key's id.
    pub actor: Option<String>,
    /// Part of the target (`id=gpt-4o`) or of an item's kind.
    pub target: Option<String>,
    /// Part of the action (`DELETE`, `/api/models`).
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl Filter {
    fn keeps(&self, event: &Event) -> bool {
        let actor_id = match &event.actor {
            super::Actor::User { id } | super::Actor::Key { id, .. } | super::Actor::ScimToken { id } => Some(id.to_string()),
            super::Actor::Anonymous => None,
        };
        self.actor.as_ref().is_none_or(|a| actor_id.as_deref() == Some(a.as_str()))
            && self.target.as_ref().is_none_or(|t| event.target.contains(t.as_str()) || event.changes.iter().any(|c| c.item.contains(t.as_str())))
            && self.action.as_ref().is_none_or(|a| event.action.contains(a.as_str()))
    }
}

/// A page of events and the cursor to the next, if there is one.
pub struct Listed {
    pub events: Vec<Event>,
    pub cursor: Option<String>,
}

/// Up to `limit` events matching `filter`, newest first, after `cursor`.
pub async fn list(store: &dyn Store, filter: &Filter, limit: usize, cursor: Option<String>) -> ApiResult<Listed> {
    if let (Some(from), Some(to)) = (filter.from, filter.to)
        && from > to
    {
        return Err(ApiError::invalid_param("from", "from is after to"));
    }
    // Before any time (`0` sorts before every year), and after any (`~` after every digit).
    let from = filter.from.map_or_else(|| "0".to_string(), time_key);
    let to = filter.to.map_or_else(|| "~".to_string(), |t| format!("{}~", time_key(t)));
    let mut events = Vec::with_capacity(limit);
    let mut cursor = cursor;
    loop {
        let page =
            store.query(Query::new(Index::Gsi2, BY_TIME).between(from.clone(), to.clone()).backward().limit(limit.max(50)).cursor(cursor.take())).await?;
        let read = page.items.len();
        for (i, item) in page.items.iter().enumerate() {
            let Some(event) = item.get("event").and_then(Attr::as_str).and_then(|json| serde_json::from_str::<Event>(json).ok()) else { continue };
            if filter.keeps(&event) {
                events.push(event);
            }
            if events.len() == limit {
                // More may follow this item, in this page or the next.
                let more = i + 1 < read || page.cursor.is_some();
                return Ok(Listed { events, cursor: more.then(|| cursor_of(item, Index::Gsi2)) });
            }
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(Listed { events, cursor: None }),
        }
    }
}
