use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::bail;
use clap::Args;

use super::OutputFormat;
use crate::docker::engine::Engine;
use crate::progress::Cancellable;
use crate::restore::{RestoreRequest, Restorer, Source};
use crate::settings::Settings;
use crate::spec::common::{Phase, StopMode};
use crate::spec::restore::RestoreMode;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from", "policy"])))]
pub struct RestoreArgs {
    /// The archive to restore, by id.
    #[arg(long, value_name = "ARCHIVE_ID")]
    from: Option<String>,

    /// Restore an archive of this policy (or Archive spec), chosen by --at. Needs only the
    /// repository: no spec file, no state.
    #[arg(long, value_name = "NAME")]
    policy: Option<String>,

    /// With --policy: `latest`, or an RFC 3339 time to take the newest archive at or before.
    #[arg(
        long,
        value_name = "latest|TIME",
        default_value = "latest",
        requires = "policy"
    )]
    at: String,

    /// The archive is this other host's, read from its folder of the repository (to
    /// restore a host's data onto a new machine). Nothing is written into that folder and
    /// none of its locks is taken. Without it, an archive --from names that this host's
    /// folder lacks is looked for in every host's folder.
    #[arg(long, value_name = "NAME")]
    from_host: Option<String>,

    /// Only this stack (repeatable).
    #[arg(long = "stack", value_name = "STACK")]
    stacks: Vec<String>,

    /// Only this volume, by its archived name (repeatable).
    #[arg(long = "volume", value_name = "VOLUME")]
    volumes: Vec<String>,

    /// `NewVolumes` never writes into an existing volume: a volume that is gone comes back
    /// under its own name, one that exists goes to `<volume>-restored-<time>`. `InPlace`
    /// replaces the content of the original volumes, stopping their containers meanwhile.
    #[arg(long, value_name = "NewVolumes|InPlace", default_value = "NewVolumes", value_parser = parse_mode)]
    mode: RestoreMode,

    /// Restore the archived volume `a` into volume `b` (repeatable).
    #[arg(long = "map", value_name = "a=b", value_parser = parse_map)]
    map: Vec<(String, String)>,

    /// In place: stop the containers using the volumes (`container`, the default, as for a
    /// Restore spec's `stop`) or their whole stacks (`stack`).
    #[arg(long, value_name = "container|stack", default_value = "container", value_parser = parse_stop)]
    stop: StopMode,

    /// Feed the archived database dumps into the running database services, after the
    /// volumes. Dumps are chosen by stack (--stack), never by --volume.
    #[arg(long)]
    replay_dumps: bool,

    /// Only feed the archived database dumps into the running database services (of every
    /// stack, or of those --stack names): no volume is written.
    #[arg(long, conflicts_with_all = ["volumes", "map", "mode", "recipe_to"])]
    dumps_only: bool,

    /// Write the compose files, inspect output and bind-mounted folders into this (new or
    /// empty) folder, so `docker-compose up -d` there brings the stack back. The recipe is
    /// chosen by stack (--stack), never by --volume.
    #[arg(long, value_name = "DIR")]
    recipe_to: Option<PathBuf>,

    /// Restore only this file or folder of the --volume or --folder (repeatable), a path
    /// inside it as `holdfast ls ARCHIVE_ID volumes/<volume>` shows it, into --to. Needs no
    /// Docker and no state folder: it runs beside a daemon.
    #[arg(long = "path", value_name = "PATH", requires = "to",
          conflicts_with_all = ["stacks", "map", "mode", "stop", "replay_dumps", "dumps_only", "recipe_to"])]
    paths: Vec<String>,

    /// The archived host folder (of `targets.paths`, or a bind mount of a compose project
    /// that was down), by its path on the host, to restore into --to: all of it, or only
    /// the --path parts of it.
    #[arg(long, value_name = "PATH", requires = "to", conflicts_with = "volumes",
          conflicts_with_all = ["stacks", "map", "mode", "stop", "replay_dumps", "dumps_only", "recipe_to"])]
    folder: Option<String>,

    /// With --path or --folder: the folder to restore into (new or empty); each path comes
    /// back at its place below it.
    #[arg(long, value_name = "DIR")]
    to: Option<PathBuf>,

    /// With --to: restore into a folder that is not empty, replacing files of the same
    /// name (folders are kept; nothing is written through a symlink). `--folder F --to F
    /// --overwrite` puts a host folder back in place.
    #[arg(long, requires = "to")]
    overwrite: bool,

    /// `text` for people, `json` for scripts.
    #[arg(long, short, value_enum, default_value_t)]
    output: OutputFormat,

    #[command(flatten)]
    pub(super) state: crate::settings::StateFlag,

    #[command(flatten)]
    pub(super) repository: crate::settings::RepositoryFlags,

    #[command(flatten)]
    pub(super) repo: crate::settings::RepoFlag,

    #[command(flatten)]
    pub(super) specs: crate::settings::SpecsFlag,

    #[command(flatten)]
    pub(super) docker: crate::settings::DockerFlags,

    #[command(flatten)]
    pub(super) history: crate::settings::HistoryFlag,
}

