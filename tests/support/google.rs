//! A local Google Gemini API and Vertex AI, as Google's references shape them:
//! `POST .../models/{model}:generateContent` and `:streamGenerateContent?alt=sse` under AI
//! Studio's `/v1beta` (key in `x-goog-api-key`) and under a Vertex publisher's path (an OAuth
//! bearer token); an OAuth token endpoint taking the JWT-bearer grant, checking the RS256
//! assertion with the service account's public key, its audience and scope; answers with text,
//! a `functionCall` when tools are offered and the last turn holds no `functionResponse`, JSON
//! when asked for `application/json`; `usageMetadata` with cached and thought tokens; streams of
//! whole `GenerateContentResponse`s; errors as `{"error": {"code", "message", "status"}}`.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const API_KEY: &str = "AIzaFakeGeminiKey0123456789";
pub const ANSWER: [&str; 3] = ["Gemini", "says", "hi."];
/// promptTokenCount (with the cache's), cachedContentTokenCount, thoughtsTokenCount.
pub const USAGE: (i64, i64, i64) = (30, 10, 5);
pub const PROJECT: &str = "acme-ai";
pub const LOCATION: &str = "europe-west4";

/// A service account's test key (generated for these tests, used nowhere else).
pub const PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCymjf2NQVdNHNN\nIU7eSavG5qtGEXDKhG3J5Tp/qycN24lA1jaNvn0misrSmBUHxdUtLo+MvhoezWp2\nk6zh0XsULawWhYHOmCi9lj/5U/1QG1lxqCFXVhk8V0OTr3zKRI+QbGduGvkGHvnT\nzth9Q4Yb3VR47qd4RwGMcbRFzL4exLeR4mDFZqpeweNXGKrelBii1ktTWa4ZmJSv\nCQ8GacbNNnY9QY5WUVXYrPMac/q0bdwK7zaki7ovtjo1KlQCn5uQ90A06R4DS5Il\ne+JL61LYAkUXp9OJSDAjibCAr4S4kbE1u/wtafDbjkQ37RFGX9RCpRi+dtrapY28\nlYjZFj55AgMBAAECggEAA4+pJX7dpkPdN7C+FJcV9n+TczB2VgdpdADe13xXaUKT\nHEiZKl7dunbCgAv5wV+rtjyrLpR8y1fvs0ETDaaiZF7bw1AyrCajC1KzYFqRHreI\n40gFsCreknIv/gIeBB91WF0c+9hMVleoRhWmAetmgWg6nrWtf6u0x3Ld9BVWxiC/\n91nh9Hvsu7VYE2ZBkCwTMGeG4mxPsfFr2dYiwbXBfX0m2CTUpt+jXdN4fv3+Vvsy\nqSnwBovK9F8piYJTKtL/oLwVlgYyxPXbEksaLAKdLQ6ZYn7ueu/0q8oruwKoKPBe\n3qc0WspGnH5tIQ86IvHk62HBfJWy0mN6lRSp9d4PTQKBgQDkv4uR5qFp6iCDrioa\nqWeNiQAxfThxHN3tGAoyD4WpTk6pFQtIBeT8o9NRNMQ1l8wTONIcof9uc/qjaury\n9KSV+fJGBAGj2xDIO+DU0OmypUywmU8rylMNw7bbBEOkzRWmuA7coqD2UzlVOAzv\ntni7VlPWXVaXTjouSPtq4+mAxQKBgQDH4U54mYqVmX6X++5TZJrqHot0Aw1IGqGF\nZxlj4DZny0ftCCWppbt/EoAjZfVAY/u59YEfmLJNK58BLq0mWgIuiZt31+hAlCY2\nXb5ro+UJOBd+08wY9MuUvDli/hWLdzVbP5vItTjcNlZ6C+clM6AClbFT8beelCXU\n+8HguyI6JQKBgQC2gRyaC6g9GM9YQFzXaNF12xiMY5vko2NtBwEbb8b0jcW0oVWe\n4RURfKPc5nylRbdMnskEjzt8pIwUVfmeXhHylrj1o7yrPtzk5OE86nGKVtgZDjhc\nd9BL6xq5I23Uzsu3eKJi5l4GKeBUXaP0nWE2FmpNXar4jTFePFxbq/thAQKBgCTM\nxIfLrQoyAm61AYH1CdiE2yP20+EslgRboP8Ubq/Za1qmn1iGnOieXV0nDmpWfigU\nnTtV/63ZlCLBlztyYuhyiV8dLzOEkyx7Qe3LdQWngBvnnrIRj9HIfcBOC2VsAzTT\nlzjytI9GqdE6k8nzoUgYi1drL2VQ3U5DM8TOb1TJAoGAIPeufOqCECTdrxxeViif\njGg+SBcxCmw7/mZF3lkIg+f5rMGQTXfk/FnDwpIYdw3HxJwbsImJ2hujd7J3RmHo\naxZxJ5bn9jBRNjsA2QRD1IXvTFwVe5IJieArAUw9TKBFJplF+1L6Bcvf0bOdNM0X\n8MkOy+rK7O9VgNwYQb2C1I4=\n-----END PRIVATE KEY-----";
/// Another account's key, which the token endpoint does not trust.
pub const WRONG_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDIq7lwWZ7+7UAT\nkJ8sF5cSDTj7Wh8BSkF2F5RA2kohKEnakGh3J0GQEl2ogSzoohiFIIP23Ph+mP8r\nqMntC+fn0zSirSLiTou5kZHQ2vndY9U7Rbt//IjLUJlDf7ESAn8Pd7vuKErbyJyt\nsZIvxYoi3Fwu9rEJsHigqjdigt55Bg0fojeB33p4PVs/POcG6M7cfJM6EwyEnjkR\n636ilR6unq5ghjCNl9j5xjxwEVVGieNfbHGrbKR8k4Wc9XtWeaLJvff6+SeKQNBv\nmVn04WNVyUzZIjOu82qJryYAkbDZcqbZIPpFWit+acMDPCLXixhyjDi3cn4bKswG\n4MvuQQPzAgMBAAECggEAN/HgNhlWQV4lcg7swV8mR+sVysV6RWLNUz4Jn/b7mbjg\ntiVyal2wYpksMVEqEwU17s982vMJ+ElxQlvBR+v80F3Km9vHEO6y955E18RkyrsN\ndIPhXTIrdPtYb0AHPq0hfU91PlVPYWzReX868USSWVuz+4fdHYVsa+ZooHc5zOVL\nZZQIGE1A1jABmcPSHVKazWFfR1lJvLpqNc7qSONkFPUKBTycMqfWyC2LI6UFMacs\nPaGWYyNx/vTbpI9N7K9qmMInV/Bhg5izrMa4xpXt5WR8Eo/kFdVzcUXEQ8jeeKF5\nnrRz8lnWR4jK0jg7wRI68lD7PJRG6eUv3sGs4a8POQKBgQDwO3xWlAADK5D0QwiJ\nbj19PVNhmFbj4XRb2TPJEBYOgNyfCaLGwL6Huoh2WIOGJxpwdyaUGnAPsApxulDE\nGmnbfZQd8ooCeleFDtOdqh2Mmx/OOKaHasGiIMNzvOASFCbE8oDYFM3SjPvYV2Pu\nVFqtn5kQtddAKLbER5I+fS0sPQKBgQDV14D4cw8okGDM6AlTHSnsR0QHvfIdbZim\n8+gPlVvzjIAmtNM5YzQP8LQby9zggFigQCPYikcQNGOaZtctdj7k/CYKCMY374c5\nyYPf8km1szd+DUDNb1d4JKQMll9bPkxs4+Rt7F9VmmsYbpKOMcF9YZ0XXfYnfA56\n1jGReNAD7wKBgQC/HfP7RN8FpqE5UiL2grd0bVdqazGlNXXGpHOoX53MiAP8mkPf\nbvOlM2bhD+YC0hUcqA4PAUFpmZmVhK5AdOsGbU9qy8uz0PTTrEn6Qp4jgD27aCJD\n1VCa1Qnph7eTami1gl+yiEp+WR76q/uaXY2OV0wEmUXXiwxr9qyH/jnz2QKBgBDH\nJdFYhbnzCgVJt2GUCjQFq2rIFnUEolOHE5AVce97+JoQ2fnItM8DXb5Ikn3y1AFO\nxwE4aDb3RVFZ/EwO2QRyXDGxWowM+RkpnHU3t1zQQOxc8dasg7pjdZOfQMAR9UEd\n6FBPmXNH+FskYc9STBIgVIj+0E9sxl4Q7Dazue51AoGAMkkehSwQc1cwKyr7QU5v\nXmQHj9si740tSoE+qXDgf/xr42qtonLsOExVwzxqjy6vg83M9RiAonsiZV57VScf\nRXP37dS8EW/Hfv5t5elcXO49BGGYw279EYoa05PNFwl7zUSpY3RLe2UUqv+voW6E\nBhVtCkVoO6xQVnzz1uoFUmU=\n-----END PRIVATE KEY-----";
const PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAspo39jUFXTRzTSFO3kmr\nxuarRhFwyoRtyeU6f6snDduJQNY2jb59JorK0pgVB8XVLS6PjL4aHs1qdpOs4dF7\nFC2sFoWBzpgovZY/+VP9UBtZcaghV1YZPFdDk698ykSPkGxnbhr5Bh75087YfUOG\nG91UeO6neEcBjHG0Rcy+HsS3keJgxWaqXsHjVxiq3pQYotZLU1muGZiUrwkPBmnG\nzTZ2PUGOVlFV2KzzGnP6tG3cCu82pIu6L7Y6NSpUAp+bkPdANOkeA0uSJXviS+tS\n2AJFF6fTiUgwI4mwgK+EuJGxNbv8LWnw245EN+0RRl/UQqUYvnba2qWNvJWI2RY+\neQIDAQAB\n-----END PUBLIC KEY-----";

