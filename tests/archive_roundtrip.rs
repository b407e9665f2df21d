//! Archives a tree holding every awkward kind of entry in all four formats, extracts the
//! result with the system `tar`, `zstd` and `gzip`, and compares every entry. Runs as root
//! (it chowns); the test environment does.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use holdfast::archive::{
    ArchiveError, ArtifactInfo, Excludes, ExtractLimits, archive_directory, archive_tar_stream,
    compress_stream, extract_artifact, verify_artifact,
};
use holdfast::progress::Silent;
use holdfast::spec::common::Format;

const FORMATS: [Format; 4] = [Format::Tar, Format::TarGz, Format::TarZst, Format::Folder];

fn sh(script: &str) {
    let status = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .status()
        .unwrap();
    assert!(status.success(), "failed: {script}");
}

fn quote(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// Deterministic bytes that no compressor can shrink.
fn noise(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

fn set_mtime(path: &Path, secs: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let t = libc::timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    // SAFETY: valid path and a two-element array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            [t, t].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

/// The tree from the brief; returns the path of the long-named file.
fn build_tree(root: &Path) -> PathBuf {
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
    };
    w("a/b/c/nested.txt", b"nested\n");
    fs::create_dir_all(root.join("empty")).unwrap();
    w("suid", b"#!/bin/sh\necho hi\n");
    fs::set_permissions(root.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    w("secret", b"hunter2");
    fs::set_permissions(root.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("a/b/c/nested.txt", root.join("rel_link")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("abs_link")).unwrap();
    w("hard1", b"same inode");
    fs::hard_link(root.join("hard1"), root.join("a/hard2")).unwrap();
    let seg = "s".repeat(60);
    let long_dir = root.join(format!("{seg}/{seg}/{seg}/{seg}"));
    fs::create_dir_all(&long_dir).unwrap();
    let long_file = long_dir.join("f".repeat(70));
    fs::write(&long_file, b"long").unwrap();
    assert!(long_file.strip_prefix(root).unwrap().as_os_str().len() > 300);
    fs::write(root.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1 name").unwrap();
    w("zero", b"");
    w("random.bin", &noise(3 << 20, 42));
    let fifo = std::ffi::CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
    for rel in ["secret", "a/b", "rel_link", "a/b/c/nested.txt"] {
        std::os::unix::fs::lchown(root.join(rel), Some(1234), Some(1234)).unwrap();
    }
    // Fixed mtimes, deepest first so setting a file's time does not touch its folder's.
    let mut all = Vec::new();
    collect(root, root, &mut all);
    all.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for (i, rel) in all.iter().enumerate() {
        set_mtime(&root.join(rel), 1_600_000_000 + i as i64 * 7);
    }
    long_file
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        out.push(e.path().strip_prefix(root).unwrap().to_path_buf());
        if e.file_type().unwrap().is_dir() {
            collect(root, &e.path(), out);
        }
    }
}

#[derive(Debug, PartialEq)]
struct Seen {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    content: Vec<u8>,
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut all = Vec::new();
    collect(root, root, &mut all);
    all.into_iter()
        .map(|rel| {
            let p = root.join(&rel);
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let (kind, content) = if ft.is_dir() {
                ("dir", Vec::new())
            } else if ft.is_symlink() {
                (
                    "symlink",
                    fs::read_link(&p).unwrap().as_os_str().as_bytes().to_vec(),
                )
            } else if ft.is_file() {
                ("file", fs::read(&p).unwrap())
            } else {
                ("other", Vec::new())
            };
            let seen = Seen {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: m.mtime(),
                content,
            };
            (rel, seen)
        })
        .collect()
}

fn assert_same_tree(want: &Path, got: &Path, what: &str) {
    let (a, b) = (snapshot(want), snapshot(got));
    let names_a: Vec<_> = a.keys().collect();
    let names_b: Vec<_> = b.keys().collect();
    assert_eq!(names_a, names_b, "{what}: entry names differ");
    for (rel, seen) in &a {
        let other = &b[rel];
        // Symlink mtimes are only as good as the extractor; modes of symlinks mean nothing.
        if seen.kind == "symlink" {
            assert_eq!(
                (seen.kind, seen.uid, seen.gid, &seen.content),
                (other.kind, other.uid, other.gid, &other.content),
                "{what}: {}",
                rel.display()
            );
        } else {
            assert_eq!(seen, other, "{what}: {}", rel.display());
        }
    }
    let ino = |root: &Path, rel: &str| fs::metadata(root.join(rel)).unwrap().ino();
    assert_eq!(
        ino(got, "hard1"),
        ino(got, "a/hard2"),
        "{what}: hard links split"
    );
}

fn extract(root: &Path, info: &ArtifactInfo, format: Format, dest: &Path) -> PathBuf {
    let artifact = root.join(&info.path);
    if format == Format::Folder {
        return artifact;
    }
    fs::create_dir_all(dest).unwrap();
    let (a, d) = (quote(&artifact), quote(dest));
    match format {
        Format::Tar => sh(&format!("tar --numeric-owner -xpf {a} -C {d}")),
        Format::TarGz => sh(&format!("tar --numeric-owner -xzpf {a} -C {d}")),
        Format::TarZst => sh(&format!("zstd -dc {a} | tar --numeric-owner -xpf - -C {d}")),
        Format::Folder => unreachable!(),
    }
    dest.to_path_buf()
}

#[test]
fn every_format_round_trips_through_the_system_tools() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("data");
    fs::create_dir(&src).unwrap();
    build_tree(&src);
    let root = tmp.path().join("archive");
    for format in FORMATS {
        let name = format!("volumes/demo-{}", format.to_string().replace('.', "-"));
        let info = archive_directory(&src, &root, &name, format, None, &Excludes::none(), &Silent)
            .unwrap();
        assert_eq!(info.path, artifact_path(&name, format));
        assert_eq!(info.skipped, 0);
        assert_eq!(info.excluded, 0);
        // 13 top-level names, a/b, a/b/c, nested.txt, a/hard2, 3 more long dirs, the long file.
        assert_eq!(info.entries, 21, "{format}");
        // nested.txt, suid, secret, hard1 (once: hard2 is a link), the long file, café.
        assert_eq!(
            info.source_bytes,
            (3 << 20) + 7 + 18 + 7 + 10 + 4 + 12,
            "{format}"
        );
        verify_artifact(&root, &info).unwrap();
        let out = extract(
            &root,
            &info,
            format,
            &tmp.path().join(format!("x-{format}")),
        );
        assert_same_tree(&src, &out, &format.to_string());
        let fifo = fs::symlink_metadata(out.join("fifo")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
    }
}

fn artifact_path(name: &str, format: Format) -> String {
    match holdfast::archive::extension(format) {
        "" => name.to_string(),
        ext => format!("{name}.{ext}"),
    }
}

#[test]
fn the_same_tree_gives_the_same_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("data");
    fs::create_dir(&src).unwrap();
    build_tree(&src);
    let root = tmp.path().join("archive");
    for format in FORMATS {
        let a = archive_directory(&src, &root, "one", format, None, &Excludes::none(), &Silent)
            .unwrap();
        let b = archive_directory(&src, &root, "two", format, None, &Excludes::none(), &Silent)
            .unwrap();
        assert_eq!((a.sha256, a.size), (b.sha256, b.size), "{format}");
    }
}

#[test]
fn tar_streams_from_the_system_tar_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("data");
    fs::create_dir(&src).unwrap();
    build_tree(&src);
    let root = tmp.path().join("archive");
    for (tar_format, format) in [
        ("gnu", Format::Tar),
        ("gnu", Format::TarGz),
        ("posix", Format::TarZst),
        ("posix", Format::Folder),
    ] {
        let stream = tmp.path().join(format!("in-{tar_format}.tar"));
        sh(&format!(
            "tar --format={tar_format} -C {} -cf {} data",
            quote(tmp.path()),
            quote(&stream)
        ));
        let name = format!(
            "stream-{tar_format}-{}",
            format.to_string().replace('.', "-")
        );
        let info = archive_tar_stream(
            fs::File::open(&stream).unwrap(),
            "data/",
            &root,
            &name,
            format,
            None,
            &Excludes::none(),
            &Silent,
        )
        .unwrap();
        assert_eq!(info.entries, 21, "{tar_format} -> {format}");
        verify_artifact(&root, &info).unwrap();
        let out = extract(&root, &info, format, &tmp.path().join(format!("x-{name}")));
        assert_same_tree(&src, &out, &name);
    }
}

fn tar_names(path: &Path) -> Vec<String> {
    let mut archive = tar::Archive::new(fs::File::open(path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

#[test]
fn excludes_leave_out_matching_files_and_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("data");
    for rel in [
        "x.log",
        "sub/y.log",
        "cache/a",
        "cache/b/c",
        "top.tmp",
        "sub/deep.tmp",
        "keep.txt",
        "sub/cache/kept",
    ] {
        let p = src.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, rel).unwrap();
    }
    // A second name of an excluded file.
    fs::hard_link(src.join("x.log"), src.join("z")).unwrap();
    let patterns = ["**/*.log", "cache/**", "*.tmp"].map(String::from);
    let excludes = Excludes::new(&patterns).unwrap();
    let root = tmp.path().join("archive");
    let info = archive_directory(&src, &root, "ex", Format::Tar, None, &excludes, &Silent).unwrap();
    let names = tar_names(&root.join(&info.path));
    assert_eq!(
        names,
        ["keep.txt", "sub/", "sub/cache/", "sub/cache/kept", "z"]
    );
    // z is the first name of its inode that is archived, so it carries the data.
    let z_type = tar::Archive::new(fs::File::open(root.join(&info.path)).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path_bytes().as_ref() == b"z")
        .map(|e| e.header().entry_type());
    assert_eq!(z_type, Some(tar::EntryType::Regular));
    // x.log, cache (with everything below it), top.tmp, sub/deep.tmp, sub/y.log.
    assert_eq!(info.excluded, 5);

    let stream = tmp.path().join("in.tar");
    sh(&format!(
        // Sorted, so x.log comes first and z is stored as a hard link to it.
        "tar --sort=name -C {} -cf {} data",
        quote(tmp.path()),
        quote(&stream)
    ));
    let info = archive_tar_stream(
        fs::File::open(&stream).unwrap(),
        "data/",
        &root,
        "ex-stream",
        Format::Tar,
        None,
        &excludes,
        &Silent,
    )
    .unwrap();
    let names = tar_names(&root.join(&info.path));
    assert_eq!(names, ["keep.txt", "sub/", "sub/cache/", "sub/cache/kept"]);
    // The link to the excluded x.log is dropped rather than left dangling.
    // A stream has no folder to skip as a whole: cache, cache/a, cache/b, cache/b/c count.
    assert_eq!((info.excluded, info.skipped), (8, 1));
    sh(&format!(
        "tar -tf {} >/dev/null",
        quote(&root.join(&info.path))
    ));
}

#[test]
fn compressed_streams_decompress_to_their_input() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archive");
    let mut input = noise(1 << 20, 7);
    input.extend(b"INSERT INTO t VALUES (1, 'row');\n".repeat(40_000));
    for (format, ext, tool) in [
        (Format::TarZst, ".zst", "zstd -dc"),
        (Format::TarGz, ".gz", "gzip -dc"),
        (Format::Tar, "", "cat"),
        (Format::Folder, "", "cat"),
    ] {
        let name = format!("dumps/db-{}", format.to_string().replace('.', "-"));
        let info = compress_stream(&input[..], &root, &name, format, None, &Silent).unwrap();
        assert_eq!(info.path, format!("{name}{ext}"));
        assert_eq!(info.source_bytes, input.len() as u64);
        verify_artifact(&root, &info).unwrap();
        let out = tmp.path().join("out");
        sh(&format!(
            "{tool} {} > {}",
            quote(&root.join(&info.path)),
            quote(&out)
        ));
        assert!(fs::read(&out).unwrap() == input, "{format}");
    }
}

#[test]
fn verify_catches_truncation_and_flipped_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("data");
    fs::create_dir(&src).unwrap();
    build_tree(&src);
    let root = tmp.path().join("archive");
    for format in [Format::Tar, Format::TarGz, Format::TarZst] {
        let info =
            archive_directory(&src, &root, "v", format, None, &Excludes::none(), &Silent).unwrap();
        let path = root.join(&info.path);
        let good = fs::read(&path).unwrap();

        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x01;
        fs::write(&path, &flipped).unwrap();
        let err = verify_artifact(&root, &info).unwrap_err();
        assert!(err.to_string().contains(&info.path), "{format}: {err}");

        fs::write(&path, &good[..good.len() - 1000]).unwrap();
        let err = verify_artifact(&root, &info).unwrap_err();
        assert!(err.to_string().contains(&info.path), "{format}: {err}");

        fs::write(&path, &good).unwrap();
        verify_artifact(&root, &info).unwrap();
    }
    let info = archive_directory(
        &src,
        &root,
        "vf",
        Format::Folder,
        None,
        &Excludes::none(),
        &Silent,
    )
    .unwrap();
    verify_artifact(&root, &info).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(root.join("vf/zero"))
        .unwrap()
        .write_all(b"x")
        .unwrap();
    let err = verify_artifact(&root, &info).unwrap_err();
    assert!(matches!(err, ArchiveError::Mismatch { .. }), "{err}");
}

#[test]
fn a_missing_source_is_an_error_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("archive");
    let err = archive_directory(
        &tmp.path().join("nope"),
        &root,
        "x",
        Format::TarZst,
        None,
        &Excludes::none(),
        &Silent,
    )
    .unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert!(!root.exists());
}

