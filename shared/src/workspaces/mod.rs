//! Workspaces (the workspace-admin family's `business_id`) and their members. A member item
//! lives under its workspace and is indexed under its user, so "the members of W" and "the
//! workspaces of U" are each one query. Every workspace-scoped read goes through
//! `require_member`, which answers 404 to non-members: another team's ids reveal nothing.

pub mod invites;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::invalidate::Invalidate;
use crate::limits::Limit;
use crate::store::{Cond, Index, Key, Query, Store, StoreError, TxOp, from_item, keyed_item, query_all, set_index};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = WorkspaceRole)]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Owners and admins manage members, invites, tokens and settings.
    pub fn manages(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Workspace {
    pub id: Uuid,
    pub name: String,
    /// Limits of the workspace as a whole, over every token and project in it.
    #[serde(default)]
    pub limits: Vec<Limit>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Workspace {
    /// The item holding the workspace's limit counters.
    pub fn counters(&self) -> Key {
        counters_key(self.id)
    }
}

pub fn counters_key(id: Uuid) -> Key {
    Key::new(format!("LIMITS#workspace#{id}"), "COUNTERS")
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Member {
    pub workspace_id: Uuid,
    pub user_id: Uuid,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

pub fn key(id: Uuid) -> Key {
    Key::new(format!("WS#{id}"), "WORKSPACE")
}

fn member_key(workspace_id: Uuid, user_id: Uuid) -> Key {
    Key::new(format!("WS#{workspace_id}"), format!("MEMBER#{user_id}"))
}

fn user_workspaces(user_id: Uuid) -> String {
    format!("USER#{user_id}#WORKSPACES")
}

pub const NAME_MAX: usize = 200;

pub fn validate_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX {
        return Err(ApiError::invalid_param("name", format!("name must be 1 to {NAME_MAX} characters")));
    }
    Ok(name.to_string())
}

/// The put of a new member (refused if they already are one).
pub fn member_put(member: &Member) -> ApiResult<TxOp> {
    let mut item = keyed_item(member, &member_key(member.workspace_id, member.user_id))?;
    set_index(&mut item, Index::Gsi1, user_workspaces(member.user_id), member.workspace_id.to_string());
    Ok(TxOp::Put { item, cond: Some(Cond::NotExists) })
}

/// Changes a member's role, provided it is still the role read (`member.role`): a change made
/// meanwhile (a promotion to owner) is not overwritten.
pub async fn set_member_role(store: &dyn Store, member: &Member, role: Role) -> ApiResult<()> {
    let changed = Member { role, ..member.clone() };
    let mut item = keyed_item(&changed, &member_key(member.workspace_id, member.user_id))?;
    set_index(&mut item, Index::Gsi1, user_workspaces(member.user_id), member.workspace_id.to_string());
    match store.put(item, Some(Cond::eq("role", member.role.as_str()))).await {
        Ok(()) => Ok(()),
        Err(StoreError::ConditionFailed) => Err(ApiError::conflict("member_changed", "the member changed meanwhile; list the members and try again")),
        Err(e) => Err(e.into()),
    }
}

/// Creates a workspace with its creator as owner, in one transaction.
pub async fn create(store: &dyn Store, name: &str, limits: Vec<Limit>, creator: Uuid, now: DateTime<Utc>) -> ApiResult<Workspace> {
    let workspace = Workspace { id: Uuid::new_v4(), name: validate_name(name)?, limits, created_by: creator, created_at: now, updated_at: now };
    let owner = Member { workspace_id: workspace.id, user_id: creator, role: Role::Owner, joined_at: now };
    store.transact(vec![TxOp::Put { item: keyed_item(&workspace, &key(workspace.id))?, cond: Some(Cond::NotExists) }, member_put(&owner)?]).await?;
    Ok(workspace)
}

pub async fn get(store: &dyn Store, id: Uuid) -> ApiResult<Option<Workspace>> {
    Ok(store.get(&key(id)).await?.map(from_item).transpose()?)
}

pub async fn membership(store: &dyn Store, workspace_id: Uuid, user_id: Uuid) -> ApiResult<Option<Member>> {
    Ok(store.get(&member_key(workspace_id, user_id)).await?.map(from_item).transpose()?)
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::not_found(format!("no workspace {id} among yours; GET /api/workspaces lists them"))
}

/// The workspace and the caller's membership, or 404 when the caller is not a member.
pub async fn require_member(store: &dyn Store, id: Uuid, user_id: Uuid) -> ApiResult<(Workspace, Member)> {
    let member = membership(store, id, user_id).await?.ok_or_else(|| not_found(id))?;
    let workspace = get(store, id).await?.ok_or_else(|| not_found(id))?;
    Ok((workspace, member))
}

/// `require_member`, and 403 unless the caller is an owner or admin.
pub async fn require_manager(store: &dyn Store, id: Uuid, user_id: Uuid) -> ApiResult<(Workspace, Member)> {
    let (workspace, member) = require_member(store, id, user_id).await?;
    require_manages(&member)?;
    Ok((workspace, member))
}

/// 403 unless the member is an owner or admin.
pub fn require_manages(member: &Member) -> ApiResult<()> {
    if member.role.manages() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "workspace_admin_required",
            format!("only the workspace's owners and admins may do this; your role is {}", member.role.as_str()),
        ))
    }
}

