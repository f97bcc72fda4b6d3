//! `tollgate models deployments` and `tollgate models route`: where a model is served (its
//! deployments) and how (strategy, fallbacks, retry policy). Keys are read from standard input
//! only, never from the command line, where they would stay in the shell's history.

use anyhow::{Context, bail};
use clap::Args;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::api::Api;
use super::{read_stdin_line, segment, table};

#[derive(Args)]
pub struct RouteArgs {
    /// The model. Without any other option, its routing is shown.
    id: String,
    /// How a deployment is chosen: weighted (the default), least_latency or least_busy.
    #[arg(long)]
    strategy: Option<String>,
    /// A model tried, in order, once this one's attempts are spent: repeat it (or separate ids
    /// with commas) for more. Replaces the list.
    #[arg(long = "fallback", value_name = "MODEL", value_delimiter = ',')]
    fallbacks: Vec<String>,
    /// Remove every fallback.
    #[arg(long, conflicts_with = "fallbacks")]
    no_fallbacks: bool,
    /// A larger model for requests too long for this one's context window.
    #[arg(long, value_name = "MODEL")]
    context_window_fallback: Option<String>,
    /// Remove the context-window fallback.
    #[arg(long, conflicts_with = "context_window_fallback")]
    no_context_window_fallback: bool,
    /// The attempts a request may make on the model, across its deployments (1-16). Replaces
    /// the retry policy, --max-total-ms included.
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,
    /// The most milliseconds all of a request's attempts may take together.
    #[arg(long, value_name = "MS", requires = "max_attempts")]
    max_total_ms: Option<u64>,
    /// A deployment, as comma-separated key=value pairs: id (required), provider, base-url,
    /// region, weight, rpm, tpm; e.g. id=east,provider=azure,base-url=https://...,weight=3.
    /// Repeat it for each: the deployments given replace the model's (one listed under the id
    /// it had keeps its key).
    #[arg(long = "deployment", value_name = "SPEC")]
    deployments: Vec<String>,
    /// Remove every deployment: the model is served by its own provider, base URL and key again.
    #[arg(long, conflicts_with_all = ["deployments", "deployment_keys"])]
    no_deployments: bool,
    /// Give deployment ID a key of its own, read from standard input: one line for each use of
    /// this option, in order. Without --deployment, the model's deployments stay as they are.
    #[arg(long = "deployment-key-stdin", value_name = "ID")]
    deployment_keys: Vec<String>,
}

/// The deployments table: the key itself is never shown (the API never returns it).
const COLUMNS: [(&str, &str); 8] = [
    ("ID", "/id"),
    ("PROVIDER", "/provider"),
    ("BASE URL", "/baseUrl"),
    ("REGION", "/region"),
    ("WEIGHT", "/weight"),
    ("RPM", "/rpm"),
    ("TPM", "/tpm"),
    ("OWN KEY", "/hasApiKey"),
];

/// `tollgate models deployments ID`.
pub async fn deployments(api: &Api, json: bool, id: &str) -> anyhow::Result<()> {
    let model = api.call(Method::GET, &format!("/api/models/{}", segment(id)), None).await?;
    let list = model.get("deployments").cloned().unwrap_or(json!([]));
    let rows = list.as_array().cloned().unwrap_or_default();
    table::show(json, &list, &rows, &COLUMNS);
    if !json && rows.is_empty() {
        println!("{id} is served by its own provider ({}).", model["provider"].as_str().unwrap_or_default());
    }
    Ok(())
}

/// `tollgate models route ID [options]`: changes what the options name (a PUT of those fields
/// only), then shows the model's routing.
pub async fn route(api: &Api, json: bool, args: RouteArgs) -> anyhow::Result<()> {
    let path = format!("/api/models/{}", segment(&args.id));
    let mut body = Map::new();
    if let Some(strategy) = args.strategy {
        body.insert("routingStrategy".into(), json!(strategy));
    }
    if args.no_fallbacks || !args.fallbacks.is_empty() {
        body.insert("fallbacks".into(), json!(args.fallbacks));
    }
    if args.no_context_window_fallback {
        // The API's way to remove it.
        body.insert("contextWindowFallback".into(), json!(""));
    } else if let Some(id) = args.context_window_fallback {
        body.insert("contextWindowFallback".into(), json!(id));
    }
    if let Some(max_attempts) = args.max_attempts {
        let mut retry = json!({"maxAttempts": max_attempts});
        if let Some(ms) = args.max_total_ms {
            retry["maxTotalMs"] = json!(ms);
        }
        body.insert("retry".into(), retry);
    }
    let mut deployments = match (args.no_deployments, args.deployments.is_empty()) {
        (true, _) => Some(Vec::new()),
        (false, false) => Some(args.deployments.iter().map(|spec| deployment(spec)).collect::<anyhow::Result<Vec<_>>>()?),
        (false, true) => None,
    };
    if !args.deployment_keys.is_empty() {
        // The list is replaced whole: without --deployment, the model's own is sent back as it
        // is, with the new keys (the others keep theirs).
        let list = match &mut deployments {
            Some(list) => list,
            None => deployments.insert(current(api, &path).await?),
        };
        for (i, id) in args.deployment_keys.iter().enumerate() {
            if args.deployment_keys[..i].contains(id) {
                bail!("--deployment-key-stdin {id} is given twice");
            }
            let Some(d) = list.iter_mut().find(|d| d["id"] == id.as_str()) else {
                bail!("--deployment-key-stdin {id}: {} has no deployment {id:?} (list them with `tollgate models deployments {}`)", args.id, args.id);
            };
            d["apiKey"] = json!(read_stdin_line(&format!("key of deployment {id}"))?);
        }
    }
    if let Some(list) = deployments {
        body.insert("deployments".into(), Value::Array(list));
    }
    let changed = !body.is_empty();
    let model = if changed { api.call(Method::PUT, &path, Some(Value::Object(body))).await? } else { api.call(Method::GET, &path, None).await? };
    if json {
        println!("{}", serde_json::to_string_pretty(&model).unwrap_or_default());
    } else {
        if changed {
            println!("Changed the routing of {}.", args.id);
        }
        show(&model);
    }
    Ok(())
}

