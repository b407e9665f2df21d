//! Where artifacts are written: a `.partial` file renamed into place only once complete
//! and fsynced, behind a writer that hashes and counts every byte on its way to disk.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ArchiveError;

/// Counts and hashes what goes to `inner`, so the digest is of exactly the bytes on disk
/// without reading the file back.
pub(crate) struct HashingWriter<W> {
    inner: W,
    /// `None`: only counting, as something further down hashes.
    hasher: Option<Sha256>,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Some(Sha256::new()),
            count: 0,
        }
    }

    /// Counts what passes without hashing it: the digest comes from `inner`.
    pub(crate) fn counting(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: None,
            count: 0,
        }
    }

    /// The writer, the bytes that passed, and their sha256 (empty when only counting).
    pub(crate) fn into_parts(self) -> (W, u64, String) {
        let sha256 = self
            .hasher
            .map(|h| hex::encode(h.finalize()))
            .unwrap_or_default();
        (self.inner, self.count, sha256)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Whether an error says the file system is full, or the quota used up.
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Where the file system holding `path` (or its nearest existing parent) is mounted:
/// the highest folder above it on the same device.
pub(crate) fn mount_point(path: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let mut here = path;
    let dev = loop {
        match fs::metadata(here) {
            Ok(m) => break m.dev(),
            Err(_) => match here.parent() {
                Some(parent) => here = parent,
                None => return path.to_path_buf(),
            },
        }
    };
    while let Some(parent) = here.parent() {
        match fs::metadata(parent) {
            Ok(m) if m.dev() == dev => here = parent,
            _ => break,
        }
    }
    here.to_path_buf()
}

/// Passes writes on until one finds the file system full; from then on every write
/// fails the same way without reaching the file, so that nothing (a buffer flushed on
/// drop, a compressor's last frame) is written into a full file system again.
pub(crate) struct StopWhenFull<W> {
    inner: W,
    full: bool,
}

impl<W: Write> StopWhenFull<W> {
    pub(crate) fn new(inner: W) -> Self {
        StopWhenFull { inner, full: false }
    }

    pub(crate) fn into_inner(self) -> W {
        self.inner
    }

    fn check<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            self.full |= is_no_space(e);
        }
        r
    }
}

impl<W: Write> Write for StopWhenFull<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.full {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let r = self.inner.write(buf);
        self.check(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.full {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let r = self.inner.flush();
        self.check(r)
    }
}

/// What an artifact's bytes go through: hashed and counted (the manifest's `size` and
/// `sha256`) on their way to the outlet's file.
pub(crate) type Hashed = HashingWriter<Box<dyn OutFile>>;

/// What was stored of an artifact when it differs from what was written to it: an
/// encrypted artifact's ciphertext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDigest {
    pub size: u64,
    pub sha256: String,
}

/// Where an archive's artifacts are written: a folder on this machine, objects in a
/// remote store, either of them behind encryption. An artifact is complete only once its
/// [`OutFile::commit`] returned; one dropped before that leaves nothing that looks
/// complete (a local partial file is removed, a remote upload aborted).
pub trait Outlet: Send + Sync + std::fmt::Debug {
    /// Starts the artifact `name` (a path inside the archive, such as
    /// `volumes/web.tar.zst`).
    fn create(&self, name: &str) -> io::Result<Box<dyn OutFile>>;
    /// The archive's folder on this machine, where the folder format writes its trees;
    /// `None` where artifacts can only be streams (remote or encrypted).
    fn folder(&self) -> Option<&Path>;
    /// How the artifact `name` is named in messages.
    fn shown(&self, name: &str) -> PathBuf;
}

/// One artifact being written through an [`Outlet`].
pub trait OutFile: Write + Send {
    /// Makes the artifact complete and durable. Returns what was stored when it is not
    /// the bytes written (encryption), so the manifest can record both.
    fn commit(self: Box<Self>) -> io::Result<Option<StoredDigest>>;
    /// Asks the file to hash the bytes it stores, on a thread of its own, and to return
    /// their digest from [`OutFile::commit`]; false when it cannot (the caller hashes).
    fn digest_stored(&mut self) -> bool {
        false
    }
}

