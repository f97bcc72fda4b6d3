//! One conformance suite for both stores: whatever the embedded store does, DynamoDB (on
//! moto's server here) must do the same, and the other way round.

use std::sync::Arc;

use tollgate::store::{Attr, Cond, EntityPut, Index, Item, Key, Query, Store, StoreError, TTL, TxOp, Update, set_index};
use tollgate_tests::{backend_tests, store_for};

fn item(pk: &str, sk: &str, extra: &[(&str, Attr)]) -> Item {
    let mut i = Item::from([("PK".to_string(), Attr::S(pk.into())), ("SK".to_string(), Attr::S(sk.into()))]);
    for (k, v) in extra {
        i.insert((*k).to_string(), v.clone());
    }
    i
}

fn sks(items: &[Item]) -> Vec<String> {
    items.iter().map(|i| i["SK"].as_str().unwrap().to_string()).collect()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Every page of a query, following cursors.
async fn pages(store: &dyn Store, query: Query) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.query(query.clone().cursor(cursor)).await.unwrap();
        out.push(sks(&page.items));
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

backend_tests! {
    async fn put_then_get_round_trips_every_attribute_type(backend) {
        let (store, _dir) = store_for(backend).await;
        let mut nested = std::collections::BTreeMap::new();
        nested.insert("inner".to_string(), Attr::N(-7));
        let it = item("P#1", "S#1", &[
            ("s", Attr::S("text ünïcode".into())), ("n", Attr::N(9_007_199_254_740_993)), ("b", Attr::Bool(true)),
            ("z", Attr::Null), ("l", Attr::L(vec![Attr::S("a".into()), Attr::N(1)])), ("m", Attr::M(nested)),
        ]);
        store.put(it.clone(), None).await.unwrap();
        assert_eq!(store.get(&Key::new("P#1", "S#1")).await.unwrap(), Some(it));
        assert_eq!(store.get(&Key::new("P#1", "S#2")).await.unwrap(), None);
    }

    async fn conditional_put_refuses_an_existing_item_and_leaves_it_alone(backend) {
        let (store, _dir) = store_for(backend).await;
        store.put(item("P", "S", &[("v", Attr::N(1))]), Some(Cond::NotExists)).await.unwrap();
        let second = store.put(item("P", "S", &[("v", Attr::N(2))]), Some(Cond::NotExists)).await;
        assert!(matches!(second, Err(StoreError::ConditionFailed)), "{second:?}");
        assert_eq!(store.get(&Key::new("P", "S")).await.unwrap().unwrap()["v"], Attr::N(1));
        // Conditions on attributes: equal passes, different fails; missing attributes compare false.
        store.put(item("P", "S", &[("v", Attr::N(3))]), Some(Cond::eq("v", 1i64))).await.unwrap();
        assert!(matches!(store.put(item("P", "S", &[]), Some(Cond::eq("v", 1i64))).await, Err(StoreError::ConditionFailed)));
        assert!(matches!(store.put(item("P", "S", &[]), Some(Cond::Lt("missing".into(), 5))).await, Err(StoreError::ConditionFailed)));
        assert!(matches!(store.put(item("P", "S", &[]), Some(Cond::Ne("missing".into(), Attr::N(5)))).await, Err(StoreError::ConditionFailed)));
        store.put(item("P", "S", &[("v", Attr::N(4))]), Some(Cond::Or(vec![Cond::AttrNotExists("x".into()), Cond::eq("v", 0i64)]))).await.unwrap();
        assert_eq!(store.get(&Key::new("P", "S")).await.unwrap().unwrap()["v"], Attr::N(4));
    }

    async fn conditions_of_any_nesting_are_accepted(backend) {
        let (store, _dir) = store_for(backend).await;
        store.put(item("N", "1", &[("a", Attr::N(1)), ("b", Attr::N(2))]), None).await.unwrap();
        let le = |n: &str, v| Cond::Le(n.into(), v);
        let shapes = [
            Cond::And(vec![Cond::Or(vec![Cond::AttrNotExists("x".into()), le("a", 5)])]),
            Cond::Or(vec![Cond::And(vec![le("a", 5)])]),
            Cond::And(vec![Cond::And(vec![le("a", 5), le("b", 5)]), Cond::Or(vec![Cond::Or(vec![le("a", 0), le("b", 9)])])]),
            Cond::And(vec![Cond::Ne("a".into(), Attr::N(7)), Cond::Or(vec![Cond::Ne("b".into(), Attr::N(2)), Cond::Exists])]),
        ];
        for cond in shapes {
            store.update(&Key::new("N", "1"), Update::default().add("a", 0), Some(cond.clone())).await.unwrap_or_else(|e| panic!("{cond:?}: {e}"));
        }
        let refused = Cond::And(vec![Cond::Or(vec![le("a", 0)]), Cond::And(vec![le("b", 9)])]);
        assert!(matches!(store.update(&Key::new("N", "1"), Update::default().add("a", 1), Some(refused)).await, Err(StoreError::ConditionFailed)));
    }

    async fn absent_or_at_most_passes_a_missing_or_small_number(backend) {
        let (store, _dir) = store_for(backend).await;
        let key = Key::new("M", "1");
        let at_most = |v| Cond::AbsentOrAtMost("used".into(), v);
        let refused = |r: Result<Item, StoreError>| matches!(r, Err(StoreError::ConditionFailed));
        // Absent: holds whatever the bound. Then 5 <= 5 holds, and 8 <= 7 does not.
        store.update(&key, Update::default().add("used", 5), Some(at_most(-1))).await.unwrap();
        store.update(&key, Update::default().add("used", 3), Some(at_most(5))).await.unwrap();
        assert!(refused(store.update(&key, Update::default().add("used", 1), Some(at_most(7))).await));
        // Nested, as the limits and the outbox use it: in an AND, and in an OR (which DynamoDB's
        // expression must not parenthesise twice).
        store.update(&key, Update::default().add("n", 1), Some(Cond::And(vec![at_most(8), Cond::Exists]))).await.unwrap();
        store.update(&key, Update::default().add("n", 1), Some(Cond::Or(vec![at_most(0), Cond::Le("n".into(), 1)]))).await.unwrap();
        assert!(refused(store.update(&key, Update::default().add("n", 1), Some(Cond::Or(vec![at_most(0), Cond::Le("n".into(), 1)]))).await));
        assert_eq!(store.get(&key).await.unwrap().unwrap()["n"], Attr::N(2));
    }

    async fn update_adds_atomically_sets_removes_and_returns_the_new_item(backend) {
        let (store, _dir) = store_for(backend).await;
        let key = Key::new("C", "W1");
        let after = store.update(&key, Update::default().add("used", 5).set("name", "budget"), None).await.unwrap();
        assert_eq!(after["used"], Attr::N(5));
        assert_eq!(after["name"], Attr::S("budget".into()));
        let after = store.update(&key, Update::default().add("used", 3).remove("name"), Some(Cond::Le("used".into(), 5))).await.unwrap();
        assert_eq!(after["used"], Attr::N(8));
        assert!(!after.contains_key("name"));
        let refused = store.update(&key, Update::default().add("used", 3), Some(Cond::Le("used".into(), 5))).await;
        assert!(matches!(refused, Err(StoreError::ConditionFailed)), "{refused:?}");
        assert_eq!(store.get(&key).await.unwrap().unwrap()["used"], Attr::N(8));
        let missing = store.update(&Key::new("C", "none"), Update::default().add("used", 1), Some(Cond::Exists)).await;
        assert!(matches!(missing, Err(StoreError::ConditionFailed)));
        assert_eq!(store.get(&Key::new("C", "none")).await.unwrap(), None, "a refused update must not create the item");
    }

    async fn set_if_absent_writes_once_even_inside_a_transaction(backend) {
        let (store, _dir) = store_for(backend).await;
        let k = Key::new("OUT#1", "threshold");
        let first = Update::default().set_if_absent("state", "pending").set_if_absent("used", Attr::N(80)).add("seen", 1);
        let item = store.update(&k, first, None).await.unwrap();
        assert_eq!((item["state"].as_str(), item["used"].as_i64(), item["seen"].as_i64()), (Some("pending"), Some(80), Some(1)));
        store.update(&k, Update::default().set("state", "sent"), None).await.unwrap();
        // Written again, as a later request would: what is there stays, in a transaction too.
        let again = Update::default().set_if_absent("state", "pending").set_if_absent("used", Attr::N(95)).add("seen", 1);
        store.transact(vec![TxOp::Update { key: k.clone(), update: again, cond: None }]).await.unwrap();
        let item = store.get(&k).await.unwrap().unwrap();
        assert_eq!((item["state"].as_str(), item["used"].as_i64(), item["seen"].as_i64()), (Some("sent"), Some(80), Some(2)));
    }

    async fn concurrent_conditional_adds_never_pass_the_limit(backend) {
        let (store, _dir) = store_for(backend).await;
        let store: Arc<dyn Store> = store;
        let key = Key::new("CTR#budget", "2026-11");
        const LIMIT: i64 = 10;
        let tasks: Vec<_> = (0..40).map(|_| {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let cond = Cond::Or(vec![Cond::AttrNotExists("used".into()), Cond::Le("used".into(), LIMIT - 1)]);
                store.update(&key, Update::default().add("used", 1), Some(cond)).await
            })
        }).collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(StoreError::ConditionFailed) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, LIMIT);
        assert_eq!(store.get(&key).await.unwrap().unwrap()["used"], Attr::N(LIMIT));
    }

    async fn transactions_are_all_or_nothing_and_name_the_failing_operation(backend) {
        let (store, _dir) = store_for(backend).await;
        store.put(item("T", "existing", &[("v", Attr::N(1))]), None).await.unwrap();
        let failing = vec![
            TxOp::Put { item: item("T", "new", &[]), cond: Some(Cond::NotExists) },
            TxOp::Update { key: Key::new("T", "counter"), update: Update::default().add("n", 1), cond: None },
            TxOp::Put { item: item("T", "existing", &[("v", Attr::N(2))]), cond: Some(Cond::NotExists) },
        ];
        let result = store.transact(failing).await;
        assert!(matches!(result, Err(StoreError::TransactionCancelled { index: 2 })), "{result:?}");
        assert_eq!(store.get(&Key::new("T", "new")).await.unwrap(), None, "nothing of a cancelled transaction is written");
        assert_eq!(store.get(&Key::new("T", "counter")).await.unwrap(), None);
        assert_eq!(store.get(&Key::new("T", "existing")).await.unwrap().unwrap()["v"], Attr::N(1));

        let check_fails = vec![
            TxOp::Check { key: Key::new("T", "absent"), cond: Cond::Exists },
            TxOp::Put { item: item("T", "new", &[]), cond: None },
        ];
        assert!(matches!(store.transact(check_fails).await, Err(StoreError::TransactionCancelled { index: 0 })));
        assert_eq!(store.get(&Key::new("T", "new")).await.unwrap(), None);

        let passing = vec![
            TxOp::Check { key: Key::new("T", "existing"), cond: Cond::eq("v", 1i64) },
            TxOp::Put { item: item("T", "new", &[]), cond: Some(Cond::NotExists) },
            TxOp::Update { key: Key::new("T", "counter"), update: Update::default().add("n", 2), cond: None },
            TxOp::Delete { key: Key::new("T", "gone"), cond: None },
        ];
        store.transact(passing).await.unwrap();
        assert!(store.get(&Key::new("T", "new")).await.unwrap().is_some());
        assert_eq!(store.get(&Key::new("T", "counter")).await.unwrap().unwrap()["n"], Attr::N(2));
    }

    async fn concurrent_transactions_each_stay_all_or_nothing(backend) {
        // The embedded store commits concurrent transactions together: each must still stand
        // or fall whole.
        let (store, _dir) = store_for(backend).await;
        let store: Arc<dyn Store> = store;
        let tasks: Vec<_> = (0..40).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ops = vec![
                    TxOp::Put { item: item("CT", &format!("item#{i:02}"), &[]), cond: Some(Cond::NotExists) },
                    TxOp::Update { key: Key::new("CT", "counter"), update: Update::default().add("n", 1), cond: None },
                ];
                if i % 2 == 1 {
                    ops.push(TxOp::Check { key: Key::new("CT", "missing"), cond: Cond::Exists });
                }
                (i, store.transact(ops).await)
            })
        }).collect();
        for t in tasks {
            let (i, result) = t.await.unwrap();
            if i % 2 == 0 {
                result.unwrap();
            } else {
                assert!(matches!(result, Err(StoreError::TransactionCancelled { index: 2 })), "{i}: {result:?}");
            }
        }
        assert_eq!(store.get(&Key::new("CT", "counter")).await.unwrap().unwrap()["n"], Attr::N(20));
        let items = store.query(Query::new(Index::Primary, "CT").prefix("item#")).await.unwrap().items;
        assert_eq!(sks(&items), (0..40).step_by(2).map(|i| format!("item#{i:02}")).collect::<Vec<_>>());
    }

    async fn query_honours_prefix_order_and_between(backend) {
        let (store, _dir) = store_for(backend).await;
        for sk in ["b#1", "a#3", "a#1", "a#2", "c#1"] {
            store.put(item("Q", sk, &[]), None).await.unwrap();
        }
        store.put(item("OTHER", "a#0", &[]), None).await.unwrap();
        let q = Query::new(Index::Primary, "Q").prefix("a#");
        assert_eq!(sks(&store.query(q.clone()).await.unwrap().items), ["a#1", "a#2", "a#3"]);
        assert_eq!(sks(&store.query(q.backward()).await.unwrap().items), ["a#3", "a#2", "a#1"]);
        let between = Query::new(Index::Primary, "Q").between("a#2", "b#1");
        assert_eq!(sks(&store.query(between).await.unwrap().items), ["a#2", "a#3", "b#1"]);
        assert_eq!(sks(&store.query(Query::new(Index::Primary, "Q")).await.unwrap().items).len(), 5);
        assert!(store.query(Query::new(Index::Primary, "EMPTY")).await.unwrap().items.is_empty());
    }

    async fn pagination_cursors_walk_every_item_once_and_end_exactly(backend) {
        let (store, _dir) = store_for(backend).await;
        for i in 0..7 {
            store.put(item("PG", &format!("i#{i}"), &[]), None).await.unwrap();
        }
        let q = Query::new(Index::Primary, "PG").prefix("i#").limit(3);
        assert_eq!(pages(store.as_ref(), q.clone()).await, vec![vec!["i#0", "i#1", "i#2"], vec!["i#3", "i#4", "i#5"], vec!["i#6"]]);
        assert_eq!(pages(store.as_ref(), q.clone().backward()).await, vec![vec!["i#6", "i#5", "i#4"], vec!["i#3", "i#2", "i#1"], vec!["i#0"]]);
        // A page that ends exactly at the last item has no cursor: `has_more` is exact.
        store.delete(&Key::new("PG", "i#6"), None).await.unwrap();
        assert_eq!(pages(store.as_ref(), q.clone()).await, vec![vec!["i#0", "i#1", "i#2"], vec!["i#3", "i#4", "i#5"]]);
        let bad = store.query(q.cursor(Some("not a cursor".into()))).await;
        assert!(matches!(bad, Err(StoreError::InvalidCursor)), "{bad:?}");
    }

    async fn secondary_index_queries_order_and_paginate(backend) {
        let (store, _dir) = store_for(backend).await;
        for (i, email) in ["c@x", "a@x", "b@x", "d@x"].iter().enumerate() {
            let mut it = item(&format!("USER#{i}"), "PROFILE", &[("email", Attr::S((*email).into()))]);
            set_index(&mut it, Index::Gsi1, "USERS", *email);
            store.put(it, None).await.unwrap();
        }
        let q = Query::new(Index::Gsi1, "USERS").limit(3);
        let emails = |items: &[Item]| items.iter().map(|i| i["email"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        let first = store.query(q.clone()).await.unwrap();
        assert_eq!(emails(&first.items), ["a@x", "b@x", "c@x"]);
        let second = store.query(q.clone().cursor(first.cursor)).await.unwrap();
        assert_eq!(emails(&second.items), ["d@x"]);
        assert!(second.cursor.is_none());
        // Moving an item in the index (new index key) moves it in query results.
        let mut moved = item("USER#1", "PROFILE", &[("email", Attr::S("z@x".into()))]);
        set_index(&mut moved, Index::Gsi1, "USERS", "z@x");
        store.put(moved, None).await.unwrap();
        let all = store.query(Query::new(Index::Gsi1, "USERS").backward()).await.unwrap();
        assert_eq!(emails(&all.items), ["z@x", "d@x", "c@x", "b@x"]);
        store.delete(&Key::new("USER#1", "PROFILE"), None).await.unwrap();
        assert_eq!(store.query(Query::new(Index::Gsi1, "USERS")).await.unwrap().items.len(), 3);
    }

    async fn an_entity_put_whole_is_the_item_it_makes(backend) {
        #[derive(serde::Serialize)]
        struct Record {
            request_id: &'static str,
            input_tokens: u32,
            note: Option<String>,
            tags: Vec<&'static str>,
            ttl: i64,
        }
        let (store, _dir) = store_for(backend).await;
        let record = Arc::new(Record { request_id: "r1", input_tokens: 12, note: None, tags: vec!["a", "b"], ttl: 0 });
        let mut put = EntityPut::new(Key::new("E", "r1"), record.clone());
        put.index(Index::Gsi1, "BY#MODEL".into(), "ok#r1".into());
        // Replaces the entity's own field of that name.
        let ttl = now() + 3600;
        put.set(TTL, Attr::N(ttl));
        let expected = put.item().unwrap();
        assert_eq!((&expected["ttl"], &expected["input_tokens"], &expected["note"]), (&Attr::N(ttl), &Attr::N(12), &Attr::Null));
        assert_eq!((&expected["PK"], &expected["GSI1SK"]), (&Attr::S("E".into()), &Attr::S("ok#r1".into())));
        // First in a transaction, conditioned on being absent, as a usage record is.
        store.transact(vec![TxOp::PutEntity { put: put.clone(), cond: Some(Cond::NotExists) }]).await.unwrap();
        assert_eq!(store.get(&Key::new("E", "r1")).await.unwrap(), Some(expected.clone()));
        assert_eq!(store.query(Query::new(Index::Gsi1, "BY#MODEL")).await.unwrap().items, vec![expected.clone()]);
        let again = store.transact(vec![TxOp::PutEntity { put, cond: Some(Cond::NotExists) }]).await;
        assert!(matches!(again, Err(StoreError::TransactionCancelled { index: 0 })), "{again:?}");
        assert_eq!(store.get(&Key::new("E", "r1")).await.unwrap(), Some(expected));
    }

    async fn delete_with_and_without_conditions(backend) {
        let (store, _dir) = store_for(backend).await;
        store.put(item("D", "1", &[("owner", Attr::S("me".into()))]), None).await.unwrap();
        assert!(matches!(store.delete(&Key::new("D", "1"), Some(Cond::eq("owner", "you"))).await, Err(StoreError::ConditionFailed)));
        assert!(store.get(&Key::new("D", "1")).await.unwrap().is_some());
        store.delete(&Key::new("D", "1"), Some(Cond::eq("owner", "me"))).await.unwrap();
        assert!(store.get(&Key::new("D", "1")).await.unwrap().is_none());
        assert!(matches!(store.delete(&Key::new("D", "1"), Some(Cond::Exists)).await, Err(StoreError::ConditionFailed)));
        store.delete(&Key::new("D", "1"), None).await.unwrap();
    }

    async fn expired_items_are_absent_to_reads_and_conditions(backend) {
        let (store, _dir) = store_for(backend).await;
        let past = now() - 10;
        let future = now() + 3600;
        let mut expired = item("TTL", "old", &[(TTL, Attr::N(past)), ("v", Attr::N(1))]);
        set_index(&mut expired, Index::Gsi1, "TTLS", "old");
        store.put(expired, None).await.unwrap();
        let mut live = item("TTL", "new", &[(TTL, Attr::N(future))]);
        set_index(&mut live, Index::Gsi1, "TTLS", "new");
        store.put(live, None).await.unwrap();

        assert_eq!(store.get(&Key::new("TTL", "old")).await.unwrap(), None);
        assert!(store.get(&Key::new("TTL", "new")).await.unwrap().is_some());
        assert_eq!(sks(&store.query(Query::new(Index::Primary, "TTL")).await.unwrap().items), ["new"]);
        assert_eq!(sks(&store.query(Query::new(Index::Gsi1, "TTLS")).await.unwrap().items), ["new"]);
        // Paging past expired items still fills pages and ends exactly.
        assert_eq!(pages(store.as_ref(), Query::new(Index::Primary, "TTL").limit(1)).await, vec![vec!["new"]]);

        let exists = store.update(&Key::new("TTL", "old"), Update::default().add("v", 1), Some(Cond::Exists)).await;
        assert!(matches!(exists, Err(StoreError::ConditionFailed)), "an expired item does not exist: {exists:?}");
        let attr_cond = store.put(item("TTL", "old", &[]), Some(Cond::eq("v", 1i64))).await;
        assert!(matches!(attr_cond, Err(StoreError::ConditionFailed)), "an expired item's attributes are gone: {attr_cond:?}");
        store.put(item("TTL", "old", &[("v", Attr::N(5))]), Some(Cond::NotExists)).await.unwrap();
        assert_eq!(store.get(&Key::new("TTL", "old")).await.unwrap().unwrap()["v"], Attr::N(5));
    }
}

/// The embedded store's buffered writes (reservations; settlements under relaxed durability)
/// are visible at once, and durable by the time the store has flushed: here, closing it.
#[tokio::test]
async fn embedded_buffered_writes_are_visible_at_once_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let store = tollgate::store::EmbeddedStore::open(&path).unwrap();
        store.update_buffered(&Key::new("B", "counter"), Update::default().add("n", 3), None).await.unwrap();
        store.transact_buffered(vec![TxOp::Put { item: item("B", "record", &[]), cond: Some(Cond::NotExists) }]).await.unwrap();
        assert_eq!(store.get(&Key::new("B", "counter")).await.unwrap().unwrap()["n"], Attr::N(3));
        let again = store.transact_buffered(vec![TxOp::Put { item: item("B", "record", &[]), cond: Some(Cond::NotExists) }]).await;
        assert!(matches!(again, Err(StoreError::TransactionCancelled { index: 0 })));
    }
    let reopened = tollgate::store::EmbeddedStore::open(&path).unwrap();
    assert_eq!(reopened.get(&Key::new("B", "counter")).await.unwrap().unwrap()["n"], Attr::N(3));
    assert!(reopened.get(&Key::new("B", "record")).await.unwrap().is_some());
}

