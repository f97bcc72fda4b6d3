//! A Responses stream, as OpenAI's API reference lays it out: typed server-sent events, each
//! with a `sequence_number` — `response.created`, `response.in_progress`,
//! `response.output_item.added`, `response.content_part.added`, `response.output_text.delta`,
//! `response.output_text.done`, `response.content_part.done`,
//! `response.function_call_arguments.delta` / `.done`, `response.output_item.done`, then
//! `response.completed` (or `response.incomplete`, or `response.failed`) with the whole
//! response and its usage. `Translated` writes a canonical stream so; `Native` relays OpenAI's
//! own, under our response id.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};

use super::StreamWriter;
use super::responses::{Exchange, function_call_item, message_item, new_id, status_of, usage};

fn frame(kind: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

/// An output item being written.
enum Item {
    Text { id: String, text: String },
    Call { id: String, call_id: Value, name: Value, arguments: String },
}

impl Item {
    fn done(&self) -> Value {
        match self {
            Item::Text { id, text } => message_item(id, text, "completed"),
            Item::Call { id, call_id, name, arguments } => function_call_item(id, Some(call_id), Some(name), arguments, "completed"),
        }
    }
}

/// Writes a canonical stream as Responses events.
pub struct Translated {
    exchange: Arc<Exchange>,
    sequence: i64,
    started: bool,
    model: Value,
    items: Vec<Item>,
    /// The item open for more text or arguments.
    open: Option<usize>,
    /// Canonical tool call index → its item.
    calls: HashMap<i64, usize>,
    finish_reason: Option<String>,
    usage: Option<Value>,
}

impl Translated {
    pub fn new(exchange: Arc<Exchange>) -> Self {
        Translated {
            exchange,
            sequence: 0,
            started: false,
            model: Value::Null,
            items: vec![],
            open: None,
            calls: HashMap::new(),
            finish_reason: None,
            usage: None,
        }
    }

    fn emit(&mut self, kind: &str, mut data: Value, out: &mut Vec<Bytes>) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.push(frame(kind, &data));
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.exchange.response(&self.model, "in_progress", vec![], None, None);
        self.emit("response.created", json!({"response": response}), out);
        self.emit("response.in_progress", json!({"response": response}), out);
    }

    /// Closes the open item with its `done` events.
    fn close(&mut self, out: &mut Vec<Bytes>) {
        let Some(index) = self.open.take() else { return };
        let item = self.items[index].done();
        match &self.items[index] {
            Item::Text { id, text } => {
                let (id, text) = (id.clone(), text.clone());
                let ids = json!({"item_id": id, "output_index": index, "content_index": 0});
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                self.emit("response.output_text.done", merged(&ids, json!({"text": text, "logprobs": []})), out);
                self.emit("response.content_part.done", merged(&ids, json!({"part": part})), out);
            }
            Item::Call { id, name, arguments, .. } => {
                let data = json!({"item_id": id, "output_index": index, "name": name, "arguments": arguments});
                self.emit("response.function_call_arguments.done", data, out);
            }
        }
        self.emit("response.output_item.done", json!({"output_index": index, "item": item}), out);
    }

    /// Opens a new item (closing the open one).
    fn open(&mut self, item: Item, out: &mut Vec<Bytes>) -> usize {
        self.close(out);
        let index = self.items.len();
        let added = match &item {
            Item::Text { id, .. } => message_item(id, "", "in_progress"),
            Item::Call { id, call_id, name, .. } => function_call_item(id, Some(call_id), Some(name), "", "in_progress"),
        };
        let is_text = matches!(item, Item::Text { .. });
        let id = added["id"].clone();
        self.items.push(item);
        self.open = Some(index);
        self.emit("response.output_item.added", json!({"output_index": index, "item": added}), out);
        if is_text {
            let part = json!({"type": "output_text", "text": "", "annotations": []});
            self.emit("response.content_part.added", json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}), out);
        }
        index
    }

    fn final_response(&self) -> Value {
        let output = self.items.iter().map(Item::done).collect();
        let (status, extra) = status_of(self.finish_reason.as_deref().unwrap_or("stop"));
        self.exchange.response(&self.model, status, output, self.usage.as_ref().map(usage), extra)
    }
}

