//! The usage domain's access rule, beside `usage` rather than in it (limits, which projects
//! and workspaces use, write usage records; this reads projects and workspaces). Whose usage
//! records a signed-in user may read: a global admin every owner's; anyone else
//! with `report:read` their own, their projects' (any role on them) and those of the
//! workspaces they manage (owner or admin), a workspace's own tokens' records included.

use std::collections::HashSet;

use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::identity::roles::Permission;
use crate::projects::{self, Role, Viewer};
use crate::store::Store;
use crate::usage::UsageRecord;
use crate::workspaces;

pub struct Visibility {
    everything: bool,
    user_id: Uuid,
    projects: HashSet<Uuid>,
    workspaces: HashSet<Uuid>,
}

impl Visibility {
    /// What `who` may see, from a handful of queries whatever the number of projects.
    pub async fn of(store: &dyn Store, who: &Viewer<'_>) -> ApiResult<Self> {
        if !who.permissions.contains(&Permission::ReportRead) {
            return Err(ApiError::forbidden("insufficient_permissions", "this needs the report:read permission, which your role does not grant"));
        }
        let (mut projects, mut workspaces) = (HashSet::new(), HashSet::new());
        if !who.global_admin {
            projects = projects::visible_to(store, who).await?.into_iter().map(|(p, _)| p.id).collect();
            workspaces = workspaces::member_roles_of(store, who.user_id).await?.into_iter().filter(|m| m.role.manages()).map(|m| m.workspace_id).collect();
        }
        Ok(Visibility { everything: who.global_admin, user_id: who.user_id, projects, workspaces })
    }

    /// Whose records those are: every owner with usage for a global admin, else the caller,
    /// their projects and the workspaces they manage.
    pub async fn owners(&self, store: &dyn Store) -> ApiResult<Vec<String>> {
        if self.everything {
            return crate::usage::owners::all(store).await;
        }
        let mut owners = vec![format!("user#{}", self.user_id)];
        owners.extend(self.projects.iter().map(|p| format!("project#{p}")));
        owners.extend(self.workspaces.iter().map(|w| format!("workspace#{w}")));
        Ok(owners)
    }

    pub fn sees(&self, r: &UsageRecord) -> bool {
        self.everything
            || r.user_id == Some(self.user_id)
            || r.project_id.is_some_and(|p| self.projects.contains(&p))
            || (r.project_id.is_none() && r.org_id.is_some_and(|w| self.workspaces.contains(&w)))
    }

    /// The owners whose records a request covers: those the caller sees, narrowed to a project
    /// (by slug) or a workspace (`business_id`: its own records and its projects').
    pub async fn scope(&self, store: &dyn Store, who: &Viewer<'_>, project: Option<&str>, business_id: Option<Uuid>) -> ApiResult<Vec<String>> {
        let mut owners = match project {
            // One project's records: no need to list every owner first.
            Some(slug) => {
                let project = projects::require(store, slug, who, Role::Viewer).await?.0;
                let sees = self.everything || self.projects.contains(&project.id);
                if sees { vec![format!("project#{}", project.id)] } else { vec![] }
            }
            None => self.owners(store).await?,
        };
        if let Some(workspace) = business_id {
            let unknown = || ApiError::not_found(format!("no workspace {workspace}"));
            if !self.everything && workspaces::membership(store, workspace, self.user_id).await?.is_none() {
                return Err(unknown());
            }
            workspaces::get(store, workspace).await?.ok_or_else(unknown)?;
            let mut theirs: HashSet<String> =
                projects::list_all(store).await?.into_iter().filter(|p| p.workspace_id == Some(workspace)).map(|p| format!("project#{}", p.id)).collect();
            theirs.insert(format!("workspace#{workspace}"));
            owners.retain(|o| theirs.contains(o));
        }
        Ok(owners)
    }
}
