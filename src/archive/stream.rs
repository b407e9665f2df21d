//! Re-writes a tar stream (what Docker's archive endpoint returns) entry by entry into a
//! sink, with a path prefix removed and excludes applied, keeping all metadata.

use std::io::{self, Read};
use std::path::Path;

use tar::EntryType;

use super::ArchiveError;
use super::entry::{Entry, Kind, Meta, Sink, SinkError};
use super::excludes::Excludes;
use super::walk::Walked;

const STREAM: &str = "the tar stream";

/// `name` without `prefix` (compared with and without its trailing `/`), or None when the
/// entry is the prefix folder itself.
fn strip<'a>(name: &'a [u8], prefix: &[u8], whole: &str) -> Result<Option<&'a [u8]>, ArchiveError> {
    let name = name.strip_prefix(b"./").unwrap_or(name);
    let bare = prefix.strip_suffix(b"/").unwrap_or(prefix);
    if prefix.is_empty() {
        return Ok(Some(name));
    }
    let rest = match name.strip_prefix(bare) {
        Some(rest) if rest.is_empty() || rest == b"/" => return Ok(None),
        Some(rest) if rest.first() == Some(&b'/') => &rest[1..],
        _ => {
            return Err(ArchiveError::Prefix {
                entry: String::from_utf8_lossy(name).into_owned(),
                prefix: whole.to_string(),
            });
        }
    };
    Ok(Some(rest))
}

/// Our kind for a tar entry type; None for types we do not archive.
fn kind_of(entry_type: EntryType, link: &[u8]) -> Option<Kind<'_>> {
    Some(match entry_type {
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => Kind::File,
        EntryType::Directory => Kind::Dir,
        EntryType::Symlink => Kind::Symlink(link),
        EntryType::Link => Kind::Hardlink(link),
        EntryType::Fifo => Kind::Fifo,
        EntryType::Char => Kind::Char,
        EntryType::Block => Kind::Block,
        _ => return None,
    })
}

/// The content of one stream entry. The stream ending before the size its header gave is
/// an error at once: a sink pads a short file with zeros (the header is already written),
/// which for a truncated stream would mean writing zeros up to whatever size the header
/// claimed before failing.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stream ended inside this entry",
            ));
        }
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}

