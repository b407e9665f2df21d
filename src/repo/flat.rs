//! Adopting the flat layout of earlier releases, `<repository>/<group>/<archive id>/`,
//! into this host's folder, `<repository>/<host>/<group>/<archive id>/`.
//!
//! It runs when a writer opens the repository (under the repository lock). A group folder
//! is recognised by what it holds, never by its name: an archive folder of that group
//! (`<group>-<time>`) with a manifest. Host folders hold group folders, whose names carry
//! no time stamp, so they are never taken for one.
//!
//! Each group moves with one `rename`; where this host already has a folder of that name,
//! each archive moves with one `rename` instead. A crash half-way therefore leaves every
//! archive whole in its old place or its new one, and the next writer finishes the move.

use std::fs;
use std::io;
use std::path::Path;

use tracing::{info, warn};

use super::layout::{self, MANIFEST};
use super::storage::StorageError;

/// Moves every flat-layout group found directly in `top` under `host_root`. Returns the
/// groups moved. Repeating it after it finished (or crashed) is safe.
pub fn adopt(top: &Path, host_root: &Path) -> Result<Vec<String>, StorageError> {
    let mut moved = Vec::new();
    for name in sub_folders(top, "reading the repository")? {
        let folder = top.join(&name);
        if name.starts_with('.') || folder == host_root || !is_flat_group(&folder, &name)? {
            continue;
        }
        fs::create_dir_all(host_root).map_err(io_err("creating the host folder", host_root))?;
        let target = host_root.join(&name);
        if fs::symlink_metadata(&target).is_err() {
            rename(&folder, &target)?;
        } else {
            merge(&folder, &target)?;
        }
        sync(top)?;
        sync(host_root)?;
        info!(
            group = %name,
            from = %folder.display(),
            to = %target.display(),
            "moved the archives of the flat repository layout under this host"
        );
        moved.push(name);
    }
    Ok(moved)
}

/// Whether `folder` is a group of the flat layout: it holds an archive of group `name`
/// with a manifest.
pub fn is_flat_group(folder: &Path, name: &str) -> Result<bool, StorageError> {
    for child in sub_folders(folder, "reading repository folder")? {
        if layout::group_of(&child) == Some(name)
            && fs::symlink_metadata(folder.join(&child).join(MANIFEST)).is_ok()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Moves the archives of `from` into the existing group folder `to`, one rename each, and
/// removes `from` once it is empty. An archive id present in both is left where it is.
fn merge(from: &Path, to: &Path) -> Result<(), StorageError> {
    for child in sub_folders(from, "reading repository folder")? {
        let target = to.join(&child);
        if fs::symlink_metadata(&target).is_ok() {
            warn!(
                archive = %child,
                left = %from.join(&child).display(),
                "an archive of this id is already in this host's folder; the old one is left where it is"
            );
            continue;
        }
        rename(&from.join(&child), &target)?;
    }
    sync(to)?;
    match fs::remove_dir(from) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => Ok(()),
        Err(e) => Err(io_err("removing the emptied group folder", from)(e)),
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), StorageError> {
    fs::rename(from, to).map_err(io_err("moving into the host folder", from))
}

fn sync(dir: &Path) -> Result<(), StorageError> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err("syncing repository folder", dir))
}

/// Sorted names of the sub-folders of `dir`; a missing `dir` has none.
fn sub_folders(dir: &Path, doing: &'static str) -> Result<Vec<String>, StorageError> {
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

fn io_err(doing: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| StorageError::Io {
        doing,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(dir: &Path, group: &str, stamp: &str) {
        let path = dir.join(group).join(format!("{group}-{stamp}"));
        fs::create_dir_all(path.join("volumes")).unwrap();
        fs::write(path.join("volumes/v.tar"), b"data").unwrap();
        fs::write(path.join(MANIFEST), b"{}").unwrap();
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn flat_groups_move_under_the_host_once_and_other_hosts_stay() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path();
        archive(top, "nightly", "20261125T030000Z");
        archive(top, "nightly", "20261126T030000Z");
        archive(top, "once", "20261125T040000Z");
        // Another host's folder, and a folder that holds no archive: not groups.
        archive(&top.join("other"), "nightly", "20261125T030000Z");
        fs::create_dir_all(top.join("notes/readme")).unwrap();
        fs::create_dir_all(top.join(".holdfast")).unwrap();
        let host = top.join("nas");

        assert_eq!(adopt(top, &host).unwrap(), ["nightly", "once"]);
        assert_eq!(
            listing(top),
            [
                "nas/nightly/nightly-20261125T030000Z/manifest.json",
                "nas/nightly/nightly-20261125T030000Z/volumes/v.tar",
                "nas/nightly/nightly-20261126T030000Z/manifest.json",
                "nas/nightly/nightly-20261126T030000Z/volumes/v.tar",
                "nas/once/once-20261125T040000Z/manifest.json",
                "nas/once/once-20261125T040000Z/volumes/v.tar",
                "other/nightly/nightly-20261125T030000Z/manifest.json",
                "other/nightly/nightly-20261125T030000Z/volumes/v.tar",
            ]
        );
        assert!(top.join("notes/readme").is_dir());
        // Idempotent: nothing left to move, and the host folder is not taken for a group.
        assert!(adopt(top, &host).unwrap().is_empty());
        assert!(adopt(top, &top.join("other")).unwrap().is_empty());
    }

    /// A crash after some archives of a group moved into an existing host group folder:
    /// each archive is whole in one place, and a rerun finishes the move.
    #[test]
    fn a_move_cut_short_is_finished_by_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path();
        archive(top, "nightly", "20261125T030000Z");
        archive(top, "nightly", "20261126T030000Z");
        let host = top.join("nas");
        // As if the crash came after the first archive's rename.
        fs::create_dir_all(host.join("nightly")).unwrap();
        fs::rename(
            top.join("nightly/nightly-20261125T030000Z"),
            host.join("nightly/nightly-20261125T030000Z"),
        )
        .unwrap();

        assert_eq!(adopt(top, &host).unwrap(), ["nightly"]);
        assert!(!top.join("nightly").exists());
        assert_eq!(
            listing(&host),
            [
                "nightly/nightly-20261125T030000Z/manifest.json",
                "nightly/nightly-20261125T030000Z/volumes/v.tar",
                "nightly/nightly-20261126T030000Z/manifest.json",
                "nightly/nightly-20261126T030000Z/volumes/v.tar",
            ]
        );
    }
}
