//! Prometheus metrics, in the OpenMetrics text format at `/metrics`.
//!
//! Label values are bounded: object kinds and names (from the specs), run phases, fixed
//! reasons and operation names, and spec file paths relative to the specs folder. Never a
//! run or archive id, an absolute path or error text, so the series count stays that of the
//! specs.
//!
//! Two sorts of metric live here. Events (runs, deletions, Docker errors) are counted and
//! observed as they happen. State (last success, next run, archives kept, spec errors) is
//! set from what the reconciler publishes after each pass, and series of objects that are
//! gone are removed, so a deleted policy does not keep alerting.

use std::collections::BTreeSet;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::spec::common::Phase;

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn object(kind: &str, name: &str) -> Labels {
    vec![("kind", kind.to_string()), ("name", name.to_string())]
}

fn seconds_buckets() -> Histogram {
    // 1 s to about 9 hours.
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

fn short_seconds_buckets() -> Histogram {
    // 1 ms to about 16 s: a reconcile pass.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn bytes_buckets() -> Histogram {
    // 1 MiB to 1 TiB.
    Histogram::new(exponential_buckets(1024.0 * 1024.0, 4.0, 11))
}

/// What the reconciler knows about one object, for the state gauges.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectGauges {
    pub kind: &'static str,
    pub name: String,
    pub first_seen: Option<f64>,
    pub last_success: Option<f64>,
    pub last_run: Option<f64>,
    /// `Some(true)` when the newest finished run failed or partially failed.
    pub last_run_failed: Option<bool>,
    pub next_run: Option<f64>,
    pub schedule_interval: Option<f64>,
    pub suspended: bool,
    /// The policy has retention rules: its deletion counter starts at 0, so `rate()` and
    /// `increase()` work from the first deletion on.
    pub retention: bool,
}

/// Archives of one repository group.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArchiveGauges {
    pub name: String,
    pub count: u64,
    pub bytes: u64,
    pub corrupt: u64,
}

