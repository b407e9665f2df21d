use std::fs;
use std::io::{self, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::archive::extract::tests::{header, tar_of};
use crate::archive::{ArchiveError, ArtifactInfo, Excludes, archive_directory, verify_artifact};
use crate::progress::Silent;
use crate::spec::common::Format;

/// Writes `bytes` as the artifact `name` below `root`, with a manifest entry that matches
/// them byte for byte.
fn artifact(root: &Path, name: &str, bytes: &[u8], entries: u64) -> ArtifactInfo {
    fs::write(root.join(name), bytes).unwrap();
    ArtifactInfo {
        path: name.to_string(),
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
        source_bytes: 100,
        entries,
        excluded: 0,
        skipped: 0,
        shrunk: Default::default(),
        stored: None,
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    out.write_all(bytes).unwrap();
    out.finish().unwrap()
}

/// What verification did before it read tars as extraction does: the tar crate walks
/// every one of these to its end without a word.
fn walks_with_the_tar_crate(tar: &[u8]) {
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().unwrap() {
        io::copy(&mut entry.unwrap(), &mut io::sink()).unwrap();
    }
}

#[test]
fn a_tar_a_restore_would_refuse_does_not_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cases = [
        (
            "symlink-out",
            tar_of(&[
                (header(b"evil", b'2', 0, b"../outside"), b""),
                (header(b"evil/passwd", b'0', 4, b""), b"evil"),
            ]),
            r#"refusing tar entry "evil/passwd": it passes through the symlink "evil""#,
        ),
        (
            "dot-dot",
            tar_of(&[(header(b"../outside/x", b'0', 4, b""), b"evil")]),
            r#"refusing tar entry "../outside/x": it leads outside the target"#,
        ),
        (
            "absolute",
            tar_of(&[(header(b"/etc/cron.d/x", b'0', 4, b""), b"evil")]),
            "it is an absolute path",
        ),
        (
            "link-out",
            tar_of(&[(header(b"h", b'1', 0, b"../../etc/shadow"), b"")]),
            r#"its link target "../../etc/shadow" leads outside the target"#,
        ),
        (
            "file-over-folder",
            tar_of(&[
                (header(b"d/", b'5', 0, b""), b""),
                (header(b"d/f", b'0', 1, b""), b"x"),
                (header(b"d", b'2', 0, b"/etc"), b""),
            ]),
            "a folder of the same name is already there",
        ),
        (
            "device",
            tar_of(&[(header(b"null", b'3', 0, b""), b"")]),
            "it is a device node",
        ),
    ];
    for (name, tar, expect) in cases {
        walks_with_the_tar_crate(&tar);
        for (ext, bytes) in [
            ("tar", tar.clone()),
            ("tar.zst", zstd::encode_all(&tar[..], 3).unwrap()),
            ("tar.gz", gzip(&tar)),
        ] {
            let info = artifact(root, &format!("{name}.{ext}"), &bytes, 10);
            let err = verify_artifact(root, &info).unwrap_err();
            assert!(
                matches!(err, ArchiveError::Unrestorable { .. }),
                "{name}.{ext}: {err}"
            );
            let text = err.to_string();
            assert!(text.contains(expect), "{name}.{ext}: {text}");
            assert!(
                text.starts_with(&format!("verifying {}", root.join(&info.path).display())),
                "{text}"
            );
        }
    }
}

#[test]
fn a_good_archive_verifies_within_its_manifests_limits_and_not_past_them() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("data");
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    fs::write(src.join("a.txt"), "hello ".repeat(1000)).unwrap();
    fs::write(src.join("sub/deeper/b.bin"), [7u8; 5000]).unwrap();
    fs::hard_link(src.join("a.txt"), src.join("sub/again.txt")).unwrap();
    std::os::unix::fs::symlink("../a.txt", src.join("sub/link")).unwrap();
    std::os::unix::fs::symlink("/nowhere", src.join("dangling")).unwrap();
    let root = tmp.path().join("repo");
    for format in [Format::Tar, Format::TarGz, Format::TarZst] {
        let info =
            archive_directory(&src, &root, "v", format, None, &Excludes::none(), &Silent).unwrap();
        verify_artifact(&root, &info).unwrap();

        // The same bytes, but a manifest that records one entry fewer: a restore refuses
        // the archive at its last entry, and so does verification.
        let fewer = ArtifactInfo {
            entries: info.entries - 1,
            ..info.clone()
        };
        let err = verify_artifact(&root, &fewer).unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "the archive holds more than the {} entries its manifest records",
                info.entries - 1
            )),
            "{format}: {err}"
        );
    }
}

#[test]
fn a_cut_tar_is_unrestorable_and_a_cut_frame_does_not_decode() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = vec![b'z'; 5000];
    let tar = tar_of(&[(header(b"big", b'0', data.len() as u64, b""), &data)]);

    let info = artifact(root, "cut.tar", &tar[..2048], 10);
    let err = verify_artifact(root, &info).unwrap_err();
    assert!(matches!(err, ArchiveError::Unrestorable { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(r#"reading entry "big" from the tar stream: the stream ends inside"#),
        "{err}"
    );

    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let info = artifact(root, "cut.tar.zst", &zst[..zst.len() / 2], 10);
    let err = verify_artifact(root, &info).unwrap_err();
    assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("does not decode"), "{err}");
}
