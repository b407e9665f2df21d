//! The snapshots of one run: each folder, dump and the recipe written into the restic
//! repository as the run goes, and what each added.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustic_core::repofile::SnapshotFile;
use rustic_core::{
    BackupOptions, IndexedIdsStatus, ParentOptions, ReadSource, Repository, SnapshotOptions,
};

use super::source::{self, FilesSource, Problems, StreamSource, TreeSource};
use super::{Restic, ResticError, Taken};
use crate::archive::{Excludes, OutFile, Outlet, StoredDigest};

/// The snapshots of one run, as they are written. It is the run's [`Outlet`]: dumps are
/// streamed into snapshots of their own, recipe files are kept until
/// [`RunSnapshots::finish`] writes them as one snapshot.
#[derive(Clone)]
pub struct RunSnapshots {
    inner: Arc<RunInner>,
}

struct RunInner {
    restic: Arc<Restic>,
    repo: Repository<IndexedIdsStatus>,
    /// holdfast's snapshots of this host before the run: the parents.
    previous: Vec<SnapshotFile>,
    tags: Vec<String>,
    /// What the run wrote, by the artifact's name.
    made: Mutex<BTreeMap<String, Taken>>,
    recipe: Mutex<Vec<(PathBuf, Vec<u8>)>>,
}

impl std::fmt::Debug for RunSnapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSnapshots")
            .field("restic", &self.inner.restic)
            .field("tags", &self.inner.tags)
            .finish_non_exhaustive()
    }
}

impl RunInner {
    /// Writes one snapshot of `src` at `at` (its path in the snapshot, `/volumes/web`)
    /// with the run's tags and `tags`.
    fn take<R>(
        &self,
        src: &R,
        source_path: &Path,
        at: &str,
        tags: &[String],
        problems: &Problems,
    ) -> Result<Taken, ResticError>
    where
        R: ReadSource + 'static,
        <R as ReadSource>::Open: Send,
        <R as ReadSource>::Iter: Send,
    {
        let restic = &self.restic;
        let all: Vec<String> = self.tags.iter().chain(tags).cloned().collect();
        let mut options = SnapshotOptions::default().host(restic.host.clone());
        for tag in &all {
            options = options
                .add_tags(tag)
                .map_err(restic.rustic("tagging the snapshot"))?;
        }
        let snap = options
            .to_snapshot()
            .map_err(restic.rustic("starting the snapshot"))?;
        // The previous snapshot of the same thing (same first tag after the run's).
        let parent = tags.first().and_then(|tag| {
            self.previous.iter().rev().find(|s| {
                s.tags.contains(tag) && self.tags.iter().take(2).all(|t| s.tags.contains(t))
            })
        });
        let parents = ParentOptions::default().force(parent.is_none()).parents(
            parent
                .map(|p| vec![p.id.to_hex().to_string()])
                .unwrap_or_default(),
        );
        let options = BackupOptions::default()
            .as_path(PathBuf::from(at))
            .parent_opts(parents)
            .no_scan(true);
        let snap = self
            .repo
            .archive(&options, src, snap, &[source_path.to_path_buf()])
            .map_err(restic.rustic("writing the snapshot"))?;
        let problems = std::mem::take(&mut *problems.lock().unwrap_or_else(|e| e.into_inner()));
        if !problems.is_empty() {
            // A snapshot missing files is no backup: it goes, the run fails.
            let _ = restic.forget(&[snap.id.to_hex().to_string()]);
            return Err(ResticError::Unreadable {
                location: restic.location.clone(),
                what: at.to_string(),
                problems,
            });
        }
        Ok(Taken::of(&snap))
    }

    fn record(&self, name: &str, taken: &Taken) {
        self.made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), taken.clone());
    }
}

impl RunSnapshots {
    pub(super) fn new(
        restic: Arc<Restic>,
        repo: Repository<IndexedIdsStatus>,
        previous: Vec<SnapshotFile>,
        tags: Vec<String>,
    ) -> RunSnapshots {
        RunSnapshots {
            inner: Arc::new(RunInner {
                restic,
                repo,
                previous,
                tags,
                made: Mutex::default(),
                recipe: Mutex::default(),
            }),
        }
    }

    /// Snapshots the folder `dir` of this host as `name` (`volumes/web`), tagged `tags`
    /// (the first names what it is, `volume:web`: the previous snapshot with that tag is
    /// the parent).
    pub fn folder(
        &self,
        dir: &Path,
        name: &str,
        tags: &[String],
        excludes: Excludes,
        cancelled: source::Cancelled,
    ) -> Result<Taken, ResticError> {
        let inner = &self.inner;
        let problems = Problems::default();
        let src = TreeSource::new(dir, excludes, problems.clone(), cancelled)
            .map_err(inner.restic.rustic("reading the folder"))?;
        let taken = inner.take(&src, dir, &format!("/{name}"), tags, &problems)?;
        inner.record(name, &taken);
        Ok(taken)
    }

