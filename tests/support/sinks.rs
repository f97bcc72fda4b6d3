//! Local stand-ins for what notifications reach outside the machine: an SMTP server that
//! keeps every mail it accepts, and a webhook receiver that keeps every delivery.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One mail as the SMTP sink received it.
#[derive(Clone, Debug)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    pub mails: Arc<Mutex<Vec<Mail>>>,
    /// When set, recipients are refused with this reply.
    pub refuse: Arc<Mutex<Option<String>>>,
    /// The decoded `AUTH PLAIN` credentials each session sent (`\0user\0password`).
    pub logins: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = SmtpSink { port: listener.local_addr().unwrap().port(), mails: Arc::default(), refuse: Arc::default(), logins: Arc::default() };
        let shared = sink.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let sink = shared.clone();
                tokio::spawn(async move { sink.session(socket).await });
            }
        });
        sink
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    async fn session(&self, socket: tokio::net::TcpStream) -> std::io::Result<()> {
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"220 sink ESMTP\r\n").await?;
        let mut mail = Mail { from: String::new(), to: vec![], data: String::new() };
        while let Some(line) = lines.next_line().await? {
            let upper = line.to_ascii_uppercase();
            let reply = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                "250-sink\r\n250 AUTH PLAIN\r\n".to_string()
            } else if upper.starts_with("AUTH PLAIN ") {
                use base64::Engine;
                let decoded = base64::engine::general_purpose::STANDARD.decode(line[11..].trim()).unwrap_or_default();
                self.logins.lock().unwrap().push(String::from_utf8_lossy(&decoded).into_owned());
                "235 accepted\r\n".into()
            } else if upper.starts_with("MAIL FROM:") {
                mail.from = line[10..].trim().trim_matches(['<', '>']).to_string();
                "250 OK\r\n".into()
            } else if upper.starts_with("RCPT TO:") {
                match self.refuse.lock().unwrap().clone() {
                    Some(reply) => format!("{reply}\r\n"),
                    None => {
                        mail.to.push(line[8..].trim().trim_matches(['<', '>']).to_string());
                        "250 OK\r\n".into()
                    }
                }
            } else if upper == "DATA" {
                write.write_all(b"354 go ahead\r\n").await?;
                while let Some(data) = lines.next_line().await? {
                    if data == "." {
                        break;
                    }
                    mail.data.push_str(&data);
                    mail.data.push('\n');
                }
                self.mails.lock().unwrap().push(std::mem::replace(&mut mail, Mail { from: String::new(), to: vec![], data: String::new() }));
                "250 queued\r\n".into()
            } else if upper == "QUIT" {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else {
                "250 OK\r\n".into()
            };
            write.write_all(reply.as_bytes()).await?;
        }
        Ok(())
    }
}

/// One webhook delivery.
#[derive(Clone, Debug)]
pub struct Hook {
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
pub struct WebhookSink {
    pub url: String,
    pub hooks: Arc<Mutex<Vec<Hook>>>,
    pub status: Arc<Mutex<u16>>,
}

impl WebhookSink {
    pub async fn start() -> Self {
        let sink = WebhookSink { url: String::new(), hooks: Arc::default(), status: Arc::new(Mutex::new(200)) };
        let app = axum::Router::new().route("/hook", post(receive)).with_state(sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        WebhookSink { url, ..sink }
    }

    pub fn hooks(&self) -> Vec<Hook> {
        self.hooks.lock().unwrap().clone()
    }
}

async fn receive(State(sink): State<WebhookSink>, headers: HeaderMap, body: Bytes) -> StatusCode {
    sink.hooks.lock().unwrap().push(Hook { headers, body });
    StatusCode::from_u16(*sink.status.lock().unwrap()).unwrap()
}