/// Every metric holdfast exports.
pub struct Metrics {
    registry: Registry,
    runs: Family<Labels, Counter>,
    run_duration: Histograms,
    run_bytes: Histograms,
    downtime: Histograms,
    first_seen: Family<Labels, FloatGauge>,
    last_success: Family<Labels, FloatGauge>,
    last_run: Family<Labels, FloatGauge>,
    last_run_failed: Family<Labels, Gauge>,
    next_run: Family<Labels, FloatGauge>,
    interval: Family<Labels, FloatGauge>,
    suspended: Family<Labels, Gauge>,
    archives: Family<Labels, Gauge>,
    archive_bytes: Family<Labels, Gauge>,
    archives_corrupt: Family<Labels, Gauge>,
    deletions: Family<Labels, Counter>,
    spec_errors: Family<Labels, Gauge>,
    reconcile: Histogram,
    queue: Gauge,
    in_progress: Gauge,
    docker_errors: Family<Labels, Counter>,
    verifications: Family<Labels, Counter>,
    /// The label sets of the state gauges now set, to remove those of objects that left.
    objects_set: Mutex<BTreeSet<Labels>>,
    groups_set: Mutex<BTreeSet<Labels>>,
    files_set: Mutex<BTreeSet<Labels>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            runs: Family::default(),
            run_duration: Family::new_with_constructor(seconds_buckets),
            run_bytes: Family::new_with_constructor(bytes_buckets),
            downtime: Family::new_with_constructor(seconds_buckets),
            first_seen: Family::default(),
            last_success: Family::default(),
            last_run: Family::default(),
            last_run_failed: Family::default(),
            next_run: Family::default(),
            interval: Family::default(),
            suspended: Family::default(),
            archives: Family::default(),
            archive_bytes: Family::default(),
            archives_corrupt: Family::default(),
            deletions: Family::default(),
            spec_errors: Family::default(),
            reconcile: short_seconds_buckets(),
            queue: Gauge::default(),
            in_progress: Gauge::default(),
            docker_errors: Family::default(),
            verifications: Family::default(),
            objects_set: Mutex::default(),
            groups_set: Mutex::default(),
            files_set: Mutex::default(),
        };
        registry.register(
            "holdfast_build",
            "Build information: the version in a label; always 1",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION").to_string())]),
        );
        registry.register(
            "holdfast_runs",
            "Finished runs, by object and phase",
            m.runs.clone(),
        );
        registry.register(
            "holdfast_run_duration_seconds",
            "How long finished runs took, start to end",
            m.run_duration.clone(),
        );
        registry.register(
            "holdfast_run_archived_bytes",
            "Bytes a run wrote into the repository",
            m.run_bytes.clone(),
        );
        registry.register(
            "holdfast_stack_downtime_seconds",
            "How long a run kept containers stopped, summed over its stacks",
            m.downtime.clone(),
        );
        registry.register(
            "holdfast_first_seen_timestamp_seconds",
            "When holdfast first saw the object in the specs (Unix time)",
            m.first_seen.clone(),
        );
        registry.register(
            "holdfast_last_success_timestamp_seconds",
            "Completion time of the newest successful run (Unix time); absent if none",
            m.last_success.clone(),
        );
        registry.register(
            "holdfast_last_run_timestamp_seconds",
            "Start time of the newest run (Unix time)",
            m.last_run.clone(),
        );
        registry.register(
            "holdfast_last_run_failed",
            "1 when the newest finished run failed or partially failed, else 0",
            m.last_run_failed.clone(),
        );
        registry.register(
            "holdfast_next_run_timestamp_seconds",
            "When the next scheduled run is due (Unix time)",
            m.next_run.clone(),
        );
        registry.register(
            "holdfast_schedule_interval_seconds",
            "Time between two consecutive scheduled runs of a policy",
            m.interval.clone(),
        );
        registry.register(
            "holdfast_suspended",
            "1 when the policy is suspended (spec.suspend), else 0",
            m.suspended.clone(),
        );
        registry.register(
            "holdfast_archives",
            "Good archives kept in the repository, per policy or Archive name",
            m.archives.clone(),
        );
        registry.register(
            "holdfast_archives_bytes",
            "Bytes of the good archives kept, per policy or Archive name",
            m.archive_bytes.clone(),
        );
        registry.register(
            "holdfast_archives_corrupt",
            "Archives that fail verification, per policy or Archive name",
            m.archives_corrupt.clone(),
        );
        registry.register(
            "holdfast_retention_deletions",
            "Archives deleted, by name and reason (retention, ttl, spec-removed)",
            m.deletions.clone(),
        );
        registry.register(
            "holdfast_spec_errors",
            "Validation errors per spec file (path relative to the specs folder)",
            m.spec_errors.clone(),
        );
        registry.register(
            "holdfast_reconcile_duration_seconds",
            "How long one pass of the reconcile loop took",
            m.reconcile.clone(),
        );
        registry.register(
            "holdfast_queue_depth",
            "Due runs waiting for a free slot or a busy stack",
            m.queue.clone(),
        );
        registry.register(
            "holdfast_runs_in_progress",
            "Runs going on now",
            m.in_progress.clone(),
        );
        registry.register(
            "holdfast_docker_api_errors",
            "Failed Docker API calls, by operation",
            m.docker_errors.clone(),
        );
        registry.register(
            "holdfast_verifications",
            "Archives verified (read back in full), by name and result (ok, corrupt)",
            m.verifications.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        self.sync_docker_errors();
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// A run ended.
    #[allow(clippy::too_many_arguments)]
    pub fn run_finished(
        &self,
        kind: &str,
        name: &str,
        phase: Phase,
        seconds: f64,
        bytes: u64,
        downtime: Option<f64>,
    ) {
        let mut labels = object(kind, name);
        labels.push(("phase", phase.as_str().to_string()));
        self.runs.get_or_create(&labels).inc();
        let labels = object(kind, name);
        self.run_duration.get_or_create(&labels).observe(seconds);
        if bytes > 0 {
            self.run_bytes.get_or_create(&labels).observe(bytes as f64);
        }
        if let Some(d) = downtime {
            self.downtime.get_or_create(&labels).observe(d);
        }
    }

    /// An archive was deleted on purpose; `reason` is one of a fixed few words.
    pub fn deleted(&self, name: &str, reason: &'static str) {
        self.deletions
            .get_or_create(&vec![
                ("name", name.to_string()),
                ("reason", reason.to_string()),
            ])
            .inc();
    }

    /// An archive was read back in full.
    pub fn verified(&self, name: &str, ok: bool) {
        self.verifications
            .get_or_create(&vec![
                ("name", name.to_string()),
                ("result", if ok { "ok" } else { "corrupt" }.to_string()),
            ])
            .inc();
    }

    pub fn reconciled(&self, seconds: f64, queued: usize, running: usize) {
        self.reconcile.observe(seconds);
        self.queue.set(queued as i64);
        self.in_progress.set(running as i64);
    }

    /// Sets the per-object gauges and removes those of objects no longer listed.
    pub fn set_objects(&self, objects: &[ObjectGauges]) {
        let mut now_set = BTreeSet::new();
        for o in objects {
            let labels = object(o.kind, &o.name);
            set_opt(&self.first_seen, &labels, o.first_seen);
            set_opt(&self.last_success, &labels, o.last_success);
            set_opt(&self.last_run, &labels, o.last_run);
            match o.last_run_failed {
                Some(failed) => {
                    self.last_run_failed
                        .get_or_create(&labels)
                        .set(i64::from(failed));
                }
                None => {
                    self.last_run_failed.remove(&labels);
                }
            }
            set_opt(&self.next_run, &labels, o.next_run);
            set_opt(&self.interval, &labels, o.schedule_interval);
            self.suspended
                .get_or_create(&labels)
                .set(i64::from(o.suspended));
            if o.retention {
                // Created at 0; the guard is only a read lock on the family.
                drop(self.deletions.get_or_create(&vec![
                    ("name", o.name.clone()),
                    ("reason", "retention".to_string()),
                ]));
            }
            now_set.insert(labels);
        }
        let gone = replace_set(&self.objects_set, now_set);
        for labels in gone {
            self.first_seen.remove(&labels);
            self.last_success.remove(&labels);
            self.last_run.remove(&labels);
            self.last_run_failed.remove(&labels);
            self.next_run.remove(&labels);
            self.interval.remove(&labels);
            self.suspended.remove(&labels);
        }
    }

    /// Sets the archive gauges of every repository group.
    pub fn set_archives(&self, groups: &[ArchiveGauges]) {
        let mut now_set = BTreeSet::new();
        for g in groups {
            let labels = vec![("name", g.name.clone())];
            self.archives.get_or_create(&labels).set(clamp(g.count));
            self.archive_bytes
                .get_or_create(&labels)
                .set(clamp(g.bytes));
            self.archives_corrupt
                .get_or_create(&labels)
                .set(clamp(g.corrupt));
            now_set.insert(labels);
        }
        for labels in replace_set(&self.groups_set, now_set) {
            self.archives.remove(&labels);
            self.archive_bytes.remove(&labels);
            self.archives_corrupt.remove(&labels);
        }
    }

    /// Sets the validation error count of every spec file (relative paths).
    pub fn set_spec_errors(&self, files: &[(String, usize)]) {
        let mut now_set = BTreeSet::new();
        for (file, errors) in files {
            let labels = vec![("file", file.clone())];
            self.spec_errors.get_or_create(&labels).set(*errors as i64);
            now_set.insert(labels);
        }
        for labels in replace_set(&self.files_set, now_set) {
            self.spec_errors.remove(&labels);
        }
    }

    /// Copies the process-wide Docker error counts into the counter family.
    fn sync_docker_errors(&self) {
        for (operation, count) in crate::docker::engine::error_counts() {
            let counter = self
                .docker_errors
                .get_or_create(&vec![("operation", operation.to_string())]);
            let seen = counter.get();
            if count > seen {
                counter.inc_by(count - seen);
            }
        }
    }
}

