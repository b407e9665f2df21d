//! The state directory's SQLite database: the stop journal and the record of every run.
//!
//! The database is opened in WAL mode with `synchronous = FULL`: a journal entry must be on
//! disk before the container it names is stopped, or a crash could leave a stack down with
//! nobody knowing it was ours to restart.

pub mod history;
pub mod lock;
pub mod notices;

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
    // 2: what the daemon remembers per object across restarts.
    "CREATE TABLE objects (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        last_scheduled TEXT,
        last_handled_requested_at TEXT,
        last_handled_generation TEXT,
        PRIMARY KEY (kind, name)
    );
    ALTER TABLE runs ADD COLUMN generation TEXT;
    ALTER TABLE runs ADD COLUMN trigger TEXT;",
    // 3: the retention deletion journal: marked, deleted, forgotten.
    "CREATE TABLE deletions (
        path TEXT PRIMARY KEY,
        archive_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        marked_at TEXT NOT NULL
    );",
    // 4: what a restore run put back (JSON), for its status.
    "CREATE TABLE restores (
        run_id TEXT PRIMARY KEY,
        details TEXT NOT NULL
    );",
    // 5: when the handled values were last set (to merge them with the repository's
    // record), and the InPlace Restores held because nothing proved them new.
    "ALTER TABLE objects ADD COLUMN handled_at TEXT;
    ALTER TABLE objects ADD COLUMN held_since TEXT;
    ALTER TABLE objects ADD COLUMN held_requested_at TEXT;",
    // 6: how far a journalled stop got, and how long Docker gives it before killing: a
    // replay must not take a container in its stop grace period for one never stopped.
    // Entries from before were written before their stop: `stopping`, the default timeout.
    "ALTER TABLE stop_journal ADD COLUMN phase TEXT NOT NULL DEFAULT 'stopping';
    ALTER TABLE stop_journal ADD COLUMN stop_timeout_seconds INTEGER NOT NULL DEFAULT 30;
    ALTER TABLE stop_journal ADD COLUMN container_started_at TEXT;",
    // 7: what a run could not do that did not fail it (a recipe without its compose
    // file), as a JSON list, for its status and the API.
    "ALTER TABLE runs ADD COLUMN warnings TEXT;",
    // 8: a run's uncompressed bytes beside the stored ones. A restore's `bytes` were the
    // bytes it wrote back, which are source bytes: moved there.
    "ALTER TABLE runs ADD COLUMN source_bytes INTEGER;
    UPDATE runs SET source_bytes = bytes, bytes = 0 WHERE kind = 'Restore';",
    // 9: the repository a run wrote or read (NULL: `default`, as before repositories had
    // names), and the copies of its archive to other repositories, as a JSON list.
    "ALTER TABLE runs ADD COLUMN repository TEXT;
    ALTER TABLE runs ADD COLUMN copies TEXT;",
    // 10: the lasting problems each notifier was told of (see `notices`).
    "CREATE TABLE notices (
        notifier TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        event TEXT NOT NULL,
        subject TEXT NOT NULL,
        since TEXT NOT NULL,
        last_sent TEXT,
        PRIMARY KEY (notifier, kind, name, event, subject)
    );",
];

/// The columns [`row_to_memory`] reads, in its order.
const OBJECT_COLUMNS: &str = "first_seen, last_scheduled, last_handled_requested_at, last_handled_generation, handled_at, held_since, held_requested_at";

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

impl StateError {
    /// Whether trying again later may succeed: the database was busy or locked by another
    /// connection. A missing folder, a broken or newer database stay as they are.
    pub fn is_transient(&self) -> bool {
        match self {
            StateError::Open { source, .. } | StateError::Query { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            StateError::CreateDir { .. } | StateError::TooNew { .. } => false,
        }
    }
}

pub(crate) fn query(doing: &'static str) -> impl FnOnce(rusqlite::Error) -> StateError {
    move |source| StateError::Query { doing, source }
}

/// A container holdfast stopped and must start again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StopEntry {
    pub container_id: String,
    pub container_name: String,
    pub run_id: String,
    /// When the stop was journalled, just before it was asked of Docker.
    pub stopped_at: DateTime<Utc>,
    pub phase: StopPhase,
    /// The timeout the stop was asked with: Docker kills the container at the latest this
    /// long after `stopped_at`.
    pub stop_timeout_seconds: u64,
    /// When the container's process had started, as Docker said just before the stop: a
    /// different start time later means it was started again since, whatever the clocks of
    /// holdfast and Docker say. `None` when Docker did not say.
    pub container_started_at: Option<DateTime<Utc>>,
}

