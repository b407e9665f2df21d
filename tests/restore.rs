//! `holdfast restore` against the real engine: round trips of a real stack's volumes in
//! place and into new volumes, a disaster drill from the repository alone, and hostile
//! archives that must not write a byte outside their target.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::env::Env;
use common::hostile::*;
use common::*;
use serde_json::Value;

impl Env {
    /// Backs up the stack with a policy named `name`; returns the archive id.
    fn backup(&self, name: &str, project: &str, extra: &str) -> String {
        self.backup_succeeded(
            name,
            &format!("  targets: {{stacks: [{project}]}}\n{extra}"),
        )
    }

    fn restore(&self, args: &[&str]) -> (std::process::Output, Value) {
        let out = run(self.holdfast().args(["restore", "-o", "json"]).args(args));
        let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "restore printed no JSON ({e}):\n{}\n{}",
                stdout(&out),
                stderr(&out)
            )
        });
        (out, value)
    }
}

/// Data with every kind of metadata a restore must bring back, written by the container
/// itself into the web volume (mounted at /www).
const SEED: &str = "set -e
cd /www
mkdir -p site/empty deep/a/b
echo hello > site/index.html
echo secret > site/private.txt
chmod 640 site/private.txt
chown 1234:5678 site/private.txt
ln -s index.html site/home.html
ln -s /etc/hostname site/outside-link
ln site/index.html deep/a/b/hard.html
dd if=/dev/zero of=deep/sparse.bin bs=1 count=1 seek=8388607 2>/dev/null
echo tail >> deep/sparse.bin
mkfifo deep/pipe
touch -d '2001-02-03 04:05:06' site/index.html site deep/a/b
chmod 2775 deep
";

