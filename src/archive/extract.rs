//! Extraction: puts an artifact (a tar, tar.gz or tar.zst file, or a folder-format folder)
//! back into a folder, with owners, modes, mtimes, symlinks, hard links, fifos, xattrs and
//! holes in sparse files, and without ever writing outside that folder.
//!
//! An archive is data from a repository that someone else may have written to, and
//! extraction usually runs as root, so every entry is treated as hostile:
//!
//! - names with `..`, absolute names and names with NUL bytes are refused, never
//!   rewritten into something else;
//! - every folder on the way to an entry is opened with `O_NOFOLLOW` relative to the one
//!   above it, starting from a descriptor of the target, so no symlink, whether it was
//!   there before or came earlier in the same archive, is ever followed;
//! - files are created with `O_CREAT | O_EXCL | O_NOFOLLOW`; an existing name (an entry
//!   that appears twice) is unlinked first, so a write never goes through a symlink or
//!   into another name of a hard-linked inode; a folder is never replaced;
//! - hard links may only point at an entry already extracted below the target;
//! - device nodes are refused: volumes do not need them and they are a way to the host;
//! - the entry count and the bytes of content are checked against the manifest before
//!   each entry is created, so a tar bomb stops at the first entry over the limit;
//! - a stream that ends early, even exactly between two entries, is an error.
//!
//! Speed: the artifact is read and decompressed on a second thread that hands over 1 MiB
//! buffers through a bounded channel, and file content is written straight from those
//! buffers, one write per buffer. Nothing is fsynced per file: [`sync_tree`] syncs the
//! whole filesystem once, which is what makes the extracted data durable; large files are
//! handed to the disk as they are written, so that little is left for that sync.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::ArchiveError;
use super::entry::{Copied, Entry, Kind, Sink, SinkError, read_some};
use super::excludes::{Excludes, bytes_path};
use super::pick::{Decision, Pick};
use super::sparse::Extent;
use super::sys::{self, FileType, OFlags};
use super::tar_in::{self, CHUNK, Content, read_error};
use super::walk;
use crate::progress::Progress;

/// Upper bounds from the manifest: an archive holding more than its manifest records is
/// refused.
///
/// `max_entries` is the manifest's `entries` (the root folder entry of a tar, `./`, is not
/// counted), `max_bytes` its `source_bytes`: the bytes of regular file content. A file
/// that shrank while it was archived into a tar was padded with zeros to its size at
/// open, so its entry is larger than what was read; a caller that wants such archives
/// back gives `max_bytes` some slack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtractLimits {
    pub max_entries: u64,
    pub max_bytes: u64,
}

impl ExtractLimits {
    /// The limits for an artifact from its manifest entry: its `entries`, and its
    /// `source_bytes` with a tenth and 1 MiB of slack for files that shrank while they
    /// were archived, as restores set them.
    pub fn from_manifest(entries: u64, source_bytes: u64) -> ExtractLimits {
        ExtractLimits {
            max_entries: entries,
            max_bytes: source_bytes
                .saturating_add(source_bytes / 10)
                .saturating_add(1 << 20),
        }
    }
}

/// What an extraction wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtractStats {
    /// Entries extracted, the tar's root entry (`./`) not included.
    pub entries: u64,
    /// Bytes of regular file content.
    pub bytes: u64,
}

/// Aligned runs of zeros this long become holes. Large enough that a file of ordinary
/// data is never fragmented, small enough that a database's preallocated zeros are found.
const HOLE: u64 = 64 * 1024;

/// Files at least this large are handed to the disk as soon as they are written, and
/// larger ones every `WRITEBACK_STEP` bytes, rather than all at the final sync: the disk
/// works while the next files are decompressed, and dirty memory stays low. Small files
/// are left to the final sync, where the filesystem batches them far better.
const WRITEBACK_MIN: u64 = 1 << 20;
const WRITEBACK_STEP: u64 = 8 << 20;

static ZEROS: [u8; HOLE as usize] = [0; HOLE as usize];

/// Extracts one artifact: a `.tar`, `.tar.gz` or `.tar.zst` file, or a folder-format
/// folder, into `target`, which must be an empty folder or not exist yet (then it is
/// created). The target's own owner, mode and mtime are set from the archive's root entry
/// (`./`) if it has one.
///
/// Owners are restored by number (the ids inside a container mean nothing on the host)
/// and only when running as root. Nothing is fsynced: call [`sync_tree`] once at the end.
/// On error the target keeps what was extracted before it; nothing is ever written
/// outside it.
pub fn extract_artifact(
    artifact: &Path,
    target: &Path,
    limits: ExtractLimits,
    progress: &dyn Progress,
) -> Result<ExtractStats, ArchiveError> {
    let meta =
        fs::symlink_metadata(artifact).map_err(|e| ArchiveError::io("opening", artifact, e))?;
    if meta.is_dir() {
        return extract_folder(artifact, target, limits, None, false, progress).map(|(s, _)| s);
    }
    let name = artifact
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = File::open(artifact).map_err(|e| ArchiveError::io("opening", artifact, e))?;
    // Doubles the readahead window for this file.
    sys::advise_sequential(&file);
    let reader = decoder(artifact, &name, file)?;
    extract_tar(reader, target, limits, progress)
}

