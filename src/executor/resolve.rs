//! Resolving a backup's targets against what Docker reports: which containers, volumes,
//! bind mounts, dumps and hooks a run covers, and in which order things stop and start.
//!
//! Pure: it takes the discovered state and returns the plan, so `holdfast plan` and a real
//! run always agree, and it is tested without Docker.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::order::{self, ComposeDeps, OrderBasis};
use super::own::{self, OwnFolder, Place};
use super::project::FoundProject;
use crate::docker::{ContainerInfo, MountInfo, Stack};
use crate::spec::common::{
    ComposeProject, Consistency, Databases, Dump, Engine, Include, SecretSource, StopMode, Targets,
};

/// What a backup is asked to cover: a policy's settings, or an Archive's.
#[derive(Clone, Debug)]
pub struct BackupSpec {
    pub targets: Targets,
    pub include: Include,
    pub consistency: Consistency,
    pub dumps: Vec<Dump>,
}

/// What Docker reported, as the plan needs it.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub stacks: Vec<Stack>,
    /// Every container, in a stack or not.
    pub containers: Vec<ContainerInfo>,
    /// Named volumes and their mountpoints on the Docker host.
    pub volumes: BTreeMap<String, String>,
    /// holdfast's own folders, never archived.
    pub own: Vec<OwnFolder>,
    /// Bind sources and volume mountpoints with symlinks resolved, where this machine
    /// can see them.
    pub real_paths: BTreeMap<String, PathBuf>,
    /// Per stack without Compose v2's depends_on labels, what its compose files say.
    pub compose_deps: BTreeMap<String, ComposeDeps>,
    /// Per compose project of the targets, what its files say, or why they could not be
    /// read ([`super::project::observe_host`]).
    pub projects: BTreeMap<ComposeProject, Result<FoundProject, String>>,
    /// The host folders of the targets (given, or bind-mounted by a compose project), as
    /// this machine sees them.
    pub folders: BTreeMap<String, FolderState>,
}

/// What a host folder of the targets is on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FolderState {
    Folder,
    /// A file or something else that is no folder.
    NotFolder,
    /// It cannot be looked at: why (it does not exist, no permission).
    Unreadable(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedContainer {
    pub id: String,
    pub name: String,
    pub stack: Option<String>,
    pub service: Option<String>,
    pub running: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedVolume {
    pub name: String,
    pub mountpoint: Option<String>,
    /// Containers that mount it (names).
    pub used_by: Vec<String>,
    /// The stack it belongs to, if a container of a target stack mounts it.
    pub stack: Option<String>,
    /// Paths inside it left out: holdfast's own folders.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leave_out: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedBind {
    pub container: String,
    pub container_id: String,
    pub stack: Option<String>,
    pub source: String,
    pub destination: String,
    /// `<container>-<n>`, the artifact's name.
    pub artifact: String,
    /// Paths inside it left out: holdfast's own folders.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leave_out: Vec<String>,
}

/// A host folder archived on its own: one of `targets.paths`, or a folder a compose
/// project that is down bind-mounts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedPath {
    /// The folder, as given or as the compose file says it.
    pub path: String,
    /// The artifact's name under `paths/`, made from the path.
    pub artifact: String,
    /// The compose project whose bind mount it is.
    pub stack: Option<String>,
    /// Containers that bind-mount it, or a folder inside or around it, read-write: they
    /// are stopped as for their own bind mount.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounted_by: Vec<String>,
    /// Paths inside it left out: holdfast's own folders.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leave_out: Vec<String>,
}

/// A compose project of `targets.composeProjects`, as found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedProject {
    /// The folder named in the spec.
    pub path: String,
    /// The project name.
    pub project: String,
    /// The compose files read.
    pub files: Vec<String>,
    /// Its containers Docker has, running or not; none when it is down, and then
    /// nothing is stopped for it.
    pub containers: Vec<String>,
    /// The volumes its files name that exist.
    pub volumes: Vec<String>,
    /// The host folders its services bind-mount.
    pub binds: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedDump {
    pub container: String,
    pub container_id: String,
    pub service: Option<String>,
    /// The Compose project of the container, if any.
    pub stack: Option<String>,
    pub engine: Engine,
    pub databases: Databases,
    pub user: Option<String>,
    #[serde(skip)]
    pub password: Option<SecretSource>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedHook {
    pub container: String,
    pub container_id: String,
    /// The Compose project of the container, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    pub command: Vec<String>,
    pub timeout_seconds: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    pub what: String,
    pub reason: String,
}

/// Everything one run will do, resolved.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupPlan {
    pub stacks: Vec<String>,
    pub containers: Vec<PlannedContainer>,
    pub volumes: Vec<PlannedVolume>,
    pub binds: Vec<PlannedBind>,
    /// Host folders: `targets.paths`, and the bind mounts of compose projects that are down.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PlannedPath>,
    /// The compose projects of `targets.composeProjects`, as found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub projects: Vec<PlannedProject>,
    pub dumps: Vec<PlannedDump>,
    pub pre_hooks: Vec<PlannedHook>,
    pub post_hooks: Vec<PlannedHook>,
    pub stop: StopMode,
    /// Running containers to stop, in this order (dependents first).
    pub stop_order: Vec<PlannedContainer>,
    /// Where the stop order came from, part by part.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop_order_basis: Vec<OrderBasis>,
    /// Excluded volumes and skipped bind mounts, with the reason.
    pub skipped: Vec<Skipped>,
    /// What a run goes on despite, such as a compose file that could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Targets that could not be resolved. A plan with errors must not run.
    pub errors: Vec<String>,
}

impl BackupPlan {
    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty()
            && self.binds.is_empty()
            && self.paths.is_empty()
            && self.dumps.is_empty()
    }

    /// Takes `target` out of the plan (under `consistency.hooks.onFailure: skipTarget`,
    /// when its pre hook failed): its volumes, bind mounts and dumps are not archived and
    /// its containers not stopped; `skipped` says why. A volume another container of the
    /// plan also mounts stays. The post hooks stay: they run whenever the pre hooks ran.
    pub fn leave_out(&mut self, target: &HookTarget, reason: &str) {
        let ours = |stack: &Option<String>, container: &str| match target {
            HookTarget::Stack(s) => stack.as_deref() == Some(s.as_str()),
            HookTarget::Container(c) => stack.is_none() && container == c,
        };
        let others: Vec<String> = self
            .containers
            .iter()
            .filter(|c| !ours(&c.stack, &c.name))
            .map(|c| c.name.clone())
            .collect();
        self.volumes.retain(|v| {
            let owned = match target {
                HookTarget::Stack(s) => v.stack.as_deref() == Some(s.as_str()),
                HookTarget::Container(c) => v.stack.is_none() && v.used_by.contains(c),
            };
            !owned || v.used_by.iter().any(|u| others.contains(u))
        });
        self.binds.retain(|b| !ours(&b.stack, &b.container));
        self.dumps.retain(|d| !ours(&d.stack, &d.container));
        self.stop_order.retain(|c| !ours(&c.stack, &c.name));
        self.containers.retain(|c| !ours(&c.stack, &c.name));
        if let HookTarget::Stack(s) = target {
            self.stacks.retain(|name| name != s);
        }
        self.skipped.push(Skipped {
            what: target.to_string(),
            reason: reason.to_string(),
        });
    }
}

