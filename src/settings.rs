//! Daemon-wide settings: the only configuration besides the spec files themselves.
//! Every flag can also be given as an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Clone, Debug, Args)]
pub struct Settings {
    /// The folder of spec files (walked recursively).
    #[arg(
        long,
        global = true,
        env = "HOLDFAST_SPECS",
        default_value = "specs",
        value_name = "DIR"
    )]
    pub specs: PathBuf,

    /// Where holdfast keeps its own state (run history, stop journal, logs).
    #[arg(
        long,
        global = true,
        env = "HOLDFAST_STATE",
        default_value = ".holdfast/state",
        value_name = "DIR"
    )]
    pub state: PathBuf,

    /// The local repository archives are written to.
    #[arg(
        long,
        global = true,
        env = "HOLDFAST_REPOSITORY",
        default_value = ".holdfast/repository",
        value_name = "DIR"
    )]
    pub repository: PathBuf,

    /// This host's name in the repository: archives go to `<repository>/<host>/`, and
    /// retention, pruning and the repository lock concern only that folder. Default: the
    /// machine's host name, made a safe folder name.
    #[arg(long, global = true, env = "HOLDFAST_HOST", value_name = "NAME", value_parser = parse_host)]
    pub host: Option<String>,

    /// Address of the read-only HTTP API and metrics; port 0 picks a free port.
    #[arg(
        long,
        global = true,
        env = "HOLDFAST_LISTEN",
        default_value = "127.0.0.1:9750",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// The Docker endpoint, e.g. unix:///var/run/docker.sock or tcp://host:2375.
    #[arg(long, global = true, env = "DOCKER_HOST", value_name = "URL")]
    pub docker_host: Option<String>,

    /// How volume and bind-mount data is read: from the host folder when readable (auto),
    /// always from the host (direct), or always through Docker's archive API (api).
    #[arg(long, global = true, env = "HOLDFAST_ARCHIVE_VIA", value_enum, default_value_t = ArchiveVia::Auto)]
    pub archive_via: ArchiveVia,

    /// How many runs of each object to keep in the run history, with their log files
    /// (`<state>/logs/<run id>.log`); older ones are forgotten after each run. The runs whose
    /// archives still exist are always kept. 0 keeps every run.
    #[arg(
        long,
        global = true,
        env = "HOLDFAST_HISTORY_LIMIT",
        default_value_t = 50,
        value_name = "N"
    )]
    pub history_limit: usize,

    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, global = true, env = "HOLDFAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Settings {
    /// The host name this process writes under: `--host`, or the machine's host name.
    pub fn host(&self) -> String {
        self.host.clone().unwrap_or_else(machine_host)
    }
}

/// Checks a `--host` value: it becomes one folder name in the repository.
pub fn parse_host(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("a host name cannot be empty".into());
    }
    if name.starts_with('.') {
        return Err(format!(
            "`{name}`: a host name cannot start with `.` (such folders are holdfast's own)"
        ));
    }
    if let Some(c) = name.chars().find(|&c| c == '/' || c.is_control()) {
        return Err(format!(
            "`{}`: a host name cannot contain {c:?}: it is one folder name in the repository",
            name.escape_debug()
        ));
    }
    Ok(name.to_string())
}

/// The machine's host name as a safe folder name: characters other than letters, digits,
/// `-`, `_` and `.` become `-`, and leading dots are dropped.
pub fn machine_host() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    sanitize_host(raw.trim())
}

/// `name` made into a folder name [`parse_host`] accepts; `localhost` when nothing is left.
pub fn sanitize_host(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let safe = safe.trim_start_matches('.');
    if safe.is_empty() {
        "localhost".into()
    } else {
        safe.to_string()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How volume and bind-mount data is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ArchiveVia {
    /// From the host when holdfast can read the folder, through Docker's archive API otherwise.
    #[default]
    Auto,
    /// Always from the host folder; fails when it is not readable.
    Direct,
    /// Always through Docker's archive API (works with a remote Docker host).
    Api,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_one_safe_folder_name() {
        assert_eq!(parse_host("nas-1.lan").unwrap(), "nas-1.lan");
        for bad in ["", ".holdfast", "..", "a/b", "a\0b"] {
            assert!(parse_host(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(sanitize_host("my host/ä"), "my-host--");
        assert_eq!(sanitize_host("..hidden"), "hidden");
        assert_eq!(sanitize_host(""), "localhost");
        assert!(parse_host(&machine_host()).is_ok());
    }
}
