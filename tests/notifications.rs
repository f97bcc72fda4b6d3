//! Settings, notification channels (SMTP and signed webhooks, delivered to local sinks),
//! invites and budget events through them, and system info, on both store backends.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tollgate::store::{Key, Update};
use tollgate_tests::sinks::{SmtpSink, WebhookSink};
use tollgate_tests::{TestApp, backend_tests};

fn channels(smtp: &SmtpSink, hook: &WebhookSink) -> Value {
    json!([
        {"name": "ops-mail", "type": "smtp", "host": "127.0.0.1", "port": smtp.port, "tls": "none", "username": "tollgate",
         "password": "smtp-pass-123", "from": "tollgate@example.com", "to": ["ops@example.com"]},
        {"name": "hook", "type": "webhook", "url": hook.url, "secret": "whsec-456"}
    ])
}

/// Waits until `check` holds (deliveries run off the request's path).
async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("{what} did not happen");
}

fn events(hook: &WebhookSink, event: &str) -> Vec<Value> {
    hook.hooks().iter().filter(|h| h.headers["x-tollgate-event"] == event).map(|h| serde_json::from_slice(&h.body).unwrap()).collect()
}

backend_tests! {
    async fn settings_keep_channel_secrets_in_the_secret_store_and_test_each_channel(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let smtp = SmtpSink::start().await;
        let hook = WebhookSink::start().await;
        let defaults = app.get("/api/settings", Some(&admin)).await.expect(200);
        assert_eq!(defaults.body["budgetAlertThreshold"], 80);
        assert_eq!(defaults.body["notifications"], json!([]));

        let saved = app.put("/api/settings", Some(&admin), json!({"logLevel": "debug", "publicUrl": "https://gw.example.com", "notifications": channels(&smtp, &hook)})).await.expect(200);
        assert_eq!(saved.body["logLevel"], "debug");
        assert_eq!(saved.body["notifications"][0]["hasSecret"], true);
        assert_eq!(saved.body["notifications"][1]["hasSecret"], true);
        let read = app.get("/api/settings", Some(&admin)).await.expect(200);
        for text in [&saved.text, &read.text] {
            assert!(!text.contains("smtp-pass-123") && !text.contains("whsec-456"), "a secret came back: {text}");
        }
        let stored = app.state.store.get(&Key::new("SYSTEM", "SETTINGS")).await.unwrap().unwrap();
        assert!(!format!("{stored:?}").contains("whsec-456"), "a secret is in the table");
        assert_eq!(app.state.secrets.get("channels/hook").await.unwrap().unwrap().expose_secret(), "whsec-456");
        assert_eq!(app.state.secrets.get("channels/ops-mail").await.unwrap().unwrap().expose_secret(), "smtp-pass-123");

        for (body, param) in [
            (json!({"notifications": [{"name": "h", "type": "webhook", "url": hook.url}]}), "notifications.secret"),
            (json!({"notifications": [{"name": "h", "type": "pigeon"}]}), "notifications.type"),
            (json!({"notifications": [{"name": "bad name", "type": "webhook", "url": hook.url, "secret": "s"}]}), "notifications.name"),
            (json!({"notifications": [{"name": "m", "type": "smtp", "host": "h", "from": "not a mailbox"}]}), "notifications.to"),
            (json!({"logLevel": "loud"}), "logLevel"),
            (json!({"budgetAlertThreshold": 0}), "budgetAlertThreshold"),
        ] {
            let r = app.put("/api/settings", Some(&admin), body).await.expect(400);
            assert_eq!(r.body["error"]["param"], param, "{}", r.text);
        }

        // Each channel is tested for real.
        app.post("/api/notifications/test", Some(&admin), json!({"channelName": "ops-mail"})).await.expect(200);
        let mail = smtp.mails().pop().expect("a mail");
        assert_eq!(mail.to, vec!["ops@example.com"]);
        assert!(mail.data.contains("Tollgate test notification"), "{}", mail.data);
        assert_eq!(smtp.logins.lock().unwrap().last().unwrap(), "\0tollgate\0smtp-pass-123", "the password from the secret store logs in");
        app.post("/api/notifications/test", Some(&admin), json!({"channelName": "hook"})).await.expect(200);
        let delivery = hook.hooks().pop().expect("a webhook delivery");
        assert_eq!(delivery.headers["x-tollgate-signature"], tollgate::notify::signature("whsec-456", &delivery.body).as_str());
        assert_ne!(delivery.headers["x-tollgate-signature"], tollgate::notify::signature("another secret", &delivery.body).as_str());
        assert_eq!(serde_json::from_slice::<Value>(&delivery.body).unwrap()["event"], "test");

        // A failing channel's own answer comes back in the envelope.
        *hook.status.lock().unwrap() = 500;
        let failed = app.post("/api/notifications/test", Some(&admin), json!({"channelName": "hook"})).await.expect_error(502, "notification_failed");
        assert!(failed.body["error"]["message"].as_str().unwrap().contains("500"), "{}", failed.text);
        *smtp.refuse.lock().unwrap() = Some("550 no such mailbox".into());
        let failed = app.post("/api/notifications/test", Some(&admin), json!({"channelName": "ops-mail"})).await.expect_error(502, "notification_failed");
        assert!(failed.body["error"]["message"].as_str().unwrap().contains("550"), "{}", failed.text);
        app.post("/api/notifications/test", Some(&admin), json!({"channelName": "nope"})).await.expect_error(404, "not_found");

        // A channel that is gone takes its secret with it; one kept without a new secret keeps its own.
        let kept = json!([{"name": "ops-mail", "type": "smtp", "host": "127.0.0.1", "port": smtp.port, "tls": "none", "from": "tollgate@example.com", "to": ["ops@example.com"]}]);
        let saved = app.put("/api/settings", Some(&admin), json!({"notifications": kept})).await.expect(200);
        assert_eq!(saved.body["notifications"][0]["hasSecret"], true);
        assert!(app.state.secrets.get("channels/hook").await.unwrap().is_none());
        assert!(app.state.secrets.get("channels/ops-mail").await.unwrap().is_some());

        let (_, viewer) = app.user(&admin, "viewer@example.com", "viewer").await;
        app.put("/api/settings", Some(&viewer), json!({"logLevel": "info"})).await.expect_error(403, "insufficient_permissions");
        let info = app.get("/api/system/info", Some(&viewer)).await.expect(200);
        assert_eq!(info.body["version"], env!("CARGO_PKG_VERSION"));
        assert!(info.body["uptime"].is_u64());
        assert!(info.body["runtime"].as_str().unwrap().starts_with("rust"));
        assert!(info.body["platform"].as_str().unwrap().contains('/'));
        app.get("/api/system/info", None).await.expect(401);
    }

    async fn invites_and_budget_events_are_delivered_once_each(backend) {
        let app = TestApp::start(backend).await;
        app.pin_mid_period();
        let (admin, _) = app.admin().await;
        let smtp = SmtpSink::start().await;
        let hook = WebhookSink::start().await;
        app.put("/api/settings", Some(&admin), json!({"notifications": channels(&smtp, &hook)})).await.expect(200);

        // An invite goes by mail to the invitee only: a webhook's receiver is someone else, and
        // whoever holds the link can join as the invitee.
        let ws = app.post("/api/workspaces", Some(&admin), json!({"name": "Acme"})).await.expect(201).body["id"].as_str().unwrap().to_string();
        let sent = app.post("/api/invite-user", Some(&admin), json!({"email": "new@example.com", "role": "member", "business_id": ws, "redirect_to": "https://app.example.com/join"})).await.expect(201);
        assert_eq!(sent.body["delivery"], json!([{"channel": "ops-mail", "ok": true, "error": null}]));
        assert_eq!(sent.body["delivered"], true);
        assert!(!sent.text.contains("invite_token") && !sent.text.contains("tgi_"), "the inviter never sees the token: {}", sent.text);
        let mail = smtp.mails().pop().expect("the invite mail");
        assert_eq!(mail.to, vec!["new@example.com"]);
        let mail_text = mail.data.replace("=\n", "").replace("=3D", "=");
        assert!(mail_text.contains("https://app.example.com/join?invite_token=tgi_"), "the mail carries the link: {mail_text}");
        assert!(events(&hook, "invite.created").is_empty(), "no webhook receives an invite");
        assert!(!hook.hooks().iter().any(|h| String::from_utf8_lossy(&h.body).contains("tgi_")), "no webhook delivery carries an invite token");
        // Delivered, so no link is held for an admin to read.
        let invite_id = sent.body["invite"]["id"].as_str().unwrap();
        app.post("/api/invite-user/link", Some(&admin), json!({"business_id": ws, "invite_id": invite_id})).await.expect_error(404, "not_found");

        // A $0.20 budget at $1000 per million tokens, each request reserving ~90 tokens (its body's
        // bytes and framing, 5 out) and spending 6: the 80% threshold, then exhaustion.
        app.model(&admin, "mock-1", 1000.0, 1000.0, None).await;
        app.post("/api/projects", Some(&admin), json!({"name": "App", "slug": "app", "models": ["mock-1"]})).await.expect(201);
        let token = app.post("/api/projects/app/tokens", Some(&admin), json!({"name": "t", "limits": [{"metric": "cost", "limit": 0.2, "window": "monthly"}]})).await.expect(201);
        let key = token.body["token"].as_str().unwrap().to_string();
        let body = json!({"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
        let mut refused = 0;
        for _ in 0..40 {
            if app.chat(&key, body.clone()).await.status == 402 {
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
        }
        assert_eq!(refused, 3, "the budget never ran out");
        eventually("the threshold and exhausted events", || !events(&hook, "budget.threshold").is_empty() && !events(&hook, "budget.exhausted").is_empty()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let threshold = events(&hook, "budget.threshold");
        assert_eq!(threshold.len(), 1, "once per limit and period: {threshold:?}");
        assert_eq!(events(&hook, "budget.exhausted").len(), 1, "three refusals, one event");
        assert_eq!(threshold[0]["data"]["limit_usd"], "0.200000");
        assert!(threshold[0]["data"]["level"].as_str().unwrap().starts_with("token:"));
        let mails: Vec<_> = smtp.mails().into_iter().filter(|m| m.data.contains("Budget")).collect();
        assert_eq!(mails.len(), 2, "{mails:?}");
        assert!(mails.iter().all(|m| m.to == vec!["ops@example.com"]));

        // A new period: the counter of a past window is still there when the first request of
        // the new one arrives (as after a month turns), and the reset is announced once.
        let fresh = app.post("/api/projects/app/tokens", Some(&admin), json!({"name": "t2", "limits": [{"metric": "cost", "limit": 10, "window": "monthly"}]})).await.expect(201);
        let counters = Key::new(format!("LIMITS#token#{}", fresh.body["id"].as_str().unwrap()), "COUNTERS");
        app.state.store.update(&counters, Update::default().add("u_cost-monthly_1700000000", 1234), None).await.unwrap();
        let fresh_key = fresh.body["token"].as_str().unwrap().to_string();
        app.chat(&fresh_key, body.clone()).await.expect(200);
        app.chat(&fresh_key, body.clone()).await.expect(200);
        eventually("the reset event", || !events(&hook, "budget.reset").is_empty()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(events(&hook, "budget.reset").len(), 1);
    }

    async fn a_budget_event_waits_in_the_outbox_until_a_channel_takes_it(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let hook = WebhookSink::start().await;
        *hook.status.lock().unwrap() = 503;
        app.put("/api/settings", Some(&admin), json!({"notifications": [{"name": "hook", "type": "webhook", "url": hook.url, "secret": "whsec-1"}]})).await.expect(200);
        // A $0.01 budget: the first request's worst case alone passes the 80% threshold.
        app.model(&admin, "mock-1", 0.0, 1600.0, None).await;
        let (_, key) = app.api_key(&admin, json!({"budget_limit_cents": 1, "budget_period": "monthly"})).await;
        app.chat(&key, json!({"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
        // The webhook refuses: the event was written with the settlement and stays pending.
        eventually("a delivery attempt", || !events(&hook, "budget.threshold").is_empty()).await;
        let pending = |prefix: &'static str| {
            let store = app.state.store.clone();
            async move {
                let mut found = 0;
                for shard in 0..8 {
                    let query = tollgate::store::Query::new(tollgate::store::Index::Gsi2, format!("OUTBOX#{shard}")).prefix(prefix);
                    found += store.query(query).await.unwrap().items.len();
                }
                found
            }
        };
        assert_eq!(pending("p#").await, 1, "pending while no channel has taken it");
        // Once the channel answers again and the longest pause is over, a pass delivers it
        // (this one, or the app's own deliverer), once, and it leaves the pending set.
        *hook.status.lock().unwrap() = 200;
        // (Passes again only if the app's deliverer was mid-attempt with the old answer.)
        for _ in 0..3 {
            app.clock.advance(chrono::Duration::minutes(11));
            app.state.outbox.deliver_pending().await.unwrap();
            if pending("s#").await == 1 {
                break;
            }
        }
        assert_eq!((pending("p#").await, pending("s#").await), (0, 1));
        let attempts = events(&hook, "budget.threshold").len();
        assert!(attempts >= 2, "{attempts}");
        app.clock.advance(chrono::Duration::hours(1));
        assert_eq!(app.state.outbox.deliver_pending().await.unwrap(), 0);
        assert_eq!(events(&hook, "budget.threshold").len(), attempts, "nothing is sent again once a channel took it");
    }
}
