use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{OutputFormat, specs};
use crate::docker::engine::Engine;
use crate::progress::Cancellable;
use crate::settings::Settings;
use crate::spec::common::Phase;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The BackupPolicy or Archive to run now.
    name: String,

    /// Resolve targets and check what the run needs, without stopping or writing anything.
    #[arg(long)]
    dry_run: bool,

    /// Do not apply the policy's retention after a successful run (by default, as the
    /// daemon does, it deletes what `spec.retention` no longer keeps).
    #[arg(long)]
    no_prune: bool,

    /// `text` for people, `json` for scripts.
    #[arg(long, short, value_enum, default_value_t)]
    output: OutputFormat,

    #[command(flatten)]
    pub(super) specs: crate::settings::SpecsFlag,

    #[command(flatten)]
    pub(super) state: crate::settings::StateFlag,

    #[command(flatten)]
    pub(super) repository: crate::settings::RepositoryFlags,

    #[command(flatten)]
    pub(super) docker: crate::settings::DockerFlags,

    #[command(flatten)]
    pub(super) archive_via: crate::settings::ArchiveViaFlag,

    #[command(flatten)]
    pub(super) history: crate::settings::HistoryFlag,
}

impl BackupArgs {
    /// Whether the command writes: a dry run does not, not even a run log.
    pub fn writes(&self) -> bool {
        !self.dry_run
    }
}

/// An executor for a dry run: the state database read-only when there is one, an empty
/// one in memory otherwise. A dry run records nothing, and a daemon may be writing.
fn dry_run_executor(
    settings: &Settings,
    engine: Engine,
) -> anyhow::Result<crate::executor::Executor> {
    let state = if settings.state.join("holdfast.db").exists() {
        crate::state::StateDb::open_reader(&settings.state)?
    } else {
        crate::state::StateDb::in_memory(&settings.state)?
    };
    Ok(crate::executor::Executor::new(
        engine,
        Arc::new(state),
        super::repository(settings),
        settings.archive_via,
    )
    .with_specs_folder(&settings.specs)
    .with_archive_parallelism(
        settings
            .archive_parallelism
            .unwrap_or_else(crate::executor::parallel::default_parallelism),
    ))
}

/// Exit code 0 when the run succeeded, 1 when it failed or partially failed. `bar`: show
/// a progress bar on stderr.
/// How long a one-off backup waits for its notifications to go out.
const NOTIFY_WAIT: Duration = Duration::from_secs(30);

/// The notifiers covering the object, as the daemon has them (what was told is
/// remembered in the same state database, so a failure told by the daemon is not told
/// again here), and the hub through which a run's start reaches the heartbeats.
fn notifications(
    settings: &Settings,
    report: &crate::validate::Report,
    state: Arc<crate::state::StateDb>,
) -> (
    crate::controller::notifications::Notifications,
    Arc<crate::hub::Hub>,
) {
    let desired = crate::controller::desired::Desired::from_report(report);
    // The daemon's statuses say so; a one-off command says it here.
    for invalid in desired
        .objects()
        .filter(|o| o.kind == crate::spec::Kind::Notifier && o.resource.is_none())
    {
        let why = invalid
            .errors
            .first()
            .map(String::as_str)
            .unwrap_or("invalid");
        tracing::warn!(
            "Notifier/{} tells nobody, its spec is invalid: {why}",
            invalid.name
        );
    }
    let hub = Arc::new(crate::hub::Hub::new());
    let mut notifications = crate::controller::notifications::Notifications::new(
        state,
        hub.clone(),
        settings.host(),
        None,
    );
    notifications.configure(&desired);
    (notifications, hub)
}

/// Passes progress on, and tells the hub when the run has its id.
struct Announced {
    inner: Arc<dyn crate::progress::Progress>,
    hub: Arc<crate::hub::Hub>,
    object: crate::spec::ObjectKey,
}

impl crate::progress::Progress for Announced {
    fn run(&self, id: &str) {
        self.inner.run(id);
        self.hub
            .run_started(self.object.kind, &self.object.name, id);
    }
    fn phase(&self, what: &str) {
        self.inner.phase(what);
    }
    fn item(&self, name: &str) {
        self.inner.item(name);
    }
    fn bytes(&self, n: u64) {
        self.inner.bytes(n);
    }
    fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }
}

