//! The catalog: what the repository holds, read from the manifests alone.
//!
//! A manifest is the truth about an archive. The catalog can always be rebuilt from the
//! repository (a new host with only the repository knows every archive), and an archive
//! whose files no longer match their manifest is reported as Corrupt, never as good.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::executor::manifest::Manifest;
use crate::repository::MANIFEST;
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
    /// The repository folder it is grouped under: its policy's or Archive's name.
    pub group: String,
    pub kind: Option<String>,
    pub policy: Option<String>,
    pub time: DateTime<Utc>,
    pub bytes: u64,
    pub phase: Option<Phase>,
    pub health: Health,
    /// What is wrong with it, for Corrupt and Missing.
    pub problems: Vec<String>,
    /// When it was last verified (every byte read back), if ever.
    pub verified: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("reading the repository {path}: {source}")]
pub struct CatalogError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Every archive under `repository`, oldest first within each group. A missing repository
/// is an empty one.
pub fn scan(repository: &Path) -> Result<Vec<Entry>, CatalogError> {
    let mut entries = Vec::new();
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CatalogError { path, source }
    };
    let groups = match fs::read_dir(repository) {
        Ok(g) => g,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(entries),
        Err(e) => return Err(err(repository)(e)),
    };
    let mut group_dirs: Vec<PathBuf> = groups
        .filter_map(|g| g.ok().map(|g| g.path()))
        .filter(|p| p.is_dir())
        .collect();
    group_dirs.sort();
    for group_dir in group_dirs {
        let group = name_of(&group_dir);
        let mut archives: Vec<PathBuf> = fs::read_dir(&group_dir)
            .map_err(err(&group_dir))?
            .filter_map(|a| a.ok().map(|a| a.path()))
            .filter(|p| {
                p.is_dir()
                    && !name_of(p).ends_with(".partial")
                    && !name_of(p).ends_with(".deleting")
            })
            .collect();
        archives.sort();
        for dir in archives {
            if dir.join(MANIFEST).exists() {
                entries.push(read_entry(&group, &dir));
            }
        }
    }
    entries.sort_by(|a, b| (&a.group, a.time, &a.id).cmp(&(&b.group, b.time, &b.id)));
    Ok(entries)
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The time encoded in an archive id (`<name>-<yyyymmddThhmmssZ>`).
pub fn time_from_id(id: &str) -> Option<DateTime<Utc>> {
    let stamp = id.rsplit('-').next()?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

fn read_entry(group: &str, dir: &Path) -> Entry {
    let id = name_of(dir);
    let mut entry = Entry {
        time: time_from_id(&id).unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        id,
        group: group.to_string(),
        kind: None,
        policy: None,
        bytes: 0,
        phase: None,
        health: Health::Corrupt,
        problems: Vec::new(),
        verified: None,
        path: dir.to_path_buf(),
    };
    let manifest: Manifest = match fs::read(dir.join(MANIFEST))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(e) => {
            entry
                .problems
                .push(format!("manifest.json cannot be read: {e}"));
            return entry;
        }
    };
    entry.time = manifest.start_time;
    entry.kind = Some(manifest.kind.clone());
    entry.policy = manifest.policy.clone();
    entry.phase = Some(manifest.phase);
    entry.bytes = manifest.bytes();
    for artifact in &manifest.artifacts {
        let path = dir.join(&artifact.path);
        match fs::symlink_metadata(&path) {
            // A folder-format artifact's size is the sum of its files; its listing hash is
            // checked by verify, not here.
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.len() == artifact.size => {}
            Ok(meta) => entry.problems.push(format!(
                "{} is {} bytes, the manifest says {}",
                artifact.path,
                meta.len(),
                artifact.size
            )),
            Err(e) => entry.problems.push(format!("{}: {e}", artifact.path)),
        }
    }
    // A failed verification read every byte: it outweighs sizes that still match.
    if let Some(v) = crate::verify::last(dir) {
        entry.verified = Some(v.time);
        if !v.ok {
            entry.problems.extend(v.problems);
        }
    }
    entry.health = match (entry.problems.is_empty(), manifest.phase) {
        (false, _) => Health::Corrupt,
        (true, Phase::Succeeded) => Health::Good,
        (true, _) => Health::Partial,
    };
    entry
}

