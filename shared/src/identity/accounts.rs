//! Accounts: the rules around a user's life that span users and sessions. Setup (the first
//! admin, once), login, profile and password changes, and the last-admin rule. Deleting an
//! account, which reaches into keys, workspaces, projects and providers, sits above them all
//! (`account_deletion`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::users::{self, User};
use super::{password, roles, sessions, throttle};
use crate::error::{ApiError, ApiResult};
use crate::store::{Attr, Cond, Item, Key, Store, TxOp};

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
/// An account being deleted cannot sign in, nor anyone but the break-glass admin once password
/// sign-in is switched off for single sign-on.
pub async fn login(store: &dyn Store, email: &str, presented: &str, ip: Option<&str>, now: DateTime<Utc>) -> ApiResult<User> {
    super::oidc::settings::check_password_login(store, email).await?;
    let now = now.timestamp();
    throttle::check(store, email, ip, now).await?;
    let user = users::find_by_email(store, email).await?.filter(|u| u.deleting_since.is_none());
    let ok = presented.len() <= password::MAX_LEN && password::verify(presented, user.as_ref().map(|u| u.password_hash.as_str())).await?;
    let Some(user) = user.filter(|_| ok) else {
        throttle::record_failure(store, email, ip, now).await?;
        return Err(ApiError::unauthorized("invalid email or password"));
    };
    throttle::record_success(store, email, ip, now).await?;
    // Said only to whoever knows the password: it tells that the account exists.
    if user.disabled_at.is_some() {
        return Err(users::deactivated());
    }
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

pub async fn check_role_exists(store: &dyn Store, role: &str) -> ApiResult<()> {
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

/// Refuses a change that would leave no admin (nobody could manage users any more). A
/// deprovisioned admin cannot sign in, so does not count.
pub async fn ensure_other_admin(store: &dyn Store, leaving: Uuid) -> ApiResult<()> {
    let others = users::list(store).await?.into_iter().filter(|u| u.role == "admin" && u.id != leaving && u.is_usable()).count();
    if others == 0 {
        return Err(ApiError::conflict("last_admin", "this is the only admin; make another user admin first"));
    }
    Ok(())
}
