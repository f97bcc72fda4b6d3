//! The library's shape, checked from its source: no module imports another that (through any
//! path) imports it back, and the domain never reaches for the HTTP layer or the wiring. A
//! module is a file; a child using its parent's items (`super::X`) counts as part of it.
//! `AppState` is where services are put together; a domain module takes what it uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The modules allowed to know the HTTP layer and `AppState`: the wiring and the serving.
const WIRING: &[&str] = &["state", "runtime", "lib"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    sources_with(dir, "rs", out)
}

fn sources_with(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources_with(&path, extension, out);
        } else if path.extension().is_some_and(|e| e == extension) {
            out.push(path);
        }
    }
}

/// `identity/sessions.rs` -> `identity::sessions`; `proxy/mod.rs` -> `proxy`; `lib.rs` -> `lib`.
fn module_of(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.len() > 1 && parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The source without its unit tests (they may use anything).
fn without_tests(source: &str) -> &str {
    source.find("#[cfg(test)]\nmod tests").map_or(source, |i| &source[..i])
}

/// Every `crate::a::b...` path a source names, and `super::x` resolved against `module`.
fn referenced_paths(module: &str, is_mod_rs: bool, source: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    for (prefix, base) in [
        ("crate::", String::new()),
        ("super::", {
            let mut parts: Vec<&str> = module.split("::").collect();
            if !is_mod_rs {
                parts.pop();
            }
            parts.join("::")
        }),
    ] {
        let mut rest = source;
        while let Some(i) = rest.find(prefix) {
            let preceded_by_ident = rest[..i].chars().last().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            let after = &rest[i + prefix.len()..];
            let end = after.find(|c: char| !ident(c)).unwrap_or(after.len());
            let path = after[..end].trim_end_matches(':');
            let full = [base.as_str(), path].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("::");
            if !preceded_by_ident {
                if !path.is_empty() {
                    out.push(full.clone());
                }
                // `crate::a::{b, c::d}`: each branch is a path of its own.
                if after[end..].starts_with('{') {
                    let close = after[end..].find('}').map_or(after.len(), |c| end + c);
                    for branch in after[end + 1..close].split(',') {
                        let branch = branch.trim().split(|c: char| !ident(c)).next().unwrap_or("");
                        if !branch.is_empty() && branch != "self" {
                            out.push([full.as_str(), branch].iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join("::"));
                        }
                    }
                }
            }
            rest = &after[end..];
        }
    }
    // A module's own children, named without a prefix (`mod levels;` ... `levels::f()`).
    for line in source.lines() {
        let line = line.trim();
        let Some(child) = line.strip_prefix("pub mod ").or_else(|| line.strip_prefix("mod ")).and_then(|r| r.strip_suffix(';')) else { continue };
        let used =
            source.match_indices(&format!("{child}::")).any(|(i, _)| !source[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':'));
        if used {
            out.push(if module == "lib" { child.to_string() } else { format!("{module}::{child}") });
        }
    }
    out
}

/// The longest known module a path starts with.
fn resolve<'a>(modules: &'a BTreeSet<String>, path: &str) -> Option<&'a String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len()).rev().find_map(|n| modules.get(&parts[..n].join("::")))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&root, f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(&root, file);
        let source = std::fs::read_to_string(file).unwrap();
        let is_mod_rs = file.file_name().is_some_and(|n| n == "mod.rs");
        let uses: BTreeSet<String> = referenced_paths(&module, is_mod_rs, without_tests(&source))
            .iter()
            .filter_map(|p| resolve(&modules, p))
            .filter(|m| **m != module)
            // A child naming its parent's items is part of the parent; parent to child and
            // between siblings are what can go round.
            .filter(|m| !module.starts_with(&format!("{m}::")) && *m != "lib")
            .cloned()
            .collect();
        graph.insert(module, uses);
    }
    graph
}

/// Strongly connected components of more than one module (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, v: &'a str) {
        let n = w.index.len();
        w.index.insert(v, n);
        w.low.insert(v, n);
        w.stack.push(v);
        for next in w.graph.get(v).into_iter().flatten() {
            let next = next.as_str();
            if !w.index.contains_key(next) {
                visit(w, next);
                let low = w.low[v].min(w.low[next]);
                w.low.insert(v, low);
            } else if w.stack.contains(&next) {
                let low = w.low[v].min(w.index[next]);
                w.low.insert(v, low);
            }
        }
        if w.low[v] == w.index[v] {
            let mut component = Vec::new();
            while let Some(top) = w.stack.pop() {
                component.push(top.to_string());
                if top == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                w.found.push(component);
            }
        }
    }
    let mut walk = Walk { graph, index: BTreeMap::new(), low: BTreeMap::new(), stack: vec![], found: vec![] };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            visit(&mut walk, v);
        }
    }
    walk.found
}

#[test]
fn the_library_has_no_import_cycles() {
    let graph = graph();
    assert!(graph.len() > 40, "the source was found: {} modules", graph.len());
    assert!(graph["proxy"].contains("limits"), "imports are read: {:?}", graph["proxy"]);
    assert_eq!(cycles(&graph), Vec::<Vec<String>>::new(), "modules that import each other, through any path");
}

/// The graph between top-level modules (a folder, or a file directly in `src/`): a module
/// in one that names a module in another is an edge between the two.
fn folders(graph: &BTreeMap<String, BTreeSet<String>>) -> BTreeMap<String, BTreeSet<String>> {
    let top = |m: &str| m.split("::").next().unwrap_or(m).to_string();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, uses) in graph {
        let from = top(module);
        let entry = out.entry(from.clone()).or_default();
        entry.extend(uses.iter().map(|u| top(u)).filter(|to| *to != from));
    }
    out
}

