//! The tar reader extraction and verification share: headers, GNU long names and pax
//! records parsed here rather than by the tar crate's reader, so that every byte's fate is
//! decided in one place and file data never takes a detour through another buffer. What
//! becomes of each entry is up to the [`Extractor`] it is read into; see the `extract`
//! module for the threat model.

use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use super::ArchiveError;
use super::entry::read_some;
use super::extract::{Attrs, Extractor, Place, Sparse, What};
use super::sparse::{Extent, MapDecoder};

/// Data is handed from the reading thread to the parsing one in buffers of this size.
pub(super) const CHUNK: usize = 1 << 20;
/// Buffers in flight between the two threads: enough to ride out a burst of small files
/// on one side or a slow block on the other, and only a few MiB of memory.
const IN_FLIGHT: usize = 4;
const BLOCK: usize = 512;
/// Pax and GNU long-name records are held in memory whole; real ones are tiny.
const MAX_PAX: u64 = 1 << 20;
const MAX_LONG_NAME: u64 = 64 * 1024;

/// Runs `f` on the bytes of `reader`, which is read on a second thread (hence `Send`)
/// while `f` parses. Dropping the stream when `f` returns stops that thread at its next
/// buffer, also when `f` failed half-way.
pub(super) fn with_stream<R: Read + Send, T>(reader: R, f: impl FnOnce(&mut Stream) -> T) -> T {
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel(IN_FLIGHT);
        let (pool_tx, pool_rx) = mpsc::channel();
        scope.spawn(move || pump(reader, tx, pool_rx));
        let mut stream = Stream {
            rx,
            pool: pool_tx,
            buf: Vec::new(),
            len: 0,
            pos: 0,
            offset: 0,
            done: false,
            source_failed: false,
        };
        let result = f(&mut stream);
        drop(stream);
        result
    })
}

// ---------------------------------------------------------------------------------------
// Reading: a thread fills buffers, the parsing thread takes slices out of them.

struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

/// Reads `reader` into full buffers and sends them until the end or an error, or until
/// the receiving side hangs up. Buffers come back through `pool` to be reused.
fn pump(mut reader: impl Read, tx: SyncSender<io::Result<Chunk>>, pool: Receiver<Vec<u8>>) {
    loop {
        let mut buf = pool.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
        let mut len = 0;
        while len < buf.len() {
            match read_some(&mut reader, &mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        if len == 0 {
            return;
        }
        let last = len < buf.len();
        if tx.send(Ok(Chunk { buf, len })).is_err() || last {
            return;
        }
    }
}

pub(super) struct Stream {
    rx: Receiver<io::Result<Chunk>>,
    pool: Sender<Vec<u8>>,
    buf: Vec<u8>,
    len: usize,
    pos: usize,
    /// Bytes handed out so far: where the next header starts, for error messages.
    offset: u64,
    done: bool,
    /// The reader under the stream failed (a read or decompression error), as opposed to
    /// what it holds being malformed or refused.
    source_failed: bool,
}

impl Stream {
    /// Whether an error came from the reader under the stream.
    pub(super) fn source_failed(&self) -> bool {
        self.source_failed
    }

    fn refill(&mut self) -> io::Result<bool> {
        if self.done {
            return Ok(false);
        }
        match self.rx.recv() {
            Ok(Ok(chunk)) => {
                let old = std::mem::replace(&mut self.buf, chunk.buf);
                if !old.is_empty() {
                    let _ = self.pool.send(old);
                }
                self.len = chunk.len;
                self.pos = 0;
                Ok(true)
            }
            Ok(Err(e)) => {
                self.done = true;
                self.source_failed = true;
                Err(e)
            }
            Err(_) => {
                self.done = true;
                Ok(false)
            }
        }
    }

    /// Up to `max` bytes, straight out of the current buffer; empty only at the end.
    fn next(&mut self, max: usize) -> io::Result<&[u8]> {
        if self.pos == self.len && !self.refill()? {
            return Ok(&[]);
        }
        let start = self.pos;
        let n = max.min(self.len - start);
        self.pos += n;
        self.offset += n as u64;
        Ok(&self.buf[start..start + n])
    }

    /// Fills `out` as far as the stream goes; returns how much was filled.
    fn fill(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < out.len() {
            let part = self.next(out.len() - filled)?;
            if part.is_empty() {
                break;
            }
            out[filled..filled + part.len()].copy_from_slice(part);
            filled += part.len();
        }
        Ok(filled)
    }

    /// Skips `n` bytes; false when the stream ends first.
    fn skip(&mut self, mut n: u64) -> io::Result<bool> {
        while n > 0 {
            let part = self.next(usize::try_from(n).unwrap_or(usize::MAX))?.len();
            if part == 0 {
                return Ok(false);
            }
            n -= part as u64;
        }
        Ok(true)
    }
}

/// Where the bytes of a regular file come from: slices of the stream's buffers, or reads
/// from a file of a folder artifact.
pub(super) trait Content {
    /// Up to `max` (> 0) bytes; never empty: the source ending early is an error.
    fn chunk(&mut self, max: usize) -> io::Result<&[u8]>;
}

fn truncated() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the stream ends inside this entry: it is truncated",
    )
}