/// The caller's workspaces with their role in each, oldest membership first.
/// A user's memberships alone (one query, no workspace read).
pub async fn member_roles_of(store: &dyn Store, user_id: Uuid) -> ApiResult<Vec<Member>> {
    let items = query_all(store, Query::new(Index::Gsi1, user_workspaces(user_id))).await?;
    Ok(items.into_iter().map(from_item).collect::<Result<_, _>>()?)
}

pub async fn of_user(store: &dyn Store, user_id: Uuid) -> ApiResult<Vec<(Workspace, Member)>> {
    let items = query_all(store, Query::new(Index::Gsi1, user_workspaces(user_id))).await?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let member: Member = from_item(item)?;
        if let Some(workspace) = get(store, member.workspace_id).await? {
            out.push((workspace, member));
        }
    }
    out.sort_by_key(|(_, m)| m.joined_at);
    Ok(out)
}

pub async fn members(store: &dyn Store, workspace_id: Uuid) -> ApiResult<Vec<Member>> {
    let items = query_all(store, Query::new(Index::Primary, format!("WS#{workspace_id}")).prefix("MEMBER#")).await?;
    items.into_iter().map(|i| from_item(i).map_err(ApiError::from)).collect()
}

/// Saves a changed name or limits; the id and creation stay.
pub async fn update(store: &dyn Store, workspace: &mut Workspace, now: DateTime<Utc>, caches: &dyn Invalidate) -> ApiResult<()> {
    workspace.updated_at = now;
    store.put(keyed_item(workspace, &key(workspace.id))?, Some(Cond::Exists)).await.map_err(|e| match e {
        StoreError::ConditionFailed => not_found(workspace.id),
        e => e.into(),
    })?;
    // Its limits, as its tokens' owners know them.
    caches.owners();
    Ok(())
}

/// Removes a member: never the caller, never an owner.
pub async fn remove_member(store: &dyn Store, workspace_id: Uuid, actor: Uuid, user_id: Uuid) -> ApiResult<()> {
    if actor == user_id {
        return Err(ApiError::invalid_param("user_id", "you cannot remove yourself from a workspace"));
    }
    let member = membership(store, workspace_id, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {user_id} is not a member of workspace {workspace_id}")))?;
    if member.role == Role::Owner {
        return Err(ApiError::forbidden("cannot_remove_owner", "owners cannot be removed through this endpoint"));
    }
    // Conditioned on the role read, so a member promoted to owner meanwhile stays.
    match store.delete(&member_key(workspace_id, user_id), Some(Cond::eq("role", member.role.as_str()))).await {
        Ok(()) => Ok(()),
        Err(StoreError::ConditionFailed) => Err(ApiError::conflict("member_changed", "the member changed meanwhile; list the members and try again")),
        Err(e) => Err(e.into()),
    }
}

/// Workspaces where `user_id` is the only owner: deleting that user would orphan them.
pub async fn solely_owned_by(store: &dyn Store, user_id: Uuid) -> ApiResult<Vec<Workspace>> {
    let mut out = Vec::new();
    for (workspace, member) in of_user(store, user_id).await? {
        if member.role == Role::Owner && members(store, workspace.id).await?.iter().filter(|m| m.role == Role::Owner).count() == 1 {
            out.push(workspace);
        }
    }
    Ok(out)
}

/// Every membership of a user (for export and account deletion).
pub async fn memberships_of(store: &dyn Store, user_id: Uuid) -> ApiResult<Vec<Member>> {
    Ok(of_user(store, user_id).await?.into_iter().map(|(_, m)| m).collect())
}

/// Removes every membership of a user, whatever its role (account deletion, after the
/// only-owner check).
pub async fn leave_all(store: &dyn Store, user_id: Uuid) -> ApiResult<()> {
    for member in memberships_of(store, user_id).await? {
        store.delete(&member_key(member.workspace_id, user_id), None).await?;
    }
    Ok(())
}
