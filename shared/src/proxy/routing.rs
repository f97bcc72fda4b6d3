//! Which catalog models may serve a request: the requested one, or for a project token the
//! project's models in routing order; and the models a key may use, as the doors list them.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::request::Endpoint;
use super::{Gateway, status_error};
use crate::catalog::{self, Model};
use crate::error::{ApiError, ApiResult};
use crate::keys::ApiKey;

pub(super) async fn resolve_model(gw: &super::Gateway, id: &str) -> ApiResult<Model> {
    if let Some(model) = gw.hot.models.get(&id.to_string()) {
        return Ok(model);
    }
    let model = catalog::get(gw.store.as_ref(), id).await?.ok_or_else(|| {
        status_error(StatusCode::NOT_FOUND, "model_not_found", format!("there is no model {id:?}; GET /v1/models lists the models this key may use"))
    })?;
    gw.hot.models.insert(id.to_string(), model.clone());
    Ok(model)
}

/// A project token's routing candidates: the project's models in order, the requested one
/// first when it is among them. Models since removed from the catalog are skipped.
pub(super) async fn route(gw: &super::Gateway, project: &crate::projects::Project, requested: &str) -> ApiResult<Vec<Model>> {
    let mut order: Vec<&String> = project.models.iter().collect();
    if let Some(i) = order.iter().position(|m| *m == requested) {
        let first = order.remove(i);
        order.insert(0, first);
    }
    let mut out = Vec::with_capacity(order.len());
    for id in order {
        match resolve_model(gw, id).await {
            Ok(model) => out.push(model),
            Err(ApiError::Status { code: "model_not_found", .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    if out.is_empty() {
        return Err(status_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_route",
            format!("project {:?} has no catalog models to route to; set its models with PUT /api/projects/{}", project.slug, project.slug),
        ));
    }
    Ok(out)
}

/// `GET /v1/models/{id}`: one model this key may use, as OpenAI shows it (with the fields
/// Anthropic's models API has, too).
pub async fn get_model(gw: &Gateway, key: &ApiKey, id: &str) -> ApiResult<Value> {
    super::require_scope(key, "models")?;
    let missing = || status_error(StatusCode::NOT_FOUND, "model_not_found", format!("there is no model {id:?} this key may use; GET /v1/models lists them"));
    if !key.allows_model(id) {
        return Err(missing());
    }
    let m = catalog::get(gw.store.as_ref(), id).await?.ok_or_else(missing)?;
    Ok(json!({"id": m.id, "object": "model", "created": m.created_at.timestamp(), "owned_by": m.provider,
              "type": "model", "display_name": m.id, "created_at": m.created_at.to_rfc3339()}))
}

/// `POST /v1/messages/count_tokens`: the input tokens a canonical request is reserved at on
/// its model: an upper bound (bytes of text plus framing), not a tokenizer's count.
pub async fn count_input_tokens(gw: &Gateway, key: &ApiKey, canonical: &[u8]) -> ApiResult<i64> {
    let req = super::request::inspect(Endpoint::Chat, canonical)?;
    if !key.allows_model(&req.model) {
        return Err(status_error(StatusCode::FORBIDDEN, "model_not_allowed", format!("this API key may not use the model {:?}", req.model)));
    }
    let model = resolve_model(gw, &req.model).await?;
    Ok(req.worst_input_tokens(model.context_window))
}

/// `GET /v1/models`: the catalog models this key may use, as OpenAI lists them.
pub async fn list_models(gw: &Gateway, key: &ApiKey) -> ApiResult<Value> {
    super::require_scope(key, "models")?;
    let data: Vec<Value> = catalog::list(gw.store.as_ref())
        .await?
        .into_iter()
        .filter(|m| key.allows_model(&m.id))
        .map(|m| json!({"id": m.id, "object": "model", "created": m.created_at.timestamp(), "owned_by": m.provider}))
        .collect();
    Ok(json!({"object": "list", "data": data}))
}
