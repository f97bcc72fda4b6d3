//! Money is integer micro-dollars (1 USD = 1 000 000) everywhere inside Tollgate. Dollars as
//! JSON numbers exist only at the API's edge, converted here once.

use crate::error::{ApiError, ApiResult};

pub const MICROS_PER_DOLLAR: i64 = 1_000_000;
pub const MICROS_PER_CENT: i64 = 10_000;

/// A dollar amount from the API (e.g. a price of 0.25 $/M tokens, a budget of 25 $) as
/// micro-dollars. Amounts are rounded to the micro-dollar; negative, non-finite and absurd ones
/// are refused.
pub fn dollars_to_micros(dollars: f64, param: &str) -> ApiResult<i64> {
    if !dollars.is_finite() || !(0.0..=1e9).contains(&dollars) {
        return Err(ApiError::invalid_param(param, format!("{param} must be a dollar amount between 0 and 1000000000")));
    }
    Ok((dollars * MICROS_PER_DOLLAR as f64).round() as i64)
}

/// Micro-dollars as dollars, for API responses and headers.
/// A cost a provider reported in dollars (a JSON number, so binary floating point), in
/// micro-dollars: rounded up, after the float's own noise below a thousandth of a micro-dollar
/// is taken off (0.000014 is 13.999999999999998 micro-dollars as a float, and costs 14).
/// `None` for what is no cost (negative, not finite, or past any budget).
pub fn reported_dollars_to_micros(dollars: f64) -> Option<i64> {
    let micros = dollars * MICROS_PER_DOLLAR as f64;
    if !micros.is_finite() || micros < 0.0 || micros > i64::MAX as f64 / 2.0 {
        return None;
    }
    let nearest = micros.round();
    Some(if (micros - nearest).abs() < 1e-3 { nearest } else { micros.ceil() } as i64)
}

pub fn micros_to_dollars(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_DOLLAR as f64
}

/// The exact decimal text of a micro-dollar amount ("0.000125"), for headers.
pub fn format_dollars(micros: i64) -> String {
    // Written out rather than with `format!`, which costs several times this (two per request,
    // in the budget headers).
    let abs = micros.unsigned_abs();
    let (mut whole, mut fraction) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (whole, fraction) = (whole.format(abs / 1_000_000), fraction.format(abs % 1_000_000));
    let mut out = String::with_capacity(usize::from(micros < 0) + whole.len() + 7);
    if micros < 0 {
        out.push('-');
    }
    out.push_str(whole);
    out.push('.');
    out.extend(std::iter::repeat_n('0', 6 - fraction.len()));
    out.push_str(fraction);
    out
}

/// A model's prices: micro-dollars per million tokens of each class, as providers charge them.
/// Reasoning tokens are output tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prices {
    pub input: i64,
    /// Input tokens read from the provider's prompt cache.
    pub cached_input: i64,
    /// Input tokens written to the provider's prompt cache (for Anthropic: for 5 minutes).
    pub cache_write: i64,
    /// Input tokens written to Anthropic's cache for an hour, which cost more.
    pub cache_write_1h: i64,
    pub output: i64,
}

impl Prices {
    /// The most any one input token can cost: an input token of unknown class is priced at it.
    pub fn worst_input(&self) -> i64 {
        self.input.max(self.cached_input).max(self.cache_write).max(self.cache_write_1h)
    }
}

/// The tokens one request used, by class. `input` counts only the uncached input tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenClasses {
    pub input: i64,
    pub cached_input: i64,
    pub cache_write: i64,
    pub cache_write_1h: i64,
    pub output: i64,
}

/// The cost of a request: each token class times its price per million tokens, summed exactly
/// and rounded up once to the next micro-dollar, so that Tollgate never under-charges.
pub fn cost(tokens: &TokenClasses, prices: &Prices) -> i64 {
    // Saturating: four products of two i64s can pass i128::MAX; a wrapped sum would undercharge.
    let term = |n: i64, price: i64| i128::from(n.max(0)).saturating_mul(i128::from(price.max(0)));
    let total = term(tokens.input, prices.input)
        .saturating_add(term(tokens.cached_input, prices.cached_input))
        .saturating_add(term(tokens.cache_write, prices.cache_write))
        .saturating_add(term(tokens.cache_write_1h, prices.cache_write_1h))
        .saturating_add(term(tokens.output, prices.output));
    let micros = total.saturating_add(999_999) / 1_000_000;
    i64::try_from(micros).unwrap_or(i64::MAX)
}