fn merged(a: &Value, b: Value) -> Value {
    let mut out = a.clone();
    if let (Some(out), Value::Object(b)) = (out.as_object_mut(), b) {
        out.extend(b);
    }
    out
}

impl StreamWriter for Translated {
    fn chunk(&mut self, chunk: &Value, _: Bytes) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.model.is_null() {
            self.model = chunk.get("model").cloned().unwrap_or(Value::Null);
        }
        self.start(&mut out);
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk.pointer("/choices/0") else { return out };
        let delta = choice.get("delta").cloned().unwrap_or_default();
        if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            let index = match self.open {
                Some(i) if matches!(self.items[i], Item::Text { .. }) => i,
                _ => self.open(Item::Text { id: new_id("msg"), text: String::new() }, &mut out),
            };
            let Item::Text { id, text: all } = &mut self.items[index] else { unreachable!("a text item") };
            all.push_str(text);
            let data = json!({"item_id": id, "output_index": index, "content_index": 0, "delta": text, "logprobs": []});
            self.emit("response.output_text.delta", data, &mut out);
        }
        for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            let at = call.get("index").and_then(Value::as_i64).unwrap_or(0);
            let index = match self.calls.get(&at) {
                Some(index) => *index,
                None => {
                    let item = Item::Call {
                        id: new_id("fc"),
                        call_id: call.get("id").cloned().unwrap_or_else(|| json!(new_id("call"))),
                        name: call.pointer("/function/name").cloned().unwrap_or(Value::Null),
                        arguments: String::new(),
                    };
                    let index = self.open(item, &mut out);
                    self.calls.insert(at, index);
                    index
                }
            };
            if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str).filter(|a| !a.is_empty()) {
                let Item::Call { id, arguments, .. } = &mut self.items[index] else { unreachable!("a call item") };
                arguments.push_str(args);
                let data = json!({"item_id": id, "output_index": index, "delta": args});
                self.emit("response.function_call_arguments.delta", data, &mut out);
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(finish.to_string());
        }
        out
    }

    fn response(&mut self) -> Option<Value> {
        Some(self.final_response())
    }

    fn finish(&mut self, failure: Option<(&str, &str)>, _request_id: &str) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.start(&mut out);
        if let Some((code, message)) = failure {
            let output = self.items.iter().map(Item::done).collect();
            let error = json!({"code": "server_error", "message": format!("{code}: {message}")});
            let response = self.exchange.response(&self.model, "failed", output, self.usage.as_ref().map(usage), Some(("error", error)));
            self.emit("response.failed", json!({"response": response}), &mut out);
            return out;
        }
        self.close(&mut out);
        let response = self.final_response();
        let kind = if response["status"] == "incomplete" { "response.incomplete" } else { "response.completed" };
        self.emit(kind, json!({"response": response}), &mut out);
        out
    }
}

/// Relays OpenAI's own Responses events, under our response id.
pub struct Native {
    exchange: Arc<Exchange>,
    /// The last event's sequence number (for an event of ours after it).
    sequence: i64,
    last: Option<Value>,
}

impl Native {
    pub fn new(exchange: Arc<Exchange>) -> Self {
        Native { exchange, sequence: -1, last: None }
    }
}

impl StreamWriter for Native {
    fn chunk(&mut self, event: &Value, frame_as_sent: Bytes) -> Vec<Bytes> {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("message");
        if let Some(n) = event.get("sequence_number").and_then(Value::as_i64) {
            self.sequence = n;
        }
        match event.get("response") {
            // The response's lifecycle events carry the whole response: under our id.
            Some(response) if response.is_object() => {
                let response = self.exchange.adopt(response.clone());
                if matches!(kind, "response.completed" | "response.incomplete") {
                    self.last = Some(response.clone());
                }
                let mut event = event.clone();
                event["response"] = response;
                vec![frame(kind, &event)]
            }
            _ => {
                let mut framed = format!("event: {kind}\n").into_bytes();
                framed.extend_from_slice(&frame_as_sent);
                vec![Bytes::from(framed)]
            }
        }
    }

