//! The phases of a run, in the order they happen.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::dumps::{self, DumpCommand};
use super::pipe::{ChannelReader, DEPTH};
use super::resolve::{
    BackupPlan, HookTarget, PlannedBind, PlannedContainer, PlannedDump, PlannedHook, PlannedPath,
    PlannedVolume,
};
use super::{
    ArchiveVia, BackupRequest, Executor, Progressing, RecipeError, RunError, effective_level,
    parallel, recipe,
};
use crate::archive::Outlet;
use crate::archive::{self, ArtifactInfo, Excludes};
use crate::fault;
use crate::progress::{Cancellable, Progress};
use crate::repo::manifest::Artifact;
use crate::repo::restic::RunSnapshots;
use crate::spec::common::{HookFailure, Output, SecretSource};
use crate::state::{StopEntry, StopPhase};

impl Executor {
    /// Everything between "the archive folder exists" and "write the manifest".
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn take_archive(
        &self,
        request: &BackupRequest,
        plan: &mut BackupPlan,
        root: &Arc<dyn Outlet>,
        restic: Option<&RunSnapshots>,
        run_id: &str,
        progress: Arc<dyn Progress>,
        run: &mut Progressing,
    ) {
        // restic compresses what it stores itself: dumps go into it plain.
        let output = match restic {
            Some(_) => Output {
                format: crate::spec::common::Format::Tar,
                level: None,
                ..request.output.clone()
            },
            None => request.output.clone(),
        };
        let own = self.own_folders().into_iter().filter_map(|f| f.id);
        let excludes = match Excludes::new(&request.spec.targets.exclude.paths) {
            Ok(e) => e.never_enter(own),
            Err(e) => {
                run.fatal.push(RunError::Archive(e));
                return;
            }
        };

        // Hooks and dumps run while everything is up.
        let started = Instant::now();
        let hooks_ran = !plan.pre_hooks.is_empty();
        let skip_target = request.spec.consistency.hooks.on_failure == HookFailure::SkipTarget;
        let mut left_out: Vec<(HookTarget, RunError)> = Vec::new();
        for hook in &plan.pre_hooks {
            let target = hook.target();
            // The rest of the hooks of a target left out: it is not backed up anyway.
            if left_out.iter().any(|(t, _)| *t == target) {
                continue;
            }
            progress.phase("running the pre hooks");
            if let Err(e) = self.hook("pre", hook).await {
                if !skip_target {
                    run.fatal.push(e);
                    break;
                }
                warn!(target = %target, "leaving {target} out of the backup: {e}");
                left_out.push((target, e));
            }
        }
        run.time("preHooks", started);
        if !left_out.is_empty() {
            for (target, e) in &left_out {
                plan.leave_out(target, &format!("a pre hook failed: {e}"));
            }
            let skipped = left_out
                .into_iter()
                .map(|(target, e)| RunError::TargetSkipped {
                    target: target.to_string(),
                    source: Box::new(e),
                });
            // With every target left out there is nothing to archive: the run failed.
            if plan.is_empty() {
                run.fatal.extend(skipped);
            } else {
                run.partial.extend(skipped);
            }
        }

        if run.fatal.is_empty() {
            let started = Instant::now();
            if !plan.dumps.is_empty() {
                progress.phase("dumping");
            }
            for dump in &plan.dumps {
                if let Err(e) = self.dump(dump, root, &output, progress.clone(), run).await {
                    run.fatal.push(e);
                    break;
                }
            }
            run.time("dumps", started);
        }

        if run.fatal.is_empty() {
            let stopped = self
                .stop(plan, run_id, request, progress.as_ref(), run)
                .await;
            if run.fatal.is_empty() {
                let started = Instant::now();
                progress.phase("archiving");
                match restic {
                    Some(snapshots) => {
                        self.snapshot_data(plan, snapshots, &excludes, progress.clone(), run)
                            .await
                    }
                    None => {
                        self.archive_data(plan, root, &output, &excludes, progress.clone(), run)
                            .await
                    }
                }
                run.time("archive", started);
            }
            // Whatever happened above, what was stopped is started again.
            self.restart(&stopped, request, progress.as_ref(), run)
                .await;
        }

        if hooks_ran {
            let started = Instant::now();
            progress.phase("running the post hooks");
            for hook in &plan.post_hooks {
                if let Err(e) = self.hook("post", hook).await {
                    run.partial.push(e);
                }
            }
            run.time("postHooks", started);
        }

        if run.fatal.is_empty() && request.spec.include.recipe {
            let started = Instant::now();
            progress.phase("writing the recipe");
            if let Err(e) = self.recipe(plan, root, run).await {
                run.fatal.push(RunError::Recipe(e));
            }
            run.time("recipe", started);
        }
    }

