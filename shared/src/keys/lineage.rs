//! Keys made by keys. A personal API key holding `keys:write` may create, rotate and revoke
//! keys of its user, but can never reach past its own limits that way:
//!
//! - a key it creates is never wider than itself: its scopes, models and addresses are a subset
//!   of the parent's; where the parent has a budget, rate limit, expiry or sovereignty
//!   requirement, the child has one no looser (a budget no larger over a period no shorter);
//! - the child also counts against every limit of its parent and of the parent's own parents
//!   (`ancestors`, reserved in the same transaction as the child's own), so no number of
//!   children can together spend more than the parent could;
//! - it may rotate or revoke only itself and the keys descended from it (a rotation's new
//!   secret would otherwise hand it a wider sibling);
//! - revoking a key revokes the keys descended from it, so a leaked key's offspring die with it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ApiKey, BudgetPeriod, KeySettings, parse_net};
use crate::error::{ApiError, ApiResult};
use crate::limits::{Level, Limit};
use crate::store::Key;

/// The scope a key needs to manage keys (`*` and `null` grant it, like every scope).
pub const KEYS_WRITE: &str = "keys:write";

/// How many keys may stand above a key made by a key: each is one more counters item in the
/// request's reservation transaction.
pub const MAX_DEPTH: usize = 3;

/// A key above this one whose limits this one also counts against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ancestor {
    /// The ancestor's counters (its rotation chain's first key).
    pub counters_id: Uuid,
    /// Its limits when the child was made (personal keys' limits never change afterwards:
    /// rotation copies them).
    pub limits: Vec<Limit>,
}

impl Ancestor {
    pub fn level(&self) -> Level {
        Level { counters: Key::new(format!("LIMITS#token#{}", self.counters_id), "COUNTERS"), limits: self.limits.clone() }
    }
}

fn wider(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::forbidden("exceeds_parent_key", format!("{field}: {why}; a key made by an API key can never be wider than that key"))
}

fn period_len(p: Option<BudgetPeriod>) -> u8 {
    match p.unwrap_or(BudgetPeriod::Monthly) {
        BudgetPeriod::Daily => 1,
        BudgetPeriod::Weekly => 2,
        BudgetPeriod::Monthly => 3,
    }
}

/// Refuses `child` settings that are wider than `parent` in any respect.
pub fn check_within(child: &KeySettings, parent: &ApiKey) -> ApiResult<()> {
    let p = &parent.settings;
    if p.scopes.is_some() {
        let scopes = child.scopes.as_ref().ok_or_else(|| wider("scopes", "null (every scope) is wider than the parent's scopes"))?;
        if let Some(s) = scopes.iter().find(|s| !parent.grants(s)) {
            return Err(wider("scopes", format!("the parent does not hold {s:?}")));
        }
    }
    if p.allowed_models.is_some() {
        let models = child.allowed_models.as_ref().ok_or_else(|| wider("allowed_models", "null (every model) is wider than the parent's list"))?;
        if let Some(m) = models.iter().find(|m| !pattern_within(m, p.allowed_models.as_deref().unwrap_or_default())) {
            return Err(wider("allowed_models", format!("{m:?} is not within the parent's allowed_models")));
        }
    }
    if let Some(parent_nets) = &p.ip_allowlist {
        let nets = child.ip_allowlist.as_ref().ok_or_else(|| wider("ip_allowlist", "null (every address) is wider than the parent's list"))?;
        let parent_nets: Vec<_> = parent_nets.iter().filter_map(|e| parse_net(e)).collect();
        for entry in nets {
            let net = parse_net(entry).ok_or_else(|| ApiError::invalid_param("ip_allowlist", format!("{entry:?} is not an IP address or CIDR")))?;
            if !parent_nets.iter().any(|p| p.contains(&net)) {
                return Err(wider("ip_allowlist", format!("{entry} is not within the parent's ip_allowlist")));
            }
        }
    }
    if let Some(cents) = p.budget_limit_cents {
        match child.budget_limit_cents {
            None => return Err(wider("budget_limit_cents", "no budget is wider than the parent's budget")),
            Some(c) if c > cents => return Err(wider("budget_limit_cents", format!("{c} is more than the parent's {cents}"))),
            Some(_) if period_len(child.budget_period) < period_len(p.budget_period) => {
                return Err(wider("budget_period", "a shorter period than the parent's renews the budget more often"));
            }
            Some(_) => {}
        }
    }
    for (name, parent_value, child_value) in
        [("rate_limit_rpm", p.rate_limit_rpm, child.rate_limit_rpm), ("rate_limit_tpm", p.rate_limit_tpm, child.rate_limit_tpm)]
    {
        if let Some(max) = parent_value
            && child_value.is_none_or(|v| v > max)
        {
            return Err(wider(name, format!("it must be set, at most the parent's {max}")));
        }
    }
    if let Some(end) = p.expires_at
        && child.expires_at.is_none_or(|e| e > end)
    {
        return Err(wider("expires_at", format!("it must be set, no later than the parent's {}", end.to_rfc3339())));
    }
    if p.sovereignty_requirements.is_some() && child.sovereignty_requirements != p.sovereignty_requirements {
        return Err(wider("sovereignty_requirements", "it must repeat the parent's requirements"));
    }
    Ok(())
}

/// Whether every model `child` names is one some parent pattern allows.
fn pattern_within(child: &str, parent: &[String]) -> bool {
    parent.iter().any(|p| match (p.strip_suffix('*'), child.strip_suffix('*')) {
        (Some(prefix), Some(child_prefix)) => child_prefix.starts_with(prefix),
        (Some(prefix), None) => child.starts_with(prefix),
        (None, Some(_)) => false,
        (None, None) => p == child,
    })
}

/// The ancestors a key made by `parent` inherits: the parent's own, then the parent.
pub fn ancestors_under(parent: &ApiKey) -> ApiResult<Vec<Ancestor>> {
    if parent.ancestors.len() >= MAX_DEPTH {
        return Err(ApiError::forbidden(
            "key_lineage_too_deep",
            format!("keys can be made by keys at most {MAX_DEPTH} levels deep; make this one with a session"),
        ));
    }
    let mut out = parent.ancestors.clone();
    out.push(Ancestor { counters_id: parent.counters_key_id(), limits: parent.all_limits() });
    Ok(out)
}

/// Whether `actor` may rotate or revoke `target`: it is the actor (or its rotation chain), or
/// descends from it.
pub fn may_manage(actor: &ApiKey, target: &ApiKey) -> bool {
    let chain = actor.counters_key_id();
    target.counters_key_id() == chain || target.ancestors.iter().any(|a| a.counters_id == chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_patterns_nest() {
        let parent = vec!["gpt-4o".to_string(), "claude-*".to_string()];
        assert!(pattern_within("gpt-4o", &parent));
        assert!(pattern_within("claude-3-opus", &parent));
        assert!(pattern_within("claude-3*", &parent));
        assert!(!pattern_within("gpt-4o*", &parent), "a prefix is wider than one exact name");
        assert!(!pattern_within("cla*", &parent));
        assert!(!pattern_within("gpt-4o-mini", &parent));
    }
}
