//! What the reconciler writes into each status file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use tracing::{error, warn};

use super::desired::Desired;
use crate::spec::common::Phase;
use crate::spec::{Kind, ObjectKey, Resource};
use crate::state::StateDb;
use crate::status::{self, LastRun, ObjectState, ObjectStatus, Status};

/// Per status file: the text last written and the statuses in it.
pub type StatusCache = BTreeMap<PathBuf, (String, BTreeMap<(Kind, String), Status>)>;

pub struct View<'a> {
    pub desired: &'a Desired,
    pub state: &'a StateDb,
    /// Running objects, with a word about the run.
    pub running: BTreeMap<ObjectKey, String>,
    /// Objects whose due run waits, with the reason.
    pub waiting: BTreeMap<ObjectKey, String>,
    /// Objects whose wanted run does not start until someone acts: condition reason and
    /// message.
    pub blocked: BTreeMap<ObjectKey, (&'static str, String)>,
    pub next_schedule: BTreeMap<ObjectKey, DateTime<Utc>>,
    pub last_known: &'a BTreeMap<PathBuf, Vec<(Kind, String)>>,
    /// What is remembered about each valid object, read once per reconcile.
    pub memory: BTreeMap<ObjectKey, crate::state::ObjectMemory>,
    /// Archives per repository group.
    pub archives: &'a BTreeMap<String, status::ArchivesSummary>,
    /// Retention's outlook per policy.
    pub retention: &'a BTreeMap<String, status::RetentionStatus>,
    /// When the ttl next deletes an archive, per Archive with a `ttl`.
    pub expiry: &'a BTreeMap<String, DateTime<Utc>>,
    /// What the last probe of each named repository found.
    pub probes: &'a super::runner::Probes,
    /// Each Notifier's URL (secrets replaced), or why it cannot send.
    pub notifiers: BTreeMap<String, Result<String, String>>,
}

/// A status file to write or remove.
pub enum Change {
    Write {
        path: PathBuf,
        text: String,
        by_key: BTreeMap<(Kind, String), Status>,
        /// The cache says this very text was written there: write only if the file is
        /// gone (its folder was replaced, someone deleted it).
        known: bool,
    },
    Remove {
        path: PathBuf,
    },
}

/// Carries out status file changes on a blocking worker (atomic, fsynced writes) while
/// the pass goes on rendering: a changed file is written as soon as it is rendered.
/// Nothing is written or removed outside the folder status files belong in, whatever
/// links lead there.
pub struct Writer {
    tx: std::sync::mpsc::Sender<Change>,
    done: tokio::task::JoinHandle<Vec<(Change, Outcome)>>,
}

/// How a change went; `Err(None)`: not tried, its home folder could not be resolved
/// (already logged).
type Outcome = Result<(), Option<std::io::Error>>;

impl Writer {
    /// Starts the worker; every status file it touches must land under `home` (the specs
    /// folder, or the status dir when there is one).
    pub fn start(home: PathBuf, is_status_dir: bool) -> Writer {
        let (tx, rx) = std::sync::mpsc::channel::<Change>();
        let done = tokio::task::spawn_blocking(move || {
            let home = match status::Home::resolve(&home, is_status_dir) {
                Ok(home) => home,
                Err(e) => {
                    // Said once, not once per file: the folder is gone (moved away for a
                    // moment, a dangling link), and nothing may make it again.
                    warn!("not writing status files this time: {e}");
                    return rx.into_iter().map(|change| (change, Err(None))).collect();
                }
            };
            rx.into_iter()
                .map(|change| {
                    let result = carry_out(&home, &change).map_err(Some);
                    (change, result)
                })
                .collect()
        });
        Writer { tx, done }
    }

    fn send(&self, change: Change) {
        // The worker only ends when this sender is dropped.
        let _ = self.tx.send(change);
    }

    /// Waits for every change to be carried out, and updates `cache` with what is now on
    /// disk. A failed write is forgotten, so the next pass tries again.
    pub async fn finish(self, cache: &mut StatusCache) {
        drop(self.tx);
        write(self.done.await, cache);
    }
}

