//! Keyset pagination as the self-service seed describes it (`limit`, `cursor`, `direction`;
//! `has_more`, `next_cursor`, `prev_cursor`) over any newest-first index listing. `next_cursor`
//! continues in the direction asked for; `prev_cursor` goes back the other way (pass it with
//! the opposite `direction`).

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::store::{Index, Item, Query, SkCond, Store, cursor_of};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Towards older items (the default).
    #[default]
    Forward,
    /// Towards newer items.
    Backward,
}

/// The seed's listing parameters, for every listing that pages this way.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    #[param(value_type = Option<String>)]
    pub direction: Option<Direction>,
    pub include_deleted: Option<bool>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Pagination {
    pub has_more: bool,
    pub limit: usize,
    pub next_cursor: Option<String>,
    pub prev_cursor: Option<String>,
}

pub fn check_limit(limit: Option<i64>) -> ApiResult<usize> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(l) if (1..=MAX_LIMIT as i64).contains(&l) => Ok(l as usize),
        Some(_) => Err(ApiError::invalid_param("limit", format!("limit must be between 1 and {MAX_LIMIT}"))),
    }
}

/// One page of the newest-first listing at (`index`, `pk`), keeping only items `keep` accepts.
#[allow(clippy::too_many_arguments)] // each is one of the seed's listing parameters
pub async fn page(
    store: &dyn Store,
    index: Index,
    pk: &str,
    sk: Option<SkCond>,
    limit: usize,
    cursor: Option<String>,
    direction: Direction,
    keep: impl Fn(&Item) -> bool,
) -> ApiResult<(Vec<Item>, Pagination)> {
    let had_cursor = cursor.is_some();
    let mut found: Vec<Item> = Vec::new();
    let mut next = cursor;
    loop {
        let mut query = Query::new(index, pk).limit(limit + 1 - found.len()).cursor(next.take());
        query.sk = sk.clone();
        if direction == Direction::Forward {
            query = query.backward();
        }
        let page = store.query(query).await?;
        found.extend(page.items.into_iter().filter(|i| keep(i)));
        if found.len() > limit || page.cursor.is_none() {
            break;
        }
        next = page.cursor;
    }
    let has_more = found.len() > limit;
    found.truncate(limit);
    // Cursors name the last item returned in each direction.
    let ahead = found.last().map(|i| cursor_of(i, index));
    let behind = if had_cursor { found.first().map(|i| cursor_of(i, index)) } else { None };
    if direction == Direction::Backward {
        found.reverse();
    }
    let pagination = Pagination { has_more, limit, next_cursor: if has_more { ahead } else { None }, prev_cursor: behind };
    Ok((found, pagination))
}
