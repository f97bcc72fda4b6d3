//! Deleting an account and everything of it: above keys, workspaces, projects, providers and
//! usage, which it reaches into (identity knows none of them). Resumable: a crash midway never
//! leaves a half-deleted account that still works, and the next deletion pass finishes it.
//!
//! In order: the checks (last admin, sole owner); the user's keys revoked (nothing may spend in
//! the name of an account being deleted); the account marked `deleting_since` (from then on no
//! session, refresh or login works, and it waits in the `DELETING` partition of GSI2); then,
//! each step idempotent, usage records erased, its own providers deleted (their keys destroyed),
//! memberships left, sessions revoked, the user and its email lock deleted. Each key and
//! provider leaves this process's warm caches as it goes (`Invalidate`). `resume_deletions`
//! finishes marked accounts (the local server runs it every 30 seconds; every deletion request
//! runs it first, which is what finishes one cut short on Lambda).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::identity::accounts;
use crate::identity::sessions;
use crate::identity::users::{self, User};
use crate::invalidate::Invalidate;
use crate::keys::{self, Owner};
use crate::secrets::SecretStore;
use crate::store::{Attr, Cond, Index, Query, Store, StoreError, Update};
use crate::{projects, usage, workspaces};

/// What a deletion removed.
pub struct Deleted {
    pub user_id: Uuid,
    pub keys: usize,
    pub usage_records: usize,
    /// Dynamic providers deleted (their keys destroyed).
    pub providers: usize,
}

/// Deletes an account and everything of it. `by_admin` is an admin deleting another user
/// (who may not be the admin themselves); otherwise the user deletes themselves, and may not
/// while they are the sole owner of a workspace.
pub async fn delete(
    store: &dyn Store,
    secrets: &dyn SecretStore,
    user: &User,
    by_admin: Option<Uuid>,
    now: DateTime<Utc>,
    caches: &dyn Invalidate,
) -> ApiResult<Deleted> {
    if by_admin == Some(user.id) {
        return Err(ApiError::bad_request("cannot_delete_self", "you cannot delete yourself here; use DELETE /admin/v1/me"));
    }
    if user.deleting_since.is_none() {
        if user.role == "admin" {
            accounts::ensure_other_admin(store, user.id).await?;
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
    let keys = revoke_keys(store, user.id, now, caches).await?;
    mark(store, user.id, now).await?;
    let (usage_records, providers) = finish(store, secrets, user.id, now, caches).await?;
    // And any other deletion a crash cut short: on Lambda nothing else would finish it.
    resume_deletions(store, secrets, now, caches).await?;
    Ok(Deleted { user_id: user.id, keys, usage_records, providers })
}

/// Revokes every key of the user; returns how many they had. Also what deprovisioning through
/// SCIM does: the keys stop working at once, here and (within the key cache's TTL) elsewhere.
pub async fn revoke_keys(store: &dyn Store, user_id: Uuid, now: DateTime<Utc>, caches: &dyn Invalidate) -> ApiResult<usize> {
    let owner = Owner::User { user_id };
    let all = keys::all_of(store, &owner).await?;
    for key in &all {
        if key.revoked_at.is_none() {
            keys::retire(store, &owner, key.id, false, now, caches).await?;
        }
        caches.key(&key.key_hash);
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
async fn finish(store: &dyn Store, secrets: &dyn SecretStore, user_id: Uuid, now: DateTime<Utc>, caches: &dyn Invalidate) -> ApiResult<(usize, usize)> {
    // The account's deletion is the audited change; erasing its usage records one by one is not
    // a change of anyone's (and would flood the log with an event per record).
    let erased = crate::audit::context::unaudited(usage::erase(store, &Owner::User { user_id }.tag())).await?;
    let providers = crate::dynamic_providers::delete_all(store, secrets, user_id, now, caches).await?;
    workspaces::leave_all(store, user_id).await?;
    projects::leave_all(store, user_id).await?;
    sessions::revoke_all(store, user_id, None).await?;
    if let Some(user) = users::get(store, user_id).await? {
        users::delete(store, &user).await?;
    }
    Ok((erased, providers))
}

/// Finishes every deletion a crash cut short; returns how many.
pub async fn resume_deletions(store: &dyn Store, secrets: &dyn SecretStore, now: DateTime<Utc>, caches: &dyn Invalidate) -> ApiResult<usize> {
    let page = store.query(Query::new(Index::Gsi2, "DELETING").limit(25)).await?;
    let mut finished = 0;
    for item in page.items {
        let Some(user_id) = item.get("id").and_then(Attr::as_str).and_then(|s| s.parse::<Uuid>().ok()) else { continue };
        // Keys again: the crash may have come between revoking some and marking.
        revoke_keys(store, user_id, now, caches).await?;
        finish(store, secrets, user_id, now, caches).await?;
        finished += 1;
    }
    Ok(finished)
}
