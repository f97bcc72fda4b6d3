//! The command-line client in the `tollgate` binary: the public JSON API, as the dashboard and
//! any script use it. `--server` (or `TOLLGATE_SERVER`) chooses the gateway; errors print the
//! API's message and exit non-zero.

mod api;
mod routing;
mod session;
mod sso;
mod table;

use std::io::Write;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

use api::Api;

#[derive(Args, Clone)]
pub struct Global {
    /// The gateway to talk to.
    #[arg(long, env = "TOLLGATE_SERVER", default_value = "http://127.0.0.1:8080", global = true)]
    pub server: String,
    /// Print the API's JSON instead of a table (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Log in; the session (a refresh token) is kept in your config directory, mode 0600.
    Login {
        #[arg(long, required_unless_present = "sso", conflicts_with = "sso")]
        email: Option<String>,
        /// Read the password from standard input (else TOLLGATE_PASSWORD, else a prompt).
        #[arg(long, conflicts_with = "sso")]
        password_stdin: bool,
        /// Sign in through the gateway's identity provider, in the browser.
        #[arg(long)]
        sso: bool,
        /// With --sso: only print the sign-in URL, do not open a browser.
        #[arg(long, requires = "sso")]
        no_browser: bool,
    },
    /// End the session on the server and forget it here.
    Logout,
    /// The model catalog.
    #[command(subcommand)]
    Models(Models),
    /// Your personal API keys.
    #[command(subcommand)]
    Keys(Keys),
    /// Projects.
    #[command(subcommand)]
    Projects(Projects),
    /// A project's tokens.
    #[command(subcommand)]
    Tokens(Tokens),
    /// Usage you may see, summed by day, model or provider (or `usage export`).
    Usage(UsageArgs),
    /// Send one prompt through the proxy with an API key and print the answer as it streams.
    Chat {
        prompt: String,
        #[arg(long)]
        model: String,
        /// The API key to use.
        #[arg(long, env = "TOLLGATE_API_KEY", hide_env_values = true)]
        key: String,
    },
}

#[derive(Subcommand)]
pub enum Models {
    List,
    /// Add a model; its provider key, if any, is read from standard input.
    Add {
        id: String,
        #[arg(long, default_value = "mock")]
        provider: String,
        /// Dollars per million input tokens.
        #[arg(long)]
        input_price: f64,
        /// Dollars per million output tokens.
        #[arg(long)]
        output_price: f64,
        #[arg(long, default_value_t = 128000)]
        context_window: i64,
        #[arg(long)]
        base_url: Option<String>,
        /// Read the provider key from standard input.
        #[arg(long)]
        api_key_stdin: bool,
    },
    Rm {
        id: String,
    },
    /// Replace a model's provider key, read from standard input.
    SetKey {
        id: String,
    },
    /// A model's deployments: where it is served (provider, base URL, region, weight, rpm/tpm).
    Deployments {
        id: String,
    },
    /// Show or change a model's routing: deployments (their keys read from standard input),
    /// strategy, fallbacks, retry policy.
    Route(routing::RouteArgs),
}

#[derive(Subcommand)]
pub enum Keys {
    List,
    /// Create a key; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        budget_cents: Option<i64>,
        #[arg(long)]
        rpm: Option<i64>,
        #[arg(long)]
        tpm: Option<i64>,
    },
    /// Replace a key's secret; the old one works for the grace period.
    Rotate {
        id: String,
        #[arg(long, default_value_t = 3600)]
        grace_seconds: i64,
    },
    Revoke {
        id: String,
    },
}

