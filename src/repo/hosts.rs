//! Host summaries: each daemon writes a small account of its objects into the repository
//! it writes (`<host>/.holdfast/summary.json`), so that any host, or `holdfast get hosts`,
//! sees the whole fleet sharing that repository without a server of its own. A summary is
//! replaced whole through [`super::Storage::write_meta`], so a reader never sees half of one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Repository, StorageError};
use crate::spec::common::Phase;

/// The summary's file name among the host's records (`<host>/.holdfast/`).
pub const SUMMARY: &str = "summary.json";

/// How much older than its longest schedule interval a summary may be before its host is
/// `stale`: the factor of the HoldfastBackupLate alert.
pub const STALE_FACTOR: f64 = 1.5;

/// A host without a scheduled policy writes a summary at least this often (the heartbeat),
/// so it is stale when its summary is older than [`STALE_FACTOR`] times this.
pub const HEARTBEAT_SECONDS: f64 = 300.0;

/// What one daemon publishes about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostSummary {
    pub host: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The holdfast version that wrote it.
    pub version: String,
    /// When it was written: its age is how long ago the host was last seen.
    pub written_at: DateTime<Utc>,
    /// The objects this host runs (not those its labels do not select), by kind then name.
    #[serde(default)]
    pub objects: Vec<ObjectSummary>,
}

/// One object as its host publishes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectSummary {
    pub kind: String,
    pub name: String,
    /// The `Ready` condition's status, and its reason when there is one.
    pub ready: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<DateTime<Utc>>,
    /// A BackupPolicy's longest gap between two scheduled runs, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<f64>,
}

impl ObjectSummary {
    /// Not Ready, or its newest finished run failed.
    pub fn failing(&self) -> bool {
        !self.ready
            || matches!(
                self.last_run_phase,
                Some(Phase::Failed | Phase::PartiallyFailed)
            )
    }
}

/// How a host looks to a reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HostStatus {
    Ok,
    /// Its summary is older than [`STALE_FACTOR`] times its longest schedule interval
    /// (or the heartbeat's): the daemon is down or cannot write.
    Stale,
    /// At least one of its objects is failing.
    Failing,
}

/// One row of `holdfast get hosts` and `GET /api/v1/hosts`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostRow {
    pub host: String,
    pub status: HostStatus,
    /// Seconds since the summary was written.
    pub age_seconds: i64,
    pub objects: usize,
    pub failing: usize,
    /// The soonest next run among its objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_run: Option<DateTime<Utc>>,
    pub summary: HostSummary,
}

impl HostSummary {
    /// The longest schedule interval among its objects, or the heartbeat's when longer.
    pub fn longest_interval(&self) -> f64 {
        self.objects
            .iter()
            .filter_map(|o| o.interval_seconds)
            .fold(HEARTBEAT_SECONDS, f64::max)
    }

    /// `stale` when older than [`STALE_FACTOR`] times [`Self::longest_interval`], else
    /// `failing` when an object fails, else `ok`.
    pub fn status(&self, now: DateTime<Utc>) -> HostStatus {
        let age = (now - self.written_at).num_milliseconds() as f64 / 1000.0;
        if age > STALE_FACTOR * self.longest_interval() {
            HostStatus::Stale
        } else if self.objects.iter().any(ObjectSummary::failing) {
            HostStatus::Failing
        } else {
            HostStatus::Ok
        }
    }

    /// The row readers show at `now`.
    pub fn row(self, now: DateTime<Utc>) -> HostRow {
        HostRow {
            host: self.host.clone(),
            status: self.status(now),
            age_seconds: (now - self.written_at).num_seconds().max(0),
            objects: self.objects.len(),
            failing: self.objects.iter().filter(|o| o.failing()).count(),
            next_run: self.objects.iter().filter_map(|o| o.next_run).min(),
            summary: self,
        }
    }

    /// The same summary without its time, to tell whether anything else changed.
    pub fn same_as(&self, other: &HostSummary) -> bool {
        HostSummary {
            written_at: other.written_at,
            ..self.clone()
        } == *other
    }
}

