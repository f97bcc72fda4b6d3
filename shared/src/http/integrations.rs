//! Providers group, workspace family: the workspace-admin seed's integrations and dataset
//! checks. Rules live in `crate::integrations`.

use axum::Json;
use axum::extract::State;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ErrorEnvelope;
use super::extract::{ApiJson, Caller, Me};
use crate::error::{ApiError, ApiResult};
use crate::integrations::{self, DatasetFile, Integration, Service};
use crate::state::AppState;
use crate::workspaces;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(validate)).routes(routes!(check_dataset))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Validate {
    /// `openrouter` or `huggingface`.
    provider: String,
    #[schema(value_type = String)]
    token: SecretString,
    /// The workspace to save a valid token on (you must manage it); absent: only checked.
    business_id: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct Validated {
    provider: String,
    valid: bool,
    /// Whose token it is, as the service says.
    account: Option<String>,
    /// What the service said.
    message: String,
    /// Whether it was saved on the workspace (its tokens may then use `<provider>/<model>`).
    saved: bool,
}

/// Checks an OpenRouter or Hugging Face token against the service and, when it is good and a
/// workspace is named, saves it there: that workspace's tokens then route
/// `openrouter/<model>` or `huggingface/<model>` through it.
#[utoipa::path(post, path = "/api/integrations/validate", tag = "integrations", request_body = Validate,
    responses((status = 200, body = Validated), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn validate(State(state): State<AppState>, caller: Caller, ApiJson(body): ApiJson<Validate>) -> ApiResult<Json<Validated>> {
    let service = Service::parse(&body.provider).ok_or_else(|| ApiError::invalid_param("provider", "provider must be openrouter or huggingface"))?;
    if let Some(id) = body.business_id {
        workspaces::require_manager(state.store.as_ref(), id, caller.user.id).await?;
    }
    let checked = integrations::check_token(&state.gateway.http.trusted, &state.gateway.integrations, service, &body.token).await;
    let mut out = Validated { provider: service.name().into(), valid: checked.is_ok(), account: None, message: String::new(), saved: false };
    match checked {
        Ok(account) => {
            out.message = format!("{} accepted the token", service.name());
            if let Some(workspace_id) = body.business_id {
                let integration = Integration { workspace_id, service, account: account.clone(), saved_by: caller.user.id, saved_at: state.clock.now() };
                integrations::save(state.store.as_ref(), state.secrets.as_ref(), &integration, &body.token, state.hot.as_ref()).await?;
                out.saved = true;
            }
            out.account = account;
        }
        Err(reason) => out.message = reason.to_string(),
    }
    Ok(Json(out))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetCheck {
    /// `https://huggingface.co/datasets/<owner>/<name>/resolve/<revision>/<file>`.
    dataset_url: String,
}

#[derive(Serialize, ToSchema)]
pub struct DatasetChecked {
    /// Whether the file resolves on the hub.
    valid: bool,
    dataset: DatasetFile,
    message: String,
}

/// Checks a Hugging Face dataset URL: its form (400 when it is not a dataset file's URL), and
/// that it resolves on the hub. With a session or an API key.
#[utoipa::path(post, path = "/api/datasets/huggingface/check", tag = "integrations", request_body = DatasetCheck,
    responses((status = 200, body = DatasetChecked), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)))]
async fn check_dataset(State(state): State<AppState>, _me: Me, ApiJson(body): ApiJson<DatasetCheck>) -> ApiResult<Json<DatasetChecked>> {
    let dataset = integrations::dataset_file(&body.dataset_url).map_err(|why| ApiError::invalid_param("dataset_url", format!("dataset_url: {why}")))?;
    let resolved = integrations::dataset_resolves(&state.gateway.http.trusted, &state.gateway.integrations.huggingface_hub, &dataset).await;
    let message = match &resolved {
        Ok(()) => "the file resolves on the hub".to_string(),
        Err(why) => why.to_string(),
    };
    Ok(Json(DatasetChecked { valid: resolved.is_ok(), dataset, message }))
}