/// A hand-made stream whose entries try to escape the folder they are extracted into.
#[test]
fn hostile_tar_streams_cannot_write_outside_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let header = |name: &[u8], kind: tar::EntryType, link: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        h.set_cksum();
        h
    };
    let outside_bytes = outside.as_os_str().as_bytes().to_vec();
    let cases: Vec<Vec<tar::Header>> = vec![
        vec![
            header(b"data/link", tar::EntryType::Symlink, &outside_bytes),
            header(b"data/link/evil", tar::EntryType::Regular, b""),
        ],
        vec![header(b"data/../../evil", tar::EntryType::Regular, b"")],
        vec![header(
            b"data/hard",
            tar::EntryType::Link,
            b"data/../../etc/passwd",
        )],
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let mut stream = Vec::new();
        for h in &case {
            stream.extend_from_slice(h.as_bytes());
        }
        stream.extend_from_slice(&[0; 1024]);
        let err = archive_tar_stream(
            &stream[..],
            "data/",
            &tmp.path().join("archive"),
            &format!("case{i}"),
            Format::Folder,
            None,
            &Excludes::none(),
            &Silent,
        )
        .unwrap_err();
        assert!(
            matches!(err, ArchiveError::Unsafe { .. }),
            "case {i}: {err}"
        );
        assert!(!tmp.path().join("archive").join(format!("case{i}")).exists());
    }
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!tmp.path().join("evil").exists());
}

