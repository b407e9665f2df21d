//! `holdfast run`: the reconciler. It loads the specs, decides what runs when, starts runs
//! through a [`Runner`], and writes a status file beside every spec file.
//!
//! One loop owns all mutable state, in parts with one job each: the desired state and
//! its statuses (here, read from the specs by `reload`), run supervision
//! ([`supervisor`]), and what the repository holds and what is done to it besides runs
//! ([`housekeeping`]). The loop wakes on a spec change (debounced, at most
//! [`watch::MAX_DEBOUNCE`]), on the next due time, on a run's or a verification's end,
//! on a periodic resync, and when the specs must be read again (a read that could not
//! settle, a removal to confirm), and each time runs the same pure [`plan::plan`]. It
//! never busy-polls. Under systemd it also wakes every half watchdog interval, only to
//! feed the watchdog, and says after each pass what it found ([`sd_notify`]).
//!
//! Error policy: a pass that cannot read what the controller remembers (the state
//! database) starts nothing and writes nothing; it is retried with a growing delay. A
//! run started on missing memory could repeat a handled Restore. For the same reason the
//! first pass recalls what was handled from every place that keeps it ([`recall`]: the
//! database, the repository's handled record, the status files) before it starts
//! anything.

pub mod clock;
pub mod desired;
mod fleet;
pub mod housekeeping;
pub mod notifications;
pub mod plan;
mod publish;
pub mod recall;
mod reload;
pub mod removals;
pub mod runner;
pub mod sd_notify;
mod status_view;
pub mod supervisor;
pub mod watch;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tracing::{Instrument, error, info, info_span, warn};

use crate::executor::RunOutcome;
use crate::hub::Hub;
use crate::load::tree;
use crate::repo::Repository;
use crate::repo::handled::Book;
use crate::spec::{Kind, ObjectKey};
use crate::state::StateDb;
use clock::Clock;
use desired::Desired;
use housekeeping::{Housekeeping, Verified};
use plan::{Observed, Want};
pub use runner::{LiveRunner, Runner};
use supervisor::{Done, Start, Supervisor};

/// How the daemon behaves; everything else comes from the specs.
#[derive(Clone, Debug)]
pub struct Options {
    pub specs: PathBuf,
    /// This host's folder of the repository (`<repository>/<host>`), whose listing the
    /// resync compares to tell whether the catalog must be read again.
    pub repository: PathBuf,
    pub status_dir: Option<PathBuf>,
    pub max_concurrent: usize,
    /// How long a running run gets to finish after SIGTERM before it is cancelled.
    pub shutdown_timeout: Duration,
    /// The safety-net full reload, in case a file event was missed.
    pub resync: Duration,
    /// The run log files' folder, and how many runs of each object the history keeps
    /// (0: all). Pruned after each run.
    pub logs: PathBuf,
    pub history_limit: usize,
    /// This host's name, for notifications.
    pub host: String,
    /// This host's labels (`--host-labels` and `holdfast.dev/hostname`): objects whose
    /// `spec.hostSelector` they do not match are not run here.
    pub host_labels: BTreeMap<String, String>,
    /// Where people reach holdfast's API, for the links in notifications.
    pub external_url: Option<String>,
}

/// The first and the longest delay before a pass that could not read the state database
/// is tried again.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How soon a run that could not record what it handles is tried again.
const RETRY_UNRECORDED: Duration = Duration::from_secs(10);
/// How long queued notifications get to go out when the daemon stops.
const NOTIFY_FLUSH: Duration = Duration::from_secs(10);
/// The condition reason of an object whose run did not start because what it handles
/// could not be recorded.
const NOT_RECORDED: &str = "NotRecorded";
/// The `Ready` reason (status True) of an object whose hostSelector does not match this
/// host: it is another host's, and nothing about it is late or failing here.
pub const NOT_SELECTED: &str = "NotSelected";