/// A folder on this machine is an outlet: each artifact a file below it (the staging
/// folder of a local repository's archive).
impl Outlet for Path {
    fn create(&self, name: &str) -> io::Result<Box<dyn OutFile>> {
        Ok(Box::new(PartialFile::create(self.join(name))?))
    }

    fn folder(&self) -> Option<&Path> {
        Some(self)
    }

    fn shown(&self, name: &str) -> PathBuf {
        self.join(name)
    }
}

impl Outlet for PathBuf {
    fn create(&self, name: &str) -> io::Result<Box<dyn OutFile>> {
        self.as_path().create(name)
    }

    fn folder(&self) -> Option<&Path> {
        Some(self)
    }

    fn shown(&self, name: &str) -> PathBuf {
        self.join(name)
    }
}

/// The compression in front of the hashing writer.
pub(crate) enum Compressor {
    Plain(Hashed),
    Gzip(flate2::write::GzEncoder<Hashed>),
    Zstd(zstd::stream::write::Encoder<'static, Hashed>),
}

/// Levels up to here use a window of at most 2 MiB.
const SMALL_WINDOW_LEVEL: i32 = 5;
const ZSTD_JOB_SIZE: u32 = 3 << 20;

thread_local! {
    /// The zstd workers of the encoders this thread creates, while
    /// [`with_compression_workers`] runs; `None`: one per core.
    static WORKERS: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Runs `work` on this thread with every zstd encoder it creates using `workers` threads
/// (at least one) instead of one per core. Several sources archived at once share the
/// cores this way, and the jobs zstd keeps in memory (a few per worker) stay about what
/// one source alone would keep.
pub fn with_compression_workers<T>(workers: usize, work: impl FnOnce() -> T) -> T {
    struct Restore(Option<usize>);
    impl Drop for Restore {
        fn drop(&mut self) {
            WORKERS.with(|w| w.set(self.0));
        }
    }
    let _restore = Restore(WORKERS.with(|w| w.replace(Some(workers.max(1)))));
    work()
}

/// The zstd workers an encoder created on this thread now gets.
pub(crate) fn compression_workers() -> usize {
    WORKERS
        .with(|w| w.get())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// What a compressed artifact is compressed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    Plain,
    Gzip(u32),
    Zstd(i32),
}

impl Compressor {
    pub(crate) fn new(out: Hashed, codec: Codec) -> io::Result<Compressor> {
        Ok(match codec {
            Codec::Plain => Compressor::Plain(out),
            Codec::Gzip(level) => Compressor::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(level),
            )),
            Codec::Zstd(level) => {
                let mut enc = zstd::stream::write::Encoder::new(out, level)?;
                // Same as the zstd CLI: decoders then catch corruption on their own.
                enc.include_checksum(true)?;
                enc.multithread(compression_workers() as u32)?;
                if level <= SMALL_WINDOW_LEVEL {
                    // zstd's default job is 4x the window (8 MiB at level 3), and it keeps
                    // about four jobs of input and output in flight: 110 MiB of RSS.
                    // 3 MiB jobs keep it under 50 MiB at the same speed and output size
                    // (measured with bench/archive.sh). At higher levels the match tables
                    // dominate memory anyway, so zstd's choice stands.
                    enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                }
                Compressor::Zstd(enc)
            }
        })
    }

    pub(crate) fn finish(self) -> io::Result<Hashed> {
        match self {
            Compressor::Plain(w) => Ok(w),
            Compressor::Gzip(w) => w.finish(),
            Compressor::Zstd(w) => w.finish(),
        }
    }
}

