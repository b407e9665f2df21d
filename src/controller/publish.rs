//! After each pass, the reconciler publishes what it knows for the API and the metrics:
//! every object with its spec and status, rendered to JSON once here, and the state
//! gauges.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::desired::Desired;
use crate::executor::RunOutcome;
use crate::hub::{Collection, Digest, Event, Hub, Snapshot};
use crate::metrics::{ArchiveGauges, ObjectGauges};
use crate::spec::common::Phase;
use crate::spec::{Kind, ObjectKey, Resource};
use crate::status::{ArchivesSummary, ObjectStatus, READY};

/// What one pass hands to the API and the metrics.
pub struct Pass<'a> {
    pub root: &'a Path,
    pub desired: &'a Desired,
    pub statuses: &'a [(PathBuf, ObjectStatus)],
    pub memory: &'a BTreeMap<ObjectKey, crate::state::ObjectMemory>,
    pub next_schedule: &'a BTreeMap<ObjectKey, DateTime<Utc>>,
    pub archives: &'a BTreeMap<String, ArchivesSummary>,
    /// The named repositories' last probes.
    pub probes: &'a super::runner::Probes,
    pub now: DateTime<Utc>,
}

/// Publishes passes and run ends, and keeps what the gauges need between passes.
pub struct Publisher {
    hub: Arc<Hub>,
    /// Seconds between scheduled runs per policy, with the generation it was computed for.
    intervals: BTreeMap<ObjectKey, (String, f64)>,
    /// Whether the newest finished run failed, per object (a run in progress keeps the
    /// previous answer, so an alert does not flap while a retry runs).
    last_failed: BTreeMap<ObjectKey, bool>,
}

impl Publisher {
    pub fn new(hub: Arc<Hub>) -> Self {
        Publisher {
            hub,
            intervals: BTreeMap::new(),
            last_failed: BTreeMap::new(),
        }
    }

    /// A run ended: its metrics and its event. `restic`: it wrote a restic-format
    /// repository, where what it added is less than what it read.
    pub fn run_finished(&mut self, key: &ObjectKey, outcome: &RunOutcome, restic: bool) {
        if let Some(ok) = outcome.verified {
            self.hub.metrics.verified(&key.name, ok);
        }
        if !outcome.dry_run {
            let seconds = (outcome.completion_time - outcome.start_time)
                .to_std()
                .unwrap_or_default()
                .as_secs_f64();
            let downtime =
                (!outcome.downtime.is_empty()).then(|| outcome.downtime.values().sum::<f64>());
            self.hub.metrics.run_finished(
                key.kind.as_str(),
                &key.name,
                outcome.phase,
                seconds,
                outcome.bytes,
                downtime,
            );
            if let Some(failed) = failed(outcome.phase) {
                self.last_failed.insert(key.clone(), failed);
            }
            if restic && outcome.committed {
                self.hub.metrics.restic_run(
                    key.kind.as_str(),
                    &key.name,
                    outcome.source_bytes,
                    outcome.bytes,
                );
            }
        }
        self.hub.emit(Event::RunFinished {
            kind: key.kind.as_str().to_string(),
            name: key.name.clone(),
            run_id: outcome.run_id.clone(),
            phase: outcome.phase,
            source_bytes: outcome.source_bytes,
            stored_bytes: outcome.bytes,
            archive_id: outcome.archive_id.clone(),
            time: outcome.completion_time,
        });
    }

