//! SCIM Users over Tollgate accounts. Every account is a SCIM user; what SCIM knows beyond the
//! account (userName, externalId, name parts, every email) lives in a profile item beside it
//! (`USER#<id>` / `SCIM`). An account no identity provider has touched shows its email as
//! userName. The account's email is the primary email (else the first, else userName).
//!
//! userName is unique (case-insensitively) through a lock item written in the same transaction
//! as the profile. `active: false` deprovisions: the account is marked disabled, every session
//! ends and every API key is revoked (reactivating does not bring keys back; the user makes new
//! ones). DELETE is the account deletion service's, so a later GET answers 404.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{USER_SCHEMA, bool_field, check_len, filter, meta, string_field};
use crate::error::{ApiError, ApiResult};
use crate::identity::users::{self, User};
use crate::identity::{normalize_email, password, roles, sessions};
use crate::invalidate::Invalidate;
use crate::secrets::SecretStore;
use crate::store::{Attr, Cond, Item, Key, Store, StoreError, TxOp, from_item, keyed_item};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Email {
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    #[serde(default)]
    pub primary: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Name {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
}

/// What SCIM knows of an account beyond the account itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub user_name: String,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub name: Option<Name>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub emails: Vec<Email>,
}

fn profile_key(user_id: Uuid) -> Key {
    Key::new(format!("USER#{user_id}"), "SCIM")
}

/// The lock of a userName, by its hash: a lock left behind by an account deleted outside SCIM
/// (freed lazily, `free_stale_lock`) then holds no one's name or email.
fn user_name_key(user_name: &str) -> Key {
    Key::new(format!("SCIM_USERNAME#{}", crate::identity::sha256_hex(&user_name.to_lowercase())), "LOCK")
}

fn lock_op(user_name: &str, user_id: Uuid) -> TxOp {
    let k = user_name_key(user_name);
    let item = Item::from([("PK".into(), Attr::S(k.pk)), ("SK".into(), Attr::S(k.sk)), ("user_id".into(), Attr::S(user_id.to_string()))]);
    TxOp::Put { item, cond: Some(Cond::NotExists) }
}

fn user_name_taken(user_name: &str) -> ApiError {
    ApiError::conflict("uniqueness", format!("a user with userName {user_name:?} already exists"))
}

pub async fn profile(store: &dyn Store, user_id: Uuid) -> ApiResult<Option<Profile>> {
    Ok(store.get(&profile_key(user_id)).await?.map(from_item).transpose()?)
}

