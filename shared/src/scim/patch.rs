//! SCIM PATCH (RFC 7644 §3.5.2): `add`, `replace` and `remove` operations applied to a
//! resource's JSON. The handler then reads the patched JSON as it reads a PUT body, so the two
//! share every rule about what may change. Attribute names match case-insensitively; the
//! operation names too, since Entra ID sends `Replace` and `Add`.

use serde_json::{Map, Value};

use super::filter::{self, AttrPath, Filter};
use crate::error::{ApiError, ApiResult};

pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// More than any identity provider sends in one request; bounds the work of one PATCH.
const MAX_OPERATIONS: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Add,
    Replace,
    Remove,
}

#[derive(Clone, Debug)]
pub struct Operation {
    pub kind: Kind,
    pub path: Option<Path>,
    pub value: Option<Value>,
}

/// `attr`, `attr.sub`, `attr[filter]` or `attr[filter].sub`.
#[derive(Clone, Debug)]
pub struct Path {
    pub attr: String,
    pub filter: Option<Filter>,
    pub sub: Option<String>,
}

fn invalid_path(message: String) -> ApiError {
    ApiError::bad_request("invalidPath", message)
}

impl Path {
    pub fn parse(raw: &str) -> ApiResult<Path> {
        let Some(open) = raw.find('[') else {
            let path = AttrPath::parse(raw).map_err(|_| invalid_path(format!("{raw:?} is not an attribute path such as name.givenName")))?;
            return Ok(Path { attr: path.attr, filter: None, sub: path.sub });
        };
        let close = raw.rfind(']').filter(|c| *c > open).ok_or_else(|| invalid_path(format!("{raw:?} opens a [ it does not close")))?;
        let attr = AttrPath::parse(&raw[..open]).map_err(|_| invalid_path(format!("{raw:?} does not start with an attribute name")))?;
        if attr.sub.is_some() {
            return Err(invalid_path(format!("{raw:?}: a value filter applies to a whole attribute, such as emails[type eq \"work\"]")));
        }
        let filter = filter::parse(&raw[open + 1..close])?;
        let sub = match &raw[close + 1..] {
            "" => None,
            rest => {
                let name = rest.strip_prefix('.').ok_or_else(|| invalid_path(format!("{raw:?}: expected .subAttribute after ]")))?;
                Some(AttrPath::parse(name).map_err(|_| invalid_path(format!("{raw:?} names no sub-attribute after ]")))?.attr)
            }
        };
        Ok(Path { attr: attr.attr, filter: Some(filter), sub })
    }
}

/// Reads a PatchOp message's operations.
pub fn parse_request(body: &Value) -> ApiResult<Vec<Operation>> {
    let schemas = filter::field(body, "schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| s.iter().any(|v| v.as_str() == Some(PATCH_OP))) {
        return Err(ApiError::bad_request("invalidSyntax", format!("a PATCH body lists {PATCH_OP} in its schemas")));
    }
    let Some(Value::Array(raw)) = filter::field(body, "Operations") else {
        return Err(ApiError::bad_request("invalidSyntax", "a PATCH body holds an Operations array"));
    };
    if raw.len() > MAX_OPERATIONS {
        return Err(ApiError::bad_request("invalidSyntax", format!("at most {MAX_OPERATIONS} operations in one PATCH")));
    }
    raw.iter()
        .enumerate()
        .map(|(i, op)| {
            let kind = match filter::field(op, "op").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
                Some("add") => Kind::Add,
                Some("replace") => Kind::Replace,
                Some("remove") => Kind::Remove,
                _ => return Err(ApiError::bad_request("invalidSyntax", format!("Operations[{i}].op must be add, replace or remove"))),
            };
            let path = match filter::field(op, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) => Some(Path::parse(p)?),
                Some(_) => return Err(invalid_path(format!("Operations[{i}].path must be a string"))),
            };
            let value = filter::field(op, "value").cloned();
            if kind != Kind::Remove && value.is_none() {
                return Err(ApiError::bad_request("invalidValue", format!("Operations[{i}] ({kind:?}) needs a value")));
            }
            if kind == Kind::Remove && path.is_none() {
                return Err(ApiError::bad_request("noTarget", format!("Operations[{i}]: remove needs a path")));
            }
            Ok(Operation { kind, path, value })
        })
        .collect()
}

/// The key in `map` that `name` names, ignoring case; `name` itself when there is none.
fn key_in(map: &Map<String, Value>, name: &str) -> String {
    map.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned().unwrap_or_else(|| name.to_string())
}

