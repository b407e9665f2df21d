//! Run supervision: starting runs through the [`Runner`], knowing which are running, and
//! at shutdown giving them time to end before cancelling them and starting again what
//! they had stopped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument, error, info, info_span, warn};

use super::desired::Desired;
use super::plan::Want;
use super::runner::Runner;
use crate::executor::{BackupRequest, RunOutcome};
use crate::hub::Hub;
use crate::hub::RunEvents;
use crate::repo::handled::Book;
use crate::spec::{Kind, ObjectKey, Resource};
use crate::state::StateDb;

/// A run's end, as the loop hears of it.
pub type Done = (ObjectKey, Box<RunOutcome>);

pub struct Running {
    /// Shown in the status while the run lasts: which run, in words.
    pub run_id_hint: String,
    pub stacks: Vec<String>,
    handle: JoinHandle<()>,
    /// The run's progress, through which its archive threads hear of a cancellation.
    events: Arc<RunEvents>,
}

/// A run's request, built before anything is recorded.
enum Request {
    Restore(crate::restore::RestoreRequest),
    /// With whether to verify the new archive after the run.
    Backup(Box<BackupRequest>, bool),
    Action(crate::actions::ActionRequest),
}

/// What came of asking for a run to start.
#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    Started,
    /// The object is gone or its request cannot be built; logged, nothing to show.
    Skipped,
    /// What it handles could not be recorded, so it did not start (fail closed): the
    /// message says why, for its status.
    NotRecorded(String),
}

pub struct Supervisor {
    runner: Arc<dyn Runner>,
    state: Arc<StateDb>,
    /// The repository's handled record, written before the database.
    book: Arc<Book>,
    hub: Arc<Hub>,
    pub running: BTreeMap<ObjectKey, Running>,
    done_tx: mpsc::UnboundedSender<Done>,
}

impl Supervisor {
    /// What starts the runs.
    pub fn runner(&self) -> Arc<dyn Runner> {
        self.runner.clone()
    }

    /// Returns the supervisor and the receiver of run ends.
    pub fn new(
        runner: Arc<dyn Runner>,
        state: Arc<StateDb>,
        book: Arc<Book>,
        hub: Arc<Hub>,
    ) -> (Self, mpsc::UnboundedReceiver<Done>) {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let supervisor = Supervisor {
            runner,
            state,
            book,
            hub,
            running: BTreeMap::new(),
            done_tx,
        };
        (supervisor, done_rx)
    }

    pub fn is_running(&self, key: &ObjectKey) -> bool {
        self.running.contains_key(key)
    }

