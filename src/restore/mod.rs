//! Putting archived data back: volumes into new volumes or in place, database dumps into
//! their running services, the recipe (and bind-mounted folders) into a folder from which
//! `docker-compose up -d` brings the stack back.
//!
//! The order of a restore, so that a failure at any step leaves things as they were:
//!
//! 1. Everything is decided before anything is touched: the archive (Good or Partial, never
//!    Corrupt), what of it to restore, the target volume of each archived one, that no
//!    target exists where a new one is wanted, that the recipe folder is empty. Then every
//!    artifact's checksum is checked against the manifest.
//! 2. In place, the containers using the target volumes are stopped, journalled first as
//!    backups do, so a crash leaves nothing down for long: the next start of holdfast
//!    starts them again. A volume still used by a running container is never written.
//! 3. Each volume is extracted into a staging folder beside its data folder, then the two
//!    are swapped in one `renameat2(RENAME_EXCHANGE)`: the volume holds either the old
//!    content or the new, never half of each. A new volume goes the same way (a restore
//!    killed mid-way leaves it empty, not half filled) and is removed again if extraction
//!    fails.
//! 4. The stopped containers start again; dumps are replayed into the running services.

mod error;
mod source;
pub mod files;
pub mod replay;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tracing::{Instrument, error, info, info_span, warn};

use crate::docker::ContainerInfo;
use crate::docker::engine::Engine;
use crate::fault;
use crate::progress::Progress;
use crate::repo::catalog::Entry;
use crate::repo::manifest::{Artifact, Manifest};
use crate::spec::common::{Phase, StopMode};
use crate::spec::restore::RestoreMode;
use crate::state::{RunRecord, StateDb, StopEntry, StopPhase};
pub use error::{RestoreError, RestoreRequestError, SwapError};
pub use source::resolve;
use source::stop_order;

/// How long a container using a restored volume gets to stop before Docker kills it.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Which archive to restore from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Archive(String),
    /// The newest good archive of a policy (or Archive spec) at or before a time.
    Policy {
        name: String,
        at: Option<DateTime<Utc>>,
    },
}

/// One restore, from a `Restore` spec or the command line.
#[derive(Clone, Debug)]
pub struct RestoreRequest {
    /// The Restore object's name (`restore` from the command line): names the run.
    pub name: String,
    pub source: Source,
    /// Only these stacks; only these volumes (archived names). Both empty: everything.
    pub stacks: Vec<String>,
    pub volumes: Vec<String>,
    pub mode: RestoreMode,
    /// archived volume name -> target volume name.
    pub mapping: BTreeMap<String, String>,
    /// In place: stop the whole stacks of the containers using the volumes, not only them.
    pub stop: StopMode,
    pub replay_dumps: bool,
    /// Only replay dumps: no volume is written.
    pub dumps_only: bool,
    pub recipe_to: Option<PathBuf>,
    /// The repository the archive is in: `default` or a Repository spec's name.
    pub repository: String,
}

impl RestoreRequest {
    pub fn from_spec(
        name: &str,
        spec: &crate::spec::restore::RestoreSpec,
    ) -> Result<Self, RestoreRequestError> {
        let source = match (&spec.from.archive, &spec.from.policy) {
            (Some(id), _) => Source::Archive(id.clone()),
            (None, Some(policy)) => Source::Policy {
                name: policy.clone(),
                at: parse_at(spec.from.at.as_deref().unwrap_or("latest"))?,
            },
            (None, None) => return Err(RestoreRequestError::NoSource),
        };
        Ok(RestoreRequest {
            name: name.to_string(),
            source,
            stacks: spec.targets.stacks.clone(),
            volumes: spec.targets.volumes.clone(),
            mode: spec.mode,
            mapping: spec.volume_mapping.clone(),
            stop: spec.stop,
            replay_dumps: spec.replay_dumps,
            dumps_only: spec.dumps_only,
            recipe_to: spec.recipe_to.as_ref().map(PathBuf::from),
            repository: spec.from.repository().to_string(),
        })
    }
}

impl RestoreRequest {
    /// Whether dumps are replayed: asked for, or all that is asked for.
    pub fn replays(&self) -> bool {
        self.replay_dumps || self.dumps_only
    }
}

/// `latest` or an RFC 3339 time.
pub fn parse_at(text: &str) -> Result<Option<DateTime<Utc>>, RestoreRequestError> {
    if text == "latest" {
        return Ok(None);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|source| RestoreRequestError::At {
            text: text.to_string(),
            source,
        })
}

pub use crate::status::restored::{RestoreReport, RestoredDump, RestoredVolume};

#[derive(Clone, Debug)]
pub struct RestoreOutcome {
    pub run_id: String,
    pub phase: Phase,
    pub start_time: DateTime<Utc>,
    pub completion_time: DateTime<Utc>,
    pub report: RestoreReport,
    pub bytes: u64,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Restores against one Docker engine, one state database and one repository.
pub struct Restorer {
    pub engine: Engine,
    pub state: Arc<StateDb>,
    pub repository: crate::repo::Repository,
    /// Shared with the executor's runs: a restore never stops or writes what another run
    /// of this process touches.
    pub locks: Arc<crate::locks::ResourceLocks>,
}

/// Where restores fetch the artifacts of remote or encrypted archives: `fetched/` in the
/// state folder, one folder per run.
fn fetched_dir(state: &StateDb) -> PathBuf {
    state
        .path()
        .parent()
        .map(|p| p.join("fetched"))
        .unwrap_or_else(|| std::env::temp_dir().join("holdfast-fetched"))
}

/// A folder of fetched artifacts, removed when dropped.
struct Fetched(PathBuf);

impl Drop for Fetched {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A volume to restore and where.
struct Planned<'a> {
    artifact: &'a Artifact,
    volume: String,
    target: String,
    /// The target exists (only in place).
    exists: bool,
}

/// Marks the labels of volumes a restore creates.
pub const RESTORED_FROM_LABEL: &str = "holdfast.dev/restored-from";

impl Restorer {
    pub async fn run(
        &self,
        request: &RestoreRequest,
        progress: Arc<dyn Progress>,
    ) -> RestoreOutcome {
        let start_time = Utc::now();
        let run_id = format!(
            "{}-{}",
            request.name,
            start_time.format("%Y%m%dT%H%M%S%.3fZ")
        );
        progress.run(&run_id);
        let span = info_span!("run", run = %run_id, kind = "Restore", name = %request.name);
        self.run_inner(request, progress, run_id, start_time)
            .instrument(span)
            .await
    }