/// The tar stream inside an artifact file named `name`, by its extension.
pub(super) fn decoder<'r>(
    artifact: &Path,
    name: &str,
    raw: impl Read + Send + 'r,
) -> Result<Box<dyn Read + Send + 'r>, ArchiveError> {
    let input = BufReader::with_capacity(CHUNK, raw);
    Ok(if name.ends_with(".zst") {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| ArchiveError::io("decompressing", artifact, e))?,
        )
    } else if name.ends_with(".gz") || name.ends_with(".tgz") {
        Box::new(flate2::read::MultiGzDecoder::new(input))
    } else if name.ends_with(".tar") {
        Box::new(input)
    } else {
        return Err(ArchiveError::io(
            "extracting",
            artifact,
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an artifact: expected a folder or a .tar, .tar.gz or .tar.zst file",
            ),
        ));
    })
}

/// Like [`extract_artifact`], for a tar stream that is already decompressed. The stream is
/// read on a second thread (hence `Send`) while this one writes; it is read to its end,
/// past the end-of-archive marker, so that a decompressor under it checks its checksum.
pub fn extract_tar<R: Read + Send>(
    reader: R,
    target: &Path,
    limits: ExtractLimits,
    progress: &dyn Progress,
) -> Result<ExtractStats, ArchiveError> {
    extract_tar_into(reader, target, limits, None, false, progress).map(|(stats, _)| stats)
}

/// [`extract_tar`], with only what `only` picks (see [`Pick`]) and, when `existing_ok`,
/// into a folder that already holds entries: files of the same name are replaced (never
/// written through), folders are kept.
pub(super) fn extract_tar_into<R: Read + Send>(
    reader: R,
    target: &Path,
    limits: ExtractLimits,
    only: Option<Pick>,
    existing_ok: bool,
    progress: &dyn Progress,
) -> Result<(ExtractStats, Option<Pick>), ArchiveError> {
    let root = open_target(target, existing_ok)?;
    let mut ex = Extractor::new(Writer::new(root, progress), target, Origin::Tar, limits);
    ex.only = only;
    tar_in::with_stream(reader, |stream| {
        tar_in::read_tar(stream, &mut ex)?;
        let only = ex.only.take();
        Ok((ex.finish()?, only))
    })
}

/// Makes everything written below `target` durable with one `syncfs` of its filesystem,
/// far cheaper than an fsync per file (and what `sync` does, for one filesystem only).
pub fn sync_tree(target: &Path) -> Result<(), ArchiveError> {
    let dir = File::open(target).map_err(|e| ArchiveError::io("syncing", target, e))?;
    sys::sync_fs(&dir).map_err(|e| ArchiveError::io("syncing", target, e))
}

/// A folder artifact is walked like a source folder (by descriptors, never following a
/// symlink) and every entry goes through the same checks as a tar entry.
pub(super) fn extract_folder(
    artifact: &Path,
    target: &Path,
    limits: ExtractLimits,
    only: Option<Pick>,
    existing_ok: bool,
    progress: &dyn Progress,
) -> Result<(ExtractStats, Option<Pick>), ArchiveError> {
    let root = open_target(target, existing_ok)?;
    let mut ex = Extractor::new(
        Writer::new(root, progress),
        target,
        Origin::Folder(artifact.to_path_buf()),
        limits,
    );
    ex.only = only;
    let mut sink = walk_folder(artifact, ex)?;
    let only = sink.ex.only.take();
    Ok((sink.ex.finish()?, only))
}

/// Walks a folder artifact into `ex`; returns it with what it was given.
pub(super) fn walk_folder<P: Place>(
    artifact: &Path,
    ex: Extractor<P>,
) -> Result<FolderSource<P>, ArchiveError> {
    let mut sink = FolderSource {
        ex,
        buf: vec![0; CHUNK],
        failed: None,
    };
    let walked = walk::walk(
        artifact,
        &sink.ex.target.clone(),
        &Excludes::none(),
        &mut sink,
    );
    if let Some(e) = sink.failed.take() {
        return Err(e);
    }
    walked?;
    Ok(sink)
}

