//! Restoring single files and folders of an archived volume or host folder (or all of
//! it) into a folder on this machine: the first thing wanted after a backup, and the one
//! restore that needs neither
//! Docker nor the state folder. It writes only into the folder it is given and takes no
//! lock, so it runs beside a daemon and beside backups; an archive being deleted meanwhile
//! is read to its end from the files already open.

use std::io;
use std::path::{Path, PathBuf};

use super::{RestoreError, Source, resolve};
use crate::archive::{ExtractStats, PartError};
use crate::progress::Progress;
use crate::repo::Repository;

/// Which archived source the paths are in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// A volume, by its archived name.
    Volume(String),
    /// A host folder (of `targets.paths`, or a bind mount of a compose project that was
    /// down), by its path on the host it was archived from.
    Folder(String),
}

impl Part {
    /// `volume app_data`, `host folder /srv/compose`.
    pub fn describe(&self) -> String {
        match self {
            Part::Volume(v) => format!("volume {v}"),
            Part::Folder(f) => format!("host folder {f}"),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Part::Volume(_) => "volume",
            Part::Folder(_) => "path",
        }
    }

    fn source(&self) -> &str {
        match self {
            Part::Volume(s) | Part::Folder(s) => s,
        }
    }
}

/// Which paths of which volume or host folder, and where to.
#[derive(Clone, Debug)]
pub struct PathRestore {
    pub source: Source,
    pub part: Part,
    /// Files or folders inside it, as `holdfast ls` shows them; none: all of it.
    pub paths: Vec<String>,
    /// Each path comes back at the same place below this folder.
    pub to: PathBuf,
    /// Restore into a folder that is not empty, replacing files of the same name.
    pub overwrite: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathsRestored {
    pub archive: String,
    /// The artifact read, e.g. `volumes/app_data.tar.zst`.
    pub artifact: String,
    /// Entries written (with the folders on the way) and bytes of file content.
    pub stats: ExtractStats,
}

#[derive(Debug, thiserror::Error)]
pub enum PathRestoreError {
    #[error(transparent)]
    Restore(Box<RestoreError>),
    #[error(
        "{} is not empty: restore into a new or empty folder, or add --overwrite to replace \
         the files of the same name there",
        dir.display()
    )]
    NotEmpty { dir: PathBuf },
    #[error("reading the folder {}: {source}", dir.display())]
    Target { dir: PathBuf, source: io::Error },
    #[error("archive {archive} has no host folder `{folder}`; it has: {has}")]
    NoFolder {
        archive: String,
        folder: String,
        has: String,
    },
    #[error("{archive}: fetching the artifact from {repository}")]
    NotLocal { archive: String, repository: String },
    /// Extraction failed; `cleared` says whether what it wrote was removed again.
    #[error("restoring from {archive}: {source}; {}", left(.cleared))]
    Extract {
        archive: String,
        source: PartError,
        cleared: bool,
    },
}

impl From<RestoreError> for PathRestoreError {
    fn from(e: RestoreError) -> Self {
        PathRestoreError::Restore(Box::new(e))
    }
}

fn left(cleared: &bool) -> &'static str {
    if *cleared {
        "nothing was left in the folder"
    } else {
        "what was written before the error stays in the folder"
    }
}

/// Restores the paths; on error, a folder that was new or empty before is left as it was.
pub fn restore_paths(
    repo: &Repository,
    request: &PathRestore,
    progress: &dyn Progress,
) -> Result<PathsRestored, PathRestoreError> {
    let entry = resolve(repo, &request.source)?;
    let manifest = crate::repo::verify::manifest(repo, &entry.group, &entry.id)
        .map_err(RestoreError::Manifest)?;
    let part = &request.part;
    let of_kind = || manifest.artifacts.iter().filter(|a| a.kind == part.kind());
    let Some(artifact) = of_kind().find(|a| a.source.as_deref() == Some(part.source())) else {
        let has: Vec<String> = of_kind().filter_map(|a| a.source.clone()).collect();
        let has = if has.is_empty() {
            "nothing".into()
        } else {
            has.join(", ")
        };
        let archive = entry.id.clone();
        return Err(match part {
            Part::Volume(volume) => RestoreError::NoVolume {
                archive,
                volume: volume.clone(),
                has,
            }
            .into(),
            Part::Folder(folder) => PathRestoreError::NoFolder {
                archive,
                folder: folder.clone(),
                has,
            },
        });
    };
    // A remote or encrypted artifact is fetched (decrypted, checked) into a temporary
    // folder first.
    let local = crate::repo::copy::LocalArtifacts::of(
        repo,
        &entry.group,
        &entry.id,
        std::slice::from_ref(artifact),
    )
    .map_err(|e| PathRestoreError::NotLocal {
        archive: entry.id.clone(),
        repository: format!("{}: {e}", repo.describe()),
    })?;
    let root = local.dir().to_path_buf();
    let dir = &request.to;
    let before = state_of(dir)?;
    if before == Before::Holding && !request.overwrite {
        return Err(PathRestoreError::NotEmpty { dir: dir.clone() });
    }
    let info = local.info(artifact);
    let extracted = crate::archive::extract_paths(
        &root,
        &info,
        &request.paths,
        dir,
        request.overwrite,
        progress,
    )
    .and_then(|stats| {
        crate::archive::sync_tree(dir)?;
        Ok(stats)
    });
    match extracted {
        Ok(stats) => Ok(PathsRestored {
            archive: entry.id.clone(),
            artifact: artifact.path.clone(),
            stats,
        }),
        Err(source) => Err(PathRestoreError::Extract {
            archive: entry.id.clone(),
            source,
            cleared: clear(dir, before),
        }),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Before {
    Missing,
    Empty,
    Holding,
}

fn state_of(dir: &Path) -> Result<Before, PathRestoreError> {
    let fail = |source| PathRestoreError::Target {
        dir: dir.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Before::Missing),
        Err(e) => Err(fail(e)),
        Ok(m) if !m.is_dir() => Err(fail(io::Error::new(
            io::ErrorKind::NotADirectory,
            "it is not a folder (a symlink is not followed)",
        ))),
        Ok(_) => {
            let mut entries = std::fs::read_dir(dir).map_err(fail)?;
            Ok(match entries.next() {
                None => Before::Empty,
                Some(_) => Before::Holding,
            })
        }
    }
}

/// Removes what a failed restore wrote into a folder that was new or empty before, so
/// that running it again finds the folder as it was; true when that was done.
/// `remove_dir_all` never follows a symlink, so nothing outside the folder goes.
fn clear(dir: &Path, before: Before) -> bool {
    match before {
        Before::Holding => false,
        Before::Missing => match std::fs::remove_dir_all(dir) {
            Ok(()) => true,
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        },
        Before::Empty => {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return false;
            };
            let mut cleared = true;
            for entry in entries {
                let removed = entry.and_then(|e| {
                    let path = e.path();
                    if e.file_type()?.is_dir() {
                        std::fs::remove_dir_all(path)
                    } else {
                        std::fs::remove_file(path)
                    }
                });
                cleared &= removed.is_ok();
            }
            cleared
        }
    }
}
