//! Why a restore could not be prepared or did not complete, kept with what was being done,
//! to what, and the error underneath, so that a caller can tell a failure worth another
//! try from one that will stand, and count failures by a fixed reason.

use std::io;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::replay::ReplayError;
use crate::archive::ArchiveError;
use crate::docker::engine::DockerError;
use crate::executor::error::{archive_is_transient, archive_reason, io_is_transient};
use crate::repo::catalog::Health;
use crate::repo::storage::StorageError;
use crate::repo::verify::VerifyError;
use crate::state::StateError;

/// Why a `Restore` spec, or a time given for one, cannot be turned into a restore.
#[derive(Debug, thiserror::Error)]
pub enum RestoreRequestError {
    #[error("from: name an archive or a policy")]
    NoSource,
    #[error("at: {text:?} is neither `latest` nor an RFC 3339 time: {source}")]
    At {
        text: String,
        #[source]
        source: chrono::ParseError,
    },
}

impl RestoreRequestError {
    /// Never: the spec has to change first.
    pub fn is_transient(&self) -> bool {
        false
    }

    /// `bad_spec`.
    pub fn reason(&self) -> &'static str {
        "bad_spec"
    }
}

/// One failure of a restore. Every one of them fails the restore.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The repository could not be read.
    #[error(transparent)]
    Storage(StorageError),
    /// A remote or encrypted archive could not be brought to this machine.
    #[error("fetching the archive: {0}")]
    Fetch(#[source] crate::repo::copy::CopyError),
    #[error("no archive `{id}` in {repository}")]
    NoArchive { id: String, repository: String },
    #[error("archive `{id}` is {health:?}: {problems}")]
    Unusable {
        id: String,
        health: Health,
        problems: String,
    },
    /// No archive at all under the name, which may be misspelt.
    #[error("no archive of `{name}` in {repository}{}", .hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    NoArchiveOf {
        name: String,
        repository: String,
        hint: Option<String>,
    },
    #[error("`{name}` has no good archive{}", at_or_before(.at))]
    NoGoodArchive {
        name: String,
        at: Option<DateTime<Utc>>,
    },
    /// The archive's manifest could not be read.
    #[error(transparent)]
    Manifest(VerifyError),
    #[error("archive {archive} has no stack `{stack}`; it has: {has}")]
    NoStack {
        archive: String,
        stack: String,
        has: String,
    },
    #[error("archive {archive} has no volume `{volume}`; it has: {has}")]
    NoVolume {
        archive: String,
        volume: String,
        has: String,
    },
    /// Asking Docker about volumes and the containers that use them.
    #[error(transparent)]
    Docker(DockerError),
    #[error(
        "volume `{target}` exists: NewVolumes never writes into an existing volume (map `{volume}` to another name, or restore InPlace)"
    )]
    TargetExists { target: String, volume: String },
    #[error(
        "volume `{target}` was created while this restore waited for other runs: NewVolumes never writes into an existing volume"
    )]
    CreatedWhileWaiting { target: String },
    /// The worker that checked the artifacts' checksums ended without a result.
    #[error("checking the artifacts' checksums: {0}")]
    ChecksumWorker(tokio::task::JoinError),
    /// The worker that removed what interrupted restores left ended without a result.
    #[error("removing what interrupted restores left beside volumes: {0}")]
    CleanupWorker(tokio::task::JoinError),
    #[error(
        "recipe folder {} is not empty: the recipe is only written into an empty or new folder",
        dir.display()
    )]
    RecipeFolderNotEmpty { dir: PathBuf },
    #[error("recipe folder {}: {source}", dir.display())]
    RecipeFolder {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Checking a folder artifact's listing.
    #[error(transparent)]
    Archive(ArchiveError),
    #[error("{doing} {}: {source}", path.display())]
    Io {
        doing: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{artifact}: sha256 is {actual}, the manifest says {expected}: the archive is corrupt; nothing was restored"
    )]
    Checksum {
        artifact: String,
        actual: String,
        expected: String,
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
    #[error(
        "volume `{volume}` is in use by running container(s) {containers}: a restore never writes a volume in use"
    )]
    InUse { volume: String, containers: String },
    #[error(
        "volume `{volume}` keeps its data in {mountpoint}, which is not a folder on this host: restoring needs the Docker host's volume folders"
    )]
    NotLocal { volume: String, mountpoint: String },
    #[error("restoring volume `{volume}`: {source}")]
    Volume {
        volume: String,
        #[source]
        source: SwapError,
    },
    #[error(
        "dumps are to be replayed (--replay-dumps or --dumps-only; replayDumps or dumpsOnly in a spec), but what is chosen of archive {archive} holds none: dumps are chosen by stack (--stack, targets.stacks), never by volume; the archive has dumps of: {stacks}"
    )]
    NothingToReplay { archive: String, stacks: String },
    #[error(
        "a recipe folder is asked for (--recipe-to, recipeTo), but what is chosen of archive {archive} holds no recipe: the recipe is chosen by stack (--stack, targets.stacks), never by volume; the archive has the recipe of: {stacks}"
    )]
    NoRecipe { archive: String, stacks: String },
    #[error("replaying {artifact}: {source}")]
    Replay {
        artifact: String,
        #[source]
        source: ReplayError,
    },
    #[error("restoring bind mount {artifact}: {source}")]
    Bind {
        artifact: String,
        #[source]
        source: ArchiveError,
    },
}