/// Checks that `target` is an empty folder (or, when `existing_ok`, any folder), or
/// creates it, and opens it.
fn open_target(target: &Path, existing_ok: bool) -> Result<OwnedFd, ArchiveError> {
    let fail = |e: io::Error| ArchiveError::io("extracting into", target, e);
    match fs::symlink_metadata(target) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the target is a symlink; give the folder it points to",
            )));
        }
        Ok(m) if !m.is_dir() => {
            return Err(fail(io::Error::new(
                io::ErrorKind::NotADirectory,
                "the target is not a folder",
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(fail)?;
            }
            fs::create_dir(target).map_err(fail)?;
        }
        Err(e) => return Err(fail(e)),
    }
    let path = CString::new(target.as_os_str().as_bytes()).map_err(|_| {
        fail(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path holds a NUL byte",
        ))
    })?;
    let root = sys::open_at(
        sys::CWD,
        &path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
        0,
    )
    .map_err(fail)?;
    if !existing_ok && !sys::list_dir(&root).map_err(fail)?.is_empty() {
        return Err(fail(io::Error::new(
            io::ErrorKind::DirectoryNotEmpty,
            "the target folder is not empty",
        )));
    }
    Ok(root)
}

// ---------------------------------------------------------------------------------------
// What happens to each entry: checked by `Extractor`, then placed by a `Place`.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum What<'a> {
    Dir,
    /// `size` bytes of content follow; for a sparse file, the bytes of its extents.
    File {
        size: u64,
        sparse: Option<Sparse<'a>>,
    },
    Symlink(&'a [u8]),
    /// A further name of an entry extracted before, by its path in the archive.
    Hardlink(&'a [u8]),
    Fifo,
    Device,
}

/// Where a sparse file's data goes, and its length: the rest are holes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Sparse<'a> {
    pub real_size: u64,
    /// In order, not overlapping, inside `real_size`, none empty.
    pub extents: &'a [Extent],
}

#[derive(Clone, Debug, Default)]
pub(super) struct Attrs {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds and nanoseconds since the epoch.
    pub mtime: (i64, i64),
    /// Extended attributes by full name (`user.x`, `security.capability`).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(super) enum Origin {
    Tar,
    Folder(PathBuf),
}

/// Why an entry could not be placed: refused, or the filesystem said no.
pub(super) enum Fail {
    Refuse(String),
    Io(&'static str, io::Error),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        Fail::Io("creating", e)
    }
}

/// Where entries go once [`Extractor`] has let them through: [`Writer`] creates them
/// below the target.
pub(super) trait Place {
    /// The archive's root entry (`./`): the target folder itself.
    fn root(&mut self, attrs: &Attrs) -> Result<(), Fail>;

    /// Whether the place only lists entries: then device nodes are let through to it.
    fn lists(&self) -> bool {
        false
    }

    /// Places one entry; `path` is clean and not empty. For a file, reads exactly its size
    /// from `content`.
    fn place(
        &mut self,
        path: &[u8],
        shown: &str,
        what: What<'_>,
        attrs: &Attrs,
        content: &mut dyn Content,
    ) -> Result<(), Fail>;
}

/// Checks every entry the same way, whatever it was read from and wherever it goes: its
/// name, the manifest's limits, its type. Then hands it to `place`.
pub(super) struct Extractor<P> {
    place: P,
    /// Names the place in I/O errors.
    target: PathBuf,
    origin: Origin,
    limits: ExtractLimits,
    /// Entries placed.
    pub(super) stats: ExtractStats,
    /// Entries read, placed or not: what the limits count.
    seen: ExtractStats,
    /// When set, only the entries it picks are placed; the others are read past.
    pub(super) only: Option<Pick>,
}

pub(super) const OUTSIDE: &str = "it leads outside the target";
pub(super) const DEVICE: &str = "it is a device node; volumes are restored without them";

/// `a/./b//c/` -> `a/b/c`; `..`, absolute paths and NUL bytes are refused.
pub(super) fn clean(path: &[u8]) -> Result<Vec<u8>, &'static str> {
    if path.first() == Some(&b'/') {
        return Err("it is an absolute path; only paths relative to the target are extracted");
    }
    if path.contains(&0) {
        return Err("its name holds a NUL byte");
    }
    let mut out = Vec::with_capacity(path.len());
    for part in path.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(OUTSIDE),
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(part);
            }
        }
    }
    Ok(out)
}

/// (parent, name) of a clean, non-empty path.
pub(super) fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&path[..0], path),
    }
}

pub(super) fn cstring(name: &[u8]) -> CString {
    // Clean paths hold no NUL byte, so this cannot fail.
    CString::new(name).unwrap_or_default()
}