    /// Starts the run `want` asks for. What is remembered about the start (the schedule
    /// time, the requested-at value, the generation) is written before the run starts,
    /// into the repository's handled record first and then the state database: a crash
    /// mid-run marks it Interrupted, and the same trigger never runs twice, even after
    /// the state folder is lost. A run whose handled values cannot be written does not
    /// start.
    pub async fn start(&mut self, want: Want, desired: &Desired, now: DateTime<Utc>) -> Start {
        let Some(resource) = desired.get(&want.key).and_then(|o| o.resource.as_ref()) else {
            return Start::Skipped;
        };
        let progress = Arc::new(RunEvents::new(
            self.hub.clone(),
            want.key.kind,
            &want.key.name,
        ));
        // The request is built first (a spec that cannot make one handles nothing), the
        // run itself only once what it handles is recorded.
        let request = match resource {
            Resource::Restore(restore) => {
                crate::restore::RestoreRequest::from_spec(&want.key.name, &restore.spec)
                    .map(Request::Restore)
                    .map_err(|e| e.to_string())
            }
            Resource::ContainerSchedule(schedule) => {
                Ok(Request::Action(crate::actions::ActionRequest {
                    name: want.key.name.clone(),
                    action: schedule.spec.action,
                    targets: schedule.spec.targets.clone(),
                    skip: want.skip.clone(),
                }))
            }
            _ => BackupRequest::from_resource(resource, &desired.valid_resources())
                .map(|request| {
                    let verify_after = matches!(resource, Resource::BackupPolicy(p)
                        if p.spec.verify.as_ref().is_some_and(|v| v.after_run));
                    Request::Backup(Box::new(request), verify_after)
                })
                .map_err(|e| e.to_string()),
        };
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                error!(object = %want.key, "cannot run: {e}");
                return Start::Skipped;
            }
        };
        let state = self.state.clone();
        let (key, nominal, requested_at) =
            (want.key.clone(), want.nominal, want.requested_at.clone());
        let generation = match want.key.kind {
            Kind::Archive | Kind::Restore => want.generation.clone(),
            // A runAt schedule acts once per generation, a cron one on its times.
            Kind::ContainerSchedule if want.trigger == super::plan::Trigger::Generation => {
                want.generation.clone()
            }
            Kind::BackupPolicy | Kind::Repository | Kind::Notifier | Kind::ContainerSchedule => {
                None
            }
        };
        let book = self.book.clone();
        // Durable writes (fsynced): on a blocking worker.
        let remembered = tokio::task::spawn_blocking(move || {
            record_handled(
                &book,
                &key,
                requested_at.as_deref(),
                generation.as_deref(),
                now,
            )?;
            state
                .remember_start(
                    key.kind.as_str(),
                    &key.name,
                    nominal,
                    requested_at.as_deref(),
                    generation.as_deref(),
                    now,
                )
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(e) = remembered {
            error!(object = %want.key, "not starting: {e}");
            return Start::NotRecorded(format!(
                "not started: what it handles could not be recorded, so it could run again after a restart: {e}"
            ));
        }
        let work = match request {
            Request::Restore(r) => self.runner.restore(r, progress.clone()),
            Request::Backup(r, verify_after) => {
                self.runner.backup(*r, verify_after, progress.clone())
            }
            Request::Action(r) => self.runner.action(r, progress.clone()),
        };
        match want.nominal {
            Some(nominal) => info!(
                object = %want.key,
                trigger = want.trigger.as_str(),
                nominal = %nominal.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "starting a run"
            ),
            None => info!(object = %want.key, trigger = want.trigger.as_str(), "starting a run"),
        }
        let key = want.key.clone();
        let tx = self.done_tx.clone();
        let span = info_span!("object", object = %key);
        let handle = tokio::spawn(
            async move {
                let outcome = work.await;
                // The loop may be gone during a forced shutdown; nothing left to tell.
                let _ = tx.send((key, Box::new(outcome)));
            }
            .instrument(span),
        );
        self.running.insert(
            want.key,
            Running {
                run_id_hint: want.trigger.describe_run(now),
                stacks: want.stacks,
                handle,
                events: progress,
            },
        );
        Start::Started
    }

    /// A run ended.
    pub fn finished(&mut self, key: &ObjectKey) {
        self.running.remove(key);
    }

    /// Waits up to `timeout` for running runs to end, handing each end to `on_done`; a
    /// signal on `force` cuts the wait short. Then cancels what still runs and starts
    /// again what the cancelled runs had stopped (from the journal).
    pub async fn drain(
        &mut self,
        timeout: Duration,
        force: &mut mpsc::Receiver<()>,
        done_rx: &mut mpsc::UnboundedReceiver<Done>,
        mut on_done: impl FnMut(&mut Self, Done),
    ) {
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        while !self.running.is_empty() {
            tokio::select! {
                Some(done) = done_rx.recv() => on_done(self, done),
                _ = &mut deadline => {
                    warn!("runs did not finish within the shutdown timeout; cancelling them");
                    break;
                }
                _ = force.recv() => {
                    warn!("second signal: cancelling running runs now");
                    break;
                }
            }
        }
        for (key, running) in std::mem::take(&mut self.running) {
            // Threads of the run (archiving, extracting) stop at their next buffer; the
            // task itself stops at its next await.
            running.events.cancel();
            running.handle.abort();
            // Wait for the abort to take effect, so nothing of the run acts after the
            // journal is replayed below.
            let _ = running.handle.await;
            warn!(object = %key, "run cancelled by shutdown");
        }
        match self.runner.replay_journal().await {
            Ok(started) if !started.is_empty() => {
                info!(containers = %started.join(", "), "started again what the cancelled runs had stopped")
            }
            Ok(_) => {}
            Err(e) => error!("starting what cancelled runs had stopped: {e}"),
        }
        if let Err(e) = self.state.fail_interrupted_runs(Utc::now()) {
            error!("{e}");
        }
    }
}

/// Writes the values a run handles into the repository's handled record, when they are
/// not there yet; a run that handles nothing new (a scheduled backup) writes nothing.
fn record_handled(
    book: &Book,
    key: &ObjectKey,
    requested_at: Option<&str>,
    generation: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), String> {
    if requested_at.is_none() && generation.is_none() {
        return Ok(());
    }
    book.update(key.kind, &key.name, |entry| {
        let new_request = requested_at.is_some_and(|r| entry.requested_at.as_deref() != Some(r));
        let new_generation = generation.is_some_and(|g| entry.generation.as_deref() != Some(g));
        if !new_request && !new_generation && entry.held.is_none() {
            return;
        }
        if let Some(r) = requested_at {
            entry.requested_at = Some(r.to_string());
        }
        if let Some(g) = generation {
            entry.generation = Some(g.to_string());
        }
        entry.at = Some(now);
        entry.held = None;
    })
    .map_err(|e| e.to_string())
}
