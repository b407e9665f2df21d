//! The steps of a run that differ for a restic-format repository: its snapshots are
//! started before anything is stopped, each volume, bind mount and host folder is snapshotted from
//! the host with its previous snapshot as parent, and the recipe's snapshot is written
//! last, naming in each artifact the snapshot that holds it.

use std::path::Path;
use std::sync::Arc;

use tracing::info;

use super::resolve::BackupPlan;
use super::{BackupRequest, Executor, Progressing, RunError};
use crate::archive::Excludes;
use crate::progress::Progress;
use crate::repo::manifest::Artifact;
use crate::repo::restic::{Restic, RunSnapshots};

impl Executor {
    /// Starts the snapshots of a run in a restic-format repository. A failure fails the
    /// run before anything is stopped.
    pub(super) async fn start_snapshots(
        &self,
        restic: &Arc<Restic>,
        request: &BackupRequest,
        run_id: &str,
        archive_id: &str,
        progress: Arc<dyn Progress>,
        run: &mut Progressing,
    ) -> Option<RunSnapshots> {
        let tags = vec![
            crate::repo::restic::TAG.to_string(),
            format!("policy:{}", request.name),
            format!("run:{run_id}"),
            format!("archive:{archive_id}"),
        ];
        let restic = restic.clone();
        match tokio::task::spawn_blocking(move || restic.start_run(tags, progress)).await {
            Ok(Ok(snapshots)) => Some(snapshots),
            Ok(Err(e)) => {
                run.fatal.push(RunError::Restic(e));
                None
            }
            Err(e) => {
                run.fatal.push(RunError::Commit(e));
                None
            }
        }
    }

    /// Writes the recipe snapshot, and names in each artifact the snapshot holding it.
    pub(super) async fn finish_snapshots(&self, snapshots: &RunSnapshots, run: &mut Progressing) {
        let s = snapshots.clone();
        let recipe = match tokio::task::spawn_blocking(move || s.finish()).await {
            Ok(Ok(taken)) => taken,
            Ok(Err(e)) => return run.fatal.push(RunError::Restic(e)),
            Err(e) => return run.fatal.push(RunError::Commit(e)),
        };
        let mut recipe_counted = false;
        for artifact in run.artifacts.iter_mut().filter(|a| a.snapshot.is_none()) {
            let taken = if artifact.kind == "recipe" {
                recipe.clone()
            } else {
                snapshots.taken(&artifact.path)
            };
            if let Some(taken) = taken {
                // The recipe's files share one snapshot: what it added is counted once.
                let added = match artifact.kind.as_str() {
                    "recipe" if recipe_counted => 0,
                    "recipe" => {
                        recipe_counted = true;
                        taken.added_bytes
                    }
                    _ => taken.added_bytes,
                };
                artifact.snapshot = Some(taken.snapshot);
                artifact.stored_size = Some(added);
            }
        }
    }

    /// Snapshots each volume and bind mount into a restic-format repository, each with
    /// the previous snapshot of the same one as parent: unchanged files are not read, so
    /// the containers are stopped for the time the changes take.
    pub(super) async fn snapshot_data(
        &self,
        plan: &BackupPlan,
        snapshots: &RunSnapshots,
        excludes: &Excludes,
        progress: Arc<dyn Progress>,
        run: &mut Progressing,
    ) {
        let volumes = plan.volumes.iter().map(|v| {
            let readable = v
                .mountpoint
                .clone()
                .filter(|m| std::fs::read_dir(m).is_ok());
            let not_readable = RunError::VolumeNotReadable {
                volume: v.name.clone(),
            };
            (
                "volume",
                format!("volumes/{}", v.name),
                v.name.clone(),
                v.name.clone(),
                v.stack.clone(),
                readable.ok_or(not_readable),
                &v.leave_out,
            )
        });
        let binds = plan.binds.iter().map(|b| {
            let readable = std::fs::read_dir(&b.source).is_ok();
            let not_readable = RunError::BindNotReadable {
                path: b.source.clone(),
            };
            (
                "bind",
                format!("binds/{}", b.artifact),
                b.artifact.clone(),
                format!("{}:{}", b.container, b.destination),
                b.stack.clone(),
                if readable {
                    Ok(b.source.clone())
                } else {
                    Err(not_readable)
                },
                &b.leave_out,
            )
        });
        let folders = plan.paths.iter().map(|p| {
            let readable = std::fs::read_dir(&p.path).is_ok();
            let not_readable = RunError::FolderNotReadable {
                path: p.path.clone(),
            };
            (
                "path",
                format!("paths/{}", p.artifact),
                p.artifact.clone(),
                p.path.clone(),
                p.stack.clone(),
                if readable {
                    Ok(p.path.clone())
                } else {
                    Err(not_readable)
                },
                &p.leave_out,
            )
        });
        for (kind, rel, tag, source, stack, dir, leave_out) in volumes.chain(binds).chain(folders) {
            progress.item(&rel);
            // restic reads files from the host; Docker's archive API gives a tar stream,
            // which would be stored as one file without parent or deduplication by file.
            let dir = match dir {
                Ok(dir) => dir,
                Err(e) => return run.fatal.push(e),
            };
            info!(source = %dir, snapshot = %rel, "snapshotting from the host");
            let mut tags = vec![format!("{kind}:{tag}")];
            tags.extend(stack.iter().map(|s| format!("stack:{s}")));
            let (s, excludes, name) = (
                snapshots.clone(),
                excludes.leave_out(leave_out),
                rel.clone(),
            );
            let watched = progress.clone();
            let cancelled: crate::repo::restic::Cancelled = Arc::new(move || watched.cancelled());
            let taken = tokio::task::spawn_blocking(move || {
                s.folder(Path::new(&dir), &name, &tags, excludes, cancelled)
            })
            .await;
            let taken = match taken {
                Ok(Ok(taken)) => taken,
                Ok(Err(e)) => return run.fatal.push(RunError::Restic(e)),
                Err(e) => return run.fatal.push(RunError::Commit(e)),
            };
            info!(
                snapshot = %taken.snapshot,
                source_bytes = taken.source_bytes,
                added_bytes = taken.added_bytes,
                files_read = taken.files_read,
                entries = taken.entries,
                "snapshotted"
            );
            run.artifacts.push(Artifact {
                kind: kind.into(),
                path: format!("{rel}.tar"),
                size: taken.source_bytes,
                sha256: String::new(),
                source_bytes: taken.source_bytes,
                entries: taken.entries,
                via: Some("direct".into()),
                source: Some(source),
                stack,
                engine: None,
                database: None,
                stored_size: Some(taken.added_bytes),
                stored_sha256: None,
                snapshot: Some(taken.snapshot),
            });
        }
    }
}
