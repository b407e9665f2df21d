//! `holdfast get <kind>`: what holdfast knows, read from the specs, the state folder and
//! the repository, in kubectl's manner: a table, a wider one, or JSON or YAML for scripts.

mod archives;
mod hosts;
mod policies;
mod notifiers;
mod repositories;
mod restores;
mod runs;
mod schedules;

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct GetArgs {
    /// What to list.
    what: What,

    /// Only the archives or runs of this policy (or Archive spec).
    #[arg(long, value_name = "NAME")]
    policy: Option<String>,

    /// Only archives whose policy or Archive spec is gone from the specs folder. They are
    /// kept: a vanished file is not consent to delete data.
    #[arg(long)]
    orphaned: bool,

    /// Archives of every host in the repository, not only this host's (`--host`), with
    /// a HOST column: what a new machine can restore. Read-only.
    #[arg(long)]
    all_hosts: bool,

    /// `table` for people (`wide` adds columns), `json` or `yaml` for scripts.
    #[arg(long, short, value_enum, default_value_t = Format::Table)]
    output: Format,

    #[command(flatten)]
    pub(in crate::cli) specs: crate::settings::SpecsFlag,

    #[command(flatten)]
    pub(in crate::cli) state: crate::settings::StateFlag,

    #[command(flatten)]
    pub(in crate::cli) repository: crate::settings::RepositoryFlags,

    #[command(flatten)]
    pub(in crate::cli) repo: crate::settings::RepoFlag,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum What {
    /// The archives in the repository, read from their manifests.
    Archives,
    /// The BackupPolicies in the specs folder: schedule, last run, next run, archives.
    Policies,
    /// The run history, newest first: backups, archives and restores.
    Runs,
    /// The restores run (from Restore specs or `holdfast restore`), and Restore specs
    /// not run yet.
    Restores,
    /// The Repositories in the specs folder: where each keeps archives, in which format
    /// (archives or restic), whether it encrypts and whether holdfast may delete there.
    Repositories,
    /// The Notifiers in the specs folder and policies' own notify urls: where each sends
    /// (secrets replaced), which events, and what it covers.
    Notifiers,
    /// The hosts whose daemons write the repository (`--repo` names another), from the
    /// summaries they publish: last seen, objects, failing, next run, ok, stale or failing.
    Hosts,
    /// The ContainerSchedules in the specs folder: which action on which containers,
    /// when, after which policies, and how the last one ended.
    #[value(name = "containerschedules", alias = "schedules")]
    ContainerSchedules,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Wide,
    Json,
    Yaml,
}

pub fn run(settings: &Settings, args: GetArgs) -> anyhow::Result<ExitCode> {
    if args.orphaned && args.what != What::Archives {
        bail!("--orphaned lists archives only: use `holdfast get archives --orphaned`");
    }
    if args.all_hosts && args.what != What::Archives {
        bail!("--all-hosts lists archives only: use `holdfast get archives --all-hosts`");
    }
    if args.policy.is_some() && !matches!(args.what, What::Archives | What::Runs) {
        bail!("--policy narrows archives or runs only: use `get archives` or `get runs`");
    }
    match args.what {
        What::Archives => archives::run(settings, &args),
        What::Policies => policies::run(settings, &args),
        What::Runs => runs::run(settings, &args),
        What::Restores => restores::run(settings, &args),
        What::Repositories => repositories::run(settings, &args),
        What::Notifiers => notifiers::run(settings, &args),
        What::Hosts => hosts::run(settings, &args),
        What::ContainerSchedules => schedules::run(settings, &args),
    }
}

/// The state database if the state folder has one, read-only: listing never makes a state
/// folder, nor waits for a daemon's writes.
fn state(settings: &Settings) -> anyhow::Result<Option<crate::state::StateDb>> {
    if !settings.state.join("holdfast.db").exists() {
        return Ok(None);
    }
    Ok(Some(crate::state::StateDb::open_reader(&settings.state)?))
}

/// Prints `rows` as JSON or YAML, or as a table of `header` (`wide` more columns) with
/// the cells `cells` gives each row.
fn print<T: Serialize>(
    format: Format,
    rows: &[T],
    header: &[&str],
    wide_header: &[&str],
    cells: impl Fn(&T) -> (Vec<String>, Vec<String>),
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, rows)?;
            writeln!(out)?;
        }
        Format::Yaml => write!(out, "{}", serde_yaml_ng::to_string(rows)?)?,
        Format::Table | Format::Wide => {
            let wide = format == Format::Wide;
            let mut head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
            if wide {
                head.extend(wide_header.iter().map(|h| h.to_string()));
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let (mut narrow, more) = cells(r);
                    if wide {
                        narrow.extend(more);
                    }
                    narrow
                })
                .collect();
            table_to(&mut out, &head, &table)?;
        }
    }
    Ok(())
}

/// Columns padded to their widest cell, three spaces apart, as kubectl prints them.
fn table_to(out: &mut impl Write, header: &[String], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows.iter().map(|r| r.as_slice())) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("   ").trim_end())?;
    }
    Ok(())
}

/// How long ago, as kubectl says it: `45s`, `12m`, `5h`, `3d`.
fn age(since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    span((now - since).num_seconds())
}

/// `in 5h` for a time to come, `12m ago` for one past.
fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (at - now).num_seconds();
    if seconds >= 0 {
        format!("in {}", span(seconds))
    } else {
        format!("{} ago", span(-seconds))
    }
}

fn span(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A run's duration, `-` while it runs.
fn duration(start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> String {
    end.map_or_else(|| "-".into(), |end| span((end - start).num_seconds()))
}

fn or_dash(text: Option<String>) -> String {
    text.filter(|t| !t.is_empty()).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectls() {
        let now = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(1000);
        let ago = |s: i64| now - chrono::Duration::seconds(s);
        assert_eq!(age(ago(5), now), "5s");
        assert_eq!(age(ago(125), now), "2m");
        assert_eq!(age(ago(3 * 3600 + 5), now), "3h");
        assert_eq!(age(ago(3 * 86_400), now), "3d");
        assert_eq!(age(ago(-5), now), "0s");
        assert_eq!(relative(ago(-7200), now), "in 2h");
        assert_eq!(relative(ago(90), now), "1m ago");
    }

    #[test]
    fn tables_align_their_columns() {
        let mut out = Vec::new();
        let header = ["NAME".to_string(), "PHASE".to_string()];
        let rows = vec![
            vec!["a-long-name".to_string(), "Succeeded".to_string()],
            vec!["b".to_string(), String::new()],
        ];
        table_to(&mut out, &header, &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME          PHASE\na-long-name   Succeeded\nb\n"
        );
    }
}
