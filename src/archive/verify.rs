//! Checks an artifact against its manifest entry by reading it back in full.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::listing;
use super::{ArchiveError, ArtifactInfo};

/// Hashes and counts what is read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
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
    let (size, sha256) = if meta.is_dir() {
        let l = listing::listing(&path).map_err(|e| ArchiveError::io("verifying", &path, e))?;
        (l.size, l.sha256)
    } else {
        let file = File::open(&path).map_err(|e| ArchiveError::io("verifying", &path, e))?;
        let mut raw = HashingReader {
            inner: file,
            hasher: Sha256::new(),
            count: 0,
        };
        let name = info.path.as_str();
        let corrupt = |e: io::Error| ArchiveError::Corrupt {
            path: path.clone(),
            source: e,
        };
        let is_tar = name.ends_with(".tar") || name.contains(".tar.");
        if name.ends_with(".zst") {
            // Reads every concatenated frame up to the end of the file.
            let mut dec = zstd::stream::read::Decoder::new(&mut raw).map_err(corrupt)?;
            drain_content(&mut dec, is_tar).map_err(corrupt)?;
        } else if name.ends_with(".gz") {
            let buffered = BufReader::with_capacity(1 << 20, &mut raw);
            let mut dec = flate2::read::MultiGzDecoder::new(buffered);
            drain_content(&mut dec, is_tar).map_err(corrupt)?;
        } else {
            let mut buffered = BufReader::with_capacity(1 << 20, &mut raw);
            drain_content(&mut buffered, is_tar).map_err(corrupt)?;
        }
        io::copy(&mut raw, &mut io::sink()).map_err(corrupt)?;
        (raw.count, hex::encode(raw.hasher.finalize()))
    };
    if size != info.size {
        return Err(mismatch(
            &path,
            "size",
            info.size.to_string(),
            size.to_string(),
        ));
    }
    if sha256 != info.sha256 {
        return Err(mismatch(&path, "sha256", info.sha256.clone(), sha256));
    }
    Ok(())
}

/// Reads a decompressed artifact to its end, walking every entry when it is a tar.
fn drain_content(r: &mut dyn Read, is_tar: bool) -> io::Result<()> {
    if is_tar {
        let mut archive = tar::Archive::new(&mut *r);
        for entry in archive.entries()? {
            io::copy(&mut entry?, &mut io::sink())?;
        }
    }
    // Past the end-of-archive blocks, or the whole of a plain stream.
    io::copy(r, &mut io::sink())?;
    Ok(())
}
