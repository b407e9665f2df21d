//! Daemon-wide settings: the only configuration besides the spec files themselves.
//!
//! Each command takes only the flags it uses, from small groups flattened into its
//! arguments (a flag a command does not use is a usage error, not silently ignored). Every
//! flag can also be given as an environment variable or in the configuration file (read
//! by the command line before these groups are parsed); a flag wins over its variable,
//! which wins over the file, which wins over the default. What a command was given is gathered into one [`Settings`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// The default of `--specs`.
pub const DEFAULT_SPECS: &str = "specs";
/// The default of `--state`.
pub const DEFAULT_STATE: &str = ".holdfast/state";
/// The default of `--repository`.
pub const DEFAULT_REPOSITORY: &str = ".holdfast/repository";
/// The default of `--listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9750";
/// The default of `--history-limit`.
pub const DEFAULT_HISTORY_LIMIT: usize = 50;

/// The settings a command runs with: what its flags, their variables and the configuration
/// file gave, and the defaults for the rest (which that command does not read).
#[derive(Clone, Debug)]
pub struct Settings {
    pub specs: PathBuf,
    pub state: PathBuf,
    pub repository: PathBuf,
    pub host: Option<String>,
    /// `--host-labels`, as given (without the hostname label, which [`Settings::host_labels`] adds).
    pub host_labels: BTreeMap<String, String>,
    pub listen: SocketAddr,
    /// `--docker-host` and its TLS files.
    pub docker: DockerEndpoint,
    pub archive_via: ArchiveVia,
    /// `--archive-parallelism`; `None`: the number of cores.
    pub archive_parallelism: Option<usize>,
    pub history_limit: usize,
    pub log_format: LogFormat,
    /// The repository read or changed: `default` (the `--repository` folder) or the name
    /// of a Repository spec.
    pub repo: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            specs: DEFAULT_SPECS.into(),
            state: DEFAULT_STATE.into(),
            repository: DEFAULT_REPOSITORY.into(),
            host: None,
            host_labels: BTreeMap::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 9750)),
            docker: Default::default(),
            archive_via: ArchiveVia::Auto,
            archive_parallelism: None,
            history_limit: DEFAULT_HISTORY_LIMIT,
            log_format: LogFormat::Text,
            repo: DEFAULT_REPO.to_string(),
        }
    }
}

/// `--specs`, for the commands that read the specs.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Paths")]
pub struct SpecsFlag {
    /// The folder of spec files (walked recursively).
    #[arg(long, env = "HOLDFAST_SPECS", default_value = DEFAULT_SPECS, value_name = "DIR")]
    pub specs: PathBuf,
}

/// `--state`, for the commands that read or write the run history.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Paths")]
pub struct StateFlag {
    /// Where holdfast keeps its own state (run history, stop journal, logs).
    #[arg(long, env = "HOLDFAST_STATE", default_value = DEFAULT_STATE, value_name = "DIR")]
    pub state: PathBuf,
}

/// The name of the repository `--repository` gives (a Repository spec may not take it).
pub const DEFAULT_REPO: &str = "default";

/// `--repo`, for the commands that read or change the archives of one repository.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Paths")]
pub struct RepoFlag {
    /// The repository to use: `default` (the `--repository` folder) or the name of a
    /// Repository spec in the specs folder.
    #[arg(
        long,
        env = "HOLDFAST_REPO",
        default_value = DEFAULT_REPO,
        value_name = "NAME"
    )]
    pub repo: String,
}

/// `--repository` and `--host`, for the commands that read or write archives.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Paths")]
pub struct RepositoryFlags {
    /// The local repository archives are written to.
    #[arg(
        long,
        env = "HOLDFAST_REPOSITORY",
        default_value = DEFAULT_REPOSITORY,
        value_name = "DIR"
    )]
    pub repository: PathBuf,

    /// This host's name in the repository: archives go to `<repository>/<host>/`, and
    /// retention, pruning and the repository lock concern only that folder. Default: the
    /// machine's host name, made a safe folder name.
    #[arg(long, env = "HOLDFAST_HOST", value_name = "NAME", value_parser = parse_host)]
    pub host: Option<String>,
}

/// `--host-labels`, for the commands that decide what this host runs (`plan`, `run`).
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Paths")]
pub struct HostLabelsFlag {
    /// This host's labels, `key=value` pairs separated by commas (`role=nas,site=home`):
    /// a spec whose `spec.hostSelector.matchLabels` they do not all match is not run here.
    /// `holdfast.dev/hostname=<host>` is always one of them.
    #[arg(
        long,
        env = "HOLDFAST_HOST_LABELS",
        value_name = "LABELS",
        value_parser = parse_host_labels_flag
    )]
    pub host_labels: Option<HostLabels>,
}

/// The label every host carries, with its `--host` name as the value; a user cannot set it.
pub const HOSTNAME_LABEL: &str = "holdfast.dev/hostname";