    /// Checks what a run would need, without stopping or writing anything.
    pub(super) async fn dry_run(&self, plan: &BackupPlan, run: &mut Progressing) {
        for dump in &plan.dumps {
            if let Err(e) = self.password(dump).await {
                run.fatal.push(e);
            }
        }
        for volume in &plan.volumes {
            let readable = volume
                .mountpoint
                .as_deref()
                .is_some_and(|m| std::fs::read_dir(m).is_ok());
            if self.via == ArchiveVia::Direct && !readable {
                run.fatal.push(RunError::VolumeNotReadable {
                    volume: volume.name.clone(),
                });
            }
            info!(volume = %volume.name, via = if readable && self.via != ArchiveVia::Api { "direct" } else { "api" }, "would archive");
        }
        for bind in &plan.binds {
            info!(source = %bind.source, container = %bind.container, "would archive bind mount");
        }
        for folder in &plan.paths {
            if std::fs::read_dir(&folder.path).is_err() {
                run.fatal.push(RunError::FolderNotReadable {
                    path: folder.path.clone(),
                });
            }
            info!(path = %folder.path, "would archive host folder");
        }
        for c in &plan.stop_order {
            info!(container = %c.name, "would stop");
        }
    }

    async fn hook(&self, which: &'static str, hook: &PlannedHook) -> Result<(), RunError> {
        info!(container = %hook.container, command = %hook.command.join(" "), "running the {which} hook");
        let timeout = Duration::from_secs(hook.timeout_seconds);
        let out = self
            .engine
            .exec(&hook.container_id, &hook.command, &[], timeout)
            .await
            .map_err(|source| RunError::Hook {
                which,
                command: hook.command.clone(),
                container: hook.container.clone(),
                source,
            })?;
        if out.exit_code != 0 {
            return Err(RunError::HookFailed {
                which,
                command: hook.command.clone(),
                container: hook.container.clone(),
                code: out.exit_code,
                stderr: tail(&out.stderr),
            });
        }
        Ok(())
    }

