use std::process::ExitCode;

use chrono::Utc;

use super::{GetArgs, age, duration, or_dash};
use crate::settings::Settings;
use crate::state::{RunFilter, RunRecord};

/// At most this many runs are listed, newest first (the HTTP API pages through more).
const LIMIT: usize = 500;

pub fn run(settings: &Settings, args: &GetArgs) -> anyhow::Result<ExitCode> {
    let runs: Vec<RunRecord> = match super::state(settings)? {
        Some(state) => state
            .runs_filtered(&RunFilter {
                name: args.policy.clone(),
                limit: LIMIT,
                ..RunFilter::default()
            })?
            .unwrap_or_default(),
        None => Vec::new(),
    };
    if runs.is_empty() {
        eprintln!(
            "no runs ({})",
            crate::cli::paths(settings, &[crate::cli::Path::State])
        );
    }
    let now = Utc::now();
    super::print(
        args.output,
        &runs,
        &[
            "NAME", "KIND", "OBJECT", "PHASE", "ARCHIVE", "DURATION", "AGE",
        ],
        &["SIZE", "DOWNTIME", "DRY RUN", "ERROR"],
        |r| {
            (
                vec![
                    r.id.clone(),
                    r.kind.clone(),
                    r.name.clone(),
                    format!("{:?}", r.phase),
                    or_dash(r.archive_id.clone()),
                    duration(r.start_time, r.completion_time),
                    age(r.start_time, now),
                ],
                vec![
                    // A backup's size is what it stored; a restore's, what it wrote back.
                    crate::cli::plan::human_bytes(if r.kind == "Restore" {
                        r.source_bytes.unwrap_or_default()
                    } else {
                        r.bytes
                    }),
                    format!("{:.1}s", r.downtime_seconds),
                    r.dry_run.to_string(),
                    or_dash(r.error.clone()),
                ],
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