/// The labels `--host-labels` gave, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostLabels(pub BTreeMap<String, String>);

/// `--host-labels`'s value parser: the flag's name is said by clap.
pub fn parse_host_labels_flag(text: &str) -> Result<HostLabels, String> {
    parse_host_labels(text).map(HostLabels)
}

/// Parses `key=value,key=value` (spaces around items are allowed; an empty text is no
/// label). Keys and values are checked as Kubernetes checks labels; a key given twice, or
/// the key [`HOSTNAME_LABEL`], is an error.
pub fn parse_host_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!(
                "`{}` is not `key=value`; write labels as role=nas,site=home",
                item.escape_debug()
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        check_label_key(key)?;
        check_label_value(value).map_err(|e| format!("label `{key}`: {e}"))?;
        if key == HOSTNAME_LABEL {
            return Err(format!(
                "`{HOSTNAME_LABEL}` is set by holdfast to the host's name (--host); choose another key"
            ));
        }
        if labels.insert(key.to_string(), value.to_string()).is_some() {
            return Err(format!("label `{key}` is given twice"));
        }
    }
    Ok(labels)
}

/// Checks a label key as Kubernetes does: an optional DNS subdomain prefix and `/`, then a
/// name of at most 63 letters, digits, `-`, `_` and `.`, starting and ending with a letter
/// or digit.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if prefix.is_empty() || prefix.len() > 253 || !prefix.split('.').all(label_ok) {
            return Err(format!(
                "label key `{}`: the prefix before `/` must be a DNS subdomain (lowercase, e.g. example.com)",
                key.escape_debug()
            ));
        }
    }
    if name.is_empty() {
        return Err(format!("label key `{}` has no name", key.escape_debug()));
    }
    check_label_name(name).map_err(|e| format!("label key `{}`: {e}", key.escape_debug()))
}

/// Checks a label value: empty, or as a key's name (at most 63 characters).
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_label_name(value).map_err(|e| format!("value `{}`: {e}", value.escape_debug()))
}

fn check_label_name(name: &str) -> Result<(), String> {
    if name.len() > 63 {
        return Err(format!("{} characters long; at most 63", name.len()));
    }
    let inner = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let ends = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !name.chars().all(inner) || !ends(name.chars().next()) || !ends(name.chars().last()) {
        return Err(
            "use letters, digits, `-`, `_` and `.`, starting and ending with a letter or digit"
                .into(),
        );
    }
    Ok(())
}

/// Where Docker is and how to reach it (`--docker-host`, `--docker-tls-verify`,
/// `--docker-cert-path`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DockerEndpoint {
    /// `unix://…`, `tcp://…`, `http://…` or `https://…`; `None` is the local socket.
    pub host: Option<String>,
    /// With TLS, the folder holding `ca.pem` (the authority the engine's certificate must
    /// chain to), `cert.pem` and `key.pem` (holdfast's client certificate), the names Docker's
    /// own client uses.
    pub tls: Option<PathBuf>,
}

/// How to reach Docker, for the commands that talk to it.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Docker")]
pub struct DockerFlags {
    /// The Docker endpoint, e.g. unix:///var/run/docker.sock or tcp://host:2375.
    #[arg(long, env = "DOCKER_HOST", value_name = "URL")]
    pub docker_host: Option<String>,
    /// Speak TLS to a tcp:// endpoint, check the engine's certificate against ca.pem and show
    /// cert.pem, as `docker --tlsverify` (DOCKER_TLS_VERIFY: 0, false, no or off turn it off).
    #[arg(long, env = "DOCKER_TLS_VERIFY", value_parser = clap::builder::FalseyValueParser::new())]
    pub docker_tls_verify: bool,
    /// The folder of ca.pem, cert.pem and key.pem for --docker-tls-verify [default: ~/.docker].
    #[arg(long, env = "DOCKER_CERT_PATH", value_name = "DIR")]
    pub docker_cert_path: Option<PathBuf>,
}

/// How data is read, for the commands that archive it.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Docker")]
pub struct ArchiveViaFlag {
    /// How volume and bind-mount data is read: from the host folder when readable (auto),
    /// always from the host (direct), or always through Docker's archive API (api).
    #[arg(long, env = "HOLDFAST_ARCHIVE_VIA", value_enum, default_value_t = ArchiveVia::Auto)]
    pub archive_via: ArchiveVia,

    /// How many volumes and bind mounts of one run are archived at once, each into its own
    /// artifact (the cores are shared among them). Default: the number of cores. 1 archives
    /// one after the other.
    #[arg(
        long,
        env = "HOLDFAST_ARCHIVE_PARALLELISM",
        value_name = "N",
        value_parser = parse_parallelism
    )]
    pub archive_parallelism: Option<usize>,
}

/// Checks an `--archive-parallelism` value: a whole number of at least 1.
pub fn parse_parallelism(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => {
            Err("0 would archive nothing; give 1 or more (1: one source after the other)".into())
        }
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "`{}` is not a whole number; give 1 or more",
            text.escape_debug()
        )),
    }
}

