//! Front doors: the API shapes callers speak. A door is the mirror image of a provider type:
//! the caller's request becomes the canonical one (OpenAI's chat completions), and the
//! canonical answer, stream and errors go back in the caller's shape. OpenAI's door is the
//! canonical shape itself, so its bodies and chunks pass through untouched.

pub mod anthropic;

use axum::body::Bytes;
use serde_json::Value;

/// Which shape the caller speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`: the canonical shape.
    OpenAi,
    /// `/v1/messages`: Anthropic's Messages API.
    Anthropic,
}

impl Door {
    /// A whole canonical answer (its bytes and JSON) as the caller's answer.
    pub fn answer(self, bytes: Bytes, canonical: &Value) -> Bytes {
        match self {
            Door::OpenAi => bytes,
            Door::Anthropic => Bytes::from(anthropic::answer(canonical).to_string()),
        }
    }

    /// What writes a canonical stream to the caller.
    pub fn writer(self, wants_usage: bool) -> Box<dyn StreamWriter> {
        match self {
            Door::OpenAi => Box::new(OpenAiWriter { wants_usage }),
            Door::Anthropic => Box::<anthropic::EventWriter>::default(),
        }
    }
}

/// Writes a canonical stream in the caller's shape, chunk by chunk.
pub trait StreamWriter: Send {
    /// The frames for one canonical chunk (`frame`: the chunk as a canonical SSE frame).
    fn chunk(&mut self, chunk: &Value, frame: Bytes) -> Vec<Bytes>;
    /// The closing frames; `failure` when the stream broke off (its code and message).
    fn finish(&mut self, failure: Option<(&str, &str)>, request_id: &str) -> Vec<Bytes>;
}

/// The canonical stream, as it came (the usage chunk only when the caller asked for it).
struct OpenAiWriter {
    wants_usage: bool,
}

impl StreamWriter for OpenAiWriter {
    fn chunk(&mut self, chunk: &Value, frame: Bytes) -> Vec<Bytes> {
        let usage_only = chunk.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty) && chunk.get("usage").is_some();
        if usage_only && !self.wants_usage { vec![] } else { vec![frame] }
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