    /// What the run wrote as `name`, if it did.
    pub fn taken(&self, name: &str) -> Option<Taken> {
        self.inner
            .made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Writes the recipe files kept so far as one snapshot at `/recipe`.
    pub fn finish(&self) -> Result<Option<Taken>, ResticError> {
        let inner = &self.inner;
        let files = std::mem::take(&mut *inner.recipe.lock().unwrap_or_else(|e| e.into_inner()));
        if files.is_empty() {
            return Ok(None);
        }
        let src = FilesSource::new(files);
        let taken = inner.take(
            &src,
            Path::new("/recipe"),
            "/recipe",
            &["recipe".to_string()],
            &Problems::default(),
        )?;
        inner.record("recipe", &taken);
        Ok(Some(taken))
    }

    /// Forgets every snapshot the run wrote: a run that failed leaves no snapshots.
    pub fn forget_all(&self) -> Result<(), ResticError> {
        let ids: Vec<String> = self
            .inner
            .made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|t| t.snapshot.clone())
            .collect();
        self.inner.restic.forget(&ids)
    }
}

impl Outlet for RunSnapshots {
    fn create(&self, name: &str) -> io::Result<Box<dyn OutFile>> {
        if name.starts_with("recipe/") {
            return Ok(Box::new(Kept {
                inner: self.inner.clone(),
                path: PathBuf::from("/").join(name),
                bytes: Vec::new(),
            }));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Option<Vec<u8>>>(8);
        let (inner, name_owned) = (self.inner.clone(), name.to_string());
        let tag = format!("dump:{}", name.rsplit('/').next().unwrap_or(name));
        let worker = std::thread::Builder::new()
            .name("holdfast-restic".into())
            .spawn(move || -> Result<Taken, ResticError> {
                let problems = Problems::default();
                let reader = source::WatchedReader::new(
                    Received {
                        rx,
                        current: Vec::new(),
                        at: 0,
                        ended: false,
                    },
                    PathBuf::from(&name_owned),
                    problems.clone(),
                );
                let path = PathBuf::from("/").join(&name_owned);
                let src = StreamSource::new(path.clone(), reader);
                let taken =
                    inner.take(&src, &path, &path.display().to_string(), &[tag], &problems)?;
                inner.record(&name_owned, &taken);
                Ok(taken)
            })?;
        Ok(Box::new(Streamed {
            tx: Some(tx),
            worker: Some(worker),
        }))
    }

    fn folder(&self) -> Option<&Path> {
        None
    }

    fn shown(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("{}:/{name}", self.inner.restic.location))
    }
}

/// A recipe file, kept in memory until the run's recipe snapshot.
struct Kept {
    inner: Arc<RunInner>,
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Write for Kept {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl OutFile for Kept {
    fn commit(self: Box<Self>) -> io::Result<Option<StoredDigest>> {
        let Kept { inner, path, bytes } = *self;
        inner
            .recipe
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((path, bytes));
        Ok(None)
    }
}

/// A stream on its way into a snapshot of its own. Dropped without a commit, the stream
/// ends in an error and the snapshot is not kept.
struct Streamed {
    tx: Option<std::sync::mpsc::SyncSender<Option<Vec<u8>>>>,
    worker: Option<std::thread::JoinHandle<Result<Taken, ResticError>>>,
}

impl Streamed {
    fn send(&mut self, item: Option<Vec<u8>>) -> io::Result<()> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| io::Error::other("the stream is closed"))?;
        if tx.send(item).is_err() {
            // The worker stopped early: its error says why.
            return Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("the snapshot ended before its stream")));
        }
        Ok(())
    }

    fn join(&mut self) -> io::Result<Taken> {
        self.tx = None;
        let worker = self
            .worker
            .take()
            .ok_or_else(|| io::Error::other("the snapshot was already finished"))?;
        worker
            .join()
            .map_err(|_| io::Error::other("the snapshot thread panicked"))?
            .map_err(ResticError::into_io)
    }
}

impl Write for Streamed {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send(Some(buf.to_vec()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl OutFile for Streamed {
    fn commit(mut self: Box<Self>) -> io::Result<Option<StoredDigest>> {
        self.send(None)?;
        self.join()?;
        Ok(None)
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        if self.worker.is_some() {
            // Not committed: the receiver sees the channel close without its end.
            self.tx = None;
            let _ = self.join();
        }
    }
}

/// The reading end of a [`Streamed`]: a channel that ends with `None`; closed without it,
/// the stream fails.
struct Received {
    rx: std::sync::mpsc::Receiver<Option<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
    ended: bool,
}

impl Read for Received {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Some(chunk)) => {
                    self.current = chunk;
                    self.at = 0;
                }
                Ok(None) => self.ended = true,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream was abandoned before its end",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