/// Reconciles the run history with the repository: an archive on disk that the history
/// does not know is adopted (recorded as a run, so a fresh state folder knows every
/// archive again), and one the history knows but the disk does not is returned as
/// Missing. Returns the Missing entries.
pub fn reconcile_history(
    state: &crate::state::StateDb,
    entries: &[Entry],
) -> Result<Vec<Entry>, crate::state::StateError> {
    let recorded = state.recorded_archives()?;
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
            downtime_seconds: 0.0,
            error: (!entry.problems.is_empty()).then(|| entry.problems.join("; ")),
            dry_run: false,
        })?;
    }
    Ok(missing_from(recorded, entries))
}

/// The archives the run history records but `entries` (the repository) lacks, as Missing
/// entries. Reads only: what the read-only API uses.
pub fn missing(
    state: &crate::state::StateDb,
    entries: &[Entry],
) -> Result<Vec<Entry>, crate::state::StateError> {
    Ok(missing_from(state.recorded_archives()?, entries))
}

fn missing_from(recorded: Vec<(String, String, String)>, entries: &[Entry]) -> Vec<Entry> {
    recorded
        .into_iter()
        .filter(|(id, _, _)| !entries.iter().any(|e| &e.id == id))
        .map(|(id, kind, name)| Entry {
            time: time_from_id(&id).unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
            problems: vec!["the run history records it, but it is not in the repository".into()],
            id,
            group: name.clone(),
            kind: Some(kind),
            policy: Some(name),
            bytes: 0,
            phase: None,
            health: Health::Missing,
            verified: None,
            path: PathBuf::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_time() {
        let t = time_from_id("nextcloud-nightly-20261125T030000Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-25T03:00:00+00:00");
        assert!(time_from_id("nope").is_none());
    }

    #[test]
    fn a_missing_repository_is_empty_and_partials_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(scan(&dir.path().join("absent")).unwrap().is_empty());
        fs::create_dir_all(dir.path().join("p/p-20261125T030000Z.partial")).unwrap();
        fs::write(
            dir.path()
                .join("p/p-20261125T030000Z.partial/manifest.json"),
            "{}",
        )
        .unwrap();
        assert!(scan(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn history_and_repository_are_reconciled() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::state::StateDb::open(&dir.path().join("state")).unwrap();
        let repo = dir.path().join("repo");
        // On disk, unknown to the history: adopted.
        let on_disk = repo.join("p/p-20261125T030000Z");
        fs::create_dir_all(&on_disk).unwrap();
        fs::write(on_disk.join("manifest.json"), "not json").unwrap();
        // In the history, gone from disk: Missing.
        state
            .insert_run(&crate::state::RunRecord {
                id: "r".into(),
                kind: "BackupPolicy".into(),
                name: "p".into(),
                archive_id: Some("p-20261124T030000Z".into()),
                phase: Phase::Succeeded,
                start_time: Utc::now(),
                completion_time: None,
                bytes: 1,
                downtime_seconds: 0.0,
                error: None,
                dry_run: false,
            })
            .unwrap();
        let entries = scan(&repo).unwrap();
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
            .recorded_archives()
            .unwrap()
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert!(recorded.contains(&"p-20261125T030000Z".to_string()));
    }

    #[test]
    fn unreadable_manifests_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("p/p-20261125T030000Z")).unwrap();
        fs::write(
            dir.path().join("p/p-20261125T030000Z/manifest.json"),
            "not json",
        )
        .unwrap();
        let entries = scan(dir.path()).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].health, Health::Corrupt);
        assert_eq!(entries[0].time, time_from_id("p-20261125T030000Z").unwrap());
    }
}