    async fn password(&self, dump: &PlannedDump) -> Result<Option<String>, RunError> {
        let Some(source) = &dump.password else {
            return Ok(None);
        };
        let SecretSource {
            from_env,
            from_file,
            value,
        } = source;
        if let Some(v) = value {
            return Ok(Some(v.clone()));
        }
        if let Some(path) = from_file {
            let text = std::fs::read_to_string(path).map_err(|source| RunError::PasswordFile {
                container: dump.container.clone(),
                path: path.clone(),
                source,
            })?;
            return Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()));
        }
        if let Some(var) = from_env {
            let details = self
                .engine
                .inspect(&dump.container_id)
                .await
                .map_err(|source| RunError::PasswordInspect {
                    container: dump.container.clone(),
                    source,
                })?;
            return details
                .env_var(var)
                .map(|v| Some(v.to_string()))
                .ok_or_else(|| RunError::PasswordVariable {
                    container: dump.container.clone(),
                    variable: var.clone(),
                });
        }
        Ok(None)
    }

    async fn dump(
        &self,
        dump: &PlannedDump,
        root: &Arc<dyn Outlet>,
        output: &Output,
        progress: Arc<dyn Progress>,
        run: &mut Progressing,
    ) -> Result<(), RunError> {
        let password = self.password(dump).await?;
        let label = dump
            .service
            .clone()
            .unwrap_or_else(|| dump.container.clone());
        for DumpCommand {
            artifact,
            database,
            command,
            env,
        } in dumps::commands(
            &label,
            dump.engine,
            &dump.databases,
            dump.user.as_deref(),
            password.as_deref(),
        ) {
            // Named as the file will be, with the extension compression gives it.
            let shown = archive::stream_artifact_name(&artifact, output.format);
            info!(container = %dump.container, engine = %dump.engine, artifact = %shown, "dumping");
            progress.item(&shown);
            let (tx, rx) = mpsc::channel(DEPTH);
            let writer = {
                let (root, artifact, format, level, progress) = (
                    root.clone(),
                    artifact.clone(),
                    output.format,
                    effective_level(output),
                    progress.clone(),
                );
                super::background::spawn("holdfast-archive", move || {
                    archive::compress_stream(
                        ChannelReader::new(rx),
                        &*root,
                        &artifact,
                        format,
                        level,
                        progress.as_ref(),
                    )
                })
            };
            let exec = self
                .engine
                .exec_streaming(&dump.container_id, &command, &env, tx)
                .await;
            let written = writer.await.map_err(|source| RunError::DumpWorker {
                artifact: shown.clone(),
                source,
            })?;
            let (container, engine) = (dump.container.clone(), dump.engine);
            let (code, stderr) = exec.map_err(|source| RunError::DumpExec {
                container: container.clone(),
                engine,
                artifact: shown.clone(),
                source,
            })?;
            let info = written.map_err(|source| RunError::DumpWrite {
                container: container.clone(),
                engine,
                artifact: shown.clone(),
                source,
            })?;
            if code != 0 {
                return Err(RunError::DumpFailed {
                    container,
                    engine,
                    artifact: shown,
                    code,
                    stderr: tail(&stderr),
                });
            }
            if info.source_bytes == 0 {
                return Err(RunError::DumpEmpty {
                    container,
                    engine,
                    artifact: shown,
                    stderr: tail(&stderr),
                });
            }
            info!(
                artifact = %info.path,
                source_bytes = info.source_bytes,
                stored_bytes = info.size,
                "dumped"
            );
            run.artifacts.push(Artifact {
                kind: "dump".into(),
                source: Some(dump.container.clone()),
                stack: dump.stack.clone(),
                engine: Some(dump.engine.to_string()),
                database,
                ..artifact_from(info)
            });
            fault::point("backup.after-dump");
        }
        Ok(())
    }

    /// Stops, in order, what the plan says; each stop is journalled before it happens.
    /// Returns what was stopped, so it can be started again.
    async fn stop(
        &self,
        plan: &BackupPlan,
        run_id: &str,
        request: &BackupRequest,
        progress: &dyn Progress,
        run: &mut Progressing,
    ) -> Vec<(PlannedContainer, Instant)> {
        let started = Instant::now();
        let timeout = request.spec.consistency.stop_timeout.as_duration();
        let mut stopped = Vec::new();
        for c in &plan.stop_order {
            let container_started_at = self.engine.started_at(&c.id).await;
            let entry = StopEntry {
                container_id: c.id.clone(),
                container_name: c.name.clone(),
                run_id: run_id.to_string(),
                stopped_at: Utc::now(),
                phase: StopPhase::Stopping,
                stop_timeout_seconds: timeout.as_secs(),
                container_started_at,
            };
            if let Err(source) = self.state.journal_stop(&entry) {
                run.fatal.push(RunError::JournalStop {
                    container: c.name.clone(),
                    source,
                });
                break;
            }
            fault::point("backup.after-journal");
            info!(container = %c.name, "stopping");
            progress.phase(&format!("stopping {}", c.name));
            let at = Instant::now();
            // Journalled first: even if the stop call fails halfway, a restart is attempted.
            stopped.push((c.clone(), at));
            if let Err(source) = self.engine.stop(&c.id, timeout).await {
                run.fatal.push(RunError::Stop {
                    container: c.name.clone(),
                    source,
                });
                break;
            }
            // Until this is written, a replay treats the container as possibly still
            // stopping; a failure to write it only makes a replay more careful.
            if let Err(e) = self.state.journal_stopped(&c.id) {
                run.warnings
                    .push(format!("recording that {} stopped: {e}", c.name));
            }
            fault::point("backup.after-stop");
        }
        run.time("stop", started);
        stopped
    }

    async fn restart(
        &self,
        stopped: &[(PlannedContainer, Instant)],
        request: &BackupRequest,
        progress: &dyn Progress,
        run: &mut Progressing,
    ) {
        if stopped.is_empty() {
            return;
        }
        fault::point("backup.before-start");
        let started = Instant::now();
        // By stack, or by container for one outside any stack.
        let mut stack_down_since: BTreeMap<(String, bool), Instant> = BTreeMap::new();
        for (c, at) in stopped {
            let key = match &c.stack {
                Some(stack) => (stack.clone(), true),
                None => (c.name.clone(), false),
            };
            let since = stack_down_since.entry(key).or_insert(*at);
            *since = (*since).min(*at);
        }
        let mut up = Vec::new();
        for (c, _) in stopped.iter().rev() {
            info!(container = %c.name, "starting again");
            progress.phase(&format!("starting {} again", c.name));
            match self.engine.start(&c.id).await {
                Ok(()) => {
                    fault::point("backup.after-start");
                    up.push(c)
                }
                Err(source) => run.partial.push(RunError::Start {
                    container: c.name.clone(),
                    source,
                }),
            }
        }
        let deadline = Instant::now() + request.spec.consistency.wait_healthy.as_duration();
        for c in &up {
            progress.phase(&format!("waiting for {} to run", c.name));
            match self.wait_healthy(c, deadline).await {
                Ok(()) => {
                    if let Err(e) = self.state.journal_remove(&c.id) {
                        run.warnings
                            .push(format!("clearing the journalled stop of {}: {e}", c.name));
                    }
                }
                Err(e) => run.partial.push(e),
            }
        }
        for ((name, is_stack), since) in stack_down_since {
            let secs = since.elapsed().as_secs_f64();
            match is_stack {
                true => info!(stack = %name, downtime_seconds = secs, "running again"),
                false => info!(container = %name, downtime_seconds = secs, "running again"),
            }
            run.downtime.insert(name, secs);
        }
        run.time("restart", started);
    }

    /// Waits until a started container runs and, if it has a healthcheck, is healthy.
    async fn wait_healthy(&self, c: &PlannedContainer, deadline: Instant) -> Result<(), RunError> {
        let container = || c.name.clone();
        loop {
            let details = self
                .engine
                .inspect(&c.id)
                .await
                .map_err(|source| RunError::Health {
                    container: container(),
                    source,
                })?;
            match (details.running, details.health.as_deref()) {
                (true, None | Some("healthy")) => return Ok(()),
                (false, _) => {
                    return Err(RunError::NotRunning {
                        container: container(),
                    });
                }
                (true, Some(status)) if Instant::now() >= deadline => {
                    return Err(RunError::NotHealthy {
                        container: container(),
                        status: status.to_string(),
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// Archives every volume and bind mount, up to [`Executor::parallelism`] at once (see
    /// [`super::parallel`]), and records their artifacts in plan order. The first source
    /// that fails fails the run: the others stop at their next buffer, and none starts.
    async fn archive_data(
        &self,
        plan: &BackupPlan,
        root: &Arc<dyn Outlet>,
        output: &Output,
        excludes: &Excludes,
        progress: Arc<dyn Progress>,
        run: &mut Progressing,
    ) {
        let progress = fault::AtEachBuffer::wrap(progress, || fault::point("backup.mid-archive"));
        // Stops the sources still running once one failed; the run's own cancellation
        // still reaches them through it.
        let stop = Arc::new(Cancellable::new(progress));
        let first_failed = std::sync::Mutex::new(None::<usize>);
        let sources = plan.volumes.len() + plan.binds.len() + plan.paths.len();
        let running = self.parallelism.min(sources);
        let workers = parallel::workers_each(running);
        if running > 1 {
            info!(sources, at_once = running, "archiving sources in parallel");
        }
        let volumes = plan.volumes.iter().map(Source::Volume);
        let binds = plan.binds.iter().map(Source::Bind);
        let folders = plan.paths.iter().map(Source::Folder);
        let jobs: Vec<_> = volumes
            .chain(binds)
            .chain(folders)
            .enumerate()
            .map(|(i, source)| {
                let (stop, first_failed) = (stop.clone(), &first_failed);
                async move {
                    if stop.cancelled() {
                        return None;
                    }
                    let progress: Arc<dyn Progress> = stop.clone();
                    let result = self
                        .archive_source(&source, root, output, excludes, workers, progress)
                        .await;
                    match &result {
                        Ok((info, _)) => archived(info),
                        Err(_) => {
                            let mut first = first_failed.lock().unwrap_or_else(|e| e.into_inner());
                            if first.is_none() {
                                *first = Some(i);
                                stop.cancel();
                            }
                        }
                    }
                    Some((source, result))
                }
            })
            .collect();
        let results = parallel::in_order(jobs, running).await;
        let first_failed = first_failed.into_inner().unwrap_or_else(|e| e.into_inner());
        for (i, done) in results.into_iter().enumerate() {
            match done {
                Some((source, Ok((info, via)))) if first_failed.is_none() => {
                    note_shrunk(&info, &mut run.partial);
                    run.artifacts.push(Artifact {
                        via: Some(via.into()),
                        ..source.artifact(info)
                    });
                }
                // Only the first failure is the run's: the others were stopped by it.
                Some((_, Err(e))) if first_failed == Some(i) => run.fatal.push(e),
                _ => {}
            }
        }
    }

    /// Archives one volume, bind mount or host folder into its own artifact, with `workers` zstd
    /// workers; returns what was written and how the data was read (`direct` or `api`).
    async fn archive_source(
        &self,
        source: &Source<'_>,
        root: &Arc<dyn Outlet>,
        output: &Output,
        excludes: &Excludes,
        workers: usize,
        progress: Arc<dyn Progress>,
    ) -> Result<(ArtifactInfo, &'static str), RunError> {
        let rel = source.rel();
        progress.item(&rel);
        match source {
            Source::Volume(volume) => {
                let excludes = &excludes.leave_out(&volume.leave_out);
                let readable = volume
                    .mountpoint
                    .as_deref()
                    .filter(|m| std::fs::read_dir(m).is_ok());
                match (self.via, readable) {
                    (ArchiveVia::Direct, None) => Err(RunError::VolumeNotReadable {
                        volume: volume.name.clone(),
                    }),
                    (ArchiveVia::Auto | ArchiveVia::Direct, Some(dir)) => self
                        .archive_dir(dir, root, &rel, output, excludes, workers, progress)
                        .await
                        .map(|i| (i, "direct")),
                    (_, _) => self
                        .archive_volume_api(
                            &volume.name,
                            root,
                            &rel,
                            output,
                            excludes,
                            workers,
                            progress,
                        )
                        .await
                        .map(|i| (i, "api")),
                }
            }
            Source::Bind(bind) => {
                let excludes = &excludes.leave_out(&bind.leave_out);
                let readable = std::fs::read_dir(&bind.source).is_ok();
                if readable && self.via != ArchiveVia::Api {
                    self.archive_dir(
                        &bind.source,
                        root,
                        &rel,
                        output,
                        excludes,
                        workers,
                        progress,
                    )
                    .await
                    .map(|i| (i, "direct"))
                } else if self.via == ArchiveVia::Direct {
                    Err(RunError::BindNotReadable {
                        path: bind.source.clone(),
                    })
                } else {
                    self.archive_api(
                        &bind.container_id,
                        &bind.destination,
                        root,
                        &rel,
                        output,
                        excludes,
                        workers,
                        progress,
                    )
                    .await
                    .map(|i| (i, "api"))
                }
            }
            // Host folders are read from the host only: no container mounts them for
            // Docker's archive API to reach.
            Source::Folder(folder) => {
                let excludes = &excludes.leave_out(&folder.leave_out);
                match std::fs::read_dir(&folder.path) {
                    Ok(_) => self
                        .archive_dir(
                            &folder.path,
                            root,
                            &rel,
                            output,
                            excludes,
                            workers,
                            progress,
                        )
                        .await
                        .map(|i| (i, "direct")),
                    Err(_) => Err(RunError::FolderNotReadable {
                        path: folder.path.clone(),
                    }),
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn archive_dir(
        &self,
        dir: &str,
        root: &Arc<dyn Outlet>,
        rel: &str,
        output: &Output,
        excludes: &Excludes,
        workers: usize,
        progress: Arc<dyn Progress>,
    ) -> Result<ArtifactInfo, RunError> {
        info!(source = %dir, artifact = %rel, "archiving from the host");
        let (source, root, rel, format, level, excludes) = (
            dir.to_string(),
            root.clone(),
            rel.to_string(),
            output.format,
            effective_level(output),
            excludes.clone(),
        );
        super::background::spawn("holdfast-archive", move || {
            archive::with_compression_workers(workers, || {
                archive::archive_directory(
                    Path::new(&source),
                    &*root,
                    &rel,
                    format,
                    level,
                    &excludes,
                    progress.as_ref(),
                )
            })
        })
        .await
        .map_err(|source| RunError::ArchiveWorker {
            what: dir.to_string(),
            source,
        })?
        .map_err(RunError::Archive)
    }

    #[allow(clippy::too_many_arguments)]
    async fn archive_volume_api(
        &self,
        volume: &str,
        root: &Arc<dyn Outlet>,
        rel: &str,
        output: &Output,
        excludes: &Excludes,
        workers: usize,
        progress: Arc<dyn Progress>,
    ) -> Result<ArtifactInfo, RunError> {
        let failed = |source| RunError::Volume {
            volume: volume.to_string(),
            source,
        };
        match self.engine.volume_exists(volume).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(RunError::VolumeVanished {
                    volume: volume.to_string(),
                });
            }
            Err(e) => return Err(failed(e)),
        }
        let image = self
            .engine
            .any_image()
            .await
            .map_err(failed)?
            .ok_or_else(|| RunError::NoImage {
                volume: volume.to_string(),
            })?;
        let reader = self
            .engine
            .create_reader(&image, volume)
            .await
            .map_err(failed)?;
        let result = self
            .archive_api(
                &reader, "/volume", root, rel, output, excludes, workers, progress,
            )
            .await;
        if let Err(e) = self.engine.remove_reader(&reader).await {
            warn!(volume, "removing the reader container: {e}");
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn archive_api(
        &self,
        container: &str,
        path: &str,
        root: &Arc<dyn Outlet>,
        rel: &str,
        output: &Output,
        excludes: &Excludes,
        workers: usize,
        progress: Arc<dyn Progress>,
    ) -> Result<ArtifactInfo, RunError> {
        use futures_util::StreamExt;
        info!(container, path, artifact = %rel, "archiving through the Docker API");
        let prefix = format!(
            "{}/",
            path.trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default()
        );
        let (tx, rx) = mpsc::channel(DEPTH);
        let writer = {
            let (root, rel, format, level, excludes) = (
                root.clone(),
                rel.to_string(),
                output.format,
                effective_level(output),
                excludes.clone(),
            );
            super::background::spawn("holdfast-archive", move || {
                archive::with_compression_workers(workers, || {
                    archive::archive_tar_stream(
                        ChannelReader::new(rx),
                        &prefix,
                        &*root,
                        &rel,
                        format,
                        level,
                        &excludes,
                        progress.as_ref(),
                    )
                })
            })
        };
        let mut stream = Box::pin(self.engine.download(container, path));
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    if tx.send(bytes).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let written = writer.await.map_err(|source| RunError::ArchiveWorker {
            what: format!("{container}:{path}"),
            source,
        })?;
        if let Some(e) = failure {
            return Err(RunError::Docker(e));
        }
        written.map_err(RunError::Archive)
    }

    async fn recipe(
        &self,
        plan: &BackupPlan,
        root: &Arc<dyn Outlet>,
        run: &mut Progressing,
    ) -> Result<(), RecipeError> {
        let observed = self.observe().await?;
        let mut networks = std::collections::BTreeSet::new();
        for c in &plan.containers {
            let folder = format!(
                "recipe/{}",
                c.stack.clone().unwrap_or_else(|| "_containers".into())
            );
            let details = self.engine.inspect(&c.id).await?;
            let mut raw = details.raw.clone();
            recipe::redact_inspect(&mut raw);
            let text = serde_json::to_vec_pretty(&raw).unwrap_or_default();
            run.artifacts.push(recipe::write_file(
                &**root,
                &format!("{folder}/inspect/{}.json", c.name),
                &text,
            )?);
            for n in details.networks {
                if !["bridge", "host", "none"].contains(&n.as_str()) {
                    networks.insert((folder.clone(), n));
                }
            }
        }
        for (folder, name) in networks {
            let mut value = self.engine.network(&name).await?;
            recipe::redact_inspect(&mut value);
            let text = serde_json::to_vec_pretty(&value).unwrap_or_default();
            run.artifacts.push(recipe::write_file(
                &**root,
                &format!("{folder}/networks/{name}.json"),
                &text,
            )?);
        }
        for stack in observed
            .stacks
            .iter()
            .filter(|s| plan.stacks.contains(&s.name))
        {
            if stack.config_files.is_empty() {
                run.warnings.push(format!(
                    "recipe of {}: Compose recorded no compose file for it (label {}), so the recipe has none",
                    stack.name,
                    crate::docker::CONFIG_FILES_LABEL
                ));
            }
            for file in &stack.config_files {
                if !Path::new(file).is_absolute() {
                    run.warnings.push(format!(
                        "recipe of {}: its compose file {file} is a relative path and Compose recorded no project folder (label {}), so the recipe does not have it",
                        stack.name,
                        crate::docker::WORKING_DIR_LABEL
                    ));
                    continue;
                }
                if let Some((name, redacted)) = recipe_text(run, &stack.name, file, false) {
                    run.artifacts.push(recipe::write_file(
                        &**root,
                        &format!("recipe/{}/{name}", stack.name),
                        redacted.as_bytes(),
                    )?);
                }
            }
            if let Some(dir) = &stack.working_dir {
                let file = Path::new(dir).join(".env").display().to_string();
                if let Some((_, redacted)) = recipe_text(run, &stack.name, &file, true) {
                    run.artifacts.push(recipe::write_file(
                        &**root,
                        &format!("recipe/{}/.env", stack.name),
                        redacted.as_bytes(),
                    )?);
                }
            }
            let images: BTreeMap<&str, &str> = stack
                .containers()
                .map(|c| (c.name.as_str(), c.image.as_str()))
                .collect();
            let text = serde_json::to_vec_pretty(&images).unwrap_or_default();
            run.artifacts.push(recipe::write_file(
                &**root,
                &format!("recipe/{}/images.json", stack.name),
                &text,
            )?);
        }
        // A compose project that is down: its files, as read when the plan was made.
        for project in plan.projects.iter().filter(|p| p.containers.is_empty()) {
            let env = Path::new(&project.path).join(".env").display().to_string();
            for file in project.files.iter().chain([&env]) {
                let Some((name, redacted)) = recipe_text(run, &project.project, file, file == &env)
                else {
                    continue;
                };
                // Where it was, so a restore puts the project's folders beside it.
                run.artifacts.push(Artifact {
                    source: Some(file.clone()),
                    stack: Some(project.project.clone()),
                    ..recipe::write_file(
                        &**root,
                        &format!("recipe/{}/{name}", project.project),
                        redacted.as_bytes(),
                    )?
                });
            }
        }
        Ok(())
    }
}

/// The name and redacted text of `file` for the recipe of `owner` (a stack or compose
/// project): a `.env` file when `dotenv`, which most projects lack, so its absence is no
/// warning; a compose file otherwise. A file that cannot be read is left out of the recipe
/// with a warning saying why: holdfast must see the stack's folder at the same path.
fn recipe_text(
    run: &mut Progressing,
    owner: &str,
    file: &str,
    dotenv: bool,
) -> Option<(String, String)> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if dotenv && e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            run.warnings.push(format!(
                "recipe of {owner}: {file} could not be read ({e}), so the recipe does not have it; holdfast must see the stack's folder at the same path"
            ));
            return None;
        }
    };
    let name = Path::new(file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let redacted = if dotenv {
        recipe::redact_dotenv(&text)
    } else {
        recipe::redact_compose(&text)
    };
    Some((name, redacted))
}

/// A volume, bind mount or host folder of the plan, archived into an artifact of its own.
enum Source<'a> {
    Volume(&'a PlannedVolume),
    Bind(&'a PlannedBind),
    Folder(&'a PlannedPath),
}

impl Source<'_> {
    /// The artifact's name in the archive, before its extension.
    fn rel(&self) -> String {
        match self {
            Source::Volume(v) => format!("volumes/{}", v.name),
            Source::Bind(b) => format!("binds/{}", b.artifact),
            Source::Folder(f) => format!("paths/{}", f.artifact),
        }
    }

    /// The manifest's record of the artifact `info` written from this source.
    fn artifact(&self, info: ArtifactInfo) -> Artifact {
        match self {
            Source::Volume(v) => Artifact {
                kind: "volume".into(),
                source: Some(v.name.clone()),
                stack: v.stack.clone(),
                ..artifact_from(info)
            },
            Source::Bind(b) => Artifact {
                kind: "bind".into(),
                source: Some(format!("{}:{}", b.container, b.destination)),
                stack: b.stack.clone(),
                ..artifact_from(info)
            },
            Source::Folder(f) => Artifact {
                kind: "path".into(),
                source: Some(f.path.clone()),
                stack: f.stack.clone(),
                ..artifact_from(info)
            },
        }
    }
}

/// Files that shrank while read leave the archive complete but not faithful: the run is
/// partly failed, and the manifest's warnings name them.
fn note_shrunk(info: &ArtifactInfo, partial: &mut Vec<RunError>) {
    if !info.shrunk.is_empty() {
        partial.push(RunError::Shrunk {
            artifact: info.path.clone(),
            count: info.shrunk.count,
            paths: info.shrunk.paths.clone(),
        });
    }
}

fn archived(info: &ArtifactInfo) {
    info!(
        artifact = %info.path,
        source_bytes = info.source_bytes,
        stored_bytes = info.size,
        entries = info.entries,
        "archived"
    );
}

fn artifact_from(info: ArtifactInfo) -> Artifact {
    Artifact {
        kind: String::new(),
        path: info.path,
        size: info.size,
        sha256: info.sha256,
        source_bytes: info.source_bytes,
        entries: info.entries,
        via: None,
        source: None,
        stack: None,
        engine: None,
        database: None,
        stored_size: info.stored.as_ref().map(|s| s.size),
        stored_sha256: info.stored.map(|s| s.sha256),
        snapshot: None,
    }
}

/// The end of a command's error output, for messages.
fn tail(text: &str) -> String {
    let text = text.trim();
    let lines: Vec<&str> = text
        .lines()
        .rev()
        .take(5)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let joined = lines.join(" | ");
    if joined.is_empty() {
        "(no error output)".into()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_files_are_redacted_and_unreadable_ones_are_told_except_a_missing_env() {
        let dir = tempfile::tempdir().unwrap();
        let compose = dir.path().join("compose.yaml");
        std::fs::write(
            &compose,
            "services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: hunter2\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".env"), "TOKEN=s3cret\n").unwrap();
        let mut run = Progressing::default();
        let text = |p: &Path| p.display().to_string();

        let (name, redacted) = recipe_text(&mut run, "shop", &text(&compose), false).unwrap();
        assert_eq!(name, "compose.yaml");
        assert!(redacted.contains("POSTGRES_PASSWORD") && !redacted.contains("hunter2"));
        let env = dir.path().join(".env");
        let (name, redacted) = recipe_text(&mut run, "shop", &text(&env), true).unwrap();
        assert_eq!(name, ".env");
        assert!(redacted.contains("TOKEN=") && !redacted.contains("s3cret"));
        assert!(run.warnings.is_empty());

        // Most projects have no .env: no warning. A compose file that is not there is told.
        std::fs::remove_file(&env).unwrap();
        assert!(recipe_text(&mut run, "shop", &text(&env), true).is_none());
        assert!(run.warnings.is_empty());
        let gone = dir.path().join("gone.yaml");
        assert!(recipe_text(&mut run, "shop", &text(&gone), false).is_none());
        assert_eq!(run.warnings.len(), 1);
        assert!(
            run.warnings[0].starts_with(&format!(
                "recipe of shop: {} could not be read",
                text(&gone)
            )),
            "{:?}",
            run.warnings
        );
    }
}