/// The cost of `input_tokens` uncached input and `output_tokens` output tokens.
pub fn cost_micros(input_tokens: i64, output_tokens: i64, input_price_per_m: i64, output_price_per_m: i64) -> i64 {
    let prices = Prices { input: input_price_per_m, output: output_price_per_m, ..Prices::default() };
    cost(&TokenClasses { input: input_tokens, output: output_tokens, ..TokenClasses::default() }, &prices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_costs_round_up_past_the_floats_noise() {
        assert_eq!(reported_dollars_to_micros(0.000042), Some(42));
        assert_eq!(reported_dollars_to_micros(0.000014), Some(14), "13.999999999999998 as a float");
        assert_eq!(reported_dollars_to_micros(0.1), Some(100_000), "100000.00000000001 as a float");
        assert_eq!(reported_dollars_to_micros(0.0000001), Some(1), "a tenth of a micro-dollar costs one");
        assert_eq!(reported_dollars_to_micros(0.95), Some(950_000));
        assert_eq!(reported_dollars_to_micros(-1.0), None);
        assert_eq!(reported_dollars_to_micros(f64::INFINITY), None);
        assert_eq!(reported_dollars_to_micros(1e300), None);
    }

    #[test]
    fn dollars_round_to_micros() {
        assert_eq!(dollars_to_micros(0.25, "p").unwrap(), 250_000);
        assert_eq!(dollars_to_micros(0.1, "p").unwrap(), 100_000);
        assert_eq!(dollars_to_micros(25.0, "p").unwrap(), 25_000_000);
        assert!(dollars_to_micros(-1.0, "p").is_err());
        assert!(dollars_to_micros(f64::NAN, "p").is_err());
    }

    #[test]
    fn cost_rounds_up_and_never_overflows() {
        // 1000 input at $0.25/M + 500 output at $2/M = 250 + 1000 micro-dollars.
        assert_eq!(cost_micros(1000, 500, 250_000, 2_000_000), 1250);
        // One token at $0.01/M is 0.01 micro-dollars: charged as 1.
        assert_eq!(cost_micros(1, 0, 10_000, 0), 1);
        assert_eq!(cost_micros(0, 0, 10_000, 10_000), 0);
        assert_eq!(cost_micros(i64::MAX, i64::MAX, i64::MAX, i64::MAX), i64::MAX);
    }

    #[test]
    fn each_token_class_at_its_price_rounded_up_once_and_saturates() {
        // Claude Sonnet-like: $3 in, $0.30 cache read, $3.75 cache write, $15 out (per million).
        let prices = Prices { input: 3_000_000, cached_input: 300_000, cache_write: 3_750_000, cache_write_1h: 6_000_000, output: 15_000_000 };
        let tokens = TokenClasses { input: 1, cached_input: 1, cache_write: 1, cache_write_1h: 0, output: 1 };
        // 3 + 0.3 + 3.75 + 15 = 22.05 micro-dollars: rounded up once to 23, not per class (25).
        assert_eq!(cost(&tokens, &prices), 23);
        // A token written for an hour costs $6 per million: 28.05, 29.
        assert_eq!(cost(&TokenClasses { cache_write_1h: 1, ..tokens }, &prices), 29);
        assert_eq!(prices.worst_input(), 6_000_000, "the dearest input class");
        let none = TokenClasses { input: -5, ..TokenClasses::default() };
        assert_eq!(cost(&none, &prices), 0, "negative counts never pay back");
        let all = TokenClasses { input: i64::MAX, cached_input: i64::MAX, cache_write: i64::MAX, cache_write_1h: i64::MAX, output: i64::MAX };
        let top = Prices { input: i64::MAX, cached_input: i64::MAX, cache_write: i64::MAX, cache_write_1h: i64::MAX, output: i64::MAX };
        assert_eq!(cost(&all, &top), i64::MAX, "saturates");
    }

    #[test]
    fn formats_exact_decimals() {
        assert_eq!(format_dollars(125), "0.000125");
        assert_eq!(format_dollars(25_000_000), "25.000000");
        assert_eq!(format_dollars(-5), "-0.000005");
        assert_eq!(format_dollars(0), "0.000000");
        assert_eq!(format_dollars(-1_234_567_890), "-1234.567890");
        assert_eq!(format_dollars(i64::MIN), "-9223372036854.775808");
        assert_eq!(format_dollars(i64::MAX), "9223372036854.775807");
    }
}
