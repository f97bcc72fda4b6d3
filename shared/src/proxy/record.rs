//! Recording a request: its settlement and usage record in one transaction, with the stored
//! response of a Responses API request that asked to be kept.

use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use super::observed::Observed;
use super::{Door, Flight, settle};
use crate::error::ApiResult;
use crate::keys::{self, ApiKey, Owner};
use crate::limits::Charge;
use crate::responses;
use crate::store;
use crate::usage::{Outcome, UsageRecord};

impl Flight {
    /// Settles the reservation and writes the usage record, in one transaction.
    pub(super) async fn record(&self, actual: Charge, seen: &Observed, outcome: Outcome, status: u16, streamed: bool, error: Option<String>) -> ApiResult<()> {
        self.record_full(actual, seen, outcome, status, streamed, false, error, None).await
    }

    /// The write of a stored response (`response`, the Responses API's answer) where the
    /// request asked for it to be stored: its head, for the settlement's transaction.
    async fn store_response(&self, response: Option<Value>, now: chrono::DateTime<chrono::Utc>) -> ApiResult<Vec<store::TxOp>> {
        let (Door::Responses(exchange), Some(response)) = (&self.door, response) else { return Ok(vec![]) };
        if !exchange.store {
            return Ok(vec![]);
        }
        let output = response.get("output").and_then(Value::as_array).cloned().unwrap_or_default();
        let input = exchange.history.len()..exchange.history.len() + exchange.input.len();
        let stored = responses::Stored { response, items: exchange.conversation(&output), input };
        let expires_at = (now + self.gw.tuning.responses_ttl).timestamp();
        Ok(vec![responses::save(self.gw.store.as_ref(), &self.key.owner.tag(), stored, expires_at).await?])
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn record_full(
        &self,
        actual: Charge,
        seen: &Observed,
        outcome: Outcome,
        status: u16,
        streamed: bool,
        cancelled: bool,
        error: Option<String>,
        response: Option<Value>,
    ) -> ApiResult<()> {
        let now = self.gw.clock.now();
        let touch = self.key.last_used_at.is_none_or(|t| (now - t).num_seconds() >= 60);
        let touch_ops = if touch { keys::touch_ops(&self.key, now)? } else { vec![] };
        // Shared with the settlement's transaction, which the embedded store encodes straight from it.
        let record = std::sync::Arc::new(self.usage_record(&actual, seen, outcome, status, streamed, cancelled, error, now));
        // Boxed, as only Responses API requests store anything.
        let stored = if response.is_some() { Box::pin(self.store_response(response, now)).await? } else { vec![] };
        // A kept answer (the response cache's) goes in the same transaction.
        let kept: Vec<store::TxOp> = self.keep.iter().map(|op| (**op).clone()).collect();
        let writes = if stored.is_empty() && kept.is_empty() {
            std::borrow::Cow::Borrowed(&self.events.ops)
        } else {
            std::borrow::Cow::Owned([self.events.ops.clone(), stored, kept].concat())
        };
        let settlement = self.trace.as_ref().map(crate::traces::FlightTrace::settlement);
        settle::settle(self.gw.store.as_ref(), &record, &self.reservations, &actual, touch_ops, &writes, self.gw.tuning.relaxed_durability).await?;
        drop(settlement);
        if let Some(trace) = &self.trace {
            trace.settled(&record);
        }
        self.events.written(&self.gw.alerts);
        self.gw.metrics.request(&record);
        self.gw.metrics.lapsed(self.reservations.iter().map(|r| r.lapsed.len()).sum());
        if touch {
            let mut touched = ApiKey::clone(&self.key);
            touched.last_used_at = Some(now);
            self.gw.hot.keys.insert(touched.key_hash.clone(), Arc::new(touched));
        }
        Ok(())
    }

    /// The usage record of this request, as it stands.
    #[allow(clippy::too_many_arguments)]
    fn usage_record(
        &self,
        actual: &Charge,
        seen: &Observed,
        outcome: Outcome,
        status: u16,
        streamed: bool,
        cancelled: bool,
        error: Option<String>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> UsageRecord {
        let prices = self.model.prices();
        let (user_id, org_id, project_id) = match &self.key.owner {
            Owner::User { user_id } => (Some(*user_id), None, None),
            Owner::Workspace { workspace_id } => (None, Some(*workspace_id), None),
            Owner::Project { project_id } => (None, self.context.project.as_ref().and_then(|p| p.workspace_id), Some(*project_id)),
        };
        UsageRecord {
            id: Uuid::new_v4(),
            request_id: self.request_id.clone(),
            owner: self.key.owner.tag(),
            api_key_id: Some(self.key.id),
            user_id,
            org_id,
            project_id,
            endpoint: self.endpoint_name().to_string(),
            model: self.model.id.clone(),
            provider: self.model.provider.name().to_string(),
            provider_source: self.model.provider_source().into(),
            input_tokens: actual.input_tokens,
            output_tokens: actual.output_tokens,
            cached_tokens: seen.cached.max(0),
            cache_write_tokens: seen.cache_write.max(0),
            cache_write_1h_tokens: seen.cache_write_1h.max(0),
            reasoning_tokens: seen.reasoning.max(0),
            cost_micros: actual.cost_micros,
            input_price_micros: prices.input,
            output_price_micros: prices.output,
            cached_input_price_micros: prices.cached_input,
            cache_write_price_micros: prices.cache_write,
            cache_write_1h_price_micros: prices.cache_write_1h,
            pricing_source: if self.provider_cost(seen).is_some() { "provider" } else { "catalog" }.into(),
            provider_cost_micros: seen.reported_cost,
            latency_ms: self.started.elapsed().as_millis() as i64,
            ttft_ms: seen.ttft_ms,
            status_code: i64::from(status),
            outcome,
            streamed,
            cancelled,
            finish_reason: seen.finish_reason.clone(),
            http_referer: self.referer.clone(),
            error,
            candidates: self.plan.chain().iter().map(|m| m.id.clone()).collect(),
            routing: self.attempts.clone(),
            recorded_at: now,
            expires_at: self.record_expiry(now),
        }
    }

    /// When a record made at `at` expires (`TOLLGATE_USAGE_RETENTION_DAYS`).
    pub(super) fn record_expiry(&self, at: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono::Utc>> {
        self.gw.tuning.usage_retention.map(|keep| at + keep)
    }
}
