//! Usage group, management family: `GET /api/usage` (filtered, offset- or cursor-paginated),
//! `GET /api/usage/:id` with the routing trace, and our `GET /api/usage/summary` for
//! dashboards. A global admin sees every record; anyone else with `report:read` sees their own,
//! their projects' and the records of workspaces they manage; a record they may not see does
//! not exist for them (404).

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ErrorEnvelope;
use super::extract::{ApiQuery, Caller};
use super::projects::viewer;
use crate::error::{ApiError, ApiResult};
use crate::money::micros_to_dollars;
use crate::state::AppState;
use crate::usage::grouped::{self, GroupBy};
use crate::usage::listing::{self, Filter, Start};
use crate::usage::{self, Attempt, Outcome, UsageRecord};
use crate::usage_visibility::Visibility;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(query_usage)).routes(routes!(usage_summary)).routes(routes!(get_usage))
}

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordView {
    /// The request id (also the response's `x-request-id`).
    id: String,
    timestamp: DateTime<Utc>,
    project_id: Option<Uuid>,
    workspace_id: Option<Uuid>,
    user_id: Option<Uuid>,
    token_id: Option<Uuid>,
    model: String,
    provider: String,
    endpoint: String,
    input_tokens: i64,
    output_tokens: i64,
    cached_tokens: i64,
    cache_write_tokens: i64,
    /// Of the cache writes, those to Anthropic's 1-hour cache.
    cache_write_1h_tokens: i64,
    reasoning_tokens: i64,
    /// Dollars.
    cost: f64,
    /// What each token class was charged at: dollars per million tokens.
    #[schema(value_type = Object)]
    prices: serde_json::Value,
    latency_ms: i64,
    ttft_ms: Option<i64>,
    status_code: i64,
    outcome: Outcome,
    streamed: bool,
    cancelled: bool,
    finish_reason: Option<String>,
    error: Option<String>,
    /// Only in `GET /api/usage/:id`: the models considered, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    candidates: Option<Vec<String>>,
    /// Only in `GET /api/usage/:id`: every attempt, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    routing: Option<Vec<Attempt>>,
}

fn view(r: UsageRecord, with_trace: bool) -> RecordView {
    RecordView {
        id: r.request_id,
        timestamp: r.recorded_at,
        project_id: r.project_id,
        workspace_id: r.org_id,
        user_id: r.user_id,
        token_id: r.api_key_id,
        model: r.model,
        provider: r.provider,
        endpoint: r.endpoint,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        cached_tokens: r.cached_tokens,
        cache_write_tokens: r.cache_write_tokens,
        cache_write_1h_tokens: r.cache_write_1h_tokens,
        reasoning_tokens: r.reasoning_tokens,
        cost: micros_to_dollars(r.cost_micros),
        prices: serde_json::json!({
            "input": micros_to_dollars(r.input_price_micros), "cachedInput": micros_to_dollars(r.cached_input_price_micros),
            "cacheWrite": micros_to_dollars(r.cache_write_price_micros), "cacheWrite1h": micros_to_dollars(r.cache_write_1h_price_micros),
            "output": micros_to_dollars(r.output_price_micros),
        }),
        latency_ms: r.latency_ms,
        ttft_ms: r.ttft_ms,
        status_code: r.status_code,
        outcome: r.outcome,
        streamed: r.streamed,
        cancelled: r.cancelled,
        finish_reason: r.finish_reason,
        error: r.error,
        candidates: with_trace.then_some(r.candidates),
        routing: with_trace.then_some(r.routing),
    }
}

/// The deepest `offset` `/api/usage` takes.
pub const MAX_OFFSET: usize = 10_000;

#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Start of the range: an RFC 3339 time or a date (its start, UTC).
    from: Option<String>,
    /// End of the range: an RFC 3339 time or a date (its end, UTC).
    to: Option<String>,
    /// A project slug.
    project: Option<String>,
    /// A model id.
    model: Option<String>,
    outcome: Option<Outcome>,
    /// At most this many records (default 100, at most 1000).
    limit: Option<usize>,
    /// Skip this many matching records first (at most 10000; use `cursor` to page deeper).
    #[param(maximum = 10000)]
    offset: Option<usize>,
    /// Our addition: continue after the page that returned this `nextCursor` (the same
    /// filters); each page costs the same however deep it is.
    cursor: Option<String>,
}

fn parse_time(raw: &str, param: &str, end_of_day: bool) -> ApiResult<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| ApiError::invalid_param(param, format!("{param} must be a date (2026-11-23) or an RFC 3339 time (2026-11-23T10:00:00Z)")))?;
    let time = if end_of_day { date.and_hms_milli_opt(23, 59, 59, 999) } else { date.and_hms_opt(0, 0, 0) };
    Ok(time.expect("valid time of day").and_utc())
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsagePage {
    records: Vec<RecordView>,
    limit: usize,
    offset: usize,
    has_more: bool,
    /// Pass as `cursor` for the next page; absent on the last.
    next_cursor: Option<String>,
}

