//! Looking inside archives: `holdfast ls` lists an archive's artifacts and the entries of
//! a volume, and `holdfast restore --path` puts single files and folders back into a
//! folder, without Docker and without the state folder.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::env::Env;
use common::hostile::*;
use common::*;
use serde_json::Value;

/// Entries whose metadata the listing and the restore must bring back; every mtime in
/// `dir` is fixed, so the listing of `dir` is the same on every run.
const SEED: &str = "set -e
cd /d
echo kept > file.txt
mkdir -p dir/sub dir/empty
echo alpha > dir/a.txt
chmod 640 dir/a.txt
chown 1234:5678 dir/a.txt
echo beta > dir/sub/b.txt
dd if=/dev/zero of=dir/sparse.bin bs=1 count=1 seek=8388607 2>/dev/null
echo tail >> dir/sparse.bin
chmod 2750 dir/sub
touch -d '2001-02-03 04:05:06' dir/a.txt dir/sub/b.txt dir/sparse.bin dir/sub dir/empty dir
";

/// A volume seeded with [`SEED`], removed when dropped.
struct Seeded(String);

impl Seeded {
    fn new(prefix: &str) -> Seeded {
        let v = Seeded(format!("{prefix}{}", std::process::id()));
        let _ = run(Command::new("docker").args(["volume", "rm", "-f", &v.0]));
        docker(&["volume", "create", &v.0]);
        docker(&[
            "run",
            "--rm",
            "-v",
            &format!("{}:/d", v.0),
            "holdfast-test/busybox:1",
            "sh",
            "-c",
            SEED,
        ]);
        v
    }

    fn dir(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(
            docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &self.0]).trim(),
        )
    }
}

impl Drop for Seeded {
    fn drop(&mut self) {
        let _ = run(Command::new("docker").args(["volume", "rm", "-f", &self.0]));
    }
}

/// Backs the volume up with a policy named `name`; returns the archive id.
fn backup(env: &Env, name: &str, volume: &str) -> String {
    env.backup_succeeded(name, &format!("  targets: {{volumes: [{volume}]}}\n"))
}

/// `holdfast restore --from ID --volume V --path P... --to DIR`, then `extra`, as a
/// reader ([`reader`]): no Docker, no state folder.
fn restore_paths(
    env: &Env,
    id: &str,
    volume: &str,
    paths: &[&str],
    to: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let mut cmd = reader(env);
    cmd.args(["restore", "--from", id, "--volume", volume]);
    for path in paths {
        cmd.args(["--path", path]);
    }
    cmd.arg("--to").arg(to).args(extra);
    run(&mut cmd)
}

