//! A folder on an SFTP server, through the system's OpenSSH client.
//!
//! The connection (an `ssh` multiplexing master given only the spec's key and
//! known-hosts file) is [`connection`]'s; one serves every call of a repository, and a
//! call that finds it broken connects anew once and tries again.
//!
//! Keys are paths below the spec's folder. A write goes to `<key>.partial` and is renamed
//! into place when committed (atomically, with OpenSSH's `posix-rename` extension), so an
//! object is there whole or not at all; a writer dropped uncommitted removes its partial
//! file, and one left by a killed process is listed like any object, under an archive
//! without a manifest, which [`super::objects::ObjectStorage::clean`] removes.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use openssh_sftp_client::file::{File, TokioCompatFile};
use openssh_sftp_client::{Error as SftpError, Sftp};
use tokio::io::AsyncWriteExt;

mod connection;

use super::objects::Objects;
use super::remote::block_on;
use crate::archive::{OutFile, StoredDigest};
use crate::spec::repository::SftpStorage;
use connection::{ANSWER_WITHIN, Connection, Target, answered, is_lost, is_not_found};

/// Bytes a writer collects before sending them.
const WRITE_CHUNK: usize = 1 << 20;
/// Bytes of writes in flight (unacknowledged) per writer.
const WRITES_IN_FLIGHT: usize = 4 << 20;
/// Read requests in flight per reader; each asks for the server's largest read.
const READS_IN_FLIGHT: usize = 8;
/// Folders listed at once.
const FOLDERS_IN_FLIGHT: usize = 16;
/// Keys deleted at once.
const DELETES_IN_FLIGHT: usize = 64;
/// The suffix of an object being written.
const PARTIAL: &str = ".partial";

/// A folder on an SFTP server.
#[derive(Debug)]
pub struct SftpObjects {
    target: Arc<Target>,
    conn: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl SftpObjects {
    /// Checks the spec and that the key and known-hosts files can be read. Nothing is
    /// sent yet: the first call connects.
    pub fn new(spec: &SftpStorage) -> Result<SftpObjects, String> {
        if spec.host.is_empty()
            || spec.host.starts_with('-')
            || spec
                .host
                .contains(|c: char| c.is_whitespace() || c == '@' || c == '/')
        {
            // ssh would read a leading `-` as an option.
            return Err(format!(
                "host: `{}` is not a server's name or address",
                spec.host
            ));
        }
        if spec.user.is_empty() {
            return Err("user: empty; name the user to log in as".to_string());
        }
        if !spec.path.starts_with('/') {
            return Err(format!(
                "path: `{}` is not absolute; give the folder's full path on the server",
                spec.path
            ));
        }
        let file = |field: &str, value: &str| -> Result<PathBuf, String> {
            if value.contains(['"', '\n']) || value.contains("${") {
                return Err(format!(
                    "{field}: `{value}` has a character ssh would read as syntax (`\"`, a line \
                     break or `${{`); move the file"
                ));
            }
            let path = PathBuf::from(value);
            if !path.is_absolute() {
                return Err(format!("{field}: `{value}` is not an absolute path"));
            }
            std::fs::File::open(&path)
                .map_err(|e| format!("{field}: {value} cannot be read: {e}"))?;
            Ok(path)
        };
        let private_key = file("privateKeyFile", &spec.private_key_file)?;
        let known_hosts = file("knownHostsFile", &spec.known_hosts_file)?;
        let root = spec.path.trim_end_matches('/').to_string();
        let host_shown = if spec.host.contains(':') {
            format!("[{}]", spec.host)
        } else {
            spec.host.clone()
        };
        let shown = format!(
            "sftp://{}@{host_shown}:{}{}",
            spec.user,
            spec.port,
            if root.is_empty() { "/" } else { &root }
        );
        Ok(SftpObjects {
            target: Arc::new(Target {
                host: spec.host.clone(),
                port: spec.port,
                user: spec.user.clone(),
                root,
                private_key,
                known_hosts,
                shown,
            }),
            conn: tokio::sync::Mutex::new(None),
        })
    }

    /// The open connection, or a new one.
    async fn connection(&self) -> io::Result<Arc<Connection>> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(Connection::open(&self.target).await?);
        *conn = Some(c.clone());
        Ok(c)
    }

