//! The storage boundary: the few things catalog, retention, verify and restore need of a
//! place that holds archives, and the local folder that implements them.
//!
//! Keys follow the layout `<group>/<archive id>/<file>`. An archive is written into a
//! staging area and made to exist by [`Storage::commit`], which puts `manifest.json` last:
//! an archive either exists whole or not at all. Nothing staged (`.partial`) or being
//! deleted (`.deleting`) is ever listed.
//!
//! Every method may block (disk or network): call them from blocking workers, not from
//! the reconcile loop.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::layout::{self, DELETING, MANIFEST, PARTIAL};
use crate::fault;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{doing} {path}: {source}")]
    Io {
        doing: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl StorageError {
    /// Whether trying again later may succeed (a busy or unreachable storage), as opposed
    /// to a refusal that will stand (no permission, no space).
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => crate::fsutil::io_is_transient(source),
        }
    }
}

fn io_err(doing: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| StorageError::Io {
        doing,
        path,
        source,
    }
}

/// What a listing or a stat tells of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meta {
    File {
        size: u64,
    },
    /// A folder-format artifact: its size is the sum of its files.
    Folder,
}

/// An archive being written: artifacts are streamed into files under `dir`.
#[derive(Debug)]
pub struct Staged {
    pub group: String,
    pub id: String,
    /// Where artifacts go while the run lasts.
    pub dir: PathBuf,
}

/// A place that holds archives.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Names the storage in messages.
    fn describe(&self) -> String;
    /// The groups (policy and Archive names) that hold archives, sorted.
    fn groups(&self) -> Result<Vec<String>, StorageError>;
    /// The archive ids of one group, sorted; staged and half-deleted ones are left out.
    fn archives(&self, group: &str) -> Result<Vec<String>, StorageError>;
    /// One file of an archive, whole; `None` when it does not exist.
    fn read(&self, group: &str, id: &str, file: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// What is at `file` of an archive; `None` when nothing is.
    fn stat(&self, group: &str, id: &str, file: &str) -> Result<Option<Meta>, StorageError>;
    /// One file of an archive, streamed.
    fn open(&self, group: &str, id: &str, file: &str)
    -> Result<Box<dyn Read + Send>, StorageError>;
    /// Replaces one small file of an archive durably (the verification record).
    fn put(&self, group: &str, id: &str, file: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Starts a new archive of `group` taken at `at`. Two runs within one second take the
    /// next free second.
    fn begin(&self, group: &str, at: DateTime<Utc>) -> Result<Staged, StorageError>;
    /// Makes a staged archive exist: everything durable first, the manifest last.
    fn commit(&self, staged: Staged, manifest: &[u8]) -> Result<(), StorageError>;
    /// Drops a staged archive.
    fn abandon(&self, staged: Staged) -> Result<(), StorageError>;
    /// Deletes an archive, out of every listing before anything of it is removed.
    /// Deleting what is already gone succeeds: a deletion may be repeated after a crash.
    fn delete(&self, group: &str, id: &str) -> Result<(), StorageError>;
    /// Removes what crashed runs left: staged archives. Returns what it removed.
    fn clean(&self) -> Result<Vec<String>, StorageError>;
    /// The archive's folder on this machine, for code that reads artifacts through
    /// descriptors (extraction, folder-format artifacts); `None` for remote storage.
    fn local_dir(&self, group: &str, id: &str) -> Option<PathBuf>;
}

/// A repository: a storage and the layout on it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Repository {
    storage: Arc<dyn Storage>,
}

impl Repository {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Repository { storage }
    }

    /// The local folder repository, as given by `--repository`.
    pub fn local(root: impl Into<PathBuf>) -> Self {
        Repository::new(Arc::new(LocalStorage::new(root)))
    }

    pub fn storage(&self) -> &dyn Storage {
        &*self.storage
    }
}

impl std::ops::Deref for Repository {
    type Target = dyn Storage;
    fn deref(&self) -> &Self::Target {
        &*self.storage
    }
}

