//! What a store that failed to write to its disk leaves beside its files: a note of the failure
//! and of the boot it happened in, that keeps the store from opening again in the same boot.
//!
//! Why: when a write or sync fails (EIO), Linux may keep the pages it could not write in its
//! cache, marked clean. A process started again in the same boot would read them as if the
//! disk held them: redb would take a commit that never reached the disk for done, its replay
//! would skip what that commit held, and the new process's log would overwrite the records that
//! had made those writes durable. A power cut later would lose writes that callers were told
//! were durable. After a restart of the machine the cache is gone: redb reads what the disk
//! holds (falling back to its last whole commit) and the log, which nothing overwrote, replays
//! the rest.

use std::path::{Path, PathBuf};

use crate::store::{StoreError, StoreResult};

/// The note's path for the store file at `path`.
pub(super) fn marker(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".failed");
    PathBuf::from(name)
}

/// This boot's id (Linux), or None where the system does not say.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|id| id.trim().to_string())
}

/// Notes that the store failed, and why. Best effort: the disk may refuse this too.
pub(super) fn mark(marker: &Path, why: &str) {
    let note = [boot_id().unwrap_or_default().as_str(), "\n", why, "\n"].concat();
    let written = std::fs::File::create(marker).and_then(|mut file| {
        std::io::Write::write_all(&mut file, note.as_bytes())?;
        file.sync_all()
    });
    if let Err(e) = written {
        tracing::error!(marker = %marker.display(), error = %e, "could not note the store's failure beside its files; do not restart it before the machine restarts");
    }
}

/// Refuses to open a store that failed in this boot (or in a boot the system cannot tell from
/// this one); forgets a failure from an earlier boot.
pub(super) fn check(marker: &Path) -> StoreResult<()> {
    let note = match std::fs::read_to_string(marker) {
        Ok(note) => note,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::Backend(format!("could not read {}: {e}", marker.display()))),
    };
    let (failed_in, why) = note.split_once('\n').unwrap_or((note.as_str(), ""));
    match boot_id() {
        Some(now) if !failed_in.is_empty() && now != failed_in => {
            tracing::warn!(why = why.trim(), "the store failed to write to its disk before the machine restarted; opening it from what the disk holds");
            std::fs::remove_file(marker).map_err(|e| StoreError::Backend(format!("could not remove {}: {e}", marker.display())))
        }
        _ => Err(StoreError::DiskFailed(format!(
            "the embedded store failed to write to its disk since the machine started ({}); the system's cache may show data the disk lacks, so it does not open again until the machine restarts. Restart the machine, or check the disk and then delete {}",
            why.trim(),
            marker.display()
        ))),
    }
}
