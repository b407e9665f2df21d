//! The boundary between the controller and the work it starts: a backup, a restore, and
//! replaying the stop journal. The daemon uses [`LiveRunner`] (the executor and the
//! restorer against Docker); the controller's own tests use a fake, so the loop's timing
//! and bookkeeping are tested without Docker.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tracing::{error, info, warn};

use crate::executor::{BackupRequest, Executor, RunOutcome};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::verify::ReadData;
use crate::restore::{RestoreRequest, Restorer};
use crate::spec::policy::BackupPolicySpec;
use crate::spec::repository::RepositorySpec;
use crate::state::StateDb;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the controller starts. A run's future is dropped (aborted) when the daemon stops
/// and the run had no time left; what it stopped is started again by
/// [`Runner::replay_journal`].
pub trait Runner: Send + Sync + 'static {
    /// One backup run; with `verify_after`, its new archive is read back in full and a
    /// failure fails the run.
    fn backup(
        &self,
        request: BackupRequest,
        verify_after: bool,
        progress: Arc<dyn Progress>,
    ) -> BoxFuture<RunOutcome>;
    /// One restore, reported like a backup run.
    fn restore(
        &self,
        request: RestoreRequest,
        progress: Arc<dyn Progress>,
    ) -> BoxFuture<RunOutcome>;
    /// One ContainerSchedule action, reported like a backup run.
    fn action(
        &self,
        request: crate::actions::ActionRequest,
        progress: Arc<dyn Progress>,
    ) -> BoxFuture<RunOutcome>;
    /// Starts again what interrupted runs had stopped; returns what it started.
    fn replay_journal(&self) -> BoxFuture<Result<Vec<String>, String>>;
    /// Opens the repositories the specs describe for the runs to write to, probes each
    /// (by name: what it holds, or why it cannot be used), and with `clean` clears what
    /// failed uploads left there: only while no run is writing, whose upload in progress
    /// looks just like a failed one.
    fn repositories(&self, specs: Vec<(String, RepositorySpec)>, clean: bool) -> BoxFuture<Probes>;
    /// Applies a policy's retention to its archives in the named repositories it writes
    /// (the `default` one is the controller's own); append-only ones only hear what
    /// retention would delete.
    fn prune_named(&self, policy: BackupPolicySpec, group: String) -> BoxFuture<()>;
    /// The named repository `name` as the runs use it, if it is open.
    fn repository_named(&self, _name: &str) -> Option<Repository> {
        None
    }
}

/// What each named repository's probe found.
pub type Probes = BTreeMap<String, Probe>;

/// One probe of a named repository.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub at: chrono::DateTime<chrono::Utc>,
    /// This host's archives there and their bytes, or why the repository cannot be used.
    pub result: Result<(u64, u64), String>,
}

/// How long a repository's probe may take before it counts as unreachable.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Runs against the real Docker engine and repository.
pub struct LiveRunner {
    pub executor: Arc<Executor>,
    pub repo: Repository,
    /// The writers' locks of the named repositories, held while they are in use.
    pub locks: Arc<std::sync::Mutex<BTreeMap<String, crate::repo::lock::RepoLock>>>,
}

impl LiveRunner {
    pub fn new(executor: Arc<Executor>, repo: Repository) -> LiveRunner {
        LiveRunner {
            executor,
            repo,
            locks: Default::default(),
        }
    }
}

/// A named repository as opened for the runs: itself or why not, its writers' lock, and
/// what its probe found.
type Opened = (
    Result<Repository, String>,
    Option<crate::repo::lock::RepoLock>,
    Result<(u64, u64), String>,
);

