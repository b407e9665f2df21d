//! The catalog: what the repository holds, read from the manifests alone.
//!
//! A manifest is the truth about an archive. The catalog can always be rebuilt from the
//! repository (a new host with only the repository knows every archive), and an archive
//! whose files no longer match their manifest is reported as Corrupt, never as good.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::layout::{MANIFEST, RECORD, time_from_id};
use super::manifest::{Manifest, Verification};
use super::storage::{Meta, Repository, StorageError};
use crate::spec::common::Phase;

/// How an archive stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub enum Health {
    /// Succeeded, and every artifact has its recorded size.
    Good,
    /// PartiallyFailed: complete data, but something around it went wrong.
    Partial,
    /// An artifact is missing or has another size than recorded, or the manifest is
    /// unreadable.
    Corrupt,
    /// The run history knows it, the repository does not have it.
    Missing,
}

/// One archive in the repository.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub id: String,
    /// The repository it is in: `default` or a Repository spec's name.
    pub repository: String,
    /// The repository folder it is grouped under: its policy's or Archive's name.
    pub group: String,
    pub kind: Option<String>,
    pub policy: Option<String>,
    /// The host that wrote it, as its manifest says (this host for manifests of releases
    /// before hosts); empty when unknown.
    pub host: String,
    pub time: DateTime<Utc>,
    /// The bytes it holds: its artifacts' sizes (compressed, in holdfast's own format;
    /// what was read from the sources, in a restic repository).
    pub bytes: u64,
    /// In a restic repository: the bytes its snapshots added there (deduplicated,
    /// compressed, encrypted), what keeping it costs beyond the archives before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_bytes: Option<u64>,
    /// In a restic repository: `bytes` over `added_bytes`, how many times over
    /// deduplication and compression stored it (absent when it added nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_ratio: Option<f64>,
    pub phase: Option<Phase>,
    pub health: Health,
    /// What is wrong with it, for Corrupt and Missing.
    pub problems: Vec<String>,
    /// When it was last verified (every byte read back), if ever.
    pub verified: Option<DateTime<Utc>>,
    /// The archive's folder, where the storage is local.
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("reading the repository {repository}: {source}")]
pub struct CatalogError {
    repository: String,
    #[source]
    source: StorageError,
}

impl CatalogError {
    pub fn is_transient(&self) -> bool {
        self.source.is_transient()
    }
}

/// Every archive in `repo`, oldest first within each group. A missing repository is an
/// empty one. Reads every manifest: for start-up and resync, not for each run.
pub fn scan(repo: &Repository) -> Result<Vec<Entry>, CatalogError> {
    let err = |source| CatalogError {
        repository: repo.describe(),
        source,
    };
    let mut entries = Vec::new();
    for group in repo.groups().map_err(err)? {
        for id in repo.archives(&group).map_err(err)? {
            if let Some(entry) = read_entry(repo, &group, &id).map_err(err)? {
                entries.push(entry);
            }
        }
    }
    entries.sort_by(|a, b| (&a.group, a.time, &a.id).cmp(&(&b.group, b.time, &b.id)));
    Ok(entries)
}