/// How far a journalled stop got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StopPhase {
    /// Journalled before the stop was asked: Docker may still be waiting for the
    /// container to exit, and a running container may yet be killed.
    Stopping,
    /// Docker said the container stopped.
    Stopped,
}

impl StopPhase {
    fn as_str(self) -> &'static str {
        match self {
            StopPhase::Stopping => "stopping",
            StopPhase::Stopped => "stopped",
        }
    }

    /// Anything but `stopped` reads as `stopping`: the cautious reading.
    fn parse(text: &str) -> StopPhase {
        match text {
            "stopped" => StopPhase::Stopped,
            _ => StopPhase::Stopping,
        }
    }
}

/// What the daemon remembers about one object between restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMemory {
    pub first_seen: Option<DateTime<Utc>>,
    /// The nominal time of the last scheduled run that was started.
    pub last_scheduled: Option<DateTime<Utc>>,
    /// The `holdfast.dev/requested-at` value last acted upon.
    pub last_handled_requested_at: Option<String>,
    /// For Archive and Restore: the generation that was last taken.
    pub last_handled_generation: Option<String>,
    /// When the two values above were last set; `None` in rows older than the record.
    pub handled_at: Option<DateTime<Utc>>,
    /// For an InPlace Restore that nothing proved new: it waits for a new requested-at.
    pub held: Option<Held>,
}

/// An InPlace Restore first seen where no record proved it had not run already (a fresh
/// state folder and a repository without this host's handled record). It does not run
/// until its `holdfast.dev/requested-at` value differs from the one it was first seen with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    /// The requested-at value at first sight; `None` when it had none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<String>,
    pub since: DateTime<Utc>,
}

/// One run of a policy or archive.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub archive_id: Option<String>,
    pub phase: Phase,
    pub start_time: DateTime<Utc>,
    pub completion_time: Option<DateTime<Utc>>,
    /// Bytes written to the repository: a backup's compressed artifacts (0 for a restore).
    #[serde(rename = "storedBytes")]
    pub bytes: u64,
    /// Uncompressed bytes: read from the sources by a backup, written back by a restore.
    /// Unknown for runs recorded before holdfast counted them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_bytes: Option<u64>,
    /// Rounded to milliseconds when shown.
    #[serde(serialize_with = "round_seconds")]
    pub downtime_seconds: f64,
    pub error: Option<String>,
    pub dry_run: bool,
    /// What the run could not do that did not fail it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The repository the run wrote (or a restore read): `default` or a Repository's
    /// name; absent for `default` in runs recorded before repositories had names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The copies of the run's archive to the other repositories of its output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<CopyRecord>,
}

/// What became of one copy of a run's archive.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CopyRecord {
    pub repository: String,
    pub ok: bool,
    /// Bytes stored there.
    pub stored_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The state database. One connection behind a mutex: runs are rare and statements short,
/// so contention is not a concern, and one connection keeps the ordering of writes simple.
pub struct StateDb {
    conn: Mutex<Connection>,
    path: PathBuf,
}

