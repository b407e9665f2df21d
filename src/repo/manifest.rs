//! The repository format. `manifest.json` is the truth about an archive: written last,
//! its presence is what makes the archive exist, and the catalog can always be rebuilt
//! from manifests alone. `verification.json` beside it is the last verify's result.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::spec::common::Phase;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format_version: u32,
    pub id: String,
    /// `BackupPolicy` or `Archive`.
    pub kind: String,
    pub name: String,
    /// The policy whose settings were used (an Archive's policyRef, or the policy itself).
    pub policy: Option<String>,
    pub phase: Phase,
    /// The host that wrote it (`--host`); empty in manifests of releases before hosts.
    #[serde(default)]
    pub host: String,
    pub holdfast_version: String,
    pub docker_api_version: String,
    pub start_time: DateTime<Utc>,
    pub completion_time: DateTime<Utc>,
    pub format: String,
    pub level: Option<i32>,
    pub targets: ManifestTargets,
    pub artifacts: Vec<Artifact>,
    /// Seconds each phase took.
    pub timings: BTreeMap<String, f64>,
    /// Seconds each stack (or lone container) was stopped.
    pub downtime: BTreeMap<String, f64>,
    pub warnings: Vec<String>,
    /// How the artifacts are encrypted (`age`); absent when they are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestTargets {
    pub stacks: Vec<String>,
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    /// The host folders archived (`targets.paths`, and the bind-mounted folders of
    /// compose projects that were down), each an artifact of kind `path`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// `volume`, `bind`, `path` (a host folder), `dump` or `recipe`.
    pub kind: String,
    /// Path under the archive folder.
    pub path: String,
    pub size: u64,
    pub sha256: String,
    #[serde(default)]
    pub source_bytes: u64,
    #[serde(default)]
    pub entries: u64,
    /// For volumes and bind mounts: `direct` (read from the host) or `api` (Docker's
    /// archive endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The volume, `container:destination` of a bind mount, the host folder, or dumped
    /// container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Bytes stored, when not `size`: an encrypted artifact's ciphertext. `size` and
    /// `sha256` are always of the plaintext (the compressed stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_size: Option<u64>,
    /// The sha256 of the stored bytes, when not `sha256`: `verify` checks an encrypted
    /// artifact with it without the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_sha256: Option<String>,
    /// In a restic repository: the snapshot that holds the artifact. A volume or bind
    /// mount is then the folder `path` without `.tar` in it (read back as a tar stream,
    /// whose size and sha256 are not known in advance: restic checks every blob), a dump
    /// or recipe file the file `path`. `size` is then what the snapshot added to the
    /// repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

impl Artifact {
    /// Where a restic artifact is in its snapshot, and whether it is a folder.
    pub fn snapshot_path(&self) -> (&str, bool) {
        match self.kind.as_str() {
            "volume" | "bind" | "path" => (self.path.trim_end_matches(".tar"), true),
            _ => (self.path.as_str(), false),
        }
    }
}

impl Manifest {
    pub fn bytes(&self) -> u64 {
        self.artifacts.iter().map(|a| a.size).sum()
    }

    /// Bytes the archive takes in its repository.
    pub fn stored_bytes(&self) -> u64 {
        self.artifacts
            .iter()
            .map(|a| a.stored_size.unwrap_or(a.size))
            .sum()
    }
}

/// The outcome of one verification, kept beside the manifest as `verification.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub time: DateTime<Utc>,
    pub ok: bool,
    /// Artifacts checked.
    pub artifacts: usize,
    /// What failed, one line per artifact.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}
