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

use crate::canonical::extras::Extras;
use crate::catalog::Model;
use crate::error::{ApiError, ApiResult};

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
