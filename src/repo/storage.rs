//! The storage boundary: the few things catalog, retention, verify and restore need of a
//! place that holds archives, and the local folder that implements them.
//!
//! Keys follow the layout `<group>/<archive id>/<file>` below this host's folder of the
//! repository (`<repository>/<host>/`): a storage sees only what its host wrote. An
//! archive is written into a staging area and made to exist by [`Storage::commit`], which
//! puts `manifest.json` last: an archive either exists whole or not at all. Nothing
//! staged (`.partial`) or being deleted (`.deleting`) is ever listed.
//!
//! Every method may block (disk or network): call them from blocking workers, not from
//! the reconcile loop.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::crypt::{self, Crypt};
use super::layout::{self, DELETING, MANIFEST, META_DIR, PARTIAL};
use super::lock::{LocalLockError, LockOwner, RepoLock};
use crate::archive::Outlet;
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
    #[error(
        "the repository {repository} is in use by another holdfast writer: {}; \
         two writers on one host folder would delete each other's archives",
        holder_text(holder)
    )]
    Locked {
        repository: String,
        holder: Option<LockOwner>,
    },
    #[error(
        "the repository {repository} holds archives of a policy named `{host}` in the flat \
         layout of earlier releases, where this host's folder would go; start holdfast with \
         another --host (those archives then move under that host's folder)"
    )]
    HostNamedLikeGroup { repository: String, host: String },
}

impl StorageError {
    /// Whether trying again later may succeed (a busy or unreachable storage), as opposed
    /// to a refusal that will stand (no permission, no space).
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => crate::fsutil::io_is_transient(source),
            StorageError::Locked { .. } => true,
            StorageError::HostNamedLikeGroup { .. } => false,
        }
    }
}

/// A local lock that was not taken, as a storage error naming `repository`.
pub(super) fn lock_refused(e: LocalLockError, repository: String) -> StorageError {
    match e {
        LocalLockError::Busy(holder) => StorageError::Locked { repository, holder },
        LocalLockError::Io {
            doing,
            path,
            source,
        } => StorageError::Io {
            doing,
            path,
            source,
        },
    }
}

