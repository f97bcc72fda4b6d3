//! A local OpenAI-shaped upstream, streaming included, with injectable failures and delays.
//! It records what it was sent, so tests can check the proxy forwarded the right key.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Clone, Debug, Default)]
pub enum Behaviour {
    #[default]
    Answer,
    /// Answer with this status and an OpenAI error envelope.
    Fail(u16),
    /// Wait this long before answering.
    Delay(Duration),
    /// 429 with `retry-after` in seconds, as OpenAI and Anthropic send it.
    RateLimited(u64),
    /// Fail this many times with this status, then answer.
    FailTimes(u32, u16),
    /// Every other request fails with a 500 (the first fails).
    Flap,
    /// Drop the connection without answering (the handler dies; hyper closes the socket).
    Reset,
    /// Stream two chunks, then break the connection.
    CutStream,
}

#[derive(Default)]
struct Shared {
    behaviour: Behaviour,
    /// Requests answered by `FailTimes` and `Flap` so far.
    seen: u32,
    requests: Vec<(HeaderMap, Value)>,
}

#[derive(Clone)]
pub struct FakeUpstream {
    pub base_url: String,
    shared: Arc<Mutex<Shared>>,
}

/// What an OpenAI-shaped chat request is answered with besides text, as OpenAI would: a tool
/// call (`call_up_1`, arguments `{"city":"Paris"}`) when tools are offered and the last message
/// is no tool result; JSON when `response_format` asks for it.
pub enum Special {
    Text,
    Tool(Value),
    Json(String),
}

pub fn special(body: &Value) -> Special {
    let offered = body["tools"].as_array().and_then(|t| t.first()).and_then(|t| t.pointer("/function/name")).cloned();
    let answered = body["messages"].as_array().and_then(|m| m.last()).is_some_and(|m| m["role"] == "tool");
    match (offered, body.pointer("/response_format/type").and_then(Value::as_str)) {
        (Some(name), _) if !answered => {
            Special::Tool(json!({"id": "call_up_1", "type": "function", "function": {"name": name, "arguments": "{\"city\":\"Paris\"}"}}))
        }
        (_, Some("json_object" | "json_schema")) => Special::Json("{\"answer\": \"hi\"}".into()),
        _ => Special::Text,
    }
}

/// What the fake reports as usage: prompt 7 (2 cached), completion 5 (1 reasoning).
pub const USAGE: (i64, i64, i64, i64) = (7, 5, 2, 1);

fn usage() -> Value {
    json!({"prompt_tokens": USAGE.0, "completion_tokens": USAGE.1, "total_tokens": USAGE.0 + USAGE.1,
           "prompt_tokens_details": {"cached_tokens": USAGE.2}, "completion_tokens_details": {"reasoning_tokens": USAGE.3}})
}

impl FakeUpstream {
    pub async fn start() -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(answer))
            .route("/v1/completions", post(answer))
            .route("/v1/embeddings", post(answer))
            .route("/v1/responses", post(answer))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeUpstream { base_url: format!("http://{addr}/v1"), shared }
    }

    pub fn behave(&self, behaviour: Behaviour) {
        let mut shared = self.shared.lock().unwrap();
        (shared.behaviour, shared.seen) = (behaviour, 0);
    }

    /// (headers, body) of every request so far.
    pub fn requests(&self) -> Vec<(HeaderMap, Value)> {
        self.shared.lock().unwrap().requests.clone()
    }
}

