//! Applying retention to the repository: the pure decision from [`crate::retention`],
//! carried out through the deletion journal (marked, deleted, forgotten), so a crash in
//! the middle of a deletion is finished at the next start and never half-done.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use tracing::{info, warn};

use super::catalog::{Catalog, Entry, Health as CatalogHealth};
use super::storage::Repository;
use crate::fault;
use crate::retention::{self, Candidate, Decision, Health};
use crate::spec::common::Retention;
use crate::state::StateDb;

/// What one pruning pass decided and did.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pruned {
    pub decisions: Vec<Decision>,
    /// Archive ids deleted (or, in a dry run, that would have been).
    pub forgotten: Vec<String>,
    pub dry_run: bool,
    pub errors: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Decides retention for the archives of `group` among `entries`. Corrupt archives are
/// not candidates: never counted as kept, and not deleted by retention either (they may
/// hold the only copy of something); `holdfast get archives` shows them.
pub fn decide(
    entries: &[&Entry],
    group: &str,
    rules: &Retention,
    tz: Tz,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    retention::apply(&candidates(entries, group), rules, tz, now)
}

/// A policy's archives that retention may decide about: those its own runs took (an
/// `Archive` spec of the same name shares the repository folder, but its archive follows
/// its own `ttl` and `deletionPolicy`, never the policy's retention), good or partial.
fn candidates(entries: &[&Entry], group: &str) -> Vec<Candidate> {
    entries
        .iter()
        .filter(|e| e.group == group && e.kind.as_deref() == Some("BackupPolicy"))
        .filter(|e| matches!(e.health, CatalogHealth::Good | CatalogHealth::Partial))
        .map(|e| Candidate {
            id: e.id.clone(),
            time: e.time,
            health: if e.health == CatalogHealth::Good {
                Health::Good
            } else {
                Health::Partial
            },
        })
        .collect()
}

/// The time zone retention counts days in: the policy's.
pub fn zone(policy: &crate::spec::policy::BackupPolicySpec) -> Tz {
    policy
        .timezone
        .as_ref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(chrono_tz::UTC)
}

/// What retention decides now for each valid BackupPolicy that has retention rules, by
/// policy name: for `holdfast plan` and `holdfast get archives`.
pub fn decide_all<'a>(
    catalog: &Catalog,
    resources: impl IntoIterator<Item = &'a crate::spec::Resource>,
    now: DateTime<Utc>,
) -> Vec<(String, Vec<Decision>)> {
    let mut out = Vec::new();
    for resource in resources {
        let crate::spec::Resource::BackupPolicy(policy) = resource else {
            continue;
        };
        let Some(rules) = &policy.spec.retention else {
            continue;
        };
        let name = &policy.metadata.name;
        let decisions = decide(&catalog.group(name), name, rules, zone(&policy.spec), now);
        out.push((name.clone(), decisions));
    }
    out
}

/// The decisions retention will take once a new good archive exists at `next` (the next
/// scheduled run): what that run's pruning will forget.
pub fn decide_with_next(
    entries: &[&Entry],
    group: &str,
    rules: &Retention,
    tz: Tz,
    next: DateTime<Utc>,
) -> Vec<Decision> {
    let mut candidates = candidates(entries, group);
    let upcoming = format!("{group}-next");
    candidates.push(Candidate {
        id: upcoming.clone(),
        time: next,
        health: Health::Good,
    });
    retention::apply(&candidates, rules, tz, next)
        .into_iter()
        .filter(|d| d.id != upcoming)
        .collect()
}

