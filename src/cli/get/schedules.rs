//! `holdfast get containerschedules`: the ContainerSchedules in the specs folder, what each
//! does to which containers and when, and how its last action ended.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{GetArgs, or_dash, relative};
use crate::settings::Settings;
use crate::spec::Resource;

/// One ContainerSchedule as `get containerschedules` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ScheduleRow {
    name: String,
    action: String,
    /// The cron schedule, or `at <runAt>` for a one-time action.
    when: String,
    timezone: Option<String>,
    suspend: bool,
    /// The stacks, containers and selector, in one line.
    targets: String,
    after: Vec<String>,
    /// The spec file it is declared in.
    file: String,
    last_run: Option<crate::state::RunRecord>,
    next_schedule_time: Option<DateTime<Utc>>,
}

pub fn run(settings: &Settings, args: &GetArgs) -> anyhow::Result<ExitCode> {
    let report = crate::cli::specs::load_existing(settings)?;
    let now = Utc::now();
    let state = super::state(settings)?;
    let mut rows = Vec::new();
    for file in &report.files {
        for object in &file.objects {
            let Some(Resource::ContainerSchedule(schedule)) = &object.resource else {
                continue;
            };
            let name = &schedule.metadata.name;
            let spec = &schedule.spec;
            let last_run = match &state {
                Some(state) => state.last_runs("ContainerSchedule", name)?.0,
                None => None,
            };
            let next_schedule_time = match (&spec.schedule, &spec.run_at) {
                _ if spec.suspend => None,
                (Some(cron), _) => crate::schedule::Schedule::from_cron(
                    name,
                    cron,
                    spec.timezone.as_ref(),
                    std::time::Duration::ZERO,
                )
                .ok()
                .and_then(|s| s.next_nominal_after(now)),
                (None, Some(at)) => at.parse().ok().filter(|_| last_run.is_none()),
                (None, None) => None,
            };
            let mut targets: Vec<String> = Vec::new();
            targets.extend(spec.targets.stacks.iter().map(|s| format!("stack {s}")));
            targets.extend(spec.targets.containers.iter().cloned());
            if let Some(selector) = &spec.targets.selector {
                targets.extend(
                    selector
                        .match_labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}")),
                );
            }
            rows.push(ScheduleRow {
                name: name.clone(),
                action: spec.action.to_string(),
                when: match (&spec.schedule, &spec.run_at) {
                    (Some(cron), _) => cron.0.clone(),
                    (None, Some(at)) => format!("at {}", at.0),
                    (None, None) => String::new(),
                },
                timezone: spec.timezone.as_ref().map(|t| t.0.clone()),
                suspend: spec.suspend,
                targets: targets.join(", "),
                after: spec.after.clone(),
                file: file.path.display().to_string(),
                last_run,
                next_schedule_time,
            });
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if rows.is_empty() {
        eprintln!(
            "no ContainerSchedules ({})",
            crate::cli::paths(settings, &[crate::cli::Path::Specs])
        );
    }
    super::print(
        args.output,
        &rows,
        &[
            "NAME", "ACTION", "SCHEDULE", "TARGETS", "SUSPEND", "LAST RUN", "PHASE", "NEXT",
        ],
        &["TIMEZONE", "AFTER", "MESSAGE", "FILE"],
        |r| {
            (
                vec![
                    r.name.clone(),
                    r.action.clone(),
                    r.when.clone(),
                    r.targets.clone(),
                    r.suspend.to_string(),
                    or_dash(r.last_run.as_ref().map(|l| relative(l.start_time, now))),
                    or_dash(r.last_run.as_ref().map(|l| l.phase.as_str().to_string())),
                    or_dash(r.next_schedule_time.map(|t| relative(t, now))),
                ],
                vec![
                    r.timezone.clone().unwrap_or_else(|| "UTC".into()),
                    or_dash(Some(r.after.join(", "))),
                    or_dash(r.last_run.as_ref().and_then(|l| l.error.clone())),
                    r.file.clone(),
                ],
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
