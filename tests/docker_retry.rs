//! A Docker engine that fails now and then does not fail runs: a proxy in front of the
//! engine's socket answers chosen requests with a 503 or drops the connection, and
//! `holdfast backup` talks to the engine through it.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::env::Env;
use common::*;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Failure {
    /// `503 Service Unavailable`, as an engine that is busy or restarting answers.
    Unavailable,
    /// The connection closed before any answer, as when the engine restarts.
    Dropped,
}

/// Requests whose method is `method` and whose path (after the API version) starts with
/// `prefix` and contains `contains` fail as `failure`, `times` times.
struct Rule {
    method: &'static str,
    prefix: &'static str,
    contains: &'static str,
    failure: Failure,
    times: usize,
    fired: usize,
}

fn rule(
    method: &'static str,
    prefix: &'static str,
    contains: &'static str,
    failure: Failure,
    times: usize,
) -> Rule {
    Rule {
        method,
        prefix,
        contains,
        failure,
        times,
        fired: 0,
    }
}

/// A Unix socket that forwards to the real engine, except for the requests its rules fail.
struct FlakyEngine {
    dir: tempfile::TempDir,
    rules: Arc<Mutex<Vec<Rule>>>,
}

/// The engine's socket, as the `docker` command line finds it.
fn upstream() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if host.starts_with("unix://") => PathBuf::from(&host["unix://".len()..]),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

impl FlakyEngine {
    fn start(rules: Vec<Rule>) -> FlakyEngine {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("docker.sock")).unwrap();
        let rules = Arc::new(Mutex::new(rules));
        let shared = rules.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let rules = shared.clone();
                std::thread::spawn(move || serve(client, &rules));
            }
        });
        FlakyEngine { dir, rules }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    /// How often each rule fired, in the order given.
    fn fired(&self) -> Vec<usize> {
        self.rules.lock().unwrap().iter().map(|r| r.fired).collect()
    }
}

/// One client connection: its first request is failed or forwarded. Forwarded requests
/// ask the engine to close the connection after answering, so that every request arrives
/// on a connection of its own and passes the rules.
fn serve(mut client: UnixStream, rules: &Mutex<Vec<Rule>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut words = text.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    // `/v1.47/containers/…` → `/containers/…`
    let path = match target.strip_prefix("/v") {
        Some(rest) => rest.find('/').map_or(target, |i| &rest[i..]),
        None => target,
    };
    let failure = {
        let mut rules = rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| {
                r.fired < r.times
                    && r.method == method
                    && path.starts_with(r.prefix)
                    && path.contains(r.contains)
            })
            .map(|r| {
                r.fired += 1;
                r.failure
            })
    };
    match failure {
        Some(Failure::Dropped) => return,
        Some(Failure::Unavailable) => {
            let body = r#"{"message":"injected: engine busy"}"#;
            let _ = write!(
                client,
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            return;
        }
        None => {}
    }
    let upgrade = text.to_ascii_lowercase().contains("\nupgrade:");
    let mut forwarded = String::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if !upgrade && line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    if !upgrade {
        forwarded.push_str("Connection: close\r\n");
    }
    forwarded.push_str("\r\n");
    let Ok(mut engine) = UnixStream::connect(upstream()) else {
        return;
    };
    if engine.write_all(forwarded.as_bytes()).is_err() {
        return;
    }
    let (mut from_client, mut to_engine) =
        (client.try_clone().unwrap(), engine.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_engine);
        let _ = to_engine.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut engine, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Both);
}

/// A container that ends at once on SIGTERM.
fn target(tag: &str) -> Busybox {
    Busybox::start("hfretry", tag, QUITS_ON_TERM)
}

fn policy(name: &str, container: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata:
  name: {name}
spec:
  schedule: '0 3 1 1 *'
  targets: {{containers: [{container}]}}
  consistency:
    stop: container
    stopTimeout: 5s
    hooks:
      pre: [{{exec: {{container: {container}, command: [touch, /data/pre-hook-ran]}}}}]
  include: {{recipe: false}}
  output: {{format: tar.gz}}
"
    )
}

fn backup(env: &Env, engine: &FlakyEngine, name: &str) -> (std::process::Output, Value) {
    let out = run(env.holdfast().args([
        "backup",
        name,
        "--docker-host",
        &engine.host(),
        "--archive-via",
        "api",
        "-o",
        "json",
    ]));
    let outcome = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "backup printed no JSON ({e}):\n{}\n{}",
            stdout(&out),
            stderr(&out)
        )
    });
    (out, outcome)
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_run_through_passing_engine_failures_succeeds() {
    if !docker_available() {
        return;
    }
    let t = target("passing");
    let env = Env::new();
    env.spec("flaky", &policy("flaky", &t.name));
    let before = t.started_at();
    use Failure::*;
    let engine = FlakyEngine::start(vec![
        rule("GET", "/containers/json", "", Unavailable, 1),
        rule("GET", "/containers/", "/json", Dropped, 1),
        rule("POST", "/containers/", "/exec", Unavailable, 1),
        rule("GET", "/exec/", "/json", Dropped, 1),
        rule("POST", "/containers/", "/stop", Unavailable, 1),
        rule("GET", "/containers/", "/archive", Dropped, 1),
        rule("POST", "/containers/", "/start", Dropped, 1),
        rule("POST", "/containers/", "/stop", Dropped, 1),
    ]);
    let (out, outcome) = backup(&env, &engine, "flaky");
    assert!(out.status.success(), "{outcome:#}\n{}", stderr(&out));
    assert_eq!(outcome["phase"], "Succeeded", "{outcome:#}");
    assert_eq!(engine.fired(), [1, 1, 1, 1, 1, 1, 1, 1], "{}", stderr(&out));
    assert!(stderr(&out).contains("trying again"), "{}", stderr(&out));
    assert_eq!(t.state(), "running");
    assert_ne!(t.started_at(), before, "the container was never stopped");
    sh_in(&t.name, "test -f /data/pre-hook-ran");
    assert!(journal(&env.state).is_empty());
    assert_eq!(env.manifests().len(), 1);
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_stop_and_start_that_keep_failing_are_reported_and_stay_journalled() {
    if !docker_available() {
        return;
    }
    let t = target("lasting");
    let env = Env::new();
    env.spec("lasting", &policy("lasting", &t.name));
    let engine = FlakyEngine::start(vec![
        rule(
            "POST",
            "/containers/",
            "/stop",
            Failure::Unavailable,
            usize::MAX,
        ),
        rule(
            "POST",
            "/containers/",
            "/start",
            Failure::Unavailable,
            usize::MAX,
        ),
    ]);
    let began = Instant::now();
    let (out, outcome) = backup(&env, &engine, "lasting");
    let took = began.elapsed();
    assert_eq!(out.status.code(), Some(1), "{outcome:#}\n{}", stderr(&out));
    let errors = outcome["errors"].to_string();
    assert!(
        errors.contains("stopping container") && errors.contains("tried 7 times"),
        "{outcome:#}"
    );
    assert!(
        errors.contains("starting container") && errors.contains("injected: engine busy"),
        "{outcome:#}"
    );
    assert_eq!(engine.fired(), [7, 7]);
    // Two calls of at most 20 s each, and the rest of the run.
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert!(env.manifests().is_empty());
    // The start never reached the engine: the stop stays journalled for the next start.
    assert_eq!(journal(&env.state), vec![t.name.clone()]);
    assert_eq!(t.state(), "running");

    // The next command replays the journal against the real engine.
    let out = run(env.holdfast().args(["backup", "lasting", "-o", "json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(journal(&env.state).is_empty());
    assert_eq!(t.state(), "running");
}
