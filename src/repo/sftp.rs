//! A folder on an SFTP server, through the system's OpenSSH client.
//!
//! The connection is an `ssh` multiplexing master (`openssh`), started with a private key
//! and a known-hosts file the spec names and nothing else: `-F` points at a configuration
//! holdfast writes, so neither the user's nor the system's ssh configuration, nor the
//! global known-hosts file, can change which host key is trusted, and a host whose key
//! is not in the given file is refused (`StrictHostKeyChecking yes`, `BatchMode yes`).
//! SFTP requests go through the master's `sftp` subsystem (`openssh-sftp-client`).
//!
//! One connection serves every call of a repository; a call that finds it broken
//! connects anew once and tries again. The master ends when the connection is closed,
//! and on its own a minute after its last channel closed, so a holdfast that was killed
//! leaves no `ssh` behind for long. Its control socket and configuration live in a
//! private `holdfast-ssh-*` folder of the system's temporary folder; one a killed
//! holdfast left is removed by a later connection once its master is gone.
//!
//! Keys are paths below the spec's folder. A write goes to `<key>.partial` and is renamed
//! into place when committed (atomically, with OpenSSH's `posix-rename` extension), so an
//! object is there whole or not at all; a writer dropped uncommitted removes its partial
//! file, and one left by a killed process is listed like any object, under an archive
//! without a manifest, which [`super::objects::ObjectStorage::clean`] removes.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use openssh::{ControlPersist, KnownHosts, SessionBuilder};
use openssh_sftp_client::error::SftpErrorKind;
use openssh_sftp_client::file::{File, TokioCompatFile};
use openssh_sftp_client::{Error as SftpError, Sftp, SftpOptions};
use tokio::io::AsyncWriteExt;

use super::objects::Objects;
use super::remote::block_on;
use crate::archive::{OutFile, StoredDigest};
use crate::spec::repository::SftpStorage;

/// How long one request (or one connection attempt) may go unanswered.
const ANSWER_WITHIN: Duration = Duration::from_secs(120);
/// How long the TCP connection and the SSH handshake may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(30);
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
/// How long the master stays up after its last channel closed (a killed holdfast's).
const MASTER_IDLE_SECONDS: usize = 60;
/// The name of a connection's private folder in the temporary folder starts so.
const CONTROL_PREFIX: &str = "holdfast-ssh-";
/// A control folder without a master socket for this long was left by a killed holdfast.
const STALE_AFTER: Duration = Duration::from_secs(600);
/// The suffix of an object being written.
const PARTIAL: &str = ".partial";

/// A folder on an SFTP server.
#[derive(Debug)]
pub struct SftpObjects {
    target: Arc<Target>,
    conn: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

/// Where to connect and how, checked when the repository is opened.
#[derive(Debug)]
struct Target {
    host: String,
    port: u16,
    user: String,
    /// The folder, absolute, without a trailing `/` (empty for `/`).
    root: String,
    private_key: PathBuf,
    known_hosts: PathBuf,
    /// `sftp://user@host:port/path`.
    shown: String,
}

impl Target {
    fn url(&self, key: &str) -> String {
        if key.is_empty() {
            self.shown.clone()
        } else {
            format!("{}/{key}", self.shown.trim_end_matches('/'))
        }
    }

