//! `holdfast run`: the reconciler. It loads the specs, decides what runs when, starts runs
//! through the executor, and writes a status file beside every spec file.
//!
//! One loop owns all mutable state. It wakes on a spec change (debounced), on the next
//! due time, on a run's completion and on a periodic resync, and each time it runs the
//! same pure [`plan::plan`]. It never busy-polls.

pub mod desired;
pub mod plan;
mod publish;
mod status_view;
mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument, error, info, info_span, warn};

use crate::executor::{BackupRequest, Executor, RunOutcome};
use crate::hub::Hub;
use crate::hub::{Event, RunEvents};
use crate::repo::manifest::Verification;
use crate::repo::{Catalog, Entry, Health, Repository};
use crate::spec::{Kind, ObjectKey};
use crate::state::StateDb;
use desired::Desired;
use plan::{Observed, Want};

/// How the daemon behaves; everything else comes from the specs.
#[derive(Clone, Debug)]
pub struct Options {
    pub specs: PathBuf,
    /// The repository, for retention and the archive counts in statuses.
    pub repository: PathBuf,
    pub status_dir: Option<PathBuf>,
    pub max_concurrent: usize,
    /// How long a running run gets to finish after SIGTERM before it is cancelled.
    pub shutdown_timeout: Duration,
    /// The safety-net full reload, in case a file event was missed.
    pub resync: Duration,
}

struct Running {
    /// Shown in the status while the run lasts.
    run_id_hint: String,
    stacks: Vec<String>,
    handle: JoinHandle<()>,
}

/// The reconciler and everything it owns.
pub struct Controller {
    options: Options,
    executor: Arc<Executor>,
    state: Arc<StateDb>,
    desired: Desired,
    pending: Vec<Want>,
    running: BTreeMap<ObjectKey, Running>,
    /// Objects of each file as last loaded, so a file that stops parsing still names them.
    last_known: BTreeMap<PathBuf, Vec<(Kind, String)>>,
    status_files: BTreeMap<PathBuf, PathBuf>,
    /// The next schedule times from the last reconcile, for the final statuses.
    next_schedule: BTreeMap<ObjectKey, chrono::DateTime<Utc>>,
    /// The spec files as they were at the last load.
    loaded: Vec<(PathBuf, u64, Option<std::time::SystemTime>)>,
    status_cache: status_view::StatusCache,
    /// Archive counts per repository group, for statuses; refreshed after runs and pruning.
    archives: BTreeMap<String, crate::status::ArchivesSummary>,
    /// The retention settings each policy was last pruned with: a change prunes again.
    pruned_with: BTreeMap<String, String>,
    /// Archive specs with `deletionPolicy: Delete`, as last loaded: removing such a spec
    /// deletes its archives.
    delete_with_spec: Vec<String>,
    /// Retention's outlook per policy, from the last pruning.
    retention: BTreeMap<String, crate::status::RetentionStatus>,
    /// Where the API and the metrics read what the loop knows.
    hub: Arc<Hub>,
    /// Seconds between scheduled runs per policy, with the generation it was computed for.
    intervals: BTreeMap<ObjectKey, (String, f64)>,
    /// Whether the newest finished run failed, per object (a run in progress keeps the
    /// previous answer, so an alert does not flap while a retry runs).
    last_failed: BTreeMap<ObjectKey, bool>,
    /// When each policy with `verify.schedule` next verifies its archives.
    verify_next: BTreeMap<String, chrono::DateTime<Utc>>,
    /// Policies whose scheduled verification is going on.
    verifying: std::collections::BTreeSet<String>,
    verify_tx: Option<mpsc::UnboundedSender<(String, Vec<Verified>)>>,
    /// The repository as the last resync saw it (see [`repository_fingerprint`]).
    repository_seen: Vec<(PathBuf, Option<std::time::SystemTime>)>,
    repo: Repository,
    /// What the repository holds: read whole at start-up and when the resync sees the
    /// listing change, otherwise kept current by what this daemon does to it.
    catalog: Catalog,
}

/// One archive's verification: `None` when it could not be read at all.
type Verified = (String, Option<Verification>);

/// Why the loop woke up.
enum Wake {
    SpecsChanged,
    Timer,
    Finished(ObjectKey, Box<RunOutcome>),
    /// A scheduled verification of a policy's archives ended: one result per archive.
    Verified(String, Vec<Verified>),
    Shutdown,
}

impl Controller {
    pub fn new(
        options: Options,
        executor: Arc<Executor>,
        state: Arc<StateDb>,
        hub: Arc<Hub>,
    ) -> Controller {
        let repo = Repository::local(&options.repository);
        Controller {
            repo,
            catalog: Catalog::default(),
            options,
            executor,
            state,
            desired: Desired::default(),
            pending: Vec::new(),
            running: BTreeMap::new(),
            last_known: BTreeMap::new(),
            status_files: BTreeMap::new(),
            next_schedule: BTreeMap::new(),
            loaded: Vec::new(),
            status_cache: BTreeMap::new(),
            archives: BTreeMap::new(),
            pruned_with: BTreeMap::new(),
            delete_with_spec: Vec::new(),
            retention: BTreeMap::new(),
            hub,
            intervals: BTreeMap::new(),
            last_failed: BTreeMap::new(),
            verify_next: BTreeMap::new(),
            verifying: Default::default(),
            verify_tx: None,
            repository_seen: Vec::new(),
        }
    }

