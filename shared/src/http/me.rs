//! Auth group, self-service family: the caller's sessions, data export and account deletion.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ErrorEnvelope;
use super::extract::{Caller, parse_uuid};
use crate::error::{ApiError, ApiResult};
use crate::identity::sessions::{self, Session};
use crate::keys::{self, Owner};
use crate::projects;
use crate::state::AppState;
use crate::usage;
use crate::workspaces;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_sessions)).routes(routes!(revoke_session)).routes(routes!(export_me)).routes(routes!(delete_me))
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    id: Uuid,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    last_activity: DateTime<Utc>,
    #[schema(value_type = Object)]
    device: Value,
}

impl From<Session> for SessionView {
    fn from(s: Session) -> Self {
        SessionView {
            id: s.id,
            created_at: s.created_at,
            expires_at: s.expires_at,
            last_activity: s.last_activity,
            device: json!({ "ip_address": s.ip_address, "user_agent": s.user_agent }),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    current_session_id: Uuid,
    data: Vec<SessionView>,
    enhanced_enabled: bool,
}

#[utoipa::path(get, path = "/admin/v1/me/sessions", tag = "me", responses((status = 200, body = SessionList), (status = 401, body = ErrorEnvelope)))]
async fn list_sessions(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<SessionList>> {
    let data = sessions::list(state.store.as_ref(), caller.user.id).await?.into_iter().map(SessionView::from).collect();
    Ok(Json(SessionList { current_session_id: caller.session.id, data, enhanced_enabled: true }))
}

#[derive(Serialize, ToSchema)]
pub struct Revoked {
    sessions_revoked: usize,
}

/// Revokes one of the caller's sessions; its access and refresh tokens stop working at once.
#[utoipa::path(delete, path = "/admin/v1/me/sessions/{session_id}", tag = "me", params(("session_id" = Uuid, Path)),
    responses((status = 200, body = Revoked), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn revoke_session(State(state): State<AppState>, caller: Caller, Path(session_id): Path<String>) -> ApiResult<Json<Revoked>> {
    let session_id = parse_uuid(&session_id, "session_id")?;
    if !sessions::revoke(state.store.as_ref(), caller.user.id, session_id).await? {
        return Err(ApiError::not_found(format!("you have no session with id {session_id}")));
    }
    Ok(Json(Revoked { sessions_revoked: 1 }))
}

/// Everything stored about the caller (GDPR Article 15). Sections for data kinds that do not
/// exist yet are present and empty, so the shape is stable.
#[utoipa::path(get, path = "/admin/v1/me/export", tag = "me", responses((status = 200, body = Object), (status = 401, body = ErrorEnvelope)))]
async fn export_me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let user = &caller.user;
    let sessions: Vec<Value> = sessions::list(state.store.as_ref(), user.id)
        .await?
        .into_iter()
        .map(|s| {
            json!({
                "id": s.id, "created_at": s.created_at, "expires_at": s.expires_at, "last_activity": s.last_activity,
                "ip_address": s.ip_address, "device_description": s.user_agent,
            })
        })
        .collect();
    let api_keys: Vec<Value> = keys::all_of(state.store.as_ref(), &Owner::User { user_id: user.id })
        .await?
        .into_iter()
        .map(|k| {
            json!({
                "id": k.id, "name": k.settings.name, "key_prefix": k.key_prefix, "budget_limit_cents": k.settings.budget_limit_cents,
                "budget_period": k.settings.budget_period, "created_at": k.created_at, "expires_at": k.settings.expires_at,
                "last_used_at": k.last_used_at, "revoked_at": k.revoked_at,
            })
        })
        .collect();
    let store = state.store.as_ref();
    let mut organizations = Vec::new();
    for (workspace, member) in workspaces::of_user(store, user.id).await? {
        organizations.push(json!({
            "joined_at": member.joined_at, "org_id": workspace.id, "org_name": workspace.name, "org_slug": null,
            "role": member.role, "source": if member.user_id == workspace.created_by { "manual" } else { "invite" },
        }));
    }
    let mut project_memberships = Vec::new();
    for member in projects::memberships_of(store, user.id).await? {
        if let Some(project) = projects::get(store, member.project_id).await? {
            project_memberships.push(json!({
                "joined_at": member.joined_at, "org_id": project.workspace_id, "project_id": project.id, "project_name": project.name,
                "project_slug": project.slug, "role": member.role, "source": "manual",
            }));
        }
    }
    // From the rollups (records past their retention are gone, their rollups are not), with
    // the records still pending added first, so the export is current.
    let owner = Owner::User { user_id: user.id }.tag();
    usage::rollups::roll_up(store).await?;
    let rollups = usage::rollups::all_of(store, &owner).await?;
    let totals = rollups.iter().filter(|(dim, _)| dim == "all").fold(usage::rollups::Totals::default(), |a, (_, row)| a.plus(row.totals));
    let (first_request_at, last_request_at) = usage::first_and_last(store, &owner, None, None).await?;
    let usage_rollups: Vec<Value> = rollups
        .iter()
        .map(|(dim, row)| {
            json!({
                "dimension": dim, "date": row.day, "value": row.value, "request_count": row.totals.request_count,
                "input_tokens": row.totals.input_tokens, "output_tokens": row.totals.output_tokens, "cost_micros": row.totals.cost_micros,
            })
        })
        .collect();
    Ok(Json(json!({
        "api_keys": api_keys,
        "audit_logs": [],
        "conversations": [],
        "exported_at": state.clock.now(),
        "memberships": { "organizations": organizations, "projects": project_memberships, "teams": [] },
        "sessions": sessions,
        "usage_summary": {
            "first_request_at": first_request_at, "last_request_at": last_request_at, "request_count": totals.request_count,
            // The seed counts micro-cents; we keep micro-dollars (100 micro-cents each).
            "total_cost_microcents": totals.cost_micros.saturating_mul(100),
            "total_tokens": totals.input_tokens.saturating_add(totals.output_tokens),
        },
        // Our addition: every rollup of the caller's usage (per UTC day and dimension: `all`,
        // `model`, `provider`, `pricing`, `token`), which outlive the records.
        "usage_rollups": usage_rollups,
        "user": {
            "id": user.id, "email": user.email, "name": user.name, "external_id": null, "role": user.role,
            "created_at": user.created_at, "updated_at": user.updated_at,
        },
    })))
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    api_keys_deleted: usize,
    conversations_deleted: usize,
    deleted: bool,
    dynamic_providers_deleted: usize,
    usage_records_deleted: usize,
    user_id: Uuid,
}

/// Deletes the caller and everything of theirs (GDPR Article 17). The only admin cannot leave.
#[utoipa::path(delete, path = "/admin/v1/me", tag = "me", responses((status = 200, body = Deleted), (status = 409, body = ErrorEnvelope)))]
async fn delete_me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Deleted>> {
    let deleted =
        crate::account_deletion::delete(state.store.as_ref(), state.secrets.as_ref(), &caller.user, None, state.clock.now(), state.hot.as_ref()).await?;
    Ok(Json(Deleted {
        api_keys_deleted: deleted.keys,
        conversations_deleted: 0,
        deleted: true,
        dynamic_providers_deleted: deleted.providers,
        usage_records_deleted: deleted.usage_records,
        user_id: deleted.user_id,
    }))
}