    /// The server's path of a key; keys are relative, with plain names between `/`.
    fn path(&self, key: &str) -> io::Result<String> {
        let key = key.trim_end_matches('/');
        if key.is_empty() {
            return Ok(if self.root.is_empty() {
                "/".to_string()
            } else {
                self.root.clone()
            });
        }
        if key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == ".." || part.contains('\0'))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a key of this repository", self.url(key)),
            ));
        }
        Ok(format!("{}/{key}", self.root))
    }

    /// The ssh configuration holdfast connects with, in place of the user's and the
    /// system's.
    fn ssh_config(&self) -> String {
        format!(
            "# Written by holdfast for one connection; only these settings apply.
UserKnownHostsFile {known_hosts}
GlobalKnownHostsFile /dev/null
StrictHostKeyChecking yes
UpdateHostKeys no
CheckHostIP no
IdentityAgent none
PasswordAuthentication no
KbdInteractiveAuthentication no
ServerAliveInterval 15
ServerAliveCountMax 4
",
            known_hosts = config_path(&self.known_hosts),
        )
    }

    /// A failed connection attempt, said in terms of the spec's fields.
    fn connect_error(&self, e: openssh::Error) -> io::Error {
        let said = match &e {
            openssh::Error::Connect(io) | openssh::Error::Master(io) => io.to_string(),
            other => other.to_string(),
        };
        let said = ssh_said(&said);
        let shown = &self.shown;
        if let openssh::Error::Connect(io) = &e
            && io.kind() == io::ErrorKind::NotFound
        {
            return io::Error::new(
                io::ErrorKind::NotFound,
                format!("{shown}: cannot run `ssh` ({said}); install OpenSSH's client"),
            );
        }
        if said.contains("Host key verification failed")
            || said.contains("host key is known")
            || said.contains("HOST IDENTIFICATION HAS CHANGED")
        {
            return io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{shown}: the server's host key is not in the known-hosts file {} \
                     (spec.storage.sftp.knownHostsFile), so the server is not trusted; add \
                     its key for `{}` there after checking it (ssh-keyscan -p {} {} shows \
                     what the server offers). ssh said: {said}",
                    self.known_hosts.display(),
                    known_hosts_name(&self.host, self.port),
                    self.port,
                    self.host,
                ),
            );
        }
        if said.contains("Permission denied") {
            return io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{shown}: the server refused the login of `{}` with the key {} \
                     (spec.storage.sftp.user, privateKeyFile): add its public key to that \
                     user's authorized_keys on the server. ssh said: {said}",
                    self.user,
                    self.private_key.display(),
                ),
            );
        }
        let kind = if said.contains("Connection refused") {
            io::ErrorKind::ConnectionRefused
        } else if said.contains("timed out") {
            io::ErrorKind::TimedOut
        } else if said.contains("Could not resolve") {
            io::ErrorKind::NotFound
        } else {
            io::ErrorKind::ConnectionAborted
        };
        io::Error::new(kind, format!("{shown}: cannot connect. ssh said: {said}"))
    }

    /// A failed request, naming the object's URL.
    fn error(&self, key: &str, e: SftpError) -> io::Error {
        let url = self.url(key);
        match e {
            SftpError::SftpError(SftpErrorKind::NoSuchFile, _) => {
                io::Error::new(io::ErrorKind::NotFound, format!("{url}: no such file"))
            }
            SftpError::SftpError(SftpErrorKind::PermDenied, msg) => io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{url}: the server denied it ({msg})"),
            ),
            SftpError::SftpError(kind, msg) => {
                io::Error::other(format!("{url}: the server answered {kind:?} ({msg})"))
            }
            SftpError::IOError(io) if io.kind() == io::ErrorKind::TimedOut => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{url}: no answer within {}s", ANSWER_WITHIN.as_secs()),
            ),
            other => io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("{url}: the connection broke ({other})"),
            ),
        }
    }
}

