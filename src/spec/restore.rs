//! `Restore`: put archived data back, once per generation.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::StopMode;

/// Restores data from an archive into new volumes or in place. It never overwrites a volume
/// in use unless `mode: InPlace` and the writers are stopped for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreSpec {
    /// The archive to restore from.
    pub from: RestoreSource,
    /// A subset of what the archive holds; by default everything.
    #[serde(default, skip_serializing_if = "RestoreTargets::is_empty")]
    pub targets: RestoreTargets,
    /// `NewVolumes` writes into fresh volumes; `InPlace` replaces the content of the originals.
    #[serde(default)]
    pub mode: RestoreMode,
    /// New names for restored volumes (`archived: new`). With `NewVolumes`, an unmapped
    /// volume that no longer exists comes back under its own name, and one that exists
    /// goes to `<volume>-restored-<archive time>`: an existing volume is never written.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volume_mapping: BTreeMap<String, String>,
    /// What to stop while restoring in place: the containers using the volumes
    /// (`container`, the default, as for `holdfast restore --stop`) or their whole stacks
    /// (`stack`); `none` is refused with `InPlace`.
    #[serde(default = "default_stop")]
    pub stop: StopMode,
    /// Feed the archived database dumps back into the database services. Dumps are
    /// chosen by stack: with `targets.volumes` alone there are none to replay.
    #[serde(default)]
    pub replay_dumps: bool,
    /// Only replay the archived database dumps into the running database services: no
    /// volume is written. Excludes `targets.volumes`, `volumeMapping`, `mode: InPlace` and
    /// `recipeTo`.
    #[serde(default)]
    pub dumps_only: bool,
    /// Write the archived compose files and inspect output into this host folder. The
    /// recipe is chosen by stack: with `targets.volumes` alone there is none to write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe_to: Option<String>,
    /// The hosts that run this object (their `--host-labels`); every host without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<super::host::HostSelector>,
}

/// What a restore stops when not told, for a Restore spec's `stop` and for
/// `holdfast restore --stop` alike: the containers using the volumes written in place.
pub const DEFAULT_STOP: StopMode = StopMode::Container;

fn default_stop() -> StopMode {
    DEFAULT_STOP
}

/// Which archive to restore: name exactly one of `archive` or `policy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreSource {
    /// An archive id, e.g. `nextcloud-nightly-20261125T030000Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    /// A BackupPolicy whose archive to use, chosen by `at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// With `policy`: `latest`, or an RFC 3339 time to take the newest archive at or before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// The repository holding the archive: `default` (the folder given by `--repository`,
    /// when left out) or the name of a Repository object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

impl RestoreSource {
    /// The repository to read from: the one named, else `default`.
    pub fn repository(&self) -> &str {
        self.repository
            .as_deref()
            .unwrap_or(super::repository::DEFAULT_REPOSITORY)
    }
}

/// What part of the archive to restore.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreTargets {
    /// Compose projects, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stacks: Vec<String>,
    /// Named volumes, by their archived name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
}

impl RestoreTargets {
    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty() && self.volumes.is_empty()
    }
}

/// Where restored data goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RestoreMode {
    /// Into new volumes, leaving the originals untouched.
    #[default]
    NewVolumes,
    /// Replace the content of the original volumes; their writers must be stopped.
    InPlace,
}