/// The embedded store answers reads from its in-memory overlay (writes redb has not committed
/// yet) and from redb together. Whatever mix of the two a query meets -- items only in memory,
/// items deleted or moved to other index keys in memory but still in redb -- it must answer as
/// it does once everything is committed: here, the same queries before and after reopening.
#[tokio::test]
async fn embedded_queries_over_uncommitted_writes_match_the_committed_answers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let seed = std::cell::Cell::new(0x2545_f491_4f6c_dd1du64);
    let next = |n: u64| {
        let mut s = seed.get();
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        seed.set(s);
        s % n
    };
    let random_item = |expired: bool| {
        let sk = format!("{}{}", ["a", "b", "c", "d", "e"][next(5) as usize], next(12));
        let mut it = item("Q", &sk, &[("v", Attr::N(next(100) as i64))]);
        if next(4) > 0 {
            set_index(&mut it, Index::Gsi1, ["G1", "G2"][next(2) as usize], format!("{}{}", ["x", "y"][next(2) as usize], next(6)));
        }
        if expired {
            it.insert(TTL.into(), Attr::N(now() - 10));
        }
        (sk, it)
    };
    let queries = || {
        let mut all = Vec::new();
        for limit in [1, 3, 100] {
            all.push(Query::new(Index::Primary, "Q").limit(limit));
            all.push(Query::new(Index::Primary, "Q").backward().limit(limit));
            all.push(Query::new(Index::Primary, "Q").prefix("b").limit(limit));
            all.push(Query::new(Index::Primary, "Q").between("b5", "d").backward().limit(limit));
            for pk in ["G1", "G2"] {
                all.push(Query::new(Index::Gsi1, pk).limit(limit));
                all.push(Query::new(Index::Gsi1, pk).backward().limit(limit));
                all.push(Query::new(Index::Gsi1, pk).prefix("y").limit(limit));
            }
        }
        all
    };
    let answers = async |store: &dyn Store| {
        let mut out = Vec::new();
        for q in queries() {
            out.push(pages(store, q).await);
        }
        out
    };
    let before = {
        let store = tollgate::store::EmbeddedStore::open(&path).unwrap();
        for _ in 0..40 {
            store.put(random_item(false).1, None).await.unwrap();
        }
        for _ in 0..150 {
            let (sk, it) = random_item(next(8) == 0);
            let op = match next(3) {
                0 => TxOp::Put { item: it, cond: None },
                1 => TxOp::Delete { key: Key::new("Q", sk), cond: None },
                _ => TxOp::Update { key: Key::new("Q", sk), update: Update::default().add("v", 1), cond: Some(Cond::Exists) },
            };
            let _ = store.transact_buffered(vec![op]).await;
        }
        answers(&store).await
    };
    let reopened = tollgate::store::EmbeddedStore::open(&path).unwrap();
    let after = answers(&reopened).await;
    assert!(after.iter().map(|pages| pages.concat().len()).sum::<usize>() > 100, "the queries found too little to compare");
    assert_eq!(before, after);
}