/// One archive as its manifest, its artifacts' sizes and its verification record tell;
/// `None` when the folder holds no manifest (not an archive). A manifest that cannot be
/// parsed makes the entry Corrupt; a storage that cannot be read is an error.
pub fn read_entry(repo: &Repository, group: &str, id: &str) -> Result<Option<Entry>, StorageError> {
    let Some(bytes) = repo.read(group, id, MANIFEST)? else {
        return Ok(None);
    };
    let mut entry = Entry {
        repository: repo.name().to_string(),
        time: time_from_id(id).unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        id: id.to_string(),
        group: group.to_string(),
        kind: None,
        policy: None,
        host: String::new(),
        bytes: 0,
        added_bytes: None,
        dedup_ratio: None,
        phase: None,
        health: Health::Corrupt,
        problems: Vec::new(),
        verified: None,
        path: repo.local_dir(group, id).unwrap_or_default(),
    };
    let manifest: Manifest = match serde_json::from_slice(&bytes) {
        Ok(m) => m,
        Err(e) => {
            entry
                .problems
                .push(format!("manifest.json cannot be read: {e}"));
            return Ok(Some(entry));
        }
    };
    entry.time = manifest.start_time;
    entry.kind = Some(manifest.kind.clone());
    entry.policy = manifest.policy.clone();
    entry.host = if manifest.host.is_empty() {
        repo.host().to_string()
    } else {
        manifest.host.clone()
    };
    entry.phase = Some(manifest.phase);
    entry.bytes = manifest.bytes();
    if manifest.format == "restic" {
        let added = manifest
            .artifacts
            .iter()
            .filter_map(|a| a.stored_size)
            .sum();
        entry.added_bytes = Some(added);
        entry.dedup_ratio = dedup_ratio(entry.bytes, added);
    }
    for artifact in &manifest.artifacts {
        // A folder-format artifact's size is the sum of its files; its listing hash is
        // checked by verify, not here.
        // An encrypted artifact is stored as its ciphertext.
        let stored = artifact.stored_size.unwrap_or(artifact.size);
        if let (Some(restic), Some(snapshot)) = (repo.restic(), &artifact.snapshot) {
            let found = restic
                .has_snapshot(snapshot)
                .map_err(|source| StorageError::Io {
                    doing: "looking for a snapshot in",
                    path: restic.location().into(),
                    source,
                })?;
            if !found {
                entry.problems.push(format!(
                    "{}: its snapshot {snapshot} is not in the repository",
                    artifact.path
                ));
            }
            continue;
        }
        match repo.stat(group, id, &artifact.path)? {
            Some(Meta::Folder) => {}
            Some(Meta::File { size }) if size == stored => {}
            Some(Meta::File { size }) => entry.problems.push(format!(
                "{} is {size} bytes, the manifest says {stored}",
                artifact.path
            )),
            None => entry
                .problems
                .push(format!("{}: No such file or directory", artifact.path)),
        }
    }
    // A failed verification read every byte: it outweighs sizes that still match.
    let record = repo
        .read(group, id, RECORD)?
        .and_then(|b| serde_json::from_slice::<Verification>(&b).ok());
    if let Some(v) = record {
        entry.apply_verification(&v);
    } else {
        entry.set_health(manifest.phase);
    }
    Ok(Some(entry))
}

/// `source` bytes over `added` bytes, to one decimal: how many times over an archive
/// was deduplicated and compressed; `None` when it added nothing.
pub fn dedup_ratio(source: u64, added: u64) -> Option<f64> {
    (added > 0).then(|| (source as f64 / added as f64 * 10.0).round() / 10.0)
}

impl Entry {
    fn set_health(&mut self, phase: Phase) {
        self.health = match (self.problems.is_empty(), phase) {
            (false, _) => Health::Corrupt,
            (true, Phase::Succeeded) => Health::Good,
            (true, _) => Health::Partial,
        };
    }

    /// Takes a verification's result in: its time, and its problems when it failed.
    pub fn apply_verification(&mut self, v: &Verification) {
        self.verified = Some(v.time);
        if !v.ok {
            for p in &v.problems {
                if !self.problems.contains(p) {
                    self.problems.push(p.clone());
                }
            }
        }
        if let Some(phase) = self.phase {
            self.set_health(phase);
        } else if !self.problems.is_empty() {
            self.health = Health::Corrupt;
        }
    }
}

/// The archives of a repository, held in memory by the one who writes to it (the daemon's
/// controller): filled by one [`scan`], then kept current by what happens (a run wrote
/// an archive, retention deleted one, a verification ended) instead of re-reading the
/// repository. Only the periodic resync scans again, and only when the listing changed.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    groups: BTreeMap<String, BTreeMap<String, Entry>>,
    /// Counts changes, so readers of a published copy know when it is stale.
    version: u64,
}

impl Catalog {
    pub fn from_entries(entries: Vec<Entry>) -> Self {
        let mut catalog = Catalog::default();
        for entry in entries {
            catalog.insert(entry);
        }
        catalog
    }

    /// Reads the whole repository.
    pub fn load(repo: &Repository) -> Result<Self, CatalogError> {
        Ok(Catalog::from_entries(scan(repo)?))
    }