async fn answer(State(shared): State<Arc<Mutex<Shared>>>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let behaviour = {
        let mut s = shared.lock().unwrap();
        s.requests.push((headers, body.clone()));
        s.behaviour.clone()
    };
    let fail = |status: u16| {
        let envelope = json!({"error": {"message": format!("fake upstream failure {status}"), "type": "server_error", "code": null}});
        let mut response = (StatusCode::from_u16(status).unwrap(), axum::Json(envelope)).into_response();
        if status == 429 {
            response.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        response
    };
    let seen = {
        let mut s = shared.lock().unwrap();
        s.seen += 1;
        s.seen
    };
    match behaviour {
        Behaviour::RateLimited(secs) => {
            let envelope = json!({"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}});
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", secs.to_string())], axum::Json(envelope)).into_response();
        }
        Behaviour::FailTimes(n, status) if seen <= n => return fail(status),
        Behaviour::Flap if seen % 2 == 1 => return fail(500),
        Behaviour::Reset => panic!("the fake upstream drops this connection"),
        Behaviour::CutStream if body["stream"] == true => {
            let model = body["model"].clone();
            let chunk = |w: &str| {
                format!(
                    "data: {}\n\n",
                    json!({"id": "up-1", "object": "chunk", "model": model, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": null}]})
                )
            };
            let frames = vec![Ok::<_, std::io::Error>(Bytes::from(chunk("half "))), Ok(Bytes::from(chunk("an "))), Err(std::io::Error::other("cut"))];
            // The break comes a moment later, once the head and the chunks are on the wire.
            let frames = futures::StreamExt::then(futures::stream::iter(frames), |frame| async move {
                if frame.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                frame
            });
            return Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(frames)).unwrap();
        }
        Behaviour::Fail(status) => return fail(status),
        Behaviour::Delay(d) => tokio::time::sleep(d).await,
        _ => {}
    }
    let model = body["model"].clone();
    if uri.path().ends_with("responses") {
        return responses(&body);
    }
    if uri.path().ends_with("embeddings") {
        return axum::Json(json!({"object": "list", "model": model, "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.5]}],
                                 "usage": {"prompt_tokens": USAGE.0, "total_tokens": USAGE.0}}))
        .into_response();
    }
    let chat = uri.path().ends_with("chat/completions");
    let special = if chat { special(&body) } else { Special::Text };
    if let (Special::Tool(call), true) = (&special, body["stream"] == true) {
        let mut opened = call.clone();
        opened["index"] = json!(0);
        opened["function"]["arguments"] = json!("");
        let events = [
            json!({"id": "up-1", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [opened]}, "finish_reason": null}]}),
            json!({"id": "up-1", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]}, "finish_reason": null}]}),
            json!({"id": "up-1", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"id": "up-1", "object": "chat.completion.chunk", "model": model, "choices": [], "usage": usage()}),
        ];
        let mut frames: Vec<String> = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        frames.push("data: [DONE]\n\n".into());
        let stream = futures::stream::iter(frames.into_iter().map(|e| Ok::<_, std::convert::Infallible>(Bytes::from(e))));
        return Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(stream)).unwrap();
    }
    match special {
        Special::Tool(call) => {
            let message = json!({"role": "assistant", "content": null, "tool_calls": [call]});
            return axum::Json(json!({"id": "up-1", "object": "chat.completion", "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}], "usage": usage()}))
            .into_response();
        }
        Special::Json(text) if body["stream"] != true => {
            return axum::Json(json!({"id": "up-1", "object": "chat.completion", "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}], "usage": usage()}))
            .into_response();
        }
        _ => {}
    }
    if body["stream"] == true {
        let include_usage = body["stream_options"]["include_usage"] == true;
        let mut events: Vec<String> = ["up", "stream", "answer", "here", "ok"]
            .iter()
            .map(|w| {
                let choice = if chat {
                    json!({"index": 0, "delta": {"content": format!("{w} ")}, "finish_reason": null})
                } else {
                    json!({"index": 0, "text": format!("{w} "), "finish_reason": null})
                };
                format!("data: {}\n\n", json!({"id": "up-1", "object": "chunk", "model": model, "choices": [choice]}))
            })
            .collect();
        // SSE lets an event's data run over several `data:` lines; a proxy must not break it.
        events[0] = events[0].replacen(",", ",\ndata: ", 1);
        events.push(stop_event(&model));
        if include_usage {
            events.push(format!("data: {}\n\n", json!({"id": "up-1", "object": "chunk", "model": model, "choices": [], "usage": usage()})));
        }
        events.push("data: [DONE]\n\n".into());
        let stream = futures::stream::iter(events.into_iter().map(|e| Ok::<_, std::convert::Infallible>(Bytes::from(e))));
        return Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(stream)).unwrap();
    }
    ([("content-type", "application/json")], whole_answer(chat, &model)).into_response()
}

/// The fake's last chunk of a stream, laid out as serde_json would not (spaces, fields out of
/// order), so a proxy that rewrote chunks instead of passing them on would show.
pub fn stop_event(model: &Value) -> String {
    format!(
        "data: {{\"object\": \"chunk\", \"id\": \"up-1\", \"model\": {model}, \"choices\": [{{\"index\": 0, \"delta\": {{}}, \"finish_reason\": \"stop\"}}]}}\n\n"
    )
}

/// The fake's whole answer, pretty-printed: a layout the proxy would lose if it reformatted
/// answers instead of passing them on.
pub fn whole_answer(chat: bool, model: &Value) -> String {
    let choice = if chat {
        json!({"index": 0, "message": {"role": "assistant", "content": "upstream says hello"}, "finish_reason": "stop"})
    } else {
        json!({"index": 0, "text": "upstream says hello", "finish_reason": "stop"})
    };
    let answer =
        json!({"id": "up-1", "object": if chat { "chat.completion" } else { "text_completion" }, "model": model, "choices": [choice], "usage": usage()});
    serde_json::to_string_pretty(&answer).expect("JSON")
}

/// OpenAI's Responses API, as its reference shapes it: a `response` object whose output is one
/// `message`, with the same usage as chat (in the Responses API's names); streamed as typed
/// events with `event:` lines and sequence numbers, ending with `response.completed`.
fn responses(body: &Value) -> Response {
    let usage = json!({"input_tokens": USAGE.0, "input_tokens_details": {"cached_tokens": USAGE.2},
                       "output_tokens": USAGE.1, "output_tokens_details": {"reasoning_tokens": USAGE.3}, "total_tokens": USAGE.0 + USAGE.1});
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": "resp_upstream_1", "object": "response", "created_at": 1_700_000_000, "status": status, "model": body["model"],
               "output": output, "usage": usage, "store": body["store"], "error": null, "incomplete_details": null,
               "parallel_tool_calls": true, "tool_choice": "auto", "tools": []})
    };
    let item = |status: &str, text: &str| {
        json!({"type": "message", "id": "msg_up_1", "status": status, "role": "assistant",
               "content": if text.is_empty() { json!([]) } else { json!([{"type": "output_text", "text": text, "annotations": []}]) }})
    };
    // A function call when function tools are offered and the input answers none; JSON when
    // text.format asks for it.
    let offered = body["tools"].as_array().and_then(|t| t.iter().find(|t| t["type"] == "function")).map(|t| t["name"].clone());
    let answered = body["input"].as_array().is_some_and(|items| items.iter().any(|i| i["type"] == "function_call_output"));
    let json_mode = matches!(body.pointer("/text/format/type").and_then(Value::as_str), Some("json_object" | "json_schema"));
    if body["stream"] != true {
        let output = match offered {
            Some(name) if !answered => {
                json!([{"type": "function_call", "id": "fc_up_1", "call_id": "call_up_1", "name": name, "arguments": "{\"city\":\"Paris\"}", "status": "completed"}])
            }
            _ if json_mode => json!([item("completed", "{\"answer\": \"hi\"}")]),
            _ => json!([item("completed", "upstream says hello")]),
        };
        return axum::Json(response("completed", output, usage)).into_response();
    }
    let part = json!({"type": "output_text", "text": "", "annotations": []});
    let mut events = vec![
        json!({"type": "response.created", "response": response("in_progress", json!([]), Value::Null)}),
        json!({"type": "response.in_progress", "response": response("in_progress", json!([]), Value::Null)}),
        json!({"type": "response.output_item.added", "output_index": 0, "item": item("in_progress", "")}),
        json!({"type": "response.content_part.added", "item_id": "msg_up_1", "output_index": 0, "content_index": 0, "part": part}),
    ];
    for word in ["upstream ", "says ", "hello"] {
        events.push(json!({"type": "response.output_text.delta", "item_id": "msg_up_1", "output_index": 0, "content_index": 0, "delta": word}));
    }
    events.push(json!({"type": "response.output_text.done", "item_id": "msg_up_1", "output_index": 0, "content_index": 0, "text": "upstream says hello"}));
    events.push(json!({"type": "response.output_item.done", "output_index": 0, "item": item("completed", "upstream says hello")}));
    events.push(json!({"type": "response.completed", "response": response("completed", json!([item("completed", "upstream says hello")]), usage)}));
    let frames: Vec<String> = events
        .into_iter()
        .enumerate()
        .map(|(n, mut event)| {
            event["sequence_number"] = json!(n);
            format!("event: {}\ndata: {event}\n\n", event["type"].as_str().unwrap())
        })
        .collect();
    let stream = futures::stream::iter(frames.into_iter().map(|e| Ok::<_, std::convert::Infallible>(Bytes::from(e))));
    Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(stream)).unwrap()
}
