//! S3-compatible buckets (Garage, MinIO, Ceph, AWS S3, Backblaze B2, Cloudflare R2)
//! through opendal.
//!
//! Storage calls come from blocking workers (see [`super::storage`]); they drive opendal's
//! async operator on the remote runtime ([`super::remote`]). Uploads are multipart: parts
//! of [`PART`] bytes go out one after the other on a thread of their own while the next
//! one is compressed, handed over with [`QUEUED`] waiting, which bounds the memory an
//! upload takes (opendal's own concurrent parts keep every finished part in memory until the
//! upload closes, in this release). A writer dropped before it is committed aborts its
//! multipart upload. Transient failures (timeouts, 5xx, resets) are
//! retried with backoff by opendal's retry layer, each request under a timeout.

use std::io::{self, Read, Write};
use std::sync::Once;
use std::time::Duration;

use futures_util::StreamExt;
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{ErrorKind, Operator};

use super::objects::Objects;
use super::remote::block_on;
use crate::archive::{OutFile, StoredDigest};
use crate::spec::repository::{HostSecretError, S3Storage};

/// Bytes per uploaded part: the least S3 takes (but for the last part).
const PART: usize = 5 << 20;
/// Parts waiting for the upload thread: none, a hand-over. One part fills while the one
/// before it uploads (opendal keeps the part it was last handed until the next one comes,
/// to know which is last), so an upload holds at most three parts (15 MiB).
const QUEUED: usize = 0;
/// Bytes fetched per ranged read when downloading.
const READ_CHUNK: usize = 8 << 20;

/// rustls's ring provider and opendal's HTTP transport, installed once per process.
fn install_transport() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed one already; either is fine.
        // ring rather than aws-lc-rs (post-quantum key exchange) for the build's sake.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        opendal_http_transport_reqwest::install_default();
    });
}

/// Why a bucket cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("spec.storage.s3.{field}: {source}")]
    Secret {
        field: &'static str,
        #[source]
        source: HostSecretError,
    },
    #[error("spec.storage.s3: {0}")]
    Config(String),
}

/// A bucket and prefix.
#[derive(Debug)]
pub struct S3Objects {
    op: Operator,
    shown: String,
}

impl S3Objects {
    /// Opens the bucket a spec names; secrets are read now. Nothing is sent yet.
    pub fn new(spec: &S3Storage) -> Result<S3Objects, S3Error> {
        install_transport();
        let key = spec
            .access_key_id
            .read()
            .map_err(|source| S3Error::Secret {
                field: "accessKeyId",
                source,
            })?;
        let secret = spec
            .secret_access_key
            .read()
            .map_err(|source| S3Error::Secret {
                field: "secretAccessKey",
                source,
            })?;
        let prefix = spec.prefix.trim_matches('/');
        let mut builder = opendal::services::S3::default()
            .endpoint(&spec.endpoint)
            .region(&spec.region)
            .bucket(&spec.bucket)
            .root(&format!("/{prefix}"))
            .access_key_id(&key)
            .secret_access_key(&secret)
            .disable_config_load()
            .disable_ec2_metadata();
        if !spec.path_style {
            builder = builder.enable_virtual_host_style();
        }
        let op = Operator::new(builder)
            .map_err(|e| S3Error::Config(e.to_string()))?
            .layer(
                TimeoutLayer::new()
                    .with_timeout(Duration::from_secs(60))
                    .with_io_timeout(Duration::from_secs(60)),
            )
            .layer(
                RetryLayer::new()
                    .with_max_times(5)
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10))
                    .with_jitter(),
            );
        let shown = if prefix.is_empty() {
            format!("s3://{}", spec.bucket)
        } else {
            format!("s3://{}/{prefix}", spec.bucket)
        };
        Ok(S3Objects { op, shown })
    }
}

