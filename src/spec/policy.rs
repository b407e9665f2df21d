//! `BackupPolicy`: recurring backups on a schedule.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Consistency, Dump, Include, Output, Retention, Targets};
use super::duration::HumanDuration;
use super::notifier::Notify;
use super::schedule::{CronSchedule, TimeZoneName};

/// Backs up the selected stacks, containers and volumes on a schedule and prunes old
/// archives by its retention rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupPolicySpec {
    /// Pause scheduled runs without deleting the policy; archives are kept.
    #[serde(default)]
    pub suspend: bool,
    /// When to run: a 5-field cron expression or @hourly/@daily/@weekly/@monthly/@yearly.
    pub schedule: CronSchedule,
    /// The IANA time zone the schedule and retention buckets are read in. Defaults to UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<TimeZoneName>,
    /// Spread runs of many policies: each run starts a stable, per-policy offset in
    /// [0, jitter) after its scheduled time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<HumanDuration>,
    /// A run missed by less than this (the host was off) still runs at start-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_deadline: Option<HumanDuration>,
    /// What to back up.
    pub targets: Targets,
    /// Which kinds of data to include.
    #[serde(default)]
    pub include: Include,
    /// What to stop, and which hooks to run, so the archive is consistent.
    #[serde(default)]
    pub consistency: Consistency,
    /// Database dumps taken from the running database containers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dumps: Vec<Dump>,
    /// Where archives go and in which format.
    #[serde(default)]
    pub output: Output,
    /// How many archives to keep. Without it, no archive is ever deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Notifications on run results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<Notify>,
    /// Reading archives back in full (checksums, every tar walked to its end) to prove
    /// they can be restored. A failure marks the archive Corrupt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verify>,
    /// The hosts that run this object (their `--host-labels`); every host without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<super::host::HostSelector>,
}

/// When to verify a policy's archives.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Verify {
    /// Verify each new archive right after its run; a failure fails the run.
    #[serde(default)]
    pub after_run: bool,
    /// Also verify existing archives on this schedule, in the policy's time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<CronSchedule>,
    /// With `schedule`: how many archives each time, those never or least recently verified
    /// first (e.g. 3 on `@weekly` for a sample of three a week). All of them by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub sample: Option<u32>,
}