/// Every host's summary found in `repo`, sorted by host; one that does not parse is
/// skipped with a warning naming it (a reader never takes a damaged file for good).
pub fn read_all(repo: &Repository) -> Result<Vec<HostSummary>, StorageError> {
    let mut summaries = Vec::new();
    for (host, bytes) in repo.host_records(SUMMARY)? {
        match serde_json::from_slice::<HostSummary>(&bytes) {
            Ok(summary) => summaries.push(summary),
            Err(e) => tracing::warn!(
                host = %host,
                "{host}/{}/{SUMMARY} in {} is not a host summary ({e}); skipped",
                super::layout::META_DIR,
                repo.describe()
            ),
        }
    }
    summaries.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(summaries)
}

/// Every host's row at `now`.
pub fn rows(repo: &Repository, now: DateTime<Utc>) -> Result<Vec<HostRow>, StorageError> {
    Ok(read_all(repo)?.into_iter().map(|s| s.row(now)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, interval: Option<f64>, phase: Option<Phase>) -> ObjectSummary {
        ObjectSummary {
            kind: "BackupPolicy".into(),
            name: name.into(),
            ready: true,
            reason: None,
            last_run_phase: phase,
            last_run_time: None,
            last_success_time: None,
            next_run: None,
            interval_seconds: interval,
        }
    }

    fn summary(written_at: DateTime<Utc>, objects: Vec<ObjectSummary>) -> HostSummary {
        HostSummary {
            host: "nas".into(),
            labels: BTreeMap::new(),
            version: "0".into(),
            written_at,
            objects,
        }
    }

    #[test]
    fn a_host_is_stale_past_one_and_a_half_of_its_longest_interval() {
        let now = Utc::now();
        let day = 86_400.0;
        let hours = |h: i64| now - chrono::Duration::hours(h);
        let s = |at| {
            summary(
                at,
                vec![
                    object("a", Some(3600.0), None),
                    object("b", Some(day), None),
                ],
            )
        };
        assert_eq!(s(hours(35)).status(now), HostStatus::Ok);
        assert_eq!(s(hours(37)).status(now), HostStatus::Stale);
        // Without a scheduled policy, the heartbeat is the interval.
        let idle = |secs: i64| summary(now - chrono::Duration::seconds(secs), vec![]);
        assert_eq!(idle(400).status(now), HostStatus::Ok);
        assert_eq!(idle(500).status(now), HostStatus::Stale);
    }

    #[test]
    fn a_failed_run_or_not_ready_makes_the_host_failing_unless_stale() {
        let now = Utc::now();
        let failed = summary(now, vec![object("a", None, Some(Phase::Failed))]);
        assert_eq!(failed.status(now), HostStatus::Failing);
        let mut not_ready = object("b", None, Some(Phase::Succeeded));
        not_ready.ready = false;
        let row = summary(now, vec![not_ready, object("c", None, None)]).row(now);
        assert_eq!(
            (row.status, row.objects, row.failing),
            (HostStatus::Failing, 2, 1)
        );
        let old = summary(
            now - chrono::Duration::hours(1),
            vec![object("a", None, Some(Phase::Failed))],
        );
        assert_eq!(old.status(now), HostStatus::Stale);
    }

    #[test]
    fn summaries_of_every_host_are_read_and_a_damaged_one_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        for host in ["b", "a"] {
            let repo = Repository::local(dir.path(), host);
            let mut s = summary(now, vec![object("x", None, None)]);
            s.host = host.into();
            repo.write_meta(SUMMARY, &serde_json::to_vec(&s).unwrap())
                .unwrap();
        }
        Repository::local(dir.path(), "c")
            .write_meta(SUMMARY, b"{\"host\":")
            .unwrap();
        let read = read_all(&Repository::local(dir.path(), "a")).unwrap();
        let hosts: Vec<&str> = read.iter().map(|s| s.host.as_str()).collect();
        assert_eq!(hosts, ["a", "b"]);
        assert!(read[0].same_as(&HostSummary {
            written_at: now - chrono::Duration::hours(1),
            ..read[0].clone()
        }));
    }
}