fn object(resource: &mut Value) -> ApiResult<&mut Map<String, Value>> {
    resource.as_object_mut().ok_or_else(|| ApiError::internal("a SCIM resource is a JSON object"))
}

/// Applies each operation in order.
pub fn apply(resource: &mut Value, operations: &[Operation]) -> ApiResult<()> {
    for op in operations {
        match &op.path {
            None => {
                let Some(Value::Object(values)) = &op.value else {
                    return Err(ApiError::bad_request("invalidValue", "an operation without a path takes an object of attributes as its value"));
                };
                for (name, value) in values {
                    // A URN-qualified name (`urn:...:User:active`) names the attribute after it.
                    let path = Path::parse(name)?;
                    set(object(resource)?, &path, op.kind, Some(value.clone()))?;
                }
            }
            Some(path) => set(object(resource)?, path, op.kind, op.value.clone())?,
        }
    }
    Ok(())
}

/// Merges `value` into `target`: objects field by field (sub-attributes not named stay), arrays
/// appended to for `add`, anything else replaced.
fn merge(target: &mut Value, value: Value, kind: Kind) {
    match (target, value) {
        (Value::Object(t), Value::Object(v)) => {
            for (name, value) in v {
                let key = key_in(t, &name);
                match t.get_mut(&key) {
                    Some(existing) => merge(existing, value, kind),
                    None => {
                        t.insert(key, value);
                    }
                }
            }
        }
        (Value::Array(t), value) if kind == Kind::Add => {
            for item in if let Value::Array(items) = value { items } else { vec![value] } {
                if !t.contains(&item) {
                    t.push(item);
                }
            }
        }
        (t, value) => *t = value,
    }
}

