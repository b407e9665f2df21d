//! What status files say about times and sizes, through the real daemon: schedule times
//! also in the policy's zone, an Archive's expiry, both byte counts of a run, and which
//! time fields a requested run sets; archives dated in the future.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, SubsecRound, Timelike, Utc};
use common::daemon::*;
use common::env::Env;
use common::*;
use serde_json::Value;

fn time(value: &Value, what: &str) -> DateTime<FixedOffset> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"));
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{what}: {text}: {e}"))
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn statuses_show_local_schedule_times_expiry_and_both_byte_counts() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let volume = FileVolume::new("hfstatusfields", "hello");
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    fs::create_dir_all(&specs).unwrap();
    fs::write(
        specs.join("berlin.yaml"),
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: berlin\n  annotations: {{holdfast.dev/requested-at: 'now'}}\nspec:\n  schedule: '0 2 * * *'\n  timezone: Europe/Berlin\n  targets: {{volumes: [{}]}}\n  include: {{recipe: false}}\n",
            volume.0
        ),
    )
    .unwrap();
    fs::write(
        specs.join("utc.yaml"),
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: utc\nspec:\n  schedule: '0 2 * * *'\n  targets: {{volumes: [{}]}}\n",
            volume.0
        ),
    )
    .unwrap();
    fs::write(
        specs.join("short.yaml"),
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: Archive\nmetadata:\n  name: short\nspec:\n  targets: {{volumes: [{}]}}\n  include: {{recipe: false}}\n  ttl: 1h\n",
            volume.0
        ),
    )
    .unwrap();
    let _daemon = Daemon::start(dir.path(), &[]);

    // The policy in Europe/Berlin: the next 02:00 there, as the same instant in UTC.
    let s = wait_for(
        &specs.join("berlin.status.yaml"),
        Duration::from_secs(60),
        "berlin's run",
        |s| {
            s.first().is_some_and(|d| {
                d["status"]["lastRun"]["phase"] == "Succeeded"
                    && d["status"]["archives"]["count"] == 1
            })
        },
    );
    let status = &s[0]["status"];
    let next = time(&status["nextScheduleTime"], "nextScheduleTime");
    let local = time(&status["nextScheduleTimeLocal"], "nextScheduleTimeLocal");
    assert_eq!(local, next, "one instant: {status:#}");
    assert_eq!((local.hour(), local.minute()), (2, 0), "{status:#}");
    assert!(
        matches!(local.offset().local_minus_utc(), 3600 | 7200),
        "{status:#}"
    );
    assert!(
        status["nextScheduleTime"].as_str().unwrap().ends_with('Z'),
        "{status:#}"
    );
    // A requested run is no scheduled one: it sets lastRun, not lastScheduleTime.
    assert!(status.get("lastScheduleTime").is_none(), "{status:#}");
    assert!(status["lastSuccessfulTime"].is_string(), "{status:#}");
    // Both byte counts of the run, by name: what was read and what was stored.
    let run = &status["lastRun"];
    assert!(run.get("bytes").is_none(), "{run:#}");
    assert!(
        run["storedBytes"].as_u64().is_some_and(|b| b > 0),
        "{run:#}"
    );

    // A policy in UTC has nothing to add.
    let s = wait_for(
        &specs.join("utc.status.yaml"),
        Duration::from_secs(30),
        "utc's next time",
        |s| {
            s.first()
                .is_some_and(|d| d["status"]["nextScheduleTime"].is_string())
        },
    );
    assert!(
        s[0]["status"].get("nextScheduleTimeLocal").is_none(),
        "{:#}",
        s[0]
    );

    // The Archive with a ttl says when it expires: its archive's time plus the ttl.
    let s = wait_for(
        &specs.join("short.status.yaml"),
        Duration::from_secs(60),
        "short's expiry",
        |s| {
            s.first().is_some_and(|d| {
                d["status"]["lastRun"]["phase"] == "Succeeded"
                    && d["status"]["expiresAt"].is_string()
            })
        },
    );
    let status = &s[0]["status"];
    let id = status["lastRun"]["archiveId"].as_str().unwrap();
    let manifest = manifest(
        &host_dir(&dir.path().join("repository"))
            .join("short")
            .join(id),
    );
    let taken = time(&manifest["startTime"], "startTime").with_timezone(&Utc);
    let expires = time(&status["expiresAt"], "expiresAt");
    assert_eq!(
        expires,
        (taken + chrono::Duration::hours(1)).trunc_subsecs(0),
        "{status:#}"
    );
}

fn manifest(archive: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(archive.join("manifest.json")).unwrap()).unwrap()
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn an_archive_dated_in_the_future_is_flagged_and_neither_newest_nor_forgotten() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let volume = FileVolume::new("hffuture", "hello");
    let env = Env::new();
    env.spec(
        "ahead",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: ahead\nspec:\n  schedule: '0 3 1 1 *'\n  targets: {{volumes: [{}]}}\n  include: {{recipe: false}}\n  retention: {{keepLast: 1}}\n",
            volume.0
        ),
    );
    let out = run(env.holdfast().args(["backup", "ahead"]));
    assert!(out.status.success(), "{}", stderr(&out));
    // Both sizes, by name: what the archive takes in the repository, what was read.
    let said = stdout(&out);
    assert!(
        said.contains("artifacts, ") && said.contains("B stored (") && said.contains("B read)"),
        "{said}"
    );
    let group = host_dir(&env.repository).join("ahead");
    let real: Vec<String> = fs::read_dir(&group)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.contains('.'))
        .collect();
    assert_eq!(real.len(), 1, "{real:?}");
    let real = &real[0];
    // A copy stamped 2099, as a host whose clock was far ahead would have written it.
    let future = "ahead-20991207T030000Z";
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(group.join(real))
        .arg(group.join(future))
        .status()
        .unwrap();
    assert!(copied.success());
    let mut stamped = manifest(&group.join(future));
    stamped["id"] = Value::from(future);
    stamped["startTime"] = Value::from("2099-12-07T03:00:00Z");
    stamped["completionTime"] = Value::from("2099-12-07T03:00:05Z");
    fs::write(
        group.join(future).join("manifest.json"),
        serde_json::to_string_pretty(&stamped).unwrap(),
    )
    .unwrap();

    let _daemon = Daemon::start(env.dir.path(), &[]);
    let status = env.specs.join("ahead.status.yaml");
    wait_for(&status, Duration::from_secs(30), "archives", |s| {
        s.first()
            .is_some_and(|d| d["status"]["archives"]["count"].is_u64())
    });
    // Retention has had its start-up pass: keepLast 1 keeps the newest real archive, and
    // the future one is kept aside.
    std::thread::sleep(Duration::from_secs(2));
    let s = statuses(&status);
    let archives = &s[0]["status"]["archives"];
    assert_eq!(archives["count"], 2, "{archives:#}");
    assert_eq!(archives["newest"], real.as_str(), "{archives:#}");
    assert_eq!(
        archives["futureDated"],
        serde_json::json!([future]),
        "{archives:#}"
    );
    assert!(group.join(real).exists() && group.join(future).exists());
}
