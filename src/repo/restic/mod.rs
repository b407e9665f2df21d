//! restic-format repositories (format v2, compressed), written and read through
//! rustic_core. This is the one module that knows rustic: a release that changes its API
//! touches these files only.
//!
//! - [`backend`]: rustic's storage traits over holdfast's object stores.
//! - [`source`]: what goes into a snapshot (a folder, a stream, files in memory).
//! - [`run`]: the snapshots of one run, as its outlet.
//! - [`tar`]: a folder of a snapshot as a tar stream, for holdfast's extractor.
//!
//! A run writes one snapshot per volume, bind mount and dump, and one with its recipe,
//! all tagged `holdfast`, `policy:<group>`, `run:<run id>` and `archive:<archive id>`;
//! each folder snapshot has the previous snapshot of the same folder as parent, so files
//! whose size, mtime, ctime and inode did not change are not read again. holdfast's
//! manifest of the run is written beside restic's folders (`holdfast/`), last, as in the
//! archives format: the run's snapshots are an archive once it exists.
//!
//! Every call here blocks (disk, network, CPU): call them from blocking workers.

mod backend;
mod run;
mod source;
mod tar;

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use rustic_core::repofile::{MasterKey, SnapshotFile, SnapshotId};
use rustic_core::{
    CheckOptions, ConfigOptions, Credentials, KeyOptions, OpenStatus, ProgressBars, ProgressType,
    PruneOptions, ReadSubsetOption, Repository, RepositoryBackends, RepositoryOptions, RusticError,
    RusticProgress, WriteBackend,
};

pub use backend::{LocalObjects, ObjectsBackend, Prefixed};
pub use run::RunSnapshots;
pub use source::Cancelled;

use crate::repo::objects::Objects;
use crate::spec::repository::{HostSecret, HostSecretError};

/// The folder beside restic's own where holdfast keeps its manifests, locks and records.
pub const HOLDFAST_DIR: &str = "holdfast";

/// The tag every snapshot holdfast writes carries.
pub const TAG: &str = "holdfast";

/// Why something in a restic repository failed.
#[derive(Debug, thiserror::Error)]
pub enum ResticError {
    #[error("the password of the restic repository {location}: {source}")]
    Password {
        location: String,
        #[source]
        source: HostSecretError,
    },
    #[error("restic repository {location}: {doing}: {message}")]
    Rustic {
        location: String,
        doing: &'static str,
        message: String,
    },
    #[error(
        "restic repository {location}: {what} was not read completely, so its snapshot was \
         dropped: {}",
        problems.join("; ")
    )]
    Unreadable {
        location: String,
        what: String,
        problems: Vec<String>,
    },
    #[error("restic repository {location}: no snapshot {id}")]
    NoSnapshot { location: String, id: String },
    #[error("restic repository {location} is append-only: holdfast forgets nothing there")]
    AppendOnly { location: String },
}

impl ResticError {
    /// The error as the storage boundary reports errors, for code that knows only that.
    pub fn into_io(self) -> io::Error {
        io::Error::other(self.to_string())
    }
}

/// What one snapshot holds and what it added to the repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Taken {
    /// The snapshot's id (64 hex digits).
    pub snapshot: String,
    /// Bytes read from the source (all files, changed or not).
    pub source_bytes: u64,
    /// Files and folders in the snapshot.
    pub entries: u64,
    /// Bytes the snapshot added to the repository, compressed and encrypted.
    pub added_bytes: u64,
    /// Files read again because they changed or are new.
    pub files_read: u64,
}

impl Taken {
    fn of(snap: &SnapshotFile) -> Taken {
        let summary = snap.summary.clone().unwrap_or_default();
        Taken {
            snapshot: snap.id.to_hex().to_string(),
            source_bytes: summary.total_bytes_processed,
            entries: summary.total_files_processed + summary.total_dirs_processed,
            added_bytes: summary.data_added_packed,
            files_read: summary.files_new + summary.files_changed,
        }
    }
}

/// One snapshot as holdfast lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub time: DateTime<Utc>,
    pub hostname: String,
    pub tags: Vec<String>,
    pub paths: Vec<String>,
}

