//! `holdfast run` under systemd: the real binary speaks the notify protocol to a socket
//! the test binds where systemd would (`READY=1` after the first pass, a `STATUS=` line
//! per pass, `WATCHDOG=1` from the loop, `STOPPING=1` on SIGTERM), a wedged loop stops
//! feeding the watchdog, and the shipped unit file passes `systemd-analyze verify`.

mod common;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::*;
use common::*;

/// A policy whose schedule is far away: the daemon has an object to report and nothing
/// to run, so no Docker target is needed.
const POLICY: &str = "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: nightly\nspec:\n  schedule: '0 3 * * *'\n  targets: {stacks: [nothing-here]}\n";

/// The socket systemd would listen on, bound in `dir`.
fn notify_socket(dir: &Path) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    (socket, path)
}

/// The next message within `limit`, if any.
fn next(socket: &UnixDatagram, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    None
}

/// Messages until one has `line` as a line, within `limit`; returns them all, that one last.
fn until(socket: &UnixDatagram, line: &str, limit: Duration, what: &str) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Some(m) = next(socket, deadline - Instant::now()) {
            let found = m.lines().any(|l| l == line);
            seen.push(m);
            if found {
                return seen;
            }
        }
    }
    panic!("{what}: no {line} within {limit:?}; got {seen:?}");
}

fn layout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("specs")).unwrap();
    fs::write(dir.path().join("specs/nightly.yaml"), POLICY).unwrap();
    dir
}

fn log(dir: &Path) -> String {
    fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn the_daemon_tells_systemd_ready_status_watchdog_and_stopping() {
    if !docker_available() {
        return;
    }
    let dir = layout();
    let (socket, path) = notify_socket(dir.path());
    let mut daemon = Daemon::start_with(
        dir.path(),
        &dir.path().join("repository"),
        &[
            ("NOTIFY_SOCKET", path.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new("2000000")),
        ],
        &[],
    );
    let status_file = dir.path().join("specs/nightly.status.yaml");

    // READY=1 once the first pass is done: its status file is written by then.
    let first = until(&socket, "READY=1", Duration::from_secs(60), "start-up");
    assert!(
        status_file.exists(),
        "READY=1 came before the first pass wrote its status file; log:\n{}",
        log(dir.path())
    );
    let ready = first.last().unwrap();
    let status = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("READY=1 without a STATUS= line: {ready:?}"));
    assert!(
        status.starts_with("1 object, ") && status.contains("next run nightly at "),
        "{status}"
    );

    // Idle, the loop still feeds the watchdog every half interval (1 s here).
    let began = Instant::now();
    let mut fed = Vec::new();
    while began.elapsed() < Duration::from_millis(4500) {
        if let Some(m) = next(&socket, Duration::from_millis(500))
            && m.lines().any(|l| l == "WATCHDOG=1")
        {
            fed.push(Instant::now());
        }
    }
    assert!(
        fed.len() >= 3,
        "WATCHDOG=1 came {} times in 4.5 s of idling; log:\n{}",
        fed.len(),
        log(dir.path())
    );
    for pair in fed.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap <= Duration::from_millis(1600),
            "WATCHDOG=1 {gap:?} apart, more than half the 2 s interval"
        );
    }

    daemon.signal("TERM");
    until(&socket, "STOPPING=1", Duration::from_secs(10), "SIGTERM");
    assert_eq!(daemon.wait(Duration::from_secs(30)), Some(0));
}

/// With the loop wedged (the `controller.stall` fault point blocks it for good), nothing
/// feeds the watchdog any more, so systemd would kill and restart the daemon.
#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_wedged_loop_stops_feeding_the_watchdog() {
    if !docker_available() {
        return;
    }
    let dir = layout();
    let (socket, path) = notify_socket(dir.path());
    let _daemon = Daemon::start_with(
        dir.path(),
        &dir.path().join("repository"),
        &[
            ("NOTIFY_SOCKET", path.as_os_str()),
            ("WATCHDOG_USEC", OsStr::new("2000000")),
            ("HOLDFAST_FAULT", OsStr::new("controller.stall")),
            ("HOLDFAST_FAULT_AFTER", OsStr::new("3")),
        ],
        &[],
    );
    until(&socket, "READY=1", Duration::from_secs(60), "start-up");
    until(
        &socket,
        "WATCHDOG=1",
        Duration::from_secs(5),
        "before the stall",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log(dir.path()).contains("fault injection: stalling at controller.stall") {
        assert!(
            Instant::now() < deadline,
            "the loop never reached controller.stall (is this a build with the \
             fault-injection feature?); log:\n{}",
            log(dir.path())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Drain what was sent before the stall, then expect silence for more than the
    // whole 2 s interval.
    while next(&socket, Duration::from_millis(300)).is_some() {}
    if let Some(m) = next(&socket, Duration::from_secs(3)) {
        panic!("the wedged loop still sent {m:?}");
    }
}

/// The shipped unit passes `systemd-analyze verify`, with its ExecStart pointed at the
/// binary this test run built (verify checks that the program exists).
#[test]
fn the_unit_file_verifies() {
    let unit = crate_root().join("packaging/systemd/holdfast.service");
    let text = fs::read_to_string(&unit).unwrap();
    let binary = env!("CARGO_BIN_EXE_holdfast");
    assert!(
        text.contains("\nExecStart=/usr/bin/holdfast run\n"),
        "the unit must start /usr/bin/holdfast run, where the package installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("holdfast.service");
    fs::write(
        &copy,
        text.replace(
            "\nExecStart=/usr/bin/holdfast run\n",
            &format!("\nExecStart={binary} run\n"),
        ),
    )
    .unwrap();
    let out = match Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("skipped: systemd-analyze is not installed (apt-get install systemd)");
            return;
        }
        Err(e) => panic!("running systemd-analyze: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    // Warnings do not fail verify; an unknown or misspelled setting must still fail here.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("holdfast.service"))
        .collect();
    assert!(ours.is_empty(), "systemd-analyze verify warned:\n{stderr}");
}
