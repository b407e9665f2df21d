//! The command line: one thin file per subcommand over the library.

mod backup;
mod delete;
mod get;
mod ls;
mod plan;
mod progress_bar;
mod prune;
mod restore;
mod restore_paths;
mod run;
mod schema;
mod specs;
mod validate;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::settings::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "holdfast",
    version,
    about = "Declarative backups for Docker hosts",
    long_about = "holdfast keeps Docker hosts backed up the way Kubernetes controllers keep clusters in shape: \
BackupPolicy, Archive and Restore specs in a folder (kept in git) say what you want, and holdfast makes it so.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,

    /// Log only warnings and errors, and show no progress bar.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log more: `-v` adds holdfast's debug lines (and each line's module), `-vv` trace
    /// lines. `HOLDFAST_LOG` (e.g. `holdfast=debug`) overrides both.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check spec files and print every error with its file, line, column and field.
    Validate(validate::ValidateArgs),
    /// Write the JSON Schema of each kind, for editors and CI.
    Schema(schema::SchemaArgs),
    /// Show what a backup would cover, stop and write, without doing anything.
    Plan(plan::PlanArgs),
    /// Run one BackupPolicy or Archive now, without a daemon.
    Backup(backup::BackupArgs),
    /// The daemon: watch the specs, run backups on schedule, write status files.
    Run(run::RunArgs),
    /// List what holdfast knows: `get archives`, `get policies`, `get runs`, `get restores`.
    Get(get::GetArgs),
    /// Apply the policies' retention now, as the daemon does after each successful run.
    Prune(prune::PruneArgs),
    /// Delete archives on purpose (holdfast never deletes orphaned ones by itself).
    Delete(delete::DeleteArgs),
    /// Read archives back in full: checksums, and every tar walked to its end.
    Verify(verify::VerifyArgs),
    /// Put archived volumes, dumps and the recipe back, from the repository alone.
    Restore(restore::RestoreArgs),
    /// List what an archive holds: its artifacts, or the files of a volume, without
    /// extracting anything.
    Ls(ls::LsArgs),
}