pub(super) fn lossy(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

// The refusals that depend on what is already below the target, worded once for every
// place.

/// A folder on the way to an entry is a symlink or something else that is not a folder.
pub(super) fn passes_through(so_far: &[u8], symlink: bool) -> Fail {
    Fail::Refuse(if symlink {
        format!("it passes through the symlink {:?}", lossy(so_far))
    } else {
        format!(
            "it passes through {:?}, which is not a folder",
            lossy(so_far)
        )
    })
}

/// A non-folder entry where a folder already is: it may hold entries already written.
pub(super) fn folder_in_the_way() -> Fail {
    Fail::Refuse("a folder of the same name is already there".into())
}

pub(super) fn check_symlink_target(to: &[u8]) -> Result<(), Fail> {
    if to.is_empty() || to.contains(&0) {
        return Err(Fail::Refuse(
            "its symlink target is empty or holds a NUL byte".into(),
        ));
    }
    Ok(())
}

/// The clean path a hard link at `path` points at, refused when it leads outside the
/// target or names the target or the link itself.
pub(super) fn link_target(path: &[u8], to: &[u8]) -> Result<Vec<u8>, Fail> {
    let to = clean(to).map_err(|r| {
        Fail::Refuse(if r == OUTSIDE {
            format!("its link target {:?} leads outside the target", lossy(to))
        } else {
            format!("its link target {:?} is refused: {r}", lossy(to))
        })
    })?;
    if to.is_empty() {
        return Err(Fail::Refuse("it links to the target folder itself".into()));
    }
    if to == path {
        return Err(Fail::Refuse("it links to itself".into()));
    }
    Ok(to)
}

/// A hard link's target is not there (yet).
pub(super) fn link_missing(to: &[u8]) -> Fail {
    Fail::Refuse(format!(
        "its link target {:?} has not been extracted before it",
        lossy(to)
    ))
}

/// The way to a hard link's target was refused.
pub(super) fn link_refused(to: &[u8], reason: String) -> Fail {
    Fail::Refuse(format!(
        "its link target {:?} is refused: {reason}",
        lossy(to)
    ))
}

pub(super) fn link_to_folder(to: &[u8]) -> Fail {
    Fail::Refuse(format!("its link target {:?} is a folder", lossy(to)))
}

impl<P: Place> Extractor<P> {
    pub(super) fn new(place: P, target: &Path, origin: Origin, limits: ExtractLimits) -> Self {
        Extractor {
            place,
            target: target.to_path_buf(),
            origin,
            limits,
            stats: ExtractStats::default(),
            seen: ExtractStats::default(),
            only: None,
        }
    }

    pub(super) fn into_place(self) -> P {
        self.place
    }

    pub(super) fn refuse(&self, shown: &str, reason: impl Into<String>) -> ArchiveError {
        ArchiveError::Refused {
            origin: match self.origin {
                Origin::Tar => "tar",
                Origin::Folder(_) => "folder",
            },
            entry: shown.to_string(),
            reason: reason.into(),
        }
    }

    fn fail(&self, shown: &str, path: &[u8], f: Fail) -> ArchiveError {
        match (f, &self.origin) {
            (Fail::Refuse(reason), _) => self.refuse(shown, reason),
            // Reading the entry's content failed: name what was read.
            (Fail::Io("reading", e), Origin::Tar) => read_error(&format!("entry {shown:?}"), e),
            (Fail::Io("reading", e), Origin::Folder(src)) => {
                ArchiveError::io("reading", &src.join(bytes_path(path)), e)
            }
            (Fail::Io(action, e), _) => {
                ArchiveError::io(action, &self.target.join(bytes_path(path)), e)
            }
        }
    }

    /// Extracts one entry. For a file, reads exactly its size from `content`.
    pub(super) fn add(
        &mut self,
        raw: &[u8],
        shown: &str,
        what: What<'_>,
        attrs: &Attrs,
        content: &mut dyn Content,
    ) -> Result<(), ArchiveError> {
        let path = clean(raw).map_err(|r| self.refuse(shown, r))?;
        if path.is_empty() {
            if what != What::Dir {
                return Err(self.refuse(shown, "it names the target itself but is not a folder"));
            }
            if self.only.is_some() {
                // Picked paths go into the target; the archive's root says nothing of it.
                return Ok(());
            }
            return self.place.root(attrs).map_err(|f| self.fail(shown, b"", f));
        }
        if self.seen.entries >= self.limits.max_entries {
            return Err(self.refuse(
                shown,
                format!(
                    "the archive holds more than the {} entries its manifest records",
                    self.limits.max_entries
                ),
            ));
        }
        let size = match what {
            What::File { size, .. } => size,
            _ => 0,
        };
        if size > self.limits.max_bytes - self.seen.bytes.min(self.limits.max_bytes) {
            return Err(self.refuse(
                shown,
                format!(
                    "the archive holds more than the {} bytes of file content its manifest records",
                    self.limits.max_bytes
                ),
            ));
        }
        self.seen.entries += 1;
        self.seen.bytes += size;
        if let Some(only) = &mut self.only {
            match only.decide(&path, what) {
                Decision::Take => {}
                Decision::Refuse(reason) => return Err(self.refuse(shown, reason)),
                Decision::Skip => {
                    let mut left = size;
                    while left > 0 {
                        let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
                        let n = content
                            .chunk(want)
                            .map_err(|e| self.fail(shown, &path, Fail::Io("reading", e)))?
                            .len();
                        left -= n as u64;
                    }
                    return Ok(());
                }
            }
        }
        if what == What::Device && !self.place.lists() {
            return Err(self.refuse(shown, DEVICE));
        }
        self.place
            .place(&path, shown, what, attrs, content)
            .map_err(|f| self.fail(shown, &path, f))?;
        self.stats.entries += 1;
        self.stats.bytes += size;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Writing entries below the target.

/// Creates entries below the target, each folder on the way opened by descriptor below
/// the one above it, never following a symlink.
struct Writer<'p> {
    root: OwnedFd,
    /// The folders of the last parent path, each opened below the one before it: entries
    /// come in tree order, so the next entry's parent is nearly always a prefix of it.
    stack: Vec<(Vec<u8>, OwnedFd)>,
    /// Folder metadata, applied at the end: writing into a folder changes its mtime, and
    /// a read-only mode would forbid writing into it (for a user other than root).
    dirs: Vec<(Vec<u8>, Attrs)>,
    dir_index: HashMap<Vec<u8>, usize>,
    root_attrs: Option<Attrs>,
    chown: bool,
    warned_xattrs: bool,
    progress: &'p dyn Progress,
}

impl<'p> Writer<'p> {
    fn new(root: OwnedFd, progress: &'p dyn Progress) -> Self {
        Writer {
            root,
            stack: Vec::new(),
            dirs: Vec::new(),
            dir_index: HashMap::new(),
            root_attrs: None,
            chown: sys::is_root(),
            warned_xattrs: false,
            progress,
        }
    }
}

impl Place for Writer<'_> {
    fn root(&mut self, attrs: &Attrs) -> Result<(), Fail> {
        // Applied at the end, from the last root entry; each one's owner is checked now.
        if self.chown {
            ids(attrs.uid, attrs.gid)?;
        }
        self.root_attrs = Some(attrs.clone());
        Ok(())
    }

    fn place(
        &mut self,
        path: &[u8],
        shown: &str,
        what: What<'_>,
        attrs: &Attrs,
        content: &mut dyn Content,
    ) -> Result<(), Fail> {
        let (parent, name) = split(path);
        let name = cstring(name);
        if let What::Hardlink(to) = what {
            // The source is found first and held by its own descriptor: finding it moves
            // the cached folder stack.
            let (source_dir, source_name) = self.link_source(path, to)?;
            let dir = self.open_parent(parent, true)?;
            retry_exists(dir, &name, || {
                sys::link_at(&source_dir, &source_name, dir, &name)
            })?;
            return Ok(());
        }
        let chown = self.chown;
        let dir = self.open_parent(parent, true)?;
        match what {
            What::Dir => {
                // The owner is set at the end, from the folder's last entry; an earlier
                // entry's is checked now, as the checker does and as a file's is.
                if chown {
                    ids(attrs.uid, attrs.gid)?;
                }
                match sys::mkdir_at(dir, &name, 0o700) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                        if !is_dir(&sys::stat_at(dir, &name)?) {
                            // A symlink or file by that name goes; it is never followed.
                            sys::unlink_at(dir, &name)?;
                            sys::mkdir_at(dir, &name, 0o700)?;
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
                match self.dir_index.get(path) {
                    Some(&i) => self.dirs[i].1 = attrs.clone(),
                    None => {
                        self.dir_index.insert(path.to_vec(), self.dirs.len());
                        self.dirs.push((path.to_vec(), attrs.clone()));
                    }
                }
            }
            What::File { size, sparse } => {
                let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
                let fd = retry_exists(dir, &name, || sys::open_at(dir, &name, flags, 0o600))?;
                let mut out = SparseFile::new(fd.as_fd());
                let whole = [(0, size)];
                let (real_size, extents) = match sparse {
                    Some(s) => (s.real_size, s.extents),
                    None => (size, &whole[..]),
                };
                for &(off, len) in extents {
                    out.skip_to(off);
                    let mut left = len;
                    while left > 0 {
                        let want = usize::try_from(left).unwrap_or(usize::MAX);
                        let data = content.chunk(want).map_err(|e| Fail::Io("reading", e))?;
                        out.write(data).map_err(|e| Fail::Io("writing", e))?;
                        left -= data.len() as u64;
                        self.progress.bytes(data.len() as u64);
                        if self.progress.cancelled() {
                            return Err(Fail::Io("writing", super::cancelled()));
                        }
                        if out.off - out.flushed >= WRITEBACK_STEP {
                            out.start_writeback();
                        }
                    }
                }
                if size >= WRITEBACK_MIN {
                    out.start_writeback();
                }
                out.finish(real_size).map_err(|e| Fail::Io("writing", e))?;
                self.apply(fd.as_fd(), attrs, shown)?;
            }
            What::Symlink(to) => {
                check_symlink_target(to)?;
                let to = cstring(to);
                retry_exists(dir, &name, || sys::symlink_at(&to, dir, &name))?;
                // No chmod: it would follow the link, and a symlink's mode means nothing.
                if chown {
                    let (uid, gid) = ids(attrs.uid, attrs.gid)?;
                    sys::chown_at(dir, &name, uid, gid)?;
                }
                let times = sys::set_times_at(dir, &name, attrs.mtime);
                if !attrs.xattrs.is_empty() {
                    self.warn_xattrs(shown, "symlinks keep no extended attributes here");
                }
                times.map_err(|e| Fail::Io("setting the mtime of", e))?;
            }
            What::Fifo => {
                retry_exists(dir, &name, || {
                    sys::mknod_at(dir, &name, FileType::Fifo, 0o600, 0)
                })?;
                // Opened to set its metadata by descriptor; non-blocking, so no writer is
                // needed.
                let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW;
                let fd = sys::open_at(dir, &name, flags, 0)?;
                self.apply(fd.as_fd(), attrs, shown)?;
            }
            What::Hardlink(_) => unreachable!("linked above"),
            What::Device => return Err(Fail::Refuse(DEVICE.into())),
        }
        Ok(())
    }
}

impl Writer<'_> {
    /// The folder and name of an existing, non-folder entry a hard link may point at.
    fn link_source(&mut self, path: &[u8], to: &[u8]) -> Result<(OwnedFd, CString), Fail> {
        let to = link_target(path, to)?;
        let (parent, name) = split(&to);
        let name = cstring(name);
        let dir = match self.open_parent(parent, false) {
            Ok(dir) => dir.try_clone_to_owned()?,
            Err(Fail::Refuse(reason)) => return Err(link_refused(&to, reason)),
            Err(Fail::Io(_, e)) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Err(link_missing(&to));
            }
            Err(e) => return Err(e),
        };
        match sys::stat_at(&dir, &name) {
            Ok(st) if is_dir(&st) => Err(link_to_folder(&to)),
            Ok(_) => Ok((dir, name)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Err(link_missing(&to)),
            Err(e) => Err(e.into()),
        }
    }

    /// The folder `parent` (clean, relative), each component opened with `O_NOFOLLOW`
    /// below the one before; missing ones are created when `create`.
    fn open_parent(&mut self, parent: &[u8], create: bool) -> Result<BorrowedFd<'_>, Fail> {
        let mut depth = 0;
        let mut rest = parent;
        // Keep the cached folders that are a prefix of `parent`.
        while !rest.is_empty() && depth < self.stack.len() {
            let (comp, tail) = match rest.iter().position(|b| *b == b'/') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[..0]),
            };
            if self.stack[depth].0 != comp {
                break;
            }
            depth += 1;
            rest = tail;
        }
        self.stack.truncate(depth);
        while !rest.is_empty() {
            let (comp, tail) = match rest.iter().position(|b| *b == b'/') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[..0]),
            };
            let dir = self.stack.last().map_or(&self.root, |(_, fd)| fd).as_fd();
            let name = cstring(comp);
            let so_far = &parent[..parent.len() - tail.len()];
            let so_far = so_far.strip_suffix(b"/").unwrap_or(so_far);
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW;
            let fd = match sys::open_at(dir, &name, flags, 0) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                    match sys::mkdir_at(dir, &name, 0o755) {
                        Ok(()) => {}
                        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    sys::open_at(dir, &name, flags, 0)
                        .map_err(|e| self.not_a_dir(dir, &name, so_far, e))?
                }
                Err(e) => return Err(self.not_a_dir(dir, &name, so_far, e)),
            };
            self.stack.push((comp.to_vec(), fd));
            rest = tail;
        }
        Ok(self.stack.last().map_or(&self.root, |(_, fd)| fd).as_fd())
    }

    /// Why a folder on the way could not be opened: a symlink or something else there is
    /// a refusal, anything else an I/O error.
    fn not_a_dir(&self, dir: BorrowedFd<'_>, name: &CStr, so_far: &[u8], e: io::Error) -> Fail {
        if !matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) {
            return Fail::Io("opening", e);
        }
        match sys::stat_at(dir, name) {
            Ok(st) => passes_through(so_far, sys::file_type(&st) == FileType::Symlink),
            Err(e) => Fail::Io("opening", e),
        }
    }

    /// Owner, mode, xattrs and mtime, in that order: chown clears setuid and setgid bits
    /// and file capabilities, and each of the others could change the mtime.
    fn apply(&mut self, fd: BorrowedFd<'_>, attrs: &Attrs, shown: &str) -> Result<(), Fail> {
        let meta_err = |e| Fail::Io("setting owner, mode and mtime of", e);
        if self.chown {
            let (uid, gid) = ids(attrs.uid, attrs.gid)?;
            sys::chown_fd(fd, uid, gid).map_err(meta_err)?;
        }
        sys::chmod_fd(fd, attrs.mode & 0o7777).map_err(meta_err)?;
        for (key, value) in &attrs.xattrs {
            if key.contains(&0) {
                self.warn_xattrs(shown, "an extended attribute's name holds a NUL byte");
                continue;
            }
            if let Err(e) = sys::set_xattr_fd(fd, key, value) {
                self.warn_xattrs(shown, &format!("{}: {e}", String::from_utf8_lossy(key)));
            }
        }
        sys::set_times_fd(fd, attrs.mtime).map_err(meta_err)?;
        Ok(())
    }

    /// Extended attributes are best effort (the filesystem may not support them, or a
    /// non-root user may not set `trusted.*`): one warning per extraction, not one per file.
    fn warn_xattrs(&mut self, shown: &str, why: &str) {
        if !self.warned_xattrs {
            self.warned_xattrs = true;
            tracing::warn!(
                entry = shown,
                "extended attributes not restored: {why} (further such warnings are left out)"
            );
        }
    }
}

