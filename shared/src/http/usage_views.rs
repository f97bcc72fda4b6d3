//! The caller's usage, summed: the self-service seed's eight `/admin/v1/me/usage*` views, all
//! read from rollups (`usage::rollups`), so each costs the days and values it covers, never
//! the number of records. `image_count`, `audio_seconds` and `character_count` are always 0:
//! no endpoint Tollgate serves produces images, audio or character-priced text.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorEnvelope;
use super::extract::{ApiQuery, Me};
use crate::error::{ApiError, ApiResult};
use crate::money::micros_to_dollars;
use crate::state::AppState;
use crate::usage::rollups::{self, Dimension, Row, Totals};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(summary))
        .routes(routes!(by_date))
        .routes(routes!(by_date_model))
        .routes(routes!(by_date_pricing_source))
        .routes(routes!(by_date_provider))
        .routes(routes!(by_model))
        .routes(routes!(by_pricing_source))
        .routes(routes!(by_provider))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// Start date (YYYY-MM-DD, UTC), included.
    start_date: Option<String>,
    /// End date (YYYY-MM-DD, UTC), included.
    end_date: Option<String>,
}

impl Range {
    fn days(&self) -> ApiResult<(Option<NaiveDate>, Option<NaiveDate>)> {
        let day = |param: &str, value: &Option<String>| {
            value
                .as_deref()
                .map(|v| v.parse::<NaiveDate>().map_err(|_| ApiError::invalid_param(param, format!("{param} {v:?} is not a date: use YYYY-MM-DD"))))
                .transpose()
        };
        let (start, end) = (day("start_date", &self.start_date)?, day("end_date", &self.end_date)?);
        if let (Some(s), Some(e)) = (start, end)
            && e < s
        {
            return Err(ApiError::invalid_param("end_date", format!("end_date {e} is before start_date {s}")));
        }
        Ok((start, end))
    }
}

/// The caller's totals over the range.
#[derive(Serialize, ToSchema)]
pub struct UsageSummary {
    audio_seconds: i64,
    character_count: i64,
    first_request_at: Option<DateTime<Utc>>,
    image_count: i64,
    input_tokens: i64,
    last_request_at: Option<DateTime<Utc>>,
    output_tokens: i64,
    request_count: i64,
    /// Dollars.
    total_cost: f64,
    total_tokens: i64,
}

/// One row of a grouped view: the group's keys (`date`, and `model`, `provider` or
/// `pricing_source`, as the view groups by), then its totals.
#[derive(Serialize, ToSchema)]
pub struct UsageRow {
    audio_seconds: i64,
    character_count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    date: Option<NaiveDate>,
    image_count: i64,
    input_tokens: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    output_tokens: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pricing_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
    request_count: i64,
    /// Dollars.
    total_cost: f64,
    total_tokens: i64,
}

fn row(date: Option<NaiveDate>, dim: Dimension, value: &str, t: Totals) -> UsageRow {
    let named = |d: Dimension| (dim == d).then(|| value.to_string());
    UsageRow {
        audio_seconds: 0,
        character_count: 0,
        date,
        image_count: 0,
        input_tokens: t.input_tokens,
        model: named(Dimension::Model),
        output_tokens: t.output_tokens,
        pricing_source: named(Dimension::PricingSource),
        provider: named(Dimension::Provider),
        request_count: t.request_count,
        total_cost: micros_to_dollars(t.cost_micros),
        total_tokens: t.input_tokens.saturating_add(t.output_tokens),
    }
}

/// A view grouped by `dim`, by day too with `by_date`. Days in order; values by cost, highest
/// first.
async fn view(state: &AppState, me: &Me, range: &Range, dim: Dimension, by_date: bool) -> ApiResult<Json<Vec<UsageRow>>> {
    me.require_key_scope("usage:read")?;
    let (start, end) = range.days()?;
    let rows: Vec<Row> = rollups::read(state.store.as_ref(), &owner(me), dim, start, end).await?;
    let mut out: Vec<UsageRow> = if by_date {
        rows.iter().map(|r| row(Some(r.day), dim, &r.value, r.totals)).collect()
    } else {
        rollups::by_value(&rows).into_iter().map(|(value, t)| row(None, dim, &value, t)).collect()
    };
    out.sort_by(|a, b| a.date.cmp(&b.date).then(b.total_cost.total_cmp(&a.total_cost)));
    Ok(Json(out))
}

fn owner(me: &Me) -> String {
    crate::keys::Owner::User { user_id: me.user_id }.tag()
}

/// The caller's usage over the range (every day when none is given).
#[utoipa::path(get, path = "/admin/v1/me/usage", tag = "me", params(Range),
    responses((status = 200, body = UsageSummary), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)))]
async fn summary(State(state): State<AppState>, me: Me, ApiQuery(range): ApiQuery<Range>) -> ApiResult<Json<UsageSummary>> {
    me.require_key_scope("usage:read")?;
    let (start, end) = range.days()?;
    let owner = owner(&me);
    let rows = rollups::read(state.store.as_ref(), &owner, Dimension::All, start, end).await?;
    let t = rows.iter().fold(Totals::default(), |sum, r| sum.plus(r.totals));
    let from = start.and_then(|d| d.and_hms_opt(0, 0, 0)).map(|d| d.and_utc());
    let to = end.and_then(|d| d.and_hms_micro_opt(23, 59, 59, 999_999)).map(|d| d.and_utc());
    let (first_request_at, last_request_at) = crate::usage::first_and_last(state.store.as_ref(), &owner, from, to).await?;
    Ok(Json(UsageSummary {
        audio_seconds: 0,
        character_count: 0,
        first_request_at,
        image_count: 0,
        input_tokens: t.input_tokens,
        last_request_at,
        output_tokens: t.output_tokens,
        request_count: t.request_count,
        total_cost: micros_to_dollars(t.cost_micros),
        total_tokens: t.input_tokens.saturating_add(t.output_tokens),
    }))
}

macro_rules! grouped_view {
    ($name:ident, $path:literal, $dim:expr, $by_date:expr, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(get, path = $path, tag = "me", params(Range),
                            responses((status = 200, body = Vec<UsageRow>), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)))]
        async fn $name(State(state): State<AppState>, me: Me, ApiQuery(range): ApiQuery<Range>) -> ApiResult<Json<Vec<UsageRow>>> {
            view(&state, &me, &range, $dim, $by_date).await
        }
    };
}

grouped_view!(by_date, "/admin/v1/me/usage/by-date", Dimension::All, true, "The caller's usage per UTC day.");
grouped_view!(by_date_model, "/admin/v1/me/usage/by-date-model", Dimension::Model, true, "The caller's usage per day and model.");
grouped_view!(
    by_date_pricing_source,
    "/admin/v1/me/usage/by-date-pricing-source",
    Dimension::PricingSource,
    true,
    "The caller's usage per day and pricing source."
);
grouped_view!(by_date_provider, "/admin/v1/me/usage/by-date-provider", Dimension::Provider, true, "The caller's usage per day and provider.");
grouped_view!(by_model, "/admin/v1/me/usage/by-model", Dimension::Model, false, "The caller's usage per model over the range.");
grouped_view!(
    by_pricing_source,
    "/admin/v1/me/usage/by-pricing-source",
    Dimension::PricingSource,
    false,
    "The caller's usage per pricing source over the range."
);
grouped_view!(by_provider, "/admin/v1/me/usage/by-provider", Dimension::Provider, false, "The caller's usage per provider over the range.");
