//! `holdfast run` as a test starts it: the real binary on a temporary folder.

use std::ffi::OsStr;
use std::fs;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::holdfast;

pub struct Daemon {
    pub child: Child,
}

impl Daemon {
    /// Starts on `dir`'s `specs`, `state` and `repository`, logging to `dir/daemon.log`.
    pub fn start(dir: &Path, extra: &[&str]) -> Daemon {
        Daemon::start_on(dir, &dir.join("repository"), extra)
    }

    /// Starts on `dir`'s `specs` and `state` and the given repository, which other
    /// daemons may share, logging to `dir/daemon.log`.
    pub fn start_on(dir: &Path, repository: &Path, extra: &[&str]) -> Daemon {
        Daemon::start_with(dir, repository, &[], extra)
    }

    /// As [`Daemon::start_on`], with these environment variables set too (systemd's
    /// `NOTIFY_SOCKET`, a fault to inject).
    pub fn start_with(
        dir: &Path,
        repository: &Path,
        env: &[(&str, &OsStr)],
        extra: &[&str],
    ) -> Daemon {
        let log = fs::File::create(dir.join("daemon.log")).unwrap();
        let child = holdfast()
            .envs(env.iter().copied())
            .env("HOLDFAST_SPECS", dir.join("specs"))
            .env("HOLDFAST_STATE", dir.join("state"))
            .env("HOLDFAST_REPOSITORY", repository)
            .arg("run")
            // A free port each, as tests run side by side, unless the test picks.
            .args(if extra.contains(&"--listen") {
                &[][..]
            } else {
                &["--listen", "127.0.0.1:0"][..]
            })
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon { child }
    }

    pub fn signal(&self, sig: &str) {
        let signal = match sig {
            "TERM" => libc::SIGTERM,
            "KILL" => libc::SIGKILL,
            "INT" => libc::SIGINT,
            other => panic!("unknown signal {other}"),
        };
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill -{sig} failed");
    }

    /// Waits for the daemon to exit; returns its exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a status file as JSON values, one per document.
pub fn statuses(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let Ok(text) = fs::read_to_string(path) else {
        return Vec::new();
    };
    serde_yaml_ng::Deserializer::from_str(&text)
        .filter_map(|d| serde_yaml_ng::Value::deserialize(d).ok())
        .filter_map(|v| serde_json::to_value(v).ok())
        .collect()
}

/// Polls until `check` holds for the status file, or panics with the last content.
pub fn wait_for(
    path: &Path,
    limit: Duration,
    what: &str,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let s = statuses(path);
        if check(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: status never matched; last:\n{}",
            fs::read_to_string(path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Daemon {
    /// The address of its HTTP API, from the log line that announces it.
    pub fn api_address(dir: &Path) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
            if let Some(at) = log.find("listening on http://") {
                let rest = &log[at + "listening on http://".len()..];
                let end = rest.find('/').unwrap();
                return rest[..end].to_string();
            }
            assert!(
                Instant::now() < deadline,
                "the daemon never said where it listens:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
