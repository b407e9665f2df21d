//! The desired state: what the spec files say, as the reconciler reads it.
//!
//! Built whole from a validation report on every load; the reconciler never edits it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::spec::{Kind, ObjectKey, REQUESTED_AT_ANNOTATION, Resource};
use crate::validate::Report;

/// One object of a spec file, valid or not.
#[derive(Clone, Debug)]
pub struct DesiredObject {
    pub file: PathBuf,
    pub kind: Kind,
    pub name: String,
    /// The object when it passed every check; `None` means it must not run.
    pub resource: Option<Resource>,
    /// Its validation errors, formatted `file:line:column: ...`.
    pub errors: Vec<String>,
    /// Why this host does not run it (its hostSelector does not match): then `resource`
    /// is `None` although the spec is valid, and its status says so without an error.
    pub not_selected: Option<String>,
    pub generation: Option<String>,
    pub requested_at: Option<String>,
}

impl DesiredObject {
    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            kind: self.kind,
            name: self.name.clone(),
        }
    }
}

/// Everything the specs folder holds.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    /// Every spec file found, with its objects in document order.
    pub files: BTreeMap<PathBuf, Vec<DesiredObject>>,
    /// Errors of a file as a whole (unreadable, invalid YAML), by file.
    pub file_errors: BTreeMap<PathBuf, Vec<String>>,
}

impl Desired {
    pub fn from_report(report: &Report) -> Desired {
        let mut desired = Desired::default();
        for file in &report.files {
            let mut objects = Vec::new();
            for o in &file.objects {
                let (Some(kind), Some(name)) = (o.kind, o.name.clone()) else {
                    // Nothing to name it by: its errors belong to the file.
                    desired
                        .file_errors
                        .entry(file.path.clone())
                        .or_default()
                        .extend(o.errors.iter().map(|e| e.to_string()));
                    continue;
                };
                let (generation, requested_at) = match &o.resource {
                    Some(r) => (Some(generation_of(r)), requested_at(r)),
                    None => (None, None),
                };
                objects.push(DesiredObject {
                    file: file.path.clone(),
                    kind,
                    name,
                    // Not run here: nothing schedules, prunes or verifies it.
                    resource: o.resource.clone().filter(|_| o.not_selected.is_none()),
                    not_selected: o.not_selected.clone(),
                    errors: o.errors.iter().map(|e| e.to_string()).collect(),
                    generation,
                    requested_at,
                });
            }
            if !file.errors.is_empty() {
                desired
                    .file_errors
                    .entry(file.path.clone())
                    .or_default()
                    .extend(file.errors.iter().map(|e| e.to_string()));
            }
            desired.files.insert(file.path.clone(), objects);
        }
        desired
    }

    pub fn objects(&self) -> impl Iterator<Item = &DesiredObject> {
        self.files.values().flatten()
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&DesiredObject> {
        self.objects()
            .find(|o| o.kind == key.kind && o.name == key.name)
    }

    /// The valid resources, for resolving an Archive's policyRef.
    pub fn valid_resources(&self) -> Vec<&Resource> {
        self.objects().filter_map(|o| o.resource.as_ref()).collect()
    }
}

fn requested_at(resource: &Resource) -> Option<String> {
    resource
        .metadata()
        .annotations
        .get(REQUESTED_AT_ANNOTATION)
        .cloned()
}

fn generation_of(resource: &Resource) -> String {
    let spec = match resource {
        Resource::BackupPolicy(o) => serde_json::to_value(&o.spec),
        Resource::Archive(o) => serde_json::to_value(&o.spec),
        Resource::Restore(o) => serde_json::to_value(&o.spec),
        Resource::Repository(o) => serde_json::to_value(&o.spec),
        Resource::Notifier(o) => serde_json::to_value(&o.spec),
        Resource::ContainerSchedule(o) => serde_json::to_value(&o.spec),
    }
    .unwrap_or(serde_json::Value::Null);
    crate::status::generation(&spec, requested_at(resource).as_deref())
}
