//! The HTTP API and the metrics of the real binary, on a random port, while it backs up a
//! real Compose stack.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::daemon::*;
use common::http::Answer;
use common::metrics::{KNOWN_METRICS, MetricType};
use common::*;
use serde_json::Value;

const SECRET: &str = "hunter2-api-secret";

fn request(addr: &str, method: &str, path: &str, token: Option<&str>) -> Answer {
    common::http::request(addr, method, path, token)
}

fn get(addr: &str, path: &str) -> Answer {
    common::http::get(addr, path)
}

/// Reads server-sent events on a thread; each arrives as (event name, data).
fn subscribe(addr: &str, path: &str) -> mpsc::Receiver<(String, String)> {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        let mut event = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            let text = line.trim_end();
            if let Some(name) = text.strip_prefix("event: ") {
                event = name.to_string();
            } else if let Some(data) = text.strip_prefix("data: ")
                && tx.send((event.clone(), data.to_string())).is_err()
            {
                return;
            }
            line.clear();
        }
    });
    rx
}

fn next_event(
    rx: &mpsc::Receiver<(String, String)>,
    seen: &mut String,
    what: &str,
    check: impl Fn(&str, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (name, data) = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("{what}: no such event; seen:\n{seen}"));
        seen.push_str(&format!("{name}: {data}\n"));
        let value: Value = serde_json::from_str(&data).unwrap();
        if check(&name, &value) {
            return value;
        }
    }
}

fn layout() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    fs::create_dir_all(specs.join("apps")).unwrap();
    (dir, specs)
}

fn web_policy(project: &str, request: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata:
  name: web
{request}spec:
  schedule: '0 3 1 1 *'
  targets: {{stacks: [{project}]}}
  retention: {{keepLast: 5}}
  verify: {{afterRun: true}}
  consistency:
    stop: stack
    hooks:
      pre:
        # Keeps the run going long enough to follow it.
        - exec: {{service: web, command: [sleep, '3']}}
"
    )
}

fn secretive_policy(project: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata:
  name: secretive
spec:
  schedule: '0 3 1 1 *'
  targets: {{stacks: [{project}]}}
  dumps:
    - {{service: db, engine: postgres, password: {{value: {SECRET}}}}}
"
    )
}