impl Snapshot {
    fn of(snap: &SnapshotFile) -> Snapshot {
        let ts = snap.time.timestamp();
        Snapshot {
            id: snap.id.to_hex().to_string(),
            time: DateTime::from_timestamp(ts.as_second(), ts.subsec_nanosecond() as u32)
                .unwrap_or_default(),
            hostname: snap.hostname.clone(),
            tags: snap.tags.iter().cloned().collect(),
            paths: snap.paths.iter().cloned().collect(),
        }
    }

    /// The value of the tag `key:value`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find_map(|t| t.strip_prefix(key)?.strip_prefix(':'))
    }
}

/// How much of the data `check` reads back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReadData {
    /// The structure only: every snapshot's trees, the index, the pack headers.
    None,
    /// A random share of the pack files, in percent.
    Sample(f64),
    /// Every pack file.
    All,
}

/// A restic repository: where it is, and the password that opens it.
pub struct Restic {
    objects: Arc<dyn Objects>,
    backend: Arc<dyn WriteBackend>,
    password: HostSecret,
    location: String,
    host: String,
    /// `appendOnly`: nothing is ever forgotten or pruned.
    append_only: bool,
    /// The key the password unlocked, kept so that later opens skip the key derivation
    /// (restic's scrypt takes a noticeable time).
    key: Mutex<Option<MasterKey>>,
}