    /// Drops a connection that broke, unless another call already replaced it.
    async fn forget(&self, broken: &Arc<Connection>) {
        let mut conn = self.conn.lock().await;
        if conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, broken)) {
            *conn = None;
        }
    }

    /// Runs a request; when the connection turns out broken, once more on a new one.
    async fn run<T, F, Fut>(&self, key: &str, op: F) -> io::Result<T>
    where
        F: Fn(Arc<Connection>) -> Fut,
        Fut: std::future::Future<Output = Result<T, SftpError>>,
    {
        let conn = self.connection().await?;
        match answered(op(conn.clone())).await {
            Err(e) if is_lost(&e) => {
                self.forget(&conn).await;
                drop(conn);
                let conn = self.connection().await?;
                answered(op(conn))
                    .await
                    .map_err(|e| self.target.error(key, e))
            }
            other => other.map_err(|e| self.target.error(key, e)),
        }
    }

    /// Opens `<path>.partial` for writing, making the folders above it as needed.
    async fn create_partial(conn: &Connection, path: &str) -> Result<File, SftpError> {
        let partial = format!("{path}{PARTIAL}");
        // A folder made here may be removed by a deletion emptying it before the file
        // is created in it: a few tries.
        let mut tries = 0;
        loop {
            let opened = conn
                .sftp()
                .options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&partial)
                .await;
            match opened {
                Err(e) if is_not_found(&e) && tries < 3 => {
                    tries += 1;
                    let parent = path.rsplit_once('/').map_or("/", |(p, _)| p);
                    make_dirs(conn.sftp(), parent).await?;
                }
                other => return other,
            }
        }
    }

    /// Moves a written partial file into place, replacing what was there.
    async fn settle(conn: &Connection, path: &str) -> Result<(), SftpError> {
        let partial = format!("{path}{PARTIAL}");
        let mut fs = conn.sftp().fs();
        if !conn.sftp().support_posix_rename() {
            // Plain SFTP rename refuses to replace a file.
            match fs.remove_file(path).await {
                Err(e) if !is_not_found(&e) => return Err(e),
                _ => {}
            }
        }
        fs.rename(&partial, path).await
    }
}

/// `mkdir -p`: makes `dir` and the folders above it that are missing.
async fn make_dirs(sftp: &Sftp, dir: &str) -> Result<(), SftpError> {
    let mut fs = sftp.fs();
    let mut missing = Vec::new();
    let mut current = dir.trim_end_matches('/').to_string();
    // Up until a folder exists (or is made)...
    loop {
        if current.is_empty() {
            break;
        }
        match fs.create_dir(&current).await {
            Ok(()) => break,
            Err(e) if is_not_found(&e) => {
                let parent = current.rsplit_once('/').map_or("", |(p, _)| p).to_string();
                missing.push(std::mem::replace(&mut current, parent));
            }
            Err(e) => {
                // It exists already (OpenSSH says only "failure"), or cannot be made.
                match fs.metadata(&current).await {
                    Ok(meta) if meta.file_type().is_some_and(|t| t.is_dir()) => break,
                    _ => return Err(e),
                }
            }
        }
    }
    // ...then down again.
    for dir in missing.iter().rev() {
        match fs.create_dir(dir).await {
            Ok(()) => {}
            Err(e) => match fs.metadata(dir).await {
                Ok(meta) if meta.file_type().is_some_and(|t| t.is_dir()) => {}
                _ => return Err(e),
            },
        }
    }
    Ok(())
}

