//! Why a backup could not be prepared or did not complete. Each failure keeps what was
//! being done, to what, and the error underneath, so that a caller can tell a failure
//! worth another try (Docker unreachable, a busy storage) from one that will stand (a bad
//! spec, a missing volume, a dump command that fails), and count failures by a fixed
//! reason.

use std::io;

use crate::archive::ArchiveError;
use crate::docker::engine::DockerError;
use crate::repo::storage::StorageError;
use crate::spec::common::Engine as DbEngine;
use crate::state::StateError;

/// Why a BackupPolicy or Archive cannot be turned into a run.
#[derive(Debug, thiserror::Error)]
pub enum BackupRequestError {
    #[error("BackupPolicy `{policy}` is missing or invalid")]
    MissingPolicy { policy: String },
    #[error("{name} is not a backup")]
    NotABackup { name: String },
}

impl BackupRequestError {
    /// Never: the specs have to change first.
    pub fn is_transient(&self) -> bool {
        false
    }

    /// `bad_spec`.
    pub fn reason(&self) -> &'static str {
        "bad_spec"
    }
}

/// A run whose estimated size exceeds its repository's free space.
#[derive(Debug, thiserror::Error)]
#[error(
    "not enough space in the repository {repository}: this run needs about {needed} ({basis}) and {free} is free; nothing was stopped or dumped. Free space there, or exclude data the run need not keep"
)]
pub struct WouldNotFit {
    pub repository: String,
    pub needed: String,
    pub free: String,
    pub basis: String,
}

/// A thread of archive work that did not deliver its result.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("starting a thread: {0}")]
    Start(#[source] io::Error),
    #[error("the thread ended without a result (it panicked)")]
    Panicked,
}

impl WorkerError {
    /// A thread that could not start (the host is short of threads or memory) may start
    /// later; one that panicked would again.
    pub fn is_transient(&self) -> bool {
        matches!(self, WorkerError::Start(_))
    }
}

/// What went wrong while a recipe was written.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Write(#[from] io::Error),
}

