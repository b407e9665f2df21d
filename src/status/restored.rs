//! What a restore did, as its status and run record show it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One volume put back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoredVolume {
    /// The volume's name in the archive.
    pub volume: String,
    /// Where it went.
    pub into: String,
    /// The volume was created by the restore.
    pub created: bool,
    pub entries: u64,
    pub bytes: u64,
}

/// One dump replayed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoredDump {
    pub artifact: String,
    pub container: String,
    pub engine: String,
    pub database: Option<String>,
    /// Rows per table (keys per database for Redis) after the replay.
    pub counts: BTreeMap<String, u64>,
}

/// What a restore did: its record and its status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    pub archive: String,
    pub volumes: Vec<RestoredVolume>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dumps: Vec<RestoredDump>,
    /// Files written into the recipe folder (compose files, inspect output, bind mounts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipe: Vec<String>,
}
