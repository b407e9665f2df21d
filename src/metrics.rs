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

use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::spec::common::Phase;

type Labels = Vec<(&'static str, String)>;
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

/// A named repository as its last probe found it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RepositoryGauges {
    pub name: String,
    pub up: bool,
    /// This host's archives there and their bytes (0 when it is down).
    pub archives: u64,
    pub bytes: u64,
}

/// Every metric holdfast exports.
pub struct Metrics {
    registry: Registry,
    runs: Family<Labels, Counter>,
    run_duration: Histograms,
    run_bytes: Histograms,
    added_bytes: Family<Labels, Gauge>,
    dedup_ratio: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    downtime: Histograms,
    deletions: Family<Labels, Counter>,
    reconcile: Histogram,
    queue: Gauge,
    in_progress: Gauge,
    specs_unreadable: Gauge,
    docker_errors: Family<Labels, Counter>,
    verifications: Family<Labels, Counter>,
    notifications: Family<Labels, Counter>,
    /// The state gauges, encoded from the last published values at each scrape.
    state: Arc<StateCollector>,
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
            added_bytes: Family::default(),
            dedup_ratio: Family::default(),
            downtime: Family::new_with_constructor(seconds_buckets),
            deletions: Family::default(),
            reconcile: short_seconds_buckets(),
            queue: Gauge::default(),
            in_progress: Gauge::default(),
            specs_unreadable: Gauge::default(),
            docker_errors: Family::default(),
            verifications: Family::default(),
            notifications: Family::default(),
            state: Arc::default(),
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
            "holdfast_last_run_added_bytes",
            "Bytes the newest run that wrote a restic repository added there (deduplicated, compressed)",
            m.added_bytes.clone(),
        );
        registry.register(
            "holdfast_last_run_dedup_ratio",
            "Bytes the newest run that wrote a restic repository read from its sources, over the bytes it added there",
            m.dedup_ratio.clone(),
        );
        registry.register(
            "holdfast_stack_downtime_seconds",
            "How long a run kept containers stopped, summed over its stacks",
            m.downtime.clone(),
        );
        registry.register(
            "holdfast_retention_deletions",
            "Archives deleted, by name and reason (retention, ttl, spec-removed)",
            m.deletions.clone(),
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
            "holdfast_specs_unreadable",
            "1 while the specs folder cannot be read or will not hold still, so the last good view of it is kept; 0 otherwise",
            m.specs_unreadable.clone(),
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
        registry.register(
            "holdfast_notifications",
            "Notifications handed to a service, by notifier and result (sent; failed after its retries; dropped, its queue full)",
            m.notifications.clone(),
        );
        registry.register_collector(Box::new(m.state.clone()));
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
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

    /// A run wrote an archive into a restic repository: `source` bytes read, `added`
    /// bytes stored. The ratio is left as it was when the run added nothing.
    pub fn restic_run(&self, kind: &str, name: &str, source: u64, added: u64) {
        let labels = object(kind, name);
        self.added_bytes.get_or_create(&labels).set(clamp(added));
        if let Some(ratio) = crate::repo::catalog::dedup_ratio(source, added) {
            self.dedup_ratio.get_or_create(&labels).set(ratio);
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

    /// A notification ended; `notifier` is the Notifier's name (never its URL).
    pub fn notified(&self, notifier: &str, result: &'static str) {
        self.notifications
            .get_or_create(&vec![
                ("notifier", notifier.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
    }

    pub fn reconciled(&self, seconds: f64, queued: usize, running: usize) {
        self.reconcile.observe(seconds);
        self.queue.set(queued as i64);
        self.in_progress.set(running as i64);
    }

    /// The per-object gauges from now on; objects not listed have none.
    pub fn set_objects(&self, objects: &[ObjectGauges]) {
        for o in objects.iter().filter(|o| o.retention) {
            // Created at 0; the guard is only a read lock on the family.
            drop(self.deletions.get_or_create(&vec![
                ("name", o.name.clone()),
                ("reason", "retention".to_string()),
            ]));
        }
        self.state.update(|s| s.objects = objects.to_vec());
    }

    /// The archive gauges of every repository group from now on.
    pub fn set_archives(&self, groups: &[ArchiveGauges]) {
        self.state.update(|s| s.archives = groups.to_vec());
    }

    /// The gauges of every named repository (Repository specs) from now on.
    pub fn set_repositories(&self, repositories: &[RepositoryGauges]) {
        self.state
            .update(|s| s.repositories = repositories.to_vec());
    }

    /// Whether the daemon is keeping its last good view because the specs folder cannot
    /// be read (or will not hold still) now.
    pub fn specs_unreadable(&self, unreadable: bool) {
        self.specs_unreadable.set(i64::from(unreadable));
    }

    /// The validation error count of every spec file (relative paths) from now on.
    pub fn set_spec_errors(&self, files: &[(String, usize)]) {
        self.state.update(|s| s.files = files.to_vec());
    }

    /// Takes in the failed Docker calls so far, by operation (the Docker adapter counts
    /// them; whoever serves the metrics hands them over before encoding).
    pub fn docker_errors_seen(&self, counts: &[(&'static str, u64)]) {
        for &(operation, count) in counts {
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

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What the reconciler last published, for the state gauges.
#[derive(Clone, Debug, Default)]
struct StateGauges {
    objects: Vec<ObjectGauges>,
    archives: Vec<ArchiveGauges>,
    files: Vec<(String, usize)>,
    repositories: Vec<RepositoryGauges>,
}

/// Encodes the state gauges from plain vectors at scrape time. With a thousand policies,
/// a family of live gauges per metric would hold tens of thousands of label sets and
/// atomics for values that only change once per reconcile pass.
#[derive(Debug, Default)]
struct StateCollector {
    state: RwLock<Arc<StateGauges>>,
}

impl StateCollector {
    fn update(&self, change: impl FnOnce(&mut StateGauges)) {
        let mut slot = self.state.write().unwrap_or_else(|e| e.into_inner());
        change(Arc::make_mut(&mut slot));
    }
}

/// One gauge family; nothing at all when it has no series, as for the live families.
fn gauge_family<'a, N: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = ([(&'static str, &'a str); 2], N)>,
) -> std::fmt::Result {
    let mut series = series.peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut metric =
        encoder.encode_descriptor(name, &format!("{help}."), None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn one_label_family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    key: &'static str,
    series: impl Iterator<Item = (&'a str, i64)>,
) -> std::fmt::Result {
    let mut series = series.peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut metric =
        encoder.encode_descriptor(name, &format!("{help}."), None, MetricType::Gauge)?;
    for (value_label, value) in series {
        ConstGauge::new(value).encode(metric.encode_family(&[(key, value_label)])?)?;
    }
    Ok(())
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner()).clone();
        fn labels(o: &ObjectGauges) -> [(&'static str, &str); 2] {
            [("kind", o.kind), ("name", o.name.as_str())]
        }
        let float = |pick: fn(&ObjectGauges) -> Option<f64>| {
            s.objects
                .iter()
                .filter_map(move |o| pick(o).map(|v| (labels(o), v)))
        };
        let e = &mut encoder;
        gauge_family(
            e,
            "holdfast_first_seen_timestamp_seconds",
            "When holdfast first saw the object in the specs (Unix time)",
            float(|o| o.first_seen),
        )?;
        gauge_family(
            e,
            "holdfast_last_success_timestamp_seconds",
            "Completion time of the newest successful run (Unix time); absent if none",
            float(|o| o.last_success),
        )?;
        gauge_family(
            e,
            "holdfast_last_run_timestamp_seconds",
            "Start time of the newest run (Unix time)",
            float(|o| o.last_run),
        )?;
        gauge_family(
            e,
            "holdfast_last_run_failed",
            "1 when the newest finished run failed or partially failed, else 0",
            s.objects
                .iter()
                .filter_map(|o| o.last_run_failed.map(|f| (labels(o), i64::from(f)))),
        )?;
        gauge_family(
            e,
            "holdfast_next_run_timestamp_seconds",
            "When the next scheduled run is due (Unix time)",
            float(|o| o.next_run),
        )?;
        gauge_family(
            e,
            "holdfast_schedule_interval_seconds",
            "Time between two consecutive scheduled runs of a policy",
            float(|o| o.schedule_interval),
        )?;
        gauge_family(
            e,
            "holdfast_suspended",
            "1 when the policy is suspended (spec.suspend), else 0",
            s.objects
                .iter()
                .map(|o| (labels(o), i64::from(o.suspended))),
        )?;
        one_label_family(
            e,
            "holdfast_archives",
            "Good archives kept in the repository, per policy or Archive name",
            "name",
            s.archives.iter().map(|g| (g.name.as_str(), clamp(g.count))),
        )?;
        one_label_family(
            e,
            "holdfast_archives_bytes",
            "Bytes of the good archives kept, per policy or Archive name",
            "name",
            s.archives.iter().map(|g| (g.name.as_str(), clamp(g.bytes))),
        )?;
        one_label_family(
            e,
            "holdfast_archives_corrupt",
            "Archives that fail verification, per policy or Archive name",
            "name",
            s.archives
                .iter()
                .map(|g| (g.name.as_str(), clamp(g.corrupt))),
        )?;
        one_label_family(
            e,
            "holdfast_repository_up",
            "1 when the named repository answered its last probe (write, read, delete), else 0",
            "repository",
            s.repositories
                .iter()
                .map(|r| (r.name.as_str(), i64::from(r.up))),
        )?;
        one_label_family(
            e,
            "holdfast_repository_archives",
            "This host's archives in the named repository, at its last probe",
            "repository",
            s.repositories
                .iter()
                .map(|r| (r.name.as_str(), clamp(r.archives))),
        )?;
        one_label_family(
            e,
            "holdfast_repository_bytes",
            "Bytes of this host's archives in the named repository, at its last probe",
            "repository",
            s.repositories
                .iter()
                .map(|r| (r.name.as_str(), clamp(r.bytes))),
        )?;
        one_label_family(
            e,
            "holdfast_spec_errors",
            "Validation errors per spec file (path relative to the specs folder)",
            "file",
            s.files.iter().map(|(f, n)| (f.as_str(), *n as i64)),
        )?;
        Ok(())
    }
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

    #[test]
    fn a_run_into_a_restic_repository_sets_its_added_bytes_and_dedup_ratio() {
        let m = Metrics::new();
        // Absent until a run wrote a restic repository, as other families without series.
        assert!(!m.encode().contains("holdfast_last_run_added_bytes"));
        m.restic_run("BackupPolicy", "nightly", 3_000_000, 80_000);
        let text = m.encode();
        assert_eq!(
            line(&text, "holdfast_last_run_added_bytes{"),
            Some(r#"holdfast_last_run_added_bytes{kind="BackupPolicy",name="nightly"} 80000"#)
        );
        assert_eq!(
            line(&text, "holdfast_last_run_dedup_ratio{"),
            Some(r#"holdfast_last_run_dedup_ratio{kind="BackupPolicy",name="nightly"} 37.5"#)
        );
        // A run that added nothing keeps the last ratio.
        m.restic_run("BackupPolicy", "nightly", 3_000_000, 0);
        let text = m.encode();
        assert!(
            text.contains(r#"holdfast_last_run_added_bytes{kind="BackupPolicy",name="nightly"} 0"#)
        );
        assert!(text.contains("} 37.5"), "{text}");
    }
}
