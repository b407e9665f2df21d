//! Sparse files: where a file's data lies (found with `SEEK_DATA` and `SEEK_HOLE`, so the
//! holes are never read), and the map a tar entry in GNU sparse format 1.0 stores it in.
//!
//! In that format the entry's pax records say `GNU.sparse.major=1`, `GNU.sparse.minor=0`,
//! `GNU.sparse.name=<real name>` and `GNU.sparse.realsize=<length of the file>`, and its
//! data starts with the map, padded to a 512-byte block: the number of extents, then each
//! extent's offset and length, all in decimal, one per line. The extents' bytes follow one
//! after the other. GNU tar writes and reads this; a tar that does not know it extracts
//! the map and data as a file named after the header's own name.

use std::io;
use std::os::fd::AsFd;

use rustix::fs::SeekFrom;
use rustix::io::Errno;

/// (offset, length) of one run of data; between them and after the last, holes.
pub(crate) type Extent = (u64, u64);

/// At most this many extents are mapped when archiving: a file cut into more is archived
/// with its last extent reaching to its end, holes read as zeros. Keeps the map a few
/// hundred KiB at most.
pub(crate) const MAX_EXTENTS: usize = 1 << 14;
/// The most extents a map read from an archive may hold (16 bytes each in memory).
pub(crate) const MAX_READ_EXTENTS: u64 = 1 << 20;
/// Decimal digits in a map number: `u64::MAX` has 20.
const MAX_DIGITS: usize = 20;

const BLOCK: usize = 512;