    async fn run_inner(
        &self,
        request: &RestoreRequest,
        progress: Arc<dyn Progress>,
        run_id: String,
        start_time: DateTime<Utc>,
    ) -> RestoreOutcome {
        let mut record = RunRecord {
            id: run_id.clone(),
            kind: "Restore".into(),
            name: request.name.clone(),
            archive_id: None,
            phase: Phase::Running,
            start_time,
            completion_time: None,
            bytes: 0,
            source_bytes: None,
            downtime_seconds: 0.0,
            error: None,
            dry_run: false,
            warnings: Vec::new(),
            repository: Some(request.repository.clone()),
            copies: Vec::new(),
        };
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        if let Err(e) = self.state.insert_run(&record) {
            errors.push(e.to_string());
        }
        info!("restore started");
        let mut report = RestoreReport::default();
        let mut downtime = 0.0;
        if errors.is_empty() {
            match self
                .restore(request, &run_id, progress, &mut report, &mut warnings)
                .await
            {
                Ok(down) => downtime = down,
                Err(e) => errors.push(e.to_string()),
            }
        }
        let phase = if errors.is_empty() {
            Phase::Succeeded
        } else {
            Phase::Failed
        };
        for e in &errors {
            error!("{e}");
        }
        for w in &warnings {
            warn!("{w}");
        }
        let bytes = report.volumes.iter().map(|v| v.bytes).sum();
        let completion_time = Utc::now();
        record.archive_id = (!report.archive.is_empty()).then(|| report.archive.clone());
        record.phase = phase;
        record.completion_time = Some(completion_time);
        record.source_bytes = Some(bytes);
        record.downtime_seconds = downtime;
        record.error = (!errors.is_empty()).then(|| errors.join("; "));
        record.warnings = warnings.clone();
        if let Err(e) = self.state.finish_run(&record) {
            error!("{e}");
        }
        if let Ok(text) = serde_json::to_string(&report)
            && let Err(e) = self.state.record_restore(&run_id, &text)
        {
            error!("{e}");
        }
        match phase {
            Phase::Succeeded => info!(
                archive = %report.archive,
                volumes = report.volumes.len(),
                dumps = report.dumps.len(),
                written_bytes = bytes,
                downtime_seconds = downtime,
                "restore succeeded"
            ),
            _ => error!("restore failed"),
        }
        RestoreOutcome {
            run_id,
            phase,
            start_time,
            completion_time,
            report,
            bytes,
            errors,
            warnings,
        }
    }

    /// Brings the artifacts of a remote or encrypted archive into a folder beside the
    /// state folder; what an earlier, killed fetch left there goes first.
    async fn fetch(
        &self,
        entry: &Entry,
        artifacts: Vec<Artifact>,
        run_id: &str,
    ) -> Result<Fetched, RestoreError> {
        // Only this run's own folder: another restore of this daemon may be fetching
        // beside it; what killed restores left goes at the next start (see
        // [`remove_interrupted_staging`]).
        let dir = fetched_dir(&self.state).join(run_id);
        let _ = std::fs::remove_dir_all(&dir);
        let (repo, group, id, into) = (
            self.repository.clone(),
            entry.group.clone(),
            entry.id.clone(),
            dir.clone(),
        );
        let fetched = Fetched(dir);
        tokio::task::spawn_blocking(move || {
            crate::repo::copy::fetch_archive(&repo, &group, &id, &artifacts, &into)
        })
        .await
        .map_err(RestoreError::ChecksumWorker)?
        .map_err(RestoreError::Fetch)?;
        Ok(fetched)
    }

    /// The archive a source names: Good or Partial, never Corrupt or Missing.
    pub fn resolve(&self, source: &Source) -> Result<Entry, RestoreError> {
        resolve(&self.repository, source)
    }

