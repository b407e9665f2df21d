//! Shared helpers for integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
        "HOLDFAST_LISTEN",
        "HOLDFAST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd
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

/// Whether Docker tests should run. Docker being unreachable is a failure, not a skip,
/// unless the runner set `HOLDFAST_SKIP_DOCKER=1` on purpose.
pub fn docker_available() -> bool {
    let reachable = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if reachable {
        return true;
    }
    if std::env::var("HOLDFAST_SKIP_DOCKER").as_deref() == Ok("1") {
        eprintln!("skipping: Docker is not reachable and HOLDFAST_SKIP_DOCKER=1");
        return false;
    }
    panic!(
        "Docker is not reachable. Run `scripts/test-env.sh` (as `make test` does) to install and start it, \
         or set HOLDFAST_SKIP_DOCKER=1 to skip the tests that need it."
    );
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
        let stack = ComposeStack {
            project: project.to_string(),
            file,
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
