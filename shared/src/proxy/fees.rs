//! What a request can cost beyond its tokens, and what it may name at the provider: OpenAI's
//! built-in tools bill per call, a `service_tier` of priority or flex bills tokens at another
//! rate, and stored prompts, files and vector stores are the account's own objects (the
//! operator's, on a catalog model). On a model a global admin configured (the operator pays),
//! each is served only when the catalog says what it costs or allows it:
//! - a built-in tool needs its per-call price in the model's `toolCallPrices`, and the request a
//!   `max_tool_calls` (so the fees can be reserved); each call made is charged;
//! - a service tier needs its multiplier in `serviceTierMultipliers`; the tokens are reserved
//!   and charged at the model's prices times it;
//! - provider-side object ids need the model's `allowProviderObjects`.
//!
//! Otherwise the request is a 400 naming the parameter. A user's own provider is paid by the
//! user's own key, and passes as it is.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::catalog::Model;
use crate::error::{ApiError, ApiResult};

/// The built-in tools a price may be set for, as `toolCallPrices` names them.
pub const HOSTED_TOOLS: [&str; 7] = ["web_search", "file_search", "code_interpreter", "image_generation", "computer_use", "mcp", "local_shell"];

/// The service tiers a multiplier may be set for (`auto` and `default` bill the standard rate).
pub const SERVICE_TIERS: [&str; 3] = ["priority", "flex", "scale"];

/// What a request asks for beyond tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    /// The built-in tools it offers (as `HOSTED_TOOLS` names them; an unknown one by its type).
    pub hosted: Vec<String>,
    /// How many built-in tool calls it allows (`max_tool_calls`; a chat web search is one).
    pub max_calls: Option<i64>,
    /// A service tier billed at another rate.
    pub tier: Option<String>,
    /// The parameter naming a provider-side object (a stored prompt, a file, a vector store).
    pub objects: Option<&'static str>,
}

/// The name `toolCallPrices` uses for a tool's `type`, or `None` for a function the caller runs.
fn hosted_kind(kind: &str) -> Option<String> {
    Some(match kind {
        "function" | "custom" => return None,
        k if k.starts_with("web_search") => "web_search".into(),
        k if k.starts_with("computer_use") => "computer_use".into(),
        k => k.to_string(),
    })
}

fn tier(body: &Map<String, Value>) -> Option<String> {
    body.get("service_tier").and_then(Value::as_str).filter(|t| !matches!(*t, "auto" | "default")).map(str::to_string)
}

/// Whether any content part in `items` names a file by id.
fn names_files(items: &[Value]) -> bool {
    items
        .iter()
        .filter_map(|i| i.get("content").and_then(Value::as_array))
        .flatten()
        .any(|p| p.get("file_id").is_some() || p.pointer("/file/file_id").is_some())
}

/// A Responses request's extras: its built-in tools, `max_tool_calls`, tier, and any stored
/// prompt, file id or vector store.
pub fn of_responses(request: &Map<String, Value>, input: &[Value]) -> Extras {
    let tools = request.get("tools").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut hosted: Vec<String> = tools.iter().filter_map(|t| t.get("type").and_then(Value::as_str)).filter_map(hosted_kind).collect();
    hosted.sort();
    hosted.dedup();
    let objects = if request.get("prompt").is_some_and(|p| !p.is_null()) {
        Some("prompt")
    } else if tools.iter().any(|t| t.get("vector_store_ids").is_some() || t.get("container").is_some_and(Value::is_string)) {
        Some("tools")
    } else if names_files(input) {
        Some("input")
    } else {
        None
    };
    Extras { hosted, max_calls: request.get("max_tool_calls").and_then(Value::as_i64), tier: tier(request), objects }
}

/// A chat request's extras: a web search (`web_search_options`, one search), its tier, and
/// files by id.
pub fn of_chat(body: &Map<String, Value>) -> Extras {
    let search = body.get("web_search_options").is_some_and(|o| !o.is_null());
    let messages = body.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    Extras {
        hosted: if search { vec!["web_search".into()] } else { vec![] },
        max_calls: search.then_some(1),
        tier: tier(body),
        objects: names_files(messages).then_some("messages"),
    }
}

fn refuse(param: &str, message: String) -> ApiError {
    ApiError::invalid_param(param, message)
}

