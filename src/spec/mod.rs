//! The resource model: the Kubernetes-style envelope and the kinds of spec.
//!
//! Every type here denies unknown fields, so a misspelt key is an error and never a
//! silently ignored setting.

pub mod archive;
pub mod common;
pub mod container_schedule;
pub mod duration;
pub mod host;
pub mod notifier;
pub mod policy;
pub mod repository;
pub mod restore;
pub mod schedule;

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use archive::{ArchiveSpec, DeletionPolicy};
pub use container_schedule::{ContainerAction, ContainerScheduleSpec};
pub use duration::HumanDuration;
pub use host::HostSelector;
pub use notifier::NotifierSpec;
pub use policy::BackupPolicySpec;
pub use repository::RepositorySpec;
pub use restore::{RestoreMode, RestoreSpec};
pub use schedule::{CronSchedule, RunAt, TimeZoneName};

/// The only API version this release understands.
pub const API_VERSION: &str = "holdfast.dev/v1alpha1";

/// Annotation whose new value asks for an immediate run.
pub const REQUESTED_AT_ANNOTATION: &str = "holdfast.dev/requested-at";

/// The kinds of object holdfast reconciles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    BackupPolicy,
    Archive,
    Restore,
    /// A place archives are written to; never run, only described.
    Repository,
    /// Where notifications go; never run, only described.
    Notifier,
    /// Starts, stops, restarts, pauses or unpauses containers on a schedule or once.
    ContainerSchedule,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::BackupPolicy,
        Kind::Archive,
        Kind::Restore,
        Kind::Repository,
        Kind::Notifier,
        Kind::ContainerSchedule,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::BackupPolicy => "BackupPolicy",
            Kind::Archive => "Archive",
            Kind::Restore => "Restore",
            Kind::Repository => "Repository",
            Kind::Notifier => "Notifier",
            Kind::ContainerSchedule => "ContainerSchedule",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names an object and carries free-form labels and annotations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// The object's name, unique per kind across the whole specs directory: lowercase letters,
    /// digits and '-', starting and ending with a letter or digit, at most 63 characters.
    pub name: String,
    /// Free-form labels, usable by selectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations. A new value of `holdfast.dev/requested-at` runs the object now.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A spec type and the kind it belongs to.
pub trait KindSpec: JsonSchema + for<'de> Deserialize<'de> {
    const KIND: Kind;
    /// A one-line summary for the schema's title description.
    const ABOUT: &'static str;
}

impl KindSpec for BackupPolicySpec {
    const KIND: Kind = Kind::BackupPolicy;
    const ABOUT: &'static str =
        "Recurring backups of Docker stacks, containers, volumes and databases.";
}

impl KindSpec for ArchiveSpec {
    const KIND: Kind = Kind::Archive;
    const ABOUT: &'static str = "One backup, taken once per generation of the spec.";
}

impl KindSpec for RestoreSpec {
    const KIND: Kind = Kind::Restore;
    const ABOUT: &'static str = "Puts archived data back, once per generation of the spec.";
}

impl KindSpec for RepositorySpec {
    const KIND: Kind = Kind::Repository;
    const ABOUT: &'static str =
        "A place archives are written to: an S3 bucket, an SFTP server or a local folder.";
}

impl KindSpec for NotifierSpec {
    const KIND: Kind = Kind::Notifier;
    const ABOUT: &'static str = "Where notifications go (chat, e-mail, push or a heartbeat monitor) and which events they carry.";
}

impl KindSpec for ContainerScheduleSpec {
    const KIND: Kind = Kind::ContainerSchedule;
    const ABOUT: &'static str = "Starts, stops, restarts, pauses or unpauses containers on a schedule or once at a set time.";
}

/// The envelope shared by every kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Object<S> {
    /// Always `holdfast.dev/v1alpha1`.
    pub api_version: String,
    /// The kind of object.
    pub kind: String,
    /// The object's name, labels and annotations.
    pub metadata: ObjectMeta,
    /// The desired state.
    pub spec: S,
}

pub type BackupPolicy = Object<BackupPolicySpec>;
pub type Archive = Object<ArchiveSpec>;
pub type Restore = Object<RestoreSpec>;
pub type Repository = Object<RepositorySpec>;
pub type Notifier = Object<NotifierSpec>;
pub type ContainerSchedule = Object<ContainerScheduleSpec>;

/// Any object holdfast understands.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    BackupPolicy(BackupPolicy),
    Archive(Archive),
    Restore(Restore),
    Repository(Repository),
    Notifier(Notifier),
    ContainerSchedule(ContainerSchedule),
}

impl Resource {
    pub fn kind(&self) -> Kind {
        match self {
            Resource::BackupPolicy(_) => Kind::BackupPolicy,
            Resource::Archive(_) => Kind::Archive,
            Resource::Restore(_) => Kind::Restore,
            Resource::Repository(_) => Kind::Repository,
            Resource::Notifier(_) => Kind::Notifier,
            Resource::ContainerSchedule(_) => Kind::ContainerSchedule,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Resource::BackupPolicy(o) => &o.metadata,
            Resource::Archive(o) => &o.metadata,
            Resource::Restore(o) => &o.metadata,
            Resource::Repository(o) => &o.metadata,
            Resource::Notifier(o) => &o.metadata,
            Resource::ContainerSchedule(o) => &o.metadata,
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// The object's `spec.hostSelector`, if it has one.
    pub fn host_selector(&self) -> Option<&HostSelector> {
        match self {
            Resource::BackupPolicy(o) => o.spec.host_selector.as_ref(),
            Resource::Archive(o) => o.spec.host_selector.as_ref(),
            Resource::Restore(o) => o.spec.host_selector.as_ref(),
            Resource::Repository(o) => o.spec.host_selector.as_ref(),
            Resource::Notifier(o) => o.spec.host_selector.as_ref(),
            Resource::ContainerSchedule(o) => o.spec.host_selector.as_ref(),
        }
    }

    /// Whether a host with `labels` runs this object: it has no hostSelector, or its
    /// selector matches them.
    pub fn selects_host(&self, labels: &BTreeMap<String, String>) -> bool {
        self.host_selector().is_none_or(|s| s.matches(labels))
    }
}

/// `Kind/name`, the key that is unique across the specs directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Checks a DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn check_dns1123_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name must not be empty".into());
    }
    if name.len() > 63 {
        return Err(format!(
            "`{name}` is {} characters long; a name has at most 63",
            name.len()
        ));
    }
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if !name.chars().all(valid_char) || name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "`{name}` is not a valid name: use lowercase letters, digits and '-', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A DNS-1123 form of a name, offered as a hint: lowercase, other characters turned to '-'.
pub fn suggest_dns1123_label(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    trimmed
        .chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns1123_labels() {
        for ok in ["a", "nextcloud-nightly", "db1", "0abc", &"a".repeat(63)] {
            assert!(check_dns1123_label(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Nextcloud",
            "a_b",
            "a.b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(check_dns1123_label(bad).is_err(), "{bad}");
        }
        assert_eq!(
            suggest_dns1123_label("Nextcloud_Nightly"),
            "nextcloud-nightly"
        );
    }
}
