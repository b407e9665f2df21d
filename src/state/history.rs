//! Bounded run history: each object keeps its newest runs and their log files, like
//! Kubernetes' `successfulJobsHistoryLimit`, and never the run of an archive the history
//! says exists: that archive is still in the repository (its run and log tell how it was
//! made), or it went missing behind holdfast's back, which stays reported as Missing.
//! An archive deleted on purpose (retention, `holdfast delete`) no longer holds its run.

use std::collections::BTreeMap;
use std::path::Path;

use super::{RunRecord, StateDb, StateError};
use crate::spec::common::Phase;

/// The runs to forget among `runs`: per object (kind and name), those after the newest
/// `limit`, except a run still in progress and a backup that recorded its archive. A
/// restore names the archive it read, which is not its own: it counts like any other run.
/// `limit` 0 forgets nothing. Returns run ids, oldest first per object.
pub fn to_forget(runs: &[RunRecord], limit: usize) -> Vec<String> {
    if limit == 0 {
        return Vec::new();
    }
    let mut by_object: BTreeMap<(&str, &str), Vec<&RunRecord>> = BTreeMap::new();
    for run in runs {
        by_object
            .entry((run.kind.as_str(), run.name.as_str()))
            .or_default()
            .push(run);
    }
    let mut forget = Vec::new();
    for (_, mut runs) in by_object {
        runs.sort_by(|a, b| (b.start_time, &b.id).cmp(&(a.start_time, &a.id)));
        let mut older: Vec<&RunRecord> = runs
            .into_iter()
            .skip(limit)
            .filter(|r| r.phase != Phase::Running)
            .filter(|r| !records_archive(r))
            .collect();
        older.reverse();
        forget.extend(older.into_iter().map(|r| r.id.clone()));
    }
    forget
}

/// The rule of [`StateDb::recorded_archives`]: a backup that wrote an archive, not yet
/// deleted on purpose.
fn records_archive(run: &RunRecord) -> bool {
    matches!(run.kind.as_str(), "BackupPolicy" | "Archive")
        && run.archive_id.is_some()
        && matches!(run.phase, Phase::Succeeded | Phase::PartiallyFailed)
}

/// Forgets the runs beyond each object's newest `limit` (see [`to_forget`]) and removes
/// their log files from `logs`. Returns the run ids forgotten.
pub fn prune(state: &StateDb, logs: &Path, limit: usize) -> Result<Vec<String>, StateError> {
    let runs = state.all_runs()?;
    let forget = to_forget(&runs, limit);
    if forget.is_empty() {
        return Ok(forget);
    }
    state.delete_runs(&forget)?;
    for id in &forget {
        // A run id is `<name>-<time>`: one file name, never a path.
        let file = logs.join(format!("{id}.log"));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                "removing the log of a forgotten run {}: {e}",
                file.display()
            ),
        }
    }
    Ok(forget)
}

impl StateDb {
    /// Each object's newest `per_object` runs that were not dry runs, newest first within
    /// an object: the trends of the dashboard's overview, in one query however many
    /// objects there are.
    pub fn recent_runs(&self, per_object: usize) -> Result<Vec<RunRecord>, StateError> {
        let conn = self.conn();
        let sql = format!(
            "{} WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY kind, name ORDER BY start_time DESC, id DESC) AS n FROM runs WHERE dry_run = 0) WHERE n <= ?1) ORDER BY kind, name, start_time DESC, id DESC",
            super::RUN_COLUMNS
        );
        let mut stmt = conn
            .prepare(&sql)
            .map_err(super::query("listing recent runs"))?;
        let rows = stmt
            .query_map(rusqlite::params![per_object as i64], super::row_to_run)
            .map_err(super::query("listing recent runs"))?;
        rows.collect::<Result<_, _>>()
            .map_err(super::query("listing recent runs"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn run(kind: &str, name: &str, n: i64, archive: Option<&str>, phase: Phase) -> RunRecord {
        RunRecord {
            id: format!("{name}-{n:03}"),
            kind: kind.into(),
            name: name.into(),
            archive_id: archive.map(str::to_string),
            phase,
            start_time: DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::hours(n),
            completion_time: None,
            bytes: 0,
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
    fn each_object_keeps_its_newest_runs_and_the_runs_of_existing_archives() {
        let mut runs = Vec::new();
        // p: 6 runs; the oldest wrote an archive; the next one's was deleted on purpose
        // (its id forgotten), the third failed after naming its archive.
        runs.push(run("BackupPolicy", "p", 0, Some("p-a0"), Phase::Succeeded));
        runs.push(run("BackupPolicy", "p", 1, None, Phase::Succeeded));
        runs.push(run("BackupPolicy", "p", 2, Some("p-a2"), Phase::Failed));
        for n in 3..6 {
            runs.push(run("BackupPolicy", "p", n, None, Phase::Failed));
        }
        // q: 2 runs, under the limit.
        runs.push(run("BackupPolicy", "q", 0, None, Phase::Failed));
        runs.push(run("BackupPolicy", "q", 1, None, Phase::Failed));
        // A restore that read p-a0 keeps no slot for it.
        for n in 0..4 {
            runs.push(run("Restore", "restore", n, Some("p-a0"), Phase::Succeeded));
        }
        // An Archive spec of the name `p` is another object.
        runs.push(run("Archive", "p", 0, None, Phase::Failed));
        let forget = to_forget(&runs, 3);
        assert_eq!(forget, ["p-001", "p-002", "restore-000"]);
    }

    #[test]
    fn a_run_in_progress_is_never_forgotten_and_zero_keeps_everything() {
        let runs = vec![
            run("BackupPolicy", "p", 0, None, Phase::Running),
            run("BackupPolicy", "p", 1, None, Phase::Failed),
            run("BackupPolicy", "p", 2, None, Phase::Failed),
        ];
        assert_eq!(to_forget(&runs, 1), ["p-001"]);
        assert!(to_forget(&runs, 0).is_empty());
    }
}
