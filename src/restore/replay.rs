//! Replaying database dumps into the running services they came from.
//!
//! Each engine gets its dump the way its own tools take it: SQL streamed into `psql` or
//! the MariaDB/MySQL client, an RDB file put in place while Redis is stopped, an SQLite
//! copy restored with the backup API, an archive streamed into `mongorestore`. The dump is
//! decompressed while it streams, so memory stays small whatever its size, and its
//! checksum is compared with the manifest first, so that a damaged file is refused before
//! anything in the database changes.
//!
//! Afterwards rows are counted where the engine can (tables, or keys per Redis database),
//! so that whoever restores can see what came back.
//!
//! Passwords are never put on a command line. The exec inherits the container's own
//! environment, so the usual variables of the official images (`POSTGRES_PASSWORD`,
//! `MARIADB_ROOT_PASSWORD`, ...) are read inside the container by the shell that starts the
//! client; an explicit password travels as an environment variable of the exec.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use sha2::Digest;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::docker::engine::{DockerError, Engine, ExecOutput};
use crate::repo::manifest::Artifact;
use crate::spec::common::Engine as DbEngine;

/// What one replay put back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayReport {
    /// The artifact's path in the archive.
    pub artifact: String,
    pub container: String,
    pub engine: String,
    pub database: Option<String>,
    /// table (or keyspace) -> rows (or keys), where the engine can count. Tables are named
    /// `database.schema.table` for PostgreSQL, `database.table` for MariaDB and MySQL,
    /// `table` for SQLite, `db0`... for Redis. At most [`MAX_TABLES`] tables are counted.
    pub counts: Vec<(String, u64)>,
}

/// Credentials for the database client, when the container's environment does not have
/// them. Without a user, each engine's administrative user is taken: `POSTGRES_USER` or
/// `postgres`, `root`.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub user: Option<String>,
    /// Holds a secret: never logged.
    pub password: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{artifact} is a {kind} artifact, not a database dump")]
    NotADump { artifact: String, kind: String },
    #[error("{artifact}: unknown database engine {engine:?}")]
    Engine {
        artifact: String,
        engine: Option<String>,
    },
    #[error("{artifact}: {what}")]
    Invalid { artifact: String, what: String },
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: {what} is {actual}, the manifest says {expected}; refusing to replay it", path.display())]
    Mismatch {
        path: PathBuf,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("replaying {artifact} into {container}: {source}")]
    Docker {
        artifact: String,
        container: String,
        #[source]
        source: Box<DockerError>,
    },
    #[error("replaying {artifact} into {container}: {step} failed with exit code {code}: {stderr}")]
    Failed {
        artifact: String,
        container: String,
        step: &'static str,
        code: i64,
        stderr: String,
    },
    #[error("replaying {artifact} into {container}: {reason}")]
    Refused {
        artifact: String,
        container: String,
        reason: String,
    },
}

impl ReplayError {
    /// Whether replaying again later may succeed: Docker unreachable or failing on its
    /// side, a command out of time, a dump file that could not be read for a passing
    /// reason. A dump that does not match its manifest, a client that fails, a server that
    /// refuses stand.
    pub fn is_transient(&self) -> bool {
        match self {
            ReplayError::Docker { source, .. } => source.is_transient(),
            ReplayError::Read { source, .. } => crate::executor::error::io_is_transient(source),
            ReplayError::NotADump { .. }
            | ReplayError::Engine { .. }
            | ReplayError::Invalid { .. }
            | ReplayError::Mismatch { .. }
            | ReplayError::Failed { .. }
            | ReplayError::Refused { .. } => false,
        }
    }

    /// Why, as a fixed word for metrics labels and logs: Docker's reason for a Docker
    /// failure, otherwise `bad_artifact`, `io`, `checksum_mismatch`, `command_failed` or
    /// `refused`.
    pub fn reason(&self) -> &'static str {
        match self {
            ReplayError::NotADump { .. }
            | ReplayError::Engine { .. }
            | ReplayError::Invalid { .. } => "bad_artifact",
            ReplayError::Read { .. } => "io",
            ReplayError::Mismatch { .. } => "checksum_mismatch",
            ReplayError::Docker { source, .. } => source.reason(),
            ReplayError::Failed { .. } => "command_failed",
            ReplayError::Refused { .. } => "refused",
        }
    }
}

/// At most this many tables are counted after a replay, so that a database with tens of
/// thousands of tables does not turn a restore report into a full scan of all of them.
pub const MAX_TABLES: usize = 1000;