impl std::fmt::Debug for Restic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restic")
            .field("location", &self.location)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Restic {
    /// The restic repository at the root of `objects`, opened with the password
    /// `password` names, writing snapshots as `host`.
    pub fn new(
        objects: Arc<dyn Objects>,
        password: HostSecret,
        location: String,
        host: &str,
    ) -> Restic {
        Restic {
            backend: Arc::new(ObjectsBackend::new(objects.clone())),
            objects,
            password,
            location,
            host: host.to_string(),
            key: Mutex::new(None),
            append_only: false,
        }
    }

    /// Makes this an append-only repository: [`Restic::forget`] and [`Restic::prune`]
    /// refuse.
    pub fn append_only(mut self, append_only: bool) -> Restic {
        self.append_only = append_only;
        self
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// Whether the snapshot `id` is in the repository: one look at its file, without the
    /// password.
    pub fn has_snapshot(&self, id: &str) -> io::Result<bool> {
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(false);
        }
        Ok(self.objects.size(&format!("snapshots/{id}"))?.is_some())
    }

    fn rustic(&self, doing: &'static str) -> impl Fn(Box<RusticError>) -> ResticError + '_ {
        move |e| ResticError::Rustic {
            location: self.location.clone(),
            doing,
            message: e.display_log(),
        }
    }

    /// The repository, opened; created first when there is none yet.
    pub fn open(&self) -> Result<Repository<OpenStatus>, ResticError> {
        self.open_telling(None)
    }

    /// [`Restic::open`], telling `progress` of the bytes a backup reads.
    fn open_telling(
        &self,
        progress: Option<Arc<dyn crate::progress::Progress>>,
    ) -> Result<Repository<OpenStatus>, ResticError> {
        let mut key = self.key.lock().unwrap_or_else(|e| e.into_inner());
        let backends = RepositoryBackends::new(self.backend.clone(), None);
        // rustic's local cache ($XDG_CACHE_HOME/rustic, ~/.cache/rustic by default, as
        // restic's): a re-backup reads every parent tree, and without it each is a
        // request to the storage. Unit tests keep their repositories small and uncached.
        let options = if cfg!(test) {
            RepositoryOptions::default().no_cache(true)
        } else {
            RepositoryOptions::default()
        };
        let repo = Repository::new_with_progress(&options, &backends, Told(progress))
            .map_err(self.rustic("opening"))?;
        if let Some(known) = &*key {
            return repo
                .open(&Credentials::Masterkey(known.clone()))
                .map_err(self.rustic("opening"));
        }
        let password = self
            .password
            .read()
            .map_err(|source| ResticError::Password {
                location: self.location.clone(),
                source,
            })?;
        let credentials = Credentials::password(&password);
        let exists = repo
            .config_id()
            .map_err(self.rustic("reading the config"))?
            .is_some();
        let repo = if exists {
            repo.open(&credentials).map_err(self.rustic("opening"))?
        } else {
            tracing::info!(repository = %self.location, "creating the restic repository");
            repo.init(
                &credentials,
                &KeyOptions::default(),
                &ConfigOptions::default(),
            )
            .map_err(self.rustic("creating the repository"))?
        };
        *key = Some(repo.key());
        Ok(repo)
    }

    /// Every snapshot holdfast wrote from this host, oldest first.
    pub fn snapshots(&self) -> Result<Vec<Snapshot>, ResticError> {
        Ok(self.snapshot_files()?.iter().map(Snapshot::of).collect())
    }

    fn snapshot_files(&self) -> Result<Vec<SnapshotFile>, ResticError> {
        let repo = self.open()?;
        let mut snaps: Vec<SnapshotFile> = repo
            .get_all_snapshots()
            .map_err(self.rustic("listing snapshots"))?
            .into_iter()
            .filter(|s| s.hostname == self.host && s.tags.contains(TAG))
            .collect();
        snaps.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(snaps)
    }

    /// Starts the snapshots of one run: `tags` go on every one of them, and `progress`
    /// hears of the bytes read.
    pub fn start_run(
        self: &Arc<Self>,
        tags: Vec<String>,
        progress: Arc<dyn crate::progress::Progress>,
    ) -> Result<RunSnapshots, ResticError> {
        let previous = self.snapshot_files()?;
        let repo = self
            .open_telling(Some(progress))?
            .to_indexed_ids()
            .map_err(self.rustic("reading the index"))?;
        Ok(RunSnapshots::new(self.clone(), repo, previous, tags))
    }

    /// Forgets snapshots by id. Their data stays until [`Restic::prune`].
    pub fn forget(&self, ids: &[String]) -> Result<(), ResticError> {
        if ids.is_empty() {
            return Ok(());
        }
        if self.append_only {
            return Err(ResticError::AppendOnly {
                location: self.location.clone(),
            });
        }
        let repo = self.open()?;
        let ids: Vec<SnapshotId> = ids
            .iter()
            .map(|id| {
                id.parse::<rustic_core::Id>()
                    .map(SnapshotId::from)
                    .map_err(self.rustic("reading a snapshot id"))
            })
            .collect::<Result<_, _>>()?;
        repo.delete_snapshots(&ids)
            .map_err(self.rustic("forgetting snapshots"))
    }

    /// Removes the data no snapshot needs any more. Returns the bytes it freed.
    pub fn prune(&self) -> Result<u64, ResticError> {
        if self.append_only {
            return Err(ResticError::AppendOnly {
                location: self.location.clone(),
            });
        }
        let repo = self.open()?;
        let options = PruneOptions::default();
        let plan = repo
            .prune_plan(&options)
            .map_err(self.rustic("planning the prune"))?;
        // Whole packs removed, and what repacking leaves out of partly used ones.
        let sizes = plan.stats.size_sum();
        let freed = sizes.remove + sizes.repackrm;
        repo.prune(&options, plan).map_err(self.rustic("pruning"))?;
        Ok(freed)
    }

    /// Checks the repository: the structure of the snapshots `ids` (all when empty), and
    /// as much of the data as `read` says. Returns the problems found.
    pub fn check(&self, ids: &[String], read: ReadData) -> Result<Vec<String>, ResticError> {
        let repo = self.open()?;
        let mut options = CheckOptions::default();
        match read {
            ReadData::None => {}
            ReadData::Sample(percent) => {
                options = options
                    .read_data(true)
                    .read_data_subset(ReadSubsetOption::Percentage(percent));
            }
            ReadData::All => options = options.read_data(true),
        }
        let results = if ids.is_empty() {
            repo.check(options)
        } else {
            let snaps = repo
                .get_snapshots(ids)
                .map_err(self.rustic("reading snapshots"))?;
            repo.check_with_trees(options, snaps.iter().map(|s| s.tree).collect())
        }
        .map_err(self.rustic("checking"))?;
        Ok(results
            .0
            .iter()
            .filter(|(level, _)| format!("{level:?}") == "Error")
            .map(|(_, e)| e.to_string())
            .collect())
    }

    /// The content at `path` of snapshot `id`, streamed: a folder as a tar stream (its
    /// entries relative to it), a file as its bytes. A failure while reading comes out of
    /// the stream as an error, never as its end.
    pub fn read(
        self: &Arc<Self>,
        id: &str,
        path: &str,
        folder: bool,
    ) -> Result<Box<dyn Read + Send>, ResticError> {
        let repo = self
            .open()?
            .to_indexed()
            .map_err(self.rustic("reading the index"))?;
        let snap =
            repo.get_snapshot_from_str(id, |_| true)
                .map_err(|_| ResticError::NoSnapshot {
                    location: self.location.clone(),
                    id: id.to_string(),
                })?;
        let (reader, mut writer) = io::pipe().map_err(|e| ResticError::Rustic {
            location: self.location.clone(),
            doing: "reading",
            message: e.to_string(),
        })?;
        let path = PathBuf::from(path.trim_start_matches('/'));
        let worker = std::thread::Builder::new()
            .name("holdfast-restic".into())
            .spawn(move || -> io::Result<()> {
                if folder {
                    tar::write_tar(&repo, snap.tree, &path, &mut writer)
                } else {
                    let node = repo
                        .node_from_path(snap.tree, &path)
                        .map_err(|e| io::Error::other(e.display_log()))?;
                    repo.dump(&node, &mut writer)
                        .map_err(|e| io::Error::other(e.display_log()))?;
                    writer.flush()
                }
            })
            .map_err(|e| ResticError::Rustic {
                location: self.location.clone(),
                doing: "reading",
                message: e.to_string(),
            })?;
        Ok(Box::new(Joined {
            reader,
            worker: Some(worker),
        }))
    }
}

impl Restic {
    /// Forgets the snapshots of the archive `archive`: those its manifest names
    /// (`named`), and every snapshot of this host tagged `archive:<archive>` (a run that
    /// crashed after writing one left it without a manifest). Snapshots already gone are
    /// skipped, so a deletion a crash interrupted can be repeated. Returns how many it
    /// forgot; their data stays until [`Restic::prune`].
    pub fn forget_archive(&self, archive: &str, named: &[String]) -> Result<usize, ResticError> {
        let ids: Vec<String> = self
            .snapshots()?
            .into_iter()
            .filter(|s| named.contains(&s.id) || s.tag("archive") == Some(archive))
            .map(|s| s.id)
            .collect();
        self.forget(&ids)?;
        Ok(ids.len())
    }
}

/// rustic's progress reports, passed on as holdfast's: the bytes a backup reads.
struct Told(Option<Arc<dyn crate::progress::Progress>>);

impl std::fmt::Debug for Told {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Told")
    }
}