    /// Repairs what a crash left behind: runs left Running become Failed (Interrupted),
    /// stopped containers in the journal are started, `.partial` archives are removed.
    pub async fn recover(&mut self) -> anyhow::Result<()> {
        for id in self.state.fail_interrupted_runs(Utc::now())? {
            warn!(run = %id, "run was interrupted by a stop of holdfast; marked Failed");
        }
        let started = self.executor.replay_journal().await?;
        if !started.is_empty() {
            warn!(containers = ?started, "started again what an interrupted run had stopped");
        }
        for path in self.repo.clean()? {
            info!(path = %path, "removed a partial archive left by a crash");
        }
        for id in crate::repo::prune::resume(&self.state, &self.repo)? {
            info!(archive = %id, "finished a deletion a crash had interrupted");
        }
        self.load_catalog()?;
        info!(archives = self.catalog.len(), "repository catalog read");
        Ok(())
    }

    /// Runs until `shutdown` fires (first signal), then drains; a second signal forces.
    pub async fn run(mut self, mut signals: mpsc::Receiver<()>) -> anyhow::Result<()> {
        let (spec_tx, mut spec_rx) = mpsc::unbounded_channel::<()>();
        let _watcher = watch::watch(&self.options.specs, spec_tx)?;
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(ObjectKey, Box<RunOutcome>)>();
        let (verify_tx, mut verify_rx) = mpsc::unbounded_channel::<(String, Vec<Verified>)>();
        self.verify_tx = Some(verify_tx);
        self.reload();
        self.repository_seen = repository_fingerprint(&self.options.repository);
        self.refresh_all_archives();
        self.prune_changed();
        let mut wake_at = self.reconcile(&done_tx);
        loop {
            let sleep_for = wake_at
                .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(self.options.resync)
                .min(self.options.resync);
            let wake = tokio::select! {
                Some(()) = spec_rx.recv() => {
                    watch::debounce(&mut spec_rx).await;
                    Wake::SpecsChanged
                }
                Some((key, outcome)) = done_rx.recv() => Wake::Finished(key, outcome),
                Some((name, results)) = verify_rx.recv() => Wake::Verified(name, results),
                _ = signals.recv() => Wake::Shutdown,
                _ = tokio::time::sleep(sleep_for) => Wake::Timer,
            };
            match wake {
                Wake::SpecsChanged => {
                    self.reload();
                    self.prune_changed();
                }
                Wake::Timer => {
                    let due = wake_at.is_some_and(|at| at <= Utc::now());
                    if !due {
                        // The periodic resync: reload if any spec file changed without an
                        // event reaching us (a missed inotify event, a folder swapped under
                        // us), and read the repository again, where `holdfast verify` or
                        // `holdfast delete` may have changed what the statuses say.
                        let repository = repository_fingerprint(&self.options.repository);
                        let archives_changed = repository != self.repository_seen;
                        if archives_changed {
                            self.repository_seen = repository;
                            if let Err(e) = self.load_catalog() {
                                error!("{e}");
                            }
                            self.refresh_all_archives();
                        }
                        if self.fingerprint() != self.loaded {
                            self.reload();
                        } else if !archives_changed {
                            continue;
                        }
                    }
                }
                Wake::Finished(key, outcome) => self.finished(&key, &outcome),
                Wake::Verified(name, results) => {
                    self.verifying.remove(&name);
                    for (id, verification) in results {
                        let ok = verification.as_ref().is_some_and(|v| v.ok);
                        self.hub.metrics.verified(&name, ok);
                        if let Some(v) = verification {
                            self.catalog.verified(&name, &id, &v);
                        }
                    }
                    self.refresh_archives(&name);
                }
                Wake::Shutdown => {
                    self.shutdown(&mut signals, &mut done_rx).await;
                    return Ok(());
                }
            }
            wake_at = self.reconcile(&done_tx);
        }
    }

