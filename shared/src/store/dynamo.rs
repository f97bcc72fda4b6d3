//! The DynamoDB store (aws-sdk-dynamodb). Conditions are rendered from the same `Cond` tree the
//! embedded store evaluates; TTL-expired items, which DynamoDB deletes only eventually, are
//! treated as absent by every condition and filtered from every read.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType, Put,
    ReturnValue, ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem, Update as DdbUpdate,
};

use super::{
    Attr, Cond, Index, Item, Key, PK, Page, Query, SK, SkCond, Store, StoreError, StoreResult, TTL, TxOp, Update, decode_cursor, holds, is_expired, now_epoch,
};

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn backend<E: std::error::Error>(err: E) -> StoreError {
    StoreError::Backend(DisplayErrorContext(err).to_string())
}

fn to_av(attr: &Attr) -> AttributeValue {
    match attr {
        Attr::S(s) => AttributeValue::S(s.clone()),
        Attr::N(n) => AttributeValue::N(n.to_string()),
        Attr::Bool(b) => AttributeValue::Bool(*b),
        Attr::Null => AttributeValue::Null(true),
        Attr::L(l) => AttributeValue::L(l.iter().map(to_av).collect()),
        Attr::M(m) => AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), to_av(v))).collect()),
    }
}

fn from_av(av: AttributeValue) -> StoreResult<Attr> {
    Ok(match av {
        AttributeValue::S(s) => Attr::S(s),
        AttributeValue::N(n) => Attr::N(n.parse().map_err(|_| StoreError::Backend(format!("non-integer number {n}")))?),
        AttributeValue::Bool(b) => Attr::Bool(b),
        AttributeValue::Null(_) => Attr::Null,
        AttributeValue::L(l) => Attr::L(l.into_iter().map(from_av).collect::<StoreResult<_>>()?),
        AttributeValue::M(m) => Attr::M(m.into_iter().map(|(k, v)| Ok((k, from_av(v)?))).collect::<StoreResult<_>>()?),
        other => return Err(StoreError::Backend(format!("unsupported attribute type {other:?}"))),
    })
}

fn to_map(item: &Item) -> HashMap<String, AttributeValue> {
    item.iter().map(|(k, v)| (k.clone(), to_av(v))).collect()
}

fn from_map(map: HashMap<String, AttributeValue>) -> StoreResult<Item> {
    map.into_iter().map(|(k, v)| Ok((k, from_av(v)?))).collect()
}

fn key_map(key: &Key) -> HashMap<String, AttributeValue> {
    HashMap::from([(PK.to_string(), AttributeValue::S(key.pk.clone())), (SK.to_string(), AttributeValue::S(key.sk.clone()))])
}