/// One failure of a backup run. Those before the archive is complete fail the run; those
/// after it (a restart, a post hook) make it partially failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The state database could not record the run.
    #[error(transparent)]
    State(StateError),
    #[error("resolving targets: {0}")]
    Resolve(#[source] DockerError),
    /// A target of the spec that Docker does not have, or that is ambiguous: the plan's
    /// own words.
    #[error("{0}")]
    Unresolved(String),
    /// The repository could not start, commit or drop the archive.
    #[error(transparent)]
    Storage(StorageError),
    /// A repository the output names cannot be written.
    #[error(transparent)]
    Repository(super::Unavailable),
    /// A copy of the committed archive to another repository failed.
    #[error("copying the archive to repository `{repository}`: {reason}")]
    Copy { repository: String, reason: String },
    /// Refreshing the disaster-recovery bundle (`include.bundle`) in a repository failed;
    /// the archive stands.
    #[error("refreshing the disaster-recovery bundle in repository `{repository}`: {reason}")]
    Bundle { repository: String, reason: String },
    #[error("committing the archive: {0}")]
    Commit(#[source] tokio::task::JoinError),
    /// Writing an artifact, or the exclude patterns.
    #[error(transparent)]
    Archive(ArchiveError),
    /// Writing a snapshot of a restic-format repository.
    #[error(transparent)]
    Restic(#[from] crate::repo::restic::ResticError),
    #[error("{which} hook {command:?} in {container}: {source}")]
    Hook {
        which: &'static str,
        command: Vec<String>,
        container: String,
        #[source]
        source: DockerError,
    },
    #[error("{which} hook {command:?} in {container} failed with exit code {code}: {stderr}")]
    HookFailed {
        which: &'static str,
        command: Vec<String>,
        container: String,
        code: i64,
        /// The end of its error output.
        stderr: String,
    },
    #[error("dump of {container}: reading the password file {path}: {source}")]
    PasswordFile {
        container: String,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("dump of {container}: {source}")]
    PasswordInspect {
        container: String,
        #[source]
        source: DockerError,
    },
    #[error("dump of {container}: the container has no environment variable {variable}")]
    PasswordVariable { container: String, variable: String },
    #[error("dump {artifact}: the writer stopped: {source}")]
    DumpWorker {
        artifact: String,
        #[source]
        source: WorkerError,
    },
    #[error("dump of {container} ({engine}) into {artifact}: {source}")]
    DumpExec {
        container: String,
        engine: DbEngine,
        artifact: String,
        #[source]
        source: DockerError,
    },
    #[error("dump of {container} ({engine}) into {artifact}: {source}")]
    DumpWrite {
        container: String,
        engine: DbEngine,
        artifact: String,
        #[source]
        source: ArchiveError,
    },
    #[error(
        "dump of {container} ({engine}) into {artifact}: the dump command failed with exit code {code}: {stderr}"
    )]
    DumpFailed {
        container: String,
        engine: DbEngine,
        artifact: String,
        code: i64,
        stderr: String,
    },
    #[error("dump of {container} ({engine}) into {artifact}: the dump is empty: {stderr}")]
    DumpEmpty {
        container: String,
        engine: DbEngine,
        artifact: String,
        stderr: String,
    },
    #[error("journalling the stop of {container}: {source}")]
    JournalStop {
        container: String,
        #[source]
        source: StateError,
    },
    #[error("stopping {container}: {source}")]
    Stop {
        container: String,
        #[source]
        source: DockerError,
    },
    #[error("starting {container} again: {source}")]
    Start {
        container: String,
        #[source]
        source: DockerError,
    },
    #[error("{container} after restart: {source}")]
    Health {
        container: String,
        #[source]
        source: DockerError,
    },
    #[error("{container} after restart: it is not running")]
    NotRunning { container: String },
    #[error("{container} after restart: still {status} when waitHealthy ran out")]
    NotHealthy { container: String, status: String },
    #[error("volume {volume}: its folder is not readable from here")]
    VolumeNotReadable { volume: String },
    /// Found before anything was stopped or dumped.
    #[error(transparent)]
    WouldNotFit(#[from] WouldNotFit),
    #[error("bind mount {path}: not readable from here")]
    BindNotReadable { path: String },
    #[error("host folder {path}: not readable from here; holdfast must see it at the same path")]
    FolderNotReadable { path: String },
    /// Files that shrank while they were read: the archive holds them padded with zeros.
    #[error("{artifact}: {count} file(s) shrank while being read and are padded with zeros to their size at open ({}{}); the next run takes them whole", paths.join(", "), more(*count, paths.len()))]
    Shrunk {
        artifact: String,
        count: u64,
        paths: Vec<String>,
    },
    /// A pre hook failed under `consistency.hooks.onFailure: skipTarget`: its target was
    /// left out and the rest backed up.
    #[error(
        "{target} was left out of the backup (consistency.hooks.onFailure: skipTarget): {source}"
    )]
    TargetSkipped {
        /// `stack <name>` or `container <name>`.
        target: String,
        source: Box<RunError>,
    },
    #[error("archiving {what}: the writer stopped: {source}")]
    ArchiveWorker {
        /// The folder, or `container:path`.
        what: String,
        #[source]
        source: WorkerError,
    },
    #[error("volume {volume} vanished during the run")]
    VolumeVanished { volume: String },
    #[error("volume {volume}: {source}")]
    Volume {
        volume: String,
        #[source]
        source: DockerError,
    },
    #[error("volume {volume}: no image on the Docker host to read it with")]
    NoImage { volume: String },
    /// Reading a volume or bind mount through the Docker API.
    #[error(transparent)]
    Docker(DockerError),
    #[error("writing the recipe: {0}")]
    Recipe(#[source] RecipeError),
}

