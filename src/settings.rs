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

    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, global = true, env = "HOLDFAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
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
