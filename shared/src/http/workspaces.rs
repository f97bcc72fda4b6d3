//! Members group, workspace-admin family: workspaces, their members and invitations.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::error::ErrorEnvelope;
use super::extract::{ApiJson, ApiQuery, Caller, parse_uuid};
use crate::error::{ApiError, ApiResult};
use crate::identity::{normalize_email, users};
use crate::limits::{self, LimitSpec};
use crate::state::AppState;
use crate::workspaces::{self, Member, Role, Workspace, invites};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_workspaces, create_workspace))
        .routes(routes!(get_workspace, update_workspace))
        .routes(routes!(list_members, invite_user, remove_from_workspace))
        .routes(routes!(accept_invite))
        .routes(routes!(invite_link))
}

#[derive(Serialize, ToSchema)]
pub struct WorkspaceView {
    id: Uuid,
    name: String,
    /// The caller's role in this workspace.
    role: Role,
    limits: Vec<LimitSpec>,
    created_by: Uuid,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn view(workspace: Workspace, member: &Member) -> WorkspaceView {
    WorkspaceView {
        id: workspace.id,
        name: workspace.name,
        role: member.role,
        limits: workspace.limits.iter().map(LimitSpec::of).collect(),
        created_by: workspace.created_by,
        created_at: workspace.created_at,
        updated_at: workspace.updated_at,
    }
}

#[derive(Serialize, ToSchema)]
pub struct WorkspaceList {
    workspaces: Vec<WorkspaceView>,
}

#[utoipa::path(get, path = "/api/workspaces", tag = "workspaces", responses((status = 200, body = WorkspaceList), (status = 401, body = ErrorEnvelope)))]
async fn list_workspaces(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<WorkspaceList>> {
    let mine = workspaces::of_user(state.store.as_ref(), caller.user.id).await?;
    Ok(Json(WorkspaceList { workspaces: mine.into_iter().map(|(w, m)| view(w, &m)).collect() }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    name: String,
    /// Limits of the workspace as a whole; cost limits in dollars.
    #[serde(default)]
    limits: Vec<LimitSpec>,
}

/// Creates a workspace; the caller becomes its owner.
#[utoipa::path(post, path = "/api/workspaces", tag = "workspaces", request_body = CreateWorkspace,
    responses((status = 201, body = WorkspaceView), (status = 400, body = ErrorEnvelope)))]
async fn create_workspace(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateWorkspace>,
) -> ApiResult<(StatusCode, Json<WorkspaceView>)> {
    let limits = limits::from_specs(&body.limits)?;
    let workspace = workspaces::create(state.store.as_ref(), &body.name, limits, caller.user.id, state.clock.now()).await?;
    let owner = Member { workspace_id: workspace.id, user_id: caller.user.id, role: Role::Owner, joined_at: workspace.created_at };
    Ok((StatusCode::CREATED, Json(view(workspace, &owner))))
}

#[utoipa::path(get, path = "/api/workspaces/{id}", tag = "workspaces", params(("id" = Uuid, Path)),
    responses((status = 200, body = WorkspaceView), (status = 404, body = ErrorEnvelope)))]
