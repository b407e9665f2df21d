use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{GetArgs, age, or_dash, relative};
use crate::repo::catalog::{self, Catalog};
use crate::settings::Settings;
use crate::spec::Resource;
use crate::spec::common::Retention;

/// One BackupPolicy as `get policies` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyRow {
    name: String,
    schedule: String,
    timezone: Option<String>,
    suspend: bool,
    /// The spec file it is declared in.
    file: String,
    /// When holdfast first saw it (the daemon records it), if known.
    first_seen: Option<DateTime<Utc>>,
    last_run: Option<crate::state::RunRecord>,
    last_successful_time: Option<DateTime<Utc>>,
    next_schedule_time: Option<DateTime<Utc>>,
    archives: usize,
    bytes: u64,
    retention: Option<Retention>,
}

pub fn run(settings: &Settings, args: &GetArgs) -> anyhow::Result<ExitCode> {
    let report = crate::cli::specs::load_existing(settings)?;
    let now = Utc::now();
    let catalog = Catalog::from_entries(catalog::scan(&crate::cli::repository(settings))?);
    let state = super::state(settings)?;
    let memory = match &state {
        Some(state) => state.all_objects()?,
        None => Vec::new(),
    };
    let mut rows = Vec::new();
    for file in &report.files {
        for object in &file.objects {
            let Some(Resource::BackupPolicy(policy)) = &object.resource else {
                continue;
            };
            let name = &policy.metadata.name;
            let (last_run, last_success) = match &state {
                Some(state) => state.last_runs("BackupPolicy", name)?,
                None => (None, None),
            };
            let next_schedule_time = (!policy.spec.suspend)
                .then(|| crate::schedule::Schedule::new(name, &policy.spec).ok())
                .flatten()
                .and_then(|s| s.next_nominal_after(now).map(|n| s.start_time(n)));
            let archives = catalog.group(name);
            rows.push(PolicyRow {
                name: name.clone(),
                schedule: policy.spec.schedule.0.clone(),
                timezone: policy.spec.timezone.as_ref().map(|t| t.0.clone()),
                suspend: policy.spec.suspend,
                file: file.path.display().to_string(),
                first_seen: memory
                    .iter()
                    .find(|(k, n, _)| k == "BackupPolicy" && n == name)
                    .and_then(|(_, _, m)| m.first_seen),
                last_run,
                last_successful_time: last_success.and_then(|r| r.completion_time),
                next_schedule_time,
                archives: archives.len(),
                bytes: archives.iter().map(|e| e.bytes).sum(),
                retention: policy.spec.retention.clone(),
            });
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if rows.is_empty() {
        eprintln!(
            "no BackupPolicies ({})",
            crate::cli::paths(settings, &[crate::cli::Path::Specs])
        );
    }
    super::print(
        args.output,
        &rows,
        &[
            "NAME", "SCHEDULE", "SUSPEND", "LAST RUN", "PHASE", "NEXT", "ARCHIVES", "AGE",
        ],
        &["TIMEZONE", "LAST SUCCESS", "SIZE", "RETENTION", "FILE"],
        |r| {
            (
                vec![
                    r.name.clone(),
                    r.schedule.clone(),
                    r.suspend.to_string(),
                    or_dash(r.last_run.as_ref().map(|l| relative(l.start_time, now))),
                    or_dash(r.last_run.as_ref().map(|l| format!("{:?}", l.phase))),
                    or_dash(r.next_schedule_time.map(|t| relative(t, now))),
                    r.archives.to_string(),
                    or_dash(r.first_seen.map(|t| age(t, now))),
                ],
                vec![
                    r.timezone.clone().unwrap_or_else(|| "UTC".into()),
                    or_dash(r.last_successful_time.map(|t| relative(t, now))),
                    crate::cli::plan::human_bytes(r.bytes),
                    or_dash(r.retention.as_ref().map(retention_text)),
                    r.file.clone(),
                ],
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `last 3, daily 7, within 48h`; `dry run` when the rules only say what they would do.
fn retention_text(rules: &Retention) -> String {
    let mut parts = Vec::new();
    for (n, what) in [
        (rules.keep_last, "last"),
        (rules.keep_hourly, "hourly"),
        (rules.keep_daily, "daily"),
        (rules.keep_weekly, "weekly"),
        (rules.keep_monthly, "monthly"),
        (rules.keep_yearly, "yearly"),
    ] {
        if let Some(n) = n.filter(|n| *n > 0) {
            parts.push(format!("{what} {n}"));
        }
    }
    if let Some(within) = &rules.keep_within {
        parts.push(format!("within {within}"));
    }
    if rules.dry_run {
        parts.push("dry run".into());
    }
    parts.join(", ")
}