/// Opens one named repository for writing: its spec read (secrets, identity), its
/// writers' lock taken, what failed uploads left removed, and a probe.
fn open_for_writing(
    name: &str,
    spec: &RepositorySpec,
    host: &str,
    held: Option<crate::repo::lock::RepoLock>,
    clean: bool,
) -> Opened {
    let repository = match crate::repo::named::open(name, spec, host) {
        Ok(r) => r,
        Err(e) => {
            let why = e.to_string();
            return (Err(why.clone()), held, Err(why));
        }
    };
    let probe = crate::repo::named::probe(&repository).map_err(|e| e.to_string());
    if let Err(why) = &probe {
        return (Ok(repository), held, Err(why.clone()));
    }
    // What it holds, for its status: every manifest read, as at start-up for `default`.
    let probe = crate::repo::catalog::scan(&repository)
        .map(|entries| {
            let bytes = entries.iter().map(|e| e.bytes).sum();
            (entries.len() as u64, bytes)
        })
        .map_err(|e| e.to_string());
    let held = match held {
        Some(lock) => Some(lock),
        None => {
            let owner = crate::repo::lock::LockOwner::this_process(host, "holdfast run");
            match repository.lock(&owner) {
                Ok(lock) => Some(lock),
                Err(e) => return (Err(e.to_string()), None, Err(e.to_string())),
            }
        }
    };
    if clean {
        match repository.clean() {
            Ok(removed) => {
                for what in removed {
                    info!(repository = name, "removed an incomplete upload: {what}");
                }
            }
            Err(e) => warn!(repository = name, "clearing incomplete uploads: {e}"),
        }
    }
    (Ok(repository), held, probe)
}

impl Runner for LiveRunner {
    fn backup(
        &self,
        request: BackupRequest,
        verify_after: bool,
        progress: Arc<dyn Progress>,
    ) -> BoxFuture<RunOutcome> {
        let executor = self.executor.clone();
        Box::pin(async move {
            let mut outcome = executor.run(&request, progress).await;
            // Read back where the run wrote it.
            if verify_after && let Ok(repo) = executor.repository_named(&outcome.repository) {
                verify_after_run(&executor.state(), &repo, &request.name, &mut outcome).await;
            }
            outcome
        })
    }

    fn restore(
        &self,
        request: RestoreRequest,
        progress: Arc<dyn Progress>,
    ) -> BoxFuture<RunOutcome> {
        let repository = self.executor.repository_named(&request.repository);
        let restorer = repository.as_ref().ok().map(|repository| Restorer {
            engine: self.executor.engine().clone(),
            state: self.executor.state(),
            repository: repository.clone(),
            locks: self.executor.locks(),
        });
        Box::pin(async move {
            let Some(restorer) = restorer else {
                // The repository the spec names cannot be read: the restore fails, saying why.
                let now = chrono::Utc::now();
                let why = repository.err().map(|e| e.to_string()).unwrap_or_default();
                error!(restore = %request.name, "{why}");
                return RunOutcome {
                    run_id: format!("{}-{}", request.name, now.format("%Y%m%dT%H%M%S%.3fZ")),
                    archive_id: None,
                    phase: crate::spec::common::Phase::Failed,
                    dry_run: false,
                    start_time: now,
                    completion_time: now,
                    bytes: 0,
                    source_bytes: 0,
                    artifacts: 0,
                    downtime: BTreeMap::new(),
                    errors: vec![why],
                    warnings: Vec::new(),
                    committed: false,
                    plan: None,
                    verified: None,
                    repository: request.repository.clone(),
                    copies: Vec::new(),
                };
            };
            let o = restorer.run(&request, progress).await;
            RunOutcome {
                run_id: o.run_id,
                archive_id: (!o.report.archive.is_empty()).then_some(o.report.archive),
                phase: o.phase,
                dry_run: false,
                start_time: o.start_time,
                completion_time: o.completion_time,
                // A restore writes back source bytes and stores nothing.
                bytes: 0,
                source_bytes: o.bytes,
                artifacts: o.report.volumes.len(),
                downtime: BTreeMap::new(),
                errors: o.errors,
                warnings: o.warnings,
                committed: false,
                plan: None,
                verified: None,
                repository: request.repository.clone(),
                copies: Vec::new(),
            }
        })
    }

    fn action(
        &self,
        request: crate::actions::ActionRequest,
        progress: Arc<dyn Progress>,
    ) -> BoxFuture<RunOutcome> {
        let executor = self.executor.clone();
        Box::pin(async move {
            crate::actions::run(
                executor.engine(),
                &executor.state(),
                &executor.locks(),
                &request,
                progress,
            )
            .await
        })
    }

    fn replay_journal(&self) -> BoxFuture<Result<Vec<String>, String>> {
        let executor = self.executor.clone();
        Box::pin(async move { executor.replay_journal().await.map_err(|e| e.to_string()) })
    }

    fn repository_named(&self, name: &str) -> Option<Repository> {
        self.executor.repository_named(name).ok()
    }

