//! Workspace integrations (OpenRouter, Hugging Face) and dataset checks, against local
//! stand-ins for those services, on both backends.

use serde_json::json;
use tollgate::Group;
use tollgate_tests::services::{DATASET, FakeServices, HF_TOKEN, OPENROUTER_TOKEN};
use tollgate_tests::{TestApp, backend_tests};

async fn app_with(backend: tollgate_tests::Backend, fake: &FakeServices) -> TestApp {
    let base = fake.base.clone();
    TestApp::start_with(
        backend,
        &Group::ALL,
        move |c| {
            c.openrouter_url = format!("{base}/api/v1");
            c.huggingface_url = format!("{base}/v1");
            c.huggingface_hub_url = base;
        },
        None,
    )
    .await
}

backend_tests! {
    async fn a_checked_token_saved_on_a_workspace_serves_its_tokens(backend) {
        let fake = FakeServices::start().await;
        let app = app_with(backend, &fake).await;
        let (admin, _) = app.admin().await;
        let ws = app.post("/api/workspaces", Some(&admin), json!({"name": "Acme"})).await.expect(201).body["id"].as_str().unwrap().to_string();
        // Checked only.
        let ok = app.post("/api/integrations/validate", Some(&admin), json!({"provider": "openrouter", "token": OPENROUTER_TOKEN})).await.expect(200);
        assert_eq!((ok.body["valid"].as_bool(), ok.body["saved"].as_bool()), (Some(true), Some(false)));
        assert_eq!(ok.body["account"], "sk-or-v1-acm...def");
        let bad = app.post("/api/integrations/validate", Some(&admin), json!({"provider": "openrouter", "token": "sk-or-v1-bad-token-000000"})).await.expect(200);
        assert_eq!(bad.body["valid"], false);
        assert!(bad.body["message"].as_str().unwrap().contains("No auth credentials found"), "{}", bad.text);
        let hf = app.post("/api/integrations/validate", Some(&admin), json!({"provider": "huggingface", "token": HF_TOKEN})).await.expect(200);
        assert_eq!((hf.body["valid"].as_bool(), hf.body["account"].as_str()), (Some(true), Some("acme-ml")));
        app.post("/api/integrations/validate", Some(&admin), json!({"provider": "anthropic", "token": "x"})).await.expect_error(400, "invalid_value");

        // A workspace token cannot use openrouter/... until the token is saved on its workspace.
        let token = app.post("/api/tokens", Some(&admin), json!({"name": "w", "business_id": ws})).await.expect(201).body["secret"].as_str().unwrap().to_string();
        let ask = json!({"model": "openrouter/anthropic/claude-sonnet-4", "messages": [{"role": "user", "content": "hi"}]});
        app.chat(&token, ask.clone()).await.expect_error(404, "model_not_found");
        // Only a manager of the workspace may save on it.
        let (_, member) = app.user(&admin, "someone@example.com", "viewer").await;
        let other = app.post("/api/integrations/validate", Some(&member), json!({"provider": "openrouter", "token": OPENROUTER_TOKEN, "business_id": ws})).await;
        assert!(other.status == 403 || other.status == 404, "{}", other.text);
        let saved = app.post("/api/integrations/validate", Some(&admin), json!({"provider": "openrouter", "token": OPENROUTER_TOKEN, "business_id": ws})).await.expect(200);
        assert_eq!(saved.body["saved"], true);
        assert!(!saved.text.contains(OPENROUTER_TOKEN));
        let r = app.chat(&token, ask).await.expect(200);
        assert_eq!(r.body["choices"][0]["message"]["content"], "served through your own account");
        let (path, headers, sent) = fake.requests().pop().unwrap();
        assert_eq!(path, "/api/v1/chat/completions");
        assert_eq!(headers["authorization"], format!("Bearer {OPENROUTER_TOKEN}").as_str());
        assert_eq!(sent["model"], "anthropic/claude-sonnet-4", "the service is asked for its own model name");
        assert!(headers.get("http-referer").is_none() && headers.get("x-openrouter-title").is_none(), "no attribution unless asked for");
        // OpenRouter reports what it charged (usage.cost, $0.000042): the request is metered at that.
        let request_id = r.headers["x-request-id"].to_str().unwrap();
        let rec = tollgate::usage::by_request_id(app.state.store.as_ref(), request_id).await.unwrap().expect("recorded");
        assert_eq!((rec.pricing_source.as_str(), rec.cost_micros, rec.provider_cost_micros), ("provider", 42, Some(42)));
        assert_eq!(r.headers["x-tollgate-cost-usd"], "0.000042");
        // The caller's app attribution goes on to OpenRouter, under its current name and the old one.
        let attributed = app
            .client
            .post(format!("{}/v1/chat/completions", app.base))
            .bearer_auth(&token)
            .header("HTTP-Referer", "https://chat.acme.example")
            .header("X-Title", "Acme Chat")
            .json(&json!({"model": "openrouter/anthropic/claude-sonnet-4", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(attributed.status(), 200);
        let (_, headers, _) = fake.requests().pop().unwrap();
        assert_eq!((headers["http-referer"].to_str().unwrap(), headers["x-openrouter-title"].to_str().unwrap()), ("https://chat.acme.example", "Acme Chat"));
        assert_eq!(headers["x-title"], "Acme Chat");
        // Hugging Face the same way, through the inference router; it reports no cost, so a model
        // the catalog does not price is refused rather than metered at $0 ...
        app.post("/api/integrations/validate", Some(&admin), json!({"provider": "huggingface", "token": HF_TOKEN, "business_id": ws})).await.expect(200);
        let llama = json!({"model": "huggingface/meta-llama/Llama-3.1-8B-Instruct", "messages": [{"role": "user", "content": "hi"}]});
        app.chat(&token, llama.clone()).await.expect_error(403, "model_unpriced");
        // ... and served once it does, by its name's last segment.
        app.post("/api/models", Some(&admin), json!({"id": "Llama-3.1-8B-Instruct", "provider": "huggingface", "inputPrice": 0.1, "outputPrice": 0.1, "contextWindow": 8192}))
            .await
            .expect(201);
        app.chat(&token, llama).await.expect(200);
        assert_eq!(fake.requests().pop().unwrap().0, "/v1/chat/completions");
        // A personal key does not reach the workspace's account.
        let (_, personal) = app.api_key(&admin, json!({})).await;
        app.chat(&personal, json!({"model": "openrouter/anthropic/claude-sonnet-4", "messages": [{"role": "user", "content": "hi"}]})).await.expect_error(404, "model_not_found");
    }

    async fn a_provider_reported_cost_is_charged_but_never_past_the_budgets_reservation(backend) {
        let fake = FakeServices::start().await;
        let app = app_with(backend, &fake).await;
        let (admin, _) = app.admin().await;
        // Catalog prices far below what the fake OpenRouter charges ($0.000042 a request).
        let model = json!({"id": "or-cheap", "provider": "openrouter", "baseUrl": format!("{}/api/v1", fake.base), "apiKey": OPENROUTER_TOKEN,
            "inputPrice": 0.5, "outputPrice": 0.5, "contextWindow": 4096});
        app.post("/api/models", Some(&admin), model).await.expect(201);
        let ask = json!({"model": "or-cheap", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
        // Without a budget the provider's figure is the charge.
        let (_, free) = app.api_key(&admin, json!({})).await;
        let r = app.chat(&free, ask.clone()).await.expect(200);
        assert_eq!(r.headers["x-tollgate-cost-usd"], "0.000042");
        // With one, the worst case reserved at catalog prices (a few micro-dollars) bounds it.
        let (_, budgeted) = app.api_key(&admin, json!({"budget_limit_cents": 1})).await;
        let r = app.chat(&budgeted, ask).await.expect(200);
        let rec = tollgate::usage::by_request_id(app.state.store.as_ref(), r.headers["x-request-id"].to_str().unwrap()).await.unwrap().unwrap();
        assert_eq!((rec.pricing_source.as_str(), rec.provider_cost_micros), ("provider", Some(42)));
        assert!(rec.cost_micros < 42 && rec.cost_micros > 0, "charged {} micro-dollars, at most the reservation", rec.cost_micros);
        assert_eq!(r.headers["x-budget-remaining-usd"], tollgate::money::format_dollars(10_000 - rec.cost_micros).as_str());
    }

    async fn dataset_urls_are_checked_for_form_and_on_the_hub(backend) {
        let fake = FakeServices::start().await;
        let app = app_with(backend, &fake).await;
        let (admin, _) = app.admin().await;
        let url = |path: &str| format!("https://huggingface.co{path}");
        let found = app.post("/api/datasets/huggingface/check", Some(&admin), json!({"dataset_url": url(DATASET)})).await.expect(200);
        assert_eq!(found.body["valid"], true);
        assert_eq!(found.body["dataset"], json!({"repo": "acme/support-evals", "revision": "main", "path": "eval.jsonl"}));
        let missing = app.post("/api/datasets/huggingface/check", Some(&admin), json!({"dataset_url": url("/datasets/acme/support-evals/resolve/main/nope.jsonl")})).await.expect(200);
        assert_eq!(missing.body["valid"], false);
        assert!(missing.body["message"].as_str().unwrap().contains("404"), "{}", missing.text);
        app.post("/api/datasets/huggingface/check", Some(&admin), json!({"dataset_url": "https://huggingface.co/acme/model"})).await.expect_error(400, "invalid_value");
        // An API key works as well as a session; nothing works without either.
        let (_, key) = app.api_key(&admin, json!({})).await;
        app.post("/api/datasets/huggingface/check", Some(&key), json!({"dataset_url": url(DATASET)})).await.expect(200);
        app.post("/api/datasets/huggingface/check", None, json!({"dataset_url": url(DATASET)})).await.expect_error(401, "unauthorized");
    }
}