impl RunError {
    /// Whether running again later may succeed without anyone changing anything: Docker
    /// unreachable or failing on its side, a busy state database, a storage that did not
    /// answer. A bad spec, a missing target, a failing hook or dump, a refused entry stand.
    pub fn is_transient(&self) -> bool {
        match self {
            RunError::State(e) | RunError::JournalStop { source: e, .. } => e.is_transient(),
            RunError::Resolve(e)
            | RunError::Hook { source: e, .. }
            | RunError::PasswordInspect { source: e, .. }
            | RunError::DumpExec { source: e, .. }
            | RunError::Stop { source: e, .. }
            | RunError::Start { source: e, .. }
            | RunError::Health { source: e, .. }
            | RunError::Volume { source: e, .. }
            | RunError::Docker(e)
            | RunError::Recipe(RecipeError::Docker(e)) => e.is_transient(),
            RunError::Storage(e) => e.is_transient(),
            RunError::Archive(e) | RunError::DumpWrite { source: e, .. } => archive_is_transient(e),
            RunError::DumpWorker { source, .. } | RunError::ArchiveWorker { source, .. } => {
                source.is_transient()
            }
            RunError::PasswordFile { source, .. }
            | RunError::Recipe(RecipeError::Write(source)) => io_is_transient(source),
            RunError::Repository(_) | RunError::Copy { .. } | RunError::Bundle { .. } => true,
            // A storage that did not answer, or files changing while read: both may pass.
            RunError::Restic(e) => !matches!(
                e,
                crate::repo::restic::ResticError::Password { .. }
                    | crate::repo::restic::ResticError::AppendOnly { .. }
            ),
            RunError::Unresolved(_)
            | RunError::Commit(_)
            | RunError::HookFailed { .. }
            | RunError::PasswordVariable { .. }
            | RunError::DumpFailed { .. }
            | RunError::DumpEmpty { .. }
            | RunError::NotRunning { .. }
            | RunError::NotHealthy { .. }
            | RunError::VolumeNotReadable { .. }
            | RunError::WouldNotFit(_)
            | RunError::BindNotReadable { .. }
            | RunError::FolderNotReadable { .. }
            | RunError::VolumeVanished { .. }
            | RunError::NoImage { .. } => false,
            // The files were being written to: the next run likely reads them whole.
            RunError::Shrunk { .. } => true,
            RunError::TargetSkipped { source, .. } => source.is_transient(),
        }
    }

    /// Why, as a fixed word for metrics labels and logs. A Docker failure gives Docker's
    /// reason ([`DockerError::reason`]); an archive failure one of [`archive_reason`]'s;
    /// the others: `state`, `storage`, `unresolved`, `worker`, `hook_failed`, `password`,
    /// `dump_failed`, `unhealthy`, `not_local`, `not_found`, `no_image`, `io`, `shrunk`.
    pub fn reason(&self) -> &'static str {
        match self {
            RunError::State(_) | RunError::JournalStop { .. } => "state",
            RunError::Resolve(e)
            | RunError::Hook { source: e, .. }
            | RunError::PasswordInspect { source: e, .. }
            | RunError::DumpExec { source: e, .. }
            | RunError::Stop { source: e, .. }
            | RunError::Start { source: e, .. }
            | RunError::Health { source: e, .. }
            | RunError::Volume { source: e, .. }
            | RunError::Docker(e)
            | RunError::Recipe(RecipeError::Docker(e)) => e.reason(),
            RunError::Storage(_)
            | RunError::Repository(_)
            | RunError::Copy { .. }
            | RunError::Bundle { .. }
            | RunError::Restic(_) => "storage",
            RunError::Archive(e) | RunError::DumpWrite { source: e, .. } => archive_reason(e),
            RunError::Unresolved(_) => "unresolved",
            RunError::Commit(_) | RunError::DumpWorker { .. } | RunError::ArchiveWorker { .. } => {
                "worker"
            }
            RunError::HookFailed { .. } => "hook_failed",
            RunError::PasswordFile { .. } | RunError::PasswordVariable { .. } => "password",
            RunError::DumpFailed { .. } | RunError::DumpEmpty { .. } => "dump_failed",
            RunError::NotRunning { .. } | RunError::NotHealthy { .. } => "unhealthy",
            RunError::VolumeNotReadable { .. }
            | RunError::BindNotReadable { .. }
            | RunError::FolderNotReadable { .. } => "not_local",
            RunError::VolumeVanished { .. } => "not_found",
            RunError::WouldNotFit(_) => "no_space",
            RunError::NoImage { .. } => "no_image",
            RunError::Recipe(RecipeError::Write(_)) => "io",
            RunError::Shrunk { .. } => "shrunk",
            // Why its hook failed.
            RunError::TargetSkipped { source, .. } => source.reason(),
        }
    }
}

