//! The state directory's SQLite database: the stop journal and the record of every run.
//!
//! The database is opened in WAL mode with `synchronous = FULL`: a journal entry must be on
//! disk before the container it names is stopped, or a crash could leave a stack down with
//! nobody knowing it was ours to restart.

pub mod lock;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::spec::common::Phase;

/// Versioned migrations; entry N brings the schema from version N to N+1. Never edit an
/// entry that has shipped: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: runs and the stop journal.
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        archive_id TEXT,
        phase TEXT NOT NULL,
        start_time TEXT NOT NULL,
        completion_time TEXT,
        bytes INTEGER NOT NULL DEFAULT 0,
        downtime_seconds REAL NOT NULL DEFAULT 0,
        error TEXT,
        dry_run INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX runs_by_name ON runs (kind, name, start_time);
    CREATE TABLE stop_journal (
        container_id TEXT PRIMARY KEY,
        container_name TEXT NOT NULL,
        run_id TEXT NOT NULL,
        stopped_at TEXT NOT NULL
    );",
];

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("creating the state folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the state database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the state database {path} has schema version {found}, newer than this holdfast knows ({known}); upgrade holdfast"
    )]
    TooNew {
        path: PathBuf,
        found: usize,
        known: usize,
    },
    #[error("{doing} in the state database: {source}")]
    Query {
        doing: &'static str,
        #[source]
        source: rusqlite::Error,
    },
}

fn query(doing: &'static str) -> impl FnOnce(rusqlite::Error) -> StateError {
    move |source| StateError::Query { doing, source }
}

/// A container holdfast stopped and must start again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StopEntry {
    pub container_id: String,
    pub container_name: String,
    pub run_id: String,
    pub stopped_at: DateTime<Utc>,
}

/// One run of a policy or archive.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub archive_id: Option<String>,
    pub phase: Phase,
    pub start_time: DateTime<Utc>,
    pub completion_time: Option<DateTime<Utc>>,
    pub bytes: u64,
    pub downtime_seconds: f64,
    pub error: Option<String>,
    pub dry_run: bool,
}

/// The state database. One connection behind a mutex: runs are rare and statements short,
/// so contention is not a concern, and one connection keeps the ordering of writes simple.
pub struct StateDb {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl StateDb {
    /// Opens (creating if needed) `<dir>/holdfast.db` and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<StateDb, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("holdfast.db");
        let open_err = |source| StateError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        let version: usize = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(open_err)?;
        if version > MIGRATIONS.len() {
            return Err(StateError::TooNew {
                path,
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction().map_err(open_err)?;
            tx.execute_batch(sql).map_err(open_err)?;
            tx.pragma_update(None, "user_version", i + 1)
                .map_err(open_err)?;
            tx.commit().map_err(open_err)?;
        }
        Ok(StateDb {
            conn: Mutex::new(conn),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite rolled back
        // whatever statement was running.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records, durably, that a container is about to be stopped.
    pub fn journal_stop(&self, entry: &StopEntry) -> Result<(), StateError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO stop_journal (container_id, container_name, run_id, stopped_at) VALUES (?1, ?2, ?3, ?4)",
                params![entry.container_id, entry.container_name, entry.run_id, entry.stopped_at.to_rfc3339()],
            )
            .map_err(query("journalling a container stop"))?;
        Ok(())
    }

    /// Forgets a journalled stop once the container runs again.
    pub fn journal_remove(&self, container_id: &str) -> Result<(), StateError> {
        self.conn()
            .execute(
                "DELETE FROM stop_journal WHERE container_id = ?1",
                params![container_id],
            )
            .map_err(query("clearing a journalled stop"))?;
        Ok(())
    }

    pub fn journal(&self) -> Result<Vec<StopEntry>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT container_id, container_name, run_id, stopped_at FROM stop_journal ORDER BY stopped_at")
            .map_err(query("reading the stop journal"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(StopEntry {
                    container_id: row.get(0)?,
                    container_name: row.get(1)?,
                    run_id: row.get(2)?,
                    stopped_at: parse_time(row.get::<_, String>(3)?),
                })
            })
            .map_err(query("reading the stop journal"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("reading the stop journal"))
    }

    pub fn insert_run(&self, run: &RunRecord) -> Result<(), StateError> {
        self.conn()
            .execute(
                "INSERT INTO runs (id, kind, name, archive_id, phase, start_time, completion_time, bytes, downtime_seconds, error, dry_run)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    run.id,
                    run.kind,
                    run.name,
                    run.archive_id,
                    phase_name(run.phase),
                    run.start_time.to_rfc3339(),
                    run.completion_time.map(|t| t.to_rfc3339()),
                    run.bytes as i64,
                    run.downtime_seconds,
                    run.error,
                    run.dry_run,
                ],
            )
            .map_err(query("recording a run"))?;
        Ok(())
    }

    /// Records how a run ended.
    pub fn finish_run(&self, run: &RunRecord) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE runs SET archive_id = ?2, phase = ?3, completion_time = ?4, bytes = ?5, downtime_seconds = ?6, error = ?7 WHERE id = ?1",
                params![
                    run.id,
                    run.archive_id,
                    phase_name(run.phase),
                    run.completion_time.map(|t| t.to_rfc3339()),
                    run.bytes as i64,
                    run.downtime_seconds,
                    run.error,
                ],
            )
            .map_err(query("recording the end of a run"))?;
        Ok(())
    }

    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, StateError> {
        self.conn()
            .query_row(
                &format!("{RUN_COLUMNS} WHERE id = ?1"),
                params![id],
                row_to_run,
            )
            .optional()
            .map_err(query("reading a run"))
    }

