//! The CLI's HTTP client: the public JSON API, as any client uses it. Errors carry the API's
//! own message (the error envelope's), so the CLI prints what the server says to fix.

use anyhow::{Context, anyhow, bail};
use reqwest::Method;
use serde_json::{Value, json};

use super::session::{self, Session};

pub struct Api {
    pub http: reqwest::Client,
    /// The gateway's base URL, without a trailing slash.
    pub server: String,
}

/// The API's answer to a failed call, as one line: its message, status, code and param.
pub async fn error_of(resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    match body.pointer("/error/message").and_then(Value::as_str) {
        Some(message) => {
            let code = body.pointer("/error/code").and_then(Value::as_str).unwrap_or_default();
            // The field it is about, when the API names one (`deployments[1].weight`).
            let param = body.pointer("/error/param").and_then(Value::as_str).map(|p| format!(", {p}")).unwrap_or_default();
            anyhow!("{message} (HTTP {}, {code}{param})", status.as_u16())
        }
        None => anyhow!("the server answered HTTP {status} without an error message"),
    }
}

impl Api {
    pub fn new(server: &str) -> anyhow::Result<Self> {
        let server = server.trim_end_matches('/').to_string();
        reqwest::Url::parse(&server).with_context(|| format!("--server {server:?} is not a URL (like http://127.0.0.1:8080)"))?;
        Ok(Api { http: reqwest::Client::new(), server })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    async fn send(&self, method: Method, path: &str, bearer: Option<&str>, body: Option<&Value>) -> anyhow::Result<reqwest::Response> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send().await.with_context(|| format!("cannot reach {} (is the gateway running? --server or TOLLGATE_SERVER choose it)", self.server))
    }

    /// A call without a session (login, setup); the answer's JSON, or the API's error.
    pub async fn public(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let resp = self.send(method, path, None, body.as_ref()).await?;
        if !resp.status().is_success() {
            return Err(error_of(resp).await);
        }
        Ok(resp.json().await.unwrap_or(Value::Null))
    }

    /// Logs in and keeps the session.
    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<Session> {
        let answer = self.public(Method::POST, "/api/auth/login", Some(json!({"email": email, "password": password}))).await?;
        let session = session_of(&answer, email)?;
        session::store(&self.server, &session)?;
        Ok(session)
    }

    /// The kept session, refreshed first when it expires within five minutes (and kept with
    /// its rotated refresh token).
    pub async fn session(&self, now: i64) -> anyhow::Result<Session> {
        let Some(session) = session::load(&self.server)? else {
            bail!("not logged in to {}: run `tollgate login`", self.server);
        };
        if session.needs_refresh(now) { self.refresh(&session).await } else { Ok(session) }
    }

    async fn refresh(&self, session: &Session) -> anyhow::Result<Session> {
        let answer = self
            .public(Method::POST, "/api/auth/refresh", Some(json!({"refreshToken": session.refresh_token})))
            .await
            .map_err(|e| anyhow!("the session has ended ({e}): run `tollgate login` again"))?;
        let fresh = session_of(&answer, &session.email)?;
        session::store(&self.server, &fresh)?;
        Ok(fresh)
    }

    /// A call with the session; the answer's JSON (null for an empty answer).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let resp = self.call_raw(method, path, body).await?;
        Ok(resp.json().await.unwrap_or(Value::Null))
    }

    /// A call with the session, the successful response as it is (for streaming it).
    pub async fn call_raw(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<reqwest::Response> {
        let now = chrono::Utc::now().timestamp();
        let mut session = self.session(now).await?;
        let mut resp = self.send(method.clone(), path, Some(&session.token), body.as_ref()).await?;
        // A token the server stopped honouring early (a restart with a new signing key): one
        // refresh, one retry.
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED {
            session = self.refresh(&session).await?;
            resp = self.send(method, path, Some(&session.token), body.as_ref()).await?;
        }
        if !resp.status().is_success() {
            return Err(error_of(resp).await);
        }
        Ok(resp)
    }
}

pub fn session_of(answer: &Value, email: &str) -> anyhow::Result<Session> {
    let text = |name: &str| answer.get(name).and_then(Value::as_str).map(str::to_string).ok_or_else(|| anyhow!("the server's answer has no {name}"));
    Ok(Session { token: text("token")?, refresh_token: text("refreshToken")?, email: email.to_string() })
}
