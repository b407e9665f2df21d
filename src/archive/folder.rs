//! The folder format: a plain copy of the tree, for tools that deduplicate on their own.
//! Its manifest sha256 is that of the canonical listing (see the `listing` module).

use std::ffi::{CString, OsStr};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::entry::{Copied, Entry, Kind, Meta, Sink, SinkError, read_some};
use super::excludes::bytes_path;
use super::sparse::Extent;
use super::sys::{self, FileType};
use crate::progress::Progress;

const BUFFER: usize = 256 * 1024;

/// Writes entries below `root`, never outside it: paths with `..`, absolute paths and
/// paths through symlinks are refused, whatever a tar stream claims.
pub(crate) struct FolderSink<'p> {
    root: PathBuf,
    buf: Vec<u8>,
    chown: bool,
    /// Folders whose mode and mtime are set once their contents are written: writing a
    /// file would bump the mtime, and a read-only mode would forbid the write.
    pending: Vec<(Vec<u8>, Meta)>,
    /// The last parent folder checked to be a real folder below `root`.
    checked_parent: Vec<u8>,
    progress: &'p dyn Progress,
}

fn unsafe_path(reason: &'static str) -> SinkError {
    SinkError::Unsafe(reason)
}

/// `a/./b//c` -> `a/b/c`; refuses `..` and absolute paths.
pub(crate) fn clean_path(path: &[u8]) -> Result<Vec<u8>, SinkError> {
    if path.first() == Some(&b'/') {
        return Err(unsafe_path("absolute path"));
    }
    let mut out = Vec::with_capacity(path.len());
    for part in path.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(unsafe_path("path with `..`")),
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

fn parent_of(path: &[u8]) -> &[u8] {
    path.iter()
        .rposition(|b| *b == b'/')
        .map_or(&path[..0], |i| &path[..i])
}

fn set_mtime(path: &Path, meta: &Meta) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name holds a NUL"))?;
    let time = (meta.mtime as i64, i64::from(meta.mtime_nsec));
    sys::set_times_at(sys::CWD, &c, time)
}

impl<'p> FolderSink<'p> {
    /// `root` must exist and be empty.
    pub(crate) fn new(root: PathBuf, progress: &'p dyn Progress) -> Self {
        FolderSink {
            root,
            buf: vec![0; BUFFER],
            chown: sys::is_root(),
            pending: Vec::new(),
            checked_parent: Vec::new(),
            progress,
        }
    }

    /// Applies the metadata of folders still pending, deepest first.
    pub(crate) fn finish(mut self) -> Result<(), SinkError> {
        while let Some((path, meta)) = self.pending.pop() {
            self.apply(&self.root.join(bytes_path(&path)), &meta, false)?;
        }
        Ok(())
    }

    /// Checks that every folder above `path` is a real folder, creating missing ones.
    fn parents(&mut self, path: &[u8], create: bool) -> Result<(), SinkError> {
        let parent = parent_of(path);
        if parent.is_empty() || parent == &self.checked_parent[..] {
            return Ok(());
        }
        let mut end = 0;
        while end < parent.len() {
            end = parent[end + 1..]
                .iter()
                .position(|b| *b == b'/')
                .map_or(parent.len(), |i| end + 1 + i);
            let dir = self.root.join(bytes_path(&parent[..end]));
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(_) => return Err(unsafe_path("a parent folder is a symlink or a file")),
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => DirBuilder::new()
                    .mode(0o755)
                    .create(&dir)
                    .map_err(SinkError::Write)?,
                Err(e) => return Err(SinkError::Write(e)),
            }
        }
        self.checked_parent.clear();
        self.checked_parent.extend_from_slice(parent);
        Ok(())
    }

    fn apply(&self, path: &Path, meta: &Meta, symlink: bool) -> Result<(), SinkError> {
        // chown first: it clears setuid and setgid bits.
        if self.chown {
            std::os::unix::fs::lchown(path, Some(meta.uid as u32), Some(meta.gid as u32))
                .map_err(SinkError::Write)?;
        }
        if !symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(meta.mode & 0o7777))
                .map_err(SinkError::Write)?;
        }
        set_mtime(path, meta).map_err(SinkError::Write)
    }

    /// Makes room for a new non-folder entry; a folder in the way is an error.
    fn clear(path: &Path) -> Result<(), SinkError> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_dir() => Err(unsafe_path("a folder is in the way")),
            Ok(_) => fs::remove_file(path).map_err(SinkError::Write),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SinkError::Write(e)),
        }
    }

    /// Writes a file's content; a sparse file's extents where they lie, with holes
    /// between them.
    fn file(
        &mut self,
        target: &Path,
        meta: &Meta,
        sparse: Option<&[Extent]>,
        data: &mut dyn Read,
    ) -> Result<Copied, SinkError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(target)
            .map_err(SinkError::Write)?;
        let whole = [(0, meta.size)];
        let mut copied = Copied::default();
        for &(off, len) in sparse.unwrap_or(&whole) {
            file.seek(SeekFrom::Start(off)).map_err(SinkError::Write)?;
            self.copy(&mut file, len, data, &mut copied)?;
            if copied.shrunk {
                return Ok(copied);
            }
        }
        if sparse.is_some() {
            file.set_len(meta.size).map_err(SinkError::Write)?;
        }
        Ok(copied)
    }

    fn copy(
        &mut self,
        file: &mut fs::File,
        len: u64,
        data: &mut dyn Read,
        copied: &mut Copied,
    ) -> Result<(), SinkError> {
        let mut remaining = len;
        while remaining > 0 {
            let want = self
                .buf
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            let n = read_some(data, &mut self.buf[..want]).map_err(SinkError::Read)?;
            if n == 0 {
                // Unlike tar, a folder has no header to keep consistent: keep what was read.
                copied.shrunk = true;
                break;
            }
            file.write_all(&self.buf[..n]).map_err(SinkError::Write)?;
            remaining -= n as u64;
            copied.read += n as u64;
            self.progress.bytes(n as u64);
            if self.progress.cancelled() {
                return Err(SinkError::Write(super::cancelled()));
            }
        }
        Ok(())
    }
}