/// `--history-limit`, for the commands that record runs.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Run history")]
pub struct HistoryFlag {
    /// How many runs of each object to keep in the run history, with their log files
    /// (`<state>/logs/<run id>.log`); older ones are forgotten after each run. The runs whose
    /// archives still exist are always kept. 0 keeps every run.
    #[arg(
        long,
        env = "HOLDFAST_HISTORY_LIMIT",
        default_value_t = DEFAULT_HISTORY_LIMIT,
        value_name = "N"
    )]
    pub history_limit: usize,
}

/// `--listen`, for the daemon.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "HTTP API")]
pub struct ListenFlag {
    /// Address of the read-only HTTP API and metrics; port 0 picks a free port.
    #[arg(long, env = "HOLDFAST_LISTEN", default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    pub listen: SocketAddr,
}

/// A group of flags that puts what it was given into [`Settings`].
pub trait Apply {
    fn apply(&self, settings: &mut Settings);
}

impl Apply for SpecsFlag {
    fn apply(&self, settings: &mut Settings) {
        settings.specs = self.specs.clone();
    }
}

impl Apply for StateFlag {
    fn apply(&self, settings: &mut Settings) {
        settings.state = self.state.clone();
    }
}

impl Apply for RepositoryFlags {
    fn apply(&self, settings: &mut Settings) {
        settings.repository = self.repository.clone();
        settings.host = self.host.clone();
    }
}

impl Apply for HostLabelsFlag {
    fn apply(&self, settings: &mut Settings) {
        settings.host_labels = self.host_labels.clone().unwrap_or_default().0;
    }
}

impl Apply for RepoFlag {
    fn apply(&self, settings: &mut Settings) {
        settings.repo = self.repo.clone();
    }
}

impl Apply for DockerFlags {
    fn apply(&self, settings: &mut Settings) {
        settings.docker.host = self.docker_host.clone();
        settings.docker.tls = self.docker_tls_verify.then(|| {
            self.docker_cert_path.clone().unwrap_or_else(|| {
                std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_default()
                    .join(".docker")
            })
        });
    }
}

impl Apply for ArchiveViaFlag {
    fn apply(&self, settings: &mut Settings) {
        settings.archive_via = self.archive_via;
        settings.archive_parallelism = self.archive_parallelism;
    }
}

impl Apply for HistoryFlag {
    fn apply(&self, settings: &mut Settings) {
        settings.history_limit = self.history_limit;
    }
}

impl Apply for ListenFlag {
    fn apply(&self, settings: &mut Settings) {
        settings.listen = self.listen;
    }
}

impl Settings {
    /// The host name this process writes under: `--host`, or the machine's host name.
    pub fn host(&self) -> String {
        self.host.clone().unwrap_or_else(machine_host)
    }

    /// This host's labels: `--host-labels` and `holdfast.dev/hostname=<host>`.
    pub fn host_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.host_labels.clone();
        labels.insert(HOSTNAME_LABEL.to_string(), self.host());
        labels
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// How volume and bind-mount data is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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

    #[test]
    fn host_labels_are_checked_as_kubernetes_labels() {
        let labels = parse_host_labels(" role=nas, example.com/site=home ,empty=").unwrap();
        assert_eq!(labels["role"], "nas");
        assert_eq!(labels["example.com/site"], "home");
        assert_eq!(labels["empty"], "");
        assert!(parse_host_labels("").unwrap().is_empty());
        for (bad, says) in [
            ("role", "is not `key=value`"),
            ("role=nas,role=vps", "given twice"),
            ("-role=nas", "label key `-role`"),
            ("Role/x=nas", "DNS subdomain"),
            ("/x=1", "DNS subdomain"),
            ("a/=1", "has no name"),
            ("role=n s", "value `n s`"),
            ("role=-nas", "value `-nas`"),
            ("holdfast.dev/hostname=other", "set by holdfast"),
        ] {
            let error = parse_host_labels(bad).unwrap_err();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
        let long = format!("k={}", "a".repeat(64));
        assert!(parse_host_labels(&long).unwrap_err().contains("at most 63"));
    }

    #[test]
    fn archive_parallelism_is_at_least_one() {
        assert_eq!(parse_parallelism("4"), Ok(4));
        assert!(parse_parallelism("0").unwrap_err().contains("1 or more"));
        assert!(
            parse_parallelism("-1")
                .unwrap_err()
                .contains("not a whole number")
        );
        assert!(parse_parallelism("two").is_err());
    }

    #[test]
    fn every_host_carries_its_hostname_label() {
        let settings = Settings {
            host: Some("nas".into()),
            host_labels: parse_host_labels("role=nas").unwrap(),
            ..Settings::default()
        };
        let labels = settings.host_labels();
        assert_eq!(labels[HOSTNAME_LABEL], "nas");
        assert_eq!(labels["role"], "nas");
    }
}
