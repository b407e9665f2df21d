//! `holdfast get hosts`: every host sharing the repository, from the summaries their
//! daemons publish there ([`crate::repo::hosts`]). Reading only: no lock, no state folder.

use std::process::ExitCode;

use chrono::Utc;

use super::{GetArgs, age, or_dash, relative};
use crate::repo::hosts::{HostStatus, rows};
use crate::settings::Settings;

pub fn run(settings: &Settings, args: &GetArgs) -> anyhow::Result<ExitCode> {
    let repository = crate::cli::repository_named(settings)?;
    let now = Utc::now();
    let hosts = rows(&repository, now)?;
    if hosts.is_empty() {
        let place = repository
            .local_top()
            .map_or_else(|| repository.describe(), |top| top.display().to_string());
        eprintln!("no host summaries in {place} (a running `holdfast run` writes one)");
    }
    super::print(
        args.output,
        &hosts,
        &[
            "HOST",
            "LAST SEEN",
            "OBJECTS",
            "FAILING",
            "NEXT RUN",
            "STATUS",
        ],
        &["VERSION", "LABELS"],
        |h| {
            (
                vec![
                    h.host.clone(),
                    age(h.summary.written_at, now),
                    h.objects.to_string(),
                    h.failing.to_string(),
                    or_dash(h.next_run.map(|t| relative(t, now))),
                    match h.status {
                        HostStatus::Ok => "ok",
                        HostStatus::Stale => "stale",
                        HostStatus::Failing => "failing",
                    }
                    .to_string(),
                ],
                vec![
                    h.summary.version.clone(),
                    or_dash(Some(
                        h.summary
                            .labels
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(","),
                    )),
                ],
            )
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