#[test]
fn no_two_folders_import_each_other() {
    let folders = folders(&graph());
    assert!(folders["proxy"].contains("providers") && folders["providers"].contains("canonical"), "the folders are read: {folders:?}");
    assert_eq!(cycles(&folders), Vec::<Vec<String>>::new(), "folders whose modules import each other, through any path");
}

/// Every module of the library, with its source.
fn library() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    files.iter().map(|file| (module_of(&root, file), std::fs::read_to_string(file).unwrap())).collect()
}

#[test]
fn only_the_http_layer_and_the_runtime_know_axum() {
    let modules = library();
    let offenders: Vec<&String> = modules
        .iter()
        .filter(|(module, _)| !(module == "http" || module.starts_with("http::") || module == "runtime"))
        .filter(|(_, source)| without_tests(source).contains("axum"))
        .map(|(module, _)| module)
        .collect();
    assert!(modules.len() > 50);
    assert!(offenders.is_empty(), "the domain returns domain errors and answers; only http/ speaks HTTP: {offenders:?}");
}

#[test]
fn failures_are_typed_not_strings() {
    let mut offenders = Vec::new();
    for (module, source) in library() {
        for line in without_tests(&source).lines() {
            let line = line.replace("Map<String, String>", "");
            if line.contains("Result<") && (line.contains(", String>") || line.contains(", &'static str>")) {
                offenders.push(format!("{module}: {}", line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "say what failed with an error type (thiserror), not a string: {offenders:#?}");
}

#[test]
fn caches_are_invalidated_where_the_change_happens_not_by_handlers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/src/http");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 10);
    let mut offenders = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        for cache in ["keys", "models", "secrets", "owners", "dynamic", "integrations"] {
            for verb in ["remove", "clear", "insert"] {
                if source.contains(&format!("hot.{cache}.{verb}")) {
                    offenders.push(format!("{} touches hot.{cache}.{verb}: pass the caches to the domain service instead", file.display()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

#[test]
fn the_domain_knows_neither_the_http_layer_nor_the_wiring() {
    let mut offenders = Vec::new();
    for (module, uses) in graph() {
        if module.starts_with("http") || WIRING.contains(&module.as_str()) {
            continue;
        }
        for used in uses.iter().filter(|u| u.starts_with("http") || *u == "state" || *u == "runtime") {
            offenders.push(format!("{module} uses {used}"));
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    let graph: BTreeMap<String, BTreeSet<String>> = [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec!["a"])]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
    assert_eq!(cycles(&graph), vec![vec!["a".to_string(), "b".into(), "c".into()]]);
    let paths = referenced_paths("identity::users", false, "use super::{sessions, jwt::JwtKeys};\nuse crate::store::{Key, Store};");
    assert!(paths.contains(&"identity::sessions".to_string()) && paths.contains(&"store::Key".to_string()), "{paths:?}");
    let paths = referenced_paths("proxy", true, "mod gateway;\npub mod levels;\nfn f() { levels::owner_context(); }");
    assert_eq!(paths, vec!["proxy::levels".to_string()]);
}

/// /openapi.json names each schema by its type's name, and utoipa keeps the last of two types
/// of one name without a word: the other's responses then point at the wrong schema (a
/// self-service `UsageSummary` was once described as the management family's). Every type
/// deriving `ToSchema` has a name of its own.
#[test]
fn every_schema_type_has_a_name_of_its_own() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut clashes = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let mut lines = source.lines().peekable();
        while let Some(line) = lines.next() {
            if !(line.trim_start().starts_with("#[derive(") && line.contains("ToSchema")) {
                continue;
            }
            // The item the derive applies to, past any further attributes (one may rename the
            // schema: `#[schema(as = Name)]`) and comments.
            let mut renamed = None;
            let Some(item) = lines.by_ref().map(str::trim).find(|l| {
                if let Some(rest) = l.strip_prefix("#[schema(as = ") {
                    renamed = rest.split([')', ',']).next().map(str::to_string);
                }
                !l.starts_with("#[") && !l.starts_with("//")
            }) else {
                continue;
            };
            let name = item.trim_start_matches("pub ").trim_start_matches("pub(crate) ").split_whitespace().nth(1).unwrap_or_default();
            let name = renamed.unwrap_or_else(|| name.split(['<', '{', '(']).next().unwrap().to_string());
            if let Some(first) = seen.insert(name.clone(), file.clone()) {
                clashes.push(format!("{name}: {} and {}", first.display(), file.display()));
            }
        }
    }
    assert!(seen.len() > 50, "the schema types were found: {}", seen.len());
    assert!(clashes.is_empty(), "schema names used twice: {clashes:#?}");
}

#[test]
fn the_api_document_lists_the_provider_types_a_user_may_own_and_the_dashboard_keeps_no_list() {
    let doc = serde_json::to_value(tollgate::http::openapi()).unwrap();
    let listed: BTreeSet<String> = doc["components"]["schemas"]["CreateProvider"]["properties"]["provider_type"]["enum"]
        .as_array()
        .expect("CreateProvider.provider_type has an enum")
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let taken: BTreeSet<String> = tollgate::providers::ProviderType::user_owned().into_iter().map(|t| t.name().to_string()).collect();
    assert_eq!(listed, taken);
    // The dashboard reads that enum; a file of its own quoting several type names is a second list.
    let mut files = Vec::new();
    sources_with(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/src"), "tsx", &mut files);
    assert!(files.len() > 5);
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let quoted: Vec<&str> = tollgate::providers::ProviderType::ALL.iter().map(|t| t.name()).filter(|n| source.contains(&format!("\"{n}\""))).collect();
        assert!(quoted.len() < 3, "{} spells out provider types {quoted:?}: read them from /openapi.json", file.display());
    }
}
