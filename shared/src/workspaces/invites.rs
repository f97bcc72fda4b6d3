//! Invitations into a workspace. An invite is pending until accepted, revoked or expired (its
//! item carries a TTL, so an expired invite is simply absent). Its token is a random secret
//! of which only the SHA-256 is stored, in a lookup item written with the invite; accepting
//! is one transaction that deletes both (conditioned on their existence, so a token works
//! once) and adds the member, creating the account too when the email has none.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Member, Role, Workspace};
use crate::error::{ApiError, ApiResult};
use crate::identity::users::{self, User};
use crate::identity::{random_secret, sha256_hex};
use crate::store::{Attr, Cond, Key, Query, Store, StoreError, TTL, TxOp, from_item, keyed_item, query_all};

/// How long an invite stays valid.
pub const VALID_FOR_DAYS: i64 = 7;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Invite {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub email: String,
    pub role: Role,
    pub invited_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub token_hash: String,
}

fn key(workspace_id: Uuid, id: Uuid) -> Key {
    Key::new(format!("WS#{workspace_id}"), format!("INVITE#{id}"))
}

fn token_key(hash: &str) -> Key {
    Key::new(format!("INVITETOKEN#{hash}"), "INVITE")
}

/// A new invite and the secret token that accepts it (shown in the link only).
pub struct Issued {
    pub invite: Invite,
    pub token: String,
}

/// Creates a pending invite. `role` must be member or admin; the email must not already be a
/// member or have a pending invite.
pub async fn create(store: &dyn Store, workspace: &Workspace, email: String, role: Role, invited_by: Uuid, now: DateTime<Utc>) -> ApiResult<Issued> {
    if role == Role::Owner {
        return Err(ApiError::invalid_param("role", "role must be member or admin"));
    }
    if let Some(user) = users::find_by_email(store, &email).await?
        && super::membership(store, workspace.id, user.id).await?.is_some()
    {
        return Err(ApiError::conflict("already_member", format!("{email} is already a member of this workspace")));
    }
    if pending(store, workspace.id, now).await?.iter().any(|i| i.email == email) {
        return Err(ApiError::conflict("already_invited", format!("{email} already has a pending invite; revoke it first to send a new one")));
    }
    let token = random_secret("tgi_");
    let invite = Invite {
        id: Uuid::new_v4(),
        workspace_id: workspace.id,
        email,
        role,
        invited_by,
        created_at: now,
        expires_at: now + Duration::days(VALID_FOR_DAYS),
        token_hash: sha256_hex(&token),
    };
    let ttl = Attr::N(invite.expires_at.timestamp());
    let mut item = keyed_item(&invite, &key(workspace.id, invite.id))?;
    item.insert(TTL.into(), ttl.clone());
    let lookup = token_key(&invite.token_hash);
    let lookup = crate::store::Item::from([
        ("PK".into(), Attr::S(lookup.pk)),
        ("SK".into(), Attr::S(lookup.sk)),
        ("workspace_id".into(), Attr::S(workspace.id.to_string())),
        ("invite_id".into(), Attr::S(invite.id.to_string())),
        (TTL.into(), ttl),
    ]);
    store.transact(vec![TxOp::Put { item, cond: Some(Cond::NotExists) }, TxOp::Put { item: lookup, cond: Some(Cond::NotExists) }]).await?;
    Ok(Issued { invite, token })
}

/// The workspace's pending invites, oldest first. Expired ones are left out before the
/// store's TTL removes them (which DynamoDB does only within days).
pub async fn pending(store: &dyn Store, workspace_id: Uuid, now: DateTime<Utc>) -> ApiResult<Vec<Invite>> {
    let items = query_all(store, Query::new(crate::store::Index::Primary, format!("WS#{workspace_id}")).prefix("INVITE#")).await?;
    let mut invites: Vec<Invite> = items.into_iter().map(from_item).collect::<Result<Vec<Invite>, _>>()?;
    invites.retain(|i| i.expires_at > now);
    invites.sort_by_key(|i| i.created_at);
    Ok(invites)
}

/// Revokes a pending invite: its token stops working at once.
pub async fn revoke(store: &dyn Store, workspace_id: Uuid, invite_id: Uuid) -> ApiResult<()> {
    let missing = || ApiError::not_found(format!("no pending invite {invite_id} in this workspace"));
    let item = store.get(&key(workspace_id, invite_id)).await?.ok_or_else(missing)?;
    let invite: Invite = from_item(item)?;
    let ops =
        vec![TxOp::Delete { key: key(workspace_id, invite_id), cond: Some(Cond::Exists) }, TxOp::Delete { key: token_key(&invite.token_hash), cond: None }];
    match store.transact(ops).await {
        Ok(()) => Ok(()),
        Err(StoreError::TransactionCancelled { .. }) => Err(missing()),
        Err(e) => Err(e.into()),
    }
}

