//! The tar reader: verification (`verify_artifact`, which reads a tar as a restore would),
//! extraction (`extract_tar` and `extract_artifact`) and the listing of what extraction
//! wrote, all on the same input; and the same bytes as a stream from Docker's archive
//! endpoint, written into a tar or a folder artifact as a backup would (`archive_tar_stream`).
//!
//! Promises checked on every input, besides no panic and no hang: nothing is written
//! outside the target (a canary folder that hostile names point into stays empty, and the
//! folder around the target holds nothing new), a tar that verifies extracts, and one that
//! extracts verifies, and what extraction wrote can be listed.

use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use holdfast::archive::{
    ArtifactInfo, Excludes, ExtractLimits, Shrunk, archive_directory, archive_tar_stream,
    extract_artifact, extract_tar, folder_listing_sha256, verify_artifact,
};
use holdfast::progress::Silent;
use holdfast::spec::common::Format;
use sha2::{Digest, Sha256};

use super::mutate::Rng;
use super::runner::{Target, outcome_class};
use super::tarfmt::{self, Dictionary, Tar, end, long_name, member, pax};

/// The limits of the manifest entry every input is verified and extracted with: enough
/// for any input the harness makes, so that inputs fail on what they hold.
const ENTRIES: u64 = 10_000;
const SOURCE_BYTES: u64 = 4 << 20;

pub struct TarTarget {
    /// Holds `outside/` (the canary) and one folder per input, removed after it.
    root: PathBuf,
    outside: PathBuf,
    next: AtomicU64,
    dict: Dictionary,
}

impl TarTarget {
    pub fn new(root: &Path) -> TarTarget {
        let root = root.join("tar");
        let outside = root.join("outside");
        fs::create_dir_all(&outside).expect("creating the canary folder");
        TarTarget {
            dict: Dictionary::new(outside.as_os_str().as_bytes()),
            root,
            outside,
            next: AtomicU64::new(0),
        }
    }

    /// Archives holdfast makes itself, of a tree with every kind of entry it keeps.
    fn holdfast_archives(&self) -> Vec<Vec<u8>> {
        let src = self.root.join("seed-src");
        let out = self.root.join("seed-out");
        let _ = fs::remove_dir_all(&src);
        let _ = fs::remove_dir_all(&out);
        fs::create_dir_all(src.join("d/e")).unwrap();
        fs::create_dir_all(&out).unwrap();
        fs::write(src.join("empty"), b"").unwrap();
        fs::write(src.join("d/small.txt"), b"hello\n").unwrap();
        let mut holes = vec![0u8; 140 * 1024];
        holes[10] = 1;
        holes[140 * 1024 - 1] = 2;
        fs::write(src.join("d/e/holes.bin"), &holes).unwrap();
        fs::hard_link(src.join("d/small.txt"), src.join("hard")).unwrap();
        std::os::unix::fs::symlink("d/small.txt", src.join("rel-link")).unwrap();
        std::os::unix::fs::symlink(&self.outside, src.join("abs-link")).unwrap();
        let long = "n".repeat(120);
        fs::write(src.join(&long), b"a long name").unwrap();
        std::os::unix::fs::symlink("t".repeat(150), src.join("long-target")).unwrap();
        fs::write(
            src.join(std::ffi::OsStr::from_bytes(b"caf\xe9")),
            b"latin-1",
        )
        .unwrap();
        rustix_free_fifo(&src.join("fifo"));
        let mut seeds = Vec::new();
        for (i, format) in [Format::Tar, Format::TarZst].into_iter().enumerate() {
            let name = format!("vol{i}");
            let info =
                archive_directory(&src, &out, &name, format, None, &Excludes::none(), &Silent)
                    .expect("archiving the seed tree");
            let bytes = fs::read(out.join(&info.path)).unwrap();
            seeds.push(if format == Format::TarZst {
                zstd::decode_all(&bytes[..]).unwrap()
            } else {
                bytes
            });
        }
        fs::remove_dir_all(&src).unwrap();
        fs::remove_dir_all(&out).unwrap();
        seeds
    }

    /// Small tars of what hostile or foreign writers put in archives.
    fn crafted(&self) -> Vec<Vec<u8>> {
        let outside = self.outside.as_os_str().as_bytes();
        let abs = [outside, b"/x"].concat();
        let tars: Vec<Vec<tarfmt::Member>> = vec![
            vec![
                member(b"./", b'5', b"", b""),
                member(b"a/", b'5', b"", b""),
                member(b"a/f", b'0', b"", b"content"),
            ],
            vec![
                pax(&[
                    (b"path", &[b"p/".repeat(60).as_slice(), b"file"].concat()),
                    (b"mtime", b"1700000000.123456789"),
                    (b"SCHILY.xattr.user.fuzz", b"value"),
                    (b"uid", b"4294967296"),
                ]),
                member(b"short", b'0', b"", b"pax named"),
            ],
            vec![
                long_name(b'L', &b"l".repeat(300)),
                member(b"cut", b'0', b"", b"gnu named"),
                long_name(b'K', &b"k".repeat(200)),
                member(b"sym", b'2', b"cut", b""),
            ],
            vec![member(b"../escape", b'0', b"", b"x")],
            vec![member(&abs, b'0', b"", b"x")],
            vec![
                member(b"l", b'2', outside, b""),
                member(b"l/x", b'0', b"", b"through the link"),
            ],
            vec![
                member(b"f", b'0', b"", b"x"),
                member(b"h", b'1', &abs, b""),
                member(b"h2", b'1', b"../f", b""),
            ],
            vec![
                member(b"f", b'0', b"", b"x"),
                member(b"h", b'1', b"f", b""),
                member(b"f", b'2', outside, b""),
                member(b"h", b'0', b"", b"rewrite"),
            ],
            vec![
                member(b"d", b'5', b"", b""),
                member(b"d", b'0', b"", b"folder in the way"),
            ],
            vec![
                member(b"dev", b'3', b"", b""),
                member(b"fifo", b'6', b"", b""),
            ],
            vec![
                member(b"sparse", b'S', b"", b""),
                pax(&[(b"GNU.sparse.major", b"1"), (b"GNU.sparse.size", b"99")]),
                member(b"s2", b'0', b"", b""),
            ],
            vec![
                member(
                    b"./PaxHeaders/g",
                    b'g',
                    b"",
                    &tarfmt::pax_record(b"comment", b"hi"),
                ),
                member(b"old-dir/", 0, b"", b""),
                member(b"old-file", 0, b"", b"v7"),
            ],
        ];
        tars.into_iter()
            .map(|members| {
                Tar {
                    members,
                    tail: end(),
                }
                .write()
            })
            .collect()
    }