/// How a command prints its result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// Runs the parsed command. Exit codes: 0 success, 1 the work failed or input was invalid,
/// 2 usage error (clap exits with 2 before this is reached).
pub fn run(cli: Cli) -> ExitCode {
    let run_logs = match &cli.command {
        Command::Backup(args) => args.writes(),
        Command::Run(_) => true,
        Command::Restore(args) => args.uses_state(),
        _ => false,
    }
    .then(|| cli.settings.state.join("logs"));
    let verbosity = if cli.quiet {
        -1
    } else {
        cli.verbose.min(2) as crate::logging::Verbosity
    };
    crate::logging::init(cli.settings.log_format, verbosity, run_logs);
    // A bar only where a person watches, and not when asked to be quiet.
    let bar = !cli.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let result = match cli.command {
        Command::Validate(args) => validate::run(&cli.settings, args),
        Command::Schema(args) => schema::run(args),
        Command::Plan(args) => plan::run(&cli.settings, args),
        Command::Backup(args) => backup::run(&cli.settings, args, bar),
        Command::Run(args) => run::run(&cli.settings, args),
        Command::Get(args) => get::run(&cli.settings, args),
        Command::Delete(args) => delete::run(&cli.settings, args),
        Command::Prune(args) => prune::run(&cli.settings, args),
        Command::Verify(args) => verify::run(&cli.settings, args),
        Command::Restore(args) => restore::run(&cli.settings, args, bar),
        Command::Ls(args) => ls::run(&cli.settings, args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each said once: many errors already end with
/// their cause ("listening on 127.0.0.1:9750: Address already in use"), and printing the
/// chain would repeat it.
fn error_chain(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn executor(
    settings: &Settings,
    engine: crate::docker::engine::Engine,
) -> anyhow::Result<crate::executor::Executor> {
    let state = crate::state::StateDb::open(&settings.state)?;
    Ok(crate::executor::Executor::new(
        engine,
        std::sync::Arc::new(state),
        repository(settings),
        settings.archive_via,
    ))
}

/// The repository `--repository` names, as this host (`--host`) sees it.
fn repository(settings: &Settings) -> crate::repo::Repository {
    crate::repo::Repository::local(&settings.repository, &settings.host())
}

/// Takes the repository's writers' lock for `command` (e.g. `holdfast backup`): a second
/// writer on this host's folder is refused at once, told who holds it.
fn lock_repository(
    repo: &crate::repo::Repository,
    command: &str,
) -> anyhow::Result<crate::repo::lock::RepoLock> {
    let owner = crate::repo::lock::LockOwner::this_process(repo.host(), command);
    Ok(repo.lock(&owner)?)
}

/// Repairs what a crashed holdfast left, as the daemon does at its start: runs left
/// Running are recorded as interrupted, the containers in the stop journal are started,
/// the staging folders of killed restores and the staged (`.partial`) archives are
/// removed, and interrupted deletions are finished. Call it only with the state folder's
/// lock held: then none of this is another process's work in progress.
async fn recover_after_crash(
    settings: &Settings,
    executor: &crate::executor::Executor,
) -> anyhow::Result<()> {
    let state = executor.state();
    for id in state.fail_interrupted_runs(chrono::Utc::now())? {
        eprintln!("run {id} was interrupted by a stop of holdfast; recorded as Failed");
    }
    let restarted = executor.replay_journal().await?;
    if !restarted.is_empty() {
        eprintln!(
            "started again what an interrupted run had stopped: {}",
            restarted.join(", ")
        );
    }
    for path in crate::restore::remove_interrupted_staging(executor.engine(), state.clone()).await?
    {
        eprintln!(
            "removed what an interrupted restore left: {}",
            path.display()
        );
    }
    let repo = repository(settings);
    for path in repo.clean()? {
        eprintln!("removed a partial archive left by a crash: {path}");
    }
    for id in crate::repo::prune::resume(&state, &repo)? {
        eprintln!("finished a deletion a crash had interrupted: {id}");
    }
    Ok(())
}

/// Forgets the runs, and their log files, beyond each object's `--history-limit`, as the
/// daemon does after each run. Call it with the state folder's lock held.
fn prune_history(settings: &Settings, state: &crate::state::StateDb) {
    let logs = settings.state.join("logs");
    if let Err(e) = crate::state::history::prune(state, &logs, settings.history_limit) {
        eprintln!("warning: pruning the run history: {e}");
    }
}

/// Replays a leftover stop journal unless another holdfast process holds the run lock
/// (then the journal is that process's own business).
async fn replay_if_free(settings: &Settings, executor: &crate::executor::Executor) {
    if let Ok(_lock) = crate::state::lock::try_lock(&settings.state) {
        match executor.replay_journal().await {
            Ok(started) if !started.is_empty() => {
                eprintln!(
                    "started again what an interrupted run had stopped: {}",
                    started.join(", ")
                )
            }
            Ok(_) => {}
            Err(e) => eprintln!("warning: replaying the stop journal: {e}"),
        }
    }
}

/// Every SIGTERM or SIGINT sends one `()`: for the daemon the first asks for a graceful
/// stop and the second forces it; for a one-off command the first interrupts its run.
fn signals() -> anyhow::Result<tokio::sync::mpsc::Receiver<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// Runs the work of a one-off command to its end, unless SIGINT or SIGTERM comes first.
/// Then, as the daemon does at shutdown, the work is cancelled where it stands (`progress`
/// tells its threads), what it had stopped is started again from the stop journal, its run
/// is recorded as interrupted, and the command fails saying so.
async fn unless_interrupted<T>(
    work: impl std::future::Future<Output = T>,
    signals: &mut tokio::sync::mpsc::Receiver<()>,
    progress: &crate::progress::Cancellable,
    executor: &crate::executor::Executor,
) -> anyhow::Result<T> {
    tokio::select! {
        done = work => return Ok(done),
        _ = signals.recv() => {}
    }
    // The work was dropped with the branch it lost: nothing of it acts any more, apart from
    // threads that stop at their next buffer.
    progress.cancel();
    // Above the progress bar, which is still drawn until the command ends.
    crate::logging::write_stderr(
        "interrupted: cancelling the run and starting again what it stopped\n",
    );
    let started = executor.replay_journal().await;
    if let Err(e) = executor.state().fail_interrupted_runs(chrono::Utc::now()) {
        eprintln!("warning: recording the run as interrupted: {e}");
    }
    match started {
        Ok(started) if started.is_empty() => {
            anyhow::bail!("interrupted: the run was cancelled; nothing was left stopped")
        }
        Ok(started) => anyhow::bail!(
            "interrupted: the run was cancelled; started again what it had stopped: {}",
            started.join(", ")
        ),
        Err(e) => anyhow::bail!(
            "interrupted: the run was cancelled, and starting again what it had stopped failed: {e}; the next holdfast command retries"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let bind = crate::api::ServeError::Bind {
            addr: "127.0.0.1:9750".parse().unwrap(),
            source: io,
        };
        let line = error_chain(&anyhow::Error::from(bind));
        assert_eq!(line, "listening on 127.0.0.1:9750: address in use");
        let wrapped = anyhow::anyhow!("disk full").context("writing the archive");
        assert_eq!(error_chain(&wrapped), "writing the archive: disk full");
    }
}
