//! SFTP repositories against a real OpenSSH sshd on loopback (tests/common/sftp.rs): the
//! object operations on files below the spec's folder, the object-store layout on top of
//! them (an archive exists once its manifest is written; leftovers are cleaned), the
//! probe, and the refusal of a server whose host key is not in the known-hosts file the
//! spec names. The server's folder is this machine's, so the tests look at what was
//! written directly.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};

use holdfast::repo::named;
use holdfast::repo::objects::Objects;
use holdfast::repo::sftp::SftpObjects;
use holdfast::repo::storage::Repository;
use holdfast::spec::repository::{RepositorySpec, SftpStorage, StorageSpec};

use common::sftp::Sftp;

/// The spec of a repository in `folder` below the server's data folder.
fn spec(server: &Sftp, folder: &str) -> SftpStorage {
    SftpStorage {
        host: server.host().to_string(),
        port: server.port(),
        user: server.user().to_string(),
        path: server.root().join(folder).display().to_string(),
        private_key_file: server.private_key().display().to_string(),
        known_hosts_file: server.known_hosts().display().to_string(),
    }
}

fn open(storage: SftpStorage) -> Repository {
    let spec = RepositorySpec {
        format: Default::default(),
        host_selector: None,
        password: None,
        storage: StorageSpec {
            sftp: Some(storage),
            ..StorageSpec::default()
        },
        encryption: None,
        append_only: false,
    };
    named::open("offsite", &spec, "nas").expect("opening the SFTP repository")
}

/// Every file below `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// The command lines of this machine's `ssh` processes that talk to `port`.
fn ssh_processes(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_ssh = args
            .first()
            .is_some_and(|a| a == "ssh" || a.ends_with("/ssh"));
        let ours = args
            .windows(2)
            .any(|w| w[0] == "-p" && w[1] == port.to_string());
        if is_ssh && ours {
            found.push(args.join(" "));
        }
    }
    found
}