fn carry_out(home: &status::Home, change: &Change) -> std::io::Result<()> {
    let path = match change {
        Change::Write { path, .. } | Change::Remove { path } => path,
    };
    home.check(path)?;
    match change {
        Change::Write {
            known: true, path, ..
        } if std::fs::symlink_metadata(path).is_ok() => Ok(()),
        Change::Write { path, text, .. } => status::write_if_changed(path, text).map(|_| ()),
        Change::Remove { path } => status::remove(path),
    }
}

fn write(done: Result<Vec<(Change, Outcome)>, tokio::task::JoinError>, cache: &mut StatusCache) {
    let done = match done {
        Ok(done) => done,
        Err(e) => {
            error!("writing status files: {e}");
            cache.clear();
            return;
        }
    };
    for (change, result) in done {
        match (change, result) {
            (
                Change::Write {
                    path, text, by_key, ..
                },
                Ok(()),
            ) => {
                cache.insert(path, (text, by_key));
            }
            (Change::Write { path, .. }, Err(e)) => {
                cache.remove(&path);
                if let Some(e) = e {
                    error!(path = %path.display(), "writing status file: {e}");
                }
            }
            (Change::Remove { path }, result) => {
                cache.remove(&path);
                if let Err(Some(e)) = result {
                    error!(path = %path.display(), "removing status file: {e}");
                }
            }
        }
    }
}

