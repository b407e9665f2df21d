//! Checks an artifact against its manifest entry by reading it back in full.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::check::{CheckError, check_tar};
use super::listing;
use super::{ArchiveError, ArtifactInfo, ExtractLimits};
use crate::progress::Silent;

/// Hashes and counts what is read through it.
pub(super) struct HashingReader<R> {
    pub(super) inner: R,
    pub(super) hasher: Sha256,
    pub(super) count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

fn mismatch(path: &Path, what: &'static str, expected: String, actual: String) -> ArchiveError {
    ArchiveError::Mismatch {
        path: path.to_path_buf(),
        what,
        expected,
        actual,
    }
}

pub(crate) fn verify(archive_root: &Path, info: &ArtifactInfo) -> Result<(), ArchiveError> {
    let path = archive_root.join(&info.path);
    let meta =
        std::fs::symlink_metadata(&path).map_err(|e| ArchiveError::io("verifying", &path, e))?;
    if meta.is_dir() {
        let l = listing::listing(&path).map_err(|e| ArchiveError::io("verifying", &path, e))?;
        return check(&path, info, l.size, l.sha256);
    }
    let file = File::open(&path).map_err(|e| ArchiveError::io("verifying", &path, e))?;
    verify_stream(Box::new(file), &path, info)
}

/// Verifies an artifact read from `stream` (a file, a download, a decryption), named
/// `path` in messages.
pub(crate) fn verify_stream(
    stream: Box<dyn Read + Send>,
    path: &Path,
    info: &ArtifactInfo,
) -> Result<(), ArchiveError> {
    let mut raw = HashingReader {
        inner: stream,
        hasher: Sha256::new(),
        count: 0,
    };
    let name = info.path.as_str();
    let corrupt = |e: io::Error| ArchiveError::Corrupt {
        path: path.to_path_buf(),
        source: e,
    };
    let is_tar = name.ends_with(".tar") || name.contains(".tar.");
    let content = |r| read_content(r, is_tar, info, path);
    if name.ends_with(".zst") {
        // Reads every concatenated frame up to the end of the file.
        content(Box::new(
            zstd::stream::read::Decoder::new(&mut raw).map_err(corrupt)?,
        ))?;
    } else if name.ends_with(".gz") {
        let buffered = BufReader::with_capacity(1 << 20, &mut raw);
        content(Box::new(flate2::read::MultiGzDecoder::new(buffered)))?;
    } else {
        content(Box::new(BufReader::with_capacity(1 << 20, &mut raw)))?;
    }
    io::copy(&mut raw, &mut io::sink()).map_err(corrupt)?;
    let (size, sha256) = (raw.count, hex::encode(raw.hasher.finalize()));
    check(path, info, size, sha256)
}

/// Checks only the stored bytes of an encrypted artifact against what its manifest
/// recorded of them: what a host without the identity can know.
pub(crate) fn verify_stored(
    mut stream: Box<dyn Read + Send>,
    path: &Path,
    size: u64,
    sha256: &str,
) -> Result<(), ArchiveError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut count = 0u64;
    loop {
        let n = stream.read(&mut buf).map_err(|e| ArchiveError::Corrupt {
            path: path.to_path_buf(),
            source: e,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        count += n as u64;
    }
    let actual = hex::encode(hasher.finalize());
    if count != size {
        return Err(mismatch(
            path,
            "stored size",
            size.to_string(),
            count.to_string(),
        ));
    }
    if actual != sha256 {
        return Err(mismatch(path, "stored sha256", sha256.to_string(), actual));
    }
    Ok(())
}

fn check(path: &Path, info: &ArtifactInfo, size: u64, sha256: String) -> Result<(), ArchiveError> {
    if size != info.size {
        return Err(mismatch(
            path,
            "size",
            info.size.to_string(),
            size.to_string(),
        ));
    }
    if sha256 != info.sha256 {
        return Err(mismatch(path, "sha256", info.sha256.clone(), sha256));
    }
    Ok(())
}

/// Reads a decompressed artifact to its end; a tar entry by entry, as extraction would.
fn read_content(
    mut r: Box<dyn Read + Send + '_>,
    is_tar: bool,
    info: &ArtifactInfo,
    path: &Path,
) -> Result<(), ArchiveError> {
    if !is_tar {
        io::copy(&mut r, &mut io::sink()).map_err(|e| ArchiveError::Corrupt {
            path: path.to_path_buf(),
            source: e,
        })?;
        return Ok(());
    }
    let limits = ExtractLimits::from_manifest(info.entries, info.source_bytes);
    match check_tar(r, limits, &Silent) {
        Ok(_) => Ok(()),
        Err(CheckError::Source(e)) => Err(ArchiveError::Corrupt {
            path: path.to_path_buf(),
            source: e,
        }),
        Err(CheckError::Content(e)) => Err(ArchiveError::Unrestorable {
            path: path.to_path_buf(),
            source: Box::new(e),
        }),
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