/// Collects the placeholder names and values of one request's expressions.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, name: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, n)| *n == name) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), name.to_string());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// The condition as DynamoDB would evaluate it on the stored item, expired or not. Compound
    /// expressions come back bare and are parenthesised only inside others: DynamoDB rejects
    /// redundant parentheses.
    fn raw(&mut self, cond: &Cond) -> String {
        let cmp = |e: &mut Expr, n: &str, op: &str, v: i64| {
            let (n, v) = (e.name(n), e.value(AttributeValue::N(v.to_string())));
            format!("{n} {op} {v}")
        };
        match cond {
            Cond::Exists => format!("attribute_exists({})", self.name(PK)),
            Cond::NotExists => format!("attribute_not_exists({})", self.name(PK)),
            Cond::AttrExists(n) => format!("attribute_exists({})", self.name(n)),
            Cond::AttrNotExists(n) => format!("attribute_not_exists({})", self.name(n)),
            Cond::Eq(n, v) => {
                let (n, v) = (self.name(n), self.value(to_av(v)));
                format!("{n} = {v}")
            }
            // DynamoDB's `<>` holds for a missing attribute; ours does not.
            Cond::Ne(n, v) => {
                let (n, v) = (self.name(n), self.value(to_av(v)));
                format!("attribute_exists({n}) AND {n} <> {v}")
            }
            Cond::Lt(n, v) => cmp(self, n, "<", *v),
            Cond::Le(n, v) => cmp(self, n, "<=", *v),
            Cond::Gt(n, v) => cmp(self, n, ">", *v),
            Cond::Ge(n, v) => cmp(self, n, ">=", *v),
            // `condition` expands it before rendering (`simplify`); rendered as that expansion
            // here too, so its text is written in one place.
            Cond::AbsentOrAtMost(..) => self.raw(&simplify(cond)),
            Cond::And(cs) | Cond::Or(cs) => {
                let joiner = if matches!(cond, Cond::And(_)) { " AND " } else { " OR " };
                if cs.is_empty() {
                    // An empty AND holds and an empty OR does not, as in `holds`.
                    let pk = self.name(PK);
                    return format!("attribute_exists({pk}){}attribute_not_exists({pk})", if joiner == " AND " { " OR " } else { " AND " });
                }
                cs.iter().map(|c| self.nested(c)).collect::<Vec<_>>().join(joiner)
            }
        }
    }

    /// `raw`, parenthesised when compound.
    fn nested(&mut self, cond: &Cond) -> String {
        let text = self.raw(cond);
        if matches!(cond, Cond::And(_) | Cond::Or(_) | Cond::Ne(..) | Cond::AbsentOrAtMost(..)) { format!("({text})") } else { text }
    }

    /// The condition with an expired item counting as absent: on an expired item it takes the
    /// value it would have on no item at all.
    fn condition(&mut self, cond: &Cond) -> String {
        let cond = &simplify(cond);
        let inner = self.nested(cond);
        let ttl = self.name(TTL);
        let now = self.value(AttributeValue::N(now_epoch().to_string()));
        if holds(cond, None) { format!("{ttl} <= {now} OR {inner}") } else { format!("(attribute_not_exists({ttl}) OR {ttl} > {now}) AND {inner}") }
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }
    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// Flattens AND-in-AND and OR-in-OR, and unwraps single-child AND/OR, so that rendering never
/// yields the redundant parentheses DynamoDB refuses.
fn simplify(cond: &Cond) -> Cond {
    match cond {
        Cond::And(cs) | Cond::Or(cs) => {
            let is_and = matches!(cond, Cond::And(_));
            let mut flat = Vec::new();
            for c in cs.iter().map(simplify) {
                match c {
                    Cond::And(inner) if is_and => flat.extend(inner),
                    Cond::Or(inner) if !is_and => flat.extend(inner),
                    other => flat.push(other),
                }
            }
            if flat.len() == 1 {
                flat.pop().unwrap_or(Cond::Exists)
            } else if is_and {
                Cond::And(flat)
            } else {
                Cond::Or(flat)
            }
        }
        // Its two halves, so that an OR around it is flattened like any other.
        Cond::AbsentOrAtMost(n, v) => Cond::Or(vec![Cond::AttrNotExists(n.clone()), Cond::Le(n.clone(), *v)]),
        other => other.clone(),
    }
}

