//! The levels of limits above a token: a project token answers to its project and the
//! project's workspace, a workspace token to its workspace, a personal key to itself alone.

use std::sync::Arc;

use crate::error::{ApiError, ApiResult};
use crate::keys::{ApiKey, Owner};
use crate::limits::{self, Level};
use crate::projects::{self, Project};
use crate::workspaces::{self, Workspace};

/// A token's owner as the proxy needs it.
#[derive(Clone, Debug, Default)]
pub struct OwnerContext {
    pub project: Option<Project>,
    pub workspace: Option<Workspace>,
}

/// The project and workspace above a token (cached for the key cache's lifetime).
pub async fn owner_context(gw: &super::Gateway, key: &ApiKey) -> ApiResult<Arc<OwnerContext>> {
    if matches!(key.owner, Owner::User { .. }) {
        return Ok(Arc::new(OwnerContext::default()));
    }
    let tag = key.owner.tag();
    if let Some(context) = gw.hot.owners.get(&tag) {
        return Ok(context);
    }
    let store = gw.store.as_ref();
    let gone = |what: &str| ApiError::unauthorized_as("invalid_api_key", format!("this token's {what} no longer exists"));
    let context = match &key.owner {
        Owner::User { .. } => OwnerContext::default(),
        Owner::Workspace { workspace_id } => {
            OwnerContext { project: None, workspace: Some(workspaces::get(store, *workspace_id).await?.ok_or_else(|| gone("workspace"))?) }
        }
        Owner::Project { project_id } => {
            let project = projects::get(store, *project_id).await?.ok_or_else(|| gone("project"))?;
            let workspace = match project.workspace_id {
                Some(id) => workspaces::get(store, id).await?,
                None => None,
            };
            OwnerContext { project: Some(project), workspace }
        }
    };
    let context = Arc::new(context);
    gw.hot.owners.insert(tag, context.clone());
    Ok(context)
}

/// The limits that apply to a request with `key`, level by level, modes applied.
pub fn levels(key: &ApiKey, context: &OwnerContext) -> Vec<Level> {
    let mut levels = Vec::with_capacity(3);
    if let Some(workspace) = &context.workspace {
        levels.push(Level { counters: workspace.counters(), limits: workspace.limits.clone() });
    }
    if let Some(project) = &context.project {
        levels.push(Level { counters: project.counters(), limits: project.limits.clone() });
    }
    levels.push(Level { counters: key.counters(), limits: key.all_limits() });
    // A key made by a key answers to its ancestors' limits as they are: they are not a level
    // whose limits the key's own may replace.
    let mut out: Vec<Level> = key.ancestors.iter().map(|a| a.level()).filter(|l| !l.limits.is_empty()).collect();
    out.extend(limits::effective(levels));
    out
}