/// What accepting an invite came to.
pub struct Accepted {
    pub invite_id: Uuid,
    pub member: Member,
    pub user: User,
    pub created_account: bool,
}

fn unusable() -> ApiError {
    ApiError::not_found("this invite does not exist, has expired, was revoked or was already accepted; ask for a new one")
}

/// Where an undelivered invite's link waits for a global admin to read it once.
pub fn link_secret_name(invite_id: Uuid) -> String {
    format!("invites/{invite_id}/link")
}

/// The pending invite, or 404.
pub async fn get(store: &dyn Store, workspace_id: Uuid, invite_id: Uuid) -> ApiResult<Invite> {
    let item =
        store.get(&key(workspace_id, invite_id)).await?.ok_or_else(|| ApiError::not_found(format!("no pending invite {invite_id} in this workspace")))?;
    Ok(from_item(item)?)
}

/// Accepts an invite by its token. When the invited email has no account, `password` creates
/// it (and is then required); when it has one, only that account may accept, with its session
/// (`signed_in`): a token that leaked must not let anyone else into the account's seat.
pub async fn accept(store: &dyn Store, token: &str, password: Option<&str>, signed_in: Option<Uuid>, now: DateTime<Utc>) -> ApiResult<Accepted> {
    let lookup = store.get(&token_key(&sha256_hex(token))).await?.ok_or_else(unusable)?;
    let (Some(workspace_id), Some(invite_id)) = (
        lookup.get("workspace_id").and_then(Attr::as_str).and_then(|s| s.parse::<Uuid>().ok()),
        lookup.get("invite_id").and_then(Attr::as_str).and_then(|s| s.parse::<Uuid>().ok()),
    ) else {
        return Err(unusable());
    };
    let invite: Invite = from_item(store.get(&key(workspace_id, invite_id)).await?.ok_or_else(unusable)?)?;
    // The store's TTL removes an expired invite only eventually (DynamoDB: within days).
    if invite.expires_at <= now {
        return Err(unusable());
    }
    let existing = users::find_by_email(store, &invite.email).await?;
    let member = Member { workspace_id, user_id: Uuid::nil(), role: invite.role, joined_at: now };
    // The invite and its token go with the membership, each conditioned on existing: a token
    // accepted twice at once makes one member.
    let consume = vec![
        TxOp::Delete { key: key(workspace_id, invite_id), cond: Some(Cond::Exists) },
        TxOp::Delete { key: token_key(&invite.token_hash), cond: Some(Cond::Exists) },
    ];
    let failed = |i: usize| if i < 2 { unusable() } else { ApiError::conflict("already_member", "you are already a member of this workspace") };
    match existing {
        Some(user) => {
            match signed_in {
                None => {
                    return Err(ApiError::unauthorized(format!(
                        "{} already has an account: sign in as it and send this request with its session (Authorization: Bearer <token>)",
                        invite.email
                    )));
                }
                Some(id) if id != user.id => {
                    return Err(ApiError::forbidden(
                        "invite_for_another_account",
                        format!("this invite is for {}; sign in as that account to accept it", invite.email),
                    ));
                }
                Some(_) => {}
            }
            let member = Member { user_id: user.id, ..member };
            let mut ops = consume;
            ops.push(super::member_put(&member)?);
            match store.transact(ops).await {
                Ok(()) => Ok(Accepted { invite_id, member, user, created_account: false }),
                Err(StoreError::TransactionCancelled { index }) => Err(failed(index)),
                Err(e) => Err(e.into()),
            }
        }
        None => {
            let password =
                password.ok_or_else(|| ApiError::invalid_param("password", format!("{} has no account yet: send a password to create it", invite.email)))?;
            crate::identity::password::validate(password, "password")?;
            // No global permissions: a workspace admin must not be able to mint accounts that
            // read the whole server. Membership grants this workspace's resources; global
            // roles are given by global admins alone.
            let user = users::new_user(invite.email.clone(), crate::identity::password::hash(password).await?, crate::identity::roles::NO_ROLE.into(), now);
            let member = Member { user_id: user.id, ..member };
            let mut ops = consume;
            ops.push(super::member_put(&member)?);
            users::insert(store, &user, ops, failed).await?;
            Ok(Accepted { invite_id, member, user, created_account: true })
        }
    }
}
