//! Parts of an artifact: which entries a restore of single paths takes ([`Pick`]), and
//! what `holdfast ls` shows of one folder ([`Lister`]). Both see every entry through the
//! same reader and checks as a whole extraction (see the `extract` module): an archive is
//! read from its start to its end, as tar has no index, but only what is picked is
//! written.
//!
//! A path asked for and not found gets a "did you mean" from the entries read past that
//! are close to it: those in the same folder, and those of the same name elsewhere. That
//! costs one comparison per such entry, not one per entry of the archive.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::extract::{
    Attrs, ExtractLimits, ExtractStats, Extractor, Fail, Origin, Place, What, clean, decoder,
    extract_folder, extract_tar_into, split, walk_folder,
};
use super::listing;
use super::tar_in::{self, CHUNK, Content};
use super::verify::HashingReader;
use super::{ArchiveError, ArtifactInfo};
use crate::progress::Progress;

/// What becomes of one entry when only some paths are restored.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// One of the paths, below one, or a folder on the way to one.
    Take,
    /// Read past it.
    Skip,
    /// Taken, but it cannot be placed on its own: a hard link to what is not taken.
    Refuse(String),
}

/// The closest entry to a path that was not found, by name.
#[derive(Debug, Default)]
struct Near {
    score: f64,
    path: Option<String>,
}

/// Paths inside an artifact (clean, relative), and which of them were found.
#[derive(Debug)]
pub(super) struct Pick {
    wanted: Vec<Vec<u8>>,
    found: Vec<bool>,
    near: Vec<Near>,
}

/// `path` is `under` or below it.
fn within(path: &[u8], under: &[u8]) -> bool {
    under.is_empty()
        || path
            .strip_prefix(under)
            .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
}

/// How close `candidate` is to `wanted` when it is worth comparing: it lies in the same
/// folder, or has the same name.
fn closeness(wanted: &[u8], candidate: &[u8]) -> Option<f64> {
    let (wp, wn) = split(wanted);
    let (cp, cn) = split(candidate);
    if wp != cp && wn != cn {
        return None;
    }
    let (w, c) = (
        String::from_utf8_lossy(wanted),
        String::from_utf8_lossy(candidate),
    );
    Some(strsim::normalized_damerau_levenshtein(&w, &c))
}

impl Pick {
    /// The paths as given; refused when one is empty after cleaning, absolute or leads
    /// out with `..`.
    pub(super) fn new(paths: &[String]) -> Result<Pick, (String, &'static str)> {
        let mut wanted = Vec::new();
        for p in paths {
            let c = clean(p.as_bytes()).map_err(|r| (p.clone(), r))?;
            if c.is_empty() {
                return Err((
                    p.clone(),
                    "it names the whole artifact; leave it out instead",
                ));
            }
            wanted.push(c);
        }
        Ok(Pick {
            found: vec![false; wanted.len()],
            near: wanted.iter().map(|_| Near::default()).collect(),
            wanted,
        })
    }

    fn picks(&self, path: &[u8]) -> Option<usize> {
        self.wanted.iter().position(|w| within(path, w))
    }

    pub(super) fn decide(&mut self, path: &[u8], what: What<'_>) -> Decision {
        if let Some(i) = self.picks(path) {
            self.found[i] = true;
            if let What::Hardlink(to) = what
                && let Ok(to) = clean(to)
                && !to.is_empty()
                && self.picks(&to).is_none()
            {
                let to = String::from_utf8_lossy(&to).into_owned();
                return Decision::Refuse(format!(
                    "it is a hard link to {to:?}, which is not among the paths restored; \
                     add --path {to}"
                ));
            }
            return Decision::Take;
        }
        if what == What::Dir && self.wanted.iter().any(|w| within(w, path)) {
            return Decision::Take;
        }
        for (w, near) in self.wanted.iter().zip(&mut self.near) {
            if let Some(score) = closeness(w, path)
                && score > near.score
            {
                near.score = score;
                near.path = Some(String::from_utf8_lossy(path).into_owned());
            }
        }
        Decision::Skip
    }

    /// The paths not found, each with the closest entry if one is close enough.
    pub(super) fn missing(&self) -> Vec<(String, Option<String>)> {
        self.wanted
            .iter()
            .zip(&self.found)
            .zip(&self.near)
            .filter(|((_, found), _)| !**found)
            .map(|((w, _), near)| {
                let hint = near.path.clone().filter(|_| near.score >= 0.6);
                (String::from_utf8_lossy(w).into_owned(), hint)
            })
            .collect()
    }
}

/// One entry as `holdfast ls` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Relative to the artifact's root, `/`-separated; bytes that are not UTF-8 are
    /// replaced.
    pub path: String,
    pub kind: ListedKind,
    /// Permission bits.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Bytes of content of a file, holes of a sparse file included; else 0.
    pub size: u64,
    /// Seconds and nanoseconds since the epoch.
    pub mtime: (i64, i64),
    /// A symlink's target, or the path a hard link names.
    pub target: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListedKind {
    Dir,
    File,
    Symlink,
    Hardlink,
    Fifo,
    Device,
}

