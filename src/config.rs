//! The configuration file: the settings of the flags written once, for every command and
//! the daemon, so that `holdfast plan` run from any folder looks where the daemon does.
//!
//! It is YAML with the flags' names in camelCase (`specs`, `dockerHost`, ...). Its values
//! become the flags' defaults: a flag wins over its environment variable, which wins over
//! the file, which wins over the built-in default. A key that is not a setting, or a value
//! the flag would refuse, is an error naming the file, line, column and key. Relative paths
//! in it are relative to the file's folder, not to where a command runs.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::settings::{ArchiveVia, LogFormat};
use crate::spec::HumanDuration;

/// Read when neither `--config` nor `HOLDFAST_CONFIG` names a file, if it exists.
pub const DEFAULT_PATH: &str = "/etc/holdfast/holdfast.yaml";

/// Files larger than this are refused: a configuration is a few lines.
const MAX_BYTES: u64 = 64 * 1024;

/// The settings a configuration file may hold, checked as the flags check them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    specs: Option<PathBuf>,
    state: Option<PathBuf>,
    repository: Option<PathBuf>,
    #[serde(default, deserialize_with = "host")]
    host: Option<String>,
    #[serde(default, deserialize_with = "host_labels")]
    host_labels: Option<String>,
    listen: Option<SocketAddr>,
    docker_host: Option<String>,
    docker_tls_verify: Option<bool>,
    docker_cert_path: Option<PathBuf>,
    archive_via: Option<ArchiveVia>,
    #[serde(default, deserialize_with = "archive_parallelism")]
    archive_parallelism: Option<usize>,
    history_limit: Option<usize>,
    log_format: Option<LogFormat>,
    status_dir: Option<PathBuf>,
    max_concurrent_runs: Option<usize>,
    #[serde(default, deserialize_with = "shutdown_timeout")]
    shutdown_timeout: Option<HumanDuration>,
    #[serde(default, deserialize_with = "resync")]
    resync: Option<HumanDuration>,
    api_token_file: Option<PathBuf>,
}

/// The keys [`File`] accepts, for did-you-mean hints.
const KEYS: [&str; 18] = [
    "specs",
    "state",
    "repository",
    "host",
    "hostLabels",
    "listen",
    "dockerHost",
    "dockerTlsVerify",
    "dockerCertPath",
    "archiveVia",
    "archiveParallelism",
    "historyLimit",
    "logFormat",
    "statusDir",
    "maxConcurrentRuns",
    "shutdownTimeout",
    "resync",
    "apiTokenFile",
];

// Checks of their own name their key: serde says it only for its own errors.

fn host<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let name = String::deserialize(d)?;
    crate::settings::parse_host(&name)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("host: {e}")))
}

/// `hostLabels: role=nas,site=home`, written and checked as `--host-labels` is.
fn host_labels<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    crate::settings::parse_host_labels(&text)
        .map_err(|e| serde::de::Error::custom(format!("hostLabels: {e}")))?;
    Ok(Some(text))
}

/// `archiveParallelism: 4`, checked as `--archive-parallelism` is.
fn archive_parallelism<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let n = usize::deserialize(d)?;
    crate::settings::parse_parallelism(&n.to_string())
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("archiveParallelism: {e}")))
}

fn duration<'de, D: serde::Deserializer<'de>>(
    key: &str,
    d: D,
) -> Result<Option<HumanDuration>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse()
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("{key}: {e}")))
}

fn shutdown_timeout<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<HumanDuration>, D::Error> {
    duration("shutdownTimeout", d)
}

fn resync<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<HumanDuration>, D::Error> {
    duration("resync", d)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: larger than {MAX_BYTES} bytes; a configuration file is a few lines")]
    TooLarge { path: PathBuf },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// A configuration file read and checked.
#[derive(Debug, Default)]
pub struct Config {
    /// The file, if one was read.
    pub path: Option<PathBuf>,
    /// Each setting as (the flag's argument id, its value as the flag would be given).
    pub defaults: Vec<(&'static str, String)>,
}

/// The file `args` (the command line) or the environment names, else [`DEFAULT_PATH`]
/// when it exists; `None` for none. An empty name reads none.
pub fn locate(args: &[OsString], env: Option<OsString>) -> Option<PathBuf> {
    let mut named = None;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            named = rest.next().cloned();
        } else if let Some(value) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            named = Some(value.into());
        }
    }
    match named.or(env) {
        Some(name) if name.is_empty() => None,
        Some(name) => Some(PathBuf::from(name)),
        None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
    }
}