/// A model's routing, as lines and the deployments table.
fn show(model: &Value) {
    let text = |at: &str| model.pointer(at).and_then(Value::as_str).map(str::to_string);
    let fallbacks: Vec<&str> = model["fallbacks"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let retry = match model.get("retry") {
        Some(r) => match r["maxTotalMs"].as_u64() {
            Some(ms) => format!("at most {} attempts, within {ms} ms", r["maxAttempts"]),
            None => format!("at most {} attempts", r["maxAttempts"]),
        },
        None => "one attempt per deployment (the default)".into(),
    };
    println!("Model:                   {}", text("/id").unwrap_or_default());
    println!("Strategy:                {}", text("/routingStrategy").unwrap_or_else(|| "weighted".into()));
    println!("Fallbacks:               {}", if fallbacks.is_empty() { "(none)".into() } else { fallbacks.join(", ") });
    println!("Context-window fallback: {}", text("/contextWindowFallback").unwrap_or_else(|| "(none)".into()));
    println!("Retry:                   {retry}");
    let rows = model["deployments"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        println!("Deployments:             (none: its own provider, {})", text("/provider").unwrap_or_default());
    } else {
        println!("Deployments:");
        table::print(&rows, &COLUMNS);
    }
}

/// The model's deployments as the API takes them back (without keys: each keeps its own).
async fn current(api: &Api, path: &str) -> anyhow::Result<Vec<Value>> {
    let model = api.call(Method::GET, path, None).await?;
    let list = model["deployments"].as_array().cloned().unwrap_or_default();
    Ok(list
        .into_iter()
        .map(|d| {
            let fields = ["id", "provider", "baseUrl", "region", "weight", "rpm", "tpm"];
            Value::Object(fields.iter().filter(|f| !d[**f].is_null()).map(|f| (f.to_string(), d[*f].clone())).collect())
        })
        .collect())
}

/// One `--deployment` spec (`id=east,provider=azure,base-url=...,weight=3`) as the API's
/// deployment object.
fn deployment(spec: &str) -> anyhow::Result<Value> {
    let mut out = Map::new();
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--deployment: {pair:?} is not key=value");
        };
        let (key, value) = (key.trim(), value.trim());
        let number = || value.parse::<i64>().with_context(|| format!("--deployment: {key} must be a whole number, not {value:?}"));
        let (field, value) = match key {
            "id" => ("id", json!(value)),
            "provider" => ("provider", json!(value)),
            "base-url" => ("baseUrl", json!(value)),
            "region" => ("region", json!(value)),
            "weight" => ("weight", json!(number()?)),
            "rpm" => ("rpm", json!(number()?)),
            "tpm" => ("tpm", json!(number()?)),
            "api-key" | "key" | "apikey" | "apiKey" => {
                bail!("--deployment: a key is never taken on the command line (it would stay in your shell's history); use --deployment-key-stdin ID")
            }
            other => bail!("--deployment: unknown field {other:?}; use id, provider, base-url, region, weight, rpm, tpm"),
        };
        if out.insert(field.into(), value).is_some() {
            bail!("--deployment: {key} is given twice");
        }
    }
    // (Echoing the spec is safe here: one with a key was refused above.)
    if !out.contains_key("id") {
        bail!("--deployment {spec:?} has no id=");
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_spec_is_the_api_s_object() {
        let d = deployment(
            "id=east, provider=azure,base-url=https://r.openai.azure.com/openai/deployments/d?api-version=1,region=eastus,weight=3,rpm=100,tpm=50000",
        )
        .unwrap();
        assert_eq!(
            d,
            json!({"id": "east", "provider": "azure", "baseUrl": "https://r.openai.azure.com/openai/deployments/d?api-version=1", "region": "eastus",
                "weight": 3, "rpm": 100, "tpm": 50000})
        );
        assert_eq!(deployment("id=west").unwrap(), json!({"id": "west"}));
    }

    #[test]
    fn a_bad_deployment_spec_says_what_is_wrong() {
        let error = |spec: &str| deployment(spec).unwrap_err().to_string();
        assert!(error("provider=azure").contains("no id="));
        assert!(error("id=a,weight=three").contains("weight must be a whole number"));
        assert!(error("id=a,colour=red,api-key=sk-x").contains("unknown field \"colour\""));
        assert!(!error("id=a,colour=red,api-key=sk-x").contains("sk-x"), "a spec is never echoed whole");
        assert!(error("id=a,id=b").contains("id is given twice"));
        assert!(error("id=a,region").contains("is not key=value"));
        let key = error("id=a,api-key=sk-secret");
        assert!(key.contains("--deployment-key-stdin") && !key.contains("sk-secret"), "the key is not echoed: {key}");
    }
}