/// Brings the schema of `conn` (the database at `path`) up to date.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StateError> {
    let open_err = |source| StateError::Open {
        path: path.to_path_buf(),
        source,
    };
    let version: usize = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(open_err)?;
    if version > MIGRATIONS.len() {
        return Err(StateError::TooNew {
            path: path.to_path_buf(),
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
    Ok(())
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
        migrate(&mut conn, &path)?;
        Ok(StateDb {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// The state in `dir` for a command that only reads: the database opened read-only when
    /// there is one, or else an empty history held in memory ("no state yet"). Creates
    /// nothing, neither the folder nor the file.
    pub fn open_or_empty(dir: &Path) -> Result<StateDb, StateError> {
        let path = dir.join("holdfast.db");
        if path.exists() {
            return StateDb::open_reader(dir);
        }
        let open_err = |source| StateError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open_in_memory().map_err(open_err)?;
        migrate(&mut conn, &path)?;
        Ok(StateDb {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// An empty database in memory with the current schema, for a command that records
    /// nothing (`backup --dry-run`) where the state folder has no database yet. Nothing is
    /// written to `dir`; [`StateDb::path`] still names where the database would be, so the
    /// state folder is still known as holdfast's own.
    pub fn in_memory(dir: &Path) -> Result<StateDb, StateError> {
        let path = dir.join("holdfast.db");
        let open_err = |source| StateError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open_in_memory().map_err(open_err)?;
        for sql in MIGRATIONS {
            let tx = conn.transaction().map_err(open_err)?;
            tx.execute_batch(sql).map_err(open_err)?;
            tx.commit().map_err(open_err)?;
        }
        Ok(StateDb {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// A second, read-only connection to a database [`StateDb::open`] made: for readers
    /// (the HTTP API) that must neither wait for the loop's connection nor write.
    pub fn open_reader(dir: &Path) -> Result<StateDb, StateError> {
        let path = dir.join("holdfast.db");
        let open_err = |source| StateError::Open {
            path: path.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        Ok(StateDb {
            conn: Mutex::new(conn),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
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
                "INSERT OR REPLACE INTO stop_journal (container_id, container_name, run_id, stopped_at, phase, stop_timeout_seconds, container_started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    entry.container_id,
                    entry.container_name,
                    entry.run_id,
                    entry.stopped_at.to_rfc3339(),
                    entry.phase.as_str(),
                    i64::try_from(entry.stop_timeout_seconds).unwrap_or(i64::MAX),
                    entry.container_started_at.map(|t| t.to_rfc3339())
                ],
            )
            .map_err(query("journalling a container stop"))?;
        Ok(())
    }

    /// Records that Docker said a journalled container stopped.
    pub fn journal_stopped(&self, container_id: &str) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE stop_journal SET phase = 'stopped' WHERE container_id = ?1",
                params![container_id],
            )
            .map_err(query("recording a finished stop"))?;
        Ok(())
    }

    /// Forgets a journalled stop once the container was started again (or is gone).
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
            .prepare("SELECT container_id, container_name, run_id, stopped_at, phase, stop_timeout_seconds, container_started_at FROM stop_journal ORDER BY stopped_at")
            .map_err(query("reading the stop journal"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(StopEntry {
                    container_id: row.get(0)?,
                    container_name: row.get(1)?,
                    run_id: row.get(2)?,
                    stopped_at: parse_time(row.get::<_, String>(3)?),
                    phase: StopPhase::parse(&row.get::<_, String>(4)?),
                    stop_timeout_seconds: u64::try_from(row.get::<_, i64>(5)?).unwrap_or(0),
                    container_started_at: row.get::<_, Option<String>>(6)?.map(parse_time),
                })
            })
            .map_err(query("reading the stop journal"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("reading the stop journal"))
    }

    /// What is remembered about `kind/name`; records `now` as its first sighting if new.
    pub fn object(
        &self,
        kind: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<ObjectMemory, StateError> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO objects (kind, name, first_seen) VALUES (?1, ?2, ?3)",
            params![kind, name, now.to_rfc3339()],
        )
        .map_err(query("recording an object"))?;
        conn.query_row(
            &format!("SELECT {OBJECT_COLUMNS} FROM objects WHERE kind = ?1 AND name = ?2"),
            params![kind, name],
            row_to_memory,
        )
        .map_err(query("reading an object"))
    }

    /// What is remembered about many objects at once, in one transaction (one fsync, not
    /// one per object); records `now` as the first sighting of new ones.
    pub fn objects(
        &self,
        keys: &[(&str, &str)],
        now: DateTime<Utc>,
    ) -> Result<Vec<ObjectMemory>, StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(query("reading objects"))?;
        let mut out = Vec::with_capacity(keys.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO objects (kind, name, first_seen) VALUES (?1, ?2, ?3)",
                )
                .map_err(query("recording objects"))?;
            let mut select = tx
                .prepare_cached(&format!(
                    "SELECT {OBJECT_COLUMNS} FROM objects WHERE kind = ?1 AND name = ?2"
                ))
                .map_err(query("reading objects"))?;
            let now_text = now.to_rfc3339();
            for (kind, name) in keys {
                insert
                    .execute(params![kind, name, now_text])
                    .map_err(query("recording objects"))?;
                let memory = select
                    .query_row(params![kind, name], row_to_memory)
                    .map_err(query("reading objects"))?;
                out.push(memory);
            }
        }
        tx.commit().map_err(query("recording objects"))?;
        Ok(out)
    }

    /// Remembers that a run was started for an object at `at`: its nominal schedule time,
    /// the request it answered, the generation it took. `None` leaves a field as it was.
    /// A started run is no longer held.
    pub fn remember_start(
        &self,
        kind: &str,
        name: &str,
        last_scheduled: Option<DateTime<Utc>>,
        requested_at: Option<&str>,
        generation: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE objects SET
                    last_scheduled = COALESCE(?3, last_scheduled),
                    last_handled_requested_at = COALESCE(?4, last_handled_requested_at),
                    last_handled_generation = COALESCE(?5, last_handled_generation),
                    handled_at = CASE WHEN ?4 IS NULL AND ?5 IS NULL THEN handled_at ELSE ?6 END,
                    held_since = NULL,
                    held_requested_at = NULL
                 WHERE kind = ?1 AND name = ?2",
                params![
                    kind,
                    name,
                    last_scheduled.map(|t| t.to_rfc3339()),
                    requested_at,
                    generation,
                    at.to_rfc3339(),
                ],
            )
            .map_err(query("remembering a run start"))?;
        Ok(())
    }

    /// Every object remembered, with what is remembered about it. Records nothing.
    pub fn all_objects(&self) -> Result<Vec<(String, String, ObjectMemory)>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT kind, name, {OBJECT_COLUMNS} FROM objects ORDER BY kind, name"
            ))
            .map_err(query("listing objects"))?;
        let rows = stmt
            .query_map([], |row| {
                let kind: String = row.get(0)?;
                let name: String = row.get(1)?;
                let memory = memory_from(row, 2)?;
                Ok((kind, name, memory))
            })
            .map_err(query("listing objects"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("listing objects"))
    }

    /// Sets what was handled of `kind/name` and whether it is held, as recalled from
    /// another source at start-up; records `now` as its first sighting if new. Leaves the
    /// schedule memory as it was.
    pub fn adopt_handled(
        &self,
        kind: &str,
        name: &str,
        memory: &ObjectMemory,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(query("adopting what was handled"))?;
        tx.execute(
            "INSERT OR IGNORE INTO objects (kind, name, first_seen) VALUES (?1, ?2, ?3)",
            params![kind, name, now.to_rfc3339()],
        )
        .map_err(query("adopting what was handled"))?;
        tx.execute(
            "UPDATE objects SET
                last_handled_requested_at = ?3,
                last_handled_generation = ?4,
                handled_at = ?5,
                held_since = ?6,
                held_requested_at = ?7
             WHERE kind = ?1 AND name = ?2",
            params![
                kind,
                name,
                memory.last_handled_requested_at,
                memory.last_handled_generation,
                memory.handled_at.map(|t| t.to_rfc3339()),
                memory.held.as_ref().map(|h| h.since.to_rfc3339()),
                memory.held.as_ref().and_then(|h| h.requested_at.clone()),
            ],
        )
        .map_err(query("adopting what was handled"))?;
        tx.commit().map_err(query("adopting what was handled"))
    }

    /// Holds `kind/name` (see [`Held`]); records its first sighting if new.
    pub fn hold(
        &self,
        kind: &str,
        name: &str,
        held: &Held,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO objects (kind, name, first_seen) VALUES (?1, ?2, ?3)",
            params![kind, name, now.to_rfc3339()],
        )
        .map_err(query("holding a restore"))?;
        conn.execute(
            "UPDATE objects SET held_since = ?3, held_requested_at = ?4 WHERE kind = ?1 AND name = ?2",
            params![kind, name, held.since.to_rfc3339(), held.requested_at],
        )
        .map_err(query("holding a restore"))?;
        Ok(())
    }

    /// Runs left `Running` by a process that is gone become `Failed`, reason Interrupted.
    /// Returns their ids.
    pub fn fail_interrupted_runs(&self, now: DateTime<Utc>) -> Result<Vec<String>, StateError> {
        let conn = self.conn();
        let ids: Vec<String> = {
            let mut stmt = conn
                .prepare("SELECT id FROM runs WHERE phase = 'Running'")
                .map_err(query("finding interrupted runs"))?;
            let rows = stmt
                .query_map([], |row| row.get(0))
                .map_err(query("finding interrupted runs"))?;
            rows.collect::<Result<_, _>>()
                .map_err(query("finding interrupted runs"))?
        };
        conn.execute(
            "UPDATE runs SET phase = 'Failed', completion_time = ?1, error = 'Interrupted: holdfast stopped during the run' WHERE phase = 'Running'",
            params![now.to_rfc3339()],
        )
        .map_err(query("marking interrupted runs"))?;
        Ok(ids)
    }

    /// The newest run of `kind/name`, and its newest successful one.
    pub fn last_runs(
        &self,
        kind: &str,
        name: &str,
    ) -> Result<(Option<RunRecord>, Option<RunRecord>), StateError> {
        let conn = self.conn();
        let last = conn
            .query_row(
                &format!("{RUN_COLUMNS} WHERE kind = ?1 AND name = ?2 AND dry_run = 0 ORDER BY start_time DESC, id DESC LIMIT 1"),
                params![kind, name],
                row_to_run,
            )
            .optional()
            .map_err(query("reading the last run"))?;
        let success = conn
            .query_row(
                &format!("{RUN_COLUMNS} WHERE kind = ?1 AND name = ?2 AND dry_run = 0 AND phase = 'Succeeded' ORDER BY start_time DESC, id DESC LIMIT 1"),
                params![kind, name],
                row_to_run,
            )
            .optional()
            .map_err(query("reading the last successful run"))?;
        Ok((last, success))
    }

    /// Every archive the run history says exists: (archive id, kind, name). Only backups
    /// write archives; a restore's row names the archive it read, which is no archive of
    /// its own.
    /// Only the runs that wrote `repository` count (runs recorded before repositories had
    /// names wrote `default`); copies are not recorded archives.
    pub fn recorded_archives(
        &self,
        repository: &str,
    ) -> Result<Vec<(String, String, String)>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT archive_id, kind, name FROM runs WHERE archive_id IS NOT NULL AND phase IN ('Succeeded', 'PartiallyFailed') AND kind IN ('BackupPolicy', 'Archive') AND COALESCE(repository, 'default') = ?1 ORDER BY start_time")
            .map_err(query("listing recorded archives"))?;
        let rows = stmt
            .query_map([repository], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .map_err(query("listing recorded archives"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("listing recorded archives"))
    }

    /// Forgets the runs that produced an archive (after it was deleted on purpose). The
    /// restores that read it keep saying so.
    pub fn forget_archive(&self, archive_id: &str) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE runs SET archive_id = NULL WHERE archive_id = ?1 AND kind IN ('BackupPolicy', 'Archive')",
                params![archive_id],
            )
            .map_err(query("forgetting an archive"))?;
        Ok(())
    }

    /// Marks, durably, an archive folder for deletion before anything is removed.
    pub fn mark_deletion(
        &self,
        path: &Path,
        archive_id: &str,
        reason: &str,
    ) -> Result<(), StateError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO deletions (path, archive_id, reason, marked_at) VALUES (?1, ?2, ?3, ?4)",
                params![path.to_string_lossy(), archive_id, reason, Utc::now().to_rfc3339()],
            )
            .map_err(query("marking an archive for deletion"))?;
        Ok(())
    }

    /// Deletions marked but not finished (a crash in between): (path, archive id).
    pub fn pending_deletions(&self) -> Result<Vec<(PathBuf, String)>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT path, archive_id FROM deletions ORDER BY marked_at")
            .map_err(query("reading the deletion journal"))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((PathBuf::from(row.get::<_, String>(0)?), row.get(1)?))
            })
            .map_err(query("reading the deletion journal"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("reading the deletion journal"))
    }

    /// The archive is gone from disk: forget it in the history and in the journal.
    pub fn finish_deletion(&self, path: &Path, archive_id: &str) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(query("finishing a deletion"))?;
        tx.execute(
            "UPDATE runs SET archive_id = NULL WHERE archive_id = ?1 AND kind IN ('BackupPolicy', 'Archive')",
            params![archive_id],
        )
        .map_err(query("finishing a deletion"))?;
        tx.execute(
            "DELETE FROM deletions WHERE path = ?1",
            params![path.to_string_lossy()],
        )
        .map_err(query("finishing a deletion"))?;
        tx.commit().map_err(query("finishing a deletion"))
    }

    pub fn insert_run(&self, run: &RunRecord) -> Result<(), StateError> {
        self.insert_run_with(run, "INSERT")
    }

    /// Records a run unless one with its id exists (adopting archives is idempotent).
    pub fn insert_run_if_absent(&self, run: &RunRecord) -> Result<(), StateError> {
        self.insert_run_with(run, "INSERT OR IGNORE")
    }

    fn insert_run_with(&self, run: &RunRecord, verb: &str) -> Result<(), StateError> {
        self.conn()
            .execute(
                &format!("{verb} INTO runs (id, kind, name, archive_id, phase, start_time, completion_time, bytes, downtime_seconds, error, dry_run, warnings, source_bytes, repository, copies)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"),
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
                    warnings_text(&run.warnings),
                    run.source_bytes.map(|b| b as i64),
                    run.repository,
                    copies_text(&run.copies),
                ],
            )
            .map_err(query("recording a run"))?;
        Ok(())
    }

    /// Records how a run ended.
    pub fn finish_run(&self, run: &RunRecord) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE runs SET archive_id = ?2, phase = ?3, completion_time = ?4, bytes = ?5, downtime_seconds = ?6, error = ?7, warnings = ?8, source_bytes = ?9, repository = ?10, copies = ?11 WHERE id = ?1",
                params![
                    run.id,
                    run.archive_id,
                    phase_name(run.phase),
                    run.completion_time.map(|t| t.to_rfc3339()),
                    run.bytes as i64,
                    run.downtime_seconds,
                    run.error,
                    warnings_text(&run.warnings),
                    run.source_bytes.map(|b| b as i64),
                    run.repository,
                    copies_text(&run.copies),
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

    /// Every run recorded, for pruning the history.
    pub fn all_runs(&self) -> Result<Vec<RunRecord>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(RUN_COLUMNS).map_err(query("listing runs"))?;
        let rows = stmt
            .query_map([], row_to_run)
            .map_err(query("listing runs"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("listing runs"))
    }

    /// Forgets these runs, and what the restores among them put back, in one transaction.
    pub fn delete_runs(&self, ids: &[String]) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(query("forgetting runs"))?;
        for id in ids {
            tx.execute("DELETE FROM runs WHERE id = ?1", params![id])
                .map_err(query("forgetting runs"))?;
            tx.execute("DELETE FROM restores WHERE run_id = ?1", params![id])
                .map_err(query("forgetting runs"))?;
        }
        tx.commit().map_err(query("forgetting runs"))
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

/// Which runs to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub phase: Option<Phase>,
    /// Only runs that started before this run (a page cursor).
    pub before_run: Option<String>,
    /// Only runs that started before this time.
    pub before_time: Option<DateTime<Utc>>,
    pub limit: usize,
}

