//! Notifications from the real daemon to real receivers on loopback: a failure told once
//! and its recovery, heartbeats around every run, a receiver that fails, and a policy
//! that becomes Overdue at its time, told once; and a one-off `holdfast backup`, which
//! tells its notifiers as the daemon does.

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use common::daemon::{Daemon, wait_for};
use common::receiver::{Receiver, Request};
use common::{FileVolume, docker_lock};

/// A policy backing up `volume` when its requested-at changes (its schedule is yearly).
fn policy(name: &str, volume: &str, request: &str, extra: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: {name}\n  labels: {{tier: prod}}\n  annotations: {{holdfast.dev/requested-at: '{request}'}}\nspec:\n  schedule: '0 3 1 1 *'\n  targets: {{volumes: [{volume}]}}\n{extra}"
    )
}

fn notifier(name: &str, url: &str, extra: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: Notifier\nmetadata:\n  name: {name}\nspec:\n  url: '{url}'\n{extra}"
    )
}

fn events(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// A specs folder, the daemon's folders beside it, and a webhook receiver.
struct Setup {
    dir: tempfile::TempDir,
    specs: PathBuf,
    hook: Receiver,
}

impl Setup {
    fn new() -> Setup {
        Setup::answering(200)
    }

    /// With a receiver answering `status`.
    fn answering(status: u16) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let specs = dir.path().join("specs");
        fs::create_dir_all(&specs).unwrap();
        Setup {
            dir,
            specs,
            hook: Receiver::answering(status, "{}"),
        }
    }

    /// The receiver's generic webhook URL.
    fn hook_url(&self) -> String {
        format!("generic+http://127.0.0.1:{}/hook", self.hook.port)
    }

    fn write(&self, file: &str, text: &str) {
        fs::write(self.specs.join(file), text).unwrap();
    }

    /// `holdfast run` on this folder, reading the specs again every second.
    fn daemon(&self, extra: &[&str]) -> Daemon {
        let mut args = vec!["--resync", "1s"];
        args.extend_from_slice(extra);
        Daemon::start(self.dir.path(), &args)
    }

    /// Writes policy `p` backing up `volume`, requested as `request`, and waits for that
    /// run to end in `phase`; returns the status.
    fn run_policy(
        &self,
        volume: &str,
        request: &'static str,
        phase: &'static str,
    ) -> Vec<serde_json::Value> {
        self.write("p.yaml", &policy("p", volume, request, ""));
        wait_for(
            &self.specs.join("p.status.yaml"),
            Duration::from_secs(60),
            &format!("run {request}"),
            last_phase(phase, request),
        )
    }
}

