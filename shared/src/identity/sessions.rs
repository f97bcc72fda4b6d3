//! Sessions: one per login, each with a JWT access token (1 hour) and an opaque refresh token
//! that rotates on every use. Only SHA-256 hashes of refresh tokens are stored. Presenting a
//! refresh token that was already rotated revokes the whole session (every token descended
//! from that login), since it means the token was copied.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::jwt::JwtKeys;
use super::users::{self, User};
use super::{random_secret, sha256_hex};
use crate::error::{ApiError, ApiResult};
use crate::store::{Attr, Cond, Item, Key, Query, Store, StoreError, TTL, TxOp, Update, from_item, keyed_item, query_all};

/// How long a session (and so its refresh token) lives without being refreshed.
pub const SESSION_TTL: Duration = Duration::days(30);
/// `last_activity` is rewritten at most this often, not on every request.
const ACTIVITY_GRANULARITY_SECS: i64 = 60;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_activity: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
}

fn key(user_id: Uuid, session_id: Uuid) -> Key {
    Key::new(format!("USER#{user_id}"), format!("SESSION#{session_id}"))
}

fn refresh_key(token: &str) -> Key {
    Key::new(format!("REFRESH#{}", sha256_hex(token)), "REFRESH")
}

/// A login's tokens. Not Debug: both are credentials.
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub session_id: Uuid,
}

fn refresh_item(token: &str, session: &Session) -> Item {
    let k = refresh_key(token);
    Item::from([
        ("PK".into(), Attr::S(k.pk)),
        ("SK".into(), Attr::S(k.sk)),
        ("session_id".into(), Attr::S(session.id.to_string())),
        ("user_id".into(), Attr::S(session.user_id.to_string())),
        ("used".into(), Attr::Bool(false)),
        (TTL.into(), Attr::N(session.expires_at.timestamp())),
    ])
}

fn session_item(session: &Session) -> ApiResult<Item> {
    let mut item = keyed_item(session, &key(session.user_id, session.id))?;
    item.insert(TTL.into(), Attr::N(session.expires_at.timestamp()));
    Ok(item)
}

fn access_token(jwt: &JwtKeys, user_id: Uuid, session_id: Uuid, now: DateTime<Utc>) -> ApiResult<String> {
    jwt.issue(user_id, session_id, now.timestamp()).map_err(ApiError::internal)
}

/// Starts a session for a user who has just proved who they are.
pub async fn start(store: &dyn Store, jwt: &JwtKeys, now: DateTime<Utc>, user: &User, ip: Option<String>, user_agent: Option<String>) -> ApiResult<Tokens> {
    let session =
        Session { id: Uuid::new_v4(), user_id: user.id, created_at: now, last_activity: now, expires_at: now + SESSION_TTL, ip_address: ip, user_agent };
    let refresh_token = random_secret("rt_");
    store
        .transact(vec![
            TxOp::Put { item: session_item(&session)?, cond: Some(Cond::NotExists) },
            TxOp::Put { item: refresh_item(&refresh_token, &session), cond: Some(Cond::NotExists) },
        ])
        .await?;
    Ok(Tokens { access_token: access_token(jwt, user.id, session.id, now)?, refresh_token, session_id: session.id })
}

fn invalid_refresh() -> ApiError {
    ApiError::unauthorized("refresh token is invalid, expired or revoked; log in again")
}

fn reused_refresh() -> ApiError {
    ApiError::unauthorized("refresh token was already used, so the session has been revoked; log in again")
}

