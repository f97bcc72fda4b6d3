//! The CLI's session: the access token and the refresh token, kept in the user's config
//! directory (`$XDG_CONFIG_HOME/tollgate/session.json`, else `~/.config/tollgate/…`) with mode
//! 0600, one per server. As the management seed describes, an access token that has expired or
//! expires within five minutes is refreshed silently before a call, and the rotated refresh
//! token is written back at once (the old one no longer works).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Refresh when the access token has less than this left.
const REFRESH_WITHIN_SECS: i64 = 5 * 60;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Session {
    pub token: String,
    pub refresh_token: String,
    pub email: String,
}

impl Session {
    /// The access token's claims, read, not verified (the server verifies).
    fn claims(&self) -> Option<serde_json::Value> {
        let payload = self.token.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// When the access token expires (its `exp` claim).
    pub fn expires_at(&self) -> Option<i64> {
        self.claims()?.get("exp")?.as_i64()
    }

    /// The session id the token names (`sid`), to end it on logout.
    pub fn session_id(&self) -> Option<String> {
        Some(self.claims()?.get("sid")?.as_str()?.to_string())
    }

    pub fn needs_refresh(&self, now: i64) -> bool {
        self.expires_at().is_none_or(|exp| exp - now < REFRESH_WITHIN_SECS)
    }
}

fn path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").ok_or_else(|| anyhow!("neither XDG_CONFIG_HOME nor HOME is set: set one to keep a session"))?)
            .join(".config"),
    };
    Ok(base.join("tollgate").join("session.json"))
}

/// Every server's session, by server URL.
fn read_all() -> anyhow::Result<BTreeMap<String, Session>> {
    let path = path()?;
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("{} is not a session file; delete it and log in again", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_all(all: &BTreeMap<String, Session>) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = path()?;
    let dir = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Written beside and renamed over, created 0600: the refresh token is a credential, and a
    // crash mid-write must not leave half a file.
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(&serde_json::to_vec_pretty(all)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub fn load(server: &str) -> anyhow::Result<Option<Session>> {
    Ok(read_all()?.remove(server))
}

pub fn store(server: &str, session: &Session) -> anyhow::Result<()> {
    let mut all = read_all()?;
    all.insert(server.to_string(), session.clone());
    write_all(&all)
}

pub fn forget(server: &str) -> anyhow::Result<bool> {
    let mut all = read_all()?;
    let had = all.remove(server).is_some();
    write_all(&all)?;
    Ok(had)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_expiring_at(exp: i64) -> String {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"u","sid":"s-1","exp":{exp}}}"#));
        format!("eyJhbGciOiJIUzI1NiJ9.{payload}.sig")
    }

    #[test]
    fn a_token_is_refreshed_within_five_minutes_of_expiry_and_not_before() {
        let now = 1_800_000_000;
        let session = |exp| Session { token: token_expiring_at(exp), refresh_token: "r".into(), email: "e".into() };
        assert!(!session(now + 3600).needs_refresh(now), "an hour left");
        assert!(!session(now + 301).needs_refresh(now), "just over five minutes left");
        assert!(session(now + 299).needs_refresh(now), "within five minutes");
        assert!(session(now - 10).needs_refresh(now), "expired");
        let unreadable = Session { token: "not a jwt".into(), refresh_token: "r".into(), email: "e".into() };
        assert!(unreadable.needs_refresh(now), "a token whose expiry cannot be read is refreshed");
        assert_eq!(session(now).session_id().as_deref(), Some("s-1"));
    }
}