/// What ssh wrote, on one line, without the banner it prints around a changed host key.
fn ssh_said(text: &str) -> String {
    const BANNER: [&str; 9] = [
        "@",
        "IT IS POSSIBLE",
        "Someone could",
        "It is also possible",
        "Please contact",
        "Add correct host key",
        "Offending",
        "remove with",
        "ssh-keygen -f",
    ];
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !BANNER.iter().any(|b| l.starts_with(b)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A path in ssh's configuration: quoted, with `%` (a token there) doubled.
fn config_path(path: &Path) -> String {
    format!("\"{}\"", path.display().to_string().replace('%', "%%"))
}

/// How a known-hosts file names a server: `host`, or `[host]:port` off port 22.
fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Whether a request failed because the connection did (as opposed to the server
/// answering no).
fn is_lost(e: &SftpError) -> bool {
    !matches!(e, SftpError::SftpError(..))
}

fn is_not_found(e: &SftpError) -> bool {
    matches!(e, SftpError::SftpError(SftpErrorKind::NoSuchFile, _))
}

/// A request under [`ANSWER_WITHIN`]; running out of time counts as a lost connection.
async fn answered<T>(
    f: impl std::future::Future<Output = Result<T, SftpError>>,
) -> Result<T, SftpError> {
    match tokio::time::timeout(ANSWER_WITHIN, f).await {
        Ok(result) => result,
        Err(_) => Err(SftpError::IOError(io::Error::new(
            io::ErrorKind::TimedOut,
            "no answer",
        ))),
    }
}

/// One SSH connection and its SFTP channel, with the folder of its control socket and
/// configuration (removed after the connection is closed).
#[derive(Debug)]
struct Connection {
    sftp: Option<Sftp>,
    _dir: tempfile::TempDir,
}

impl Connection {
    async fn open(target: &Target) -> io::Result<Connection> {
        use std::os::unix::fs::PermissionsExt;
        sweep_control_folders(&std::env::temp_dir(), STALE_AFTER);
        let dir = tempfile::Builder::new()
            .prefix(CONTROL_PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "{}: creating a folder for ssh's control socket in {}: {e}",
                        target.shown,
                        std::env::temp_dir().display()
                    ),
                )
            })?;
        let config = dir.path().join("ssh_config");
        std::fs::write(&config, target.ssh_config()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: writing {}: {e}", target.shown, config.display()),
            )
        })?;
        let mut builder = SessionBuilder::default();
        builder
            .user(target.user.clone())
            .port(target.port)
            .keyfile(&target.private_key)
            .config_file(&config)
            .known_hosts_check(KnownHosts::Strict)
            .connect_timeout(CONNECT_WITHIN)
            .server_alive_interval(Duration::from_secs(15))
            .control_directory(dir.path())
            .control_persist(ControlPersist::IdleFor(
                NonZeroUsize::new(MASTER_IDLE_SECONDS).expect("not zero"),
            ));
        let session = tokio::time::timeout(ANSWER_WITHIN, builder.connect(&target.host))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{}: cannot connect: no answer within {}s",
                        target.shown,
                        ANSWER_WITHIN.as_secs()
                    ),
                )
            })?
            .map_err(|e| target.connect_error(e))?;
        let options = SftpOptions::new()
            .tokio_compat_file_write_limit(NonZeroUsize::new(WRITES_IN_FLIGHT).expect("not zero"));
        let sftp = answered(Sftp::from_session(session, options))
            .await
            .map_err(|e| {
                let mut e = target.error("", e);
                if e.kind() == io::ErrorKind::ConnectionAborted {
                    e = io::Error::new(
                        e.kind(),
                        format!("{e}; does the server offer the `sftp` subsystem?"),
                    );
                }
                e
            })?;
        Ok(Connection {
            sftp: Some(sftp),
            _dir: dir,
        })
    }

    fn sftp(&self) -> &Sftp {
        self.sftp.as_ref().expect("open until dropped")
    }
}