struct TarContent<'s> {
    stream: &'s mut Stream,
}

impl Content for TarContent<'_> {
    fn chunk(&mut self, max: usize) -> io::Result<&[u8]> {
        let part = self.stream.next(max)?;
        if part.is_empty() {
            return Err(truncated());
        }
        Ok(part)
    }
}

// ---------------------------------------------------------------------------------------
// The tar format.

/// What pax and GNU long-name records say about the next entry.
#[derive(Default)]
struct Extensions {
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
    gnu_path: Option<Vec<u8>>,
    gnu_link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, i64)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// GNU sparse format 1.0: `GNU.sparse.major`, `.minor`, `.name`, `.realsize`.
    sparse_major: Option<u64>,
    sparse_minor: Option<u64>,
    sparse_name: Option<Vec<u8>>,
    sparse_realsize: Option<u64>,
    /// Records of the older sparse formats (0.0 and 0.1), which are not read.
    sparse_old: bool,
}

fn malformed(offset: u64, problem: impl Into<String>) -> ArchiveError {
    ArchiveError::Malformed {
        offset,
        problem: problem.into(),
    }
}

pub(super) fn read_error(entry: &str, e: io::Error) -> ArchiveError {
    ArchiveError::Stream {
        entry: entry.to_string(),
        source: e,
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// The checksum is the sum of the header's bytes with its own field taken as spaces;
/// some old writers summed signed bytes.
fn checksum_ok(block: &[u8; BLOCK], header: &tar::Header) -> bool {
    let Ok(stored) = header.cksum() else {
        return false;
    };
    let (mut unsigned, mut signed) = (0u32, 0i32);
    for (i, b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { *b };
        unsigned += u32::from(b);
        signed += i32::from(b as i8);
    }
    stored == unsigned || i64::from(stored) == i64::from(signed)
}

/// A record's data (pax or long name), held whole.
fn read_record(
    stream: &mut Stream,
    size: u64,
    max: u64,
    at: u64,
    what: &str,
) -> Result<Vec<u8>, ArchiveError> {
    if size > max {
        return Err(malformed(
            at,
            format!("a {what} record of {size} bytes is larger than the {max} allowed"),
        ));
    }
    let mut data = vec![0; size as usize];
    let n = stream
        .fill(&mut data)
        .map_err(|e| read_error("the tar stream", e))?;
    let padded = stream
        .skip(padding(size))
        .map_err(|e| read_error("the tar stream", e))?;
    if n < data.len() || !padded {
        return Err(malformed(
            at,
            format!("it ends inside a {what} record: it is truncated"),
        ));
    }
    Ok(data)
}

fn until_nul(data: &[u8]) -> Vec<u8> {
    data.iter()
        .position(|b| *b == 0)
        .map_or(data, |i| &data[..i])
        .to_vec()
}

/// `seconds[.fraction]`, possibly negative, as (seconds, nanoseconds).
fn parse_pax_time(value: &[u8]) -> Option<(i64, i64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nanos: i64 = 0;
    for (i, digit) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(digit - b'0') * 10i64.pow(8 - i as u32);
    }
    Some(if !negative {
        (secs, nanos)
    } else if nanos == 0 {
        (-secs, 0)
    } else {
        (-secs - 1, 1_000_000_000 - nanos)
    })
}

fn parse_number(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

impl Extensions {
    /// Pax records are `<length> <key>=<value>\n`, the length counting the whole record.
    fn pax(&mut self, mut data: &[u8]) -> Result<(), String> {
        let bad = || "a pax record is malformed".to_string();
        while !data.is_empty() {
            let space = data.iter().position(|b| *b == b' ').ok_or_else(bad)?;
            let len = parse_number(&data[..space]).ok_or_else(bad)? as usize;
            if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
                return Err(bad());
            }
            let record = &data[space + 1..len - 1];
            data = &data[len..];
            let eq = record.iter().position(|b| *b == b'=').ok_or_else(bad)?;
            let (key, value) = (&record[..eq], &record[eq + 1..]);
            let number = |what: &str| match value {
                b"" => Ok(None),
                _ => parse_number(value)
                    .map(Some)
                    .ok_or_else(|| format!("the pax record {what} is not a number")),
            };
            // An empty value takes back what an earlier record said.
            let some = |v: &[u8]| (!v.is_empty()).then(|| v.to_vec());
            match key {
                b"path" => self.pax_path = some(value),
                b"linkpath" => self.pax_link = some(value),
                b"size" => self.size = number("size")?,
                b"uid" => self.uid = number("uid")?,
                b"gid" => self.gid = number("gid")?,
                b"mtime" if value.is_empty() => self.mtime = None,
                b"mtime" => {
                    self.mtime =
                        Some(parse_pax_time(value).ok_or("the pax record mtime is not a time")?);
                }
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        self.xattrs.push((name.to_vec(), value.to_vec()));
                    } else if let Some(field) = key.strip_prefix(b"GNU.sparse.") {
                        match field {
                            b"major" => self.sparse_major = number("GNU.sparse.major")?,
                            b"minor" => self.sparse_minor = number("GNU.sparse.minor")?,
                            b"name" => self.sparse_name = some(value),
                            b"realsize" => {
                                self.sparse_realsize = number("GNU.sparse.realsize")?;
                            }
                            _ => self.sparse_old = true,
                        }
                    }
                    // Others (atime, ctime, uname, comments...) change nothing we restore.
                }
            }
        }
        Ok(())
    }
}

