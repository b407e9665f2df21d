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

    /// `text` for people, `json` for scripts.
    #[arg(long, short, value_enum, default_value_t)]
    output: OutputFormat,
}

/// Exit code 0 when the run succeeded, 1 when it failed or partially failed.
pub fn run(settings: &Settings, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let report = specs::load(settings);
    let mut request = specs::backup_request(&report, settings, &args.name)?;
    request.dry_run = args.dry_run;
    let runtime = super::runtime()?;
    let outcome = runtime.block_on(async {
        // First: from here on, Ctrl-C interrupts the run instead of killing holdfast.
        let mut signals = super::signals()?;
        let _lock = crate::state::lock::try_lock(&settings.state)?;
        // And no second writer on this host's folder of the repository, whatever its state.
        let _repo_lock = super::lock_repository(&super::repository(settings), "holdfast backup")?;
        let engine = Engine::connect(settings.docker_host.as_deref()).await?;
        let executor = super::executor(settings, engine)?;
        super::recover_after_crash(settings, &executor).await?;
        // A progress line on a terminal; plain log lines otherwise.
        let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr()) && !args.dry_run;
        let line = interactive.then(super::progress_line::ProgressLine::start);
        let shown: Arc<dyn crate::progress::Progress> = match &line {
            Some(line) => line.clone(),
            None => Arc::new(crate::progress::Silent),
        };
        let progress = Arc::new(Cancellable::new(shown));
        let run = executor.run(&request, progress.clone());
        let outcome = super::unless_interrupted(run, &mut signals, &progress, &executor).await;
        if let Some(line) = line {
            line.finish();
        }
        outcome
    });
    // A cancelled run's archive threads may still be busy; what they leave is a
    // `.partial` that the daemon's next start removes, so do not wait for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let outcome = outcome?;
    let mut out = std::io::stdout().lock();
    match args.output {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &outcome)?;
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
                "{:?}{} {what}: {} artifacts, {}{}",
                outcome.phase,
                if outcome.dry_run { " (dry run)" } else { "" },
                outcome.artifacts,
                super::plan::human_bytes(outcome.bytes),
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
        }
    }
    Ok(if outcome.phase == Phase::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