/// The status check: the last run has `phase`, for the `request` value.
fn last_phase(phase: &'static str, request: &'static str) -> impl Fn(&[serde_json::Value]) -> bool {
    move |s| {
        s.first().is_some_and(|d| {
            d["status"]["lastRun"]["phase"] == phase
                && d["status"]["lastHandledRequestedAt"] == request
        })
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_failure_is_told_once_its_recovery_once_and_heartbeats_bracket_every_run() {
    let _docker = docker_lock();
    let t = Setup::new();
    let hc = Receiver::start();
    let volume = format!("hf-notify-{}", std::process::id());
    let _ = common::run(std::process::Command::new("docker").args(["volume", "rm", "-f", &volume]));
    let check = "/5f8a3c1e-8d52-4b7c-9a51-0f1e2d3c4b5a";
    t.write(
        "notifiers.yaml",
        &format!(
            "{}---\n{}",
            notifier(
                "ops",
                &t.hook_url(),
                "  events: [Failed, PartiallyFailed, Recovered, Succeeded]\n  selector: {matchLabels: {tier: prod}}\n"
            ),
            notifier("hc", &format!("healthchecks://127.0.0.1:{}{check}?scheme=http", hc.port), ""),
        ),
    );

    // The volume does not exist: the run fails.
    let _daemon = t.daemon(&["--external-url", "https://backups.example/"]);
    t.run_policy(&volume, "r1", "Failed");
    let got = t.hook.wait_until(Duration::from_secs(20), "Failed", |r| {
        events(r) == ["Failed"]
    });
    let failed = got[0].json();
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(failed["kind"], "BackupPolicy");
    assert_eq!(failed["name"], "p");
    assert_eq!(failed["run"]["phase"], "Failed");
    assert!(
        failed["errors"][0].as_str().unwrap().contains(&volume),
        "the first error line names the volume: {failed:#}"
    );
    assert_eq!(failed["url"], "https://backups.example/api/v1/policies/p");
    let pings = hc.wait_until(Duration::from_secs(20), "start and fail", |r| r.len() >= 2);
    let routes: Vec<&str> = pings.iter().map(Request::route).collect();
    assert_eq!(routes, [format!("{check}/start"), format!("{check}/fail")]);

    // It fails again: nothing new is told, but the heartbeat hears of the run.
    t.run_policy(&volume, "r2", "Failed");
    hc.wait_until(Duration::from_secs(20), "second start and fail", |r| {
        r.len() >= 4
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        events(&t.hook.requests()),
        ["Failed"],
        "a lasting failure is told once"
    );

    // With the volume there it succeeds: Recovered, then Succeeded.
    let _data = FileVolume(volume.clone());
    common::docker(&["volume", "create", &volume]);
    t.run_policy(&volume, "r3", "Succeeded");
    let got = t
        .hook
        .wait_until(Duration::from_secs(20), "recovery", |r| r.len() >= 3);
    assert_eq!(events(&got), ["Failed", "Recovered", "Succeeded"]);
    assert!(got[1].json()["run"]["archiveId"].is_string());
    let pings = hc.wait_until(Duration::from_secs(20), "third start and success", |r| {
        r.len() >= 6
    });
    let routes: Vec<&str> = pings.iter().map(Request::route).collect();
    assert_eq!(routes[4..], [format!("{check}/start"), check.to_string()]);
    // Each run's start and end carry the same run id, and runs differ.
    let rid = |r: &Request| r.path.split("rid=").nth(1).map(str::to_string);
    assert!(rid(&pings[4]).is_some());
    assert_eq!(rid(&pings[4]), rid(&pings[5]));
    assert_ne!(rid(&pings[0]), rid(&pings[4]));
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_failing_receiver_is_retried_then_counted_and_the_run_is_unchanged() {
    let _docker = docker_lock();
    let t = Setup::answering(500);
    // A port nothing listens on.
    let closed = common::free_ports(1)[0];
    let data = FileVolume::new("hf-notify-down-", "kept");
    let broken = format!(
        "generic+http://user:s3cret-pass@127.0.0.1:{}/hook",
        t.hook.port
    );
    t.write(
        "notifiers.yaml",
        &format!(
            "{}---\n{}",
            notifier("broken", &broken, "  events: [Succeeded]\n"),
            notifier(
                "gone",
                &format!("generic+http://127.0.0.1:{closed}/hook"),
                "  events: [Succeeded]\n"
            ),
        ),
    );
    let _daemon = t.daemon(&[]);
    t.run_policy(&data.0, "r1", "Succeeded");
    // Four attempts, a second, two and four apart.
    let got = t
        .hook
        .wait_until(Duration::from_secs(30), "four attempts", |r| r.len() >= 4);
    assert_eq!(got.len(), 4);
    let address = Daemon::api_address(t.dir.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = common::stdout(&common::run(
            std::process::Command::new("curl").args(["-s", &format!("http://{address}/metrics")]),
        ));
        if m.contains(r#"holdfast_notifications_total{notifier="broken",result="failed"} 1"#)
            && m.contains(r#"holdfast_notifications_total{notifier="gone",result="failed"} 1"#)
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{m}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The run stays Succeeded, and the log says why each was not sent, without the password.
    let s = common::daemon::statuses(&t.specs.join("p.status.yaml"));
    assert_eq!(s[0]["status"]["lastRun"]["phase"], "Succeeded");
    let log = fs::read_to_string(t.dir.path().join("daemon.log")).unwrap();
    assert!(log.contains("notification not sent"), "{log}");
    assert!(log.contains("500"), "{log}");
    assert!(!log.contains("s3cret-pass"), "{log}");
    let run_id = s[0]["status"]["lastRun"]["id"].as_str().unwrap();
    let run_log = t
        .dir
        .path()
        .join("state/logs")
        .join(format!("{run_id}.log"));
    let run_log = fs::read_to_string(run_log).unwrap();
    assert!(run_log.contains("notification not sent"), "{run_log}");
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_policy_that_cannot_succeed_becomes_overdue_at_its_time_and_is_told_once() {
    let t = Setup::new();
    // Hourly, so Overdue 90 minutes after it was first seen, as the state database says:
    // 20 seconds from now. Its volume does not exist, so no run could succeed.
    let first_seen = chrono::Utc::now() - chrono::Duration::seconds(90 * 60 - 20);
    let state = t.dir.path().join("state");
    fs::create_dir_all(&state).unwrap();
    {
        let db = holdfast::state::StateDb::open(&state).unwrap();
        db.object("BackupPolicy", "late", first_seen).unwrap();
    }
    t.write(
        "n.yaml",
        &notifier("ops", &t.hook_url(), "  events: [Overdue]\n"),
    );
    let hourly = "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: late\nspec:\n  schedule: '@hourly'\n  targets: {volumes: [hf-notify-missing-volume]}\n";
    t.write("late.yaml", hourly);
    let started = std::time::Instant::now();
    let _daemon = t.daemon(&[]);
    let got = t
        .hook
        .wait_until(Duration::from_secs(60), "Overdue", |r| !r.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(15),
        "told after {waited:?}, before its time"
    );
    let overdue = got[0].json();
    assert_eq!(overdue["event"], "Overdue");
    assert_eq!(overdue["name"], "late");
    assert!(
        overdue["message"]
            .as_str()
            .unwrap()
            .contains("No successful backup yet"),
        "{overdue:#}"
    );
    // More passes (each change of the spec is one) find it still overdue: it was told.
    for i in 0..3 {
        let labelled = hourly.replace(
            "  name: late\n",
            &format!("  name: late\n  labels: {{pass: '{i}'}}\n"),
        );
        t.write("late.yaml", &labelled);
        std::thread::sleep(Duration::from_millis(1500));
    }
    assert_eq!(events(&t.hook.requests()), ["Overdue"]);
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn an_invalid_spec_and_an_unreachable_repository_are_told_once_even_across_a_restart() {
    let t = Setup::new();
    t.write("n.yaml", &notifier("ops", &t.hook_url(), ""));
    let typo = |field: &str, value: &str| {
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: typo\nspec:\n  {field}: '{value}'\n  targets: {{volumes: [v]}}\n"
        )
    };
    t.write("typo.yaml", &typo("schedul", "@daily"));
    // A local repository under a regular file cannot be written.
    fs::write(t.dir.path().join("not-a-folder"), "").unwrap();
    t.write(
        "r.yaml",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: Repository\nmetadata:\n  name: usb\nspec:\n  storage: {{local: {{path: {}}}}}\n",
            t.dir.path().join("not-a-folder/usb").display()
        ),
    );
    let wanted = |r: &[Request]| {
        let mut e = events(r);
        e.sort();
        e == ["RepositoryUnreachable", "SpecInvalid"]
    };
    let told = |event: &str| {
        let found = t
            .hook
            .requests()
            .iter()
            .map(Request::json)
            .find(|j| j["event"] == event);
        found.unwrap()
    };
    {
        let _daemon = t.daemon(&[]);
        t.hook
            .wait_until(Duration::from_secs(30), "both problems", wanted);
        let invalid = told("SpecInvalid");
        assert_eq!(invalid["name"], "typo");
        assert!(
            invalid["message"]
                .as_str()
                .unwrap()
                .contains("typo.yaml:6:3"),
            "the message names the file and line: {invalid:#}"
        );
        let unreachable = told("RepositoryUnreachable");
        assert_eq!(unreachable["kind"], "Repository");
        assert_eq!(unreachable["name"], "usb");
        std::thread::sleep(Duration::from_secs(4));
        assert_eq!(t.hook.requests().len(), 2, "told once, not once per pass");
    }
    // A new daemon on the same state folder remembers what it told.
    let _daemon = t.daemon(&[]);
    let status = t.specs.join("typo.status.yaml");
    wait_for(&status, Duration::from_secs(30), "status", |s| {
        !s.is_empty()
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(t.hook.requests().len(), 2, "a restart repeats nothing");
    // Fixed, then broken again: a new occurrence is told again.
    t.write("typo.yaml", &typo("schedule", "@daily"));
    std::thread::sleep(Duration::from_secs(4));
    t.write("typo.yaml", &typo("schedule", "@dayly"));
    t.hook
        .wait_until(Duration::from_secs(30), "the new problem", |r| r.len() == 3);
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn an_archive_a_verification_finds_corrupt_is_told_once() {
    let _docker = docker_lock();
    let t = Setup::new();
    let data = FileVolume::new("hf-notify-verify-", "kept");
    t.write(
        "n.yaml",
        &notifier("ops", &t.hook_url(), "  events: [VerifyFailed]\n"),
    );
    let _daemon = t.daemon(&[]);
    let s = t.run_policy(&data.0, "r1", "Succeeded");
    let archive = s[0]["status"]["lastRun"]["archiveId"]
        .as_str()
        .unwrap()
        .to_string();
    let repository = t.dir.path().join("repository");
    let folder = common::host_dir(&repository).join("p").join(&archive);
    let artifact = fs::read_dir(folder.join("volumes"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .unwrap();
    let mut bytes = fs::read(&artifact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    fs::write(&artifact, bytes).unwrap();
    let out = common::run(
        common::holdfast()
            .env("HOLDFAST_REPOSITORY", &repository)
            .args(["verify", &archive]),
    );
    assert_eq!(out.status.code(), Some(1), "{}", common::stdout(&out));
    let got = t
        .hook
        .wait_until(Duration::from_secs(30), "VerifyFailed", |r| !r.is_empty());
    let told = got[0].json();
    assert_eq!(told["event"], "VerifyFailed");
    assert_eq!(told["name"], "p");
    assert!(
        told["message"].as_str().unwrap().contains(&archive),
        "{told:#}"
    );
    // Later passes (a spec change is one) still see it Corrupt: it was told.
    t.write("p.yaml", &policy("p", &data.0, "r1", "  suspend: false\n"));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(events(&t.hook.requests()), ["VerifyFailed"]);
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_one_off_backup_tells_its_notifiers_and_remembers_as_the_daemon_does() {
    let _docker = docker_lock();
    let t = Setup::new();
    let hc = Receiver::start();
    t.write(
        "n.yaml",
        &format!(
            "{}---\n{}",
            notifier("ops", &t.hook_url(), ""),
            notifier(
                "hc",
                &format!(
                    "healthchecks://{}/0b4d5e2a-7c61-4f3a-9e8d-2a1b3c4d5e6f?scheme=http",
                    hc.host()
                ),
                ""
            ),
        ),
    );
    // Its volume does not exist: each backup fails.
    t.write(
        "p.yaml",
        &policy("p", "hf-notify-one-off-missing", "r1", ""),
    );
    let backup = || {
        common::run(
            common::holdfast()
                .env("HOLDFAST_SPECS", &t.specs)
                .env("HOLDFAST_STATE", t.dir.path().join("state"))
                .env("HOLDFAST_REPOSITORY", t.dir.path().join("repository"))
                .args(["backup", "p"]),
        )
    };
    // A Notifier whose URL is wrong: the command says it tells nobody.
    t.write("typo.yaml", &notifier("typo", "ntfy://ntfy.example", ""));
    for _ in 0..2 {
        let out = backup();
        let err = common::stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains("Notifier/typo tells nobody, its spec is invalid"),
            "{err}"
        );
    }
    // Sent before the command ended: no waiting here.
    assert_eq!(
        events(&t.hook.requests()),
        ["Failed"],
        "told once, as the daemon would"
    );
    let routes: Vec<String> = hc
        .requests()
        .iter()
        .map(|r| r.route().to_string())
        .collect();
    let check = "/0b4d5e2a-7c61-4f3a-9e8d-2a1b3c4d5e6f";
    let run = [format!("{check}/start"), format!("{check}/fail")];
    assert_eq!(routes, [run.clone(), run].concat());
}