async fn get_workspace(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<WorkspaceView>> {
    let (workspace, member) = workspaces::require_member(state.store.as_ref(), parse_uuid(&id, "id")?, caller.user.id).await?;
    Ok(Json(view(workspace, &member)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkspace {
    name: Option<String>,
    /// Replaces the workspace's limits; a limit kept on the same metric and window keeps what
    /// it has used this window.
    limits: Option<Vec<LimitSpec>>,
}

/// Renames a workspace or changes its limits: owners and admins.
#[utoipa::path(put, path = "/api/workspaces/{id}", tag = "workspaces", params(("id" = Uuid, Path)), request_body = UpdateWorkspace,
    responses((status = 200, body = WorkspaceView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn update_workspace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateWorkspace>,
) -> ApiResult<Json<WorkspaceView>> {
    let store = state.store.as_ref();
    let (mut workspace, member) = workspaces::require_manager(store, parse_uuid(&id, "id")?, caller.user.id).await?;
    if let Some(name) = body.name {
        workspace.name = workspaces::validate_name(&name)?;
    }
    if let Some(specs) = body.limits {
        workspace.limits = limits::from_specs(&specs)?;
    }
    workspaces::update(store, &mut workspace, state.clock.now(), state.hot.as_ref()).await?;
    Ok(Json(view(workspace, &member)))
}

#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BusinessQuery {
    pub business_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct MemberView {
    user_id: Uuid,
    email: String,
    name: Option<String>,
    role: Role,
    joined_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct InviteView {
    id: Uuid,
    email: String,
    role: Role,
    invited_by: Uuid,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl From<invites::Invite> for InviteView {
    fn from(i: invites::Invite) -> Self {
        InviteView { id: i.id, email: i.email, role: i.role, invited_by: i.invited_by, created_at: i.created_at, expires_at: i.expires_at }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MembersAndInvites {
    business_id: Uuid,
    members: Vec<MemberView>,
    invites: Vec<InviteView>,
}

/// The workspace's members and pending invites; any member may list them.
#[utoipa::path(get, path = "/api/invite-user", tag = "workspaces", params(BusinessQuery),
    responses((status = 200, body = MembersAndInvites), (status = 404, body = ErrorEnvelope)))]
async fn list_members(State(state): State<AppState>, caller: Caller, ApiQuery(q): ApiQuery<BusinessQuery>) -> ApiResult<Json<MembersAndInvites>> {
    let store = state.store.as_ref();
    let (workspace, _) = workspaces::require_member(store, parse_uuid(&q.business_id, "business_id")?, caller.user.id).await?;
    let mut members = Vec::new();
    for m in workspaces::members(store, workspace.id).await? {
        if let Some(user) = users::get(store, m.user_id).await? {
            members.push(MemberView { user_id: m.user_id, email: user.email, name: user.name, role: m.role, joined_at: m.joined_at });
        }
    }
    members.sort_by_key(|m| m.joined_at);
    let invites = invites::pending(store, workspace.id, state.clock.now()).await?.into_iter().map(InviteView::from).collect();
    Ok(Json(MembersAndInvites { business_id: workspace.id, members, invites }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteUser {
    email: String,
    /// `member` or `admin`.
    role: String,
    business_id: String,
    /// The page the invite link opens; it receives `invite_token` as a query parameter.
    redirect_to: String,
}

/// The answer to the inviter. It never holds the invite's link or token: those go only to the
/// invitee, through the notification channels.
#[derive(Serialize, ToSchema)]
pub struct InviteSent {
    invite: InviteView,
    /// Whether a mail channel took the invite to the invitee (webhooks never get invites:
    /// whoever holds the link can join as the invitee).
    delivered: bool,
    /// How delivery through each configured notification channel went.
    delivery: Vec<crate::notify::Delivery>,
    /// What happens next, in words.
    delivery_note: String,
}

fn parse_invite_role(raw: &str) -> ApiResult<Role> {
    match raw {
        "member" => Ok(Role::Member),
        "admin" => Ok(Role::Admin),
        other => Err(ApiError::invalid_param("role", format!("role must be member or admin, not {other:?}"))),
    }
}

fn invite_url(redirect_to: &str, token: &str) -> ApiResult<String> {
    let mut url = reqwest::Url::parse(redirect_to)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| ApiError::invalid_param("redirect_to", "redirect_to must be an absolute http(s) URL, such as https://app.example.com/signin"))?;
    url.query_pairs_mut().append_pair("invite_token", token);
    Ok(url.into())
}

/// Refuses a `redirect_to` off the gateway's own public URL: an invite mail is sent in the
/// gateway's name, and its link must not lead anywhere else (a phishing page collecting the
/// invite and a password).
fn check_redirect(redirect_to: &str, public: &reqwest::Url) -> ApiResult<()> {
    let url = reqwest::Url::parse(redirect_to).ok();
    let base = public.path().trim_end_matches('/');
    let on_ours =
        url.as_ref().is_some_and(|u| u.origin() == public.origin() && (u.path() == base || u.path().starts_with(&format!("{base}/")) || base.is_empty()));
    if on_ours {
        Ok(())
    } else {
        Err(ApiError::invalid_param(
            "redirect_to",
            format!(
                "redirect_to must be a page of this gateway, under {public}; an admin sets the gateway's public URL as publicUrl in PUT /api/settings (or TOLLGATE_PUBLIC_URL)"
            ),
        ))
    }
}

/// Invites someone into the workspace: owners and admins only.
#[utoipa::path(post, path = "/api/invite-user", tag = "workspaces", request_body = InviteUser,
    responses((status = 201, body = InviteSent), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn invite_user(State(state): State<AppState>, caller: Caller, ApiJson(body): ApiJson<InviteUser>) -> ApiResult<(StatusCode, Json<InviteSent>)> {
    let store = state.store.as_ref();
    let role = parse_invite_role(&body.role)?;
    let email = normalize_email(&body.email, "email")?;
    // Checked before anything is written, so a bad link leaves no invite behind.
    invite_url(&body.redirect_to, "")?;
    check_redirect(&body.redirect_to, &super::public_url(&state).await?)?;
    let (workspace, _) = workspaces::require_manager(store, parse_uuid(&body.business_id, "business_id")?, caller.user.id).await?;
    let issued = invites::create(store, &workspace, email, role, caller.user.id, state.clock.now()).await?;
    let url = invite_url(&body.redirect_to, &issued.token)?;
    let message = crate::notify::Message {
        event: "invite.created",
        subject: format!("You are invited to {} on Tollgate", workspace.name),
        text: format!(
            "{} invited you to the workspace {} as {}. Accept within {} days: {url}",
            caller.user.email,
            workspace.name,
            role.as_str(),
            invites::VALID_FOR_DAYS
        ),
        data: serde_json::json!({"business_id": workspace.id, "workspace": workspace.name, "email": issued.invite.email, "role": role, "invite_url": url, "expires_at": issued.invite.expires_at}),
        to: Some(issued.invite.email.clone()),
    };
    let delivery = state.notifier.broadcast(&message).await;
    let delivered = delivery.iter().any(|d| d.ok);
    let delivery_note = if delivered {
        format!("the invite link was sent to {} through the notification channels", issued.invite.email)
    } else {
        // Kept for a global admin to read once (POST /api/invite-user/link), never for the
        // inviter: whoever holds the link could accept it as the invitee.
        let link = secrecy::SecretString::from(url);
        state.secrets.put(&invites::link_secret_name(issued.invite.id), &link).await.map_err(ApiError::internal)?;
        "no notification channel delivered the invite; a global admin can read its link once with POST /api/invite-user/link and pass it on".to_string()
    };
    Ok((StatusCode::CREATED, Json(InviteSent { invite: issued.invite.into(), delivered, delivery, delivery_note })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteLinkRequest {
    business_id: String,
    invite_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct InviteLink {
    invite_id: Uuid,
    email: String,
    expires_at: chrono::DateTime<chrono::Utc>,
    /// The link that accepts the invite; shown this once.
    invite_url: String,
}

/// Reads, once, the link of an invite that no notification channel delivered (a local install
/// without mail): global admins only (`user:write`), who pass it on to the invitee.
#[utoipa::path(post, path = "/api/invite-user/link", tag = "workspaces", request_body = InviteLinkRequest,
    responses((status = 200, body = InviteLink), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn invite_link(State(state): State<AppState>, caller: Caller, ApiJson(body): ApiJson<InviteLinkRequest>) -> ApiResult<Json<InviteLink>> {
    caller.require(crate::identity::roles::Permission::UserWrite)?;
    let invite = invites::get(state.store.as_ref(), parse_uuid(&body.business_id, "business_id")?, parse_uuid(&body.invite_id, "invite_id")?).await?;
    let name = invites::link_secret_name(invite.id);
    let link = state.secrets.get(&name).await.map_err(ApiError::internal)?.ok_or_else(|| {
        ApiError::not_found("this invite's link was delivered through a notification channel or has already been read; revoke the invite and send a new one")
    })?;
    state.secrets.delete(&name).await.map_err(ApiError::internal)?;
    use secrecy::ExposeSecret;
    Ok(Json(InviteLink { invite_id: invite.id, email: invite.email, expires_at: invite.expires_at, invite_url: link.expose_secret().to_string() }))
}

/// Drops an invite's held link once the invite is gone (a leftover would be harmless, since
/// reading it needs the pending invite, but secrets should not outlive their use).
async fn forget_link(state: &AppState, invite_id: Uuid) {
    if let Err(e) = state.secrets.delete(&invites::link_secret_name(invite_id)).await {
        tracing::warn!(error = %e, %invite_id, "could not delete an invite's held link");
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveFromWorkspace {
    business_id: String,
    /// Revokes this pending invite.
    invite_id: Option<String>,
    /// Removes this member (never yourself, never an owner).
    user_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Removed {
    removed: bool,
}

/// Revokes an invite (`invite_id`) or removes a member (`user_id`): owners and admins only.
#[utoipa::path(delete, path = "/api/invite-user", tag = "workspaces", request_body = RemoveFromWorkspace,
    responses((status = 200, body = Removed), (status = 400, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
async fn remove_from_workspace(State(state): State<AppState>, caller: Caller, ApiJson(body): ApiJson<RemoveFromWorkspace>) -> ApiResult<Json<Removed>> {
    let store = state.store.as_ref();
    let workspace_id = parse_uuid(&body.business_id, "business_id")?;
    match (&body.invite_id, &body.user_id) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::bad_request("invalid_request", "send exactly one of invite_id (to revoke an invite) or user_id (to remove a member)"));
        }
        _ => {}
    }
    let (workspace, _) = workspaces::require_manager(store, workspace_id, caller.user.id).await?;
    if let Some(invite_id) = &body.invite_id {
        let invite_id = parse_uuid(invite_id, "invite_id")?;
        invites::revoke(store, workspace.id, invite_id).await?;
        forget_link(&state, invite_id).await;
    }
    if let Some(user_id) = &body.user_id {
        workspaces::remove_member(store, workspace.id, caller.user.id, parse_uuid(user_id, "user_id")?).await?;
    }
    Ok(Json(Removed { removed: true }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvite {
    /// The `invite_token` of the invite link.
    token: String,
    /// Required when the invited email has no account yet: it creates one.
    password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct InviteAccepted {
    business_id: Uuid,
    role: Role,
    user_id: Uuid,
    email: String,
    /// Whether accepting created the account (log in with the email and the password sent).
    created_account: bool,
}

/// Accepts an invite. For an email without an account, the token and a password create it;
/// for an email with an account, that account's session must come with the token.
#[utoipa::path(post, path = "/api/invite-user/accept", tag = "workspaces", request_body = AcceptInvite,
    responses((status = 200, body = InviteAccepted), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
async fn accept_invite(State(state): State<AppState>, caller: Option<Caller>, ApiJson(body): ApiJson<AcceptInvite>) -> ApiResult<Json<InviteAccepted>> {
    let accepted = invites::accept(state.store.as_ref(), &body.token, body.password.as_deref(), caller.map(|c| c.user.id), state.clock.now()).await?;
    forget_link(&state, accepted.invite_id).await;
    Ok(Json(InviteAccepted {
        business_id: accepted.member.workspace_id,
        role: accepted.member.role,
        user_id: accepted.user.id,
        email: accepted.user.email,
        created_account: accepted.created_account,
    }))
}