/// Reads and checks the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let read = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > MAX_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let folder = path.parent().unwrap_or(Path::new(""));
    let mut config =
        parse(&text, folder).map_err(|(line, column, message)| ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message,
        })?;
    config.path = Some(path.to_path_buf());
    Ok(config)
}

/// The settings in `text`, paths taken relative to `folder`; or where and why not.
fn parse(text: &str, folder: &Path) -> Result<Config, (usize, usize, String)> {
    // An empty file (or one of comments) sets nothing.
    let file: File = if text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    }) {
        File::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            (line, column, message(&e.to_string()))
        })?
    };
    let path = |p: PathBuf| folder.join(p).display().to_string();
    let mut defaults = Vec::new();
    let mut set = |id: &'static str, value: Option<String>| {
        if let Some(value) = value {
            defaults.push((id, value));
        }
    };
    set("specs", file.specs.map(path));
    set("state", file.state.map(path));
    set("repository", file.repository.map(path));
    set("host", file.host);
    set("host_labels", file.host_labels);
    set("listen", file.listen.map(|a| a.to_string()));
    set("docker_host", file.docker_host);
    set(
        "docker_tls_verify",
        file.docker_tls_verify.map(|b| b.to_string()),
    );
    set("docker_cert_path", file.docker_cert_path.map(path));
    set("archive_via", file.archive_via.map(|v| value_name(&v)));
    set(
        "archive_parallelism",
        file.archive_parallelism.map(|n| n.to_string()),
    );
    set("history_limit", file.history_limit.map(|n| n.to_string()));
    set("log_format", file.log_format.map(|v| value_name(&v)));
    set("status_dir", file.status_dir.map(path));
    set(
        "max_concurrent_runs",
        file.max_concurrent_runs.map(|n| n.to_string()),
    );
    set(
        "shutdown_timeout",
        file.shutdown_timeout.map(|d| d.to_string()),
    );
    set("resync", file.resync.map(|d| d.to_string()));
    set("api_token_file", file.api_token_file.map(path));
    Ok(Config {
        path: None,
        defaults,
    })
}

/// The name clap knows a value by (`auto`, `json`).
fn value_name(value: &impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// serde's message without its trailing position (said first, as `file:line:column`), with
/// a did-you-mean for a misspelt key.
fn message(text: &str) -> String {
    let text = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => text,
    };
    let hint = text
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
        .and_then(|key| crate::diagnostic::did_you_mean(key, KEYS))
        .map(|h| format!(" (hint: {h})"))
        .unwrap_or_default();
    let text = match text.find(", expected one of") {
        Some(at) if text.starts_with("unknown field") => {
            format!("{}: not a setting", &text[..at])
        }
        _ => text.replace("struct File", "a mapping of settings (`key: value` lines)"),
    };
    format!("{text}{hint}")
}

