//! An upstream that misbehaves in one way, whatever path it is called on, for the conformance
//! suite's failure scenarios: it fails with a provider's own error body, never answers (a
//! timeout), or sends the first event of a stream in a provider's own framing and then holds
//! the connection open (so a client can leave mid-stream).

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Clone)]
pub enum Mode {
    /// This status, content type and body.
    Fail(u16, &'static str, String),
    Silent,
    /// These bytes first (the `responses` ones on a `/responses` path), then nothing, forever.
    Stall {
        first: Bytes,
        responses: Bytes,
    },
}

pub struct Stub {
    pub base_url: String,
}

impl Stub {
    pub async fn start(mode: Mode) -> Self {
        let app = axum::Router::new().fallback(move |uri: Uri| {
            let mode = mode.clone();
            async move { answer(mode, uri).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Stub { base_url: format!("http://{addr}") }
    }
}

async fn answer(mode: Mode, uri: Uri) -> Response {
    match mode {
        Mode::Fail(status, content_type, body) => (StatusCode::from_u16(status).unwrap(), [("content-type", content_type)], body).into_response(),
        Mode::Silent => {
            futures::future::pending::<()>().await;
            unreachable!("pending never ends")
        }
        Mode::Stall { first, responses } => {
            let first = if uri.path().ends_with("/responses") { responses } else { first };
            let held = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(first) }).chain(futures::stream::pending());
            Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(held)).unwrap()
        }
    }
}

use futures::StreamExt;

/// The error body each provider type answers a failure with, carrying `message`.
pub fn error_body(provider: &str, message: &str) -> String {
    match provider {
        "anthropic" => json!({"type": "error", "error": {"type": "api_error", "message": message}}),
        "bedrock" => json!({"message": message}),
        "gemini" | "vertex" => json!({"error": {"code": 500, "message": message, "status": "INTERNAL"}}),
        _ => json!({"error": {"message": message, "type": "server_error", "code": null}}),
    }
    .to_string()
}

/// The first event of a streamed answer in each provider type's framing: a few words of text.
pub fn first_event(provider: &str) -> Bytes {
    let sse = |data: serde_json::Value| format!("data: {data}\n\n");
    match provider {
        "anthropic" => Bytes::from(
            [
                (
                    "message_start",
                    json!({"type": "message_start", "message": {"id": "msg_s", "type": "message", "role": "assistant", "model": "m", "content": [],
                    "usage": {"input_tokens": 5, "output_tokens": 1}}}),
                ),
                ("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
                ("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}})),
            ]
            .iter()
            .map(|(name, data)| format!("event: {name}\ndata: {data}\n\n"))
            .collect::<String>(),
        ),
        "bedrock" => {
            use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
            let mut out = Vec::new();
            for (kind, payload) in
                [("messageStart", json!({"role": "assistant"})), ("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}}))]
            {
                let message = Message::new(payload.to_string().into_bytes())
                    .add_header(Header::new(":event-type", HeaderValue::String(kind.to_string().into())))
                    .add_header(Header::new(":message-type", HeaderValue::String("event".into())));
                aws_smithy_eventstream::frame::write_message_to(&message, &mut out).unwrap();
            }
            Bytes::from(out)
        }
        "gemini" | "vertex" => Bytes::from(sse(json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}]}))),
        _ => Bytes::from(sse(
            json!({"id": "s", "object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": null}]}),
        )),
    }
}

/// The first events of OpenAI's Responses stream.
pub fn first_responses_events() -> Bytes {
    let response = json!({"id": "resp_s", "object": "response", "status": "in_progress", "output": []});
    Bytes::from(format!(
        "event: response.created\ndata: {}\n\nevent: response.output_text.delta\ndata: {}\n\n",
        json!({"type": "response.created", "sequence_number": 0, "response": response}),
        json!({"type": "response.output_text.delta", "sequence_number": 1, "item_id": "msg_s", "output_index": 0, "content_index": 0, "delta": "Hel"})
    ))
}
