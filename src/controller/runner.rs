//! The boundary between the controller and the work it starts: a backup, a restore, and
//! replaying the stop journal. The daemon uses [`LiveRunner`] (the executor and the
//! restorer against Docker); the controller's own tests use a fake, so the loop's timing
//! and bookkeeping are tested without Docker.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tracing::{error, info};

use crate::executor::{BackupRequest, Executor, RunOutcome};
use crate::progress::Progress;
use crate::repo::Repository;
use crate::restore::{RestoreRequest, Restorer};
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
    /// Starts again what interrupted runs had stopped; returns what it started.
    fn replay_journal(&self) -> BoxFuture<Result<Vec<String>, String>>;
}

/// Runs against the real Docker engine and repository.
pub struct LiveRunner {
    pub executor: Arc<Executor>,
    pub repo: Repository,
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
        let restorer = Restorer {
            engine: self.executor.engine().clone(),
            state: self.executor.state(),
            repository: self.repo.clone(),
            locks: self.executor.locks(),
        };
        Box::pin(async move {
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
                repository: crate::spec::repository::DEFAULT_REPOSITORY.to_string(),
                copies: Vec::new(),
            }
        })
    }

    fn replay_journal(&self) -> BoxFuture<Result<Vec<String>, String>> {
        let executor = self.executor.clone();
        Box::pin(async move { executor.replay_journal().await.map_err(|e| e.to_string()) })
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
