//! What a restore starts from: the archive its source names, and the order to stop the
//! containers using its volumes in.

use std::collections::BTreeMap;

use tracing::warn;

use super::{RestoreError, Source};
use crate::docker::ContainerInfo;
use crate::repo::catalog::{Entry, Health};

/// The archive a source names in `repo`: Good or Partial, never Corrupt or Missing. Reads
/// only the group the source names.
pub fn resolve(repo: &crate::repo::Repository, source: &Source) -> Result<Entry, RestoreError> {
    let usable = |e: &Entry| matches!(e.health, Health::Good | Health::Partial);
    // Only the group the source names is read, not the whole repository.
    let group_entries = |group: &str| -> Result<Vec<Entry>, RestoreError> {
        let mut entries = Vec::new();
        for id in repo.archives(group).map_err(RestoreError::Storage)? {
            if let Some(entry) =
                crate::repo::catalog::read_entry(repo, group, &id).map_err(RestoreError::Storage)?
            {
                entries.push(entry);
            }
        }
        Ok(entries)
    };
    match source {
        Source::Archive(id) => {
            let found = match crate::repo::layout::group_of(id) {
                Some(group) => crate::repo::catalog::read_entry(repo, group, id)
                    .map_err(RestoreError::Storage)?,
                None => None,
            };
            let Some(entry) = found else {
                return Err(RestoreError::NoArchive {
                    id: id.clone(),
                    repository: repo.describe(),
                });
            };
            if !usable(&entry) {
                return Err(RestoreError::Unusable {
                    id: id.clone(),
                    health: entry.health,
                    problems: entry.problems.join("; "),
                });
            }
            Ok(entry)
        }
        Source::Policy { name, at } => {
            let entries = group_entries(name)?;
            if entries.is_empty() {
                // Nothing under the name at all: likely a typo of one that has some.
                let groups = repo.groups().map_err(RestoreError::Storage)?;
                return Err(RestoreError::NoArchiveOf {
                    name: name.clone(),
                    repository: repo.describe(),
                    hint: crate::diagnostic::did_you_mean(name, groups.iter().map(String::as_str)),
                });
            }
            entries
                .into_iter()
                .filter(|e| usable(e))
                .filter(|e| at.is_none_or(|at| e.time <= at))
                .max_by_key(|e| (e.time, e.id.clone()))
                .ok_or_else(|| RestoreError::NoGoodArchive {
                    name: name.clone(),
                    at: *at,
                })
        }
    }
}

/// Containers in the order to stop them, as a backup stops them: dependents first (from
/// Compose's labels, else its files, else by name); they start again in reverse.
pub(super) fn stop_order(users: Vec<ContainerInfo>) -> Vec<ContainerInfo> {
    use crate::executor::order;
    let compose: BTreeMap<String, order::ComposeDeps> = crate::docker::group_stacks(users.clone())
        .iter()
        .filter_map(|s| Some((s.name.clone(), order::compose_deps(s)?)))
        .collect();
    let refs: Vec<&ContainerInfo> = users.iter().collect();
    let ordered = order::stop_order(&refs, &[], &compose);
    for warning in &ordered.warnings {
        warn!("{warning}");
    }
    ordered.stop.into_iter().cloned().collect()
}