pub fn run(settings: &Settings, args: BackupArgs, bar: bool) -> anyhow::Result<ExitCode> {
    let report = specs::load(settings);
    let mut request = specs::backup_request(&report, settings, &args.name)?;
    request.dry_run = args.dry_run;
    // The policy whose retention applies after the run: not for an Archive, which follows
    // its own ttl, nor for a dry run.
    let policy = report
        .valid_objects()
        .find_map(|r| match r {
            crate::spec::Resource::BackupPolicy(p)
                if p.metadata.name == args.name && p.spec.retention.is_some() =>
            {
                Some(p)
            }
            _ => None,
        })
        .filter(|p| {
            request.kind == crate::spec::Kind::BackupPolicy && !args.dry_run && !p.spec.suspend
        });
    let runtime = super::runtime()?;
    let outcome = runtime.block_on(async {
        // First: from here on, Ctrl-C interrupts the run instead of killing holdfast.
        let mut signals = super::signals()?;
        let engine;
        let executor;
        // A dry run writes nothing (no run record, no repository folder, no recovery), so it
        // takes no writer's lock and runs beside a daemon on the same state folder.
        let outputs = request.output.repositories();
        let _locks = if args.dry_run {
            engine = Engine::open(&settings.docker).await?;
            executor = dry_run_executor(settings, engine)?;
            super::open_outputs(settings, &report, &outputs, &executor, false)?;
            super::warn_left_stopped(settings, &executor.state())?;
            None
        } else {
            let lock = crate::state::lock::try_lock(&settings.state)?;
            // And no second writer on this host's folder of the repository, whatever its
            // state.
            let repo_lock =
                super::lock_repository(&super::repository(settings), "holdfast backup")?;
            engine = Engine::open(&settings.docker).await?;
            executor = super::executor(settings, engine)?;
            // The other repositories the run writes: opened, locked and cleared of what
            // failed uploads left, off the runtime (they may be remote).
            let named = tokio::task::block_in_place(|| {
                super::open_outputs(settings, &report, &outputs, &executor, true)
            })?;
            super::recover_after_crash(settings, &executor).await?;
            Some((lock, repo_lock, named))
        };
        // A progress bar on a terminal; log lines alone otherwise.
        let bar = (bar && !args.dry_run).then(super::progress_bar::Bar::start);
        let mut shown: Arc<dyn crate::progress::Progress> = match &bar {
            Some(bar) => bar.clone(),
            None => Arc::new(crate::progress::Silent),
        };
        let object = crate::spec::ObjectKey {
            kind: request.kind,
            name: request.name.clone(),
        };
        let mut notify = None;
        if !args.dry_run {
            let (notifications, hub) = notifications(settings, &report, executor.state());
            shown = Arc::new(Announced {
                inner: shown,
                hub,
                object: object.clone(),
            });
            notify = Some(notifications);
        }
        let progress = Arc::new(Cancellable::new(shown));
        let run = executor.run(&request, progress.clone());
        let outcome = super::unless_interrupted(run, &mut signals, &progress, &executor).await;
        if let Some(bar) = bar {
            bar.finish();
        }
        let outcome = outcome?;
        // Retention after a successful run of a policy, as the daemon's, with both locks
        // still held.
        let pruned = match policy {
            Some(policy) if outcome.phase == Phase::Succeeded && !args.no_prune => {
                let state = executor.state();
                let mut result = None;
                // Each repository the policy writes, `default` first as before.
                for name in policy.spec.output.repositories() {
                    let Ok(repo) = executor.repository_named(&name) else {
                        continue;
                    };
                    let applied = tokio::task::block_in_place(|| {
                        let catalog = crate::repo::catalog::Catalog::load(&repo)?;
                        super::prune::apply(
                            &state,
                            &repo,
                            &catalog,
                            policy,
                            false,
                            chrono::Utc::now(),
                        )
                    })
                    .map_err(|e| {
                        format!(
                            "applying the retention of `{}` in `{name}`: {e:#}",
                            args.name
                        )
                    });
                    if result.is_none() || applied.is_err() {
                        result = Some(applied);
                    }
                }
                result
            }
            _ => None,
        };
        if !args.dry_run {
            super::prune_history(settings, &executor.state());
        }
        if let Some(mut notifications) = notify {
            notifications.run_finished(&object, &outcome).await;
            notifications.flush(NOTIFY_WAIT).await;
        }
        anyhow::Ok((outcome, pruned))
    });
    // A cancelled run's archive threads may still be busy; what they leave is a
    // `.partial` that the daemon's next start removes, so do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let (outcome, pruned) = outcome?;
    let prune_failed = match &pruned {
        Some(Ok(p)) => !p.pruned.errors.is_empty(),
        Some(Err(_)) => true,
        None => false,
    };
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            let mut value = serde_json::to_value(&outcome)?;
            match &pruned {
                Some(Ok(p)) => value["pruned"] = serde_json::to_value(p)?,
                Some(Err(e)) => value["pruneError"] = e.clone().into(),
                None => {}
            }
            serde_json::to_writer_pretty(&mut out, &value)?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            let what = outcome
                .archive_id
                .clone()
                .unwrap_or_else(|| outcome.run_id.clone());
            let downtime: Vec<String> = outcome
                .downtime
                .iter()
                .map(|(s, d)| format!("{s} {d:.1}s"))
                .collect();
            writeln!(
                out,
                "{:?}{} {what}: {} artifacts, {} stored ({} read){}",
                outcome.phase,
                if outcome.dry_run { " (dry run)" } else { "" },
                outcome.artifacts,
                super::plan::human_bytes(outcome.bytes),
                super::plan::human_bytes(outcome.source_bytes),
                if downtime.is_empty() {
                    String::new()
                } else {
                    format!(", downtime {}", downtime.join(", "))
                }
            )?;
            for e in &outcome.errors {
                writeln!(out, "error: {e}")?;
            }
            for w in &outcome.warnings {
                writeln!(out, "warning: {w}")?;
            }
            match &pruned {
                Some(Ok(p)) => super::prune::print_pruned(&mut out, p)?,
                Some(Err(e)) => writeln!(out, "error: {e}")?,
                None => {}
            }
        }
    }
    Ok(if outcome.phase == Phase::Succeeded && !prune_failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
