//! A stream's reservation lives as long as the stream, and a client that leaves is charged what
//! the provider bills, on both backends.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tollgate_tests::{TestApp, backend_tests};

fn ask(prompt: &str, stream: bool) -> Value {
    json!({"model": "mock-1", "max_tokens": 50, "stream": stream, "messages": [{"role": "user", "content": prompt}]})
}

/// The usage records the admin sees, newest first.
async fn records(app: &TestApp, admin: &str) -> Vec<Value> {
    app.get("/api/usage?limit=100", Some(admin)).await.expect(200).body["records"].as_array().unwrap().clone()
}

backend_tests! {
    async fn a_stream_past_its_lease_margin_keeps_its_reservation(backend) {
        // Leases of 1 s upstream timeout + 1 s margin: without renewal, the stream's lease would
        // lapse after 3 s and the next request would release its reservation and overspend.
        let app = TestApp::start_with(
            backend,
            &tollgate::Group::ALL,
            |c| {
                c.upstream_timeout = Duration::from_secs(1);
                c.lease_margin = Duration::from_secs(1);
            },
            None,
        )
        .await;
        app.pin_mid_period();
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1000.0, 1000.0, None).await;
        // Each request's worst case is about $0.10 (its prompt and 50 tokens out at $1000 per
        // million); the budget holds one worst case and a settled request, not two worst cases.
        let (_, key) = app.api_key(&admin, json!({"budget_limit_cents": 15})).await;
        let long = app.client.post(format!("{}/v1/chat/completions", app.base)).bearer_auth(&key).json(&ask("hi [mock:words=30][mock:delay_ms=500]", true));
        let streaming = tokio::spawn(async move { long.send().await.unwrap().text().await.unwrap() });
        // Past the lease's 3 s, the stream still runs (30 chunks, 500 ms apart: 15 s, so a slow
        // machine has 11 s of slack before the stream would end on its own).
        tokio::time::sleep(Duration::from_millis(4000)).await;
        for _ in 0..3 {
            app.chat(&key, ask("hi", false)).await.expect_error(402, "budget_exceeded");
        }
        let text = streaming.await.unwrap();
        assert!(text.trim_end().ends_with("data: [DONE]") && !text.contains("\"error\""), "the stream ran to its end: {text}");
        assert_eq!(text.matches("\"content\":").count(), 30 + 1, "every word was delivered: {text}");
        // Settled at its real cost, the budget has room for the next one, and spends exactly
        // what its records say.
        let served = app.chat(&key, ask("hi", false)).await.expect(200);
        let remaining: f64 = served.headers["x-budget-remaining-usd"].to_str().unwrap().parse().unwrap();
        let spent: f64 = records(&app, &admin).await.iter().map(|r| r["cost"].as_f64().unwrap()).sum();
        assert!((0.15 - remaining - spent).abs() < 1e-6, "remaining {remaining} + records {spent} = the budget");
    }

    async fn a_client_that_leaves_is_charged_the_reasoning_it_never_saw(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1.0, 1.0, None).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        // A reasoning model: 500 reasoning tokens, reported only in the final usage.
        let body = json!({"model": "mock-1", "max_tokens": 1000, "stream": true,
                          "messages": [{"role": "user", "content": "think [mock:words=10][mock:delay_ms=100][mock:reasoning=500]"}]});
        let response = app.client.post(format!("{}/v1/chat/completions", app.base)).bearer_auth(&key).json(&body).send().await.unwrap();
        let mut chunks = response.bytes_stream();
        let mut seen = 0;
        while seen < 2 {
            let bytes = chunks.next().await.unwrap().unwrap();
            seen += String::from_utf8_lossy(&bytes).matches("data: ").count();
        }
        drop(chunks);
        // The gateway reads on for the usage, then records what the provider billed.
        let mut record = None;
        for _ in 0..200 {
            record = records(&app, &admin).await.into_iter().next();
            if record.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let record = record.expect("the cancelled stream's record");
        assert_eq!(record["cancelled"], true, "{record}");
        assert_eq!(record["outputTokens"], 10 + 500, "the words and the hidden reasoning: {record}");
        assert_eq!(record["reasoningTokens"], 500, "{record}");
    }

    async fn a_stream_whose_upstream_falls_silent_ends_as_timed_out(backend) {
        let app = TestApp::start_with(backend, &tollgate::Group::ALL, |c| c.stream_idle_timeout = Duration::from_secs(1), None).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1.0, 1.0, None).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        // The upstream's stream begins, then says nothing for 30 s before each word.
        let resp = app.client.post(format!("{}/v1/chat/completions", app.base)).bearer_auth(&key).json(&ask("hi [mock:words=3][mock:delay_ms=30000]", true));
        let resp = resp.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        // Not a speed bound: without the idle timeout the stream would run 90 s; 20 s tells the
        // two apart on any machine.
        let text = tokio::time::timeout(Duration::from_secs(20), resp.text()).await.expect("the silent stream was ended").unwrap();
        assert!(text.contains("\"error\"") && text.contains("did not answer in time"), "an error event ends it: {text}");
        let record = records(&app, &admin).await.into_iter().next().expect("a record");
        assert_eq!(record["outcome"], "timeout", "{record}");
        assert!(app.slots_all_free().await, "its slot is back");
    }

    async fn a_client_that_stops_reading_is_taken_as_gone_after_an_upstream_timeout(backend) {
        let app = TestApp::start_with(backend, &tollgate::Group::ALL, |c| c.upstream_timeout = Duration::from_secs(1), None).await;
        let (admin, _) = app.admin().await;
        let model = json!({"id": "mock-1", "provider": "mock", "inputPrice": 1.0, "outputPrice": 1.0, "contextWindow": 1_000_000});
        app.post("/api/models", Some(&admin), model).await.expect(201);
        let (_, key) = app.api_key(&admin, json!({})).await;
        // A client with a 4 KiB receive buffer that sends its request and never reads: the
        // answer (40,000 chunks, megabytes) fills the sockets' buffers and then the relay's.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut client = socket.connect(app.addr).await.unwrap();
        let body = json!({"model": "mock-1", "max_tokens": 100_000, "stream": true, "messages": [{"role": "user", "content": "hi [mock:words=40000]"}]}).to_string();
        let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        tokio::io::AsyncWriteExt::write_all(&mut client, request.as_bytes()).await.unwrap();
        // Its connection stays open, unread; the request ends anyway, recorded as cancelled,
        // and gives its slot back (without the bound on the wait, it never would).
        let gate = &app.state.gateway.admission;
        let mut ended = None;
        for _ in 0..600 {
            if gate.free() == Some(app.state.config.max_in_flight)
                && let Some(record) = records(&app, &admin).await.into_iter().find(|r| r["endpoint"] != "models")
            {
                ended = Some(record);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let record = ended.expect("the request ended while its client held the connection open");
        assert_eq!(record["cancelled"], true, "{record}");
        drop(client);
    }
}