    fn response(&mut self) -> Option<Value> {
        self.last.clone()
    }

    fn finish(&mut self, failure: Option<(&str, &str)>, _request_id: &str) -> Vec<Bytes> {
        let Some((code, message)) = failure else { return vec![] };
        let error = json!({"code": "server_error", "message": format!("{code}: {message}")});
        let response = self.exchange.response(&Value::Null, "failed", vec![], None, Some(("error", error)));
        vec![frame("response.failed", &json!({"type": "response.failed", "sequence_number": self.sequence + 1, "response": response}))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doors::responses::parse;

    fn exchange() -> Arc<Exchange> {
        let parsed = parse(br#"{"model": "m", "input": "hi", "stream": true}"#).unwrap();
        Arc::new(parsed.exchange("resp_1".into(), 1, vec![]).unwrap().0)
    }

    fn events(frames: Vec<Bytes>) -> Vec<Value> {
        frames
            .iter()
            .map(|f| {
                let text = std::str::from_utf8(f).unwrap();
                let (head, data) = text.split_once("\ndata: ").unwrap();
                let value: Value = serde_json::from_str(data.trim()).unwrap();
                assert_eq!(head.strip_prefix("event: ").unwrap(), value["type"], "the event's name is its type");
                value
            })
            .collect()
    }

    #[test]
    fn a_canonical_stream_becomes_typed_events_in_sequence() {
        let mut writer = Translated::new(exchange());
        let mut frames = Vec::new();
        for chunk in [
            json!({"model": "m", "choices": [{"delta": {"content": "Hel"}}]}),
            json!({"model": "m", "choices": [{"delta": {"content": "lo"}}]}),
            json!({"model": "m", "choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "{\"a\""}}]}}]}),
            json!({"model": "m", "choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}, "finish_reason": "tool_calls"}]}),
            json!({"model": "m", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}),
        ] {
            frames.extend(writer.chunk(&chunk, Bytes::new()));
        }
        let stored = writer.response().unwrap();
        frames.extend(writer.finish(None, "r"));
        let events = events(frames);
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert!(events.iter().enumerate().all(|(i, e)| e["sequence_number"] == i as i64));
        let done = &events.last().unwrap()["response"];
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["output"][1]["arguments"], "{\"a\":1}");
        assert_eq!(done["usage"]["total_tokens"], 7);
        assert_eq!(done["id"], "resp_1");
        assert_eq!(&stored, done);
    }

    #[test]
    fn openais_events_go_on_under_our_id() {
        let mut writer = Native::new(exchange());
        let completed = json!({"type": "response.completed", "sequence_number": 5, "response": {"id": "resp_upstream", "status": "completed", "store": false}});
        let out = events(writer.chunk(&completed, Bytes::new()));
        assert_eq!(out[0]["response"]["id"], "resp_1");
        assert_eq!(out[0]["response"]["store"], true);
        let delta = json!({"type": "response.output_text.delta", "sequence_number": 3, "delta": "x"});
        let raw = Bytes::from(format!("data: {delta}\n\n"));
        assert_eq!(writer.chunk(&delta, raw.clone())[0], Bytes::from(format!("event: response.output_text.delta\n{}", std::str::from_utf8(&raw).unwrap())));
        assert_eq!(writer.response().unwrap()["id"], "resp_1");
        let failed = events(writer.finish(Some(("upstream_error", "broke")), "r"));
        assert_eq!((failed[0]["type"].as_str(), failed[0]["sequence_number"].as_i64()), (Some("response.failed"), Some(4)));
    }
}
