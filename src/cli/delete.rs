use std::process::ExitCode;

use anyhow::bail;
use clap::Args;

use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Archive ids to delete, as `holdfast get archives` lists them.
    #[arg(required = true, value_name = "ARCHIVE_ID")]
    ids: Vec<String>,

    /// Really delete. Without it, only say what would be deleted.
    #[arg(long)]
    yes: bool,
}

/// Deletes archives on purpose, e.g. those `holdfast get archives --orphaned` lists, which
/// holdfast never deletes by itself. Each goes through the deletion journal, so a crash
/// midway is finished at the next start.
pub fn run(settings: &Settings, args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let repo = super::repository(settings);
    // A deletion beside a running daemon would leave its catalog listing the archive as
    // Missing: deleting is a writer's work, refused while another writer holds the lock.
    // Taken before the listing, which it may bring up to date.
    let _repo_lock = if args.yes {
        Some(super::lock_repository(&repo, "holdfast delete")?)
    } else {
        None
    };
    let entries = crate::repo::catalog::scan(&repo)?;
    let mut chosen = Vec::new();
    for id in &args.ids {
        match entries.iter().find(|e| &e.id == id) {
            Some(e) => chosen.push(e),
            None => bail!("no archive `{id}` in {}", settings.repository.display()),
        }
    }
    if !args.yes {
        for e in &chosen {
            println!(
                "would delete {} ({})",
                e.id,
                super::plan::human_bytes(e.bytes)
            );
        }
        eprintln!("nothing deleted; add --yes to delete");
        return Ok(ExitCode::SUCCESS);
    }
    let state = crate::state::StateDb::open(&settings.state)?;
    let mut failed = false;
    for e in chosen {
        match crate::repo::prune::delete_archive(
            &state,
            &repo,
            &e.group,
            &e.id,
            "deleted with holdfast delete",
        )? {
            Ok(()) => println!("deleted {}", e.id),
            Err(message) => {
                eprintln!("error: {message}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