/// Reads the map at the start of a sparse entry of `size` bytes: returns the bytes it
/// took and its extents, checked against the file's length and the data after it.
fn read_sparse_map(
    stream: &mut Stream,
    size: u64,
    real_size: u64,
    at: u64,
    shown: &str,
) -> Result<(u64, Vec<Extent>), ArchiveError> {
    let mut decoder = MapDecoder::default();
    let mut block = [0u8; BLOCK];
    loop {
        if decoder.len + BLOCK as u64 > size {
            return Err(malformed(
                at,
                format!("entry {shown:?} ends inside its sparse map"),
            ));
        }
        let n = stream
            .fill(&mut block)
            .map_err(|e| read_error(&format!("entry {shown:?}"), e))?;
        if n < BLOCK {
            return Err(read_error(&format!("entry {shown:?}"), truncated()));
        }
        let done = decoder
            .feed(&block)
            .map_err(|p| malformed(at, format!("entry {shown:?}: {p}")))?;
        if done {
            break;
        }
    }
    let map_len = decoder.len;
    let extents = decoder
        .finish(real_size, size - map_len)
        .map_err(|p| malformed(at, format!("entry {shown:?}: {p}")))?;
    Ok((map_len, extents))
}

/// Reads entries up to the end-of-archive marker, extracting each, then drains the stream.
pub(super) fn read_tar<P: Place>(
    stream: &mut Stream,
    ex: &mut Extractor<P>,
) -> Result<(), ArchiveError> {
    let mut block = [0u8; BLOCK];
    let mut ext = Extensions::default();
    loop {
        let at = stream.offset;
        let n = stream
            .fill(&mut block)
            .map_err(|e| read_error("the tar stream", e))?;
        if n == 0 {
            return Err(malformed(
                at,
                "it ends without an end-of-archive marker: it is truncated",
            ));
        }
        if n < BLOCK {
            return Err(malformed(at, "it ends inside a header: it is truncated"));
        }
        if block.iter().all(|b| *b == 0) {
            break;
        }
        let header = tar::Header::from_byte_slice(&block);
        if !checksum_ok(&block, header) {
            return Err(malformed(
                at,
                "a header's checksum does not match: the stream is corrupt or not a tar",
            ));
        }
        let raw_size = header
            .entry_size()
            .map_err(|e| malformed(at, format!("a header's size is unreadable: {e}")))?;
        let typeflag = block[156];
        match typeflag {
            b'x' => {
                let data = read_record(stream, raw_size, MAX_PAX, at, "pax")?;
                ext.pax(&data).map_err(|p| malformed(at, p))?;
                continue;
            }
            b'g' => {
                // Global records: nothing in them is restored, and they must not leak
                // into the next entry.
                read_record(stream, raw_size, MAX_PAX, at, "pax")?;
                continue;
            }
            b'L' => {
                let data = read_record(stream, raw_size, MAX_LONG_NAME, at, "long name")?;
                ext.gnu_path = Some(until_nul(&data));
                continue;
            }
            b'K' => {
                let data = read_record(stream, raw_size, MAX_LONG_NAME, at, "long link")?;
                ext.gnu_link = Some(until_nul(&data));
                continue;
            }
            _ => {}
        }
        let e = std::mem::take(&mut ext);
        let sparse = e.sparse_major.is_some() || e.sparse_minor.is_some() || e.sparse_old;
        let path = e
            .sparse_name
            .filter(|_| sparse)
            .or(e.pax_path)
            .or(e.gnu_path)
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let link = e
            .pax_link
            .or(e.gnu_link)
            .or_else(|| header.link_name_bytes().map(|l| l.into_owned()))
            .unwrap_or_default();
        let shown = String::from_utf8_lossy(&path).into_owned();
        let field = |what: &str, r: io::Result<u64>| {
            r.map_err(|err| {
                malformed(
                    at,
                    format!("entry {shown:?} has an unreadable {what}: {err}"),
                )
            })
        };
        let size = e.size.unwrap_or(raw_size);
        // Checked here, so that skipping an entry's data and padding cannot wrap around.
        if size.checked_add(padding(size)).is_none() {
            return Err(malformed(
                at,
                format!("entry {shown:?} holds more bytes than any stream: {size}"),
            ));
        }
        let regular = matches!(typeflag, b'0' | b'7') || typeflag == 0 && !path.ends_with(b"/");
        let map = if sparse {
            if e.sparse_old || (e.sparse_major, e.sparse_minor) != (Some(1), Some(0)) {
                return Err(ex.refuse(
                    &shown,
                    "it is in a GNU sparse format other than 1.0, which is not read",
                ));
            }
            let Some(real_size) = e.sparse_realsize.filter(|_| regular) else {
                return Err(ex.refuse(
                    &shown,
                    "it is a GNU sparse entry without GNU.sparse.realsize, or not a file",
                ));
            };
            let (map_len, extents) = read_sparse_map(stream, size, real_size, at, &shown)?;
            Some((size - map_len, real_size, extents))
        } else {
            None
        };
        let file = match &map {
            Some((data, real_size, extents)) => What::File {
                size: *data,
                sparse: Some(Sparse {
                    real_size: *real_size,
                    extents,
                }),
            },
            None => What::File { size, sparse: None },
        };
        let what = match typeflag {
            b'0' | b'7' => file,
            // Before ustar, a folder was a plain entry whose name ends in `/`.
            0 if path.ends_with(b"/") => What::Dir,
            0 => file,
            b'5' => What::Dir,
            b'2' => What::Symlink(&link),
            b'1' => What::Hardlink(&link),
            b'6' => What::Fifo,
            b'3' | b'4' => What::Device,
            b'S' => {
                return Err(ex.refuse(
                    &shown,
                    "it is an old GNU sparse entry (type S), which is not read; \
                     sparse files in pax format 1.0 are",
                ));
            }
            other => {
                return Err(ex.refuse(
                    &shown,
                    format!("its entry type {:?} is unknown", char::from(other)),
                ));
            }
        };
        let attrs = Attrs {
            mode: field("mode", header.mode().map(u64::from))? as u32 & 0o7777,
            uid: match e.uid {
                Some(uid) => uid,
                None => field("uid", header.uid())?,
            },
            gid: match e.gid {
                Some(gid) => gid,
                None => field("gid", header.gid())?,
            },
            mtime: match e.mtime {
                Some(t) => t,
                None => (field("mtime", header.mtime())? as i64, 0),
            },
            xattrs: e.xattrs,
        };
        ex.add(&path, &shown, what, &attrs, &mut TarContent { stream })?;
        // A file's content was consumed by `add`; other entries may carry data that means
        // nothing to us. Then the padding to the next header.
        let rest = if matches!(what, What::File { .. }) {
            0
        } else {
            size
        };
        let complete = stream
            .skip(rest + padding(size))
            .map_err(|e| read_error(&format!("entry {shown:?}"), e))?;
        if !complete {
            return Err(read_error(&format!("entry {shown:?}"), truncated()));
        }
    }
    // Past the marker: writers pad to a record size, and a compressed stream checks its
    // checksum only at its very end.
    while !stream
        .next(usize::MAX)
        .map_err(|e| read_error("the end of the tar stream", e))?
        .is_empty()
    {}
    Ok(())
}
