//! What a domain service tells the warm caches when it changes something they may hold (a
//! process's copies of keys, models, providers, secrets and owners), so that no change can
//! forget to: the service is given this interface and calls it where the change happens.
//! Other processes' copies follow within the cache's TTL (`TOLLGATE_KEY_CACHE_SECS`).

use uuid::Uuid;

pub trait Invalidate: Send + Sync {
    /// An API key, by the hash of its secret.
    fn key(&self, key_hash: &str);
    /// A catalog model, by id.
    fn model(&self, id: &str);
    /// A user's own provider, by (user, name).
    fn provider(&self, user_id: Uuid, name: &str);
    /// A secret (a model's, provider's or integration's key), by its name in the secret store.
    fn secret(&self, name: &str);
    /// A workspace's integration, by (workspace, service).
    fn integration(&self, workspace_id: Uuid, service: &'static str);
    /// What tokens of workspaces and projects know of their owners (their projects' and
    /// workspaces' limits), all at once.
    fn owners(&self);
}

/// For callers with no caches (tools, tests of the domain alone).
pub struct NoCaches;

impl Invalidate for NoCaches {
    fn key(&self, _: &str) {}
    fn model(&self, _: &str) {}
    fn provider(&self, _: Uuid, _: &str) {}
    fn secret(&self, _: &str) {}
    fn integration(&self, _: Uuid, _: &'static str) {}
    fn owners(&self) {}
}