/// A folder on this machine: `<root>/<group>/<archive id>/`.
#[derive(Clone, Debug)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStorage { root: root.into() }
    }

    fn dir(&self, group: &str, id: &str) -> PathBuf {
        self.root.join(group).join(id)
    }

    /// Sorted names of the sub-folders of `dir`; a missing `dir` has none.
    fn folders(&self, dir: &Path, doing: &'static str) -> Result<Vec<String>, StorageError> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(doing, dir)(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(doing, dir))?;
            let is_dir = entry
                .file_type()
                .map(|t| t.is_dir())
                .map_err(io_err(doing, &entry.path()))?;
            if is_dir {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

impl Storage for LocalStorage {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn groups(&self) -> Result<Vec<String>, StorageError> {
        self.folders(&self.root, "reading the repository")
    }

    fn archives(&self, group: &str) -> Result<Vec<String>, StorageError> {
        let mut ids = self.folders(&self.root.join(group), "reading repository folder")?;
        ids.retain(|n| !n.ends_with(PARTIAL) && !n.ends_with(DELETING));
        Ok(ids)
    }

    fn read(&self, group: &str, id: &str, file: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.dir(group, id).join(file);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading", &path)(e)),
        }
    }

    fn stat(&self, group: &str, id: &str, file: &str) -> Result<Option<Meta>, StorageError> {
        let path = self.dir(group, id).join(file);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => Ok(Some(Meta::Folder)),
            Ok(meta) => Ok(Some(Meta::File { size: meta.len() })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading", &path)(e)),
        }
    }

    fn open(
        &self,
        group: &str,
        id: &str,
        file: &str,
    ) -> Result<Box<dyn Read + Send>, StorageError> {
        let path = self.dir(group, id).join(file);
        let f = fs::File::open(&path).map_err(io_err("opening", &path))?;
        Ok(Box::new(f))
    }

    fn put(&self, group: &str, id: &str, file: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.dir(group, id).join(file);
        crate::fsutil::write_atomic(&path, bytes).map_err(io_err("writing", &path))
    }

    fn begin(&self, group: &str, at: DateTime<Utc>) -> Result<Staged, StorageError> {
        let parent = self.root.join(group);
        fs::create_dir_all(&parent).map_err(io_err("creating repository folder", &parent))?;
        let mut at = at;
        loop {
            let id = layout::archive_id(group, at);
            let dir = parent.join(format!("{id}{PARTIAL}"));
            if !parent.join(&id).exists() {
                match fs::create_dir(&dir) {
                    Ok(()) => {
                        return Ok(Staged {
                            group: group.to_string(),
                            id,
                            dir,
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err("creating archive folder", &dir)(e)),
                }
            }
            at += chrono::Duration::seconds(1);
        }
    }

    /// Everything is fsynced first, so a crash never leaves a manifest beside missing
    /// data; the rename is what makes the archive exist.
    fn commit(&self, staged: Staged, manifest: &[u8]) -> Result<(), StorageError> {
        sync_tree(&staged.dir)?;
        let path = staged.dir.join(MANIFEST);
        crate::fsutil::write_atomic(&path, manifest).map_err(io_err("writing manifest", &path))?;
        fault::point("backup.after-manifest");
        let final_dir = self.dir(&staged.group, &staged.id);
        fault::point("backup.before-rename");
        fs::rename(&staged.dir, &final_dir)
            .map_err(io_err("renaming partial archive", &staged.dir))?;
        fault::point("backup.after-rename");
        let parent = self.root.join(&staged.group);
        fs::File::open(&parent)
            .and_then(|f| f.sync_all())
            .map_err(io_err("syncing repository folder", &parent))
    }

    fn abandon(&self, staged: Staged) -> Result<(), StorageError> {
        fs::remove_dir_all(&staged.dir).map_err(io_err("removing partial archive", &staged.dir))
    }

    /// Renamed to `<id>.deleting` first, so a half-removed archive is never listed as one.
    fn delete(&self, group: &str, id: &str) -> Result<(), StorageError> {
        let path = self.dir(group, id);
        let doomed = self.dir(group, &format!("{id}{DELETING}"));
        match fs::rename(&path, &doomed) {
            Ok(()) => fault::point("prune.after-rename"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("deleting", &path)(e)),
        }
        match fs::remove_dir_all(&doomed) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("deleting", &doomed)(e)),
        }
    }

    fn clean(&self) -> Result<Vec<String>, StorageError> {
        let mut removed = Vec::new();
        for group in self.groups()? {
            let dir = self.root.join(&group);
            for name in self.folders(&dir, "reading repository folder")? {
                if name.ends_with(PARTIAL) {
                    let path = dir.join(&name);
                    fs::remove_dir_all(&path).map_err(io_err("removing partial archive", &path))?;
                    removed.push(path.display().to_string());
                }
            }
        }
        Ok(removed)
    }

    fn local_dir(&self, group: &str, id: &str) -> Option<PathBuf> {
        Some(self.dir(group, id))
    }
}

/// fsyncs every folder of a tree (artifact files are synced by their writers).
fn sync_tree(dir: &Path) -> Result<(), StorageError> {
    for entry in fs::read_dir(dir).map_err(io_err("reading archive folder", dir))? {
        let entry = entry.map_err(io_err("reading archive folder", dir))?;
        let is_dir = entry
            .file_type()
            .map(|t| t.is_dir())
            .map_err(io_err("reading archive folder", dir))?;
        if is_dir {
            sync_tree(&entry.path())?;
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
    fn ids_partials_commit_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::local(dir.path());
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap();
        let first = repo.begin("nightly", at).unwrap();
        assert_eq!(first.id, "nightly-20261125T030000Z");
        let second = repo.begin("nightly", at).unwrap();
        assert_eq!(second.id, "nightly-20261125T030001Z");
        fs::write(first.dir.join("data"), b"x").unwrap();
        repo.commit(first, b"{}").unwrap();
        assert_eq!(
            repo.archives("nightly").unwrap(),
            ["nightly-20261125T030000Z"]
        );
        assert_eq!(
            repo.read("nightly", "nightly-20261125T030000Z", MANIFEST)
                .unwrap()
                .unwrap(),
            b"{}"
        );
        assert_eq!(
            repo.stat("nightly", "nightly-20261125T030000Z", "data")
                .unwrap(),
            Some(Meta::File { size: 1 })
        );
        assert_eq!(
            repo.begin("nightly", at).unwrap().id,
            "nightly-20261125T030002Z"
        );
        assert_eq!(repo.clean().unwrap().len(), 2);
        assert_eq!(repo.groups().unwrap(), ["nightly"]);
        repo.delete("nightly", "nightly-20261125T030000Z").unwrap();
        repo.delete("nightly", "nightly-20261125T030000Z").unwrap();
        assert!(repo.archives("nightly").unwrap().is_empty());
        drop(second);
    }
}
