//! Whether the process can serve, for load balancers and Kubernetes probes: live (it answers at
//! all) and ready (its store and secret store answer, its background work is running, and the
//! outbox is not piling up).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::secrets::SecretStore;
use crate::store::{Key, Store};

/// More budget events waiting than this and the process is not ready: its deliveries are
/// failing or cannot keep up.
pub const MAX_BACKLOG: usize = 1000;
/// A background pass runs every second; one this late means the task died or is stuck.
const STALE_PASS: Duration = Duration::from_secs(30);
/// How long a probe waits for the store or the secret store.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the background task reports after each pass.
#[derive(Default)]
pub struct Heartbeat {
    /// Whether this process runs the background task at all (a Lambda function does not).
    running: AtomicBool,
    /// When the last pass ended, milliseconds since the epoch.
    last_pass_ms: AtomicI64,
    /// The outbox's backlog as the last count found it.
    backlog: AtomicUsize,
}

impl Heartbeat {
    pub fn beat(&self, now_ms: i64) {
        self.running.store(true, Ordering::Relaxed);
        self.last_pass_ms.store(now_ms, Ordering::Relaxed);
    }

    pub fn backlog(&self, waiting: usize) {
        self.backlog.store(waiting, Ordering::Relaxed);
    }
}

/// One thing readiness depends on, and how it stands.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What is wrong, when something is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

fn check(name: &'static str, problem: Option<String>) -> Check {
    Check { name, ok: problem.is_none(), problem }
}

async fn within<T, E: std::fmt::Display>(call: impl Future<Output = Result<T, E>>) -> Option<String> {
    match tokio::time::timeout(PROBE_TIMEOUT, call).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}

/// Every readiness check, each with its problem if it has one. A read of an item that never
/// exists and of a secret that never exists: each is one round trip, and neither reveals data.
pub async fn ready(store: &dyn Store, secrets: &dyn SecretStore, beat: &Heartbeat, now_ms: i64) -> Vec<Check> {
    let store_problem = within(store.get(&Key::new("HEALTH#probe", "HEALTH#probe"))).await;
    let secrets_problem = within(secrets.get("health-probe")).await;
    let background = if beat.running.load(Ordering::Relaxed) {
        let late = now_ms.saturating_sub(beat.last_pass_ms.load(Ordering::Relaxed));
        (late > STALE_PASS.as_millis() as i64).then(|| format!("the last background pass ended {} s ago", late / 1000))
    } else {
        None
    };
    let waiting = beat.backlog.load(Ordering::Relaxed);
    let backlog = (waiting > MAX_BACKLOG).then(|| format!("{waiting} budget events wait for delivery (more than {MAX_BACKLOG})"));
    vec![check("store", store_problem), check("secrets", secrets_problem), check("background", background), check("outbox", backlog)]
}
