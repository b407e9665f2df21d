//! Deleting archives through the deletion journal: marked (durably), taken out of
//! sight, removed, forgotten; a crash in the middle is finished by [`resume`].
//!
//! In a restic-format repository an archive is its manifest and the snapshots it names.
//! The manifest goes first, so the archive is out of every listing before any of its
//! snapshots is forgotten: a crash leaves either a listed archive whose snapshots all
//! exist, or nothing listed and the journal's mark, whose resumption forgets the
//! snapshots tagged with the archive's id. After a pass that deleted archives there,
//! [`reclaim`] frees the data no snapshot needs any more.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::prune::PruneError;
use super::storage::Repository;
use crate::fault;
use crate::state::StateDb;

/// Frees the data of forgotten snapshots, once after archives were deleted from a
/// restic-format repository (restic's prune: it reads every snapshot's trees, so it runs
/// once per pass, not per archive). Returns the bytes freed; `None` for a repository in
/// holdfast's own format, where deleting an archive frees its bytes at once. Packs no
/// snapshot needs are marked for deletion and removed by a prune at least 23 hours
/// later, so a writer of another host that is uploading at the same time loses nothing.
pub fn reclaim(repo: &Repository) -> Result<Option<u64>, String> {
    let Some(restic) = repo.restic() else {
        return Ok(None);
    };
    if repo.append_only() {
        return Ok(None);
    }
    match restic.prune() {
        Ok(freed) => {
            info!(
                repository = repo.name(),
                freed_bytes = freed,
                "pruned the restic repository"
            );
            Ok(Some(freed))
        }
        Err(e) => {
            warn!(
                repository = repo.name(),
                "pruning the restic repository: {e}"
            );
            Err(format!("pruning the restic repository: {e}"))
        }
    }
}

/// Removes one archive from the repository: its manifest (and, in holdfast's own
/// format, its artifacts) out of every listing first, then, in a restic repository, the
/// snapshots its manifest names and those tagged with its id. Removing what is gone
/// already succeeds, so it may be repeated after a crash.
fn remove(repo: &Repository, group: &str, id: &str) -> Result<(), String> {
    if repo.append_only() {
        return Err(format!(
            "the repository `{}` is appendOnly: holdfast never deletes there",
            repo.name()
        ));
    }
    let Some(restic) = repo.restic() else {
        return repo.delete(group, id).map_err(|e| e.to_string());
    };
    // The snapshots the manifest names, read before it goes; a manifest gone already (a
    // resumed deletion) leaves the archive's tag to find them.
    let named: Vec<String> = match super::verify::manifest(repo, group, id) {
        Ok(m) => m.artifacts.into_iter().filter_map(|a| a.snapshot).collect(),
        Err(super::verify::VerifyError::NoManifest { .. }) => Vec::new(),
        // An unreadable manifest names nothing; the tag still finds the snapshots.
        Err(super::verify::VerifyError::Parse { .. }) => Vec::new(),
        Err(e) => return Err(e.to_string()),
    };
    repo.delete(group, id).map_err(|e| e.to_string())?;
    let forgotten = restic
        .forget_archive(id, &named)
        .map_err(|e| format!("{id}: its manifest is deleted, its snapshots not yet: {e}"))?;
    info!(archive = %id, snapshots = forgotten, "forgot the archive's restic snapshots");
    Ok(())
}

/// The key an archive has in the deletion journal: `<group>/<id>` in the `default`
/// repository, `@<repository>/<group>/<id>` in a named one, so that only a resumption in
/// that repository finishes it.
pub(super) fn journal_key(repo: &Repository, group: &str, id: &str) -> PathBuf {
    if repo.name() == crate::spec::repository::DEFAULT_REPOSITORY {
        Path::new(group).join(id)
    } else {
        Path::new(&format!("{JOURNAL_REPOSITORY}{}", repo.name()))
            .join(group)
            .join(id)
    }
}

/// What starts the first part of a journal key that names a repository.
const JOURNAL_REPOSITORY: &str = "@";

/// Whether a resumption in `repo` finishes the deletion journalled as `key`: one of a
/// named repository only there; others (the `default` repository's, and older keys) in
/// whichever repository resumes.
fn resumes_in(repo: &Repository, key: &Path) -> bool {
    let first = key
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    match first.strip_prefix(JOURNAL_REPOSITORY) {
        Some(name) => name == repo.name(),
        None => true,
    }
}

/// Deletes one archive through the journal: marked (durably), taken out of sight,
/// removed, forgotten. The outer error is the state database's; the inner one is about
/// the storage, and leaves the mark for the next start to finish.
pub fn delete_archive(
    state: &StateDb,
    repo: &Repository,
    group: &str,
    id: &str,
    reason: &str,
) -> Result<Result<(), String>, PruneError> {
    if repo.append_only() {
        return Ok(Err(format!(
            "the repository `{}` is appendOnly: holdfast never deletes there",
            repo.name()
        )));
    }
    let key = journal_key(repo, group, id);
    state.mark_deletion(&key, id, reason)?;
    fault::point("prune.after-mark");
    match remove(repo, group, id) {
        Ok(()) => {
            fault::point("prune.before-forget");
            state.finish_deletion(&key, id)?;
            Ok(Ok(()))
        }
        Err(e) => {
            warn!(archive = %id, "deleting: {e}");
            Ok(Err(e))
        }
    }
}

/// Finishes deletions a crash interrupted (in a restic repository, then frees what they
/// left unneeded). Returns the archive ids finished.
pub fn resume(state: &StateDb, repo: &Repository) -> Result<Vec<String>, PruneError> {
    let mut done = Vec::new();
    for (key, id) in state.pending_deletions()? {
        if !resumes_in(repo, &key) {
            continue;
        }
        // The journal holds `<group>/<id>` (older versions: the archive's full path).
        let group = key
            .parent()
            .and_then(|p| p.file_name())
            .map(|g| g.to_string_lossy().into_owned())
            .unwrap_or_default();
        match remove(repo, &group, &id) {
            Ok(()) => {
                state.finish_deletion(&key, &id)?;
                done.push(id);
            }
            Err(e) => warn!(archive = %id, "finishing an interrupted deletion: {e}"),
        }
    }
    if !done.is_empty() {
        // Logged there; the next pass tries again.
        let _ = reclaim(repo);
    }
    Ok(done)
}
