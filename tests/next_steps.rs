//! Errors that say what to do next, and what runs beside a daemon: the real binary, the
//! real engine, and a real daemon on the same state folder.

mod common;

use std::fs;
use std::time::Duration;

use common::daemon::Daemon;
use common::env::Env;
use common::*;
use serde_json::Value;

/// A BackupPolicy `name` archiving `volume` without stopping anything, once a day.
fn policy(env: &Env, name: &str, volume: &str) {
    env.spec(
        name,
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: {name}\nspec:\n  schedule: '@daily'\n  targets: {{volumes: [{volume}]}}\n  consistency: {{stop: none}}\n"
        ),
    );
}

fn runs(env: &Env) -> Vec<Value> {
    let out = run(env.holdfast().args(["get", "runs", "-o", "json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_dry_run_writes_nothing_and_runs_beside_the_daemon() {
    if !docker_available() {
        return;
    }
    let volume = FileVolume::new("hfdryrun", "dry");

    // Without a state folder, none is made.
    let alone = Env::new();
    policy(&alone, "dry", &volume.0);
    let out = run(alone.holdfast().args(["backup", "dry", "--dry-run"]));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("(dry run)"), "{}", stdout(&out));
    assert!(!alone.state.exists(), "a dry run made the state folder");
    assert!(!alone.repository.exists(), "a dry run made the repository");

    // Beside a daemon holding the state folder: it runs, and records nothing.
    let env = Env::new();
    policy(&env, "dry", &volume.0);
    let _daemon = Daemon::start(env.dir.path(), &[]);
    Daemon::api_address(env.dir.path());
    let out = run(env.holdfast().args(["backup", "dry", "--dry-run"]));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("(dry run)"), "{}", stdout(&out));
    assert_eq!(runs(&env), Vec::<Value>::new());
    assert_eq!(files_in(&env.state.join("logs")), Vec::<String>::new());
    assert_eq!(env.manifests().len(), 0);

    // A real backup is still refused there.
    let out = run(env.holdfast().args(["backup", "dry"]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("another holdfast process"),
        "{}",
        stderr(&out)
    );
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn restore_beside_the_daemon_says_to_use_a_restore_spec() {
    if !docker_available() {
        return;
    }
    let env = Env::new();
    let _daemon = Daemon::start(env.dir.path(), &[]);
    Daemon::api_address(env.dir.path());
    let out = run(env.holdfast().args(["restore", "--policy", "app"]));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("restore through it with a Restore spec in its specs folder"),
        "{err}"
    );
    assert!(err.contains(&env.state.display().to_string()), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn restore_of_a_misspelt_policy_suggests_the_name() {
    if !docker_available() {
        return;
    }
    let volume = FileVolume::new("hfnighly", "data");
    let env = Env::new();
    policy(&env, "ux-shop-nightly", &volume.0);
    let out = run(env.holdfast().args(["backup", "ux-shop-nightly"]));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = run(env
        .holdfast()
        .args(["restore", "--policy", "ux-shop-nighly"]));
    assert!(!out.status.success());
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        all.contains("no archive of `ux-shop-nighly`")
            && all.contains("did you mean `ux-shop-nightly`?"),
        "{all}"
    );
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn an_address_in_use_is_said_once() {
    if !docker_available() {
        return;
    }
    let first = Env::new();
    let _first = Daemon::start(first.dir.path(), &[]);
    let address = Daemon::api_address(first.dir.path());
    let second = Env::new();
    let mut daemon = Daemon::start(second.dir.path(), &["--listen", &address]);
    assert_eq!(daemon.wait(Duration::from_secs(60)), Some(1));
    let log = fs::read_to_string(second.dir.path().join("daemon.log")).unwrap();
    assert_eq!(log.matches("Address already in use").count(), 1, "{log}");
    assert!(log.contains(&format!("listening on {address}")), "{log}");
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_stalled_condition_leads_with_the_most_specific_error() {
    if !docker_available() {
        return;
    }
    let env = Env::new();
    env.spec(
        "typo",
        "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: typo\nspec:\n  schedul: '@daily'\n  targets: {volumes: [v]}\n",
    );
    let _daemon = Daemon::start(env.dir.path(), &[]);
    let status = common::daemon::wait_for(
        &env.specs.join("typo.status.yaml"),
        Duration::from_secs(30),
        "the typo stalls",
        |s| !s.is_empty(),
    );
    let stalled = status[0]["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Stalled")
        .cloned()
        .unwrap_or_else(|| panic!("not stalled: {:#?}", status[0]));
    let message = stalled["message"].as_str().unwrap();
    assert!(
        message.contains(
            "spec.schedul: unknown field `schedul` (hint: did you mean `schedule`?) (and 1 more)"
        ),
        "{message}"
    );
}
