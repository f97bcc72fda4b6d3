//! SCIM Groups: a name and member users, as the identity provider pushes them. They grant
//! nothing themselves; each change re-applies the group mapping (`group_mapping`) to
//! every user whose groups it changed, with the names of all the SCIM groups they are in.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{GROUP_SCHEMA, check_len, filter, meta, string_field};
use crate::error::{ApiError, ApiResult};
use crate::group_mapping;
use crate::identity::users::{self, User};
use crate::store::{Cond, Index, Key, Query, Store, StoreError, from_item, keyed_item, query_all, set_index};

/// More members than this in one group are refused: the group is one stored item.
pub const MAX_MEMBERS: usize = 5000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Group {
    pub id: Uuid,
    pub display_name: String,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub members: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn key(id: Uuid) -> Key {
    Key::new(format!("SCIM_GROUP#{id}"), "GROUP")
}

pub async fn get(store: &dyn Store, id: Uuid) -> ApiResult<Option<Group>> {
    Ok(store.get(&key(id)).await?.map(from_item).transpose()?)
}

/// Every group, oldest first.
pub async fn list(store: &dyn Store) -> ApiResult<Vec<Group>> {
    let items = query_all(store, Query::new(Index::Gsi1, "SCIM_GROUPS")).await?;
    Ok(items.into_iter().map(from_item).collect::<Result<_, _>>()?)
}

/// (id, displayName) of the groups `user_id` is in.
pub fn of_user(groups: &[Group], user_id: Uuid) -> Vec<(Uuid, String)> {
    groups.iter().filter(|g| g.members.contains(&user_id)).map(|g| (g.id, g.display_name.clone())).collect()
}

/// A group as a SCIM Group; `members` are the accounts its member ids may name.
pub fn resource(group: &Group, members: &[User], base: &str) -> Value {
    let mut out = json!({
        "schemas": [GROUP_SCHEMA],
        "id": group.id,
        "displayName": group.display_name,
        "meta": meta("Group", base, group.id, group.created_at, group.updated_at),
    });
    let fields = out.as_object_mut().expect("an object");
    if let Some(external_id) = &group.external_id {
        fields.insert("externalId".into(), json!(external_id));
    }
    let shown: Vec<Value> = group
        .members
        .iter()
        .filter_map(|id| members.iter().find(|u| u.id == *id))
        // No `display`: clients compare members as they sent them (value, $ref, type).
        .map(|u| json!({"value": u.id, "type": "User", "$ref": format!("{base}/Users/{}", u.id)}))
        .collect();
    if !shown.is_empty() {
        fields.insert("members".into(), Value::Array(shown));
    }
    out
}

/// A Group as a POST or PUT sends it (or a PATCH leaves it).
pub struct Input {
    pub display_name: String,
    pub external_id: Option<String>,
    pub members: Vec<Uuid>,
}

pub fn parse(body: &Value) -> ApiResult<Input> {
    if !body.is_object() {
        return Err(ApiError::bad_request("invalidSyntax", "a Group is a JSON object"));
    }
    let display_name = string_field(body, "displayName")?
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("invalidValue", "displayName is required (the group's name in the identity provider)"))?;
    check_len("displayName", &display_name)?;
    let external_id = string_field(body, "externalId")?;
    if let Some(e) = &external_id {
        check_len("externalId", e)?;
    }
    let raw = match filter::field(body, "members") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(ApiError::bad_request("invalidValue", "members must be a list of {\"value\": \"<user id>\"}")),
    };
    if raw.len() > MAX_MEMBERS {
        return Err(ApiError::bad_request("invalidValue", format!("a group holds at most {MAX_MEMBERS} members")));
    }
    let mut members = Vec::with_capacity(raw.len());
    for member in &raw {
        let value = string_field(member, "value")?.unwrap_or_default();
        let id: Uuid = value.parse().map_err(|_| ApiError::bad_request("invalidValue", format!("members: {value:?} is not a User id")))?;
        if !members.contains(&id) {
            members.push(id);
        }
    }
    Ok(Input { display_name: display_name.trim().to_string(), external_id, members })
}

