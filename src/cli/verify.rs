use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Archive ids to verify, as `holdfast get archives` lists them.
    #[arg(value_name = "ARCHIVE_ID", required_unless_present = "policy")]
    ids: Vec<String>,

    /// Verify every archive of this policy (or Archive spec) instead.
    #[arg(long, value_name = "NAME", conflicts_with = "ids")]
    policy: Option<String>,
}

/// Reads every byte of the archives back: each artifact's sha256 recomputed, each tar
/// decompressed and walked to its end. The result is recorded in the archive folder, so a
/// failure makes the archive Corrupt everywhere holdfast shows it. Exit 1 if any failed.
pub fn run(settings: &Settings, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let repo = super::repository(settings);
    let entries = crate::repo::catalog::scan(&repo)?;
    let chosen: Vec<&crate::repo::catalog::Entry> = match &args.policy {
        Some(name) => {
            let mine: Vec<_> = entries.iter().filter(|e| &e.group == name).collect();
            if mine.is_empty() {
                bail!(
                    "no archives of `{name}` in {}",
                    settings.repository.display()
                );
            }
            mine
        }
        None => {
            let mut chosen = Vec::new();
            for id in &args.ids {
                match entries.iter().find(|e| &e.id == id) {
                    Some(e) => chosen.push(e),
                    None => bail!("no archive `{id}` in {}", settings.repository.display()),
                }
            }
            chosen
        }
    };
    let mut failed = false;
    for entry in chosen {
        let started = std::time::Instant::now();
        let result =
            crate::repo::verify::verify_archive(&repo, &entry.group, &entry.id, |path, problem| {
                if let Some(problem) = problem {
                    eprintln!("  {problem}");
                } else {
                    eprintln!("  {path}: ok");
                }
            });
        match result {
            Ok(v) if v.ok => println!(
                "{}: ok ({} artifacts, {}, {:.1} s)",
                entry.id,
                v.artifacts,
                super::plan::human_bytes(entry.bytes),
                started.elapsed().as_secs_f64()
            ),
            Ok(v) => {
                failed = true;
                println!(
                    "{}: CORRUPT ({} of {} artifacts failed)",
                    entry.id,
                    v.problems.len(),
                    v.artifacts
                );
            }
            Err(e) => {
                failed = true;
                println!("{}: CORRUPT ({e})", entry.id);
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
