//! What operators read of a gateway on either store: the metrics name the level whose limit
//! refused (workspace, project or token) and the reason (budget or rate), time the store's
//! round trips on DynamoDB as on the embedded store, and count reservations held back to zero;
//! the readiness probe reports each check. (tests/compat/test_operations.py reads `/metrics`
//! with Prometheus's own parser.)

use serde_json::{Value, json};
use tollgate_tests::{TestApp, backend_tests};

fn chat() -> Value {
    json!({"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "content": "hello"}]})
}

/// A sample's value in the rendered exposition: the line naming `metric` with every label.
fn sample(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{metric}{{")) || line.starts_with(&format!("{metric} ")))
        .filter(|line| labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\""))))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

async fn refused_until(app: &TestApp, key: &str, status: u16) {
    for _ in 0..20 {
        let r = app.chat(key, chat()).await;
        if r.status.as_u16() == status {
            return;
        }
        assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    }
    panic!("no {status} within 20 requests");
}

backend_tests! {
    async fn refusals_are_counted_by_reason_and_level(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1000.0, 1000.0, None).await;
        // A workspace with a budget of one request's worth, and a token of its own.
        let ws = app.post("/api/workspaces", Some(&admin), json!({"name": "Ops"})).await.expect(201).body["id"].as_str().unwrap().to_string();
        app.put(&format!("/api/workspaces/{ws}"), Some(&admin), json!({"limits": [{"metric": "cost", "limit": 0.02, "window": "monthly"}]})).await.expect(200);
        let created = app.post("/api/tokens", Some(&admin), json!({"name": "w", "business_id": ws, "scopes": ["leaderboards:inference"]})).await.expect(201);
        let workspace_token = created.body["secret"].as_str().unwrap().to_string();
        refused_until(&app, &workspace_token, 402).await;
        // A project with a rate limit of two calls a day.
        app.post("/api/projects", Some(&admin), json!({"name": "Ops app", "slug": "ops-app", "models": ["mock-1"], "limits": [{"metric": "calls", "limit": 2, "window": "daily"}]}))
            .await
            .expect(201);
        let project_token = app.post("/api/projects/ops-app/tokens", Some(&admin), json!({"name": "t"})).await.expect(201).body["token"].as_str().unwrap().to_string();
        refused_until(&app, &project_token, 429).await;
        // A key's own budget, and a model it may not use.
        let (_, key) = app.api_key(&admin, json!({"budget_limit_cents": 2, "allowed_models": ["mock-1"]})).await;
        refused_until(&app, &key, 402).await;
        app.chat(&key, json!({"model": "other", "messages": [{"role": "user", "content": "x"}]})).await.expect_error(403, "model_not_allowed");

        let text = app.state.metrics.render().expect("a server renders its metrics");
        let refusals = |reason, level| sample(&text, "tollgate_proxy_refusals_total", &[("reason", reason), ("level", level)]);
        assert_eq!(refusals("budget", "workspace"), 1.0, "{text}");
        assert_eq!(refusals("rate", "project"), 1.0);
        assert_eq!(refusals("budget", "token"), 1.0);
        assert_eq!(refusals("scope", "token"), 1.0);
        assert_eq!(sample(&text, "tollgate_proxy_requests_total", &[("outcome", "budget_exceeded")]), 2.0);
        assert_eq!(sample(&text, "tollgate_proxy_reservations_held", &[]), 0.0, "every reservation was given back");
        // The store's round trips are timed on this backend too: reservations are updates or
        // transactions, settlements transactions.
        let round_trips = sample(&text, "tollgate_store_round_trip_seconds_count", &[("op", "transact")]) + sample(&text, "tollgate_store_round_trip_seconds_count", &[("op", "update")]);
        assert!(round_trips >= 6.0, "{text}");
        // Bounded labels: no key or user id without the operator's opt-in.
        assert!(!text.contains(&ws) || text.contains(&format!("workspace=\"{ws}\"")), "a workspace id only as the cost's workspace label");
        assert!(!text.contains("key=\""));
    }

    async fn the_cost_counter_names_the_project_and_workspace(backend) {
        let app = TestApp::start_with(backend, &tollgate::Group::ALL, |c| c.metrics_key_labels = true, None).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1000.0, 1000.0, None).await;
        let project = app.post("/api/projects", Some(&admin), json!({"name": "Paid", "slug": "paid", "models": ["mock-1"]})).await.expect(201).body;
        let token = app.post("/api/projects/paid/tokens", Some(&admin), json!({"name": "t"})).await.expect(201).body;
        let served = app.chat(token["token"].as_str().unwrap(), chat()).await.expect(200);
        let cost: f64 = served.headers["x-tollgate-cost-usd"].to_str().unwrap().parse().unwrap();
        let mut stream = chat();
        stream["stream"] = json!(true);
        app.chat(token["token"].as_str().unwrap(), stream).await.expect(200);
        let text = app.state.metrics.render().unwrap();
        // Every family is there once traffic has passed (the ones no event has touched at zero).
        // (Refusals, which this traffic has none of, are counted in the test above; retries and
        // cooldowns, which need deployments failing, in tests/resilience.rs.)
        let elsewhere = ["tollgate_proxy_refusals_total", "tollgate_upstream_retries_total", "tollgate_deployment_cooldowns_total", "tollgate_deployments_cooling"];
        for (name, _, _) in tollgate::metrics::FAMILIES.iter().filter(|(name, _, _)| !elsewhere.contains(name)) {
            assert!(text.lines().any(|l| l.starts_with(name) && !l.starts_with('#')), "{name} is missing:\n{text}");
        }
        let project_id = project["id"].as_str().unwrap();
        let counted = sample(&text, "tollgate_proxy_cost_microdollars_total", &[("project", project_id), ("model", "mock-1")]);
        assert!(counted >= (cost * 1e6).round() && counted > 0.0, "{text}");
        // The operator opted in to key labels here.
        let token_id = token["id"].as_str().unwrap();
        assert_eq!(sample(&text, "tollgate_proxy_requests_total", &[("key", token_id), ("outcome", "success")]), 2.0, "{text}");
    }

    async fn readiness_reports_each_check(backend) {
        let app = TestApp::start(backend).await;
        let ready = app.get("/health/ready", None).await.expect(200);
        assert_eq!(ready.body["status"], "ready");
        let names: Vec<&str> = ready.body["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["store", "secrets", "background", "outbox"]);
        assert_eq!(app.get("/health/live", None).await.expect(200).body["status"], "live");
        // A dead background task (its last pass long ago) or a piled-up outbox makes a process
        // unready: asked of this app's store with a heartbeat of their own (the app's own task
        // beats every second).
        let now = app.state.clock.now().timestamp_millis();
        let beat = tollgate::health::Heartbeat::default();
        beat.beat(now - 120_000);
        beat.backlog(tollgate::health::MAX_BACKLOG + 1);
        let checks = tollgate::health::ready(app.state.store.as_ref(), app.state.secrets.as_ref(), &beat, now).await;
        let problems: Vec<(&str, Option<&str>)> = checks.iter().map(|c| (c.name, c.problem.as_deref())).collect();
        assert_eq!(problems[..2], [("store", None), ("secrets", None)]);
        assert_eq!(problems[2], ("background", Some("the last background pass ended 120 s ago")));
        assert_eq!(problems[3], ("outbox", Some("1001 budget events wait for delivery (more than 1000)")));
    }
}

/// Every metric the Grafana dashboard in docs/ queries is one the gateway exposes, and every
/// metric the gateway exposes is on it.
#[test]
fn the_grafana_dashboard_names_only_metrics_that_exist() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana/tollgate.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exposed: std::collections::BTreeSet<&str> = tollgate::metrics::FAMILIES.iter().map(|(name, _, _)| *name).collect();
    let mut named = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (at, _) in expr.match_indices("tollgate_") {
                let name: String = expr[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                let family = ["_bucket", "_count", "_sum"].iter().fold(name.as_str(), |n, suffix| n.strip_suffix(suffix).unwrap_or(n)).to_string();
                assert!(exposed.contains(family.as_str()), "panel {:?} queries {name}, which the gateway does not expose", panel["title"]);
                named.insert(family);
            }
        }
    }
    let unshown: Vec<&&str> = exposed.iter().filter(|m| !named.contains(**m)).collect();
    assert!(unshown.is_empty(), "metrics no panel shows: {unshown:?}");
}