/// Copies every entry of `reader` into `sink`. `out` names the artifact in write errors.
pub(crate) fn rewrite(
    reader: impl Read,
    strip_prefix: &str,
    excludes: &Excludes,
    sink: &mut dyn Sink,
    out: &Path,
) -> Result<Walked, ArchiveError> {
    let read_err = |entry: &str, e: io::Error| ArchiveError::Stream {
        entry: entry.to_string(),
        source: e,
    };
    let mut archive = tar::Archive::new(reader);
    let mut stats = Walked::default();
    let prefix = strip_prefix.as_bytes();
    let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for item in archive.entries().map_err(|e| read_err(STREAM, e))? {
        let mut item = item.map_err(|e| read_err(STREAM, e))?;
        let full = item.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&full).into_owned();
        let header = item.header().clone();
        let entry_type = header.entry_type();
        let Some(path) = strip(&full, prefix, strip_prefix)? else {
            continue;
        };
        let path = path.strip_suffix(b"/").unwrap_or(path).to_vec();
        if kind_of(entry_type, b"").is_none() {
            if !entry_type.is_pax_global_extensions() {
                tracing::warn!(entry = %shown, "skipped: unsupported tar entry type {:?}", entry_type);
                stats.skipped += 1;
            }
            continue;
        }
        if excludes.is_excluded_with_parents(&path, entry_type == EntryType::Directory) {
            stats.excluded += 1;
            continue;
        }
        let link = match item.link_name_bytes() {
            Some(l) if entry_type == EntryType::Link => strip(&l, prefix, strip_prefix)?
                .unwrap_or_default()
                .to_vec(),
            Some(l) => l.into_owned(),
            None => Vec::new(),
        };
        if entry_type == EntryType::Link && excludes.is_excluded_with_parents(&link, false) {
            // Its data was left out with the target; a link to nothing would break
            // extraction of the whole archive.
            tracing::warn!(entry = %shown, "skipped: hard link to an excluded file");
            stats.skipped += 1;
            continue;
        }
        pax.clear();
        if let Some(records) = item.pax_extensions().map_err(|e| read_err(&shown, e))? {
            for record in records {
                let record = record.map_err(|e| read_err(&shown, e))?;
                // Rewritten from the stripped names; and the size is set by our header.
                if !matches!(record.key_bytes(), b"path" | b"linkpath" | b"size") {
                    pax.push((record.key_bytes().to_vec(), record.value_bytes().to_vec()));
                }
            }
        }
        let kind = kind_of(entry_type, &link).unwrap_or(Kind::File);
        let meta = Meta {
            mode: header.mode().map_err(|e| read_err(&shown, e))? & 0o7777,
            uid: header.uid().map_err(|e| read_err(&shown, e))?,
            gid: header.gid().map_err(|e| read_err(&shown, e))?,
            mtime: header.mtime().map_err(|e| read_err(&shown, e))?,
            // A precise time in the stream is carried over with its other pax records.
            mtime_nsec: 0,
            size: if kind == Kind::File { item.size() } else { 0 },
            dev_major: header.device_major().ok().flatten().unwrap_or(0),
            dev_minor: header.device_minor().ok().flatten().unwrap_or(0),
        };
        let uname = header.username_bytes().unwrap_or_default();
        let gname = header.groupname_bytes().unwrap_or_default();
        let entry = Entry {
            path: &path,
            kind,
            meta,
            uname,
            gname,
            pax: &pax,
            sparse: None,
        };
        let mut content = Exact {
            inner: &mut item,
            left: entry.meta.size,
        };
        let copied = sink.add(&entry, &mut content).map_err(|e| match e {
            SinkError::Read(e) => read_err(&shown, e),
            SinkError::Write(e) => ArchiveError::io("writing", out, e),
            SinkError::Unsafe(reason) => ArchiveError::Unsafe {
                entry: shown.clone(),
                reason,
            },
        })?;
        if copied.shrunk {
            return Err(read_err(
                &shown,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the stream ended inside this entry",
                ),
            ));
        }
        stats.entries += 1;
        stats.source_bytes += copied.read;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::tar_out::TarSink;
    use crate::progress::Silent;

    /// Counts what is written, keeping nothing.
    struct Counter(u64);

    impl io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stream_ending_inside_an_entry_stops_there_without_padding_it() {
        // Found by fuzzing: the sink padded the missing content with zeros up to the size
        // the header claimed, however large, and only then was the stream an error.
        let mut header = tar::Header::new_gnu();
        header.set_path("big").unwrap();
        header.set_size(64 << 20);
        header.set_entry_type(EntryType::Regular);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        let mut stream = header.as_bytes().to_vec();
        stream.extend_from_slice(&[7; 1000]);
        let mut written = Counter(0);
        let mut sink = TarSink::new(&mut written, &Silent);
        let err = rewrite(
            &stream[..],
            "",
            &Excludes::none(),
            &mut sink,
            Path::new("out"),
        )
        .unwrap_err();
        drop(sink);
        assert!(
            err.to_string()
                .contains("the stream ended inside this entry"),
            "{err}"
        );
        assert!(written.0 < 4 << 20, "{} bytes written", written.0);
    }

    #[test]
    fn strip_removes_the_prefix_folder() {
        assert_eq!(
            strip(b"data/a/b", b"data/", "data/").unwrap(),
            Some(&b"a/b"[..])
        );
        assert_eq!(strip(b"data/", b"data/", "data/").unwrap(), None);
        assert_eq!(strip(b"data", b"data/", "data/").unwrap(), None);
        assert_eq!(
            strip(b"./data/x", b"data", "data").unwrap(),
            Some(&b"x"[..])
        );
        assert!(strip(b"database/x", b"data/", "data/").is_err());
        assert!(strip(b"other/x", b"data/", "data/").is_err());
        assert_eq!(strip(b"x", b"", "").unwrap(), Some(&b"x"[..]));
    }
}
