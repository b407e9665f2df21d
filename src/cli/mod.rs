//! The command line: one thin file per subcommand over the library.

mod backup;
mod bundle;
mod completions;
mod delete;
mod get;
mod ls;
mod man;
mod notify;
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

use crate::settings::{Apply, LogFormat, Settings};
use tracing::info;

#[derive(Debug, Parser)]
#[command(
    name = "holdfast",
    version,
    about = "Declarative backups for Docker hosts",
    long_about = "holdfast keeps Docker hosts backed up the way Kubernetes controllers keep clusters in shape: \
BackupPolicy, Archive, Restore and Repository specs in a folder (kept in git) say what you want, and holdfast makes it so.",
    propagate_version = true
)]
pub struct Cli {
    /// The configuration file: YAML with the flags' names in camelCase (`specs`, `state`,
    /// `repository`, `dockerHost`, ...), read by every command. Default: the environment
    /// variable HOLDFAST_CONFIG, else /etc/holdfast/holdfast.yaml when it exists; an empty
    /// value reads none.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Global options"
    )]
    pub config: Option<std::ffi::OsString>,

    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, global = true, env = "HOLDFAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, help_heading = "Global options")]
    pub log_format: LogFormat,

    /// Log only warnings and errors, and show no progress bar.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        help_heading = "Global options"
    )]
    pub quiet: bool,

    /// Log more: `-v` adds holdfast's debug lines (and each line's module), `-vv` trace
    /// lines. `HOLDFAST_LOG` (e.g. `holdfast=debug`) overrides both.
    #[arg(
        short,
        long,
        global = true,
        action = clap::ArgAction::Count,
        help_heading = "Global options"
    )]
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
    /// Check a Notifier: `notify test NAME` sends it a test message.
    Notify(notify::NotifyArgs),
    /// The disaster-recovery bundle: `bundle create` writes one age-encrypted file with
    /// the specs, credentials and keys a new host needs; `bundle open` unpacks it.
    Bundle(bundle::BundleArgs),
    /// Print the completion script of a shell: bash, zsh, fish, elvish or powershell.
    Completions(completions::CompletionsArgs),
    /// Write the man pages: holdfast(1) and one per command, such as holdfast-run(1).
    Man(man::ManArgs),
}

impl Command {
    /// The settings this command runs with: those of the flag groups it takes.
    fn settings(&self, log_format: LogFormat) -> Settings {
        let groups: Vec<&dyn Apply> = match self {
            Command::Validate(a) => vec![&a.specs],
            Command::Schema(_) | Command::Completions(_) | Command::Man(_) => vec![],
            Command::Plan(a) => vec![&a.specs, &a.state, &a.repository, &a.host_labels, &a.docker],
            Command::Backup(a) => vec![
                &a.specs,
                &a.state,
                &a.repository,
                &a.docker,
                &a.archive_via,
                &a.history,
            ],
            Command::Run(a) => vec![
                &a.specs,
                &a.state,
                &a.repository,
                &a.host_labels,
                &a.docker,
                &a.archive_via,
                &a.history,
                &a.listen,
            ],
            Command::Get(a) => vec![&a.specs, &a.state, &a.repository, &a.repo],
            Command::Prune(a) => vec![&a.specs, &a.state, &a.repository, &a.repo],
            Command::Delete(a) => vec![&a.specs, &a.state, &a.repository, &a.repo],
            Command::Verify(a) => vec![&a.specs, &a.repository, &a.repo],
            Command::Restore(a) => vec![
                &a.specs,
                &a.state,
                &a.repository,
                &a.repo,
                &a.docker,
                &a.history,
            ],
            Command::Ls(a) => vec![&a.specs, &a.repository, &a.repo],
            Command::Notify(a) => vec![a.specs()],
            Command::Bundle(a) => a.groups(),
        };
        let mut settings = Settings {
            log_format,
            ..Settings::default()
        };
        for group in groups {
            group.apply(&mut settings);
        }
        settings
    }
}

/// How a command prints its result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// The program's name, as completion scripts and man pages call it.
const NAME: &str = "holdfast";

/// The command line as defined, without a configuration file's values as the flags'
/// defaults: what man pages and completion scripts describe, the same on every machine
/// that generates them.
fn definition() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// Reads the configuration file, parses the command line with its settings as the flags'
/// defaults, and runs the command. A configuration file that cannot be read or is invalid
/// fails before anything runs.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let config = match crate::config::locate(&args, std::env::var_os("HOLDFAST_CONFIG")) {
        Some(path) => match crate::config::load(&path) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => crate::config::Config::default(),
    };
    let command = config.apply(<Cli as clap::CommandFactory>::command());
    let matches = command.get_matches_from(args);
    match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => run(cli),
        Err(e) => e.exit(),
    }
}

