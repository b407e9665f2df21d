//! The host summary this daemon publishes into its repository for the fleet view
//! ([`crate::repo::hosts`]): rebuilt after every pass, written when it changed (at most
//! once every [`MIN_GAP`]) and at least every [`crate::repo::hosts::HEARTBEAT_SECONDS`],
//! off the loop's thread. A write that fails is logged and tried again at the next pass.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use tracing::warn;

use crate::repo::Repository;
use crate::repo::hosts::{HEARTBEAT_SECONDS, HostSummary, ObjectSummary, SUMMARY};
use crate::spec::ObjectKey;
use crate::status::{ObjectStatus, READY};

/// The shortest time between two summaries written because something changed.
pub const MIN_GAP: chrono::Duration = chrono::Duration::seconds(10);

/// What is needed to write the summary, and what was last written.
pub struct Fleet {
    repo: Repository,
    host: String,
    labels: BTreeMap<String, String>,
    /// The last summary written, and when.
    written: Option<HostSummary>,
    /// A write under way: the next waits for it, so two never race.
    writing: Option<tokio::task::JoinHandle<bool>>,
    /// A summary that changed but could not be written yet.
    pending: bool,
}

impl Fleet {
    pub fn new(repo: Repository, host: String, labels: BTreeMap<String, String>) -> Self {
        Fleet {
            repo,
            host,
            labels,
            written: None,
            writing: None,
            pending: false,
        }
    }

    /// When the summary must next be written (a change held back by [`MIN_GAP`], or the
    /// heartbeat), for the loop's timer.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        let last = self.written.as_ref()?.written_at;
        Some(if self.pending {
            last + MIN_GAP
        } else {
            last + chrono::Duration::seconds(HEARTBEAT_SECONDS as i64)
        })
    }

    /// After a pass: writes the summary when it changed or the heartbeat is due.
    pub fn pass(
        &mut self,
        statuses: &[(PathBuf, ObjectStatus)],
        next_schedule: &BTreeMap<ObjectKey, DateTime<Utc>>,
        intervals: &BTreeMap<ObjectKey, f64>,
        now: DateTime<Utc>,
    ) {
        if let Some(writing) = &self.writing {
            if !writing.is_finished() {
                self.pending = true;
                return;
            }
            let handle = self.writing.take().expect("checked above");
            // A failed write forgets what was written, so the next pass writes again.
            if !futures_util::FutureExt::now_or_never(handle).is_some_and(|r| r.unwrap_or(false)) {
                self.written = None;
            }
        }
        let summary = summary(
            &self.host,
            &self.labels,
            statuses,
            next_schedule,
            intervals,
            now,
        );
        let changed = self.written.as_ref().is_none_or(|w| !w.same_as(&summary));
        let last = self.written.as_ref().map(|w| w.written_at);
        let heartbeat =
            last.is_some_and(|at| now - at >= chrono::Duration::seconds(HEARTBEAT_SECONDS as i64));
        if !changed && !heartbeat {
            self.pending = false;
            return;
        }
        if changed && !heartbeat && last.is_some_and(|at| now - at < MIN_GAP) {
            self.pending = true;
            return;
        }
        let bytes = match serde_json::to_vec_pretty(&summary) {
            Ok(b) => b,
            Err(e) => {
                warn!("the host summary cannot be written: {e}");
                return;
            }
        };
        let repo = self.repo.clone();
        self.written = Some(summary);
        self.pending = false;
        self.writing = Some(tokio::task::spawn_blocking(move || {
            match repo.write_meta(SUMMARY, &bytes) {
                Ok(()) => true,
                Err(e) => {
                    warn!(
                        "the host summary could not be written to {}: {e}; tried again at the next pass",
                        repo.describe()
                    );
                    false
                }
            }
        }));
    }
}

/// The summary of the objects this host runs (another host's, `NotSelected` here, are
/// left out), by kind then name.
pub fn summary(
    host: &str,
    labels: &BTreeMap<String, String>,
    statuses: &[(PathBuf, ObjectStatus)],
    next_schedule: &BTreeMap<ObjectKey, DateTime<Utc>>,
    intervals: &BTreeMap<ObjectKey, f64>,
    now: DateTime<Utc>,
) -> HostSummary {
    let mut objects: Vec<ObjectSummary> = statuses
        .iter()
        .map(|(_, o)| o)
        .filter(|o| {
            o.status
                .condition(READY)
                .is_none_or(|c| c.reason != super::NOT_SELECTED)
        })
        .map(|o| {
            let key = ObjectKey {
                kind: o.kind,
                name: o.name.clone(),
            };
            let ready = o.status.condition(READY);
            let run = o.status.last_run.as_ref();
            ObjectSummary {
                kind: o.kind.as_str().to_string(),
                name: o.name.clone(),
                ready: ready.is_some_and(|c| c.status == "True"),
                reason: ready.map(|c| c.reason.clone()).filter(|r| !r.is_empty()),
                last_run_phase: run.map(|r| r.phase),
                last_run_time: run.and_then(|r| r.completion_time.or(r.start_time)),
                last_success_time: o.status.last_successful_time,
                next_run: next_schedule
                    .get(&key)
                    .copied()
                    .or(o.status.next_schedule_time),
                interval_seconds: intervals.get(&key).copied(),
            }
        })
        .collect();
    objects.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    HostSummary {
        host: host.to_string(),
        labels: labels.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        written_at: now,
        objects,
    }
}
