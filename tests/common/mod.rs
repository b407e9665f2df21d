//! Shared helpers for integration tests.

#![allow(dead_code)]

pub mod daemon;
pub mod garage;
pub mod golden;
pub mod hostile;
pub mod http;
pub mod env;
pub mod metrics;
pub mod receiver;
pub mod restic;
pub mod sftp;
pub mod smtp;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every command's name: each has a help golden file, a man page and completions.
pub const COMMANDS: [&str; 15] = [
    "validate",
    "schema",
    "plan",
    "backup",
    "run",
    "get",
    "prune",
    "delete",
    "verify",
    "restore",
    "ls",
    "notify",
    "bundle",
    "completions",
    "man",
];

pub fn crate_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The holdfast binary built for this test run.
pub fn holdfast() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_holdfast"));
    cmd.current_dir(crate_root());
    // Tests must not pick up the developer's own settings.
    for var in [
        "HOLDFAST_SPECS",
        "HOLDFAST_STATE",
        "HOLDFAST_REPOSITORY",
        "HOLDFAST_HOST",
        "HOLDFAST_HOST_LABELS",
        "HOLDFAST_LISTEN",
        "HOLDFAST_ARCHIVE_VIA",
        "HOLDFAST_ARCHIVE_PARALLELISM",
        "HOLDFAST_HISTORY_LIMIT",
        "HOLDFAST_LOG_FORMAT",
        "HOLDFAST_LOG",
        "HOLDFAST_FAULT",
        "HOLDFAST_FAULT_AFTER",
        // Nor systemd's, when the tests themselves run under it.
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
    ] {
        cmd.env_remove(var);
    }
    // Nor a configuration file of this machine's (an empty value reads none).
    cmd.env("HOLDFAST_CONFIG", "");
    cmd
}

/// An age key pair made by `age-keygen` in `dir/<name>`: the identity file and the public
/// key (`age1…`).
pub fn age_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = run(Command::new("age-keygen").arg("-o").arg(&key));
    assert!(out.status.success(), "age-keygen: {}", stderr(&out));
    let public = run(Command::new("age-keygen").arg("-y").arg(&key));
    (key, stdout(&public).trim().to_string())
}

/// This machine's folder in a repository (`<repository>/<host>`), where a holdfast run
/// without `--host` writes.
pub fn host_dir(repository: &Path) -> PathBuf {
    repository.join(holdfast::settings::machine_host())
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Whether Docker tests can run: true, or a panic when Docker is unreachable. A missing
/// Docker is a failure, not a skip. Tests that need Docker carry
/// `#[cfg_attr(skip_docker, ignore = "...")]`, so with `HOLDFAST_SKIP_DOCKER=1` (see
/// build.rs) they are reported as ignored and never get here, unless run with
/// `--include-ignored`, where a missing Docker fails them too.
pub fn docker_available() -> bool {
    let reachable = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        reachable,
        "Docker is not reachable. Run `scripts/test-env.sh` (as `make test` does) to install and start it, \
         or set HOLDFAST_SKIP_DOCKER=1 to report the tests that need it as ignored."
    );
    reachable
}

/// A Compose project started from `examples/compose/<name>` under a unique project name,
/// removed with its volumes when dropped, whatever the test did.
pub struct ComposeStack {
    pub project: String,
    file: PathBuf,
}

impl ComposeStack {
    pub fn up(example: &str, project: &str) -> ComposeStack {
        let file = crate_root()
            .join("examples/compose")
            .join(example)
            .join("docker-compose.yml");
        ComposeStack::up_file(&file, project)
    }

    /// A Compose project started from the compose file `file`, removed like [`Self::up`]'s.
    pub fn up_file(file: &Path, project: &str) -> ComposeStack {
        let stack = ComposeStack {
            project: project.to_string(),
            file: file.to_path_buf(),
        };
        // A leftover from an earlier, killed run would make `up` reuse old volumes.
        stack.down();
        let output = stack.compose(&["up", "-d"]);
        assert!(
            output.status.success(),
            "docker-compose up failed:\n{}",
            stderr(&output)
        );
        stack
    }

    pub fn compose(&self, args: &[&str]) -> Output {
        run(Command::new("docker-compose")
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(&self.file)
            .args(args))
    }

    pub fn down(&self) {
        let output = self.compose(&["down", "-v", "--remove-orphans", "--timeout", "5"]);
        if !output.status.success() {
            eprintln!("docker-compose down failed:\n{}", stderr(&output));
        }
    }
}

impl Drop for ComposeStack {
    fn drop(&mut self) {
        self.down();
    }
}

/// Serializes the tests of one test binary that start Compose stacks: two cores do not
/// bring six databases up twice at once within healthcheck deadlines.
pub static DOCKER_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn docker_lock() -> std::sync::MutexGuard<'static, ()> {
    DOCKER_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// `docker <args>`, asserting success; returns stdout.
