//! Accounts: the rules around a user's life that span users, sessions, keys and memberships.
//! Setup (the first admin, once), login, profile and password changes, the last-admin rule,
//! and deletion, which is resumable: a crash midway never leaves a half-deleted account that
//! still works, and the next deletion pass finishes it.
//!
//! Deletion, in order: the checks (last admin, sole owner); the user's keys revoked (nothing
//! may spend in the name of an account being deleted); the account marked `deleting_since`
//! (from then on no session, refresh or login works, and it waits in the `DELETING` partition
//! of GSI2); then, each step idempotent, usage records erased, its own providers deleted (their
//! keys destroyed), memberships left, sessions revoked, the user and its email lock deleted. `resume_deletions` finishes marked accounts
//! (the local server runs it every 30 seconds; every deletion request runs it first, which is
//! what finishes one cut short on Lambda).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::users::{self, User};
use super::{password, roles, sessions, throttle};
use crate::error::{ApiError, ApiResult};
use crate::keys::{self, ApiKey, Owner};
use crate::secrets::SecretStore;
use crate::store::{Attr, Cond, Index, Item, Key, Query, Store, StoreError, TxOp, Update};
use crate::{projects, usage, workspaces};

fn setup_key() -> Key {
    Key::new("SYSTEM", "SETUP")
}

/// Whether setup is done (the first admin exists).
pub async fn is_configured(store: &dyn Store) -> ApiResult<bool> {
    Ok(store.get(&setup_key()).await?.is_some())
}

/// Creates the first admin, once: the setup marker is written in the same transaction, so of
/// two racing setups exactly one wins.
pub async fn setup_first_admin(store: &dyn Store, email: String, password: &str, now: DateTime<Utc>) -> ApiResult<User> {
    password::validate(password, "password")?;
    let already = || ApiError::conflict("already_configured", "setup is complete: an admin exists; log in at POST /api/auth/login");
    if is_configured(store).await? {
        return Err(already());
    }
    let user = users::new_user(email, password::hash(password).await?, "admin".into(), now);
    let k = setup_key();
    let marker = Item::from([
        ("PK".into(), Attr::S(k.pk)),
        ("SK".into(), Attr::S(k.sk)),
        ("admin_id".into(), Attr::S(user.id.to_string())),
        ("configured_at".into(), Attr::S(now.to_rfc3339())),
    ]);
    users::insert(store, &user, vec![TxOp::Put { item: marker, cond: Some(Cond::NotExists) }], |_| already()).await?;
    Ok(user)
}

/// The user behind an email and password, throttled per (account, address) and per address.
/// An account being deleted cannot sign in.
pub async fn login(store: &dyn Store, email: &str, presented: &str, ip: Option<&str>, now: DateTime<Utc>) -> ApiResult<User> {
    let now = now.timestamp();
    throttle::check(store, email, ip, now).await?;
    let user = users::find_by_email(store, email).await?.filter(|u| u.deleting_since.is_none());
    let ok = presented.len() <= password::MAX_LEN && password::verify(presented, user.as_ref().map(|u| u.password_hash.as_str())).await?;
    let Some(user) = user.filter(|_| ok) else {
        throttle::record_failure(store, email, ip, now).await?;
        return Err(ApiError::unauthorized("invalid email or password"));
    };
    throttle::record_success(store, email, ip, now).await?;
    Ok(user)
}

/// A change to one's own profile. Email and password need the current password.
#[derive(Default)]
pub struct OwnChange {
    pub email: Option<String>,
    pub name: Option<String>,
    pub current_password: Option<String>,
    pub new_password: Option<String>,
}

/// Applies `change` to the caller's own account; a new password signs out every other
/// session (`current_session` stays).
pub async fn change_own(store: &dyn Store, user: &User, current_session: Uuid, change: OwnChange, now: DateTime<Utc>) -> ApiResult<User> {
    if change.email.is_some() || change.new_password.is_some() {
        let Some(current) = &change.current_password else {
            return Err(ApiError::BadRequest {
                code: "current_password_required",
                param: Some("currentPassword".into()),
                message: "changing the email or password needs currentPassword".into(),
            });
        };
        if !password::verify(current, Some(&user.password_hash)).await? {
            return Err(ApiError::BadRequest {
                code: "invalid_current_password",
                param: Some("currentPassword".into()),
                message: "currentPassword is not your current password".into(),
            });
        }
    }
    let mut after = user.clone();
    if let Some(email) = change.email {
        after.email = email;
    }
    if let Some(name) = change.name {
        after.name = Some(name);
    }
    let new_password = change.new_password.as_deref().map(|p| (p, "newPassword"));
    save_change(store, user, after, new_password, Some(current_session), now).await
}