impl Sink for FolderSink<'_> {
    fn add(&mut self, entry: &Entry<'_>, data: &mut dyn Read) -> Result<Copied, SinkError> {
        let path = clean_path(entry.path)?;
        if path.is_empty() {
            return Ok(Copied::default());
        }
        self.parents(&path, true)?;
        let target = self.root.join(bytes_path(&path));
        let meta = &entry.meta;
        let mut copied = Copied::default();
        match entry.kind {
            Kind::Dir => {
                match fs::symlink_metadata(&target) {
                    Ok(m) if m.file_type().is_dir() => {}
                    other => {
                        if other.is_ok() {
                            fs::remove_file(&target).map_err(SinkError::Write)?;
                        }
                        DirBuilder::new()
                            .mode(0o700)
                            .create(&target)
                            .map_err(SinkError::Write)?;
                    }
                }
                self.pending.push((path, *meta));
                return Ok(copied);
            }
            Kind::File => {
                Self::clear(&target)?;
                copied = self.file(&target, meta, entry.sparse, data)?;
                self.apply(&target, meta, false)?;
            }
            Kind::Symlink(to) => {
                Self::clear(&target)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(to), &target)
                    .map_err(SinkError::Write)?;
                self.apply(&target, meta, true)?;
            }
            Kind::Hardlink(to) => {
                let to = clean_path(to)?;
                if to.is_empty() {
                    return Err(unsafe_path("hard link to the root"));
                }
                self.parents(&to, false)?;
                let source = self.root.join(bytes_path(&to));
                match fs::symlink_metadata(&source) {
                    Ok(m) if !m.file_type().is_dir() => {}
                    Ok(_) => return Err(unsafe_path("hard link to a folder")),
                    Err(e) => return Err(SinkError::Write(e)),
                }
                Self::clear(&target)?;
                fs::hard_link(&source, &target).map_err(SinkError::Write)?;
            }
            Kind::Fifo | Kind::Char | Kind::Block => {
                Self::clear(&target)?;
                let kind = match entry.kind {
                    Kind::Fifo => FileType::Fifo,
                    Kind::Char => FileType::CharacterDevice,
                    _ => FileType::BlockDevice,
                };
                let c = CString::new(target.as_os_str().as_bytes())
                    .map_err(|_| unsafe_path("name holds a NUL"))?;
                let dev = rustix::fs::makedev(meta.dev_major, meta.dev_minor);
                sys::mknod_at(sys::CWD, &c, kind, 0o600, dev).map_err(SinkError::Write)?;
                self.apply(&target, meta, false)?;
            }
        }
        Ok(copied)
    }

    fn end_dir(&mut self, path: &[u8]) -> Result<(), SinkError> {
        if self.pending.last().is_some_and(|(p, _)| p == path)
            && let Some((p, meta)) = self.pending.pop()
        {
            self.apply(&self.root.join(bytes_path(&p)), &meta, false)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;

    #[test]
    fn clean_path_normalises_and_refuses_escapes() {
        assert_eq!(clean_path(b"a/./b//c/").unwrap(), b"a/b/c");
        assert!(clean_path(b"a/../../etc").is_err());
        assert!(clean_path(b"/etc/passwd").is_err());
        assert_eq!(clean_path(b"./").unwrap(), b"");
    }

    fn entry<'a>(path: &'a [u8], kind: Kind<'a>) -> Entry<'a> {
        Entry {
            path,
            kind,
            meta: Meta {
                mode: 0o644,
                ..Meta::default()
            },
            uname: b"",
            gname: b"",
            pax: &[],
            sparse: None,
        }
    }

    #[test]
    fn entries_through_symlinks_or_outside_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        fs::create_dir(&root).unwrap();
        let mut sink = FolderSink::new(root.clone(), &Silent);
        let escape = outside.path().as_os_str().as_bytes().to_vec();
        sink.add(&entry(b"link", Kind::Symlink(&escape)), &mut io::empty())
            .unwrap();
        for (path, kind) in [
            (&b"link/evil"[..], Kind::File),
            (b"../evil", Kind::File),
            (b"/evil", Kind::File),
            (b"hard", Kind::Hardlink(b"link/x")),
            (b"hard2", Kind::Hardlink(b"../../etc/passwd")),
        ] {
            let err = sink.add(&entry(path, kind), &mut io::empty()).unwrap_err();
            assert!(matches!(err, SinkError::Unsafe(_)), "{path:?}: {err:?}");
        }
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    }
}