impl View<'_> {
    /// Renders the status file of every spec file, and hands `changes` those to write
    /// (whose content changed) and those to remove (of spec files that are gone), which it
    /// writes on a blocking worker meanwhile. Returns spec file -> status file, and every
    /// object's status with its spec file, for the API.
    pub fn render_all(
        &self,
        specs_root: &Path,
        status_dir: Option<&Path>,
        previous: &BTreeMap<PathBuf, PathBuf>,
        cache: &StatusCache,
        now: DateTime<Utc>,
        changes: &Writer,
    ) -> (BTreeMap<PathBuf, PathBuf>, Vec<(PathBuf, ObjectStatus)>) {
        let mut out = Vec::new();
        let mut written = BTreeMap::new();
        for (file, objects) in &self.desired.files {
            let path = status::status_path(file, specs_root, status_dir);
            // What was written last, from memory; from disk only the first time, so
            // conditions keep their transition times across restarts too.
            let existing = match cache.get(&path) {
                Some((_, statuses)) => statuses.clone(),
                None => read_existing(&path),
            };
            let mut statuses = Vec::new();
            let file_errors = self
                .desired
                .file_errors
                .get(file)
                .cloned()
                .unwrap_or_default();
            if objects.is_empty() && !file_errors.is_empty() {
                // The file does not parse: the objects it held last are stalled, not running.
                for (kind, name) in self.last_known.get(file).into_iter().flatten() {
                    let mut s = existing
                        .get(&(*kind, name.clone()))
                        .cloned()
                        .unwrap_or_default();
                    s.errors = file_errors.clone();
                    status::apply_state(
                        &mut s,
                        ObjectState::Invalid {
                            errors: &file_errors,
                        },
                        now,
                    );
                    statuses.push(ObjectStatus {
                        kind: *kind,
                        name: name.clone(),
                        status: s,
                    });
                }
            }
            for object in objects {
                let mut s = existing
                    .get(&(object.kind, object.name.clone()))
                    .cloned()
                    .unwrap_or_default();
                self.fill(&mut s, object, &file_errors, now);
                statuses.push(ObjectStatus {
                    kind: object.kind,
                    name: object.name.clone(),
                    status: s,
                });
            }
            if statuses.is_empty() {
                continue;
            }
            out.extend(statuses.iter().map(|s| (file.clone(), s.clone())));
            let text = status::render(&statuses);
            let known = cache.get(&path).is_some_and(|(t, _)| *t == text);
            let by_key = statuses
                .into_iter()
                .map(|o| ((o.kind, o.name), o.status))
                .collect();
            changes.send(Change::Write {
                path: path.clone(),
                text,
                by_key,
                known,
            });
            written.insert(file.clone(), path);
        }
        for (file, path) in previous {
            if !written.contains_key(file) {
                changes.send(Change::Remove { path: path.clone() });
            }
        }
        (written, out)
    }

    fn fill(
        &self,
        s: &mut Status,
        object: &super::desired::DesiredObject,
        file_errors: &[String],
        now: DateTime<Utc>,
    ) {
        let key = object.key();
        s.errors = object.errors.iter().chain(file_errors).cloned().collect();
        s.observed_generation = object.generation.clone().or(s.observed_generation.take());
        s.queued = self.waiting.get(&key).cloned();
        s.next_schedule_time = self.next_schedule.get(&key).copied();
        s.next_schedule_time_local = None;
        if let Some(why) = &object.not_selected {
            // Another host's object: nothing to page anyone about here.
            status::apply_state(
                s,
                ObjectState::Standing {
                    ready: true,
                    reason: super::NOT_SELECTED,
                    message: why,
                },
                now,
            );
            return;
        }
        let Some(resource) = &object.resource else {
            let errors = s.errors.clone();
            status::apply_state(s, ObjectState::Invalid { errors: &errors }, now);
            return;
        };
        if let Resource::Repository(repository) = resource {
            // Never run: no schedule, runs or archives of its own; Ready says what is known.
            let probe = self.probes.get(&object.name);
            let result = probe.map(|p| p.result.as_ref().map(|_| ()).map_err(Clone::clone));
            let readiness = status::repository_readiness(&repository.spec, result.as_ref());
            s.last_validated = probe.map(|p| p.at);
            s.archives = match probe.map(|p| &p.result) {
                Some(Ok((count, bytes))) => Some(status::ArchivesSummary {
                    count: *count,
                    bytes: *bytes,
                    ..Default::default()
                }),
                _ => None,
            };
            status::apply_state(
                s,
                ObjectState::Standing {
                    ready: readiness.ready,
                    reason: readiness.reason,
                    message: &readiness.message,
                },
                now,
            );
            return;
        }
        if let Resource::Notifier(_) = resource {
            // Never run; Ready says whether it can send.
            let (ready, reason, message) = match self.notifiers.get(&object.name) {
                Some(Ok(url)) => (true, "Ready", format!("sends to {url}")),
                Some(Err(why)) => (false, "URLUnusable", why.clone()),
                None => (
                    true,
                    "Valid",
                    "valid; not loaded by the daemon yet".to_string(),
                ),
            };
            status::apply_state(
                s,
                ObjectState::Standing {
                    ready,
                    reason,
                    message: &message,
                },
                now,
            );
            return;
        }
        let kind = object.kind.as_str();
        let memory = match self.memory.get(&key) {
            Some(m) => Ok(m.clone()),
            None => self.state.object(kind, &object.name, now),
        };
        match memory {
            Ok(memory) => {
                s.last_schedule_time = memory.last_scheduled;
                s.last_handled_requested_at = memory.last_handled_requested_at;
                s.last_handled_generation = memory.last_handled_generation;
            }
            Err(e) => error!("{e}"),
        }
        let zone = match resource {
            Resource::BackupPolicy(p) => p.spec.timezone.as_ref().and_then(|z| z.parse().ok()),
            Resource::ContainerSchedule(c) => c.spec.timezone.as_ref().and_then(|z| z.parse().ok()),
            _ => None,
        }
        .unwrap_or(chrono_tz::Tz::UTC);
        s.last_schedule_time_local = s
            .last_schedule_time
            .and_then(|t| status::local_time(t, zone));
        s.next_schedule_time_local = s
            .next_schedule_time
            .and_then(|t| status::local_time(t, zone));
        s.expires_at = match resource {
            Resource::Archive(a) if a.spec.ttl.is_some() => self.expiry.get(&object.name).copied(),
            _ => None,
        };
        let (last, success) = self
            .state
            .last_runs(kind, &object.name)
            .unwrap_or_else(|e| {
                error!("{e}");
                (None, None)
            });
        s.last_successful_time = success.and_then(|r| r.completion_time);
        s.archives = self
            .archives
            .get(&object.name)
            .cloned()
            .filter(|a| a.count > 0 || !a.corrupt.is_empty() || !a.missing.is_empty());
        s.retention = match resource {
            Resource::BackupPolicy(p) if p.spec.retention.is_some() => self
                .retention
                .get(&object.name)
                .cloned()
                .filter(|r| r.dry_run || !r.forget_next.is_empty()),
            _ => None,
        };
        s.restored = match (resource, &last) {
            (Resource::Restore(_), Some(run)) => self
                .state
                .restore_details(&run.id)
                .ok()
                .flatten()
                .and_then(|text| serde_json::from_str(&text).ok()),
            _ => None,
        };
        s.last_run = last.as_ref().map(|r| LastRun {
            id: r.id.clone(),
            phase: r.phase,
            start_time: Some(r.start_time),
            completion_time: r.completion_time,
            source_bytes: r.source_bytes,
            stored_bytes: Some(r.bytes),
            downtime_seconds: Some(status::round_seconds(r.downtime_seconds)),
            archive_id: r.archive_id.clone(),
            message: r.error.clone(),
            warnings: r.warnings.clone(),
            repository: r
                .repository
                .clone()
                .filter(|name| name != crate::spec::repository::DEFAULT_REPOSITORY),
            copies: r.copies.clone(),
        });
        let suspended = match resource {
            Resource::BackupPolicy(p) => p.spec.suspend,
            Resource::ContainerSchedule(c) => c.spec.suspend,
            _ => false,
        };
        // An object that runs once at a set time says when, until it has run.
        let run_at = match resource {
            Resource::Archive(a) => a.spec.run_at.as_ref(),
            Resource::ContainerSchedule(c) => c.spec.run_at.as_ref(),
            _ => None,
        };
        let awaited = run_at
            .and(s.next_schedule_time)
            .filter(|_| last.is_none())
            .map(|at| format!("runs once at {}", at.format("%Y-%m-%d %H:%M:%S UTC")));
        if let Some(run) = self.running.get(&key) {
            status::apply_state(s, ObjectState::Running { run }, now);
        } else if suspended {
            status::apply_state(s, ObjectState::Suspended, now);
        } else if let Some((reason, message)) = self.blocked.get(&key) {
            status::apply_state(s, ObjectState::Blocked { reason, message }, now);
        } else {
            let phase: Option<Phase> = last.as_ref().map(|r| r.phase);
            let message = last.as_ref().and_then(|r| r.error.clone()).or(awaited);
            status::apply_state(
                s,
                ObjectState::Idle {
                    last_phase: phase,
                    message: message.as_deref(),
                },
                now,
            );
        }
    }
}