/// Sets a new password (checked against the rules, then hashed) when one is given, stamps and
/// saves the change, and when the password changed signs out every session of the user but
/// `keep`: whoever had the old password must not stay signed in.
async fn save_change(
    store: &dyn Store,
    before: &User,
    mut after: User,
    new_password: Option<(&str, &str)>,
    keep: Option<Uuid>,
    now: DateTime<Utc>,
) -> ApiResult<User> {
    if let Some((new_password, param)) = new_password {
        password::validate(new_password, param)?;
        after.password_hash = password::hash(new_password).await?;
    }
    after.updated_at = now;
    users::save(store, before, &after).await?;
    if new_password.is_some() {
        sessions::revoke_all(store, after.id, keep).await?;
    }
    Ok(after)
}

/// An admin's change to a user.
#[derive(Default)]
pub struct UserChange {
    pub email: Option<String>,
    pub password: Option<String>,
    pub role: Option<String>,
    pub name: Option<String>,
}

async fn check_role_exists(store: &dyn Store, role: &str) -> ApiResult<()> {
    if roles::permissions_of(store, role).await?.is_none() {
        return Err(ApiError::invalid_param("role", format!("no role named {role:?}; see GET /api/roles")));
    }
    Ok(())
}

/// Creates a user with a role that must exist.
pub async fn create_user(store: &dyn Store, email: String, password: &str, role: String, name: Option<String>, now: DateTime<Utc>) -> ApiResult<User> {
    password::validate(password, "password")?;
    check_role_exists(store, &role).await?;
    let mut user = users::new_user(email, password::hash(password).await?, role, now);
    user.name = name;
    users::create(store, &user).await?;
    Ok(user)
}

/// Applies an admin's change to user `id`. The last admin keeps the role; a new password signs
/// the user out everywhere (but the acting session, when they change their own).
pub async fn change_user(store: &dyn Store, actor_session: (Uuid, Uuid), id: Uuid, change: UserChange, now: DateTime<Utc>) -> ApiResult<User> {
    let before = users::require(store, id).await?;
    if before.deleting_since.is_some() {
        return Err(ApiError::conflict("user_being_deleted", "this account is being deleted; DELETE /api/users/{id} finishes it"));
    }
    let mut after = before.clone();
    if let Some(email) = change.email {
        after.email = email;
    }
    if let Some(role) = change.role {
        check_role_exists(store, &role).await?;
        if before.role == "admin" && role != "admin" {
            ensure_other_admin(store, before.id).await?;
        }
        after.role = role;
    }
    if let Some(name) = change.name {
        after.name = Some(name);
    }
    let (actor, session) = actor_session;
    let keep = (before.id == actor).then_some(session);
    save_change(store, &before, after, change.password.as_deref().map(|p| (p, "password")), keep, now).await
}

/// Refuses a change that would leave no admin (nobody could manage users any more).
pub async fn ensure_other_admin(store: &dyn Store, leaving: Uuid) -> ApiResult<()> {
    let others = users::list(store).await?.into_iter().filter(|u| u.role == "admin" && u.id != leaving && u.deleting_since.is_none()).count();
    if others == 0 {
        return Err(ApiError::conflict("last_admin", "this is the only admin; make another user admin first"));
    }
    Ok(())
}

/// What a deletion removed.
pub struct Deleted {
    pub user_id: Uuid,
    pub keys: usize,
    pub usage_records: usize,
    /// Dynamic providers deleted (their keys destroyed).
    pub providers: usize,
}

/// Told of each key as it is revoked, so this process's warm caches drop it at once (even
/// when the deletion is then cut short).
pub type OnRevoked<'a> = &'a (dyn Fn(&ApiKey) + Send + Sync);

