//! One run of one policy or archive: the phases of a backup, and the promise that what
//! holdfast stopped is started again whatever fails in between.
//!
//! The CLI's `backup` and (later) the reconciler call [`Executor::run`]; both get the same
//! [`RunOutcome`].

pub(crate) mod background;
pub mod claims;
pub mod dumps;
pub mod error;
mod journal;
pub mod order;
pub mod own;
pub mod parallel;
pub mod pipe;
pub mod project;
pub mod resolve;
pub mod recipe;
pub mod space;
mod snapshots;
mod steps;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::docker::engine::{DockerError, Engine};
use crate::fault;
use crate::locks::ResourceLocks;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::repo::manifest::{self, Artifact, Manifest, ManifestTargets};
pub use crate::settings::ArchiveVia;
use crate::spec::common::{Format, Output, Phase};
use crate::spec::{Kind, Resource};
use crate::state::{RunRecord, StateDb};
pub use error::{BackupRequestError, ExecutorError, RecipeError, RunError, WorkerError};
use resolve::{BackupPlan, BackupSpec, Observed};

/// One run to do.
#[derive(Clone, Debug)]
pub struct BackupRequest {
    pub kind: Kind,
    /// The policy or archive name; archives are grouped under it in the repository.
    pub name: String,
    /// The policy whose settings are used.
    pub policy: Option<String>,
    pub spec: BackupSpec,
    pub output: Output,
    pub dry_run: bool,
}

impl BackupRequest {
    /// The request for a valid BackupPolicy or Archive. An Archive with `policyRef` takes
    /// the policy's settings (its own `output` wins), so `policies` must hold the policy.
    pub fn from_resource(
        resource: &Resource,
        policies: &[&Resource],
    ) -> Result<BackupRequest, BackupRequestError> {
        match resource {
            Resource::BackupPolicy(p) => Ok(BackupRequest {
                kind: Kind::BackupPolicy,
                name: p.metadata.name.clone(),
                policy: Some(p.metadata.name.clone()),
                spec: BackupSpec {
                    targets: p.spec.targets.clone(),
                    include: p.spec.include.clone(),
                    consistency: p.spec.consistency.clone(),
                    dumps: p.spec.dumps.clone(),
                },
                output: p.spec.output.clone(),
                dry_run: false,
            }),
            Resource::Archive(a) => {
                let spec = &a.spec;
                if let Some(policy_name) = &spec.policy_ref {
                    let policy = policies.iter().find_map(|r| match r {
                        Resource::BackupPolicy(p) if &p.metadata.name == policy_name => Some(p),
                        _ => None,
                    });
                    let Some(policy) = policy else {
                        return Err(BackupRequestError::MissingPolicy {
                            policy: policy_name.clone(),
                        });
                    };
                    Ok(BackupRequest {
                        kind: Kind::Archive,
                        name: a.metadata.name.clone(),
                        policy: Some(policy_name.clone()),
                        spec: BackupSpec {
                            targets: policy.spec.targets.clone(),
                            include: policy.spec.include.clone(),
                            consistency: policy.spec.consistency.clone(),
                            dumps: policy.spec.dumps.clone(),
                        },
                        output: spec
                            .output
                            .clone()
                            .unwrap_or_else(|| policy.spec.output.clone()),
                        dry_run: false,
                    })
                } else {
                    Ok(BackupRequest {
                        kind: Kind::Archive,
                        name: a.metadata.name.clone(),
                        policy: None,
                        spec: BackupSpec {
                            targets: spec.targets.clone().unwrap_or_default(),
                            include: spec.include.clone().unwrap_or_default(),
                            consistency: spec.consistency.clone().unwrap_or_default(),
                            dumps: spec.dumps.clone().unwrap_or_default(),
                        },
                        output: spec.output.clone().unwrap_or_default(),
                        dry_run: false,
                    })
                }
            }
            Resource::Restore(_)
            | Resource::Repository(_)
            | Resource::Notifier(_)
            | Resource::ContainerSchedule(_) => Err(BackupRequestError::NotABackup {
                name: format!("{}/{}", resource.kind(), resource.name()),
            }),
        }
    }
}