/// Streaming a dump has no natural bound (the dump side has none either); this only stops
/// a client that hangs forever.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Counting rows reads whole tables.
const COUNT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Short questions: configuration, owners, listings.
const QUERY_TIMEOUT: Duration = Duration::from_secs(120);
/// Redis may take a while to save on shutdown and to load a large RDB file.
const REDIS_STOP_TIMEOUT: Duration = Duration::from_secs(120);
const REDIS_LOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// Chunks in flight between the decompressing thread and Docker.
const DEPTH: usize = 16;
const CHUNK: usize = 256 * 1024;

/// Replays one dump artifact into `container`, with the credentials its environment
/// provides. `file` is the artifact on disk, compressed as the backup wrote it.
pub async fn replay(
    engine: &Engine,
    container: &str,
    artifact: &Artifact,
    file: &Path,
) -> Result<ReplayReport, ReplayError> {
    replay_with(engine, container, artifact, file, &Credentials::default()).await
}

/// [`replay`] with explicit credentials, such as the ones the dump was taken with.
pub async fn replay_with(
    engine: &Engine,
    container: &str,
    artifact: &Artifact,
    file: &Path,
    credentials: &Credentials,
) -> Result<ReplayReport, ReplayError> {
    if artifact.kind != "dump" {
        return Err(ReplayError::NotADump {
            artifact: artifact.path.clone(),
            kind: artifact.kind.clone(),
        });
    }
    let db_engine = artifact
        .engine
        .as_deref()
        .and_then(|e| serde_json::from_value::<DbEngine>(serde_json::Value::from(e)).ok())
        .ok_or_else(|| ReplayError::Engine {
            artifact: artifact.path.clone(),
            engine: artifact.engine.clone(),
        })?;
    verify(file, artifact).await?;
    let r = Replay {
        engine,
        container,
        artifact,
        file,
        credentials,
    };
    info!(container, artifact = %artifact.path, engine = %db_engine, "replaying dump");
    let counts = match db_engine {
        DbEngine::Postgres => r.postgres().await?,
        DbEngine::Mysql | DbEngine::Mariadb => r.mysql().await?,
        DbEngine::Redis => r.redis().await?,
        DbEngine::Sqlite => r.sqlite().await?,
        DbEngine::Mongo => r.mongo().await?,
    };
    Ok(ReplayReport {
        artifact: artifact.path.clone(),
        container: container.to_string(),
        engine: db_engine.to_string(),
        database: artifact.database.clone(),
        counts,
    })
}

/// Compares the file with the manifest before anything is replayed: a dump cut short or
/// damaged would otherwise drop tables and then fail to recreate them.
async fn verify(file: &Path, artifact: &Artifact) -> Result<(), ReplayError> {
    let path = file.to_path_buf();
    let (size, sha256) = tokio::task::spawn_blocking(move || -> io::Result<(u64, String)> {
        let mut f = File::open(&path)?;
        let mut hasher = sha2::Sha256::new();
        let size = io::copy(&mut f, &mut hasher)?;
        Ok((size, hex::encode(hasher.finalize())))
    })
    .await
    .map_err(|e| ReplayError::Read {
        path: file.to_path_buf(),
        source: io::Error::other(e),
    })?
    .map_err(|source| ReplayError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    if size != artifact.size {
        return Err(ReplayError::Mismatch {
            path: file.to_path_buf(),
            what: "the size",
            expected: artifact.size.to_string(),
            actual: size.to_string(),
        });
    }
    if !sha256.eq_ignore_ascii_case(&artifact.sha256) {
        return Err(ReplayError::Mismatch {
            path: file.to_path_buf(),
            what: "the sha256",
            expected: artifact.sha256.clone(),
            actual: sha256,
        });
    }
    Ok(())
}

/// The artifact decompressed, as its extension says the backup compressed it.
fn open_dump(file: &Path) -> io::Result<Box<dyn Read + Send>> {
    let raw = BufReader::with_capacity(CHUNK, File::open(file)?);
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    Ok(if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::with_buffer(raw)?)
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(raw))
    } else {
        Box::new(raw)
    })
}

/// Reads the decompressed dump on a blocking thread and hands it over in chunks. A read
/// error is passed on as the last item.
fn spawn_reader(
    file: &Path,
    fill: impl FnOnce(Box<dyn Read + Send>, &mut ChannelWriter) -> io::Result<()> + Send + 'static,
) -> mpsc::Receiver<io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(DEPTH);
    let file = file.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter { tx };
        let result = open_dump(&file).and_then(|dump| fill(dump, &mut out));
        if let Err(e) = result {
            // Nobody listens any more if the consumer gave up; nothing else to tell.
            let _ = out.tx.blocking_send(Err(e));
        }
    });
    rx
}