    /// The newest runs first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "{RUN_COLUMNS} ORDER BY start_time DESC, id DESC LIMIT ?1"
            ))
            .map_err(query("listing runs"))?;
        let rows = stmt
            .query_map(params![limit as i64], row_to_run)
            .map_err(query("listing runs"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("listing runs"))
    }
}

const RUN_COLUMNS: &str = "SELECT id, kind, name, archive_id, phase, start_time, completion_time, bytes, downtime_seconds, error, dry_run FROM runs";

fn row_to_run(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: row.get(0)?,
        kind: row.get(1)?,
        name: row.get(2)?,
        archive_id: row.get(3)?,
        phase: parse_phase(&row.get::<_, String>(4)?),
        start_time: parse_time(row.get::<_, String>(5)?),
        completion_time: row.get::<_, Option<String>>(6)?.map(parse_time),
        bytes: row.get::<_, i64>(7)?.max(0) as u64,
        downtime_seconds: row.get(8)?,
        error: row.get(9)?,
        dry_run: row.get(10)?,
    })
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "Pending",
        Phase::Running => "Running",
        Phase::Succeeded => "Succeeded",
        Phase::PartiallyFailed => "PartiallyFailed",
        Phase::Failed => "Failed",
    }
}

fn parse_phase(name: &str) -> Phase {
    match name {
        "Pending" => Phase::Pending,
        "Running" => Phase::Running,
        "Succeeded" => Phase::Succeeded,
        "PartiallyFailed" => Phase::PartiallyFailed,
        _ => Phase::Failed,
    }
}

fn parse_time(text: String) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str) -> RunRecord {
        RunRecord {
            id: id.into(),
            kind: "BackupPolicy".into(),
            name: "demo".into(),
            archive_id: None,
            phase: Phase::Running,
            start_time: Utc::now(),
            completion_time: None,
            bytes: 0,
            downtime_seconds: 0.0,
            error: None,
            dry_run: false,
        }
    }

    #[test]
    fn journal_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let entry = StopEntry {
            container_id: "abc".into(),
            container_name: "demo_db_1".into(),
            run_id: "r1".into(),
            stopped_at: DateTime::parse_from_rfc3339("2026-11-25T03:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        };
        StateDb::open(dir.path())
            .unwrap()
            .journal_stop(&entry)
            .unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        assert_eq!(db.journal().unwrap(), [entry]);
        db.journal_remove("abc").unwrap();
        assert!(db.journal().unwrap().is_empty());
    }

    #[test]
    fn runs_are_recorded_and_finished() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        let mut r = run("r1");
        db.insert_run(&r).unwrap();
        r.phase = Phase::Succeeded;
        r.bytes = 42;
        r.archive_id = Some("demo-20261125T030000Z".into());
        r.completion_time = Some(Utc::now());
        db.finish_run(&r).unwrap();
        let back = db.run("r1").unwrap().unwrap();
        assert_eq!(back.phase, Phase::Succeeded);
        assert_eq!(back.bytes, 42);
        assert_eq!(db.runs(10).unwrap().len(), 1);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        drop(StateDb::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join("holdfast.db")).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = StateDb::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }
}
