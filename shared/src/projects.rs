//! Projects (management family): a slug unique within its workspace, the models a project
//! token routes over (in order), a default upstream timeout and limits for the project as a
//! whole, optionally inside a workspace. Project members have roles viewer, editor or admin.
//!
//! Who may do what: a global `admin` everything; a project in a workspace is otherwise governed
//! by its workspace (owners and admins act as project admins, members as viewers) and by its
//! own members; a project outside any workspace also by the global `project:read` /
//! `project:write` permissions. Anyone else gets 404: a project's existence is not shared.
//!
//! Slugs are unique per namespace: a workspace, or the global space of projects outside any
//! workspace. Were they unique server-wide, creating `acme` in your workspace would answer 409
//! when another tenant had one, telling you so. Whoever may create in a namespace may see all
//! of its projects, so a 409 there reveals nothing. A path names a project by its slug when the
//! caller sees one project of that slug, or as `<workspace id>:<slug>` (`global:<slug>`) to
//! choose among several.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::identity::roles::Permission;
use crate::invalidate::Invalidate;
use crate::limits::Limit;
use crate::store::{Attr, Cond, Index, Item, Key, Query, Store, StoreError, TxOp, from_item, keyed_item, query_all, set_index};
use crate::workspaces;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
// The workspaces have a Role of their own; one name would make one schema of both.
#[schema(as = ProjectRole)]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Project {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub workspace_id: Option<Uuid>,
    /// Routing candidates, in order.
    pub models: Vec<String>,
    pub default_timeout_ms: i64,
    #[serde(default)]
    pub limits: Vec<Limit>,
    /// Opt-in: its tokens' requests answered from the response cache when asked before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<crate::response_cache::CacheSettings>,
    /// Attempts per model and total time for its tokens' requests, over each model's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<crate::catalog::RetryPolicy>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Project {
    pub fn counters(&self) -> Key {
        Key::new(format!("LIMITS#project#{}", self.id), "COUNTERS")
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Member {
    pub project_id: Uuid,
    pub user_id: Uuid,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

pub const DEFAULT_TIMEOUT_MS: i64 = 30_000;
pub const MAX_TIMEOUT_MS: i64 = 600_000;

pub fn key(id: Uuid) -> Key {
    Key::new(format!("PROJECT#{id}"), "PROJECT")
}

/// The slug's lock in its namespace. Global projects keep the sort key they always had.
fn slug_key(slug: &str, workspace_id: Option<Uuid>) -> Key {
    Key::new(format!("SLUG#{slug}"), workspace_id.map_or_else(|| "SLUG".to_string(), |ws| format!("WS#{ws}")))
}

fn member_key(project_id: Uuid, user_id: Uuid) -> Key {
    Key::new(format!("PROJECT#{project_id}"), format!("MEMBER#{user_id}"))
}

fn project_item(project: &Project) -> ApiResult<Item> {
    let mut item = keyed_item(project, &key(project.id))?;
    set_index(&mut item, Index::Gsi1, "PROJECTS", project.slug.clone());
    Ok(item)
}

pub fn validate_slug(slug: &str) -> ApiResult<()> {
    let ok = (1..=64).contains(&slug.len())
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if ok { Ok(()) } else { Err(ApiError::invalid_param("slug", "slug must be 1-64 lower-case letters, digits and inner hyphens, such as my-app")) }
}

/// Checks the settings a create or update may change.
pub fn validate(project: &Project) -> ApiResult<()> {
    if project.name.trim().is_empty() || project.name.chars().count() > 200 {
        return Err(ApiError::invalid_param("name", "name must be 1 to 200 characters"));
    }
    validate_slug(&project.slug)?;
    if let Some(cache) = &project.cache {
        cache.validate("cache")?;
    }
    if let Some(retry) = &project.retry {
        retry.validate()?;
    }
    if !(1..=MAX_TIMEOUT_MS).contains(&project.default_timeout_ms) {
        return Err(ApiError::invalid_param("defaultTimeoutMs", format!("defaultTimeoutMs must be between 1 and {MAX_TIMEOUT_MS}")));
    }
    if project.models.iter().any(|m| m.trim().is_empty()) || project.models.len() > 20 {
        return Err(ApiError::invalid_param("models", "models lists up to 20 catalog model ids, in routing order"));
    }
    Ok(())
}

/// Creates a project; its slug is taken through a lock item in the same transaction, so two
/// racing creations of one slug make one project.
pub async fn create(store: &dyn Store, project: &Project, creator: Uuid) -> ApiResult<()> {
    validate(project)?;
    let lock = slug_key(&project.slug, project.workspace_id);
    let lock = Item::from([("PK".into(), Attr::S(lock.pk)), ("SK".into(), Attr::S(lock.sk)), ("project_id".into(), Attr::S(project.id.to_string()))]);
    let admin = Member { project_id: project.id, user_id: creator, role: Role::Admin, joined_at: project.created_at };
    let ops = vec![
        TxOp::Put { item: lock, cond: Some(Cond::NotExists) },
        TxOp::Put { item: project_item(project)?, cond: Some(Cond::NotExists) },
        member_put(&admin)?,
    ];
    match store.transact(ops).await {
        Ok(()) => Ok(()),
        Err(StoreError::TransactionCancelled { index: 0 }) => {
            let place = if project.workspace_id.is_some() { "this workspace" } else { "the projects outside workspaces" };
            Err(ApiError::conflict("slug_taken", format!("a project with slug {:?} already exists in {place}", project.slug)))
        }
        Err(e) => Err(e.into()),
    }
}

fn member_put(member: &Member) -> ApiResult<TxOp> {
    let mut item = keyed_item(member, &member_key(member.project_id, member.user_id))?;
    set_index(&mut item, Index::Gsi1, format!("USER#{}#PROJECTS", member.user_id), member.project_id.to_string());
    Ok(TxOp::Put { item, cond: None })
}

pub async fn get(store: &dyn Store, id: Uuid) -> ApiResult<Option<Project>> {
    Ok(store.get(&key(id)).await?.map(from_item).transpose()?)
}

/// Every project with this slug, in any namespace.
async fn by_slug(store: &dyn Store, slug: &str) -> ApiResult<Vec<Project>> {
    let mut out = Vec::new();
    for lock in query_all(store, Query::new(Index::Primary, format!("SLUG#{slug}"))).await? {
        if let Some(id) = lock.get("project_id").and_then(Attr::as_str).and_then(|s| s.parse().ok())
            && let Some(project) = get(store, id).await?
        {
            out.push(project);
        }
    }
    Ok(out)
}

/// Saves a changed project; what tokens know of their owners (its limits) is dropped at once.
pub async fn save(store: &dyn Store, project: &mut Project, now: DateTime<Utc>, caches: &dyn Invalidate) -> ApiResult<()> {
    validate(project)?;
    project.updated_at = now;
    store.put(project_item(project)?, Some(Cond::Exists)).await.map_err(|e| match e {
        StoreError::ConditionFailed => not_found(&project.slug),
        e => e.into(),
    })?;
    caches.owners();
    Ok(())
}

/// Deletes a project, its slug and its members. Its tokens are revoked by the caller first.
pub async fn delete(store: &dyn Store, project: &Project, caches: &dyn Invalidate) -> ApiResult<()> {
    caches.owners();
    for member in members(store, project.id).await? {
        store.delete(&member_key(project.id, member.user_id), None).await?;
    }
    let lock = slug_key(&project.slug, project.workspace_id);
    store.transact(vec![TxOp::Delete { key: key(project.id), cond: Some(Cond::Exists) }, TxOp::Delete { key: lock, cond: None }]).await?;
    Ok(())
}

pub async fn list_all(store: &dyn Store) -> ApiResult<Vec<Project>> {
    let items = query_all(store, Query::new(Index::Gsi1, "PROJECTS")).await?;
    Ok(items.into_iter().map(from_item).collect::<Result<_, _>>()?)
}

pub async fn members(store: &dyn Store, project_id: Uuid) -> ApiResult<Vec<Member>> {
    let items = query_all(store, Query::new(Index::Primary, format!("PROJECT#{project_id}")).prefix("MEMBER#")).await?;
    Ok(items.into_iter().map(from_item).collect::<Result<_, _>>()?)
}

pub async fn membership(store: &dyn Store, project_id: Uuid, user_id: Uuid) -> ApiResult<Option<Member>> {
    Ok(store.get(&member_key(project_id, user_id)).await?.map(from_item).transpose()?)
}

/// Adds a member or changes their role.
pub async fn set_member(store: &dyn Store, member: &Member) -> ApiResult<()> {
    store.transact(vec![member_put(member)?]).await?;
    Ok(())
}

pub async fn remove_member(store: &dyn Store, project_id: Uuid, user_id: Uuid) -> ApiResult<()> {
    match store.delete(&member_key(project_id, user_id), Some(Cond::Exists)).await {
        Ok(()) => Ok(()),
        Err(StoreError::ConditionFailed) => Err(ApiError::not_found(format!("user {user_id} is not a member of this project"))),
        Err(e) => Err(e.into()),
    }
}

/// Every project membership of a user (for export and account deletion).
pub async fn memberships_of(store: &dyn Store, user_id: Uuid) -> ApiResult<Vec<Member>> {
    let items = query_all(store, Query::new(Index::Gsi1, format!("USER#{user_id}#PROJECTS"))).await?;
    Ok(items.into_iter().map(from_item).collect::<Result<_, _>>()?)
}

pub async fn leave_all(store: &dyn Store, user_id: Uuid) -> ApiResult<()> {
    for member in memberships_of(store, user_id).await? {
        store.delete(&member_key(member.project_id, user_id), None).await?;
    }
    Ok(())
}

fn not_found(slug: &str) -> ApiError {
    ApiError::not_found(format!("no project {slug:?} among yours; GET /api/projects lists them"))
}

/// Who is asking: enough to decide project access.
pub struct Viewer<'a> {
    pub user_id: Uuid,
    pub permissions: &'a [Permission],
    pub global_admin: bool,
}

impl Viewer<'_> {
    /// The role a global permission gives on a project outside any workspace.
    fn global_role(&self) -> Option<Role> {
        if self.permissions.contains(&Permission::ProjectWrite) {
            Some(Role::Editor)
        } else if self.permissions.contains(&Permission::ProjectRead) {
            Some(Role::Viewer)
        } else {
            None
        }
    }
}

