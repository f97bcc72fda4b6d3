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
pub fn micros_to_dollars(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_DOLLAR as f64
}

/// The exact decimal text of a micro-dollar amount ("0.000125"), for headers.
pub fn format_dollars(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

/// The cost of a request: tokens times prices per million tokens, rounded up to the next
/// micro-dollar so that Tollgate never under-charges.
pub fn cost_micros(input_tokens: i64, output_tokens: i64, input_price_per_m: i64, output_price_per_m: i64) -> i64 {
    let total = i128::from(input_tokens.max(0)) * i128::from(input_price_per_m) + i128::from(output_tokens.max(0)) * i128::from(output_price_per_m);
    let micros = (total + 999_999) / 1_000_000;
    i64::try_from(micros).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn formats_exact_decimals() {
        assert_eq!(format_dollars(125), "0.000125");
        assert_eq!(format_dollars(25_000_000), "25.000000");
        assert_eq!(format_dollars(-5), "-0.000005");
    }
}
