//! `ContainerSchedule`: starting, stopping, restarting, pausing or unpausing containers on
//! a schedule or once at a set time, with the status, history, notifications and locks
//! backups have, so that a nightly restart never lands in the middle of a backup.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::Targets;
use super::schedule::{CronSchedule, RunAt, TimeZoneName};

/// Acts on the selected containers on a cron schedule (`schedule`) or once (`runAt`).
/// With `after`, each action waits for the named policies' backup of the same night and
/// is not run when one of them failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerScheduleSpec {
    /// Pause the schedule without deleting it.
    #[serde(default)]
    pub suspend: bool,
    /// When to act: a 5-field cron expression or @hourly/@daily/@weekly/@monthly/@yearly.
    /// Give this or runAt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<CronSchedule>,
    /// Act once, at this RFC 3339 time (a time already past acts at once). Give this or
    /// schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<RunAt>,
    /// The IANA time zone the schedule is read in. Defaults to UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<TimeZoneName>,
    /// The containers to act on: stacks, containers and selector as in a BackupPolicy
    /// (volumes and exclude, which name data, are refused here).
    pub targets: Targets,
    /// What to do to each selected container.
    pub action: ContainerAction,
    /// BackupPolicy names: the action runs only once each has a successful run of the same
    /// period (see the README), and not at all when one of those runs failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// The hosts that run this object (their `--host-labels`); every host without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<super::host::HostSelector>,
}

/// What a ContainerSchedule does to its containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ContainerAction {
    /// Start stopped containers; running ones are left alone.
    Start,
    /// Stop running containers (Docker's stop: SIGTERM, then SIGKILL after 10 s).
    Stop,
    /// Stop and start again; stopped containers are started.
    Restart,
    /// Freeze every process of running containers.
    Pause,
    /// Thaw paused containers.
    Unpause,
}

impl ContainerAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerAction::Start => "start",
            ContainerAction::Stop => "stop",
            ContainerAction::Restart => "restart",
            ContainerAction::Pause => "pause",
            ContainerAction::Unpause => "unpause",
        }
    }
}

impl fmt::Display for ContainerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