/// The holder of a lock as a refusal names it.
fn holder_text(holder: &Option<LockOwner>) -> String {
    holder.as_ref().map_or_else(
        || "its owner record cannot be read".to_string(),
        LockOwner::to_string,
    )
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

/// An archive being written: artifacts are streamed through `outlet`.
#[derive(Debug)]
pub struct Staged {
    pub group: String,
    pub id: String,
    /// Where artifacts go while the run lasts.
    pub outlet: Arc<dyn Outlet>,
    /// The staging folder of a local storage.
    pub dir: Option<PathBuf>,
}

/// A place that holds archives.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Names the storage in messages.
    fn describe(&self) -> String;
    /// The host whose archives this storage holds; manifests record it.
    fn host(&self) -> &str;
    /// Takes the writers' lock of this host's part of the repository without waiting:
    /// a second writer is refused with [`StorageError::Locked`], naming the holder. Taking
    /// it opens the repository for writing, which may first bring an older layout up to
    /// date. Released when the [`RepoLock`] is dropped.
    fn lock(&self, owner: &LockOwner) -> Result<RepoLock, StorageError>;
    /// Every host with archives in the whole repository (this one's among them if it has
    /// any), sorted: the folders `<host>/<group>/<archive id>/` with a manifest. Read-only,
    /// for listing and restoring other hosts' archives on a new machine.
    fn hosts(&self) -> Result<Vec<String>, StorageError>;
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
    /// The whole repository's folder on this machine (every host's archives), which no
    /// backup may read and whose file system must hold new archives; `None` for remote
    /// storage.
    fn local_top(&self) -> Option<PathBuf>;
    /// One file of the repository's own records (under `.holdfast/`, never a group);
    /// `None` when it does not exist.
    fn read_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Replaces one file of the repository's own records durably: a reader sees the old
    /// content or the new, never a mix, and a crash after the call returns loses nothing.
    fn write_meta(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// The record `name` of every host of the repository (this one's and the others'),
    /// with the host's name: how one host reads the fleet's summaries. Hosts without the
    /// record are left out.
    fn host_records(&self, name: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError>;
    /// Proves the storage works: writes, reads back and deletes a small record.
    fn probe(&self) -> Result<(), StorageError>;
}

/// A repository: a storage and the layout on it, its name, and how its artifacts are
/// encrypted. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Repository {
    storage: Arc<dyn Storage>,
    name: String,
    crypt: Option<Arc<Crypt>>,
    append_only: bool,
    /// A restic-format repository: its snapshots hold the data, `storage` holdfast's
    /// manifests beside them.
    restic: Option<Arc<super::restic::Restic>>,
}

impl Repository {
    /// The repository `default` on `storage`, unencrypted.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Repository {
            storage,
            name: crate::spec::repository::DEFAULT_REPOSITORY.to_string(),
            crypt: None,
            append_only: false,
            restic: None,
        }
    }

    /// A named repository, as a Repository spec describes it.
    pub fn named(
        name: &str,
        storage: Arc<dyn Storage>,
        crypt: Option<Crypt>,
        append_only: bool,
    ) -> Self {
        Repository {
            storage,
            name: name.to_string(),
            crypt: crypt.map(Arc::new),
            append_only,
            restic: None,
        }
    }

    /// This repository in the restic format: `restic` holds the data, the storage
    /// holdfast's manifests.
    pub fn with_restic(mut self, restic: super::restic::Restic) -> Self {
        self.restic = Some(Arc::new(restic));
        self
    }

    /// The restic repository, when this repository is in the restic format.
    pub fn restic(&self) -> Option<&Arc<super::restic::Restic>> {
        self.restic.as_ref()
    }

    /// The repository's format, as manifests and tables name it.
    pub fn format(&self) -> crate::spec::repository::RepositoryFormat {
        match self.restic {
            Some(_) => crate::spec::repository::RepositoryFormat::Restic,
            None => crate::spec::repository::RepositoryFormat::Archives,
        }
    }

    /// The local folder repository given by `--repository`, as `host` sees it: the one
    /// way a repository is opened from the settings.
    pub fn local(top: impl Into<PathBuf>, host: &str) -> Self {
        Repository::new(Arc::new(LocalStorage::new(top, host)))
    }

    pub fn storage(&self) -> &dyn Storage {
        &*self.storage
    }

    /// The repository's name: `default`, or its Repository spec's.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether holdfast must never delete here.
    pub fn append_only(&self) -> bool {
        self.append_only
    }

    /// The encryption manifests record (`age`), if any.
    pub fn encryption(&self) -> Option<&'static str> {
        self.crypt.as_ref().map(|_| crypt::AGE)
    }

    /// The age public keys this repository encrypts to; none when it is not encrypted.
    pub fn recipients(&self) -> Vec<age::x25519::Recipient> {
        self.crypt
            .as_ref()
            .map(|c| c.recipients().to_vec())
            .unwrap_or_default()
    }

    /// Starts a new archive; its artifacts are encrypted on their way when the repository
    /// is.
    pub fn begin(&self, group: &str, at: DateTime<Utc>) -> Result<Staged, StorageError> {
        let mut staged = self.storage.begin(group, at)?;
        if let Some(crypt) = &self.crypt {
            staged.outlet = crypt.outlet(staged.outlet.clone());
        }
        Ok(staged)
    }

    /// One stored artifact as the manifest describes it (`size`, `sha256`): decrypted
    /// when it was encrypted. An encrypted artifact of a repository whose spec gives no
    /// identity cannot be read this way; [`Repository::open_stored`] reads its
    /// ciphertext.
    pub fn open_artifact(
        &self,
        group: &str,
        id: &str,
        artifact: &super::manifest::Artifact,
    ) -> Result<Box<dyn Read + Send>, StorageError> {
        if let (Some(restic), Some(snapshot)) = (&self.restic, &artifact.snapshot) {
            let (path, folder) = artifact.snapshot_path();
            return restic
                .read(snapshot, path, folder)
                .map_err(|e| StorageError::Io {
                    doing: "reading",
                    path: PathBuf::from(format!("{group}/{id}/{}", artifact.path)),
                    source: e.into_io(),
                });
        }
        let stored = self.storage.open(group, id, &artifact.path)?;
        if artifact.stored_sha256.is_none() {
            return Ok(stored);
        }
        let shown = format!("{}/{}/{}", group, id, artifact.path);
        let crypt = self.crypt.as_ref().ok_or_else(|| StorageError::Io {
            doing: "decrypting",
            path: PathBuf::from(&shown),
            source: io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the artifact is encrypted and this repository has no encryption settings",
            ),
        })?;
        crypt
            .decrypt(stored, &shown)
            .map_err(io_err("decrypting", Path::new(&shown)))
    }

    /// Removes what crashed runs left: staged archives, and in a restic repository the
    /// snapshots of runs whose archive was never committed (each is tagged with its
    /// archive's id, and only this host's are looked at). Call it with the writers' lock
    /// held and no run of this process writing, as at start-up.
    pub fn clean(&self) -> Result<Vec<String>, StorageError> {
        let mut removed = self.storage.clean()?;
        // appendOnly: holdfast never forgets a snapshot there (a locked bucket would
        // refuse it, and opening the repository would fail).
        if let (Some(restic), false) = (&self.restic, self.append_only) {
            let failed = |e: super::restic::ResticError| StorageError::Io {
                doing: "cleaning",
                path: PathBuf::from(restic.location()),
                source: e.into_io(),
            };
            let mut orphans = Vec::new();
            let mut committed: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for snap in restic.snapshots().map_err(failed)? {
                let (Some(group), Some(archive)) = (snap.tag("policy"), snap.tag("archive")) else {
                    continue;
                };
                if !committed.contains_key(group) {
                    committed.insert(group.to_string(), self.storage.archives(group)?);
                }
                if !committed[group].iter().any(|id| id == archive) {
                    removed.push(format!(
                        "snapshot {} of the uncommitted archive {archive}",
                        &snap.id[..8]
                    ));
                    orphans.push(snap.id);
                }
            }
            restic.forget(&orphans).map_err(failed)?;
        }
        Ok(removed)
    }

    /// Whether the artifacts of this repository can be read back in plaintext here.
    pub fn can_decrypt(&self) -> bool {
        self.crypt.as_ref().is_none_or(|c| c.can_decrypt())
    }
}