    /// Restores; returns the seconds containers were stopped.
    async fn restore(
        &self,
        request: &RestoreRequest,
        run_id: &str,
        progress: Arc<dyn Progress>,
        report: &mut RestoreReport,
        warnings: &mut Vec<String>,
    ) -> Result<f64, RestoreError> {
        let mut entry = self.resolve(&request.source)?;
        report.archive = entry.id.clone();
        info!(archive = %entry.id, repository = self.repository.name(), "restoring from");
        let manifest = crate::repo::verify::manifest(&self.repository, &entry.group, &entry.id)
            .map_err(RestoreError::Manifest)?;
        let selection = select(&manifest, request)?;
        // Restores read artifacts from a folder on this machine: a remote or encrypted
        // archive is fetched (decrypted, every byte checked) into one beside the state,
        // removed when the restore ends.
        let remote = entry.path.as_os_str().is_empty()
            || manifest.encryption.is_some()
            || self.repository.restic().is_some();
        // Into new volumes, volume artifacts stream from the repository as they are
        // extracted, each checked against its manifest entry before its swap; in place,
        // they are fetched first, so the containers stop only once the data is here and
        // known good.
        let stream_volumes = remote && request.mode == RestoreMode::NewVolumes;
        let _fetched = if remote {
            let streamed: &[&Artifact] = if stream_volumes {
                &[]
            } else {
                &selection.volumes
            };
            let wanted: Vec<Artifact> = streamed
                .iter()
                .chain(&selection.binds)
                .chain(&selection.folders)
                .chain(&selection.dumps)
                .chain(&selection.recipe)
                .map(|a| (*a).clone())
                .collect();
            progress.phase("fetching the archive");
            let fetched = self.fetch(&entry, wanted, run_id).await?;
            entry.path = fetched.0.clone();
            Some(fetched)
        } else {
            None
        };

        // 1. Decide every target before touching anything.
        let mut planned = Vec::new();
        for artifact in &selection.volumes {
            let volume = artifact.source.clone().unwrap_or_default();
            let target = self.target_for(request, &entry, &volume).await?;
            let exists = self
                .engine
                .volume(&target)
                .await
                .map_err(RestoreError::Docker)?
                .is_some();
            let exists = if exists && request.mode == RestoreMode::NewVolumes {
                if !self.interrupted_leftover(&target, &entry.id).await? {
                    return Err(RestoreError::TargetExists { target, volume });
                }
                info!(volume = %target, "filling the empty volume an interrupted restore of this archive left");
                false
            } else {
                exists
            };
            planned.push(Planned {
                artifact,
                volume,
                target,
                exists,
            });
        }
        if let Some(dir) = &request.recipe_to {
            check_empty_folder(dir)?;
        }
        // Reading every byte of the artifacts: on a blocking worker, off the runtime.
        let root = entry.path.clone();
        let checked: &[&Artifact] = if stream_volumes {
            &[]
        } else {
            &selection.volumes
        };
        let artifacts: Vec<Artifact> = checked
            .iter()
            .chain(&selection.binds)
            .chain(&selection.folders)
            .map(|a| (*a).clone())
            .collect();
        tokio::task::spawn_blocking(move || {
            artifacts
                .iter()
                .try_for_each(|artifact| check_checksum(&root, artifact))
        })
        .await
        .map_err(RestoreError::ChecksumWorker)??;
        let _held = self
            .hold_targets(request, run_id, &planned, &selection, &progress)
            .await?;

        // 2. In place: stop who uses the targets, journalled.
        let mut stopped = Vec::new();
        let mut down_since = None;
        let in_place = in_place_targets(&planned);
        if !in_place.is_empty() {
            let users = self.users(&in_place, request.stop).await?;
            down_since = Some(Instant::now());
            for c in users.iter().filter(|c| c.is_running()) {
                let container_started_at = self.engine.started_at(&c.id).await;
                let entry = StopEntry {
                    container_id: c.id.clone(),
                    container_name: c.name.clone(),
                    run_id: run_id.to_string(),
                    stopped_at: Utc::now(),
                    phase: StopPhase::Stopping,
                    stop_timeout_seconds: STOP_TIMEOUT.as_secs(),
                    container_started_at,
                };
                self.state
                    .journal_stop(&entry)
                    .map_err(|source| RestoreError::JournalStop {
                        container: c.name.clone(),
                        source,
                    })?;
                stopped.push(c.clone());
                info!(container = %c.name, "stopping");
                progress.phase(&format!("stopping {}", c.name));
                if let Err(source) = self.engine.stop(&c.id, STOP_TIMEOUT).await {
                    self.start_again(&stopped, warnings).await;
                    return Err(RestoreError::Stop {
                        container: c.name.clone(),
                        source,
                    });
                }
                if let Err(e) = self.state.journal_stopped(&c.id) {
                    warnings.push(format!("recording that {} stopped: {e}", c.name));
                }
                fault::point("restore.after-stop");
            }
        }
        progress.phase("restoring");
        let result = self
            .write_volumes(&planned, &entry, stream_volumes, run_id, &progress, report)
            .await;
        let downtime = down_since.map_or(0.0, |t| t.elapsed().as_secs_f64());
        if !stopped.is_empty() {
            progress.phase("starting again what was stopped");
        }
        self.start_again(&stopped, warnings).await;
        result?;

        // 4. Dumps into the running services; the recipe into its folder.
        if request.replays() {
            for artifact in &selection.dumps {
                let container = artifact.source.clone().unwrap_or_default();
                let file = entry.path.join(&artifact.path);
                info!(container = %container, artifact = %artifact.path, "replaying dump");
                progress.phase(&format!("replaying {} into {container}", artifact.path));
                let replayed = replay::replay(&self.engine, &container, artifact, &file)
                    .await
                    .map_err(|source| RestoreError::Replay {
                        artifact: artifact.path.clone(),
                        source,
                    })?;
                report.dumps.push(RestoredDump {
                    artifact: artifact.path.clone(),
                    container,
                    engine: artifact.engine.clone().unwrap_or_default(),
                    database: artifact.database.clone(),
                    counts: replayed.counts.into_iter().collect(),
                });
            }
        } else if !selection.dumps.is_empty() {
            info!(
                dumps = selection.dumps.len(),
                "the archive has database dumps; they are not replayed without replayDumps"
            );
        }
        if let Some(dir) = &request.recipe_to {
            report.recipe = write_recipe(&entry.path, &selection, dir)?;
        }
        Ok(downtime)
    }

