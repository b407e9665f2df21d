use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use serde::Serialize;

use super::OutputFormat;
use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Archive ids to verify, as `holdfast get archives` lists them.
    #[arg(value_name = "ARCHIVE_ID", required_unless_present = "policy")]
    ids: Vec<String>,

    /// Verify every archive of this policy (or Archive spec) instead.
    #[arg(long, value_name = "NAME", conflicts_with = "ids")]
    policy: Option<String>,

    /// In a restic repository, read back only this share of the archive's data (a
    /// random sample of its pack files, in percent); its structure is checked in full.
    /// Without it every byte is read. Archives of holdfast's own format are always read
    /// in full.
    #[arg(long, value_name = "PERCENT", value_parser = percent)]
    read_data_subset: Option<f64>,

    /// Verify this other host's archives (in its folder of the repository). The result is
    /// printed, not recorded: that folder is only ever written by its own host.
    #[arg(long, value_name = "NAME")]
    from_host: Option<String>,

    /// `text` for people, `json` for scripts.
    #[arg(long, short, value_enum, default_value_t)]
    output: OutputFormat,

    #[command(flatten)]
    pub(super) repository: crate::settings::RepositoryFlags,

    #[command(flatten)]
    pub(super) repo: crate::settings::RepoFlag,

    #[command(flatten)]
    pub(super) specs: crate::settings::SpecsFlag,
}

/// A share in percent: more than 0, at most 100.
fn percent(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{text}` is not a number of percent (e.g. 10)"))?;
    if !(value > 0.0 && value <= 100.0) {
        return Err(format!(
            "`{text}`: a share of the data is more than 0 and at most 100 percent"
        ));
    }
    Ok(value)
}

/// What `verify -o json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Verified {
    repository: String,
    host: String,
    archives: Vec<ArchiveVerified>,
}

/// One archive's verification.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ArchiveVerified {
    id: String,
    policy: String,
    ok: bool,
    artifacts: usize,
    /// The archive's stored size.
    bytes: u64,
    seconds: f64,
    /// What failed, one line per artifact.
    problems: Vec<String>,
    /// Why the archive could not be read at all.
    error: Option<String>,
}

/// Reads every byte of the archives back: each artifact's sha256 recomputed, each tar
/// decompressed and walked to its end; in a restic repository, restic's check of the
/// archive's snapshots, reading all their data (or `--read-data-subset` of it). The
/// result is recorded in the archive folder, so a failure makes the archive Corrupt
/// everywhere holdfast shows it; another host's archives (`--from-host`) are only read.
/// Exit 1 if any failed.
pub fn run(settings: &Settings, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let repo = match &args.from_host {
        Some(host) => super::repository_of(settings, host)?,
        None => super::repository_named(settings)?,
    };
    let entries = crate::repo::catalog::scan(&repo)?;
    let chosen: Vec<&crate::repo::catalog::Entry> = match &args.policy {
        Some(name) => {
            let mine: Vec<_> = entries.iter().filter(|e| &e.group == name).collect();
            if mine.is_empty() {
                bail!(
                    "no archives of `{name}` ({})",
                    super::paths(settings, &[super::Path::Repository])
                );
            }
            mine
        }
        None => {
            let mut chosen = Vec::new();
            for id in &args.ids {
                match entries.iter().find(|e| &e.id == id) {
                    Some(e) => chosen.push(e),
                    None => bail!(
                        "no archive `{id}` ({})",
                        super::paths(settings, &[super::Path::Repository])
                    ),
                }
            }
            chosen
        }
    };
    let text = args.output == OutputFormat::Text;
    let read = args
        .read_data_subset
        .map_or(crate::repo::verify::ReadData::All, |p| {
            crate::repo::verify::ReadData::Sample(p)
        });
    let mut results = Vec::new();
    for entry in chosen {
        let started = std::time::Instant::now();
        let on_artifact = |path: &str, problem: Option<&str>| match problem {
            Some(problem) if text => eprintln!("  {problem}"),
            None if text => eprintln!("  {path}: ok"),
            _ => {}
        };
        // Another host's folder is only read: the result is printed, not recorded there.
        let result = if args.from_host.is_some() {
            crate::repo::verify::check_archive(&repo, &entry.group, &entry.id, read, on_artifact)
        } else {
            crate::repo::verify::verify_archive(&repo, &entry.group, &entry.id, read, on_artifact)
        };
        let mut verified = ArchiveVerified {
            id: entry.id.clone(),
            policy: entry.group.clone(),
            ok: false,
            artifacts: 0,
            bytes: entry.bytes,
            seconds: 0.0,
            problems: Vec::new(),
            error: None,
        };
        match result {
            Ok(v) => {
                verified.ok = v.ok;
                verified.artifacts = v.artifacts;
                verified.problems = v.problems;
            }
            Err(e) => verified.error = Some(e.to_string()),
        }
        verified.seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        if text {
            print_verified(&verified);
        }
        results.push(verified);
    }
    let failed = results.iter().any(|v| !v.ok);
    if !text {
        let mut out = std::io::stdout().lock();
        let value = Verified {
            repository: settings.repository.display().to_string(),
            host: args.from_host.clone().unwrap_or_else(|| settings.host()),
            archives: results,
        };
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `<id>: ok (...)` or `<id>: CORRUPT (...)`.
fn print_verified(v: &ArchiveVerified) {
    match &v.error {
        Some(e) => println!("{}: CORRUPT ({e})", v.id),
        None if v.ok => println!(
            "{}: ok ({} artifacts, {}, {:.1} s)",
            v.id,
            v.artifacts,
            super::plan::human_bytes(v.bytes),
            v.seconds
        ),
        None => println!(
            "{}: CORRUPT ({} of {} artifacts failed)",
            v.id,
            v.problems.len(),
            v.artifacts
        ),
    }
}