    /// Path, size and modification time of every spec file: cheap to take, and different
    /// whenever a reload could give something different.
    fn fingerprint(&self) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
        let (files, _) = crate::load::discover(std::slice::from_ref(&self.options.specs));
        files
            .into_iter()
            .map(|f| {
                let meta = std::fs::metadata(&f).ok();
                let size = meta.as_ref().map_or(0, |m| m.len());
                let modified = meta.and_then(|m| m.modified().ok());
                (f, size, modified)
            })
            .collect()
    }

    fn reload(&mut self) {
        self.loaded = self.fingerprint();
        let report = crate::validate::validate_paths(std::slice::from_ref(&self.options.specs));
        for d in report.diagnostics() {
            warn!("{d}");
        }
        let desired = Desired::from_report(&report);
        // An Archive spec with deletionPolicy Delete that is gone (not merely unreadable:
        // a file that fails to parse still names its objects) takes its archives along.
        let still_named = |name: &str| {
            desired
                .objects()
                .any(|o| o.kind == Kind::Archive && o.name == name)
                || desired.file_errors.keys().any(|f| {
                    self.last_known.get(f).is_some_and(|objects| {
                        objects
                            .iter()
                            .any(|(k, n)| *k == Kind::Archive && n == name)
                    })
                })
        };
        let removed: Vec<String> = self
            .delete_with_spec
            .iter()
            .filter(|n| !still_named(n))
            .cloned()
            .collect();
        self.delete_with_spec = desired
            .objects()
            .filter_map(|o| match &o.resource {
                Some(crate::spec::Resource::Archive(a))
                    if a.spec.deletion_policy == crate::spec::DeletionPolicy::Delete =>
                {
                    Some(o.name.clone())
                }
                _ => None,
            })
            .collect();
        self.desired = desired;
        for name in removed {
            self.delete_group(
                &name,
                "its Archive spec (deletionPolicy: Delete) was removed",
            );
        }
        for (file, objects) in &self.desired.files {
            if !objects.is_empty() {
                self.last_known.insert(
                    file.clone(),
                    objects.iter().map(|o| (o.kind, o.name.clone())).collect(),
                );
            }
        }
        self.last_known
            .retain(|file, _| self.desired.files.contains_key(file));
        info!(
            files = self.desired.files.len(),
            objects = self.desired.objects().count(),
            "specs loaded"
        );
    }

    /// One pass of the plan: start what is due, remember what waits, write statuses.
    /// Returns when to wake up next.
    fn reconcile(
        &mut self,
        done_tx: &mpsc::UnboundedSender<(ObjectKey, Box<RunOutcome>)>,
    ) -> Option<chrono::DateTime<Utc>> {
        let began = std::time::Instant::now();
        let expiry = self.expire(Utc::now());
        let span = info_span!("reconcile");
        let _enter = span.enter();
        let now = Utc::now();
        let keys: Vec<ObjectKey> = self
            .desired
            .objects()
            .filter(|o| o.resource.is_some())
            .map(|o| o.key())
            .collect();
        let names: Vec<(&str, &str)> = keys
            .iter()
            .map(|k| (k.kind.as_str(), k.name.as_str()))
            .collect();
        let memory: BTreeMap<ObjectKey, crate::state::ObjectMemory> =
            match self.state.objects(&names, now) {
                Ok(found) => keys.iter().cloned().zip(found).collect(),
                Err(e) => {
                    error!("{e}");
                    BTreeMap::new()
                }
            };
        let observed = Observed {
            memory: memory.clone(),
            running: self
                .running
                .iter()
                .map(|(k, r)| (k.clone(), r.stacks.clone()))
                .collect(),
            pending: std::mem::take(&mut self.pending),
            max_concurrent: self.options.max_concurrent,
        };
        let decided = plan::plan(&self.desired, &observed, now);
        let mut memory = memory;
        for want in decided.start {
            let key = want.key.clone();
            self.start(want, done_tx);
            // Starting a run changed what is remembered about it.
            match self.state.object(key.kind.as_str(), &key.name, now) {
                Ok(m) => {
                    memory.insert(key, m);
                }
                Err(e) => error!("{e}"),
            }
        }
        let waiting: BTreeMap<ObjectKey, String> = decided
            .wait
            .iter()
            .map(|(w, reason)| (w.key.clone(), reason.clone()))
            .collect();
        self.pending = decided.wait.into_iter().map(|(w, _)| w).collect();
        self.next_schedule = decided.next_schedule;
        let view = status_view::View {
            desired: &self.desired,
            state: &self.state,
            running: self
                .running
                .iter()
                .map(|(k, r)| (k.clone(), r.run_id_hint.clone()))
                .collect(),
            waiting,
            next_schedule: self.next_schedule.clone(),
            last_known: &self.last_known,
            memory: memory.clone(),
            archives: &self.archives,
            retention: &self.retention,
        };
        let mut statuses = Vec::new();
        self.status_files = view.write_all(
            &self.options.specs,
            self.options.status_dir.as_deref(),
            &self.status_files,
            &mut self.status_cache,
            now,
            &mut statuses,
        );
        self.publish(&statuses, &memory, now);
        self.hub.metrics.reconciled(
            began.elapsed().as_secs_f64(),
            self.pending.len(),
            self.running.len(),
        );
        let verify = self.verify_due(now);
        [decided.wake, expiry, verify].into_iter().flatten().min()
    }

    /// Starts the scheduled verifications that are due; returns when the next one is.
    fn verify_due(&mut self, now: chrono::DateTime<Utc>) -> Option<chrono::DateTime<Utc>> {
        let mut wanted = BTreeMap::new();
        for object in self.desired.objects() {
            let Some(crate::spec::Resource::BackupPolicy(policy)) = &object.resource else {
                continue;
            };
            let Some(cron) = policy
                .spec
                .verify
                .as_ref()
                .and_then(|v| v.schedule.as_ref())
            else {
                continue;
            };
            let sample = policy.spec.verify.as_ref().and_then(|v| v.sample);
            match crate::schedule::Schedule::from_cron(
                &object.name,
                cron,
                policy.spec.timezone.as_ref(),
                Duration::ZERO,
            ) {
                Ok(schedule) => {
                    wanted.insert(object.name.clone(), (schedule, sample));
                }
                Err(e) => error!(policy = %object.name, "verify.schedule: {e}"),
            }
        }
        self.verify_next.retain(|name, _| wanted.contains_key(name));
        for (name, (schedule, sample)) in &wanted {
            let due = match self.verify_next.get(name) {
                Some(at) => *at <= now,
                // First seen: the first verification is at the next scheduled time.
                None => {
                    if let Some(next) = schedule.next_nominal_after(now) {
                        self.verify_next.insert(name.clone(), next);
                    }
                    false
                }
            };
            let busy = self.verifying.contains(name)
                || self.running.contains_key(&ObjectKey {
                    kind: Kind::BackupPolicy,
                    name: name.clone(),
                });
            if !due || busy {
                continue;
            }
            match schedule.next_nominal_after(now) {
                Some(next) => self.verify_next.insert(name.clone(), next),
                None => self.verify_next.remove(name),
            };
            self.start_verification(name, *sample);
        }
        // A due verification held back by a run is retried when the run ends (that wakes
        // the loop), so only future times count here: a past one would spin the loop.
        self.verify_next
            .values()
            .copied()
            .filter(|at| *at > now)
            .min()
    }

    fn start_verification(&mut self, name: &str, sample: Option<u32>) {
        let Some(tx) = self.verify_tx.clone() else {
            return;
        };
        let mine: Vec<&Entry> = self
            .catalog
            .group(name)
            .into_iter()
            .filter(|e| e.kind.as_deref() != Some("Archive"))
            .collect();
        let chosen: Vec<String> = crate::repo::verify::pick(&mine, sample)
            .into_iter()
            .map(|e| e.id.clone())
            .collect();
        if chosen.is_empty() {
            return;
        }
        info!(policy = name, archives = chosen.len(), "verifying archives");
        self.verifying.insert(name.to_string());
        let name = name.to_string();
        let repo = self.repo.clone();
        tokio::task::spawn_blocking(move || {
            let mut results = Vec::new();
            for id in chosen {
                match crate::repo::verify::verify_archive(&repo, &name, &id, |_, _| {}) {
                    Ok(v) => {
                        for problem in &v.problems {
                            error!(policy = %name, archive = %id, "verification failed: {problem}");
                        }
                        results.push((id, Some(v)));
                    }
                    // Deleted by retention meanwhile: nothing was wrong with it.
                    Err(crate::repo::verify::VerifyError::NoManifest { .. }) => {}
                    Err(e) => {
                        error!(policy = %name, archive = %id, "verification failed: {e}");
                        results.push((id, None));
                    }
                }
            }
            // The loop may be gone during shutdown; nothing left to tell.
            let _ = tx.send((name, results));
        });
    }

    fn start(&mut self, want: Want, done_tx: &mpsc::UnboundedSender<(ObjectKey, Box<RunOutcome>)>) {
        let Some(object) = self.desired.get(&want.key) else {
            return;
        };
        let Some(resource) = &object.resource else {
            return;
        };
        if let crate::spec::Resource::Restore(restore) = resource {
            let request =
                match crate::restore::RestoreRequest::from_spec(&want.key.name, &restore.spec) {
                    Ok(r) => r,
                    Err(e) => {
                        error!(object = %want.key, "cannot run: {e}");
                        return;
                    }
                };
            self.start_restore(want, request, done_tx);
            return;
        }
        let request = match BackupRequest::from_resource(resource, &self.desired.valid_resources())
        {
            Ok(r) => r,
            Err(e) => {
                error!(object = %want.key, "cannot run: {e}");
                return;
            }
        };
        // Remembered before the run starts: a crash mid-run marks it Interrupted, and the
        // same schedule time is never run twice.
        if let Err(e) = self.state.remember_start(
            want.key.kind.as_str(),
            &want.key.name,
            want.nominal,
            want.requested_at.as_deref(),
            match want.key.kind {
                Kind::Archive | Kind::Restore => want.generation.as_deref(),
                Kind::BackupPolicy => None,
            },
        ) {
            error!(object = %want.key, "not starting: {e}");
            return;
        }
        info!(object = %want.key, trigger = want.trigger.as_str(), nominal = ?want.nominal, "starting a run");
        let executor = self.executor.clone();
        let key = want.key.clone();
        let tx = done_tx.clone();
        let span = info_span!("object", object = %key);
        let progress = Arc::new(RunEvents::new(self.hub.clone(), key.kind, &key.name));
        let verify_after = matches!(resource, crate::spec::Resource::BackupPolicy(p)
            if p.spec.verify.as_ref().is_some_and(|v| v.after_run));
        let repo = self.repo.clone();
        let handle = tokio::spawn(
            async move {
                let mut outcome = executor.run(&request, progress).await;
                if verify_after {
                    verify_after_run(&executor.state(), &repo, &key.name, &mut outcome).await;
                }
                // The loop may be gone during a forced shutdown; nothing left to tell.
                let _ = tx.send((key, Box::new(outcome)));
            }
            .instrument(span),
        );
        self.running.insert(
            want.key.clone(),
            Running {
                run_id_hint: format!(
                    "{} run started {}",
                    want.trigger.as_str(),
                    Utc::now().to_rfc3339()
                ),
                stacks: want.stacks,
                handle,
            },
        );
    }

    /// Starts a Restore's run; it reports back like a backup run.
    fn start_restore(
        &mut self,
        want: Want,
        request: crate::restore::RestoreRequest,
        done_tx: &mpsc::UnboundedSender<(ObjectKey, Box<RunOutcome>)>,
    ) {
        if let Err(e) = self.state.remember_start(
            want.key.kind.as_str(),
            &want.key.name,
            want.nominal,
            want.requested_at.as_deref(),
            want.generation.as_deref(),
        ) {
            error!(object = %want.key, "not starting: {e}");
            return;
        }
        info!(object = %want.key, "starting a restore");
        let restorer = crate::restore::Restorer {
            engine: self.executor.engine().clone(),
            state: self.state.clone(),
            repository: self.repo.clone(),
            locks: self.executor.locks(),
        };
        let key = want.key.clone();
        let tx = done_tx.clone();
        let progress = Arc::new(RunEvents::new(self.hub.clone(), key.kind, &key.name));
        let span = info_span!("object", object = %key);
        let handle = tokio::spawn(
            async move {
                let o = restorer.run(&request, progress).await;
                let outcome = RunOutcome {
                    run_id: o.run_id,
                    archive_id: (!o.report.archive.is_empty()).then_some(o.report.archive),
                    phase: o.phase,
                    dry_run: false,
                    start_time: o.start_time,
                    completion_time: o.completion_time,
                    bytes: o.bytes,
                    artifacts: o.report.volumes.len(),
                    downtime: BTreeMap::new(),
                    errors: o.errors,
                    warnings: o.warnings,
                    committed: false,
                    plan: None,
                    verified: None,
                };
                let _ = tx.send((key, Box::new(outcome)));
            }
            .instrument(span),
        );
        self.running.insert(
            want.key.clone(),
            Running {
                run_id_hint: format!("restore started {}", Utc::now().to_rfc3339()),
                stacks: want.stacks,
                handle,
            },
        );
    }

    fn finished(&mut self, key: &ObjectKey, outcome: &RunOutcome) {
        self.running.remove(key);
        info!(object = %key, run = %outcome.run_id, phase = ?outcome.phase, "run finished");
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
            if let Some(failed) = publish::failed(outcome.phase) {
                self.last_failed.insert(key.clone(), failed);
            }
        }
        self.hub.emit(Event::RunFinished {
            kind: key.kind.as_str().to_string(),
            name: key.name.clone(),
            run_id: outcome.run_id.clone(),
            phase: outcome.phase,
            bytes: outcome.bytes,
            archive_id: outcome.archive_id.clone(),
            time: outcome.completion_time,
        });
        if outcome.committed
            && let Some(id) = &outcome.archive_id
        {
            // The one manifest this run wrote: the rest of the catalog is already known.
            match crate::repo::catalog::read_entry(&self.repo, &key.name, id) {
                Ok(Some(entry)) => self.catalog.insert(entry),
                Ok(None) => warn!(archive = %id, "the run's archive is not in the repository"),
                Err(e) => error!(archive = %id, "reading the new archive: {e}"),
            }
        }
        if outcome.phase == crate::spec::common::Phase::Succeeded && key.kind == Kind::BackupPolicy
        {
            self.prune(&key.name);
        }
        self.refresh_archives(&key.name);
    }

    /// Applies a policy's retention, if it has one and its spec is valid and not
    /// suspended. Never for a policy with a run in progress.
    fn prune(&mut self, name: &str) {
        let key = ObjectKey {
            kind: Kind::BackupPolicy,
            name: name.to_string(),
        };
        if self.running.contains_key(&key) {
            return;
        }
        let Some(crate::spec::Resource::BackupPolicy(policy)) =
            self.desired.get(&key).and_then(|o| o.resource.as_ref())
        else {
            return;
        };
        let Some(rules) = &policy.spec.retention else {
            return;
        };
        if policy.spec.suspend {
            return;
        }
        let tz = crate::repo::prune::zone(&policy.spec);
        let settings = serde_json::to_string(&(rules, &policy.spec.timezone)).unwrap_or_default();
        let now = Utc::now();
        let entries = self.catalog.group(name);
        let result =
            crate::repo::prune::prune(&self.state, &self.repo, &entries, name, rules, tz, now);
        match result {
            Ok(pruned) => {
                if !pruned.dry_run {
                    for id in &pruned.forgotten {
                        self.catalog.remove(name, id);
                    }
                }
                let mut outlook = crate::status::RetentionStatus {
                    dry_run: pruned.dry_run,
                    ..Default::default()
                };
                if pruned.dry_run {
                    outlook.would_delete = pruned
                        .decisions
                        .iter()
                        .filter(|d| !d.keep)
                        .map(|d| crate::status::ForgetEntry {
                            id: d.id.clone(),
                            reason: d.reasons.join(", "),
                        })
                        .collect();
                }
                // What the pruning after the next scheduled run will forget: the same rules
                // with one more good archive at that time.
                let next = crate::schedule::Schedule::new(name, &policy.spec)
                    .ok()
                    .and_then(|s| s.next_nominal_after(now).map(|n| s.start_time(n)));
                if let Some(next) = next {
                    let entries = self.catalog.group(name);
                    let decisions =
                        crate::repo::prune::decide_with_next(&entries, name, rules, tz, next);
                    outlook.forget_next = decisions
                        .into_iter()
                        .filter(|d| !d.keep && !outlook.would_delete.iter().any(|w| w.id == d.id))
                        .map(|d| crate::status::ForgetEntry {
                            id: d.id,
                            reason: d.reasons.join(", "),
                        })
                        .collect();
                }
                self.retention.insert(name.to_string(), outlook);
                for e in &pruned.errors {
                    error!(policy = name, "{e}");
                }
                if !pruned.forgotten.is_empty() {
                    info!(policy = name, forgotten = ?pruned.forgotten, dry_run = pruned.dry_run, "retention applied");
                    if !pruned.dry_run {
                        for _ in &pruned.forgotten {
                            self.hub.metrics.deleted(name, "retention");
                        }
                    }
                }
                self.pruned_with.insert(name.to_string(), settings);
            }
            Err(e) => error!(policy = name, "applying retention: {e}"),
        }
        self.refresh_archives(name);
    }

    /// Prunes every policy whose retention settings changed since it was last pruned
    /// (at start-up: every policy with retention).
    fn prune_changed(&mut self) {
        let changed: Vec<String> = self
            .desired
            .objects()
            .filter_map(|o| match &o.resource {
                Some(crate::spec::Resource::BackupPolicy(p))
                    if p.spec.retention.is_some() && !p.spec.suspend =>
                {
                    let settings = serde_json::to_string(&(&p.spec.retention, &p.spec.timezone))
                        .unwrap_or_default();
                    (self.pruned_with.get(&o.name) != Some(&settings)).then(|| o.name.clone())
                }
                _ => None,
            })
            .collect();
        for name in changed {
            self.prune(&name);
        }
    }

    /// Deletes the archives an `Archive` spec took (not those of a same-named policy),
    /// through the deletion journal.
    fn delete_group(&mut self, group: &str, reason: &str) {
        let doomed: Vec<String> = self
            .catalog
            .group(group)
            .into_iter()
            .filter(|e| e.kind.as_deref() == Some("Archive"))
            .map(|e| e.id.clone())
            .collect();
        for id in doomed {
            info!(archive = %id, reason, "deleting");
            self.delete_archive(group, &id, reason, "spec-removed");
        }
        self.refresh_archives(group);
    }

    /// Deletes one archive through the journal and forgets it.
    fn delete_archive(&mut self, group: &str, id: &str, reason: &str, metric: &'static str) {
        match crate::repo::prune::delete_archive(&self.state, &self.repo, group, id, reason) {
            Ok(Ok(())) => {
                self.catalog.remove(group, id);
                self.hub.metrics.deleted(group, metric);
            }
            Ok(Err(e)) => error!("{e}"),
            Err(e) => error!("{e}"),
        }
    }

    /// Deletes the archives of Archive specs whose `ttl` has passed. Returns when the next
    /// one expires.
    fn expire(&mut self, now: chrono::DateTime<Utc>) -> Option<chrono::DateTime<Utc>> {
        let with_ttl: Vec<(String, std::time::Duration)> = self
            .desired
            .objects()
            .filter_map(|o| match &o.resource {
                Some(crate::spec::Resource::Archive(a)) => {
                    a.spec.ttl.map(|t| (o.name.clone(), t.as_duration()))
                }
                _ => None,
            })
            .collect();
        if with_ttl.is_empty() {
            return None;
        }
        let mut next: Option<chrono::DateTime<Utc>> = None;
        let mut touched = Vec::new();
        for (name, ttl) in with_ttl {
            let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
            let archives: Vec<(String, chrono::DateTime<Utc>)> = self
                .catalog
                .group(&name)
                .into_iter()
                .filter(|e| e.kind.as_deref() == Some("Archive"))
                .map(|e| (e.id.clone(), e.time))
                .collect();
            for (id, time) in archives {
                let expires = time
                    .checked_add_signed(ttl)
                    .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
                if expires <= now {
                    info!(archive = %id, "ttl passed: deleting");
                    self.delete_archive(&name, &id, "ttl passed", "ttl");
                    touched.push(name.clone());
                } else {
                    next = Some(next.map_or(expires, |n| n.min(expires)));
                }
            }
        }
        for name in touched {
            self.refresh_archives(&name);
        }
        next
    }

    /// Reads the whole repository into the catalog, and reconciles the run history with
    /// it: archives on disk the history does not know are adopted.
    fn load_catalog(&mut self) -> anyhow::Result<()> {
        let catalog = Catalog::load(&self.repo)?;
        let entries: Vec<Entry> = catalog.entries().cloned().collect();
        for missing in crate::repo::catalog::reconcile_history(&self.state, &entries)? {
            warn!(archive = %missing.id, "the run history records this archive, but it is not in the repository");
        }
        self.catalog = catalog;
        Ok(())
    }

    /// The archives of the catalog joined with those the run history misses, by group.
    fn with_missing(&self) -> Result<BTreeMap<String, Vec<Entry>>, crate::state::StateError> {
        let mut groups: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for e in self.catalog.entries() {
            groups.entry(e.group.clone()).or_default().push(e.clone());
        }
        for e in crate::repo::catalog::missing(&self.state, self.catalog.entries())? {
            groups.entry(e.group.clone()).or_default().push(e);
        }
        Ok(groups)
    }

    fn refresh_archives(&mut self, group: &str) {
        match self.with_missing() {
            Ok(mut groups) => {
                let mine = groups.remove(group).unwrap_or_default();
                let refs: Vec<&Entry> = mine.iter().collect();
                self.archives.insert(group.to_string(), summary(&refs));
            }
            Err(e) => error!("{e}"),
        }
    }

    fn refresh_all_archives(&mut self) {
        match self.with_missing() {
            Ok(groups) => {
                self.archives = groups
                    .iter()
                    .map(|(g, list)| (g.clone(), summary(&list.iter().collect::<Vec<_>>())))
                    .collect();
            }
            Err(e) => error!("{e}"),
        }
    }

    /// Starts nothing new, gives running runs `shutdown_timeout` to end, then cancels them
    /// and starts again whatever they had stopped (from the journal). A second signal
    /// skips the wait.
    async fn shutdown(
        &mut self,
        signals: &mut mpsc::Receiver<()>,
        done_rx: &mut mpsc::UnboundedReceiver<(ObjectKey, Box<RunOutcome>)>,
    ) {
        info!(
            running = self.running.len(),
            "shutting down: starting nothing new"
        );
        self.pending.clear();
        let deadline = tokio::time::sleep(self.options.shutdown_timeout);
        tokio::pin!(deadline);
        while !self.running.is_empty() {
            tokio::select! {
                Some((key, outcome)) = done_rx.recv() => self.finished(&key, &outcome),
                _ = &mut deadline => {
                    warn!("runs did not finish within the shutdown timeout; cancelling them");
                    break;
                }
                _ = signals.recv() => {
                    warn!("second signal: cancelling running runs now");
                    break;
                }
            }
        }
        for (key, running) in std::mem::take(&mut self.running) {
            running.handle.abort();
            warn!(object = %key, "run cancelled by shutdown");
        }
        match self.executor.replay_journal().await {
            Ok(started) if !started.is_empty() => {
                info!(containers = ?started, "started again what the cancelled runs had stopped")
            }
            Ok(_) => {}
            Err(e) => error!("starting what cancelled runs had stopped: {e}"),
        }
        if let Err(e) = self.state.fail_interrupted_runs(Utc::now()) {
            error!("{e}");
        }
        // Final statuses, with nothing running.
        let view = status_view::View {
            desired: &self.desired,
            state: &self.state,
            running: BTreeMap::new(),
            waiting: BTreeMap::new(),
            next_schedule: self.next_schedule.clone(),
            last_known: &self.last_known,
            memory: BTreeMap::new(),
            archives: &self.archives,
            retention: &self.retention,
        };
        let mut statuses = Vec::new();
        self.status_files = view.write_all(
            &self.options.specs,
            self.options.status_dir.as_deref(),
            &self.status_files,
            &mut self.status_cache,
            Utc::now(),
            &mut statuses,
        );
        self.publish(&statuses, &BTreeMap::new(), Utc::now());
        info!("stopped");
    }
}