/// The statuses already on disk, so conditions keep their transition times across writes
/// and restarts.
pub(super) fn read_existing(path: &Path) -> BTreeMap<(Kind, String), Status> {
    use serde::Deserialize;
    let mut out = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let Ok(value) = serde_yaml_ng::Value::deserialize(doc) else {
            break;
        };
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .and_then(Kind::parse);
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str());
        let status = value
            .get("status")
            .cloned()
            .and_then(|s| serde_yaml_ng::from_value::<Status>(s).ok());
        if let (Some(kind), Some(name), Some(status)) = (kind, name, status) {
            out.insert((kind, name.to_string()), status);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_change(path: PathBuf, known: bool) -> Change {
        Change::Write {
            path,
            text: "a: 1\n".into(),
            by_key: BTreeMap::new(),
            known,
        }
    }

    #[tokio::test]
    async fn a_known_status_file_that_is_gone_is_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let specs = dir.path().join("specs");
        std::fs::create_dir(&specs).unwrap();
        let path = specs.join("a.status.yaml");
        let mut cache = StatusCache::new();
        let writer = Writer::start(specs.clone(), false);
        writer.send(write_change(path.clone(), true));
        writer.finish(&mut cache).await;
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a: 1\n");
        assert!(cache.contains_key(&path));
    }

    #[tokio::test]
    async fn nothing_is_written_or_removed_through_a_link_out_of_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let specs = dir.path().join("specs");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&specs).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, specs.join("etclink")).unwrap();
        std::fs::write(outside.join("old.status.yaml"), "x").unwrap();
        let mut cache = StatusCache::new();
        let writer = Writer::start(specs.clone(), false);
        writer.send(write_change(specs.join("etclink/a.status.yaml"), false));
        writer.send(Change::Remove {
            path: specs.join("etclink/old.status.yaml"),
        });
        writer.finish(&mut cache).await;
        assert!(!outside.join("a.status.yaml").exists());
        assert!(outside.join("old.status.yaml").exists());
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn a_specs_folder_that_is_away_is_not_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let specs = dir.path().join("specs");
        let mut cache = StatusCache::new();
        let writer = Writer::start(specs.clone(), false);
        writer.send(write_change(specs.join("a.status.yaml"), false));
        writer.finish(&mut cache).await;
        assert!(!specs.exists());
        assert!(cache.is_empty());
    }
}
