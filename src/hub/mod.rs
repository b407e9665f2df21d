//! What the reconciler shares with the HTTP server: the latest published state, the event
//! stream and the metrics. The reconciler writes; the server only reads.
//!
//! The published state is a [`Snapshot`] behind an `Arc`, swapped whole after each
//! reconcile pass, so a request never waits for the loop and never sees half a pass. The
//! JSON of every object is rendered (and redacted) once per pass, not once per request.

pub mod redact;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::metrics::Metrics;
use crate::spec::Kind;
use crate::spec::common::Phase;

/// The page size of object lists when the request gives none.
pub const DEFAULT_PAGE: usize = 100;
/// The largest page of an object list.
pub const MAX_PAGE: usize = 1000;

/// Something that happened, as sent on `/api/v1/events`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    /// A run began.
    RunStarted {
        kind: String,
        name: String,
        run_id: String,
        time: DateTime<Utc>,
    },
    /// A run moved on: a new item, or more bytes read (at most twice a second).
    RunProgress {
        kind: String,
        name: String,
        run_id: String,
        /// The volume, bind mount or dump being archived.
        item: Option<String>,
        /// Bytes read from the sources so far (uncompressed).
        source_bytes: u64,
    },
    /// A run ended.
    RunFinished {
        kind: String,
        name: String,
        run_id: String,
        phase: Phase,
        /// Bytes read from the sources (uncompressed file data and dumps).
        source_bytes: u64,
        /// Bytes written to the repository (compressed artifacts); 0 without an archive.
        stored_bytes: u64,
        archive_id: Option<String>,
        time: DateTime<Utc>,
    },
    /// An object's Ready condition, its reason or its newest run changed.
    StatusChanged {
        kind: String,
        name: String,
        /// `True`, `False` or `Unknown`.
        ready: String,
        reason: String,
        message: String,
    },
}

impl Event {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::RunStarted { .. } => "runStarted",
            Event::RunProgress { .. } => "runProgress",
            Event::RunFinished { .. } => "runFinished",
            Event::StatusChanged { .. } => "statusChanged",
        }
    }
}

/// The objects of one kind, each already rendered as JSON.
#[derive(Debug)]
pub struct Collection {
    /// By name, sorted.
    items: Vec<(String, Bytes)>,
    index: HashMap<String, usize>,
    /// The body of the list request without parameters, ready to send.
    first_page: Bytes,
}

impl Default for Collection {
    fn default() -> Self {
        Collection::new(Vec::new())
    }
}

impl Collection {
    pub fn new(mut items: Vec<(String, Bytes)>) -> Collection {
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let index = items
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), i))
            .collect();
        let mut c = Collection {
            items,
            index,
            first_page: Bytes::new(),
        };
        c.first_page = c.page(None, DEFAULT_PAGE);
        c
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Every object's JSON, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.items.iter().map(|(name, body)| (name.as_str(), body))
    }

    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.index.get(name).map(|&i| &self.items[i].1)
    }

    pub fn first_page(&self) -> Bytes {
        self.first_page.clone()
    }

    /// `{"items": [...], "total": N, "next": "name" | null}`: up to `limit` objects whose
    /// names sort after `after`.
    pub fn page(&self, after: Option<&str>, limit: usize) -> Bytes {
        let start = match after {
            Some(after) => self.items.partition_point(|(n, _)| n.as_str() <= after),
            None => 0,
        };
        let end = (start + limit).min(self.items.len());
        let slice = &self.items[start..end];
        let size: usize = slice.iter().map(|(_, b)| b.len() + 1).sum();
        let mut out = Vec::with_capacity(size + 64);
        out.extend_from_slice(b"{\"items\":[");
        for (i, (_, body)) in slice.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(body);
        }
        out.extend_from_slice(b"],\"total\":");
        out.extend_from_slice(self.items.len().to_string().as_bytes());
        out.extend_from_slice(b",\"next\":");
        match slice.last() {
            Some((name, _)) if end < self.items.len() => {
                // Names are DNS-1123 labels: nothing to escape, but serde is sure.
                out.extend_from_slice(
                    serde_json::to_string(name)
                        .unwrap_or_else(|_| "null".into())
                        .as_bytes(),
                );
            }
            _ => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        Bytes::from(out)
    }
}