/// Runs the parsed command. Exit codes: 0 success, 1 the work failed or input was invalid,
/// 2 usage error (clap exits with 2 before this is reached).
pub fn run(cli: Cli) -> ExitCode {
    let settings = cli.command.settings(cli.log_format);
    let run_logs = match &cli.command {
        Command::Backup(args) => args.writes(),
        Command::Run(_) => true,
        Command::Restore(args) => args.uses_state(),
        _ => false,
    }
    .then(|| settings.state.join("logs"));
    let verbosity = if cli.quiet {
        -1
    } else {
        cli.verbose.min(2) as crate::logging::Verbosity
    };
    crate::logging::init(settings.log_format, verbosity, run_logs);
    // A bar only where a person watches, and not when asked to be quiet.
    let bar = !cli.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let result = match cli.command {
        Command::Validate(args) => validate::run(&settings, args),
        Command::Schema(args) => schema::run(args),
        Command::Plan(args) => plan::run(&settings, args),
        Command::Backup(args) => backup::run(&settings, args, bar),
        Command::Run(args) => run::run(&settings, args),
        Command::Get(args) => get::run(&settings, args),
        Command::Delete(args) => delete::run(&settings, args),
        Command::Prune(args) => prune::run(&settings, args),
        Command::Verify(args) => verify::run(&settings, args),
        Command::Restore(args) => restore::run(&settings, args, bar),
        Command::Ls(args) => ls::run(&settings, args),
        Command::Notify(args) => notify::run(&settings, args),
        Command::Bundle(args) => bundle::run(&settings, args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
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

/// The executor of a command that writes: its runs refresh the disaster-recovery bundle
/// (`include.bundle`) from this command's specs folder and configuration file.
fn executor(
    settings: &Settings,
    engine: crate::docker::engine::Engine,
) -> anyhow::Result<crate::executor::Executor> {
    let state = crate::state::StateDb::open(&settings.state)?;
    let executor = crate::executor::Executor::new(
        engine,
        std::sync::Arc::new(state),
        repository(settings),
        settings.archive_via,
    )
    .with_specs_folder(&settings.specs)
    .with_archive_parallelism(
        settings
            .archive_parallelism
            .unwrap_or_else(crate::executor::parallel::default_parallelism),
    );
    executor.set_bundle_source(bundle::source(settings));
    Ok(executor)
}

/// An executor for a command that changes nothing: it reads the state read-only, and a
/// state folder that does not exist is an empty history (nothing is created).
fn read_only_executor(
    settings: &Settings,
    engine: crate::docker::engine::Engine,
) -> anyhow::Result<crate::executor::Executor> {
    let state = crate::state::StateDb::open_or_empty(&settings.state)?;
    Ok(crate::executor::Executor::new(
        engine,
        std::sync::Arc::new(state),
        repository(settings),
        settings.archive_via,
    )
    .with_specs_folder(&settings.specs)
    .with_archive_parallelism(
        settings
            .archive_parallelism
            .unwrap_or_else(crate::executor::parallel::default_parallelism),
    ))
}

/// A path a result depends on, for [`paths`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    Specs,
    State,
    Repository,
}

/// `specs: DIR, state: DIR, repository: DIR (host NAME)`: where a command looked, said
/// beside a result that could be empty because of it.
pub(crate) fn paths(settings: &Settings, which: &[Path]) -> String {
    which
        .iter()
        .map(|p| match p {
            Path::Specs => format!("specs: {}", settings.specs.display()),
            Path::State => format!("state: {}", settings.state.display()),
            Path::Repository => format!(
                "repository: {} (host {})",
                settings.repository.display(),
                settings.host()
            ),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The repository `--repository` names, as this host (`--host`) sees it.
fn repository(settings: &Settings) -> crate::repo::Repository {
    crate::repo::Repository::local(&settings.repository, &settings.host())
}

/// The repository `--repo` names: `default` (the `--repository` folder), or the
/// Repository spec of that name in the specs folder, opened (its secrets and identity
/// read) as this host sees it.
fn repository_named(settings: &Settings) -> anyhow::Result<crate::repo::Repository> {
    repository_of(settings, &settings.host())
}

/// The repository `--repo` names as `host` sees it: another host's archives, to list or
/// restore on a new machine. Reading it takes none of that host's locks; never write
/// through it.
fn repository_of(settings: &Settings, host: &str) -> anyhow::Result<crate::repo::Repository> {
    if settings.repo == crate::spec::repository::DEFAULT_REPOSITORY {
        return Ok(crate::repo::Repository::local(&settings.repository, host));
    }
    let report = specs::load(settings);
    let (name, spec) = specs::repository_spec(&report, settings, &settings.repo)?;
    crate::repo::named::open(&name, &spec, host)
        .map_err(|e| anyhow::anyhow!("repository `{name}`: {e}"))
}

/// Where archive `id` is when this host's folder does not hold it: `from_host`'s folder
/// when given, else the one other host whose folder holds it. Refuses, naming the hosts,
/// when several do, and when none does says which hosts were searched.
fn repository_holding(
    settings: &Settings,
    id: &str,
    from_host: Option<&str>,
) -> anyhow::Result<crate::repo::Repository> {
    if let Some(host) = from_host {
        return repository_of(settings, host);
    }
    let own = repository_named(settings)?;
    let Some(group) = crate::repo::layout::group_of(id) else {
        return Ok(own);
    };
    let has = |repo: &crate::repo::Repository| -> anyhow::Result<bool> {
        Ok(repo
            .storage()
            .stat(group, id, crate::repo::layout::MANIFEST)?
            .is_some())
    };
    if has(&own)? {
        return Ok(own);
    }
    let hosts = own.storage().hosts()?;
    let mut holding = Vec::new();
    for host in hosts.iter().filter(|h| **h != settings.host()) {
        let repo = repository_of(settings, host)?;
        if has(&repo)? {
            holding.push((host.clone(), repo));
        }
    }
    match holding.len() {
        0 => Ok(own),
        1 => {
            let (host, repo) = holding.remove(0);
            eprintln!("archive {id} is host {host}'s: reading it from that host's folder");
            Ok(repo)
        }
        _ => anyhow::bail!(
            "archive {id} is in the folders of several hosts ({}): name one with --from-host",
            holding
                .iter()
                .map(|(h, _)| h.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Opens the repositories a run writes to besides `default`, for `executor`: each with
/// its writers' lock taken (returned, to hold) and what failed uploads left removed. With
/// `lock` false (a dry run) they are only opened.
fn open_outputs(
    settings: &Settings,
    report: &crate::validate::Report,
    names: &[String],
    executor: &crate::executor::Executor,
    lock: bool,
) -> anyhow::Result<Vec<crate::repo::lock::RepoLock>> {
    let mut opened = std::collections::BTreeMap::new();
    let mut locks = Vec::new();
    for name in names {
        if name == crate::spec::repository::DEFAULT_REPOSITORY {
            continue;
        }
        let (name, spec) = specs::repository_spec(report, settings, name)?;
        let repository = match crate::repo::named::open(&name, &spec, &settings.host()) {
            Ok(repository) => repository,
            Err(e) => {
                opened.insert(name, Err(e.to_string()));
                continue;
            }
        };
        if lock {
            locks.push(lock_repository(&repository, "holdfast backup")?);
            match repository.clean() {
                Ok(removed) => {
                    for what in removed {
                        info!(repository = %name, "removed an incomplete upload: {what}");
                    }
                }
                Err(e) => tracing::warn!(repository = %name, "clearing incomplete uploads: {e}"),
            }
        }
        opened.insert(name, Ok(repository));
    }
    executor.set_repositories(opened);
    Ok(locks)
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

/// Says which containers an interrupted run left stopped, for the commands that only read
/// (`plan`, `backup --dry-run`) and so do not start them again. Beside a running holdfast
/// the journal is that process's work in progress, and nothing is said.
fn warn_left_stopped(settings: &Settings, state: &crate::state::StateDb) -> anyhow::Result<()> {
    if crate::state::lock::held_by_another(&settings.state) {
        return Ok(());
    }
    let stopped = state.journal()?;
    if !stopped.is_empty() {
        let names: Vec<&str> = stopped.iter().map(|e| e.container_name.as_str()).collect();
        eprintln!(
            "warning: an interrupted run left stopped: {}; the next `holdfast backup`, `holdfast restore` or daemon start starts them again",
            names.join(", ")
        );
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