fn web_listing(stack: &ComposeStack) -> Vec<String> {
    tree_listing(&stack.volume_dir("web-data"))
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn volumes_come_back_in_place_and_into_new_volumes_exactly_as_archived() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hfrt{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    // The worker appends to the shared volume every few seconds: stopped, so the
    // comparison is of data nobody changes.
    docker(&["stop", "-t", "1", &stack.container("worker")]);
    sh_in(&stack.container("web"), SEED);
    let before = web_listing(&stack);
    let env = Env::new();
    let archive = env.backup("web", &project, "");

    // Change everything: edit, delete, add, chmod.
    sh_in(
        &stack.container("web"),
        "set -e; cd /www; echo changed > site/index.html; rm -r deep; echo new > added.txt; chmod 600 site",
    );
    assert_ne!(web_listing(&stack), before);

    let volume = stack.volume("web-data");
    // What a restore killed mid-way would have left beside the data: cleaned up.
    let leftover = stack
        .volume_dir("web-data")
        .with_file_name("_data.holdfast-restore-interrupted");
    fs::create_dir_all(leftover.join("junk")).unwrap();
    let (out, report) =
        env.restore(&["--from", &archive, "--volume", &volume, "--mode", "InPlace"]);
    assert!(out.status.success(), "{report:#}\n{}", stderr(&out));
    assert_eq!(report["phase"], "Succeeded");
    assert_eq!(report["report"]["volumes"][0]["into"], volume.as_str());
    assert_eq!(report["report"]["volumes"][0]["created"], false);
    assert_eq!(web_listing(&stack), before);
    // The web container was stopped for it and runs again; the stopped worker stays so.
    assert_eq!(stack.state("web"), "running");
    assert_eq!(stack.state("worker"), "exited");
    // Sparse came back sparse.
    let sparse = stack.volume_dir("web-data").join("deep/sparse.bin");
    let meta = fs::metadata(&sparse).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(
        meta.blocks() * 512 < meta.len() / 4,
        "{} blocks",
        meta.blocks()
    );
    // Nothing left beside the volume's data folder.
    let volume_dir = stack.volume_dir("web-data");
    let siblings: Vec<String> = fs::read_dir(volume_dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(siblings, ["_data"], "{siblings:?}");

    // NewVolumes: the original exists, so a new one is made beside it.
    let (out, report) = env.restore(&["--from", &archive, "--volume", &volume]);
    assert!(out.status.success(), "{report:#}\n{}", stderr(&out));
    let into = report["report"]["volumes"][0]["into"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(into.starts_with(&format!("{volume}-restored-")), "{into}");
    assert_eq!(report["report"]["volumes"][0]["created"], true);
    let new_dir =
        PathBuf::from(docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &into]).trim());
    assert_eq!(tree_listing(&new_dir), before);
    let labels = docker(&["volume", "inspect", "-f", "{{json .Labels}}", &into]);
    assert!(labels.contains(&archive), "{labels}");
    // Asked again, it refuses: that volume exists now, and NewVolumes never writes into one.
    let (out, report) = env.restore(&[
        "--from",
        &archive,
        "--volume",
        &volume,
        "--map",
        &format!("{volume}={into}"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        report["errors"][0]
            .as_str()
            .unwrap()
            .contains("NewVolumes never writes into an existing volume"),
        "{report:#}"
    );
    docker(&["volume", "rm", &into]);

    // A volume in use by a running container that is not ours to stop is never written:
    // a restore with stop `container` stops only the volume's users, and they are all
    // stopped here; so check the refusal through a name that is not in the archive.
    let (out, report) = env.restore(&["--from", &archive, "--volume", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        report["errors"][0]
            .as_str()
            .unwrap()
            .contains("has no volume `nope`"),
        "{report:#}"
    );
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn disaster_drill_brings_a_stack_back_from_the_repository_alone() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hfdrill{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    sh_in(
        &stack.container("web"),
        "echo 'the data that matters' > /www/precious.txt",
    );
    let env = Env::new();
    env.backup("drill", &project, "");
    // The host is lost: the stack and its volumes are gone, and so are the specs and the
    // state. Only the repository is left.
    stack.down();
    fs::remove_dir_all(&env.specs).unwrap();
    fs::remove_dir_all(&env.state).unwrap();
    let recipe = env.dir.path().join("recipe");
    let (out, report) = env.restore(&[
        "--policy",
        "drill",
        "--at",
        "latest",
        "--recipe-to",
        recipe.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{report:#}\n{}", stderr(&out));
    let volumes: Vec<&str> = report["report"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["into"].as_str().unwrap())
        .collect();
    assert!(
        volumes.contains(&stack.volume("web-data").as_str()),
        "{volumes:?}"
    );
    let env_file = fs::read_to_string(recipe.join(".env")).unwrap();
    assert!(env_file.contains(&format!("COMPOSE_PROJECT_NAME={project}")));
    assert!(recipe.join("docker-compose.yml").exists());
    // The bind-mounted config folder beside the compose file came back too.
    assert!(recipe.join("config").is_dir());

    let up = run(Command::new("docker-compose")
        .current_dir(&recipe)
        .args(["up", "-d"]));
    assert!(up.status.success(), "{}", stderr(&up));
    let web = format!("{project}_web_1");
    let served = docker(&["exec", &web, "cat", "/www/precious.txt"]);
    assert_eq!(served.trim(), "the data that matters");
    let down = run(Command::new("docker-compose").current_dir(&recipe).args([
        "down",
        "-v",
        "--timeout",
        "5",
    ]));
    assert!(down.status.success(), "{}", stderr(&down));
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn disaster_drill_brings_a_stack_back_from_the_bundle_and_the_repository_alone() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hfbundle{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    sh_in(
        &stack.container("web"),
        "echo 'the data that matters' > /www/precious.txt",
    );
    let env = Env::new();
    // An encrypted repository whose identity is a file of this host, outside the specs;
    // the person keeps one more copy of that identity somewhere safe.
    let secrets = env.dir.path().join("secrets");
    fs::create_dir(&secrets).unwrap();
    let (identity, recipient) = age_key(&secrets, "vault.key");
    let safe = env.dir.path().join("safe");
    fs::create_dir(&safe).unwrap();
    fs::copy(&identity, safe.join("vault.key")).unwrap();
    let vault = env.dir.path().join("vault");
    env.spec(
        "vault",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1
kind: Repository
metadata: {{name: vault}}
spec:
  storage: {{local: {{path: {}}}}}
  encryption:
    age:
      recipients: [{recipient}]
      identityFile: ../secrets/vault.key
",
            vault.display()
        ),
    );
    env.backup(
        "drill",
        &project,
        "  include: {bundle: true}\n  output: {repository: vault}\n",
    );
    let bundle = host_dir(&vault).join(".holdfast/bundle.age");
    assert!(
        fs::read(&bundle)
            .unwrap()
            .starts_with(b"age-encryption.org/v1")
    );

    // The host is lost: the stack, its volumes, the specs, the state and the secret files.
    // Left are the repository and the identity kept safe.
    stack.down();
    fs::remove_dir_all(&env.specs).unwrap();
    fs::remove_dir_all(&env.state).unwrap();
    fs::remove_dir_all(&secrets).unwrap();
    let recovered = env.dir.path().join("recovered");
    let out = run(env
        .holdfast()
        .args(["bundle", "open"])
        .arg(&bundle)
        .arg("--identity")
        .arg(safe.join("vault.key"))
        .arg("--to")
        .arg(&recovered));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("holdfast restore"),
        "{}",
        stdout(&out)
    );

    let recipe = env.dir.path().join("recipe");
    let (out, report) = env.restore(&[
        "--specs",
        recovered.join("specs").to_str().unwrap(),
        "--repo",
        "vault",
        "--policy",
        "drill",
        "--at",
        "latest",
        "--recipe-to",
        recipe.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{report:#}\n{}", stderr(&out));
    let volumes: Vec<&str> = report["report"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["into"].as_str().unwrap())
        .collect();
    assert!(
        volumes.contains(&stack.volume("web-data").as_str()),
        "{volumes:?}"
    );
    assert!(recipe.join("docker-compose.yml").exists());
    let up = run(Command::new("docker-compose")
        .current_dir(&recipe)
        .args(["up", "-d"]));
    assert!(up.status.success(), "{}", stderr(&up));
    let web = format!("{project}_web_1");
    let served = docker(&["exec", &web, "cat", "/www/precious.txt"]);
    assert_eq!(served.trim(), "the data that matters");
    let down = run(Command::new("docker-compose").current_dir(&recipe).args([
        "down",
        "-v",
        "--timeout",
        "5",
    ]));
    assert!(down.status.success(), "{}", stderr(&down));
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn hostile_archives_are_refused_and_write_nothing_outside_their_volume() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let env = Env::new();
    let tag = std::process::id();
    let cases: Vec<(&str, Vec<u8>, u64, &str)> = vec![
        (
            "traversal",
            tar_of(&[
                ("./", b'5', b"", ""),
                ("../escaped.txt", b'0', b"pwned", ""),
            ]),
            2,
            "outside",
        ),
        (
            "absolute",
            tar_of(&[("/tmp/holdfast-absolute-escape", b'0', b"pwned", "")]),
            1,
            "absolute",
        ),
        (
            "symlink",
            tar_of(&[
                ("etc", b'2', b"", "/etc"),
                ("etc/holdfast-escape", b'0', b"pwned", ""),
            ]),
            2,
            "symlink",
        ),
        (
            "truncated",
            {
                let mut t = tar_of(&[("big.bin", b'0', &[7u8; 100_000], "")]);
                t.truncate(20_000);
                t
            },
            1,
            "",
        ),
        ("device", tar_of(&[("null", b'3', b"", "")]), 1, "device"),
    ];
    for (name, tar, entries, expect) in cases {
        let volume = format!("hfhostile{tag}-{name}");
        let id = hostile_archive(&env.repository, name, &volume, &tar, entries);
        let (out, report) = env.restore(&["--from", &id]);
        assert_eq!(out.status.code(), Some(1), "{name}: {report:#}");
        let error = report["errors"][0].as_str().unwrap_or_default().to_string();
        assert!(error.contains(expect), "{name}: {error}");
        // The volume it created for the restore is gone again, and nothing escaped.
        let exists = run(Command::new("docker").args(["volume", "inspect", &volume]));
        assert!(
            !exists.status.success(),
            "{name}: volume {volume} was left behind"
        );
        assert!(!Path::new("/etc/holdfast-escape").exists());
        assert!(!Path::new("/tmp/holdfast-absolute-escape").exists());
    }
    // A tar bomb: a million empty files behind a manifest that records three. Refused
    // at the fourth, long before a million files exist.
    let volume = format!("hfhostile{tag}-bomb");
    let bomb = {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        use std::io::Write;
        for i in 0..1_000_000u32 {
            encoder
                .write_all(&header(&format!("f{i}"), b'0', 0, ""))
                .unwrap();
        }
        encoder.write_all(&[0u8; 1024]).unwrap();
        encoder.finish().unwrap()
    };
    let id = hostile_archive(&env.repository, "bomb", &volume, &bomb, 3);
    // The artifact is zstd: rename it so its name says so, and fix the manifest.
    let dir = host_dir(&env.repository).join("bomb").join(&id);
    fs::rename(dir.join("volumes/v.tar"), dir.join("volumes/v.tar.zst")).unwrap();
    let manifest = fs::read_to_string(dir.join("manifest.json"))
        .unwrap()
        .replace("volumes/v.tar", "volumes/v.tar.zst");
    fs::write(dir.join("manifest.json"), manifest).unwrap();
    let started = std::time::Instant::now();
    let (out, report) = env.restore(&["--from", &id]);
    assert_eq!(out.status.code(), Some(1), "bomb: {report:#}");
    let error = report["errors"][0].as_str().unwrap_or_default();
    assert!(error.contains("entries"), "bomb: {error}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the bomb took {:?}",
        started.elapsed()
    );
    let exists = run(Command::new("docker").args(["volume", "inspect", &volume]));
    assert!(
        !exists.status.success(),
        "bomb: volume {volume} was left behind"
    );

    // The traversal target would have been the volume folder's parent.
    let root = docker(&["info", "-f", "{{.DockerRootDir}}"]);
    let leftovers = run(Command::new("sh").arg("-c").arg(format!(
        "ls {}/volumes/*/escaped.txt 2>/dev/null | wc -l",
        root.trim()
    )));
    assert_eq!(stdout(&leftovers).trim(), "0");
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_restore_spec_runs_once_through_the_daemon_and_replays_its_dumps() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hfrspec{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    // The worker appends to the web volume; stopped, the copy can be compared with it.
    docker(&["stop", "-t", "1", &stack.container("worker")]);
    let env = Env::new();
    let sqlite = stack.container("sqlite");
    let rows = || {
        docker(&[
            "exec",
            &sqlite,
            "sqlite3",
            "/data/app.db",
            "SELECT name, qty FROM items ORDER BY id",
        ])
    };
    let before = rows();
    env.backup(
        "nightly",
        &project,
        "  dumps:\n    - {service: sqlite, engine: sqlite, databases: [/data/app.db]}\n",
    );
    docker(&[
        "exec",
        &sqlite,
        "sqlite3",
        "/data/app.db",
        "UPDATE items SET qty = 0; DELETE FROM items WHERE id = 1;",
    ]);
    assert_ne!(rows(), before);

    // A Restore spec in git: the web volume into a volume of its own, and the dumps.
    let copy = format!("{project}-web-copy");
    fs::write(
        env.specs.join("restore.yaml"),
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: Restore\nmetadata: {{name: bring-back}}\nspec:\n  from: {{policy: nightly, at: latest}}\n  targets: {{stacks: [{project}]}}\n  volumeMapping: {{{web}: {copy}, {db}: {project}-db-copy, {maria}: {project}-maria-copy, {redis}: {project}-redis-copy, {sq}: {project}-sqlite-copy}}\n  replayDumps: true\n",
            web = stack.volume("web-data"),
            db = stack.volume("db-data"),
            maria = stack.volume("mariadb-data"),
            redis = stack.volume("redis-data"),
            sq = stack.volume("sqlite-data"),
        ),
    )
    .unwrap();
    let dir = env.dir.path();
    // The daemon's layout: specs, state and repository under one folder.
    let _daemon = common::daemon::Daemon::start(dir, &[]);
    let status = env.specs.join("restore.status.yaml");
    let s = common::daemon::wait_for(
        &status,
        std::time::Duration::from_secs(120),
        "restore",
        |s| {
            s.first().is_some_and(|d| {
                d["status"]["lastRun"]["phase"] == "Succeeded"
                    || d["status"]["lastRun"]["phase"] == "Failed"
            })
        },
    );
    let restored = &s[0]["status"]["restored"];
    assert_eq!(
        s[0]["status"]["lastRun"]["phase"], "Succeeded",
        "{:#}",
        s[0]
    );
    assert!(
        restored["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["into"] == copy.as_str()),
        "{restored:#}"
    );
    assert_eq!(rows(), before, "the dump was not replayed");
    let dump = &restored["dumps"][0];
    assert_eq!(dump["engine"], "sqlite");
    assert!(dump["counts"]["items"].as_u64().unwrap() > 0, "{dump:#}");
    let ready = s[0]["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True", "{ready:#}");
    let copied =
        PathBuf::from(docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &copy]).trim());
    assert_eq!(tree_listing(&copied), web_listing(&stack));
    for v in [
        "web-copy",
        "db-copy",
        "maria-copy",
        "redis-copy",
        "sqlite-copy",
    ] {
        let _ = run(Command::new("docker").args(["volume", "rm", &format!("{project}-{v}")]));
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_failed_in_place_restore_leaves_the_volume_as_it_was_and_its_container_running() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let env = Env::new();
    let tag = std::process::id();
    let volume = format!("hfinplace{tag}");
    let container = format!("hfinplace{tag}-app");
    docker(&["volume", "create", &volume]);
    docker(&[
        "run",
        "-d",
        "--init",
        "--name",
        &container,
        "-v",
        &format!("{volume}:/data"),
        "holdfast-test/busybox:1",
        "sh",
        "-c",
        "[ -e /data/keep.txt ] || echo precious > /data/keep.txt; sleep 3600",
    ]);
    // A stream cut off in the middle of a file, with a manifest that agrees with it.
    let mut tar = tar_of(&[("big.bin", b'0', &[7u8; 100_000], "")]);
    tar.truncate(20_000);
    let id = hostile_archive(&env.repository, "inplace", &volume, &tar, 1);
    let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &container]);
    let (out, report) = env.restore(&["--from", &id, "--mode", "InPlace"]);
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    // The container was stopped for the restore and runs again; the data is untouched.
    let state = docker(&["inspect", "-f", "{{.State.Status}}", &container]);
    assert_eq!(state.trim(), "running");
    let restarted = docker(&["inspect", "-f", "{{.State.StartedAt}}", &container]);
    assert_ne!(
        restarted, started,
        "the container was never stopped for the restore"
    );
    assert_eq!(
        docker(&["exec", &container, "cat", "/data/keep.txt"]).trim(),
        "precious"
    );
    assert_eq!(
        docker(&["exec", &container, "ls", "/data"]).trim(),
        "keep.txt"
    );
    let mountpoint = docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &volume]);
    let siblings: Vec<String> = fs::read_dir(Path::new(mountpoint.trim()).parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(siblings, ["_data"], "{siblings:?}");
    let _ = run(Command::new("docker").args(["rm", "-f", &container]));
    let _ = run(Command::new("docker").args(["volume", "rm", &volume]));
}

/// A volume with a file, used by a long-running container, for the daemon's handled
/// record tests; removed with its container when dropped.
struct Volume {
    name: String,
    container: String,
}

impl Volume {
    fn new(prefix: &str) -> Volume {
        let tag = std::process::id();
        let v = Volume {
            name: format!("{prefix}{tag}"),
            container: format!("{prefix}{tag}-app"),
        };
        v.remove();
        docker(&["volume", "create", &v.name]);
        docker(&[
            "run",
            "-d",
            "--init",
            "--name",
            &v.container,
            "-v",
            &format!("{}:/data", v.name),
            "holdfast-test/busybox:1",
            "sh",
            "-c",
            "echo archived > /data/data.txt; sleep 3600",
        ]);
        v
    }

    fn sh(&self, script: &str) -> String {
        sh_in(&self.container, script)
    }

    fn remove(&self) {
        let _ = run(Command::new("docker").args(["rm", "-f", &self.container]));
        let _ = run(Command::new("docker").args(["volume", "rm", &self.name]));
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The policy that backs the volume up when asked (`requested-at: first`), keeping one
/// archive: a second run would delete the first.
fn handled_policy(volume: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: keep\n  annotations: {{holdfast.dev/requested-at: first}}\nspec:\n  schedule: '0 3 1 1 *'\n  targets: {{volumes: [{volume}]}}\n  retention: {{keepLast: 1}}\n"
    )
}

/// The InPlace Restore of the volume from the policy's latest archive.
fn in_place_restore(volume: &str, requested_at: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: Restore\nmetadata:\n  name: back\n  annotations: {{holdfast.dev/requested-at: {requested_at}}}\nspec:\n  from: {{policy: keep, at: latest}}\n  targets: {{volumes: [{volume}]}}\n  mode: InPlace\n  stop: container\n"
    )
}

fn wait_log(dir: &Path, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let log = fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
        if log.contains(needle) {
            return log;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon never logged {needle:?}:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Whether a run's phase is an end.
fn finished(phase: &Value) -> bool {
    ["Succeeded", "PartiallyFailed", "Failed"].contains(&phase.as_str().unwrap_or_default())
}

fn ready_reason(status: &Value) -> String {
    status["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .map(|c| c["reason"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// The archive folders of the policy `keep`.
fn kept_archives(env: &Env) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(host_dir(&env.repository).join("keep"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Runs the daemon until the policy's requested backup and the InPlace Restore have both
/// run once, then writes `after.txt` into the volume and stops the daemon. Returns the
/// archive the restore came from.
fn handle_backup_and_restore(env: &Env, volume: &Volume) -> String {
    let dir = env.dir.path();
    env.spec("keep", &handled_policy(&volume.name));
    let mut daemon = common::daemon::Daemon::start(dir, &[]);
    let s = common::daemon::wait_for(
        &env.specs.join("keep.status.yaml"),
        std::time::Duration::from_secs(60),
        "requested backup",
        |s| {
            s.first()
                .is_some_and(|d| d["status"]["lastRun"]["phase"] == "Succeeded")
        },
    );
    let archive = s[0]["status"]["lastRun"]["archiveId"]
        .as_str()
        .unwrap()
        .to_string();
    volume.sh("echo changed > /data/data.txt");
    env.spec("restore", &in_place_restore(&volume.name, "r1"));
    let s = common::daemon::wait_for(
        &env.specs.join("restore.status.yaml"),
        std::time::Duration::from_secs(60),
        "in-place restore",
        |s| {
            s.first()
                .is_some_and(|d| finished(&d["status"]["lastRun"]["phase"]))
        },
    );
    assert_eq!(
        s[0]["status"]["lastRun"]["phase"], "Succeeded",
        "{:#}",
        s[0]
    );
    assert_eq!(volume.sh("cat /data/data.txt").trim(), "archived");
    // Written after the restore: a second run of it would take this away.
    volume.sh("echo precious > /data/after.txt");
    daemon.signal("TERM");
    assert_eq!(daemon.wait(std::time::Duration::from_secs(30)), Some(0));
    assert_eq!(kept_archives(env), std::slice::from_ref(&archive));
    archive
}

/// Turns the folder into a host that holdfast has no record of: the same host folder of
/// the repository (a reinstalled machine, or a repository written before handled records
/// existed) but no state folder, no handled record and no status files.
fn become_fresh_host(env: &Env) {
    let _ = fs::remove_dir_all(&env.state);
    let _ = fs::remove_file(host_dir(&env.repository).join(".holdfast/handled.json"));
    for e in fs::read_dir(&env.specs).unwrap() {
        let path = e.unwrap().path();
        if path.to_string_lossy().ends_with(".status.yaml") {
            fs::remove_file(path).unwrap();
        }
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_lost_state_folder_runs_nothing_that_was_handled_again() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let env = Env::new();
    let volume = Volume::new("hfhandled");
    let archive = handle_backup_and_restore(&env, &volume);
    let dir = env.dir.path();
    // Whatever one place that remembers is lost, the others are enough.
    let losses: [(&str, &[&str]); 3] = [
        ("the state folder", &["state"]),
        (
            "the state folder and the status files",
            &["state", "status"],
        ),
        (
            "the state folder and the handled record",
            &["state", "record"],
        ),
    ];
    for (what, lost) in losses {
        if lost.contains(&"state") {
            fs::remove_dir_all(&env.state).unwrap();
        }
        if lost.contains(&"status") {
            fs::remove_file(env.specs.join("keep.status.yaml")).unwrap();
            fs::remove_file(env.specs.join("restore.status.yaml")).unwrap();
        }
        if lost.contains(&"record") {
            fs::remove_file(host_dir(&env.repository).join(".holdfast/handled.json")).unwrap();
        }
        let mut daemon = common::daemon::Daemon::start(dir, &[]);
        wait_log(dir, "holdfast is running");
        let s = common::daemon::wait_for(
            &env.specs.join("restore.status.yaml"),
            std::time::Duration::from_secs(30),
            "restore status",
            |s| {
                s.first()
                    .is_some_and(|d| d["status"]["observedGeneration"].is_string())
            },
        );
        // Time for a run the first pass would have started to show.
        std::thread::sleep(std::time::Duration::from_secs(3));
        daemon.signal("TERM");
        assert_eq!(daemon.wait(std::time::Duration::from_secs(60)), Some(0));
        let log = fs::read_to_string(dir.join("daemon.log")).unwrap();
        assert!(
            !log.contains("starting a run"),
            "after losing {what}, something ran again:\n{log}"
        );
        assert_eq!(
            volume.sh("cat /data/after.txt").trim(),
            "precious",
            "after losing {what}"
        );
        assert_eq!(
            kept_archives(&env),
            std::slice::from_ref(&archive),
            "after losing {what}"
        );
        assert_ne!(ready_reason(&s[0]), "UnprovenGeneration", "{:#}", s[0]);
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_fresh_host_holds_an_in_place_restore_until_its_requested_at_is_bumped() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let env = Env::new();
    let volume = Volume::new("hffresh");
    handle_backup_and_restore(&env, &volume);
    let dir = env.dir.path();
    let status = env.specs.join("restore.status.yaml");
    let held = |s: &[Value]| {
        s.first()
            .is_some_and(|d| ready_reason(d) == "UnprovenGeneration")
    };

    become_fresh_host(&env);
    let mut daemon = common::daemon::Daemon::start(dir, &[]);
    let s = common::daemon::wait_for(&status, std::time::Duration::from_secs(30), "held", held);
    let ready = s[0]["status"]["conditions"][0].clone();
    assert_eq!(ready["status"], "False", "{ready:#}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("cannot prove this restore has not run already"),
        "{ready:#}"
    );
    // Whatever else this host does (its own requested backup), the restore waits.
    common::daemon::wait_for(
        &env.specs.join("keep.status.yaml"),
        std::time::Duration::from_secs(60),
        "the fresh host's requested backup",
        |s| {
            s.first()
                .is_some_and(|d| d["status"]["lastRun"]["phase"] == "Succeeded")
        },
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(volume.sh("cat /data/after.txt").trim(), "precious");
    daemon.signal("TERM");
    assert_eq!(daemon.wait(std::time::Duration::from_secs(60)), Some(0));

    // The hold outlives this host's state folder too: it is in the repository's record.
    fs::remove_dir_all(&env.state).unwrap();
    let mut daemon = common::daemon::Daemon::start(dir, &[]);
    wait_log(dir, "holdfast is running");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let s = common::daemon::wait_for(&status, std::time::Duration::from_secs(30), "held", held);
    assert!(s[0]["status"]["lastRun"].is_null(), "{:#}", s[0]);
    assert_eq!(volume.sh("cat /data/after.txt").trim(), "precious");

    // A new requested-at value is someone saying "run it": it runs.
    volume.sh("echo changed-again > /data/data.txt");
    env.spec("restore", &in_place_restore(&volume.name, "r2"));
    let s = common::daemon::wait_for(
        &status,
        std::time::Duration::from_secs(60),
        "bumped restore",
        |s| {
            s.first()
                .is_some_and(|d| finished(&d["status"]["lastRun"]["phase"]))
        },
    );
    assert_eq!(
        s[0]["status"]["lastRun"]["phase"], "Succeeded",
        "{:#}",
        s[0]
    );
    assert_ne!(
        volume.sh("cat /data/data.txt").trim(),
        "changed-again",
        "the restore put the archive back"
    );
    daemon.signal("TERM");
    assert_eq!(daemon.wait(std::time::Duration::from_secs(60)), Some(0));
}