#[derive(Subcommand)]
pub enum Projects {
    List,
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        slug: String,
        /// Routing candidates, in order, comma-separated.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// The workspace it belongs to.
        #[arg(long)]
        workspace: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum Tokens {
    List {
        project: String,
    },
    /// Create a project token; its secret is printed once.
    Create {
        project: String,
        #[arg(long)]
        name: String,
    },
    Revoke {
        project: String,
        token_id: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum By {
    Day,
    Model,
    Provider,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct UsageArgs {
    #[command(subcommand)]
    export: Option<UsageExport>,
    #[arg(long, value_enum, default_value = "day")]
    by: By,
    /// First day (YYYY-MM-DD).
    #[arg(long)]
    from: Option<String>,
    /// Last day (YYYY-MM-DD).
    #[arg(long)]
    to: Option<String>,
}

#[derive(Subcommand)]
pub enum UsageExport {
    /// Write your usage records to a file, showing progress.
    Export {
        #[arg(long, default_value = "csv")]
        format: String,
        #[arg(long)]
        output: std::path::PathBuf,
    },
}

/// Runs one client command.
pub async fn run(global: Global, command: Command) -> anyhow::Result<()> {
    let api = Api::new(&global.server)?;
    let json = global.json;
    match command {
        Command::Login { sso: true, no_browser, .. } => {
            let session = sso::login(&api, !no_browser).await?;
            println!("Logged in to {} as {}.", api.server, session.email);
        }
        Command::Login { email, password_stdin, .. } => {
            let email = email.ok_or_else(|| anyhow!("--email is needed (or --sso)"))?;
            let password = password(password_stdin)?;
            api.login(&email, &password).await?;
            println!("Logged in to {} as {email}.", api.server);
        }
        Command::Logout => logout(&api).await?,
        Command::Models(m) => models(&api, json, m).await?,
        Command::Keys(k) => keys(&api, json, k).await?,
        Command::Projects(p) => projects(&api, json, p).await?,
        Command::Tokens(t) => tokens(&api, json, t).await?,
        Command::Usage(u) => usage(&api, json, u).await?,
        Command::Chat { prompt, model, key } => chat(&api, &key, &model, &prompt).await?,
    }
    Ok(())
}

fn read_stdin_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).with_context(|| format!("cannot read the {what} from standard input"))?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    if line.is_empty() {
        bail!("standard input held no {what}");
    }
    Ok(line)
}

fn password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        return read_stdin_line("password");
    }
    if let Ok(p) = std::env::var("TOLLGATE_PASSWORD") {
        return Ok(p);
    }
    rpassword::prompt_password("Password: ").context("cannot read a password here: pass --password-stdin or set TOLLGATE_PASSWORD")
}

async fn logout(api: &Api) -> anyhow::Result<()> {
    match api.session(chrono::Utc::now().timestamp()).await {
        Ok(session) => {
            if let Some(sid) = session.session_id() {
                // Ends the refresh token's session on the server too; gone already is fine.
                let _ = api.call(Method::DELETE, &format!("/admin/v1/me/sessions/{sid}"), None).await;
            }
        }
        Err(e) => eprintln!("(the server did not take the logout: {e})"),
    }
    if session::forget(&api.server)? {
        println!("Logged out of {}.", api.server);
    } else {
        println!("Not logged in to {}.", api.server);
    }
    Ok(())
}

async fn models(api: &Api, json: bool, command: Models) -> anyhow::Result<()> {
    match command {
        Models::List => {
            let list = api.call(Method::GET, "/api/models", None).await?;
            let rows = list.as_array().cloned().unwrap_or_default();
            let columns = [("ID", "/id"), ("PROVIDER", "/provider"), ("INPUT $/M", "/inputPrice"), ("OUTPUT $/M", "/outputPrice"), ("KEY SET", "/hasApiKey")];
            table::show(json, &list, &rows, &columns);
        }
        Models::Add { id, provider, input_price, output_price, context_window, base_url, api_key_stdin } => {
            let mut body = json!({"id": id, "provider": provider, "inputPrice": input_price, "outputPrice": output_price, "contextWindow": context_window});
            if let Some(url) = base_url {
                body["baseUrl"] = json!(url);
            }
            if api_key_stdin {
                body["apiKey"] = json!(read_stdin_line("provider key")?);
            }
            let model = api.call(Method::POST, "/api/models", Some(body)).await?;
            done(json, &model, &format!("Added model {id}."));
        }
        Models::Rm { id } => {
            api.call(Method::DELETE, &format!("/api/models/{}", segment(&id)), None).await?;
            println!("Removed model {id}.");
        }
        Models::SetKey { id } => {
            let key = read_stdin_line("provider key")?;
            let model = api.call(Method::POST, &format!("/api/models/{}/apikey", segment(&id)), Some(json!({"apiKey": key}))).await?;
            done(json, &model, &format!("Replaced the provider key of {id}."));
        }
        Models::Deployments { id } => routing::deployments(api, json, &id).await?,
        Models::Route(args) => routing::route(api, json, args).await?,
    }
    Ok(())
}