    /// What a restore touches: the volumes it writes, the containers using them that it
    /// stops (running or not: one another run stopped is still this restore's to stop),
    /// their stacks, the recipe folder, the containers dumps are replayed into.
    async fn claims(
        &self,
        request: &RestoreRequest,
        planned: &[Planned<'_>],
        selection: &Selection<'_>,
    ) -> Result<crate::locks::Claims, RestoreError> {
        use crate::locks::{Access, Claims, Resource};
        let mut claims = Claims::new();
        for p in planned {
            claims.exclusive(Resource::Volume(p.target.clone()), &p.target);
        }
        let in_place = in_place_targets(planned);
        if !in_place.is_empty() {
            for c in self.users(&in_place, request.stop).await? {
                claims.exclusive(Resource::Container(c.id.clone()), &c.name);
                if let Some(stack) = c.project() {
                    let access = match request.stop {
                        StopMode::Stack => Access::Exclusive,
                        _ => Access::Shared,
                    };
                    claims.add(Resource::Stack(stack.to_string()), access, stack);
                }
            }
        }
        if let Some(dir) = &request.recipe_to {
            claims.folder(dir, Access::Exclusive);
        }
        if request.replays() {
            for artifact in &selection.dumps {
                let name = artifact.source.clone().unwrap_or_default();
                // A container that is gone fails the replay later, with its own message.
                if let Ok(details) = self.engine.inspect(&name).await {
                    claims.shared(Resource::Container(details.id), &name);
                }
            }
        }
        Ok(claims)
    }

    /// Waits until no other run of this process holds what the restore touches, then holds
    /// it. After a wait, what was decided is checked again: the users of the volumes may
    /// have changed (then it waits anew), and a new volume must still not exist.
    async fn hold_targets(
        &self,
        request: &RestoreRequest,
        run_id: &str,
        planned: &[Planned<'_>],
        selection: &Selection<'_>,
        progress: &Arc<dyn Progress>,
    ) -> Result<crate::locks::LockGuard, RestoreError> {
        let mut waited = false;
        loop {
            let claims = self.claims(request, planned, selection).await?;
            let guard = self
                .locks
                .acquire_for_run(run_id, claims.clone(), progress.as_ref())
                .await;
            if guard.waited().is_zero() && !waited {
                return Ok(guard);
            }
            waited = true;
            for p in planned.iter().filter(|p| !p.exists) {
                if self
                    .engine
                    .volume(&p.target)
                    .await
                    .map_err(RestoreError::Docker)?
                    .is_some()
                {
                    return Err(RestoreError::CreatedWhileWaiting {
                        target: p.target.clone(),
                    });
                }
            }
            if claims.covers(&self.claims(request, planned, selection).await?) {
                info!("waited for other runs; going on");
                return Ok(guard);
            }
            info!("the containers to stop changed while waiting; waiting for them anew");
        }
    }

    /// The volume an archived volume goes to.
    async fn target_for(
        &self,
        request: &RestoreRequest,
        entry: &Entry,
        volume: &str,
    ) -> Result<String, RestoreError> {
        if let Some(to) = request.mapping.get(volume) {
            return Ok(to.clone());
        }
        if request.mode == RestoreMode::InPlace {
            return Ok(volume.to_string());
        }
        // NewVolumes: the original name while no such volume exists (a new host, or after
        // `docker-compose down -v`), so the recipe finds its data; a fresh name otherwise.
        let exists = self
            .engine
            .volume(volume)
            .await
            .map_err(RestoreError::Docker)?
            .is_some();
        if !exists || self.interrupted_leftover(volume, &entry.id).await? {
            return Ok(volume.to_string());
        }
        let stamp = entry.id.rsplit('-').next().unwrap_or("restored");
        Ok(format!("{volume}-restored-{}", stamp.to_ascii_lowercase()))
    }

    /// Whether volume `name` is what a restore of `archive` left when it was killed before
    /// its swap: created by holdfast for that archive, still empty, used by no container.
    /// Such a volume is the restore's own to fill; NewVolumes never writes into any other
    /// existing volume.
    async fn interrupted_leftover(&self, name: &str, archive: &str) -> Result<bool, RestoreError> {
        let Some(info) = self
            .engine
            .volume(name)
            .await
            .map_err(RestoreError::Docker)?
        else {
            return Ok(false);
        };
        if info.labels.get(RESTORED_FROM_LABEL).map(String::as_str) != Some(archive) {
            return Ok(false);
        }
        let empty = std::fs::read_dir(&info.mountpoint).is_ok_and(|mut d| d.next().is_none());
        if !empty {
            return Ok(false);
        }
        let users = self
            .engine
            .users_of_volume(name)
            .await
            .map_err(RestoreError::Docker)?;
        Ok(users.is_empty())
    }

    /// The containers using any of the volumes, with their whole stacks when asked.
    async fn users(
        &self,
        volumes: &[&str],
        stop: StopMode,
    ) -> Result<Vec<ContainerInfo>, RestoreError> {
        let mut users: BTreeMap<String, ContainerInfo> = BTreeMap::new();
        for v in volumes {
            for c in self
                .engine
                .users_of_volume(v)
                .await
                .map_err(RestoreError::Docker)?
            {
                users.insert(c.id.clone(), c);
            }
        }
        if stop == StopMode::Stack {
            let stacks: Vec<String> = users
                .values()
                .filter_map(|c| c.project().map(str::to_string))
                .collect();
            for stack in self.engine.stacks().await.map_err(RestoreError::Docker)? {
                if stacks.contains(&stack.name) {
                    for c in stack.containers() {
                        users.insert(c.id.clone(), c.clone());
                    }
                }
            }
        }
        Ok(stop_order(users.into_values().collect()))
    }

    async fn start_again(&self, stopped: &[ContainerInfo], warnings: &mut Vec<String>) {
        if !stopped.is_empty() {
            fault::point("restore.before-start");
        }
        for c in stopped.iter().rev() {
            info!(container = %c.name, "starting again");
            match self.engine.start(&c.id).await {
                Ok(()) => {
                    if let Err(e) = self.state.journal_remove(&c.id) {
                        warnings.push(e.to_string());
                    }
                }
                Err(e) => warnings.push(format!("starting {} again: {e}", c.name)),
            }
        }
    }

    /// `streamed`: volume artifacts are read from the repository as they are extracted,
    /// not from `entry.path`.
    async fn write_volumes(
        &self,
        planned: &[Planned<'_>],
        entry: &Entry,
        streamed: bool,
        run_id: &str,
        progress: &Arc<dyn Progress>,
        report: &mut RestoreReport,
    ) -> Result<(), RestoreError> {
        for p in planned {
            // Checked again with the containers stopped: nothing else may write it now.
            if p.exists {
                let running: Vec<String> = self
                    .engine
                    .users_of_volume(&p.target)
                    .await
                    .map_err(RestoreError::Docker)?
                    .into_iter()
                    .filter(|c| c.is_running())
                    .map(|c| c.name)
                    .collect();
                if !running.is_empty() {
                    return Err(RestoreError::InUse {
                        volume: p.target.clone(),
                        containers: running.join(", "),
                    });
                }
            }
            let info = match self
                .engine
                .volume(&p.target)
                .await
                .map_err(RestoreError::Docker)?
            {
                Some(v) => v,
                None => {
                    let labels = volume_labels(p.artifact, &p.volume, &entry.id);
                    fault::point("restore.new-volume.before-create");
                    let created = self
                        .engine
                        .create_volume(&p.target, &labels)
                        .await
                        .map_err(RestoreError::Docker)?;
                    fault::point("restore.new-volume.after-create");
                    created
                }
            };
            let data = PathBuf::from(&info.mountpoint);
            if !data.is_dir() {
                if !p.exists {
                    let _ = self.engine.remove_volume(&p.target).await;
                }
                return Err(RestoreError::NotLocal {
                    volume: p.target.clone(),
                    mountpoint: info.mountpoint.clone(),
                });
            }
            progress.item(&p.volume);
            let artifact = if streamed {
                Extracted::Streamed {
                    repository: self.repository.clone(),
                    group: entry.group.clone(),
                    id: entry.id.clone(),
                    artifact: Box::new(p.artifact.clone()),
                }
            } else {
                Extracted::File(entry.path.join(&p.artifact.path))
            };
            let limits = limits_for(p.artifact);
            info!(volume = %p.volume, into = %p.target, in_place = p.exists, "restoring volume");
            // A new volume goes through the same staging folder and swap as an existing
            // one: a restore killed mid-way leaves it empty, never half filled.
            let progress = if p.exists {
                fault::AtEachBuffer::wrap(progress.clone(), || fault::point("restore.mid-extract"))
            } else {
                fault::AtEachBuffer::wrap(progress.clone(), || {
                    fault::point("restore.new-volume.mid-extract")
                })
            };
            let stats = swap_in(artifact, &data, run_id, limits, progress).await;
            if stats.is_err() && !p.exists {
                // Ours, and incomplete: it goes.
                let _ = self.engine.remove_volume(&p.target).await;
            }
            let stats = stats.map_err(|source| RestoreError::Volume {
                volume: p.volume.clone(),
                source,
            })?;
            report.volumes.push(RestoredVolume {
                volume: p.volume.clone(),
                into: p.target.clone(),
                created: !p.exists,
                entries: stats.entries,
                bytes: stats.bytes,
            });
        }
        Ok(())
    }
}

/// What the manifest says an artifact holds, as limits: more entries or content is not
/// the archive holdfast wrote. The byte limit has slack for files that shrank while they
/// were archived (tar pads them to the size they had when opened).
fn limits_for(artifact: &Artifact) -> crate::archive::ExtractLimits {
    crate::archive::ExtractLimits {
        max_entries: artifact.entries,
        max_bytes: artifact.source_bytes + artifact.source_bytes / 10 + (1 << 20),
    }
}

/// The volumes a restore replaces in place (those that exist already).
fn in_place_targets<'a>(planned: &'a [Planned<'_>]) -> Vec<&'a str> {
    planned
        .iter()
        .filter(|p| p.exists)
        .map(|p| p.target.as_str())
        .collect()
}

/// Extracts into a staging folder beside `data`, then swaps the two atomically and
/// removes the old content. A failure before the swap leaves `data` as it was.
/// Where a volume's artifact is extracted from.
enum Extracted {
    /// A file on this machine, checked before anything was stopped.
    File(PathBuf),
    /// Streamed from a remote or encrypted repository, checked as it is read.
    Streamed {
        repository: crate::repo::Repository,
        group: String,
        id: String,
        artifact: Box<Artifact>,
    },
}

impl Extracted {
    /// Extracts into `target`; a streamed artifact whose bytes are not those its manifest
    /// recorded is an error, after the extraction and before any swap.
    fn extract(
        &self,
        target: &Path,
        limits: crate::archive::ExtractLimits,
        progress: &dyn Progress,
    ) -> Result<crate::archive::ExtractStats, crate::archive::ArchiveError> {
        let (repository, group, id, artifact) = match self {
            Extracted::File(path) => {
                return crate::archive::extract_artifact(path, target, limits, progress);
            }
            Extracted::Streamed {
                repository,
                group,
                id,
                artifact,
            } => (repository, group, id, artifact),
        };
        let shown = PathBuf::from(format!(
            "{}/{group}/{id}/{}",
            repository.describe(),
            artifact.path
        ));
        let stream = repository.open_artifact(group, id, artifact).map_err(|e| {
            crate::archive::ArchiveError::Corrupt {
                path: shown.clone(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        let (stats, size, sha256) = crate::archive::extract_artifact_stream(
            stream,
            &artifact.path,
            &shown,
            target,
            limits,
            progress,
        )?;
        // A folder of a restic snapshot is read as a tar stream made now: no digest of it
        // was taken, and restic checked each blob it read against its own hash.
        let made_now = artifact.snapshot.is_some() && artifact.snapshot_path().1;
        if !made_now && (size != artifact.size || sha256 != artifact.sha256) {
            return Err(crate::archive::ArchiveError::Mismatch {
                path: shown,
                what: "content",
                expected: format!("{} bytes, sha256 {}", artifact.size, artifact.sha256),
                actual: format!("{size} bytes, sha256 {sha256}"),
            });
        }
        Ok(stats)
    }
}

async fn swap_in(
    artifact: Extracted,
    data: &Path,
    run_id: &str,
    limits: crate::archive::ExtractLimits,
    progress: Arc<dyn Progress>,
) -> Result<crate::archive::ExtractStats, SwapError> {
    let name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "_data".into());
    let staging = data.with_file_name(format!("{name}.holdfast-restore-{run_id}"));
    let data = data.to_path_buf();
    let result = tokio::task::spawn_blocking(move || {
        // A restore that crashed before or after its swap left its staging folder (new
        // content, or the old content it replaced); neither is of use now.
        remove_staging_beside(&data, &|_| true);
        // The run's progress: a run cancelled at shutdown stops extracting at the next
        // buffer, and never swaps (its containers are being started again meanwhile).
        let stats = artifact
            .extract(&staging, limits, &*progress)
            .and_then(|stats| {
                crate::archive::sync_tree(&staging)?;
                Ok(stats)
            });
        let stats = match stats {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(SwapError::Extract(e));
            }
        };
        if progress.cancelled() {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(SwapError::Cancelled);
        }
        fault::point("restore.before-swap");
        exchange(&staging, &data).map_err(|source| {
            let _ = std::fs::remove_dir_all(&staging);
            SwapError::Exchange {
                staging: staging.clone(),
                source,
            }
        })?;
        fault::point("restore.after-swap");
        // `staging` now holds the old content.
        if let Err(e) = std::fs::remove_dir_all(&staging) {
            warn!(path = %staging.display(), "removing the replaced content: {e}");
        }
        Ok(stats)
    })
    .await;
    match result {
        Ok(r) => r,
        Err(e) => Err(SwapError::Worker(e)),
    }
}

/// Removes what restores of this state folder left beside the data folder of a local
/// volume when they were killed: a staging folder holding new content never swapped in,
/// or the old content swapped out and not yet removed. Neither is of use, and the second
/// is a whole copy of a volume's former data. Only folders of runs the run history knows
/// as ended are touched: another holdfast (another state folder) on the same Docker host
/// may be restoring right now. Call it with the state folder's lock held, after runs left
/// `Running` were recorded as interrupted. Returns the folders removed.
pub async fn remove_interrupted_staging(
    engine: &Engine,
    state: Arc<StateDb>,
) -> Result<Vec<PathBuf>, RestoreError> {
    let volumes = engine.volumes().await.map_err(RestoreError::Docker)?;
    let removed = tokio::task::spawn_blocking(move || {
        let ended = |run_id: &str| {
            matches!(state.run(run_id), Ok(Some(run)) if run.phase != Phase::Running)
        };
        let mut removed: Vec<PathBuf> = volumes
            .values()
            .flat_map(|mountpoint| remove_staging_beside(Path::new(mountpoint), &ended))
            .collect();
        // And the artifacts killed restores fetched from remote repositories.
        let fetched = fetched_dir(&state);
        for entry in std::fs::read_dir(&fetched).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if ended(&name) && std::fs::remove_dir_all(entry.path()).is_ok() {
                removed.push(entry.path());
            }
        }
        removed
    })
    .await
    .map_err(RestoreError::CleanupWorker)?;
    Ok(removed)
}

/// Removes the staging folders beside a volume's data folder `data` whose run `remove`
/// says may go.
fn remove_staging_beside(data: &Path, remove: &dyn Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let (Some(parent), Some(name)) = (data.parent(), data.file_name()) else {
        return removed;
    };
    let prefix = format!("{}.holdfast-restore-", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent) else {
        return removed;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(run_id) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        if !remove(run_id) {
            continue;
        }
        let path = entry.path();
        info!(path = %path.display(), "removing what an interrupted restore left");
        match std::fs::remove_dir_all(&path) {
            Ok(()) => removed.push(path),
            Err(e) => {
                warn!(path = %path.display(), "removing what an interrupted restore left: {e}")
            }
        }
    }
    removed
}

/// Swaps two paths in one step (Linux `renameat2` with `RENAME_EXCHANGE`).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(std::io::Error::from)
}

/// Labels for a volume a restore creates: Compose's own for a stack's volume, so that
/// `docker-compose up` adopts it as its own, and where it came from.
fn volume_labels(artifact: &Artifact, volume: &str, archive: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert(RESTORED_FROM_LABEL.to_string(), archive.to_string());
    if let Some(stack) = &artifact.stack
        && let Some(short) = volume.strip_prefix(&format!("{stack}_"))
    {
        labels.insert(crate::docker::PROJECT_LABEL.to_string(), stack.clone());
        labels.insert("com.docker.compose.volume".to_string(), short.to_string());
    }
    labels
}

/// What of the archive a request restores.
struct Selection<'a> {
    volumes: Vec<&'a Artifact>,
    binds: Vec<&'a Artifact>,
    /// Host folders of the stacks (bind mounts of compose projects that were down), for
    /// the recipe folder: chosen only when one is written.
    folders: Vec<&'a Artifact>,
    dumps: Vec<&'a Artifact>,
    recipe: Vec<&'a Artifact>,
    stacks: Vec<String>,
}

fn select<'a>(
    manifest: &'a Manifest,
    request: &RestoreRequest,
) -> Result<Selection<'a>, RestoreError> {
    let everything = request.stacks.is_empty() && request.volumes.is_empty();
    let in_stacks = |a: &Artifact| {
        everything
            || match &a.stack {
                Some(s) => request.stacks.contains(s),
                // Dumps of older archives name only their container: Compose names it
                // `<stack>_<service>_1` (v1) or `<stack>-<service>-1` (v2).
                None => a.source.as_ref().is_some_and(|c| {
                    request
                        .stacks
                        .iter()
                        .any(|s| c.starts_with(&format!("{s}_")) || c.starts_with(&format!("{s}-")))
                }),
            }
    };
    for stack in &request.stacks {
        if !manifest.targets.stacks.contains(stack)
            && !manifest
                .artifacts
                .iter()
                .any(|a| a.stack.as_ref() == Some(stack))
        {
            return Err(RestoreError::NoStack {
                archive: manifest.id.clone(),
                stack: stack.clone(),
                has: list(&manifest.targets.stacks),
            });
        }
    }
    let archived: Vec<String> = manifest
        .artifacts
        .iter()
        .filter(|a| a.kind == "volume")
        .filter_map(|a| a.source.clone())
        .collect();
    for v in request.volumes.iter().chain(request.mapping.keys()) {
        if !archived.contains(v) {
            return Err(RestoreError::NoVolume {
                archive: manifest.id.clone(),
                volume: v.clone(),
                has: list(&archived),
            });
        }
    }
    let of = |kind: &str| -> Vec<&'a Artifact> {
        manifest
            .artifacts
            .iter()
            .filter(|a| a.kind == kind)
            .collect()
    };
    let volumes: Vec<&Artifact> = of("volume")
        .into_iter()
        .filter(|a| {
            in_stacks(a)
                || a.source
                    .as_ref()
                    .is_some_and(|s| request.volumes.contains(s))
        })
        .collect();
    let stacks: Vec<String> = if everything {
        manifest.targets.stacks.clone()
    } else {
        request.stacks.clone()
    };
    let selection = Selection {
        volumes: if request.dumps_only {
            Vec::new()
        } else {
            volumes
        },
        binds: of("bind").into_iter().filter(|a| in_stacks(a)).collect(),
        folders: match request.recipe_to {
            Some(_) => of("path").into_iter().filter(|a| in_stacks(a)).collect(),
            None => Vec::new(),
        },
        dumps: of("dump").into_iter().filter(|a| in_stacks(a)).collect(),
        recipe: of("recipe")
            .into_iter()
            .filter(|a| in_stacks(a) || recipe_stack(a).is_some_and(|s| stacks.contains(&s)))
            .collect(),
        stacks,
    };
    // An option that would do nothing is refused before anything is touched.
    let with_dumps = || {
        list(
            &of("dump")
                .iter()
                .filter_map(|a| a.stack.clone().or_else(|| a.source.clone()))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>(),
        )
    };
    if request.replays() && selection.dumps.is_empty() {
        return Err(RestoreError::NothingToReplay {
            archive: manifest.id.clone(),
            stacks: with_dumps(),
        });
    }
    if request.recipe_to.is_some() && selection.recipe.is_empty() {
        return Err(RestoreError::NoRecipe {
            archive: manifest.id.clone(),
            stacks: list(
                &of("recipe")
                    .iter()
                    .filter_map(|a| recipe_stack(a))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>(),
            ),
        });
    }
    Ok(selection)
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join(", ")
    }
}