/// Every file below `dir` (at any depth), with `prefix` in front of its relative path.
/// [`FOLDERS_IN_FLIGHT`] folders are read at once, so a deep tree over a distant link
/// costs its depth in round trips rather than its number of folders.
async fn walk(sftp: &Sftp, dir: &str, prefix: &str) -> Result<Vec<(String, u64)>, SftpError> {
    let mut found = Vec::new();
    let mut waiting = vec![(dir.to_string(), prefix.to_string())];
    let mut reading = futures_util::stream::FuturesUnordered::new();
    loop {
        while reading.len() < FOLDERS_IN_FLIGHT
            && let Some((dir, prefix)) = waiting.pop()
        {
            reading.push(read_folder(sftp, dir, prefix));
        }
        let Some(read) = reading.next().await else {
            break;
        };
        let (files, folders) = read?;
        found.extend(files);
        waiting.extend(folders);
    }
    found.sort();
    Ok(found)
}

/// The files of one folder (keys and sizes) and its sub-folders (paths and prefixes);
/// nothing when it is gone.
async fn read_folder(
    sftp: &Sftp,
    dir: String,
    prefix: String,
) -> Result<(Vec<(String, u64)>, Vec<(String, String)>), SftpError> {
    let (mut files, mut folders) = (Vec::new(), Vec::new());
    let handle = match sftp.fs().open_dir(&dir).await {
        Ok(handle) => handle,
        Err(e) if is_not_found(&e) => return Ok((files, folders)),
        Err(e) => return Err(e),
    };
    let entries = handle.read_dir();
    let mut entries = std::pin::pin!(entries);
    while let Some(entry) = entries.next().await {
        let entry = entry?;
        let Some(name) = entry.filename().to_str().map(str::to_string) else {
            continue;
        };
        if name == "." || name == ".." {
            continue;
        }
        let meta = entry.metadata();
        match meta.file_type() {
            Some(t) if t.is_dir() => {
                folders.push((format!("{dir}/{name}"), format!("{prefix}{name}/")));
            }
            Some(t) if t.is_file() => {
                files.push((format!("{prefix}{name}"), meta.len().unwrap_or(0)));
            }
            _ => {}
        }
    }
    Ok((files, folders))
}

impl SftpObjects {
    /// The object `key` read from byte `offset` on.
    fn download(&self, key: &str, offset: u64) -> io::Result<Download> {
        let path = self.target.path(key)?;
        let (conn, file) = block_on(self.run(key, |conn| {
            let path = path.clone();
            async move {
                let file = conn.sftp().open(&path).await?;
                Ok((conn, file))
            }
        }))?;
        Ok(Download {
            target: self.target.clone(),
            key: key.to_string(),
            _conn: conn,
            file,
            offset,
            step: None,
            ahead: Vec::new(),
            current: Bytes::new(),
            done: false,
        })
    }
}

impl Objects for SftpObjects {
    fn describe(&self) -> String {
        self.target.shown.clone()
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<(String, u64)>> {
        let dir = self.target.path(prefix)?;
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_string()
        } else {
            format!("{prefix}/")
        };
        block_on(self.run(&prefix, |conn| {
            let (dir, prefix) = (dir.clone(), prefix.clone());
            async move { walk(conn.sftp(), &dir, &prefix).await }
        }))
    }

    fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        let path = self.target.path(key)?;
        block_on(self.run(key, |conn| {
            let path = path.clone();
            async move {
                match conn.sftp().fs().read(&path).await {
                    Ok(bytes) => Ok(Some(bytes.to_vec())),
                    Err(e) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }))
    }

    fn size(&self, key: &str) -> io::Result<Option<u64>> {
        let path = self.target.path(key)?;
        block_on(self.run(key, |conn| {
            let path = path.clone();
            async move {
                match conn.sftp().fs().metadata(&path).await {
                    Ok(meta) if meta.file_type().is_some_and(|t| t.is_file()) => {
                        Ok(Some(meta.len().unwrap_or(0)))
                    }
                    Ok(_) => Ok(None),
                    Err(e) if is_not_found(&e) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }))
    }

    fn reader(&self, key: &str) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.download(key, 0)?))
    }