impl ListedKind {
    /// As in `ls -l`: `d`, `-`, `l`, `h` (as tar shows a hard link), `p`, `c`.
    pub fn letter(self) -> char {
        match self {
            ListedKind::Dir => 'd',
            ListedKind::File => '-',
            ListedKind::Symlink => 'l',
            ListedKind::Hardlink => 'h',
            ListedKind::Fifo => 'p',
            ListedKind::Device => 'c',
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ListedKind::Dir => "dir",
            ListedKind::File => "file",
            ListedKind::Symlink => "symlink",
            ListedKind::Hardlink => "hardlink",
            ListedKind::Fifo => "fifo",
            ListedKind::Device => "device",
        }
    }
}

/// Collects the entries at `under` (the entry itself when it is not a folder) or directly
/// below it, or everything below it when `recursive`; reads past the rest.
pub(super) struct Lister {
    under: Vec<u8>,
    recursive: bool,
    pub(super) entries: Vec<Listed>,
    /// `under` itself was seen (or is the root).
    pub(super) found: bool,
    near: Near,
}

impl Lister {
    pub(super) fn new(under: Vec<u8>, recursive: bool) -> Lister {
        Lister {
            found: under.is_empty(),
            under,
            recursive,
            entries: Vec::new(),
            near: Near::default(),
        }
    }

    /// The closest entry to `under` when it was not found.
    pub(super) fn near(&self) -> Option<String> {
        self.near.path.clone().filter(|_| self.near.score >= 0.6)
    }
}

impl Place for Lister {
    fn root(&mut self, _attrs: &Attrs) -> Result<(), Fail> {
        Ok(())
    }

    fn lists(&self) -> bool {
        true
    }

    fn place(
        &mut self,
        path: &[u8],
        _shown: &str,
        what: What<'_>,
        attrs: &Attrs,
        content: &mut dyn Content,
    ) -> Result<(), Fail> {
        if let What::File { size, .. } = what {
            let mut left = size;
            while left > 0 {
                let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
                left -= content
                    .chunk(want)
                    .map_err(|e| Fail::Io("reading", e))?
                    .len() as u64;
            }
        }
        let shown = if path == self.under.as_slice() {
            self.found = true;
            // A folder named is listed by its contents; anything else by itself.
            if what == What::Dir {
                return Ok(());
            }
            true
        } else if within(path, &self.under) {
            let rest = if self.under.is_empty() {
                path
            } else {
                &path[self.under.len() + 1..]
            };
            self.recursive || !rest.contains(&b'/')
        } else {
            if !self.found
                && let Some(score) = closeness(&self.under, path)
                && score > self.near.score
            {
                self.near.score = score;
                self.near.path = Some(String::from_utf8_lossy(path).into_owned());
            }
            false
        };
        if !shown {
            return Ok(());
        }
        let (kind, size, target) = match what {
            What::Dir => (ListedKind::Dir, 0, None),
            What::File { size, sparse } => {
                (ListedKind::File, sparse.map_or(size, |s| s.real_size), None)
            }
            What::Symlink(to) => (ListedKind::Symlink, 0, Some(to)),
            What::Hardlink(to) => (ListedKind::Hardlink, 0, Some(to)),
            What::Fifo => (ListedKind::Fifo, 0, None),
            What::Device => (ListedKind::Device, 0, None),
        };
        self.entries.push(Listed {
            path: String::from_utf8_lossy(path).into_owned(),
            kind,
            mode: attrs.mode & 0o7777,
            uid: attrs.uid,
            gid: attrs.gid,
            size,
            mtime: attrs.mtime,
            target: target.map(|t| String::from_utf8_lossy(t).into_owned()),
        });
        Ok(())
    }
}

/// Why listing or restoring part of an artifact failed.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("{artifact} holds no {}", missing_list(.missing))]
    NotFound {
        artifact: String,
        /// Each path not found, with the closest entry there is.
        missing: Vec<(String, Option<String>)>,
    },
    #[error("path {path:?} is refused: {reason}")]
    BadPath { path: String, reason: &'static str },
}

fn missing_list(missing: &[(String, Option<String>)]) -> String {
    let each: Vec<String> = missing
        .iter()
        .map(|(path, near)| match near {
            Some(near) => format!("`{path}` (did you mean `{near}`?)"),
            None => format!("`{path}`"),
        })
        .collect();
    each.join(" and no ")
}

fn limits(info: &ArtifactInfo) -> ExtractLimits {
    ExtractLimits::from_manifest(info.entries, info.source_bytes)
}

