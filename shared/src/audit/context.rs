//! Who is changing what, for the request under way: set by the HTTP layer around a mutating
//! admin request (its route, target, source and id), the actor filled in by whichever extractor
//! authenticated it. Outside such a request (background work, the proxy) there is no scope and
//! nothing is audited.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who made a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A signed-in user (a session).
    User { id: Uuid },
    /// An API key acting for its owner.
    Key { id: Uuid, owner: String },
    /// An identity provider provisioning through SCIM with the token `id`.
    ScimToken { id: Uuid },
    /// No one signed in: the first admin's setup, an invitation accepted by link.
    Anonymous,
}

/// The request a change belongs to.
pub struct Scope {
    pub action: String,
    pub target: String,
    pub source: Option<String>,
    pub request_id: String,
    actor: Mutex<Actor>,
}

impl Scope {
    pub fn new(action: String, target: String, source: Option<String>, request_id: String) -> Self {
        Scope { action, target, source, request_id, actor: Mutex::new(Actor::Anonymous) }
    }

    pub fn actor(&self) -> Actor {
        self.actor.lock().expect("audit actor").clone()
    }
}

tokio::task_local! {
    static SCOPE: Option<Arc<Scope>>;
}

/// Runs `work` as the request `scope` describes: its writes are audited.
pub async fn scoped<T>(scope: Scope, work: impl Future<Output = T>) -> T {
    SCOPE.scope(Some(Arc::new(scope)), work).await
}

/// Runs `work` unaudited inside an audited request: bookkeeping that is no one's change (adding
/// pending usage records to their rollups, erasing a deleted account's usage records, whose
/// deletion is itself the audited change), and whose batches fill a transaction already.
pub async fn unaudited<T>(work: impl Future<Output = T>) -> T {
    SCOPE.scope(None, work).await
}

/// Names who is acting in the current request (nothing outside one).
pub fn identify(actor: Actor) {
    let _ = SCOPE.try_with(|scope| {
        if let Some(scope) = scope {
            *scope.actor.lock().expect("audit actor") = actor;
        }
    });
}

/// The current request's scope, when it is an audited one.
pub fn current() -> Option<Arc<Scope>> {
    SCOPE.try_with(Clone::clone).ok().flatten()
}