/// How a run went.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunOutcome {
    pub run_id: String,
    pub archive_id: Option<String>,
    pub phase: Phase,
    pub dry_run: bool,
    pub start_time: DateTime<Utc>,
    pub completion_time: DateTime<Utc>,
    /// Bytes written to the repository (0 when no archive was committed).
    #[serde(rename = "storedBytes")]
    pub bytes: u64,
    /// Uncompressed bytes read from the sources.
    pub source_bytes: u64,
    pub artifacts: usize,
    pub downtime: BTreeMap<String, f64>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// The archive (`archive_id`) exists in the repository.
    pub committed: bool,
    pub plan: Option<BackupPlan>,
    /// Whether the archive verified, when it was verified right after the run.
    pub verified: Option<bool>,
    /// The repository the run wrote (`default`, or a Repository spec's name).
    pub repository: String,
    /// The copies made to the other repositories of `output.repositories`.
    pub copies: Vec<CopyOutcome>,
}

/// Runs backups against one Docker engine, one state database and one repository.
pub struct Executor {
    pub(crate) engine: Engine,
    pub(crate) state: Arc<StateDb>,
    pub(crate) repository: Repository,
    pub(crate) via: ArchiveVia,
    /// How many volumes and bind mounts of a run are archived at once.
    pub(crate) parallelism: usize,
    /// Shared with every other run of this process, restores included.
    pub(crate) locks: Arc<ResourceLocks>,
    /// The repositories the specs name besides `default`, replaced on each reload.
    pub(crate) named: std::sync::RwLock<BTreeMap<String, Result<Repository, String>>>,
    /// The specs folder, one of holdfast's own folders no run reads, when known.
    pub(crate) specs: Option<std::path::PathBuf>,
    /// What the disaster-recovery bundle of a run with `include.bundle` is made from;
    /// without it (set by the command that runs), such a run says the bundle was not
    /// refreshed.
    pub(crate) bundle: std::sync::RwLock<Option<crate::bundle::Source>>,
}

/// A repository a run cannot write to, and why.
#[derive(Clone, Debug, thiserror::Error)]
#[error("repository `{name}`: {reason}")]
pub struct Unavailable {
    pub name: String,
    pub reason: String,
}

/// What became of one copy of a run's archive.
pub use crate::state::CopyRecord as CopyOutcome;

/// What a run collects as it goes; turned into the outcome and the manifest at the end.
#[derive(Default)]
pub(crate) struct Progressing {
    pub artifacts: Vec<Artifact>,
    /// Errors that make the archive incomplete: the run fails.
    pub fatal: Vec<RunError>,
    /// Problems after a complete archive (a restart, a post hook): partially failed.
    pub partial: Vec<RunError>,
    pub warnings: Vec<String>,
    pub timings: BTreeMap<String, f64>,
    pub downtime: BTreeMap<String, f64>,
}

impl Progressing {
    fn time(&mut self, phase: &str, started: Instant) {
        let secs = started.elapsed().as_secs_f64();
        debug!(phase, duration_seconds = secs, "phase done");
        *self.timings.entry(phase.to_string()).or_default() += secs;
    }
}

impl Executor {
    pub fn new(
        engine: Engine,
        state: Arc<StateDb>,
        repository: Repository,
        via: ArchiveVia,
    ) -> Self {
        Executor {
            engine,
            state,
            repository,
            via,
            parallelism: parallel::default_parallelism(),
            locks: ResourceLocks::new(),
            named: Default::default(),
            specs: None,
            bundle: Default::default(),
        }
    }

    /// The executor, told where the specs folder is: a host folder or bind mount holding
    /// it is archived without it, as without the repository and the state folder.
    pub fn with_specs_folder(mut self, specs: &std::path::Path) -> Self {
        self.specs = Some(specs.to_path_buf());
        self
    }

