//! holdfast against its own folders, with the real engine: a bind mount that holds the
//! repository and the state folder never carries them into an archive, and a run that
//! cannot fit in its repository fails before it stops anything.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::daemon::{Daemon, wait_for};
use common::*;
use serde_json::Value;

/// A container removed when dropped, whatever the test did.
struct Container(String);

impl Container {
    fn run(name: &str, mount: &str) -> Container {
        let _ = run(Command::new("docker").args(["rm", "-f", name]));
        docker(&[
            "run",
            "-d",
            "--name",
            name,
            "-v",
            mount,
            "holdfast-test/busybox:1",
            "sleep",
            "3600",
        ]);
        Container(name.to_string())
    }

    fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "-f", format, &self.0])
            .trim()
            .to_string()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run(Command::new("docker").args(["rm", "-f", &self.0]));
    }
}

/// A mount made by the test (a bind or a tmpfs), unmounted when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn new(args: &[&str], at: &Path) -> Mounted {
        fs::create_dir_all(at).unwrap();
        let out = run(Command::new("mount").args(args).arg(at));
        assert!(out.status.success(), "mount {args:?}: {}", stderr(&out));
        Mounted(at.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = run(Command::new("umount").arg(&self.0));
    }
}

fn holdfast_on(specs: &Path, state: &Path, repository: &Path) -> Command {
    let mut cmd = holdfast();
    cmd.env("HOLDFAST_SPECS", specs)
        .env("HOLDFAST_STATE", state)
        .env("HOLDFAST_REPOSITORY", repository);
    cmd
}

fn backup(mut cmd: Command, name: &str) -> (std::process::Output, Value) {
    let out = run(cmd.args(["backup", name, "-o", "json"]));
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "backup printed no JSON ({e}):\n{}\n{}",
            stdout(&out),
            stderr(&out)
        )
    });
    (out, outcome)
}

fn policy(name: &str, annotations: &str, body: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: {name}\n{annotations}spec:\n  schedule: '0 3 1 1 *'\n{body}"
    )
}

