//! An exclusive lock on the state folder for whoever may stop containers, so two holdfast
//! processes never both act on the stop journal.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// Held for as long as the value lives; the kernel releases it if the process dies.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another holdfast process is running backups with this state folder (it holds {path})")]
    Busy { path: PathBuf },
    #[error("locking {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Takes the lock without waiting.
pub fn try_lock(state_dir: &Path) -> Result<RunLock, LockError> {
    let path = state_dir.join("run.lock");
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Err(LockError::Busy { path }),
        Err(e) => return Err(io(e.into())),
    }
    Ok(RunLock { _file: file, path })
}

/// Whether another process holds the lock now. Creates nothing: a state folder without a
/// lock file has no holder. Opened read-only, the file takes a shared lock for a moment.
pub fn held_by_another(state_dir: &Path) -> bool {
    let Ok(file) = File::open(state_dir.join("run.lock")) else {
        return false;
    };
    matches!(
        rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockShared),
        Err(rustix::io::Errno::WOULDBLOCK)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = try_lock(dir.path()).unwrap();
        assert!(matches!(try_lock(dir.path()), Err(LockError::Busy { .. })));
        drop(first);
        assert!(try_lock(dir.path()).is_ok());
    }
}
