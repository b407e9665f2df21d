//! `Archive`: one backup, taken once per generation.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Consistency, Dump, Include, Output, Targets};
use super::duration::HumanDuration;

/// Takes one backup as soon as possible, once per generation of this spec. Either name a
/// policy with `policyRef` (its targets, consistency, dumps and output are used) or give
/// those fields here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArchiveSpec {
    /// The BackupPolicy whose settings this archive uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_ref: Option<String>,
    /// What to back up, when no policy is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Targets>,
    /// Which kinds of data to include, when no policy is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Include>,
    /// Consistency settings, when no policy is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
    /// Database dumps, when no policy is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dumps: Option<Vec<Dump>>,
    /// Where the archive goes; overrides the policy's output when both are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
    /// Take the backup at this RFC 3339 time instead of at once (a time already past runs
    /// at once), e.g. before tonight's upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<super::schedule::RunAt>,
    /// Delete the archive this long after it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<HumanDuration>,
    /// What happens to the archive when this spec file is removed.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// The hosts that run this object (their `--host-labels`); every host without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<super::host::HostSelector>,
}

/// What removing an Archive spec does to its data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the archive: a file that vanished from git is no proof someone wanted the data gone.
    #[default]
    Retain,
    /// Delete the archive together with its spec.
    Delete,
}