/// The extents of data in the first `size` bytes of the file open at `fd`, or None when
/// the file has no hole there (or its filesystem cannot say), so that it is archived as
/// a plain file.
pub(crate) fn data_extents(fd: impl AsFd, size: u64) -> io::Result<Option<Vec<Extent>>> {
    let fd = fd.as_fd();
    let mut extents: Vec<Extent> = Vec::new();
    let mut off = 0u64;
    while off < size {
        let start = match rustix::fs::seek(fd, SeekFrom::Data(off)) {
            Ok(start) => start,
            // No data from `off` to the end of the file.
            Err(Errno::NXIO) => break,
            // A filesystem without the seeks: read the file whole.
            Err(Errno::INVAL) | Err(Errno::OPNOTSUPP) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            break;
        }
        let end = match rustix::fs::seek(fd, SeekFrom::Hole(start)) {
            Ok(end) => end.min(size),
            // Cut shorter since the data was found: the rest is a hole.
            Err(Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        if end <= start {
            break;
        }
        if extents.len() + 1 == MAX_EXTENTS {
            extents.push((start, size - start));
            break;
        }
        extents.push((start, end - start));
        off = end;
    }
    rustix::fs::seek(fd, SeekFrom::Start(0))?;
    let data: u64 = extents.iter().map(|e| e.1).sum();
    Ok((data < size).then_some(extents))
}

/// The map at the start of a sparse entry's data, padded to whole blocks. A file that
/// ends in a hole gets a last extent of length 0 at its end, which is how GNU tar knows to
/// extend the file there.
pub(crate) fn encode_map(extents: &[Extent], size: u64) -> Vec<u8> {
    let end = extents.last().map_or(0, |(off, len)| off + len);
    let tail = (end < size).then_some((size, 0));
    let all: Vec<Extent> = extents.iter().copied().chain(tail).collect();
    let mut map = format!("{}\n", all.len()).into_bytes();
    for (off, len) in all {
        map.extend_from_slice(format!("{off}\n{len}\n").as_bytes());
    }
    let rest = map.len() % BLOCK;
    if rest > 0 {
        map.resize(map.len() + BLOCK - rest, 0);
    }
    map
}

/// Reads a map block by block, as it comes out of a tar stream.
#[derive(Default)]
pub(crate) struct MapDecoder {
    /// Extents announced, once the first number is read.
    count: Option<u64>,
    /// The offset of an extent whose length is still to come.
    offset: Option<u64>,
    extents: Vec<Extent>,
    digits: Vec<u8>,
    /// Bytes of map fed so far, padding included.
    pub(crate) len: u64,
}

impl MapDecoder {
    /// Feeds the next block of the entry's data; true once the map is complete (the rest
    /// of that block is padding).
    pub(crate) fn feed(&mut self, block: &[u8; BLOCK]) -> Result<bool, String> {
        self.len += BLOCK as u64;
        for &b in block {
            match b {
                b'0'..=b'9' => {
                    if self.digits.len() == MAX_DIGITS {
                        return Err("the sparse map holds a number that is too long".into());
                    }
                    self.digits.push(b);
                }
                b'\n' => {
                    if self.number()? {
                        return Ok(true);
                    }
                }
                _ => return Err("the sparse map holds something other than numbers".into()),
            }
        }
        Ok(false)
    }

    /// Takes the number just ended; true when it was the map's last.
    fn number(&mut self) -> Result<bool, String> {
        let text = std::str::from_utf8(&self.digits).unwrap_or_default();
        let n: u64 = text
            .parse()
            .map_err(|_| "the sparse map holds an empty or too large number".to_string())?;
        self.digits.clear();
        match (self.count, self.offset.take()) {
            (None, _) => {
                if n > MAX_READ_EXTENTS {
                    return Err(format!(
                        "the sparse map has {n} extents, more than the {MAX_READ_EXTENTS} allowed"
                    ));
                }
                self.count = Some(n);
            }
            (Some(_), None) => self.offset = Some(n),
            (Some(_), Some(off)) => self.extents.push((off, n)),
        }
        Ok(self.count == Some(self.extents.len() as u64) && self.offset.is_none())
    }

    /// The extents, checked against the file's length and the data that follows the map:
    /// in order, not overlapping, inside the file, and adding up to that data. Extents of
    /// length 0 (the marker of a file that ends in a hole) are left out.
    pub(crate) fn finish(self, real_size: u64, data: u64) -> Result<Vec<Extent>, String> {
        let mut end = 0u64;
        let mut sum = 0u64;
        let mut extents = Vec::with_capacity(self.extents.len());
        for (off, len) in self.extents {
            let stop = off
                .checked_add(len)
                .ok_or("a sparse extent ends past the largest offset")?;
            if off < end || stop > real_size {
                return Err(format!(
                    "a sparse extent at {off} of {len} bytes overlaps the one before it or \
                     ends past the file's length of {real_size}"
                ));
            }
            end = stop;
            sum += len;
            if len > 0 {
                extents.push((off, len));
            }
        }
        if sum != data {
            return Err(format!(
                "the sparse map's extents add up to {sum} bytes, but the entry holds {data}"
            ));
        }
        Ok(extents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(map: &[u8], real: u64, data: u64) -> Result<Vec<Extent>, String> {
        let mut d = MapDecoder::default();
        for block in map.chunks(BLOCK) {
            let mut b = [0u8; BLOCK];
            b[..block.len()].copy_from_slice(block);
            if d.feed(&b)? {
                assert_eq!(d.len as usize, map.len().div_ceil(BLOCK) * BLOCK);
                return d.finish(real, data);
            }
        }
        Err("incomplete".into())
    }

    #[test]
    fn a_map_is_numbers_per_line_padded_to_a_block() {
        let map = encode_map(&[(0, 10), (4096, 5)], 8192);
        assert_eq!(map.len(), 512);
        let text = std::str::from_utf8(&map[..map.iter().position(|b| *b == 0).unwrap()]);
        assert_eq!(text.unwrap(), "3\n0\n10\n4096\n5\n8192\n0\n");
        // A file whose data reaches its end needs no marker.
        let map = encode_map(&[(4096, 4096)], 8192);
        assert!(map.starts_with(b"1\n4096\n4096\n\0"));
        // All holes.
        assert!(encode_map(&[], 1 << 33).starts_with(b"1\n8589934592\n0\n\0"));
    }

    #[test]
    fn maps_decode_to_what_was_encoded_across_blocks() {
        let extents: Vec<Extent> = (0..200).map(|i| (i * 1_000_000_000, 7)).collect();
        let size = 300_000_000_000;
        let map = encode_map(&extents, size);
        assert!(map.len() > 2 * BLOCK, "spans blocks: {}", map.len());
        assert_eq!(decode(&map, size, 1400).unwrap(), extents);
        assert_eq!(decode(&encode_map(&[], 10), 10, 0).unwrap(), vec![]);
    }

    #[test]
    fn bad_maps_are_refused() {
        let cases: [(&[u8], u64, u64); 7] = [
            (b"1\n0\nx\n", 10, 0),
            (b"2\n0\n5\n3\n5\n", 10, 10),
            (b"1\n5\n10\n", 10, 10),
            (b"1\n0\n5\n", 10, 6),
            (b"9999999999\n", 10, 0),
            (b"1\n18446744073709551615\n1\n", u64::MAX, 1),
            (b"1\n123456789012345678901\n", 10, 0),
        ];
        for (map, real, data) in cases {
            let err = decode(map, real, data).unwrap_err();
            assert!(!err.is_empty());
        }
        // An empty line is no number.
        let mut d = MapDecoder::default();
        let mut block = [b'1'; BLOCK];
        block[0] = b'9';
        block[1] = b'\n';
        block[2] = b'\n';
        assert!(d.feed(&block).is_err());
    }

    #[test]
    fn extents_are_found_with_seek_data_and_seek_hole() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = std::fs::File::create(&path).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"middle", 64 << 20).unwrap();
        f.set_len(256 << 20).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let extents = data_extents(&f, 256 << 20).unwrap().expect("holes found");
        assert_eq!(extents.len(), 2, "{extents:?}");
        assert_eq!(extents[0].0, 0);
        assert!(extents[1].0 <= 64 << 20 && extents[1].0 + extents[1].1 >= (64 << 20) + 6);
        let total: u64 = extents.iter().map(|e| e.1).sum();
        assert!(total < 1 << 20, "{total}");
        // A file without holes is not sparse.
        let full = dir.path().join("full");
        std::fs::write(&full, vec![1u8; 100_000]).unwrap();
        let f = std::fs::File::open(&full).unwrap();
        assert_eq!(data_extents(&f, 100_000).unwrap(), None);
    }
}