/// The stack a recipe file belongs to: `recipe/<stack>/...`.
fn recipe_stack(a: &Artifact) -> Option<String> {
    let rest = a.path.strip_prefix("recipe/")?;
    rest.split('/').next().map(str::to_string)
}

fn check_empty_folder(dir: &Path) -> Result<(), RestoreError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                Err(RestoreError::RecipeFolderNotEmpty {
                    dir: dir.to_path_buf(),
                })
            } else {
                Ok(())
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RestoreError::RecipeFolder {
            dir: dir.to_path_buf(),
            source,
        }),
    }
}

/// The artifact is byte for byte what the manifest recorded (a folder: its listing).
fn check_checksum(root: &Path, artifact: &Artifact) -> Result<(), RestoreError> {
    use sha2::{Digest, Sha256};
    if artifact.snapshot.is_some() && artifact.snapshot_path().1 {
        // A folder of a restic snapshot, fetched as a tar stream made then: restic checked
        // each blob it read, and there is no digest of the stream to compare.
        return Ok(());
    }
    let path = root.join(&artifact.path);
    let actual = if path.is_dir() {
        crate::archive::folder_listing_sha256(&path)
            .map_err(RestoreError::Archive)?
            .0
    } else {
        let mut file = std::fs::File::open(&path).map_err(io_error("reading", &path))?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher).map_err(io_error("reading", &path))?;
        hex::encode(hasher.finalize())
    };
    if actual != artifact.sha256 {
        return Err(RestoreError::Checksum {
            artifact: artifact.path.clone(),
            actual,
            expected: artifact.sha256.clone(),
        });
    }
    Ok(())
}

