//! What goes into a snapshot: a folder on this host (a volume, a bind mount) walked by
//! rustic with holdfast's exclude rules, one stream (a dump, as it comes out of the
//! database), or a few small files held in memory (the recipe).
//!
//! rustic's archiver logs and skips an entry it cannot read. holdfast does not let that
//! pass: every source here records what could not be listed, opened or read, and the
//! snapshot that misses something fails its run.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustic_core::repofile::{Metadata, Node, NodeType};
use rustic_core::{
    LocalSource, LocalSourceFilterOptions, LocalSourceSaveOptions, ReadSource, ReadSourceEntry,
    ReadSourceOpen, RusticResult,
};

use crate::archive::Excludes;

/// What a source could not read, shared with its readers on rustic's worker threads.
pub type Problems = Arc<Mutex<Vec<String>>>;

fn note(problems: &Problems, text: String) {
    problems
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(text);
}

/// A folder of this host, walked by rustic, with holdfast's excludes applied to paths
/// relative to it and holdfast's own folders never entered.
pub struct TreeSource {
    inner: LocalSource,
    root: PathBuf,
    excludes: Excludes,
    problems: Problems,
    cancelled: Cancelled,
}

/// Asked before each entry: true once the run is being cancelled (holdfast is stopping).
pub type Cancelled = Arc<dyn Fn() -> bool + Send + Sync>;

impl TreeSource {
    pub fn new(
        root: &Path,
        excludes: Excludes,
        problems: Problems,
        cancelled: Cancelled,
    ) -> RusticResult<TreeSource> {
        let save = LocalSourceSaveOptions::default();
        let filter = LocalSourceFilterOptions::default();
        let inner = LocalSource::new(save, &Default::default(), &filter, &[root])?;
        Ok(TreeSource {
            inner,
            root: root.to_path_buf(),
            excludes,
            problems,
            cancelled,
        })
    }
}

/// Opens a file of a [`TreeSource`], recording a failure.
pub struct Watched<O> {
    inner: O,
    path: PathBuf,
    problems: Problems,
}

impl<O: ReadSourceOpen> ReadSourceOpen for Watched<O> {
    type Reader = WatchedReader<O::Reader>;

    fn open(self) -> RusticResult<Self::Reader> {
        match self.inner.open() {
            Ok(reader) => Ok(WatchedReader {
                inner: reader,
                path: self.path,
                problems: self.problems,
            }),
            Err(e) => {
                note(
                    &self.problems,
                    format!(
                        "{}: cannot be opened: {}",
                        self.path.display(),
                        e.display_log()
                    ),
                );
                Err(e)
            }
        }
    }
}

/// Reads a file of a [`TreeSource`], recording a failure.
pub struct WatchedReader<R> {
    inner: R,
    path: PathBuf,
    problems: Problems,
}

impl<R> WatchedReader<R> {
    /// Reads `inner`, recording a failure as one of `path`.
    pub fn new(inner: R, path: PathBuf, problems: Problems) -> WatchedReader<R> {
        WatchedReader {
            inner,
            path,
            problems,
        }
    }
}

impl<R: Read> Read for WatchedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if e.kind() != io::ErrorKind::Interrupted {
                note(
                    &self.problems,
                    format!("{}: reading failed: {e}", self.path.display()),
                );
            }
        })
    }
}

type Item<O> = RusticResult<ReadSourceEntry<O>>;

impl ReadSource for TreeSource {
    type Open = Watched<<LocalSource as ReadSource>::Open>;
    type Iter = Box<dyn Iterator<Item = Item<Self::Open>> + Send>;

    fn size(&self) -> RusticResult<Option<u64>> {
        // No second walk just to show a total.
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        let (root, excludes, problems, cancelled) = (
            self.root.clone(),
            self.excludes.clone(),
            self.problems.clone(),
            self.cancelled.clone(),
        );
        let mut skipped: Option<PathBuf> = None;
        let mut stopped = false;
        Box::new(self.inner.entries().filter_map(move |item| {
            // Cancelled: no further entry, and the snapshot is refused for it.
            if stopped || cancelled() {
                if !stopped {
                    note(&problems, "the run was cancelled".to_string());
                    stopped = true;
                }
                return None;
            }
            let entry = match item {
                Ok(entry) => entry,
                Err(e) => {
                    note(&problems, format!("listing: {}", e.display_log()));
                    return None;
                }
            };
            if skipped.as_ref().is_some_and(|s| entry.path.starts_with(s)) {
                return None;
            }
            let relative = entry.path.strip_prefix(&root).unwrap_or(&entry.path);
            if !relative.as_os_str().is_empty() {
                let is_dir = entry.node.is_dir();
                let meta = &entry.node.meta;
                let own = is_dir && excludes.is_never_entered(meta.device_id, meta.inode);
                if own || excludes.is_excluded(relative, is_dir) {
                    if own {
                        tracing::info!(path = %entry.path.display(), "left out: holdfast's own folder");
                    }
                    if is_dir {
                        skipped = Some(entry.path.clone());
                    }
                    return None;
                }
            }
            let ReadSourceEntry { path, node, open } = entry;
            let open = open.map(|inner| Watched {
                inner,
                path: path.clone(),
                problems: problems.clone(),
            });
            Some(Ok(ReadSourceEntry { path, node, open }))
        }))
    }
}

/// One file whose content is read from a stream as it is produced: a dump.
pub struct StreamSource<R> {
    path: PathBuf,
    reader: Mutex<Option<R>>,
}

impl<R> StreamSource<R> {
    /// `path` is where the file is in the snapshot (`/dumps/db-postgres.sql`).
    pub fn new(path: PathBuf, reader: R) -> StreamSource<R> {
        StreamSource {
            path,
            reader: Mutex::new(Some(reader)),
        }
    }
}

/// A file node made now, readable by its owner only: dumps and recipes hold data.
fn file_node(path: &Path, size: u64) -> Node {
    let meta = Metadata {
        mode: Some(0o600),
        mtime: Some(rustic_core::jiff::Timestamp::now()),
        size,
        ..Metadata::default()
    };
    Node::new_node(
        path.file_name().unwrap_or(path.as_os_str()),
        NodeType::File,
        meta,
    )
}

impl<R: Read + Send + 'static> ReadSource for StreamSource<R> {
    type Open = R;
    type Iter = std::vec::IntoIter<Item<R>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner()).take();
        vec![Ok(ReadSourceEntry {
            path: self.path.clone(),
            node: file_node(&self.path, 0),
            open: reader,
        })]
        .into_iter()
    }
}

/// A few small files held in memory, by their path in the snapshot.
pub struct FilesSource {
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl FilesSource {
    pub fn new(mut files: Vec<(PathBuf, Vec<u8>)>) -> FilesSource {
        // In tree order: a folder's files, by component, before the next folder's.
        files.sort_by(|a, b| a.0.cmp(&b.0));
        FilesSource { files }
    }
}

impl ReadSource for FilesSource {
    type Open = io::Cursor<Vec<u8>>;
    type Iter = std::vec::IntoIter<Item<Self::Open>>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(Some(self.files.iter().map(|f| f.1.len() as u64).sum()))
    }

    fn entries(&self) -> Self::Iter {
        self.files
            .iter()
            .map(|(path, bytes)| {
                Ok(ReadSourceEntry {
                    path: path.clone(),
                    node: file_node(path, bytes.len() as u64),
                    open: Some(io::Cursor::new(bytes.clone())),
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
    }
}
