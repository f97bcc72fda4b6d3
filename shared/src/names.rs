//! The one pattern for names that appear in paths and in `<provider>/<model>`: model ids (and
//! provider names, which follow the same rule).
//!
//! 1 to 128 characters of `A-Z a-z 0-9 . _ : @ + = -`, starting and ending with a letter or a
//! digit, with no `..`. So a name is never `.` or `..` (which a path or URL would resolve), never
//! has a `/` (which separates provider and model), and never needs escaping in a URL path.

use crate::error::{ApiError, ApiResult};

pub const MAX_LEN: usize = 128;

/// Whether `name` follows the pattern.
pub fn is_valid(name: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    (1..=MAX_LEN).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._:@+=-".contains(c))
        && edge_ok(name.chars().next())
        && edge_ok(name.chars().last())
        && !name.contains("..")
}

/// Refuses a name that does not follow the pattern, naming the field.
pub fn validate(param: &str, name: &str) -> ApiResult<()> {
    if is_valid(name) {
        return Ok(());
    }
    Err(ApiError::invalid_param(
        param,
        format!(
            "{param} must be 1-{MAX_LEN} characters of letters, digits and . _ : @ + = -, start and end with a letter or digit, and not contain `..` (a / is reserved for <provider>/<model>)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::is_valid;

    #[test]
    fn real_model_ids_pass_and_path_tricks_do_not() {
        for ok in ["gpt-4o-2024-08-06", "claude-sonnet-4-5@20250929", "anthropic.claude-3-sonnet-20240229-v1:0", "mock-1", "a", "o1", "llama3.1:8b"] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a..b", ".hidden", "trailing.", "-x", "x-", "a/b", "a b", "é", "%2e%2e", &"x".repeat(129)] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
