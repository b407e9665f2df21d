//! Runs of one daemon exclude each other by what they touch, not only by the stacks their
//! specs name: two policies that select the same container by label, both due at once,
//! with room for two runs, stop it one after the other, as Docker's own events show.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::daemon::*;
use common::*;

/// A container with a volume, removed with it when dropped.
struct Container {
    name: String,
    volume: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run(Command::new("docker").args(["rm", "-f", &self.name]));
        let _ = run(Command::new("docker").args(["volume", "rm", &self.volume]));
    }
}

fn policy(name: &str, label: &str, value: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata:
  name: {name}
  annotations: {{holdfast.dev/requested-at: 'now'}}
spec:
  schedule: '0 3 1 1 *'
  targets:
    selector:
      matchLabels: {{{label}: '{value}'}}
  consistency: {{stop: container}}
  include: {{recipe: false}}
  output: {{format: tar.gz}}
"
    )
}

/// The container's `die` and `start` events from `since` (nanoseconds) to `until`
/// (seconds), in order, with their times in nanoseconds.
fn stops_and_starts(container: &str, since: i64, until: i64) -> Vec<(i64, String)> {
    let out = docker(&[
        "events",
        "--since",
        &(since / 1_000_000_000).to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        &format!("container={container}"),
        "--filter",
        "event=die",
        "--filter",
        "event=start",
        "--format",
        "{{.TimeNano}} {{.Action}}",
    ]);
    let mut events: Vec<(i64, String)> = out
        .lines()
        .filter_map(|l| {
            let (time, action) = l.split_once(' ')?;
            Some((time.parse().ok()?, action.to_string()))
        })
        .filter(|(time, _)| *time >= since)
        .collect();
    events.sort();
    events
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn two_runs_that_stop_the_same_container_take_turns() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let tag = std::process::id();
    let app = Container {
        name: format!("hflocks{tag}-app"),
        volume: format!("hflocks{tag}"),
    };
    let label = "holdfast.test/locks";
    docker(&["volume", "create", &app.volume]);
    docker(&[
        "run",
        "-d",
        "--init",
        "--name",
        &app.name,
        "--label",
        &format!("{label}={tag}"),
        "-v",
        &format!("{}:/data", app.volume),
        "holdfast-test/busybox:1",
        "sleep",
        "3600",
    ]);
    // Enough data that archiving it takes a moment while the container is stopped.
    sh_in(
        &app.name,
        "head -c 30000000 /dev/urandom > /data/big.bin && echo kept > /data/small.txt",
    );

    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    fs::create_dir_all(&specs).unwrap();
    // Neither names a stack: the planner's stack check lets both start together.
    for name in ["first", "second"] {
        fs::write(
            specs.join(format!("{name}.yaml")),
            policy(name, label, &tag.to_string()),
        )
        .unwrap();
    }
    let since = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let mut daemon = Daemon::start(dir.path(), &["--max-concurrent-runs", "2"]);
    let mut runs = Vec::new();
    for name in ["first", "second"] {
        let s = wait_for(
            &specs.join(format!("{name}.status.yaml")),
            Duration::from_secs(120),
            name,
            |s| {
                s.first().is_some_and(|d| {
                    d["status"]["lastHandledRequestedAt"] == "now"
                        && d["status"]["lastRun"]["phase"]
                            .as_str()
                            .is_some_and(|p| p != "Running")
                })
            },
        );
        let last = &s[0]["status"]["lastRun"];
        assert_eq!(last["phase"], "Succeeded", "{name}: {:#}", s[0]["status"]);
        runs.push(last["id"].as_str().unwrap().to_string());
    }
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(30)), Some(0));
    std::thread::sleep(Duration::from_millis(1100));
    let until = chrono::Utc::now().timestamp();

    // Docker saw two stop windows, one after the other: never both stopped at once.
    let events = stops_and_starts(&app.name, since, until);
    let actions: Vec<&str> = events.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(
        actions,
        ["die", "start", "die", "start"],
        "each run must stop and start the container once, in turn (runs that overlap show \
         as one window: the second stop and start find it stopped and started): {events:?}"
    );
    let windows = [(events[0].0, events[1].0), (events[2].0, events[3].0)];
    assert!(
        windows[0].1 <= windows[1].0,
        "the stop windows overlap: {windows:?}"
    );
    eprintln!(
        "stopped for {:.2}s, up for {:.2}s, stopped for {:.2}s",
        (windows[0].1 - windows[0].0) as f64 / 1e9,
        (windows[1].0 - windows[0].1) as f64 / 1e9,
        (windows[1].1 - windows[1].0) as f64 / 1e9,
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &app.name]).trim(),
        "running"
    );

    // The run that went second says in its own log what it waited for, and for whom.
    let logs: Vec<String> = runs
        .iter()
        .map(|id| {
            fs::read_to_string(dir.path().join("state/logs").join(format!("{id}.log")))
                .unwrap_or_default()
        })
        .collect();
    let waited: Vec<usize> = (0..2)
        .filter(|&i| logs[i].contains(&format!("waiting for container {}", app.name)))
        .collect();
    assert_eq!(waited.len(), 1, "exactly one run waited:\n{logs:#?}");
    let (waiter, holder) = (waited[0], 1 - waited[0]);
    assert!(
        logs[waiter].contains(&format!("run {} holds it", runs[holder])),
        "{}",
        logs[waiter]
    );

    // Both archives hold the data.
    for name in ["first", "second"] {
        let archives = fs::read_dir(host_dir(&dir.path().join("repository")).join(name))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| !e.file_name().to_string_lossy().contains('.'))
            })
            .count();
        assert_eq!(archives, 1, "{name}");
    }
}