fn io_error(doing: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError {
    let path = path.to_path_buf();
    move |source| RestoreError::Io {
        doing,
        path,
        source,
    }
}

/// Writes the recipe of the selected stacks into `dir` (one stack) or `dir/<stack>`,
/// with `COMPOSE_PROJECT_NAME` in `.env` so Compose names everything as before, and the
/// bind-mounted folders that lived beside the compose file. Returns the files written.
fn write_recipe(
    root: &Path,
    selection: &Selection<'_>,
    dir: &Path,
) -> Result<Vec<String>, RestoreError> {
    let mut written = Vec::new();
    let single = selection.stacks.len() <= 1;
    for stack in &selection.stacks {
        let dest = if single {
            dir.to_path_buf()
        } else {
            dir.join(stack)
        };
        std::fs::create_dir_all(&dest).map_err(io_error("creating", &dest))?;
        let prefix = format!("recipe/{stack}/");
        let mut env_text = None;
        for a in selection
            .recipe
            .iter()
            .filter(|a| a.path.starts_with(&prefix))
        {
            let rel = &a.path[prefix.len()..];
            let from = root.join(&a.path);
            if rel == ".env" {
                env_text =
                    Some(std::fs::read_to_string(&from).map_err(io_error("reading", &from))?);
                continue;
            }
            let to = dest.join(rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(io_error("creating", parent))?;
            }
            std::fs::copy(&from, &to).map_err(io_error("writing", &to))?;
            written.push(to.display().to_string());
        }
        let mut env = env_text.unwrap_or_default();
        if !env
            .lines()
            .any(|l| l.trim_start().starts_with("COMPOSE_PROJECT_NAME="))
        {
            if !env.is_empty() && !env.ends_with('\n') {
                env.push('\n');
            }
            env.push_str(&format!("COMPOSE_PROJECT_NAME={stack}\n"));
        }
        let env_path = dest.join(".env");
        crate::fsutil::write_atomic(&env_path, env.as_bytes())
            .map_err(io_error("writing", &env_path))?;
        written.push(env_path.display().to_string());
        for bind in selection
            .binds
            .iter()
            .filter(|b| b.stack.as_deref() == Some(stack))
        {
            match bind_folder(root, stack, bind) {
                Some(rel) => {
                    let to = dest.join(&rel);
                    let artifact = root.join(&bind.path);
                    let limits = limits_for(bind);
                    crate::archive::extract_artifact(
                        &artifact,
                        &to,
                        limits,
                        &crate::progress::Silent,
                    )
                    .map_err(|source| RestoreError::Bind {
                        artifact: bind.path.clone(),
                        source,
                    })?;
                    written.push(to.display().to_string());
                }
                None => info!(
                    bind = bind.source.as_deref().unwrap_or(""),
                    "bind mount outside the compose folder: not written into the recipe folder"
                ),
            }
        }
        // A compose project that was down: its recipe names where its compose files were,
        // and its bind-mounted folders below that folder go to the same place below DIR.
        let compose_folder = selection
            .recipe
            .iter()
            .filter(|a| a.path.starts_with(&prefix))
            .find_map(|a| Some(Path::new(a.source.as_deref()?).parent()?.to_path_buf()));
        for folder in selection
            .folders
            .iter()
            .filter(|f| f.stack.as_deref() == Some(stack))
        {
            let rel = compose_folder
                .as_deref()
                .zip(folder.source.as_deref())
                .and_then(|(base, source)| below(base, Path::new(source)));
            match rel {
                Some(rel) => {
                    let to = dest.join(&rel);
                    crate::archive::extract_artifact(
                        &root.join(&folder.path),
                        &to,
                        limits_for(folder),
                        &crate::progress::Silent,
                    )
                    .map_err(|source| RestoreError::Bind {
                        artifact: folder.path.clone(),
                        source,
                    })?;
                    written.push(to.display().to_string());
                }
                None => info!(
                    folder = folder.source.as_deref().unwrap_or(""),
                    "host folder outside the compose folder: not written into the recipe folder"
                ),
            }
        }
    }
    Ok(written)
}

/// `path` relative to `base`, when it is a plain path below it.
fn below(base: &Path, path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix(base).ok()?;
    if rel.as_os_str().is_empty()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    Some(rel.to_path_buf())
}

/// For a bind mount of a stack's container, its host folder relative to the compose
/// folder, from the archived inspect output; `None` when it lives elsewhere.
fn bind_folder(root: &Path, stack: &str, bind: &Artifact) -> Option<PathBuf> {
    let (container, destination) = bind.source.as_deref()?.split_once(':')?;
    let inspect: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join(format!("recipe/{stack}/inspect/{container}.json"))).ok()?,
    )
    .ok()?;
    let working_dir =
        inspect["Config"]["Labels"]["com.docker.compose.project.working_dir"].as_str()?;
    let source = inspect["Mounts"]
        .as_array()?
        .iter()
        .find(|m| m["Destination"] == destination && m["Type"] == "bind")?["Source"]
        .as_str()?;
    let rel = Path::new(source).strip_prefix(working_dir).ok()?;
    // Only plain relative paths below the compose folder.
    if rel.as_os_str().is_empty()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    Some(rel.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{Excludes, ExtractLimits, archive_directory};
    use crate::spec::common::Format;

    /// A restore cancelled at shutdown: its progress says so from the start.
    struct Cancelled;

    impl Progress for Cancelled {
        fn cancelled(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn a_cancelled_restore_leaves_the_volume_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("new"), vec![1u8; 2 << 20]).unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        let info = archive_directory(
            &src,
            &repo,
            "v",
            Format::TarZst,
            None,
            &Excludes::none(),
            &crate::progress::Silent,
        )
        .unwrap();
        let data = dir.path().join("volume/_data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("old"), b"old").unwrap();
        let limits = ExtractLimits {
            max_entries: 100,
            max_bytes: 1 << 30,
        };
        let result = swap_in(
            Extracted::File(repo.join(&info.path)),
            &data,
            "r1",
            limits,
            Arc::new(Cancelled),
        )
        .await;
        assert!(result.is_err());
        assert_eq!(std::fs::read(data.join("old")).unwrap(), b"old");
        assert!(!data.join("new").exists());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("volume"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["_data"], "no staging folder is left behind");
    }
}
