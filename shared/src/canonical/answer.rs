//! What the proxy reads of an answer or stream chunk in the canonical shape (a chat or
//! completions answer): its usage, whether its first choice carried text, and how it finished.
//! An answer that goes to the client as the upstream sent it is read here through borrowed,
//! typed structs instead of being parsed into a `serde_json::Value`: everything else in it
//! (the message, ids, logprobs) is stepped over without being copied. Building the whole
//! value was ~12k instructions of a small answer, ~3% of a proxied request.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

/// The usage an answer reports, as the canonical shape names it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    pub input: Option<i64>,
    pub output: Option<i64>,
    pub cached: Option<i64>,
    /// OpenRouter's name for the tokens a request wrote to the prompt cache, and of those the
    /// ones written to Anthropic's 1-hour cache.
    pub cache_write: Option<i64>,
    pub cache_write_1h: Option<i64>,
    pub reasoning: Option<i64>,
    /// What the provider says it charged, in dollars (OpenRouter's `usage.cost`).
    pub cost: Option<f64>,
}

/// What the proxy reads of one canonical answer or chunk.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Glimpse {
    /// `usage`, when it is an object.
    pub usage: Option<Usage>,
    /// Whether the first choice carried text (a chunk's `delta.content`, a completion's `text`).
    pub text: bool,
    /// The first choice's `finish_reason`, when it is a string.
    pub finish_reason: Option<String>,
    /// Whether it is only usage (`usage_only`).
    pub usage_only: bool,
}

/// The value at `path` (object keys) under `value`. `Value::pointer` would do, but it makes a
/// string of every step of its path on each call.
pub(crate) fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

impl Glimpse {
    /// Read from a parsed value; `None` for the Responses API's shapes (an answer whose
    /// `object` is `response`, an event with a `type`), which are read as they are.
    pub fn of_value(answer: &Value) -> Option<Glimpse> {
        if answer.get("object").and_then(Value::as_str) == Some("response") || answer.get("type").and_then(Value::as_str).is_some() {
            return None;
        }
        let usage = answer.get("usage").filter(|u| u.is_object()).map(|usage| {
            let n = |path: &[&str]| at(usage, path).and_then(Value::as_i64);
            Usage {
                input: n(&["prompt_tokens"]),
                output: n(&["completion_tokens"]),
                cached: n(&["prompt_tokens_details", "cached_tokens"]),
                cache_write: n(&["prompt_tokens_details", "cache_write_tokens"]),
                cache_write_1h: n(&["prompt_tokens_details", "cache_write_1h_tokens"]),
                reasoning: n(&["completion_tokens_details", "reasoning_tokens"]),
                cost: usage.get("cost").and_then(Value::as_f64),
            }
        });
        let choice = answer.get("choices").and_then(|c| c.get(0));
        let text = choice.and_then(|c| at(c, &["delta", "content"]).or_else(|| c.get("text"))).and_then(Value::as_str);
        Some(Glimpse {
            usage,
            text: text.is_some_and(|t| !t.is_empty()),
            finish_reason: choice.and_then(|c| c.get("finish_reason")).and_then(Value::as_str).map(str::to_string),
            usage_only: usage_only(answer),
        })
    }

    /// Read straight from an answer's bytes, as `of_value` reads the parsed answer. `None` when
    /// they are not read the quick way: not JSON, a Responses API shape, or anything unusual
    /// (a field of an unexpected type, a list where an object belongs, a key given twice, an
    /// escaped `object`), which the caller then parses whole, so where this answers, it answers
    /// as `of_value` would. What it steps over it checks only for JSON's grammar: a value nested
    /// deeper than 128, a lone surrogate escape or a number past `f64` in a field the proxy
    /// does not read, which the whole parse refuses, passes here (it is JSON, and goes on to
    /// the client as it came).
    pub fn of_bytes(bytes: &[u8]) -> Option<Glimpse> {
        // UTF-8 first (`from_str` then trusts it): skipped strings are not checked otherwise.
        let text = std::str::from_utf8(bytes).ok()?;
        let Obj(wire): Obj<Wire<'_>> = serde_json::from_str(text).ok()?;
        if wire.object == Some("response") || wire.kind.is_some() {
            return None;
        }
        let usage_there = wire.usage.is_some();
        let usage = wire.usage.flatten().map(|u| {
            let Obj(u) = u;
            let prompt = u.prompt_tokens_details.map(|Obj(d)| d).unwrap_or_default();
            let completion = u.completion_tokens_details.map(|Obj(d)| d).unwrap_or_default();
            Usage {
                input: u.prompt_tokens,
                output: u.completion_tokens,
                cached: prompt.cached_tokens,
                cache_write: prompt.cache_write_tokens,
                cache_write_1h: prompt.cache_write_1h_tokens,
                reasoning: completion.reasoning_tokens,
                cost: u.cost,
            }
        });
        let usage_only = wire.choices.as_ref().is_some_and(Vec::is_empty) && usage_there;
        let first = wire.choices.and_then(|c| c.into_iter().next());
        let (text, finish_reason) = match first {
            // `delta.content` when the chunk has it (even null), else `text`.
            Some(Obj(choice)) => (choice.delta.and_then(|Obj(d)| d.content).unwrap_or(choice.text.flatten()), choice.finish_reason),
            None => (None, None),
        };
        Some(Glimpse { usage, text: text.is_some_and(|Filled(filled)| filled), finish_reason, usage_only })
    }
}

