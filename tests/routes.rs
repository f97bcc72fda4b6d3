//! One truth for routes: each group's Router (with its OpenAPI description, generated from the
//! same handlers), the SAM template and the contract of API.md must agree.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;
use tollgate::Group;
use tollgate_tests::{Backend, TestApp};

type Route = (String, String); // (METHOD, /path/{param})

/// The routes the issues so far promise. A route missing from the OpenAPI document (or not
/// served) fails `every_contract_route_is_documented_and_served`.
const CONTRACT: &[(&str, &str)] = &[
    ("GET", "/api/setup/status"),
    ("POST", "/api/setup/first-admin"),
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/refresh"),
    ("GET", "/api/me"),
    ("PUT", "/api/me"),
    ("GET", "/api/users"),
    ("POST", "/api/users"),
    ("GET", "/api/users/{id}"),
    ("PUT", "/api/users/{id}"),
    ("DELETE", "/api/users/{id}"),
    ("GET", "/api/roles"),
    ("POST", "/api/roles"),
    ("PUT", "/api/roles/{name}"),
    ("DELETE", "/api/roles/{name}"),
    ("GET", "/admin/v1/me/sessions"),
    ("DELETE", "/admin/v1/me/sessions/{session_id}"),
    ("GET", "/admin/v1/me/export"),
    ("DELETE", "/admin/v1/me"),
    ("GET", "/openapi.json"),
    ("GET", "/api/settings"),
    ("PUT", "/api/settings"),
    ("POST", "/api/notifications/test"),
    ("GET", "/api/system/info"),
    ("GET", "/scim/v2/ServiceProviderConfig"),
    ("GET", "/scim/v2/ResourceTypes"),
    ("GET", "/scim/v2/ResourceTypes/{id}"),
    ("GET", "/scim/v2/Schemas"),
    ("GET", "/scim/v2/Schemas/{id}"),
    ("POST", "/scim/v2/.search"),
    ("GET", "/scim/v2/Users"),
    ("POST", "/scim/v2/Users"),
    ("GET", "/scim/v2/Users/{id}"),
    ("PUT", "/scim/v2/Users/{id}"),
    ("PATCH", "/scim/v2/Users/{id}"),
    ("DELETE", "/scim/v2/Users/{id}"),
    ("GET", "/scim/v2/Groups"),
    ("POST", "/scim/v2/Groups"),
    ("GET", "/scim/v2/Groups/{id}"),
    ("PUT", "/scim/v2/Groups/{id}"),
    ("PATCH", "/scim/v2/Groups/{id}"),
    ("DELETE", "/scim/v2/Groups/{id}"),
    ("GET", "/api/scim/tokens"),
    ("POST", "/api/scim/tokens"),
    ("DELETE", "/api/scim/tokens/{id}"),
    ("GET", "/api/settings/group-mapping"),
    ("PUT", "/api/settings/group-mapping"),
    ("GET", "/api/audit"),
    ("GET", "/api/audit/export"),
    ("GET", "/api/models"),
    ("POST", "/api/models"),
    ("GET", "/api/models/{id}"),
    ("PUT", "/api/models/{id}"),
    ("DELETE", "/api/models/{id}"),
    ("POST", "/api/models/{id}/apikey"),
    ("GET", "/admin/v1/me/api-keys"),
    ("POST", "/admin/v1/me/api-keys"),
    ("GET", "/admin/v1/me/api-keys/{key_id}"),
    ("DELETE", "/admin/v1/me/api-keys/{key_id}"),
    ("POST", "/admin/v1/me/api-keys/{key_id}/rotate"),
    ("GET", "/admin/v1/me/usage/logs"),
    ("GET", "/admin/v1/me/usage/logs/export"),
    ("GET", "/admin/v1/me/usage"),
    ("GET", "/admin/v1/me/usage/by-date"),
    ("GET", "/admin/v1/me/usage/by-date-model"),
    ("GET", "/admin/v1/me/usage/by-date-pricing-source"),
    ("GET", "/admin/v1/me/usage/by-date-provider"),
    ("GET", "/admin/v1/me/usage/by-model"),
    ("GET", "/admin/v1/me/usage/by-pricing-source"),
    ("GET", "/admin/v1/me/usage/by-provider"),
    ("GET", "/api/usage"),
    ("GET", "/api/usage/{id}"),
    ("GET", "/api/usage/summary"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/models"),
    ("GET", "/api/workspaces"),
    ("POST", "/api/workspaces"),
    ("GET", "/api/workspaces/{id}"),
    ("PUT", "/api/workspaces/{id}"),
    ("GET", "/api/invite-user"),
    ("POST", "/api/invite-user"),
    ("DELETE", "/api/invite-user"),
    ("POST", "/api/invite-user/accept"),
    ("POST", "/api/invite-user/link"),
    ("GET", "/api/tokens"),
    ("POST", "/api/tokens"),
    ("POST", "/api/tokens/{id}/revoke"),
    ("DELETE", "/api/tokens/{id}"),
    ("GET", "/api/projects"),
    ("POST", "/api/projects"),
    ("GET", "/api/projects/{slug}"),
    ("PUT", "/api/projects/{slug}"),
    ("DELETE", "/api/projects/{slug}"),
    ("GET", "/api/projects/{slug}/members"),
    ("POST", "/api/projects/{slug}/members"),
    ("PUT", "/api/projects/{slug}/members/{userId}"),
    ("DELETE", "/api/projects/{slug}/members/{userId}"),
    ("GET", "/api/projects/{slug}/tokens"),
    ("POST", "/api/projects/{slug}/tokens"),
    ("PUT", "/api/projects/{slug}/tokens/{tokenId}"),
    ("DELETE", "/api/projects/{slug}/tokens/{tokenId}"),
];

fn operations(doc: &Value) -> BTreeSet<Route> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn group_operations(group: Group) -> BTreeSet<Route> {
    operations(&serde_json::to_value(group.routes().into_openapi()).unwrap())
}

/// (function logical id, METHOD, path) of every HttpApi event in the template. The template
/// keeps `Path:` before `Method:` in each event.
fn template_routes() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml")).unwrap();
    let mut out = Vec::new();
    let (mut resource, mut path) = (String::new(), None::<String>);
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !name.starts_with(' ')
        {
            resource = name.to_string();
        }
        let trimmed = line.trim().trim_start_matches("- ");
        if let Some(p) = trimmed.strip_prefix("Path: ") {
            path = Some(p.to_string());
        } else if let Some(m) = trimmed.strip_prefix("Method: ") {
            out.push((resource.clone(), m.to_uppercase(), path.take().expect("Method without Path")));
        }
    }
    out
}

