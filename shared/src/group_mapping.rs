//! The mapping from an identity provider's group names to a global role and workspace
//! memberships. SCIM provisioning and sign-in through the provider both call `apply` with the
//! groups the provider says the user is in, so the two can never map one user differently.
//! It sits above identity and workspaces, which it reaches into (as `account_deletion` does):
//! inside `identity` it would make the two folders import each other.
//!
//! Rules are tried in order; the first one matching a group that names a role gives the global
//! role, else `defaultRole`. Workspaces named by any rule are *managed*: the user is a member of
//! each with the highest role among the matching rules that name it, and is removed from it when
//! none does. Workspaces no rule names are left as they are, and so are owners everywhere.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::identity::accounts;
use crate::identity::users::{self, User};
use crate::store::{Attr, Item, Key, Store};
use crate::workspaces::{self, Member, Role as WorkspaceRole};

pub const MAX_RULES: usize = 500;
pub const MAX_GROUP_LEN: usize = 256;

/// The role a rule gives in a workspace: owners are made by hand, never by a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GrantRole {
    Member,
    Admin,
}

impl GrantRole {
    fn workspace_role(self) -> WorkspaceRole {
        match self {
            GrantRole::Member => WorkspaceRole::Member,
            GrantRole::Admin => WorkspaceRole::Admin,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkspaceGrant {
    pub workspace_id: Uuid,
    pub role: GrantRole,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// The group's name as the identity provider sends it (exact, case-sensitive).
    pub group: String,
    /// The global role members of the group get; none leaves the role to later rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default)]
    pub workspaces: Vec<WorkspaceGrant>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupMapping {
    /// The global role of a user no rule gives one.
    pub default_role: String,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

fn key() -> Key {
    Key::new("SYSTEM", "GROUP_MAPPING")
}

/// The saved mapping; none when no one has saved one yet. It is kept as one JSON attribute, so
/// its own types can refuse unknown fields (as the PUT body must) without meeting the item's keys.
pub async fn get(store: &dyn Store) -> ApiResult<Option<GroupMapping>> {
    let Some(item) = store.get(&key()).await? else { return Ok(None) };
    let json = item.get("mapping").and_then(Attr::as_str).ok_or_else(|| ApiError::internal("the group mapping item has no mapping"))?;
    serde_json::from_str(json).map(Some).map_err(|e| ApiError::internal(format!("the stored group mapping does not decode: {e}")))
}

/// Checks a mapping against the roles and workspaces that exist, then saves it. Users are
/// re-mapped when the provider next sends their groups (SCIM or sign-in).
pub async fn save(store: &dyn Store, mapping: GroupMapping) -> ApiResult<GroupMapping> {
    validate(store, &mapping).await?;
    let k = key();
    let json = serde_json::to_string(&mapping).map_err(ApiError::internal)?;
    store.put(Item::from([("PK".into(), Attr::S(k.pk)), ("SK".into(), Attr::S(k.sk)), ("mapping".into(), Attr::S(json))]), None).await?;
    Ok(mapping)
}

async fn validate(store: &dyn Store, mapping: &GroupMapping) -> ApiResult<()> {
    accounts::check_role_exists(store, &mapping.default_role)
        .await
        .map_err(|_| ApiError::invalid_param("defaultRole", format!("defaultRole names no role ({:?}); GET /api/roles lists them", mapping.default_role)))?;
    if mapping.rules.len() > MAX_RULES {
        return Err(ApiError::invalid_param("rules", format!("at most {MAX_RULES} rules; merge rules that name the same group")));
    }
    for (i, rule) in mapping.rules.iter().enumerate() {
        let at = |field: &str| format!("rules[{i}].{field}");
        if rule.group.trim().is_empty() || rule.group.chars().count() > MAX_GROUP_LEN {
            return Err(ApiError::invalid_param(&at("group"), format!("rules[{i}].group must be a group name of 1 to {MAX_GROUP_LEN} characters")));
        }
        if let Some(role) = &rule.role {
            accounts::check_role_exists(store, role)
                .await
                .map_err(|_| ApiError::invalid_param(&at("role"), format!("rules[{i}].role names no role ({role:?}); GET /api/roles lists them")))?;
        }
        for grant in &rule.workspaces {
            if workspaces::get(store, grant.workspace_id).await?.is_none() {
                return Err(ApiError::invalid_param(
                    &at("workspaces"),
                    format!("rules[{i}] names workspace {}, which does not exist; GET /api/workspaces lists them", grant.workspace_id),
                ));
            }
        }
    }
    Ok(())
}

/// What the mapping gives a user in these groups: the global role (none when no rule matches
/// with a role, so `defaultRole`), and for each managed workspace the role there (none: not a
/// member).
fn resolve(mapping: &GroupMapping, groups: &[String]) -> (String, Vec<(Uuid, Option<GrantRole>)>) {
    let matching: Vec<&Rule> = mapping.rules.iter().filter(|r| groups.contains(&r.group)).collect();
    let role = matching.iter().find_map(|r| r.role.clone()).unwrap_or_else(|| mapping.default_role.clone());
    let mut managed: Vec<(Uuid, Option<GrantRole>)> = Vec::new();
    for rule in &mapping.rules {
        let matched = matching.iter().any(|m| std::ptr::eq(*m, rule));
        for grant in &rule.workspaces {
            let offered = matched.then_some(grant.role);
            match managed.iter_mut().find(|(id, _)| *id == grant.workspace_id) {
                Some((_, best)) => *best = (*best).max(offered),
                None => managed.push((grant.workspace_id, offered)),
            }
        }
    }
    (role, managed)
}

/// Re-applies the mapping to `user`, who is in `groups` (exact names), and stores the groups on
/// the user so a later change can be re-applied. Without a saved mapping only the groups are
/// stored. The last admin keeps the role, and owners keep their workspaces.
pub async fn apply(store: &dyn Store, user: &User, groups: &[String], now: DateTime<Utc>) -> ApiResult<User> {
    let mut after = user.clone();
    after.groups = groups.to_vec();
    let mapping = get(store).await?;
    if let Some(mapping) = &mapping {
        let (role, managed) = resolve(mapping, groups);
        if role != user.role {
            if accounts::check_role_exists(store, &role).await.is_err() {
                // A role deleted after the mapping was saved: keep what the user has.
                tracing::warn!(user = %user.id, role, "the group mapping names a role that no longer exists; the user keeps theirs");
            } else if user.role == "admin" && accounts::ensure_other_admin(store, user.id).await.is_err() {
                tracing::warn!(user = %user.id, "the group mapping would demote the last admin; they stay admin");
            } else {
                after.role = role;
            }
        }
        for (workspace_id, offered) in managed {
            apply_membership(store, user.id, workspace_id, offered, now).await?;
        }
    }
    if after.role != user.role || after.groups != user.groups {
        after.updated_at = now;
        users::save(store, user, &after).await?;
    }
    Ok(after)
}

async fn apply_membership(store: &dyn Store, user_id: Uuid, workspace_id: Uuid, offered: Option<GrantRole>, now: DateTime<Utc>) -> ApiResult<()> {
    let current = workspaces::membership(store, workspace_id, user_id).await?;
    match (current, offered) {
        (Some(member), _) if member.role == WorkspaceRole::Owner => Ok(()),
        (Some(member), Some(role)) if member.role != role.workspace_role() => workspaces::set_member_role(store, &member, role.workspace_role()).await,
        (Some(_), Some(_)) | (None, None) => Ok(()),
        // The actor is no one (the mapping): remove_member refuses only a user removing themself.
        (Some(_), None) => workspaces::remove_member(store, workspace_id, Uuid::nil(), user_id).await,
        (None, Some(role)) => {
            if workspaces::get(store, workspace_id).await?.is_none() {
                tracing::warn!(workspace = %workspace_id, "the group mapping names a deleted workspace; skipped");
                return Ok(());
            }
            let member = Member { workspace_id, user_id, role: role.workspace_role(), joined_at: now };
            match store.transact(vec![workspaces::member_put(&member)?]).await {
                // Added meanwhile by someone else: their choice stands until the next apply.
                Ok(()) | Err(crate::store::StoreError::TransactionCancelled { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(group: &str, role: Option<&str>, grants: &[(Uuid, GrantRole)]) -> Rule {
        Rule {
            group: group.into(),
            role: role.map(String::from),
            workspaces: grants.iter().map(|(id, role)| WorkspaceGrant { workspace_id: *id, role: *role }).collect(),
        }
    }

    #[test]
    fn the_first_matching_rule_with_a_role_wins_and_workspaces_take_the_highest_role() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mapping = GroupMapping {
            default_role: "none".into(),
            rules: vec![
                rule("devs", None, &[(a, GrantRole::Member)]),
                rule("ops", Some("operator"), &[(a, GrantRole::Admin)]),
                rule("admins", Some("admin"), &[(b, GrantRole::Member)]),
            ],
        };
        let groups = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            resolve(&mapping, &groups(&["devs", "ops", "admins"])),
            ("operator".into(), vec![(a, Some(GrantRole::Admin)), (b, Some(GrantRole::Member))])
        );
        assert_eq!(resolve(&mapping, &groups(&["devs"])), ("none".into(), vec![(a, Some(GrantRole::Member)), (b, None)]));
        assert_eq!(resolve(&mapping, &groups(&["Devs"])), ("none".into(), vec![(a, None), (b, None)]), "names are case-sensitive");
    }
}
