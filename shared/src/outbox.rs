//! Work that must survive the response: notifications of budget events. An event is an item
//! written in the same transaction as the settlement (or the refusal's record) that caused it,
//! one item per limit, period and kind (`EVENT#<counters>#<counter>` / `<kind>`), with its
//! fields set only where absent: however many requests cross a threshold, one event exists,
//! and a later crossing in the same period finds it and adds nothing. It waits in the GSI2
//! partition `OUTBOX#<shard>` under a `p#` sort key until a deliverer claims it (a
//! conditional update, so two deliverers never send one event at once), sends it through every
//! channel not yet reached, and marks it sent (sort key `s#`) or leaves it for a later pass,
//! with a growing pause. Its TTL is its period's end plus a day.
//!
//! Deliverers: the local server runs a pass every second (`AppState::spawn_background`); after a settlement that wrote an
//! event the process delivers at once, and any process looks for pending events after a
//! settlement at least once a minute. On Lambda, a frozen or killed invocation just leaves its
//! event pending (claimed for a minute at most) for the next invocation that looks.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::clock::SharedClock;
use crate::error::ApiResult;
use crate::notify::{Message, Notifier};
use crate::settings;
use crate::store::{Attr, Cond, Index, Key, Query, Store, StoreError, TTL, TxOp, Update};

/// Pending events spread over this many index partitions.
const SHARDS: u64 = 8;
/// How long a claim keeps other deliverers off an event.
const CLAIM_SECS: i64 = 60;

/// One event to deliver once.
pub struct Event {
    /// The item naming the event: one per limit, period and kind.
    pub key: Key,
    pub message: Message,
    /// When the event's period ends (the item expires a day later).
    pub period_end: Option<DateTime<Utc>>,
}

fn shard(pk: &str) -> String {
    format!("OUTBOX#{}", crate::store::shard_of(pk, SHARDS))
}

/// The write that enqueues `event` unless it exists already (for the settlement's transaction).
pub fn enqueue(event: &Event, now: DateTime<Utc>) -> TxOp {
    let Event { key, message, period_end } = event;
    let (gsi_pk, gsi_sk) = Index::Gsi2.key_names();
    let mut update = Update::default()
        .set_if_absent("state", "pending")
        .set_if_absent("event", message.event)
        .set_if_absent("subject", message.subject.as_str())
        .set_if_absent("text", message.text.as_str())
        .set_if_absent("data", message.data.to_string())
        .set_if_absent("created_at", now.to_rfc3339())
        .set_if_absent(gsi_pk, shard(&key.pk))
        .set_if_absent(gsi_sk, format!("p#{}#{}", now.to_rfc3339(), key.pk));
    if let Some(end) = period_end {
        update = update.set_if_absent(TTL, Attr::N((*end + chrono::Duration::days(1)).timestamp()));
    }
    TxOp::Update { key: key.clone(), update, cond: None }
}

/// The events of shard `n` still waiting for delivery.
fn pending(n: u64) -> Query {
    Query::new(Index::Gsi2, format!("OUTBOX#{n}")).prefix("p#")
}

/// What delivers the outbox's events: cheap to clone, one per process.
#[derive(Clone)]
pub struct Outbox {
    store: Arc<dyn Store>,
    notifier: Notifier,
    clock: SharedClock,
    /// When this process last looked for pending events (epoch seconds).
    polled: Arc<AtomicI64>,
}

impl Outbox {
    pub fn new(notifier: Notifier) -> Self {
        Self { store: notifier.store.clone(), clock: notifier.clock.clone(), notifier, polled: Arc::new(AtomicI64::new(0)) }
    }

    /// Delivers every pending event it can claim; returns how many it sent. A store error ends the
    /// pass (the events stay pending for the next); a channel's failure leaves its event pending.
    pub async fn deliver_pending(&self) -> ApiResult<usize> {
        let store = self.store.as_ref();
        let mut sent = 0;
        for n in 0..SHARDS {
            let page = store.query(pending(n).limit(25)).await?;
            for item in page.items {
                let Some(key) = Key::of(&item) else { continue };
                if self.deliver_one(&key).await? {
                    sent += 1;
                }
            }
        }
        Ok(sent)
    }