fn function_id(group: Group) -> String {
    let name = group.name();
    format!("{}{}Function", name[..1].to_uppercase(), &name[1..])
}

#[test]
fn the_sam_template_routes_exactly_what_each_group_serves() {
    let template = template_routes();
    for group in Group::ALL {
        let served = group_operations(group);
        let deployed: BTreeSet<Route> = template.iter().filter(|(f, _, _)| *f == function_id(group)).map(|(_, m, p)| (m.clone(), p.clone())).collect();
        let missing: Vec<_> = served.difference(&deployed).collect();
        let extra: Vec<_> = deployed.difference(&served).collect();
        assert!(missing.is_empty(), "{group:?} serves routes the template lacks: {missing:?}");
        assert!(extra.is_empty(), "the template routes to {group:?} what it does not serve: {extra:?}");
    }
    let known: BTreeSet<String> = Group::ALL.iter().map(|g| function_id(*g)).collect();
    for (function, method, path) in &template {
        assert!(known.contains(function), "{method} {path} routes to {function}, which is no group's function");
    }
    let unique: BTreeSet<_> = template.iter().map(|(_, m, p)| (m, p)).collect();
    assert_eq!(unique.len(), template.len(), "a route appears twice in the template");
}

/// HTTP APIs cannot stream: the proxy sits behind a Function URL in RESPONSE_STREAM mode, and
/// only there (its routes come from the function's ServedRoutes, checked above).
#[test]
fn the_proxy_streams_through_a_function_url() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml")).unwrap();
    let start = text.find("\n  ProxyFunction:").expect("ProxyFunction in the template");
    // The block runs to the next line indented like a resource name.
    let rest = &text[start + 1..];
    let end = rest.match_indices("\n  ").map(|(j, _)| j).find(|&j| rest[j + 3..].starts_with(|c: char| c.is_ascii_alphabetic())).unwrap_or(rest.len());
    let block = &rest[..end];
    assert!(block.contains("InvokeMode: RESPONSE_STREAM"), "{block}");
    assert!(!block.contains("Type: HttpApi"), "the proxy must not sit behind the HTTP API");
    for (method, path) in group_operations(Group::Proxy) {
        assert!(path.starts_with("/v1/"), "{method} {path}");
    }
}