/// The reconciler and everything it owns.
pub struct Controller {
    options: Options,
    clock: Arc<dyn Clock>,
    state: Arc<StateDb>,
    hub: Arc<Hub>,
    desired: Desired,
    pending: Vec<Want>,
    supervisor: Supervisor,
    done_rx: Option<mpsc::UnboundedReceiver<Done>>,
    housekeeping: Housekeeping,
    verify_rx: Option<mpsc::UnboundedReceiver<(String, Vec<Verified>)>>,
    /// Objects of each file as last loaded, so a file that stops parsing still names them.
    last_known: BTreeMap<PathBuf, Vec<(Kind, String)>>,
    status_files: BTreeMap<PathBuf, PathBuf>,
    /// The next schedule times from the last reconcile, for the final statuses.
    next_schedule: BTreeMap<ObjectKey, DateTime<Utc>>,
    /// The specs tree and its spec files as they were at the last load.
    loaded: (Option<tree::Identity>, Vec<tree::Stamp>),
    /// When to read the specs again without waiting for a file event: after a read that
    /// could not settle, or to confirm a removal that deletes archives.
    reread_at: Option<DateTime<Utc>>,
    /// The delay before the next read after one that could not settle.
    specs_retry: Option<Duration>,
    /// Archive specs with `deletionPolicy: Delete` found gone and not yet confirmed gone.
    removals: removals::Removals,
    status_cache: status_view::StatusCache,
    /// Archive specs with `deletionPolicy: Delete`, as last loaded: removing such a spec
    /// deletes its archives.
    delete_with_spec: Vec<String>,
    publisher: publish::Publisher,
    /// This host's summary in the repository, for the fleet view.
    fleet: fleet::Fleet,
    /// The delay before the next try after a pass that could not read the state.
    retry: Option<Duration>,
    /// The repository's handled record.
    book: Arc<Book>,
    /// What the last probe of each named repository found.
    probes: runner::Probes,
    /// Whether start-up [`recall`] is done; nothing starts before it is.
    recalled: bool,
    /// Whether this daemon can prove an object it has no record of is new (see
    /// [`recall::vouched`]); when not, InPlace Restores are held at first sight.
    vouched: bool,
    /// Objects whose wanted run does not start until someone acts, with the condition
    /// reason and message for their status.
    blocked: BTreeMap<ObjectKey, (&'static str, String)>,
    notifications: notifications::Notifications,
    /// systemd's notify socket and watchdog (off unless [`Controller::tell_systemd`]).
    systemd: sd_notify::SdNotify,
}

/// Why the loop woke up.
enum Wake {
    SpecsChanged,
    Timer,
    Finished(ObjectKey, Box<RunOutcome>),
    /// A scheduled verification of a policy's archives ended: one result per archive.
    Verified(String, Vec<Verified>),
    /// Half systemd's watchdog interval passed: the loop only feeds it.
    Watchdog,
    Shutdown,
}

impl Controller {
    pub fn new(
        options: Options,
        runner: Arc<dyn Runner>,
        repo: Repository,
        state: Arc<StateDb>,
        hub: Arc<Hub>,
        clock: Arc<dyn Clock>,
    ) -> Controller {
        let book = Arc::new(Book::new(repo.clone()));
        let fleet = fleet::Fleet::new(
            repo.clone(),
            options.host.clone(),
            options.host_labels.clone(),
        );
        let (supervisor, done_rx) =
            Supervisor::new(runner, state.clone(), book.clone(), hub.clone());
        let (housekeeping, verify_rx) = Housekeeping::new(
            repo,
            options.repository.clone(),
            state.clone(),
            hub.clone(),
            clock.clone(),
        );
        let notifications = notifications::Notifications::new(
            state.clone(),
            hub.clone(),
            options.host.clone(),
            options.external_url.clone(),
        );
        Controller {
            notifications,
            options,
            clock,
            state,
            hub: hub.clone(),
            desired: Desired::default(),
            pending: Vec::new(),
            supervisor,
            done_rx: Some(done_rx),
            housekeeping,
            verify_rx: Some(verify_rx),
            last_known: BTreeMap::new(),
            status_files: BTreeMap::new(),
            next_schedule: BTreeMap::new(),
            loaded: (None, Vec::new()),
            reread_at: None,
            specs_retry: None,
            removals: removals::Removals::default(),
            status_cache: BTreeMap::new(),
            delete_with_spec: Vec::new(),
            publisher: publish::Publisher::new(hub.clone()),
            fleet,
            retry: None,
            book,
            probes: Default::default(),
            recalled: false,
            vouched: false,
            blocked: BTreeMap::new(),
            systemd: sd_notify::SdNotify::off(),
        }
    }

