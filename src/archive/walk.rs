//! Walks a folder tree in a fixed order (names sorted by bytes within each folder, a
//! folder before its contents) and hands every entry to a sink. Live data is expected:
//! whatever vanishes between listing and opening is skipped and counted, never an error.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::ArchiveError;
use super::entry::{Entry, Kind, Meta, Sink, SinkError};
use super::excludes::{Excludes, bytes_path};
use super::sparse::{self, Extent};
use super::sys::{self, FileType, Owners, Stat};

/// Counts for the manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Walked {
    pub entries: u64,
    pub excluded: u64,
    /// Vanished while walking, or sockets, which no archive format can hold.
    pub skipped: u64,
    pub source_bytes: u64,
    /// Files that shrank while they were read, padded with zeros to their size at open.
    pub shrunk: Shrunk,
}

/// The files that shrank while being read: every one counted, the first
/// [`Shrunk::KEPT`] named, so a log folder truncated in a loop cannot grow the list without bound.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shrunk {
    pub count: u64,
    pub paths: Vec<String>,
}

impl Shrunk {
    pub const KEPT: usize = 20;

    pub fn add(&mut self, path: String) {
        self.count += 1;
        if self.paths.len() < Self::KEPT {
            self.paths.push(path);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

struct Frame {
    dir: OwnedFd,
    names: Vec<(std::ffi::CString, FileType)>,
    next: usize,
    /// Length of the folder's own path in the path buffer (0 for the root).
    own_len: usize,
}

struct Walker<'a> {
    src: &'a Path,
    out: &'a Path,
    excludes: &'a Excludes,
    sink: &'a mut dyn Sink,
    owners: Owners,
    /// First archive path of every multiply-linked inode seen, by (device, inode).
    links: HashMap<(u64, u64), Vec<u8>>,
    stats: Walked,
}

/// Archives the contents of `src` (not `src` itself) into `sink`. `out` names the
/// artifact in write errors.
pub(crate) fn walk(
    src: &Path,
    out: &Path,
    excludes: &Excludes,
    sink: &mut dyn Sink,
) -> Result<Walked, ArchiveError> {
    let root = sys::open_dir(src).map_err(|e| ArchiveError::io("opening source folder", src, e))?;
    let st = sys::stat_fd(&root).map_err(|e| ArchiveError::io("inspecting", src, e))?;
    if excludes.is_never_entered(st.st_dev, st.st_ino) {
        tracing::info!(path = %src.display(), "left out: holdfast's own folder");
        return Ok(Walked {
            excluded: 1,
            ..Walked::default()
        });
    }
    let names = sys::list_dir(&root).map_err(|e| ArchiveError::io("listing", src, e))?;
    let mut walker = Walker {
        src,
        out,
        excludes,
        sink,
        owners: Owners::default(),
        links: HashMap::new(),
        stats: Walked::default(),
    };
    let mut stack = vec![Frame {
        dir: root,
        names,
        next: 0,
        own_len: 0,
    }];
    let mut path: Vec<u8> = Vec::with_capacity(4096);
    while let Some(top) = stack.last_mut() {
        if top.next == top.names.len() {
            let done = stack.pop().map_or(0, |f| f.own_len);
            if !stack.is_empty() {
                walker
                    .sink
                    .end_dir(&path[..done])
                    .map_err(|e| walker.error(&path[..done], e))?;
            }
            continue;
        }
        let name = std::mem::take(&mut top.names[top.next].0);
        let d_type = top.names[top.next].1;
        top.next += 1;
        path.truncate(top.own_len);
        if top.own_len > 0 {
            path.push(b'/');
        }
        path.extend_from_slice(name.as_bytes());
        if let Some(frame) = walker.visit(&top.dir, &name, d_type, &path)? {
            stack.push(frame);
        }
    }
    Ok(walker.stats)
}

fn vanished(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

fn meta(st: &Stat) -> Meta {
    let dev = st.st_rdev;
    Meta {
        mode: st.st_mode & 0o7777,
        uid: u64::from(st.st_uid),
        gid: u64::from(st.st_gid),
        mtime: u64::try_from(st.st_mtime).unwrap_or(0),
        mtime_nsec: if st.st_mtime < 0 {
            0
        } else {
            u32::try_from(st.st_mtime_nsec).unwrap_or(0)
        },
        size: if sys::file_type(st) == FileType::RegularFile {
            st.st_size as u64
        } else {
            0
        },
        dev_major: (((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)) as u32,
        dev_minor: (((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)) as u32,
    }
}

impl Walker<'_> {
    fn source(&self, path: &[u8]) -> PathBuf {
        self.src.join(bytes_path(path))
    }

    fn error(&self, path: &[u8], e: SinkError) -> ArchiveError {
        match e {
            SinkError::Read(e) => ArchiveError::io("reading", &self.source(path), e),
            SinkError::Write(e) => ArchiveError::io("writing", self.out, e),
            SinkError::Unsafe(reason) => ArchiveError::Unsafe {
                entry: String::from_utf8_lossy(path).into_owned(),
                reason,
            },
        }
    }

    fn skip(&mut self, path: &[u8], why: &str) {
        tracing::warn!(path = %self.source(path).display(), "skipped: {why}");
        self.stats.skipped += 1;
    }

    /// Adds one entry; returns the frame to descend into for a folder.
    fn visit(
        &mut self,
        dir: &OwnedFd,
        name: &CStr,
        d_type: FileType,
        path: &[u8],
    ) -> Result<Option<Frame>, ArchiveError> {
        let mut st = None;
        let is_dir = match d_type {
            FileType::Directory => true,
            FileType::Unknown => match sys::stat_at(dir, name) {
                Ok(s) => {
                    st = Some(s);
                    sys::file_type(&s) == FileType::Directory
                }
                Err(e) if vanished(&e) => {
                    self.skip(path, "vanished before it was read");
                    return Ok(None);
                }
                Err(e) => return Err(ArchiveError::io("inspecting", &self.source(path), e)),
            },
            _ => false,
        };
        if self.excludes.is_excluded(bytes_path(path), is_dir) {
            self.stats.excluded += 1;
            return Ok(None);
        }
        // Regular files, the bulk of the work, are opened right away and described by
        // fstat, so the header always matches the file actually read.
        let maybe_file = d_type == FileType::RegularFile
            || st.is_some_and(|s| sys::file_type(&s) == FileType::RegularFile);
        if maybe_file {
            match sys::open_read_at(dir, name, false) {
                Ok(fd) => {
                    let fst = sys::stat_fd(&fd)
                        .map_err(|e| ArchiveError::io("inspecting", &self.source(path), e))?;
                    if sys::file_type(&fst) == FileType::RegularFile {
                        self.file(fd, &fst, path)?;
                        return Ok(None);
                    }
                    st = Some(fst);
                }
                Err(e) if vanished(&e) => {
                    self.skip(path, "vanished before it was read");
                    return Ok(None);
                }
                // Replaced by a symlink: look again below.
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => st = None,
                Err(e) => return Err(ArchiveError::io("opening", &self.source(path), e)),
            }
        }
        let st = match st {
            Some(st) => st,
            None => match sys::stat_at(dir, name) {
                Ok(s) => s,
                Err(e) if vanished(&e) => {
                    self.skip(path, "vanished before it was read");
                    return Ok(None);
                }
                Err(e) => return Err(ArchiveError::io("inspecting", &self.source(path), e)),
            },
        };
        match sys::file_type(&st) {
            FileType::Directory => self.dir(dir, name, path),
            FileType::RegularFile => {
                // Seen as something else first and as a file now: let the next run take it.
                self.skip(path, "changed type while being read");
                Ok(None)
            }
            FileType::Symlink => {
                let target = match sys::read_link_at(dir, name) {
                    Ok(t) => t,
                    Err(e) if vanished(&e) || e.raw_os_error() == Some(libc::EINVAL) => {
                        self.skip(path, "vanished before it was read");
                        return Ok(None);
                    }
                    Err(e) => return Err(ArchiveError::io("reading link", &self.source(path), e)),
                };
                self.special(&st, path, Kind::Symlink(&target))?;
                Ok(None)
            }
            FileType::Fifo => self.special(&st, path, Kind::Fifo).map(|_| None),
            FileType::CharacterDevice => self.special(&st, path, Kind::Char).map(|_| None),
            FileType::BlockDevice => self.special(&st, path, Kind::Block).map(|_| None),
            _ => {
                self.skip(path, "sockets cannot be archived");
                Ok(None)
            }
        }
    }

    fn add(
        &mut self,
        st: &Stat,
        path: &[u8],
        kind: Kind<'_>,
        sparse: Option<&[Extent]>,
        data: &mut dyn io::Read,
    ) -> Result<(), ArchiveError> {
        // Both names stay borrowed from the cache: no allocation per entry.
        self.owners.resolve(st.st_uid, st.st_gid);
        let result = {
            let (uname, gname) = self.owners.names(st.st_uid, st.st_gid);
            let entry = Entry {
                path,
                kind,
                meta: meta(st),
                uname,
                gname,
                pax: &[],
                sparse,
            };
            self.sink.add(&entry, data)
        };
        let copied = result.map_err(|e| self.error(path, e))?;
        self.stats.entries += 1;
        self.stats.source_bytes += copied.read;
        if copied.shrunk {
            tracing::warn!(
                path = %self.source(path).display(),
                "file shrank while being read; padded with zeros to its size at open"
            );
            self.stats
                .shrunk
                .add(String::from_utf8_lossy(path).into_owned());
        }
        Ok(())
    }

    /// A second name of an inode already archived becomes a hard-link entry.
    fn earlier_link(&mut self, st: &Stat, path: &[u8]) -> Option<Vec<u8>> {
        if st.st_nlink < 2 {
            return None;
        }
        let key = (st.st_dev, st.st_ino);
        if let Some(first) = self.links.get(&key) {
            return Some(first.clone());
        }
        self.links.insert(key, path.to_vec());
        None
    }

    fn file(&mut self, fd: OwnedFd, st: &Stat, path: &[u8]) -> Result<(), ArchiveError> {
        if let Some(first) = self.earlier_link(st, path) {
            return self.add(st, path, Kind::Hardlink(&first), None, &mut io::empty());
        }
        let file = File::from(fd);
        // Fewer blocks than the length holds: there may be holes, and where the data lies
        // is worth asking.
        let size = meta(st).size;
        let maybe_sparse = u64::try_from(st.st_blocks).unwrap_or(0).saturating_mul(512) < size;
        let extents = if maybe_sparse {
            sparse::data_extents(&file, size)
                .map_err(|e| ArchiveError::io("finding the data of", &self.source(path), e))?
        } else {
            None
        };
        match extents {
            Some(extents) => {
                let mut data = ExtentReader {
                    file: &file,
                    extents: &extents,
                    next: 0,
                    done: 0,
                };
                self.add(st, path, Kind::File, Some(&extents), &mut data)
            }
            None => self.add(st, path, Kind::File, None, &mut &file),
        }
    }

    fn special(&mut self, st: &Stat, path: &[u8], kind: Kind<'_>) -> Result<(), ArchiveError> {
        if let Some(first) = self.earlier_link(st, path) {
            return self.add(st, path, Kind::Hardlink(&first), None, &mut io::empty());
        }
        self.add(st, path, kind, None, &mut io::empty())
    }

    fn dir(
        &mut self,
        parent: &OwnedFd,
        name: &CStr,
        path: &[u8],
    ) -> Result<Option<Frame>, ArchiveError> {
        let fd = match sys::open_read_at(parent, name, true) {
            Ok(fd) => fd,
            Err(e) if vanished(&e) || e.raw_os_error() == Some(libc::ELOOP) => {
                self.skip(path, "folder vanished before it was read");
                return Ok(None);
            }
            Err(e) => return Err(ArchiveError::io("opening", &self.source(path), e)),
        };
        let st =
            sys::stat_fd(&fd).map_err(|e| ArchiveError::io("inspecting", &self.source(path), e))?;
        if self.excludes.is_never_entered(st.st_dev, st.st_ino) {
            tracing::info!(path = %self.source(path).display(), "left out: holdfast's own folder");
            self.stats.excluded += 1;
            return Ok(None);
        }
        let names = match sys::list_dir(&fd) {
            Ok(n) => n,
            Err(e) if vanished(&e) => {
                self.skip(path, "folder vanished before it was read");
                return Ok(None);
            }
            Err(e) => return Err(ArchiveError::io("listing", &self.source(path), e)),
        };
        self.add(&st, path, Kind::Dir, None, &mut io::empty())?;
        Ok(Some(Frame {
            dir: fd,
            names,
            next: 0,
            own_len: path.len(),
        }))
    }
}

/// The bytes of a sparse file's extents, one after the other, read where each lies. A
/// file cut shorter than an extent ends the content there: the sink sees it shrank.
struct ExtentReader<'a> {
    file: &'a File,
    extents: &'a [Extent],
    /// The extent being read, and how much of it is read.
    next: usize,
    done: u64,
}

impl io::Read for ExtentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let Some(&(off, len)) = self.extents.get(self.next) else {
            return Ok(0);
        };
        let want = buf
            .len()
            .min(usize::try_from(len - self.done).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], off + self.done)?;
        self.done += n as u64;
        if self.done == len {
            self.next += 1;
            self.done = 0;
        }
        Ok(n)
    }
}
