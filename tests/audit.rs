//! The audit log on both stores: every change made through the admin API leaves one event in
//! the same transaction (who, from where, what, the changed fields before and after, secrets
//! redacted), a refused change leaves none, global admins list and export it with filters,
//! and `verify` names the first event edited, removed or moved.

use serde_json::{Value, json};
use tollgate::audit::{self, verify::verify};
use tollgate::store::{Attr, Index, Query, query_all};
use tollgate_tests::{TestApp, backend_tests};

async fn events(app: &TestApp, admin: &str, query: &str) -> Vec<Value> {
    app.get(&format!("/api/audit{query}"), Some(admin)).await.expect(200).body["data"].as_array().unwrap().clone()
}

async fn model(app: &TestApp, admin: &str, id: &str) {
    app.post("/api/models", Some(admin), json!({"id": id, "provider": "mock", "inputPrice": 1, "outputPrice": 2, "contextWindow": 4096})).await.expect(201);
}

/// Every event item of every chain, in chain order.
async fn chain_items(app: &TestApp) -> Vec<tollgate::store::Item> {
    let mut out = Vec::new();
    for shard in 0..audit::SHARDS {
        out.extend(query_all(app.state.store.as_ref(), Query::new(Index::Primary, format!("AUDIT#{shard}"))).await.unwrap());
    }
    out
}