pub fn docker(args: &[&str]) -> String {
    let out = run(Command::new("docker").args(args));
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// `docker exec <container> sh -c <script>`, asserting success; returns stdout.
pub fn sh_in(container: &str, script: &str) -> String {
    docker(&["exec", container, "sh", "-c", script])
}

impl ComposeStack {
    /// The container of a service (Compose v1 names it `<project>_<service>_1`).
    pub fn container(&self, service: &str) -> String {
        format!("{}_{service}_1", self.project)
    }

    /// Waits until every container of the stack runs and those with a healthcheck are
    /// healthy.
    pub fn wait_healthy(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let ids = stdout(&self.compose(&["ps", "-q"]));
            let ids: Vec<&str> = ids.split_whitespace().collect();
            let mut args = vec![
                "inspect",
                "-f",
                "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}",
            ];
            args.extend(ids.iter().copied());
            let states = if ids.is_empty() {
                String::new()
            } else {
                docker(&args)
            };
            if !ids.is_empty()
                && states
                    .lines()
                    .all(|l| l == "running healthy" || l == "running none")
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "stack {} not healthy: {states}",
                self.project
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }

    /// `running`, `exited`, ... of a service's container.
    pub fn state(&self, service: &str) -> String {
        docker(&[
            "inspect",
            "-f",
            "{{.State.Status}}",
            &self.container(service),
        ])
        .trim()
        .to_string()
    }

    pub fn volume(&self, name: &str) -> String {
        format!("{}_{name}", self.project)
    }

    pub fn volume_dir(&self, name: &str) -> PathBuf {
        PathBuf::from(
            docker(&[
                "volume",
                "inspect",
                "-f",
                "{{.Mountpoint}}",
                &self.volume(name),
            ])
            .trim(),
        )
    }
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::io::copy(&mut file, &mut hasher).unwrap();
    hex::encode(hasher.finalize())
}

/// Every entry of a tree with what must survive an archive round trip: type, mode, owner,
/// mtime, content hash or link target, and which entries are hard links of each other.
pub fn tree_listing(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut inodes: std::collections::BTreeMap<(u64, u64), String> = Default::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let kind = if meta.file_type().is_symlink() {
                format!(
                    "link->{}",
                    std::fs::read_link(&path).unwrap().to_string_lossy()
                )
            } else if meta.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if meta.is_file() {
                let first = inodes
                    .entry((meta.dev(), meta.ino()))
                    .or_insert_with(|| rel.clone())
                    .clone();
                let link = if meta.nlink() > 1 {
                    format!(" hardlink-group={first}")
                } else {
                    String::new()
                };
                format!("file sha256={}{link}", sha256_file(&path))
            } else {
                "special".to_string()
            };
            // Directory mtimes change when entries are added; compare them too, the
            // archive must restore them after its contents.
            out.push(format!(
                "{rel} {kind} mode={:o} owner={}:{} mtime={}",
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.mtime()
            ));
        }
    }
    out.sort();
    out
}

/// A busybox container with a volume at `/data` (holding `file.txt`) running `sh -c
/// <script>` forever; both are removed when dropped.
pub struct Busybox {
    pub name: String,
    pub volume: String,
}

/// The script of a container that ends at once on SIGTERM.
pub const QUITS_ON_TERM: &str =
    "echo kept > /data/file.txt; trap 'exit 0' TERM; while :; do sleep 1; done";
/// The script of a container that ignores SIGTERM, so Docker waits out its stop timeout.
pub const IGNORES_TERM: &str =
    "trap '' TERM; echo kept > /data/file.txt; while :; do sleep 1; done";

impl Busybox {
    /// Named `<prefix><pid>-<tag>`, container and volume alike.
    pub fn start(prefix: &str, tag: &str, script: &str) -> Busybox {
        let name = format!("{prefix}{}-{tag}", std::process::id());
        let c = Busybox {
            volume: name.clone(),
            name,
        };
        let _ = run(Command::new("docker").args(["rm", "-f", &c.name]));
        docker(&["volume", "create", &c.volume]);
        docker(&[
            "run",
            "-d",
            "--name",
            &c.name,
            "-v",
            &format!("{}:/data", c.volume),
            "holdfast-test/busybox:1",
            "sh",
            "-c",
            script,
        ]);
        c
    }

    /// `running`, `exited`, ...
    pub fn state(&self) -> String {
        docker(&["inspect", "-f", "{{.State.Status}}", &self.name])
            .trim()
            .to_string()
    }

    /// When Docker last started it.
    pub fn started_at(&self) -> String {
        docker(&["inspect", "-f", "{{.State.StartedAt}}", &self.name])
            .trim()
            .to_string()
    }

    /// Waits up to `limit` for the container to run; returns its last state.
    pub fn wait_running(&self, limit: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let state = self.state();
            if state == "running" || std::time::Instant::now() >= deadline {
                return state;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
}

impl Drop for Busybox {
    fn drop(&mut self) {
        let _ = run(Command::new("docker").args(["rm", "-f", &self.name]));
        let _ = run(Command::new("docker").args(["volume", "rm", &self.volume]));
    }
}

/// A named volume `<prefix><pid>` holding `/file` with the line `text`, removed when dropped.
pub struct FileVolume(pub String);

impl FileVolume {
    pub fn new(prefix: &str, text: &str) -> FileVolume {
        let volume = FileVolume(format!("{prefix}{}", std::process::id()));
        volume.remove();
        docker(&["volume", "create", &volume.0]);
        docker(&[
            "run",
            "--rm",
            "-v",
            &format!("{}:/d", volume.0),
            "holdfast-test/busybox:1",
            "sh",
            "-c",
            &format!("echo {text} > /d/file"),
        ]);
        volume
    }

    fn remove(&self) {
        let _ = run(Command::new("docker").args(["volume", "rm", "-f", &self.0]));
    }
}

impl Drop for FileVolume {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The container names the stop journal of a state folder holds.
pub fn journal(state: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open_with_flags(
        state.join("holdfast.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = db
        .prepare("SELECT container_name FROM stop_journal")
        .unwrap();
    stmt.query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// `n` distinct free loopback ports. All are held until all are found, so that none comes
/// twice; another process may still take one before the server binds it, which the
/// server's start then reports.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}
