//! A local Amazon Bedrock runtime, as the Bedrock API reference shapes it: `POST
//! /model/{modelId}/converse` and `/converse-stream`, every request SigV4-signed (the fake
//! recomputes the signature over the headers it names, with the AWS SDK's signer, and refuses
//! a wrong one as Bedrock does); Converse's JSON (text, tool use when tools are offered and the
//! last turn has no tool result, cache usage); ConverseStream in AWS's binary event-stream
//! framing (`messageStart`, `contentBlockStart`, `contentBlockDelta`, `contentBlockStop`,
//! `messageStop`, `metadata`); errors as `{"message"}` with `x-amzn-ErrorType`, and a model id
//! containing `throttle` fails mid-stream with a `throttlingException` message.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const ACCESS_KEY_ID: &str = "AKIAFAKEBEDROCK0001";
pub const SECRET_ACCESS_KEY: &str = "fake/bedrock/secret/key/0123456789abcdef";
pub const REGION: &str = "eu-west-1";
pub const ANSWER: [&str; 3] = ["Bedrock", "says", "hi."];
/// inputTokens (without the cache), output, cache read, cache write.
pub const USAGE: (i64, i64, i64, i64) = (20, 3, 4, 2);

/// Every request so far: (model id, path end, body).
type Log = Arc<Mutex<Vec<(String, String, Value)>>>;

#[derive(Clone)]
pub struct FakeBedrock {
    pub base_url: String,
    requests: Log,
}

impl FakeBedrock {
    pub async fn start() -> Self {
        let requests: Log = Arc::default();
        let app = axum::Router::new().route("/model/{model}/{operation}", post(converse)).route("/foundation-models", get(models)).with_state(requests.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeBedrock { base_url: format!("http://{addr}"), requests }
    }

    /// The key a model gives the gateway: static credentials.
    pub fn key() -> String {
        format!("{ACCESS_KEY_ID}:{SECRET_ACCESS_KEY}")
    }

    pub fn requests(&self) -> Vec<(String, String, Value)> {
        self.requests.lock().unwrap().clone()
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, [("x-amzn-ErrorType", kind)], axum::Json(json!({"message": message}))).into_response()
}

/// Checks the request's SigV4 signature as AWS would: the same canonical request over the
/// headers it says it signed, the same key, region and service, the same time.
fn verify(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).ok_or("missing Authorization")?;
    let field = |name: &str| auth.split([' ', ',']).find_map(|p| p.strip_prefix(name)).map(str::to_string);
    let credential = field("Credential=").ok_or("no Credential")?;
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[0] != ACCESS_KEY_ID || scope[2] != REGION || scope[3] != "bedrock" {
        return Err(format!("the credential scope {credential} is not this key's, in {REGION}, for bedrock"));
    }
    let signed = field("SignedHeaders=").ok_or("no SignedHeaders")?;
    let date = headers.get("x-amz-date").and_then(|v| v.to_str().ok()).ok_or("missing x-amz-date")?;
    let time = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ").map_err(|e| e.to_string())?.and_utc();
    let pairs: Vec<(String, String)> = signed
        .split(';')
        .map(|name| {
            let value = headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
            (name.to_string(), value.to_string())
        })
        .collect();
    let identity = Credentials::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, None, "fake").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("bedrock")
        .time(SystemTime::from(time))
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let url = format!("http://{}{}", headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default(), uri);
    let signable = SignableRequest::new(method.as_str(), url, pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())), SignableBody::Bytes(body))
        .map_err(|e| e.to_string())?;
    let (instructions, signature) = sign(signable, &params).map_err(|e| e.to_string())?.into_parts();
    drop(instructions);
    match field("Signature=") {
        Some(sent) if sent == signature => Ok(()),
        _ => Err("The request signature we calculated does not match the signature you provided.".into()),
    }
}

async fn models(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    match verify(&method, &uri, &headers, b"") {
        Ok(()) => axum::Json(json!({"modelSummaries": [{"modelId": "anthropic.claude-3-haiku-20240307-v1:0"}]})).into_response(),
        Err(why) => error(StatusCode::FORBIDDEN, "UnrecognizedClientException", &why),
    }
}

/// A tool use when tools are offered and the last turn holds no tool result.
fn tool_use(body: &Value) -> Option<Value> {
    let tool = body.pointer("/toolConfig/tools/0/toolSpec")?;
    let last = body["messages"].as_array()?.last()?;
    let answered = last["content"].as_array().is_some_and(|blocks| blocks.iter().any(|b| b.get("toolResult").is_some()));
    (!answered).then(|| json!({"toolUseId": "tooluse_01", "name": tool["name"], "input": {"city": "Paris"}}))
}