    fn range(&self, key: &str, offset: u64, length: u64) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0; usize::try_from(length).map_err(io::Error::other)?];
        self.download(key, offset)?.read_exact(&mut bytes)?;
        Ok(bytes)
    }

    fn writer(&self, key: &str) -> io::Result<Box<dyn OutFile>> {
        let path = self.target.path(key)?;
        let (conn, file) = block_on(self.run(key, |conn| {
            let path = path.clone();
            async move {
                let file = Self::create_partial(&conn, &path).await?;
                Ok((conn, file))
            }
        }))?;
        Ok(Box::new(Upload {
            target: self.target.clone(),
            key: key.to_string(),
            path,
            conn,
            file: Some(Box::pin(TokioCompatFile::new(file))),
            buffer: Vec::with_capacity(WRITE_CHUNK),
        }))
    }

    fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.target.path(key)?;
        block_on(self.run(key, |conn| {
            let path = path.clone();
            async move {
                let mut file = Self::create_partial(&conn, &path).await?;
                file.write_all(bytes).await?;
                file.close().await?;
                Self::settle(&conn, &path).await
            }
        }))
    }

    /// Removes the files, then the folders they leave empty (up to, not including, the
    /// repository's folder).
    fn delete(&self, keys: &[String]) -> io::Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let paths = keys
            .iter()
            .map(|k| self.target.path(k))
            .collect::<io::Result<Vec<_>>>()?;
        let first = keys[0].clone();
        block_on(self.run(&first, |conn| {
            let paths = paths.clone();
            async move {
                for chunk in paths.chunks(DELETES_IN_FLIGHT) {
                    let removals = chunk.iter().map(|path| {
                        let conn = conn.clone();
                        async move {
                            match conn.sftp().fs().remove_file(path).await {
                                Err(e) if !is_not_found(&e) => Err(e),
                                _ => Ok(()),
                            }
                        }
                    });
                    for result in futures_util::future::join_all(removals).await {
                        result?;
                    }
                }
                Ok(())
            }
        }))?;
        // Empty folders, deepest first; one that is not empty (or gone) stops its branch.
        let root = self.target.path("")?;
        let depth = |dir: &str| std::cmp::Reverse(dir.matches('/').count());
        let folders: BTreeSet<_> = paths
            .iter()
            .filter_map(|p| {
                p.rsplit_once('/')
                    .map(|(dir, _)| (depth(dir), dir.to_string()))
            })
            .collect();
        let _ = block_on(self.run(&first, |conn| {
            let (mut folders, root) = (folders.clone(), root.clone());
            async move {
                while let Some((_, dir)) = folders.pop_first() {
                    if dir.len() <= root.len() {
                        continue;
                    }
                    if conn.sftp().fs().remove_dir(&dir).await.is_ok()
                        && let Some((parent, _)) = dir.rsplit_once('/')
                    {
                        folders.insert((depth(parent), parent.to_string()));
                    }
                }
                Ok::<(), SftpError>(())
            }
        }));
        Ok(())
    }
}

/// A file being read: after a first read, which tells how much the server answers at
/// once, [`READS_IN_FLIGHT`] reads go out at consecutive offsets, so a distant server's
/// round trips overlap.
struct Download {
    target: Arc<Target>,
    key: String,
    /// Keeps the connection open while the file is read.
    _conn: Arc<Connection>,
    file: File,
    offset: u64,
    /// What one read returns (the server's or the client's limit); unknown at first.
    step: Option<u32>,
    ahead: Vec<Bytes>,
    current: Bytes,
    done: bool,
}

