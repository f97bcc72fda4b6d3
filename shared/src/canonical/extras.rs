//! What a request asks for beyond its tokens, read from its body: built-in tools that bill per
//! call, a service tier billed at another rate, and ids of objects stored at the provider.
//! What each costs, or whether it is allowed, is the catalog's to say (`proxy::fees`).

use serde_json::{Map, Value};

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
