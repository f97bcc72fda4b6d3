//! One cross-provider conformance suite: the same canonical scenarios — plain, streamed, a tool
//! call round trip, image input, JSON output, an upstream error, a timeout, a client that
//! leaves mid-stream — against every provider type's local fake (each speaking its provider's
//! real wire) through all three front doors (`/v1/chat/completions`, `/v1/messages`,
//! `/v1/responses`), checking the answers, the usage records and their cost, on both backends.
//!
//! Every model is priced at $1 per million input tokens (cached and cache-written alike) and $2
//! per million output tokens, so a request's cost in micro-dollars is `input + 2 x output`.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tollgate::Group;
use tollgate_tests::anthropic::{self, FakeAnthropic};
use tollgate_tests::azure::{self, FakeAzure};
use tollgate_tests::bedrock::{FakeBedrock, REGION};
use tollgate_tests::google::{self, FakeGoogle};
use tollgate_tests::stub::{Mode, Stub, error_body, first_event, first_responses_events};
use tollgate_tests::upstream::FakeUpstream;
use tollgate_tests::{Resp, TestApp, backend_tests};

const IMAGE: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
const TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Door {
    Chat,
    Messages,
    Responses,
}

const DOORS: [Door; 3] = [Door::Chat, Door::Messages, Door::Responses];

/// One provider type under test: its models (answering, failing, silent, stalling).
struct Provider {
    kind: &'static str,
    model: String,
    /// Whether its wire has a JSON output mode (else asking for one is a 400).
    json: bool,
}

/// The catalog entry of a model of `kind` at `base` with `key`, at the suite's prices.
fn entry(id: &str, kind: &str, base: Option<&str>, key: Option<&str>) -> Value {
    let mut model = json!({"id": id, "provider": kind, "inputPrice": 1.0, "cachedInputPrice": 1.0, "cacheWritePrice": 1.0, "outputPrice": 2.0,
        "contextWindow": 100_000, "maxOutputTokens": 200});
    if let Some(base) = base {
        model["baseUrl"] = json!(base);
    }
    if let Some(key) = key {
        model["apiKey"] = json!(key);
    }
    model
}

/// Every provider type with a fake, each with its answering model and three misbehaving ones
/// (`-err`, `-slow`, `-stall`) at stubs that speak its wire.
async fn providers(app: &TestApp, admin: &str) -> Vec<Provider> {
    let openai = FakeUpstream::start().await;
    let azure = FakeAzure::start().await;
    let claude = FakeAnthropic::start().await;
    let bedrock = FakeBedrock::start().await;
    let google = FakeGoogle::start().await;
    let deployment = format!("{}/openai/deployments/{}", azure.endpoint, azure::DEPLOYMENT);
    let bedrock_base = format!("{}/?region={REGION}", bedrock.base_url);
    let account = google.service_account(google::PRIVATE_KEY);
    // kind, answering base, key, JSON mode, how a stub's base is written for the kind.
    // `openai-responses`: an OpenAI model served only on the Responses API (upstreamApi), which
    // every door's request reaches translated.
    let kinds: [(&str, Option<String>, Option<String>, bool); 11] = [
        ("mock", None, None, true),
        ("openai", Some(openai.base_url.clone()), Some("sk-up-0123456789abcdef".into()), true),
        ("openai-compatible", Some(openai.base_url.clone()), Some("sk-up-0123456789abcdef".into()), true),
        ("openai-responses", Some(openai.base_url.clone()), Some("sk-up-0123456789abcdef".into()), true),
        ("openrouter", Some(openai.base_url.clone()), Some("sk-or-0123456789abcdef".into()), true),
        ("huggingface", Some(openai.base_url.clone()), Some("hf_0123456789abcdef".into()), true),
        ("azure", Some(deployment), Some(azure::API_KEY.into()), true),
        ("anthropic", Some(claude.base_url.clone()), Some(anthropic::API_KEY.into()), false),
        ("bedrock", Some(bedrock_base), Some(FakeBedrock::key()), false),
        ("gemini", Some(google.studio()), Some(google::API_KEY.into()), true),
        ("vertex", Some(google.vertex()), Some(account.clone()), true),
    ];
    let mut out = Vec::new();
    for (kind, base, key, json) in kinds {
        let id = format!("c-{kind}");
        let (provider, responses_only) = if kind == "openai-responses" { ("openai", true) } else { (kind, false) };
        let entry = |id: &str, base: Option<&str>| {
            let mut entry = entry(id, provider, base, key.as_deref());
            if responses_only {
                entry["upstreamApi"] = json!("responses");
            }
            entry
        };
        app.post("/api/models", Some(admin), entry(&id, base.as_deref())).await.expect(201);
        if kind != "mock" {
            let stubs = [
                ("err", Mode::Fail(500, "application/json", error_body(kind, "stub failure"))),
                ("slow", Mode::Silent),
                ("stall", Mode::Stall { first: first_event(kind), responses: first_responses_events() }),
            ];
            for (suffix, mode) in stubs {
                let stub = Stub::start(mode).await;
                let base = match kind {
                    "azure" => format!("{}/openai/deployments/{}", stub.base_url, azure::DEPLOYMENT),
                    "bedrock" => format!("{}/?region={REGION}", stub.base_url),
                    "gemini" => format!("{}/v1beta", stub.base_url),
                    "vertex" => format!("{}/v1/projects/{}/locations/{}/publishers/google", stub.base_url, google::PROJECT, google::LOCATION),
                    _ => stub.base_url.clone(),
                };
                app.post("/api/models", Some(admin), entry(&format!("{id}-{suffix}"), Some(&base))).await.expect(201);
            }
        }
        out.push(Provider { kind, model: id, json });
    }
    out
}