    /// Tells systemd through `notify` when the first pass is done, what each pass found,
    /// that the loop still turns (the watchdog) and when it stops.
    pub fn tell_systemd(&mut self, notify: sd_notify::SdNotify) {
        self.systemd = notify;
    }

    /// Repairs what a crash left behind: runs left Running become Failed (Interrupted),
    /// stopped containers in the journal are started, `.partial` archives are removed,
    /// interrupted deletions are finished; then reads the repository into the catalog.
    pub async fn recover(&mut self, runner: &dyn Runner) -> anyhow::Result<()> {
        for id in self.state.fail_interrupted_runs(self.clock.now())? {
            warn!(run = %id, "run was interrupted by a stop of holdfast; marked Failed");
        }
        let started = runner.replay_journal().await.map_err(anyhow::Error::msg)?;
        if !started.is_empty() {
            warn!(containers = %started.join(", "), "started again what an interrupted run had stopped");
        }
        let repo = self.housekeeping.repo().clone();
        for path in repo.clean()? {
            info!(path = %path, "removed a partial archive left by a crash");
        }
        for id in crate::repo::prune::resume(&self.state, &repo)? {
            info!(archive = %id, "finished a deletion a crash had interrupted");
        }
        self.housekeeping.load_catalog().await?;
        info!(
            archives = self.housekeeping.catalog.len(),
            "repository catalog read"
        );
        Ok(())
    }