/// Whether a chunk is only usage: `choices` empty and `usage` there (the chunk that ends a
/// stream, which its client may not have asked for).
pub fn usage_only(chunk: &Value) -> bool {
    chunk.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty) && chunk.get("usage").is_some()
}

/// The JSON in a server-sent event's frame as the proxy writes it, `data: <json>\n\n`.
pub fn frame_json(frame: &[u8]) -> &[u8] {
    frame.strip_prefix(b"data: ").and_then(|f| f.strip_suffix(b"\n\n")).unwrap_or(frame)
}

/// An answer or stream chunk from upstream in the canonical shape: its JSON, or where nothing
/// needs more than the proxy reads of it, that alone.
pub enum Parsed {
    Json(Value),
    Glimpsed(Glimpse),
}

impl Parsed {
    /// An answer's or chunk's bytes read: parsed whole when `whole` (a door or the cache needs
    /// its JSON), else glimpsed where they can be; `Err` when they are not JSON.
    pub fn read(bytes: &[u8], whole: bool) -> Result<Parsed, serde_json::Error> {
        if !whole && let Some(glimpse) = Glimpse::of_bytes(bytes) {
            return Ok(Parsed::Glimpsed(glimpse));
        }
        serde_json::from_slice(bytes).map(Parsed::Json)
    }

    /// The answer's JSON (`bytes`: the answer), parsed now if it was only glimpsed. That does
    /// not happen on the proxy's paths: an answer is glimpsed only where neither the door
    /// (`Door::needs_json`) nor the response cache reads it whole. Should it, JSON the whole
    /// parse refuses (see `Glimpse::of_bytes`) reads as null.
    pub fn json(&self, bytes: &[u8]) -> Cow<'_, Value> {
        match self {
            Parsed::Json(value) => Cow::Borrowed(value),
            Parsed::Glimpsed(_) => Cow::Owned(serde_json::from_slice(bytes).unwrap_or_default()),
        }
    }
}

// The wire's shape, as far as the proxy reads it. Anything of another type than these fails
// the quick read (and the answer is parsed whole), so each field can be strict.

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(default, borrow)]
    object: Option<&'a str>,
    #[serde(default, rename = "type", borrow)]
    kind: Option<&'a str>,
    /// `Some(None)`: there, but null.
    #[serde(default, deserialize_with = "present")]
    usage: Option<Option<Obj<WireUsage>>>,
    #[serde(default)]
    choices: Option<Vec<Obj<WireChoice>>>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<i64>,
    #[serde(default)]
    completion_tokens: Option<i64>,
    #[serde(default)]
    prompt_tokens_details: Option<Obj<PromptDetails>>,
    #[serde(default)]
    completion_tokens_details: Option<Obj<CompletionDetails>>,
    #[serde(default)]
    cost: Option<f64>,
}

#[derive(Default, Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<i64>,
    #[serde(default)]
    cache_write_tokens: Option<i64>,
    #[serde(default)]
    cache_write_1h_tokens: Option<i64>,
}

#[derive(Default, Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<i64>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    delta: Option<Obj<WireDelta>>,
    #[serde(default, deserialize_with = "present")]
    text: Option<Option<Filled>>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(default, deserialize_with = "present")]
    content: Option<Option<Filled>>,
}

/// An object, and only an object: serde reads a struct from a JSON list too (by position),
/// where the parsed read finds no field at all.
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Map<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Map<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        deserializer.deserialize_map(Map(std::marker::PhantomData))
    }
}

/// A field that is there, null or not: `Some(None)` for null, `None` (the default) for absent.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// Whether a string is non-empty, read without copying it (escaped or not); anything but a
/// string fails.
struct Filled(bool);