/// The value of the sample with exactly these name and labels.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let value = l.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn the_api_and_metrics_follow_a_real_backup() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hfapi{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    let (dir, specs) = layout();
    let spec = specs.join("apps/web.yaml");
    fs::write(&spec, web_policy(&project, "")).unwrap();
    fs::write(
        specs.join("apps/secretive.yaml"),
        secretive_policy(&project),
    )
    .unwrap();
    // A short resync: the daemon must notice what `holdfast verify` finds.
    let _daemon = Daemon::start(dir.path(), &["--resync", "1s"]);
    let addr = Daemon::api_address(dir.path());

    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&addr, "/readyz").status != 200 {
        assert!(
            Instant::now() < deadline,
            "{}",
            get(&addr, "/readyz").text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(&addr, "/healthz").text(), "ok\n");
    let events = subscribe(&addr, "/api/v1/events");
    // The subscription is in place once the server has answered another request after it.
    std::thread::sleep(Duration::from_millis(300));
    let mut seen = String::new();

    // A new requested-at runs the policy now.
    fs::write(
        &spec,
        web_policy(
            &project,
            "  annotations: {holdfast.dev/requested-at: 'api'}\n",
        ),
    )
    .unwrap();
    let started = next_event(&events, &mut seen, "runStarted", |name, v| {
        name == "runStarted" && v["name"] == "web"
    });
    let run_id = started["runId"].as_str().unwrap().to_string();
    let run = get(&addr, &format!("/api/v1/runs/{run_id}")).json();
    assert_eq!(run["phase"], "Running", "{run}");

    // Its log, followed while it runs, until it ends.
    let log = subscribe(&addr, &format!("/api/v1/runs/{run_id}/log/follow"));
    let (name, first) = log.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(name, "line");
    assert!(first.contains("run started"), "{first}");
    let phase_then = get(&addr, &format!("/api/v1/runs/{run_id}")).json()["phase"].clone();
    assert_eq!(
        phase_then, "Running",
        "the first line came after the run ended"
    );
    let mut lines = vec![first];
    let end = loop {
        let (name, data) = log.recv_timeout(Duration::from_secs(120)).unwrap();
        if name == "end" {
            break data;
        }
        lines.push(data);
    };
    assert_eq!(end, r#"{"phase":"Succeeded"}"#, "{lines:#?}");
    assert!(
        lines.last().unwrap().contains("run succeeded"),
        "{lines:#?}"
    );
    for (i, line) in lines.iter().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["n"], i + 1, "{lines:#?}");
    }
    // The same log, read whole and from a line on.
    let whole = get(&addr, &format!("/api/v1/runs/{run_id}/log")).json();
    assert_eq!(whole["lines"].as_array().unwrap().len(), lines.len());
    assert_eq!(whole["complete"], true);
    let tail = get(&addr, &format!("/api/v1/runs/{run_id}/log?from=2")).json();
    assert_eq!(tail["lines"].as_array().unwrap().len(), lines.len() - 1);

    let finished = next_event(&events, &mut seen, "runFinished", |name, v| {
        name == "runFinished" && v["runId"] == run_id.as_str()
    });
    assert_eq!(finished["phase"], "Succeeded");
    let archive = finished["archiveId"].as_str().unwrap().to_string();
    next_event(&events, &mut seen, "statusChanged", |name, v| {
        name == "statusChanged" && v["name"] == "web" && v["reason"] == "Succeeded"
    });

    // The metrics say what the manifest says.
    let manifest: Value = serde_json::from_str(
        &fs::read_to_string(
            host_dir(&dir.path().join("repository"))
                .join("web")
                .join(&archive)
                .join("manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let bytes: u64 = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["size"].as_u64().unwrap())
        .sum();
    assert!(bytes > 0);
    // Byte counts say which bytes: read from the sources, or stored in the repository.
    assert_eq!(finished["storedBytes"], bytes, "{finished}");
    assert!(
        finished["sourceBytes"].as_u64().is_some_and(|b| b > 0),
        "{finished}"
    );
    assert!(finished.get("bytes").is_none(), "{finished}");
    let progress: Vec<Value> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("runProgress: "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!progress.is_empty(), "{seen}");
    for p in &progress {
        assert!(p["sourceBytes"].is_u64() && p.get("bytes").is_none(), "{p}");
    }
    let run = get(&addr, &format!("/api/v1/runs/{run_id}")).json();
    assert_eq!(run["storedBytes"], bytes, "{run}");
    assert_eq!(run["sourceBytes"], finished["sourceBytes"], "{run}");
    let completed = chrono::DateTime::parse_from_rfc3339(run["completionTime"].as_str().unwrap())
        .unwrap()
        .timestamp_millis() as f64
        / 1000.0;
    // Metrics are published after the pass that follows the run, the per-object gauges
    // and the pass's own (runs in progress) one after the other: poll briefly for both.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let m = get(&addr, "/metrics");
        let published = sample(
            &m.text(),
            r#"holdfast_last_success_timestamp_seconds{kind="BackupPolicy",name="web"}"#,
        )
        .is_some()
            && sample(&m.text(), "holdfast_runs_in_progress") == Some(0.0);
        if published || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        metrics
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{}",
        metrics.head
    );
    let m = &metrics.text();
    let web = r#"{kind="BackupPolicy",name="web"}"#;
    assert_eq!(
        sample(
            m,
            r#"holdfast_runs_total{kind="BackupPolicy",name="web",phase="Succeeded"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(m, &format!("holdfast_run_archived_bytes_sum{web}")),
        Some(bytes as f64),
        "{m}"
    );
    assert_eq!(
        sample(m, &format!("holdfast_run_archived_bytes_count{web}")),
        Some(1.0)
    );
    let last_success = sample(m, &format!("holdfast_last_success_timestamp_seconds{web}"))
        .unwrap_or_else(|| panic!("no last success:\n{m}"));
    assert!(
        (last_success - completed).abs() < 1.0,
        "{last_success} vs {completed}"
    );
    assert_eq!(
        sample(m, &format!("holdfast_last_run_failed{web}")),
        Some(0.0)
    );
    // Yearly: the longest of the next gaps, a leap year's.
    assert_eq!(
        sample(m, &format!("holdfast_schedule_interval_seconds{web}")),
        Some(366.0 * 86400.0)
    );
    assert_eq!(
        sample(m, r#"holdfast_archives{name="web"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(m, r#"holdfast_archives_bytes{name="web"}"#),
        Some(bytes as f64)
    );
    assert_eq!(
        sample(m, r#"holdfast_spec_errors{file="apps/web.yaml"}"#),
        Some(0.0)
    );
    assert_eq!(sample(m, "holdfast_runs_in_progress"), Some(0.0));
    // Verified right after the run.
    assert_eq!(
        sample(m, r#"holdfast_verifications_total{name="web",result="ok"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        sample(m, &format!("holdfast_stack_downtime_seconds_count{web}")),
        Some(1.0)
    );
    // Every metric the alert rules and the dashboard may use is served; Docker errors
    // only once there was one (their operation is the label), notifications once one was
    // sent (tests/notify_daemon.rs reads them), repository gauges only with Repository
    // specs (tests/remote.rs reads them), what a run added and its dedup ratio only after a
    // run into a restic repository (a unit test of src/metrics.rs reads them).
    for (name, kind) in KNOWN_METRICS {
        if *name == "holdfast_docker_api_errors_total"
            || *name == "holdfast_notifications_total"
            || name.starts_with("holdfast_repository_")
            || *name == "holdfast_last_run_added_bytes"
            || *name == "holdfast_last_run_dedup_ratio"
        {
            continue;
        }
        let family = match kind {
            MetricType::Counter => name.strip_suffix("_total").unwrap(),
            MetricType::Gauge if name.ends_with("_info") => name.strip_suffix("_info").unwrap(),
            _ => name,
        };
        assert!(
            m.lines()
                .any(|l| l.starts_with(&format!("# TYPE {family} "))),
            "{name} is not served:\n{m}"
        );
    }

    // The state API agrees.
    let policy = get(&addr, "/api/v1/policies/web").json();
    assert_eq!(policy["status"]["lastRun"]["id"], run_id.as_str());
    assert_eq!(policy["status"]["lastRun"]["phase"], "Succeeded");
    assert_eq!(policy["file"], "apps/web.yaml");
    let list = get(&addr, "/api/v1/policies").json();
    assert_eq!(list["total"], 2);
    let runs = get(&addr, "/api/v1/runs?policy=web&phase=Succeeded").json();
    assert_eq!(runs["items"][0]["id"], run_id.as_str());
    let catalog = get(&addr, "/api/v1/catalog?name=web").json();
    assert_eq!(catalog["items"][0]["id"], archive.as_str());
    assert_eq!(catalog["items"][0]["health"], "Good");
    assert_eq!(
        catalog["items"][0]["host"],
        holdfast::settings::machine_host().as_str()
    );
    let stacks = get(&addr, "/api/v1/stacks").json();
    assert!(
        stacks["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == project.as_str()),
        "{stacks}"
    );

    assert!(catalog["items"][0]["verified"].is_string(), "{catalog}");

    // `holdfast verify` reads it back; a flipped byte of the same size makes it Corrupt.
    let repo = |cmd: &mut std::process::Command| {
        cmd.env("HOLDFAST_REPOSITORY", dir.path().join("repository"));
    };
    let mut verify = holdfast();
    repo(&mut verify);
    let out = common::run(verify.args(["verify", &archive]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("{archive}: ok")),
        "{}",
        stdout(&out)
    );
    let volume = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "volume")
        .unwrap()["path"]
        .as_str()
        .unwrap()
        .to_string();
    let artifact = host_dir(&dir.path().join("repository"))
        .join("web")
        .join(&archive)
        .join(&volume);
    let mut data = fs::read(&artifact).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 0x55;
    fs::write(&artifact, data).unwrap();
    let mut verify = holdfast();
    repo(&mut verify);
    let out = common::run(verify.args(["verify", &archive]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("CORRUPT"), "{}", stdout(&out));
    assert!(stderr(&out).contains(&volume), "{}", stderr(&out));
    // The daemon sees it at its next resync: in its catalog (which the API serves), in
    // the metrics and in the status.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let catalog = get(&addr, "/api/v1/catalog?name=web").json();
        if catalog["items"][0]["health"] == "Corrupt" {
            break;
        }
        assert!(Instant::now() < deadline, "{catalog}");
        std::thread::sleep(Duration::from_millis(200));
    }
    while sample(
        &get(&addr, "/metrics").text(),
        r#"holdfast_archives_corrupt{name="web"}"#,
    ) != Some(1.0)
    {
        assert!(
            Instant::now() < deadline,
            "the corrupt archive never showed in the metrics"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let policy = get(&addr, "/api/v1/policies/web").json();
    assert_eq!(
        policy["status"]["archives"]["corrupt"][0],
        archive.as_str(),
        "{policy:#}"
    );

    // Errors are JSON; writes are refused.
    let missing = get(&addr, "/api/v1/runs/web-20000101T000000.000Z");
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json()["error"],
        "no run \"web-20000101T000000.000Z\""
    );
    let post = request(&addr, "POST", "/api/v1/policies", None);
    assert_eq!(post.status, 405);
    assert!(post.head.to_ascii_lowercase().contains("allow: get, head"));
    assert_eq!(
        request(&addr, "DELETE", &format!("/api/v1/runs/{run_id}"), None).status,
        405
    );

    // No answer carries the secret in the spec.
    let secretive = get(&addr, "/api/v1/policies/secretive").json();
    assert_eq!(
        secretive["spec"]["dumps"][0]["password"]["value"],
        "<redacted>"
    );
    for path in [
        "/api/v1/policies",
        "/api/v1/policies/secretive",
        "/api/v1/runs",
        "/api/v1/catalog",
        "/api/v1/stacks",
        "/api/v1/openapi.json",
        "/metrics",
    ] {
        let answer = get(&addr, path);
        assert_eq!(answer.status, 200, "{path}");
        assert!(!answer.text().contains(SECRET), "{path} carries the secret");
    }
    assert!(!seen.contains(SECRET));
    drop(stack);
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn off_loopback_the_api_needs_a_token() {
    // Refused before anything starts, Docker or not.
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("specs")).unwrap();
    let output = run(holdfast()
        .env("HOLDFAST_SPECS", dir.path().join("specs"))
        .env("HOLDFAST_STATE", dir.path().join("state"))
        .args(["run", "--listen", "0.0.0.0:0"]));
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("--api-token-file"), "{err}");
    assert!(!dir.path().join("state").exists(), "it started anyway");

    if !docker_available() {
        return;
    }
    let token = dir.path().join("token");
    fs::write(&token, "correct-horse\n").unwrap();
    let token_arg = token.to_string_lossy().into_owned();
    let _daemon = Daemon::start(
        dir.path(),
        &["--listen", "0.0.0.0:0", "--api-token-file", &token_arg],
    );
    let addr = Daemon::api_address(dir.path());
    assert!(addr.starts_with("0.0.0.0:"), "{addr}");
    assert_eq!(get(&addr, "/api/v1/policies").status, 401);
    assert_eq!(
        request(&addr, "GET", "/api/v1/policies", Some("wrong")).status,
        401
    );
    assert_eq!(
        request(&addr, "GET", "/api/v1/policies", Some("correct-horse")).status,
        200
    );
    assert_eq!(
        request(&addr, "GET", "/metrics", Some("correct-horse")).status,
        200
    );
    assert_eq!(get(&addr, "/healthz").status, 200);

    // The 401 says which header to send, never redacted, and never echoes a token.
    let refused = request(&addr, "GET", "/api/v1/policies", Some("wrong-guess"));
    let error = refused.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("`Authorization: Bearer <token>`"), "{error}");
    assert!(!refused.text().contains("wrong-guess") && !refused.text().contains("correct-horse"));

    // Every refusal is the same JSON shape, whatever refused it.
    for (path, status) in [
        ("/api/v1/policies?limit=1&limit=2", 400),
        ("/api/v1/backups?name=a&name=b", 400),
        ("/api/v1/policies/%FF", 400),
        ("/api/v1/nowhere", 404),
    ] {
        let answer = request(&addr, "GET", path, Some("correct-horse"));
        assert_eq!(answer.status, status, "{path}: {}", answer.text());
        assert!(
            answer
                .head
                .to_lowercase()
                .contains("content-type: application/json"),
            "{path}: {}",
            answer.head
        );
        let body = answer.json();
        assert!(
            body.as_object().is_some_and(|o| o.len() == 1) && body["error"].is_string(),
            "{path}: {body}"
        );
    }
    // The backups under their own name, and the catalog as before.
    let backups = request(&addr, "GET", "/api/v1/backups", Some("correct-horse"));
    assert_eq!(backups.status, 200);
    let catalog = request(&addr, "GET", "/api/v1/catalog", Some("correct-horse"));
    assert_eq!(backups.json(), catalog.json());
}
