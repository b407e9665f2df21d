//! Turns data into checksummed artifacts: folder trees and tar streams into tar, tar.gz,
//! tar.zst or plain folders, and single streams (database dumps) into compressed files.
//!
//! Everything streams: memory stays at a few MiB (plus zstd's window and worker buffers)
//! whatever the size of the data. Each artifact is written as `<name>.partial`, fsynced
//! and renamed into place, so an artifact that exists is complete; its size and sha256
//! come from the bytes as they were written, not from reading the file back.
//!
//! Tar output is GNU tar format with entries in a fixed order (a folder, then its
//! contents, names sorted by bytes), so the same data gives the same archive. Owners
//! (numeric and by name), modes, mtimes (to the nanosecond: a pax `mtime` record when
//! there is a fraction), symlinks, hard links, empty folders, long and non-UTF-8 names,
//! fifos and device nodes are kept; sockets are skipped. A file with holes is stored as a
//! GNU sparse 1.0 entry (see the `sparse` module): only its data is read and written.
//!
//! [`extract_artifact`] is the inverse: it puts any of these artifacts back into a folder
//! with the same metadata, refusing every entry that would land outside that folder.

mod check;
pub(crate) mod entry;
mod excludes;
mod extract;
mod folder;
mod listing;
pub(crate) mod output;
mod pick;
mod sparse;
mod stream;
mod sys;
mod tar_in;
pub(crate) mod tar_out;
mod verify;
mod walk;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use excludes::Excludes;
pub use extract::{ExtractLimits, ExtractStats, extract_artifact, extract_tar, sync_tree};
pub use pick::{Listed, ListedKind, PartError};

use crate::progress::Progress;
use crate::spec::common::Format;
use entry::{Sink, SinkError};
use output::{Codec, Compressor, HashingWriter};
pub use output::{OutFile, Outlet, StoredDigest, with_compression_workers};
pub use walk::Shrunk;
use walk::Walked;

/// One artifact as recorded in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactInfo {
    /// Path relative to the archive root, e.g. `volumes/demo_db-data.tar.zst`, or for the
    /// folder format `volumes/demo_db-data` (a folder).
    pub path: String,
    /// Bytes written to disk; for a folder, the sum of its regular file sizes.
    pub size: u64,
    /// Hex sha256 of the file written; for a folder, of its canonical listing (see
    /// [`folder_listing_sha256`]).
    pub sha256: String,
    /// Bytes of source data read, uncompressed.
    pub source_bytes: u64,
    /// Entries archived (files, folders, links, ...).
    pub entries: u64,
    /// Paths left out by exclude patterns. From a folder, an excluded folder counts once
    /// (its contents are never read); from a tar stream, every entry left out counts.
    pub excluded: u64,
    /// Paths skipped because they vanished while being archived, or could not be
    /// archived at all (sockets); each was logged as a warning.
    #[serde(default)]
    pub skipped: u64,
    /// Files that shrank while they were read: the archive holds them padded with zeros
    /// to their size at open, so the run that wrote it is only partly good.
    #[serde(default, skip_serializing_if = "Shrunk::is_empty")]
    pub shrunk: Shrunk,
    /// What was stored, when it is not the bytes above (an encrypted artifact).
    #[serde(skip)]
    pub stored: Option<StoredDigest>,
}

/// Why archiving or verifying failed. Each message says what was being done and to what.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The file system written to is full (or the user's quota is used up): nothing more
    /// was written to it.
    #[error(
        "{action} {}: no space left on the file system at {} ({source}); make room there \
         or move the repository to a larger one, then run again",
        path.display(),
        mount.display()
    )]
    NoSpace {
        action: &'static str,
        path: PathBuf,
        /// Where that file system is mounted.
        mount: PathBuf,
        source: io::Error,
    },
    #[error("reading {entry} from the tar stream: {source}")]
    Stream { entry: String, source: io::Error },
    #[error("tar stream entry {entry:?} is not below {prefix:?}")]
    Prefix { entry: String, prefix: String },
    #[error("refusing tar entry {entry:?}: {reason}")]
    Unsafe { entry: String, reason: &'static str },
    /// An entry that extraction will not write; `origin` is `tar` or `folder`.
    #[error("refusing {origin} entry {entry:?}: {reason}")]
    Refused {
        origin: &'static str,
        entry: String,
        reason: String,
    },
    #[error("malformed tar stream at byte {offset}: {problem}")]
    Malformed { offset: u64, problem: String },
    #[error("exclude pattern {pattern:?}: {reason}")]
    Pattern { pattern: String, reason: String },
    #[error("compression level {level} is out of range {range} for format {format}")]
    Level {
        format: Format,
        level: i32,
        range: String,
    },
    #[error("{:?} is not a relative artifact name", name)]
    Name { name: String },
    #[error("verifying {}: {what} is {actual}, expected {expected}", path.display())]
    Mismatch {
        path: PathBuf,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("verifying {}: the content does not decode: {source}", path.display())]
    Corrupt { path: PathBuf, source: io::Error },
    /// A tar artifact that decodes, but that extraction would refuse or could not read to
    /// its end: verification reads tars with the reader restores use.
    #[error("verifying {}: it would not restore: {source}", path.display())]
    Unrestorable {
        path: PathBuf,
        source: Box<ArchiveError>,
    },
}