/// A user turn holding `text` (and an inline PNG when `image`), in the door's shape.
fn user(door: Door, text: &str, image: bool) -> Value {
    match (door, image) {
        (_, false) => json!({"role": "user", "content": text}),
        (Door::Chat, true) => {
            json!({"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{IMAGE}")}}]})
        }
        (Door::Messages, true) => {
            json!({"role": "user", "content": [{"type": "text", "text": text}, {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": IMAGE}}]})
        }
        (Door::Responses, true) => {
            json!({"role": "user", "content": [{"type": "input_text", "text": text}, {"type": "input_image", "image_url": format!("data:image/png;base64,{IMAGE}")}]})
        }
    }
}

/// A request through `door` to `model` with these turns and extra fields.
fn body(door: Door, model: &str, turns: Vec<Value>, extra: Value) -> Value {
    let mut body = match door {
        Door::Chat => json!({"model": model, "messages": turns}),
        Door::Messages => json!({"model": model, "max_tokens": 200, "messages": turns}),
        Door::Responses => json!({"model": model, "input": turns}),
    };
    body.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    body
}

fn path(door: Door) -> &'static str {
    match door {
        Door::Chat => "/v1/chat/completions",
        Door::Messages => "/v1/messages",
        Door::Responses => "/v1/responses",
    }
}

/// The text of a whole answer in the door's shape.
fn text(door: Door, answer: &Value) -> String {
    match door {
        Door::Chat => answer.pointer("/choices/0/message/content").and_then(Value::as_str).unwrap_or_default().to_string(),
        Door::Messages => answer["content"].as_array().into_iter().flatten().filter_map(|b| b["text"].as_str()).collect(),
        Door::Responses => answer["output"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["text"].as_str().map(str::to_string))
            .collect(),
    }
}

/// The tool call in a whole answer: (its id, its name).
fn tool_call(door: Door, answer: &Value) -> Option<(Value, Value)> {
    match door {
        Door::Chat => answer.pointer("/choices/0/message/tool_calls/0").map(|c| (c["id"].clone(), c["function"]["name"].clone())),
        Door::Messages => answer["content"].as_array()?.iter().find(|b| b["type"] == "tool_use").map(|b| (b["id"].clone(), b["name"].clone())),
        Door::Responses => answer["output"].as_array()?.iter().find(|i| i["type"] == "function_call").map(|i| (i["call_id"].clone(), i["name"].clone())),
    }
}

/// The text streamed in any door's events.
fn streamed_text(sse: &str) -> String {
    sse.split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|e| {
            e.pointer("/choices/0/delta/content")
                .or_else(|| e.pointer("/delta/text"))
                .or_else(|| (e["type"] == "response.output_text.delta").then(|| &e["delta"]))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

/// The usage record of a request, once it is written.
async fn record(app: &TestApp, admin: &str, request_id: &str) -> Value {
    for _ in 0..100 {
        let r = app.get(&format!("/api/usage/{request_id}"), Some(admin)).await;
        if r.status == 200 {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no usage record for {request_id}");
}

/// Checks a record's cost against its tokens at the suite's prices.
fn priced(record: &Value, what: &str) {
    let (input, output) = (record["inputTokens"].as_i64().unwrap(), record["outputTokens"].as_i64().unwrap());
    let micros = (record["cost"].as_f64().unwrap() * 1e6).round() as i64;
    assert!(input > 0 && output > 0, "{what}: tokens counted: {record}");
    assert_eq!(micros, input + 2 * output, "{what}: cost is input + 2 x output: {record}");
}

fn request_id(r: &Resp) -> String {
    r.headers["x-request-id"].to_str().unwrap().to_string()
}

/// Every scenario for one provider through one door.
async fn scenarios(app: &TestApp, admin: &str, key: &str, p: &Provider, door: Door) {
    let what = |s: &str| format!("{} via {door:?}: {s}", p.kind);
    let post = |body: Value| app.post(path(door), Some(key), body);
    // A stream opened through the door: the answer, and its request id.
    let open = |body: Value| async move {
        let resp = app.client.post(format!("{}{}", app.base, path(door))).bearer_auth(key).json(&body).send().await.unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        (resp, id)
    };
    // Plain.
    let plain = post(body(door, &p.model, vec![user(door, "Say hi.", false)], json!({}))).await;
    assert_eq!(plain.status, 200, "{}: {}", what("plain"), plain.text);
    assert!(!text(door, &plain.body).is_empty(), "{}: {}", what("plain"), plain.text);
    let rec = record(app, admin, &request_id(&plain)).await;
    assert_eq!(rec["outcome"], "success");
    priced(&rec, &what("plain"));
    // Streamed.
    let (resp, id) = open(body(door, &p.model, vec![user(door, "Say hi.", false)], json!({"stream": true}))).await;
    assert_eq!(resp.status(), 200, "{}", what("streamed"));
    let sse = resp.text().await.unwrap();
    assert!(!streamed_text(&sse).is_empty(), "{}: {sse}", what("streamed"));
    let rec = record(app, admin, &id).await;
    assert_eq!((rec["streamed"].as_bool(), rec["outcome"].as_str()), (Some(true), Some("success")), "{}", what("streamed"));
    priced(&rec, &what("streamed"));
    // A tool call and its result.
    let tools = match door {
        Door::Chat => {
            json!([{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
        }
        Door::Messages => json!([{"name": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]),
        Door::Responses => json!([{"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]),
    };
    let ask = user(door, "Weather in Paris? [mock:tool]", false);
    let first = post(body(door, &p.model, vec![ask.clone()], json!({"tools": tools}))).await;
    assert_eq!(first.status, 200, "{}: {}", what("tool"), first.text);
    let (call_id, name) = tool_call(door, &first.body).unwrap_or_else(|| panic!("{}: no tool call in {}", what("tool"), first.text));
    assert_eq!(name, "weather");
    let second = match door {
        Door::Chat => {
            let call = first.body["choices"][0]["message"].clone();
            body(door, &p.model, vec![ask, call, json!({"role": "tool", "tool_call_id": call_id, "content": "sunny"})], json!({"tools": tools}))
        }
        Door::Messages => {
            let turn = json!({"role": "assistant", "content": first.body["content"]});
            let result = json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "sunny"}]});
            body(door, &p.model, vec![ask, turn, result], json!({"tools": tools}))
        }
        Door::Responses => json!({"model": p.model, "previous_response_id": first.body["id"], "tools": tools,
            "input": [{"type": "function_call_output", "call_id": call_id, "output": "sunny"}]}),
    };
    let second = post(second).await;
    assert_eq!(second.status, 200, "{}: {}", what("tool result"), second.text);
    assert!(tool_call(door, &second.body).is_none() && !text(door, &second.body).is_empty(), "{}: {}", what("tool result"), second.text);
    // Image input.
    let image = post(body(door, &p.model, vec![user(door, "What is this?", true)], json!({}))).await;
    assert_eq!(image.status, 200, "{}: {}", what("image"), image.text);
    priced(&record(app, admin, &request_id(&image)).await, &what("image"));
    // JSON output (the Messages API has no JSON mode of its own).
    let format = match door {
        Door::Chat => Some(json!({"response_format": {"type": "json_object"}})),
        Door::Responses => Some(json!({"text": {"format": {"type": "json_object"}}})),
        Door::Messages => None,
    };
    if let Some(format) = format {
        let answer = post(body(door, &p.model, vec![user(door, "Reply in JSON.", false)], format)).await;
        if p.json {
            assert_eq!(answer.status, 200, "{}: {}", what("json"), answer.text);
            let parsed: Value = serde_json::from_str(&text(door, &answer.body)).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", what("json"), answer.text));
            assert!(parsed.is_object(), "{}", what("json"));
        } else {
            assert_eq!(answer.status, 400, "{}: {}", what("json refused"), answer.text);
            assert!(answer.body["error"]["message"].as_str().unwrap().contains("response format"), "{}: {}", what("json refused"), answer.text);
        }
    }
    // A request that misbehaves: the mock told so by a directive, any other type sent to its
    // stub model (`-err`, `-slow`, `-stall`).
    let misbehaving = |stub: &str, directive: &str, extra: Value| {
        let (model, text) = if p.kind == "mock" { (p.model.clone(), format!("x {directive}")) } else { (format!("{}-{stub}", p.model), "Say hi.".into()) };
        body(door, &model, vec![user(door, &text, false)], extra)
    };
    // An upstream error: the provider's own message, in the door's envelope.
    let failed = post(misbehaving("err", "[mock:status=500]", json!({}))).await;
    assert_eq!(failed.status, 502, "{}: {}", what("error"), failed.text);
    let message = failed.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(if p.kind == "mock" { "mock:status" } else { "stub failure" }), "{}: {}", what("error"), failed.text);
    if door == Door::Messages {
        assert_eq!(failed.body["type"], "error", "{}: Anthropic's envelope", what("error"));
    }
    assert_eq!(record(app, admin, &request_id(&failed)).await["outcome"], "error");
    // A timeout.
    let timed_out = post(misbehaving("slow", "[mock:delay_ms=3000]", json!({}))).await;
    assert_eq!(timed_out.status, 504, "{}: {}", what("timeout"), timed_out.text);
    assert_eq!(record(app, admin, &request_id(&timed_out)).await["outcome"], "timeout");
    // A client that leaves mid-stream: recorded as cancelled, charged for what it was sent.
    let (resp, id) = open(misbehaving("stall", "[mock:words=50] [mock:delay_ms=100]", json!({"stream": true}))).await;
    assert_eq!(resp.status(), 200, "{}", what("leave"));
    let mut bytes = resp.bytes_stream();
    let first = bytes.next().await.expect("a first event").unwrap();
    assert!(!first.is_empty());
    drop(bytes);
    let rec = record(app, admin, &id).await;
    assert_eq!((rec["cancelled"].as_bool(), rec["streamed"].as_bool()), (Some(true), Some(true)), "{}: {rec}", what("leave"));
}

backend_tests! {
    async fn every_provider_type_answers_every_scenario_through_every_front_door(backend) {
        let app = TestApp::start_with(backend, &Group::ALL, |c| c.upstream_timeout = TIMEOUT, None).await;
        let (admin, _) = app.admin().await;
        let providers = providers(&app, &admin).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        let runs = providers.iter().flat_map(|p| DOORS.map(|door| (p, door))).map(|(p, door)| scenarios(&app, &admin, &key, p, door));
        futures::future::join_all(runs).await;
    }
}
