//! The canonical listing of a folder artifact, whose sha256 stands for the folder in the
//! manifest.
//!
//! The listing has one line per entry below the folder (not the folder itself), in walk
//! order: a folder, then its contents, names sorted by bytes within each folder:
//!
//! ```text
//! <type> <mode> <uid>:<gid> <size> <hash> <path>\n
//! ```
//!
//! - `type`: `d` folder, `f` file, `l` symlink, `h` further name of a file listed before
//!   (hard link), `p` fifo, `c`/`b` character/block device, `s` socket.
//! - `mode`: permission bits in octal, four digits (`4755`).
//! - `size`: bytes of content for `f`, else 0.
//! - `hash`: hex sha256 of the content for `f`, of the target for `l`, of the first path
//!   for `h`, `-` for the rest.
//! - `path`: relative, `/`-separated; UTF-8 is kept as is except `\` (written `\\`) and
//!   control characters, which like bytes that are not UTF-8 are written `\xNN`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::entry::read_some;
use super::excludes::bytes_path;

const BUFFER: usize = 256 * 1024;

/// What the listing of a folder adds up to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Listing {
    /// Bytes of content of the `f` lines.
    pub size: u64,
    pub sha256: String,
    pub entries: u64,
}

/// Computes the canonical listing of the folder `root` (see the module docs). Reads every
/// file; memory stays bounded by one folder's names plus hard-linked inodes.
pub(crate) fn listing(root: &Path) -> io::Result<Listing> {
    let mut state = ListingState {
        hasher: Sha256::new(),
        size: 0,
        entries: 0,
        links: HashMap::new(),
        buf: vec![0; BUFFER],
        line: Vec::new(),
    };
    list_dir(root, &mut Vec::new(), &mut state)?;
    Ok(Listing {
        size: state.size,
        sha256: hex::encode(state.hasher.finalize()),
        entries: state.entries,
    })
}

struct ListingState {
    hasher: Sha256,
    size: u64,
    entries: u64,
    links: HashMap<(u64, u64), Vec<u8>>,
    buf: Vec<u8>,
    line: Vec<u8>,
}

fn list_dir(root: &Path, rel: &mut Vec<u8>, st: &mut ListingState) -> io::Result<()> {
    let dir = root.join(bytes_path(rel));
    let mut names: Vec<Vec<u8>> = fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
        .collect::<io::Result<_>>()?;
    names.sort_unstable();
    let base = rel.len();
    for name in names {
        rel.truncate(base);
        if base > 0 {
            rel.push(b'/');
        }
        rel.extend_from_slice(&name);
        let path = root.join(bytes_path(rel));
        let m = fs::symlink_metadata(&path)?;
        let ft = m.file_type();
        let (kind, size, hash) = if ft.is_dir() {
            ('d', 0, None)
        } else if m.nlink() > 1 && st.links.contains_key(&(m.dev(), m.ino())) {
            let first = &st.links[&(m.dev(), m.ino())];
            ('h', 0, Some(hex::encode(Sha256::digest(first))))
        } else {
            if m.nlink() > 1 {
                st.links.insert((m.dev(), m.ino()), rel.clone());
            }
            if ft.is_file() {
                let mut hasher = Sha256::new();
                let mut file = File::open(&path)?;
                let mut n_total = 0u64;
                loop {
                    let n = read_some(&mut file, &mut st.buf)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&st.buf[..n]);
                    n_total += n as u64;
                }
                st.size += n_total;
                ('f', n_total, Some(hex::encode(hasher.finalize())))
            } else if ft.is_symlink() {
                let target = fs::read_link(&path)?;
                (
                    'l',
                    0,
                    Some(hex::encode(Sha256::digest(target.as_os_str().as_bytes()))),
                )
            } else {
                use std::os::unix::fs::FileTypeExt;
                let kind = if ft.is_fifo() {
                    'p'
                } else if ft.is_char_device() {
                    'c'
                } else if ft.is_block_device() {
                    'b'
                } else {
                    's'
                };
                (kind, 0, None)
            }
        };
        st.line.clear();
        write!(
            st.line,
            "{kind} {:04o} {}:{} {size} {} ",
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            hash.as_deref().unwrap_or("-")
        )?;
        escape_into(rel, &mut st.line);
        st.line.push(b'\n');
        st.hasher.update(&st.line);
        st.entries += 1;
        if ft.is_dir() {
            list_dir(root, rel, st)?;
        }
    }
    rel.truncate(base);
    Ok(())
}

fn escape_into(path: &[u8], out: &mut Vec<u8>) {
    for chunk in path.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.extend_from_slice(b"\\\\");
            } else if c.is_control() {
                let mut b = [0; 4];
                for byte in c.encode_utf8(&mut b).bytes() {
                    out.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
                }
            } else {
                let mut b = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
        for byte in chunk.invalid() {
            out.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_utf8_and_marks_everything_else() {
        let mut out = Vec::new();
        escape_into(b"caf\xe9/\xc3\xa9t\xc3\xa9\\x\n", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "caf\\xe9/\u{e9}t\u{e9}\\\\x\\x0a"
        );
    }

    #[test]
    fn listing_is_stable_and_sees_content_changes() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("d/f"), b"one").unwrap();
        std::os::unix::fs::symlink("d/f", dir.path().join("l")).unwrap();
        let a = listing(dir.path()).unwrap();
        assert_eq!(a, listing(dir.path()).unwrap());
        assert_eq!((a.size, a.entries), (3, 3));
        fs::write(dir.path().join("d/f"), b"two").unwrap();
        assert_ne!(a.sha256, listing(dir.path()).unwrap().sha256);
    }
}