impl RestoreArgs {
    /// Whether this restore writes the state folder (and its logs): all but `--to` ones.
    pub fn uses_state(&self) -> bool {
        self.to.is_none()
    }
}

fn parse_mode(text: &str) -> Result<RestoreMode, String> {
    match text {
        "NewVolumes" | "new-volumes" => Ok(RestoreMode::NewVolumes),
        "InPlace" | "in-place" => Ok(RestoreMode::InPlace),
        _ => Err(format!("`{text}` is not NewVolumes or InPlace")),
    }
}

fn parse_stop(text: &str) -> Result<StopMode, String> {
    match text {
        "container" => Ok(StopMode::Container),
        "stack" => Ok(StopMode::Stack),
        _ => Err(format!("`{text}` is not container or stack")),
    }
}

fn parse_map(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.to_string(), b.to_string())),
        _ => Err(format!("`{text}` is not `archived=target`")),
    }
}

/// The repository as the host whose archive is restored sees it: --from-host's, the one
/// host holding the --from archive, or this host's.
fn read_from(settings: &Settings, args: &RestoreArgs) -> anyhow::Result<crate::repo::Repository> {
    match (&args.from, &args.from_host) {
        (Some(id), host) => super::repository_holding(settings, id, host.as_deref()),
        (None, Some(host)) => super::repository_of(settings, host),
        (None, None) => super::repository_named(settings),
    }
}