    /// How many events wait for delivery (counted up to `cap` per shard).
    pub async fn backlog(&self, cap: usize) -> ApiResult<usize> {
        let mut waiting = 0;
        for n in 0..SHARDS {
            waiting += self.store.query(pending(n).limit(cap)).await?.items.len();
        }
        Ok(waiting)
    }

    /// Claims, sends and marks one event; false when another deliverer holds it or a channel failed.
    async fn deliver_one(&self, key: &Key) -> ApiResult<bool> {
        let store = self.store.as_ref();
        let now = self.clock.now().timestamp();
        let claim = Update::default().set("claimed_until", Attr::N(now + CLAIM_SECS)).add("attempts", 1);
        let free = Cond::And(vec![Cond::Eq("state".into(), Attr::S("pending".into())), Cond::AbsentOrAtMost("claimed_until".into(), now)]);
        let item = match store.update(key, claim, Some(free)).await {
            Ok(item) => item,
            Err(StoreError::ConditionFailed) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let text = |name: &str| item.get(name).and_then(Attr::as_str).unwrap_or_default().to_string();
        let message = Message {
            event: event_name(&text("event")),
            subject: text("subject"),
            text: text("text"),
            data: serde_json::from_str(&text("data")).unwrap_or(Value::Null),
            to: None,
        };
        let mut reached: Vec<String> = match item.get("reached") {
            Some(Attr::L(names)) => names.iter().filter_map(|n| n.as_str().map(str::to_string)).collect(),
            _ => vec![],
        };
        let channels = settings::get(store).await?.channels;
        let mut failed = false;
        let pending: Vec<_> = channels.iter().filter(|c| !reached.contains(&c.name)).collect();
        for channel in pending {
            match self.notifier.deliver(channel, &message).await {
                Ok(()) => reached.push(channel.name.clone()),
                Err(error) => {
                    failed = true;
                    tracing::warn!(channel = %channel.name, event = message.event, %error, "a budget event was not delivered; it stays pending");
                }
            }
        }
        let reached_attr = Attr::L(reached.into_iter().map(Attr::S).collect());
        let (_, gsi_sk) = Index::Gsi2.key_names();
        let done = if failed {
            // Tried again after a pause that doubles with each attempt: 2 s, 4 s, ... 10 minutes.
            let attempts = item.get("attempts").and_then(Attr::as_i64).unwrap_or(1);
            let pause = (1_i64 << attempts.clamp(1, 10)).min(600);
            Update::default().set("reached", reached_attr).set("claimed_until", Attr::N(now + pause))
        } else {
            let sort = text(gsi_sk).replacen("p#", "s#", 1);
            Update::default()
                .set("reached", reached_attr)
                .set("state", "sent")
                .set("sent_at", self.clock.now().to_rfc3339())
                .set(gsi_sk, sort)
                .remove("claimed_until")
        };
        store.update(key, done, None).await?;
        Ok(!failed)
    }
}

/// The static name of a stored event name (a `Message` names its event with one).
fn event_name(stored: &str) -> &'static str {
    ["budget.threshold", "budget.exhausted", "budget.reset"].into_iter().find(|n| *n == stored).unwrap_or("budget.event")
}

impl Outbox {
    /// Delivers now, off the request's path, what a settlement just enqueued (`wrote_events`), or
    /// looks for pending events when this process has not for a minute (on Lambda, where no
    /// deliverer runs between invocations, that is what retries an event whose first delivery was
    /// cut short). The events are safe in the store whatever becomes of this task.
    pub fn kick(&self, wrote_events: bool) {
        let now = self.clock.now().timestamp();
        let last = self.polled.load(Ordering::Relaxed);
        if !wrote_events && now - last < 60 {
            return;
        }
        self.polled.store(now, Ordering::Relaxed);
        let outbox = self.clone();
        tokio::spawn(async move {
            if let Err(e) = outbox.deliver_pending().await {
                tracing::warn!(error = %e, "delivering budget events failed; they stay pending");
            }
        });
    }
}