impl<'de> Deserialize<'de> for Filled {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = Filled;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, s: &str) -> Result<Filled, E> {
                Ok(Filled(!s.is_empty()))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The quick read agrees with the parsed one wherever it answers, and answers for what
    /// upstreams send.
    #[test]
    fn the_quick_read_is_the_parsed_read() {
        let usage = json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, "cost": 0.0015,
            "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 3, "cache_write_1h_tokens": 1, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 2}});
        let quick = [
            json!({"id": "c", "object": "chat.completion", "model": "m", "usage": usage,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "a \"quoted\"\nanswer", "refusal": null}, "logprobs": null, "finish_reason": "stop"}]}),
            json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi\n"}, "finish_reason": null}]}),
            json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}]}),
            json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": null}, "text": "x"}]}),
            json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "text": "x"}]}),
            json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": null, "text": "x"}]}),
            json!({"object": "chat.completion.chunk", "choices": [], "usage": usage}),
            json!({"object": "chat.completion.chunk", "choices": [], "usage": null}),
            json!({"choices": [{"index": 0, "text": "done", "finish_reason": "length"}, {"index": 1, "text": ""}], "usage": {"prompt_tokens": 1}}),
            json!({"choices": null, "usage": {"prompt_tokens": null, "prompt_tokens_details": null, "cost": 3}}),
            json!({"data": [{"embedding": [0.1, -2e-3]}], "usage": {"prompt_tokens": 8, "total_tokens": 8}}),
            json!({}),
        ];
        for answer in &quick {
            let bytes = serde_json::to_vec(answer).unwrap();
            let glimpse = Glimpse::of_bytes(&bytes).unwrap_or_else(|| panic!("not read quickly: {answer}"));
            assert_eq!(Some(glimpse), Glimpse::of_value(answer), "{answer}");
        }
        // What the quick read leaves to the parsed one: the parse then decides.
        let slow = [
            r#"{"object": "response", "usage": {"input_tokens": 1}}"#,
            r#"{"type": "response.output_text.delta", "delta": "x"}"#,
            r#"{"usage": {"prompt_tokens": 1.5}, "choices": []}"#,
            r#"{"usage": {"prompt_tokens": 18446744073709551615}}"#,
            r#"{"usage": "none", "choices": {"0": {"text": "x"}}}"#,
            r#"{"choices": [{"delta": {"content": 7}, "text": "x"}]}"#,
            r#"{"choices": [{"text": "x"}, 3]}"#,
            r#"{"choices": [{"finish_reason": 1}]}"#,
            r#"{"usage": {"prompt_tokens": 1}, "usage": {"prompt_tokens": 2}}"#,
            r#"{"object": "chat.completion\u0020", "choices": []}"#,
            r#"[1, 2]"#,
            r#"[null, null, {}, []]"#,
            r#"{"usage": [5, 7]}"#,
            r#"{"choices": [[null, "x", "stop"]]}"#,
            r#"{"choices": [{"delta": ["x"]}]}"#,
            r#"{"usage": {"prompt_tokens_details": [4]}}"#,
        ];
        for answer in slow {
            assert_eq!(Glimpse::of_bytes(answer.as_bytes()), None, "{answer}");
            let parsed = Parsed::read(answer.as_bytes(), false).unwrap();
            assert!(matches!(parsed, Parsed::Json(_)), "{answer}");
        }
        // A stream chunk's JSON, from the frame it goes to the client in.
        let chunk = json!({"choices": [], "usage": {"prompt_tokens": 3}});
        let frame = ["data: ", &chunk.to_string(), "\n\n"].concat();
        assert_eq!(Parsed::read(frame_json(frame.as_bytes()), false).unwrap().json(frame_json(frame.as_bytes())).into_owned(), chunk);
        assert!(Glimpse::of_bytes(frame_json(frame.as_bytes())).unwrap().usage_only && usage_only(&chunk));
        assert!(Parsed::read(b"{\"choices\": [", false).is_err(), "not JSON");
        assert!(Parsed::read(b"{\"id\": \"\xff\"}", false).is_err(), "not UTF-8");
        // JSON the whole parse refuses for its own limits, in a field the proxy does not read,
        // is read quickly (and passed on as it came).
        let lone_surrogate = br#"{"id": "\ud800", "choices": []}"#;
        assert!(serde_json::from_slice::<Value>(lone_surrogate).is_err());
        assert_eq!(Glimpse::of_bytes(lone_surrogate), Some(Glimpse::default()));
        assert!(Parsed::read(b"{\"id\": 1} trailing", false).is_err(), "not JSON");
    }
}