impl Extractor<Writer<'_>> {
    /// Applies the folders' metadata, deepest first, then the target's own.
    fn finish(mut self) -> Result<ExtractStats, ArchiveError> {
        let mut dirs = std::mem::take(&mut self.place.dirs);
        dirs.sort_by_key(|(path, _)| {
            std::cmp::Reverse(path.iter().filter(|b| **b == b'/').count())
        });
        for (path, attrs) in dirs {
            let shown = lossy(&path);
            let (parent, name) = split(&path);
            let name = cstring(name);
            let w = &mut self.place;
            let result = (|| {
                let dir = w.open_parent(parent, false)?;
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW;
                let fd = sys::open_at(dir, &name, flags, 0).map_err(|e| Fail::Io("opening", e))?;
                w.apply(fd.as_fd(), &attrs, &shown)
            })();
            result.map_err(|f| self.fail(&shown, &path, f))?;
        }
        self.place.stack.clear();
        if let Some(attrs) = self.place.root_attrs.take() {
            let root = self
                .place
                .root
                .try_clone()
                .map_err(|e| ArchiveError::io("setting metadata of", &self.target, e))?;
            self.place
                .apply(root.as_fd(), &attrs, ".")
                .map_err(|f| self.fail(".", b"", f))?;
        }
        Ok(self.stats)
    }
}

