//! Delivering notifications (invites, budget events, tests) through the configured channels:
//! SMTP mail and signed webhooks. Webhook bodies are JSON, signed with HMAC-SHA256 under the
//! channel's secret: `x-tollgate-signature: sha256=<hex>`, so a receiver can check the
//! delivery came from us and was not altered.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Value, json};

use crate::clock::SharedClock;
use crate::secrets::SecretStore;
use crate::settings::{self, Channel, ChannelKind, SmtpTls};
use crate::store::Store;

/// Bounds each delivery, so a dead channel cannot hold anything up for long.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Message {
    /// `invite.created`, `budget.threshold`, `budget.exhausted`, `budget.reset`, `test`.
    pub event: &'static str,
    pub subject: String,
    pub text: String,
    pub data: Value,
    /// A mail's recipient when it is meant for one person (an invite); otherwise the
    /// channel's own recipients.
    pub to: Option<String>,
}

/// How one delivery went.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub channel: String,
    pub ok: bool,
    pub error: Option<String>,
}

/// The HMAC-SHA256 of `body` under `secret`, as the signature header carries it.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={:x}", mac.finalize().into_bytes())
}

/// Why a channel did not take a message.
#[derive(Debug, thiserror::Error)]
pub enum Undelivered {
    #[error("cannot read the channel's secret: {0}")]
    Secret(String),
    #[error("the webhook has no signing secret")]
    NoSigningSecret,
    #[error("the webhook could not be reached: {0}")]
    Unreachable(String),
    #[error("the webhook answered {0}")]
    WebhookStatus(u16),
    /// The message could not be made (an address that is not one, a body that does not encode).
    #[error("the message could not be made: {0}")]
    Message(String),
    #[error("the SMTP server refused the mail: {0}")]
    Smtp(String),
    #[error("the channel did not answer in time")]
    Timeout,
}

/// What sends notifications: the configured channels (from the store), their secrets, the
/// HTTP client for webhooks and the clock that stamps them.
#[derive(Clone)]
pub struct Notifier {
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn SecretStore>,
    /// Restricted to public addresses (and the operator's private exceptions): webhook URLs
    /// are typed in by whoever holds settings:write.
    pub http: crate::egress::HttpClient,
    pub clock: SharedClock,
}

impl Notifier {
    /// Delivers through one channel; the error says what the channel itself answered.
    pub async fn deliver(&self, channel: &Channel, message: &Message) -> Result<(), Undelivered> {
        let secret = match channel.has_secret {
            true => self.secrets.get(&settings::secret_name(&channel.name)).await.map_err(|e| Undelivered::Secret(e.to_string()))?,
            false => None,
        };
        let work = async {
            match &channel.kind {
                ChannelKind::Webhook { url } => {
                    let secret = secret.ok_or(Undelivered::NoSigningSecret)?;
                    let body = serde_json::to_vec(&json!({
                        "event": message.event, "subject": message.subject, "text": message.text, "data": message.data, "sent_at": self.clock.now(),
                    }))
                    .map_err(|e| Undelivered::Message(e.to_string()))?;
                    let request = self
                        .http
                        .post(url)
                        .header("content-type", "application/json")
                        .header("x-tollgate-event", message.event)
                        .header("x-tollgate-signature", signature(secret.expose_secret(), &body))
                        .body(body);
                    let response = self.http.send(request).await.map_err(|e| Undelivered::Unreachable(e.to_string()))?;
                    if response.status().is_success() { Ok(()) } else { Err(Undelivered::WebhookStatus(response.status().as_u16())) }
                }
                ChannelKind::Smtp { host, port, tls, username, from, to } => {
                    let builder = match tls {
                        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
                        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(|e| Undelivered::Smtp(e.to_string()))?,
                        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(|e| Undelivered::Smtp(e.to_string()))?,
                    };
                    let mut builder = builder.port(*port).timeout(Some(DELIVERY_TIMEOUT));
                    if let (Some(user), Some(password)) = (username, &secret) {
                        builder = builder.credentials(Credentials::new(user.clone(), password.expose_secret().to_string()));
                    }
                    let recipients: Vec<&String> = match &message.to {
                        Some(one) => vec![one],
                        None => to.iter().collect(),
                    };
                    let mut mail = lettre::Message::builder()
                        .from(from.parse::<Mailbox>().map_err(|e| Undelivered::Message(format!("the sender {from:?}: {e}")))?)
                        .subject(message.subject.clone());
                    for recipient in recipients {
                        mail = mail.to(recipient.parse::<Mailbox>().map_err(|e| Undelivered::Message(format!("the recipient {recipient:?}: {e}")))?);
                    }
                    let mail = mail.body(message.text.clone()).map_err(|e| Undelivered::Message(e.to_string()))?;
                    builder.build().send(mail).await.map(|_| ()).map_err(|e| Undelivered::Smtp(e.to_string()))
                }
            }
        };
        tokio::time::timeout(DELIVERY_TIMEOUT, work).await.unwrap_or(Err(Undelivered::Timeout))
    }

    /// Delivers through every configured channel; a failing channel does not stop the others.
    pub async fn broadcast(&self, message: &Message) -> Vec<Delivery> {
        let channels = match settings::get(self.store.as_ref()).await {
            Ok(s) => s.channels,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the notification channels");
                return vec![];
            }
        };
        let mut out = Vec::with_capacity(channels.len());
        // A message for one person (an invite, whose link lets its holder join as them) goes
        // to that person's mail only, never to a webhook, whose receiver is someone else.
        let personal = message.to.is_some();
        for channel in channels.iter().filter(|c| !personal || matches!(c.kind, ChannelKind::Smtp { .. })) {
            let result = self.deliver(channel, message).await;
            if let Err(e) = &result {
                tracing::warn!(channel = %channel.name, event = message.event, error = %e, "a notification was not delivered");
            }
            out.push(Delivery { channel: channel.name.clone(), ok: result.is_ok(), error: result.err().map(|e| e.to_string()) });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_the_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(super::signature("Jefe", b"what do ya want for nothing?"), "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