impl ArchiveError {
    /// An I/O error on `path`; a full file system says which one it is.
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> ArchiveError {
        if output::is_no_space(&source) {
            return ArchiveError::NoSpace {
                action,
                path: path.to_path_buf(),
                mount: output::mount_point(path),
                source,
            };
        }
        ArchiveError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The file extension of a format: `tar`, `tar.gz`, `tar.zst`, or `` for folder.
pub fn extension(format: Format) -> &'static str {
    match format {
        Format::Tar => "tar",
        Format::TarGz => "tar.gz",
        Format::TarZst => "tar.zst",
        Format::Folder => "",
    }
}

/// Default levels match the tools people compare with: `zstd -3`, `gzip -6`.
fn codec(format: Format, level: Option<i32>) -> Result<Codec, ArchiveError> {
    if let (Some(level), Some(range)) = (level, format.level_range())
        && !range.contains(&level)
    {
        return Err(ArchiveError::Level {
            format,
            level,
            range: format!("{}-{}", range.start(), range.end()),
        });
    }
    Ok(match format {
        Format::TarZst => Codec::Zstd(level.unwrap_or(3)),
        Format::TarGz => Codec::Gzip(level.unwrap_or(6) as u32),
        Format::Tar | Format::Folder => Codec::Plain,
    })
}

/// `rel` plus an extension, refusing names that would land outside the archive root.
fn artifact_name(rel: &str, ext: &str) -> Result<String, ArchiveError> {
    let bad = rel.is_empty()
        || rel.starts_with('/')
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(ArchiveError::Name {
            name: rel.to_string(),
        });
    }
    Ok(if ext.is_empty() {
        rel.to_string()
    } else {
        format!("{rel}.{ext}")
    })
}

/// The error work stops with when its progress says the run was cancelled.
pub(crate) fn cancelled() -> io::Error {
    io::Error::other("the run was cancelled")
}

fn info(path: String, size: u64, sha256: String, w: Walked) -> ArtifactInfo {
    ArtifactInfo {
        path,
        size,
        sha256,
        source_bytes: w.source_bytes,
        entries: w.entries,
        excluded: w.excluded,
        skipped: w.skipped,
        shrunk: w.shrunk,
        stored: None,
    }
}

/// Fills one artifact through `fill`, which gets a sink and the artifact's path (for
/// error messages) and returns what it archived.
fn write_artifact(
    outlet: &dyn Outlet,
    rel_path_without_ext: &str,
    format: Format,
    level: Option<i32>,
    progress: &dyn Progress,
    fill: &mut dyn FnMut(&mut dyn Sink, &Path) -> Result<Walked, ArchiveError>,
) -> Result<ArtifactInfo, ArchiveError> {
    let codec = codec(format, level)?;
    let name = artifact_name(rel_path_without_ext, extension(format))?;
    let shown = outlet.shown(&name);
    if format == Format::Folder {
        let Some(dir) = outlet.folder() else {
            return Err(ArchiveError::io(
                "creating",
                &shown,
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the folder format needs an unencrypted repository on this machine",
                ),
            ));
        };
        return write_folder(name.clone(), dir.join(&name), progress, fill);
    }
    let file = outlet
        .create(&name)
        .map_err(|e| ArchiveError::io("creating", &shown, e))?;
    let compressor = Compressor::new(HashingWriter::new(file), codec)
        .map_err(|e| ArchiveError::io("starting compression for", &shown, e))?;
    let mut sink = tar_out::TarSink::new(compressor, progress);
    let walked = fill(&mut sink, &shown)?;
    let out = sink
        .finish()
        .and_then(Compressor::finish)
        .map_err(|e| ArchiveError::io("writing", &shown, e))?;
    let (size, sha256, stored) = commit(out, &shown)?;
    let mut info = info(name, size, sha256, walked);
    info.stored = stored;
    Ok(info)
}