/// One object as the dashboard's overview shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Glance {
    pub kind: String,
    pub name: String,
    /// The spec file, relative to the specs folder.
    pub file: String,
    /// The Ready condition: `True`, `False` or `Unknown`.
    pub ready: String,
    pub reason: String,
    pub message: String,
    pub suspended: bool,
    /// What lateness counts from: the last success, else when holdfast first saw it.
    pub fresh_since: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    /// The longest gap between two scheduled runs, in seconds.
    pub interval_seconds: Option<f64>,
    pub next_run: Option<DateTime<Utc>>,
    pub last_run: Option<crate::status::LastRun>,
    pub archives: Option<crate::status::ArchivesSummary>,
}

/// What one object's status says in a word, to tell when it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    pub ready: String,
    pub reason: String,
    pub message: String,
    pub last_run: Option<(String, Phase)>,
}

/// Everything the API serves about the specs, as of one reconcile pass.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// False until the specs were loaded once.
    pub loaded: bool,
    pub policies: Collection,
    pub archives: Collection,
    pub restores: Collection,
    pub repositories: Collection,
    pub notifiers: Collection,
    pub container_schedules: Collection,
    pub digests: BTreeMap<(Kind, String), Digest>,
    /// Every object in a glance, by kind then name: the dashboard's overview, computed
    /// once per pass rather than per request.
    pub glances: Vec<Glance>,
    /// Every validation error of the pass (whole files and objects), redacted and formatted
    /// `file:line:column: ...`.
    pub spec_errors: Vec<String>,
}

impl Snapshot {
    pub fn collection(&self, kind: Kind) -> &Collection {
        match kind {
            Kind::BackupPolicy => &self.policies,
            Kind::Archive => &self.archives,
            Kind::Restore => &self.restores,
            Kind::Repository => &self.repositories,
            Kind::Notifier => &self.notifiers,
            Kind::ContainerSchedule => &self.container_schedules,
        }
    }
}

/// The meeting point of the reconciler, the executor's progress and the HTTP server.
pub struct Hub {
    pub metrics: Metrics,
    snapshot: RwLock<Arc<Snapshot>>,
    events: broadcast::Sender<Event>,
    /// The controller's catalog, as last changed; `None` until one is published (outside
    /// the daemon).
    catalog: RwLock<Option<Arc<Vec<crate::repo::Entry>>>>,
    /// Called when a run has its id (heartbeat notifications ping their monitor then).
    on_run_started: RwLock<Option<RunStartedHook>>,
}