impl StateDb {
    /// Records what a restore run put back.
    pub fn record_restore(&self, run_id: &str, details: &str) -> Result<(), StateError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO restores (run_id, details) VALUES (?1, ?2)",
                params![run_id, details],
            )
            .map_err(query("recording a restore"))?;
        Ok(())
    }

    /// What a restore run put back, as recorded.
    pub fn restore_details(&self, run_id: &str) -> Result<Option<String>, StateError> {
        self.conn()
            .query_row(
                "SELECT details FROM restores WHERE run_id = ?1",
                params![run_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(query("reading a restore"))
    }

    /// Whether the database answers, for readiness checks.
    pub fn ping(&self) -> Result<(), StateError> {
        self.conn()
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(query("checking the database"))
    }

    /// A page of runs, newest first. `Ok(None)` when `before_run` names no run.
    pub fn runs_filtered(&self, filter: &RunFilter) -> Result<Option<Vec<RunRecord>>, StateError> {
        let conn = self.conn();
        let cursor: Option<(String, String)> = match &filter.before_run {
            Some(id) => match conn
                .query_row(
                    "SELECT start_time, id FROM runs WHERE id = ?1",
                    params![id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(query("reading a run"))?
            {
                Some(c) => Some(c),
                None => return Ok(None),
            },
            None => None,
        };
        let mut stmt = conn
            .prepare(&format!(
                "{RUN_COLUMNS} WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR name = ?2)
                 AND (?3 IS NULL OR phase = ?3)
                 AND (?4 IS NULL OR (start_time, id) < (?4, ?5))
                 AND (?6 IS NULL OR start_time < ?6)
                 ORDER BY start_time DESC, id DESC LIMIT ?7"
            ))
            .map_err(query("listing runs"))?;
        let rows = stmt
            .query_map(
                params![
                    filter.kind,
                    filter.name,
                    filter.phase.map(phase_name),
                    cursor.as_ref().map(|c| &c.0),
                    cursor.as_ref().map(|c| &c.1),
                    filter.before_time.map(|t| t.to_rfc3339()),
                    filter.limit as i64,
                ],
                row_to_run,
            )
            .map_err(query("listing runs"))?;
        rows.collect::<Result<_, _>>()
            .map(Some)
            .map_err(query("listing runs"))
    }
}

const RUN_COLUMNS: &str = "SELECT id, kind, name, archive_id, phase, start_time, completion_time, bytes, downtime_seconds, error, dry_run, warnings, source_bytes, repository, copies FROM runs";

fn row_to_memory(row: &rusqlite::Row<'_>) -> rusqlite::Result<ObjectMemory> {
    memory_from(row, 0)
}

/// An [`ObjectMemory`] from the [`OBJECT_COLUMNS`] starting at column `at`.
fn memory_from(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<ObjectMemory> {
    let held_since = row.get::<_, Option<String>>(at + 5)?.map(parse_time);
    Ok(ObjectMemory {
        first_seen: Some(parse_time(row.get::<_, String>(at)?)),
        last_scheduled: row.get::<_, Option<String>>(at + 1)?.map(parse_time),
        last_handled_requested_at: row.get(at + 2)?,
        last_handled_generation: row.get(at + 3)?,
        handled_at: row.get::<_, Option<String>>(at + 4)?.map(parse_time),
        held: match held_since {
            Some(since) => Some(Held {
                requested_at: row.get(at + 6)?,
                since,
            }),
            None => None,
        },
    })
}

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
        warnings: row
            .get::<_, Option<String>>(11)?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default(),
        source_bytes: row.get::<_, Option<i64>>(12)?.map(|b| b.max(0) as u64),
        repository: row.get(13)?,
        copies: row
            .get::<_, Option<String>>(14)?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default(),
    })
}

/// The copies as stored: a JSON list, NULL when there are none.
fn copies_text(copies: &[CopyRecord]) -> Option<String> {
    (!copies.is_empty()).then(|| serde_json::to_string(copies).unwrap_or_default())
}

fn round_seconds<S: serde::Serializer>(seconds: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(crate::logging::round_seconds(*seconds))
}

/// Warnings as stored: a JSON list, or nothing when there are none.
fn warnings_text(warnings: &[String]) -> Option<String> {
    (!warnings.is_empty()).then(|| serde_json::to_string(warnings).unwrap_or_default())
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

pub(crate) fn parse_time(text: String) -> DateTime<Utc> {
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
    fn journal_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let entry = StopEntry {
            container_id: "abc".into(),
            container_name: "demo_db_1".into(),
            run_id: "r1".into(),
            stopped_at: DateTime::parse_from_rfc3339("2026-11-25T03:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            phase: StopPhase::Stopping,
            stop_timeout_seconds: 40,
            container_started_at: Some(
                DateTime::parse_from_rfc3339("2026-11-20T10:00:00.123456789Z")
                    .unwrap()
                    .with_timezone(&Utc),
            ),
        };
        StateDb::open(dir.path())
            .unwrap()
            .journal_stop(&entry)
            .unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        assert_eq!(db.journal().unwrap(), std::slice::from_ref(&entry));
        db.journal_stopped("abc").unwrap();
        let stopped = StopEntry {
            phase: StopPhase::Stopped,
            ..entry
        };
        assert_eq!(db.journal().unwrap(), [stopped]);
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
        assert_eq!(back.source_bytes, None);
        r.source_bytes = Some(4242);
        r.downtime_seconds = 3.2964814049999998;
        db.finish_run(&r).unwrap();
        let back = db.run("r1").unwrap().unwrap();
        assert_eq!(back.source_bytes, Some(4242));
        assert_eq!(db.runs(10).unwrap().len(), 1);
        // As the API and `get runs -o json` show it: both counts by name, seconds rounded.
        let json = serde_json::to_value(&back).unwrap();
        assert_eq!(json["storedBytes"], 42, "{json}");
        assert_eq!(json["sourceBytes"], 4242, "{json}");
        assert_eq!(json["downtimeSeconds"], 3.296, "{json}");
        assert!(json.get("bytes").is_none(), "{json}");
    }

    #[test]
    fn objects_are_remembered_and_interrupted_runs_fail() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        let now = Utc::now();
        let first = db.object("BackupPolicy", "p", now).unwrap();
        assert_eq!(
            first.first_seen.map(|t| t.timestamp()),
            Some(now.timestamp())
        );
        assert_eq!(first.last_scheduled, None);
        db.remember_start("BackupPolicy", "p", Some(now), Some("req-1"), None, now)
            .unwrap();
        db.remember_start("BackupPolicy", "p", None, None, Some("abc"), now)
            .unwrap();
        let later = db
            .object("BackupPolicy", "p", now + chrono::Duration::hours(1))
            .unwrap();
        assert_eq!(later.first_seen, first.first_seen);
        assert_eq!(later.last_handled_requested_at.as_deref(), Some("req-1"));
        assert_eq!(later.last_handled_generation.as_deref(), Some("abc"));
        assert!(later.last_scheduled.is_some());
        db.insert_run(&run("r1")).unwrap();
        assert_eq!(db.fail_interrupted_runs(now).unwrap(), ["r1"]);
        let r = db.run("r1").unwrap().unwrap();
        assert_eq!(r.phase, Phase::Failed);
        assert!(r.error.unwrap().starts_with("Interrupted"));
        let (last, success) = db.last_runs("BackupPolicy", "demo").unwrap();
        assert_eq!(last.map(|r| r.id).as_deref(), Some("r1"));
        assert!(success.is_none());
    }

    #[test]
    fn handled_values_can_be_adopted_and_a_start_ends_a_hold() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path()).unwrap();
        let now = Utc::now();
        assert!(db.all_objects().unwrap().is_empty());
        let held = Held {
            requested_at: Some("r0".into()),
            since: now,
        };
        db.hold("Restore", "back", &held, now).unwrap();
        let recalled = ObjectMemory {
            last_handled_generation: Some("g1".into()),
            handled_at: Some(now),
            ..ObjectMemory::default()
        };
        db.adopt_handled("Archive", "once", &recalled, now).unwrap();
        let all = db.all_objects().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0, "Archive");
        assert_eq!(all[0].2.last_handled_generation.as_deref(), Some("g1"));
        assert_eq!(
            all[1].2.held.as_ref().unwrap().requested_at,
            held.requested_at
        );
        db.remember_start("Restore", "back", None, Some("r1"), Some("g2"), now)
            .unwrap();
        let back = db.object("Restore", "back", now).unwrap();
        assert_eq!(back.held, None);
        assert_eq!(back.last_handled_generation.as_deref(), Some("g2"));
        assert!(back.handled_at.is_some());
    }

    #[test]
    fn a_version_one_database_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("holdfast.db")).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO runs (id, kind, name, phase, start_time) VALUES ('old', 'BackupPolicy', 'p', 'Succeeded', '2026-01-01T00:00:00Z')",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO runs (id, kind, name, phase, start_time, bytes) VALUES ('back', 'Restore', 'r', 'Succeeded', '2026-01-01T00:00:00Z', 500)",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO stop_journal (container_id, container_name, run_id, stopped_at) VALUES ('c1', 'app', 'old', '2026-01-01T00:00:00Z')",
            [],
        )
        .unwrap();
        drop(conn);
        let db = StateDb::open(dir.path()).unwrap();
        let old = db.run("old").unwrap().unwrap();
        assert_eq!(old.phase, Phase::Succeeded);
        assert_eq!(old.source_bytes, None, "not counted then");
        // What a restore wrote back were source bytes; it stored nothing.
        let back = db.run("back").unwrap().unwrap();
        assert_eq!((back.source_bytes, back.bytes), (Some(500), 0));
        db.object("BackupPolicy", "p", Utc::now()).unwrap();
        // A stop journalled before phases were recorded may still be under way.
        let journal = db.journal().unwrap();
        assert_eq!(journal[0].phase, StopPhase::Stopping);
        assert_eq!(journal[0].stop_timeout_seconds, 30);
        assert_eq!(journal[0].container_started_at, None);
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