    /// Every archive, by group, oldest first within each group.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.groups.values().flat_map(sorted)
    }

    /// The archives of one group, oldest first.
    pub fn group(&self, group: &str) -> Vec<&Entry> {
        self.groups.get(group).map(sorted).unwrap_or_default()
    }

    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    pub fn get(&self, group: &str, id: &str) -> Option<&Entry> {
        self.groups.get(group)?.get(id)
    }

    pub fn len(&self) -> usize {
        self.groups.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes with every insertion, removal and verification.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// A new (or re-read) archive.
    pub fn insert(&mut self, entry: Entry) {
        self.version += 1;
        self.groups
            .entry(entry.group.clone())
            .or_default()
            .insert(entry.id.clone(), entry);
    }

    /// An archive that was deleted.
    pub fn remove(&mut self, group: &str, id: &str) -> Option<Entry> {
        self.version += 1;
        let archives = self.groups.get_mut(group)?;
        let removed = archives.remove(id);
        if archives.is_empty() {
            self.groups.remove(group);
        }
        removed
    }

    /// A verification of an archive ended.
    pub fn verified(&mut self, group: &str, id: &str, v: &Verification) {
        self.version += 1;
        if let Some(entry) = self.groups.get_mut(group).and_then(|g| g.get_mut(id)) {
            entry.apply_verification(v);
        }
    }
}

fn sorted(archives: &BTreeMap<String, Entry>) -> Vec<&Entry> {
    let mut list: Vec<&Entry> = archives.values().collect();
    list.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
    list
}

/// Reconciles the run history with the repository: an archive on disk that the history
/// does not know is adopted (recorded as a run, so a fresh state folder knows every
/// archive again), and one the history knows but the disk does not is returned as
/// Missing. Returns the Missing entries.
pub fn reconcile_history(
    state: &crate::state::StateDb,
    entries: &[Entry],
) -> Result<Vec<Entry>, crate::state::StateError> {
    let recorded = state.recorded_archives(crate::spec::repository::DEFAULT_REPOSITORY)?;
    for entry in entries {
        // A corrupt archive is listed from disk; it is no run result worth recording.
        if entry.health == Health::Corrupt || recorded.iter().any(|(id, _, _)| id == &entry.id) {
            continue;
        }
        let phase = match entry.health {
            Health::Good => Phase::Succeeded,
            Health::Partial => Phase::PartiallyFailed,
            Health::Corrupt | Health::Missing => Phase::Failed,
        };
        state.insert_run_if_absent(&crate::state::RunRecord {
            id: format!("adopted-{}", entry.id),
            kind: entry.kind.clone().unwrap_or_else(|| "BackupPolicy".into()),
            name: entry.group.clone(),
            archive_id: Some(entry.id.clone()),
            phase,
            start_time: entry.time,
            completion_time: Some(entry.time),
            bytes: entry.bytes,
            source_bytes: None,
            downtime_seconds: 0.0,
            error: (!entry.problems.is_empty()).then(|| entry.problems.join("; ")),
            dry_run: false,
            warnings: Vec::new(),
            repository: None,
            copies: Vec::new(),
        })?;
    }
    Ok(missing_from(recorded, entries))
}

/// The archives the run history records but `entries` (the repository) lacks, as Missing
/// entries. Reads only: what the read-only API uses.
pub fn missing<'a>(
    state: &crate::state::StateDb,
    repository: &str,
    entries: impl IntoIterator<Item = &'a Entry>,
) -> Result<Vec<Entry>, crate::state::StateError> {
    Ok(missing_from(state.recorded_archives(repository)?, entries))
}