/// Creates a name with `create`; if the name exists and is not a folder, removes it and
/// tries once more. A folder in the way is refused: it may hold entries already written.
fn retry_exists<T>(
    dir: BorrowedFd<'_>,
    name: &CStr,
    mut create: impl FnMut() -> io::Result<T>,
) -> Result<T, Fail> {
    match create() {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            if is_dir(&sys::stat_at(dir, name)?) {
                return Err(folder_in_the_way());
            }
            sys::unlink_at(dir, name)?;
            Ok(create()?)
        }
        other => Ok(other?),
    }
}

/// The owner to set, refused when it is out of range for the system.
pub(super) fn ids(uid: u64, gid: u64) -> Result<(u32, u32), Fail> {
    match (u32::try_from(uid), u32::try_from(gid)) {
        (Ok(u), Ok(g)) => Ok((u, g)),
        _ => Err(Fail::Refuse(format!(
            "its owner {uid}:{gid} is out of range"
        ))),
    }
}

fn is_dir(st: &sys::Stat) -> bool {
    sys::file_type(st) == FileType::Directory
}

// ---------------------------------------------------------------------------------------
// File content, with holes where the data has long runs of zeros.

/// Writes a new file's content at increasing offsets. Every aligned `HOLE`-sized block
/// that is all zeros is skipped instead of written, and `finish` sets the length, so the
/// zeros read back as before but take no space. Blocks may span several slices: zeros at
/// the start of a block are held back until the block either ends as all zeros (a hole)
/// or turns out to hold data (then they are written).
struct SparseFile<'f> {
    fd: BorrowedFd<'f>,
    off: u64,
    /// Zeros before `off`, all in the current block and not written yet.
    pending: u64,
    /// The current block holds only zeros so far, none of them written.
    clean: bool,
    /// The end of the data written so far.
    end: u64,
    /// Where writeback was last started up to.
    flushed: u64,
}