fn at_or_before(at: &Option<DateTime<Utc>>) -> String {
    at.map(|at| format!(" at or before {at}"))
        .unwrap_or_default()
}

/// Why a volume's content could not be swapped for the archived one. The volume is as it
/// was.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error(transparent)]
    Extract(ArchiveError),
    #[error("swapping {} into place: {source}", staging.display())]
    Exchange {
        staging: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Worker(tokio::task::JoinError),
    /// The run was cancelled (holdfast is stopping) before the swap: nothing changed.
    #[error("the restore was cancelled before the volume was swapped; it holds what it held")]
    Cancelled,
}

impl RestoreError {
    /// Whether restoring again later may succeed without anyone changing anything: Docker
    /// unreachable or failing on its side, a busy state database, a storage or disk that
    /// did not answer. A missing archive, stack or volume, a corrupt artifact, a refused
    /// entry, a volume in use stand.
    pub fn is_transient(&self) -> bool {
        match self {
            RestoreError::Storage(e) => e.is_transient(),
            RestoreError::Fetch(e) => e.is_transient(),
            RestoreError::Manifest(VerifyError::Storage(e)) => e.is_transient(),
            RestoreError::Docker(e) | RestoreError::Stop { source: e, .. } => e.is_transient(),
            RestoreError::JournalStop { source, .. } => source.is_transient(),
            RestoreError::Archive(e)
            | RestoreError::Bind { source: e, .. }
            | RestoreError::Volume {
                source: SwapError::Extract(e),
                ..
            } => archive_is_transient(e),
            RestoreError::RecipeFolder { source, .. }
            | RestoreError::Io { source, .. }
            | RestoreError::Volume {
                source: SwapError::Exchange { source, .. },
                ..
            } => io_is_transient(source),
            RestoreError::Replay { source, .. } => source.is_transient(),
            RestoreError::Manifest(
                VerifyError::NoManifest { .. }
                | VerifyError::Parse { .. }
                | VerifyError::NotLocal { .. },
            )
            | RestoreError::NoArchive { .. }
            | RestoreError::Unusable { .. }
            | RestoreError::NoGoodArchive { .. }
            | RestoreError::NoArchiveOf { .. }
            | RestoreError::NoStack { .. }
            | RestoreError::NoVolume { .. }
            | RestoreError::NothingToReplay { .. }
            | RestoreError::NoRecipe { .. }
            | RestoreError::TargetExists { .. }
            | RestoreError::CreatedWhileWaiting { .. }
            | RestoreError::ChecksumWorker(_)
            | RestoreError::CleanupWorker(_)
            | RestoreError::RecipeFolderNotEmpty { .. }
            | RestoreError::Checksum { .. }
            | RestoreError::InUse { .. }
            | RestoreError::NotLocal { .. }
            | RestoreError::Volume {
                source: SwapError::Worker(_) | SwapError::Cancelled,
                ..
            } => false,
        }
    }