pub(crate) use crate::fsutil::io_is_transient;

/// ", and N more" when a list was cut short.
fn more(count: u64, named: usize) -> String {
    match count.saturating_sub(named as u64) {
        0 => String::new(),
        n => format!(", and {n} more"),
    }
}

/// Whether an archive error may pass: only reading or writing files, for the reasons of
/// [`io_is_transient`]. A refused or malformed entry, a checksum that does not match, a
/// bad pattern or level stand.
pub(crate) fn archive_is_transient(error: &ArchiveError) -> bool {
    match error {
        ArchiveError::Io { source, .. } | ArchiveError::Stream { source, .. } => {
            io_is_transient(source)
        }
        ArchiveError::NoSpace { .. }
        | ArchiveError::Prefix { .. }
        | ArchiveError::Unsafe { .. }
        | ArchiveError::Refused { .. }
        | ArchiveError::Malformed { .. }
        | ArchiveError::Pattern { .. }
        | ArchiveError::Level { .. }
        | ArchiveError::Name { .. }
        | ArchiveError::Mismatch { .. }
        | ArchiveError::Corrupt { .. }
        | ArchiveError::Unrestorable { .. } => false,
    }
}

/// An archive error as a fixed word: `io`, `no_space`, `stream`, `refused_entry`,
/// `malformed`, `bad_spec`, `checksum_mismatch`, `corrupt` or `unrestorable`.
pub(crate) fn archive_reason(error: &ArchiveError) -> &'static str {
    match error {
        ArchiveError::Io { .. } => "io",
        ArchiveError::NoSpace { .. } => "no_space",
        ArchiveError::Stream { .. } => "stream",
        ArchiveError::Prefix { .. }
        | ArchiveError::Unsafe { .. }
        | ArchiveError::Refused { .. } => "refused_entry",
        ArchiveError::Malformed { .. } => "malformed",
        ArchiveError::Pattern { .. } | ArchiveError::Level { .. } | ArchiveError::Name { .. } => {
            "bad_spec"
        }
        ArchiveError::Mismatch { .. } => "checksum_mismatch",
        ArchiveError::Corrupt { .. } => "corrupt",
        ArchiveError::Unrestorable { .. } => "unrestorable",
    }
}

