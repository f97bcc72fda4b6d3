//! Limits are exact under concurrency, on both backends: a reservation is the request's worst
//! case, taken in one atomic step, so no budget or rate limit is ever overspent, and settlement
//! gives back what the worst case over-counted. The hot path makes two store round trips.

use futures::future::join_all;
use serde_json::{Value, json};
use tollgate_tests::counting::{CountingStore, Op};
use tollgate_tests::{TestApp, backend_tests};

/// Sets the app's clock a second into a minute a day ahead (`TestApp::to_next_minute`): the
/// test's requests share one rate window however long they take, and the test moves to the next.
fn at_the_start_of_a_minute(app: &TestApp) -> chrono::DateTime<chrono::Utc> {
    app.clock.advance(chrono::Duration::days(1));
    app.to_next_minute()
}

async fn counters(app: &TestApp, admin: &str, key_id: &str) -> tollgate::store::Item {
    let owner = tollgate::keys::Owner::User { user_id: app.get("/api/me", Some(admin)).await.body["id"].as_str().unwrap().parse().unwrap() };
    let key = tollgate::keys::get(app.state.store.as_ref(), &owner, key_id.parse().unwrap()).await.unwrap();
    app.state.store.get(&key.counters()).await.unwrap().unwrap_or_default()
}

fn used(item: &tollgate::store::Item, limit_id: &str) -> i64 {
    item.iter().filter(|(k, _)| k.starts_with(&format!("u_{limit_id}_"))).filter_map(|(_, v)| v.as_i64()).sum()
}

