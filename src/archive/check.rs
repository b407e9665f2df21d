//! Extraction without writing: a tar is read by the same reader (`tar_in`) and every entry
//! goes through the same checks (`Extractor`) as in a restore, into a [`Checker`] that
//! only follows what the writer would do below an empty target. So an archive that passes
//! is one that a restore reads to its end and refuses nothing of: no `..`, absolute path
//! or NUL byte, no path through a symlink or a file, no device node, no hard link to what
//! is not there, nothing past the manifest's limits, no truncation, no malformed header.
//!
//! What the target's filesystem might still refuse (no space left, owners a user
//! namespace cannot map, extended attributes, which are best effort anyway) is not known
//! here.

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::BuildHasher;
use std::io::{self, Read};
use std::path::Path;

use super::ArchiveError;
use super::extract::{
    Attrs, DEVICE, ExtractLimits, ExtractStats, Extractor, Fail, Origin, Place, What,
    check_symlink_target, folder_in_the_way, ids, link_missing, link_refused, link_target,
    link_to_folder, passes_through, split,
};
use super::tar_in::{self, Content};
use crate::progress::Progress;

/// The longest name of one path component, and of a symlink's target, that Linux takes.
const NAME_MAX: usize = 255;
const PATH_MAX: usize = 4096;

/// Why a tar did not pass.
#[derive(Debug)]
pub(super) enum CheckError {
    /// Reading the bytes under the tar failed: an I/O or decompression error.
    Source(io::Error),
    /// The tar itself: malformed, truncated, or holding what extraction refuses.
    Content(ArchiveError),
}

/// Reads a decompressed tar stream to its end as [`super::extract_tar`] would, without
/// writing anything, and returns what extraction would count.
pub(super) fn check_tar<R: Read + Send>(
    reader: R,
    limits: ExtractLimits,
    progress: &dyn Progress,
) -> Result<ExtractStats, CheckError> {
    let mut ex = Extractor::new(Checker::new(progress), Path::new(""), Origin::Tar, limits);
    tar_in::with_stream(reader, |stream| match tar_in::read_tar(stream, &mut ex) {
        Ok(()) => Ok(ex.stats),
        Err(ArchiveError::Stream { source, .. }) if stream.source_failed() => {
            Err(CheckError::Source(source))
        }
        Err(e) => Err(CheckError::Content(e)),
    })
}

/// What a path below the target would be once extracted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    Symlink,
    /// A file or a fifo.
    Other,
}

/// A path by two independently keyed 64-bit hashes of its bytes. Holding the paths
/// themselves would take memory in proportion to all the names in the archive; these
/// take 16 bytes an entry, and the keys are random per check, so an archive cannot be
/// made to collide.
type Key = (u64, u64);

/// Follows in memory what [`super::extract`]'s writer would do below an empty target, and
/// refuses what it would refuse, with the same words.
struct Checker<'p> {
    nodes: HashMap<Key, Node>,
    hashers: (RandomState, RandomState),
    /// The last parent found to be folders all the way down. A folder is never replaced
    /// (a later entry of the same name is refused), so its prefixes need no look-up again.
    known: Vec<u8>,
    /// Extraction by root sets owners, and refuses those out of range.
    chown: bool,
    progress: &'p dyn Progress,
}

/// The length of the longest run of whole leading components `parent` shares with
/// `known`: 0, `parent.len()`, or the index of a `/` in `parent`.
fn shared_prefix(known: &[u8], parent: &[u8]) -> usize {
    let same = known.iter().zip(parent).take_while(|(a, b)| a == b).count();
    let ends_component = |p: &[u8]| same == p.len() || p[same] == b'/';
    if ends_component(known) && ends_component(parent) {
        return same;
    }
    parent[..same].iter().rposition(|b| *b == b'/').unwrap_or(0)
}

fn too_long(action: &'static str) -> Fail {
    Fail::Io(action, io::Error::from_raw_os_error(libc::ENAMETOOLONG))
}

impl<'p> Checker<'p> {
    fn new(progress: &'p dyn Progress) -> Self {
        Checker {
            nodes: HashMap::new(),
            hashers: (RandomState::new(), RandomState::new()),
            known: Vec::new(),
            chown: super::sys::is_root(),
            progress,
        }
    }

    fn key(&self, path: &[u8]) -> Key {
        (self.hashers.0.hash_one(path), self.hashers.1.hash_one(path))
    }