    fn prune_named(&self, policy: BackupPolicySpec, group: String) -> BoxFuture<()> {
        let executor = self.executor.clone();
        Box::pin(async move {
            let Some(rules) = policy.retention.clone() else {
                return;
            };
            let tz = crate::repo::prune::zone(&policy);
            for name in policy.output.repositories() {
                if name == crate::spec::repository::DEFAULT_REPOSITORY {
                    continue;
                }
                let Ok(repo) = executor.repository_named(&name) else {
                    continue;
                };
                let (state, group, rules) = (executor.state(), group.clone(), rules.clone());
                let pruned = tokio::task::spawn_blocking(move || {
                    // A deletion a crash interrupted there is finished first (in a restic
                    // repository: the snapshots of an archive already unlisted).
                    for id in crate::repo::prune::resume(&state, &repo).map_err(|e| e.to_string())? {
                        info!(repository = %repo.name(), archive = %id, "finished a deletion a crash had interrupted");
                    }
                    let mut entries = Vec::new();
                    for id in repo.archives(&group).map_err(|e| e.to_string())? {
                        if let Some(entry) = crate::repo::catalog::read_entry(&repo, &group, &id)
                            .map_err(|e| e.to_string())?
                        {
                            entries.push(entry);
                        }
                    }
                    let refs: Vec<&crate::repo::Entry> = entries.iter().collect();
                    crate::repo::prune::prune(
                        &state,
                        &repo,
                        &refs,
                        &group,
                        &rules,
                        tz,
                        chrono::Utc::now(),
                    )
                    .map_err(|e| e.to_string())
                })
                .await;
                match pruned {
                    Ok(Ok(p)) => {
                        for e in p.errors {
                            warn!(repository = %name, "retention: {e}");
                        }
                    }
                    Ok(Err(e)) => warn!(repository = %name, "retention: {e}"),
                    Err(e) => warn!(repository = %name, "retention: {e}"),
                }
            }
        })
    }

    fn repositories(&self, specs: Vec<(String, RepositorySpec)>, clean: bool) -> BoxFuture<Probes> {
        let executor = self.executor.clone();
        let host = self.repo.host().to_string();
        let locks = self.locks.clone();
        Box::pin(async move {
            let mut held = std::mem::take(&mut *locks.lock().unwrap_or_else(|e| e.into_inner()));
            let mut kept = BTreeMap::new();
            let mut opened = BTreeMap::new();
            let mut probes = Probes::new();
            // All at once, each on a blocking worker (opening reads files, probing goes
            // out), under one deadline: a repository that hangs holds the loop up for
            // PROBE_TIMEOUT at most, whatever their number.
            let tasks: Vec<_> = specs
                .into_iter()
                .map(|(name, spec)| {
                    let lock = held.remove(&name);
                    let (n, host) = (name.clone(), host.clone());
                    let task = tokio::task::spawn_blocking(move || {
                        open_for_writing(&n, &spec, &host, lock, clean)
                    });
                    (name, task)
                })
                .collect();
            let deadline = tokio::time::Instant::now() + PROBE_TIMEOUT;
            for (name, task) in tasks {
                let (repository, probe) = match tokio::time::timeout_at(deadline, task).await {
                    Ok(Ok((repository, lock, probe))) => {
                        if let Some(lock) = lock {
                            kept.insert(name.clone(), lock);
                        }
                        (repository, probe)
                    }
                    Ok(Err(e)) => (Err(e.to_string()), Err(e.to_string())),
                    Err(_) => {
                        let why = format!("it did not answer within {} s", PROBE_TIMEOUT.as_secs());
                        (Err(why.clone()), Err(why))
                    }
                };
                opened.insert(name.clone(), repository);
                probes.insert(
                    name,
                    Probe {
                        at: chrono::Utc::now(),
                        result: probe,
                    },
                );
            }
            // Locks of repositories no spec names any more are released here.
            *locks.lock().unwrap_or_else(|e| e.into_inner()) = kept;
            executor.set_repositories(opened);
            probes
        })
    }
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
    // Reading back and decompressing the whole archive is archive work like writing it:
    // at the lower priority of archive threads, so that it never slows the API down.
    let result = crate::executor::background::spawn("holdfast-verify", move || {
        crate::repo::verify::verify_archive(&repo, &group, &id, ReadData::All, |_, _| {})
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
