//! Several holdfast processes on one repository: the real binary and the real engine.
//! One writer per host folder (a second is refused and names the first), and hosts that
//! share a repository never prune each other's archives.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::daemon::*;
use common::env::manifests;
use common::*;
use serde_json::Value;

/// `<top>/<name>/specs/shared.yaml`: a policy that runs now (`requested-at`) and keeps one
/// archive. Returns `<top>/<name>`, the folder a daemon's specs and state go in.
fn site(top: &Path, name: &str, volume: &str, request: u32) -> PathBuf {
    let dir = top.join(name);
    fs::create_dir_all(dir.join("specs")).unwrap();
    request_run(&dir, volume, request);
    dir
}

fn request_run(dir: &Path, volume: &str, request: u32) {
    fs::write(
        dir.join("specs/shared.yaml"),
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: shared\n  \
             annotations: {{holdfast.dev/requested-at: '{request}'}}\nspec:\n  schedule: '0 3 1 1 *'\n  \
             targets: {{volumes: [{volume}]}}\n  include: {{recipe: false}}\n  retention: {{keepLast: 1}}\n"
        ),
    )
    .unwrap();
}

/// Waits until the site's policy handled `request` with a Succeeded run and its
/// retention left one archive; returns that archive's id.
fn wait_succeeded(dir: &Path, request: u32) -> String {
    let status = wait_for(
        &dir.join("specs/shared.status.yaml"),
        Duration::from_secs(60),
        &format!("run {request} of {}", dir.display()),
        |s| {
            s.first().is_some_and(|d| {
                d["status"]["lastHandledRequestedAt"].as_str() == Some(&request.to_string())
                    && d["status"]["lastRun"]["phase"] == "Succeeded"
                    && d["status"]["archives"]["count"] == 1
            })
        },
    );
    status[0]["status"]["lastRun"]["archiveId"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The archive folders of group `shared` in a host folder, sorted.
fn archives(host_dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(host_dir.join("shared"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn manifest_host(host_dir: &Path, id: &str) -> String {
    let text = fs::read_to_string(host_dir.join("shared").join(id).join("manifest.json")).unwrap();
    let manifest: Value = serde_json::from_str(&text).unwrap();
    manifest["host"].as_str().unwrap().to_string()
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_second_writer_on_the_same_repository_is_refused_and_changes_nothing() {
    if !docker_available() {
        return;
    }
    let volume = FileVolume::new("hfsharedone", "shared");
    let top = tempfile::tempdir().unwrap();
    let repository = top.path().join("repository");
    let a = site(top.path(), "a", &volume.0, 1);
    let mut first = Daemon::start_on(&a, &repository, &[]);
    let id = wait_succeeded(&a, 1);
    let before = manifests(&repository);
    assert_eq!(before.len(), 1, "{before:?}");

    // Another state folder, the same repository and host: refused at once, named.
    let b = site(top.path(), "b", &volume.0, 1);
    let mut second = Daemon::start_on(&b, &repository, &[]);
    let code = second.wait(Duration::from_secs(30));
    let log = fs::read_to_string(b.join("daemon.log")).unwrap();
    assert_eq!(code, Some(1), "{log}");
    for needed in [
        format!("pid {}", first.child.id()),
        "holdfast run".to_string(),
        host_dir(&repository).display().to_string(),
    ] {
        assert!(log.contains(&needed), "`{needed}` not in:\n{log}");
    }
    assert!(!b.join("specs/shared.status.yaml").exists());

    // A one-off backup with a state folder of its own is refused the same way.
    let out = run(holdfast()
        .env("HOLDFAST_SPECS", b.join("specs"))
        .env("HOLDFAST_STATE", top.path().join("c/state"))
        .env("HOLDFAST_REPOSITORY", &repository)
        .args(["backup", "shared"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("pid {}", first.child.id())),
        "{}",
        stderr(&out)
    );

    // The first daemon's archive is untouched, and the first daemon still runs.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(manifests(&repository), before);
    assert_eq!(archives(&host_dir(&repository)), [id]);
    assert!(
        first.child.try_wait().unwrap().is_none(),
        "the first daemon exited"
    );
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn hosts_sharing_a_repository_prune_only_their_own_archives() {
    if !docker_available() {
        return;
    }
    let volume = FileVolume::new("hfsharedtwo", "shared");
    let top = tempfile::tempdir().unwrap();
    let repository = top.path().join("repository");
    let (alpha_dir, beta_dir) = (repository.join("alpha"), repository.join("beta"));
    let a = site(top.path(), "a", &volume.0, 1);
    let mut alpha = Daemon::start_on(&a, &repository, &["--host", "alpha"]);
    let alpha_first = wait_succeeded(&a, 1);

    // The second host runs the same policy: its retention keeps one archive, and sees
    // only its own.
    let b = site(top.path(), "b", &volume.0, 1);
    let mut beta = Daemon::start_on(&b, &repository, &["--host", "beta"]);
    let beta_first = wait_succeeded(&b, 1);
    assert_eq!(archives(&alpha_dir), [alpha_first.as_str()]);
    assert_eq!(archives(&beta_dir), [beta_first.as_str()]);

    // The first host runs again: its retention forgets its own older archive only.
    std::thread::sleep(Duration::from_millis(1100));
    request_run(&a, &volume.0, 2);
    let alpha_second = wait_succeeded(&a, 2);
    assert_ne!(alpha_second, alpha_first);
    assert_eq!(archives(&alpha_dir), [alpha_second.as_str()]);
    assert_eq!(archives(&beta_dir), [beta_first.as_str()]);
    assert_eq!(manifest_host(&alpha_dir, &alpha_second), "alpha");
    assert_eq!(manifest_host(&beta_dir, &beta_first), "beta");
    for daemon in [&mut alpha, &mut beta] {
        assert!(
            daemon.child.try_wait().unwrap().is_none(),
            "a daemon exited"
        );
    }
}

/// A repository of the flat layout (`<repository>/<group>/<archive id>/`): readers do not
/// move it; the first writer moves it under its host, and the archives are listed again.
#[test]
fn a_flat_repository_is_moved_under_the_host_by_the_first_writer() {
    let top = tempfile::tempdir().unwrap();
    let repository = top.path().join("repository");
    let id = "old-20261125T030000Z";
    let flat = repository.join("old").join(id);
    fs::create_dir_all(&flat).unwrap();
    let manifest = serde_json::json!({
        "formatVersion": 1, "id": id, "kind": "BackupPolicy", "name": "old", "policy": "old",
        "phase": "Succeeded", "holdfastVersion": "0", "dockerApiVersion": "1.41",
        "startTime": "2026-11-25T03:00:00Z", "completionTime": "2026-11-25T03:00:01Z",
        "format": "tar", "level": null,
        "targets": {"stacks": [], "containers": [], "volumes": []},
        "artifacts": [], "timings": {}, "downtime": {}, "warnings": [],
    });
    fs::write(flat.join("manifest.json"), manifest.to_string()).unwrap();
    let holdfast_on = |args: &[&str]| {
        run(holdfast()
            .env("HOLDFAST_SPECS", top.path().join("specs"))
            .env("HOLDFAST_STATE", top.path().join("state"))
            .env("HOLDFAST_REPOSITORY", &repository)
            .env("HOLDFAST_HOST", "nas")
            .args(args))
    };
    let listed = |out: &std::process::Output| -> Vec<Value> {
        assert!(out.status.success(), "{}", stderr(out));
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
    };
    assert!(listed(&holdfast_on(&["get", "archives", "-o", "json"])).is_empty());
    assert!(flat.join("manifest.json").is_file(), "a reader moved it");

    // A writer (here a deletion of something else, which fails) moves it first.
    let out = holdfast_on(&["delete", "absent-20261125T030000Z", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!repository.join("old").exists());
    let items = listed(&holdfast_on(&["get", "archives", "-o", "json"]));
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["id"], id);
    assert_eq!(items[0]["health"], "Good");
    assert_eq!(
        items[0]["host"], "nas",
        "an old manifest's host is this host"
    );
    assert!(
        repository
            .join("nas/old")
            .join(id)
            .join("manifest.json")
            .is_file()
    );
}