fn update_expression(e: &mut Expr, update: &Update) -> String {
    let mut parts = Vec::new();
    if !update.set.is_empty() || !update.set_if_absent.is_empty() {
        let mut sets: Vec<String> = update.set.iter().map(|(n, v)| format!("{} = {}", e.name(n), e.value(to_av(v)))).collect();
        for (n, v) in &update.set_if_absent {
            let name = e.name(n);
            sets.push(format!("{name} = if_not_exists({name}, {})", e.value(to_av(v))));
        }
        parts.push(format!("SET {}", sets.join(", ")));
    }
    if !update.add.is_empty() {
        let adds: Vec<String> = update.add.iter().map(|(n, d)| format!("{} {}", e.name(n), e.value(AttributeValue::N(d.to_string())))).collect();
        parts.push(format!("ADD {}", adds.join(", ")));
    }
    if !update.remove.is_empty() {
        let removes: Vec<String> = update.remove.iter().map(|n| e.name(n)).collect();
        parts.push(format!("REMOVE {}", removes.join(", ")));
    }
    parts.join(" ")
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// Creates the table with its keys, GSIs and TTL when it does not exist yet (local use and
    /// tests; in AWS the SAM template owns the table).
    pub async fn create_table_if_missing(&self) -> StoreResult<()> {
        let attr = |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().map_err(backend);
        let key = |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(backend);
        let mut request = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?);
        for name in [PK, SK, "GSI1PK", "GSI1SK", "GSI2PK", "GSI2SK"] {
            request = request.attribute_definitions(attr(name)?);
        }
        for index in [Index::Gsi1, Index::Gsi2] {
            let (ipk, isk) = index.key_names();
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index.name().unwrap_or_default())
                    .key_schema(key(ipk, KeyType::Hash)?)
                    .key_schema(key(isk, KeyType::Range)?)
                    .projection(Projection::builder().projection_type(ProjectionType::All).build())
                    .build()
                    .map_err(backend)?,
            );
        }
        match request.send().await {
            Ok(_) => {}
            Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => return Ok(()),
            Err(err) => return Err(backend(err)),
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(TimeToLiveSpecification::builder().attribute_name(TTL).enabled(true).build().map_err(backend)?)
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// Whether the table exists and answers (one DescribeTable; asked by the local server at
    /// start, never on Lambda's cold-start path).
    pub async fn ready(&self) -> Result<(), crate::readiness::Unready> {
        self.client.describe_table().table_name(&self.table).send().await.map(|_| ()).map_err(|e| crate::readiness::classify(&e))
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Deletes the table (tests clean up after themselves).
    pub async fn delete_table(&self) -> StoreResult<()> {
        self.client.delete_table().table_name(&self.table).send().await.map_err(backend)?;
        Ok(())
    }

    fn tx_put(&self, item: &Item, cond: Option<&Cond>) -> StoreResult<TransactWriteItem> {
        let mut e = Expr::default();
        let c = cond.map(|c| e.condition(c));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_map(item)))
            .set_condition_expression(c)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .build()
            .map_err(backend)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn tx_item(&self, op: &TxOp) -> StoreResult<TransactWriteItem> {
        let mut e = Expr::default();
        let item = match op {
            TxOp::Put { item, cond } => self.tx_put(item, cond.as_ref())?,
            // An entity put whole is the item it makes, put as any other.
            TxOp::PutEntity { put, cond } => self.tx_put(&put.item()?, cond.as_ref())?,
            TxOp::Update { key, update, cond } => {
                let u = update_expression(&mut e, update);
                let c = cond.as_ref().map(|c| e.condition(c));
                let upd = DdbUpdate::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_map(key)))
                    .update_expression(u)
                    .set_condition_expression(c)
                    .set_expression_attribute_names(e.names())
                    .set_expression_attribute_values(e.values())
                    .build()
                    .map_err(backend)?;
                TransactWriteItem::builder().update(upd).build()
            }
            TxOp::Delete { key, cond } => {
                let c = cond.as_ref().map(|c| e.condition(c));
                let del = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_map(key)))
                    .set_condition_expression(c)
                    .set_expression_attribute_names(e.names())
                    .set_expression_attribute_values(e.values())
                    .build()
                    .map_err(backend)?;
                TransactWriteItem::builder().delete(del).build()
            }
            TxOp::Check { key, cond } => {
                let c = e.condition(cond);
                let check = ConditionCheck::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_map(key)))
                    .condition_expression(c)
                    .set_expression_attribute_names(e.names())
                    .set_expression_attribute_values(e.values())
                    .build()
                    .map_err(backend)?;
                TransactWriteItem::builder().condition_check(check).build()
            }
        };
        Ok(item)
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        let out = self.client.get_item().table_name(&self.table).set_key(Some(key_map(key))).consistent_read(true).send().await.map_err(backend)?;
        match out.item {
            Some(map) => {
                let item = from_map(map)?;
                Ok((!is_expired(&item, now_epoch())).then_some(item))
            }
            None => Ok(None),
        }
    }

    async fn put(&self, item: Item, cond: Option<Cond>) -> StoreResult<()> {
        let mut e = Expr::default();
        let c = cond.as_ref().map(|c| e.condition(c));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_map(&item)))
            .set_condition_expression(c)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Err(StoreError::ConditionFailed),
            Err(err) => Err(backend(err)),
        }
    }

    async fn update(&self, key: &Key, update: Update, cond: Option<Cond>) -> StoreResult<Item> {
        let mut e = Expr::default();
        let u = update_expression(&mut e, &update);
        if u.is_empty() {
            return Err(StoreError::Backend("an update must change something".into()));
        }
        let c = cond.as_ref().map(|c| e.condition(c));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .update_expression(u)
            .set_condition_expression(c)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => from_map(out.attributes.unwrap_or_default()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Err(StoreError::ConditionFailed),
            Err(err) => Err(backend(err)),
        }
    }

    async fn delete(&self, key: &Key, cond: Option<Cond>) -> StoreResult<()> {
        let mut e = Expr::default();
        let c = cond.as_ref().map(|c| e.condition(c));
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_map(key)))
            .set_condition_expression(c)
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Err(StoreError::ConditionFailed),
            Err(err) => Err(backend(err)),
        }
    }

    async fn query(&self, q: Query) -> StoreResult<Page> {
        let (ipk, isk) = q.index.key_names();
        let mut start = match &q.cursor {
            Some(c) => Some(decode_cursor(c, q.index)?.into_iter().map(|(k, v)| (k, AttributeValue::S(v))).collect::<HashMap<_, _>>()),
            None => None,
        };
        let want = q.limit + 1;
        let mut found: Vec<Item> = Vec::new();
        let now = now_epoch();
        loop {
            let mut e = Expr::default();
            let mut key_cond = format!("{} = {}", e.name(ipk), e.value(AttributeValue::S(q.pk.clone())));
            match &q.sk {
                Some(SkCond::Prefix(p)) => key_cond += &format!(" AND begins_with({}, {})", e.name(isk), e.value(AttributeValue::S(p.clone()))),
                Some(SkCond::Between(a, b)) => {
                    key_cond += &format!(" AND {} BETWEEN {} AND {}", e.name(isk), e.value(AttributeValue::S(a.clone())), e.value(AttributeValue::S(b.clone())))
                }
                None => {}
            }
            let ttl = e.name(TTL);
            let filter = format!("attribute_not_exists({ttl}) OR {ttl} > {}", e.value(AttributeValue::N(now.to_string())));
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(q.index.name().map(str::to_string))
                .key_condition_expression(key_cond)
                .filter_expression(filter)
                .set_expression_attribute_names(e.names())
                .set_expression_attribute_values(e.values())
                .scan_index_forward(q.forward)
                .limit(i32::try_from(want - found.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .set_consistent_read((q.index == Index::Primary).then_some(true))
                .send()
                .await
                .map_err(backend)?;
            for map in out.items.unwrap_or_default() {
                found.push(from_map(map)?);
            }
            match out.last_evaluated_key {
                Some(lek) if found.len() < want => start = Some(lek),
                _ => break,
            }
        }
        Ok(super::page_of(found, q.limit, q.index))
    }

    async fn transact(&self, ops: Vec<TxOp>) -> StoreResult<()> {
        let items = ops.iter().map(|op| self.tx_item(op)).collect::<StoreResult<Vec<_>>>()?;
        // DynamoDB cancels a transaction that meets another one on the same item
        // (TransactionConflict); nothing was written, so it is safe to try again. Every
        // request's settlement touches its key's counter item, so this happens under load.
        let mut attempt = 0u32;
        loop {
            let result = self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await;
            let err = match result {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            let reasons: Vec<String> = match err.as_service_error() {
                Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => {
                    c.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_string()).collect()
                }
                _ => return Err(backend(err)),
            };
            if let Some(index) = reasons.iter().position(|code| code == "ConditionalCheckFailed") {
                return Err(StoreError::TransactionCancelled { index });
            }
            if reasons.iter().any(|code| code == "TransactionConflict") && attempt < MAX_CONFLICT_RETRIES {
                attempt += 1;
                tokio::time::sleep(conflict_backoff(attempt)).await;
                continue;
            }
            return Err(backend(err));
        }
    }
}

const MAX_CONFLICT_RETRIES: u32 = 8;

/// 5, 10, 20 ... ms, with jitter so that colliding transactions spread out.
fn conflict_backoff(attempt: u32) -> std::time::Duration {
    let base = 5u64 << attempt.min(6);
    let mut jitter = [0u8; 1];
    let _ = getrandom::fill(&mut jitter);
    std::time::Duration::from_millis(base + u64::from(jitter[0]) % base.max(1))
}

/// DynamoDB answers transactions that collide with `TransactionConflict`, which no emulator
/// reproduces on demand; a local HTTP endpoint speaking DynamoDB's JSON protocol stands in for
/// AWS here, answering the SDK as the service documents.
#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    use axum::http::{HeaderMap, StatusCode};

    use super::*;

    /// Answers every TransactWriteItems with the cancellation reasons `answers[n]` for the
    /// n-th call (`None`: success; past the end, the last answer again); counts the calls.
    async fn fake_dynamodb(answers: Vec<Option<&'static str>>) -> (DynamoStore, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let answer = answers[n.min(answers.len() - 1)];
            async move {
                let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
                assert_eq!(target, "DynamoDB_20120810.TransactWriteItems");
                let json = [(axum::http::header::CONTENT_TYPE, "application/x-amz-json-1.0")];
                match answer {
                    None => (StatusCode::OK, json, "{}".to_string()),
                    Some(code) => (
                        StatusCode::BAD_REQUEST,
                        json,
                        serde_json::json!({
                            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                            "Message": format!("Transaction cancelled, please refer cancellation reasons for specific reasons [None, {code}]"),
                            "CancellationReasons": [{"Code": "None"}, {"Code": code, "Message": "from the fake"}],
                        })
                        .to_string(),
                    ),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("t", "t", None, None, "test"))
            .endpoint_url(url)
            .build();
        (DynamoStore::new(Client::from_conf(config), "t"), calls)
    }

    fn two_ops() -> Vec<TxOp> {
        let item = |sk: &str| Item::from([(PK.to_string(), Attr::S("P".into())), (SK.to_string(), Attr::S(sk.into()))]);
        vec![TxOp::Put { item: item("a"), cond: None }, TxOp::Put { item: item("b"), cond: Some(Cond::NotExists) }]
    }

    #[tokio::test]
    async fn a_conflicting_transaction_is_tried_again_until_it_goes_through() {
        let (store, calls) = fake_dynamodb(vec![Some("TransactionConflict"), Some("TransactionConflict"), None]).await;
        store.transact(two_ops()).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failed_condition_is_not_tried_again_and_names_its_operation() {
        let (store, calls) = fake_dynamodb(vec![Some("ConditionalCheckFailed")]).await;
        assert!(matches!(store.transact(two_ops()).await, Err(StoreError::TransactionCancelled { index: 1 })));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn conflicts_that_never_end_fail_after_a_bounded_number_of_tries() {
        let (store, calls) = fake_dynamodb(vec![Some("TransactionConflict")]).await;
        let error = store.transact(two_ops()).await.unwrap_err();
        assert!(matches!(error, StoreError::Backend(_)), "{error}");
        assert_eq!(calls.load(Ordering::SeqCst), 1 + MAX_CONFLICT_RETRIES as usize);
    }
}