/// See [`super::list_artifact`].
pub(super) fn list(
    archive_root: &Path,
    info: &ArtifactInfo,
    under: &str,
    recursive: bool,
) -> Result<Vec<Listed>, PartError> {
    let clean_under = clean(under.as_bytes()).map_err(|reason| PartError::BadPath {
        path: under.to_string(),
        reason,
    })?;
    let path = archive_root.join(&info.path);
    let meta = fs::symlink_metadata(&path).map_err(|e| ArchiveError::io("opening", &path, e))?;
    let lister = Lister::new(clean_under, recursive);
    let lister = if meta.is_dir() {
        let ex = Extractor::new(lister, &path, Origin::Folder(path.clone()), limits(info));
        walk_folder(&path, ex)?.ex.into_place()
    } else {
        let file = File::open(&path).map_err(|e| ArchiveError::io("opening", &path, e))?;
        let reader = decoder(&path, &info.path, file)?;
        let mut ex = Extractor::new(lister, &path, Origin::Tar, limits(info));
        tar_in::with_stream(reader, |stream| tar_in::read_tar(stream, &mut ex))?;
        ex.into_place()
    };
    if !lister.found {
        return Err(PartError::NotFound {
            artifact: info.path.clone(),
            missing: vec![(
                String::from_utf8_lossy(&lister.under).into_owned(),
                lister.near(),
            )],
        });
    }
    Ok(lister.entries)
}

/// See [`super::extract_paths`].
pub(super) fn extract(
    archive_root: &Path,
    info: &ArtifactInfo,
    paths: &[String],
    target: &Path,
    existing_ok: bool,
    progress: &dyn Progress,
) -> Result<ExtractStats, PartError> {
    // No paths: the whole artifact.
    let pick = match paths {
        [] => None,
        _ => Some(Pick::new(paths).map_err(|(path, reason)| PartError::BadPath { path, reason })?),
    };
    let path = archive_root.join(&info.path);
    let meta = fs::symlink_metadata(&path).map_err(|e| ArchiveError::io("opening", &path, e))?;
    let mismatch = |actual: String| ArchiveError::Mismatch {
        path: path.clone(),
        what: "sha256",
        expected: info.sha256.clone(),
        actual,
    };
    let (stats, pick) = if meta.is_dir() {
        // A folder's checksum is that of its listing, which has to read it all first.
        let l = listing::listing(&path).map_err(|e| ArchiveError::io("reading", &path, e))?;
        if l.sha256 != info.sha256 {
            return Err(mismatch(l.sha256).into());
        }
        extract_folder(&path, target, limits(info), pick, existing_ok, progress)?
    } else {
        // Hashed as it is read, below the decompressor: the tar is read to its end anyway.
        let file = File::open(&path).map_err(|e| ArchiveError::io("opening", &path, e))?;
        let mut raw = HashingReader {
            inner: file,
            hasher: Sha256::new(),
            count: 0,
        };
        let extracted = decoder(&path, &info.path, &mut raw).and_then(|reader| {
            extract_tar_into(reader, target, limits(info), pick, existing_ok, progress)
        });
        io::copy(&mut raw, &mut io::sink()).map_err(|e| ArchiveError::io("reading", &path, e))?;
        let sha256 = hex::encode(std::mem::take(&mut raw.hasher).finalize());
        // A damaged artifact explains whatever else went wrong reading it.
        if raw.count != info.size || sha256 != info.sha256 {
            return Err(mismatch(sha256).into());
        }
        extracted?
    };
    let missing = pick.map(|p| p.missing()).unwrap_or_default();
    if !missing.is_empty() {
        return Err(PartError::NotFound {
            artifact: info.path.clone(),
            missing,
        });
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pick_takes_its_paths_what_is_below_them_and_the_folders_on_the_way() {
        let mut p = Pick::new(&["a/b".into(), "./c/".into()]).unwrap();
        assert_eq!(p.decide(b"a", What::Dir), Decision::Take);
        assert_eq!(p.decide(b"a/b", What::Dir), Decision::Take);
        assert_eq!(p.decide(b"a/b/x", What::Fifo), Decision::Take);
        assert_eq!(p.decide(b"a/bc", What::Fifo), Decision::Skip);
        assert_eq!(p.decide(b"a/x", What::Dir), Decision::Skip);
        assert_eq!(p.decide(b"x", What::Fifo), Decision::Skip);
        assert!(matches!(
            p.decide(b"a/b/h", What::Hardlink(b"x")),
            Decision::Refuse(r) if r.contains("--path x")
        ));
        assert_eq!(p.decide(b"a/b/h", What::Hardlink(b"a/b/x")), Decision::Take);
        assert_eq!(p.missing(), vec![("c".to_string(), None)]);
        assert!(Pick::new(&["../x".into()]).is_err());
        assert!(Pick::new(&["/x".into()]).is_err());
        assert!(Pick::new(&["./".into()]).is_err());
    }

    #[test]
    fn a_missing_path_is_told_the_closest_entry_of_its_folder_or_name() {
        let mut p = Pick::new(&["dir/sub/bb.txt".into(), "x/a.txt".into()]).unwrap();
        for path in [
            &b"dir/sub/b.txt"[..],
            b"dir/sub/zzzzzz",
            b"other/bb.txt",
            b"y/a.txt",
        ] {
            p.decide(path, What::Fifo);
        }
        assert_eq!(
            p.missing(),
            vec![
                (
                    "dir/sub/bb.txt".to_string(),
                    Some("dir/sub/b.txt".to_string())
                ),
                ("x/a.txt".to_string(), Some("y/a.txt".to_string())),
            ]
        );
    }
}