/// Every project the caller has a role on, with that role, by the same rules as `role_of`, from
/// three queries whatever the number of projects: the projects, the caller's project
/// memberships and the caller's workspace memberships.
pub async fn visible_to(store: &dyn Store, who: &Viewer<'_>) -> ApiResult<Vec<(Project, Role)>> {
    let all = list_all(store).await?;
    if who.global_admin {
        return Ok(all.into_iter().map(|p| (p, Role::Admin)).collect());
    }
    let own: std::collections::HashMap<Uuid, Role> = memberships_of(store, who.user_id).await?.into_iter().map(|m| (m.project_id, m.role)).collect();
    let in_workspaces: std::collections::HashMap<Uuid, bool> =
        workspaces::member_roles_of(store, who.user_id).await?.into_iter().map(|m| (m.workspace_id, m.role.manages())).collect();
    let global = who.global_role();
    Ok(all
        .into_iter()
        .filter_map(|project| {
            let own = own.get(&project.id).copied();
            let around = match project.workspace_id {
                Some(ws) => in_workspaces.get(&ws).map(|manages| if *manages { Role::Admin } else { Role::Viewer }),
                None => global,
            };
            own.max(around).map(|role| (project, role))
        })
        .collect())
}

/// The caller's role on a project, if any: see the module's rules.
pub async fn role_of(store: &dyn Store, project: &Project, who: &Viewer<'_>) -> ApiResult<Option<Role>> {
    if who.global_admin {
        return Ok(Some(Role::Admin));
    }
    let mut role = membership(store, project.id, who.user_id).await?.map(|m| m.role);
    match project.workspace_id {
        Some(ws) => {
            if let Some(m) = workspaces::membership(store, ws, who.user_id).await? {
                let from_workspace = if m.role.manages() { Role::Admin } else { Role::Viewer };
                role = role.max(Some(from_workspace));
            }
        }
        None => role = role.max(who.global_role()),
    }
    Ok(role)
}