/// Deletes an account and everything of it. `by_admin` is an admin deleting another user
/// (who may not be the admin themselves); otherwise the user deletes themselves, and may not
/// while they are the sole owner of a workspace.
pub async fn delete(
    store: &dyn Store,
    secrets: &dyn SecretStore,
    user: &User,
    by_admin: Option<Uuid>,
    now: DateTime<Utc>,
    on_revoked: OnRevoked<'_>,
) -> ApiResult<Deleted> {
    if by_admin == Some(user.id) {
        return Err(ApiError::bad_request("cannot_delete_self", "you cannot delete yourself here; use DELETE /admin/v1/me"));
    }
    if user.deleting_since.is_none() {
        if user.role == "admin" {
            ensure_other_admin(store, user.id).await?;
        }
        if by_admin.is_none() {
            let orphaned = workspaces::solely_owned_by(store, user.id).await?;
            if !orphaned.is_empty() {
                let names: Vec<String> = orphaned.iter().map(|w| format!("{:?} ({})", w.name, w.id)).collect();
                return Err(ApiError::conflict(
                    "sole_owner",
                    format!("you are the only owner of {}: deleting your account would leave it without an owner, so it is kept", names.join(", ")),
                ));
            }
        }
    }
    let keys = revoke_keys(store, user.id, now, on_revoked).await?;
    mark(store, user.id, now).await?;
    let (usage_records, providers) = finish(store, secrets, user.id, now).await?;
    // And any other deletion a crash cut short: on Lambda nothing else would finish it.
    resume_deletions(store, secrets, now, on_revoked).await?;
    Ok(Deleted { user_id: user.id, keys, usage_records, providers })
}

/// Revokes every key of the user; returns how many they had.
async fn revoke_keys(store: &dyn Store, user_id: Uuid, now: DateTime<Utc>, on_revoked: OnRevoked<'_>) -> ApiResult<usize> {
    let owner = Owner::User { user_id };
    let all = keys::all_of(store, &owner).await?;
    for key in &all {
        if key.revoked_at.is_none() {
            keys::retire(store, &owner, key.id, false, now).await?;
        }
        on_revoked(key);
    }
    Ok(all.len())
}

async fn mark(store: &dyn Store, user_id: Uuid, now: DateTime<Utc>) -> ApiResult<()> {
    let (pk, sk) = Index::Gsi2.key_names();
    let update = Update::default().set_if_absent("deleting_since", now.to_rfc3339()).set(pk, "DELETING").set(sk, user_id.to_string());
    match store.update(&users::key(user_id), update, Some(Cond::Exists)).await {
        Ok(_) => Ok(()),
        Err(StoreError::ConditionFailed) => Err(ApiError::not_found(format!("no user with id {user_id}"))),
        Err(e) => Err(e.into()),
    }
}

/// The steps after the mark, each safe to run again. Returns the usage records erased and
/// the providers deleted.
async fn finish(store: &dyn Store, secrets: &dyn SecretStore, user_id: Uuid, now: DateTime<Utc>) -> ApiResult<(usize, usize)> {
    let erased = usage::erase(store, &Owner::User { user_id }.tag()).await?;
    let providers = crate::dynamic_providers::delete_all(store, secrets, user_id, now).await?;
    workspaces::leave_all(store, user_id).await?;
    projects::leave_all(store, user_id).await?;
    sessions::revoke_all(store, user_id, None).await?;
    if let Some(user) = users::get(store, user_id).await? {
        users::delete(store, &user).await?;
    }
    Ok((erased, providers))
}

/// Finishes every deletion a crash cut short; returns how many.
pub async fn resume_deletions(store: &dyn Store, secrets: &dyn SecretStore, now: DateTime<Utc>, on_revoked: OnRevoked<'_>) -> ApiResult<usize> {
    let page = store.query(Query::new(Index::Gsi2, "DELETING").limit(25)).await?;
    let mut finished = 0;
    for item in page.items {
        let Some(user_id) = item.get("id").and_then(Attr::as_str).and_then(|s| s.parse::<Uuid>().ok()) else { continue };
        // Keys again: the crash may have come between revoking some and marking.
        revoke_keys(store, user_id, now, on_revoked).await?;
        finish(store, secrets, user_id, now).await?;
        finished += 1;
    }
    Ok(finished)
}