    /// The specs folder, configuration file and settings the disaster-recovery bundle of
    /// runs with `include.bundle` is made from.
    pub fn set_bundle_source(&self, source: crate::bundle::Source) {
        *self.bundle.write().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    /// Refreshes the disaster-recovery bundle in each of `targets`, on a blocking thread:
    /// what failed, by repository.
    async fn refresh_bundles(&self, targets: &[Repository]) -> Vec<(String, String)> {
        let source = self
            .bundle
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(source) = source else {
            return targets
                .iter()
                .map(|t| {
                    let reason = "this command does not know the specs folder".to_string();
                    (t.name().to_string(), reason)
                })
                .collect();
        };
        let targets = targets.to_vec();
        let refreshed = tokio::task::spawn_blocking(move || {
            let mut failed = Vec::new();
            for target in &targets {
                match crate::bundle::refresh(target, &source) {
                    Ok(()) => info!(
                        repository = target.name(),
                        "disaster-recovery bundle refreshed"
                    ),
                    Err(e) => failed.push((target.name().to_string(), e.to_string())),
                }
            }
            failed
        })
        .await;
        refreshed.unwrap_or_else(|e| vec![("-".to_string(), e.to_string())])
    }

    /// Archives up to `n` volumes and bind mounts of a run at once (at least one); the
    /// default is the number of cores. See [`parallel`].
    pub fn with_archive_parallelism(mut self, n: usize) -> Self {
        self.parallelism = n.max(1);
        self
    }

    /// The repositories the specs describe, by name, each opened or with the reason it
    /// could not be: runs that write there use them from now on.
    pub fn set_repositories(&self, named: BTreeMap<String, Result<Repository, String>>) {
        *self.named.write().unwrap_or_else(|e| e.into_inner()) = named;
    }

    /// Copies a committed archive from `from` to `to`, on an archive thread.
    async fn copy(&self, from: &Repository, to: &Repository, group: &str, id: &str) -> CopyOutcome {
        let (f, t, g, i) = (from.clone(), to.clone(), group.to_string(), id.to_string());
        let started = Instant::now();
        // Reading the whole archive (and writing it elsewhere) at the lower priority of
        // archive threads, like the backup that wrote it.
        let result = background::spawn("holdfast-copy", move || {
            crate::repo::copy::copy_archive(&f, &t, &g, &i)
        })
        .await;
        let (stored_bytes, error) = match result {
            Ok(Ok(bytes)) => (bytes, None),
            Ok(Err(e)) => (0, Some(e.to_string())),
            Err(e) => (0, Some(e.to_string())),
        };
        match &error {
            None => info!(
                repository = to.name(),
                archive = id,
                stored_bytes,
                duration_seconds = started.elapsed().as_secs_f64(),
                "copied"
            ),
            Some(e) => error!(repository = to.name(), archive = id, "copy failed: {e}"),
        }
        CopyOutcome {
            repository: to.name().to_string(),
            ok: error.is_none(),
            stored_bytes,
            error,
        }
    }

    /// The repository `name` names: `default`, or one of the specs'.
    pub fn repository_named(&self, name: &str) -> Result<Repository, Unavailable> {
        if name == crate::spec::repository::DEFAULT_REPOSITORY {
            return Ok(self.repository.clone());
        }
        match self
            .named
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            Some(Ok(repository)) => Ok(repository.clone()),
            Some(Err(reason)) => Err(Unavailable {
                name: name.to_string(),
                reason: reason.clone(),
            }),
            None => Err(Unavailable {
                name: name.to_string(),
                reason: "no Repository spec of that name is loaded".to_string(),
            }),
        }
    }