impl std::ops::Deref for Repository {
    type Target = dyn Storage;
    fn deref(&self) -> &Self::Target {
        &*self.storage
    }
}

/// A folder on this machine: `<top>/<host>/<group>/<archive id>/`.
#[derive(Clone, Debug)]
pub struct LocalStorage {
    /// The repository's folder, as given by `--repository`.
    top: PathBuf,
    host: String,
    /// This host's folder, `<top>/<host>`: everything this storage reads and writes.
    root: PathBuf,
}

impl LocalStorage {
    pub fn new(top: impl Into<PathBuf>, host: &str) -> Self {
        let top = top.into();
        LocalStorage {
            root: Self::host_root(&top, host),
            host: host.to_string(),
            top,
        }
    }

    /// `<top>/<host>`: where `host`'s archives live.
    pub fn host_root(top: &Path, host: &str) -> PathBuf {
        top.join(host)
    }

    /// `<top>/<host>/.holdfast`: the host's own records, never taken for a group.
    fn meta(&self) -> PathBuf {
        self.root.join(META_DIR)
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

    fn host(&self) -> &str {
        &self.host
    }

    /// The folders of `top` (never `.`-records) with at least one archive's manifest two
    /// folders below; a flat group of earlier releases holds its manifests one level
    /// higher and is never taken for a host.
    fn hosts(&self) -> Result<Vec<String>, StorageError> {
        let mut hosts = Vec::new();
        for host in self.folders(&self.top, "listing hosts in")? {
            if host.starts_with('.') {
                continue;
            }
            let root = self.top.join(&host);
            let mut found = false;
            'groups: for group in self.folders(&root, "listing groups in")? {
                if group.starts_with('.') {
                    continue;
                }
                for id in self.folders(&root.join(&group), "listing archives in")? {
                    if layout::time_from_id(&id).is_some()
                        && root.join(&group).join(&id).join(MANIFEST).is_file()
                    {
                        found = true;
                        break 'groups;
                    }
                }
            }
            if found {
                hosts.push(host);
            }
        }
        Ok(hosts)
    }