/// What a hook belongs to, and what `consistency.hooks.onFailure: skipTarget` leaves out
/// when it fails: its container's stack, or the container itself outside any stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookTarget {
    Stack(String),
    Container(String),
}

impl PlannedHook {
    /// The target this hook runs for.
    pub fn target(&self) -> HookTarget {
        match &self.stack {
            Some(stack) => HookTarget::Stack(stack.clone()),
            None => HookTarget::Container(self.container.clone()),
        }
    }
}

impl std::fmt::Display for HookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookTarget::Stack(name) => write!(f, "stack {name}"),
            HookTarget::Container(name) => write!(f, "container {name}"),
        }
    }
}

/// Host paths never archived from a bind mount: the system itself, and Docker's own data.
/// Database images that borrow the host's `/usr` would otherwise back up the whole system.
const SYSTEM_PATHS: &[&str] = &[
    "/usr",
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var/run",
    "/var/lib/docker",
    "/boot",
];
const SYSTEM_EXACT: &[&str] = &[
    "/", "/etc", "/bin", "/sbin", "/lib", "/lib64", "/var", "/tmp",
];

fn system_path(source: &str) -> bool {
    let source = source.trim_end_matches('/');
    let source = if source.is_empty() { "/" } else { source };
    SYSTEM_EXACT.contains(&source)
        || SYSTEM_PATHS
            .iter()
            .any(|p| source == *p || source.starts_with(&format!("{p}/")))
        || source.ends_with("/docker.sock")
}

/// What of holdfast's own folders lies in the source folder `source` (described as
/// `what`): the paths inside it to leave out, each noted in `skipped`; `None` when the
/// source is itself an own folder or inside one, so nothing of it may be read.
fn own_folders(
    source: &str,
    what: &str,
    observed: &Observed,
    skipped: &mut Vec<Skipped>,
) -> Option<Vec<String>> {
    let real = observed.real_paths.get(source).map(PathBuf::as_path);
    let mut leave_out = Vec::new();
    for folder in &observed.own {
        match own::place(Path::new(source), real, folder) {
            Place::Apart => {}
            Place::Covers => {
                skipped.push(Skipped {
                    what: what.to_string(),
                    reason: format!(
                        "it is holdfast's own {} ({}) or lies inside it, never archived",
                        folder.what,
                        folder.path.display()
                    ),
                });
                return None;
            }
            Place::Inside(rel) => {
                skipped.push(Skipped {
                    what: format!("{} {} in {what}", folder.what, folder.path.display()),
                    reason: format!(
                        "holdfast's own {}, never archived: {rel} is left out of this source",
                        folder.what
                    ),
                });
                leave_out.push(rel);
            }
        }
    }
    Some(leave_out)
}

