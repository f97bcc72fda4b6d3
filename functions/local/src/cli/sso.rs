//! `tollgate login --sso`: single sign-on from the terminal through the browser and a loopback
//! redirect (RFC 8252), which works with every provider, since the gateway, not the CLI, is the
//! provider's client. The CLI listens on 127.0.0.1 on a port of its own, sends the browser to
//! the gateway's sign-in with that address and a PKCE challenge, and trades the one-time code
//! the browser brings back, with the verifier only it holds, for today's session.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use axum::extract::{Query, State};
use axum::response::Html;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tollgate::identity::oidc::{pkce_challenge, random_token};

use super::api::{Api, session_of};
use super::session::{self, Session};

/// How long the CLI waits for the browser.
const WAIT: Duration = Duration::from_secs(300);

#[derive(Deserialize)]
struct Back {
    sso_code: Option<String>,
    sso_error: Option<String>,
}

/// Signs in through the identity provider and keeps the session as `tollgate login` does.
pub async fn login(api: &Api, open_browser: bool) -> anyhow::Result<Session> {
    let status = api.public(Method::GET, "/api/auth/oidc/status", None).await?;
    if status.get("enabled") != Some(&Value::Bool(true)) {
        bail!("{} has no single sign-on configured; log in with --email instead", api.server);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot listen on 127.0.0.1 for the browser's return")?;
    let return_to = format!("http://127.0.0.1:{}/callback", listener.local_addr()?.port());
    let verifier = random_token();
    let mut url = reqwest::Url::parse(&api.url("/api/auth/oidc/login"))?;
    url.query_pairs_mut().append_pair("return_to", &return_to).append_pair("challenge", &pkce_challenge(&verifier));

    let (tx, mut rx) = mpsc::channel::<Back>(1);
    let app = axum::Router::new().route("/callback", axum::routing::get(returned)).with_state(tx);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    eprintln!("Sign in with your identity provider in the browser. If it does not open, visit:\n\n  {url}\n");
    if open_browser {
        open(url.as_str());
    }
    let back = tokio::time::timeout(WAIT, rx.recv()).await.map_err(|_| anyhow!("no sign-in came back within {} minutes", WAIT.as_secs() / 60))?;
    server.abort();
    let back = back.ok_or_else(|| anyhow!("the loopback listener stopped"))?;
    if let Some(error) = back.sso_error {
        bail!("single sign-on failed: {error}");
    }
    let code = back.sso_code.ok_or_else(|| anyhow!("the browser came back without a sign-in code"))?;
    let answer = api.public(Method::POST, "/api/auth/oidc/exchange", Some(json!({"code": code, "verifier": verifier}))).await?;
    let email = answer.pointer("/user/email").and_then(Value::as_str).unwrap_or_default().to_string();
    let session = session_of(&answer, &email)?;
    session::store(&api.server, &session)?;
    Ok(session)
}

async fn returned(State(tx): State<mpsc::Sender<Back>>, Query(back): Query<Back>) -> Html<&'static str> {
    let ok = back.sso_code.is_some();
    let _ = tx.try_send(back);
    Html(if ok {
        "<!doctype html><title>Tollgate</title><p>Signed in. You can close this tab and return to the terminal.</p>"
    } else {
        "<!doctype html><title>Tollgate</title><p>Sign-in failed; the terminal says why.</p>"
    })
}

/// Opens the URL in the desktop's browser, if there is one; the URL is printed either way.
fn open(url: &str) {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let _ = std::process::Command::new(opener).arg(url).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn();
}
