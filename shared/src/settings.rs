//! System settings (management family) and the notification channels they hold. A channel's
//! secret (an SMTP password, a webhook signing secret) lives in the secret store under
//! `channels/<name>`; the table only says whether one is set.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::secrets::SecretStore;
use crate::store::{Key, Store, from_item, keyed_item};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP (a local relay).
    None,
    /// STARTTLS after connecting (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// Where notifications go. The secret is not here: see `secret_name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChannelKind {
    #[serde(rename_all = "camelCase")]
    Smtp { host: String, port: u16, tls: SmtpTls, username: Option<String>, from: String, to: Vec<String> },
    /// Deliveries are POSTed as JSON, signed with HMAC-SHA256 of the body.
    Webhook { url: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    pub name: String,
    #[serde(flatten)]
    pub kind: ChannelKind,
    pub has_secret: bool,
}

pub fn secret_name(channel: &str) -> String {
    format!("channels/{channel}")
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    pub port: i64,
    pub log_level: String,
    pub default_timeout_ms: i64,
    pub public_url: Option<String>,
    /// Percent of a budget at which its threshold event is sent.
    pub budget_alert_threshold: i64,
    pub channels: Vec<Channel>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            port: 8080,
            log_level: "info".into(),
            default_timeout_ms: crate::projects::DEFAULT_TIMEOUT_MS,
            public_url: None,
            budget_alert_threshold: 80,
            channels: vec![],
            updated_at: None,
        }
    }
}

fn key() -> Key {
    Key::new("SYSTEM", "SETTINGS")
}

pub async fn get(store: &dyn Store) -> ApiResult<Settings> {
    Ok(store.get(&key()).await?.map(from_item).transpose()?.unwrap_or_default())
}

pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

pub fn validate(settings: &Settings) -> ApiResult<()> {
    if !(1..=65_535).contains(&settings.port) {
        return Err(ApiError::invalid_param("port", "port must be between 1 and 65535"));
    }
    if !LOG_LEVELS.contains(&settings.log_level.as_str()) {
        return Err(ApiError::invalid_param("logLevel", format!("logLevel must be one of {}", LOG_LEVELS.join(", "))));
    }
    if !(1..=crate::projects::MAX_TIMEOUT_MS).contains(&settings.default_timeout_ms) {
        return Err(ApiError::invalid_param("defaultTimeoutMs", format!("defaultTimeoutMs must be between 1 and {}", crate::projects::MAX_TIMEOUT_MS)));
    }
    if !(1..=100).contains(&settings.budget_alert_threshold) {
        return Err(ApiError::invalid_param("budgetAlertThreshold", "budgetAlertThreshold is a percentage between 1 and 100"));
    }
    if let Some(url) = &settings.public_url {
        check_url(url, "publicUrl")?;
    }
    let mut names = std::collections::HashSet::new();
    for channel in &settings.channels {
        let ok_name = !channel.name.is_empty() && channel.name.len() <= 64 && channel.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok_name {
            return Err(ApiError::invalid_param("notifications.name", "a channel name is 1-64 letters, digits, - and _"));
        }
        if !names.insert(channel.name.as_str()) {
            return Err(ApiError::invalid_param("notifications.name", format!("two channels are named {:?}", channel.name)));
        }
        match &channel.kind {
            ChannelKind::Smtp { host, port, from, to, .. } => {
                if host.is_empty() || *port == 0 {
                    return Err(ApiError::invalid_param("notifications.host", "an SMTP channel needs a host and a port"));
                }
                for address in std::iter::once(from).chain(to) {
                    address
                        .parse::<lettre::message::Mailbox>()
                        .map_err(|_| ApiError::invalid_param("notifications.to", format!("{address:?} is not an email address")))?;
                }
            }
            ChannelKind::Webhook { url } => {
                check_url(url, "notifications.url")?;
                if !channel.has_secret {
                    return Err(ApiError::invalid_param(
                        "notifications.secret",
                        format!("webhook channel {:?} needs a secret to sign its deliveries", channel.name),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn check_url(url: &str, param: &str) -> ApiResult<()> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(ApiError::invalid_param(param, format!("{param} must be an absolute http(s) URL"))),
    }
}

/// Saves settings; `secrets` are the channels' new secrets by name (channels not named keep
/// theirs). Secrets of channels that are gone are deleted.
pub async fn save(
    store: &dyn Store,
    secret_store: &dyn SecretStore,
    mut settings: Settings,
    secrets: Vec<(String, SecretString)>,
    now: DateTime<Utc>,
) -> ApiResult<Settings> {
    let before = get(store).await?;
    for channel in &mut settings.channels {
        let kept = before.channels.iter().any(|c| c.name == channel.name && c.has_secret);
        channel.has_secret = kept || secrets.iter().any(|(name, _)| *name == channel.name);
    }
    validate(&settings)?;
    for (name, secret) in secrets {
        secret_store.put(&secret_name(&name), &secret).await.map_err(ApiError::internal)?;
    }
    for gone in before.channels.iter().filter(|c| !settings.channels.iter().any(|n| n.name == c.name)) {
        secret_store.delete(&secret_name(&gone.name)).await.map_err(ApiError::internal)?;
    }
    settings.updated_at = Some(now);
    store.put(keyed_item(&settings, &key())?, None).await?;
    Ok(settings)
}
