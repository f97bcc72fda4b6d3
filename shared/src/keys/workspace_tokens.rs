//! Workspace tokens as the workspace-admin family describes them: an `expires_in` choice and a
//! budget in dollars per reset interval. They are ordinary tokens owned by a workspace; the
//! budget is stored as a cost limit named `budget`, so the proxy enforces it like any other.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiKey, KeySettings};
use crate::error::{ApiError, ApiResult};
use crate::limits::{Limit, Metric, Mode, Window};
use crate::money::{dollars_to_micros, micros_to_dollars};

/// The limit id the budget is stored under.
const BUDGET: &str = "budget";

/// The lifetimes a workspace token may be given.
pub const EXPIRES_IN: [&str; 7] = ["1h", "1d", "7d", "30d", "90d", "180d", "1y"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResetInterval {
    Daily,
    Weekly,
    Monthly,
    /// The budget is a lifetime total.
    Never,
}

impl ResetInterval {
    fn window(self) -> Window {
        match self {
            ResetInterval::Daily => Window::Daily,
            ResetInterval::Weekly => Window::Weekly,
            ResetInterval::Monthly => Window::Monthly,
            ResetInterval::Never => Window::Never,
        }
    }

    fn of(window: Window) -> Option<Self> {
        match window {
            Window::Daily => Some(ResetInterval::Daily),
            Window::Weekly => Some(ResetInterval::Weekly),
            Window::Monthly => Some(ResetInterval::Monthly),
            Window::Never => Some(ResetInterval::Never),
            _ => None,
        }
    }
}

/// When a token given `expires_in` at `now` expires (`None`: never).
pub fn expiry(expires_in: Option<&str>, now: DateTime<Utc>) -> ApiResult<Option<DateTime<Utc>>> {
    let Some(text) = expires_in else { return Ok(None) };
    let length = match text {
        "1h" => Duration::hours(1),
        "1d" => Duration::days(1),
        "7d" => Duration::days(7),
        "30d" => Duration::days(30),
        "90d" => Duration::days(90),
        "180d" => Duration::days(180),
        "1y" => Duration::days(365),
        other => {
            return Err(ApiError::invalid_param("expires_in", format!("expires_in must be one of {} or null (never), not {other:?}", EXPIRES_IN.join(", "))));
        }
    };
    Ok(Some(now + length))
}

/// What a workspace-admin request asks for, as token settings.
pub fn settings(
    name: String,
    scopes: Option<Vec<String>>,
    expires_in: Option<&str>,
    budget_limit: Option<f64>,
    reset: Option<ResetInterval>,
    now: DateTime<Utc>,
) -> ApiResult<KeySettings> {
    let mut limits = Vec::new();
    match (budget_limit, reset) {
        (Some(dollars), reset) => {
            let window = reset.unwrap_or(ResetInterval::Monthly).window();
            // Extend: the token's budget counts within the workspace's, never instead of it.
            limits.push(Limit { id: BUDGET.into(), metric: Metric::Cost, limit: dollars_to_micros(dollars, "budget_limit")?, window, mode: Mode::Extend });
        }
        (None, Some(_)) => return Err(ApiError::invalid_param("budget_reset_interval", "budget_reset_interval needs budget_limit")),
        (None, None) => {}
    }
    Ok(KeySettings { name, scopes, expires_at: expiry(expires_in, now)?, limits, ..KeySettings::default() })
}

/// The token's budget in dollars and its reset interval, if it has one.
pub fn budget(key: &ApiKey) -> Option<(f64, ResetInterval)> {
    let limit = key.settings.limits.iter().find(|l| l.id == BUDGET && l.metric == Metric::Cost)?;
    Some((micros_to_dollars(limit.limit), ResetInterval::of(limit.window)?))
}
