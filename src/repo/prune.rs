//! Applying retention to the repository: the pure decision from [`crate::retention`],
//! carried out through the deletion journal ([`super::deletion`]), so a crash in the
//! middle of a deletion is finished at the next start and never half-done.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use tracing::info;

use super::catalog::{Catalog, Entry, Health as CatalogHealth};
pub use super::deletion::{delete_archive, reclaim, resume};
use super::storage::Repository;
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
    /// Bytes a restic repository freed after the deletions (restic's prune); absent when
    /// nothing was pruned there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freed_bytes: Option<u64>,
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
    if !dry_run && !pruned.forgotten.is_empty() {
        match reclaim(repo) {
            Ok(freed) => pruned.freed_bytes = freed,
            Err(e) => pruned.errors.push(e),
        }
    }
    pruned.decisions = decisions;
    Ok(pruned)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::repo::catalog;
    use std::path::{Path, PathBuf};

    use crate::repo::deletion::journal_key;
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

    /// A restic-format Repository `vault` on a local folder of `dir`, `appendOnly` as
    /// asked.
    pub(crate) fn restic_repository(dir: &Path, append_only: bool) -> Repository {
        let password = dir.join("password");
        std::fs::write(&password, "secret\n").unwrap();
        let spec: crate::spec::repository::RepositorySpec =
            serde_json::from_value(serde_json::json!({
                "storage": {"local": {"path": dir.join("restic")}},
                "format": "restic",
                "password": {"fromFile": password},
                "appendOnly": append_only,
            }))
            .unwrap();
        crate::repo::named::open("vault", &spec, HOST).unwrap()
    }

    /// An archive of group `p` taken at `time` as a run writes one into a restic
    /// repository: a snapshot of `data` tagged with the archive's id, then the manifest.
    /// Returns the archive id and its snapshot.
    pub(crate) fn restic_archive(
        repo: &Repository,
        data: &Path,
        time: DateTime<Utc>,
    ) -> (String, String) {
        use crate::repo::manifest::Artifact;
        use std::sync::Arc;
        let staged = repo.begin("p", time).unwrap();
        let restic = repo.restic().unwrap();
        let run = restic
            .start_run(
                vec![
                    crate::repo::restic::TAG.into(),
                    "policy:p".into(),
                    format!("run:{}", staged.id),
                    format!("archive:{}", staged.id),
                ],
                Arc::new(crate::progress::Silent),
            )
            .unwrap();
        let taken = run
            .folder(
                data,
                "volumes/v",
                &["volume:v".into()],
                crate::archive::Excludes::none(),
                Arc::new(|| false),
            )
            .unwrap();
        let manifest = Manifest {
            format_version: 1,
            id: staged.id.clone(),
            kind: "BackupPolicy".into(),
            name: "p".into(),
            policy: Some("p".into()),
            phase: Phase::Succeeded,
            host: HOST.into(),
            holdfast_version: "0".into(),
            docker_api_version: "1.41".into(),
            start_time: time,
            completion_time: time,
            format: "restic".into(),
            level: None,
            targets: ManifestTargets::default(),
            artifacts: vec![Artifact {
                kind: "volume".into(),
                path: "volumes/v.tar".into(),
                size: taken.source_bytes,
                sha256: String::new(),
                source_bytes: taken.source_bytes,
                entries: taken.entries,
                via: Some("direct".into()),
                source: Some("v".into()),
                stack: None,
                engine: None,
                database: None,
                stored_size: Some(taken.added_bytes),
                stored_sha256: None,
                snapshot: Some(taken.snapshot.clone()),
            }],
            timings: Default::default(),
            downtime: Default::default(),
            warnings: vec![],
            encryption: None,
        };
        let id = staged.id.clone();
        repo.commit(staged, &serde_json::to_vec(&manifest).unwrap())
            .unwrap();
        (id, taken.snapshot)
    }

    /// Three archives of different data, each 64 KiB of its own random bytes.
    fn three_restic_archives(dir: &Path, repo: &Repository) -> Vec<(String, String)> {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        (0..3u64)
            .map(|h| {
                // xorshift: bytes that neither compress nor repeat another archive's.
                let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ (h + 1);
                let bytes: Vec<u8> = (0..65536)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                std::fs::write(data.join("f"), bytes).unwrap();
                restic_archive(repo, &data, at(h as i64))
            })
            .collect()
    }

    fn snapshot_ids(repo: &Repository) -> Vec<String> {
        let restic = repo.restic().unwrap();
        restic
            .snapshots()
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect()
    }

    #[test]
    fn retention_in_a_restic_repository_forgets_the_snapshots_and_frees_their_data() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDb::open(&dir.path().join("state")).unwrap();
        let repo = restic_repository(dir.path(), false);
        let archives = three_restic_archives(dir.path(), &repo);
        let catalog = Catalog::load(&repo).unwrap();
        assert!(
            catalog
                .group("p")
                .iter()
                .all(|e| e.health == CatalogHealth::Good),
            "{:?}",
            catalog.group("p")
        );
        let rules = Retention {
            keep_last: Some(1),
            ..Retention::default()
        };
        let pruned = prune(
            &state,
            &repo,
            &catalog.group("p"),
            "p",
            &rules,
            chrono_tz::UTC,
            at(10),
        )
        .unwrap();
        assert!(pruned.errors.is_empty(), "{:?}", pruned.errors);
        assert_eq!(
            pruned.forgotten,
            [archives[0].0.clone(), archives[1].0.clone()]
        );
        assert!(pruned.freed_bytes.unwrap() > 65536, "{pruned:?}");
        assert_eq!(snapshot_ids(&repo), [archives[2].1.clone()]);
        let left: Vec<String> = catalog::scan(&repo)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(left, [archives[2].0.clone()]);
        assert!(state.pending_deletions().unwrap().is_empty());
        let restic = repo.restic().unwrap();
        assert!(
            restic
                .check(&[], crate::repo::restic::ReadData::All)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_restic_deletion_interrupted_after_the_manifest_went_is_finished_by_resume() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDb::open(&dir.path().join("state")).unwrap();
        let repo = restic_repository(dir.path(), false);
        let archives = three_restic_archives(dir.path(), &repo);
        let (crashed, crashed_snapshot) = &archives[1];
        // The crash came after the mark and the manifest's removal, before the forget.
        state
            .mark_deletion(&journal_key(&repo, "p", crashed), crashed, "last 1")
            .unwrap();
        repo.delete("p", crashed).unwrap();
        assert_eq!(catalog::scan(&repo).unwrap().len(), 2);
        assert!(snapshot_ids(&repo).contains(crashed_snapshot));

        // Not the default repository's to finish: only a resumption in `vault` does.
        let default = local(&dir.path().join("repo").join(HOST));
        assert!(resume(&state, &default).unwrap().is_empty());
        assert_eq!(state.pending_deletions().unwrap().len(), 1);
        assert_eq!(
            resume(&state, &repo).unwrap(),
            std::slice::from_ref(crashed)
        );
        assert!(!snapshot_ids(&repo).contains(crashed_snapshot));
        assert_eq!(snapshot_ids(&repo).len(), 2);
        assert!(state.pending_deletions().unwrap().is_empty());

        // And a crash right after the mark: the manifest names the snapshot still.
        let (first, first_snapshot) = &archives[0];
        state
            .mark_deletion(&journal_key(&repo, "p", first), first, "last 1")
            .unwrap();
        assert_eq!(resume(&state, &repo).unwrap(), std::slice::from_ref(first));
        assert!(!snapshot_ids(&repo).contains(first_snapshot));
        let left: Vec<String> = catalog::scan(&repo)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(left, [archives[2].0.clone()]);
    }

    #[test]
    fn an_append_only_restic_repository_forgets_and_prunes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDb::open(&dir.path().join("state")).unwrap();
        let writer = restic_repository(dir.path(), false);
        three_restic_archives(dir.path(), &writer);
        let repo = restic_repository(dir.path(), true);
        let catalog = Catalog::load(&repo).unwrap();
        let rules = Retention {
            keep_last: Some(1),
            ..Retention::default()
        };
        let pruned = prune(
            &state,
            &repo,
            &catalog.group("p"),
            "p",
            &rules,
            chrono_tz::UTC,
            at(10),
        )
        .unwrap();
        assert!(pruned.dry_run);
        assert_eq!(pruned.forgotten.len(), 2);
        assert_eq!(pruned.freed_bytes, None);
        let first = &catalog.group("p")[0].id.clone();
        let refused = delete_archive(&state, &repo, "p", first, "by hand").unwrap();
        assert!(refused.unwrap_err().contains("appendOnly"));
        assert_eq!(reclaim(&repo), Ok(None));
        assert_eq!(snapshot_ids(&repo).len(), 3);
        assert_eq!(catalog::scan(&repo).unwrap().len(), 3);
        // Nor are the snapshots of a run that never committed its archive.
        let uncommitted = catalog.group("p")[0].id.clone();
        std::fs::remove_dir_all(
            dir.path()
                .join("restic/holdfast")
                .join(HOST)
                .join("p")
                .join(&uncommitted),
        )
        .unwrap();
        assert!(repo.clean().unwrap().is_empty());
        assert_eq!(snapshot_ids(&repo).len(), 3);
        assert_eq!(writer.clean().unwrap().len(), 1, "a writer may forget it");
        assert_eq!(snapshot_ids(&repo).len(), 2);
    }
}