impl Write for Compressor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Plain(w) => w.write(buf),
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.write_all(buf),
            Compressor::Gzip(w) => w.write_all(buf),
            Compressor::Zstd(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.flush(),
            Compressor::Gzip(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

/// An artifact being written under a temporary name. Dropping it without `commit` removes
/// the partial file, so a failed run never leaves something that looks like an artifact.
pub(crate) struct PartialFile {
    pub(crate) path: PathBuf,
    partial: PathBuf,
    out: Option<BufWriter<StopWhenFull<File>>>,
    committed: bool,
}

/// A large buffer keeps write syscalls rare; the compressors already batch their output.
const WRITE_BUFFER: usize = 1 << 20;

impl PartialFile {
    pub(crate) fn create(path: PathBuf) -> io::Result<PartialFile> {
        let partial = partial_name(&path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = File::create(&partial)?;
        Ok(PartialFile {
            path,
            partial,
            out: Some(BufWriter::with_capacity(
                WRITE_BUFFER,
                StopWhenFull::new(file),
            )),
            committed: false,
        })
    }

    fn out(&mut self) -> io::Result<&mut BufWriter<StopWhenFull<File>>> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("the artifact was already committed"))
    }
}

impl Write for PartialFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out()?.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out()?.flush()
    }
}

impl OutFile for PartialFile {
    /// Flushes, fsyncs and renames into place, then makes the rename durable.
    fn commit(mut self: Box<Self>) -> io::Result<Option<StoredDigest>> {
        let out = self.out.take().expect("committed once");
        let file = out.into_inner().map_err(|e| e.into_error())?.into_inner();
        file.sync_all()?;
        drop(file);
        fs::rename(&self.partial, &self.path)?;
        self.committed = true;
        sync_parent(&self.path).map_err(|e| match e {
            ArchiveError::Io { source, .. } => source,
            other => io::Error::other(other.to_string()),
        })?;
        Ok(None)
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            drop(self.out.take());
            // Best effort after the real error, which the caller is already returning.
            let _ = fs::remove_file(&self.partial);
        }
    }
}

pub(crate) fn partial_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Makes a rename durable: the directory entry lives in the parent.
pub(crate) fn sync_parent(path: &Path) -> Result<(), ArchiveError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| ArchiveError::io("syncing", parent, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_writer_counts_and_hashes_what_passes() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (inner, n, sha) = w.into_parts();
        assert_eq!(inner, b"hello world");
        assert_eq!(n, 11);
        assert_eq!(
            sha,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }

    #[test]
    fn compression_workers_are_set_for_one_piece_of_work_on_one_thread() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(compression_workers(), cores);
        let inside = with_compression_workers(3, || {
            let nested = with_compression_workers(0, compression_workers);
            (compression_workers(), nested)
        });
        assert_eq!(inside, (3, 1), "0 still compresses, on one worker");
        assert_eq!(compression_workers(), cores, "restored afterwards");
        let other = with_compression_workers(2, || {
            std::thread::spawn(compression_workers).join().unwrap()
        });
        assert_eq!(other, cores, "other threads keep their own");
    }

    /// Fails every write with `error`, counting the calls that reach it.
    struct Failing {
        error: i32,
        calls: usize,
    }

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            Err(io::Error::from_raw_os_error(self.error))
        }
        fn flush(&mut self) -> io::Result<()> {
            self.calls += 1;
            Ok(())
        }
    }

    #[test]
    fn nothing_reaches_a_full_file_system_after_it_said_so() {
        let mut w = StopWhenFull::new(Failing {
            error: libc::ENOSPC,
            calls: 0,
        });
        for _ in 0..3 {
            let e = w.write(b"x").unwrap_err();
            assert!(is_no_space(&e), "{e}");
            assert!(w.flush().is_err());
        }
        assert_eq!(w.into_inner().calls, 1);
        // Other errors pass through each time: they may pass.
        let mut w = StopWhenFull::new(Failing {
            error: libc::EINTR,
            calls: 0,
        });
        assert!(w.write(b"x").is_err());
        assert!(w.write(b"x").is_err());
        assert_eq!(w.into_inner().calls, 2);
    }

    #[test]
    fn the_mount_point_is_the_highest_folder_on_the_same_device() {
        assert_eq!(
            mount_point(Path::new("/proc/self/status")),
            Path::new("/proc")
        );
        assert_eq!(
            mount_point(Path::new("/proc/no/such/file")),
            Path::new("/proc")
        );
    }

    #[test]
    fn an_uncommitted_partial_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/x.tar");
        let mut partial = PartialFile::create(target.clone()).unwrap();
        partial.write_all(b"half").unwrap();
        drop(partial);
        assert!(!target.exists());
        assert_eq!(fs::read_dir(dir.path().join("sub")).unwrap().count(), 0);
    }
}
