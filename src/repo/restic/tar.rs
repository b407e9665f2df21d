//! A folder of a snapshot as a tar stream, so a restore reads a restic snapshot through
//! the same extractor as an archive: the same checks of hostile names and links, the
//! same staging folder and swap.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use bytes::Bytes;
use rustic_core::repofile::{BlobType, Node, NodeType};
use rustic_core::{BlobId, DataId, IndexedFull, LsOptions, Repository, TreeId};

use crate::archive::entry::{Entry as TarEntry, Kind, Meta, Sink, SinkError};
use crate::archive::tar_out::TarSink;
use crate::progress::Silent;

/// Go's file mode bits, as restic stores modes.
const GO_SETUID: u32 = 1 << 23;
const GO_SETGID: u32 = 1 << 22;
const GO_STICKY: u32 = 1 << 20;

/// The unix permission bits (with setuid, setgid, sticky) of a restic mode.
fn unix_mode(go: u32) -> u32 {
    let mut mode = go & 0o777;
    if go & GO_SETUID != 0 {
        mode |= 0o4000;
    }
    if go & GO_SETGID != 0 {
        mode |= 0o2000;
    }
    if go & GO_STICKY != 0 {
        mode |= 0o1000;
    }
    mode
}

/// The content of a file node, blob after blob.
struct Blobs<'r, S> {
    repo: &'r Repository<S>,
    ids: std::vec::IntoIter<DataId>,
    current: Bytes,
}

impl<S: IndexedFull> Read for Blobs<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            let Some(id) = self.ids.next() else {
                return Ok(0);
            };
            self.current = self
                .repo
                .get_blob_cached(&BlobId::from(*id), BlobType::Data)
                .map_err(|e| io::Error::other(e.display_log()))?;
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

fn sink_error(e: SinkError) -> io::Error {
    match e {
        SinkError::Read(e) | SinkError::Write(e) => e,
        SinkError::Unsafe(what) => io::Error::new(io::ErrorKind::InvalidData, what),
    }
}

/// Writes the folder `path` of the snapshot tree `tree` as a tar stream to `out`, its
/// entries relative to that folder (as holdfast's own volume archives are).
pub fn write_tar<S: IndexedFull>(
    repo: &Repository<S>,
    tree: TreeId,
    path: &Path,
    out: impl Write,
) -> io::Result<()> {
    let other = |e: Box<rustic_core::RusticError>| io::Error::other(e.display_log());
    let top = repo.node_from_path(tree, path).map_err(other)?;
    let mut sink = TarSink::new(out, &Silent);
    let options = LsOptions::default().recursive(true);
    // Hard links: the first path of each (device, inode) is the file, the others link.
    let mut linked: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for item in repo.ls(&top, &options).map_err(other)? {
        let (relative, node) = item.map_err(other)?;
        let path = relative.as_os_str().as_bytes();
        let m = &node.meta;
        let first = if node.node_type == NodeType::File && m.links > 1 && m.inode != 0 {
            match linked.entry((m.device_id, m.inode)) {
                Entry::Occupied(first) => Some(first.get().clone()),
                Entry::Vacant(slot) => {
                    slot.insert(path.to_vec());
                    None
                }
            }
        } else {
            None
        };
        add(repo, &mut sink, path, &node, first.as_deref())?;
    }
    sink.finish()?.flush()
}

fn add<S: IndexedFull, W: Write>(
    repo: &Repository<S>,
    sink: &mut TarSink<'_, W>,
    path: &[u8],
    node: &Node,
    link_to: Option<&[u8]>,
) -> io::Result<()> {
    let m = &node.meta;
    let mtime = m.mtime.unwrap_or_default();
    let mut meta = Meta {
        mode: unix_mode(m.mode.unwrap_or(0o644)),
        uid: m.uid.unwrap_or(0).into(),
        gid: m.gid.unwrap_or(0).into(),
        mtime: u64::try_from(mtime.as_second()).unwrap_or(0),
        mtime_nsec: u32::try_from(mtime.subsec_nanosecond()).unwrap_or(0),
        ..Meta::default()
    };
    let link;
    let kind = match &node.node_type {
        NodeType::Dir => Kind::Dir,
        NodeType::File => match link_to {
            Some(first) => Kind::Hardlink(first),
            None => {
                meta.size = m.size;
                Kind::File
            }
        },
        NodeType::Symlink { .. } => {
            link = node.node_type.to_link().as_os_str().as_bytes().to_vec();
            Kind::Symlink(&link)
        }
        NodeType::Dev { device } | NodeType::Chardev { device } => {
            meta.dev_major = libc::major(*device);
            meta.dev_minor = libc::minor(*device);
            if matches!(node.node_type, NodeType::Dev { .. }) {
                Kind::Block
            } else {
                Kind::Char
            }
        }
        NodeType::Fifo => Kind::Fifo,
        // A socket is not something a backup can bring back.
        NodeType::Socket => return Ok(()),
    };
    let uname = m.user.as_deref().unwrap_or_default().as_bytes();
    let gname = m.group.as_deref().unwrap_or_default().as_bytes();
    let entry = TarEntry {
        path,
        kind,
        meta,
        uname,
        gname,
        pax: &[],
        sparse: None,
    };
    let mut data = Blobs {
        repo,
        ids: match kind {
            Kind::File => node.content.clone().unwrap_or_default().into_iter(),
            _ => Vec::new().into_iter(),
        },
        current: Bytes::new(),
    };
    let copied = sink.add(&entry, &mut data).map_err(sink_error)?;
    if kind == Kind::File && copied.read != meta.size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: the snapshot holds {} bytes of a file of {}",
                String::from_utf8_lossy(path),
                copied.read,
                meta.size
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_modes_become_unix_modes() {
        assert_eq!(unix_mode(0o755), 0o755);
        assert_eq!(unix_mode((1 << 31) | 0o700), 0o700);
        assert_eq!(unix_mode(GO_SETUID | GO_STICKY | 0o644), 0o5644);
        assert_eq!(unix_mode(GO_SETGID | 0o2755), 0o2755);
    }
}