async fn keys(api: &Api, json: bool, command: Keys) -> anyhow::Result<()> {
    match command {
        Keys::List => {
            let page = api.call(Method::GET, "/admin/v1/me/api-keys?limit=1000", None).await?;
            let rows = page["data"].as_array().cloned().unwrap_or_default();
            let columns = [
                ("ID", "/id"),
                ("NAME", "/name"),
                ("PREFIX", "/key_prefix"),
                ("BUDGET ¢", "/budget_limit_cents"),
                ("CREATED", "/created_at"),
                ("REVOKED", "/revoked_at"),
            ];
            table::show(json, &page, &rows, &columns);
        }
        Keys::Create { name, budget_cents, rpm, tpm } => {
            let mut body = json!({"name": name});
            for (field, value) in [("budget_limit_cents", budget_cents), ("rate_limit_rpm", rpm), ("rate_limit_tpm", tpm)] {
                if let Some(v) = value {
                    body[field] = json!(v);
                }
            }
            let created = api.call(Method::POST, "/admin/v1/me/api-keys", Some(body)).await?;
            secret_once(json, &created, "/key", &format!("Created key {} ({}).", created["id"].as_str().unwrap_or_default(), name));
        }
        Keys::Rotate { id, grace_seconds } => {
            let rotated =
                api.call(Method::POST, &format!("/admin/v1/me/api-keys/{}/rotate", segment(&id)), Some(json!({"grace_period_seconds": grace_seconds}))).await?;
            secret_once(json, &rotated, "/key", &format!("Rotated; the old secret works for {grace_seconds} more seconds."));
        }
        Keys::Revoke { id } => {
            api.call(Method::DELETE, &format!("/admin/v1/me/api-keys/{}", segment(&id)), None).await?;
            println!("Revoked key {id}.");
        }
    }
    Ok(())
}

async fn projects(api: &Api, json: bool, command: Projects) -> anyhow::Result<()> {
    match command {
        Projects::List => {
            let list = api.call(Method::GET, "/api/projects", None).await?;
            let rows = list.as_array().cloned().unwrap_or_default();
            let columns = [("SLUG", "/slug"), ("NAME", "/name"), ("MODELS", "/models"), ("WORKSPACE", "/workspaceId"), ("ROLE", "/role")];
            table::show(json, &list, &rows, &columns);
        }
        Projects::Create { name, slug, models, workspace } => {
            let mut body = json!({"name": name, "slug": slug, "models": models});
            if let Some(ws) = workspace {
                body["workspaceId"] = json!(ws);
            }
            let project = api.call(Method::POST, "/api/projects", Some(body)).await?;
            done(json, &project, &format!("Created project {slug}."));
        }
    }
    Ok(())
}

async fn tokens(api: &Api, json: bool, command: Tokens) -> anyhow::Result<()> {
    match command {
        Tokens::List { project } => {
            let list = api.call(Method::GET, &format!("/api/projects/{}/tokens", segment(&project)), None).await?;
            let rows = list.as_array().cloned().unwrap_or_default();
            let columns = [("ID", "/id"), ("NAME", "/name"), ("PREFIX", "/tokenPrefix"), ("EXPIRES", "/expiresAt"), ("LAST USED", "/lastUsedAt")];
            table::show(json, &list, &rows, &columns);
        }
        Tokens::Create { project, name } => {
            let created = api.call(Method::POST, &format!("/api/projects/{}/tokens", segment(&project)), Some(json!({"name": name, "limits": []}))).await?;
            secret_once(json, &created, "/token", &format!("Created token {name} for {project}."));
        }
        Tokens::Revoke { project, token_id } => {
            api.call(Method::DELETE, &format!("/api/projects/{}/tokens/{}", segment(&project), segment(&token_id)), None).await?;
            println!("Revoked token {token_id}.");
        }
    }
    Ok(())
}

