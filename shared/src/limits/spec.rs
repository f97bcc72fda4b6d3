//! Limits as the API writes them (dollars for cost, a count otherwise), and the bounds a stored
//! limit must keep for the proxy to enforce it.

use serde::{Deserialize, Serialize};

use super::{Limit, Metric, Mode, Rolling, Window};
use crate::error::{ApiError, ApiResult};

/// A limit as the API writes it: `{metric, limit, window, mode}`, the limit in dollars for
/// `cost` and a count otherwise.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    pub metric: Metric,
    pub limit: f64,
    pub window: Window,
    #[serde(default)]
    pub mode: Mode,
}

impl LimitSpec {
    /// The stored limit; `id` names its counter within its level.
    pub fn to_limit(&self, id: String) -> ApiResult<Limit> {
        let limit = match self.metric {
            Metric::Cost => crate::money::dollars_to_micros(self.limit, "limits.limit")?,
            _ if self.limit.fract() != 0.0 || !(0.0..=MAX_COUNT as f64).contains(&self.limit) => {
                return Err(ApiError::invalid_param("limits.limit", format!("a count limit must be a whole number from 0 to {MAX_COUNT}")));
            }
            _ => self.limit as i64,
        };
        let limit = Limit { id: id.into(), metric: self.metric, limit, window: self.window, mode: self.mode };
        validate(&limit)?;
        Ok(limit)
    }

    pub fn of(limit: &Limit) -> Self {
        let amount = match limit.metric {
            Metric::Cost => crate::money::micros_to_dollars(limit.limit),
            _ => limit.limit as f64,
        };
        LimitSpec { metric: limit.metric, limit: amount, window: limit.window, mode: limit.mode }
    }
}

/// The stored form of a level's limits. A limit's counter is named by its metric and window,
/// so changing a level's other settings (or the amount of a limit) keeps what it has used;
/// two limits of one metric and window at one level are refused as ambiguous.
pub fn from_specs(specs: &[LimitSpec]) -> ApiResult<Vec<Limit>> {
    let mut out: Vec<Limit> = Vec::with_capacity(specs.len());
    for spec in specs {
        let id =
            format!("{}-{}", serde_json::to_value(spec.metric).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(), spec.window.describe());
        if out.iter().any(|l| l.id == id) {
            return Err(ApiError::invalid_param("limits", format!("two limits on {id}: give each metric and window one limit")));
        }
        out.push(spec.to_limit(id)?);
    }
    Ok(out)
}

/// The largest cost limit: $1,000,000,000, in micro-dollars.
pub const MAX_COST_MICROS: i64 = 1_000_000_000 * crate::money::MICROS_PER_DOLLAR;
/// The largest count limit (requests or tokens).
pub const MAX_COUNT: i64 = 1_000_000_000_000_000;

/// Refuses limits the proxy could not enforce: negative or absurd amounts, empty rolling
/// windows.
pub fn validate(limit: &Limit) -> ApiResult<()> {
    if limit.limit < 0 {
        return Err(ApiError::invalid_param("limit", "a limit cannot be negative"));
    }
    let max = if limit.metric == Metric::Cost { MAX_COST_MICROS } else { MAX_COUNT };
    if limit.limit > max {
        let shown = if limit.metric == Metric::Cost { format!("${}", crate::money::format_dollars(max)) } else { max.to_string() };
        return Err(ApiError::invalid_param("limit", format!("a {} limit can be at most {shown}", limit.metric.describe())));
    }
    if let Window::Rolling(Rolling { every, .. }) = limit.window
        && every == 0
    {
        return Err(ApiError::invalid_param("window", "a rolling window needs every >= 1"));
    }
    Ok(())
}
