//! Writes entries as a GNU tar stream, the dialect GNU tar, bsdtar, busybox and the `tar`
//! crate all read: long names and link targets go in `././@LongLink` records, large
//! numbers in base-256, and pax records (xattrs from a source stream) in `x` headers.

use std::io::{self, Read, Write};

use tar::{EntryType, Header};

use super::entry::{Copied, Entry, Kind, Sink, SinkError, read_some};
use super::sparse;
use crate::progress::Progress;

const BLOCK: usize = 512;
/// The largest size a ustar header's 11 octal digits hold.
const USTAR_MAX_SIZE: u64 = 0o77_777_777_777;
/// File data is read straight into this buffer, which goes to the compressor whole: one
/// copy, and few calls into zstd however small the files are.
const BUFFER: usize = 1 << 20;

pub(crate) struct TarSink<'p, W: Write> {
    out: W,
    buf: Box<[u8]>,
    len: usize,
    progress: &'p dyn Progress,
}

impl<'p, W: Write> TarSink<'p, W> {
    pub(crate) fn new(out: W, progress: &'p dyn Progress) -> Self {
        TarSink {
            out,
            buf: vec![0; BUFFER].into_boxed_slice(),
            len: 0,
            progress,
        }
    }

    /// Writes the end-of-archive marker and hands back the writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.put_zeros(2 * BLOCK)?;
        self.flush_buf()?;
        Ok(self.out)
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if self.len > 0 {
            self.out.write_all(&self.buf[..self.len])?;
            self.len = 0;
        }
        Ok(())
    }

    fn put(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.len == self.buf.len() {
                self.flush_buf()?;
            }
            let n = bytes.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    fn put_zeros(&mut self, mut n: usize) -> io::Result<()> {
        while n > 0 {
            if self.len == self.buf.len() {
                self.flush_buf()?;
            }
            let k = n.min(self.buf.len() - self.len);
            self.buf[self.len..self.len + k].fill(0);
            self.len += k;
            n -= k;
        }
        Ok(())
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rest = (size % BLOCK as u64) as usize;
        if rest > 0 {
            self.put_zeros(BLOCK - rest)?;
        }
        Ok(())
    }

    /// A `././@LongLink` record holding a name that does not fit its header field.
    fn long_name(&mut self, kind: EntryType, name: &[u8]) -> io::Result<()> {
        let mut h = Header::new_gnu();
        let field = &mut h.as_old_mut().name;
        field[..13].copy_from_slice(b"././@LongLink");
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(name.len() as u64 + 1);
        h.set_entry_type(kind);
        h.set_cksum();
        self.put(h.as_bytes())?;
        self.put(name)?;
        self.put(&[0])?;
        self.pad(name.len() as u64 + 1)
    }

    fn pax<'r>(
        &mut self,
        records: impl IntoIterator<Item = (&'r [u8], &'r [u8])>,
    ) -> io::Result<()> {
        let mut data = Vec::new();
        for (key, value) in records {
            // The length prefix counts itself, so grow it until it is stable.
            let rest = key.len() + value.len() + 3;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            data.extend_from_slice(len.to_string().as_bytes());
            data.push(b' ');
            data.extend_from_slice(key);
            data.push(b'=');
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        let mut h = Header::new_ustar();
        h.as_old_mut().name[..14].copy_from_slice(b"././@PaxHeader");
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        h.set_entry_type(EntryType::XHeader);
        h.set_cksum();
        self.put(h.as_bytes())?;
        self.put(&data)?;
        self.pad(data.len() as u64)
    }

    /// Writes the header of `entry` and the records before it. `size` is what the entry
    /// holds after the header: for a sparse file, its map and data.
    fn header(&mut self, entry: &Entry<'_>, name: &[u8], size: u64) -> io::Result<()> {
        let m = &entry.meta;
        // GNU tar reads the sparse records only before a ustar header, not a GNU one.
        let mut h = match entry.sparse {
            Some(_) => Header::new_ustar(),
            None => Header::new_gnu(),
        };
        let (kind, size) = match entry.kind {
            Kind::Dir => (EntryType::Directory, 0),
            Kind::File => (EntryType::Regular, size),
            Kind::Symlink(_) => (EntryType::Symlink, 0),
            Kind::Hardlink(_) => (EntryType::Link, 0),
            Kind::Fifo => (EntryType::Fifo, 0),
            Kind::Char => (EntryType::Char, 0),
            Kind::Block => (EntryType::Block, 0),
        };
        let mut own: Vec<(&[u8], Vec<u8>)> = Vec::new();
        if m.mtime_nsec != 0 {
            let time = format!("{}.{:09}", m.mtime, m.mtime_nsec);
            own.push((b"mtime", time.into_bytes()));
        }
        let mut shown = name;
        let stand_in;
        if entry.sparse.is_some() {
            // GNU sparse format 1.0: the real name and length are in pax records, and
            // the header names a stand-in that tars without the format extract map and
            // data to, next to nothing else.
            own.push((b"GNU.sparse.major", b"1".to_vec()));
            own.push((b"GNU.sparse.minor", b"0".to_vec()));
            own.push((b"GNU.sparse.name", name.to_vec()));
            own.push((b"GNU.sparse.realsize", m.size.to_string().into_bytes()));
            if size > USTAR_MAX_SIZE {
                // Past what the ustar header's octal field holds.
                own.push((b"size", size.to_string().into_bytes()));
            }
            stand_in = sparse_stand_in(name);
            shown = &stand_in;
        }
        if !entry.pax.is_empty() || !own.is_empty() {
            let carried = entry
                .pax
                .iter()
                .filter(|(k, _)| m.mtime_nsec == 0 || k.as_slice() != b"mtime");
            let records = carried
                .map(|(k, v)| (&k[..], &v[..]))
                .chain(own.iter().map(|(k, v)| (*k, &v[..])));
            self.pax(records)?;
        }
        if shown.len() >= 100 {
            self.long_name(EntryType::GNULongName, shown)?;
        }
        copy_truncated(&mut h.as_old_mut().name, shown);
        if let Kind::Symlink(target) | Kind::Hardlink(target) = entry.kind {
            if target.len() >= 100 {
                self.long_name(EntryType::GNULongLink, target)?;
            }
            copy_truncated(&mut h.as_old_mut().linkname, target);
        }
        h.set_entry_type(kind);
        h.set_mode(m.mode & 0o7777);
        h.set_uid(m.uid);
        h.set_gid(m.gid);
        h.set_mtime(m.mtime);
        h.set_size(size);
        let names = match h.as_gnu_mut() {
            Some(gnu) => Some((&mut gnu.uname, &mut gnu.gname)),
            None => h.as_ustar_mut().map(|u| (&mut u.uname, &mut u.gname)),
        };
        if let Some((uname, gname)) = names {
            // 32-byte fields; longer names are left out and numeric ids still restore.
            if entry.uname.len() < uname.len() {
                uname[..entry.uname.len()].copy_from_slice(entry.uname);
            }
            if entry.gname.len() < gname.len() {
                gname[..entry.gname.len()].copy_from_slice(entry.gname);
            }
        }
        if matches!(entry.kind, Kind::Char | Kind::Block) {
            h.set_device_major(m.dev_major)?;
            h.set_device_minor(m.dev_minor)?;
        }
        h.set_cksum();
        self.put(h.as_bytes())
    }
}

