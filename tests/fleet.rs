//! One specs folder for a fleet: `holdfast validate --host` and `holdfast plan` show what
//! one host runs, listing the objects whose hostSelector it does not match.

mod common;

use common::{holdfast, run, stderr};

const FLEET: &str = "apiVersion: holdfast.dev/v1alpha1
kind: Repository
metadata:
  name: nas-disk
spec:
  storage: {local: {path: /srv/nas-disk}}
  hostSelector: {matchLabels: {role: nas}}
---
apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata:
  name: photos
spec:
  schedule: '@daily'
  targets: {stacks: [photos]}
  output: {repository: nas-disk}
  hostSelector: {matchLabels: {role: nas}}
";

const EVERYWHERE: &str = "apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata:
  name: everywhere
spec:
  schedule: '@daily'
  targets: {stacks: [web]}
  output: {repository: nas-disk}
";

fn specs(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[test]
fn validate_as_a_host_lists_what_it_does_not_run() {
    let dir = specs(&[("fleet.yaml", FLEET)]);
    // Without --host every object is checked, whatever host it is for.
    let out = run(holdfast().arg("validate").arg(dir.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(holdfast()
        .args(["validate", "--host", "nas", "--host-labels", "role=nas"])
        .arg(dir.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("not selected"), "{}", stderr(&out));
    let out = run(holdfast()
        .args(["validate", "--host", "vps"])
        .arg(dir.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains(
            "not selected on vps: BackupPolicy/photos: hostSelector {role: nas} does not match \
             this host vps (labels: {holdfast.dev/hostname: vps})"
        ),
        "{text}"
    );
    assert!(
        text.contains("not selected on vps: Repository/nas-disk: "),
        "{text}"
    );
}

#[test]
fn what_a_host_runs_may_not_name_what_it_does_not_select() {
    let dir = specs(&[("fleet.yaml", FLEET), ("everywhere.yaml", EVERYWHERE)]);
    let out = run(holdfast()
        .args(["validate", "--host", "vps"])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = common::stdout(&out);
    assert!(
        text.contains(
            "everywhere.yaml:8:24: BackupPolicy/everywhere: spec.output.repository: Repository \
             `nas-disk` is not selected on this host: its hostSelector {role: nas}"
        ),
        "{text}"
    );
    let out = run(holdfast()
        .args(["validate", "--host", "nas", "--host-labels", "role=nas"])
        .arg(dir.path()));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn host_labels_are_checked_and_the_hostname_label_is_holdfasts() {
    let dir = specs(&[("fleet.yaml", FLEET)]);
    let out = run(holdfast()
        .args(["validate", "--host", "nas", "--host-labels"])
        .arg("holdfast.dev/hostname=other")
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("--host-labels"), "{text}");
    assert!(text.contains("set by holdfast"), "{text}");
    let out = run(holdfast()
        .args(["plan", "--specs"])
        .arg(dir.path())
        .env("HOLDFAST_HOST_LABELS", "role nas"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not `key=value`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plan_shows_only_what_this_host_runs() {
    let dir = specs(&[("fleet.yaml", FLEET)]);
    let state = tempfile::tempdir().unwrap();
    let out = run(holdfast()
        .args(["plan", "--host", "vps", "--specs"])
        .arg(dir.path())
        .arg("--state")
        .arg(state.path().join("state"))
        .arg("--repository")
        .arg(state.path().join("repository")));
    let text = stderr(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("not selected on vps: BackupPolicy/photos: hostSelector {role: nas}"),
        "{text}"
    );
    assert!(text.contains("nothing to plan"), "{text}");
}