/// Usage records, newest first.
#[utoipa::path(get, path = "/api/usage", tag = "usage", params(UsageQuery),
    responses((status = 200, body = UsagePage), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
async fn query_usage(State(state): State<AppState>, caller: Caller, ApiQuery(q): ApiQuery<UsageQuery>) -> ApiResult<Json<UsagePage>> {
    let visibility = Visibility::of(state.store.as_ref(), &viewer(&caller)).await?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_param("limit", format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let offset = q.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        // An offset reads every record it skips from each owner it covers; past this, a page
        // would hold that many records in memory. A cursor costs the same at any depth.
        return Err(ApiError::invalid_param("offset", format!("offset may be at most {MAX_OFFSET}; page deeper with cursor (each page's nextCursor)")));
    }
    let start = match q.cursor.as_deref() {
        Some(cursor) => Start::After(listing::decode_cursor(cursor)?, offset),
        None => Start::Offset(offset),
    };
    let filter = Filter {
        from: q.from.as_deref().map(|f| parse_time(f, "from", false)).transpose()?,
        to: q.to.as_deref().map(|t| parse_time(t, "to", true)).transpose()?,
        model: q.model,
        outcome: q.outcome,
    };
    let owners = visibility.scope(state.store.as_ref(), &viewer(&caller), q.project.as_deref(), None).await?;
    let page = listing::page(state.store.as_ref(), &owners, &filter, start, limit).await?;
    let records = page.records.into_iter().filter(|r| visibility.sees(r)).map(|r| view(r, false)).collect();
    Ok(Json(UsagePage { records, limit, offset, has_more: page.has_more, next_cursor: page.next_cursor }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    /// What to group by (default `day`).
    #[param(value_type = Option<String>)]
    group_by: Option<GroupBy>,
    /// First day counted: a date, or an RFC 3339 time (its UTC day). Whole UTC days are
    /// counted, as rollups keep them.
    from: Option<String>,
    /// Last day counted, likewise.
    to: Option<String>,
    /// A project slug.
    project: Option<String>,
    /// A workspace id: its own tokens' usage and its projects'.
    business_id: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageGroup {
    /// The day (YYYY-MM-DD), model, provider, project id or token id; null for records that
    /// have none (`project`: outside any project).
    key: Option<String>,
    request_count: i64,
    input_tokens: i64,
    output_tokens: i64,
    total_tokens: i64,
    /// Dollars.
    cost: f64,
}

impl UsageGroup {
    fn of(key: Option<String>, t: usage::rollups::Totals) -> Self {
        UsageGroup {
            key,
            request_count: t.request_count,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            total_tokens: t.input_tokens.saturating_add(t.output_tokens),
            cost: micros_to_dollars(t.cost_micros),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupedUsage {
    #[schema(value_type = String)]
    group_by: GroupBy,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    /// By key (days in order).
    groups: Vec<UsageGroup>,
    total: UsageGroup,
}

/// Usage grouped for dashboards (our addition), from the rollups, over the records the caller
/// may see.
#[utoipa::path(get, path = "/api/usage/summary", tag = "usage", params(SummaryQuery),
    responses((status = 200, body = GroupedUsage), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn usage_summary(State(state): State<AppState>, caller: Caller, ApiQuery(q): ApiQuery<SummaryQuery>) -> ApiResult<Json<GroupedUsage>> {
    let visibility = Visibility::of(state.store.as_ref(), &viewer(&caller)).await?;
    let from = q.from.as_deref().map(|f| parse_time(f, "from", false)).transpose()?.map(|t| t.date_naive());
    let to = q.to.as_deref().map(|t| parse_time(t, "to", true)).transpose()?.map(|t| t.date_naive());
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(ApiError::invalid_param("from", "from must not be after to"));
    }
    let by = q.group_by.unwrap_or(GroupBy::Day);
    let owners = visibility.scope(state.store.as_ref(), &viewer(&caller), q.project.as_deref(), q.business_id).await?;
    let sums = grouped::grouped(state.store.as_ref(), &owners, by, from, to).await?;
    let total = sums.values().fold(usage::rollups::Totals::default(), |a, b| a.plus(*b));
    let groups = sums.into_iter().map(|(key, t)| UsageGroup::of(key, t)).collect();
    Ok(Json(GroupedUsage { group_by: by, from, to, groups, total: UsageGroup::of(None, total) }))
}

/// One record with its routing trace; `id` is the request id.
#[utoipa::path(get, path = "/api/usage/{id}", tag = "usage", params(("id" = String, Path)),
    responses((status = 200, body = RecordView), (status = 404, body = ErrorEnvelope)))]
async fn get_usage(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<RecordView>> {
    let visibility = Visibility::of(state.store.as_ref(), &viewer(&caller)).await?;
    let record = usage::by_request_id(state.store.as_ref(), &id)
        .await?
        .filter(|r| visibility.sees(r))
        .ok_or_else(|| ApiError::not_found(format!("no usage record {id}")))?;
    Ok(Json(view(record, true)))
}
