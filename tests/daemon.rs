//! `holdfast run` as users run it: the real binary, real files, the real engine.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use common::daemon::*;
use common::*;
use serde_json::Value;

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn policy(name: &str, schedule: &str, project: &str, annotations: &str, extra: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: {name}\n{annotations}spec:\n  schedule: '{schedule}'\n  targets: {{stacks: [{project}]}}\n{extra}"
    )
}

fn layout() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    fs::create_dir_all(specs.join("apps")).unwrap();
    (dir, specs)
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn specs_become_statuses_and_runs_without_a_restart() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hfrun{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    let (dir, specs) = layout();
    let spec = specs.join("apps/web.yaml");
    let status = specs.join("apps/web.status.yaml");
    fs::write(&spec, policy("web", "0 3 1 1 *", &project, "", "")).unwrap();
    let started = Instant::now();
    let mut daemon = Daemon::start(dir.path(), &[]);

    // Within a second or so, a status says when the next run is.
    let s = wait_for(&status, Duration::from_secs(10), "first status", |s| {
        s.first()
            .is_some_and(|d| d["status"]["nextScheduleTime"].is_string())
    });
    eprintln!("first status after {:?}", started.elapsed());
    assert_eq!(s[0]["kind"], "BackupPolicy");
    assert_eq!(s[0]["metadata"]["name"], "web");
    assert_eq!(condition(&s[0], "Ready").unwrap()["status"], "True");
    assert!(
        s[0]["status"]["nextScheduleTime"]
            .as_str()
            .unwrap()
            .contains("-01-01T03:00:00")
    );
    let generation = s[0]["status"]["observedGeneration"].clone();

    // A new requested-at value runs it now, once.
    fs::write(
        &spec,
        policy(
            "web",
            "0 3 1 1 *",
            &project,
            "  annotations: {holdfast.dev/requested-at: 'first'}\n",
            "",
        ),
    )
    .unwrap();
    let s = wait_for(&status, Duration::from_secs(120), "requested run", |s| {
        s.first()
            .is_some_and(|d| d["status"]["lastRun"]["phase"] == "Succeeded")
    });
    assert_eq!(s[0]["status"]["lastHandledRequestedAt"], "first");
    assert_ne!(s[0]["status"]["observedGeneration"], generation);
    let archive = s[0]["status"]["lastRun"]["archiveId"]
        .as_str()
        .unwrap()
        .to_string();
    // The run's own log file tells its story.
    let run_id = s[0]["status"]["lastRun"]["id"].as_str().unwrap();
    let log =
        fs::read_to_string(dir.path().join("state/logs").join(format!("{run_id}.log"))).unwrap();
    assert!(
        log.contains("run started") && log.contains("run succeeded"),
        "{log}"
    );
    assert!(
        host_dir(&dir.path().join("repository"))
            .join("web")
            .join(&archive)
            .join("manifest.json")
            .exists()
    );
    assert!(s[0]["status"]["lastSuccessfulTime"].is_string());

    // Editing the schedule moves the next run; nothing else runs.
    fs::write(
        &spec,
        policy(
            "web",
            "0 4 1 1 *",
            &project,
            "  annotations: {holdfast.dev/requested-at: 'first'}\n",
            "",
        ),
    )
    .unwrap();
    wait_for(&status, Duration::from_secs(10), "new schedule", |s| {
        s.first().is_some_and(|d| {
            d["status"]["nextScheduleTime"]
                .as_str()
                .is_some_and(|t| t.contains("T04:00:00"))
        })
    });

    // A duplicate in a second file stalls both, and neither runs.
    let other = specs.join("other.yaml");
    fs::write(
        &other,
        policy(
            "web",
            "0 5 1 1 *",
            &project,
            "  annotations: {holdfast.dev/requested-at: 'dup'}\n",
            "",
        ),
    )
    .unwrap();
    let s = wait_for(&status, Duration::from_secs(10), "duplicate stalls", |s| {
        s.first()
            .and_then(|d| condition(d, "Stalled"))
            .is_some_and(|c| c["status"] == "True")
    });
    assert!(
        s[0]["status"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("defined more than once")
    );
    let o = wait_for(
        &specs.join("other.status.yaml"),
        Duration::from_secs(10),
        "other stalls",
        |s| !s.is_empty(),
    );
    assert_eq!(condition(&o[0], "Stalled").unwrap()["status"], "True");
    fs::remove_file(&other).unwrap();

    // A typo stalls it with the error's position, and it does not keep running silently.
    fs::write(
        &spec,
        policy(
            "web",
            "0 4 1 1 *",
            &project,
            "",
            "  consistency: {stop: stak}\n",
        ),
    )
    .unwrap();
    let s = wait_for(&status, Duration::from_secs(10), "typo stalls", |s| {
        s.first()
            .and_then(|d| condition(d, "Stalled"))
            .is_some_and(|c| c["status"] == "True")
            && s[0]["status"]["errors"]
                .to_string()
                .contains("spec.consistency.stop")
    });
    let error = s[0]["status"]["errors"][0].as_str().unwrap();
    assert!(
        error.contains("web.yaml:8:") && error.contains("spec.consistency.stop"),
        "{error}"
    );
    assert_eq!(condition(&s[0], "Ready").unwrap()["status"], "False");

    // Deleting the spec removes its status file.
    fs::remove_file(&spec).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while status.exists() {
        assert!(Instant::now() < deadline, "status file not removed");
        std::thread::sleep(Duration::from_millis(100));
    }

    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(20)), Some(0));
    let runs = fs::read_dir(host_dir(&dir.path().join("repository")).join("web"))
        .unwrap()
        .count();
    assert_eq!(runs, 1, "exactly one run happened");
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_schedule_one_minute_ahead_runs_on_time() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hfsched{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    let (dir, specs) = layout();
    // The next whole minute, unless it is too close to call.
    let now = chrono::Utc::now()
        + chrono::Duration::seconds(if chrono::Utc::now().timestamp() % 60 > 50 {
            70
        } else {
            60
        });
    let schedule = format!(
        "{} {} * * *",
        now.format("%M")
            .to_string()
            .trim_start_matches('0')
            .parse::<u32>()
            .unwrap_or(0),
        now.format("%H").to_string().parse::<u32>().unwrap()
    );
    fs::write(
        specs.join("apps/soon.yaml"),
        policy(
            "soon",
            &schedule,
            &project,
            "",
            "  include: {recipe: false}\n",
        ),
    )
    .unwrap();
    let _daemon = Daemon::start(dir.path(), &[]);
    let s = wait_for(
        &specs.join("apps/soon.status.yaml"),
        Duration::from_secs(150),
        "scheduled run",
        |s| {
            s.first()
                .is_some_and(|d| d["status"]["lastRun"]["phase"] == "Succeeded")
        },
    );
    let scheduled = s[0]["status"]["lastScheduleTime"].as_str().unwrap();
    assert!(scheduled.ends_with(":00Z"), "{scheduled}");
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn one_daemon_per_state_folder() {
    let (dir, specs) = layout();
    fs::write(specs.join("empty.yaml"), "").unwrap();
    if !docker_available() {
        return;
    }
    let _first = Daemon::start(dir.path(), &[]);
    // The first one takes the lock at start-up.
    let lock = dir.path().join("state/run.lock");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lock.exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let out = run(holdfast()
        .env("HOLDFAST_SPECS", &specs)
        .env("HOLDFAST_STATE", dir.path().join("state"))
        .arg("run"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("another holdfast process"),
        "{}",
        stderr(&out)
    );
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn killed_or_stopped_mid_run_the_stack_comes_back_and_the_run_is_interrupted() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hfcrash{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    sh_in(
        &stack.container("web"),
        "head -c 100000000 /dev/urandom > /www/big.bin",
    );
    let (dir, specs) = layout();
    let status = specs.join("apps/slow.status.yaml");
    let slow = |request: &str| {
        policy(
            "slow",
            "0 3 1 1 *",
            &project,
            &format!("  annotations: {{holdfast.dev/requested-at: '{request}'}}\n"),
            "  consistency: {stop: stack}\n  output: {format: tar.zst, level: 19}\n",
        )
    };
    fs::write(specs.join("apps/slow.yaml"), slow("one")).unwrap();

    let wait_stopped = || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while stack.state("web") == "running" {
            assert!(Instant::now() < deadline, "the stack was never stopped");
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // SIGKILL while the stack is stopped.
    let mut daemon = Daemon::start(dir.path(), &[]);
    wait_stopped();
    daemon.signal("KILL");
    daemon.wait(Duration::from_secs(10));
    assert_eq!(stack.state("web"), "exited");
    // The restarted daemon repairs it and marks the run Interrupted; it does not rerun it.
    let mut daemon = Daemon::start(dir.path(), &["--shutdown-timeout", "1s"]);
    let s = wait_for(&status, Duration::from_secs(30), "interrupted", |s| {
        s.first()
            .is_some_and(|d| d["status"]["lastRun"]["phase"] == "Failed")
    });
    assert!(
        s[0]["status"]["lastRun"]["message"]
            .as_str()
            .unwrap()
            .contains("Interrupted")
    );
    for service in ["web", "worker", "db", "mariadb", "redis", "sqlite"] {
        assert_eq!(stack.state(service), "running", "{service}");
    }

    // SIGTERM during a run: the run gets its deadline, then is cancelled, the stack
    // restarted, and the daemon exits 0.
    fs::write(specs.join("apps/slow.yaml"), slow("two")).unwrap();
    wait_stopped();
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(60)), Some(0));
    for service in ["web", "worker", "db", "mariadb", "redis", "sqlite"] {
        assert_eq!(stack.state(service), "running", "{service}");
    }
    let s = statuses(&status);
    assert_eq!(s[0]["status"]["lastRun"]["phase"], "Failed");
    let partials: Vec<_> = fs::read_dir(host_dir(&dir.path().join("repository")).join("slow"))
        .map(|d| d.count())
        .into_iter()
        .collect();
    assert!(partials.iter().all(|n| *n <= 1));
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn retention_keeps_exactly_what_it_says_after_real_runs() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hfret{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    let (dir, specs) = layout();
    let spec = specs.join("apps/keep.yaml");
    let status = specs.join("apps/keep.status.yaml");
    let write = |request: u32| {
        fs::write(
            &spec,
            policy(
                "keep",
                "0 3 1 1 *",
                &project,
                &format!("  annotations: {{holdfast.dev/requested-at: '{request}'}}\n"),
                "  include: {recipe: false}\n  retention: {keepLast: 2}\n",
            ),
        )
        .unwrap();
    };
    let _daemon = Daemon::start(dir.path(), &[]);
    let mut ids = Vec::new();
    for request in 1..=4 {
        write(request);
        let s = wait_for(&status, Duration::from_secs(60), "run", |s| {
            s.first().is_some_and(|d| {
                d["status"]["lastHandledRequestedAt"].as_str() == Some(request.to_string().as_str())
                    && d["status"]["lastRun"]["phase"] == "Succeeded"
                    && d["status"]["lastRun"]["archiveId"]
                        .as_str()
                        .is_some_and(|id| !ids.iter().any(|known: &String| known == id))
            })
        });
        ids.push(
            s[0]["status"]["lastRun"]["archiveId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        // Archive ids have a one-second resolution.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let s = wait_for(&status, Duration::from_secs(10), "retention", |s| {
        s.first()
            .is_some_and(|d| d["status"]["archives"]["count"] == 2)
    });
    assert_eq!(s[0]["status"]["archives"]["newest"], ids[3].as_str());
    assert_eq!(s[0]["status"]["archives"]["oldest"], ids[2].as_str());
    let mut on_disk: Vec<String> =
        fs::read_dir(host_dir(&dir.path().join("repository")).join("keep"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    on_disk.sort();
    assert_eq!(on_disk, ids[2..]);
    // The status says what the next run's retention will forget, and why.
    let next = &s[0]["status"]["retention"]["forgetNext"];
    assert_eq!(next[0]["id"], ids[2].as_str(), "{:#}", s[0]["status"]);
    assert_eq!(next[0]["reason"], "not kept by any rule");

    // A crash between marking a deletion and doing it: the next start finishes it.
    drop(_daemon);
    let state = holdfast::state::StateDb::open(&dir.path().join("state")).unwrap();
    let doomed = host_dir(&dir.path().join("repository"))
        .join("keep")
        .join(&ids[2]);
    state.mark_deletion(&doomed, &ids[2], "keepLast 2").unwrap();
    drop(state);
    assert!(doomed.exists());
    let _daemon = Daemon::start(dir.path(), &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while doomed.exists() {
        assert!(
            Instant::now() < deadline,
            "the interrupted deletion was not finished"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for(
        &status,
        Duration::from_secs(10),
        "count after resume",
        |s| {
            s.first()
                .is_some_and(|d| d["status"]["archives"]["count"] == 1)
        },
    );
}

fn archive_spec(name: &str, volume: &str, extra: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: Archive\nmetadata:\n  name: {name}\nspec:\n  targets: {{volumes: [{volume}]}}\n  include: {{recipe: false}}\n{extra}"
    )
}

fn archives_of(dir: &Path, group: &str) -> usize {
    fs::read_dir(host_dir(&dir.join("repository")).join(group)).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| !e.file_name().to_string_lossy().contains('.'))
        })
        .count()
    })
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn archives_run_once_expire_and_follow_their_deletion_policy() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hflife{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    let volume = stack.volume("web-data");
    let (dir, specs) = layout();
    fs::write(specs.join("keep.yaml"), archive_spec("keep", &volume, "")).unwrap();
    fs::write(
        specs.join("drop.yaml"),
        archive_spec("drop", &volume, "  deletionPolicy: Delete\n"),
    )
    .unwrap();
    fs::write(
        specs.join("short.yaml"),
        archive_spec("short", &volume, "  ttl: 4s\n"),
    )
    .unwrap();
    let mut daemon = Daemon::start(dir.path(), &[]);
    for name in ["keep", "drop"] {
        wait_for(
            &specs.join(format!("{name}.status.yaml")),
            Duration::from_secs(60),
            name,
            |s| {
                s.first()
                    .is_some_and(|d| d["status"]["lastRun"]["phase"] == "Succeeded")
            },
        );
        assert_eq!(archives_of(dir.path(), name), 1, "{name}");
    }
    // The ttl passes and the daemon wakes up for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while archives_of(dir.path(), "short") != 0 || !specs.join("short.status.yaml").exists() {
        assert!(
            Instant::now() < deadline,
            "the expired archive was not deleted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Each Archive ran once per generation: nothing re-ran meanwhile.
    assert_eq!(archives_of(dir.path(), "keep"), 1);

    // Removing a Delete spec deletes its archive; removing a Retain spec keeps it.
    fs::remove_file(specs.join("drop.yaml")).unwrap();
    fs::remove_file(specs.join("keep.yaml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while archives_of(dir.path(), "drop") != 0 {
        assert!(
            Instant::now() < deadline,
            "deletionPolicy Delete did not delete"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        archives_of(dir.path(), "keep"),
        1,
        "Retain must keep the archive"
    );

    // It is listed as orphaned, and deleted only on purpose.
    let get = |args: &[&str]| {
        run(holdfast()
            .env("HOLDFAST_SPECS", &specs)
            .env("HOLDFAST_STATE", dir.path().join("state"))
            .env("HOLDFAST_REPOSITORY", dir.path().join("repository"))
            .args(args))
    };
    let out = get(&["get", "archives", "--orphaned", "-o", "json"]);
    let orphaned: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = orphaned
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{orphaned:#}");
    assert!(ids[0].starts_with("keep-"));
    let dry = get(&["delete", ids[0]]);
    assert!(dry.status.success() && stdout(&dry).contains("would delete"));
    assert_eq!(archives_of(dir.path(), "keep"), 1);
    // Deleting writes to the repository: not beside the running daemon, which is named.
    let refused = get(&["delete", ids[0], "--yes"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains(&format!("pid {}", daemon.child.id())),
        "{}",
        stderr(&refused)
    );
    assert_eq!(archives_of(dir.path(), "keep"), 1);
    daemon.signal("TERM");
    assert_eq!(daemon.wait(Duration::from_secs(30)), Some(0));
    let out = get(&["delete", ids[0], "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(archives_of(dir.path(), "keep"), 0);
}