    /// Everything below `dir` is fine; anything new in the canary or beside `dir` below
    /// the root was written outside the target.
    fn check_outside(&self, dir: &Path) -> Result<(), String> {
        let canary: Vec<_> = fs::read_dir(&self.outside)
            .map_err(|e| format!("listing the canary: {e}"))?
            .collect();
        if !canary.is_empty() {
            for e in canary.into_iter().flatten() {
                let _ = fs::remove_file(e.path()).or_else(|_| fs::remove_dir_all(e.path()));
            }
            return Err("an entry was written into the canary folder outside the target".into());
        }
        for e in fs::read_dir(&self.root).map_err(|e| format!("listing the root: {e}"))? {
            let path = e.map_err(|e| e.to_string())?.path();
            if path != self.outside && path != dir && !is_abandoned(&path) {
                let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
                return Err(format!(
                    "{} appeared beside the target",
                    path.file_name().unwrap_or_default().to_string_lossy()
                ));
            }
        }
        for e in fs::read_dir(dir).map_err(|e| format!("listing {}: {e}", dir.display()))? {
            let name = e.map_err(|e| e.to_string())?.file_name();
            if !matches!(name.to_str(), Some("t" | "a.tar" | "a.tar.zst" | "repo")) {
                return Err(format!("{name:?} appeared beside the target"));
            }
        }
        Ok(())
    }
}

/// Folders of inputs that hung stay behind (their thread may still be writing).
fn is_abandoned(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("run-"))
}

fn rustix_free_fifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

fn short(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    text.chars().take(300).collect()
}

impl Target for TarTarget {
    fn name(&self) -> &'static str {
        "tar"
    }

    fn extension(&self) -> &'static str {
        "tar"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut seeds = self.holdfast_archives();
        seeds.extend(self.crafted());
        seeds
    }

    fn mutate(&self, rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
        tarfmt::mutate_tar(rng, &self.dict, input, other)
    }

    fn run(&self, input: &[u8]) -> Result<String, String> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.root.join(format!("run-{n}"));
        fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        // One input in eight goes through zstd, as most artifacts do.
        let compressed = input.len() % 8 == 3;
        let (name, bytes) = if compressed {
            let z = zstd::encode_all(input, 1).map_err(|e| e.to_string())?;
            ("a.tar.zst", z)
        } else {
            ("a.tar", input.to_vec())
        };
        let file = dir.join(name);
        fs::File::create(&file)
            .and_then(|mut f| f.write_all(&bytes))
            .map_err(|e| format!("writing the input: {e}"))?;
        let info = ArtifactInfo {
            path: name.to_string(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
            source_bytes: SOURCE_BYTES,
            entries: ENTRIES,
            excluded: 0,
            skipped: 0,
            shrunk: Shrunk::default(),
            stored: None,
        };
        let verified = verify_artifact(&dir, &info);
        let limits = ExtractLimits::from_manifest(ENTRIES, SOURCE_BYTES);
        let target = dir.join("t");
        let extracted = if compressed {
            extract_artifact(&file, &target, limits, &Silent)
        } else {
            extract_tar(input, &target, limits, &Silent)
        };
        let listed = folder_listing_sha256(&target);
        // The same bytes as a stream from Docker's archive endpoint, written as a backup
        // would: re-written into a tar, or extracted into a folder artifact.
        let repo = dir.join("repo");
        let format = if input.len().is_multiple_of(2) {
            Format::Folder
        } else {
            Format::Tar
        };
        let streamed = archive_tar_stream(
            input,
            "",
            &repo,
            "s",
            format,
            None,
            &Excludes::none(),
            &Silent,
        );
        let outside = self.check_outside(&dir);
        fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
        outside?;
        let outcome = match (&verified, &extracted) {
            (Ok(()), Ok(stats)) => format!(
                "ok {} {}",
                stats.entries.min(3),
                streamed
                    .as_ref()
                    .map_or_else(|e| outcome_class(&e.to_string()), |_| "ok".into())
            ),
            (Err(v), Err(x)) => format!(
                "{} / {}",
                outcome_class(&v.to_string()),
                outcome_class(&x.to_string())
            ),
            (Ok(()), Err(x)) => {
                return Err(format!("it verifies, but extraction fails: {}", short(x)));
            }
            (Err(v), Ok(_)) => {
                return Err(format!("it extracts, but verification fails: {}", short(v)));
            }
        };
        if let Err(e) = listed
            && extracted.is_ok()
        {
            return Err(format!("what extraction wrote cannot be listed: {e}"));
        }
        Ok(outcome)
    }
}