    /// Runs until the first signal on `signals`, then drains; a second signal forces.
    /// `spec_events` carries one `()` per change under the specs folder (see
    /// [`watch::watch`]).
    pub async fn run(
        mut self,
        mut spec_events: mpsc::UnboundedReceiver<()>,
        mut signals: mpsc::Receiver<()>,
    ) -> anyhow::Result<()> {
        let mut done_rx = self.done_rx.take().expect("run is called once");
        let mut verify_rx = self.verify_rx.take().expect("run is called once");
        self.reload().await;
        // A signal that came during start-up recovery: stop before starting anything.
        if signals.try_recv().is_ok() {
            self.shutdown(&mut signals, &mut done_rx).await;
            return Ok(());
        }
        self.prune_changed().await;
        let mut wake_at = self.reconcile().await;
        wake_at = [wake_at, self.reread_at].into_iter().flatten().min();
        loop {
            // Fed here, from the loop's own turns: a loop that wedges stops feeding it.
            crate::fault::stall("controller.stall");
            self.systemd.feed();
            let feed_in = self.systemd.feed_in();
            let sleep_for = wake_at
                .map(|at| (at - self.clock.now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(self.options.resync)
                .min(self.options.resync);
            let wake = tokio::select! {
                Some(()) = spec_events.recv() => {
                    watch::debounce(&mut spec_events).await;
                    Wake::SpecsChanged
                }
                Some((key, outcome)) = done_rx.recv() => Wake::Finished(key, outcome),
                Some((name, results)) = verify_rx.recv() => Wake::Verified(name, results),
                _ = signals.recv() => Wake::Shutdown,
                _ = tokio::time::sleep(sleep_for) => Wake::Timer,
                _ = tokio::time::sleep(feed_in.unwrap_or_default()), if feed_in.is_some() => {
                    Wake::Watchdog
                }
            };
            match wake {
                Wake::SpecsChanged => {
                    self.reload().await;
                    self.prune_changed().await;
                }
                Wake::Timer => {
                    let now = self.clock.now();
                    let due = wake_at.is_some_and(|at| at <= now);
                    if self.reread_at.is_some_and(|at| at <= now) {
                        self.reread_at = None;
                        self.reload().await;
                        self.prune_changed().await;
                    } else if !due {
                        // The periodic resync: reload if any spec file changed without an
                        // event reaching us (a missed inotify event, a folder swapped under
                        // us), and read the repository again if its listing changed.
                        let archives_changed = self.housekeeping.resync().await;
                        self.probe_repositories().await;
                        if self.fingerprint() != self.loaded {
                            self.reload().await;
                        } else if !archives_changed && self.retry.is_none() {
                            continue;
                        }
                    }
                }
                Wake::Finished(key, outcome) => self.finished(&key, &outcome).await,
                Wake::Verified(name, results) => {
                    self.housekeeping.verifications_done(&name, results).await;
                }
                Wake::Watchdog => continue,
                Wake::Shutdown => {
                    self.shutdown(&mut signals, &mut done_rx).await;
                    return Ok(());
                }
            }
            wake_at = self.reconcile().await;
            wake_at = [wake_at, self.reread_at, self.fleet.due_at()]
                .into_iter()
                .flatten()
                .min();
        }
    }

    /// Opens the named repositories for the runs and probes each, for their statuses.
    async fn probe_repositories(&mut self) {
        let specs: Vec<(String, crate::spec::repository::RepositorySpec)> = self
            .desired
            .objects()
            .filter_map(|o| match &o.resource {
                Some(crate::spec::Resource::Repository(r)) => {
                    Some((o.name.clone(), r.spec.clone()))
                }
                _ => None,
            })
            .collect();
        // What failed uploads left is cleared only while no run is writing: an upload
        // in progress has no manifest yet either.
        let idle = self.supervisor.running.is_empty();
        let probes = self.supervisor.runner().repositories(specs, idle).await;
        for (name, probe) in &probes {
            let was = self.probes.get(name).map(|p| p.result.is_ok());
            match &probe.result {
                Err(why) if was != Some(false) => {
                    warn!(repository = %name, "the repository cannot be used: {why}")
                }
                Ok(_) if was != Some(true) => info!(repository = %name, "the repository answers"),
                _ => {}
            }
        }
        self.probes = probes;
    }

    async fn prune_changed(&mut self) {
        let now = self.clock.now();
        let supervisor = &self.supervisor;
        self.housekeeping
            .prune_changed(&self.desired, &|k| supervisor.is_running(k), now)
            .await;
    }

    /// One pass of the plan: start what is due, remember what waits, write statuses.
    /// Returns when to wake up next. A pass that cannot read what is remembered about the
    /// objects does nothing and asks to be woken again after a growing delay.
    async fn reconcile(&mut self) -> Option<DateTime<Utc>> {
        self.reconcile_pass()
            .instrument(info_span!("reconcile"))
            .await
    }

    async fn reconcile_pass(&mut self) -> Option<DateTime<Utc>> {
        let began = std::time::Instant::now();
        let now = self.clock.now();
        if !self.recalled
            && let Err(e) = self.recall(now).await
        {
            return Some(self.retry_later(now, &e));
        }
        let keys: Vec<ObjectKey> = self
            .desired
            .objects()
            .filter(|o| o.resource.is_some())
            .map(|o| o.key())
            .collect();
        let state = self.state.clone();
        let asked = keys.clone();
        let read = tokio::task::spawn_blocking(move || {
            let names: Vec<(&str, &str)> = asked
                .iter()
                .map(|k| (k.kind.as_str(), k.name.as_str()))
                .collect();
            state.objects(&names, now).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let mut memory: BTreeMap<ObjectKey, crate::state::ObjectMemory> = match read {
            Ok(found) => keys.iter().cloned().zip(found).collect(),
            Err(e) => return Some(self.retry_later(now, &e)),
        };
        self.retry = None;
        self.hold_unproven(&mut memory, now).await;
        let expiry = self.housekeeping.expire(&self.desired, now).await;
        self.housekeeping.refresh_future_dated(now).await;
        let observed = Observed {
            memory: memory.clone(),
            running: self
                .supervisor
                .running
                .iter()
                .map(|(k, r)| (k.clone(), r.stacks.clone()))
                .collect(),
            pending: std::mem::take(&mut self.pending),
            max_concurrent: self.options.max_concurrent,
            policy_runs: self.policy_runs().await,
        };
        let decided = plan::plan(&self.desired, &observed, now);
        self.blocked = decided
            .held
            .iter()
            .map(|k| {
                let why = (recall::HELD_REASON, recall::HELD_MESSAGE.to_string());
                (k.clone(), why)
            })
            .collect();
        for want in decided.start {
            let key = want.key.clone();
            match self.supervisor.start(want, &self.desired, now).await {
                Start::Started => {}
                Start::Skipped => continue,
                Start::NotRecorded(message) => {
                    self.blocked.insert(key, (NOT_RECORDED, message));
                    continue;
                }
            }
            // Starting a run changed what is remembered about it.
            let state = self.state.clone();
            let asked = key.clone();
            let read = tokio::task::spawn_blocking(move || {
                state.object(asked.kind.as_str(), &asked.name, now)
            })
            .await;
            match read {
                Ok(Ok(m)) => {
                    memory.insert(key, m);
                }
                Ok(Err(e)) => error!("{e}"),
                Err(e) => error!("{e}"),
            }
        }
        let waiting: BTreeMap<ObjectKey, String> = decided
            .wait
            .iter()
            .map(|(w, reason)| (w.key.clone(), reason.clone()))
            .chain(decided.gated.clone())
            .collect();
        self.pending = decided.wait.into_iter().map(|(w, _)| w).collect();
        self.next_schedule = decided.next_schedule;
        let running = self.running_hints();
        let statuses = self
            .write_statuses(running, waiting, memory.clone(), now)
            .await;
        self.publish(&statuses, &memory, now);
        let notify = self.notify_pass(&statuses, &memory, now).await;
        self.systemd.pass_done(&sd_notify::summary(
            &statuses,
            &self.next_schedule,
            self.supervisor.running.len(),
        ));
        self.hub.metrics.reconciled(
            began.elapsed().as_secs_f64(),
            self.pending.len(),
            self.supervisor.running.len(),
        );
        let supervisor = &self.supervisor;
        let runner = supervisor.runner();
        let verify = self.housekeeping.verify_due(
            &self.desired,
            &|k| supervisor.is_running(k),
            &|name| runner.repository_named(name),
            now,
        );
        // A run that could not record what it handles is tried again soon, not at the
        // next resync.
        let unrecorded = self
            .blocked
            .values()
            .any(|(reason, _)| *reason == NOT_RECORDED)
            .then(|| now + chrono::Duration::from_std(RETRY_UNRECORDED).unwrap_or_default());
        [decided.wake, expiry, verify, unrecorded, notify]
            .into_iter()
            .flatten()
            .min()
    }

    /// The recent runs of the policies some ContainerSchedule runs `after`, newest first,
    /// for the plan's [`plan::PolicyRun`] rule. A policy whose runs cannot be read has
    /// none: its actions wait.
    async fn policy_runs(&self) -> BTreeMap<String, Vec<plan::PolicyRun>> {
        let names: std::collections::BTreeSet<String> = self
            .desired
            .objects()
            .filter_map(|o| match &o.resource {
                Some(crate::spec::Resource::ContainerSchedule(c)) => Some(c.spec.after.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        if names.is_empty() {
            return BTreeMap::new();
        }
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            names
                .into_iter()
                .map(|name| {
                    let filter = crate::state::RunFilter {
                        kind: Some(Kind::BackupPolicy.as_str().to_string()),
                        name: Some(name.clone()),
                        limit: 20,
                        ..Default::default()
                    };
                    let runs = match state.runs_filtered(&filter) {
                        Ok(runs) => runs.unwrap_or_default(),
                        Err(e) => {
                            error!("reading the runs of BackupPolicy/{name}: {e}");
                            Vec::new()
                        }
                    };
                    let runs = runs
                        .into_iter()
                        .filter(|r| !r.dry_run)
                        .map(|r| plan::PolicyRun {
                            id: r.id,
                            start: r.start_time,
                            phase: r.phase,
                        })
                        .collect();
                    (name, runs)
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    /// Asks for the pass to be tried again after a growing delay, after an error reading
    /// or recalling what holdfast remembers.
    fn retry_later(&mut self, now: DateTime<Utc>, error: &str) -> DateTime<Utc> {
        let delay = self.retry.map_or(RETRY_FIRST, |d| (d * 2).min(RETRY_MAX));
        self.retry = Some(delay);
        self.systemd.status(&format!(
            "not reconciling: what holdfast remembers cannot be read; retrying in {}s",
            delay.as_secs()
        ));
        error!(
            retry_in_seconds = delay.as_secs_f64(),
            "not reconciling: what holdfast remembers cannot be read, so nothing starts until it can: {error}"
        );
        now + chrono::Duration::from_std(delay).unwrap_or_default()
    }

    /// Start-up [`recall`]: merges what the database, the repository's handled record and
    /// the status files say was handled, and holds InPlace Restores nothing proves new.
    async fn recall(&mut self, now: DateTime<Utc>) -> Result<(), String> {
        let state = self.state.clone();
        let book = self.book.clone();
        let desired = self.desired.clone();
        let specs = self.options.specs.clone();
        let status_dir = self.options.status_dir.clone();
        let repository_empty = self.housekeeping.catalog.is_empty();
        let found = tokio::task::spawn_blocking(move || {
            let statuses = recall::read_status_files(&desired, &specs, status_dir.as_deref());
            recall::recall(&state, &book, &desired, &statuses, repository_empty, now)
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()))?;
        if let Some(e) = &found.record_error {
            error!("{e}");
        }
        if !found.adopted.is_empty() {
            let objects: Vec<String> = found.adopted.iter().map(|k| k.to_string()).collect();
            info!(
                objects = %objects.join(", "),
                "recalled what was handled from the repository's record and the status files"
            );
        }
        for key in &found.held {
            warn!(object = %key, "{}", recall::HELD_MESSAGE);
        }
        self.vouched = found.vouched;
        self.recalled = true;
        Ok(())
    }

    /// Holds the InPlace Restores first seen by a daemon that cannot vouch for their
    /// history ([`recall::must_hold`]), in `memory` and durably. A hold that cannot be
    /// written still holds for as long as this daemon runs.
    async fn hold_unproven(
        &mut self,
        memory: &mut BTreeMap<ObjectKey, crate::state::ObjectMemory>,
        now: DateTime<Utc>,
    ) {
        if self.vouched {
            return;
        }
        let holds = recall::holds_due(&self.desired, memory, now);
        for (key, _) in &holds {
            warn!(object = %key, "{}", recall::HELD_MESSAGE);
        }
        if holds.is_empty() {
            return;
        }
        let state = self.state.clone();
        let book = self.book.clone();
        let written =
            tokio::task::spawn_blocking(move || recall::record_holds(&state, &book, holds, now))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(e) = written {
            error!("recording a held restore: {e}; it stays held while this daemon runs");
        }
    }

    fn running_hints(&self) -> BTreeMap<ObjectKey, String> {
        self.supervisor
            .running
            .iter()
            .map(|(k, r)| (k.clone(), r.run_id_hint.clone()))
            .collect()
    }

    /// Writes every status file whose content changed (on a blocking worker), and returns
    /// the statuses.
    async fn write_statuses(
        &mut self,
        running: BTreeMap<ObjectKey, String>,
        waiting: BTreeMap<ObjectKey, String>,
        memory: BTreeMap<ObjectKey, crate::state::ObjectMemory>,
        now: DateTime<Utc>,
    ) -> Vec<(PathBuf, crate::status::ObjectStatus)> {
        let view = status_view::View {
            desired: &self.desired,
            state: &self.state,
            running,
            waiting,
            blocked: self.blocked.clone(),
            next_schedule: self.next_schedule.clone(),
            last_known: &self.last_known,
            memory,
            archives: &self.housekeeping.archives,
            retention: &self.housekeeping.retention,
            expiry: &self.housekeeping.expiry,
            probes: &self.probes,
            notifiers: self.notifications.readiness(),
        };
        let writer = match &self.options.status_dir {
            Some(dir) => status_view::Writer::start(dir.clone(), true),
            None => status_view::Writer::start(self.options.specs.clone(), false),
        };
        let (files, statuses) = view.render_all(
            &self.options.specs,
            self.options.status_dir.as_deref(),
            &self.status_files,
            &self.status_cache,
            now,
            &writer,
        );
        self.status_files = files;
        writer.finish(&mut self.status_cache).await;
        statuses
    }

    async fn finished(&mut self, key: &ObjectKey, outcome: &RunOutcome) {
        self.supervisor.finished(key);
        info!(object = %key, run = %outcome.run_id, phase = outcome.phase.as_str(), "run finished");
        let restic = self
            .desired
            .get(&ObjectKey {
                kind: Kind::Repository,
                name: outcome.repository.clone(),
            })
            .and_then(|o| o.resource.as_ref())
            .is_some_and(|r| {
                matches!(r, crate::spec::Resource::Repository(r)
                    if r.spec.format == crate::spec::repository::RepositoryFormat::Restic)
            });
        self.publisher.run_finished(key, outcome, restic);
        self.notifications.run_finished(key, outcome).await;
        // The one manifest this run wrote (or copied) to the repository the catalog
        // follows: the rest of the catalog is already known.
        let in_default = outcome.repository == crate::spec::repository::DEFAULT_REPOSITORY
            || outcome
                .copies
                .iter()
                .any(|c| c.ok && c.repository == crate::spec::repository::DEFAULT_REPOSITORY);
        if outcome.committed
            && in_default
            && let Some(id) = &outcome.archive_id
        {
            self.housekeeping.archived(&key.name, id).await;
        }
        if outcome.phase == crate::spec::common::Phase::Succeeded && key.kind == Kind::BackupPolicy
        {
            let now = self.clock.now();
            let supervisor = &self.supervisor;
            self.housekeeping
                .prune(&self.desired, &|k| supervisor.is_running(k), &key.name, now)
                .await;
            let policy = self.desired.get(key).and_then(|o| match &o.resource {
                Some(crate::spec::Resource::BackupPolicy(p)) if !p.spec.suspend => {
                    Some(p.spec.clone())
                }
                _ => None,
            });
            if let Some(policy) = policy {
                self.supervisor
                    .runner()
                    .prune_named(policy, key.name.clone())
                    .await;
            }
        }
        self.housekeeping.refresh_archives(&key.name).await;
        self.prune_history().await;
    }

    /// Forgets the runs, and their logs, beyond each object's history limit; off the loop,
    /// as deleting files is slow IO.
    async fn prune_history(&self) {
        let (state, logs, limit) = (
            self.state.clone(),
            self.options.logs.clone(),
            self.options.history_limit,
        );
        let pruned =
            tokio::task::spawn_blocking(move || crate::state::history::prune(&state, &logs, limit))
                .await;
        match pruned {
            Ok(Ok(forgotten)) if !forgotten.is_empty() => {
                info!(
                    runs = forgotten.len(),
                    limit, "forgot runs beyond the history limit"
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => error!("pruning the run history: {e}"),
            Err(e) => error!("pruning the run history: {e}"),
        }
    }

    /// Starts nothing new, gives running runs `shutdown_timeout` to end, then cancels them
    /// and starts again whatever they had stopped (from the journal). A second signal
    /// skips the wait.
    async fn shutdown(
        &mut self,
        signals: &mut mpsc::Receiver<()>,
        done_rx: &mut mpsc::UnboundedReceiver<Done>,
    ) {
        let running = self.supervisor.running.len();
        self.systemd.stopping(&format!(
            "stopping: {running} run{} to finish",
            if running == 1 { "" } else { "s" }
        ));
        info!(running, "shutting down: starting nothing new");
        self.pending.clear();
        let mut ended = Vec::new();
        self.supervisor
            .drain(
                self.options.shutdown_timeout,
                signals,
                done_rx,
                |s, (key, outcome)| {
                    s.finished(&key);
                    ended.push((key, outcome));
                },
            )
            .await;
        for (key, outcome) in ended {
            self.finished(&key, &outcome).await;
        }
        // Final statuses, with nothing running.
        let now = self.clock.now();
        let statuses = self
            .write_statuses(BTreeMap::new(), BTreeMap::new(), BTreeMap::new(), now)
            .await;
        self.publish(&statuses, &BTreeMap::new(), now);
        self.notifications.flush(NOTIFY_FLUSH).await;
        info!("stopped");
    }

    /// Tells the notifiers what this pass found; returns when to wake for the next.
    async fn notify_pass(
        &mut self,
        statuses: &[(PathBuf, crate::status::ObjectStatus)],
        memory: &BTreeMap<ObjectKey, crate::state::ObjectMemory>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let intervals = self.publisher.intervals();
        let pass = notifications::Pass {
            desired: &self.desired,
            statuses,
            memory,
            intervals: &intervals,
            archives: &self.housekeeping.archives,
            probes: &self.probes,
            now,
        };
        self.notifications.pass(&pass).await
    }

    /// Hands the pass's result to the API and the metrics.
    fn publish(
        &mut self,
        statuses: &[(PathBuf, crate::status::ObjectStatus)],
        memory: &BTreeMap<ObjectKey, crate::state::ObjectMemory>,
        now: DateTime<Utc>,
    ) {
        self.housekeeping.publish_catalog();
        self.publisher.publish(&publish::Pass {
            root: &self.options.specs,
            desired: &self.desired,
            statuses,
            memory,
            next_schedule: &self.next_schedule,
            archives: &self.housekeeping.archives,
            probes: &self.probes,
            now,
        });
        let intervals = self.publisher.intervals();
        let named = self.written_repositories(statuses);
        self.fleet
            .pass(named, statuses, &self.next_schedule, &intervals, now);
    }

    /// The named repositories (open for the runs) that the BackupPolicies this host runs
    /// write to, besides the default one: each gets the host summary too.
    fn written_repositories(
        &self,
        statuses: &[(PathBuf, crate::status::ObjectStatus)],
    ) -> Vec<Repository> {
        let elsewhere: std::collections::BTreeSet<&str> = statuses
            .iter()
            .filter(|(_, o)| {
                o.kind == Kind::BackupPolicy
                    && o.status
                        .condition(crate::status::READY)
                        .is_some_and(|c| c.reason == NOT_SELECTED)
            })
            .map(|(_, o)| o.name.as_str())
            .collect();
        let names: std::collections::BTreeSet<String> = self
            .desired
            .objects()
            .filter_map(|o| match &o.resource {
                Some(crate::spec::Resource::BackupPolicy(p))
                    if !elsewhere.contains(o.name.as_str()) =>
                {
                    Some(p.spec.output.repositories())
                }
                _ => None,
            })
            .flatten()
            .filter(|n| n != crate::spec::repository::DEFAULT_REPOSITORY)
            .collect();
        let runner = self.supervisor.runner();
        names
            .iter()
            .filter_map(|n| runner.repository_named(n))
            .collect()
    }
}