/// Checks every candidate a global admin configured against what the request asks for, and
/// prices its tokens at the requested tier (each candidate is then reserved and charged at
/// those prices).
pub fn admit(extras: &Extras, candidates: &mut [Model]) -> ApiResult<()> {
    for model in candidates.iter_mut().filter(|m| m.dynamic.is_none()) {
        for kind in &extras.hosted {
            if !model.tool_call_prices_micros.contains_key(kind) {
                let param = if extras.max_calls == Some(1) && kind == "web_search" && extras.hosted.len() == 1 { "web_search_options" } else { "tools" };
                return Err(refuse(
                    param,
                    format!(
                        "the {kind} tool bills per call, and {} has no price for it; an admin can set toolCallPrices on the model (PUT /api/models/{}), or leave the tool out",
                        model.id, model.id
                    ),
                ));
            }
        }
        if !extras.hosted.is_empty() && extras.max_calls.is_none_or(|n| n < 1) {
            return Err(refuse(
                "max_tool_calls",
                "built-in tools bill per call: set max_tool_calls (a positive whole number) so their fees can be reserved".into(),
            ));
        }
        if let Some(tier) = &extras.tier {
            let Some(percent) = model.service_tier_percent.get(tier).copied() else {
                return Err(refuse(
                    "service_tier",
                    format!(
                        "{} has no price for the {tier} service tier; an admin can set serviceTierMultipliers on the model, or send the request without service_tier",
                        model.id
                    ),
                ));
            };
            let scale = |micros: i64| i64::try_from(i128::from(micros) * i128::from(percent) / 100).unwrap_or(i64::MAX);
            model.input_price_micros = scale(model.input_price_micros);
            model.output_price_micros = scale(model.output_price_micros);
            model.cached_input_price_micros = model.cached_input_price_micros.map(scale);
            model.cache_write_price_micros = model.cache_write_price_micros.map(scale);
        }
        if let Some(param) = extras.objects.filter(|_| !model.allow_provider_objects) {
            return Err(refuse(
                param,
                format!(
                    "{param} names objects stored at the provider (a prompt, a file or a vector store), which {} may not use: they would be the operator's; an admin can set allowProviderObjects on the model",
                    model.id
                ),
            ));
        }
    }
    Ok(())
}

/// The most the request's built-in tool calls can cost on `model`.
pub fn worst(extras: &Extras, model: &Model) -> i64 {
    if model.dynamic.is_some() {
        return 0;
    }
    let dearest = extras.hosted.iter().filter_map(|k| model.tool_call_prices_micros.get(k)).copied().max().unwrap_or(0);
    dearest.saturating_mul(extras.max_calls.unwrap_or(0).max(0))
}

/// What the calls made cost on `model` (by tool, as `HOSTED_TOOLS` names them).
pub fn charged(calls: &BTreeMap<String, i64>, model: &Model) -> i64 {
    if model.dynamic.is_some() {
        return 0;
    }
    calls.iter().fold(0i64, |sum, (kind, n)| sum.saturating_add(model.tool_call_prices_micros.get(kind).copied().unwrap_or(0).saturating_mul(*n)))
}

/// The calls a chat request's answer made: its web search (`web_search_options`), once.
pub fn chat_calls(extras: &Extras) -> BTreeMap<String, i64> {
    match (extras.hosted.as_slice(), extras.max_calls) {
        ([search], Some(1)) if search == "web_search" => BTreeMap::from([(search.clone(), 1)]),
        _ => BTreeMap::new(),
    }
}

/// The built-in tool a Responses output item is a call of (`web_search_call`, ...).
pub fn call_kind(item_type: &str) -> Option<String> {
    let kind = item_type.strip_suffix("_call")?;
    match kind {
        "function" | "custom_tool" => None,
        "computer" => Some("computer_use".into()),
        k => hosted_kind(k),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_responses_request_names_its_tools_tier_and_objects() {
        let body = json!({"tools": [{"type": "web_search_preview"}, {"type": "function", "name": "f"}, {"type": "file_search", "vector_store_ids": ["vs_1"]}],
                          "max_tool_calls": 3, "service_tier": "priority"});
        let extras = of_responses(body.as_object().unwrap(), &[]);
        assert_eq!(extras.hosted, ["file_search", "web_search"]);
        assert_eq!((extras.max_calls, extras.tier.as_deref(), extras.objects), (Some(3), Some("priority"), Some("tools")));
        let prompt = of_responses(json!({"prompt": {"id": "pmpt_1"}, "service_tier": "auto"}).as_object().unwrap(), &[]);
        assert_eq!((prompt.objects, prompt.tier), (Some("prompt"), None));
        let file = of_responses(&Map::new(), &[json!({"type": "message", "role": "user", "content": [{"type": "input_file", "file_id": "file-1"}]})]);
        assert_eq!(file.objects, Some("input"));
        assert_eq!(call_kind("web_search_call").as_deref(), Some("web_search"));
        assert_eq!(call_kind("computer_call").as_deref(), Some("computer_use"));
        assert_eq!(call_kind("function_call"), None);
    }
}
