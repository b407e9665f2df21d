//! The local repository: `<repository>/<policy or archive name>/<archive id>/`.
//!
//! A run writes into `<archive id>.partial/` and renames it when `manifest.json` is in
//! place, so an archive either exists whole or not at all. Anything `.partial` is the
//! leftover of a crash: never listed, never restored, removed at start-up.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

pub const MANIFEST: &str = "manifest.json";
const PARTIAL: &str = ".partial";

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("{doing} {path}: {source}")]
    Io {
        doing: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(doing: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RepositoryError {
    let path = path.to_path_buf();
    move |source| RepositoryError::Io {
        doing,
        path,
        source,
    }
}

/// `<name>-<UTC yyyymmddThhmmssZ>`.
pub fn archive_id(name: &str, at: DateTime<Utc>) -> String {
    format!("{name}-{}", at.format("%Y%m%dT%H%M%SZ"))
}

#[derive(Clone, Debug)]
pub struct Repository {
    root: PathBuf,
}

/// An archive being written.
#[derive(Debug)]
pub struct PartialArchive {
    pub id: String,
    /// Where artifacts go while the run lasts.
    pub dir: PathBuf,
    final_dir: PathBuf,
}

impl Repository {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Repository { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn archive_dir(&self, name: &str, id: &str) -> PathBuf {
        self.root.join(name).join(id)
    }

    /// Starts a new archive for `name` taken at `at`. If an archive with that id exists
    /// already (two runs within one second), the next free second is used.
    pub fn begin(&self, name: &str, at: DateTime<Utc>) -> Result<PartialArchive, RepositoryError> {
        let parent = self.root.join(name);
        fs::create_dir_all(&parent).map_err(io_err("creating repository folder", &parent))?;
        let mut at = at;
        loop {
            let id = archive_id(name, at);
            let final_dir = parent.join(&id);
            let dir = parent.join(format!("{id}{PARTIAL}"));
            if !final_dir.exists() {
                match fs::create_dir(&dir) {
                    Ok(()) => return Ok(PartialArchive { id, dir, final_dir }),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err("creating archive folder", &dir)(e)),
                }
            }
            at += chrono::Duration::seconds(1);
        }
    }

    /// Removes `.partial` folders left by a crash. Returns what was removed.
    pub fn clean_partials(&self) -> Result<Vec<PathBuf>, RepositoryError> {
        let mut removed = Vec::new();
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(io_err("reading repository", &self.root)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("reading repository", &self.root))?;
            if !entry.path().is_dir() {
                continue;
            }
            let group = entry.path();
            for archive in
                fs::read_dir(&group).map_err(io_err("reading repository folder", &group))?
            {
                let path = archive
                    .map_err(io_err("reading repository folder", &group))?
                    .path();
                if path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(PARTIAL))
                {
                    fs::remove_dir_all(&path).map_err(io_err("removing partial archive", &path))?;
                    removed.push(path);
                }
            }
        }
        Ok(removed)
    }
}

impl PartialArchive {
    /// Writes the manifest last, then makes the archive exist by renaming its folder.
    /// Everything is fsynced first, so a crash never leaves a manifest beside missing data.
    pub fn commit(self, manifest: &[u8]) -> Result<PathBuf, RepositoryError> {
        sync_tree(&self.dir)?;
        let path = self.dir.join(MANIFEST);
        crate::fsutil::write_atomic(&path, manifest).map_err(io_err("writing manifest", &path))?;
        fs::rename(&self.dir, &self.final_dir)
            .map_err(io_err("renaming partial archive", &self.dir))?;
        if let Some(parent) = self.final_dir.parent() {
            fs::File::open(parent)
                .and_then(|f| f.sync_all())
                .map_err(io_err("syncing repository folder", parent))?;
        }
        Ok(self.final_dir)
    }

    /// Drops a failed run's partial archive.
    pub fn abandon(self) -> Result<(), RepositoryError> {
        fs::remove_dir_all(&self.dir).map_err(io_err("removing partial archive", &self.dir))
    }
}

/// fsyncs every folder of a tree (artifact files are synced by their writers).
fn sync_tree(dir: &Path) -> Result<(), RepositoryError> {
    for entry in fs::read_dir(dir).map_err(io_err("reading archive folder", dir))? {
        let path = entry.map_err(io_err("reading archive folder", dir))?.path();
        if path.is_dir() && !path.is_symlink() {
            sync_tree(&path)?;
        }
    }
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err("syncing archive folder", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ids_partials_and_commit() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::new(dir.path());
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap();
        let first = repo.begin("nightly", at).unwrap();
        assert_eq!(first.id, "nightly-20261125T030000Z");
        let second = repo.begin("nightly", at).unwrap();
        assert_eq!(second.id, "nightly-20261125T030001Z");
        fs::write(first.dir.join("data"), b"x").unwrap();
        let committed = first.commit(b"{}").unwrap();
        assert!(committed.join(MANIFEST).exists());
        assert_eq!(
            repo.begin("nightly", at).unwrap().id,
            "nightly-20261125T030002Z"
        );
        let removed = repo.clean_partials().unwrap();
        assert_eq!(removed.len(), 2);
        assert!(committed.exists());
        drop(second);
    }
}
