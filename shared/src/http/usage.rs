//! Usage group: the caller's usage records (`/admin/v1/me/usage/logs`).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ErrorEnvelope;
use super::extract::{ApiQuery, Me};
use crate::error::ApiResult;
use crate::money::micros_to_dollars;
use crate::pagination::{Direction, Pagination, check_limit};
use crate::state::AppState;
use crate::usage::{self, Attempt, Outcome, UsageRecord};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(usage_logs))
}

/// One usage record, in the self-service seed's shape (plus `outcome`, the prices used,
/// `ttft_ms` and the routing trace).
#[derive(Serialize, ToSchema)]
pub struct LogView {
    id: Uuid,
    request_id: String,
    api_key_id: Option<Uuid>,
    user_id: Option<Uuid>,
    org_id: Option<Uuid>,
    project_id: Option<Uuid>,
    team_id: Option<Uuid>,
    service_account_id: Option<Uuid>,
    model: String,
    provider: String,
    provider_source: String,
    input_tokens: i64,
    output_tokens: i64,
    cached_tokens: i64,
    reasoning_tokens: i64,
    audio_seconds: i64,
    character_count: i64,
    image_count: i64,
    /// Dollars.
    cost: f64,
    cost_micros: i64,
    /// Dollars per million tokens, as charged.
    input_price: f64,
    output_price: f64,
    pricing_source: String,
    /// What the provider reported it charged, in dollars, where it reports it (OpenRouter).
    provider_cost: Option<f64>,
    latency_ms: i64,
    ttft_ms: Option<i64>,
    status_code: i64,
    outcome: Outcome,
    streamed: bool,
    cancelled: bool,
    finish_reason: Option<String>,
    http_referer: Option<String>,
    error: Option<String>,
    routing: Vec<Attempt>,
    recorded_at: DateTime<Utc>,
}

impl From<UsageRecord> for LogView {
    fn from(r: UsageRecord) -> Self {
        LogView {
            id: r.id,
            request_id: r.request_id,
            api_key_id: r.api_key_id,
            user_id: r.user_id,
            org_id: r.org_id,
            project_id: r.project_id,
            team_id: None,
            service_account_id: None,
            model: r.model,
            provider: r.provider,
            provider_source: r.provider_source,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cached_tokens: r.cached_tokens,
            reasoning_tokens: r.reasoning_tokens,
            audio_seconds: 0,
            character_count: 0,
            image_count: 0,
            cost: micros_to_dollars(r.cost_micros),
            cost_micros: r.cost_micros,
            input_price: micros_to_dollars(r.input_price_micros),
            output_price: micros_to_dollars(r.output_price_micros),
            pricing_source: r.pricing_source,
            provider_cost: r.provider_cost_micros.map(micros_to_dollars),
            latency_ms: r.latency_ms,
            ttft_ms: r.ttft_ms,
            status_code: r.status_code,
            outcome: r.outcome,
            streamed: r.streamed,
            cancelled: r.cancelled,
            finish_reason: r.finish_reason,
            http_referer: r.http_referer,
            error: r.error,
            routing: r.routing,
            recorded_at: r.recorded_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct LogPage {
    data: Vec<LogView>,
    pagination: Pagination,
}

/// A query-parameter struct with the logs' filters, as the seed lists them for the logs and their
/// export alike, and `$extra` fields of its own. (`serde(flatten)` cannot share the fields:
/// it does not combine with `deny_unknown_fields`, and an unknown parameter must be a 400.)
macro_rules! log_params {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(serde::Deserialize, utoipa::IntoParams)]
        #[into_params(parameter_in = Query)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            org_id: Option<uuid::Uuid>,
            user_id: Option<uuid::Uuid>,
            project_id: Option<uuid::Uuid>,
            team_id: Option<uuid::Uuid>,
            api_key_id: Option<uuid::Uuid>,
            service_account_id: Option<uuid::Uuid>,
            model: Option<String>,
            provider: Option<String>,
            provider_source: Option<String>,
            from: Option<chrono::DateTime<chrono::Utc>>,
            to: Option<chrono::DateTime<chrono::Utc>>,
            $($(#[$fmeta])* $field: $ty,)*
        }

        impl $name {
            /// The caller's filter, and whether any record of theirs can match it; a 403 for
            /// another user's usage or a key without `usage:read`.
            fn log_filter(&self, me: &$crate::http::extract::Me) -> $crate::error::ApiResult<($crate::usage::LogFilter, bool)> {
                me.require_key_scope("usage:read")?;
                if self.user_id.is_some_and(|u| u != me.user_id) {
                    return Err($crate::error::ApiError::forbidden("not_your_usage", "user_id must be your own id here"));
                }
                // Personal keys belong to no organisation, project, team or service account (yet).
                let may_match = self.org_id.is_none() && self.project_id.is_none() && self.team_id.is_none() && self.service_account_id.is_none();
                let filter = $crate::usage::LogFilter {
                    api_key_id: self.api_key_id,
                    model: self.model.clone(),
                    provider: self.provider.clone(),
                    provider_source: self.provider_source.clone(),
                    from: self.from,
                    to: self.to,
                };
                Ok((filter, may_match))
            }
        }
    };
}
pub(super) use log_params;

log_params!(LogParams {
    limit: Option<i64>,
    cursor: Option<String>,
    #[param(value_type = Option<String>)]
    direction: Option<Direction>,
});

/// The caller's usage records, newest first, with the seed's filters and cursor pagination.
#[utoipa::path(get, path = "/admin/v1/me/usage/logs", tag = "me", params(LogParams),
    responses((status = 200, body = LogPage), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)))]
async fn usage_logs(State(state): State<AppState>, me: Me, ApiQuery(q): ApiQuery<LogParams>) -> ApiResult<Json<LogPage>> {
    let (filter, may_match) = q.log_filter(&me)?;
    let limit = check_limit(q.limit)?;
    if !may_match {
        return Ok(Json(LogPage { data: vec![], pagination: Pagination { has_more: false, limit, next_cursor: None, prev_cursor: None } }));
    }
    let owner = format!("user#{}", me.user_id);
    let (records, pagination) = usage::logs(state.store.as_ref(), &owner, &filter, limit, q.cursor, q.direction.unwrap_or_default()).await?;
    Ok(Json(LogPage { data: records.into_iter().map(LogView::from).collect(), pagination }))
}