/// Completes an artifact's file: its size and sha256 as written, and what was stored
/// when that differs.
fn commit(
    out: output::Hashed,
    shown: &Path,
) -> Result<(u64, String, Option<StoredDigest>), ArchiveError> {
    let (file, size, sha256) = out.into_parts();
    let stored = file
        .commit()
        .map_err(|e| ArchiveError::io("completing", shown, e))?;
    Ok((size, sha256, stored))
}

/// A folder is filled under a `.partial` name too, and renamed once complete.
fn write_folder(
    name: String,
    path: PathBuf,
    progress: &dyn Progress,
    fill: &mut dyn FnMut(&mut dyn Sink, &Path) -> Result<Walked, ArchiveError>,
) -> Result<ArtifactInfo, ArchiveError> {
    let partial = output::partial_name(&path);
    if path.exists() {
        return Err(ArchiveError::io(
            "creating",
            &path,
            io::Error::new(io::ErrorKind::AlreadyExists, "the folder already exists"),
        ));
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| ArchiveError::io("creating", parent, e))?;
    }
    if partial.exists() {
        // Left by a crashed run: nothing else writes `.partial` names.
        fs::remove_dir_all(&partial).map_err(|e| ArchiveError::io("removing", &partial, e))?;
    }
    fs::create_dir(&partial).map_err(|e| ArchiveError::io("creating", &partial, e))?;
    let result = (|| {
        let mut sink = folder::FolderSink::new(partial.clone(), progress);
        let walked = fill(&mut sink, &partial)?;
        sink.finish().map_err(|e| match e {
            SinkError::Unsafe(reason) => ArchiveError::Unsafe {
                entry: partial.display().to_string(),
                reason,
            },
            SinkError::Read(e) | SinkError::Write(e) => ArchiveError::io("writing", &partial, e),
        })?;
        let listing =
            listing::listing(&partial).map_err(|e| ArchiveError::io("listing", &partial, e))?;
        sync_each(&partial)?;
        fs::rename(&partial, &path)
            .map_err(|e| ArchiveError::io("renaming into place", &path, e))?;
        output::sync_parent(&path)?;
        Ok(info(name, listing.size, listing.sha256, walked))
    })();
    if result.is_err() && partial.exists() {
        // Best effort after the real error, which is what the caller needs to see.
        let _ = fs::remove_dir_all(&partial);
    }
    result
}

/// A folder artifact is durable once every file and folder in it is. One fsync each, not
/// a `syncfs`: the repository may share its filesystem with busy volumes.
fn sync_each(root: &Path) -> Result<(), ArchiveError> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| ArchiveError::io("syncing", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ArchiveError::io("syncing", &dir, e))?;
            let ft = entry
                .file_type()
                .map_err(|e| ArchiveError::io("syncing", &entry.path(), e))?;
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                fs::File::open(entry.path())
                    .and_then(|f| f.sync_all())
                    .map_err(|e| ArchiveError::io("syncing", &entry.path(), e))?;
            }
        }
        fs::File::open(&dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| ArchiveError::io("syncing", &dir, e))?;
    }
    Ok(())
}

/// Archives the contents of the folder `src` (paths relative to it, no leading `./`)
/// into `<archive_root>/<rel_path_without_ext>.<ext>`.
///
/// The source may be live: files that vanish are skipped and counted, a file that shrinks
/// while read is padded with zeros to the size it had when opened, one that grows is cut
/// there; each is logged as a warning. A missing `src` is an error. Symlinks are never
/// followed, and the walk goes by file descriptors, so a folder swapped for a symlink
/// mid-walk cannot lead outside `src`.
pub fn archive_directory(
    src: &Path,
    outlet: &dyn Outlet,
    rel_path_without_ext: &str,
    format: Format,
    level: Option<i32>,
    excludes: &Excludes,
    progress: &dyn Progress,
) -> Result<ArtifactInfo, ArchiveError> {
    // Checked first so a missing source never leaves even a partial artifact behind.
    sys::open_dir(src).map_err(|e| ArchiveError::io("opening source folder", src, e))?;
    write_artifact(
        outlet,
        rel_path_without_ext,
        format,
        level,
        progress,
        &mut |sink, out| walk::walk(src, out, excludes, sink),
    )
}