/// Exit code 0 when everything asked for was restored, 1 otherwise.
/// `bar`: show a progress bar on stderr.
pub fn run(settings: &Settings, args: RestoreArgs, bar: bool) -> anyhow::Result<ExitCode> {
    let source = match (&args.from, &args.policy) {
        (Some(id), _) => Source::Archive(id.clone()),
        (None, Some(name)) => Source::Policy {
            name: name.clone(),
            at: crate::restore::parse_at(&args.at).map_err(anyhow::Error::msg)?,
        },
        (None, None) => bail!("name the archive with --from, or a policy with --policy"),
    };
    if let Some(to) = &args.to {
        use crate::restore::files::Part;
        let part = match (&args.folder, args.volumes.as_slice()) {
            (Some(folder), _) => Part::Folder(folder.clone()),
            (None, [volume]) if !args.paths.is_empty() => Part::Volume(volume.clone()),
            (None, _) if args.paths.is_empty() => {
                bail!("--to needs --folder (a host folder to restore), or --path with one --volume")
            }
            (None, _) => bail!(
                "--path needs exactly one --volume or a --folder: the volume or host folder the paths are in (`holdfast ls ARCHIVE_ID` lists them)"
            ),
        };
        let request = crate::restore::files::PathRestore {
            source,
            part,
            paths: args.paths.clone(),
            to: to.clone(),
            overwrite: args.overwrite,
        };
        let repository = read_from(settings, &args)?;
        return super::restore_paths::run(&repository, &request, args.output);
    }
    // Dumps and the recipe belong to stacks: with volumes alone these would do nothing.
    if !args.volumes.is_empty() && args.stacks.is_empty() {
        if args.replay_dumps {
            bail!(
                "--replay-dumps with only --volume would replay nothing: dumps are chosen by stack; add --stack for the stacks whose dumps to replay"
            );
        }
        if args.recipe_to.is_some() {
            bail!(
                "--recipe-to with only --volume would write nothing: the recipe is chosen by stack; add --stack for the stacks whose recipe to write"
            );
        }
    }
    let mut mapping = BTreeMap::new();
    for (a, b) in &args.map {
        if mapping.insert(a.clone(), b.clone()).is_some() {
            bail!("--map {a}=...: given twice");
        }
    }
    let request = RestoreRequest {
        name: "restore".into(),
        source,
        stacks: args.stacks.clone(),
        volumes: args.volumes.clone(),
        mode: args.mode,
        mapping,
        stop: args.stop,
        replay_dumps: args.replay_dumps,
        dumps_only: args.dumps_only,
        recipe_to: args.recipe_to.clone(),
        repository: settings.repo.clone(),
    };
    let runtime = super::runtime()?;
    let outcome = runtime.block_on(async {
        // First: from here on, Ctrl-C interrupts the restore instead of killing holdfast.
        let mut signals = super::signals()?;
        // Never beside a daemon or a backup of the same state folder.
        let _lock = match crate::state::lock::try_lock(&settings.state) {
            Err(crate::state::lock::LockError::Busy { .. }) => bail!(
                "another holdfast process (a daemon, or a backup) holds the state folder {}: with the daemon running, restore through it with a Restore spec in its specs folder, which it runs once and reports in its status; or stop the daemon first",
                settings.state.display()
            ),
            lock => lock?,
        };
        // This host's writers' lock, as before: never the lock of the host read from.
        let own = super::repository_named(settings)?;
        let _repo_lock = super::lock_repository(&own, "holdfast restore")?;
        let repository = read_from(settings, &args)?;
        let engine = Engine::open(&settings.docker).await?;
        let executor = super::executor(settings, engine.clone())?;
        super::recover_after_crash(settings, &executor).await?;
        let restorer = Restorer {
            engine,
            state: executor.state(),
            repository,
            locks: executor.locks(),
        };
        // Cancelled, an extraction stops at its next buffer and never swaps the volume.
        let bar = bar.then(super::progress_bar::Bar::start);
        let shown: Arc<dyn crate::progress::Progress> = match &bar {
            Some(bar) => bar.clone(),
            None => Arc::new(crate::progress::Silent),
        };
        let progress = Arc::new(Cancellable::new(shown));
        let work = restorer.run(&request, progress.clone());
        let outcome = super::unless_interrupted(work, &mut signals, &progress, &executor).await;
        if let Some(bar) = bar {
            bar.finish();
        }
        let outcome = outcome?;
        super::prune_history(settings, &executor.state());
        anyhow::Ok(outcome)
    });
    // A cancelled extraction may still be finishing its buffer on a blocking thread.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    let outcome = outcome?;
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            let value = serde_json::json!({
                "runId": outcome.run_id,
                "phase": outcome.phase,
                "report": outcome.report,
                "bytes": outcome.bytes,
                "errors": outcome.errors,
                "warnings": outcome.warnings,
            });
            serde_json::to_writer_pretty(&mut out, &value)?;
            writeln!(out)?;
        }
        OutputFormat::Text => {
            writeln!(
                out,
                "{:?} {} from {}: {} volume(s), {}",
                outcome.phase,
                outcome.run_id,
                if outcome.report.archive.is_empty() {
                    "-"
                } else {
                    &outcome.report.archive
                },
                outcome.report.volumes.len(),
                super::plan::human_bytes(outcome.bytes)
            )?;
            for v in &outcome.report.volumes {
                writeln!(
                    out,
                    "  volume {} -> {}{}: {} entries, {}",
                    v.volume,
                    v.into,
                    if v.created {
                        " (created)"
                    } else {
                        " (in place)"
                    },
                    v.entries,
                    super::plan::human_bytes(v.bytes)
                )?;
            }
            for d in &outcome.report.dumps {
                let counts: Vec<String> =
                    d.counts.iter().map(|(t, n)| format!("{t} {n}")).collect();
                writeln!(
                    out,
                    "  dump {} -> {}: {}",
                    d.artifact,
                    d.container,
                    if counts.is_empty() {
                        "replayed".into()
                    } else {
                        counts.join(", ")
                    }
                )?;
            }
            if !outcome.report.recipe.is_empty() {
                writeln!(
                    out,
                    "  recipe: {} file(s) written",
                    outcome.report.recipe.len()
                )?;
            }
            for e in &outcome.errors {
                writeln!(out, "error: {e}")?;
            }
            for w in &outcome.warnings {
                writeln!(out, "warning: {w}")?;
            }
        }
    }
    Ok(if outcome.phase == Phase::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    #[test]
    fn the_stop_default_is_the_restore_specs() {
        let cli = Cli::try_parse_from(["holdfast", "restore", "--from", "x"]).unwrap();
        let Command::Restore(args) = cli.command else {
            panic!("not a restore");
        };
        assert_eq!(args.stop, crate::spec::restore::DEFAULT_STOP);
        let spec: crate::spec::restore::RestoreSpec =
            serde_yaml_ng::from_str("from: {archive: x}").unwrap();
        assert_eq!(spec.stop, crate::spec::restore::DEFAULT_STOP);
    }
}
