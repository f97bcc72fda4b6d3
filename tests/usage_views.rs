//! The self-service seed's usage views, read from rollups: each equals the sums of the records
//! it covers, over randomized traffic (models, providers, pricing sources, outcomes, streamed
//! or not, several keys, concurrent, two days), on both backends.

use std::collections::BTreeMap;

use futures::future::join_all;
use serde_json::{Value, json};
use tollgate::Group;
use tollgate::money::micros_to_dollars;
use tollgate_tests::services::{FakeServices, OPENROUTER_TOKEN};
use tollgate_tests::{TestApp, backend_tests};

/// A small deterministic generator: the same traffic every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// Every record of the caller, through the logs' cursor pages.
async fn records(app: &TestApp, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/v1/me/usage/logs?limit=100&cursor={c}"),
            None => "/admin/v1/me/usage/logs?limit=100".to_string(),
        };
        let page = app.get(&path, Some(token)).await.expect(200).body;
        out.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["pagination"]["next_cursor"].as_str() {
            Some(c) if page["pagination"]["has_more"] == true => cursor = Some(c.to_string()),
            _ => return out,
        }
    }
}

#[derive(Debug, Default, PartialEq)]
struct Sums {
    request_count: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost_micros: i64,
}

/// The records' sums, grouped by `key` (records for which it is `None` are left out).
fn sums(records: &[Value], key: impl Fn(&Value) -> Option<String>) -> BTreeMap<String, Sums> {
    let mut out: BTreeMap<String, Sums> = BTreeMap::new();
    for r in records {
        let Some(k) = key(r) else { continue };
        let s = out.entry(k).or_default();
        s.request_count += 1;
        s.input_tokens += r["input_tokens"].as_i64().unwrap();
        s.output_tokens += r["output_tokens"].as_i64().unwrap();
        s.cost_micros += r["cost_micros"].as_i64().unwrap();
    }
    out
}

/// A view's rows, grouped by the same key.
fn rows(view: &Value, key: impl Fn(&Value) -> String) -> BTreeMap<String, Sums> {
    let mut out = BTreeMap::new();
    for row in view.as_array().unwrap() {
        for zero in ["image_count", "audio_seconds", "character_count"] {
            assert_eq!(row[zero], 0, "{row}");
        }
        let (input, output) = (row["input_tokens"].as_i64().unwrap(), row["output_tokens"].as_i64().unwrap());
        assert_eq!(row["total_tokens"].as_i64().unwrap(), input + output);
        let cost = row["total_cost"].as_f64().unwrap();
        // Dollars as the records' micro-dollars make them.
        let cost_micros = (cost * 1e6).round() as i64;
        assert_eq!(micros_to_dollars(cost_micros), cost);
        let previous =
            out.insert(key(row), Sums { request_count: row["request_count"].as_i64().unwrap(), input_tokens: input, output_tokens: output, cost_micros });
        assert!(previous.is_none(), "one row per group: {view}");
    }
    out
}

fn day(r: &Value) -> String {
    r["recorded_at"].as_str().unwrap()[..10].to_string()
}

