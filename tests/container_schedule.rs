//! ContainerSchedules and Archives with runAt, run by the real daemon against real
//! containers: each action does what it says to a busybox container, an action with
//! `after` waits for its policy's run of the same minute and is not taken when that run
//! failed, and an Archive with runAt takes its backup then and not before.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::daemon::*;
use common::*;
use serde_json::Value;

fn layout() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    fs::create_dir_all(&specs).unwrap();
    (dir, specs)
}

/// A ContainerSchedule acting on one container, `when` being `schedule: ...` or
/// `runAt: ...`.
fn action(name: &str, container: &str, what: &str, when: &str, extra: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: ContainerSchedule\nmetadata: {{name: {name}}}\nspec:\n  {when}\n  targets: {{containers: [{container}]}}\n  action: {what}\n{extra}---\n"
    )
}

/// `runAt` this many seconds from now, in RFC 3339 with an offset.
fn run_at(seconds: i64) -> String {
    let at = chrono::Utc::now() + chrono::Duration::seconds(seconds);
    format!(
        "runAt: '{}'",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
    )
}

/// The status document of `name` in a status file.
fn status_of<'a>(docs: &'a [Value], name: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["metadata"]["name"] == name)
}

fn last_phase(docs: &[Value], name: &str) -> Option<String> {
    status_of(docs, name)?["status"]["lastRun"]["phase"]
        .as_str()
        .map(str::to_string)
}