impl Download {
    /// The next pieces of the file from `offset`, in order; empty at its end.
    async fn fetch(file: &File, offset: u64, step: Option<u32>) -> Result<Vec<Bytes>, SftpError> {
        let (count, want) = match step {
            Some(step) => (READS_IN_FLIGHT, step),
            // Asks for all; the client caps it to the limit it negotiated.
            None => (1, u32::MAX),
        };
        let reads = (0..count).map(|i| {
            let mut file = file.clone();
            async move {
                use tokio::io::AsyncSeekExt;
                file.seek(io::SeekFrom::Start(offset + i as u64 * u64::from(want)))
                    .await?;
                file.read(want, BytesMut::new()).await
            }
        });
        let mut pieces = Vec::new();
        for result in futures_util::future::join_all(reads).await {
            match result? {
                Some(bytes) if !bytes.is_empty() => {
                    let short = step.is_some_and(|step| bytes.len() < step as usize);
                    pieces.push(bytes.freeze());
                    // A short read ends this round: what follows is read again from
                    // where it stopped (or it was the end of the file).
                    if short {
                        break;
                    }
                }
                _ => break,
            }
        }
        Ok(pieces)
    }
}

impl Read for Download {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if !self.ahead.is_empty() {
                self.current = self.ahead.remove(0);
                continue;
            }
            if self.done {
                return Ok(0);
            }
            let pieces = block_on(answered(Self::fetch(&self.file, self.offset, self.step)))
                .map_err(|e| self.target.error(&self.key, e))?;
            if pieces.is_empty() {
                self.done = true;
                return Ok(0);
            }
            if self.step.is_none() {
                self.step = u32::try_from(pieces[0].len()).ok();
            }
            self.offset += pieces.iter().map(|p| p.len() as u64).sum::<u64>();
            self.ahead = pieces;
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// An object being written to `<key>.partial`; renamed into place on commit, removed
/// when dropped before.
struct Upload {
    target: Arc<Target>,
    key: String,
    path: String,
    conn: Arc<Connection>,
    file: Option<std::pin::Pin<Box<TokioCompatFile>>>,
    buffer: Vec<u8>,
}

impl Upload {
    fn send(&mut self) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("the upload was already completed"))?;
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(WRITE_CHUNK));
        block_on(async {
            tokio::time::timeout(ANSWER_WITHIN, file.write_all(&chunk))
                .await
                .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "no answer")))
        })
        .map_err(|e| self.io_error(e))
    }

    fn io_error(&self, e: io::Error) -> io::Error {
        // The compat file wraps protocol errors in `Other`; say them in our terms.
        match e.into_inner() {
            Some(inner) => match inner.downcast::<SftpError>() {
                Ok(sftp) => self.target.error(&self.key, *sftp),
                Err(other) => self
                    .target
                    .error(&self.key, SftpError::IOError(io::Error::other(other))),
            },
            None => self.target.error(
                &self.key,
                SftpError::IOError(io::Error::other("the connection broke")),
            ),
        }
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = WRITE_CHUNK - self.buffer.len();
        let n = buf.len().min(room);
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == WRITE_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl OutFile for Upload {
    fn commit(mut self: Box<Self>) -> io::Result<Option<StoredDigest>> {
        if !self.buffer.is_empty() {
            self.send()?;
        }
        let file = self.file.take().expect("committed once");
        let conn = self.conn.clone();
        let path = self.path.clone();
        let result = block_on(answered(async move {
            let mut file = file;
            file.flush().await?;
            // Every write is acknowledged; the handle closes in the background.
            drop(file);
            SftpObjects::settle(&conn, &path).await
        }));
        match result {
            Ok(()) => Ok(None),
            Err(e) => {
                let e = self.target.error(&self.key, e);
                self.remove_partial();
                Err(e)
            }
        }
    }
}

impl Upload {
    /// Best effort: a partial file left behind is removed with its archive's leftovers.
    fn remove_partial(&mut self) {
        let partial = format!("{}{PARTIAL}", self.path);
        let conn = self.conn.clone();
        let _ = block_on(async move {
            tokio::time::timeout(
                Duration::from_secs(30),
                conn.sftp().fs().remove_file(&partial),
            )
            .await
        });
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            // The handle closes in the background (its pending writes answered first).
            drop(file);
            self.remove_partial();
        }
    }
}