    /// `flock` on `.holdfast/lock` in the host's folder, then the flat layout of earlier
    /// releases is moved under the host (see [`super::flat`]), under the lock.
    fn lock(&self, owner: &LockOwner) -> Result<RepoLock, StorageError> {
        // A flat group named like this host would be taken for the host's folder.
        if super::flat::is_flat_group(&self.root, &self.host)? {
            return Err(StorageError::HostNamedLikeGroup {
                repository: self.top.display().to_string(),
                host: self.host.clone(),
            });
        }
        let lock = super::lock::lock_local(&self.meta(), owner)
            .map_err(|e| lock_refused(e, self.root.display().to_string()))?;
        super::flat::adopt(&self.top, &self.root)?;
        Ok(lock)
    }

    /// Folders starting with `.` are the host's own records, not groups.
    fn groups(&self) -> Result<Vec<String>, StorageError> {
        let mut groups = self.folders(&self.root, "reading the repository")?;
        groups.retain(|g| !g.starts_with('.'));
        Ok(groups)
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
                            outlet: Arc::new(dir.clone()),
                            dir: Some(dir),
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
        let dir = local_staging(&staged)?;
        sync_tree(&dir)?;
        let path = dir.join(MANIFEST);
        crate::fsutil::write_atomic(&path, manifest).map_err(io_err("writing manifest", &path))?;
        fault::point("backup.after-manifest");
        let final_dir = self.dir(&staged.group, &staged.id);
        fault::point("backup.before-rename");
        fs::rename(&dir, &final_dir).map_err(io_err("renaming partial archive", &dir))?;
        fault::point("backup.after-rename");
        let parent = self.root.join(&staged.group);
        fs::File::open(&parent)
            .and_then(|f| f.sync_all())
            .map_err(io_err("syncing repository folder", &parent))
    }

    fn abandon(&self, staged: Staged) -> Result<(), StorageError> {
        let dir = local_staging(&staged)?;
        fs::remove_dir_all(&dir).map_err(io_err("removing partial archive", &dir))
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

    fn local_top(&self) -> Option<PathBuf> {
        Some(self.top.clone())
    }

    fn read_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.meta().join(name);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading", &path)(e)),
        }
    }

    /// Through [`crate::fsutil::write_atomic`] (temp file, fsync, rename, fsync of the
    /// folder); the folder is created, and its own entry synced, the first time.
    fn write_meta(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let dir = self.meta();
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(io_err("creating the records folder", &dir))?;
            fs::File::open(&self.root)
                .and_then(|f| f.sync_all())
                .map_err(io_err("syncing the repository folder", &self.root))?;
        }
        let path = dir.join(name);
        crate::fsutil::write_atomic(&path, bytes).map_err(io_err("writing", &path))
    }

    /// `<top>/<host>/.holdfast/<name>` of every folder of the repository.
    fn host_records(&self, name: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let mut found = Vec::new();
        for host in self.folders(&self.top, "reading the repository")? {
            if host.starts_with('.') {
                continue;
            }
            let path = Self::host_root(&self.top, &host).join(META_DIR).join(name);
            match fs::read(&path) {
                Ok(bytes) => found.push((host, bytes)),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) => {}
                Err(e) => return Err(io_err("reading", &path)(e)),
            }
        }
        Ok(found)
    }

    fn probe(&self) -> Result<(), StorageError> {
        let written = format!("{}", std::process::id());
        self.write_meta(PROBE, written.as_bytes())?;
        let path = self.meta().join(PROBE);
        let read = fs::read(&path).map_err(io_err("reading", &path))?;
        fs::remove_file(&path).map_err(io_err("deleting", &path))?;
        if read != written.as_bytes() {
            return Err(StorageError::Io {
                doing: "reading back",
                path,
                source: io::Error::other("it read back different bytes than were written"),
            });
        }
        Ok(())
    }
}

/// The record [`Storage::probe`] writes, reads back and deletes.
pub const PROBE: &str = "probe";