fn wait_phase(file: &Path, name: &str, phase: &str, limit: Duration) -> Vec<Value> {
    wait_for(file, limit, &format!("{name} {phase}"), |s| {
        last_phase(s, name).as_deref() == Some(phase)
    })
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn each_action_does_what_it_says_to_real_containers_at_its_time() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let stopped = Busybox::start("hfcs", "start", QUITS_ON_TERM);
    docker(&["stop", &stopped.name]);
    let to_stop = Busybox::start("hfcs", "stop", QUITS_ON_TERM);
    let to_restart = Busybox::start("hfcs", "restart", QUITS_ON_TERM);
    let to_pause = Busybox::start("hfcs", "pause", QUITS_ON_TERM);
    let started_before = to_restart.started_at();
    let (dir, specs) = layout();
    let at = run_at(6);
    let text = action("starts", &stopped.name, "start", &at, "")
        + &action("stops", &to_stop.name, "stop", &at, "")
        + &action("restarts", &to_restart.name, "restart", &at, "")
        + &action("pauses", &to_pause.name, "pause", &at, "");
    fs::write(specs.join("actions.yaml"), text).unwrap();
    let status = specs.join("actions.status.yaml");
    let _daemon = Daemon::start(dir.path(), &[]);
    // Until its time, each says when it acts and nothing is touched.
    let s = wait_for(&status, Duration::from_secs(20), "scheduled", |s| {
        status_of(s, "stops").is_some_and(|d| d["status"]["nextScheduleTime"].is_string())
    });
    let stops = &status_of(&s, "stops").unwrap()["status"];
    assert!(stops["lastRun"].is_null(), "{stops}");
    let ready = stops["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["reason"], "Scheduled", "{ready}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .starts_with("runs once at "),
        "{ready}"
    );
    assert_eq!(to_stop.state(), "running");
    for name in ["starts", "stops", "restarts", "pauses"] {
        wait_phase(&status, name, "Succeeded", Duration::from_secs(60));
    }
    assert_eq!(stopped.state(), "running");
    assert_eq!(to_stop.state(), "exited");
    assert_eq!(to_restart.state(), "running");
    assert_ne!(to_restart.started_at(), started_before, "restarted");
    assert_eq!(to_pause.state(), "paused");
    // A runAt already past acts at once.
    let mut text = fs::read_to_string(specs.join("actions.yaml")).unwrap();
    text += &action("unpauses", &to_pause.name, "unpause", &run_at(-3600), "");
    fs::write(specs.join("actions.yaml"), text).unwrap();
    wait_phase(&status, "unpauses", "Succeeded", Duration::from_secs(30));
    assert_eq!(to_pause.state(), "running");
    // The API lists them, and the run metrics count them by kind.
    let addr = Daemon::api_address(dir.path());
    let listed = common::http::get(&addr, "/api/v1/containerschedules").json();
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(5),
        "{listed}"
    );
    let metrics = common::http::get(&addr, "/metrics").text();
    assert!(
        metrics.contains(
            r#"holdfast_runs_total{kind="ContainerSchedule",name="stops",phase="Succeeded"} 1"#
        ),
        "{metrics}"
    );
    // The history has each as a run of its ContainerSchedule.
    let runs = run(holdfast()
        .env("HOLDFAST_STATE", dir.path().join("state"))
        .args(["get", "runs", "-o", "json"]));
    let runs: Vec<Value> = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(
        runs.iter()
            .filter(|r| r["kind"] == "ContainerSchedule" && r["phase"] == "Succeeded")
            .count(),
        5,
        "{runs:#?}"
    );
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn an_action_after_a_policy_waits_for_its_success_and_is_not_taken_after_its_failure() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let app = Busybox::start("hfcs", "after", QUITS_ON_TERM);
    let other = Busybox::start("hfcs", "other", QUITS_ON_TERM);
    let (dir, specs) = layout();
    let policy = |name: &str, container: &str| {
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: {name}}}\nspec:\n  schedule: '* * * * *'\n  targets: {{containers: [{container}]}}\n  consistency: {{stop: container}}\n  include: {{recipe: false}}\n---\n"
        )
    };
    let text = policy("good", &app.name)
        + &policy("bad", "hfcs-no-such-container")
        + &action(
            "after-good",
            &app.name,
            "restart",
            "schedule: '* * * * *'",
            "  after: [good]\n",
        )
        + &action(
            "after-bad",
            &other.name,
            "restart",
            "schedule: '* * * * *'",
            "  after: [bad]\n",
        );
    fs::write(specs.join("nightly.yaml"), text).unwrap();
    let other_started = other.started_at();
    let status = specs.join("nightly.status.yaml");
    let _daemon = Daemon::start(dir.path(), &[]);
    let s = wait_for(&status, Duration::from_secs(150), "both actions", |s| {
        last_phase(s, "after-good").is_some() && last_phase(s, "after-bad").is_some()
    });
    // The restart came after the backup of the same minute had succeeded.
    let good = &status_of(&s, "good").unwrap()["status"]["lastRun"];
    let acted = &status_of(&s, "after-good").unwrap()["status"]["lastRun"];
    assert_eq!(good["phase"], "Succeeded", "{good}");
    assert_eq!(acted["phase"], "Succeeded", "{acted}");
    let time = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .to_utc()
    };
    assert!(
        time(&acted["startTime"]) >= time(&good["completionTime"]),
        "the action started before the backup ended: {acted} {good}"
    );
    assert_eq!(app.state(), "running");
    // The failed backup kept its action from being taken, and says why.
    let skipped = &status_of(&s, "after-bad").unwrap()["status"];
    assert_eq!(skipped["lastRun"]["phase"], "Failed", "{skipped}");
    let message = skipped["lastRun"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("not taken: BackupPolicy/bad's run bad-")
            && message.ends_with("ended Failed, and this action runs only after it succeeds"),
        "{message}"
    );
    assert_eq!(other.started_at(), other_started, "not restarted");
    // Its run log says so too.
    let addr = Daemon::api_address(dir.path());
    let id = skipped["lastRun"]["id"].as_str().unwrap();
    let log = common::http::get(&addr, &format!("/api/v1/runs/{id}/log")).text();
    assert!(log.contains("not taken: BackupPolicy/bad's run"), "{log}");
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn an_archive_with_run_at_takes_its_backup_then_and_not_before() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let data = FileVolume::new("hfcsarchive", "kept");
    let (dir, specs) = layout();
    let at = chrono::Utc::now() + chrono::Duration::seconds(8);
    fs::write(
        specs.join("before-upgrade.yaml"),
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: Archive\nmetadata: {{name: before-upgrade}}\nspec:\n  runAt: '{}'\n  targets: {{volumes: [{}]}}\n  include: {{recipe: false}}\n",
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            data.0
        ),
    )
    .unwrap();
    let status = specs.join("before-upgrade.status.yaml");
    let _daemon = Daemon::start(dir.path(), &[]);
    let s = wait_for(&status, Duration::from_secs(20), "scheduled", |s| {
        s.first()
            .is_some_and(|d| d["status"]["nextScheduleTime"].is_string())
    });
    let waiting = &s[0]["status"];
    assert!(
        waiting["lastRun"].is_null(),
        "ran before its time: {waiting}"
    );
    let s = wait_phase(
        &status,
        "before-upgrade",
        "Succeeded",
        Duration::from_secs(60),
    );
    let started = chrono::DateTime::parse_from_rfc3339(
        s[0]["status"]["lastRun"]["startTime"].as_str().unwrap(),
    )
    .unwrap()
    .to_utc();
    // runAt is written in whole seconds, and so is the status's startTime.
    let at = chrono::SubsecRound::trunc_subsecs(at, 0);
    assert!(started >= at, "started {started}, due {at}");
    assert!(
        s[0]["status"]["nextScheduleTime"].is_null(),
        "{}",
        s[0]["status"]
    );
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn an_action_waits_while_a_backup_holds_its_container() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let app = Busybox::start("hfcs", "locked", QUITS_ON_TERM);
    // On a runtime of its own, so that the Docker lock is not held across an await.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let before = app.started_at();
        let dir = tempfile::tempdir().unwrap();
        let state = std::sync::Arc::new(holdfast::state::StateDb::open(dir.path()).unwrap());
        let engine = holdfast::docker::engine::Engine::connect(None)
            .await
            .unwrap();
        let locks = holdfast::locks::ResourceLocks::new();
        // What a backup stopping the container holds.
        let id = docker(&["inspect", "-f", "{{.Id}}", &app.name])
            .trim()
            .to_string();
        let mut backup = holdfast::locks::Claims::new();
        backup.exclusive(holdfast::locks::Resource::Container(id), &app.name);
        let held = locks.acquire("a-backup", backup, |_| {}).await;
        let request = holdfast::actions::ActionRequest {
            name: "restart".into(),
            action: holdfast::spec::ContainerAction::Restart,
            targets: holdfast::spec::common::Targets {
                containers: vec![app.name.clone()],
                ..Default::default()
            },
            skip: None,
        };
        let action = tokio::spawn({
            let (state, locks) = (state.clone(), locks.clone());
            async move {
                holdfast::actions::run(
                    &engine,
                    &state,
                    &locks,
                    &request,
                    std::sync::Arc::new(holdfast::progress::Silent),
                )
                .await
            }
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            !action.is_finished(),
            "the action did not wait for the backup"
        );
        assert_eq!(app.started_at(), before, "restarted under the backup");
        drop(held);
        let outcome = tokio::time::timeout(Duration::from_secs(60), action)
            .await
            .expect("the action ends once the backup let go")
            .unwrap();
        assert_eq!(
            outcome.phase,
            holdfast::spec::common::Phase::Succeeded,
            "{:?}",
            outcome.errors
        );
        assert_eq!(outcome.artifacts, 1);
        assert_ne!(app.started_at(), before, "restarted after the backup");
        assert_eq!(app.state(), "running");
        let recorded = state.run(&outcome.run_id).unwrap().unwrap();
        assert_eq!(recorded.kind, "ContainerSchedule");
        assert_eq!(recorded.phase, holdfast::spec::common::Phase::Succeeded);
    });
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn plan_and_get_show_what_an_action_would_touch() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let up = Busybox::start("hfcs", "plan-up", QUITS_ON_TERM);
    let down = Busybox::start("hfcs", "plan-down", QUITS_ON_TERM);
    docker(&["stop", &down.name]);
    let (dir, specs) = layout();
    let text = format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: ContainerSchedule\nmetadata: {{name: wake}}\nspec:\n  schedule: '0 6 * * *'\n  timezone: Europe/Berlin\n  targets: {{containers: [{}, {}, hfcs-missing]}}\n  action: start\n",
        up.name, down.name
    );
    fs::write(specs.join("wake.yaml"), text).unwrap();
    let env = |cmd: &mut std::process::Command| {
        cmd.env("HOLDFAST_SPECS", &specs)
            .env("HOLDFAST_STATE", dir.path().join("state"))
            .env("HOLDFAST_REPOSITORY", dir.path().join("repository"));
    };
    let mut plan = holdfast();
    env(&mut plan);
    let out = run(plan.args(["plan", "wake"]));
    let text = stdout(&out);
    assert!(
        !out.status.success(),
        "a missing container fails the plan:\n{text}"
    );
    assert!(
        text.contains("ContainerSchedule/wake\n  start 0 6 * * * (Europe/Berlin)\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("  container {} (running): left alone\n", up.name)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "  container {} (exited): would start\n",
            down.name
        )),
        "{text}"
    );
    assert!(
        text.contains("  error: container `hfcs-missing` not found\n"),
        "{text}"
    );
    let mut get = holdfast();
    env(&mut get);
    let out = run(get.args(["get", "containerschedules", "-o", "json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["action"], "start");
    assert_eq!(rows[0]["when"], "0 6 * * *");
    assert!(rows[0]["nextScheduleTime"].is_string(), "{}", rows[0]);
    assert_eq!(down.state(), "exited", "plan and get change nothing");
}