/// Removes the private folders of connections whose holdfast was killed: this user's,
/// with no master socket in them (the master is gone), untouched for `stale` (so not one
/// still connecting). A killed holdfast leaves its folder, whose master ends on its own a
/// minute after the last channel closed.
fn sweep_control_folders(temp: &Path, stale: Duration) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    let me = rustix::process::geteuid().as_raw();
    let is_stale = |path: &Path| {
        std::fs::symlink_metadata(path)
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= stale)
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry
            .file_name()
            .to_string_lossy()
            .starts_with(CONTROL_PREFIX)
            && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == me);
        if !ours || !is_stale(&path) {
            continue;
        }
        let inner: Vec<PathBuf> = std::fs::read_dir(&path)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        let live = inner
            .iter()
            .filter(|p| p.is_dir())
            .any(|p| p.join("master").exists() || !is_stale(p));
        if !live {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

impl Drop for Connection {
    /// Closes the SFTP channel and the master (`ssh -O exit`) before the control
    /// socket's folder goes.
    fn drop(&mut self) {
        if let Some(sftp) = self.sftp.take() {
            // The timer needs the runtime: made inside the future.
            let _ = block_on(async move {
                tokio::time::timeout(Duration::from_secs(10), sftp.close()).await
            });
        }
    }
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
        let path = self.target.path(key)?;
        let (conn, file) = block_on(self.run(key, |conn| {
            let path = path.clone();
            async move {
                let file = conn.sftp().open(&path).await?;
                Ok((conn, file))
            }
        }))?;
        Ok(Box::new(Download {
            target: self.target.clone(),
            key: key.to_string(),
            _conn: conn,
            file,
            offset: 0,
            step: None,
            ahead: Vec::new(),
            current: Bytes::new(),
            done: false,
        }))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        Target {
            host: "backup.example".to_string(),
            port: 2222,
            user: "holdfast".to_string(),
            root: path.trim_end_matches('/').to_string(),
            private_key: PathBuf::from("/etc/holdfast/id_ed25519"),
            known_hosts: PathBuf::from("/etc/holdfast/known 100%"),
            shown: format!("sftp://holdfast@backup.example:2222{path}"),
        }
    }

    #[test]
    fn only_this_users_control_folders_without_a_master_are_swept() {
        let temp = tempfile::tempdir().unwrap();
        let left = temp.path().join("holdfast-ssh-left");
        std::fs::create_dir_all(left.join(".ssh-connectionX")).unwrap();
        std::fs::write(left.join(".ssh-connectionX/log"), "").unwrap();
        let live = temp.path().join("holdfast-ssh-live");
        std::fs::create_dir_all(live.join(".ssh-connectionY")).unwrap();
        std::fs::write(live.join(".ssh-connectionY/master"), "").unwrap();
        let other = temp.path().join("someone-else");
        std::fs::create_dir(&other).unwrap();
        // Nothing is old enough yet: all stay.
        sweep_control_folders(temp.path(), Duration::from_secs(600));
        assert!(left.exists() && live.exists());
        sweep_control_folders(temp.path(), Duration::ZERO);
        assert!(!left.exists(), "a folder whose master is gone is removed");
        assert!(live.exists(), "a folder with a master socket stays");
        assert!(other.exists());
    }

    #[test]
    fn keys_are_paths_below_the_folder_and_cannot_leave_it() {
        let t = target("/srv/backups/");
        assert_eq!(t.path("nas/a/b.zst").unwrap(), "/srv/backups/nas/a/b.zst");
        assert_eq!(t.path("nas/").unwrap(), "/srv/backups/nas");
        assert_eq!(t.path("").unwrap(), "/srv/backups");
        for bad in ["../etc/passwd", "nas/../../x", "nas//x", "/abs", "nas/./x"] {
            let e = t.path(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
            assert!(
                e.to_string()
                    .contains("sftp://holdfast@backup.example:2222")
            );
        }
        assert_eq!(target("/").path("nas/x").unwrap(), "/nas/x");
        assert_eq!(target("/").path("").unwrap(), "/");
    }

    #[test]
    fn the_ssh_configuration_trusts_only_the_given_known_hosts_file() {
        let config = target("/srv").ssh_config();
        assert!(config.contains("UserKnownHostsFile \"/etc/holdfast/known 100%%\"\n"));
        assert!(config.contains("GlobalKnownHostsFile /dev/null\n"));
        assert!(config.contains("StrictHostKeyChecking yes\n"));
        assert!(config.contains("IdentityAgent none\n"));
    }

    #[test]
    fn refusals_name_the_server_the_file_and_the_field() {
        let t = target("/srv");
        let said = "No ED25519 host key is known for [backup.example]:2222 and you have \
                    requested strict checking.\r\nHost key verification failed.";
        let e = t.connect_error(openssh::Error::Connect(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            said,
        )));
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let text = e.to_string();
        assert!(
            text.contains("sftp://holdfast@backup.example:2222/srv"),
            "{text}"
        );
        assert!(text.contains("/etc/holdfast/known 100%"), "{text}");
        assert!(text.contains("knownHostsFile"), "{text}");
        assert!(text.contains("[backup.example]:2222"), "{text}");

        let changed = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\r
Someone could be eavesdropping on you right now (man-in-the-middle attack)!\r
It is also possible that a host key has just been changed.\r
The fingerprint for the ED25519 key sent by the remote host is\r
SHA256:FGeov8CjKCOjX9hqjgaAK1mN6X1izSImqaAiRN+Oorg.\r
Please contact your system administrator.\r
Add correct host key in /k to get rid of this message.\r
Offending ED25519 key in /k:1\r
  remove with:\r
  ssh-keygen -f \"/k\" -R \"[backup.example]:2222\"\r
Host key for [backup.example]:2222 has changed and you have requested strict checking.\r
Host key verification failed.";
        let e = t.connect_error(openssh::Error::Connect(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            changed,
        )));
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(
            e.to_string().ends_with(
                "ssh said: The fingerprint for the ED25519 key sent by the remote host is \
                 SHA256:FGeov8CjKCOjX9hqjgaAK1mN6X1izSImqaAiRN+Oorg. Host key for \
                 [backup.example]:2222 has changed and you have requested strict checking. \
                 Host key verification failed."
            ),
            "{e}"
        );

        let e = t.connect_error(openssh::Error::Connect(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "ssh: connect to host backup.example port 2222: Connection refused",
        )));
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);

        let e = t.error(
            "nas/x",
            SftpError::IOError(io::Error::new(io::ErrorKind::TimedOut, "no answer")),
        );
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(
            e.to_string()
                .starts_with("sftp://holdfast@backup.example:2222/srv/nas/x: no answer"),
            "{e}"
        );
    }
}
