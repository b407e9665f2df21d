//! One file-system object on its way into an artifact, whichever side it comes from (a
//! directory walk or a tar stream) and whichever side it goes to (a tar or a folder).

use std::io::{self, Read};

use super::sparse::Extent;

/// What an entry is. Link targets are raw bytes: names are bytes on unix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind<'a> {
    Dir,
    File,
    Symlink(&'a [u8]),
    /// A hard link to an entry already added, by its archive path.
    Hardlink(&'a [u8]),
    Fifo,
    Char,
    Block,
}

/// Metadata kept for every entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch; tar cannot hold earlier times.
    pub mtime: u64,
    /// Nanoseconds past `mtime`, kept in a pax record when not 0.
    pub mtime_nsec: u32,
    /// Bytes of content, for regular files only.
    pub size: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
}

pub(crate) struct Entry<'a> {
    /// Relative, `/`-separated, without a trailing `/`.
    pub path: &'a [u8],
    pub kind: Kind<'a>,
    pub meta: Meta,
    /// Owner names; empty when unknown.
    pub uname: &'a [u8],
    pub gname: &'a [u8],
    /// Pax records to carry over (xattrs, precise times), minus path and linkpath.
    pub pax: &'a [(Vec<u8>, Vec<u8>)],
    /// For a file with holes, where its data lies: its content is then only the bytes of
    /// these extents, one after the other, and the rest of its `meta.size` bytes are holes.
    pub sparse: Option<&'a [Extent]>,
}

impl Entry<'_> {
    /// Bytes of content that come with the entry: a sparse file's data only.
    pub(crate) fn data_len(&self) -> u64 {
        match self.sparse {
            Some(extents) => extents.iter().map(|e| e.1).sum(),
            None => self.meta.size,
        }
    }
}

/// Why adding an entry failed: the source and the destination get different context.
#[derive(Debug)]
pub(crate) enum SinkError {
    Read(io::Error),
    Write(io::Error),
    Unsafe(&'static str),
}

/// What became of a regular file's content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Copied {
    /// Bytes read from the source.
    pub read: u64,
    /// The source ended before `Meta::size` bytes.
    pub shrunk: bool,
}

/// Receives entries in order. Parents come before their children, except in tar streams
/// that omit folder entries, which sinks must tolerate.
pub(crate) trait Sink {
    /// Adds one entry; for `Kind::File`, reads at most [`Entry::data_len`] bytes of `data`.
    fn add(&mut self, entry: &Entry<'_>, data: &mut dyn Read) -> Result<Copied, SinkError>;

    /// Everything below the folder `path` has been added.
    fn end_dir(&mut self, _path: &[u8]) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Reads until `buf` is full or the source ends, retrying interrupted reads.
pub(crate) fn read_some(data: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match data.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}
