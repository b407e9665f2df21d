//! The repository lock: one writer per host folder of a repository.
//!
//! The state folder's lock keeps two processes of one state folder apart; it cannot see a
//! second daemon started with another `--state` on the same repository, whose retention
//! would then delete the first one's archives. So every writer (the daemon for its
//! lifetime, one-off backups, restores and deletions for their duration) also holds this
//! lock, and a second writer is refused at once, told who holds it.
//!
//! Locally it is `flock` on `<repository>/<host>/.holdfast/lock`: the kernel releases it
//! when the holder dies, so a crash never leaves the repository locked. The owner record
//! `lock.json` beside it only serves the refusal's message; a stale one is overwritten by
//! the next holder.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who holds (or asks for) a repository lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockOwner {
    pub host: String,
    pub pid: u32,
    /// What the holder is doing, e.g. `holdfast run`.
    pub command: String,
    pub since: DateTime<Utc>,
}

impl LockOwner {
    /// This process, on `host`, doing `command`, from now.
    pub fn this_process(host: &str, command: &str) -> LockOwner {
        LockOwner {
            host: host.to_string(),
            pid: std::process::id(),
            command: command.to_string(),
            since: Utc::now(),
        }
    }
}

impl std::fmt::Display for LockOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` (host {}, pid {}) since {}",
            self.command,
            self.host,
            self.pid,
            self.since
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

/// A held repository lock; dropping it releases it.
pub struct RepoLock {
    _held: Box<dyn Send + Sync>,
    /// What is locked, for messages.
    pub what: String,
}

impl std::fmt::Debug for RepoLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoLock")
            .field("what", &self.what)
            .finish()
    }
}

impl RepoLock {
    /// A lock held for as long as `guard` lives (for storages that implement their own).
    pub fn new(guard: Box<dyn Send + Sync>, what: String) -> RepoLock {
        RepoLock { _held: guard, what }
    }
}

/// Why a local lock was not taken.
#[derive(Debug)]
pub enum LocalLockError {
    /// Another process holds it; its owner record, when readable.
    Busy(Option<LockOwner>),
    Io {
        doing: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The lock file and the owner record in `meta` (a host folder's `.holdfast/`).
pub fn lock_local(meta: &Path, owner: &LockOwner) -> Result<RepoLock, LocalLockError> {
    let path = meta.join("lock");
    let record = meta.join("lock.json");
    let io = |doing: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| LocalLockError::Io {
            doing,
            path,
            source,
        }
    };
    std::fs::create_dir_all(meta).map_err(io("creating the lock folder", meta))?;
    let file: File = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("opening the repository lock", &path))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let holder = std::fs::read(&record)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            return Err(LocalLockError::Busy(holder));
        }
        Err(e) => return Err(io("locking the repository", &path)(e.into())),
    }
    let bytes = serde_json::to_vec_pretty(owner)
        .map_err(|e| io("writing the lock owner record", &record)(std::io::Error::other(e)))?;
    crate::fsutil::write_atomic(&record, &bytes)
        .map_err(io("writing the lock owner record", &record))?;
    Ok(RepoLock::new(Box::new(file), path.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_told_who_holds_the_lock_until_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = LockOwner::this_process("nas", "holdfast run");
        let held = lock_local(dir.path(), &first).unwrap();
        match lock_local(
            dir.path(),
            &LockOwner::this_process("nas", "holdfast backup"),
        ) {
            Err(LocalLockError::Busy(Some(holder))) => assert_eq!(holder, first),
            other => panic!("not refused with the holder: {other:?}"),
        }
        drop(held);
        let second = LockOwner::this_process("nas", "holdfast backup");
        let _held = lock_local(dir.path(), &second).unwrap();
        let record: LockOwner =
            serde_json::from_slice(&std::fs::read(dir.path().join("lock.json")).unwrap()).unwrap();
        assert_eq!(record, second);
    }
}
