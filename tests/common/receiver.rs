//! A stand-in for the services holdfast notifies: `tests/receivers/http_receiver.py` on a
//! free loopback port, answering every request with one status and body and recording
//! each (method, path, query, headers, body), so a test checks what was sent and how
//! holdfast copes with a service that fails. Stopped when dropped.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::crate_root;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The path with its query, e.g. `/ping/uuid/start?rid=…`.
    pub path: String,
    /// Header names in lowercase.
    pub headers: serde_json::Map<String, Value>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The path without its query.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
}

pub struct Receiver {
    child: Child,
    log: PathBuf,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// A receiver answering 200 `{"ok":true}`.
    pub fn start() -> Receiver {
        Receiver::answering(200, r#"{"ok":true}"#)
    }

    pub fn answering(status: u16, body: &str) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let port_file = dir.path().join("port");
        let child = Command::new("python3")
            .arg(crate_root().join("tests/receivers/http_receiver.py"))
            .arg("--log")
            .arg(&log)
            .arg("--port-file")
            .arg(&port_file)
            .args(["--status", &status.to_string(), "--body", body])
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 runs the test receiver");
        let started = Instant::now();
        let port = loop {
            if let Ok(text) = fs::read_to_string(&port_file) {
                break text.trim().parse().unwrap();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the receiver did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Receiver {
            child,
            log,
            port,
            _dir: dir,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every request received, in order, as the receiver recorded it.
    pub fn records(&self) -> Vec<Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.records()
            .into_iter()
            .map(|r| {
                let query = r["query"].as_str().unwrap_or("");
                let path = r["path"].as_str().unwrap_or("");
                Request {
                    method: r["method"].as_str().unwrap_or("").to_string(),
                    path: if query.is_empty() {
                        path.to_string()
                    } else {
                        format!("{path}?{query}")
                    },
                    headers: r["headers"].as_object().cloned().unwrap_or_default(),
                    body: r["body"].as_str().unwrap_or("").to_string(),
                }
            })
            .collect()
    }

    /// Waits up to `limit` until `check` holds for the requests so far; panics with them
    /// otherwise.
    pub fn wait_until(
        &self,
        limit: Duration,
        what: &str,
        check: impl Fn(&[Request]) -> bool,
    ) -> Vec<Request> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.requests();
            if check(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: never seen; requests so far: {:#?}",
                got.iter().map(|r| (&r.method, &r.path)).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