/// Decides and deletes among `entries` (the group's archives as the catalog knows them).
/// Never call it for a policy whose spec is invalid or suspended. The caller takes the
/// forgotten ids out of its catalog.
pub fn prune(
    state: &StateDb,
    repo: &Repository,
    entries: &[&Entry],
    group: &str,
    rules: &Retention,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Pruned, PruneError> {
    let decisions = decide(entries, group, rules, tz, now);
    // An append-only repository is pruned elsewhere (a bucket lifecycle rule): retention
    // says what it would delete, as in a dry run, and deletes nothing.
    let dry_run = rules.dry_run || repo.append_only();
    let mut pruned = Pruned {
        dry_run,
        ..Pruned::default()
    };
    for decision in &decisions {
        if decision.keep {
            continue;
        }
        let reason = decision.reasons.join(", ");
        if dry_run {
            let why = if rules.dry_run {
                "dryRun"
            } else {
                "appendOnly repository"
            };
            info!(archive = %decision.id, reason, repository = repo.name(), "retention would delete ({why})");
            pruned.forgotten.push(decision.id.clone());
            continue;
        }
        info!(archive = %decision.id, reason, "retention deletes");
        match delete_archive(state, repo, group, &decision.id, &reason)? {
            Ok(()) => pruned.forgotten.push(decision.id.clone()),
            Err(e) => pruned.errors.push(e),
        }
    }
    pruned.decisions = decisions;
    Ok(pruned)
}

/// The key an archive has in the deletion journal.
fn journal_key(group: &str, id: &str) -> PathBuf {
    Path::new(group).join(id)
}

/// Deletes one archive through the journal: marked (durably), taken out of sight,
/// removed, forgotten. The outer error is the state database's; the inner one is about
/// the storage, and leaves the mark for the next start to finish.
pub fn delete_archive(
    state: &StateDb,
    repo: &Repository,
    group: &str,
    id: &str,
    reason: &str,
) -> Result<Result<(), String>, PruneError> {
    if repo.append_only() {
        return Ok(Err(format!(
            "the repository `{}` is appendOnly: holdfast never deletes there",
            repo.name()
        )));
    }
    let key = journal_key(group, id);
    state.mark_deletion(&key, id, reason)?;
    fault::point("prune.after-mark");
    match repo.delete(group, id) {
        Ok(()) => {
            fault::point("prune.before-forget");
            state.finish_deletion(&key, id)?;
            Ok(Ok(()))
        }
        Err(e) => {
            warn!(archive = %id, "deleting: {e}");
            Ok(Err(e.to_string()))
        }
    }
}

/// Finishes deletions a crash interrupted. Returns the archive ids finished.
pub fn resume(state: &StateDb, repo: &Repository) -> Result<Vec<String>, PruneError> {
    let mut done = Vec::new();
    for (key, id) in state.pending_deletions()? {
        // The journal holds `<group>/<id>` (older versions: the archive's full path).
        let group = key
            .parent()
            .and_then(|p| p.file_name())
            .map(|g| g.to_string_lossy().into_owned())
            .unwrap_or_default();
        match repo.delete(&group, &id) {
            Ok(()) => {
                state.finish_deletion(&key, &id)?;
                done.push(id);
            }
            Err(e) => warn!(archive = %id, "finishing an interrupted deletion: {e}"),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::catalog;
    use crate::repo::manifest::{Manifest, ManifestTargets};
    use crate::spec::common::Phase;

    const HOST: &str = "h";

    /// The repository whose host folder is `host_root`.
    fn local(host_root: &Path) -> Repository {
        Repository::local(host_root.parent().unwrap(), HOST)
    }

    fn archive(repo: &Path, group: &str, id: &str, time: DateTime<Utc>) -> PathBuf {
        archive_of_kind(repo, group, id, time, "BackupPolicy")
    }

    fn archive_of_kind(
        repo: &Path,
        group: &str,
        id: &str,
        time: DateTime<Utc>,
        kind: &str,
    ) -> PathBuf {
        let dir = repo.join(group).join(id);
        std::fs::create_dir_all(dir.join("volumes")).unwrap();
        std::fs::write(dir.join("volumes/v.tar"), b"data").unwrap();
        let manifest = Manifest {
            format_version: 1,
            id: id.into(),
            kind: kind.into(),
            name: group.into(),
            policy: Some(group.into()),
            phase: Phase::Succeeded,
            host: "h".into(),
            holdfast_version: "0".into(),
            docker_api_version: "1.41".into(),
            start_time: time,
            completion_time: time,
            format: "tar".into(),
            level: None,
            targets: ManifestTargets::default(),
            artifacts: vec![crate::repo::manifest::Artifact {
                kind: "volume".into(),
                path: "volumes/v.tar".into(),
                size: 4,
                sha256: String::new(),
                source_bytes: 4,
                entries: 1,
                via: None,
                source: None,
                stack: None,
                engine: None,
                database: None,
                stored_size: None,
                stored_sha256: None,
                snapshot: None,
            }],
            timings: Default::default(),
            downtime: Default::default(),
            warnings: vec![],
            encryption: None,
        };
        std::fs::write(
            dir.join("manifest.json"),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        dir
    }

    /// Prunes group `p` as the daemon does: from the catalog, read once.
    fn prune_on_disk(
        state: &StateDb,
        repo: &Path,
        rules: &Retention,
        now: DateTime<Utc>,
    ) -> Result<Pruned, PruneError> {
        let repo = local(repo);
        let catalog = Catalog::load(&repo).unwrap();
        prune(
            state,
            &repo,
            &catalog.group("p"),
            "p",
            rules,
            chrono_tz::UTC,
            now,
        )
    }

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::hours(400_000 + h)
    }

    #[test]
    fn keep_last_two_of_four_and_corrupt_ones_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = tempfile::tempdir().unwrap();
        let state = StateDb::open(state_dir.path()).unwrap();
        let repo = dir.path().join("repo").join(HOST);
        for h in 0..4 {
            archive(&repo, "p", &format!("p-{h}"), at(h));
        }
        let corrupt = archive(&repo, "p", "p-c", at(-10));
        std::fs::write(corrupt.join("volumes/v.tar"), b"truncated-and-longer").unwrap();
        let rules = Retention {
            keep_last: Some(2),
            ..Retention::default()
        };
        let pruned = prune_on_disk(&state, &repo, &rules, at(10)).unwrap();
        assert_eq!(pruned.forgotten, ["p-0", "p-1"]);
        let left: Vec<String> = catalog::scan(&local(&repo))
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(left, ["p-c", "p-2", "p-3"]);
        assert!(state.pending_deletions().unwrap().is_empty());
        // Applying it again forgets nothing more.
        assert!(
            prune_on_disk(&state, &repo, &rules, at(10))
                .unwrap()
                .forgotten
                .is_empty()
        );
    }

    #[test]
    fn a_same_named_archive_specs_archive_is_not_the_policys_to_prune() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDb::open(&dir.path().join("state")).unwrap();
        let repo = dir.path().join("repo").join(HOST);
        archive_of_kind(&repo, "p", "p-old", at(-5), "Archive");
        for h in 0..3 {
            archive(&repo, "p", &format!("p-{h}"), at(h));
        }
        let rules = Retention {
            keep_last: Some(1),
            ..Retention::default()
        };
        let pruned = prune_on_disk(&state, &repo, &rules, at(10)).unwrap();
        assert_eq!(pruned.forgotten, ["p-0", "p-1"]);
        let left: Vec<String> = catalog::scan(&local(&repo))
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(left, ["p-old", "p-2"]);
    }

    #[test]
    fn dry_run_deletes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDb::open(&dir.path().join("state")).unwrap();
        let repo = dir.path().join("repo").join(HOST);
        for h in 0..3 {
            archive(&repo, "p", &format!("p-{h}"), at(h));
        }
        let rules = Retention {
            keep_last: Some(1),
            dry_run: true,
            ..Retention::default()
        };
        let pruned = prune_on_disk(&state, &repo, &rules, at(10)).unwrap();
        assert_eq!(pruned.forgotten.len(), 2);
        assert_eq!(catalog::scan(&local(&repo)).unwrap().len(), 3);
    }

    #[test]
    fn a_deletion_interrupted_after_marking_is_finished_by_resume() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDb::open(&dir.path().join("state")).unwrap();
        let repo = dir.path().join("repo").join(HOST);
        let doomed = archive(&repo, "p", "p-0", at(0));
        archive(&repo, "p", "p-1", at(1));
        // The crash happened right after the mark: nothing deleted yet.
        state.mark_deletion(&doomed, "p-0", "last 1").unwrap();
        assert_eq!(resume(&state, &local(&repo)).unwrap(), ["p-0"]);
        assert!(!doomed.exists());
        let left: Vec<String> = catalog::scan(&local(&repo))
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(left, ["p-1"]);
        // And a crash after the rename, before the removal.
        let half = archive(&repo, "p", "p-2", at(2));
        state.mark_deletion(&half, "p-2", "x").unwrap();
        std::fs::rename(&half, half.with_file_name("p-2.deleting")).unwrap();
        assert_eq!(
            catalog::scan(&local(&repo)).unwrap().len(),
            1,
            "a .deleting folder is not listed"
        );
        assert_eq!(resume(&state, &local(&repo)).unwrap(), ["p-2"]);
        assert!(!half.with_file_name("p-2.deleting").exists());
    }
}