    /// Hands a pass's result to the API and the metrics.
    pub fn publish(&mut self, pass: &Pass<'_>) {
        let root = pass.root;
        let now = pass.now;
        for (_, object) in pass.statuses {
            let key = ObjectKey {
                kind: object.kind,
                name: object.name.clone(),
            };
            if let Some(failed) = object
                .status
                .last_run
                .as_ref()
                .and_then(|r| failed(r.phase))
            {
                self.last_failed.insert(key, failed);
            }
        }
        let mut intervals = BTreeMap::new();
        for object in pass.desired.objects() {
            let (Some(crate::spec::Resource::BackupPolicy(policy)), Some(generation)) =
                (&object.resource, &object.generation)
            else {
                continue;
            };
            let key = object.key();
            let seconds = match self.intervals.get(&key) {
                Some((g, seconds)) if g == generation => Some(*seconds),
                _ => crate::schedule::Schedule::new(&object.name, &policy.spec)
                    .ok()
                    .and_then(|s| longest_gap(&s, now)),
            };
            if let Some(seconds) = seconds {
                intervals.insert(key, (generation.clone(), seconds));
            }
        }
        self.intervals = intervals;
        let intervals = self.intervals();
        let gauges = object_gauges(&GaugeInput {
            desired: pass.desired,
            statuses: pass.statuses,
            memory: pass.memory,
            next_schedule: pass.next_schedule,
            intervals: &intervals,
            last_failed: &self.last_failed,
        });
        let metrics = &self.hub.metrics;
        metrics.set_objects(&gauges);
        metrics.set_archives(&archive_gauges(pass.archives));
        metrics.set_repositories(
            &pass
                .probes
                .iter()
                .map(|(name, probe)| {
                    let (archives, bytes) = probe.result.clone().unwrap_or_default();
                    crate::metrics::RepositoryGauges {
                        name: name.clone(),
                        up: probe.result.is_ok(),
                        archives,
                        bytes,
                    }
                })
                .collect::<Vec<_>>(),
        );
        metrics.set_spec_errors(&spec_errors(root, pass.desired));
        let mut published = snapshot(root, pass.desired, pass.statuses);
        published.glances = glances(root, pass.statuses, &gauges);
        published.spec_errors = error_lines(root, pass.desired);
        self.hub.publish(published);
        // A pass allocates and frees a few MiB (statuses, the snapshot's JSON); hand the
        // freed pages back, so an idle daemon stays small.
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim only releases free memory of the allocator.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// The longest time between two of the next few scheduled runs: with an irregular
/// schedule (weekdays only, say) the long gap is the one that must not raise an alarm.
impl Publisher {
    /// Each scheduled policy's longest gap between runs, in seconds, as last published.
    pub fn intervals(&self) -> BTreeMap<ObjectKey, f64> {
        self.intervals
            .iter()
            .map(|(k, (_, s))| (k.clone(), *s))
            .collect()
    }
}

fn longest_gap(schedule: &crate::schedule::Schedule, now: chrono::DateTime<Utc>) -> Option<f64> {
    let mut at = schedule.next_nominal_after(now)?;
    let mut longest: Option<f64> = None;
    for _ in 0..8 {
        let Some(next) = schedule.next_nominal_after(at) else {
            break;
        };
        let gap = (next - at).num_milliseconds() as f64 / 1000.0;
        longest = Some(longest.map_or(gap, |l: f64| l.max(gap)));
        at = next;
    }
    longest
}

/// The spec file's path relative to the specs folder, with `/` separators.
pub fn relative(file: &Path, specs_root: &Path) -> String {
    let rel = file.strip_prefix(specs_root).unwrap_or(file);
    let text = rel.to_string_lossy().replace('\\', "/");
    if text.is_empty() {
        // The specs "folder" is a single file.
        file.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        text
    }
}

/// A URL written out in a spec may hold a token: the API shows it with `***` instead.
fn redact_url(url: &mut crate::spec::notifier::UrlSource) {
    if let crate::spec::notifier::UrlSource::Literal(text) = url {
        *text = crate::notify::target::redact_url(text);
    }
}

fn resource_json(resource: &Resource) -> Value {
    let value = match resource {
        Resource::BackupPolicy(o) => {
            let mut o = o.clone();
            for entry in &mut o.spec.notify {
                if let Some(url) = &mut entry.url {
                    redact_url(url);
                }
            }
            serde_json::to_value(o)
        }
        Resource::Archive(o) => serde_json::to_value(o),
        Resource::Restore(o) => serde_json::to_value(o),
        Resource::ContainerSchedule(o) => serde_json::to_value(o),
        Resource::Repository(o) => serde_json::to_value(o),
        Resource::Notifier(o) => {
            let mut o = o.clone();
            redact_url(&mut o.spec.url);
            serde_json::to_value(o)
        }
    };
    value.unwrap_or(Value::Null)
}

/// One object as the API shows it: the object as in its file, its status, its file.
fn item(object: &ObjectStatus, resource: Option<&Resource>, file: &str) -> Bytes {
    let mut value = match resource {
        Some(r) => resource_json(r),
        None => json!({
            "apiVersion": crate::spec::API_VERSION,
            "kind": object.kind.as_str(),
            "metadata": {"name": object.name},
            "spec": null,
        }),
    };
    if let Value::Object(map) = &mut value {
        map.insert(
            "status".into(),
            serde_json::to_value(object.status.redacted()).unwrap_or(Value::Null),
        );
        map.insert("file".into(), Value::String(file.to_string()));
    }
    crate::hub::redact::redact_value(&mut value);
    Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
}

fn digest(object: &ObjectStatus) -> Digest {
    let ready = object.status.condition(READY);
    Digest {
        ready: ready.map_or("Unknown", |c| c.status.as_str()).to_string(),
        reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
        message: ready
            .map(|c| crate::status::redact(&c.message))
            .unwrap_or_default(),
        last_run: object
            .status
            .last_run
            .as_ref()
            .map(|r| (r.id.clone(), r.phase)),
    }
}

/// The snapshot of one pass.
pub fn snapshot(
    specs_root: &Path,
    desired: &Desired,
    statuses: &[(PathBuf, ObjectStatus)],
) -> Snapshot {
    let mut items: BTreeMap<Kind, Vec<(String, Bytes)>> = BTreeMap::new();
    let mut seen: BTreeSet<(Kind, String)> = BTreeSet::new();
    let mut digests = BTreeMap::new();
    for (file, object) in statuses {
        // A name defined twice is invalid in both files; the API shows the first.
        if !seen.insert((object.kind, object.name.clone())) {
            continue;
        }
        let resource = desired
            .files
            .get(file)
            .and_then(|objects| {
                objects
                    .iter()
                    .find(|o| o.kind == object.kind && o.name == object.name)
            })
            .and_then(|o| o.resource.as_ref());
        let body = item(object, resource, &relative(file, specs_root));
        items
            .entry(object.kind)
            .or_default()
            .push((object.name.clone(), body));
        digests.insert((object.kind, object.name.clone()), digest(object));
    }
    let mut take = |kind| Collection::new(items.remove(&kind).unwrap_or_default());
    Snapshot {
        loaded: true,
        policies: take(Kind::BackupPolicy),
        archives: take(Kind::Archive),
        restores: take(Kind::Restore),
        repositories: take(Kind::Repository),
        notifiers: take(Kind::Notifier),
        container_schedules: take(Kind::ContainerSchedule),
        digests,
        ..Default::default()
    }
}

fn unix(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// What the state gauges need beyond the statuses.
pub struct GaugeInput<'a> {
    pub desired: &'a Desired,
    pub statuses: &'a [(PathBuf, ObjectStatus)],
    pub memory: &'a BTreeMap<ObjectKey, crate::state::ObjectMemory>,
    pub next_schedule: &'a BTreeMap<ObjectKey, DateTime<Utc>>,
    /// Seconds between two scheduled runs, per policy.
    pub intervals: &'a BTreeMap<ObjectKey, f64>,
    /// Whether the newest *finished* run failed, per object.
    pub last_failed: &'a BTreeMap<ObjectKey, bool>,
}

/// The per-object gauges of every valid policy, Archive and ContainerSchedule this host
/// runs: another host's (its hostSelector does not match) has none here, so it is never
/// late or failing.
pub fn object_gauges(input: &GaugeInput<'_>) -> Vec<ObjectGauges> {
    let mut out = Vec::new();
    for (_, object) in input.statuses {
        let key = ObjectKey {
            kind: object.kind,
            name: object.name.clone(),
        };
        let Some(resource) = input.desired.get(&key).and_then(|o| o.resource.as_ref()) else {
            continue;
        };
        let (suspended, retention) = match resource {
            Resource::BackupPolicy(p) => (p.spec.suspend, p.spec.retention.is_some()),
            Resource::Archive(_) => (false, false),
            Resource::ContainerSchedule(c) => (c.spec.suspend, false),
            Resource::Restore(_) | Resource::Repository(_) | Resource::Notifier(_) => continue,
        };
        let s = &object.status;
        out.push(ObjectGauges {
            kind: object.kind.as_str(),
            name: object.name.clone(),
            first_seen: input.memory.get(&key).and_then(|m| m.first_seen).map(unix),
            last_success: s.last_successful_time.map(unix),
            last_run: s.last_run.as_ref().and_then(|r| r.start_time).map(unix),
            last_run_failed: input.last_failed.get(&key).copied(),
            next_run: input.next_schedule.get(&key).copied().map(unix),
            schedule_interval: input.intervals.get(&key).copied(),
            suspended,
            retention,
        });
    }
    out
}

/// Whether a finished phase counts as failed for alerting.
pub fn failed(phase: Phase) -> Option<bool> {
    match phase {
        Phase::Failed | Phase::PartiallyFailed => Some(true),
        Phase::Succeeded => Some(false),
        Phase::Pending | Phase::Running => None,
    }
}

pub fn archive_gauges(archives: &BTreeMap<String, ArchivesSummary>) -> Vec<ArchiveGauges> {
    archives
        .iter()
        .map(|(name, a)| ArchiveGauges {
            name: name.clone(),
            count: a.count,
            bytes: a.bytes,
            corrupt: a.corrupt.len() as u64,
        })
        .collect()
}

/// Validation errors per spec file, by relative path.
/// Every object in a glance for the dashboard: its status with the gauges' freshness.
fn glances(
    specs_root: &Path,
    statuses: &[(PathBuf, ObjectStatus)],
    gauges: &[ObjectGauges],
) -> Vec<crate::hub::Glance> {
    let gauges: BTreeMap<(&str, &str), &ObjectGauges> = gauges
        .iter()
        .map(|g| ((g.kind, g.name.as_str()), g))
        .collect();
    let mut seen = BTreeSet::new();
    let mut out: Vec<crate::hub::Glance> = statuses
        .iter()
        .filter(|(_, o)| seen.insert((o.kind, o.name.clone())))
        .map(|(file, object)| {
            let status = object.status.redacted();
            let ready = status.condition(READY);
            let gauge = gauges.get(&(object.kind.as_str(), object.name.as_str()));
            let from_unix = |s: f64| DateTime::from_timestamp_millis((s * 1000.0) as i64);
            crate::hub::Glance {
                kind: object.kind.as_str().to_string(),
                name: object.name.clone(),
                file: relative(file, specs_root),
                ready: ready.map_or("Unknown", |c| c.status.as_str()).to_string(),
                reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
                message: ready.map(|c| c.message.clone()).unwrap_or_default(),
                suspended: gauge.is_some_and(|g| g.suspended),
                fresh_since: status
                    .last_successful_time
                    .or_else(|| gauge.and_then(|g| g.first_seen).and_then(from_unix)),
                last_success: status.last_successful_time,
                interval_seconds: gauge.and_then(|g| g.schedule_interval),
                next_run: status.next_schedule_time,
                last_run: status.last_run,
                archives: status.archives,
            }
        })
        .collect();
    out.sort_by(|a, b| (kind_order(&a.kind), &a.name).cmp(&(kind_order(&b.kind), &b.name)));
    out
}

/// Kinds in the order the overview lists them.
fn kind_order(kind: &str) -> usize {
    [
        "BackupPolicy",
        "Archive",
        "Restore",
        "Repository",
        "Notifier",
        "ContainerSchedule",
    ]
    .iter()
    .position(|k| *k == kind)
    .unwrap_or(usize::MAX)
}

/// Every error of the specs, whole files first, then objects in file order, each with its
/// file relative to the specs folder (as the metrics name it).
fn error_lines(specs_root: &Path, desired: &Desired) -> Vec<String> {
    let root = format!("{}/", specs_root.display());
    let files = desired.file_errors.values().flatten();
    let objects = desired.files.values().flatten().flat_map(|o| &o.errors);
    files
        .chain(objects)
        .map(|e| crate::status::redact(e.strip_prefix(&root).unwrap_or(e)))
        .collect()
}

pub fn spec_errors(specs_root: &Path, desired: &Desired) -> Vec<(String, usize)> {
    desired
        .files
        .iter()
        .map(|(file, objects)| {
            let errors = desired.file_errors.get(file).map_or(0, Vec::len)
                + objects.iter().map(|o| o.errors.len()).sum::<usize>();
            (relative(file, specs_root), errors)
        })
        .collect()
}