impl Controller {
    /// Hands the pass's result to the API and the metrics.
    fn publish(
        &mut self,
        statuses: &[(PathBuf, crate::status::ObjectStatus)],
        memory: &BTreeMap<ObjectKey, crate::state::ObjectMemory>,
        now: chrono::DateTime<Utc>,
    ) {
        let root = &self.options.specs;
        for (_, object) in statuses {
            let key = ObjectKey {
                kind: object.kind,
                name: object.name.clone(),
            };
            if let Some(failed) = object
                .status
                .last_run
                .as_ref()
                .and_then(|r| publish::failed(r.phase))
            {
                self.last_failed.insert(key, failed);
            }
        }
        let mut intervals = BTreeMap::new();
        for object in self.desired.objects() {
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
        let intervals: BTreeMap<ObjectKey, f64> = self
            .intervals
            .iter()
            .map(|(k, (_, s))| (k.clone(), *s))
            .collect();
        let gauges = publish::object_gauges(&publish::GaugeInput {
            desired: &self.desired,
            statuses,
            memory,
            next_schedule: &self.next_schedule,
            intervals: &intervals,
            last_failed: &self.last_failed,
        });
        let metrics = &self.hub.metrics;
        metrics.set_objects(&gauges);
        metrics.set_archives(&publish::archive_gauges(&self.archives));
        metrics.set_spec_errors(&publish::spec_errors(root, &self.desired));
        self.hub
            .publish(publish::snapshot(root, &self.desired, statuses));
        // A pass allocates and frees a few MiB (statuses, the snapshot's JSON); hand the
        // freed pages back, so an idle daemon stays small.
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim only releases free memory of the allocator.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// What changes when archives come, go or get verified, without reading any manifest:
/// the modification times of the group folders (an archive added or removed) and of each
/// archive's verification record.
fn repository_fingerprint(root: &std::path::Path) -> Vec<(PathBuf, Option<std::time::SystemTime>)> {
    use crate::repo::layout::RECORD;
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut out = Vec::new();
    let Ok(groups) = std::fs::read_dir(root) else {
        return out;
    };
    for group in groups.flatten() {
        let path = group.path();
        out.push((path.clone(), modified(&path)));
        for archive in std::fs::read_dir(&path).into_iter().flatten().flatten() {
            let record = archive.path().join(RECORD);
            if let Some(t) = modified(&record) {
                out.push((record, Some(t)));
            }
        }
    }
    out.sort();
    out
}

/// Reads a new archive back in full. One that does not verify fails its run: the archive
/// is there, but it is not one to count on.
async fn verify_after_run(
    state: &StateDb,
    repo: &Repository,
    group: &str,
    outcome: &mut RunOutcome,
) {
    let (true, Some(id)) = (outcome.committed, outcome.archive_id.clone()) else {
        return;
    };
    let (repo, group) = (repo.clone(), group.to_string());
    let result = tokio::task::spawn_blocking(move || {
        crate::repo::verify::verify_archive(&repo, &group, &id, |_, _| {})
    })
    .await;
    let problems = match result {
        Ok(Ok(v)) if v.ok => {
            info!(run = %outcome.run_id, "the new archive verified");
            outcome.verified = Some(true);
            return;
        }
        Ok(Ok(v)) => v.problems,
        Ok(Err(e)) => vec![e.to_string()],
        Err(e) => vec![e.to_string()],
    };
    let message = format!("the archive failed verification: {}", problems.join("; "));
    error!(run = %outcome.run_id, "{message}");
    outcome.verified = Some(false);
    outcome.phase = crate::spec::common::Phase::Failed;
    outcome.errors.push(message.clone());
    match state.run(&outcome.run_id) {
        Ok(Some(mut record)) => {
            record.phase = outcome.phase;
            record.error = Some(match record.error {
                Some(e) => format!("{e}; {message}"),
                None => message,
            });
            if let Err(e) = state.finish_run(&record) {
                error!("{e}");
            }
        }
        Ok(None) => {}
        Err(e) => error!("{e}"),
    }
}

/// The longest time between two of the next few scheduled runs: with an irregular
/// schedule (weekdays only, say) the long gap is the one that must not raise an alarm.
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

/// Count, newest, oldest and bytes of good archives (Corrupt ones are not counted).
fn summary(entries: &[&Entry]) -> crate::status::ArchivesSummary {
    let good: Vec<&&Entry> = entries
        .iter()
        .filter(|e| matches!(e.health, Health::Good | Health::Partial))
        .collect();
    crate::status::ArchivesSummary {
        corrupt: entries
            .iter()
            .filter(|e| e.health == Health::Corrupt)
            .map(|e| e.id.clone())
            .collect(),
        missing: entries
            .iter()
            .filter(|e| e.health == Health::Missing)
            .map(|e| e.id.clone())
            .collect(),
        count: good.len() as u64,
        newest: good
            .iter()
            .max_by_key(|e| (e.time, &e.id))
            .map(|e| e.id.clone()),
        oldest: good
            .iter()
            .min_by_key(|e| (e.time, &e.id))
            .map(|e| e.id.clone()),
        bytes: good.iter().map(|e| e.bytes).sum(),
    }
}