/// The header name of a sparse file, as GNU tar makes it: `GNUSparseFile.0/` in front of
/// its last component, cut to fit the header.
fn sparse_stand_in(name: &[u8]) -> Vec<u8> {
    let base = name.rsplit(|b| *b == b'/').next().unwrap_or(name);
    let mut out = b"GNUSparseFile.0/".to_vec();
    out.extend_from_slice(&base[..base.len().min(99 - out.len())]);
    out
}

/// Truncation keeps old readers from choking; the long-name record holds the real name.
fn copy_truncated(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

impl<W: Write> Sink for TarSink<'_, W> {
    fn add(&mut self, entry: &Entry<'_>, data: &mut dyn Read) -> Result<Copied, SinkError> {
        let mut name;
        let name = if entry.kind == Kind::Dir {
            name = Vec::with_capacity(entry.path.len() + 1);
            name.extend_from_slice(entry.path);
            name.push(b'/');
            &name[..]
        } else {
            entry.path
        };
        let map = match entry.sparse {
            Some(extents) if entry.kind == Kind::File => {
                sparse::encode_map(extents, entry.meta.size)
            }
            _ => Vec::new(),
        };
        let size = entry.data_len();
        self.header(entry, name, map.len() as u64 + size)
            .map_err(SinkError::Write)?;
        if entry.kind != Kind::File {
            return Ok(Copied::default());
        }
        self.put(&map).map_err(SinkError::Write)?;
        let mut remaining = size;
        let mut copied = Copied::default();
        while remaining > 0 {
            if self.len == self.buf.len() {
                self.flush_buf().map_err(SinkError::Write)?;
            }
            let room =
                (self.buf.len() - self.len).min(usize::try_from(remaining).unwrap_or(usize::MAX));
            let n = read_some(data, &mut self.buf[self.len..self.len + room])
                .map_err(SinkError::Read)?;
            if n == 0 {
                break;
            }
            self.len += n;
            remaining -= n as u64;
            copied.read += n as u64;
            self.progress.bytes(n as u64);
            if self.progress.cancelled() {
                return Err(SinkError::Write(super::cancelled()));
            }
        }
        if remaining > 0 {
            // The header already promised `size` bytes: anything else would shift every
            // following entry and corrupt the rest of the archive.
            copied.shrunk = true;
            let mut left = remaining;
            while left > 0 {
                let k = left.min(BUFFER as u64) as usize;
                self.put_zeros(k).map_err(SinkError::Write)?;
                left -= k as u64;
            }
        }
        self.pad(size).map_err(SinkError::Write)?;
        Ok(copied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::entry::Meta;
    use crate::progress::Silent;

    fn file(path: &[u8], size: u64) -> Entry<'_> {
        Entry {
            path,
            kind: Kind::File,
            meta: Meta {
                mode: 0o644,
                size,
                mtime: 1_700_000_000,
                ..Meta::default()
            },
            uname: b"",
            gname: b"",
            pax: &[],
            sparse: None,
        }
    }

    fn read_back(tar: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path_bytes().into_owned();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (path, data)
            })
            .collect()
    }

    #[test]
    fn a_source_shorter_than_its_header_is_padded_with_zeros() {
        let mut sink = TarSink::new(Vec::new(), &Silent);
        let copied = sink
            .add(&file(b"shrunk", 10_000), &mut &[7u8; 3000][..])
            .unwrap();
        assert_eq!(
            copied,
            Copied {
                read: 3000,
                shrunk: true
            }
        );
        sink.add(&file(b"next", 3), &mut &b"abc"[..]).unwrap();
        let entries = read_back(&sink.finish().unwrap());
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].1.len(), 10_000);
        assert!(entries[0].1[..3000].iter().all(|b| *b == 7));
        assert!(entries[0].1[3000..].iter().all(|b| *b == 0));
        assert_eq!(entries[1], (b"next".to_vec(), b"abc".to_vec()));
    }

    #[test]
    fn a_sparse_file_that_shrinks_while_read_is_padded_and_reads_back() {
        let extents = [(0u64, 10u64), (1000, 10)];
        let mut disk = file(b"disk", 5000);
        disk.sparse = Some(&extents);
        let mut sink = TarSink::new(Vec::new(), &Silent);
        let copied = sink.add(&disk, &mut &[7u8; 12][..]).unwrap();
        assert_eq!(
            copied,
            Copied {
                read: 12,
                shrunk: true
            }
        );
        sink.add(&file(b"next", 1), &mut &b"z"[..]).unwrap();
        let tar = sink.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let limits = crate::archive::ExtractLimits {
            max_entries: 10,
            max_bytes: 100,
        };
        crate::archive::extract_tar(&tar[..], &out, limits, &Silent).unwrap();
        let data = std::fs::read(out.join("disk")).unwrap();
        assert_eq!(data.len(), 5000);
        assert!(data[..10].iter().all(|b| *b == 7));
        assert!(data[10..1000].iter().all(|b| *b == 0));
        assert_eq!(&data[1000..1003], &[7, 7, 0]);
        assert!(data[1003..].iter().all(|b| *b == 0));
        assert_eq!(std::fs::read(out.join("next")).unwrap(), b"z");
    }

    #[test]
    fn a_source_longer_than_its_header_is_cut_at_the_header_size() {
        let mut sink = TarSink::new(Vec::new(), &Silent);
        let copied = sink
            .add(&file(b"grown", 5), &mut &b"0123456789"[..])
            .unwrap();
        assert_eq!(
            copied,
            Copied {
                read: 5,
                shrunk: false
            }
        );
        sink.add(&file(b"next", 1), &mut &b"z"[..]).unwrap();
        let entries = read_back(&sink.finish().unwrap());
        assert_eq!(entries[0], (b"grown".to_vec(), b"01234".to_vec()));
        assert_eq!(entries[1], (b"next".to_vec(), b"z".to_vec()));
    }

    #[test]
    fn long_names_and_targets_and_pax_records_survive() {
        let long: Vec<u8> = (0..300)
            .map(|i| if i % 50 == 49 { b'/' } else { b'a' })
            .collect();
        let mut sink = TarSink::new(Vec::new(), &Silent);
        let mut link = file(b"l", 0);
        link.kind = Kind::Symlink(&long);
        let pax = vec![(b"SCHILY.xattr.user.k".to_vec(), b"v".to_vec())];
        link.pax = &pax;
        sink.add(&file(&long, 2), &mut &b"hi"[..]).unwrap();
        sink.add(&link, &mut io::empty()).unwrap();
        let tar = sink.finish().unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let mut entries = archive.entries().unwrap();
        let first = entries.next().unwrap().unwrap();
        assert_eq!(first.path_bytes().as_ref(), &long[..]);
        let mut second = entries.next().unwrap().unwrap();
        assert_eq!(second.link_name_bytes().unwrap().as_ref(), &long[..]);
        let records: Vec<_> = second
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|r| r.unwrap().key().unwrap().to_string())
            .collect();
        assert_eq!(records, ["SCHILY.xattr.user.k"]);
    }
}
