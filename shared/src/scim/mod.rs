//! SCIM 2.0 provisioning (RFC 7643, RFC 7644) over today's accounts: an identity provider
//! creates, updates, deactivates and deletes users and groups at `/scim/v2`, and group
//! membership drives the global role and workspaces through `group_mapping`.
//!
//! Resources are JSON built from what we store (`users`, `groups`); filters, PATCH and the
//! `attributes` parameters work on that JSON, so they see exactly what a GET shows. Every
//! error names its `scimType` through the `ApiError` code (`invalidFilter`, `uniqueness`, ...).

pub mod filter;
pub mod groups;
pub mod patch;
pub mod schema;
pub mod tokens;
pub mod users;

use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// The most resources one page holds (`count` above it is lowered to it, as RFC 7644 allows).
pub const MAX_PAGE: usize = 200;

/// The parameters of a list: filter, page, and which attributes to return.
#[derive(Default)]
pub struct ListParams {
    pub filter: Option<filter::Filter>,
    /// 1-based.
    pub start_index: usize,
    pub count: usize,
    pub shape: Shape,
}

/// `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5), lower-cased.
#[derive(Default, Clone)]
pub struct Shape {
    attributes: Vec<filter::AttrPath>,
    excluded: Vec<filter::AttrPath>,
}

fn attr_list(raw: Option<&str>) -> ApiResult<Vec<filter::AttrPath>> {
    raw.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| filter::AttrPath::parse(s).map_err(|_| ApiError::bad_request("invalidValue", format!("{s:?} is not an attribute name"))))
        .collect()
}

impl Shape {
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> ApiResult<Shape> {
        Ok(Shape { attributes: attr_list(attributes)?, excluded: attr_list(excluded)? })
    }

    /// The resource with only the attributes asked for (`id`, `schemas` and `meta` always stay).
    pub fn apply(&self, resource: Value) -> Value {
        let Value::Object(fields) = resource else { return resource };
        let always = |name: &str| ["id", "schemas", "meta"].iter().any(|a| a.eq_ignore_ascii_case(name));
        let mut out = Map::new();
        for (name, value) in fields {
            let lower = name.to_ascii_lowercase();
            let value = if always(&name) {
                Some(value)
            } else if !self.attributes.is_empty() {
                let asked: Vec<&filter::AttrPath> = self.attributes.iter().filter(|a| a.attr == lower).collect();
                if asked.is_empty() {
                    None
                } else if asked.iter().any(|a| a.sub.is_none()) {
                    Some(value)
                } else {
                    let subs: Vec<&str> = asked.iter().filter_map(|a| a.sub.as_deref()).collect();
                    Some(keep_subs(value, &|k: &str| subs.iter().any(|s| s.eq_ignore_ascii_case(k))))
                }
            } else {
                let dropped: Vec<&filter::AttrPath> = self.excluded.iter().filter(|a| a.attr == lower).collect();
                if dropped.iter().any(|a| a.sub.is_none()) {
                    None
                } else {
                    let subs: Vec<&str> = dropped.iter().filter_map(|a| a.sub.as_deref()).collect();
                    Some(keep_subs(value, &|k: &str| !subs.iter().any(|s| s.eq_ignore_ascii_case(k))))
                }
            };
            if let Some(value) = value {
                out.insert(name, value);
            }
        }
        Value::Object(out)
    }
}

/// A complex value (or each of a multi-valued one) with only the sub-attributes `keep` keeps.
fn keep_subs(value: Value, keep: &dyn Fn(&str) -> bool) -> Value {
    match value {
        Value::Object(fields) => Value::Object(fields.into_iter().filter(|(k, _)| keep(k)).collect()),
        Value::Array(items) => Value::Array(items.into_iter().map(|i| keep_subs(i, keep)).collect()),
        other => other,
    }
}

/// Filters, pages and shapes `resources` into a ListResponse.
pub fn list_response(resources: Vec<Value>, params: &ListParams) -> Value {
    let matching: Vec<Value> = resources.into_iter().filter(|r| params.filter.as_ref().is_none_or(|f| filter::matches(f, r))).collect();
    let total = matching.len();
    let page: Vec<Value> = matching.into_iter().skip(params.start_index.saturating_sub(1)).take(params.count).map(|r| params.shape.apply(r)).collect();
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": params.start_index,
        "itemsPerPage": page.len(),
        "Resources": page,
    })
}

/// `meta` of a resource.
pub fn meta(resource_type: &str, base: &str, id: uuid::Uuid, created: chrono::DateTime<chrono::Utc>, modified: chrono::DateTime<chrono::Utc>) -> Value {
    let plural = if resource_type == "User" { "Users" } else { "Groups" };
    json!({
        "resourceType": resource_type,
        "created": created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "lastModified": modified.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "location": format!("{base}/{plural}/{id}"),
    })
}

/// A string attribute of an input, its name matched case-insensitively; a non-string is an error.
pub fn string_field(body: &Value, name: &str) -> ApiResult<Option<String>> {
    match filter::field(body, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request("invalidValue", format!("{name} must be a string"))),
    }
}

/// A boolean attribute; "True"/"False" strings too, as Entra ID sends them in PATCH.
pub fn bool_field(body: &Value, name: &str) -> ApiResult<Option<bool>> {
    match filter::field(body, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(ApiError::bad_request("invalidValue", format!("{name} must be true or false"))),
    }
}

/// The longest string attribute we keep.
pub const MAX_STRING: usize = 1024;

pub fn check_len(name: &str, value: &str) -> ApiResult<()> {
    if value.chars().count() > MAX_STRING {
        return Err(ApiError::bad_request("invalidValue", format!("{name} is longer than {MAX_STRING} characters")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_and_excluded_attributes_shape_resources() {
        let r = json!({"id": "1", "schemas": [], "meta": {}, "userName": "u", "name": {"givenName": "g", "familyName": "f"}, "active": true});
        let only = Shape::parse(Some("userName,name.givenName"), None).unwrap().apply(r.clone());
        assert_eq!(only, json!({"id": "1", "schemas": [], "meta": {}, "userName": "u", "name": {"givenName": "g"}}));
        let without = Shape::parse(None, Some("active,name.familyName")).unwrap().apply(r);
        assert_eq!(without, json!({"id": "1", "schemas": [], "meta": {}, "userName": "u", "name": {"givenName": "g"}}));
    }

    #[test]
    fn list_responses_page_from_one() {
        let resources: Vec<Value> = (1..=5).map(|i| json!({"id": i.to_string(), "n": i})).collect();
        let params = ListParams { start_index: 2, count: 2, ..Default::default() };
        let page = list_response(resources.clone(), &params);
        assert_eq!(page["totalResults"], 5);
        assert_eq!(page["itemsPerPage"], 2);
        assert_eq!(page["Resources"], json!([{"id": "2", "n": 2}, {"id": "3", "n": 3}]));
        let filtered = ListParams { filter: Some(filter::parse("n gt 3").unwrap()), start_index: 1, count: 10, ..Default::default() };
        assert_eq!(list_response(resources, &filtered)["totalResults"], 2);
    }
}