fn random_file(path: &Path, bytes: usize) {
    let out = run(Command::new("head")
        .args(["-c", &bytes.to_string(), "/dev/urandom"])
        .stdout(fs::File::create(path).unwrap()));
    assert!(out.status.success());
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_bind_mount_holding_the_repository_and_state_never_archives_them() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("host");
    fs::create_dir_all(host.join("repo")).unwrap();
    random_file(&host.join("data.bin"), 4 << 20);
    // The repository is given through a symlink, so only its real path shows it lies in
    // the bind mount; and it is reachable a second time, under another name, through a
    // bind mount inside the source, which only its device and inode give away.
    std::os::unix::fs::symlink(&host, dir.path().join("link")).unwrap();
    let repository = dir.path().join("link/repo");
    let state = host.join("state");
    let mut alias = Some(Mounted::new(
        &["--bind", host.join("repo").to_str().unwrap()],
        &host.join("alias"),
    ));
    let specs = dir.path().join("specs");
    fs::create_dir_all(&specs).unwrap();
    let name = format!("hfself{}", std::process::id());
    let container = Container::run(&name, &format!("{}:/data", host.display()));
    fs::write(
        specs.join("self.yaml"),
        policy(
            "self",
            "",
            &format!(
                "  targets: {{containers: [{name}]}}\n  output: {{format: tar}}\n  include: {{recipe: false}}\n"
            ),
        ),
    )
    .unwrap();

    let out = run(holdfast_on(&specs, &state, &repository).args(["plan", "self"]));
    let plan = stdout(&out);
    assert!(out.status.success(), "{plan}\n{}", stderr(&out));
    let source = format!("in bind mount {} of {name}", host.display());
    assert!(
        plan.contains(&format!(
            "skipped repository {} {source}: holdfast's own repository, never archived: repo is left out of this source",
            repository.display()
        )),
        "{plan}"
    );
    assert!(
        plan.contains(&format!(
            "skipped state folder {} {source}: holdfast's own state folder, never archived: state is left out of this source",
            state.display()
        )),
        "{plan}"
    );

    let mut sizes = Vec::new();
    // The third run reads the bind mount through Docker's archive API, where no inode
    // can be seen: the own folders are left out by their path inside the source, and a
    // second mount of them would not be recognised, so it is gone by then.
    for round in 0..3 {
        let mut cmd = holdfast_on(&specs, &state, &repository);
        if round == 2 {
            alias.take();
            cmd.env("HOLDFAST_ARCHIVE_VIA", "api");
        }
        let (out, outcome) = backup(cmd, "self");
        assert!(out.status.success(), "{outcome}\n{}", stderr(&out));
        assert_eq!(outcome["phase"], "Succeeded", "{outcome}");
        let archive = outcome["archiveId"].as_str().unwrap();
        let artifact = host_dir(&host.join("repo"))
            .join("self")
            .join(archive)
            .join(format!("binds/{name}-1.tar"));
        let listing = run(Command::new("tar").arg("-tf").arg(&artifact));
        assert!(listing.status.success(), "{}", stderr(&listing));
        let names: Vec<String> = stdout(&listing).lines().map(str::to_string).collect();
        assert!(names.iter().any(|n| n == "data.bin"), "{names:?}");
        let own_names: &[&str] = if round == 2 {
            &["repo", "state"]
        } else {
            &["repo", "state", "alias"]
        };
        let own: Vec<&String> = names
            .iter()
            .filter(|n| own_names.iter().any(|o| n.starts_with(o)))
            .collect();
        assert!(own.is_empty(), "round {round}: the archive holds {own:?}");
        sizes.push(outcome["storedBytes"].as_u64().unwrap());
    }
    // Every run carrying the earlier ones would double the size each time.
    assert!(
        sizes[1..].iter().all(|s| *s < sizes[0] + sizes[0] / 10),
        "later archives ({:?}) are not about the first's size ({})",
        &sizes[1..],
        sizes[0]
    );
    // Later estimates take the compression the newest archive achieved.
    let out = run(holdfast_on(&specs, &state, &repository).args(["plan", "self"]));
    let plan = stdout(&out);
    assert!(
        plan.contains("of data at the compression self-") && plan.contains("  fits: "),
        "{plan}"
    );
    assert_eq!(container.inspect("{{.State.Status}}"), "running");
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_run_that_cannot_fit_fails_before_anything_is_stopped() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let dir = tempfile::tempdir().unwrap();
    let repository = dir.path().join("repository");
    let _tmpfs = Mounted::new(&["-t", "tmpfs", "-o", "size=40m", "tmpfs"], &repository);
    let state = dir.path().join("state");
    let specs = dir.path().join("specs");
    fs::create_dir_all(&specs).unwrap();
    let name = format!("hfnospace{}", std::process::id());
    struct Volume(String);
    impl Drop for Volume {
        fn drop(&mut self) {
            let _ = run(Command::new("docker").args(["volume", "rm", "-f", &self.0]));
        }
    }
    // Declared before the container, so it is removed after it.
    let volume = Volume(format!("{name}-data"));
    let container = Container::run(&name, &format!("{}:/data", volume.0));
    sh_in(&name, "head -c 125829120 /dev/urandom > /data/big.bin");
    let started_at = container.inspect("{{.State.StartedAt}}");
    // A pre hook that would leave a mark: nothing may run before the space is checked.
    let body = format!(
        "  targets: {{containers: [{name}]}}\n  consistency:\n    stop: container\n    hooks:\n      pre: [{{exec: {{container: {name}, command: [touch, /tmp/pre-hook-ran]}}}}]\n"
    );
    fs::write(specs.join("big.yaml"), policy("big", "", &body)).unwrap();

    let out = run(holdfast_on(&specs, &state, &repository).args(["plan", "big"]));
    let plan = stdout(&out);
    assert!(
        plan.contains("does not fit:")
            && plan.contains(&format!("free in the repository {}", repository.display()))
            && plan.contains("uncompressed since no earlier archive"),
        "{plan}"
    );

    let (out, outcome) = backup(holdfast_on(&specs, &state, &repository), "big");
    assert_eq!(out.status.code(), Some(1), "{outcome}");
    assert_eq!(outcome["phase"], "Failed", "{outcome}");
    let errors = outcome["errors"].to_string();
    assert!(
        errors.contains(&format!(
            "not enough space in the repository {}",
            repository.display()
        )) && errors.contains("plus 10% and 1.0 MiB")
            && errors.contains("nothing was stopped or dumped"),
        "{errors}"
    );
    let never_touched = |when: &str| {
        assert_eq!(container.inspect("{{.State.Status}}"), "running", "{when}");
        assert_eq!(
            container.inspect("{{.State.StartedAt}}"),
            started_at,
            "{when}: the container was stopped and started again"
        );
        let hook =
            run(Command::new("docker").args(["exec", &name, "test", "-e", "/tmp/pre-hook-ran"]));
        assert!(!hook.status.success(), "{when}: the pre hook ran");
    };
    never_touched("holdfast backup");
    assert!(
        env::manifests(&repository).is_empty(),
        "an archive was written"
    );

    // The daemon refuses the same way, and its status and history say why.
    fs::write(
        specs.join("big.yaml"),
        policy(
            "big",
            "  annotations: {holdfast.dev/requested-at: 'now'}\n",
            &body,
        ),
    )
    .unwrap();
    let _daemon = Daemon::start_on(dir.path(), &repository, &[]);
    let s = wait_for(
        &specs.join("big.status.yaml"),
        Duration::from_secs(120),
        "the requested run",
        |s| {
            s.first().is_some_and(|d| {
                d["status"]["lastRun"]["phase"] == "Failed"
                    && d["status"]["lastHandledRequestedAt"] == "now"
            })
        },
    );
    let text = serde_json::to_string(&s[0]["status"]).unwrap();
    assert!(
        text.contains("not enough space in the repository"),
        "{text}"
    );
    never_touched("the daemon");
    let db = holdfast::state::StateDb::open_reader(&state).unwrap();
    let runs = db.runs(10).unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    for r in &runs {
        assert!(
            r.error
                .as_deref()
                .is_some_and(|e| e.contains("not enough space in the repository")),
            "{r:?}"
        );
    }
}