/// Like [`archive_directory`], from a tar stream such as Docker's
/// `GET /containers/{id}/archive?path=/x`, whose entries are named `x/...`.
///
/// `strip_prefix` (`x/`) is removed from every entry name and from hard-link targets;
/// an entry not below it is an error, the `x/` entry itself is dropped. Excludes apply to
/// the stripped names. Entries are re-written with all their metadata, including pax
/// records such as xattrs. For the folder format the stream is extracted, refusing any
/// entry that would land outside the folder (`..`, absolute paths, paths through
/// symlinks).
#[allow(clippy::too_many_arguments)]
pub fn archive_tar_stream(
    reader: impl Read,
    strip_prefix: &str,
    outlet: &dyn Outlet,
    rel_path_without_ext: &str,
    format: Format,
    level: Option<i32>,
    excludes: &Excludes,
    progress: &dyn Progress,
) -> Result<ArtifactInfo, ArchiveError> {
    let mut reader = Some(reader);
    write_artifact(
        outlet,
        rel_path_without_ext,
        format,
        level,
        progress,
        &mut |sink, out| {
            let reader = reader.take().ok_or_else(|| ArchiveError::Stream {
                entry: "the tar stream".to_string(),
                source: io::Error::other("the stream was already consumed"),
            })?;
            stream::rewrite(reader, strip_prefix, excludes, sink, out)
        },
    )
}

/// The name [`compress_stream`] gives the artifact `rel_path_without_ext` in `format`:
/// `dumps/db-postgres.sql` becomes `dumps/db-postgres.sql.zst` for tar.zst.
pub fn stream_artifact_name(rel_path_without_ext: &str, format: Format) -> String {
    match format {
        Format::TarZst => format!("{rel_path_without_ext}.zst"),
        Format::TarGz => format!("{rel_path_without_ext}.gz"),
        Format::Tar | Format::Folder => rel_path_without_ext.to_string(),
    }
}