fn is_zero(data: &[u8]) -> bool {
    // The head first: data that is not zeros nearly always says so at once.
    let (head, rest) = data.split_at(data.len().min(16));
    head.iter().all(|b| *b == 0)
        && rest
            .chunks(4096)
            .all(|c| c.iter().fold(0u8, |acc, b| acc | b) == 0)
}

impl<'f> SparseFile<'f> {
    fn new(fd: BorrowedFd<'f>) -> Self {
        SparseFile {
            fd,
            off: 0,
            pending: 0,
            clean: true,
            end: 0,
            flushed: 0,
        }
    }

    /// Starts writing what was written since the last call to disk, without waiting.
    /// Only a head start for the final sync, so a failure here changes nothing.
    fn start_writeback(&mut self) {
        if self.off > self.flushed {
            sys::start_writeback(self.fd, self.flushed, self.off - self.flushed);
            self.flushed = self.off;
        }
    }

    fn put(&mut self, data: &[u8], off: u64) -> io::Result<()> {
        if !data.is_empty() {
            sys::pwrite_all(self.fd, data, off)?;
            self.end = self.end.max(off + data.len() as u64);
        }
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        // `run` is the part of `data` to be written in one call, from `run_start`.
        let mut run_start = 0;
        let mut run_off = self.off;
        let mut i = 0;
        while i < data.len() {
            if self.off.is_multiple_of(HOLE) {
                self.clean = true;
                self.pending = 0;
            }
            let block_end = (self.off / HOLE + 1) * HOLE;
            let n = (block_end - self.off).min((data.len() - i) as u64) as usize;
            let segment = &data[i..i + n];
            if self.clean && is_zero(segment) {
                self.put(&data[run_start..i], run_off)?;
                self.pending += n as u64;
                run_start = i + n;
                run_off = self.off + n as u64;
            } else {
                if self.clean && self.pending > 0 {
                    // The block started as zeros in an earlier slice; it has data after all.
                    let zeros = &ZEROS[..self.pending as usize];
                    self.put(zeros, self.off - self.pending)?;
                }
                self.clean = false;
                self.pending = 0;
            }
            self.off += n as u64;
            i += n;
        }
        self.put(&data[run_start..], run_off)
    }

