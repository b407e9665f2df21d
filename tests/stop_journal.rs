//! Nothing is left stopped when a run is cancelled while Docker is still stopping a
//! container: not by the daemon's shutdown, not by Ctrl-C on a one-off command. The
//! container here ignores SIGTERM, so each stop lasts its whole timeout before Docker kills
//! it; a cancellation lands inside that window.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::daemon::*;
use common::env::Env;
use common::*;

/// How long the policies give a container to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A container that ignores SIGTERM: Docker stops it only by killing it at the timeout.
fn stubborn(tag: &str) -> Busybox {
    Busybox::start("hfjournal", tag, IGNORES_TERM)
}

fn policy(name: &str, container: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata:
  name: {name}
  annotations: {{holdfast.dev/requested-at: 'now'}}
spec:
  schedule: '0 3 1 1 *'
  targets: {{containers: [{container}]}}
  consistency: {{stop: container, stopTimeout: {}s}}
  include: {{recipe: false}}
  output: {{format: tar.gz}}
",
        STOP_TIMEOUT.as_secs()
    )
}

/// Waits until the log says holdfast began stopping `container`; returns when it did.
fn wait_stop_begun(log: &Path, container: &str) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        if text
            .lines()
            .any(|l| l.contains("stopping") && l.contains(container))
        {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "holdfast never began stopping {container}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sleeps until Docker's own stop, begun at `begun`, would have killed the container.
fn sleep_past_the_stop(begun: Instant) {
    let until = begun + STOP_TIMEOUT + Duration::from_secs(3);
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: sending a signal to our own child process.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill failed");
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_daemon_stopped_during_a_slow_stop_leaves_the_container_running() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let c = stubborn("daemon");
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    fs::create_dir_all(&specs).unwrap();
    fs::write(specs.join("slow.yaml"), policy("slow", &c.name)).unwrap();

    let mut daemon = Daemon::start(dir.path(), &["--shutdown-timeout", "2s"]);
    let begun = wait_stop_begun(&dir.path().join("daemon.log"), &c.name);
    std::thread::sleep(Duration::from_millis(500));
    daemon.signal("TERM");
    daemon.wait(STOP_TIMEOUT + Duration::from_secs(30));

    // Docker's stop has ended by now: the container was killed, and either started again
    // or still journalled for the next start.
    sleep_past_the_stop(begun);
    let state = c.state();
    let journalled = journal(&dir.path().join("state"));
    assert!(
        state == "running" || journalled.contains(&c.name),
        "the container is {state} and the journal forgot it ({journalled:?}):\n{}",
        fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default()
    );
    drop(daemon);

    // The next start repairs whatever is left.
    fs::remove_file(specs.join("slow.yaml")).unwrap();
    let mut daemon = Daemon::start(dir.path(), &["--shutdown-timeout", "2s"]);
    let state = c.wait_running(STOP_TIMEOUT + Duration::from_secs(10));
    daemon.signal("TERM");
    daemon.wait(Duration::from_secs(30));
    assert_eq!(
        state,
        "running",
        "after a restart of holdfast:\n{}",
        fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default()
    );
    assert!(journal(&dir.path().join("state")).is_empty());
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_command_after_a_crash_during_a_slow_stop_waits_the_stop_out_and_starts_the_container() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let c = stubborn("crash");
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    fs::create_dir_all(&specs).unwrap();
    fs::write(specs.join("slow.yaml"), policy("slow", &c.name)).unwrap();
    // A second policy, on a small volume, stops nothing: its backup is the command below.
    let small = FileVolume::new("crashsmall", "a few bytes");
    fs::write(
        specs.join("small.yaml"),
        format!(
            "apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata:
  name: small
spec:
  schedule: '0 3 1 1 *'
  targets: {{volumes: [{}]}}
  consistency: {{stop: none}}
  include: {{recipe: false}}
",
            small.0
        ),
    )
    .unwrap();

    let mut daemon = Daemon::start(dir.path(), &[]);
    let begun = wait_stop_begun(&dir.path().join("daemon.log"), &c.name);
    daemon.signal("KILL");
    daemon.wait(Duration::from_secs(10));
    assert_eq!(
        c.state(),
        "running",
        "Docker is still waiting for it to stop"
    );

    // Any command that replays the journal (`plan` and dry runs only read it), run while
    // Docker still waits: here a backup of a small volume that stops nothing.
    // It starts while Docker still waits, and by design ends only once the stop is over
    // (it waits the rest out before starting the container), so what must be early is
    // its start, not its end.
    let started = begun.elapsed();
    let out = run(holdfast()
        .env("HOLDFAST_SPECS", &specs)
        .env("HOLDFAST_STATE", dir.path().join("state"))
        .env("HOLDFAST_REPOSITORY", dir.path().join("repository"))
        .args(["backup", "small"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        started < STOP_TIMEOUT / 2,
        "the command came too late to test anything: {started:?} into the stop"
    );
    assert!(
        stderr(&out).contains("letting the stop end before starting it again"),
        "{}",
        stderr(&out)
    );
    sleep_past_the_stop(begun);
    assert_eq!(c.state(), "running", "{}", stderr(&out));
    assert!(journal(&dir.path().join("state")).is_empty());
}

/// Starts `holdfast <args>` on `env`, its log in `<dir>/command.log`.
fn spawn(env: &Env, args: &[&str]) -> Child {
    let log = fs::File::create(env.dir.path().join("command.log")).unwrap();
    env.holdfast()
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Waits for a command to exit; returns its exit code.
fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("the command did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn ctrl_c_on_backup_during_a_slow_stop_leaves_the_container_running() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let c = stubborn("backup");
    let env = Env::new();
    env.spec("slow", &policy("slow", &c.name));

    let mut child = spawn(&env, &["backup", "slow"]);
    let log = env.dir.path().join("command.log");
    let begun = wait_stop_begun(&log, &c.name);
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, libc::SIGINT);
    let code = wait_exit(&mut child, STOP_TIMEOUT + Duration::from_secs(30));
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert_ne!(code, Some(0), "{text}");
    assert!(code.is_some(), "killed by the signal, not exited:\n{text}");
    assert!(text.contains("interrupted"), "{text}");
    assert_eq!(c.state(), "running", "{text}");
    // Running for good, not only until Docker's stop ends.
    sleep_past_the_stop(begun);
    assert_eq!(c.state(), "running", "{text}");
    assert!(journal(&env.state).is_empty());
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn ctrl_c_on_an_in_place_restore_during_a_slow_stop_leaves_the_container_running() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let c = stubborn("restore");
    let env = Env::new();
    // The archive to restore, taken with the container left running.
    env.spec(
        "quick",
        &policy("quick", &c.name).replace("stop: container", "stop: none"),
    );
    let out = run(env.holdfast().args(["backup", "quick", "-o", "json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let archive = outcome["archiveId"].as_str().unwrap().to_string();

    let mut child = spawn(&env, &["restore", "--from", &archive, "--mode", "InPlace"]);
    let log = env.dir.path().join("command.log");
    let begun = wait_stop_begun(&log, &c.name);
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, libc::SIGINT);
    let code = wait_exit(&mut child, Duration::from_secs(60));
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert_ne!(code, Some(0), "{text}");
    assert!(code.is_some(), "killed by the signal, not exited:\n{text}");
    assert_eq!(c.state(), "running", "{text}");
    // The restore gives a container 30 s to stop.
    let _ = begun;
    std::thread::sleep(Duration::from_secs(33).saturating_sub(begun.elapsed()));
    assert_eq!(c.state(), "running", "{text}");
    assert!(journal(&env.state).is_empty());
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_stop_longer_than_the_docker_request_timeout_is_waited_for() {
    if !docker_available() {
        return;
    }
    // Not under the Docker lock: two minutes of waiting on its own container would hold
    // up every other test here, and its margins are seconds, not milliseconds.
    let c = stubborn("long");
    let env = Env::new();
    // Longer than the two minutes a Docker API request may take by default.
    let long = Duration::from_secs(125);
    env.spec(
        "long",
        &policy("long", &c.name).replace(
            &format!("stopTimeout: {}s", STOP_TIMEOUT.as_secs()),
            &format!("stopTimeout: {}s", long.as_secs()),
        ),
    );
    let started = Instant::now();
    let out = run(env.holdfast().args(["backup", "long", "-o", "json"]));
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(out.status.success(), "{outcome:#}\n{}", stderr(&out));
    std::thread::sleep((long + Duration::from_secs(3)).saturating_sub(started.elapsed()));
    assert_eq!(c.state(), "running", "{}", stderr(&out));
    assert!(journal(&env.state).is_empty());
}
