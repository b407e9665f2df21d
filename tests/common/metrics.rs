//! The metrics holdfast exports, for the tests of the monitoring examples and of /metrics.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

use MetricType::{Counter, Gauge, Histogram};

/// Every metric holdfast exports, as named in a scrape (counters with their `_total`).
/// The examples may only use these. Another test checks this list against what a running
/// daemon serves at /metrics, so that the list, and with it these checks, cannot drift
/// from the code.
pub const KNOWN_METRICS: &[(&str, MetricType)] = &[
    ("holdfast_build_info", Gauge),
    ("holdfast_runs_total", Counter),
    ("holdfast_run_duration_seconds", Histogram),
    ("holdfast_run_archived_bytes", Histogram),
    ("holdfast_last_run_added_bytes", Gauge),
    ("holdfast_last_run_dedup_ratio", Gauge),
    ("holdfast_stack_downtime_seconds", Histogram),
    ("holdfast_last_success_timestamp_seconds", Gauge),
    ("holdfast_last_run_timestamp_seconds", Gauge),
    ("holdfast_last_run_failed", Gauge),
    ("holdfast_first_seen_timestamp_seconds", Gauge),
    ("holdfast_next_run_timestamp_seconds", Gauge),
    ("holdfast_schedule_interval_seconds", Gauge),
    ("holdfast_suspended", Gauge),
    ("holdfast_archives", Gauge),
    ("holdfast_archives_bytes", Gauge),
    ("holdfast_archives_corrupt", Gauge),
    ("holdfast_retention_deletions_total", Counter),
    ("holdfast_spec_errors", Gauge),
    ("holdfast_repository_up", Gauge),
    ("holdfast_repository_archives", Gauge),
    ("holdfast_repository_bytes", Gauge),
    ("holdfast_reconcile_duration_seconds", Histogram),
    ("holdfast_queue_depth", Gauge),
    ("holdfast_runs_in_progress", Gauge),
    ("holdfast_specs_unreadable", Gauge),
    ("holdfast_docker_api_errors_total", Counter),
    ("holdfast_verifications_total", Counter),
    ("holdfast_notifications_total", Counter),
];
