//! Global roles and permissions. The built-in roles live in code and cannot be changed or
//! deleted; custom roles are stored items holding permission strings.

use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::store::{Cond, Index, Key, Query, Store, StoreError, Update, attr_of, from_item, keyed_item, query_all, set_index};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    #[serde(rename = "project:read")]
    ProjectRead,
    #[serde(rename = "project:write")]
    ProjectWrite,
    #[serde(rename = "model:read")]
    ModelRead,
    #[serde(rename = "model:write")]
    ModelWrite,
    #[serde(rename = "user:read")]
    UserRead,
    #[serde(rename = "user:write")]
    UserWrite,
    #[serde(rename = "report:read")]
    ReportRead,
    #[serde(rename = "settings:read")]
    SettingsRead,
    #[serde(rename = "settings:write")]
    SettingsWrite,
}

use Permission::*;

impl Permission {
    pub const ALL: [Permission; 9] = [ProjectRead, ProjectWrite, ModelRead, ModelWrite, UserRead, UserWrite, ReportRead, SettingsRead, SettingsWrite];

    pub fn as_str(self) -> &'static str {
        match self {
            ProjectRead => "project:read",
            ProjectWrite => "project:write",
            ModelRead => "model:read",
            ModelWrite => "model:write",
            UserRead => "user:read",
            UserWrite => "user:write",
            ReportRead => "report:read",
            SettingsRead => "settings:read",
            SettingsWrite => "settings:write",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// `none` grants nothing: the role of accounts made by accepting a workspace invite, whose
/// access comes only from their memberships until a global admin gives them another role.
pub const BUILT_IN: [(&str, &[Permission]); 4] = [
    ("admin", &Permission::ALL),
    ("operator", &[ProjectRead, ProjectWrite, ModelRead, ModelWrite, UserRead, ReportRead]),
    ("viewer", &[ProjectRead, ModelRead, ReportRead]),
    (NO_ROLE, &[]),
];

/// The built-in role without permissions.
pub const NO_ROLE: &str = "none";

pub fn built_in(name: &str) -> Option<&'static [Permission]> {
    BUILT_IN.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub permissions: Vec<Permission>,
    pub built_in: bool,
}

fn key(name: &str) -> Key {
    Key::new(format!("ROLE#{name}"), "ROLE")
}

pub fn validate_name(name: &str) -> ApiResult<()> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok { Ok(()) } else { Err(ApiError::invalid_param("name", "name must be 1-64 characters: lowercase letters, digits, _ and -, starting with a letter")) }
}

/// Parses permission strings, naming the valid ones when one is not.
pub fn parse_permissions(raw: &[String]) -> ApiResult<Vec<Permission>> {
    let mut out = Vec::with_capacity(raw.len());
    for p in raw {
        let parsed = Permission::parse(p).ok_or_else(|| {
            let valid: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
            ApiError::invalid_param("permissions", format!("unknown permission {p:?}; valid permissions are {}", valid.join(", ")))
        })?;
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    out.sort();
    Ok(out)
}

/// The permissions of a role, built-in or custom; `None` when the role does not exist.
pub async fn permissions_of(store: &dyn Store, role: &str) -> ApiResult<Option<Vec<Permission>>> {
    if let Some(p) = built_in(role) {
        return Ok(Some(p.to_vec()));
    }
    Ok(get(store, role).await?.map(|r| r.permissions))
}

pub async fn get(store: &dyn Store, name: &str) -> ApiResult<Option<Role>> {
    if let Some(p) = built_in(name) {
        return Ok(Some(Role { name: name.into(), permissions: p.to_vec(), built_in: true }));
    }
    match store.get(&key(name)).await? {
        Some(item) => Ok(Some(from_item(item)?)),
        None => Ok(None),
    }
}

pub async fn list(store: &dyn Store) -> ApiResult<Vec<Role>> {
    let mut roles: Vec<Role> = BUILT_IN.iter().map(|(n, p)| Role { name: (*n).into(), permissions: p.to_vec(), built_in: true }).collect();
    for item in query_all(store, Query::new(Index::Gsi1, "ROLES").limit(100)).await? {
        roles.push(from_item(item)?);
    }
    Ok(roles)
}

pub async fn create(store: &dyn Store, name: &str, permissions: Vec<Permission>) -> ApiResult<Role> {
    validate_name(name)?;
    if built_in(name).is_some() {
        return Err(ApiError::conflict("role_exists", format!("{name} is a built-in role")));
    }
    let role = Role { name: name.into(), permissions, built_in: false };
    let mut item = keyed_item(&role, &key(name))?;
    set_index(&mut item, Index::Gsi1, "ROLES", name);
    match store.put(item, Some(Cond::NotExists)).await {
        Ok(()) => Ok(role),
        Err(StoreError::ConditionFailed) => Err(ApiError::conflict("role_exists", format!("a role named {name} already exists"))),
        Err(e) => Err(e.into()),
    }
}

pub async fn update(store: &dyn Store, name: &str, permissions: Vec<Permission>) -> ApiResult<Role> {
    if built_in(name).is_some() {
        return Err(ApiError::forbidden("built_in_role", format!("{name} is a built-in role and cannot be changed")));
    }
    let update = Update::default().set("permissions", attr_of(&permissions)?);
    match store.update(&key(name), update, Some(Cond::Exists)).await {
        Ok(item) => Ok(from_item(item)?),
        Err(StoreError::ConditionFailed) => Err(ApiError::not_found(format!("no role named {name}"))),
        Err(e) => Err(e.into()),
    }
}

pub async fn delete(store: &dyn Store, name: &str) -> ApiResult<()> {
    if built_in(name).is_some() {
        return Err(ApiError::forbidden("built_in_role", format!("{name} is a built-in role and cannot be deleted")));
    }
    let holders = super::users::list(store).await?.into_iter().filter(|u| u.role == name).count();
    if holders > 0 {
        return Err(ApiError::conflict("role_in_use", format!("{holders} user(s) still have the role {name}; give them another role first")));
    }
    match store.delete(&key(name), Some(Cond::Exists)).await {
        Ok(()) => Ok(()),
        Err(StoreError::ConditionFailed) => Err(ApiError::not_found(format!("no role named {name}"))),
        Err(e) => Err(e.into()),
    }
}