async fn usage(api: &Api, json: bool, args: UsageArgs) -> anyhow::Result<()> {
    if let Some(UsageExport::Export { format, output }) = args.export {
        return export(api, &format, &output).await;
    }
    let (by, heading) = match args.by {
        By::Day => ("day", "DAY"),
        By::Model => ("model", "MODEL"),
        By::Provider => ("provider", "PROVIDER"),
    };
    let mut query = format!("/api/usage/summary?group_by={by}");
    for (name, value) in [("from", &args.from), ("to", &args.to)] {
        if let Some(v) = value {
            query.push_str(&format!("&{name}={}", segment(v)));
        }
    }
    let summary = api.call(Method::GET, &query, None).await?;
    let mut rows = summary["groups"].as_array().cloned().unwrap_or_default();
    let mut total = summary["total"].clone();
    total["key"] = json!("TOTAL");
    rows.push(total);
    let columns = [(heading, "/key"), ("REQUESTS", "/requestCount"), ("INPUT", "/inputTokens"), ("OUTPUT", "/outputTokens"), ("COST $", "/cost")];
    table::show(json, &summary, &rows, &columns);
    Ok(())
}

/// Streams the export to a file, saying on stderr how far it has got.
async fn export(api: &Api, format: &str, output: &std::path::Path) -> anyhow::Result<()> {
    let mut resp = api.call_raw(Method::GET, &format!("/admin/v1/me/usage/logs/export?format={}", segment(format)), None).await?;
    let mut file = std::fs::File::create(output).with_context(|| format!("cannot write {}", output.display()))?;
    let (mut bytes, mut lines, mut shown) = (0usize, 0usize, std::time::Instant::now());
    while let Some(chunk) = resp.chunk().await.context("the export was cut off")? {
        file.write_all(&chunk).with_context(|| format!("cannot write {}", output.display()))?;
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
        if shown.elapsed().as_millis() >= 200 {
            eprint!("\rexporting: {lines} lines, {:.1} MiB", bytes as f64 / 1048576.0);
            shown = std::time::Instant::now();
        }
    }
    file.sync_all()?;
    let records = if format == "csv" { lines.saturating_sub(1) } else { lines };
    eprintln!("\rexported {records} records ({:.1} MiB) to {}", bytes as f64 / 1048576.0, output.display());
    Ok(())
}

async fn chat(api: &Api, key: &str, model: &str, prompt: &str) -> anyhow::Result<()> {
    let body = json!({"model": model, "stream": true, "messages": [{"role": "user", "content": prompt}]});
    let mut resp =
        api.http.post(api.url("/v1/chat/completions")).bearer_auth(key).json(&body).send().await.with_context(|| format!("cannot reach {}", api.server))?;
    if !resp.status().is_success() {
        return Err(api::error_of(resp).await);
    }
    // Server-sent events: print each delta's text as it comes.
    let mut pending = String::new();
    let mut out = std::io::stdout();
    while let Some(chunk) = resp.chunk().await.context("the answer was cut off")? {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let Some(data) = line.trim().strip_prefix("data: ") else { continue };
            if data == "[DONE]" {
                continue;
            }
            let event: Value = serde_json::from_str(data).map_err(|e| anyhow!("the stream held something other than JSON events: {e}"))?;
            if let Some(text) = event.pointer("/choices/0/delta/content").and_then(Value::as_str) {
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
        }
    }
    println!();
    Ok(())
}

/// A path segment (or a query value), percent-encoded.
fn segment(text: &str) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("a URL");
    url.path_segments_mut().expect("a base URL").push(text);
    url.path().trim_start_matches('/').to_string()
}

fn done(json: bool, value: &Value, message: &str) {
    if json {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
    } else {
        println!("{message}");
    }
}

/// A secret the API shows once: printed once, with a word that it will not be again.
fn secret_once(json: bool, value: &Value, at: &str, message: &str) {
    if json {
        println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
        return;
    }
    println!("{message}");
    if let Some(secret) = value.pointer(at).and_then(Value::as_str) {
        println!("Secret (shown once; keep it now):\n{secret}");
    }
}
