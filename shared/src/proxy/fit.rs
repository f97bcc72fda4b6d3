//! A request's worst case against the budgets, made tight, and what to do when it does not fit.
//!
//! The worst case over every model the request may be served by: input bounded by the text the
//! request carries (`Inspected::worst_input_tokens`), each input token at its dearest class;
//! output at the request's `max_tokens`, else the model's `maxOutputTokens`, per answer. When a
//! budget refuses it, `max_tokens_within` finds the largest `max_tokens` whose worst case fits
//! what that budget has left: the refusal says so, and a key that opted in
//! (`fit_max_tokens`) is served with `max_tokens` lowered to it instead.

use crate::canonical::Inspected;
use crate::catalog::Model;
use crate::limits::{Charge, Refusal};
use crate::money::{self, TokenClasses, format_dollars};

/// The most `input` and `output` tokens can cost on `model`: every input token at its dearest
/// class (a cache write can cost more than plain input).
pub fn worst_cost(input: i64, output: i64, model: &Model) -> i64 {
    let prices = model.prices();
    money::cost(&TokenClasses { input, output, ..TokenClasses::default() }, &money::Prices { input: prices.worst_input(), ..prices })
}

/// The request's worst case over every candidate it may fall back to.
pub fn worst_case(req: &Inspected, candidates: &[Model]) -> Charge {
    let mut worst = Charge { calls: 1, ..Charge::default() };
    for model in candidates {
        let (input, output) = (req.worst_input_tokens(model.provider, model.upstream_id(), model.context_window), req.worst_output_tokens(model.output_cap()));
        worst.input_tokens = worst.input_tokens.max(input);
        worst.output_tokens = worst.output_tokens.max(output);
        worst.cost_micros = worst.cost_micros.max(worst_cost(input, output, model).saturating_add(super::fees::worst(&req.extras, model)));
    }
    worst
}

/// The largest `max_tokens` (per answer) below the request's own cap whose worst case costs at
/// most `left` micro-dollars on every candidate; `None` when not even 1 token fits, or when
/// output is not what makes it too dear.
pub fn max_tokens_within(left: i64, req: &Inspected, candidates: &[Model]) -> Option<i64> {
    let mut best = i64::MAX;
    let mut current = 0;
    for model in candidates {
        let prices = model.prices();
        let cap = req.output_tokens_each(model.output_cap());
        current = current.max(cap);
        // cost <= left  <=>  input x price + n x choices x output price <= left x 1e6 (cost
        // rounds up once, so this is exact).
        let input = i128::from(req.worst_input_tokens(model.provider, model.upstream_id(), model.context_window)) * i128::from(prices.worst_input())
            + i128::from(super::fees::worst(&req.extras, model)) * 1_000_000;
        let room = i128::from(left).saturating_mul(1_000_000) - input;
        let per_token = i128::from(prices.output) * i128::from(req.choices);
        let n = if per_token == 0 { i128::from(cap) } else { (room / per_token).min(i128::from(cap)) };
        best = best.min(i64::try_from(n).unwrap_or(i64::MAX));
    }
    (1..current).contains(&best).then_some(best)
}

/// A budget's refusal, saying what the request's worst case is, what is left, and which
/// `max_tokens` would fit.
pub fn explain(refused: Refusal, worst: &Charge, fit: Option<i64>) -> Refusal {
    let Refusal::Budget { message, left, level } = refused else { return refused };
    let advice = match fit {
        Some(n) => format!("max_tokens: {n} would fit (or create the key with fit_max_tokens to have it lowered for you)"),
        None => "no max_tokens would make it fit".to_string(),
    };
    Refusal::Budget {
        message: format!(
            "{message}. This request's worst case is ${} ({} input + {} output tokens) and ${} is left: {advice}",
            format_dollars(worst.cost_micros),
            worst.input_tokens,
            worst.output_tokens,
            format_dollars(left),
        ),
        left,
        level,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::canonical::{Endpoint, inspect};

    fn model(input: i64, output: i64, window: i64, max_output: Option<i64>) -> Model {
        let now = chrono::Utc::now();
        Model {
            id: "m".into(),
            provider: crate::providers::ProviderType::Mock,
            base_url: None,
            input_price_micros: input,
            output_price_micros: output,
            cached_input_price_micros: None,
            cache_write_price_micros: None,
            cache_write_1h_price_micros: None,
            context_window: window,
            max_output_tokens: max_output,
            capabilities: vec![],
            tool_call_prices_micros: Default::default(),
            service_tier_percent: Default::default(),
            allow_provider_objects: false,
            sovereignty: None,
            has_api_key: false,
            secret_id: uuid::Uuid::nil(),
            dynamic: None,
            routing: Default::default(),
            deployment: None,
            created_at: now,
            updated_at: now,
        }
    }

    fn chat(body: serde_json::Value) -> Inspected {
        inspect(Endpoint::Chat, &serde_json::to_vec(&body).unwrap()).unwrap()
    }

    #[test]
    fn a_hello_without_max_tokens_on_a_million_token_model_fits_five_dollars() {
        // $2 in / $8 out per million, a 1,000,000-token window, 32,768 output tokens at most.
        let m = model(2_000_000, 8_000_000, 1_000_000, Some(32_768));
        let worst = worst_case(&chat(json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]})), std::slice::from_ref(&m));
        assert_eq!(worst.output_tokens, 32_768, "the model's own output cap, not its context window");
        assert!(worst.cost_micros < 5_000_000, "{}", worst.cost_micros);
        let unbounded = model(2_000_000, 8_000_000, 1_000_000, None);
        assert_eq!(worst_case(&chat(json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]})), &[unbounded]).output_tokens, 1_000_000);
    }

    #[test]
    fn a_hi_with_five_tokens_fits_a_cent_at_a_hundred_dollars_per_million() {
        let m = model(100_000_000, 100_000_000, 128_000, None);
        let req = chat(json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}));
        // "user" + "hi" = 6 bytes, 4 framing, 3 reply priming: 13 input tokens; 5 output.
        assert_eq!(req.worst_input_tokens(crate::providers::ProviderType::Mock, "m", 128_000), 13);
        assert_eq!(worst_case(&req, &[m]).cost_micros, 1_800);
    }

    #[test]
    fn the_largest_max_tokens_that_fits_is_exact() {
        // 13 input tokens at $1/M = 13 micro-dollars; output $1000/M = 1000 per token.
        let m = model(1_000_000, 1_000_000_000, 100_000, None);
        let req = chat(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(max_tokens_within(5_013, &req, std::slice::from_ref(&m)), Some(5));
        assert_eq!(max_tokens_within(5_012, &req, std::slice::from_ref(&m)), Some(4));
        assert_eq!(max_tokens_within(1_012, &req, std::slice::from_ref(&m)), None, "not even one token");
        assert_eq!(max_tokens_within(12, &req, std::slice::from_ref(&m)), None, "not even the input");
        let n2 = chat(json!({"model": "m", "n": 2, "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(max_tokens_within(5_013, &n2, std::slice::from_ref(&m)), Some(2), "every answer pays");
        // Each candidate must fit: the dearer one decides.
        let dear = model(1_000_000, 2_000_000_000, 100_000, None);
        assert_eq!(max_tokens_within(5_013, &req, &[m.clone(), dear]), Some(2));
        // Already within: lowering would change nothing.
        let small = chat(json!({"model": "m", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(max_tokens_within(5_013, &small, &[m]), None);
    }
}