/// An opendal error as an I/O error of the kind callers judge (not found, refused,
/// transient), saying first what a person can act on (the credentials were refused, the
/// bucket does not exist, the connection was refused), then the server's own words. The
/// request's headers, which opendal's text carries, are left out; no secret is in any.
pub(crate) fn io_error(e: opendal::Error) -> io::Error {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    let code = quoted_field(&text, "code");
    let said = quoted_field(&text, "message");
    let server = match (&code, &said) {
        (Some(code), Some(said)) => format!(" ({code}: {said})"),
        (Some(code), None) => format!(" ({code})"),
        _ => String::new(),
    };
    let has = |needle: &str| text.contains(needle);
    let (kind, reason) = if has("NoSuchBucket") {
        (
            io::ErrorKind::NotFound,
            format!("the bucket does not exist{server}"),
        )
    } else if has("InvalidAccessKeyId")
        || has("SignatureDoesNotMatch")
        || has("Invalid signature")
        || has("No such key")
        || (e.kind() == ErrorKind::PermissionDenied && has("403"))
    {
        (
            io::ErrorKind::PermissionDenied,
            format!("the credentials were refused{server}"),
        )
    } else if has("Connection refused") || has("ConnectionRefused") {
        (
            io::ErrorKind::ConnectionRefused,
            "the connection was refused (is the server running, and is the endpoint's port right?)"
                .to_string(),
        )
    } else if has("dns error") || has("failed to lookup address") {
        (
            io::ErrorKind::NotConnected,
            "the endpoint's host name does not resolve".to_string(),
        )
    } else if has("timed out") || has("Timeout") || e.kind() == ErrorKind::RateLimited {
        (
            io::ErrorKind::TimedOut,
            "the server did not answer in time".to_string(),
        )
    } else {
        let kind = match e.kind() {
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::PermissionDenied => io::ErrorKind::PermissionDenied,
            ErrorKind::AlreadyExists => io::ErrorKind::AlreadyExists,
            _ if e.is_temporary() => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::Other,
        };
        let short = text.split(", context:").next().unwrap_or(&text).to_string();
        (kind, format!("{short}{server}"))
    };
    io::Error::new(kind, reason)
}

/// `value` in text holding `name: "value"` (how opendal shows an S3 error's fields).
fn quoted_field(text: &str, name: &str) -> Option<String> {
    let start = text.find(&format!("{name}: \""))? + name.len() + 3;
    let end = text[start..].find('"')?;
    Some(text[start..start + end].to_string())
}

impl Objects for S3Objects {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<(String, u64)>> {
        let entries = block_on(async { self.op.list_with(prefix).recursive(true).await })
            .map_err(io_error)?;
        Ok(entries
            .into_iter()
            .filter(|e| !e.path().ends_with('/'))
            .map(|e| (e.path().to_string(), e.metadata().content_length()))
            .collect())
    }

    fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        match block_on(self.op.read(key)) {
            Ok(buffer) => Ok(Some(buffer.to_vec())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }

    fn size(&self, key: &str) -> io::Result<Option<u64>> {
        match block_on(self.op.stat(key)) {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }

    fn reader(&self, key: &str) -> io::Result<Box<dyn Read + Send>> {
        let stream = block_on(async {
            self.op
                .reader_with(key)
                .chunk(READ_CHUNK)
                .concurrent(2)
                .await?
                .into_bytes_stream(..)
                .await
        })
        .map_err(io_error)?;
        Ok(Box::new(StreamReader {
            stream: Box::pin(stream),
            current: bytes::Bytes::new(),
        }))
    }

    fn range(&self, key: &str, offset: u64, length: u64) -> io::Result<Vec<u8>> {
        let buffer =
            block_on(async { self.op.read_with(key).range(offset..offset + length).await })
                .map_err(io_error)?;
        Ok(buffer.to_vec())
    }

    fn writer(&self, key: &str) -> io::Result<Box<dyn OutFile>> {
        let mut writer = block_on(async { self.op.writer_with(key).await }).map_err(io_error)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Part>(QUEUED);
        let digest = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hashing = digest.clone();
        // Parts go out on a thread of their own, so compression goes on while one uploads;
        // the queue between them bounds the memory an upload takes.
        let worker = std::thread::Builder::new()
            .name("holdfast-upload".into())
            .spawn(move || -> io::Result<Option<StoredDigest>> {
                use sha2::Digest;
                let (mut hasher, mut count) = (sha2::Sha256::new(), 0u64);
                loop {
                    match rx.recv() {
                        Ok(Part::Data(part)) => {
                            if hashing.load(std::sync::atomic::Ordering::Relaxed) {
                                hasher.update(&part);
                                count += part.len() as u64;
                            }
                            if let Err(e) = block_on(writer.write(part)) {
                                let _ = block_on(writer.abort());
                                return Err(io_error(e));
                            }
                        }
                        Ok(Part::Close) => {
                            block_on(writer.close()).map_err(io_error)?;
                            let hashed = hashing.load(std::sync::atomic::Ordering::Relaxed);
                            return Ok(hashed.then(|| StoredDigest {
                                size: count,
                                sha256: hex::encode(hasher.finalize()),
                            }));
                        }
                        // Dropped before it was committed: the multipart upload goes.
                        Err(_) => {
                            let _ = block_on(writer.abort());
                            return Err(io::Error::other("the upload was abandoned"));
                        }
                    }
                }
            })?;
        Ok(Box::new(Upload {
            tx: Some(tx),
            worker: Some(worker),
            buffer: Vec::with_capacity(PART),
            digest,
        }))
    }

    fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        block_on(self.op.write(key, bytes.to_vec()))
            .map(|_| ())
            .map_err(io_error)
    }

    fn delete(&self, keys: &[String]) -> io::Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        block_on(self.op.delete_iter(keys.iter().map(String::as_str))).map_err(io_error)
    }
}

type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = io::Result<bytes::Bytes>> + Send>>;

/// A download as [`Read`]: the next ranged chunk is fetched when the last is used up.
struct StreamReader {
    stream: ByteStream,
    current: bytes::Bytes,
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match block_on(self.stream.next()) {
                Some(chunk) => self.current = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// What the upload thread is handed.
enum Part {
    Data(Vec<u8>),
    /// Complete the upload.
    Close,
}

/// A multipart upload in progress; aborted when dropped uncommitted.
struct Upload {
    tx: Option<std::sync::mpsc::SyncSender<Part>>,
    worker: Option<std::thread::JoinHandle<io::Result<Option<StoredDigest>>>>,
    buffer: Vec<u8>,
    /// Whether the upload thread hashes what it stores (asked before the first part).
    digest: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Upload {
    /// The upload thread's error, once it has stopped taking parts.
    fn failed(&mut self) -> io::Error {
        self.tx = None;
        match self.worker.take().map(std::thread::JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            Some(Ok(Ok(_))) => io::Error::other("the upload ended early"),
            Some(Err(_)) => io::Error::other("the upload thread panicked"),
            None => io::Error::other("the upload was already completed"),
        }
    }

    fn send(&mut self, part: Part) -> io::Result<()> {
        let Some(tx) = &self.tx else {
            return Err(io::Error::other("the upload was already completed"));
        };
        if tx.send(part).is_err() {
            return Err(self.failed());
        }
        Ok(())
    }

    fn send_buffer(&mut self) -> io::Result<()> {
        let part = std::mem::replace(&mut self.buffer, Vec::with_capacity(PART));
        self.send(Part::Data(part))
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = PART - self.buffer.len();
        let n = buf.len().min(room);
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == PART {
            self.send_buffer()?;
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
            self.send_buffer()?;
        }
        self.send(Part::Close)?;
        self.tx = None;
        match self.worker.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => Err(io::Error::other("the upload thread panicked")),
        }
    }

    /// Only before the first part is handed over: the thread hashes from then on.
    fn digest_stored(&mut self) -> bool {
        self.digest
            .store(true, std::sync::atomic::Ordering::Relaxed);
        true
    }
}

// Dropping an uncommitted upload drops the sender: the upload thread aborts the multipart
// upload on its own, without holding up the failure that dropped it.