fn event(kind: &str, payload: Value) -> Bytes {
    let message = Message::new(payload.to_string().into_bytes())
        .add_header(Header::new(":event-type", HeaderValue::String(kind.to_string().into())))
        .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())))
        .add_header(Header::new(":message-type", HeaderValue::String("event".into())));
    let mut out = Vec::new();
    write_message_to(&message, &mut out).unwrap();
    Bytes::from(out)
}

async fn converse(
    State(log): State<Log>,
    Path((model, operation)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    if let Err(why) = verify(&method, &uri, &headers, &raw) {
        return error(StatusCode::FORBIDDEN, "InvalidSignatureException", &why);
    }
    let Ok(body) = serde_json::from_slice::<Value>(&raw) else { return error(StatusCode::BAD_REQUEST, "ValidationException", "malformed JSON") };
    log.lock().unwrap().push((model.clone(), operation.clone(), body.clone()));
    if !body["messages"].is_array() || body.get("model").is_some() {
        return error(StatusCode::BAD_REQUEST, "ValidationException", "messages is required and model belongs in the path");
    }
    if model.contains("missing") {
        return error(StatusCode::NOT_FOUND, "ResourceNotFoundException", "Could not resolve the foundation model from the model identifier.");
    }
    let max_tokens = body.pointer("/inferenceConfig/maxTokens").and_then(Value::as_i64).unwrap_or(4096);
    let words: Vec<&str> = ANSWER.iter().take(max_tokens as usize).copied().collect();
    let stop = if words.len() < ANSWER.len() { "max_tokens" } else { "end_turn" };
    let (input, output, read, write) = USAGE;
    let usage = json!({"inputTokens": input, "outputTokens": words.len(), "totalTokens": input + output + read + write,
                       "cacheReadInputTokens": read, "cacheWriteInputTokens": write});
    let tool = tool_use(&body);
    if operation == "converse" {
        let mut content = vec![json!({"text": words.join(" ")})];
        let mut stop_reason = stop;
        if let Some(tool) = &tool {
            content.push(json!({"toolUse": tool}));
            stop_reason = "tool_use";
        }
        return axum::Json(
            json!({"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop_reason, "usage": usage, "metrics": {"latencyMs": 12}}),
        )
        .into_response();
    }
    if operation != "converse-stream" {
        return error(StatusCode::NOT_FOUND, "UnknownOperationException", "unknown operation");
    }
    let mut frames = vec![event("messageStart", json!({"role": "assistant"}))];
    for (i, word) in words.iter().enumerate() {
        let text = if i == 0 { word.to_string() } else { format!(" {word}") };
        frames.push(event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": text}})));
    }
    frames.push(event("contentBlockStop", json!({"contentBlockIndex": 0})));
    let mut stop_reason = stop;
    if let Some(tool) = &tool {
        frames.push(event("contentBlockStart", json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": tool["toolUseId"], "name": tool["name"]}}})));
        for piece in ["{\"city\":", "\"Paris\"}"] {
            frames.push(event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": piece}}})));
        }
        frames.push(event("contentBlockStop", json!({"contentBlockIndex": 1})));
        stop_reason = "tool_use";
    }
    if model.contains("throttle") {
        let message = Message::new(json!({"message": "Too many requests, please wait before trying again."}).to_string().into_bytes())
            .add_header(Header::new(":exception-type", HeaderValue::String("throttlingException".into())))
            .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())))
            .add_header(Header::new(":message-type", HeaderValue::String("exception".into())));
        let mut out = Vec::new();
        write_message_to(&message, &mut out).unwrap();
        frames.push(Bytes::from(out));
    } else {
        frames.push(event("messageStop", json!({"stopReason": stop_reason})));
        frames.push(event("metadata", json!({"usage": usage, "metrics": {"latencyMs": 12}})));
    }
    // Frames cut at arbitrary points, as TCP delivers them: the decoder must join them.
    let joined: Vec<u8> = frames.concat();
    let pieces: Vec<Result<Bytes, std::convert::Infallible>> = joined.chunks(37).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    Response::builder().header("content-type", "application/vnd.amazon.eventstream").body(Body::from_stream(futures::stream::iter(pieces))).unwrap()
}