/// What is told of a run that began: its object's kind and name, and its run id.
pub type RunStartedHook = Arc<dyn Fn(Kind, &str, &str) + Send + Sync>;

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        // Slow SSE clients that fall this far behind are told so and skip ahead.
        let (events, _) = broadcast::channel(256);
        Hub {
            metrics: Metrics::new(),
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            events,
            catalog: RwLock::new(None),
            on_run_started: RwLock::new(None),
        }
    }

    /// A run of `kind/name` has its id: tells the hook set by [`Hub::on_run_started`].
    pub fn run_started(&self, kind: Kind, name: &str, run_id: &str) {
        let hook = self
            .on_run_started
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook(kind, name, run_id);
        }
    }

    /// Sets what is called each time a run has its id.
    pub fn on_run_started(&self, hook: RunStartedHook) {
        *self
            .on_run_started
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// The archives the controller knows, without reading the repository.
    pub fn catalog(&self) -> Option<Arc<Vec<crate::repo::Entry>>> {
        self.catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn publish_catalog(&self, entries: Vec<crate::repo::Entry>) {
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(entries));
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the published state, and tells subscribers which statuses changed.
    pub fn publish(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        let old = std::mem::replace(
            &mut *self.snapshot.write().unwrap_or_else(|e| e.into_inner()),
            snapshot.clone(),
        );
        for ((kind, name), digest) in &snapshot.digests {
            if old.digests.get(&(*kind, name.clone())) != Some(digest) {
                self.emit(Event::StatusChanged {
                    kind: kind.as_str().to_string(),
                    name: name.clone(),
                    ready: digest.ready.clone(),
                    reason: digest.reason.clone(),
                    message: digest.message.clone(),
                });
            }
        }
    }

    pub fn emit(&self, event: Event) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

/// Forwards one run's progress to the event stream.
pub struct RunEvents {
    hub: Arc<Hub>,
    typed_kind: Kind,
    kind: String,
    name: String,
    state: std::sync::Mutex<RunEventState>,
    cancelled: std::sync::atomic::AtomicBool,
}

struct RunEventState {
    run_id: String,
    item: Option<String>,
    bytes: u64,
    last_sent: Option<Instant>,
}

/// How often byte counts are sent at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

impl RunEvents {
    pub fn new(hub: Arc<Hub>, kind: Kind, name: &str) -> RunEvents {
        RunEvents {
            hub,
            typed_kind: kind,
            kind: kind.as_str().to_string(),
            name: name.to_string(),
            state: std::sync::Mutex::new(RunEventState {
                run_id: String::new(),
                item: None,
                bytes: 0,
                last_sent: None,
            }),
            cancelled: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Tells the run's work to stop (see [`crate::progress::Progress::cancelled`]).
    pub fn cancel(&self) {
        self.cancelled
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn send_progress(&self, state: &mut RunEventState) {
        state.last_sent = Some(Instant::now());
        self.hub.emit(Event::RunProgress {
            kind: self.kind.clone(),
            name: self.name.clone(),
            run_id: state.run_id.clone(),
            item: state.item.clone(),
            source_bytes: state.bytes,
        });
    }
}

impl crate::progress::Progress for RunEvents {
    fn cancelled(&self) -> bool {
        self.cancelled.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn run(&self, id: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.run_id = id.to_string();
        self.hub.emit(Event::RunStarted {
            kind: self.kind.clone(),
            name: self.name.clone(),
            run_id: id.to_string(),
            time: Utc::now(),
        });
        drop(state);
        self.hub.run_started(self.typed_kind, &self.name, id);
    }

    /// A phase shows as the run's item until the next item: what a run waits for, or that
    /// it is starting containers again, rather than the last item archived.
    fn phase(&self, what: &str) {
        self.item(what);
    }

    fn item(&self, name: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.item = Some(name.to_string());
        self.send_progress(&mut state);
    }

    fn bytes(&self, n: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.bytes += n;
        if state
            .last_sent
            .is_none_or(|at| at.elapsed() >= PROGRESS_EVERY)
        {
            self.send_progress(&mut state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collection(n: usize) -> Collection {
        Collection::new(
            (0..n)
                .map(|i| {
                    let name = format!("p{i:03}");
                    let body = Bytes::from(format!("{{\"name\":\"{name}\"}}"));
                    (name, body)
                })
                .collect(),
        )
    }

    fn page(c: &Collection, after: Option<&str>, limit: usize) -> serde_json::Value {
        serde_json::from_slice(&c.page(after, limit)).unwrap()
    }

    #[test]
    fn pages_walk_the_whole_list_once() {
        let c = collection(5);
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let p = page(&c, after.as_deref(), 2);
            assert_eq!(p["total"], 5);
            for item in p["items"].as_array().unwrap() {
                seen.push(item["name"].as_str().unwrap().to_string());
            }
            match p["next"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => break,
            }
        }
        assert_eq!(seen, ["p000", "p001", "p002", "p003", "p004"]);
    }

    #[test]
    fn page_edges() {
        let c = collection(3);
        // Exactly the whole list: no next page.
        assert_eq!(page(&c, None, 3)["next"], serde_json::Value::Null);
        // After the last name, or a name past it: empty, no next.
        let p = page(&c, Some("p002"), 10);
        assert_eq!(p["items"].as_array().unwrap().len(), 0);
        assert_eq!(p["next"], serde_json::Value::Null);
        // A name that is not in the list still orders.
        let p = page(&c, Some("p0005"), 10);
        assert_eq!(p["items"][0]["name"], "p001");
        let empty = collection(0);
        assert_eq!(
            page(&empty, None, 10),
            serde_json::json!({"items": [], "total": 0, "next": null})
        );
        assert_eq!(c.first_page(), c.page(None, DEFAULT_PAGE));
    }

    #[test]
    fn status_changes_become_events() {
        let hub = Hub::new();
        let mut rx = hub.subscribe();
        let digest = |ready: &str| Digest {
            ready: ready.into(),
            reason: "Succeeded".into(),
            message: String::new(),
            last_run: None,
        };
        let snap = |ready: &str| Snapshot {
            loaded: true,
            digests: [((Kind::BackupPolicy, "a".to_string()), digest(ready))].into(),
            ..Default::default()
        };
        hub.publish(snap("True"));
        hub.publish(snap("True"));
        hub.publish(snap("False"));
        let first = rx.try_recv().unwrap();
        assert!(matches!(first, Event::StatusChanged { ref ready, .. } if ready == "True"));
        let second = rx.try_recv().unwrap();
        assert!(matches!(second, Event::StatusChanged { ref ready, .. } if ready == "False"));
        assert!(rx.try_recv().is_err());
    }
}