/// The staging folder of an archive a local storage began.
fn local_staging(staged: &Staged) -> Result<PathBuf, StorageError> {
    staged.dir.clone().ok_or_else(|| StorageError::Io {
        doing: "committing",
        path: PathBuf::from(&staged.id),
        source: io::Error::other("the archive was not begun by this storage"),
    })
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
        let repo = Repository::local(dir.path(), "h");
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap();
        let first = repo.begin("nightly", at).unwrap();
        assert_eq!(first.id, "nightly-20261125T030000Z");
        let second = repo.begin("nightly", at).unwrap();
        assert_eq!(second.id, "nightly-20261125T030001Z");
        fs::write(first.dir.as_ref().unwrap().join("data"), b"x").unwrap();
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

    fn flat_archive(top: &Path, group: &str) {
        let dir = top.join(group).join(format!("{group}-20261125T030000Z"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(MANIFEST), b"{}").unwrap();
    }

    /// Every host with an archive is listed, whichever host asks; a flat group of earlier
    /// releases, a host folder with only its records and the repository's own records
    /// are not hosts.
    #[test]
    fn hosts_are_the_folders_holding_archives() {
        let dir = tempfile::tempdir().unwrap();
        flat_archive(dir.path(), "nightly");
        flat_archive(&dir.path().join("nas"), "nightly");
        flat_archive(&dir.path().join("pi"), "photos");
        fs::create_dir_all(dir.path().join("new/.holdfast")).unwrap();
        fs::create_dir_all(dir.path().join(".holdfast")).unwrap();
        let reader = Repository::local(dir.path(), "new");
        assert_eq!(reader.storage().hosts().unwrap(), ["nas", "pi"]);
        assert!(reader.groups().unwrap().is_empty());
    }

    /// Each host sees only its own folder; taking the lock brings the flat layout under
    /// the host that takes it, and the lock's own folder is never a group.
    #[test]
    fn hosts_see_their_own_folder_and_the_lock_adopts_the_flat_layout() {
        let dir = tempfile::tempdir().unwrap();
        flat_archive(dir.path(), "nightly");
        let nas = Repository::local(dir.path(), "nas");
        let pi = Repository::local(dir.path(), "pi");
        assert_eq!(nas.host(), "nas");
        assert!(nas.groups().unwrap().is_empty(), "not adopted by a reader");
        let lock = nas
            .lock(&LockOwner::this_process("nas", "holdfast run"))
            .unwrap();
        assert_eq!(nas.groups().unwrap(), ["nightly"]);
        assert_eq!(
            nas.archives("nightly").unwrap(),
            ["nightly-20261125T030000Z"]
        );
        assert!(dir.path().join("nas/.holdfast/lock.json").is_file());
        // Another host locks its own folder, and adopts nothing of the first one's.
        let _other = pi
            .lock(&LockOwner::this_process("pi", "holdfast run"))
            .unwrap();
        assert!(pi.groups().unwrap().is_empty());
        match nas.lock(&LockOwner::this_process("nas", "holdfast backup")) {
            Err(e @ StorageError::Locked { .. }) => {
                let message = e.to_string();
                assert!(
                    message.contains(&format!("pid {}", std::process::id()))
                        && message.contains("holdfast run"),
                    "{message}"
                );
            }
            other => panic!("a second writer was not refused: {other:?}"),
        }
        drop(lock);
    }

    #[test]
    fn a_flat_group_named_like_the_host_is_refused_not_merged() {
        let dir = tempfile::tempdir().unwrap();
        flat_archive(dir.path(), "nas");
        let nas = Repository::local(dir.path(), "nas");
        let refused = nas.lock(&LockOwner::this_process("nas", "holdfast run"));
        assert!(
            matches!(refused, Err(StorageError::HostNamedLikeGroup { .. })),
            "{refused:?}"
        );
        assert!(!dir.path().join("nas/.holdfast").exists());
    }

    #[test]
    fn records_live_beside_the_groups_and_are_never_one() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::local(dir.path().join("repo"), "nas");
        assert_eq!(repo.read_meta("handled.json").unwrap(), None);
        repo.write_meta("handled.json", b"one").unwrap();
        repo.write_meta("handled.json", b"two").unwrap();
        assert_eq!(repo.read_meta("handled.json").unwrap().unwrap(), b"two");
        assert!(dir.path().join("repo/nas/.holdfast/handled.json").is_file());
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap();
        let staged = repo.begin("nightly", at).unwrap();
        repo.commit(staged, b"{}").unwrap();
        assert_eq!(repo.groups().unwrap(), ["nightly"]);
        assert!(repo.clean().unwrap().is_empty());
    }
}