/// The project a path names (`slug`, or `<workspace id>:<slug>` / `global:<slug>`) with the
/// caller's role, requiring at least `needed`: 404 when the caller may not see it at all (the
/// same answer as for a slug nobody has), 403 when they may see but not do this, 409 when the
/// caller sees several projects of that slug and must say which.
pub async fn require(store: &dyn Store, name: &str, who: &Viewer<'_>, needed: Role) -> ApiResult<(Project, Role)> {
    let (namespace, slug) = match name.split_once(':') {
        Some(("global", slug)) => (Some(None), slug),
        Some((ws, slug)) => (Some(Some(ws.parse::<Uuid>().map_err(|_| not_found(name))?)), slug),
        None => (None, name),
    };
    let mut visible = Vec::new();
    for project in by_slug(store, slug).await? {
        if namespace.is_some_and(|ns| ns != project.workspace_id) {
            continue;
        }
        if let Some(role) = role_of(store, &project, who).await? {
            visible.push((project, role));
        }
    }
    if visible.len() > 1 {
        let names: Vec<String> =
            visible.iter().map(|(p, _)| format!("{}:{slug}", p.workspace_id.map_or_else(|| "global".to_string(), |w| w.to_string()))).collect();
        return Err(ApiError::conflict("ambiguous_slug", format!("you see {} projects with slug {slug:?}; name one as {}", visible.len(), names.join(" or "))));
    }
    let (project, role) = visible.pop().ok_or_else(|| not_found(name))?;
    if role < needed {
        return Err(ApiError::forbidden(
            "project_role_required",
            format!("this needs the {needed:?} role on project {slug:?}; yours is {role:?}").to_lowercase(),
        ));
    }
    Ok((project, role))
}