backend_tests! {
    async fn who_sees_which_records_costs_the_same_reads_however_many_projects(backend) {
        use tollgate_tests::counting::{CountingStore, Op};
        let (app, store) = CountingStore::app(backend).await;
        let (admin, _) = app.admin().await;
        let (_, operator) = app.user(&admin, "op@example.com", "operator").await;
        let mut gets = Vec::new();
        for batch in 0..2 {
            for i in 0..5 {
                app.post("/api/projects", Some(&admin), json!({"name": format!("P{batch}{i}"), "slug": format!("p{batch}{i}")})).await.expect(201);
            }
            store.take();
            app.get("/api/usage", Some(&operator)).await.expect(200);
            gets.push(store.take().iter().filter(|op| matches!(op, Op::Get(_))).count());
        }
        assert_eq!(gets[0], gets[1], "no read per project to learn the caller's role on it: {gets:?}");
    }

    async fn every_view_equals_the_sums_of_the_records_it_covers(backend) {
        let fake = FakeServices::start().await;
        let app = TestApp::start(backend).await;
        let _ = Group::ALL;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-a", 1.0, 2.0, None).await;
        app.model(&admin, "mock-b", 100.0, 200.0, None).await;
        // OpenRouter reports its own cost: a second provider and pricing source.
        let routed = json!({"id": "or-m", "provider": "openrouter", "baseUrl": format!("{}/api/v1", fake.base), "apiKey": OPENROUTER_TOKEN,
            "inputPrice": 1.0, "outputPrice": 1.0, "contextWindow": 4096});
        app.post("/api/models", Some(&admin), routed).await.expect(201);
        let mut keys = Vec::new();
        for settings in [json!({}), json!({"rate_limit_rpm": 1000}), json!({"budget_limit_cents": 1})] {
            keys.push(app.api_key(&admin, settings).await.1);
        }
        let mut rng = Lcg(17);
        let start: chrono::DateTime<chrono::Utc> = "2031-01-10T10:00:00Z".parse().unwrap();
        for day_index in 0..2 {
            app.clock.set(start + chrono::Duration::days(day_index));
            for _batch in 0..5 {
                let requests: Vec<_> = (0..8)
                    .map(|_| {
                        let model = ["mock-a", "mock-b", "or-m"][rng.below(3) as usize];
                        let mut text = format!("hello [mock:words={}]", 1 + rng.below(40));
                        if rng.below(6) == 0 {
                            text.push_str(" [mock:status=503]");
                        }
                        let body = json!({"model": model, "stream": rng.below(2) == 0, "max_tokens": 1 + rng.below(60),
                            "messages": [{"role": "user", "content": text}]});
                        (keys[rng.below(3) as usize].clone(), body)
                    })
                    .collect();
                let app = &app;
                join_all(requests.into_iter().map(|(key, body)| async move { app.chat(&key, body).await })).await;
            }
        }
        // The session from before the clock moved to 2031 has expired there.
        let admin = app.login(tollgate_tests::ADMIN_EMAIL, tollgate_tests::ADMIN_PASSWORD).await;
        // The records wait for their rollups durably; two consumers at once add each once.
        let store = app.state.store.as_ref();
        let (a, b) = futures::join!(tollgate::usage::rollups::roll_up(store), tollgate::usage::rollups::roll_up(store));
        let records = records(&app, &admin).await;
        assert!(a.unwrap() + b.unwrap() <= records.len(), "the background consumer may have taken some");
        assert_eq!(tollgate::usage::rollups::roll_up(store).await.unwrap(), 0, "nothing left pending");
        assert!(records.len() >= 70, "{} records", records.len());
        let outcomes: std::collections::BTreeSet<&str> = records.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
        assert!(outcomes.contains("success") && outcomes.contains("error") && outcomes.contains("budget_exceeded"), "{outcomes:?}");

        let text = |r: &Value, f: &str| r[f].as_str().unwrap().to_string();
        let get = |path: String| { let app = &app; let admin = admin.clone(); async move { app.get(&path, Some(&admin)).await.expect(200).body } };
        // The record's (and the row's) group: the day, and the view's field if any.
        for (view, field) in [("by-date", None), ("by-date-model", Some("model")), ("by-date-provider", Some("provider")), ("by-date-pricing-source", Some("pricing_source"))] {
            let got = get(format!("/admin/v1/me/usage/{view}")).await;
            let group = |r: &Value, date: String| match field {
                Some(f) => format!("{date}|{}", text(r, f)),
                None => date,
            };
            assert_eq!(rows(&got, |row| group(row, text(row, "date"))), sums(&records, |r| Some(group(r, day(r)))), "{view}");
        }
        for (view, field) in [("by-model", "model"), ("by-provider", "provider"), ("by-pricing-source", "pricing_source")] {
            // The second day alone, and both.
            for (query, only) in [("?start_date=2031-01-11&end_date=2031-01-11", Some("2031-01-11")), ("", None)] {
                let got = get(format!("/admin/v1/me/usage/{view}{query}")).await;
                let want = sums(&records, |r| only.is_none_or(|d| day(r) == d).then(|| text(r, field)));
                assert_eq!(rows(&got, |row| text(row, field)), want, "{view}{query}");
            }
        }
        let summary = get("/admin/v1/me/usage?start_date=2031-01-10&end_date=2031-01-10".into()).await;
        let want = sums(&records, |r| (day(r) == "2031-01-10").then(String::new));
        let want = &want[""];
        assert_eq!((summary["request_count"].as_i64(), summary["input_tokens"].as_i64(), summary["output_tokens"].as_i64()),
            (Some(want.request_count), Some(want.input_tokens), Some(want.output_tokens)));
        assert_eq!(summary["total_cost"].as_f64(), Some(micros_to_dollars(want.cost_micros)));
        let first_day: Vec<&str> = records.iter().filter(|r| day(r) == "2031-01-10").map(|r| r["recorded_at"].as_str().unwrap()).collect();
        let parse = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        assert_eq!(parse(summary["first_request_at"].as_str().unwrap()), first_day.iter().map(|s| parse(s)).min().unwrap());
        assert_eq!(parse(summary["last_request_at"].as_str().unwrap()), first_day.iter().map(|s| parse(s)).max().unwrap());
        let all = get("/admin/v1/me/usage".into()).await;
        assert_eq!(all["request_count"].as_i64(), Some(records.len() as i64));
    }

    async fn dates_are_checked_and_an_empty_range_is_empty(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let bad = app.get("/admin/v1/me/usage/by-date?start_date=2031-13-01", Some(&admin)).await.expect_error(400, "invalid_value");
        assert!(bad.text.contains("YYYY-MM-DD"), "{}", bad.text);
        let reversed = app.get("/admin/v1/me/usage?start_date=2031-02-02&end_date=2031-02-01", Some(&admin)).await.expect_error(400, "invalid_value");
        assert!(reversed.text.contains("before start_date"), "{}", reversed.text);
        let empty = app.get("/admin/v1/me/usage", Some(&admin)).await.expect(200).body;
        assert_eq!((empty["request_count"].as_i64(), empty["first_request_at"].clone()), (Some(0), Value::Null));
        assert_eq!(app.get("/admin/v1/me/usage/by-model", Some(&admin)).await.expect(200).body, json!([]));
        // A key needs usage:read, as for the logs.
        let (_, key) = app.api_key(&admin, json!({"scopes": ["chat"]})).await;
        app.get("/admin/v1/me/usage/by-date", Some(&key)).await.expect_error(403, "insufficient_scope");
    }

    async fn a_record_written_twice_is_counted_once(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-a", 1.0, 2.0, None).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        let r = app.chat(&key, json!({"model": "mock-a", "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
        let store = app.state.store.as_ref();
        let record = tollgate::usage::by_request_id(store, r.headers["x-request-id"].to_str().unwrap()).await.unwrap().unwrap();
        // A retried write (a replay) finds the record's marker and adds nothing, and the
        // consumer adds a pending record once however often it runs.
        assert!(!tollgate::usage::write(store, &record, vec![]).await.unwrap());
        for _ in 0..3 {
            tollgate::usage::rollups::roll_up(store).await.unwrap();
        }
        let summary = app.get("/admin/v1/me/usage", Some(&admin)).await.expect(200).body;
        assert_eq!(summary["request_count"], 1);
        assert_eq!(summary["output_tokens"].as_i64(), Some(record.output_tokens));
    }

    async fn the_stream_consumer_adds_each_pending_record_once_however_often_replayed(backend) {
        // The store alone, as the rollups function on AWS sees it: no in-process consumer.
        let dir = tempfile::tempdir().unwrap();
        let store = tollgate::state::open_store(&tollgate_tests::test_config(backend, dir.path()), true).await.unwrap();
        let store = store.as_ref();
        let mut record = stored_record();
        let mut batch = Vec::new();
        for i in 0..30i64 {
            record.request_id = format!("streamed-{i}");
            record.model = ["m-1", "m-2", "m-3"][i as usize % 3].into();
            record.api_key_id = Some(uuid::Uuid::from_u128(1 + (i % 2) as u128));
            record.output_tokens = i;
            record.cost_micros = 10 * i;
            assert!(tollgate::usage::write(store, &record, vec![]).await.unwrap());
            let sk = format!("{}#{}", record.recorded_at.format("%Y-%m-%dT%H:%M:%S%.6fZ"), record.request_id);
            let tollgate::store::TxOp::PutEntity { put, .. } = tollgate::usage::rollups::pending_op(&record, &sk) else { unreachable!() };
            let item = put.item().unwrap();
            let s = |name: &str| item[name].as_str().unwrap().to_string();
            // A stream record as Lambda delivers it (the DynamoDB Streams record format).
            batch.push(json!({"eventID": format!("e{i}"), "eventName": "INSERT", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                "dynamodb": {"Keys": {"PK": {"S": s("PK")}, "SK": {"S": s("SK")}},
                    "NewImage": {"PK": {"S": s("PK")}, "SK": {"S": s("SK")}, "r": {"S": s("r")}},
                    "SequenceNumber": format!("{}", 100 + i), "SizeBytes": 120, "StreamViewType": "NEW_IMAGE"}}));
        }
        // Removals (the consumer's own deletes) and other items pass by.
        batch.push(json!({"eventName": "REMOVE", "dynamodb": {"Keys": {"PK": {"S": "ROLLUP_PENDING#0"}, "SK": {"S": "x"}}}}));
        batch.push(json!({"eventName": "INSERT", "dynamodb": {"NewImage": {"PK": {"S": "USER#1"}, "SK": {"S": "PROFILE"}, "r": {"S": "x"}}}}));
        let event = json!({"Records": batch});
        use tollgate::usage::stream::handle;
        // Delivered twice at once, then replayed whole: each record is added once.
        let (a, b) = futures::join!(handle(store, event.clone()), handle(store, event.clone()));
        assert_eq!(a.unwrap() + b.unwrap(), 30);
        assert_eq!(handle(store, event).await.unwrap(), 0, "a replay adds nothing");
        assert_eq!(handle(store, json!({"source": "aws.events", "detail-type": "Scheduled Event"})).await.unwrap(), 0, "nothing left pending");
        let rows = tollgate::usage::rollups::read(store, &record.owner, tollgate::usage::rollups::Dimension::Model, None, None).await.unwrap();
        let by_model = tollgate::usage::rollups::by_value(&rows);
        assert_eq!(by_model.values().map(|t| t.request_count).sum::<i64>(), 30);
        assert_eq!(by_model["m-1"].output_tokens, (0..30).step_by(3).sum::<i64>());
        assert_eq!(by_model["m-2"].cost_micros, 10 * (1..30).step_by(3).sum::<i64>());
        let rows = tollgate::usage::rollups::read(store, &record.owner, tollgate::usage::rollups::Dimension::Token, None, None).await.unwrap();
        let by_token = tollgate::usage::rollups::by_value(&rows);
        assert_eq!(by_token[&uuid::Uuid::from_u128(2).to_string()].request_count, 15);
        // Not a stream batch at all: a 4xx-style error, nothing added.
        assert!(handle(store, json!({"Records": "nope"})).await.is_err());
    }

    async fn records_expire_after_the_retention_while_their_rollups_stay(backend) {
        let app = TestApp::start_with(backend, &Group::ALL, |c| c.usage_retention_days = 30, None).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-a", 1.0, 2.0, None).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        let r = app.chat(&key, json!({"model": "mock-a", "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
        let store = app.state.store.as_ref();
        let mut record = tollgate::usage::by_request_id(store, r.headers["x-request-id"].to_str().unwrap()).await.unwrap().unwrap();
        assert_eq!(record.expires_at, Some(record.recorded_at + chrono::Duration::days(30)), "TOLLGATE_USAGE_RETENTION_DAYS");
        // One whose time is up (the store's TTL goes by the real clock): gone from the logs,
        // still in the views.
        record.request_id = "expired-one".into();
        record.recorded_at -= chrono::Duration::days(31);
        record.expires_at = Some(chrono::Utc::now() - chrono::Duration::seconds(1));
        assert!(tollgate::usage::write(store, &record, vec![]).await.unwrap());
        tollgate::usage::rollups::roll_up(store).await.unwrap();
        let logs = app.get("/admin/v1/me/usage/logs?limit=100", Some(&admin)).await.expect(200).body;
        assert_eq!(logs["data"].as_array().unwrap().len(), 1, "{logs}");
        assert_eq!(app.get("/admin/v1/me/usage", Some(&admin)).await.expect(200).body["request_count"], 2);
    }

    async fn the_logs_export_streams_every_record_as_jsonl_or_csv(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-a", 1.0, 2.0, None).await;
        let (_, key) = app.api_key(&admin, json!({})).await;
        // A caller-controlled text a spreadsheet would run as a formula.
        let served = app
            .client
            .post(format!("{}/v1/chat/completions", app.base))
            .bearer_auth(&key)
            .header("Referer", "=HYPERLINK(\"http://evil.example\")")
            .json(&json!({"model": "mock-a", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(served.status(), 200);
        let store = app.state.store.as_ref();
        let template = tollgate::usage::by_request_id(store, served.headers()["x-request-id"].to_str().unwrap()).await.unwrap().unwrap();
        // More records than one page of the export (500), written as the proxy writes them; on
        // moto, whose transactions slow down as its table grows, fewer (the logs' cursors that
        // the export pages with are tested on both backends by the logs' own tests).
        let n: i64 = if backend == tollgate_tests::Backend::Embedded { 620 } else { 40 };
        let start = template.recorded_at;
        for i in 0..n {
            let mut r = template.clone();
            r.id = uuid::Uuid::new_v4();
            r.request_id = format!("export-{i}");
            r.model = if i % 2 == 0 { "mock-a".into() } else { "mock-b".into() };
            r.recorded_at = start - chrono::Duration::seconds(i + 1);
            assert!(tollgate::usage::write(store, &r, vec![]).await.unwrap());
        }
        let get = |query: &str| {
            let url = format!("{}/admin/v1/me/usage/logs/export{query}", app.base);
            let request = app.client.get(url).bearer_auth(&admin);
            async move { request.send().await.unwrap() }
        };
        let jsonl = get("").await;
        assert_eq!(jsonl.status(), 200);
        assert_eq!(jsonl.headers()["content-type"], "application/x-ndjson");
        assert!(jsonl.headers()["content-disposition"].to_str().unwrap().starts_with("attachment; filename=\"usage-logs-"));
        let text = jsonl.text().await.unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len() as i64, n + 1);
        assert_eq!(lines[0]["request_id"], template.request_id, "newest first");
        let times: Vec<&str> = lines.iter().map(|l| l["recorded_at"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "in order across pages");

        let csv = get("?format=csv&model=mock-b").await;
        assert_eq!(csv.status(), 200);
        assert!(csv.headers()["content-disposition"].to_str().unwrap().ends_with(".csv\""));
        let text = csv.text().await.unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header = reader.headers().unwrap().clone();
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len() as i64, n / 2, "the filter applies");
        let column = |name: &str| header.iter().position(|h| h == name).unwrap();
        assert!(rows.iter().all(|r| &r[column("model")] == "mock-b"));
        let all = get("?format=csv").await.text().await.unwrap();
        let mut reader = csv::Reader::from_reader(all.as_bytes());
        let first = reader.records().next().unwrap().unwrap();
        assert_eq!(&first[column("http_referer")], "'=HYPERLINK(\"http://evil.example\")", "neutralised, not a formula");
        assert_eq!(&first[column("input_tokens")], template.input_tokens.to_string().as_str());

        let bad = get("?format=xlsx").await;
        assert_eq!(bad.status(), 400);
        // Hundreds pending at once: the consumer takes them in batches that fit a transaction.
        tollgate::usage::rollups::roll_up(store).await.unwrap();
        let summary = app.get("/admin/v1/me/usage", Some(&admin)).await.expect(200).body;
        assert_eq!(summary["request_count"].as_i64(), Some(n + 1));
    }
}

/// A usage record as the proxy writes one, for tests that write records directly.
fn stored_record() -> tollgate::usage::UsageRecord {
    serde_json::from_value(json!({
        "id": uuid::Uuid::new_v4(), "request_id": "r", "owner": format!("user#{}", uuid::Uuid::new_v4()), "api_key_id": null,
        "user_id": null, "org_id": null, "project_id": null, "endpoint": "/v1/chat/completions", "model": "m", "provider": "mock",
        "provider_source": "catalog", "input_tokens": 3, "output_tokens": 5, "cached_tokens": 0, "reasoning_tokens": 0, "cost_micros": 7,
        "input_price_micros": 1, "output_price_micros": 2, "pricing_source": "catalog", "latency_ms": 1, "ttft_ms": null, "status_code": 200,
        "outcome": "success", "streamed": false, "cancelled": false, "finish_reason": "stop", "http_referer": null, "error": null,
        "routing": [], "recorded_at": "2031-03-04T05:06:07Z"
    }))
    .unwrap()
}

/// The process's resident memory, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0.0);
    kb / 1024.0
}

/// Exports TOLLGATE_EXPORT_RECORDS records (default 1,000,000) from the embedded store and
/// prints the process's memory before and while the export streams: it stays flat, since the
/// export holds one page at a time. Slow (it writes the records first), so run by hand:
/// `cargo test -p tollgate-tests --test usage_views --release -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn an_export_of_a_million_records_holds_memory_flat() {
    use futures::StreamExt;
    let n: usize = std::env::var("TOLLGATE_EXPORT_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let app = TestApp::start(tollgate_tests::Backend::Embedded).await;
    let (admin, _) = app.admin().await;
    app.model(&admin, "mock-a", 1.0, 2.0, None).await;
    let (_, key) = app.api_key(&admin, json!({})).await;
    let served = app.chat(&key, json!({"model": "mock-a", "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
    let store = app.state.store.clone();
    let template = tollgate::usage::by_request_id(store.as_ref(), served.headers["x-request-id"].to_str().unwrap()).await.unwrap().unwrap();
    let started = std::time::Instant::now();
    for chunk in 0..n.div_ceil(1000) {
        let writes = (chunk * 1000..((chunk + 1) * 1000).min(n)).map(|i| {
            let mut r = template.clone();
            r.request_id = format!("m-{i}");
            r.recorded_at = template.recorded_at - chrono::Duration::milliseconds(i as i64 + 1);
            let store = store.clone();
            async move { tollgate::usage::write_with(store.as_ref(), &r, vec![], true).await.unwrap() }
        });
        join_all(writes).await;
    }
    println!("wrote {n} records in {:.1} s", started.elapsed().as_secs_f64());
    // Their rollups first, so that the consumer's work is not counted as the export's.
    tollgate::usage::rollups::roll_up(store.as_ref()).await.unwrap();
    let before = rss_mib();
    let response = app.client.get(format!("{}/admin/v1/me/usage/logs/export?format=csv", app.base)).bearer_auth(&admin).send().await.unwrap();
    let started = std::time::Instant::now();
    let mut first_byte = None;
    let (mut bytes, mut lines, mut peak) = (0usize, 0usize, before);
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        first_byte.get_or_insert(started.elapsed());
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
        peak = peak.max(rss_mib());
    }
    println!(
        "exported {} rows ({:.0} MiB of CSV) in {:.1} s, first bytes after {:?}; resident memory {before:.0} MiB before, at most {peak:.0} MiB while streaming",
        lines - 1,
        bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64(),
        first_byte.unwrap_or_default()
    );
    assert_eq!(lines, n + 2, "a header, the served request and every record");
    assert!(peak - before < 200.0, "memory grew by {:.0} MiB", peak - before);
}