/// Why [`super::Executor::replay_journal`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl ExecutorError {
    pub fn is_transient(&self) -> bool {
        match self {
            ExecutorError::Docker(e) => e.is_transient(),
            ExecutorError::State(e) => e.is_transient(),
        }
    }

    /// Docker's reason, or `state`.
    pub fn reason(&self) -> &'static str {
        match self {
            ExecutorError::Docker(e) => e.reason(),
            ExecutorError::State(_) => "state",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker(status_code: u16) -> DockerError {
        DockerError::On {
            operation: "stopping container",
            target: "3fa2".into(),
            source: Box::new(bollard::errors::Error::DockerResponseServerError {
                status_code,
                message: "boom".into(),
            }),
        }
    }

    #[test]
    fn docker_failures_are_classified_as_docker_says_and_keep_their_message() {
        let e = RunError::Stop {
            container: "nextcloud-db-1".into(),
            source: docker(503),
        };
        assert_eq!(
            e.to_string(),
            "stopping nextcloud-db-1: stopping container 3fa2: Docker responded with status code 503: boom"
        );
        assert!(e.is_transient());
        assert_eq!(e.reason(), "engine_error");
        assert!(std::error::Error::source(&e).is_some());

        let e = RunError::Volume {
            volume: "app_data".into(),
            source: docker(404),
        };
        assert!(!e.is_transient());
        assert_eq!(e.reason(), "not_found");
    }

    #[test]
    fn bad_specs_missing_targets_and_failing_commands_are_final() {
        let final_ones = [
            (
                RunError::Unresolved("volume `nope` not found".into()),
                "unresolved",
            ),
            (
                RunError::VolumeVanished {
                    volume: "app_data".into(),
                },
                "not_found",
            ),
            (
                RunError::HookFailed {
                    which: "pre",
                    command: vec!["false".into()],
                    container: "web".into(),
                    code: 1,
                    stderr: "nope".into(),
                },
                "hook_failed",
            ),
            (
                RunError::DumpFailed {
                    container: "db".into(),
                    engine: DbEngine::Postgres,
                    artifact: "dumps/db.sql.zst".into(),
                    code: 2,
                    stderr: "password authentication failed".into(),
                },
                "dump_failed",
            ),
            (
                RunError::Archive(ArchiveError::Unsafe {
                    entry: "../x".into(),
                    reason: "outside",
                }),
                "refused_entry",
            ),
            (
                RunError::Archive(ArchiveError::Pattern {
                    pattern: "[".into(),
                    reason: "unclosed".into(),
                }),
                "bad_spec",
            ),
        ];
        for (e, reason) in final_ones {
            assert!(!e.is_transient(), "{e}");
            assert_eq!(e.reason(), reason, "{e}");
        }
        let e = RunError::DumpFailed {
            container: "db".into(),
            engine: DbEngine::Postgres,
            artifact: "dumps/db.sql.zst".into(),
            code: 2,
            stderr: "no".into(),
        };
        assert_eq!(
            e.to_string(),
            "dump of db (postgres) into dumps/db.sql.zst: the dump command failed with exit code 2: no"
        );
        let e = BackupRequestError::MissingPolicy {
            policy: "nightly".into(),
        };
        assert_eq!(
            e.to_string(),
            "BackupPolicy `nightly` is missing or invalid"
        );
        assert!(!e.is_transient());
        assert_eq!(e.reason(), "bad_spec");
    }

    #[test]
    fn busy_databases_and_storages_may_pass() {
        let busy = StateError::Query {
            doing: "journalling a stop",
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                None,
            ),
        };
        let e = RunError::JournalStop {
            container: "web".into(),
            source: busy,
        };
        assert!(e.is_transient(), "{e}");
        assert_eq!(e.reason(), "state");
        let full = StateError::Query {
            doing: "journalling a stop",
            source: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            ),
        };
        assert!(!RunError::State(full).is_transient());

        let e = RunError::Archive(ArchiveError::Io {
            action: "writing",
            path: "/repo/x".into(),
            source: io::Error::from(io::ErrorKind::TimedOut),
        });
        assert!(e.is_transient());
        assert_eq!(e.reason(), "io");
        // A full repository is not tried again: it stays full until someone makes room.
        let e = RunError::Archive(ArchiveError::NoSpace {
            action: "writing",
            path: "/repo/x".into(),
            mount: "/repo".into(),
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        });
        assert!(!e.is_transient());
        assert_eq!(e.reason(), "no_space");
        assert!(
            e.to_string()
                .contains("no space left on the file system at /repo"),
            "{e}"
        );
        let e = RunError::Recipe(RecipeError::Write(io::Error::from(
            io::ErrorKind::PermissionDenied,
        )));
        assert!(!e.is_transient());
        assert_eq!(e.to_string(), "writing the recipe: permission denied");
    }
}
