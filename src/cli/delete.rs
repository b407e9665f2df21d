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

    #[command(flatten)]
    pub(super) state: crate::settings::StateFlag,

    #[command(flatten)]
    pub(super) repository: crate::settings::RepositoryFlags,

    #[command(flatten)]
    pub(super) repo: crate::settings::RepoFlag,

    #[command(flatten)]
    pub(super) specs: crate::settings::SpecsFlag,
}

/// Deletes archives on purpose, e.g. those `holdfast get archives --orphaned` lists, which
/// holdfast never deletes by itself. Each goes through the deletion journal, so a crash
/// midway is finished at the next start.
pub fn run(settings: &Settings, args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let repo = super::repository_named(settings)?;
    if repo.append_only() {
        bail!(
            "the repository `{}` is appendOnly: holdfast never deletes there; delete through the storage itself (a bucket lifecycle rule, say)",
            repo.name()
        );
    }
    // A deletion beside a running daemon would leave its catalog listing the archive as
    // Missing: deleting is a writer's work, refused while another writer holds the lock.
    // Taken before the listing, which it may bring up to date.
    let _repo_lock = if args.yes {
        Some(super::lock_repository(&repo, "holdfast delete")?)
    } else {
        None
    };
    // A deletion a crash interrupted is finished first: its archive is out of every
    // listing already, and asking for it again must not say it does not exist.
    let finished = if args.yes {
        finish_interrupted_deletions(settings, &repo)?
    } else {
        Vec::new()
    };
    let entries = crate::repo::catalog::scan(&repo)?;
    let mut chosen = Vec::new();
    for id in args.ids.iter().filter(|id| !finished.contains(id)) {
        match entries.iter().find(|e| &e.id == id) {
            Some(e) => chosen.push(e),
            None => bail!(
                "no archive `{id}` ({})",
                super::paths(settings, &[super::Path::Repository])
            ),
        }
    }
    for id in &finished {
        if args.ids.contains(id) {
            println!("deleted {id} (finishing a deletion a crash had interrupted)");
        } else {
            eprintln!("finished a deletion a crash had interrupted: {id}");
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
    let mut deleted = 0;
    for e in chosen {
        match crate::repo::prune::delete_archive(
            &state,
            &repo,
            &e.group,
            &e.id,
            "deleted with holdfast delete",
        )? {
            Ok(()) => {
                println!("deleted {}", e.id);
                deleted += 1;
            }
            Err(message) => {
                eprintln!("error: {message}");
                failed = true;
            }
        }
    }
    // In a restic repository the snapshots are forgotten; their data goes now, once.
    if deleted > 0 {
        match crate::repo::prune::reclaim(&repo) {
            Ok(Some(freed)) => println!(
                "the restic repository freed {}",
                super::plan::human_bytes(freed)
            ),
            Ok(None) => {}
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

/// Finishes the deletions a crash interrupted, unless another holdfast process holds the
/// state folder (then they are its own business). Returns the archive ids finished.
fn finish_interrupted_deletions(
    settings: &Settings,
    repo: &crate::repo::Repository,
) -> anyhow::Result<Vec<String>> {
    let Ok(_lock) = crate::state::lock::try_lock(&settings.state) else {
        return Ok(Vec::new());
    };
    let state = crate::state::StateDb::open(&settings.state)?;
    Ok(crate::repo::prune::resume(&state, repo)?)
}