/// The control socket of the one ssh master talking to `port`, which lives in a private
/// folder of the temporary folder.
fn master_socket(port: u16) -> String {
    let masters = ssh_processes(port);
    assert_eq!(masters.len(), 1, "one master: {masters:?}");
    let socket = masters[0]
        .split(' ')
        .skip_while(|a| *a != "-S")
        .nth(1)
        .unwrap()
        .to_string();
    let private = std::env::temp_dir().join("holdfast-ssh-");
    assert!(
        socket.starts_with(&private.display().to_string()),
        "{socket}"
    );
    socket
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn objects_are_files_below_the_folder_written_whole_or_not_at_all() {
    let server = Sftp::start();
    let objects = SftpObjects::new(&spec(&server, "repo")).unwrap();
    let root = server.root().join("repo");
    assert_eq!(
        objects.describe(),
        format!(
            "sftp://{}@127.0.0.1:{}{}",
            server.user(),
            server.port(),
            root.display()
        )
    );
    // Nothing yet, not even the folder: an empty listing and no object.
    assert!(objects.list("nas/").unwrap().is_empty());
    assert_eq!(objects.get("nas/a/b/c.json").unwrap(), None);
    assert_eq!(objects.size("nas/a/b/c.json").unwrap(), None);

    // put makes the folders above it.
    objects.put("nas/a/b/c.json", b"{}").unwrap();
    objects.put("nas/a/d.txt", b"hello").unwrap();
    assert_eq!(fs::read(root.join("nas/a/b/c.json")).unwrap(), b"{}");
    assert_eq!(objects.get("nas/a/d.txt").unwrap().unwrap(), b"hello");
    assert_eq!(objects.size("nas/a/d.txt").unwrap(), Some(5));
    // Replacing is whole.
    objects.put("nas/a/d.txt", b"bye").unwrap();
    assert_eq!(objects.get("nas/a/d.txt").unwrap().unwrap(), b"bye");
    assert_eq!(
        objects.list("nas/").unwrap(),
        [
            ("nas/a/b/c.json".to_string(), 2),
            ("nas/a/d.txt".to_string(), 3)
        ]
    );
    assert_eq!(
        objects.list("nas/a/b/").unwrap(),
        [("nas/a/b/c.json".to_string(), 2)]
    );

    // A streamed writer: nothing under the key until it is committed. Several MiB and
    // uneven writes, read back through the streaming reader.
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut writer = objects.writer("nas/g/id/volumes/v.tar.zst").unwrap();
    for chunk in big.chunks(777_777) {
        writer.write_all(chunk).unwrap();
    }
    assert_eq!(objects.size("nas/g/id/volumes/v.tar.zst").unwrap(), None);
    assert!(root.join("nas/g/id/volumes/v.tar.zst.partial").is_file());
    writer.commit().unwrap();
    assert_eq!(
        objects.size("nas/g/id/volumes/v.tar.zst").unwrap(),
        Some(big.len() as u64)
    );
    assert!(!root.join("nas/g/id/volumes/v.tar.zst.partial").exists());
    let mut back = Vec::new();
    objects
        .reader("nas/g/id/volumes/v.tar.zst")
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(
        back == big,
        "the streamed read differs from what was written"
    );
    let mut small = Vec::new();
    objects
        .reader("nas/a/d.txt")
        .unwrap()
        .read_to_end(&mut small)
        .unwrap();
    assert_eq!(small, b"bye");

    // A writer dropped before its commit leaves nothing, not even its partial file.
    let mut dropped = objects.writer("nas/g/id2/dumps/db.sql.zst").unwrap();
    dropped.write_all(&big[..100_000]).unwrap();
    drop(dropped);
    assert!(
        !files(&root).iter().any(|f| f.contains("db.sql")),
        "{:?}",
        files(&root)
    );

    // A missing object cannot be opened: NotFound, naming its URL.
    let err = objects.reader("nas/none").err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(
        err.to_string()
            .contains(&format!("{}/nas/none", root.display())),
        "{err}"
    );

    // Deleting removes the files and the folders they leave empty; twice is fine.
    let keys: Vec<String> = objects
        .list("nas/")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    objects.delete(&keys).unwrap();
    objects.delete(&keys).unwrap();
    assert!(objects.list("nas/").unwrap().is_empty());
    assert!(files(&root).is_empty(), "{:?}", files(&root));
    assert!(!root.join("nas/a").exists());
    assert!(root.is_dir(), "the repository's own folder stays");
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn archives_exist_once_their_manifest_is_written_and_leftovers_are_cleaned() {
    let server = Sftp::start();
    let repository = open(spec(&server, "backups"));
    let storage = repository.storage();
    named::probe(&repository).unwrap();

    let at = Utc.with_ymd_and_hms(2026, 12, 7, 3, 0, 0).unwrap();
    let staged = storage.begin("nightly", at).unwrap();
    assert_eq!(staged.id, "nightly-20261207T030000Z");
    let mut file = staged.outlet.create("volumes/v.tar.zst").unwrap();
    file.write_all(b"data").unwrap();
    file.commit().unwrap();
    assert!(storage.archives("nightly").unwrap().is_empty());
    storage.commit(staged, b"{}").unwrap();
    assert_eq!(
        storage.archives("nightly").unwrap(),
        ["nightly-20261207T030000Z"]
    );
    assert_eq!(storage.groups().unwrap(), ["nightly"]);
    assert_eq!(
        storage
            .read("nightly", "nightly-20261207T030000Z", "volumes/v.tar.zst")
            .unwrap()
            .unwrap(),
        b"data"
    );
    let root = server.root().join("backups");
    assert!(
        root.join("nas/nightly/nightly-20261207T030000Z/manifest.json")
            .is_file()
    );

    // An upload killed half-way: one artifact done, one partial, no manifest.
    let killed = storage.begin("nightly", at).unwrap();
    assert_eq!(killed.id, "nightly-20261207T030001Z");
    let mut done = killed.outlet.create("dumps/db.sql.zst").unwrap();
    done.write_all(b"dump").unwrap();
    done.commit().unwrap();
    // What a killed writer leaves: its partial file.
    let killed_dir = root.join("nas/nightly/nightly-20261207T030001Z");
    fs::create_dir_all(killed_dir.join("volumes")).unwrap();
    fs::write(killed_dir.join("volumes/w.tar.zst.partial"), "half").unwrap();
    assert_eq!(
        storage.archives("nightly").unwrap(),
        ["nightly-20261207T030000Z"]
    );
    let removed = storage.clean().unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(
        removed[0].contains("nightly-20261207T030001Z"),
        "{removed:?}"
    );
    assert!(!killed_dir.exists(), "{:?}", files(&root));

    // Records beside the groups; the probe leaves nothing.
    storage.write_meta("handled.json", b"[]").unwrap();
    assert_eq!(storage.read_meta("handled.json").unwrap().unwrap(), b"[]");
    named::probe(&repository).unwrap();
    assert_eq!(
        files(&root.join("nas/.holdfast")),
        ["handled.json"],
        "the probe's record is deleted"
    );

    storage
        .delete("nightly", "nightly-20261207T030000Z")
        .unwrap();
    assert!(storage.archives("nightly").unwrap().is_empty());
    assert!(!root.join("nas/nightly").exists(), "{:?}", files(&root));
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_host_key_missing_from_the_known_hosts_file_is_refused() {
    let server = Sftp::start();
    let dir = tempfile::tempdir().unwrap();
    // A known-hosts file that names the server with another key (the client's own).
    let wrong = dir.path().join("known_hosts");
    let other_key = fs::read_to_string(format!("{}.pub", server.private_key().display()))
        .unwrap()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    fs::write(
        &wrong,
        format!("[127.0.0.1]:{} {other_key}\n", server.port()),
    )
    .unwrap();
    // And one that does not name it at all.
    let empty = dir.path().join("empty_known_hosts");
    fs::write(&empty, "").unwrap();

    for known_hosts in [&wrong, &empty] {
        let mut storage = spec(&server, "repo");
        storage.known_hosts_file = known_hosts.display().to_string();
        let repository = open(storage);
        let err = named::probe(&repository).unwrap_err();
        let text = err.to_string();
        assert!(!err.is_transient(), "a refusal stands: {text}");
        assert!(
            text.contains(&format!("@127.0.0.1:{}", server.port())),
            "names the server: {text}"
        );
        assert!(
            text.contains(&known_hosts.display().to_string()),
            "names the known-hosts file: {text}"
        );
        assert!(text.contains("knownHostsFile"), "names the field: {text}");
        assert!(!server.root().join("repo").exists(), "nothing was written");
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn specs_that_cannot_work_are_refused_when_opened() {
    let server = Sftp::start();
    let refusal = |storage: SftpStorage| {
        let spec = RepositorySpec {
            format: Default::default(),
            host_selector: None,
            password: None,
            storage: StorageSpec {
                sftp: Some(storage),
                ..StorageSpec::default()
            },
            encryption: None,
            append_only: false,
        };
        named::open("offsite", &spec, "nas")
            .unwrap_err()
            .to_string()
    };
    let mut relative = spec(&server, "repo");
    relative.path = "backups".to_string();
    let text = refusal(relative);
    assert!(text.contains("spec.storage.sftp: path"), "{text}");

    let mut option = spec(&server, "repo");
    option.host = "-oProxyCommand=touch /tmp/x".to_string();
    let text = refusal(option);
    assert!(text.contains("spec.storage.sftp: host"), "{text}");

    let mut no_key = spec(&server, "repo");
    no_key.private_key_file = "/nonexistent/id_ed25519".to_string();
    let text = refusal(no_key);
    assert!(text.contains("privateKeyFile"), "{text}");
    assert!(text.contains("/nonexistent/id_ed25519"), "{text}");
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn one_connection_serves_a_repository_and_closes_with_it() {
    let server = Sftp::start();
    let repository = open(spec(&server, "repo"));
    named::probe(&repository).unwrap();
    repository.storage().write_meta("a.json", b"1").unwrap();
    let socket = master_socket(server.port());
    let folder = Path::new(&socket)
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();

    // A master that died (the server restarted, the network dropped) is replaced on the
    // next call, which succeeds.
    let exit = Command::new("ssh")
        .args(["-S", &socket, "-O", "exit", "none"])
        .output()
        .unwrap();
    assert!(exit.status.success(), "{exit:?}");
    assert_eq!(
        repository.storage().read_meta("a.json").unwrap().unwrap(),
        b"1"
    );
    let socket = master_socket(server.port());
    assert!(!folder.exists(), "{} is left", folder.display());
    let folder = Path::new(&socket)
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();

    drop(repository);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ssh_processes(server.port()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        ssh_processes(server.port()).is_empty(),
        "{:?}",
        ssh_processes(server.port())
    );
    assert!(!folder.exists(), "{} is left", folder.display());
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_key_the_server_does_not_know_is_refused_naming_the_user_and_the_key() {
    let server = Sftp::start();
    let dir = tempfile::tempdir().unwrap();
    let stranger = dir.path().join("stranger");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut storage = spec(&server, "repo");
    storage.private_key_file = stranger.display().to_string();
    let err = named::probe(&open(storage)).unwrap_err();
    let text = err.to_string();
    assert!(!err.is_transient(), "a refusal stands: {text}");
    assert!(text.contains(&stranger.display().to_string()), "{text}");
    assert!(text.contains(&format!("`{}`", server.user())), "{text}");
    assert!(text.contains("Permission denied"), "ssh's words: {text}");
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_server_that_is_down_is_a_failure_worth_retrying() {
    let mut server = Sftp::start();
    let repository = open(spec(&server, "repo"));
    server.kill();
    let err = named::probe(&repository).unwrap_err();
    let text = err.to_string();
    assert!(err.is_transient(), "{text}");
    assert!(
        text.contains(&format!(
            "sftp://{}@127.0.0.1:{}",
            server.user(),
            server.port()
        )),
        "{text}"
    );
    assert!(text.contains("Connection refused"), "{text}");
}
