//! A restic-format Repository `vault` for the tests, the policies that write to it, and
//! Debian's `restic` pointed at it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::env::Env;
use super::garage::Garage;
use super::{run, stderr, stdout};

/// The host name the tests write under, so snapshots and keys are known.
pub const HOST: &str = "testhost";
const PASSWORD: &str = "correct horse battery staple";

pub fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

/// The password file beside the specs.
pub fn password_file(env: &Env) -> PathBuf {
    let file = env.dir.path().join("restic.password");
    fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    file
}

/// The Repository `vault` in the restic format on `storage` (the YAML under `storage:`).
pub fn restic_repository(env: &Env, storage: &str) {
    let password = password_file(env);
    env.spec(
        "vault",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1
kind: Repository
metadata: {{name: vault}}
spec:
  format: restic
  password: {{fromFile: {}}}
  storage:
{storage}",
            password.display()
        ),
    );
}

pub fn local_storage(dir: &Path) -> String {
    format!("    local: {{path: {}}}\n", dir.display())
}

/// The Repository `vault` on the folder `vault` beside the specs; that folder.
pub fn local_vault(env: &Env) -> PathBuf {
    let repo = env.dir.path().join("vault");
    restic_repository(env, &local_storage(&repo));
    repo
}

pub fn s3_storage(env: &Env, garage: &Garage) -> String {
    let secret = env.dir.path().join("s3.secret");
    fs::write(&secret, format!("{}\n", garage.secret())).unwrap();
    format!(
        "    s3:
      endpoint: {}
      region: {}
      bucket: {}
      prefix: restic/
      accessKeyId: {{fromEnv: HOLDFAST_TEST_S3_KEY}}
      secretAccessKey: {{fromFile: {}}}
",
        garage.endpoint(),
        garage.region(),
        garage.bucket(),
        secret.display()
    )
}

/// A BackupPolicy `name` with a yearly schedule writing `targets` (inside `{}`) and
/// `extra` (lines under `spec:`) to `vault`.
pub fn policy(env: &Env, name: &str, targets: &str, extra: &str) {
    env.spec(
        name,
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: {name}}}\nspec:\n  schedule: '0 3 1 1 *'\n  targets: {{{targets}}}\n{extra}  output: {{repository: vault}}\n"
        ),
    );
}

/// The binary on the test's folders, as the host [`HOST`], with the S3 key id.
pub fn holdfast_in(env: &Env, garage: Option<&Garage>) -> Command {
    let mut cmd = env.holdfast();
    cmd.env("HOLDFAST_HOST", HOST);
    if let Some(g) = garage {
        cmd.env("HOLDFAST_TEST_S3_KEY", g.key_id());
    }
    cmd
}

/// `holdfast backup NAME -o json`, which must succeed; its outcome.
pub fn backup(env: &Env, garage: Option<&Garage>, name: &str) -> Value {
    let out = run(holdfast_in(env, garage).args(["backup", name, "-o", "json"]));
    let outcome = json(&out);
    assert_eq!(
        outcome["phase"],
        "Succeeded",
        "{outcome:#}\n{}",
        stderr(&out)
    );
    outcome
}

/// Debian's restic on the repository `repo` (`-r` argument); it must succeed.
pub fn restic(env: &Env, repo: &str, garage: Option<&Garage>, args: &[&str]) -> Output {
    let mut cmd = Command::new("restic");
    cmd.arg("-r")
        .arg(repo)
        .arg("--no-cache")
        .env("RESTIC_PASSWORD_FILE", password_file(env))
        .args(args);
    if let Some(g) = garage {
        cmd.env("AWS_ACCESS_KEY_ID", g.key_id())
            .env("AWS_SECRET_ACCESS_KEY", g.secret());
    }
    let out = run(&mut cmd);
    assert!(
        out.status.success(),
        "restic {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

/// `holdfast restore --repo vault -o json --from ARCHIVE ARGS...`, which must succeed; its
/// report. On failure the volumes it made are removed before the test fails.
pub fn restore(env: &Env, garage: Option<&Garage>, archive: &str, args: &[&str]) -> Value {
    let out = run(holdfast_in(env, garage)
        .args([
            "restore", "--repo", "vault", "-o", "json", "--from", archive,
        ])
        .args(args));
    let report = json(&out);
    if report["phase"] != "Succeeded" {
        for into in restored_volumes(&report) {
            let _ = run(Command::new("docker").args(["volume", "rm", "-f", &into]));
        }
        panic!("{report:#}\n{}", stderr(&out));
    }
    report
}

/// The volumes a restore report says it wrote into.
pub fn restored_volumes(report: &Value) -> Vec<String> {
    report["report"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| Some(v["into"].as_str()?.to_string()))
        .collect()
}