/// Rotates a refresh token: the old one is spent, a new one and a new access token are issued.
pub async fn refresh(store: &dyn Store, jwt: &JwtKeys, now: DateTime<Utc>, presented: &str) -> ApiResult<(Tokens, User)> {
    let old_key = refresh_key(presented);
    let Some(old) = store.get(&old_key).await? else { return Err(invalid_refresh()) };
    let ids = |name: &str| old.get(name).and_then(Attr::as_str).and_then(|s| s.parse::<Uuid>().ok());
    let (Some(user_id), Some(session_id)) = (ids("user_id"), ids("session_id")) else { return Err(invalid_refresh()) };
    if old.get("used") == Some(&Attr::Bool(true)) {
        revoke(store, user_id, session_id).await?;
        return Err(reused_refresh());
    }
    let Some(session) = store.get(&key(user_id, session_id)).await?.map(from_item::<Session>).transpose()? else {
        return Err(invalid_refresh());
    };
    if session.expires_at <= now {
        return Err(invalid_refresh());
    }
    let renewed = Session { last_activity: now, expires_at: now + SESSION_TTL, ..session };
    let new_token = random_secret("rt_");
    let result = store
        .transact(vec![
            TxOp::Update { key: old_key, update: Update::default().set("used", true), cond: Some(Cond::eq("used", false)) },
            TxOp::Put { item: refresh_item(&new_token, &renewed), cond: Some(Cond::NotExists) },
            TxOp::Put { item: session_item(&renewed)?, cond: Some(Cond::Exists) },
        ])
        .await;
    match result {
        Ok(()) => {}
        // Someone spent this token between our read and our write: the same re-use.
        Err(StoreError::TransactionCancelled { index: 0 }) => {
            revoke(store, user_id, session_id).await?;
            return Err(reused_refresh());
        }
        Err(StoreError::TransactionCancelled { .. }) => return Err(invalid_refresh()),
        Err(e) => return Err(e.into()),
    }
    let user = users::get(store, user_id).await?.filter(|u| u.deleting_since.is_none()).ok_or_else(invalid_refresh)?;
    // Deprovisioning revokes every session, but a refresh racing it must not outlive it.
    if user.disabled_at.is_some() {
        revoke(store, user_id, session_id).await?;
        return Err(users::deactivated());
    }
    Ok((Tokens { access_token: access_token(jwt, user_id, session_id, now)?, refresh_token: new_token, session_id }, user))
}

/// The user and session behind an access token, refusing revoked sessions and deleted users.
pub async fn authenticate(store: &dyn Store, jwt: &JwtKeys, now: DateTime<Utc>, bearer: &str) -> ApiResult<(User, Session)> {
    let claims = jwt.verify(bearer, now.timestamp()).ok_or_else(|| ApiError::unauthorized("access token is invalid or expired; log in or refresh"))?;
    let session: Session = store
        .get(&key(claims.sub, claims.sid))
        .await?
        .map(from_item)
        .transpose()?
        .ok_or_else(|| ApiError::unauthorized("this session has been revoked or has expired; log in again"))?;
    if session.expires_at <= now {
        return Err(ApiError::unauthorized("this session has expired; log in again"));
    }
    let user = users::get(store, claims.sub)
        .await?
        .filter(|u| u.deleting_since.is_none())
        .ok_or_else(|| ApiError::unauthorized("this user no longer exists (or is being deleted)"))?;
    if user.disabled_at.is_some() {
        return Err(users::deactivated());
    }
    if (now - session.last_activity).num_seconds() >= ACTIVITY_GRANULARITY_SECS {
        let update = Update::default().set("last_activity", now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
        // A session revoked meanwhile stays revoked: the condition keeps this from recreating it.
        match store.update(&key(user.id, session.id), update, Some(Cond::Exists)).await {
            Ok(_) | Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok((user, session))
}

/// The user's live sessions, newest first.
pub async fn list(store: &dyn Store, user_id: Uuid) -> ApiResult<Vec<Session>> {
    let query = Query::new(crate::store::Index::Primary, format!("USER#{user_id}")).prefix("SESSION#").limit(100);
    let mut sessions = query_all(store, query).await?.into_iter().map(from_item::<Session>).collect::<Result<Vec<_>, _>>()?;
    sessions.sort_by_key(|s| std::cmp::Reverse(s.created_at));
    Ok(sessions)
}

/// Revokes one session; returns whether it existed.
pub async fn revoke(store: &dyn Store, user_id: Uuid, session_id: Uuid) -> ApiResult<bool> {
    match store.delete(&key(user_id, session_id), Some(Cond::Exists)).await {
        Ok(()) => Ok(true),
        Err(StoreError::ConditionFailed) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Revokes every session of the user but `keep`; returns how many.
pub async fn revoke_all(store: &dyn Store, user_id: Uuid, keep: Option<Uuid>) -> ApiResult<usize> {
    let mut revoked = 0;
    for session in list(store, user_id).await? {
        if Some(session.id) != keep && revoke(store, user_id, session.id).await? {
            revoked += 1;
        }
    }
    Ok(revoked)
}
