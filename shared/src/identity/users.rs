//! Users. An email is unique through a lock item (`EMAIL#<email>`) written in the same
//! transaction as the user, so two concurrent creations with one email cannot both succeed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::store::{Cond, Index, Key, Query, Store, StoreError, TxOp, from_item, keyed_item, query_all, set_index};

/// A stored user. No Debug: it holds the password hash.
#[derive(Clone, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub role: String,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set when the account's deletion began (`accounts::delete`): it no longer signs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleting_since: Option<DateTime<Utc>>,
    /// Set when the identity provider deprovisioned the account (SCIM `active: false`): it
    /// keeps its data but cannot sign in, and its sessions and API keys were ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<DateTime<Utc>>,
    /// The identity provider's group names for this user (from SCIM or sign-in), kept so the
    /// group mapping can be re-applied when it changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl User {
    /// Whether the account may act at all: not being deleted, not deprovisioned.
    pub fn is_usable(&self) -> bool {
        self.deleting_since.is_none() && self.disabled_at.is_none()
    }
}

/// The 401 a deprovisioned account gets wherever it tries to sign in or act.
pub fn deactivated() -> ApiError {
    ApiError::unauthorized_as("account_deactivated", "this account was deactivated by the identity provider; ask your administrator to reactivate it there")
}

pub fn key(id: Uuid) -> Key {
    Key::new(format!("USER#{id}"), "PROFILE")
}

fn email_key(email: &str) -> Key {
    Key::new(format!("EMAIL#{email}"), "EMAIL")
}

fn user_item(user: &User) -> ApiResult<crate::store::Item> {
    let mut item = keyed_item(user, &key(user.id))?;
    set_index(&mut item, Index::Gsi1, "USERS", format!("{}#{}", user.created_at.to_rfc3339(), user.id));
    Ok(item)
}

fn email_lock(email: &str, user_id: Uuid) -> TxOp {
    let k = email_key(email);
    let mut item = crate::store::Item::new();
    item.insert("PK".into(), k.pk.into());
    item.insert("SK".into(), k.sk.into());
    item.insert("user_id".into(), user_id.to_string().into());
    TxOp::Put { item, cond: Some(Cond::NotExists) }
}

fn email_taken(email: &str) -> ApiError {
    ApiError::conflict("email_taken", format!("a user with email {email} already exists"))
}

pub fn new_user(email: String, password_hash: String, role: String, now: DateTime<Utc>) -> User {
    User {
        id: Uuid::new_v4(),
        email,
        password_hash,
        role,
        name: None,
        created_at: now,
        updated_at: now,
        deleting_since: None,
        disabled_at: None,
        groups: Vec::new(),
    }
}

/// Writes a new user with its email lock, plus `extra` operations in the same transaction;
/// `extra_failed` names the error when the condition of extra operation `i` fails.
pub async fn insert(store: &dyn Store, user: &User, extra: Vec<TxOp>, extra_failed: impl Fn(usize) -> ApiError) -> ApiResult<()> {
    let mut ops = vec![email_lock(&user.email, user.id), TxOp::Put { item: user_item(user)?, cond: Some(Cond::NotExists) }];
    ops.extend(extra);
    match store.transact(ops).await {
        Ok(()) => Ok(()),
        Err(StoreError::TransactionCancelled { index: 0 }) => Err(email_taken(&user.email)),
        Err(StoreError::TransactionCancelled { index }) if index >= 2 => Err(extra_failed(index - 2)),
        Err(e) => Err(e.into()),
    }
}

pub async fn create(store: &dyn Store, user: &User) -> ApiResult<()> {
    insert(store, user, vec![], |i| ApiError::internal(format!("no extra operation {i} was sent"))).await
}

pub async fn get(store: &dyn Store, id: Uuid) -> ApiResult<Option<User>> {
    Ok(store.get(&key(id)).await?.map(from_item).transpose()?)
}

pub async fn require(store: &dyn Store, id: Uuid) -> ApiResult<User> {
    get(store, id).await?.ok_or_else(|| ApiError::not_found(format!("no user with id {id}")))
}

pub async fn find_by_email(store: &dyn Store, email: &str) -> ApiResult<Option<User>> {
    let Some(lock) = store.get(&email_key(email)).await? else { return Ok(None) };
    let Some(id) = lock.get("user_id").and_then(|a| a.as_str()).and_then(|s| s.parse().ok()) else {
        return Ok(None);
    };
    get(store, id).await
}

/// Every user, oldest first.
pub async fn list(store: &dyn Store) -> ApiResult<Vec<User>> {
    let items = query_all(store, Query::new(Index::Gsi1, "USERS").limit(200)).await?;
    Ok(items.into_iter().map(from_item).collect::<Result<_, _>>()?)
}

/// Saves changed fields of an existing user. A changed email moves its lock in the same
/// transaction, so uniqueness holds through the change.
pub async fn save(store: &dyn Store, before: &User, after: &User) -> ApiResult<()> {
    save_with(store, before, after, vec![], |i| ApiError::internal(format!("no extra operation {i} was sent"))).await
}

/// `save`, with `extra` operations in the same transaction; `extra_failed` names the error
/// when the condition of extra operation `i` fails.
pub async fn save_with(store: &dyn Store, before: &User, after: &User, extra: Vec<TxOp>, extra_failed: impl Fn(usize) -> ApiError) -> ApiResult<()> {
    let mut ops = Vec::new();
    if before.email != after.email {
        ops.push(email_lock(&after.email, after.id));
        ops.push(TxOp::Delete { key: email_key(&before.email), cond: Some(Cond::eq("user_id", after.id.to_string())) });
    }
    ops.push(TxOp::Put { item: user_item(after)?, cond: Some(Cond::Exists) });
    let own = ops.len();
    ops.extend(extra);
    match store.transact(ops).await {
        Ok(()) => Ok(()),
        Err(StoreError::TransactionCancelled { index: 0 }) if before.email != after.email => Err(email_taken(&after.email)),
        Err(StoreError::TransactionCancelled { index }) if index >= own => Err(extra_failed(index - own)),
        Err(StoreError::TransactionCancelled { .. }) => Err(ApiError::not_found(format!("no user with id {}", after.id))),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the user and the email lock (`accounts::delete` removes the rest first), and
/// whatever else is still kept in the user's partition: what an identity provider said of them
/// (the SCIM profile: names, emails) must not outlive the account.
pub async fn delete(store: &dyn Store, user: &User) -> ApiResult<()> {
    let profile = key(user.id);
    for item in query_all(store, Query::new(Index::Primary, profile.pk.clone())).await? {
        if let Some(rest) = Key::of(&item).filter(|k| k.sk != profile.sk) {
            store.delete(&rest, None).await?;
        }
    }
    let ops = vec![TxOp::Delete { key: key(user.id), cond: Some(Cond::Exists) }, TxOp::Delete { key: email_key(&user.email), cond: None }];
    match store.transact(ops).await {
        Ok(()) => {}
        Err(StoreError::TransactionCancelled { .. }) => return Err(ApiError::not_found(format!("no user with id {}", user.id))),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
