//! Auth group, management family: settings with their notification channels, a channel test,
//! and system information.

use axum::Json;
use axum::extract::State;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorEnvelope;
use super::extract::{ApiJson, Caller};
use crate::error::{ApiError, ApiResult};
use crate::identity::roles::Permission;
use crate::notify;
use crate::settings::{self, Channel, ChannelKind, Settings, SmtpTls};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_settings, put_settings)).routes(routes!(test_notification)).routes(routes!(system_info))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettingsView {
    port: i64,
    log_level: String,
    /// The upstream timeout new projects get unless they set their own.
    default_timeout_ms: i64,
    public_url: Option<String>,
    /// Percent of a budget at which a threshold event is sent.
    budget_alert_threshold: i64,
    #[schema(value_type = Vec<Object>)]
    notifications: Vec<Channel>,
}

fn view(s: Settings) -> SettingsView {
    SettingsView {
        port: s.port,
        log_level: s.log_level,
        default_timeout_ms: s.default_timeout_ms,
        public_url: s.public_url,
        budget_alert_threshold: s.budget_alert_threshold,
        notifications: s.channels,
    }
}

#[utoipa::path(get, path = "/api/settings", tag = "settings", responses((status = 200, body = SettingsView), (status = 403, body = ErrorEnvelope)))]
async fn get_settings(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<SettingsView>> {
    caller.require(Permission::SettingsRead)?;
    Ok(Json(view(settings::get(state.store.as_ref()).await?)))
}

/// A notification channel as PUT sends it. `password` (SMTP) and `secret` (webhook signing
/// key) go to the secret store and never come back; omitted, a channel keeps the one it has.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelInput {
    name: String,
    /// `smtp` or `webhook`.
    r#type: String,
    host: Option<String>,
    port: Option<u16>,
    tls: Option<SmtpTls>,
    username: Option<String>,
    from: Option<String>,
    #[serde(default)]
    to: Vec<String>,
    url: Option<String>,
    #[schema(value_type = Option<String>)]
    password: Option<SecretString>,
    #[schema(value_type = Option<String>)]
    secret: Option<SecretString>,
}

impl ChannelInput {
    fn into_parts(self) -> ApiResult<(Channel, Option<SecretString>)> {
        let need = |v: Option<String>, field: &str| {
            v.ok_or_else(|| ApiError::invalid_param(&format!("notifications.{field}"), format!("channel {:?} needs {field}", self.name)))
        };
        let (kind, secret) = match self.r#type.as_str() {
            "smtp" => (
                ChannelKind::Smtp {
                    host: need(self.host.clone(), "host")?,
                    port: self.port.unwrap_or(587),
                    tls: self.tls.unwrap_or(SmtpTls::Starttls),
                    username: self.username.clone(),
                    from: need(self.from.clone(), "from")?,
                    to: self.to.clone(),
                },
                self.password,
            ),
            "webhook" => (ChannelKind::Webhook { url: need(self.url.clone(), "url")? }, self.secret),
            other => return Err(ApiError::invalid_param("notifications.type", format!("a channel's type is smtp or webhook, not {other:?}"))),
        };
        Ok((Channel { name: self.name, kind, has_secret: false }, secret))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateSettings {
    port: Option<i64>,
    log_level: Option<String>,
    default_timeout_ms: Option<i64>,
    public_url: Option<String>,
    budget_alert_threshold: Option<i64>,
    /// Replaces every channel.
    notifications: Option<Vec<ChannelInput>>,
}

#[utoipa::path(put, path = "/api/settings", tag = "settings", request_body = UpdateSettings,
    responses((status = 200, body = SettingsView), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
async fn put_settings(State(state): State<AppState>, caller: Caller, ApiJson(body): ApiJson<UpdateSettings>) -> ApiResult<Json<SettingsView>> {
    caller.require(Permission::SettingsWrite)?;
    let mut settings = settings::get(state.store.as_ref()).await?;
    settings.port = body.port.unwrap_or(settings.port);
    settings.log_level = body.log_level.unwrap_or(settings.log_level);
    settings.default_timeout_ms = body.default_timeout_ms.unwrap_or(settings.default_timeout_ms);
    settings.public_url = body.public_url.or(settings.public_url);
    settings.budget_alert_threshold = body.budget_alert_threshold.unwrap_or(settings.budget_alert_threshold);
    let mut secrets = Vec::new();
    if let Some(inputs) = body.notifications {
        settings.channels = Vec::with_capacity(inputs.len());
        for input in inputs {
            let (channel, secret) = input.into_parts()?;
            if let Some(secret) = secret {
                secrets.push((channel.name.clone(), secret));
            }
            settings.channels.push(channel);
        }
    }
    let saved = settings::save(state.store.as_ref(), state.secrets.as_ref(), settings, secrets, state.clock.now()).await?;
    state.alerts.forget_threshold();
    Ok(Json(view(saved)))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestNotification {
    channel_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct Delivered {
    ok: bool,
    channel: String,
}

/// Sends a test message through one channel: 200 when it was accepted, otherwise an error
/// envelope carrying what the channel answered.
#[utoipa::path(post, path = "/api/notifications/test", tag = "settings", request_body = TestNotification,
    responses((status = 200, body = Delivered), (status = 404, body = ErrorEnvelope), (status = 502, body = ErrorEnvelope)))]
async fn test_notification(State(state): State<AppState>, caller: Caller, ApiJson(body): ApiJson<TestNotification>) -> ApiResult<Json<Delivered>> {
    caller.require(Permission::SettingsWrite)?;
    let settings = settings::get(state.store.as_ref()).await?;
    let channel = settings
        .channels
        .iter()
        .find(|c| c.name == body.channel_name)
        .ok_or_else(|| ApiError::not_found(format!("there is no notification channel {:?}; GET /api/settings lists them", body.channel_name)))?;
    let message = notify::Message {
        event: "test",
        subject: "Tollgate test notification".into(),
        text: format!("This is a test of the notification channel {:?}.", channel.name),
        data: json!({"channel": channel.name}),
        to: None,
    };
    state.notifier.deliver(channel, &message).await.map_err(|e| ApiError::Status {
        status: 502,
        code: "notification_failed",
        message: format!("channel {:?} failed: {e}", channel.name),
    })?;
    Ok(Json(Delivered { ok: true, channel: channel.name.clone() }))
}

#[derive(Serialize, ToSchema)]
pub struct SystemInfo {
    version: &'static str,
    /// Seconds since this process started.
    uptime: u64,
    runtime: String,
    /// `os/arch`.
    platform: String,
}

#[utoipa::path(get, path = "/api/system/info", tag = "settings", responses((status = 200, body = SystemInfo), (status = 401, body = ErrorEnvelope)))]
async fn system_info(State(state): State<AppState>, _caller: Caller) -> Json<SystemInfo> {
    Json(SystemInfo {
        version: env!("CARGO_PKG_VERSION"),
        uptime: state.started.elapsed().as_secs(),
        runtime: format!("rust ({} store)", if state.config.store == crate::config::StoreKind::Embedded { "embedded" } else { "dynamodb" }),
        platform: format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}