#[derive(Default)]
struct Shared {
    /// (model, method, body) of every generate call.
    calls: Vec<(String, String, Value)>,
    tokens_issued: usize,
}

#[derive(Clone)]
pub struct FakeGoogle {
    pub base_url: String,
    shared: Arc<Mutex<Shared>>,
}

impl FakeGoogle {
    pub async fn start() -> Self {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let app = axum::Router::new()
            .route("/v1beta/models/{call}", post(studio))
            .route("/v1beta/models", get(studio_models))
            .route("/v1/projects/{project}/locations/{location}/publishers/google/models/{call}", post(vertex))
            .route("/v1beta1/publishers/google/models", get(vertex_models))
            .route("/token", post(token))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeGoogle { base_url: format!("http://{addr}"), shared }
    }

    /// AI Studio's base URL.
    pub fn studio(&self) -> String {
        format!("{}/v1beta", self.base_url)
    }

    /// The Vertex publisher's base URL.
    pub fn vertex(&self) -> String {
        format!("{}/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google", self.base_url)
    }

    /// A service account's JSON key whose tokens come from this fake.
    pub fn service_account(&self, private_key: &str) -> String {
        json!({"type": "service_account", "project_id": PROJECT, "private_key_id": "k1", "private_key": private_key,
               "client_email": format!("gateway@{PROJECT}.iam.gserviceaccount.com"), "token_uri": format!("{}/token", self.base_url)})
        .to_string()
    }