const SPARSE_SIZE: u64 = 256 << 20;

/// A 256 MiB file with 3 runs of data (one at its very start, one in the middle, one in
/// its last bytes), the rest holes.
fn sparse_file(path: &Path) {
    use std::os::unix::fs::FileExt;
    let f = fs::File::create(path).unwrap();
    f.set_len(SPARSE_SIZE).unwrap();
    f.write_all_at(b"start", 0).unwrap();
    f.write_all_at(&noise(300_000, 5), 100 << 20).unwrap();
    f.write_all_at(b"end", SPARSE_SIZE - 3).unwrap();
}

fn allocated(path: &Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

fn assert_same_sparse(want: &Path, got: &Path, what: &str) {
    assert_eq!(fs::metadata(got).unwrap().len(), SPARSE_SIZE, "{what}");
    sh(&format!("cmp {} {}", quote(want), quote(got)));
    assert!(
        allocated(got) < 16 << 20,
        "{what}: {} bytes allocated, the holes were filled",
        allocated(got)
    );
}

#[test]
fn sparse_files_are_archived_as_sparse_entries_that_gnu_tar_and_holdfast_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("data");
    fs::create_dir(&src).unwrap();
    sparse_file(&src.join("disk.img"));
    fs::write(src.join("plain"), noise(100_000, 9)).unwrap();
    let root = tmp.path().join("archive");
    for format in FORMATS {
        let name = format!("vol-{}", format.to_string().replace('.', "-"));
        let info = archive_directory(&src, &root, &name, format, None, &Excludes::none(), &Silent)
            .unwrap();
        // Only the data is read, not 256 MiB of zeros.
        assert!(
            info.source_bytes < 2 << 20,
            "{format}: {} bytes read",
            info.source_bytes
        );
        if format != Format::Folder {
            assert!(info.size < 4 << 20, "{format}: {} bytes", info.size);
        }
        verify_artifact(&root, &info).unwrap();
        let ours = tmp.path().join(format!("ours-{format}"));
        let limits = ExtractLimits::from_manifest(info.entries, info.source_bytes);
        extract_artifact(&root.join(&info.path), &ours, limits, &Silent).unwrap();
        assert_same_sparse(&src.join("disk.img"), &ours.join("disk.img"), "holdfast");
        assert_eq!(fs::read(ours.join("plain")).unwrap(), noise(100_000, 9));
        if format != Format::Folder {
            let theirs = extract(
                &root,
                &info,
                format,
                &tmp.path().join(format!("gnu-{format}")),
            );
            assert_same_sparse(&src.join("disk.img"), &theirs.join("disk.img"), "GNU tar");
            assert_eq!(fs::read(theirs.join("plain")).unwrap(), noise(100_000, 9));
            // No stand-in names are left behind.
            let mut names: Vec<_> = fs::read_dir(&theirs)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            assert_eq!(names, ["disk.img", "plain"], "{format}");
        }
    }
    // A file without holes stays a plain entry.
    let info = archive_directory(
        &src,
        &root,
        "plain-only",
        Format::Tar,
        None,
        &Excludes::new(&["disk.img".to_string()]).unwrap(),
        &Silent,
    )
    .unwrap();
    let listing = Command::new("tar")
        .args(["--list", "-vf"])
        .arg(root.join(&info.path))
        .output()
        .unwrap();
    assert!(listing.status.success());
    let raw = fs::read(root.join(&info.path)).unwrap();
    assert!(!raw.windows(10).any(|w| w == b"GNU.sparse"));
}