/// Compresses one stream (a database dump) into
/// `<archive_root>/<rel_path_without_ext><ext>`, where the extension follows the format:
/// `.zst` for tar.zst, `.gz` for tar.gz, none for tar and folder.
pub fn compress_stream(
    mut reader: impl Read,
    outlet: &dyn Outlet,
    rel_path_without_ext: &str,
    format: Format,
    level: Option<i32>,
    progress: &dyn Progress,
) -> Result<ArtifactInfo, ArchiveError> {
    let codec = codec(format, level)?;
    let ext = match codec {
        Codec::Zstd(_) => "zst",
        Codec::Gzip(_) => "gz",
        Codec::Plain => "",
    };
    let name = artifact_name(rel_path_without_ext, ext)?;
    let shown = outlet.shown(&name);
    let file = outlet
        .create(&name)
        .map_err(|e| ArchiveError::io("creating", &shown, e))?;
    let mut out = Compressor::new(HashingWriter::new(file), codec)
        .map_err(|e| ArchiveError::io("starting compression for", &shown, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    loop {
        let n = entry::read_some(&mut reader, &mut buf).map_err(|e| ArchiveError::Stream {
            entry: name.clone(),
            source: e,
        })?;
        if n == 0 {
            break;
        }
        io::Write::write_all(&mut out, &buf[..n])
            .map_err(|e| ArchiveError::io("writing", &shown, e))?;
        read += n as u64;
        progress.bytes(n as u64);
        if progress.cancelled() {
            return Err(ArchiveError::io("writing", &shown, cancelled()));
        }
    }
    let out = out
        .finish()
        .map_err(|e| ArchiveError::io("writing", &shown, e))?;
    let (size, sha256, stored) = commit(out, &shown)?;
    Ok(ArtifactInfo {
        path: name,
        size,
        sha256,
        stored,
        source_bytes: read,
        entries: 1,
        excluded: 0,
        skipped: 0,
        shrunk: Shrunk::default(),
    })
}

/// Recomputes an artifact's size and sha256 from disk (the file, or a folder's canonical
/// listing) and decompresses compressed artifacts to their end. A tar is read entry by
/// entry by the reader [`extract_artifact`] uses, with the same checks and the limits of
/// its manifest entry, without writing anything: a tar that verifies is one a restore
/// reads through and refuses nothing of. Any difference is an error naming the artifact
/// and what differs.
pub fn verify_artifact(archive_root: &Path, info: &ArtifactInfo) -> Result<(), ArchiveError> {
    verify::verify(archive_root, info)
}

/// Like [`verify_artifact`], for an artifact read from a stream (a remote repository, a
/// decryption); `shown` names it in messages. Folder-format artifacts are local only.
pub fn verify_artifact_stream(
    stream: Box<dyn Read + Send>,
    shown: &Path,
    info: &ArtifactInfo,
) -> Result<(), ArchiveError> {
    verify::verify_stream(stream, shown, info)
}

/// Like [`extract_artifact`], for an artifact read from a stream (a remote repository, a
/// decryption) named `name` (its extension picks the decompressor). The raw stream is
/// read to its end and its size and sha256 returned, for the caller to check against the
/// manifest before it trusts what was extracted.
pub fn extract_artifact_stream(
    stream: Box<dyn Read + Send>,
    name: &str,
    shown: &Path,
    target: &Path,
    limits: ExtractLimits,
    progress: &dyn Progress,
) -> Result<(ExtractStats, u64, String), ArchiveError> {
    use sha2::Digest;
    let mut raw = verify::HashingReader {
        inner: stream,
        hasher: sha2::Sha256::new(),
        count: 0,
    };
    let stats = {
        let reader = extract::decoder(shown, name, &mut raw)?;
        extract_tar(reader, target, limits, progress)?
    };
    io::copy(&mut raw, &mut io::sink()).map_err(|e| ArchiveError::io("reading", shown, e))?;
    Ok((stats, raw.count, hex::encode(raw.hasher.finalize())))
}

/// Checks the stored bytes of an encrypted artifact (its size and sha256 as stored),
/// without decrypting: what a host without the identity can check.
pub fn verify_stored_artifact(
    stream: Box<dyn Read + Send>,
    shown: &Path,
    size: u64,
    sha256: &str,
) -> Result<(), ArchiveError> {
    verify::verify_stored(stream, shown, size, sha256)
}

/// The sha256 of the canonical listing of a folder artifact (what [`ArtifactInfo::sha256`]
/// holds for the folder format), with its content size and entry count.
///
/// One line per entry, a folder before its contents, names sorted by bytes:
/// `<type> <mode octal> <uid>:<gid> <size> <sha256 of content, link target, or -> <path>`;
/// see the `listing` module for the details of each field.
pub fn folder_listing_sha256(folder: &Path) -> Result<(String, u64, u64), ArchiveError> {
    let l = listing::listing(folder).map_err(|e| ArchiveError::io("listing", folder, e))?;
    Ok((l.sha256, l.size, l.entries))
}

/// The entries of a tar or folder artifact at `under` (a path inside it; empty for its
/// root): a folder's contents, or the entry itself when it is not a folder; with
/// `recursive`, everything below it. Tar has no index, so the artifact is read to its end
/// (decompressed, through the checks a restore makes, within the limits of its manifest
/// entry), but nothing is written. A path it does not hold is an error naming the closest
/// entry there is.
pub fn list_artifact(
    archive_root: &Path,
    info: &ArtifactInfo,
    under: &str,
    recursive: bool,
) -> Result<Vec<Listed>, PartError> {
    pick::list(archive_root, info, under, recursive)
}

/// Extracts only `paths` (files or folders inside the artifact, with everything below
/// them) into `target`, at the same paths below it, with the folders on the way; with the
/// guarantees of [`extract_artifact`] and its limits taken from `info`. `target` must be
/// empty or not exist, unless `existing_ok`: then a file already there under an extracted
/// name is replaced (removed first, never written through), a folder is kept.
///
/// The artifact's size and sha256 are checked against `info` as it is read; a mismatch is
/// an error, as is a path the artifact does not hold (after the others were extracted).
/// No paths: the whole artifact.
pub fn extract_paths(
    archive_root: &Path,
    info: &ArtifactInfo,
    paths: &[String],
    target: &Path,
    existing_ok: bool,
    progress: &dyn Progress,
) -> Result<ExtractStats, PartError> {
    pick::extract(archive_root, info, paths, target, existing_ok, progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_is_named_as_compress_stream_writes_it() {
        let root = tempfile::tempdir().unwrap();
        for format in [Format::TarZst, Format::TarGz, Format::Tar, Format::Folder] {
            let rel = format!("dumps/db-{}", extension(format).replace('.', "-"));
            let info = compress_stream(
                &b"data"[..],
                &root.path().to_path_buf(),
                &rel,
                format,
                None,
                &crate::progress::Silent,
            )
            .unwrap();
            assert_eq!(info.path, stream_artifact_name(&rel, format));
        }
        assert_eq!(
            stream_artifact_name("dumps/db-postgres.sql", Format::TarZst),
            "dumps/db-postgres.sql.zst"
        );
    }
}