    pub fn calls(&self) -> Vec<(String, String, Value)> {
        self.shared.lock().unwrap().calls.clone()
    }

    pub fn tokens_issued(&self) -> usize {
        self.shared.lock().unwrap().tokens_issued
    }
}

fn error(status: StatusCode, google_status: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": status.as_u16(), "message": message, "status": google_status}}))).into_response()
}

#[derive(serde::Deserialize)]
struct Assertion {
    iss: String,
    scope: String,
}

/// The JWT-bearer grant: the assertion must be signed by the account's key, for this URL.
async fn token(State(shared): State<Arc<Mutex<Shared>>>, headers: HeaderMap, form: axum::extract::Form<std::collections::HashMap<String, String>>) -> Response {
    if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "unsupported_grant_type"}))).into_response();
    }
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[format!("http://{host}/token")]);
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap();
    match jsonwebtoken::decode::<Assertion>(form.get("assertion").map(String::as_str).unwrap_or_default(), &key, &validation) {
        Ok(data) if data.claims.scope.contains("cloud-platform") && data.claims.iss.ends_with(".iam.gserviceaccount.com") => {
            let mut s = shared.lock().unwrap();
            s.tokens_issued += 1;
            axum::Json(json!({"access_token": format!("ya29.fake-{}", s.tokens_issued), "expires_in": 3599, "token_type": "Bearer"})).into_response()
        }
        Ok(_) => (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_scope"}))).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant", "error_description": format!("Invalid JWT Signature. ({e})")})))
            .into_response(),
    }
}

