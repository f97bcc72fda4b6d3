//! `GET /admin/v1/me/usage/logs/export`: the caller's usage records with the logs' filters, as
//! JSON Lines or CSV, streamed page by page: memory holds one page however many records there
//! are, and the first bytes leave as soon as the first page is read.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorEnvelope;
use super::extract::{ApiQuery, Me};
use super::usage::LogView;
use crate::error::ApiResult;
use crate::pagination::Direction;
use crate::state::AppState;
use crate::usage;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export))
}

/// Records read (and held) per page of the export.
const PAGE: usize = 500;

#[derive(Clone, Copy, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    #[default]
    Jsonl,
}

super::usage::log_params!(ExportParams {
    /// `jsonl` (the default) or `csv`.
    #[param(value_type = Option<String>)]
    format: Option<Format>,
});

/// The CSV columns: a record's fields as the logs show them (`routing` as its JSON).
const COLUMNS: [&str; 32] = [
    "id",
    "request_id",
    "recorded_at",
    "api_key_id",
    "user_id",
    "org_id",
    "project_id",
    "model",
    "provider",
    "provider_source",
    "pricing_source",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "audio_seconds",
    "character_count",
    "image_count",
    "cost",
    "cost_micros",
    "input_price",
    "output_price",
    "provider_cost",
    "latency_ms",
    "ttft_ms",
    "status_code",
    "outcome",
    "streamed",
    "cancelled",
    "finish_reason",
    "http_referer",
    "error",
];

/// A text cell a spreadsheet would take for a formula (`=`, `+`, `-`, `@`, or a tab or carriage
/// return before one) gets a leading `'`, so it is shown as the text it is.
pub(super) fn neutralised(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{text}") } else { text.to_string() }
}

fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => neutralised(s),
        Some(v @ (Value::Array(_) | Value::Object(_))) => neutralised(&v.to_string()),
        Some(v) => v.to_string(),
    }
}

pub(super) fn csv_bytes(rows: impl IntoIterator<Item = Vec<String>>) -> Bytes {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        // Writing to memory cannot fail.
        let _ = writer.write_record(&row);
    }
    Bytes::from(writer.into_inner().unwrap_or_default())
}

/// Values as JSON Lines, one per line.
pub(super) fn jsonl_bytes<T: serde::Serialize>(values: impl IntoIterator<Item = T>) -> Bytes {
    let mut out = Vec::new();
    for value in values {
        if serde_json::to_writer(&mut out, &value).is_ok() {
            out.push(b'\n');
        }
    }
    Bytes::from(out)
}

/// One page of records in the format.
fn encode(format: Format, views: Vec<LogView>) -> Bytes {
    match format {
        Format::Jsonl => jsonl_bytes(views),
        Format::Csv => csv_bytes(views.into_iter().map(|view| {
            let value = serde_json::to_value(view).unwrap_or_default();
            COLUMNS.iter().map(|c| cell(value.get(*c))).collect()
        })),
    }
}

/// The caller's usage records, newest first, with the logs' filters, streamed as JSON Lines or
/// CSV (`content-disposition` names the file). A failure after the first bytes ends the file
/// with a line saying so.
#[utoipa::path(get, path = "/admin/v1/me/usage/logs/export", tag = "me", params(ExportParams),
    responses((status = 200, description = "the records, one per line", content_type = "application/x-ndjson"),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)))]
async fn export(State(state): State<AppState>, me: Me, ApiQuery(q): ApiQuery<ExportParams>) -> ApiResult<Response> {
    let (filter, may_match) = q.log_filter(&me)?;
    let format = q.format.unwrap_or_default();
    let owner = crate::keys::Owner::User { user_id: me.user_id }.tag();
    // The filters are checked before the first byte, so a bad one is a 400, not a cut file.
    let (first, pagination) = usage::logs(state.store.as_ref(), &owner, &filter, PAGE, None, Direction::Forward).await?;
    let header_row = matches!(format, Format::Csv).then(|| csv_bytes([COLUMNS.iter().map(|c| c.to_string()).collect()]));
    let first = if may_match { first } else { vec![] };
    let next = if may_match { pagination.next_cursor.filter(|_| pagination.has_more) } else { None };
    let first_bytes = encode(format, first.into_iter().map(LogView::from).collect());
    let store = state.store.clone();
    let rest = futures::stream::unfold(next, move |cursor| {
        let (store, owner, filter) = (store.clone(), owner.clone(), filter.clone());
        async move {
            let cursor = cursor?;
            match usage::logs(store.as_ref(), &owner, &filter, PAGE, Some(cursor), Direction::Forward).await {
                Ok((records, pagination)) => {
                    let next = pagination.next_cursor.filter(|_| pagination.has_more);
                    Some((encode(format, records.into_iter().map(LogView::from).collect()), next))
                }
                Err(e) => {
                    tracing::error!(error = %e, "a usage export failed part way");
                    let line = match format {
                        Format::Jsonl => format!("{}\n", serde_json::json!({"error": {"message": format!("the export stopped part way: {e}")}})),
                        Format::Csv => format!("# the export stopped part way: {e}\n"),
                    };
                    Some((Bytes::from(line), None))
                }
            }
        }
    });
    let head = futures::stream::iter(header_row.into_iter().chain([first_bytes]));
    let body = Body::from_stream(futures::StreamExt::map(futures::StreamExt::chain(head, rest), Ok::<_, std::convert::Infallible>));
    let (content_type, extension) = match format {
        Format::Jsonl => ("application/x-ndjson", "jsonl"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let filename = format!("usage-logs-{}.{extension}", state.clock.now().format("%Y%m%dT%H%M%SZ"));
    Ok(([(header::CONTENT_TYPE, content_type.to_string()), (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\""))], body)
        .into_response())
}