/// The profile an account without one shows.
fn derived(user: &User) -> Profile {
    Profile {
        user_name: user.email.clone(),
        external_id: None,
        name: None,
        display_name: user.name.clone(),
        emails: vec![Email { value: user.email.clone(), r#type: None, primary: true }],
    }
}

/// An account as a SCIM User; `groups` are (id, displayName) of the SCIM groups it is in.
pub fn resource(user: &User, profile: Option<&Profile>, groups: &[(Uuid, String)], base: &str) -> Value {
    let profile = profile.cloned().unwrap_or_else(|| derived(user));
    let mut out = json!({
        "schemas": [USER_SCHEMA],
        "id": user.id,
        "userName": profile.user_name,
        "active": user.disabled_at.is_none(),
        "meta": meta("User", base, user.id, user.created_at, user.updated_at),
    });
    let fields = out.as_object_mut().expect("an object");
    if let Some(external_id) = profile.external_id {
        fields.insert("externalId".into(), json!(external_id));
    }
    if let Some(name) = profile.name.filter(|n| *n != Name::default()) {
        let mut n = serde_json::Map::new();
        for (key, value) in [("formatted", name.formatted), ("familyName", name.family_name), ("givenName", name.given_name)] {
            if let Some(value) = value {
                n.insert(key.into(), json!(value));
            }
        }
        fields.insert("name".into(), Value::Object(n));
    }
    if let Some(display_name) = profile.display_name {
        fields.insert("displayName".into(), json!(display_name));
    }
    if !profile.emails.is_empty() {
        fields.insert("emails".into(), serde_json::to_value(&profile.emails).unwrap_or_default());
    }
    if !groups.is_empty() {
        let groups: Vec<Value> = groups.iter().map(|(id, name)| json!({"value": id, "display": name, "$ref": format!("{base}/Groups/{id}")})).collect();
        fields.insert("groups".into(), Value::Array(groups));
    }
    out
}

/// A User as a POST or PUT sends it (or a PATCH leaves it).
pub struct Input {
    pub profile: Profile,
    pub active: bool,
    /// The account email it gives (primary email, else the first, else userName).
    pub email: String,
}

fn email_list(body: &Value) -> ApiResult<Vec<Email>> {
    let raw = match filter::field(body, "emails") {
        None | Some(Value::Null) => return Ok(vec![]),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApiError::bad_request("invalidValue", "emails must be a list of {value, type, primary}")),
    };
    let mut emails = Vec::with_capacity(raw.len());
    for item in raw.iter().take(20) {
        let value = string_field(item, "value")?.ok_or_else(|| ApiError::bad_request("invalidValue", "every email needs a value"))?;
        check_len("emails.value", &value)?;
        emails.push(Email { value, r#type: string_field(item, "type")?, primary: bool_field(item, "primary")?.unwrap_or(false) });
    }
    Ok(emails)
}

pub fn parse(body: &Value) -> ApiResult<Input> {
    if !body.is_object() {
        return Err(ApiError::bad_request("invalidSyntax", "a User is a JSON object"));
    }
    let user_name = string_field(body, "userName")?
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("invalidValue", "userName is required (the user's sign-in name, usually their email)"))?;
    check_len("userName", &user_name)?;
    let name = match filter::field(body, "name") {
        None | Some(Value::Null) => None,
        Some(n @ Value::Object(_)) => {
            Some(Name { formatted: string_field(n, "formatted")?, family_name: string_field(n, "familyName")?, given_name: string_field(n, "givenName")? })
        }
        Some(_) => return Err(ApiError::bad_request("invalidValue", "name must be an object such as {\"givenName\": \"Ada\"}")),
    };
    let emails = email_list(body)?;
    let chosen = emails.iter().find(|e| e.primary).or(emails.first()).map_or(user_name.as_str(), |e| e.value.as_str());
    let email = normalize_email(chosen, "emails")
        .map_err(|_| ApiError::bad_request("invalidValue", format!("the account needs an email: {chosen:?} (the primary email, else userName) is not one")))?;
    let profile = Profile {
        user_name: user_name.trim().to_string(),
        external_id: string_field(body, "externalId")?,
        name,
        display_name: string_field(body, "displayName")?,
        emails,
    };
    for value in [&profile.external_id, &profile.display_name].into_iter().flatten() {
        check_len("a string attribute", value)?;
    }
    Ok(Input { profile, active: bool_field(body, "active")?.unwrap_or(true), email })
}

/// The account's own name, from what SCIM says of the person.
fn account_name(profile: &Profile) -> Option<String> {
    let name = profile.name.as_ref();
    profile.display_name.clone().or_else(|| name.and_then(|n| n.formatted.clone())).or_else(|| {
        let parts: Vec<&str> = name.into_iter().flat_map(|n| [n.given_name.as_deref(), n.family_name.as_deref()]).flatten().collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    })
}

/// Drops a userName lock whose account is gone (deleted outside SCIM), so the name is free.
async fn free_stale_lock(store: &dyn Store, user_name: &str) -> ApiResult<()> {
    let key = user_name_key(user_name);
    let Some(lock) = store.get(&key).await? else { return Ok(()) };
    let owner = lock.get("user_id").and_then(Attr::as_str).and_then(|s| s.parse::<Uuid>().ok());
    if let Some(owner) = owner
        && users::get(store, owner).await?.is_some()
    {
        return Ok(());
    }
    match store.delete(&key, Some(Cond::eq("user_id", owner.map(|o| o.to_string()).unwrap_or_default()))).await {
        Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Refuses a userName that is another account's email (those accounts show it as theirs).
async fn check_not_anothers_email(store: &dyn Store, user_name: &str, user_id: Uuid) -> ApiResult<()> {
    if let Ok(email) = normalize_email(user_name, "userName")
        && let Some(other) = users::find_by_email(store, &email).await?
        && other.id != user_id
    {
        return Err(user_name_taken(user_name));
    }
    Ok(())
}

/// Creates an account from a SCIM User: no password (they sign in through the identity
/// provider), the mapping's default role (`none` until a mapping is saved).
pub async fn create(store: &dyn Store, input: Input, now: DateTime<Utc>) -> ApiResult<User> {
    free_stale_lock(store, &input.profile.user_name).await?;
    check_not_anothers_email(store, &input.profile.user_name, Uuid::nil()).await?;
    let role = crate::group_mapping::get(store).await?.map_or_else(|| roles::NO_ROLE.to_string(), |m| m.default_role);
    let mut user = users::new_user(input.email, password::unusable_hash().await?, role, now);
    user.name = account_name(&input.profile);
    if !input.active {
        user.disabled_at = Some(now);
    }
    let extra = vec![TxOp::Put { item: keyed_item(&input.profile, &profile_key(user.id))?, cond: None }, lock_op(&input.profile.user_name, user.id)];
    let taken = input.profile.user_name.clone();
    users::insert(store, &user, extra, |_| user_name_taken(&taken)).await.map_err(uniqueness)?;
    Ok(user)
}

/// An email conflict is SCIM's `uniqueness` too.
fn uniqueness(e: ApiError) -> ApiError {
    match e {
        ApiError::Conflict { code: "email_taken", message } => ApiError::conflict("uniqueness", message),
        other => other,
    }
}

/// Replaces what SCIM manages of an account (PUT, and PATCH after its operations), and
/// deprovisions or reactivates it when `active` changes.
pub async fn replace(store: &dyn Store, user: &User, input: Input, now: DateTime<Utc>, caches: &dyn Invalidate) -> ApiResult<User> {
    let before_profile = profile(store, user.id).await?;
    let old_name = before_profile.as_ref().map(|p| p.user_name.clone());
    let mut extra = vec![TxOp::Put { item: keyed_item(&input.profile, &profile_key(user.id))?, cond: None }];
    let renamed = old_name.as_deref().is_none_or(|old| !old.eq_ignore_ascii_case(&input.profile.user_name));
    if renamed {
        free_stale_lock(store, &input.profile.user_name).await?;
        check_not_anothers_email(store, &input.profile.user_name, user.id).await?;
        extra.push(lock_op(&input.profile.user_name, user.id));
        if let Some(old) = &old_name {
            extra.push(TxOp::Delete { key: user_name_key(old), cond: None });
        }
    }
    let mut after = user.clone();
    after.email = input.email;
    after.name = account_name(&input.profile);
    let deprovisioned = !input.active && user.disabled_at.is_none();
    // A deactivated admin can do nothing: someone must still be able to manage users.
    if deprovisioned && user.role == "admin" {
        crate::identity::accounts::ensure_other_admin(store, user.id).await?;
    }
    after.disabled_at = if input.active { None } else { user.disabled_at.or(Some(now)) };
    after.updated_at = now;
    let taken = input.profile.user_name.clone();
    users::save_with(store, user, &after, extra, |_| user_name_taken(&taken)).await.map_err(uniqueness)?;
    if deprovisioned {
        deprovision(store, after.id, now, caches).await?;
    }
    Ok(after)
}

/// Ends every session of a deactivated account at once and revokes its API keys.
async fn deprovision(store: &dyn Store, user_id: Uuid, now: DateTime<Utc>, caches: &dyn Invalidate) -> ApiResult<()> {
    sessions::revoke_all(store, user_id, None).await?;
    crate::account_deletion::revoke_keys(store, user_id, now, caches).await?;
    Ok(())
}

/// Deletes the account through the account deletion service (as a global admin would), which
/// takes the SCIM profile with the rest of the user's partition; then the userName lock, kept
/// outside it.
pub async fn delete(store: &dyn Store, secrets: &dyn SecretStore, user: &User, now: DateTime<Utc>, caches: &dyn Invalidate) -> ApiResult<()> {
    let kept = profile(store, user.id).await?;
    // Uuid::nil() is the deleting "admin": no account, so never the user themself.
    crate::account_deletion::delete(store, secrets, user, Some(Uuid::nil()), now, caches).await?;
    if let Some(kept) = kept {
        match store.delete(&user_name_key(&kept.user_name), Some(Cond::eq("user_id", user.id.to_string()))).await {
            Ok(()) | Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
