//! Usage of a set of owners grouped for dashboards (`GET /api/usage/summary`), summed from
//! their rollups: the cost depends on the owners, days and values asked for, not on how many
//! records there are.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::rollups::{self, Dimension, Row, Totals};
use crate::error::ApiResult;
use crate::store::Store;

/// Owners read at once.
const CONCURRENCY: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Day,
    Model,
    Provider,
    /// The project whose token made the request (no key: outside any project).
    Project,
    /// The API key (token) that made the request.
    Token,
}

/// The sums of the records of `owners` between `start` and `end` (UTC days, both included),
/// by group; `None` is the group of records that have no value for it (no project).
pub async fn grouped(
    store: &dyn Store,
    owners: &[String],
    by: GroupBy,
    start: Option<NaiveDate>,
    end: Option<NaiveDate>,
) -> ApiResult<BTreeMap<Option<String>, Totals>> {
    let dim = match by {
        GroupBy::Day | GroupBy::Project => Dimension::All,
        GroupBy::Model => Dimension::Model,
        GroupBy::Provider => Dimension::Provider,
        GroupBy::Token => Dimension::Token,
    };
    let reads = futures::stream::iter(owners.iter().cloned().map(|owner| read(store, owner, dim, start, end)));
    let rows: Vec<(String, Row)> = reads.buffer_unordered(CONCURRENCY).try_concat().await?;
    let mut out: BTreeMap<Option<String>, Totals> = BTreeMap::new();
    for (owner, row) in rows {
        let key = match by {
            GroupBy::Day => Some(row.day.to_string()),
            GroupBy::Project => owner.strip_prefix("project#").map(str::to_string),
            // A record without the value (a lost request's provider) is its own group.
            _ => Some(row.value).filter(|v| !v.is_empty()),
        };
        let sum = out.entry(key).or_default();
        *sum = sum.plus(row.totals);
    }
    Ok(out)
}

async fn read(store: &dyn Store, owner: String, dim: Dimension, start: Option<NaiveDate>, end: Option<NaiveDate>) -> ApiResult<Vec<(String, Row)>> {
    let rows = rollups::read(store, &owner, dim, start, end).await?;
    Ok(rows.into_iter().map(|row| (owner.clone(), row)).collect())
}