    /// As the writer's `open_parent`: every component of `parent` must be a folder, and
    /// missing ones are created when `create`; without `create`, false when one is missing.
    fn parents(&mut self, parent: &[u8], create: bool) -> Result<bool, Fail> {
        let mut at = shared_prefix(&self.known, parent);
        while at < parent.len() {
            let start = if at == 0 { 0 } else { at + 1 };
            let end = parent[start..]
                .iter()
                .position(|b| *b == b'/')
                .map_or(parent.len(), |i| start + i);
            if end - start > NAME_MAX {
                return Err(too_long("opening"));
            }
            let so_far = &parent[..end];
            let key = self.key(so_far);
            match self.nodes.get(&key) {
                Some(Node::Dir) => {}
                Some(node) => return Err(passes_through(so_far, *node == Node::Symlink)),
                None if create => {
                    self.nodes.insert(key, Node::Dir);
                }
                None => return Ok(false),
            }
            at = end;
        }
        self.known.clear();
        self.known.extend_from_slice(parent);
        Ok(true)
    }

    /// As the writer's `retry_exists`: a new entry takes the place of whatever non-folder
    /// had its name; a folder in the way is refused.
    fn put(&mut self, path: &[u8], node: Node) -> Result<(), Fail> {
        let (_, name) = split(path);
        if name.len() > NAME_MAX {
            return Err(too_long("creating"));
        }
        match self.nodes.entry(self.key(path)) {
            Entry::Occupied(e) if *e.get() == Node::Dir => Err(folder_in_the_way()),
            Entry::Occupied(mut e) => {
                e.insert(node);
                Ok(())
            }
            Entry::Vacant(e) => {
                e.insert(node);
                Ok(())
            }
        }
    }

    /// What the existing, non-folder entry a hard link at `path` points at is.
    fn link_source(&mut self, path: &[u8], to: &[u8]) -> Result<Node, Fail> {
        let to = link_target(path, to)?;
        let (parent, _) = split(&to);
        match self.parents(parent, false) {
            Ok(true) => {}
            Ok(false) => return Err(link_missing(&to)),
            Err(Fail::Refuse(reason)) => return Err(link_refused(&to, reason)),
            Err(e) => return Err(e),
        }
        match self.nodes.get(&self.key(&to)) {
            Some(Node::Dir) => Err(link_to_folder(&to)),
            Some(node) => Ok(*node),
            None => Err(link_missing(&to)),
        }
    }

    fn owner(&self, attrs: &Attrs) -> Result<(), Fail> {
        if self.chown {
            ids(attrs.uid, attrs.gid)?;
        }
        Ok(())
    }
}

impl Place for Checker<'_> {
    fn root(&mut self, attrs: &Attrs) -> Result<(), Fail> {
        self.owner(attrs)
    }

    fn place(
        &mut self,
        path: &[u8],
        _shown: &str,
        what: What<'_>,
        attrs: &Attrs,
        content: &mut dyn Content,
    ) -> Result<(), Fail> {
        let (parent, name) = split(path);
        if let What::Hardlink(to) = what {
            // The source first, as the writer does.
            let node = self.link_source(path, to)?;
            self.parents(parent, true)?;
            return self.put(path, node);
        }
        self.parents(parent, true)?;
        match what {
            What::Dir => {
                if name.len() > NAME_MAX {
                    return Err(too_long("creating"));
                }
                // Whatever had the name goes; a folder stays. Its owner is set once all
                // entries are in: this refuses one out of range a little earlier.
                self.nodes.insert(self.key(path), Node::Dir);
                self.owner(attrs)?;
            }
            What::File { size, .. } => {
                self.put(path, Node::Other)?;
                let mut left = size;
                while left > 0 {
                    let want = usize::try_from(left).unwrap_or(usize::MAX);
                    let data = content.chunk(want).map_err(|e| Fail::Io("reading", e))?;
                    left -= data.len() as u64;
                    self.progress.bytes(data.len() as u64);
                }
                self.owner(attrs)?;
            }
            What::Symlink(to) => {
                check_symlink_target(to)?;
                if to.len() >= PATH_MAX {
                    return Err(too_long("creating"));
                }
                self.put(path, Node::Symlink)?;
                self.owner(attrs)?;
            }
            What::Fifo => {
                self.put(path, Node::Other)?;
                self.owner(attrs)?;
            }
            What::Hardlink(_) => unreachable!("placed above"),
            What::Device => return Err(Fail::Refuse(DEVICE.into())),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_prefix_stops_at_whole_components() {
        assert_eq!(shared_prefix(b"", b"a/b"), 0);
        assert_eq!(shared_prefix(b"a/b", b"a/b"), 3);
        assert_eq!(shared_prefix(b"a/b", b"a/b/c"), 3);
        assert_eq!(shared_prefix(b"a/b/c", b"a/b"), 3);
        assert_eq!(shared_prefix(b"a/b", b"a/bc"), 1);
        assert_eq!(shared_prefix(b"a/bc", b"a/b"), 1);
        assert_eq!(shared_prefix(b"ab", b"a"), 0);
        assert_eq!(shared_prefix(b"a/b", b"x"), 0);
        assert_eq!(shared_prefix(b"a/b", b""), 0);
    }
}