fn set(resource: &mut Map<String, Value>, path: &Path, kind: Kind, value: Option<Value>) -> ApiResult<()> {
    let key = key_in(resource, &path.attr);
    if let Some(filter) = &path.filter {
        let Some(Value::Array(items)) = resource.get_mut(&key) else {
            return match kind {
                Kind::Remove => Ok(()),
                _ => Err(ApiError::bad_request("noTarget", format!("{} has no values to filter", path.attr))),
            };
        };
        let hits: Vec<usize> = items.iter().enumerate().filter(|(_, item)| filter::matches(filter, item)).map(|(i, _)| i).collect();
        // Entra ID adds a first work email as `add emails[type eq "work"].value`: with nothing
        // matching, the value the filter describes is created.
        if let (true, Kind::Add, Some(sub), Filter::Compare(AttrPath { attr, sub: None }, filter::Op::Eq, wanted)) = (hits.is_empty(), kind, &path.sub, filter)
        {
            let mut created = Map::new();
            created.insert(attr.clone(), wanted.clone());
            created.insert(sub.clone(), value.unwrap_or(Value::Null));
            items.push(Value::Object(created));
            return Ok(());
        }
        if hits.is_empty() && kind == Kind::Replace {
            return Err(ApiError::bad_request("noTarget", format!("no value of {} matches the path's filter", path.attr)));
        }
        for i in hits.iter().rev() {
            let item = &mut items[*i];
            match (&path.sub, kind) {
                (None, Kind::Remove) => {
                    items.remove(*i);
                }
                (Some(sub), Kind::Remove) => {
                    if let Value::Object(fields) = item {
                        let sub_key = key_in(fields, sub);
                        fields.remove(&sub_key);
                    }
                }
                (None, _) => merge(item, value.clone().unwrap_or(Value::Null), Kind::Replace),
                (Some(sub), _) => {
                    if let Value::Object(fields) = item {
                        let sub_key = key_in(fields, sub);
                        fields.insert(sub_key, value.clone().unwrap_or(Value::Null));
                    }
                }
            }
        }
        return Ok(());
    }
    match (&path.sub, kind) {
        (None, Kind::Remove) => {
            match (resource.get_mut(&key), value) {
                // `members` with a value: remove the listed members (what Entra ID sends).
                (Some(Value::Array(items)), Some(Value::Array(gone))) => {
                    let ids: Vec<&Value> = gone.iter().filter_map(|g| filter::field(g, "value")).collect();
                    items.retain(|item| !filter::field(item, "value").is_some_and(|v| ids.contains(&v)));
                }
                _ => {
                    resource.remove(&key);
                }
            }
        }
        (None, _) => {
            let value = value.unwrap_or(Value::Null);
            match resource.get_mut(&key) {
                Some(existing) if !existing.is_null() => merge(existing, value, kind),
                _ => {
                    resource.insert(key, value);
                }
            }
        }
        (Some(sub), _) => {
            let parent = resource.entry(key).or_insert_with(|| Value::Object(Map::new()));
            // `emails.value` without a filter: every value of a multi-valued attribute.
            let targets: Vec<&mut Map<String, Value>> = match parent {
                Value::Array(items) => items.iter_mut().filter_map(Value::as_object_mut).collect(),
                Value::Object(fields) => vec![fields],
                other => {
                    *other = Value::Object(Map::new());
                    vec![other.as_object_mut().expect("just made an object")]
                }
            };
            for fields in targets {
                let sub_key = key_in(fields, sub);
                match kind {
                    Kind::Remove => {
                        fields.remove(&sub_key);
                    }
                    _ => {
                        fields.insert(sub_key, value.clone().unwrap_or(Value::Null));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patched(resource: Value, operations: Value) -> Value {
        let mut resource = resource;
        let ops = parse_request(&json!({"schemas": [PATCH_OP], "Operations": operations})).unwrap();
        apply(&mut resource, &ops).unwrap();
        resource
    }

    #[test]
    fn okta_and_entra_shapes_apply() {
        let user = json!({"userName": "a@example.com", "active": true, "name": {"givenName": "A", "familyName": "B"}, "emails": [{"value": "a@example.com", "type": "work", "primary": true}]});
        // Okta: replace without a path.
        assert_eq!(patched(user.clone(), json!([{"op": "replace", "value": {"active": false}}]))["active"], false);
        // Entra ID: capitalised op, a path, and a sub-attribute of a complex attribute.
        let r = patched(user.clone(), json!([{"op": "Replace", "path": "name.givenName", "value": "Z"}]));
        assert_eq!(r["name"], json!({"givenName": "Z", "familyName": "B"}));
        let r = patched(user.clone(), json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "z@example.com"}]));
        assert_eq!(r["emails"][0]["value"], "z@example.com");
        let r = patched(user.clone(), json!([{"op": "remove", "path": "name.familyName"}]));
        assert_eq!(r["name"], json!({"givenName": "A"}));
        let r = patched(user.clone(), json!([{"op": "Add", "path": "emails[type eq \"home\"].value", "value": "a@home.org"}]));
        assert_eq!(r["emails"][1], json!({"type": "home", "value": "a@home.org"}), "Entra ID's first email of a type");
        let r = patched(user, json!([{"op": "replace", "value": {"urn:ietf:params:scim:schemas:core:2.0:User:name": {"familyName": "C"}}}]));
        assert_eq!(r["name"], json!({"givenName": "A", "familyName": "C"}), "sub-attributes not named stay");
    }

    #[test]
    fn members_are_added_and_removed_by_value_or_by_filter() {
        let group = json!({"displayName": "g", "members": [{"value": "1"}]});
        let r = patched(group.clone(), json!([{"op": "add", "path": "members", "value": [{"value": "2"}, {"value": "1"}]}]));
        assert_eq!(r["members"], json!([{"value": "1"}, {"value": "2"}]), "add appends, without duplicates");
        let r = patched(r, json!([{"op": "remove", "path": "members[value eq \"1\"]"}]));
        assert_eq!(r["members"], json!([{"value": "2"}]));
        let r = patched(r, json!([{"op": "Remove", "path": "members", "value": [{"value": "2"}]}]));
        assert_eq!(r["members"], json!([]));
        let r = patched(group, json!([{"op": "replace", "path": "members", "value": [{"value": "3"}]}]));
        assert_eq!(r["members"], json!([{"value": "3"}]), "replace swaps the whole list");
    }

    #[test]
    fn malformed_operations_are_refused() {
        let bad = |ops: Value| parse_request(&json!({"schemas": [PATCH_OP], "Operations": ops})).unwrap_err().code();
        assert_eq!(bad(json!([{"op": "move", "path": "a", "value": 1}])), "invalidSyntax");
        assert_eq!(bad(json!([{"op": "remove"}])), "noTarget");
        assert_eq!(bad(json!([{"op": "add", "path": "a"}])), "invalidValue");
        assert_eq!(bad(json!([{"op": "add", "path": "emails[type eq", "value": 1}])), "invalidPath");
        assert_eq!(parse_request(&json!({"Operations": []})).unwrap_err().code(), "invalidSyntax");
        let mut r = json!({"emails": [{"type": "work"}]});
        let ops =
            parse_request(&json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "emails[type eq \"home\"].value", "value": "x"}]})).unwrap();
        assert_eq!(apply(&mut r, &ops).unwrap_err().code(), "noTarget");
    }
}
