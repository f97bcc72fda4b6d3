//! SCIM bearer tokens: what an identity provider presents at `/scim/v2`. A global admin makes
//! one; its secret is shown once and only its SHA-256 is kept, in a lookup item beside the
//! token's record (the record lists it, the lookup finds it by the presented secret).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::identity::{random_secret, sha256_hex};
use crate::store::{Attr, Cond, Index, Item, Key, Query, Store, StoreError, TxOp, from_item, keyed_item, query_all};

pub const SECRET_PREFIX: &str = "scim_";
const NAME_MAX: usize = 200;
/// Enough for one token per identity provider and a rotation each.
const MAX_TOKENS: usize = 50;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScimToken {
    pub id: Uuid,
    pub name: String,
    /// The secret's first characters, so admins can tell their tokens apart.
    pub prefix: String,
    pub token_hash: String,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
}

fn record_key(id: Uuid) -> Key {
    Key::new("SCIM_TOKENS", format!("TOKEN#{id}"))
}

fn lookup_key(hash: &str) -> Key {
    Key::new(format!("SCIM_TOKEN#{hash}"), "LOOKUP")
}

/// Makes a token; returns it with its secret, which is never readable again.
pub async fn create(store: &dyn Store, name: &str, created_by: Uuid, now: DateTime<Utc>) -> ApiResult<(ScimToken, String)> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX {
        return Err(ApiError::invalid_param("name", format!("name must be 1 to {NAME_MAX} characters, such as \"Okta\"")));
    }
    if list(store).await?.len() >= MAX_TOKENS {
        return Err(ApiError::conflict("too_many_scim_tokens", format!("there are {MAX_TOKENS} SCIM tokens already; delete unused ones first")));
    }
    let secret = random_secret(SECRET_PREFIX);
    let token = ScimToken {
        id: Uuid::new_v4(),
        name: name.to_string(),
        prefix: secret.chars().take(SECRET_PREFIX.len() + 6).collect(),
        token_hash: sha256_hex(&secret),
        created_by,
        created_at: now,
    };
    let lookup = lookup_key(&token.token_hash);
    let lookup_item = Item::from([("PK".into(), Attr::S(lookup.pk)), ("SK".into(), Attr::S(lookup.sk)), ("token_id".into(), Attr::S(token.id.to_string()))]);
    store
        .transact(vec![
            TxOp::Put { item: keyed_item(&token, &record_key(token.id))?, cond: Some(Cond::NotExists) },
            TxOp::Put { item: lookup_item, cond: Some(Cond::NotExists) },
        ])
        .await?;
    Ok((token, secret))
}

/// Every token, oldest first.
pub async fn list(store: &dyn Store) -> ApiResult<Vec<ScimToken>> {
    let items = query_all(store, Query::new(Index::Primary, "SCIM_TOKENS").prefix("TOKEN#")).await?;
    let mut tokens: Vec<ScimToken> = items.into_iter().map(from_item).collect::<Result<_, _>>()?;
    tokens.sort_by_key(|t| t.created_at);
    Ok(tokens)
}

/// Deletes a token: the identity provider using it is refused from the next request on.
pub async fn delete(store: &dyn Store, id: Uuid) -> ApiResult<()> {
    let not_found = || ApiError::not_found(format!("no SCIM token {id}; GET /api/scim/tokens lists them"));
    let token: ScimToken = store.get(&record_key(id)).await?.map(from_item).transpose()?.ok_or_else(not_found)?;
    match store
        .transact(vec![TxOp::Delete { key: record_key(id), cond: Some(Cond::Exists) }, TxOp::Delete { key: lookup_key(&token.token_hash), cond: None }])
        .await
    {
        Ok(()) => Ok(()),
        Err(StoreError::TransactionCancelled { .. }) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

/// The token a presented secret belongs to, if any.
pub async fn authenticate(store: &dyn Store, presented: &str) -> ApiResult<Option<Uuid>> {
    if !presented.starts_with(SECRET_PREFIX) {
        return Ok(None);
    }
    let Some(item) = store.get(&lookup_key(&sha256_hex(presented))).await? else { return Ok(None) };
    Ok(item.get("token_id").and_then(Attr::as_str).and_then(|s| s.parse().ok()))
}