    /// Why, as a fixed word for metrics labels and logs. A Docker failure gives Docker's
    /// reason, an archive failure the archive's, a replay the replay's; the others:
    /// `storage`, `not_found`, `archive_unusable`, `corrupt`, `not_local`, `conflict`,
    /// `io`, `checksum_mismatch`, `state`, `in_use`, `worker`.
    pub fn reason(&self) -> &'static str {
        match self {
            RestoreError::Storage(_)
            | RestoreError::Fetch(_)
            | RestoreError::Manifest(VerifyError::Storage(_)) => "storage",
            RestoreError::NoArchive { .. }
            | RestoreError::NoGoodArchive { .. }
            | RestoreError::NoArchiveOf { .. }
            | RestoreError::Manifest(VerifyError::NoManifest { .. })
            | RestoreError::NoStack { .. }
            | RestoreError::NoVolume { .. }
            | RestoreError::NothingToReplay { .. }
            | RestoreError::NoRecipe { .. } => "not_found",
            RestoreError::Unusable { .. } => "archive_unusable",
            RestoreError::Manifest(VerifyError::Parse { .. }) => "corrupt",
            RestoreError::Manifest(VerifyError::NotLocal { .. })
            | RestoreError::NotLocal { .. } => "not_local",
            RestoreError::Docker(e) | RestoreError::Stop { source: e, .. } => e.reason(),
            RestoreError::TargetExists { .. }
            | RestoreError::CreatedWhileWaiting { .. }
            | RestoreError::RecipeFolderNotEmpty { .. } => "conflict",
            RestoreError::RecipeFolder { .. }
            | RestoreError::Io { .. }
            | RestoreError::Volume {
                source: SwapError::Exchange { .. },
                ..
            } => "io",
            RestoreError::Archive(e)
            | RestoreError::Bind { source: e, .. }
            | RestoreError::Volume {
                source: SwapError::Extract(e),
                ..
            } => archive_reason(e),
            RestoreError::Checksum { .. } => "checksum_mismatch",
            RestoreError::JournalStop { .. } => "state",
            RestoreError::InUse { .. } => "in_use",
            RestoreError::Volume {
                source: SwapError::Worker(_),
                ..
            }
            | RestoreError::ChecksumWorker(_)
            | RestoreError::CleanupWorker(_) => "worker",
            RestoreError::Volume {
                source: SwapError::Cancelled,
                ..
            } => "cancelled",
            RestoreError::Replay { source, .. } => source.reason(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_or_missing_archives_are_final_and_keep_their_message() {
        let e = RestoreError::Checksum {
            artifact: "volumes/app_data.tar.zst".into(),
            actual: "aa".into(),
            expected: "bb".into(),
        };
        assert_eq!(
            e.to_string(),
            "volumes/app_data.tar.zst: sha256 is aa, the manifest says bb: the archive is corrupt; nothing was restored"
        );
        assert!(!e.is_transient());
        assert_eq!(e.reason(), "checksum_mismatch");

        let e = RestoreError::NoArchiveOf {
            name: "nighly".into(),
            repository: "/srv/backups/host-a".into(),
            hint: Some("did you mean `nightly`?".into()),
        };
        assert_eq!(
            e.to_string(),
            "no archive of `nighly` in /srv/backups/host-a (did you mean `nightly`?)"
        );
        assert_eq!(e.reason(), "not_found");
        let e = RestoreError::NoGoodArchive {
            name: "nightly".into(),
            at: None,
        };
        assert_eq!(e.to_string(), "`nightly` has no good archive");
        assert_eq!(e.reason(), "not_found");
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let e = RestoreError::NoGoodArchive {
            name: "nightly".into(),
            at: Some(at),
        };
        assert_eq!(
            e.to_string(),
            "`nightly` has no good archive at or before 2026-01-02 03:04:05 UTC"
        );

        let e = RestoreError::Volume {
            volume: "app_data".into(),
            source: SwapError::Extract(ArchiveError::Refused {
                origin: "tar",
                entry: "null".into(),
                reason: "a device".into(),
            }),
        };
        assert_eq!(
            e.to_string(),
            "restoring volume `app_data`: refusing tar entry \"null\": a device"
        );
        assert!(!e.is_transient());
        assert_eq!(e.reason(), "refused_entry");

        let e = RestoreError::TargetExists {
            target: "app_data".into(),
            volume: "app_data".into(),
        };
        assert!(!e.is_transient());
        assert_eq!(e.reason(), "conflict");
    }

    #[test]
    fn docker_and_storage_hiccups_may_pass() {
        let e = RestoreError::Stop {
            container: "nextcloud-db-1".into(),
            source: DockerError::Api {
                operation: "stopping container",
                source: Box::new(bollard::errors::Error::RequestTimeoutError),
            },
        };
        assert!(e.is_transient());
        assert_eq!(e.reason(), "timeout");

        let e = RestoreError::Replay {
            artifact: "dumps/db.sql.zst".into(),
            source: ReplayError::Docker {
                artifact: "dumps/db.sql.zst".into(),
                container: "db".into(),
                source: Box::new(DockerError::Api {
                    operation: "creating exec in",
                    source: Box::new(bollard::errors::Error::SocketNotFoundError("/x".into())),
                }),
            },
        };
        assert!(e.is_transient());
        assert_eq!(e.reason(), "unreachable");

        let e = RestoreError::Replay {
            artifact: "dumps/db.sql.zst".into(),
            source: ReplayError::Failed {
                artifact: "dumps/db.sql.zst".into(),
                container: "db".into(),
                step: "psql",
                code: 2,
                stderr: "syntax error".into(),
            },
        };
        assert!(!e.is_transient());
        assert_eq!(e.reason(), "command_failed");

        let e = RestoreError::Io {
            doing: "reading",
            path: "/repo/a".into(),
            source: io::Error::from(io::ErrorKind::Interrupted),
        };
        assert!(e.is_transient());
        assert_eq!(e.reason(), "io");
    }

    #[test]
    fn a_bad_time_is_a_bad_spec() {
        let e = super::super::parse_at("yesterday").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("at: \"yesterday\" is neither `latest` nor an RFC 3339 time: "),
            "{e}"
        );
        assert!(!e.is_transient());
        assert_eq!(e.reason(), "bad_spec");
        assert_eq!(super::super::parse_at("latest").unwrap(), None);
    }
}