    /// Leaves a hole up to `off` (not before where writing stands): the data of a
    /// sparse file's next extent is written from there.
    fn skip_to(&mut self, off: u64) {
        if off > self.off {
            // Zeros held back lie in the hole now; the block's data, if any, starts at
            // `off` and is written as it comes.
            self.pending = 0;
            self.clean = false;
            self.off = off;
        }
    }

    /// Sets the length when the file ends in a hole or in held-back zeros.
    fn finish(self, size: u64) -> io::Result<()> {
        if self.end < size {
            sys::truncate_fd(self.fd, size)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// A folder artifact, walked as a source.

pub(super) struct FolderSource<P> {
    pub(super) ex: Extractor<P>,
    buf: Vec<u8>,
    /// The real error behind the last `SinkError` returned: the walker would lose the
    /// entry's name and the reason.
    failed: Option<ArchiveError>,
}

struct ReadContent<'a> {
    data: &'a mut dyn Read,
    buf: &'a mut [u8],
}

impl Content for ReadContent<'_> {
    fn chunk(&mut self, max: usize) -> io::Result<&[u8]> {
        let want = max.min(self.buf.len());
        let n = read_some(self.data, &mut self.buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being copied",
            ));
        }
        Ok(&self.buf[..n])
    }
}

impl<P: Place> Sink for FolderSource<P> {
    fn add(&mut self, entry: &Entry<'_>, data: &mut dyn Read) -> Result<Copied, SinkError> {
        let m = &entry.meta;
        let what = match entry.kind {
            Kind::Dir => What::Dir,
            Kind::File => What::File {
                size: entry.data_len(),
                sparse: entry.sparse.map(|extents| Sparse {
                    real_size: m.size,
                    extents,
                }),
            },
            Kind::Symlink(to) => What::Symlink(to),
            Kind::Hardlink(to) => What::Hardlink(to),
            Kind::Fifo => What::Fifo,
            Kind::Char | Kind::Block => What::Device,
        };
        let attrs = Attrs {
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            mtime: (m.mtime as i64, i64::from(m.mtime_nsec)),
            xattrs: Vec::new(),
        };
        let shown = lossy(entry.path);
        let mut content = ReadContent {
            data,
            buf: &mut self.buf,
        };
        match self.ex.add(entry.path, &shown, what, &attrs, &mut content) {
            Ok(()) => Ok(Copied {
                read: entry.data_len(),
                shrunk: false,
            }),
            Err(e) => {
                self.failed = Some(e);
                Err(SinkError::Unsafe("see the stored error"))
            }
        }
    }
}

#[cfg(test)]
#[path = "extract_tests.rs"]
pub(super) mod tests;