/// The decompressed dump as a plain byte stream.
fn dump_stream(file: &Path) -> ChannelRead {
    ChannelRead::new(spawn_reader(file, |mut dump, out| {
        io::copy(&mut dump, out).map(|_| ())
    }))
}

/// The decompressed dump as a tar stream holding one file `name`, for Docker's archive
/// upload, which takes owners and mode from the header.
fn dump_tar(
    file: &Path,
    name: String,
    size: u64,
    uid: u64,
    gid: u64,
    mode: u32,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    let rx = spawn_reader(file, move |dump, out| {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(mode);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_entry_type(tar::EntryType::Regular);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        header.set_mtime(now);
        let mut builder = tar::Builder::new(out);
        let mut exact = Exact {
            inner: dump,
            left: size,
        };
        builder.append_data(&mut header, &name, &mut exact)?;
        exact.at_end()?;
        builder.finish()
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// Passes on exactly `left` bytes, and fails if the source has fewer or more: a tar header
/// states the size before the content, so a wrong size would make a corrupt archive.
struct Exact {
    inner: Box<dyn Read + Send>,
    left: u64,
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the dump ended {} bytes early", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

impl Exact {
    fn at_end(&mut self) -> io::Result<()> {
        let mut one = [0u8; 1];
        if self.left == 0 && self.inner.read(&mut one)? == 0 {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the dump is longer than the manifest says",
            ))
        }
    }
}

/// The sending end of the chunk channel, as a blocking writer.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the consumer stopped"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The receiving end of the chunk channel, as an async reader.
struct ChannelRead {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelRead {
    fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChannelRead {
            rx,
            current: Bytes::new(),
        }
    }
}

impl AsyncRead for ChannelRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.current.is_empty() {
            match this.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(Some(Ok(chunk))) => this.current = chunk,
            }
        }
        let n = buf.remaining().min(this.current.len());
        buf.put_slice(&this.current[..n]);
        this.current.advance(n);
        Poll::Ready(Ok(()))
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The end of a command's stderr, enough to see why it failed.
fn tail(stderr: &str) -> String {
    let trimmed = stderr.trim();
    let start = trimmed.len().saturating_sub(2000);
    let start = (start..=trimmed.len())
        .find(|&i| trimmed.is_char_boundary(i))
        .unwrap_or(0);
    trimmed[start..].to_string()
}

/// A name from a listing that printed it in hex, so that no character of it can be taken
/// for a separator.
fn unhex(text: &str) -> Option<String> {
    hex::decode(text.trim())
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// `"name"` for PostgreSQL and SQLite.
fn quote_double(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `` `name` `` for MariaDB and MySQL.
fn quote_backtick(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Reads `<index><separator><count>` lines, as the count statements print them, into
/// counts for the given names.
fn parse_counts(names: &[String], stdout: &[u8]) -> Vec<(String, u64)> {
    let text = String::from_utf8_lossy(stdout);
    let mut counts = Vec::new();
    for line in text.lines() {
        let mut parts = line.split(['|', '\t']);
        let (Some(i), Some(n)) = (parts.next(), parts.next()) else {
            continue;
        };
        if let (Ok(i), Ok(n)) = (i.trim().parse::<usize>(), n.trim().parse::<u64>())
            && let Some(name) = names.get(i)
        {
            counts.push((name.clone(), n));
        }
    }
    counts
}

/// One count statement per table: a compound select would run into SQLite's limit on
/// compound terms, and separate statements work the same in every engine.
fn count_script(tables: &[String], terminator: &str) -> String {
    tables
        .iter()
        .enumerate()
        .map(|(i, t)| format!("SELECT {i}, count(*) FROM {t}{terminator}\n"))
        .collect()
}

/// Keeps the first [`MAX_TABLES`] entries, saying so when there were more.
fn bounded<T>(mut items: Vec<T>, container: &str) -> Vec<T> {
    if items.len() > MAX_TABLES {
        warn!(
            container,
            tables = items.len(),
            "counting rows of the first {MAX_TABLES} tables only"
        );
        items.truncate(MAX_TABLES);
    }
    items
}

/// Runs `psql` as the administrative user (or the given one). Over the socket the
/// official images trust local users; where they do not, the container's own
/// `POSTGRES_PASSWORD` is offered.
const PSQL: &str = r#"if [ -z "${PGPASSWORD:-}" ] && [ -n "${POSTGRES_PASSWORD:-}" ]; then PGPASSWORD=$POSTGRES_PASSWORD; export PGPASSWORD; fi; exec psql -X -w -U "${HF_USER:-${POSTGRES_USER:-postgres}}" "$@""#;

/// Runs the MariaDB client (or MySQL's where there is no MariaDB), as root with the
/// container's root password unless a user or password was given.
const MYSQL: &str = r#"if [ -z "${MYSQL_PWD:-}" ] && [ -z "${HF_USER:-}" ]; then MYSQL_PWD=${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}; fi; if [ -n "${MYSQL_PWD:-}" ]; then export MYSQL_PWD; fi; if command -v mariadb >/dev/null 2>&1; then exec mariadb -u "${HF_USER:-root}" "$@"; else exec mysql -u "${HF_USER:-root}" "$@"; fi"#;

/// Runs `redis-cli --raw`, with the container's `REDIS_PASSWORD` if it has one.
const REDIS_CLI: &str = r#"if [ -z "${REDISCLI_AUTH:-}" ] && [ -n "${REDIS_PASSWORD:-}" ]; then REDISCLI_AUTH=$REDIS_PASSWORD; export REDISCLI_AUTH; fi; exec redis-cli ${HF_USER:+--user "$HF_USER"} --raw "$@""#;

/// The owner and mode of a file, or of its folder (mode 600) when the file does not exist
/// yet: what a file put in its place must have for the service to use it.
const OWNER: &str = r#"if [ -e "$1" ]; then exec stat -L -c '%u %g %a' "$1"; else exec stat -L -c '%u %g 600' "$(dirname "$1")"; fi"#;

/// Restores an SQLite database from the copy uploaded beside it, through SQLite's backup
/// API, so that connections the application holds stay valid; then removes the copy,
/// whatever happened. The copy's name has no quotes, and the command runs in its folder,
/// so it can be quoted safely for `.restore`.
const SQLITE_RESTORE: &str = r#"db=$1
case $db in /*) ;; *) db=$PWD/$db ;; esac
cd "$(dirname "$2")" || exit 1
name=$(basename "$2")
rc=0
sqlite3 -bail -cmd '.timeout 30000' "$db" ".restore '$name'" || rc=$?
rm -f "$name"
exit $rc"#;

/// `mongorestore` with `--drop`, so each collection in the archive replaces the live one.
/// Untested against a server: no Debian package ships one. Like the dump, it gets the
/// password through a private config file (`--config`, mode 0600, removed at the end),
/// never on its command line: mongorestore reads no password variable.
const MONGO_RESTORE: &str = r#"u=${HF_USER:-${MONGO_INITDB_ROOT_USERNAME:-}}
p=${HOLDFAST_MONGO_PASSWORD:-${MONGO_INITDB_ROOT_PASSWORD:-}}
c=
if [ -n "$p" ]; then
	c=$(mktemp) || exit 1
	trap 'rm -f "$c"' EXIT INT TERM
	printf "password: '%s'\n" "$(printf '%s' "$p" | sed "s/'/''/g")" > "$c" || exit 1
fi
mongorestore --archive --drop --quiet ${u:+--username "$u" --authenticationDatabase admin} ${c:+"--config=$c"}
"#;

struct Replay<'a> {
    engine: &'a Engine,
    container: &'a str,
    artifact: &'a Artifact,
    file: &'a Path,
    credentials: &'a Credentials,
}

impl Replay<'_> {
    fn docker(&self, source: DockerError) -> ReplayError {
        ReplayError::Docker {
            artifact: self.artifact.path.clone(),
            container: self.container.to_string(),
            source: Box::new(source),
        }
    }

    fn refused(&self, reason: impl Into<String>) -> ReplayError {
        ReplayError::Refused {
            artifact: self.artifact.path.clone(),
            container: self.container.to_string(),
            reason: reason.into(),
        }
    }

    fn invalid(&self, what: impl Into<String>) -> ReplayError {
        ReplayError::Invalid {
            artifact: self.artifact.path.clone(),
            what: what.into(),
        }
    }

    /// A finished command, as an error unless it exited 0.
    fn check(&self, step: &'static str, out: ExecOutput) -> Result<ExecOutput, ReplayError> {
        if out.exit_code == 0 {
            Ok(out)
        } else {
            Err(ReplayError::Failed {
                artifact: self.artifact.path.clone(),
                container: self.container.to_string(),
                step,
                code: out.exit_code,
                stderr: tail(&out.stderr),
            })
        }
    }

    /// Runs `command` with `input` on its stdin and requires exit code 0.
    async fn run(
        &self,
        step: &'static str,
        command: Vec<String>,
        env: Vec<String>,
        input: impl AsyncRead + Send + Unpin,
        timeout: Duration,
    ) -> Result<ExecOutput, ReplayError> {
        let out = self
            .engine
            .exec_with_stdin(self.container, &command, &env, input, timeout)
            .await
            .map_err(|e| self.docker(e))?;
        self.check(step, out)
    }

    /// Runs `command` with the decompressed dump on its stdin.
    async fn stream(
        &self,
        step: &'static str,
        command: Vec<String>,
        env: Vec<String>,
    ) -> Result<(), ReplayError> {
        self.run(step, command, env, dump_stream(self.file), REPLAY_TIMEOUT)
            .await
            .map(|_| ())
    }

    /// The dump's size once decompressed: from the manifest, or by reading it through.
    async fn dump_size(&self) -> Result<u64, ReplayError> {
        if self.artifact.source_bytes > 0 {
            return Ok(self.artifact.source_bytes);
        }
        let file = self.file.to_path_buf();
        tokio::task::spawn_blocking(move || io::copy(&mut open_dump(&file)?, &mut io::sink()))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(|source| ReplayError::Read {
                path: self.file.to_path_buf(),
                source,
            })
    }

    /// `uid gid mode` of a path in the container, as [`OWNER`] finds them.
    async fn owner(&self, path: &str) -> Result<(u64, u64, u32), ReplayError> {
        let out = self
            .run(
                "finding the owner",
                strings(&["sh", "-c", OWNER, "sh", path]),
                Vec::new(),
                &b""[..],
                QUERY_TIMEOUT,
            )
            .await?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text.split_whitespace();
        let parsed = (|| {
            let uid = parts.next()?.parse().ok()?;
            let gid = parts.next()?.parse().ok()?;
            let mode = u32::from_str_radix(parts.next()?, 8).ok()?;
            Some((uid, gid, mode & 0o7777))
        })();
        parsed.ok_or_else(|| self.refused(format!("cannot tell who owns {path}: {text:?}")))
    }

    // PostgreSQL

    fn psql_command(&self, args: &[&str]) -> (Vec<String>, Vec<String>) {
        let mut command = strings(&["sh", "-c", PSQL, "sh"]);
        let mut env = Vec::new();
        if let Some(u) = &self.credentials.user {
            env.push(format!("HF_USER={u}"));
        }
        if let Some(p) = &self.credentials.password {
            // As for the dump: a password is only checked over TCP.
            env.push(format!("PGPASSWORD={p}"));
            command.extend(strings(&["-h", "127.0.0.1"]));
        }
        command.extend(strings(args));
        (command, env)
    }

    /// A query whose output is read, in `database`.
    async fn psql_query(
        &self,
        step: &'static str,
        database: &str,
        sql: String,
        timeout: Duration,
    ) -> Result<ExecOutput, ReplayError> {
        let (command, mut env) = self.psql_command(&["-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
        // libpq never parses PGDATABASE as a connection string, unlike `-d`.
        env.push(format!("PGDATABASE={database}"));
        self.run(step, command, env, sql.as_bytes(), timeout).await
    }

    async fn postgres(&self) -> Result<Vec<(String, u64)>, ReplayError> {
        // The dump creates any database it needs and connects to each itself, so the
        // session starts in the maintenance database, which every cluster has.
        let (command, mut env) =
            self.psql_command(&["-q", "-o", "/dev/null", "-v", "ON_ERROR_STOP=1"]);
        env.push("PGDATABASE=postgres".into());
        self.stream("psql", command, env).await?;

        let databases = match &self.artifact.database {
            Some(db) => vec![db.clone()],
            None => {
                let out = self
                    .psql_query(
                        "listing databases",
                        "postgres",
                        "SELECT encode(convert_to(datname, 'UTF8'), 'hex') FROM pg_catalog.pg_database \
                         WHERE datallowconn AND NOT datistemplate ORDER BY datname;\n"
                            .into(),
                        QUERY_TIMEOUT,
                    )
                    .await?;
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(unhex)
                    .collect()
            }
        };
        let mut counts = Vec::new();
        for db in databases {
            let room = MAX_TABLES.saturating_sub(counts.len());
            if room == 0 {
                warn!(
                    container = self.container,
                    "counting rows of the first {MAX_TABLES} tables only"
                );
                break;
            }
            let listing = format!(
                "SELECT encode(convert_to(n.nspname, 'UTF8'), 'hex'), encode(convert_to(c.relname, 'UTF8'), 'hex') \
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
                 AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' \
                 ORDER BY n.nspname, c.relname LIMIT {};\n",
                room + 1
            );
            let out = self
                .psql_query("listing tables", &db, listing, QUERY_TIMEOUT)
                .await?;
            let tables: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| {
                    let (s, t) = l.split_once('|')?;
                    Some((unhex(s)?, unhex(t)?))
                })
                .collect();
            let tables = if tables.len() > room {
                warn!(
                    container = self.container,
                    "counting rows of the first {MAX_TABLES} tables only"
                );
                tables[..room].to_vec()
            } else {
                tables
            };
            if tables.is_empty() {
                continue;
            }
            let names: Vec<String> = tables
                .iter()
                .map(|(s, t)| format!("{db}.{s}.{t}"))
                .collect();
            let quoted: Vec<String> = tables
                .iter()
                .map(|(s, t)| format!("{}.{}", quote_double(s), quote_double(t)))
                .collect();
            let out = self
                .psql_query(
                    "counting rows",
                    &db,
                    count_script(&quoted, ";"),
                    COUNT_TIMEOUT,
                )
                .await?;
            counts.extend(parse_counts(&names, &out.stdout));
        }
        Ok(counts)
    }

    // MariaDB and MySQL

    fn mysql_command(&self, args: &[&str]) -> (Vec<String>, Vec<String>) {
        let mut command = strings(&["sh", "-c", MYSQL, "sh"]);
        command.extend(strings(args));
        let mut env = Vec::new();
        if let Some(u) = &self.credentials.user {
            env.push(format!("HF_USER={u}"));
        }
        if let Some(p) = &self.credentials.password {
            env.push(format!("MYSQL_PWD={p}"));
        }
        (command, env)
    }

    async fn mysql(&self) -> Result<Vec<(String, u64)>, ReplayError> {
        // The dump drops and recreates each table, and names its databases itself.
        let (command, env) = self.mysql_command(&[]);
        self.stream("the SQL client", command, env).await?;

        let filter = match &self.artifact.database {
            Some(db) => format!(
                "table_schema = CONVERT(X'{}' USING utf8mb4)",
                hex::encode(db)
            ),
            None => {
                "table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')"
                    .to_string()
            }
        };
        let listing = format!(
            "SELECT HEX(table_schema), HEX(table_name) FROM information_schema.tables \
             WHERE table_type = 'BASE TABLE' AND {filter} ORDER BY table_schema, table_name LIMIT {};\n",
            MAX_TABLES + 1
        );
        let (command, env) = self.mysql_command(&["-N", "-B"]);
        let out = self
            .run(
                "listing tables",
                command,
                env,
                listing.as_bytes(),
                QUERY_TIMEOUT,
            )
            .await?;
        let tables: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (s, t) = l.split_once('\t')?;
                Some((unhex(s)?, unhex(t)?))
            })
            .collect();
        let tables = bounded(tables, self.container);
        if tables.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = tables.iter().map(|(s, t)| format!("{s}.{t}")).collect();
        let quoted: Vec<String> = tables
            .iter()
            .map(|(s, t)| format!("{}.{}", quote_backtick(s), quote_backtick(t)))
            .collect();
        let (command, env) = self.mysql_command(&["-N", "-B"]);
        let script = count_script(&quoted, ";");
        let out = self
            .run(
                "counting rows",
                command,
                env,
                script.as_bytes(),
                COUNT_TIMEOUT,
            )
            .await?;
        Ok(parse_counts(&names, &out.stdout))
    }

    // Redis

    fn redis_command(&self, args: &[&str]) -> (Vec<String>, Vec<String>) {
        let mut command = strings(&["sh", "-c", REDIS_CLI, "sh"]);
        command.extend(strings(args));
        let mut env = Vec::new();
        if let Some(u) = &self.credentials.user {
            env.push(format!("HF_USER={u}"));
        }
        if let Some(p) = &self.credentials.password {
            env.push(format!("REDISCLI_AUTH={p}"));
        }
        (command, env)
    }

    /// A value of `CONFIG GET name`.
    async fn redis_config(&self, name: &str) -> Result<String, ReplayError> {
        let (command, env) = self.redis_command(&["CONFIG", "GET", name]);
        let out = self
            .run(
                "redis-cli CONFIG GET",
                command,
                env,
                &b""[..],
                QUERY_TIMEOUT,
            )
            .await?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = text.lines();
        match (lines.next(), lines.next()) {
            (Some(key), Some(value)) if key == name => Ok(value.to_string()),
            _ => Err(self.refused(format!(
                "redis-cli CONFIG GET {name} answered {:?}",
                tail(&text)
            ))),
        }
    }

    async fn redis(&self) -> Result<Vec<(String, u64)>, ReplayError> {
        // With the append-only file on, Redis loads it at start and ignores the RDB file,
        // so putting the dump in place would silently change nothing.
        if self.redis_config("appendonly").await?.trim() == "yes" {
            return Err(self.refused(
                "the server has appendonly on, so it would load its append-only file and ignore \
                 the RDB dump; turn appendonly off for the restore, then on again",
            ));
        }
        let dir = self.redis_config("dir").await?;
        let name = self.redis_config("dbfilename").await?;
        if dir.is_empty() || !dir.starts_with('/') || name.is_empty() || name.contains('/') {
            return Err(self.refused(format!(
                "unexpected data folder {dir:?} or file name {name:?}"
            )));
        }
        let (uid, gid, mode) = self.owner(&format!("{dir}/{name}")).await?;
        let size = self.dump_size().await?;

        info!(
            container = self.container,
            "stopping Redis to put its RDB file in place"
        );
        self.engine
            .stop(self.container, REDIS_STOP_TIMEOUT)
            .await
            .map_err(|e| self.docker(e))?;
        let uploaded = self
            .engine
            .upload(
                self.container,
                &dir,
                dump_tar(self.file, name, size, uid, gid, mode),
            )
            .await;
        // Started again whatever happened: a failed upload leaves the old file in place.
        let started = self.engine.start(self.container).await;
        uploaded.map_err(|e| self.docker(e))?;
        started.map_err(|e| self.docker(e))?;

        self.redis_wait().await?;
        let (command, env) = self.redis_command(&["INFO", "keyspace"]);
        let out = self
            .run("redis-cli INFO", command, env, &b""[..], QUERY_TIMEOUT)
            .await?;
        Ok(parse_keyspace(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Waits until Redis answers PONG, which it does only once the RDB file is loaded.
    async fn redis_wait(&self) -> Result<(), ReplayError> {
        let deadline = Instant::now() + REDIS_LOAD_TIMEOUT;
        loop {
            let (command, env) = self.redis_command(&["PING"]);
            let last = match self
                .engine
                .exec_with_stdin(self.container, &command, &env, &b""[..], QUERY_TIMEOUT)
                .await
            {
                Ok(out) if String::from_utf8_lossy(&out.stdout).trim() == "PONG" => {
                    return Ok(());
                }
                Ok(out) => format!(
                    "{} {}",
                    String::from_utf8_lossy(&out.stdout).trim(),
                    out.stderr.trim()
                ),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(self.refused(format!(
                    "Redis did not answer PING within {REDIS_LOAD_TIMEOUT:?} after the restart: {}",
                    tail(&last)
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    // SQLite

    async fn sqlite(&self) -> Result<Vec<(String, u64)>, ReplayError> {
        let Some(db) = self.artifact.database.as_deref() else {
            return Err(self.invalid("an SQLite dump must name its database file"));
        };
        let (uid, gid, _) = self.owner(db).await?;
        let dir = match db.rsplit_once('/') {
            Some(("", _)) => "/".to_string(),
            Some((dir, _)) => dir.to_string(),
            None => ".".to_string(),
        };
        if !dir.starts_with('/') {
            return Err(self.invalid(format!("the database path {db:?} is not absolute")));
        }
        // Beside the database: its folder exists and is writable by its owner, and the copy
        // stays on the same volume. The name holds no quote, for `.restore`.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(".holdfast-replay-{}-{nanos}.db", std::process::id());
        let copy = format!("{}/{name}", dir.trim_end_matches('/'));
        let size = self.dump_size().await?;
        self.engine
            .upload(
                self.container,
                &dir,
                dump_tar(self.file, name, size, uid, gid, 0o600),
            )
            .await
            .map_err(|e| self.docker(e))?;
        // As the database's owner, so that any file SQLite creates beside it (a journal)
        // stays usable by the application.
        let user = format!("{uid}:{gid}");
        let restore = strings(&["sh", "-c", SQLITE_RESTORE, "sh", db, &copy]);
        let out = self
            .engine
            .exec_with_stdin_as(
                self.container,
                Some(&user),
                &restore,
                &[],
                &b""[..],
                REPLAY_TIMEOUT,
            )
            .await
            .map_err(|e| self.docker(e))?;
        self.check("sqlite3 .restore", out)?;

        let sqlite = |sql: String, step: &'static str, timeout: Duration| {
            let command = strings(&["sqlite3", "-bail", "-cmd", ".timeout 30000", db]);
            let user = user.clone();
            async move {
                let out = self
                    .engine
                    .exec_with_stdin_as(
                        self.container,
                        Some(&user),
                        &command,
                        &[],
                        sql.as_bytes(),
                        timeout,
                    )
                    .await
                    .map_err(|e| self.docker(e))?;
                self.check(step, out)
            }
        };
        let listing = format!(
            "SELECT hex(name) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name LIMIT {};\n",
            MAX_TABLES + 1
        );
        let out = sqlite(listing, "listing tables", QUERY_TIMEOUT).await?;
        let tables: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(unhex)
            .collect();
        let tables = bounded(tables, self.container);
        if tables.is_empty() {
            return Ok(Vec::new());
        }
        let quoted: Vec<String> = tables.iter().map(|t| quote_double(t)).collect();
        let out = sqlite(count_script(&quoted, ";"), "counting rows", COUNT_TIMEOUT).await?;
        Ok(parse_counts(&tables, &out.stdout))
    }

    // MongoDB

    async fn mongo(&self) -> Result<Vec<(String, u64)>, ReplayError> {
        let mut env = Vec::new();
        if let Some(u) = &self.credentials.user {
            env.push(format!("HF_USER={u}"));
        }
        if let Some(p) = &self.credentials.password {
            env.push(format!("HOLDFAST_MONGO_PASSWORD={p}"));
        }
        self.stream(
            "mongorestore",
            strings(&["sh", "-c", MONGO_RESTORE, "sh"]),
            env,
        )
        .await?;
        Ok(Vec::new())
    }
}

/// Keys per database from `INFO keyspace` (`db0:keys=1,expires=0,avg_ttl=0`).
fn parse_keyspace(info: &str) -> Vec<(String, u64)> {
    info.lines()
        .filter_map(|line| {
            let (db, fields) = line.trim().split_once(':')?;
            if !db.starts_with("db") {
                return None;
            }
            let keys = fields
                .split(',')
                .find_map(|f| f.strip_prefix("keys="))?
                .parse()
                .ok()?;
            Some((db.to_string(), keys))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mongo_password_reaches_mongorestore_only_through_a_config_file() {
        use crate::executor::dumps::tests::{assert_password_only_in_config, run_fake_mongo_tool};
        let record = run_fake_mongo_tool(
            "mongorestore",
            MONGO_RESTORE,
            &[],
            &[
                ("HF_USER", "root"),
                ("HOLDFAST_MONGO_PASSWORD", "it's \"s3cret\" $x"),
            ],
        );
        assert_password_only_in_config(&record, "it's \"s3cret\" $x");
        assert!(record.contains("arg --drop\n"), "{record}");
        // The image's own root password is the fallback, and travels the same way.
        let record = run_fake_mongo_tool(
            "mongorestore",
            MONGO_RESTORE,
            &[],
            &[("MONGO_INITDB_ROOT_PASSWORD", "from-image-pw")],
        );
        assert_password_only_in_config(&record, "from-image-pw");
    }

    #[test]
    fn keyspace_lists_keys_per_database() {
        let info =
            "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=5\r\ndb2:keys=1,expires=0,avg_ttl=0\r\n";
        assert_eq!(
            parse_keyspace(info),
            [("db0".to_string(), 3), ("db2".to_string(), 1)]
        );
        assert!(parse_keyspace("# Keyspace\r\n").is_empty());
    }

    #[test]
    fn counts_follow_their_index() {
        let names = vec!["a".to_string(), "b|c".to_string()];
        assert_eq!(
            parse_counts(&names, b"1|7\n0\t3\nnoise\n9|1\n"),
            [("b|c".to_string(), 7), ("a".to_string(), 3)]
        );
    }

    #[test]
    fn names_are_quoted_for_each_engine() {
        assert_eq!(quote_double("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_backtick("we`ird"), "`we``ird`");
        assert_eq!(
            count_script(&["\"t\"".to_string()], ";"),
            "SELECT 0, count(*) FROM \"t\";\n"
        );
        assert_eq!(unhex("61C3A9").as_deref(), Some("aé"));
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn tail_keeps_the_end_on_a_character_boundary() {
        let long = format!("{}é", "x".repeat(3000));
        let t = tail(&long);
        assert!(t.ends_with('é'));
        assert!(t.len() <= 2001);
    }

    #[test]
    fn exact_refuses_a_wrong_size() {
        let mut short = Exact {
            inner: Box::new(&b"abc"[..]),
            left: 5,
        };
        assert!(io::copy(&mut short, &mut io::sink()).is_err());
        let mut long = Exact {
            inner: Box::new(&b"abcdef"[..]),
            left: 3,
        };
        assert_eq!(io::copy(&mut long, &mut io::sink()).unwrap(), 3);
        assert!(long.at_end().is_err());
        let mut right = Exact {
            inner: Box::new(&b"abc"[..]),
            left: 3,
        };
        io::copy(&mut right, &mut io::sink()).unwrap();
        assert!(right.at_end().is_ok());
    }
}
