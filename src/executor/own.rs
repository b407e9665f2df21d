//! holdfast's own folders, which no backup reads: the repository, the state folder and the
//! specs folder.
//!
//! A bind mount of `/srv` with the repository at `/srv/backups` would otherwise carry
//! every earlier archive into each new one, and the archive being written into itself.
//! The plan compares real paths (symlinks resolved), so `plan` can say what it leaves
//! out and from which source; the walk compares device and inode, so the same folder
//! reached through another name or mount is left out too.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One of holdfast's own folders, as found on this machine now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnFolder {
    /// What it is, for messages: `repository`, `state folder`, `specs folder`.
    pub what: &'static str,
    /// The path as configured, made absolute.
    pub path: PathBuf,
    /// The path with every symlink resolved, when it exists.
    pub real: Option<PathBuf>,
    /// Its device and inode, when it exists.
    pub id: Option<(u64, u64)>,
}

impl OwnFolder {
    /// Looks `path` up; a folder that does not exist yet is still compared by its path.
    pub fn find(what: &'static str, path: &Path) -> OwnFolder {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        OwnFolder {
            what,
            real: std::fs::canonicalize(&path).ok(),
            id: std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino())),
            path,
        }
    }
}

/// Where an own folder lies relative to a source being archived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    Apart,
    /// Inside the source, at this path relative to it.
    Inside(String),
    /// The source is the own folder or lies inside it.
    Covers,
}

/// Where `own` lies relative to the source folder `source` (given as Docker reports
/// it, and with symlinks resolved when it is reachable here).
pub fn place(source: &Path, source_real: Option<&Path>, own: &OwnFolder) -> Place {
    let pairs = [
        (source_real.unwrap_or(source), own.real.as_deref()),
        (source, Some(own.path.as_path())),
    ];
    for (source, own) in pairs {
        let Some(own) = own else { continue };
        if source.starts_with(own) {
            return Place::Covers;
        }
        if let Ok(rel) = own.strip_prefix(source) {
            return Place::Inside(rel.to_string_lossy().into_owned());
        }
    }
    Place::Apart
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(path: &str, real: Option<&str>) -> OwnFolder {
        OwnFolder {
            what: "repository",
            path: path.into(),
            real: real.map(PathBuf::from),
            id: None,
        }
    }

    #[test]
    fn own_folders_inside_sources_are_found_by_real_and_given_paths() {
        let repo = own("/srv/host/repo", Some("/srv/host/repo"));
        let at = |s: &str, real: Option<&str>| place(Path::new(s), real.map(Path::new), &repo);
        assert_eq!(at("/srv/host", None), Place::Inside("repo".into()));
        assert_eq!(at("/srv/host/", None), Place::Inside("repo".into()));
        assert_eq!(at("/srv", None), Place::Inside("host/repo".into()));
        assert_eq!(at("/srv/host/repo", None), Place::Covers);
        assert_eq!(at("/srv/host/repo/h/g", None), Place::Covers);
        assert_eq!(at("/srv/hos", None), Place::Apart);
        assert_eq!(at("/srv/host/repository", None), Place::Apart);
        // A symlink to the folder holding the repository.
        assert_eq!(
            at("/data/link", Some("/srv/host")),
            Place::Inside("repo".into())
        );
        // The repository given through a symlink: its real path counts.
        let linked = own("/backups", Some("/var/lib/docker/volumes/v/_data/repo"));
        assert_eq!(
            place(Path::new("/var/lib/docker/volumes/v/_data"), None, &linked),
            Place::Inside("repo".into())
        );
        // Not created yet: the given path still counts.
        let fresh = own("/srv/host/new", None);
        assert_eq!(
            place(Path::new("/srv/host"), None, &fresh),
            Place::Inside("new".into())
        );
    }
}