/// The archives of `recorded` (the run history's) that `entries` lack, as Missing entries.
pub fn missing_from<'a>(
    recorded: Vec<(String, String, String)>,
    entries: impl IntoIterator<Item = &'a Entry>,
) -> Vec<Entry> {
    let present: std::collections::HashSet<&str> =
        entries.into_iter().map(|e| e.id.as_str()).collect();
    recorded
        .into_iter()
        .filter(|(id, _, _)| !present.contains(id.as_str()))
        .map(|(id, kind, name)| Entry {
            time: time_from_id(&id).unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            problems: vec!["the run history records it, but it is not in the repository".into()],
            id,
            group: name.clone(),
            kind: Some(kind),
            policy: Some(name),
            host: String::new(),
            bytes: 0,
            added_bytes: None,
            dedup_ratio: None,
            phase: None,
            health: Health::Missing,
            verified: None,
            path: PathBuf::new(),
            repository: crate::spec::repository::DEFAULT_REPOSITORY.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// The repository whose host folder is `host_root` (host `h`).
    fn local(host_root: &std::path::Path) -> Repository {
        Repository::local(host_root.parent().unwrap(), "h")
    }

    #[test]
    fn a_missing_repository_is_empty_and_partials_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            scan(&local(&dir.path().join("absent/h")))
                .unwrap()
                .is_empty()
        );
        fs::create_dir_all(dir.path().join("h/p/p-20261125T030000Z.partial")).unwrap();
        fs::write(
            dir.path()
                .join("h/p/p-20261125T030000Z.partial/manifest.json"),
            "{}",
        )
        .unwrap();
        assert!(scan(&local(&dir.path().join("h"))).unwrap().is_empty());
    }

    /// A succeeded run of `kind`/`name` that wrote (or, for a restore, read) `archive`.
    fn read_from(id: &str, kind: &str, name: &str, archive: &str) -> crate::state::RunRecord {
        crate::state::RunRecord {
            id: id.into(),
            kind: kind.into(),
            name: name.into(),
            archive_id: Some(archive.into()),
            phase: Phase::Succeeded,
            start_time: Utc::now(),
            completion_time: None,
            bytes: 1,
            source_bytes: None,
            downtime_seconds: 0.0,
            error: None,
            dry_run: false,
            warnings: Vec::new(),
            repository: None,
            copies: Vec::new(),
        }
    }

    #[test]
    fn history_and_repository_are_reconciled() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::state::StateDb::open(&dir.path().join("state")).unwrap();
        let repo = dir.path().join("repo/h");
        // On disk, unknown to the history: adopted.
        let on_disk = repo.join("p/p-20261125T030000Z");
        fs::create_dir_all(&on_disk).unwrap();
        fs::write(on_disk.join("manifest.json"), "not json").unwrap();
        // In the history, gone from disk: Missing.
        state
            .insert_run(&read_from("r", "BackupPolicy", "p", "p-20261124T030000Z"))
            .unwrap();
        let entries = scan(&local(&repo)).unwrap();
        let missing = reconcile_history(&state, &entries).unwrap();
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].id, "p-20261124T030000Z");
        assert_eq!(missing[0].health, Health::Missing);
        // The corrupt one is listed from disk, not adopted; a good one is, once.
        assert_eq!(state.runs(10).unwrap().len(), 1);
        let good = Entry {
            health: Health::Good,
            ..entries[0].clone()
        };
        reconcile_history(&state, std::slice::from_ref(&good)).unwrap();
        reconcile_history(&state, std::slice::from_ref(&good)).unwrap();
        assert_eq!(state.runs(10).unwrap().len(), 2);
        let recorded: Vec<String> = state
            .recorded_archives("default")
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert!(recorded.contains(&"p-20261125T030000Z".to_string()));
    }

    #[test]
    fn a_restore_in_the_history_is_no_archive() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::state::StateDb::open(&dir.path().join("state")).unwrap();
        let repo = dir.path().join("repo/h");
        fs::create_dir_all(&repo).unwrap();
        // A restore records the archive it read from; that archive is gone since.
        state
            .insert_run(&read_from(
                "restore-20261125T040000.000Z",
                "Restore",
                "restore",
                "p-20261124T030000Z",
            ))
            .unwrap();
        let entries = scan(&local(&repo)).unwrap();
        assert!(reconcile_history(&state, &entries).unwrap().is_empty());
        assert!(missing(&state, "default", &entries).unwrap().is_empty());
    }

    #[test]
    fn unreadable_manifests_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("h/p/p-20261125T030000Z")).unwrap();
        fs::write(
            dir.path().join("h/p/p-20261125T030000Z/manifest.json"),
            "not json",
        )
        .unwrap();
        let entries = scan(&local(&dir.path().join("h"))).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].health, Health::Corrupt);
        assert_eq!(entries[0].time, time_from_id("p-20261125T030000Z").unwrap());
    }
}