pub fn resolve(spec: &BackupSpec, observed: &Observed) -> BackupPlan {
    let mut plan = BackupPlan {
        stop: spec.consistency.stop,
        ..BackupPlan::default()
    };
    let targets = &spec.targets;

    // Containers, in a stable order, each once.
    let mut chosen: BTreeMap<String, &ContainerInfo> = BTreeMap::new();
    for name in &targets.stacks {
        match observed.stacks.iter().find(|s| &s.name == name) {
            Some(stack) => {
                plan.stacks.push(stack.name.clone());
                for c in stack.containers() {
                    chosen.insert(c.name.clone(), c);
                }
            }
            None => {
                let known: Vec<&str> = observed.stacks.iter().map(|s| s.name.as_str()).collect();
                plan.errors.push(format!(
                    "stack `{name}` not found; Docker has {}",
                    if known.is_empty() {
                        "no compose stacks".to_string()
                    } else {
                        format!("stacks {}", known.join(", "))
                    }
                ));
            }
        }
    }
    for name in &targets.containers {
        match observed
            .containers
            .iter()
            .find(|c| &c.name == name || c.id.starts_with(name.as_str()))
        {
            Some(c) => {
                chosen.insert(c.name.clone(), c);
            }
            None => plan.errors.push(format!("container `{name}` not found")),
        }
    }
    if let Some(selector) = targets
        .selector
        .as_ref()
        .filter(|s| !s.match_labels.is_empty())
    {
        for c in &observed.containers {
            if selector
                .match_labels
                .iter()
                .all(|(k, v)| c.labels.get(k) == Some(v))
            {
                chosen.insert(c.name.clone(), c);
            }
        }
    }
    // Compose projects: those with containers are stacks; those without bring their
    // volumes and bind-mounted folders from their files.
    let mut project_volumes: Vec<(String, String)> = Vec::new();
    let mut host_paths: Vec<(String, Option<String>)> =
        targets.paths.iter().map(|p| (p.clone(), None)).collect();
    let mut stack_names: BTreeSet<String> = plan.stacks.iter().cloned().collect();
    for project in &targets.compose_projects {
        let found = match observed.projects.get(project) {
            Some(Ok(found)) => found,
            Some(Err(why)) => {
                plan.errors
                    .push(format!("compose project {}: {why}", project.path));
                continue;
            }
            None => {
                plan.errors.push(format!(
                    "compose project {}: its files were not read",
                    project.path
                ));
                continue;
            }
        };
        stack_names.insert(found.name.clone());
        let mut containers = Vec::new();
        if let Some(stack) = observed.stacks.iter().find(|s| s.name == found.name) {
            for c in stack.containers() {
                containers.push(c.name.clone());
                chosen.insert(c.name.clone(), c);
            }
        }
        if containers.is_empty() && spec.include.bind_mounts {
            host_paths.extend(
                found
                    .binds
                    .iter()
                    .map(|b| (b.clone(), Some(found.name.clone()))),
            );
        }
        let mut volumes = Vec::new();
        for v in &found.volumes {
            if observed.volumes.contains_key(v) {
                volumes.push(v.clone());
                if spec.include.volumes {
                    project_volumes.push((v.clone(), found.name.clone()));
                }
            } else {
                plan.skipped.push(Skipped {
                    what: format!("volume {v} of compose project {}", found.name),
                    reason: "Docker has no such volume: it was never created, or removed".into(),
                });
            }
        }
        containers.sort();
        plan.projects.push(PlannedProject {
            path: project.path.clone(),
            project: found.name.clone(),
            files: found.files.clone(),
            containers,
            volumes,
            binds: found.binds.iter().cloned().collect(),
        });
    }
    for c in chosen.values() {
        if let Some(p) = c.project() {
            stack_names.insert(p.to_string());
        }
        plan.containers.push(planned(c));
    }
    plan.stacks = stack_names.into_iter().collect();

    // Volumes: mounted by chosen containers, plus those listed by name.
    let excluded: BTreeSet<&str> = targets.exclude.volumes.iter().map(String::as_str).collect();
    let mut volumes: BTreeMap<String, PlannedVolume> = BTreeMap::new();
    if spec.include.volumes {
        for c in chosen.values() {
            for m in &c.mounts {
                if let MountInfo::Volume { name, .. } = m {
                    let v = volumes
                        .entry(name.clone())
                        .or_insert_with(|| PlannedVolume {
                            name: name.clone(),
                            mountpoint: observed.volumes.get(name).cloned(),
                            used_by: Vec::new(),
                            stack: c.project().map(str::to_string),
                            leave_out: Vec::new(),
                        });
                    v.used_by.push(c.name.clone());
                }
            }
        }
    }
    for name in &targets.volumes {
        if !observed.volumes.contains_key(name) {
            plan.errors.push(format!("volume `{name}` not found"));
            continue;
        }
        volumes
            .entry(name.clone())
            .or_insert_with(|| PlannedVolume {
                name: name.clone(),
                mountpoint: observed.volumes.get(name).cloned(),
                used_by: observed
                    .containers
                    .iter()
                    .filter(|c| {
                        c.mounts
                            .iter()
                            .any(|m| matches!(m, MountInfo::Volume { name: n, .. } if n == name))
                    })
                    .map(|c| c.name.clone())
                    .collect(),
                stack: None,
                leave_out: Vec::new(),
            });
    }
    for (name, stack) in project_volumes {
        volumes
            .entry(name.clone())
            .or_insert_with(|| PlannedVolume {
                mountpoint: observed.volumes.get(&name).cloned(),
                used_by: observed
                    .containers
                    .iter()
                    .filter(|c| {
                        c.mounts
                            .iter()
                            .any(|m| matches!(m, MountInfo::Volume { name: n, .. } if *n == name))
                    })
                    .map(|c| c.name.clone())
                    .collect(),
                name,
                stack: Some(stack),
                leave_out: Vec::new(),
            });
    }
    for (name, mut volume) in volumes {
        if excluded.contains(name.as_str()) {
            plan.skipped.push(Skipped {
                what: format!("volume {name}"),
                reason: "excluded by spec.targets.exclude.volumes".into(),
            });
            continue;
        }
        if let Some(mountpoint) = volume.mountpoint.clone() {
            let source = format!("volume {name} ({mountpoint})");
            match own_folders(&mountpoint, &source, observed, &mut plan.skipped) {
                Some(leave_out) => volume.leave_out = leave_out,
                None => continue,
            }
        }
        plan.volumes.push(volume);
    }

    // Bind mounts of chosen containers.
    if spec.include.bind_mounts {
        for c in chosen.values() {
            let mut n = 0;
            for m in &c.mounts {
                if let MountInfo::Bind {
                    source,
                    destination,
                    ..
                } = m
                {
                    if system_path(source) {
                        plan.skipped.push(Skipped {
                            what: format!("bind mount {source} of {}", c.name),
                            reason: "a system path, never archived".into(),
                        });
                        continue;
                    }
                    let what = format!("bind mount {source} of {}", c.name);
                    let Some(leave_out) = own_folders(source, &what, observed, &mut plan.skipped)
                    else {
                        continue;
                    };
                    n += 1;
                    plan.binds.push(PlannedBind {
                        container: c.name.clone(),
                        container_id: c.id.clone(),
                        stack: c.project().map(str::to_string),
                        source: source.clone(),
                        destination: destination.clone(),
                        artifact: format!("{}-{n}", c.name),
                        leave_out,
                    });
                }
            }
        }
    }

    // Host folders, and the containers that mount them (or a folder inside or around
    // them) read-write, to be stopped as for their own bind mounts. One that can only
    // read it (`/etc/localtime:ro`) changes nothing in it, so it runs on.
    let mut path_users: BTreeMap<String, &ContainerInfo> = BTreeMap::new();
    let mut artifacts = BTreeSet::new();
    for (path, stack) in host_paths {
        if plan.paths.iter().any(|p| p.path == path) {
            continue;
        }
        let what = match &stack {
            Some(stack) => format!("bind mount {path} of compose project {stack}"),
            None => format!("host folder {path}"),
        };
        match observed.folders.get(&path) {
            Some(FolderState::Folder) => {}
            // Listed by name: it must be there. A compose project's is left out, said so.
            Some(FolderState::NotFolder) if stack.is_some() => {
                plan.skipped.push(Skipped {
                    what,
                    reason: "a file, not a folder: only folders are archived".into(),
                });
                continue;
            }
            Some(FolderState::Unreadable(why)) if stack.is_some() => {
                plan.skipped.push(Skipped {
                    what,
                    reason: format!("it cannot be read here ({why})"),
                });
                continue;
            }
            Some(FolderState::NotFolder) => {
                plan.errors.push(format!(
                    "{what} is not a folder: name folders in spec.targets.paths"
                ));
                continue;
            }
            Some(FolderState::Unreadable(why)) => {
                plan.errors.push(format!(
                    "{what} cannot be read ({why}); holdfast must see it at the same path"
                ));
                continue;
            }
            None => {
                plan.errors.push(format!("{what} was not looked at"));
                continue;
            }
        }
        if stack.is_some() && system_path(&path) {
            plan.skipped.push(Skipped {
                what,
                reason: "a system path, never archived".into(),
            });
            continue;
        }
        let Some(leave_out) = own_folders(&path, &what, observed, &mut plan.skipped) else {
            continue;
        };
        let real = observed.real_paths.get(&path).map(PathBuf::as_path);
        let mut mounted_by = Vec::new();
        for c in &observed.containers {
            let mounts = c.mounts.iter().any(|m| match m {
                MountInfo::Bind {
                    source,
                    read_write: true,
                    ..
                } => {
                    let source_real = observed.real_paths.get(source).map(PathBuf::as_path);
                    overlaps(Path::new(&path), Path::new(source))
                        || real.zip(source_real).is_some_and(|(a, b)| overlaps(a, b))
                }
                _ => false,
            });
            if mounts {
                mounted_by.push(c.name.clone());
                path_users.insert(c.name.clone(), c);
            }
        }
        let artifact = artifact_name(&path, &mut artifacts);
        plan.paths.push(PlannedPath {
            path,
            artifact,
            stack,
            mounted_by,
            leave_out,
        });
    }

    // Dumps and hooks name a service of the target stacks, or a container.
    let find =
        |service: &Option<String>, container: &Option<String>| -> Result<&ContainerInfo, NoMatch> {
            if let Some(name) = container {
                return observed
                    .containers
                    .iter()
                    .find(|c| &c.name == name)
                    .ok_or_else(|| NoMatch::Container { name: name.clone() });
            }
            let service = service.as_deref().unwrap_or_default();
            let matches: Vec<&ContainerInfo> = observed
                .stacks
                .iter()
                .filter(|s| plan.stacks.contains(&s.name))
                .flat_map(|s| s.services.get(service).into_iter().flatten())
                .collect();
            match matches.as_slice() {
                [one] => Ok(one),
                [] => Err(NoMatch::Service {
                    service: service.to_string(),
                    stacks: plan.stacks.join(", "),
                }),
                more => Err(NoMatch::Ambiguous {
                    service: service.to_string(),
                    containers: more
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
            }
        };
    for dump in &spec.dumps {
        match find(&dump.service, &dump.container) {
            Ok(c) => plan.dumps.push(PlannedDump {
                container: c.name.clone(),
                container_id: c.id.clone(),
                service: c.service().map(str::to_string),
                stack: c.project().map(str::to_string),
                engine: dump.engine,
                databases: dump.databases.clone(),
                user: dump.user.clone(),
                password: dump.password.clone(),
            }),
            Err(e) => plan.errors.push(format!("dump: {e}")),
        }
    }
    for (hooks, out) in [
        (&spec.consistency.hooks.pre, &mut plan.pre_hooks),
        (&spec.consistency.hooks.post, &mut plan.post_hooks),
    ] {
        for hook in hooks {
            match find(&hook.exec.service, &hook.exec.container) {
                Ok(c) => out.push(PlannedHook {
                    container: c.name.clone(),
                    container_id: c.id.clone(),
                    stack: c.project().map(str::to_string),
                    command: hook.exec.command.clone(),
                    timeout_seconds: hook.exec.timeout.as_duration().as_secs().max(1),
                }),
                Err(e) => plan.errors.push(format!("hook: {e}")),
            }
        }
    }

    // What to stop: the chosen running containers, or their whole stacks.
    // A container mounting a host folder stops as one of the chosen would.
    let mut stopping = chosen.clone();
    stopping.extend(path_users.iter().map(|(k, c)| (k.clone(), *c)));
    let to_stop: Vec<&ContainerInfo> = match spec.consistency.stop {
        StopMode::None => Vec::new(),
        StopMode::Container => stopping
            .values()
            .copied()
            .filter(|c| c.is_running())
            .collect(),
        StopMode::Stack => {
            let mut all: BTreeMap<String, &ContainerInfo> = stopping
                .values()
                .copied()
                .filter(|c| c.project().is_none())
                .map(|c| (c.name.clone(), c))
                .collect();
            let stacks: BTreeSet<&str> = plan
                .stacks
                .iter()
                .map(String::as_str)
                .chain(path_users.values().filter_map(|c| c.project()))
                .collect();
            for s in observed
                .stacks
                .iter()
                .filter(|s| stacks.contains(s.name.as_str()))
            {
                for c in s.containers() {
                    all.insert(c.name.clone(), c);
                }
            }
            all.into_values().filter(|c| c.is_running()).collect()
        }
    };
    let ordered = order::stop_order(
        &to_stop,
        &spec.consistency.stop_order,
        &observed.compose_deps,
    );
    plan.stop_order = ordered.stop.into_iter().map(planned).collect();
    plan.stop_order_basis = ordered.basis;
    plan.warnings.extend(ordered.warnings);

    if plan.errors.is_empty() && plan.is_empty() {
        plan.errors.push(
            "the targets match no volume, bind mount, host folder or dump: nothing to back up"
                .into(),
        );
    }
    plan
}

/// Whether one of two folders is the other or lies inside it.
fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The artifact name of a host folder: its path with `/` made `-` (`/srv/compose` ->
/// `srv-compose`, `/` -> `root`), and a number added when another folder of the run
/// has that name already.
fn artifact_name(path: &str, taken: &mut BTreeSet<String>) -> String {
    let base: String = path
        .trim_matches('/')
        .chars()
        .map(|c| match c {
            '/' => '-',
            c if c.is_ascii_alphanumeric() || "._-".contains(c) => c,
            _ => '_',
        })
        .collect();
    let base = if base.is_empty() { "root".into() } else { base };
    let mut name = base.clone();
    let mut n = 1;
    while !taken.insert(name.clone()) {
        n += 1;
        name = format!("{base}-{n}");
    }
    name
}

/// Why no single container matches what a dump or hook names.
#[derive(Debug, thiserror::Error)]
enum NoMatch {
    #[error("container `{name}` not found")]
    Container { name: String },
    #[error("service `{service}` not found in stacks {stacks}")]
    Service { service: String, stacks: String },
    #[error("service `{service}` is ambiguous: {containers}; name a container instead")]
    Ambiguous { service: String, containers: String },
}

fn planned(c: &ContainerInfo) -> PlannedContainer {
    PlannedContainer {
        id: c.id.clone(),
        name: c.name.clone(),
        stack: c.project().map(str::to_string),
        service: c.service().map(str::to_string),
        running: c.is_running(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::{
        CONFIG_FILES_LABEL, DEPENDS_ON_LABEL, PROJECT_LABEL, SERVICE_LABEL, group_stacks,
    };
    use crate::spec::common::{Exclude, LabelSelector};

    fn container(
        name: &str,
        project: &str,
        service: &str,
        running: bool,
        mounts: Vec<MountInfo>,
    ) -> ContainerInfo {
        let mut labels = BTreeMap::new();
        labels.insert(PROJECT_LABEL.to_string(), project.to_string());
        labels.insert(SERVICE_LABEL.to_string(), service.to_string());
        labels.insert(
            CONFIG_FILES_LABEL.to_string(),
            "/srv/docker-compose.yml".to_string(),
        );
        ContainerInfo {
            id: format!("id-{name}"),
            name: name.into(),
            image: "img".into(),
            state: if running { "running" } else { "exited" }.into(),
            labels,
            mounts,
        }
    }

    fn vol(name: &str) -> MountInfo {
        MountInfo::Volume {
            name: name.into(),
            destination: "/data".into(),
            read_write: true,
        }
    }

    fn bind(source: &str) -> MountInfo {
        MountInfo::Bind {
            source: source.into(),
            destination: "/x".into(),
            read_write: false,
        }
    }

    fn observed() -> Observed {
        let mut web = container(
            "demo_web_1",
            "demo",
            "web",
            true,
            vec![vol("demo_web-data"), bind("/srv/demo/config")],
        );
        web.labels
            .insert("holdfast.dev/backup".into(), "true".into());
        let mut worker = container(
            "demo_worker_1",
            "demo",
            "worker",
            true,
            vec![vol("demo_web-data")],
        );
        worker
            .labels
            .insert(DEPENDS_ON_LABEL.into(), "web:service_started:false".into());
        let db = container(
            "demo_db_1",
            "demo",
            "db",
            true,
            vec![vol("demo_db-data"), bind("/usr")],
        );
        let stopped = container("demo_old_1", "demo", "old", false, vec![]);
        let other = container("other_app_1", "other", "app", true, vec![vol("other_data")]);
        let containers = vec![web, worker, db, stopped, other];
        Observed {
            stacks: group_stacks(containers.clone()),
            containers,
            volumes: ["demo_web-data", "demo_db-data", "other_data", "loose"]
                .into_iter()
                .map(|v| (v.to_string(), format!("/var/lib/docker/volumes/{v}/_data")))
                .collect(),
            ..Observed::default()
        }
    }

    fn spec(targets: Targets, stop: StopMode) -> BackupSpec {
        BackupSpec {
            targets,
            include: Include::default(),
            consistency: Consistency {
                stop,
                ..Consistency::default()
            },
            dumps: vec![],
        }
    }

    #[test]
    fn a_stack_brings_its_volumes_binds_and_stop_order() {
        let targets = Targets {
            stacks: vec!["demo".into()],
            ..Targets::default()
        };
        let plan = resolve(&spec(targets, StopMode::Stack), &observed());
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        let volumes: Vec<&str> = plan.volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(volumes, ["demo_db-data", "demo_web-data"]);
        assert_eq!(plan.volumes[1].used_by, ["demo_web_1", "demo_worker_1"]);
        assert_eq!(plan.binds.len(), 1);
        assert_eq!(plan.binds[0].artifact, "demo_web_1-1");
        assert!(plan.skipped.iter().any(|s| s.what.contains("/usr")));
        let stop: Vec<&str> = plan.stop_order.iter().map(|c| c.name.as_str()).collect();
        // The worker depends on web, so it stops first; the stopped container stays stopped.
        assert_eq!(stop, ["demo_worker_1", "demo_web_1", "demo_db_1"]);
    }

    #[test]
    fn a_target_left_out_takes_its_data_and_stops_with_it_and_nothing_else() {
        let mut seen = observed();
        // A container outside any stack, sharing a volume with another one.
        for (name, volumes) in [
            ("loner", vec![vol("loner_data"), vol("shared")]),
            ("pal", vec![vol("shared")]),
        ] {
            let mut c = container(name, "", "", true, volumes);
            c.labels.clear();
            seen.containers.push(c);
        }
        for v in ["loner_data", "shared"] {
            seen.volumes.insert(v.into(), format!("/v/{v}"));
        }
        // Another stack mounting a volume of the demo stack.
        seen.containers.push(container(
            "other_side_1",
            "other",
            "side",
            true,
            vec![vol("demo_db-data")],
        ));
        seen.stacks = group_stacks(seen.containers.clone());
        let targets = Targets {
            stacks: vec!["demo".into(), "other".into()],
            containers: vec!["loner".into(), "pal".into()],
            ..Targets::default()
        };
        let mut plan = resolve(&spec(targets, StopMode::Stack), &seen);
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        let hook = PlannedHook {
            container: "demo_web_1".into(),
            container_id: "id-demo_web_1".into(),
            stack: Some("demo".into()),
            command: vec!["true".into()],
            timeout_seconds: 1,
        };
        assert_eq!(hook.target(), HookTarget::Stack("demo".into()));
        plan.leave_out(&hook.target(), "its pre hook failed");
        let names = |plan: &BackupPlan| -> (Vec<String>, Vec<String>, usize) {
            (
                plan.volumes.iter().map(|v| v.name.clone()).collect(),
                plan.stop_order.iter().map(|c| c.name.clone()).collect(),
                plan.binds.len(),
            )
        };
        assert_eq!(
            names(&plan),
            (
                vec![
                    "demo_db-data".into(),
                    "loner_data".into(),
                    "other_data".into(),
                    "shared".into()
                ],
                vec![
                    "pal".into(),
                    "other_side_1".into(),
                    "other_app_1".into(),
                    "loner".into()
                ],
                0
            )
        );
        assert_eq!(plan.stacks, ["other"]);
        assert_eq!(plan.skipped.last().unwrap().what, "stack demo");
        assert_eq!(plan.skipped.last().unwrap().reason, "its pre hook failed");

        // A container outside any stack: its own volume goes, the one it shares stays.
        let loner = HookTarget::Container("loner".into());
        assert_eq!(loner.to_string(), "container loner");
        plan.leave_out(&loner, "timed out");
        assert_eq!(
            names(&plan),
            (
                vec!["demo_db-data".into(), "other_data".into(), "shared".into()],
                vec!["pal".into(), "other_side_1".into(), "other_app_1".into()],
                0
            )
        );
    }

    #[test]
    fn the_stop_order_comes_from_compose_files_or_the_policy_and_says_so() {
        let mut seen = observed();
        for c in &mut seen.containers {
            c.labels.remove(DEPENDS_ON_LABEL);
        }
        seen.stacks = group_stacks(seen.containers.clone());
        // By name, db would stop last; its compose file says it needs the worker.
        seen.compose_deps.insert(
            "demo".into(),
            ComposeDeps::Read {
                files: vec!["/srv/docker-compose.yml".into()],
                needs: [("db".to_string(), ["worker".to_string()].into())].into(),
            },
        );
        let targets = Targets {
            stacks: vec!["demo".into()],
            ..Targets::default()
        };
        let stop = |plan: &BackupPlan| -> Vec<String> {
            plan.stop_order.iter().map(|c| c.name.clone()).collect()
        };
        let plan = resolve(&spec(targets.clone(), StopMode::Stack), &seen);
        assert_eq!(stop(&plan), ["demo_db_1", "demo_worker_1", "demo_web_1"]);
        assert_eq!(
            order::describe(&plan.stop_order_basis),
            "from the compose file /srv/docker-compose.yml (stack demo)"
        );
        assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);

        let mut stated = spec(targets.clone(), StopMode::Stack);
        stated.consistency.stop_order = vec!["web".into()];
        let plan = resolve(&stated, &seen);
        assert_eq!(stop(&plan), ["demo_web_1", "demo_db_1", "demo_worker_1"]);
        assert_eq!(
            plan.stop_order_basis,
            [
                OrderBasis::StopOrder,
                OrderBasis::ComposeFiles {
                    stack: "demo".into(),
                    files: vec!["/srv/docker-compose.yml".into()]
                }
            ]
        );

        // A file that cannot be read: the plan goes by name, and warns; it is no error.
        seen.compose_deps
            .insert("demo".into(), ComposeDeps::Unusable("it is gone".into()));
        let plan = resolve(&spec(targets, StopMode::Stack), &seen);
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        assert_eq!(stop(&plan), ["demo_worker_1", "demo_web_1", "demo_db_1"]);
        assert_eq!(
            plan.warnings,
            [
                "the stop order of stack demo ignores its compose files, so it goes by name: it is gone"
            ]
        );
    }

    #[test]
    fn missing_targets_are_errors_and_nothing_is_an_error() {
        let targets = Targets {
            stacks: vec!["nope".into()],
            volumes: vec!["gone".into()],
            ..Targets::default()
        };
        let plan = resolve(&spec(targets, StopMode::None), &observed());
        assert_eq!(plan.errors.len(), 2, "{:?}", plan.errors);
        assert!(plan.errors[0].contains("stack `nope` not found; Docker has stacks demo, other"));
        let empty = resolve(
            &spec(Targets::default(), StopMode::None),
            &Observed::default(),
        );
        assert!(empty.errors[0].contains("nothing to back up"));
    }

    #[test]
    fn selectors_exclusions_and_container_mode() {
        let targets = Targets {
            selector: Some(LabelSelector {
                match_labels: [("holdfast.dev/backup".to_string(), "true".to_string())].into(),
            }),
            volumes: vec!["loose".into()],
            exclude: Exclude {
                volumes: vec!["demo_web-data".into()],
                paths: vec![],
            },
            ..Targets::default()
        };
        let plan = resolve(&spec(targets, StopMode::Container), &observed());
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        let volumes: Vec<&str> = plan.volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(volumes, ["loose"]);
        assert!(
            plan.skipped
                .iter()
                .any(|s| s.what == "volume demo_web-data")
        );
        let stop: Vec<&str> = plan.stop_order.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(stop, ["demo_web_1"]);
    }

    #[test]
    fn dumps_find_services_of_the_target_stacks() {
        let mut s = spec(
            Targets {
                stacks: vec!["demo".into()],
                ..Targets::default()
            },
            StopMode::None,
        );
        s.dumps = vec![
            Dump {
                service: Some("db".into()),
                container: None,
                engine: Engine::Postgres,
                databases: Databases::default(),
                user: None,
                password: None,
            },
            Dump {
                service: Some("app".into()),
                container: None,
                engine: Engine::Redis,
                databases: Databases::default(),
                user: None,
                password: None,
            },
        ];
        let plan = resolve(&s, &observed());
        assert_eq!(plan.dumps.len(), 1);
        assert_eq!(plan.dumps[0].container, "demo_db_1");
        assert_eq!(
            plan.errors,
            ["dump: service `app` not found in stacks demo"]
        );
    }

    #[test]
    fn own_folders_are_left_out_of_every_source_and_said_so() {
        let mut seen = observed();
        let folder = |what, path: &str| OwnFolder {
            what,
            path: path.into(),
            real: Some(path.into()),
            id: None,
        };
        seen.own = vec![
            folder("repository", "/srv/demo/config/backups"),
            folder(
                "state folder",
                "/var/lib/docker/volumes/demo_db-data/_data/state",
            ),
        ];
        // The config folder is reached through a symlink in the container's bind mount.
        for c in &mut seen.containers {
            for m in &mut c.mounts {
                if let MountInfo::Bind { source, .. } = m
                    && source == "/srv/demo/config"
                {
                    *source = "/srv/link".into();
                }
            }
        }
        seen.stacks = crate::docker::group_stacks(seen.containers.clone());
        seen.real_paths
            .insert("/srv/link".into(), "/srv/demo/config".into());
        let targets = Targets {
            stacks: vec!["demo".into()],
            ..Targets::default()
        };
        let plan = resolve(&spec(targets, StopMode::None), &seen);
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        assert_eq!(plan.binds[0].leave_out, ["backups"]);
        let db = plan
            .volumes
            .iter()
            .find(|v| v.name == "demo_db-data")
            .unwrap();
        assert_eq!(db.leave_out, ["state"]);
        let said: Vec<String> = plan
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.what, s.reason))
            .collect();
        assert!(
            said.iter().any(|s| s.starts_with(
                "repository /srv/demo/config/backups in bind mount /srv/link of demo_web_1: holdfast's own repository"
            )),
            "{said:?}"
        );
        assert!(
            said.iter()
                .any(|s| s.starts_with("state folder /var/lib/docker/volumes/demo_db-data/_data/state in volume demo_db-data")),
            "{said:?}"
        );

        // A source that is an own folder, or inside one, is not read at all.
        seen.own = vec![folder(
            "repository",
            "/var/lib/docker/volumes/demo_web-data",
        )];
        let targets = Targets {
            stacks: vec!["demo".into()],
            ..Targets::default()
        };
        let plan = resolve(&spec(targets, StopMode::None), &seen);
        let volumes: Vec<&str> = plan.volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(volumes, ["demo_db-data"]);
        assert!(
            plan.skipped
                .iter()
                .any(|s| s.what.starts_with("volume demo_web-data")
                    && s.reason.contains("holdfast's own repository"))
        );
    }

    #[test]
    fn host_folders_stop_the_containers_mounting_them_and_leave_out_own_folders() {
        let mut seen = observed();
        // demo_web_1 writes into /srv/demo/config; demo_db_1 only reads /etc/localtime.
        for c in &mut seen.containers {
            for m in &mut c.mounts {
                if let MountInfo::Bind {
                    source, read_write, ..
                } = m
                {
                    *read_write = source == "/srv/demo/config";
                }
            }
            if c.name == "demo_db_1" {
                c.mounts.push(bind("/etc/localtime"));
            }
        }
        seen.stacks = group_stacks(seen.containers.clone());
        for path in ["/srv", "/srv/demo/config/nginx", "/etc"] {
            seen.folders.insert(path.into(), FolderState::Folder);
        }
        seen.folders
            .insert("/srv/file".into(), FolderState::NotFolder);
        seen.folders.insert(
            "/gone".into(),
            FolderState::Unreadable("No such file".into()),
        );
        seen.own = vec![OwnFolder {
            what: "repository",
            path: "/srv/backups".into(),
            real: Some("/srv/backups".into()),
            id: None,
        }];
        let paths = |list: &[&str]| Targets {
            paths: list.iter().map(|p| p.to_string()).collect(),
            ..Targets::default()
        };
        // demo_web_1 mounts /srv/demo/config: inside /srv, around /srv/demo/config/nginx.
        let plan = resolve(
            &spec(
                paths(&["/srv", "/srv/demo/config/nginx", "/etc"]),
                StopMode::Container,
            ),
            &seen,
        );
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        let got: Vec<(&str, &str)> = plan
            .paths
            .iter()
            .map(|p| (p.path.as_str(), p.artifact.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("/srv", "srv"),
                ("/srv/demo/config/nginx", "srv-demo-config-nginx"),
                ("/etc", "etc")
            ]
        );
        assert_eq!(plan.paths[0].leave_out, ["backups"]);
        assert_eq!(plan.paths[0].mounted_by, ["demo_web_1"]);
        assert_eq!(plan.paths[1].mounted_by, ["demo_web_1"]);
        assert!(plan.paths[2].mounted_by.is_empty());
        // The container stops, though none of its own data is chosen.
        let stop: Vec<&str> = plan.stop_order.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(stop, ["demo_web_1"]);
        assert!(plan.containers.is_empty() && plan.volumes.is_empty());
        // With `stop: stack`, its whole stack.
        let plan = resolve(&spec(paths(&["/srv"]), StopMode::Stack), &seen);
        let stop: Vec<&str> = plan.stop_order.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(stop, ["demo_worker_1", "demo_web_1", "demo_db_1"]);

        // A file, or what cannot be read, is an error naming it.
        let plan = resolve(&spec(paths(&["/srv/file", "/gone"]), StopMode::None), &seen);
        assert_eq!(
            plan.errors,
            [
                "host folder /srv/file is not a folder: name folders in spec.targets.paths",
                "host folder /gone cannot be read (No such file); holdfast must see it at the same path"
            ]
        );
        // The repository folder itself is never read.
        seen.folders
            .insert("/srv/backups".into(), FolderState::Folder);
        let plan = resolve(&spec(paths(&["/srv/backups"]), StopMode::None), &seen);
        assert!(plan.paths.is_empty());
        assert!(
            plan.errors[0].contains("nothing to back up"),
            "{:?}",
            plan.errors
        );
    }

    #[test]
    fn a_compose_project_that_is_down_brings_its_files_volumes_and_folders() {
        let mut seen = observed();
        let down = ComposeProject {
            path: "/srv/cloud".into(),
            ..ComposeProject::default()
        };
        let up = ComposeProject {
            path: "/srv/demo".into(),
            ..ComposeProject::default()
        };
        seen.projects.insert(
            down.clone(),
            Ok(FoundProject {
                name: "cloud".into(),
                files: vec!["/srv/cloud/compose.yaml".into()],
                volumes: ["cloud_db".to_string(), "cloud_never".to_string()].into(),
                binds: [
                    "/srv/cloud/data".to_string(),
                    "/srv/cloud/nginx.conf".to_string(),
                    "/var/run/docker.sock".to_string(),
                ]
                .into(),
            }),
        );
        seen.projects.insert(
            up.clone(),
            Ok(FoundProject {
                name: "demo".into(),
                files: vec!["/srv/demo/docker-compose.yml".into()],
                volumes: ["demo_db-data".to_string()].into(),
                binds: ["/srv/demo/config".to_string()].into(),
            }),
        );
        seen.volumes.insert(
            "cloud_db".into(),
            "/var/lib/docker/volumes/cloud_db/_data".into(),
        );
        seen.folders
            .insert("/srv/cloud/data".into(), FolderState::Folder);
        seen.folders
            .insert("/srv/cloud/nginx.conf".into(), FolderState::NotFolder);
        seen.folders
            .insert("/var/run/docker.sock".into(), FolderState::NotFolder);
        let targets = Targets {
            compose_projects: vec![down.clone()],
            ..Targets::default()
        };
        let plan = resolve(&spec(targets, StopMode::Stack), &seen);
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        assert_eq!(plan.stacks, ["cloud"]);
        assert!(plan.stop_order.is_empty());
        let volumes: Vec<(&str, Option<&str>)> = plan
            .volumes
            .iter()
            .map(|v| (v.name.as_str(), v.stack.as_deref()))
            .collect();
        assert_eq!(volumes, [("cloud_db", Some("cloud"))]);
        assert_eq!(plan.paths.len(), 1);
        assert_eq!(plan.paths[0].path, "/srv/cloud/data");
        assert_eq!(plan.paths[0].stack.as_deref(), Some("cloud"));
        let skipped: Vec<&str> = plan.skipped.iter().map(|s| s.what.as_str()).collect();
        assert_eq!(
            skipped,
            [
                "volume cloud_never of compose project cloud",
                "bind mount /srv/cloud/nginx.conf of compose project cloud",
                "bind mount /var/run/docker.sock of compose project cloud"
            ]
        );
        assert_eq!(plan.projects[0].project, "cloud");
        assert!(plan.projects[0].containers.is_empty());

        // A project whose containers exist is its stack: they are stopped, and its
        // bind mounts are theirs, not host folders.
        let targets = Targets {
            compose_projects: vec![up.clone()],
            ..Targets::default()
        };
        let plan = resolve(&spec(targets, StopMode::Stack), &seen);
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        assert_eq!(plan.stacks, ["demo"]);
        assert!(plan.paths.is_empty());
        assert_eq!(plan.binds.len(), 1);
        let stop: Vec<&str> = plan.stop_order.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(stop, ["demo_worker_1", "demo_web_1", "demo_db_1"]);
        assert_eq!(
            plan.projects[0].containers,
            ["demo_db_1", "demo_old_1", "demo_web_1", "demo_worker_1"]
        );

        // Files that could not be read are an error naming the project's folder.
        seen.projects
            .insert(down.clone(), Err("no compose file in /srv/cloud".into()));
        let targets = Targets {
            compose_projects: vec![down],
            ..Targets::default()
        };
        let plan = resolve(&spec(targets, StopMode::None), &seen);
        assert_eq!(
            plan.errors[0],
            "compose project /srv/cloud: no compose file in /srv/cloud"
        );
    }

    #[test]
    fn system_paths_are_recognised() {
        for p in [
            "/",
            "/usr",
            "/usr/lib",
            "/etc",
            "/var/run/docker.sock",
            "/var/lib/docker/volumes/x",
        ] {
            assert!(system_path(p), "{p}");
        }
        for p in ["/srv/app", "/etc/nginx", "/home/me/data", "/usrdata"] {
            assert!(!system_path(p), "{p}");
        }
    }
}