backend_tests! {
    async fn sixty_four_concurrent_requests_against_a_budget_for_ten_serve_ten(backend) {
        let app = TestApp::start(backend).await;
        app.pin_mid_period();
        let (admin, _) = app.admin().await;
        // Output only is priced: 5 tokens x $2000/M = 1 cent, and the answer is exactly
        // max_tokens long, so each request's worst case is its real cost.
        app.model(&admin, "mock-1", 0.0, 2000.0, None).await;
        let (key_id, key) = app.api_key(&admin, json!({"budget_limit_cents": 10, "budget_period": "daily"})).await;
        let body = json!({"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "content": "go [mock:words=50]"}]});
        let results = join_all((0..64).map(|_| app.chat(&key, body.clone()))).await;
        let ok = results.iter().filter(|r| r.status == 200).count();
        let refused = results.iter().filter(|r| r.status == 402).count();
        assert_eq!((ok, refused), (10, 54), "statuses: {:?}", results.iter().map(|r| r.status.as_u16()).collect::<Vec<_>>());
        for r in results.iter().filter(|r| r.status == 402) {
            assert_eq!(r.body["error"]["code"], "budget_exceeded");
        }
        assert_eq!(used(&counters(&app, &admin, &key_id).await, "budget"), 100_000, "exactly the budget, in micro-dollars");
        let logs = app.get("/admin/v1/me/usage/logs?limit=100", Some(&admin)).await.expect(200).body["data"].as_array().unwrap().clone();
        let spent: i64 = logs.iter().map(|r| r["cost_micros"].as_i64().unwrap()).sum();
        assert_eq!(spent, 100_000);
        assert_eq!(logs.iter().filter(|r| r["outcome"] == "budget_exceeded").count(), 54);
    }

    async fn rpm_holds_within_the_window(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 0.0, 0.0, None).await;
        let (_, key) = app.api_key(&admin, json!({"rate_limit_rpm": 5})).await;
        // Set last, so setup's time does not move the requests below into another slice; each
        // check below sets it again, so a slow machine's time cannot shift what it expects.
        let t0 = at_the_start_of_a_minute(&app);
        let at = |secs: i64| app.clock.set(t0 + chrono::Duration::seconds(secs));
        let body = json!({"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]});
        let results = join_all((0..12).map(|_| app.chat(&key, body.clone()))).await;
        assert_eq!(results.iter().filter(|r| r.status == 200).count(), 5);
        let limited: Vec<_> = results.iter().filter(|r| r.status == 429).collect();
        assert_eq!(limited.len(), 7);
        for r in limited {
            assert_eq!(r.body["error"]["code"], "rate_limit_exceeded");
            // The minute's first 5-second slice leaves the window a minute after it ends, at
            // second 65: 64 s from second 1 (63 if the twelve took over a second).
            let retry: i64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((63..=64).contains(&retry), "the time until the next request fits: {retry}");
        }
        // Still refused one second before; served then.
        at(64);
        let refused = app.chat(&key, body.clone()).await.expect_error(429, "rate_limit_exceeded");
        assert_eq!(refused.headers["retry-after"], "1");
        at(65);
        app.chat(&key, body.clone()).await.expect(200);
    }

    async fn rpm_counts_over_a_rolling_minute_not_the_calendar_minute(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 0.0, 0.0, None).await;
        let (_, key) = app.api_key(&admin, json!({"rate_limit_rpm": 5})).await;
        // Set last, so setup's time does not move the requests below into another slice; each
        // step below sets it again, so a slow machine's time cannot shift what it expects.
        let t0 = at_the_start_of_a_minute(&app);
        let at = |secs: i64| app.clock.set(t0 + chrono::Duration::seconds(secs));
        let body = json!({"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]});
        // Three at second 1 of a minute, two at second 31.
        for _ in 0..3 {
            app.chat(&key, body.clone()).await.expect(200);
        }
        // Twelve at once: the window has room for two, and exactly two get in, however the
        // store orders them (a reservation that took the window past 5 is taken back).
        at(31);
        let results = join_all((0..12).map(|_| app.chat(&key, body.clone()))).await;
        assert_eq!(results.iter().filter(|r| r.status == 200).count(), 2, "{:?}", results.iter().map(|r| r.status.as_u16()).collect::<Vec<_>>());
        for r in results.iter().filter(|r| r.status != 200) {
            // Until the first three leave (later, while others' reservations are being taken back).
            let retry: i64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((33..=64).contains(&retry), "{retry}: {:?}", r.body);
        }
        // Into the next calendar minute: a calendar count would start afresh; the rolling one
        // still holds all five until the first slice leaves, at second 65.
        at(61);
        let refused = app.chat(&key, body.clone()).await.expect_error(429, "rate_limit_exceeded");
        assert_eq!(refused.headers["retry-after"], "4");
        assert_eq!(refused.headers["x-ratelimit-remaining-requests"], "0");
        at(65);
        for _ in 0..3 {
            app.chat(&key, body.clone()).await.expect(200);
        }
        // The two of second 31 still count: the next fits when they leave, at second 95.
        at(66);
        let refused = app.chat(&key, body.clone()).await.expect_error(429, "rate_limit_exceeded");
        assert_eq!(refused.headers["retry-after"], "29", "{:?}", refused.body);
        at(95);
        app.chat(&key, body.clone()).await.expect(200);
    }

    async fn tpm_counts_worst_cases_then_settles_to_real_tokens(backend) {
        let app = TestApp::start(backend).await;
        at_the_start_of_a_minute(&app);
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 0.0, 0.0, None).await;
        let (key_id, key) = app.api_key(&admin, json!({"rate_limit_tpm": 400})).await;
        let body = json!({"model": "mock-1", "max_tokens": 11, "messages": [{"role": "user", "content": "hi"}]});
        // Worst case: the body's bytes + 4 + 3 framing input, 11 output; real: 1 + 11.
        let worst = serde_json::to_vec(&body).unwrap().len() as i64 + 4 + 3 + 11;
        let first = app.chat(&key, body.clone()).await.expect(200);
        let real = first.body["usage"]["total_tokens"].as_i64().unwrap();
        assert_eq!(used(&counters(&app, &admin, &key_id).await, "tpm"), real, "settlement returned the unused reservation");
        let mut served = 1;
        loop {
            let r = app.chat(&key, body.clone()).await;
            if r.status == 429 {
                assert_eq!(r.body["error"]["code"], "rate_limit_exceeded");
                break;
            }
            r.expect(200);
            served += 1;
            assert!(served < 100, "the tpm limit never refused");
        }
        let total = used(&counters(&app, &admin, &key_id).await, "tpm");
        assert!(total <= 400 && total + worst > 400, "refused only when the worst case would pass the limit: used {total}, worst {worst}");
        assert_eq!(total, served * real);
    }

    async fn every_answer_of_n_is_reserved_and_charged(backend) {
        let app = TestApp::start(backend).await;
        app.pin_mid_period();
        let (admin, _) = app.admin().await;
        // Output only is priced: 5 tokens x $2000/M = 1 cent per answer.
        app.model(&admin, "mock-1", 0.0, 2000.0, None).await;
        let (key_id, key) = app.api_key(&admin, json!({"budget_limit_cents": 4})).await;
        let ask = |n: i64| json!({"model": "mock-1", "n": n, "max_tokens": 5, "messages": [{"role": "user", "content": "go [mock:words=50]"}]});
        // Three answers of up to 5 tokens cost up to 3 cents.
        let three = app.chat(&key, ask(3)).await.expect(200);
        assert_eq!(three.body["choices"].as_array().unwrap().len(), 3);
        assert_eq!(three.body["usage"]["completion_tokens"], 15);
        assert_eq!(used(&counters(&app, &admin, &key_id).await, "budget"), 30_000);
        // One cent is left: two answers' worst case does not fit, one answer's does.
        app.chat(&key, ask(2)).await.expect_error(402, "budget_exceeded");
        app.chat(&key, ask(1)).await.expect(200);
        assert_eq!(used(&counters(&app, &admin, &key_id).await, "budget"), 40_000, "exactly the budget");
        app.chat(&key, ask(0)).await.expect_error(400, "invalid_value");
    }

    async fn a_dead_requests_reservation_is_released_when_its_lease_lapses(backend) {
        let app = TestApp::start(backend).await;
        // Mid-month, so that the hour the test moves the clock by stays in one budget period.
        app.clock.set("2031-03-15T12:00:00Z".parse().unwrap());
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 0.0, 2000.0, None).await;
        // A 10-cent budget; each request below costs exactly 1 cent (5 output tokens).
        let (key_id, key) = app.api_key(&admin, json!({"budget_limit_cents": 10, "budget_period": "monthly"})).await;
        let body = json!({"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "content": "go [mock:words=50]"}]});
        app.chat(&key, body.clone()).await.expect(200);
        // Three requests reserved and died (a kill -9 mid-flight): two whose leases lapsed (3.5
        // cents and half a cent held), one whose lease still runs (4 cents). Together they leave
        // exactly the next request's worst case (1 cent), so it is served without a refusal.
        let owner = tollgate::keys::Owner::User { user_id: app.get("/api/me", Some(&admin)).await.body["id"].as_str().unwrap().parse().unwrap() };
        let stored = tollgate::keys::get(app.state.store.as_ref(), &owner, key_id.parse().unwrap()).await.unwrap();
        let levels = tollgate::proxy::levels::levels(&stored, &Default::default());
        let worst = tollgate::limits::Charge { calls: 1, input_tokens: 10, output_tokens: 20, cost_micros: 40_000 };
        let now = app.clock.now();
        let dead = |id: &str, expires_at: i64| {
            let record = tollgate::usage::lease_record(&owner.tag(), stored.id, "mock-1", "chat/completions", None);
            tollgate::limits::LeaseSpec { id: id.to_string(), expires_at, record }
        };
        let most = tollgate::limits::Charge { cost_micros: 35_000, ..worst };
        tollgate::limits::reserve_levels(app.state.store.as_ref(), &levels, &most, now, &dead("dead-lapsed", now.timestamp() - 1)).await.unwrap();
        let half = tollgate::limits::Charge { cost_micros: 5_000, ..worst };
        tollgate::limits::reserve_levels(app.state.store.as_ref(), &levels, &half, now, &dead("dead-lapsed-b", now.timestamp() - 1)).await.unwrap();
        tollgate::limits::reserve_levels(app.state.store.as_ref(), &levels, &worst, now, &dead("dead-running", now.timestamp() + 3600)).await.unwrap();
        assert_eq!(used(&counters(&app, &admin, &key_id).await, "budget"), 90_000, "1 cent spent + 3.5 + 0.5 + 4 held");

        // The next request releases both lapsed leases in its settlement, and records the two
        // lost requests in that same transaction, beside its own record (so at its time: a
        // release after a refusal records them at the reservation's).
        let served = app.chat(&key, body.clone()).await.expect(200);
        assert_eq!(used(&counters(&app, &admin, &key_id).await, "budget"), 60_000, "2 cents spent + the running lease's 4");
        let served = tollgate::usage::by_request_id(app.state.store.as_ref(), served.headers["x-request-id"].to_str().unwrap()).await.unwrap().unwrap();
        for id in ["dead-lapsed", "dead-lapsed-b"] {
            let lost = tollgate::usage::by_request_id(app.state.store.as_ref(), id).await.unwrap().expect("the lost request is recorded");
            assert!(lost.cancelled && lost.cost_micros == 0 && lost.error.unwrap().contains("never settled"));
            assert_eq!(lost.recorded_at, served.recorded_at, "{id}: released by the settlement");
        }
        assert!(tollgate::usage::by_request_id(app.state.store.as_ref(), "dead-running").await.unwrap().is_none());
        // Released once: the next request finds nothing more to release.
        app.chat(&key, body.clone()).await.expect(200);
        assert_eq!(used(&counters(&app, &admin, &key_id).await, "budget"), 70_000);

        // A request refused only because of lapsed holds gets them released and is served:
        // 3 cents spent + 4 held by a running lease + 2.5 by a lapsed one leave no room for
        // this request's 1-cent worst case.
        let small = tollgate::limits::Charge { cost_micros: 25_000, ..worst };
        tollgate::limits::reserve_levels(app.state.store.as_ref(), &levels, &small, now, &dead("dead-lapsed-2", now.timestamp() - 1)).await.unwrap();
        assert_eq!(used(&counters(&app, &admin, &key_id).await, "budget"), 95_000);
        app.chat(&key, body.clone()).await.expect(200);
        assert_eq!(used(&counters(&app, &admin, &key_id).await, "budget"), 80_000, "4 cents spent + the running lease's 4");
        assert!(tollgate::usage::by_request_id(app.state.store.as_ref(), "dead-lapsed-2").await.unwrap().is_some(), "recorded as it was released");

        // An hour on, the other dead request's lease lapses too: the next request releases it,
        // and the counter holds exactly what the records say was spent.
        app.clock.advance(chrono::Duration::seconds(3601));
        let admin = app.login(tollgate_tests::ADMIN_EMAIL, tollgate_tests::ADMIN_PASSWORD).await;
        app.chat(&key, body.clone()).await.expect(200);
        assert_eq!(used(&counters(&app, &admin, &key_id).await, "budget"), 50_000, "5 cents spent, nothing held");
        assert!(tollgate::usage::by_request_id(app.state.store.as_ref(), "dead-running").await.unwrap().is_some(), "recorded as it was released");
        let logs = app.get("/admin/v1/me/usage/logs?limit=100", Some(&admin)).await.expect(200).body["data"].as_array().unwrap().clone();
        assert_eq!(logs.iter().map(|r| r["cost_micros"].as_i64().unwrap()).sum::<i64>(), 50_000);
        // The rollups count every record once, the lost ones included.
        tollgate::usage::rollups::roll_up(app.state.store.as_ref()).await.unwrap();
        let summary = app.get("/admin/v1/me/usage", Some(&admin)).await.expect(200).body;
        assert_eq!((summary["request_count"].as_u64(), summary["total_cost"].as_f64()), (Some(logs.len() as u64), Some(0.05)), "{summary}");

        // A lease is named for the minute it first lapses, where lapsed ones are looked for: a
        // renewal for less time than the request first took (one with fallbacks to try) keeps
        // the first expiry rather than lapse before its name says.
        let now = app.clock.now();
        let first = now.timestamp() + 7_200;
        let held = tollgate::limits::reserve_levels(app.state.store.as_ref(), &levels, &worst, now, &dead("renewed", first)).await.unwrap();
        assert!(tollgate::limits::renew(app.state.store.as_ref(), &held, now.timestamp() + 60).await.unwrap());
        let item = counters(&app, &admin, &key_id).await;
        let lease = held[0].lease.as_deref().unwrap();
        assert!(item[lease].as_str().unwrap().starts_with(&format!("{first};")), "{:?}", item[lease]);
        assert!(tollgate::limits::renew(app.state.store.as_ref(), &held, first + 600).await.unwrap());
        assert!(counters(&app, &admin, &key_id).await[lease].as_str().unwrap().starts_with(&format!("{};", first + 600)), "a later one moves it");
    }

    async fn settlement_returns_unused_reservation(backend) {
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 10.0, 20.0, None).await;
        let (key_id, key) = app.api_key(&admin, json!({"budget_limit_cents": 1000})).await;
        let r = app.chat(&key, json!({"model": "mock-1", "messages": [{"role": "user", "content": "a b c [mock:words=7]"}]})).await.expect(200);
        // Reserved: (the body's bytes + 7) x $10/M + 4096 (context window) x $20/M; spent: 4 x $10/M + 7 x $20/M.
        let spent = 4 * 10 + 7 * 20;
        assert_eq!(r.headers["x-tollgate-cost-usd"], format!("0.{spent:06}").as_str());
        assert_eq!(used(&counters(&app, &admin, &key_id).await, "budget"), spent);
        assert_eq!(r.headers["x-budget-remaining-usd"], format!("9.{:06}", 1_000_000 - spent).as_str());
    }
}

/// Two store round trips per request with a warm key cache: the reservation (one conditional
/// update, writing the request's lease too) and the settlement with the usage record (one
/// transaction). Counters change only by atomic ADD: never a put, never a SET.
async fn hot_path_round_trips(backend: tollgate_tests::Backend) {
    let (app, store) = CountingStore::app(backend).await;
    app.pin_mid_period();
    let (admin, _) = app.admin().await;
    app.model(&admin, "mock-1", 1.0, 1.0, None).await;
    let (_, key) = app.api_key(&admin, json!({"budget_limit_cents": 1000, "rate_limit_rpm": 1000, "rate_limit_tpm": 1000000})).await;
    let body = json!({"model": "mock-1", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    for streamed in [false, true, false] {
        let mut b = body.clone();
        b["stream"] = Value::Bool(streamed);
        app.chat(&key, b).await.expect(200); // warms the caches
        store.take();
        let mut b = body.clone();
        b["stream"] = Value::Bool(streamed);
        app.chat(&key, b).await.expect(200);
        // A streamed record is written just before [DONE], which the client has read.
        // The background task (the outbox's deliverer, the rollups and their lag, interrupted
        // account deletions) queries its partitions every few seconds, off every request's path.
        let background = |p: &str| p.starts_with("OUTBOX#") || p.starts_with(tollgate::usage::rollups::PENDING_PREFIX) || p == "DELETING";
        // So does its folding of pending rollup entries, one transaction on rollup items alone.
        let rollup_fold = |ops: &[tollgate::store::TxOp]| {
            ops.iter().all(|op| match op {
                tollgate::store::TxOp::Put { item, .. } => item["PK"].as_str().is_some_and(|pk| pk.starts_with("ROLLUP")),
                tollgate::store::TxOp::PutEntity { put, .. } => put.key.pk.starts_with("ROLLUP"),
                tollgate::store::TxOp::Update { key, .. } | tollgate::store::TxOp::Delete { key, .. } | tollgate::store::TxOp::Check { key, .. } => {
                    key.pk.starts_with("ROLLUP")
                }
            })
        };
        let ops: Vec<Op> = store
            .take()
            .into_iter()
            .filter(|op| !matches!(op, Op::Query(p) if background(p)) && !matches!(op, Op::Transact(ops) if rollup_fold(ops)))
            .collect();
        assert_eq!(ops.len(), 2, "streamed={streamed}: {ops:#?}");
        let Op::Update(reserve_key, reserve) = &ops[0] else { panic!("first a reservation: {ops:#?}") };
        // Counters change by ADD only; the one SET is the request's lease beside them.
        assert!(reserve_key.pk.starts_with("LIMITS#") && !reserve.add.is_empty());
        assert!(reserve.set.len() == 1 && reserve.set[0].0.starts_with("lease_"), "{:?}", reserve.set);
        let Op::Transact(settle) = &ops[1] else { panic!("then one transaction: {ops:#?}") };
        let mut counter_updates = 0;
        for op in settle {
            match op {
                tollgate::store::TxOp::Update { key, update, cond } if key.pk.starts_with("LIMITS#") => {
                    assert!(update.set.is_empty(), "counters change by ADD only");
                    assert!(update.remove.iter().any(|r| r.starts_with("lease_")), "the settlement drops its lease");
                    assert!(cond.is_some(), "only while the lease is still there");
                    counter_updates += 1;
                }
                tollgate::store::TxOp::Put { item, .. } => assert!(!item["PK"].as_str().unwrap().starts_with("LIMITS#")),
                tollgate::store::TxOp::PutEntity { put, .. } => assert!(!put.key.pk.starts_with("LIMITS#")),
                _ => {}
            }
        }
        assert_eq!(counter_updates, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_path_makes_two_round_trips_embedded() {
    hot_path_round_trips(tollgate_tests::Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_path_makes_two_round_trips_dynamodb() {
    hot_path_round_trips(tollgate_tests::Backend::Dynamo).await;
}

/// An item's size as DynamoDB bills it: each attribute's name plus its value (strings by their
/// UTF-8 length, numbers about one byte per two digits plus one, lists and maps 3 bytes plus
/// their elements).
fn dynamo_size(item: &tollgate::store::Item) -> usize {
    use tollgate::store::Attr;
    fn value(v: &Attr) -> usize {
        match v {
            Attr::S(s) => s.len(),
            Attr::N(n) => n.unsigned_abs().to_string().len().div_ceil(2) + 1,
            Attr::Bool(_) | Attr::Null => 1,
            Attr::L(l) => 3 + l.iter().map(|v| value(v) + 1).sum::<usize>(),
            Attr::M(m) => 3 + m.iter().map(|(k, v)| k.len() + value(v) + 1).sum::<usize>(),
        }
    }
    item.iter().map(|(name, v)| name.len() + value(v)).sum()
}

backend_tests! {
    mod hot_key;

    /// One key's counters are one item, which DynamoDB writes at most 1,000 WCU a second (a
    /// partition's limit), each write billed per started KB of the item as it stands. Every
    /// request in flight keeps a lease on that item, so its size, and with it what each
    /// reservation and settlement costs, grows with the key's concurrency. This pins the figures
    /// the README's "One key's ceiling on DynamoDB" computes that ceiling from.
    async fn a_keys_counters_item_grows_by_one_short_lease_per_request_in_flight(backend) {
        const IN_FLIGHT: usize = 32;
        let app = TestApp::start(backend).await;
        let (admin, _) = app.admin().await;
        app.model(&admin, "mock-1", 1.0, 1.0, None).await;
        let (key_id, key) = app.api_key(&admin, json!({"budget_limit_cents": 100000, "rate_limit_rpm": 100000, "rate_limit_tpm": 100000000})).await;
        let body = |content: &str| json!({"model": "mock-1", "max_tokens": 10, "messages": [{"role": "user", "content": content}]});
        app.chat(&key, body("hi")).await.expect(200);
        let idle = counters(&app, &admin, &key_id).await;
        let leases = |item: &tollgate::store::Item| item.keys().filter(|k| k.starts_with("lease_")).count();
        assert_eq!(leases(&idle), 0);

        // Held upstream long enough for all of them to be in flight at once.
        let requests = join_all((0..IN_FLIGHT).map(|_| app.chat(&key, body("hi [mock:delay_ms=5000]"))));
        let watch = async {
            let mut busiest = idle.clone();
            for _ in 0..600 {
                let item = counters(&app, &admin, &key_id).await;
                if leases(&item) > leases(&busiest) {
                    busiest = item;
                }
                if leases(&busiest) == IN_FLIGHT {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            busiest
        };
        let (results, busy) = tokio::join!(requests, watch);
        assert!(results.iter().all(|r| r.status == 200));
        assert_eq!(leases(&busy), IN_FLIGHT, "every request in flight holds one lease");
        let (idle_size, busy_size) = (dynamo_size(&idle), dynamo_size(&busy));
        let per_lease = (busy_size - idle_size) / IN_FLIGHT;
        println!("counters item: {idle_size} bytes idle, {busy_size} bytes with {IN_FLIGHT} requests in flight: {per_lease} bytes per lease");
        assert!(idle_size <= 400, "idle counters of three limits: {idle_size} bytes");
        assert!((150..=320).contains(&per_lease), "a lease is {per_lease} bytes: {busy:#?}");
        assert_eq!(leases(&counters(&app, &admin, &key_id).await), 0, "settled, every lease is gone");
    }
}