/// The binary pointed at the repository only: no usable Docker, and a state folder that
/// must stay absent (a lock or a log would create it).
fn reader(env: &Env) -> Command {
    let mut cmd = holdfast();
    cmd.env("HOLDFAST_REPOSITORY", &env.repository)
        .env("HOLDFAST_STATE", env.dir.path().join("no-state"))
        .env("DOCKER_HOST", "tcp://127.0.0.1:1");
    cmd
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn ls_lists_artifacts_and_entries_and_restore_puts_single_paths_back() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let env = Env::new();
    let volume = Seeded::new("hfls");
    let id = backup(&env, "lspol", &volume.0);
    let artifact = format!("volumes/{}", volume.0);

    // The archive's artifacts.
    let out = run(reader(&env).args(["ls", &id]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("KIND"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("volume") && l.contains(&volume.0) && l.contains(&artifact)),
        "{text}"
    );
    let out = run(reader(&env).args(["ls", &id, "-o", "json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["archive"], id.as_str());
    let volumes: Vec<&Value> = listed["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "volume")
        .collect();
    assert_eq!(volumes.len(), 1, "{listed:#}");
    assert_eq!(volumes[0]["source"], volume.0.as_str());
    assert_eq!(volumes[0]["name"], artifact.as_str());

    // The entries of a folder, like `ls -l`, and recursively.
    let out = run(reader(&env).args(["ls", &id, &format!("{artifact}/dir")]));
    assert!(out.status.success(), "{}", stderr(&out));
    golden::assert_golden("ls/dir.txt", &stdout(&out));
    let out = run(reader(&env).args(["ls", &id, &format!("{artifact}/dir"), "-R"]));
    assert!(out.status.success(), "{}", stderr(&out));
    golden::assert_golden("ls/dir-recursive.txt", &stdout(&out));
    // The volume's root, with the file and the folder.
    let out = run(reader(&env).args(["ls", &id, &artifact]));
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.lines().any(|l| l.ends_with(" file.txt")), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with('d') && l.ends_with(" dir")),
        "{text}"
    );

    let out = run(reader(&env).args(["ls", &id, &format!("{artifact}/dir"), "-R", "-o", "json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = listed["entries"].as_array().unwrap();
    let a = entries.iter().find(|e| e["path"] == "dir/a.txt").unwrap();
    assert_eq!(a["type"], "file");
    assert_eq!(a["mode"], "0640");
    assert_eq!(a["uid"], 1234);
    assert_eq!(a["gid"], 5678);
    assert_eq!(a["size"], 6);
    assert_eq!(a["mtime"], "2001-02-03T04:05:06Z");
    let sparse = entries
        .iter()
        .find(|e| e["path"] == "dir/sparse.bin")
        .unwrap();
    assert_eq!(sparse["size"], 8 * 1024 * 1024 + 5);
    assert!(entries.iter().any(|e| e["path"] == "dir/sub/b.txt"));

    // A path the volume does not hold: an error naming it, with what is close.
    let out = run(reader(&env).args(["ls", &id, &format!("{artifact}/dir/aa.txt")]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("dir/aa.txt") && err.contains("did you mean `dir/a.txt`"),
        "{err}"
    );

    // One file, then a folder, each into a new folder.
    let data = volume.dir();
    let one = env.dir.path().join("one");
    let out = restore_paths(&env, &id, &volume.0, &["dir/a.txt"], &one, &[]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        fs::read_to_string(one.join("dir/a.txt")).unwrap(),
        "alpha\n"
    );
    let meta = fs::metadata(one.join("dir/a.txt")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(meta.mtime(), 981173106);
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    // Only what was asked for: the folders on the way, not their other entries.
    assert!(!one.join("dir/sub").exists());
    assert!(!one.join("file.txt").exists());

    let tree = env.dir.path().join("tree");
    let out = restore_paths(&env, &id, &volume.0, &["dir"], &tree, &["-o", "json"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["archive"], id.as_str());
    assert!(report["entries"].as_u64().unwrap() >= 6, "{report:#}");
    assert_eq!(
        tree_listing(&tree.join("dir")),
        tree_listing(&data.join("dir"))
    );
    let sparse = fs::metadata(tree.join("dir/sparse.bin")).unwrap();
    assert!(
        sparse.blocks() * 512 < sparse.len() / 2,
        "the holes were filled"
    );
    assert!(!tree.join("file.txt").exists());
    assert!(
        !env.dir.path().join("no-state").exists(),
        "the state folder was created"
    );

    // A folder that holds something is refused, and keeps what it holds.
    let busy = env.dir.path().join("busy");
    fs::create_dir_all(busy.join("dir")).unwrap();
    fs::write(busy.join("dir/a.txt"), "mine\n").unwrap();
    let out = restore_paths(&env, &id, &volume.0, &["dir/a.txt"], &busy, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("not empty") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(busy.join("dir/a.txt")).unwrap(),
        "mine\n"
    );
    let out = restore_paths(
        &env,
        &id,
        &volume.0,
        &["dir/a.txt"],
        &busy,
        &["--overwrite"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(busy.join("dir/a.txt")).unwrap(),
        "alpha\n"
    );

    // A path the volume does not hold fails the restore and leaves nothing behind.
    let none = env.dir.path().join("none");
    let out = restore_paths(
        &env,
        &id,
        &volume.0,
        &["dir/a.txt", "dir/sub/bb.txt"],
        &none,
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("dir/sub/bb.txt") && err.contains("did you mean `dir/sub/b.txt`"),
        "{err}"
    );
    assert!(!none.exists(), "a failed restore left {}", none.display());
}

#[test]
fn restoring_paths_of_hostile_archives_writes_nothing_outside_the_folder() {
    let env = Env::new();
    let outside = env.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let link = outside.to_str().unwrap();
    let cases: Vec<(&str, Vec<u8>, u64, &str, &str)> = vec![
        (
            "traversal",
            tar_of(&[
                ("a/", b'5', b"", ""),
                ("a/../../escaped.txt", b'0', b"pwned", ""),
            ]),
            2,
            "a",
            "outside",
        ),
        (
            "symlink",
            tar_of(&[
                ("a/", b'5', b"", ""),
                ("a/out", b'2', b"", link),
                ("a/out/escaped.txt", b'0', b"pwned", ""),
            ]),
            3,
            "a",
            "symlink",
        ),
        (
            "absolute",
            tar_of(&[
                ("a/", b'5', b"", ""),
                (&format!("{link}/escaped.txt"), b'0', b"pwned", ""),
            ]),
            2,
            "a",
            "absolute",
        ),
        (
            "hardlink",
            tar_of(&[("a/", b'5', b"", ""), ("a/h", b'1', b"", "../escaped.txt")]),
            2,
            "a",
            "outside",
        ),
    ];
    for (name, tar, entries, path, expect) in cases {
        let id = hostile_archive(&env.repository, name, "v", &tar, entries);
        let to = env.dir.path().join(format!("to-{name}"));
        let out = restore_paths(&env, &id, "v", &[path], &to, &[]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains(expect), "{name}: {err}");
        assert!(!outside.join("escaped.txt").exists(), "{name} escaped");
        assert!(
            !env.dir.path().join("escaped.txt").exists(),
            "{name} escaped"
        );
        assert!(
            !to.exists(),
            "{name}: a failed restore left {}",
            to.display()
        );
    }
    // A hard link to what is not restored is named, with the path to add.
    let tar = tar_of(&[
        ("a/", b'5', b"", ""),
        ("a/f", b'0', b"data", ""),
        ("b/", b'5', b"", ""),
        ("b/h", b'1', b"", "a/f"),
    ]);
    let id = hostile_archive(&env.repository, "links", "v", &tar, 4);
    let to = env.dir.path().join("to-links");
    let out = restore_paths(&env, &id, "v", &["b"], &to, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("a/f") && err.contains("--path"), "{err}");
    // Both together come back as one file with two names.
    let out = restore_paths(&env, &id, "v", &["b", "a/f"], &to, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (f, h) = (
        fs::metadata(to.join("a/f")).unwrap(),
        fs::metadata(to.join("b/h")).unwrap(),
    );
    assert_eq!(f.ino(), h.ino());
    // `ls` reads the same archive without writing anything.
    let out = run(reader(&env).args(["ls", &id, "volumes/v", "-R"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.lines().any(|l| l.ends_with(" b/h link to a/f")),
        "{text}"
    );
}

#[test]
fn ls_and_restore_name_what_the_archive_does_not_hold() {
    let env = Env::new();
    let tar = tar_of(&[("a/", b'5', b"", ""), ("a/f", b'0', b"data", "")]);
    let id = hostile_archive(&env.repository, "small", "v", &tar, 2);
    let out = run(reader(&env).args(["ls", "small-20261125T030001Z"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no archive `small-20261125T030001Z`"),
        "{}",
        stderr(&out)
    );
    let out = run(reader(&env).args(["ls", &id, "volumes/w"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("volumes/v"), "{}", stderr(&out));
    let out = run(reader(&env)
        .args([
            "restore", "--from", &id, "--volume", "w", "--path", "a", "--to",
        ])
        .arg(env.dir.path().join("x")));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no volume `w`"), "{}", stderr(&out));
    // --path needs one volume and a folder.
    let out = run(reader(&env).args(["restore", "--from", &id, "--path", "a", "--to", "x"]));
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("--volume"), "{}", stderr(&out));
}

#[test]
fn a_folder_format_archive_is_listed_and_restored_by_path() {
    let env = Env::new();
    let id = "flat-20261125T030000Z";
    let dir = host_dir(&env.repository).join("flat").join(id);
    let art = dir.join("volumes/v");
    fs::create_dir_all(art.join("d/e")).unwrap();
    fs::write(art.join("d/f.txt"), "folder\n").unwrap();
    fs::write(art.join("top.txt"), "top\n").unwrap();
    let f = art.join("d/f.txt");
    fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let touched = run(Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06Z"])
        .arg(&f));
    assert!(touched.status.success(), "{}", stderr(&touched));
    let (sha256, size, entries) = holdfast::archive::folder_listing_sha256(&art).unwrap();
    let manifest = serde_json::json!({
        "formatVersion": 1, "id": id, "kind": "BackupPolicy", "name": "flat", "policy": "flat",
        "phase": "Succeeded", "host": "h", "holdfastVersion": "0", "dockerApiVersion": "1.41",
        "startTime": "2026-11-25T03:00:00Z", "completionTime": "2026-11-25T03:00:01Z",
        "format": "folder", "level": null,
        "targets": {"stacks": [], "containers": [], "volumes": ["v"]},
        "artifacts": [{"kind": "volume", "path": "volumes/v", "size": size, "sha256": sha256,
                       "sourceBytes": size, "entries": entries, "source": "v"}],
        "timings": {}, "downtime": {}, "warnings": [],
    });
    fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();

    let out = run(reader(&env).args(["ls", id, "volumes/v/d", "-o", "json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["d/e", "d/f.txt"]);
    let file = &listed["entries"][1];
    assert_eq!(
        (file["mode"].as_str(), file["size"].as_u64()),
        (Some("0600"), Some(7))
    );
    assert_eq!(file["mtime"], "2001-02-03T04:05:06Z");

    let to = env.dir.path().join("to");
    let out = restore_paths(&env, id, "v", &["d/f.txt"], &to, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(to.join("d/f.txt")).unwrap(), "folder\n");
    let meta = fs::metadata(to.join("d/f.txt")).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.mtime()), (0o600, 981173106));
    assert!(!to.join("top.txt").exists() && !to.join("d/e").exists());
}

/// On a new machine (its own `--host`), another host's archive is found in the one host
/// folder holding it, listed and restored by path without writing there; held by two
/// hosts, it is refused, naming both, until `--from-host` picks one.
#[test]
fn another_hosts_archive_is_found_listed_and_restored_by_path_read_only() {
    let env = Env::new();
    let tar = tar_of(&[("a/", b'5', b"", ""), ("a/f", b'0', b"data", "")]);
    let id = hostile_archive(&env.repository, "small", "v", &tar, 2);
    let old = env.repository.join("oldbox");
    fs::rename(host_dir(&env.repository), &old).unwrap();
    let before = tree_listing(&old);
    let new_machine = || {
        let mut cmd = reader(&env);
        cmd.env("HOLDFAST_HOST", "newbox");
        cmd
    };
    let out = run(new_machine().args(["ls", &id]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("volumes/v"), "{}", stdout(&out));
    assert!(stderr(&out).contains("host oldbox's"), "{}", stderr(&out));
    let to = env.dir.path().join("back");
    let out = run(new_machine()
        .args([
            "restore", "--from", &id, "--volume", "v", "--path", "a", "--to",
        ])
        .arg(&to));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(to.join("a/f")).unwrap(), "data");
    assert_eq!(
        tree_listing(&old),
        before,
        "the other host's folder changed"
    );
    assert!(!env.repository.join("newbox").exists());

    // Held by two hosts: refused, naming both; --from-host picks one.
    let copy = env.repository.join("otherbox/small").join(&id);
    fs::create_dir_all(copy.join("volumes")).unwrap();
    for file in ["manifest.json", "volumes/v.tar"] {
        fs::copy(old.join("small").join(&id).join(file), copy.join(file)).unwrap();
    }
    let out = run(new_machine().args(["ls", &id]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("several hosts (oldbox, otherbox)")
            && stderr(&out).contains("--from-host"),
        "{}",
        stderr(&out)
    );
    let out = run(new_machine().args(["ls", "--from-host", "otherbox", &id]));
    assert!(out.status.success(), "{}", stderr(&out));

    // Listed with their hosts.
    let out = run(new_machine().args(["get", "archives", "--all-hosts", "-o", "json"]));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hosts: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["oldbox", "otherbox"], "{listed:#}");
}