impl Config {
    /// `command` with this file's settings as the defaults of the flags that take them,
    /// wherever they are (the root's global flags, each subcommand's own, and those of
    /// commands of commands such as `bundle create`).
    pub fn apply(&self, mut command: clap::Command) -> clap::Command {
        for (id, value) in &self.defaults {
            if command.get_arguments().any(|a| a.get_id() == *id) {
                command = command.mut_arg(*id, |a| a.default_value(value.clone()));
            }
        }
        let names: Vec<String> = command
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        for name in names {
            command = command.mut_subcommand(name, |s| self.apply(s));
        }
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(config: &'a Config, id: &str) -> Option<&'a str> {
        config
            .defaults
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn settings_become_flag_values_with_paths_beside_the_file() {
        let text = "specs: specs\nstate: /var/lib/holdfast/state\nhost: nas\nlisten: 0.0.0.0:9750\n\
                    archiveVia: api\nhistoryLimit: 7\nlogFormat: json\nshutdownTimeout: 2m\n";
        let config = parse(text, Path::new("/etc/holdfast")).unwrap();
        assert_eq!(value(&config, "specs"), Some("/etc/holdfast/specs"));
        assert_eq!(value(&config, "state"), Some("/var/lib/holdfast/state"));
        assert_eq!(value(&config, "host"), Some("nas"));
        assert_eq!(value(&config, "listen"), Some("0.0.0.0:9750"));
        assert_eq!(value(&config, "archive_via"), Some("api"));
        assert_eq!(value(&config, "history_limit"), Some("7"));
        assert_eq!(value(&config, "log_format"), Some("json"));
        assert!(value(&config, "shutdown_timeout").is_some());
        assert_eq!(value(&config, "repository"), None);
        assert!(
            parse("# nothing yet\n", Path::new(""))
                .unwrap()
                .defaults
                .is_empty()
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_say_where_and_what() {
        let (line, column, message) = parse("specs: s\nrepositry: r\n", Path::new("")).unwrap_err();
        assert_eq!((line, column), (2, 1));
        assert_eq!(
            message,
            "unknown field `repositry`: not a setting (hint: did you mean `repository`?)"
        );
        let (line, _, message) = parse("listen: nowhere\n", Path::new("")).unwrap_err();
        assert_eq!(line, 1);
        assert!(message.contains("listen"), "{message}");
        let (line, _, message) = parse("\nhost: .hidden\n", Path::new("")).unwrap_err();
        assert_eq!(line, 2);
        assert!(message.contains("cannot start with `.`"), "{message}");
        let (_, _, message) = parse("archiveVia: sometimes\n", Path::new("")).unwrap_err();
        assert!(message.contains("archiveVia"), "{message}");
        let (_, _, message) = parse("archiveParallelism: 0\n", Path::new("")).unwrap_err();
        assert!(message.starts_with("archiveParallelism: "), "{message}");
        let config = parse("archiveParallelism: 3\n", Path::new("")).unwrap();
        assert_eq!(value(&config, "archive_parallelism"), Some("3"));
    }

    #[test]
    fn docker_tls_settings_become_the_flags_defaults() {
        let config = parse(
            "dockerHost: tcp://nas:2376\ndockerTlsVerify: true\ndockerCertPath: docker-certs\n",
            Path::new("/etc/holdfast"),
        )
        .unwrap();
        assert_eq!(value(&config, "docker_tls_verify"), Some("true"));
        assert_eq!(
            value(&config, "docker_cert_path"),
            Some("/etc/holdfast/docker-certs")
        );
        let (_, _, message) = parse("dockerTlsVerify: maybe\n", Path::new("")).unwrap_err();
        assert!(message.contains("dockerTlsVerify"), "{message}");
        let (_, _, message) = parse("dockerTls: true\n", Path::new("")).unwrap_err();
        assert!(message.contains("did you mean"), "{message}");
    }

    #[test]
    fn host_labels_are_written_as_the_flag_takes_them() {
        let config = parse("hostLabels: role=nas,site=home\n", Path::new("")).unwrap();
        assert_eq!(value(&config, "host_labels"), Some("role=nas,site=home"));
        let (_, _, message) = parse(
            "host: nas\nhostLabels: holdfast.dev/hostname=x\n",
            Path::new(""),
        )
        .unwrap_err();
        assert!(message.starts_with("hostLabels: "), "{message}");
        assert!(message.contains("set by holdfast"), "{message}");
        let (_, _, message) = parse("hostLabels: {role: nas}\n", Path::new("")).unwrap_err();
        assert!(message.contains("string"), "{message}");
    }

    #[test]
    fn the_file_is_named_by_flag_then_environment_then_the_default() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let env = Some(OsString::from("/env.yaml"));
        assert_eq!(
            locate(
                &args(&["holdfast", "plan", "--config", "a.yaml"]),
                env.clone()
            ),
            Some(PathBuf::from("a.yaml"))
        );
        assert_eq!(
            locate(&args(&["holdfast", "--config=b.yaml", "plan"]), env.clone()),
            Some(PathBuf::from("b.yaml"))
        );
        assert_eq!(
            locate(&args(&["holdfast", "plan"]), env),
            Some(PathBuf::from("/env.yaml"))
        );
        assert_eq!(
            locate(&args(&["holdfast", "plan", "--config", ""]), None),
            None
        );
        assert_eq!(
            locate(
                &args(&["holdfast", "validate", "--", "--config", "x"]),
                Some("".into())
            ),
            None
        );
    }
}