impl ProgressBars for Told {
    fn progress(&self, kind: ProgressType, _prefix: &str) -> rustic_core::Progress {
        match (&self.0, kind) {
            (Some(progress), ProgressType::Bytes) => {
                rustic_core::Progress::new(BytesRead(progress.clone()))
            }
            _ => rustic_core::Progress::hidden(),
        }
    }
}

struct BytesRead(Arc<dyn crate::progress::Progress>);

impl std::fmt::Debug for BytesRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BytesRead")
    }
}

impl RusticProgress for BytesRead {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, _len: u64) {}
    fn set_title(&self, _title: &str) {}
    fn inc(&self, n: u64) {
        self.0.bytes(n);
    }
    fn finish(&self) {}
}

/// A pipe's reading end and the thread writing it: the thread's error is the stream's.
struct Joined {
    reader: io::PipeReader,
    worker: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl Read for Joined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        if n == 0
            && !buf.is_empty()
            && let Some(worker) = self.worker.take()
        {
            worker
                .join()
                .map_err(|_| io::Error::other("the reading thread panicked"))??;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::path::Path;

    use super::*;
    use crate::archive::{Excludes, Outlet};

    fn restic(dir: &Path) -> Arc<Restic> {
        let password = dir.join("password");
        std::fs::write(&password, "secret\n").unwrap();
        let objects = Arc::new(LocalObjects::new(dir.join("repo")));
        Arc::new(Restic::new(
            objects,
            HostSecret {
                from_file: Some(password.display().to_string()),
                from_env: None,
            },
            dir.join("repo").display().to_string(),
            "host1",
        ))
    }

    fn silent() -> Arc<dyn crate::progress::Progress> {
        Arc::new(crate::progress::Silent)
    }

    fn never() -> Cancelled {
        Arc::new(|| false)
    }

    #[test]
    fn a_cancelled_run_keeps_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("a"), "x").unwrap();
        let restic = restic(dir.path());
        let run = restic.start_run(tags("r1"), silent()).unwrap();
        let err = run
            .folder(
                &data,
                "volumes/web",
                &["volume:web".into()],
                Excludes::none(),
                Arc::new(|| true),
            )
            .unwrap_err();
        assert!(err.to_string().contains("cancelled"), "{err}");
        assert!(restic.snapshots().unwrap().is_empty());
    }

    fn tags(run: &str) -> Vec<String> {
        vec![TAG.into(), "policy:web".into(), format!("run:{run}")]
    }

    fn tar_entries(mut stream: Box<dyn Read + Send>) -> Vec<(String, u32, Vec<u8>)> {
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        let mut archive = ::tar::Archive::new(&bytes[..]);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().display().to_string();
                let mode = e.header().mode().unwrap();
                let mut content = Vec::new();
                e.read_to_end(&mut content).unwrap();
                (path, mode, content)
            })
            .collect()
    }

    #[test]
    fn a_folder_a_stream_and_a_recipe_make_snapshots_that_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("sub/a.txt"), "hello").unwrap();
        std::fs::write(data.join("skip.tmp"), "left out").unwrap();
        std::fs::set_permissions(
            data.join("sub/a.txt"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        symlink("sub/a.txt", data.join("link")).unwrap();
        let restic = restic(dir.path());

        let run = restic.start_run(tags("r1"), silent()).unwrap();
        let excludes = Excludes::new(&["*.tmp".to_string()]).unwrap();
        let first = run
            .folder(
                &data,
                "volumes/web",
                &["volume:web".into()],
                excludes.clone(),
                never(),
            )
            .unwrap();
        assert_eq!(first.files_read, 2, "{first:?}");
        let mut dump = run.create("dumps/db.sql").unwrap();
        dump.write_all(b"CREATE TABLE t;\n").unwrap();
        dump.commit().unwrap();
        let mut recipe = run.create("recipe/web/compose.yaml").unwrap();
        recipe.write_all(b"services: {}\n").unwrap();
        recipe.commit().unwrap();
        run.finish().unwrap().unwrap();
        let dump = run.taken("dumps/db.sql").unwrap();

        let entries = tar_entries(restic.read(&first.snapshot, "volumes/web", true).unwrap());
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["link", "sub/", "sub/a.txt"]);
        assert_eq!(entries[2].1, 0o640);
        assert_eq!(entries[2].2, b"hello");
        let mut text = String::new();
        restic
            .read(&dump.snapshot, "dumps/db.sql", false)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "CREATE TABLE t;\n");

        // The next run reads nothing unchanged again.
        let run = restic.start_run(tags("r2"), silent()).unwrap();
        let second = run
            .folder(
                &data,
                "volumes/web",
                &["volume:web".into()],
                excludes,
                never(),
            )
            .unwrap();
        assert_eq!(second.files_read, 0, "{second:?}");
        assert_eq!(restic.snapshots().unwrap().len(), 4);
        assert!(restic.check(&[], ReadData::All).unwrap().is_empty());

        restic
            .forget(std::slice::from_ref(&first.snapshot))
            .unwrap();
        restic.prune().unwrap();
        assert_eq!(restic.snapshots().unwrap().len(), 3);
        assert!(restic.check(&[], ReadData::All).unwrap().is_empty());
    }

    #[test]
    fn a_stream_dropped_before_its_commit_leaves_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let restic = restic(dir.path());
        let run = restic.start_run(tags("r1"), silent()).unwrap();
        let mut dump = run.create("dumps/db.sql").unwrap();
        dump.write_all(b"half a dump").unwrap();
        drop(dump);
        assert!(run.taken("dumps/db.sql").is_none());
        assert!(restic.snapshots().unwrap().is_empty());
    }

    #[test]
    fn an_unreadable_file_fails_the_snapshot() {
        if rustix::process::geteuid().is_root() {
            // root reads every file; the Docker tests cover unreadable volumes.
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("secret"), "x").unwrap();
        std::fs::set_permissions(data.join("secret"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
        let restic = restic(dir.path());
        let run = restic.start_run(tags("r1"), silent()).unwrap();
        let err = run
            .folder(
                &data,
                "volumes/web",
                &["volume:web".into()],
                Excludes::none(),
                never(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("secret"), "{err}");
        assert!(restic.snapshots().unwrap().is_empty());
    }
}