fn set_opt(family: &Family<Labels, FloatGauge>, labels: &Labels, value: Option<f64>) {
    match value {
        Some(v) => {
            family.get_or_create(labels).set(v);
        }
        None => {
            family.remove(labels);
        }
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Stores `now` and returns what was in the old set but not in `now`.
fn replace_set(slot: &Mutex<BTreeSet<Labels>>, now: BTreeSet<Labels>) -> Vec<Labels> {
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    let gone = slot.difference(&now).cloned().collect();
    *slot = now;
    gone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn runs_are_counted_with_bounded_labels() {
        let m = Metrics::new();
        m.run_finished(
            "BackupPolicy",
            "nightly",
            Phase::Succeeded,
            12.0,
            5 << 20,
            Some(3.5),
        );
        m.run_finished("BackupPolicy", "nightly", Phase::Failed, 1.0, 0, None);
        let text = m.encode();
        assert!(
            line(
                &text,
                r#"holdfast_runs_total{kind="BackupPolicy",name="nightly",phase="Succeeded"} 1"#
            )
            .is_some(),
            "{text}"
        );
        assert!(
            line(
                &text,
                r#"holdfast_run_duration_seconds_count{kind="BackupPolicy",name="nightly"} 2"#
            )
            .is_some(),
            "{text}"
        );
        assert!(
            line(
                &text,
                r#"holdfast_run_archived_bytes_sum{kind="BackupPolicy",name="nightly"} 5242880"#
            )
            .is_some(),
            "{text}"
        );
        assert!(
            line(&text, r#"holdfast_build_info{version=""#).is_some(),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn series_of_objects_that_left_are_removed() {
        let m = Metrics::new();
        let o = |name: &str| ObjectGauges {
            kind: "BackupPolicy",
            name: name.into(),
            last_success: Some(1_700_000_000.0),
            last_run_failed: Some(false),
            schedule_interval: Some(3600.0),
            ..Default::default()
        };
        m.set_objects(&[o("a"), o("b")]);
        m.set_spec_errors(&[("a.yaml".into(), 2), ("b.yaml".into(), 0)]);
        let text = m.encode();
        assert!(
            text.contains(
                r#"holdfast_schedule_interval_seconds{kind="BackupPolicy",name="b"} 3600"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"holdfast_spec_errors{file="a.yaml"} 2"#),
            "{text}"
        );
        m.set_objects(&[o("a")]);
        m.set_spec_errors(&[("a.yaml".into(), 0)]);
        let text = m.encode();
        assert!(!text.contains(r#"name="b""#), "{text}");
        assert!(!text.contains("b.yaml"), "{text}");
        assert!(
            text.contains(r#"holdfast_spec_errors{file="a.yaml"} 0"#),
            "{text}"
        );
    }
}
