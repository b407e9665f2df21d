use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{GetArgs, age, duration, or_dash};
use crate::restore::RestoreReport;
use crate::settings::Settings;
use crate::spec::Resource;
use crate::spec::common::Phase;
use crate::state::RunFilter;

/// At most this many restore runs are listed, newest first.
const LIMIT: usize = 500;

/// One restore run (or a Restore spec not run yet) as `get restores` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RestoreRow {
    /// The run id; a Restore spec's name when it has not run.
    name: String,
    /// The Restore spec it ran for; `None` for `holdfast restore`.
    spec: Option<String>,
    /// The archive restored from.
    from: Option<String>,
    phase: Phase,
    start_time: Option<DateTime<Utc>>,
    completion_time: Option<DateTime<Utc>>,
    bytes: u64,
    error: Option<String>,
    /// What it put back, as recorded.
    restored: Option<RestoreReport>,
}

pub fn run(settings: &Settings, args: &GetArgs) -> anyhow::Result<ExitCode> {
    let report = crate::cli::specs::load(settings);
    let specs: Vec<(String, String)> = report
        .valid_objects()
        .filter_map(|r| match r {
            Resource::Restore(r) => Some((
                r.metadata.name.clone(),
                r.spec
                    .from
                    .archive
                    .clone()
                    .or_else(|| r.spec.from.policy.clone())
                    .unwrap_or_default(),
            )),
            _ => None,
        })
        .collect();
    let mut rows = Vec::new();
    if let Some(state) = super::state(settings)? {
        let runs = state
            .runs_filtered(&RunFilter {
                kind: Some("Restore".into()),
                limit: LIMIT,
                ..RunFilter::default()
            })?
            .unwrap_or_default();
        for run in runs {
            // A run's details are what it restored; unreadable ones are left out, not fatal.
            let restored = state
                .restore_details(&run.id)?
                .and_then(|text| serde_json::from_str::<RestoreReport>(&text).ok());
            let spec = specs
                .iter()
                .any(|(name, _)| name == &run.name)
                .then(|| run.name.clone());
            rows.push(RestoreRow {
                name: run.id,
                spec,
                from: run.archive_id,
                phase: run.phase,
                start_time: Some(run.start_time),
                completion_time: run.completion_time,
                // What it wrote back (a restore stores nothing).
                bytes: run.source_bytes.unwrap_or_default(),
                error: run.error,
                restored,
            });
        }
    }
    // A Restore spec that never ran here waits for the daemon.
    for (name, from) in specs {
        if !rows.iter().any(|r| r.spec.as_deref() == Some(&name)) {
            rows.push(RestoreRow {
                name: name.clone(),
                spec: Some(name),
                from: Some(from),
                phase: Phase::Pending,
                start_time: None,
                completion_time: None,
                bytes: 0,
                error: None,
                restored: None,
            });
        }
    }
    if rows.is_empty() {
        eprintln!(
            "no restores ({})",
            crate::cli::paths(
                settings,
                &[crate::cli::Path::Specs, crate::cli::Path::State]
            )
        );
    }
    let now = Utc::now();
    super::print(
        args.output,
        &rows,
        &[
            "NAME", "FROM", "PHASE", "VOLUMES", "DUMPS", "DURATION", "AGE",
        ],
        &["SPEC", "SIZE", "RECIPE FILES", "ERROR"],
        |r| {
            let restored = r.restored.as_ref();
            (
                vec![
                    r.name.clone(),
                    or_dash(r.from.clone()),
                    format!("{:?}", r.phase),
                    restored.map_or(0, |d| d.volumes.len()).to_string(),
                    restored.map_or(0, |d| d.dumps.len()).to_string(),
                    r.start_time
                        .map_or_else(|| "-".into(), |s| duration(s, r.completion_time)),
                    or_dash(r.start_time.map(|s| age(s, now))),
                ],
                vec![
                    r.spec
                        .clone()
                        .unwrap_or_else(|| "(holdfast restore)".into()),
                    crate::cli::plan::human_bytes(r.bytes),
                    restored.map_or(0, |d| d.recipe.len()).to_string(),
                    or_dash(r.error.clone()),
                ],
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