backend_tests! {
    async fn each_change_is_an_event_with_who_what_and_the_fields_it_changed(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        let admin_id = app.get("/api/me", Some(&admin)).await.expect(200).body["id"].as_str().unwrap().to_string();
        model(&app, &admin, "m1").await;
        app.put("/api/models/m1", Some(&admin), json!({"inputPrice": 3})).await.expect(200);
        let key = app.post("/admin/v1/me/api-keys", Some(&admin), json!({"name": "audited"})).await.expect(201).body;
        app.delete("/api/models/m1", Some(&admin)).await.expect(204);

        let all = events(&app, &admin, "").await;
        let actions: Vec<&str> = all.iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(actions[..4], ["DELETE /api/models/{id}", "POST /admin/v1/me/api-keys", "PUT /api/models/{id}", "POST /api/models"], "{all:#?}");
        let update = &all[2];
        assert_eq!(update["target"], "id=m1");
        assert_eq!(update["actor"], json!({"kind": "user", "id": admin_id}));
        assert_eq!(update["source"], "127.0.0.1");
        let change = &update["changes"][0];
        assert_eq!(change["op"], "updated");
        assert_eq!(change["before"]["input_price_micros"], json!(1_000_000), "{change}");
        assert_eq!(change["after"]["input_price_micros"], json!(3_000_000), "{change}");
        assert!(change["before"].get("output_price_micros").is_none(), "only the changed fields: {change}");
        // A key's secret never appears; its hash is redacted.
        let text = serde_json::to_string(&all).unwrap();
        assert!(!text.contains(key["key"].as_str().unwrap()));
        let created = &all[1]["changes"];
        assert!(created.as_array().unwrap().iter().any(|c| c["after"].as_object().unwrap().values().any(|v| v == "[redacted]")), "{created:#}");
        assert_eq!(all[0]["changes"][0]["op"], "deleted");
        // Reads and the proxy's traffic leave nothing.
        app.get("/api/models", Some(&admin)).await.expect(200);
        assert_eq!(events(&app, &admin, "").await.len(), all.len());
    }

    async fn a_refused_change_leaves_no_event(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        model(&app, &admin, "once").await;
        app.post("/api/models", Some(&admin), json!({"id": "once", "provider": "mock", "inputPrice": 1, "outputPrice": 2, "contextWindow": 4096}))
            .await
            .expect(409);
        app.delete("/api/models/never", Some(&admin)).await.expect(404);
        let creations = events(&app, &admin, "?action=/api/models").await;
        assert_eq!(creations.len(), 1, "{creations:#?}");
        // The model and its event were written together: no model without its event.
        assert!(verify(app.state.store.as_ref()).await.unwrap().broken.is_none());
    }

    async fn admins_filter_page_and_export_the_log(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        for i in 0..5 {
            model(&app, &admin, &format!("p{i}")).await;
        }
        app.delete("/api/models/p0", Some(&admin)).await.expect(204);
        let first = app.get("/api/audit?limit=2&action=POST%20/api/models", Some(&admin)).await.expect(200).body;
        assert_eq!(first["data"].as_array().unwrap().len(), 2);
        let cursor = first["next_cursor"].as_str().unwrap();
        let second = app.get(&format!("/api/audit?limit=10&action=POST%20/api/models&cursor={cursor}"), Some(&admin)).await.expect(200).body;
        let ids: std::collections::BTreeSet<&str> =
            first["data"].as_array().unwrap().iter().chain(second["data"].as_array().unwrap()).map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 5, "two pages hold the five creations, none twice: {first} {second}");
        assert!(second["next_cursor"].is_null());
        assert_eq!(events(&app, &admin, "?target=id=p0").await.len(), 1, "the deletion, by its target");
        let in_future = events(&app, &admin, "?from=2999-01-01T00:00:00Z").await;
        assert!(in_future.is_empty());
        app.get("/api/audit?from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z", Some(&admin)).await.expect_error(400, "invalid_value");
        // The export is the same log, one event per line.
        let exported = app.get("/api/audit/export", Some(&admin)).await.expect(200);
        let lines: Vec<Value> = exported.text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), events(&app, &admin, "?limit=1000").await.len());
        let csv = app.get("/api/audit/export?format=csv", Some(&admin)).await.expect(200);
        assert!(csv.text.starts_with("id,at,actor,source,action,target,request_id,changes"));
        // Only global admins read it.
        let (_, viewer) = app.user(&admin, "viewer@example.com", "viewer").await;
        app.get("/api/audit", Some(&viewer)).await.expect_error(403, "admin_required");
    }

    async fn deleting_an_account_is_audited_but_its_usage_erasure_is_bookkeeping(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        model(&app, &admin, "mock-1").await;
        let (leaving_id, leaving) = app.user(&admin, "leaving@example.com", "viewer").await;
        let (_, key) = app.api_key(&leaving, json!({})).await;
        for _ in 0..40 {
            app.chat(&key, json!({"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]})).await.expect(200);
        }
        let deleted = app.delete("/admin/v1/me", Some(&leaving)).await.expect(200);
        assert_eq!(deleted.body["usage_records_deleted"], 40);
        let log = events(&app, &admin, "?action=DELETE%20/admin/v1/me&limit=1000").await;
        let items: std::collections::BTreeSet<&str> = log.iter().flat_map(|e| e["changes"].as_array().unwrap()).map(|c| c["item"].as_str().unwrap()).collect();
        assert!(items.iter().any(|i| i.starts_with("USER")), "the account's deletion is there: {items:?}");
        assert!(!items.iter().any(|i| i.starts_with("USAGE") || i.starts_with("ROLLUP")), "no event per usage record: {items:?}");
        assert!(log.iter().all(|e| e["actor"]["id"] == leaving_id.as_str()), "the user deleted their own account");
        assert!(verify(app.state.store.as_ref()).await.unwrap().broken.is_none());
    }

    async fn verify_names_the_first_event_edited_removed_or_moved(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        // Concurrent changes share the chains: each waits its turn, none is lost.
        let creations = (0..12).map(|i| {
            let (app, admin) = (&app, &admin);
            async move { model(app, admin, &format!("c{i}")).await }
        });
        futures::future::join_all(creations).await;
        let store = app.state.store.clone();
        let verified = verify(store.as_ref()).await.unwrap();
        assert!(verified.broken.is_none(), "{verified:?}");
        assert!(verified.chains.iter().map(|c| c.events).sum::<usize>() >= 13, "{verified:?}");
        let items = chain_items(&app).await;
        let victim = items.iter().find(|i| i["seq"] == Attr::N(2)).expect("a chain with two events").clone();
        let pk = victim["PK"].as_str().unwrap().to_string();
        let shard: u64 = pk.trim_start_matches("AUDIT#").parse().unwrap();

        // Edited: the content no longer matches its hash.
        let mut edited = victim.clone();
        let text = edited["event"].as_str().unwrap().replace("POST", "GET ");
        edited.insert("event".into(), Attr::S(text));
        store.put(edited, None).await.unwrap();
        let broken = verify(store.as_ref()).await.unwrap().broken.expect("an edit is found");
        assert_eq!((broken.shard, broken.seq), (shard, 2), "{broken:?}");
        assert!(broken.problem.contains("edited"), "{broken:?}");
        store.put(victim.clone(), None).await.unwrap();
        assert!(verify(store.as_ref()).await.unwrap().broken.is_none());

        // Moved: event 2's content and seals put in event 1's place.
        let first = items.iter().find(|i| i["PK"] == victim["PK"] && i["seq"] == Attr::N(1)).unwrap().clone();
        let mut swapped = first.clone();
        for field in ["event", "prev", "hash"] {
            swapped.insert(field.into(), victim[field].clone());
        }
        store.put(swapped, None).await.unwrap();
        let broken = verify(store.as_ref()).await.unwrap().broken.expect("a move is found");
        assert_eq!((broken.shard, broken.seq), (shard, 1), "{broken:?}");
        store.put(first, None).await.unwrap();

        // Removed: event 2 gone.
        store.delete(&tollgate::store::Key::of(&victim).unwrap(), None).await.unwrap();
        let broken = verify(store.as_ref()).await.unwrap().broken.expect("a removal is found");
        assert_eq!((broken.shard, broken.seq), (shard, 2), "{broken:?}");
        assert!(broken.problem.contains("removed"), "{broken:?}");
    }
}
