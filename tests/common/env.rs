//! A specs folder, a state folder and a repository in one temporary folder, and the
//! binary pointed at them: the setting of the command-line tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::holdfast;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub specs: PathBuf,
    pub state: PathBuf,
    pub repository: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let specs = dir.path().join("specs");
        fs::create_dir(&specs).unwrap();
        Env {
            specs,
            state: dir.path().join("state"),
            repository: dir.path().join("repository"),
            dir,
        }
    }

    /// Writes `specs/<name>.yaml`.
    pub fn spec(&self, name: &str, text: &str) {
        fs::write(self.specs.join(format!("{name}.yaml")), text).unwrap();
    }

    /// The binary with its specs, state and repository set (through the environment, so
    /// they apply to whichever command follows).
    pub fn holdfast(&self) -> Command {
        let mut cmd = holdfast();
        cmd.env("HOLDFAST_SPECS", &self.specs)
            .env("HOLDFAST_STATE", &self.state)
            .env("HOLDFAST_REPOSITORY", &self.repository)
            // restic-format repositories keep a cache there: the test's, not the user's.
            .env("XDG_CACHE_HOME", self.dir.path().join("cache"));
        cmd
    }

    /// Writes a BackupPolicy `name` whose spec is a yearly schedule and `spec_lines` (the
    /// lines under `spec:`, indented), runs `holdfast backup NAME -o json` and fails unless
    /// the run succeeded. Returns the archive id.
    pub fn backup_succeeded(&self, name: &str, spec_lines: &str) -> String {
        self.spec(
            name,
            &format!(
                "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: {name}}}\nspec:\n  schedule: '0 3 1 1 *'\n{spec_lines}"
            ),
        );
        archive_of(self.holdfast().args(["backup", name, "-o", "json"]))
    }

    /// Every manifest.json in the repository.
    pub fn manifests(&self) -> Vec<PathBuf> {
        manifests(&self.repository)
    }
}

/// Runs a `holdfast backup ... -o json` command and fails unless the run succeeded;
/// returns the archive id.
pub fn archive_of(cmd: &mut Command) -> String {
    let out = super::run(cmd);
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", super::stdout(&out), super::stderr(&out)));
    assert_eq!(
        outcome["phase"],
        "Succeeded",
        "{outcome:#}\n{}",
        super::stderr(&out)
    );
    outcome["archiveId"]
        .as_str()
        .expect("a succeeded run names its archive")
        .to_string()
}

/// Every manifest.json below `dir`.
pub fn manifests(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "manifest.json") {
                found.push(p);
            }
        }
    }
    found
}
