//! Front doors: the API shapes callers speak. A door is the mirror image of a provider type:
//! the caller's request becomes the canonical one (OpenAI's chat completions), and the
//! canonical answer, stream and errors go back in the caller's shape. OpenAI's door is the
//! canonical shape itself, so its bodies and chunks pass through untouched.

pub mod anthropic;
pub mod responses;
pub mod responses_stream;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::canonical::answer::{Parsed, frame_json, usage_only};

/// A request as the proxy takes it: the canonical request's bytes (what an OpenAI-shaped
/// upstream is sent as they are) and, where a door wrote them, the canonical request they were
/// written from, so the proxy does not parse again what the door has just serialised.
pub struct Entered {
    pub bytes: Bytes,
    pub canonical: Option<Value>,
}

impl Entered {
    /// The client's own bytes: OpenAI's door, whose shape is the canonical one.
    pub fn as_sent(bytes: Bytes) -> Self {
        Self { bytes, canonical: None }
    }

    /// A canonical request a door made.
    pub fn translated(canonical: Value) -> Self {
        Self { bytes: Bytes::from(canonical.to_string()), canonical: Some(canonical) }
    }
}

/// Which shape the caller speaks.
#[derive(Clone, Debug)]
pub enum Door {
    /// `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`: the canonical shape.
    OpenAi,
    /// `/v1/messages`: Anthropic's Messages API.
    Anthropic,
    /// `/v1/responses`: OpenAI's Responses API, this request's exchange.
    Responses(Arc<responses::Exchange>),
}

impl Door {
    /// A whole answer as the caller's answer: its bytes, and for the Responses API the response
    /// object (to be stored). `native`: the answer is already in the caller's shape (OpenAI's
    /// Responses answer from OpenAI); otherwise it is canonical.
    pub fn answer(&self, bytes: Bytes, answer: &Parsed, native: bool) -> (Bytes, Option<Value>) {
        match self {
            Door::OpenAi => (bytes, None),
            Door::Anthropic => (Bytes::from(anthropic::answer(&answer.json(&bytes)).to_string()), None),
            Door::Responses(exchange) => {
                let answer = answer.json(&bytes);
                let response = if native { exchange.adopt(answer.into_owned()) } else { exchange.translate(&answer) };
                (Bytes::from(response.to_string()), Some(response))
            }
        }
    }

    /// Whether the door reads answers and chunks whole (it translates them): the OpenAI door
    /// passes them on as they came, so for it they are only glimpsed (`canonical::answer`).
    pub fn needs_json(&self) -> bool {
        !matches!(self, Door::OpenAi)
    }

    /// What writes a stream to the caller (`native` as in `answer`).
    pub fn writer(&self, wants_usage: bool, native: bool) -> Box<dyn StreamWriter> {
        match self {
            Door::OpenAi => Box::new(OpenAiWriter { wants_usage }),
            Door::Anthropic => Box::<anthropic::EventWriter>::default(),
            Door::Responses(exchange) if native => Box::new(responses_stream::Native::new(exchange.clone())),
            Door::Responses(exchange) => Box::new(responses_stream::Translated::new(exchange.clone())),
        }
    }
}

/// Writes a canonical stream in the caller's shape, chunk by chunk.
pub trait StreamWriter: Send {
    /// The frames for one canonical chunk (`frame`: the chunk as a canonical SSE frame).
    fn chunk(&mut self, chunk: &Value, frame: Bytes) -> Vec<Bytes>;
    /// The same, for a chunk as the proxy read it: parsed whole, or only glimpsed (where the
    /// door needs no more: its JSON is then parsed from the frame).
    fn chunk_read(&mut self, chunk: &Parsed, frame: Bytes) -> Vec<Bytes> {
        let json = chunk.json(frame_json(&frame));
        self.chunk(&json, frame)
    }
    /// The answer as a whole once the stream is over, where the door keeps it (the Responses
    /// API's stored response); asked before `finish`.
    fn response(&mut self) -> Option<Value> {
        None
    }
    /// The closing frames; `failure` when the stream broke off (its code and message).
    fn finish(&mut self, failure: Option<(&str, &str)>, request_id: &str) -> Vec<Bytes>;
}

/// The canonical stream, as it came (the usage chunk only when the caller asked for it).
struct OpenAiWriter {
    wants_usage: bool,
}

impl OpenAiWriter {
    fn pass(&self, usage_only: bool, frame: Bytes) -> Vec<Bytes> {
        if usage_only && !self.wants_usage { vec![] } else { vec![frame] }
    }
}

impl StreamWriter for OpenAiWriter {
    fn chunk(&mut self, chunk: &Value, frame: Bytes) -> Vec<Bytes> {
        self.pass(usage_only(chunk), frame)
    }

    fn chunk_read(&mut self, chunk: &Parsed, frame: Bytes) -> Vec<Bytes> {
        let usage_only = match chunk {
            Parsed::Json(value) => usage_only(value),
            Parsed::Glimpsed(glimpse) => glimpse.usage_only,
        };
        self.pass(usage_only, frame)
    }

    fn finish(&mut self, failure: Option<(&str, &str)>, request_id: &str) -> Vec<Bytes> {
        let mut out = Vec::new();
        if let Some((code, message)) = failure {
            let envelope = serde_json::json!({"error": {"code": code, "message": message, "param": null, "request_id": request_id, "type": "api_error"}});
            out.push(Bytes::from(format!("data: {envelope}\n\n")));
        }
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
        out
    }
}