    /// The resource locks its runs take; a restorer in the same process takes the same.
    pub fn locks(&self) -> Arc<ResourceLocks> {
        self.locks.clone()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn state(&self) -> Arc<StateDb> {
        self.state.clone()
    }

    /// What Docker reports now, with holdfast's own folders and the real paths of the
    /// folders Docker names.
    pub async fn observe(&self) -> Result<Observed, DockerError> {
        let containers = self.engine.containers(None).await?;
        let volumes = self.engine.volumes().await?;
        let sources = containers
            .iter()
            .flat_map(|c| &c.mounts)
            .filter_map(|m| match m {
                crate::docker::MountInfo::Bind { source, .. } => Some(source),
                _ => None,
            })
            .chain(volumes.values());
        let real_paths = sources
            .filter_map(|p| Some((p.clone(), std::fs::canonicalize(p).ok()?)))
            .collect();
        let stacks = crate::docker::group_stacks(containers.clone());
        let compose_deps = stacks
            .iter()
            .filter_map(|s| Some((s.name.clone(), order::compose_deps(s)?)))
            .collect();
        Ok(Observed {
            stacks,
            compose_deps,
            containers,
            volumes,
            own: self.own_folders(),
            real_paths,
            ..Observed::default()
        })
    }

    /// holdfast's own folders as they are now: the local repository (all of it, every
    /// host's folder), the state folder and the specs folder. No run reads them.
    pub fn own_folders(&self) -> Vec<own::OwnFolder> {
        let repository = self.repository.local_top();
        let state = self.state.path().parent().map(std::path::Path::to_path_buf);
        [
            ("repository", repository),
            ("state folder", state),
            ("specs folder", self.specs.clone()),
        ]
        .into_iter()
        .filter_map(|(what, path)| Some(own::OwnFolder::find(what, &path?)))
        .collect()
    }

    pub async fn plan(&self, spec: &BackupSpec) -> Result<BackupPlan, DockerError> {
        let mut observed = self.observe().await?;
        project::observe_host(&spec.targets, &mut observed);
        Ok(resolve::resolve(spec, &observed))
    }

    /// Runs one backup. Never returns early with containers stopped: every path out of the
    /// archiving phase goes through the restart phase.
    pub async fn run(&self, request: &BackupRequest, progress: Arc<dyn Progress>) -> RunOutcome {
        let start_time = Utc::now();
        let run_id = format!(
            "{}-{}",
            request.name,
            start_time.format("%Y%m%dT%H%M%S%.3fZ")
        );
        progress.run(&run_id);
        let span = info_span!("run", run = %run_id, kind = %request.kind, name = %request.name);
        self.run_inner(request, progress, run_id, start_time)
            .instrument(span)
            .await
    }

    async fn run_inner(
        &self,
        request: &BackupRequest,
        progress: Arc<dyn Progress>,
        run_id: String,
        start_time: DateTime<Utc>,
    ) -> RunOutcome {
        let mut record = RunRecord {
            id: run_id.clone(),
            kind: request.kind.to_string(),
            name: request.name.clone(),
            archive_id: None,
            phase: Phase::Running,
            start_time,
            completion_time: None,
            bytes: 0,
            source_bytes: None,
            downtime_seconds: 0.0,
            error: None,
            dry_run: request.dry_run,
            warnings: Vec::new(),
            repository: None,
            copies: Vec::new(),
        };
        let mut run = Progressing::default();
        // A dry run writes nothing, not even its record: it may run beside a daemon, on
        // a read-only connection to the state database.
        if !request.dry_run
            && let Err(e) = self.state.insert_run(&record)
        {
            run.fatal.push(RunError::State(e));
        }
        info!(dry_run = request.dry_run, "run started");

        let started = Instant::now();
        progress.phase("looking at the targets");
        let mut plan = match self.plan(&request.spec).await {
            Ok(plan) => plan,
            Err(e) => {
                run.fatal.push(RunError::Resolve(e));
                BackupPlan::default()
            }
        };
        run.fatal
            .extend(plan.errors.iter().cloned().map(RunError::Unresolved));
        run.warnings.extend(plan.warnings.iter().cloned());
        run.time("resolve", started);

        // Where the archive goes, known before anything is stopped: a repository that
        // cannot be opened fails the run at no cost.
        let mut targets = Vec::new();
        for name in request.output.repositories() {
            match self.repository_named(&name) {
                Ok(repository) => targets.push(repository),
                Err(e) => run.fatal.push(RunError::Repository(e)),
            }
        }
        let primary = targets
            .first()
            .cloned()
            .unwrap_or_else(|| self.repository.clone());

        // Before anything is stopped: no other run of this process may stop, or write,
        // what this one touches. A dry run touches nothing.
        let _held = if run.fatal.is_empty() && !request.dry_run {
            self.hold_targets(request, &run_id, &mut plan, &progress, &mut run)
                .await
        } else {
            None
        };

        // Before hooks, dumps or stops: a run that cannot fit costs no downtime.
        if run.fatal.is_empty()
            && primary.name() == self.repository.name()
            && let Err(e) = self.check_space(request, &plan).await
        {
            run.fatal.push(e.into());
        }

        let mut archive_id = None;
        let mut committed = false;
        let mut copies = Vec::new();
        if run.fatal.is_empty() && request.dry_run {
            self.dry_run(&plan, &mut run).await;
        } else if run.fatal.is_empty() {
            let (repository, name) = (primary.clone(), request.name.clone());
            let begun =
                tokio::task::spawn_blocking(move || repository.begin(&name, start_time)).await;
            let begun = match begun {
                Ok(Ok(staged)) => Ok(staged),
                Ok(Err(e)) => Err(RunError::Storage(e)),
                Err(e) => Err(RunError::Commit(e)),
            };
            match begun {
                Err(e) => run.fatal.push(e),
                Ok(partial) => {
                    archive_id = Some(partial.id.clone());
                    // A restic-format repository: the data goes into snapshots, the
                    // manifest into the storage, last, as in the archives format.
                    let snapshots = match primary.restic() {
                        Some(restic) => {
                            let progress = progress.clone();
                            self.start_snapshots(
                                restic,
                                request,
                                &run_id,
                                &partial.id,
                                progress,
                                &mut run,
                            )
                            .await
                        }
                        None => None,
                    };
                    let outlet: Arc<dyn crate::archive::Outlet> = match &snapshots {
                        Some(s) => Arc::new(s.clone()),
                        None => partial.outlet.clone(),
                    };
                    if run.fatal.is_empty() {
                        self.take_archive(
                            request,
                            &mut plan,
                            &outlet,
                            snapshots.as_ref(),
                            &run_id,
                            progress.clone(),
                            &mut run,
                        )
                        .await;
                    }
                    if let (true, Some(s)) = (run.fatal.is_empty(), &snapshots) {
                        progress.phase("writing the recipe snapshot");
                        self.finish_snapshots(s, &mut run).await;
                    }
                    if run.fatal.is_empty() {
                        progress.phase("writing the manifest");
                        fault::point("backup.before-manifest");
                        let manifest =
                            self.manifest(request, &plan, &partial.id, start_time, &run, &primary);
                        let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
                        let repository = primary.clone();
                        let commit =
                            tokio::task::spawn_blocking(move || repository.commit(partial, &text))
                                .await;
                        match commit {
                            Ok(Ok(())) => committed = true,
                            Ok(Err(e)) => run.fatal.push(RunError::Storage(e)),
                            Err(e) => run.fatal.push(RunError::Commit(e)),
                        }
                    } else {
                        archive_id = None;
                        if let (Some(s), false) = (snapshots, primary.append_only()) {
                            // A failed run leaves no snapshots behind for restic users to
                            // mistake for a backup (except where holdfast deletes nothing).
                            match tokio::task::spawn_blocking(move || s.forget_all()).await {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => run.warnings.push(e.to_string()),
                                Err(e) => run.warnings.push(e.to_string()),
                            }
                        }
                        let repository = primary.clone();
                        match tokio::task::spawn_blocking(move || repository.abandon(partial)).await
                        {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => run.warnings.push(e.to_string()),
                            Err(e) => run.warnings.push(e.to_string()),
                        }
                    }
                }
            }
        }

        // 3-2-1 without a second run: the committed archive is copied to the other
        // repositories, after the stack is up again. A copy that fails leaves the run
        // partly failed; the archive where the run wrote it stands.
        if let (true, Some(id)) = (committed, &archive_id) {
            for target in targets.iter().skip(1) {
                progress.phase(&format!("copying to {}", target.name()));
                let outcome = self.copy(&primary, target, &request.name, id).await;
                if let Some(error) = &outcome.error {
                    run.partial.push(RunError::Copy {
                        repository: target.name().to_string(),
                        reason: error.clone(),
                    });
                }
                copies.push(outcome);
            }
        }

        // The disaster-recovery bundle, beside a complete archive only: it is refreshed in
        // every repository the run wrote to.
        if committed && run.fatal.is_empty() && request.spec.include.bundle {
            progress.phase("refreshing the disaster-recovery bundle");
            for (repository, reason) in self.refresh_bundles(&targets).await {
                run.partial.push(RunError::Bundle { repository, reason });
            }
        }

        let phase = if !run.fatal.is_empty() {
            Phase::Failed
        } else if !run.partial.is_empty() {
            Phase::PartiallyFailed
        } else {
            Phase::Succeeded
        };
        let completion_time = Utc::now();
        let bytes = if !committed {
            0
        } else if primary.restic().is_some() {
            // What the snapshots added: unchanged data is stored once.
            run.artifacts.iter().filter_map(|a| a.stored_size).sum()
        } else {
            run.artifacts.iter().map(|a| a.size).sum()
        };
        let source_bytes = run.artifacts.iter().map(|a| a.source_bytes).sum();
        let errors: Vec<String> = run
            .fatal
            .iter()
            .chain(&run.partial)
            .map(ToString::to_string)
            .collect();
        record.archive_id = archive_id.clone();
        record.phase = phase;
        record.completion_time = Some(completion_time);
        record.bytes = bytes;
        record.source_bytes = Some(source_bytes);
        record.downtime_seconds = run.downtime.values().sum();
        record.error = (!errors.is_empty()).then(|| errors.join("; "));
        record.warnings = run.warnings.clone();
        record.repository = Some(primary.name().to_string());
        record.copies = copies.clone();
        // Inside the run's span: each warning goes to the run log as well.
        for warning in &run.warnings {
            warn!("{warning}");
        }
        if !request.dry_run
            && let Err(e) = self.state.finish_run(&record)
        {
            error!("recording the end of the run: {e}");
        }
        let source_bytes: u64 = run.artifacts.iter().map(|a| a.source_bytes).sum();
        let (downtime, duration) = (record.downtime_seconds, started.elapsed().as_secs_f64());
        match (phase, &archive_id) {
            (Phase::Succeeded, Some(archive)) => info!(
                archive = %archive,
                stored_bytes = bytes,
                source_bytes,
                downtime_seconds = downtime,
                duration_seconds = duration,
                "run succeeded"
            ),
            (Phase::Succeeded, None) => info!(duration_seconds = duration, "run succeeded"),
            _ => {
                // What decided the phase: whether another run may do better, and why not.
                let failures = if run.fatal.is_empty() {
                    &run.partial
                } else {
                    &run.fatal
                };
                let reasons: Vec<&str> = failures.iter().map(RunError::reason).collect();
                let transient = failures.iter().all(RunError::is_transient);
                error!(
                    phase = phase.as_str(),
                    errors = %errors.join("; "),
                    reasons = %reasons.join(", "),
                    transient,
                    "run did not succeed"
                )
            }
        }
        RunOutcome {
            run_id,
            archive_id,
            phase,
            dry_run: request.dry_run,
            start_time,
            completion_time,
            bytes,
            source_bytes,
            artifacts: run.artifacts.len(),
            downtime: run.downtime,
            errors,
            warnings: run.warnings,
            committed,
            verified: None,
            repository: primary.name().to_string(),
            copies,
            plan: Some(plan),
        }
    }

    fn manifest(
        &self,
        request: &BackupRequest,
        plan: &BackupPlan,
        id: &str,
        start_time: DateTime<Utc>,
        run: &Progressing,
        repository: &Repository,
    ) -> Manifest {
        Manifest {
            format_version: manifest::FORMAT_VERSION,
            id: id.to_string(),
            kind: request.kind.to_string(),
            name: request.name.clone(),
            policy: request.policy.clone(),
            phase: if run.partial.is_empty() {
                Phase::Succeeded
            } else {
                Phase::PartiallyFailed
            },
            host: self.repository.host().to_string(),
            holdfast_version: env!("CARGO_PKG_VERSION").to_string(),
            docker_api_version: self.engine.api_version(),
            start_time,
            completion_time: Utc::now(),
            format: match repository.restic() {
                Some(_) => "restic".to_string(),
                None => request.output.format.to_string(),
            },
            level: match repository.restic() {
                Some(_) => None,
                None => effective_level(&request.output),
            },
            targets: ManifestTargets {
                stacks: plan.stacks.clone(),
                containers: plan.containers.iter().map(|c| c.name.clone()).collect(),
                volumes: plan.volumes.iter().map(|v| v.name.clone()).collect(),
                paths: plan.paths.iter().map(|p| p.path.clone()).collect(),
            },
            artifacts: run.artifacts.clone(),
            timings: run.timings.clone(),
            downtime: run.downtime.clone(),
            warnings: run
                .warnings
                .iter()
                .cloned()
                .chain(run.partial.iter().map(ToString::to_string))
                .collect(),
            encryption: repository.encryption().map(str::to_string),
        }
    }
}

/// The compression level a run uses: the spec's, or the format's default.
pub fn effective_level(output: &Output) -> Option<i32> {
    match output.format {
        Format::TarZst => Some(output.level.unwrap_or(3)),
        Format::TarGz => Some(output.level.unwrap_or(6)),
        Format::Tar | Format::Folder => None,
    }
}
