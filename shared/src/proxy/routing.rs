//! Which catalog models may serve a request: the requested one, or for a project token the
//! project's models in routing order.

use axum::http::StatusCode;

use super::status_error;
use crate::catalog::{self, Model};
use crate::error::{ApiError, ApiResult};

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