/// Members must be existing users (groups of groups are not supported).
async fn check_members(store: &dyn Store, members: &[Uuid]) -> ApiResult<()> {
    for id in members {
        if users::get(store, *id).await?.is_none_or(|u| u.deleting_since.is_some()) {
            return Err(ApiError::bad_request("invalidValue", format!("members: no User with id {id}")));
        }
    }
    Ok(())
}

async fn put(store: &dyn Store, group: &Group, cond: Cond) -> ApiResult<()> {
    let mut item = keyed_item(group, &key(group.id))?;
    set_index(&mut item, Index::Gsi1, "SCIM_GROUPS", format!("{}#{}", group.created_at.to_rfc3339(), group.id));
    match store.put(item, Some(cond)).await {
        Ok(()) => Ok(()),
        Err(StoreError::ConditionFailed) => Err(ApiError::not_found(format!("no Group with id {}", group.id))),
        Err(e) => Err(e.into()),
    }
}

pub async fn create(store: &dyn Store, input: Input, now: DateTime<Utc>) -> ApiResult<Group> {
    check_members(store, &input.members).await?;
    let group = Group {
        id: Uuid::new_v4(),
        display_name: input.display_name,
        external_id: input.external_id,
        members: input.members,
        created_at: now,
        updated_at: now,
    };
    put(store, &group, Cond::NotExists).await?;
    remap(store, &group.members, now).await?;
    Ok(group)
}

pub async fn replace(store: &dyn Store, before: &Group, input: Input, now: DateTime<Utc>) -> ApiResult<Group> {
    check_members(store, &input.members).await?;
    let after = Group { display_name: input.display_name, external_id: input.external_id, members: input.members, updated_at: now, ..before.clone() };
    put(store, &after, Cond::Exists).await?;
    // A renamed group changes the groups of all its members; otherwise only who joined or left.
    let affected: Vec<Uuid> = if before.display_name != after.display_name {
        before.members.iter().chain(&after.members).copied().collect()
    } else {
        before.members.iter().filter(|m| !after.members.contains(m)).chain(after.members.iter().filter(|m| !before.members.contains(m))).copied().collect()
    };
    remap(store, &affected, now).await?;
    Ok(after)
}

pub async fn delete(store: &dyn Store, group: &Group, now: DateTime<Utc>) -> ApiResult<()> {
    match store.delete(&key(group.id), Some(Cond::Exists)).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed) => return Err(ApiError::not_found(format!("no Group with id {}", group.id))),
        Err(e) => return Err(e.into()),
    }
    remap(store, &group.members, now).await
}

/// Takes a deleted user out of every group (no mapping to re-apply: the account is gone).
pub async fn forget_user(store: &dyn Store, user_id: Uuid, now: DateTime<Utc>) -> ApiResult<()> {
    for mut group in list(store).await?.into_iter().filter(|g| g.members.contains(&user_id)) {
        group.members.retain(|m| *m != user_id);
        group.updated_at = now;
        put(store, &group, Cond::Exists).await?;
    }
    Ok(())
}

/// Re-applies the group mapping to each user, with the names of every group they are in now.
async fn remap(store: &dyn Store, user_ids: &[Uuid], now: DateTime<Utc>) -> ApiResult<()> {
    if user_ids.is_empty() {
        return Ok(());
    }
    let groups = list(store).await?;
    let mut done = Vec::new();
    for id in user_ids {
        if done.contains(id) {
            continue;
        }
        done.push(*id);
        let Some(user) = users::get(store, *id).await?.filter(|u| u.deleting_since.is_none()) else { continue };
        let names: Vec<String> = of_user(&groups, *id).into_iter().map(|(_, name)| name).collect();
        group_mapping::apply(store, &user, &names, now).await?;
    }
    Ok(())
}