#[test]
fn sparse_archives_made_by_gnu_tar_restore_with_their_holes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("data");
    fs::create_dir(&src).unwrap();
    sparse_file(&src.join("disk.img"));
    let artifact = tmp.path().join("gnu.tar");
    sh(&format!(
        "tar --format=pax --sparse --sparse-version=1.0 -cf {} -C {} .",
        quote(&artifact),
        quote(&src)
    ));
    let out = tmp.path().join("out");
    extract_artifact(
        &artifact,
        &out,
        ExtractLimits::from_manifest(10, 1 << 20),
        &Silent,
    )
    .unwrap();
    assert_same_sparse(&src.join("disk.img"), &out.join("disk.img"), "from GNU tar");
}

#[test]
fn sub_second_modification_times_survive_a_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("data");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("precise"), b"x").unwrap();
    fs::write(src.join("whole"), b"y").unwrap();
    fs::create_dir(src.join("dir")).unwrap();
    let set = |p: &Path, nanos: i64| {
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        let t = libc::timespec {
            tv_sec: 1_700_000_000,
            tv_nsec: nanos,
        };
        // SAFETY: valid path and a two-element array.
        let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) };
        assert_eq!(rc, 0);
    };
    set(&src.join("precise"), 123_456_789);
    set(&src.join("whole"), 0);
    set(&src.join("dir"), 5);
    let nanos = |p: &Path| {
        let m = fs::metadata(p).unwrap();
        (m.mtime(), m.mtime_nsec())
    };
    let root = tmp.path().join("archive");
    for format in FORMATS {
        let name = format!("t-{}", format.to_string().replace('.', "-"));
        let info = archive_directory(&src, &root, &name, format, None, &Excludes::none(), &Silent)
            .unwrap();
        let out = tmp.path().join(format!("out-{format}"));
        let limits = ExtractLimits::from_manifest(info.entries, info.source_bytes);
        extract_artifact(&root.join(&info.path), &out, limits, &Silent).unwrap();
        assert_eq!(
            nanos(&out.join("precise")),
            (1_700_000_000, 123_456_789),
            "{format}"
        );
        assert_eq!(nanos(&out.join("whole")), (1_700_000_000, 0), "{format}");
        assert_eq!(nanos(&out.join("dir")), (1_700_000_000, 5), "{format}");
    }
    let listing = Command::new("tar")
        .args(["--full-time", "-tvf"])
        .arg(root.join("t-tar.tar"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listing.stdout);
    let line = text.lines().find(|l| l.ends_with(" precise")).unwrap();
    assert!(line.contains(".123456789"), "{text}");
    let line = text.lines().find(|l| l.ends_with(" whole")).unwrap();
    assert!(!line.contains(":20."), "{text}");
}
