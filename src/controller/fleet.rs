//! The host summary this daemon publishes into its repository for the fleet view
//! ([`crate::repo::hosts`]), and into each named repository its policies write (not a
//! restic-format one, which holds restic's layout only): rebuilt after every pass, written when it changed (at most
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
    /// While a slow write lasts, the loop is not woken again before this.
    not_before: Option<DateTime<Utc>>,
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
            not_before: None,
        }
    }

    /// When the summary must next be written (a change held back by [`MIN_GAP`], or the
    /// heartbeat), for the loop's timer.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        let last = self.written.as_ref()?.written_at;
        let due = if self.pending {
            last + MIN_GAP
        } else {
            last + chrono::Duration::seconds(HEARTBEAT_SECONDS as i64)
        };
        Some(self.not_before.map_or(due, |at| due.max(at)))
    }

    /// After a pass: writes the summary when it changed or the heartbeat is due, into the
    /// default repository and `named` (what this host's policies write besides). Whether
    /// it was written is the default repository's answer; a named one that fails is logged.
    pub fn pass(
        &mut self,
        named: Vec<Repository>,
        statuses: &[(PathBuf, ObjectStatus)],
        next_schedule: &BTreeMap<ObjectKey, DateTime<Utc>>,
        intervals: &BTreeMap<ObjectKey, f64>,
        now: DateTime<Utc>,
    ) {
        if let Some(writing) = &self.writing {
            if !writing.is_finished() {
                self.pending = true;
                self.not_before = Some(now + chrono::Duration::seconds(1));
                return;
            }
            let handle = self.writing.take().expect("checked above");
            // A failed write forgets what was written, so the next pass writes again.
            if !futures_util::FutureExt::now_or_never(handle).is_some_and(|r| r.unwrap_or(false)) {
                self.written = None;
            }
        }
        self.not_before = None;
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
            for other in named {
                if other.format() == crate::spec::repository::RepositoryFormat::Restic {
                    continue;
                }
                if let Err(e) = other.write_meta(SUMMARY, &bytes) {
                    warn!(
                        repository = %other.name(),
                        "the host summary could not be written to {}: {e}; tried again at the next change or heartbeat",
                        other.describe()
                    );
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Kind;
    use crate::status::{Condition, Status};

    fn object(name: &str, reason: &str) -> (PathBuf, ObjectStatus) {
        let status = Status {
            conditions: vec![Condition {
                type_: READY.into(),
                status: "True".into(),
                reason: reason.into(),
                message: String::new(),
                last_transition_time: DateTime::<Utc>::UNIX_EPOCH,
            }],
            ..Status::default()
        };
        let object = ObjectStatus {
            kind: Kind::BackupPolicy,
            name: name.into(),
            status,
        };
        (PathBuf::from("x.yaml"), object)
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            kind: Kind::BackupPolicy,
            name: name.into(),
        }
    }

    #[test]
    fn the_summary_holds_this_hosts_objects_with_their_intervals() {
        let now = Utc::now();
        let statuses = [
            object("mine", "Succeeded"),
            object("theirs", super::super::NOT_SELECTED),
        ];
        let intervals = BTreeMap::from([(key("mine"), 86_400.0)]);
        let next = BTreeMap::from([(key("mine"), now)]);
        let labels = BTreeMap::from([("role".to_string(), "nas".to_string())]);
        let s = summary("nas", &labels, &statuses, &next, &intervals, now);
        assert_eq!(s.objects.len(), 1, "{s:?}");
        let o = &s.objects[0];
        assert_eq!(
            (o.kind.as_str(), o.name.as_str(), o.ready),
            ("BackupPolicy", "mine", true)
        );
        assert_eq!(o.reason.as_deref(), Some("Succeeded"));
        assert_eq!(
            (o.interval_seconds, o.next_run),
            (Some(86_400.0), Some(now))
        );
        assert_eq!(s.labels, labels);
    }

    /// Waits for the write under way, and returns what the repository holds.
    async fn written(fleet: &mut Fleet) -> HostSummary {
        if let Some(w) = fleet.writing.take() {
            assert!(w.await.unwrap());
        }
        let bytes = fleet.repo.read_meta(SUMMARY).unwrap().unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn changes_are_written_at_most_every_ten_seconds_and_a_heartbeat_every_five_minutes() {
        let dir = tempfile::tempdir().unwrap();
        let mut fleet = Fleet::new(
            Repository::local(dir.path(), "nas"),
            "nas".into(),
            BTreeMap::new(),
        );
        let (none, no) = (BTreeMap::new(), BTreeMap::new());
        let t0 = Utc::now();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let one = [object("a", "Succeeded")];
        let two = [object("a", "Succeeded"), object("b", "Succeeded")];
        assert_eq!(fleet.due_at(), None);
        fleet.pass(vec![], &one, &none, &no, at(0));
        assert_eq!(written(&mut fleet).await.written_at, at(0));
        // A change 5 s later waits for the gap; the loop is woken for it.
        fleet.pass(vec![], &two, &none, &no, at(5));
        assert_eq!(written(&mut fleet).await.objects.len(), 1);
        assert_eq!(fleet.due_at(), Some(at(10)));
        let named = tempfile::tempdir().unwrap();
        let other = Repository::local(named.path(), "nas");
        fleet.pass(vec![other.clone()], &two, &none, &no, at(10));
        assert_eq!(written(&mut fleet).await.objects.len(), 2);
        // A named repository the policies write gets the same summary.
        let there = crate::repo::hosts::read_all(&other).unwrap();
        assert_eq!((there.len(), there[0].written_at), (1, at(10)));
        // Nothing changed: nothing written until the heartbeat.
        fleet.pass(vec![], &two, &none, &no, at(100));
        assert_eq!(written(&mut fleet).await.written_at, at(10));
        assert_eq!(fleet.due_at(), Some(at(310)));
        fleet.pass(vec![], &two, &none, &no, at(310));
        assert_eq!(written(&mut fleet).await.written_at, at(310));
    }
}