#[test]
fn no_route_belongs_to_two_groups() {
    let mut seen = BTreeSet::new();
    for group in Group::ALL {
        for route in group_operations(group) {
            assert!(seen.insert(route.clone()), "{route:?} is in two groups");
        }
    }
}

#[tokio::test]
async fn every_contract_route_is_documented_and_served() {
    let app = TestApp::start(Backend::Embedded).await;
    let served = app.get("/openapi.json", None).await.expect(200).body;
    assert_eq!(served, serde_json::to_value(tollgate::http::openapi()).unwrap(), "/openapi.json is the generated document");
    let documented = operations(&served);
    for (method, path) in CONTRACT {
        assert!(documented.contains(&(method.to_string(), path.to_string())), "{method} {path} is missing from /openapi.json");
    }
    // Every documented route answers with something other than "no such route".
    for (method, path) in &documented {
        let concrete = path.split('/').map(|s| if s.starts_with('{') { "3f1e0b1e-0000-4000-8000-000000000000" } else { s }).collect::<Vec<_>>().join("/");
        let resp = app.call(Method::from_bytes(method.as_bytes()).unwrap(), &concrete, None, Some(serde_json::json!({}))).await;
        let code = resp.body["error"]["code"].as_str().unwrap_or_default();
        assert!(code != "unknown_route" && code != "method_not_allowed", "{method} {path} is documented but not served: {}", resp.text);
    }
}

/// Generated clients and fuzzers drop parameters declared where they are not: a path parameter
/// must appear in its path, and every schema name must stand for one type (two structs of one
/// name would share, and so misdescribe, one schema).
#[test]
fn parameters_are_declared_where_they_are_sent() {
    let doc = serde_json::to_value(tollgate::http::openapi()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for param in op["parameters"].as_array().into_iter().flatten() {
                let name = param["name"].as_str().unwrap();
                if param["in"] == "path" {
                    assert!(path.contains(&format!("{{{name}}}")), "{method} {path}: {name} is declared in: path but is not in the path");
                }
            }
        }
    }
    // The query parameters the handlers read are documented as such.
    let query = |method: &str, path: &str| -> BTreeSet<String> {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(query("get", "/api/usage").is_superset(&["from", "to", "project", "model", "outcome", "limit", "offset"].map(String::from).into()));
    assert!(query("get", "/admin/v1/me/api-keys").is_superset(&["limit", "cursor", "direction", "include_deleted"].map(String::from).into()));
    assert!(query("get", "/api/tokens").contains("business_id"));
    assert!(doc["components"]["schemas"]["ProjectMemberView"]["required"].as_array().unwrap().contains(&serde_json::json!("userId")));
}