fn bearer_ok(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("Bearer ya29.fake-"))
}

async fn studio_models(headers: HeaderMap) -> Response {
    if headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.");
    }
    axum::Json(json!({"models": [{"name": "models/gemini-2.5-flash"}]})).into_response()
}

async fn vertex_models(headers: HeaderMap) -> Response {
    if !bearer_ok(&headers) {
        return error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "Request had invalid authentication credentials.");
    }
    axum::Json(json!({"publisherModels": [{"name": "publishers/google/models/gemini-2.5-flash"}]})).into_response()
}

async fn studio(State(shared): State<Arc<Mutex<Shared>>>, Path(call): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.");
    }
    generate(shared, &call, &body)
}

async fn vertex(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path((project, location, call)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !bearer_ok(&headers) {
        return error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "Request had invalid authentication credentials.");
    }
    if (project.as_str(), location.as_str()) != (PROJECT, LOCATION) {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "project or location not found");
    }
    generate(shared, &call, &body)
}

/// A function call when tools are offered and the last turn answers none.
fn function_call(body: &Value) -> Option<Value> {
    let declaration = body.pointer("/tools/0/functionDeclarations/0")?;
    let last = body["contents"].as_array()?.last()?;
    let answered = last["parts"].as_array().is_some_and(|parts| parts.iter().any(|p| p.get("functionResponse").is_some()));
    (!answered).then(|| json!({"functionCall": {"name": declaration["name"], "args": {"city": "Paris"}}}))
}

fn generate(shared: Arc<Mutex<Shared>>, call: &str, raw: &[u8]) -> Response {
    let Some((model, method)) = call.split_once(':') else { return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no method") };
    let Ok(body) = serde_json::from_slice::<Value>(raw) else { return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "Invalid JSON payload received.") };
    shared.lock().unwrap().calls.push((model.to_string(), method.to_string(), body.clone()));
    if !body["contents"].is_array() {
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "contents is not specified");
    }
    if model.contains("missing") {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", &format!("models/{model} is not found for API version v1beta"));
    }
    let max = body.pointer("/generationConfig/maxOutputTokens").and_then(Value::as_i64).unwrap_or(8192) as usize;
    let json_mode = body.pointer("/generationConfig/responseMimeType") == Some(&json!("application/json"));
    let words: Vec<String> = if json_mode { vec!["{\"answer\": \"hi\"}".into()] } else { ANSWER.iter().take(max).map(|w| w.to_string()).collect() };
    let finish = if !json_mode && words.len() < ANSWER.len() { "MAX_TOKENS" } else { "STOP" };
    let (prompt, cached, thoughts) = USAGE;
    let usage = json!({"promptTokenCount": prompt, "candidatesTokenCount": words.len(), "thoughtsTokenCount": thoughts,
                       "cachedContentTokenCount": cached, "totalTokenCount": prompt + words.len() as i64 + thoughts});
    let call = function_call(&body);
    if method == "generateContent" {
        let mut parts = vec![json!({"text": words.join(" ")})];
        parts.extend(call);
        return axum::Json(json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
                                 "usageMetadata": usage, "modelVersion": model, "responseId": "gem-resp-1"}))
        .into_response();
    }
    if method != "streamGenerateContent" {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "unknown method");
    }
    let mut events: Vec<Value> = words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": if i == 0 { w.clone() } else { format!(" {w}") }}]}, "index": 0}],
                              "usageMetadata": {"promptTokenCount": prompt}, "modelVersion": model})
        })
        .collect();
    let mut last =
        json!({"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": finish, "index": 0}], "usageMetadata": usage, "modelVersion": model});
    if let Some(call) = call {
        last["candidates"][0]["content"]["parts"] = json!([call]);
    }
    events.push(last);
    let frames: Vec<Result<Bytes, std::convert::Infallible>> = events.iter().map(|e| Ok(Bytes::from(format!("data: {e}\r\n\r\n")))).collect();
    Response::builder().header("content-type", "text/event-stream").body(Body::from_stream(futures::stream::iter(frames))).unwrap()
}
