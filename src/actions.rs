//! One run of a `ContainerSchedule`: start, stop, restart, pause or unpause the containers
//! its targets select, recorded like a backup run (history, status, notifications).
//!
//! An action waits on the process's resource locks for every container it acts on, their
//! stacks and the volumes they mount, all exclusively: a restart never lands while a
//! backup stops those containers, reads those volumes or runs a dump in them. Only what
//! is not yet in the state asked for is acted on (a running container is not started
//! again), so an action repeated by hand does no harm.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tracing::{Instrument, error, info, info_span, warn};

use crate::docker::engine::Engine;
use crate::docker::{ContainerInfo, MountInfo};
use crate::executor::RunOutcome;
use crate::locks::{Claims, Resource, ResourceLocks};
use crate::progress::Progress;
use crate::spec::common::{Phase, Targets};
use crate::spec::{ContainerAction, Kind};
use crate::state::{RunRecord, StateDb};

/// How long a stopped or restarted container gets to end before Docker kills it.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// One action to take, as the controller asks for it.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionRequest {
    /// The ContainerSchedule's name.
    pub name: String,
    pub action: ContainerAction,
    pub targets: Targets,
    /// Why the action must not be taken (a policy it runs `after` failed): the run is
    /// recorded Failed with this message and touches no container.
    pub skip: Option<String>,
}

/// The containers `targets` select among `containers`, by name and each once, and the
/// targets that select nothing. Stacks are Compose projects (stopped ones included),
/// containers match by name or id prefix, and a selector by labels.
pub fn select<'a>(
    targets: &Targets,
    containers: &'a [ContainerInfo],
) -> (Vec<&'a ContainerInfo>, Vec<String>) {
    let mut chosen: BTreeMap<&str, &ContainerInfo> = BTreeMap::new();
    let mut errors = Vec::new();
    for stack in &targets.stacks {
        let members: Vec<&ContainerInfo> = containers
            .iter()
            .filter(|c| c.project() == Some(stack.as_str()))
            .collect();
        if members.is_empty() {
            errors.push(format!("stack `{stack}` has no containers"));
        }
        chosen.extend(members.into_iter().map(|c| (c.name.as_str(), c)));
    }
    for name in &targets.containers {
        match containers
            .iter()
            .find(|c| &c.name == name || c.id.starts_with(name.as_str()))
        {
            Some(c) => {
                chosen.insert(c.name.as_str(), c);
            }
            None => errors.push(format!("container `{name}` not found")),
        }
    }
    if let Some(selector) = targets
        .selector
        .as_ref()
        .filter(|s| !s.match_labels.is_empty())
    {
        for c in containers {
            if selector
                .match_labels
                .iter()
                .all(|(k, v)| c.labels.get(k) == Some(v))
            {
                chosen.insert(c.name.as_str(), c);
            }
        }
    }
    (chosen.into_values().collect(), errors)
}

/// What acting on a container in Docker state `state` (running, exited, paused, ...) does:
/// `Some(step)` to take, or `None` when it already is as asked.
pub fn step(action: ContainerAction, state: &str) -> Option<ContainerAction> {
    match (action, state) {
        (ContainerAction::Start, "running" | "paused" | "restarting") => None,
        (ContainerAction::Stop, "exited" | "created" | "dead") => None,
        (ContainerAction::Pause, s) if s != "running" => None,
        (ContainerAction::Unpause, s) if s != "paused" => None,
        (action, _) => Some(action),
    }
}

/// The claims of an action on `containers`: each container, its stack and the volumes it
/// mounts, exclusively.
pub fn action_claims(containers: &[&ContainerInfo]) -> Claims {
    let mut claims = Claims::new();
    for c in containers {
        claims.exclusive(Resource::Container(c.id.clone()), &c.name);
        if let Some(stack) = c.project() {
            claims.exclusive(Resource::Stack(stack.to_string()), stack);
        }
        for m in &c.mounts {
            if let MountInfo::Volume { name, .. } = m {
                claims.exclusive(Resource::Volume(name.clone()), name);
            }
        }
    }
    claims
}

/// Takes the action, records it as a run of `ContainerSchedule/<name>`, and reports it
/// like a backup run (no archive, `artifacts` counting the containers acted on).
pub async fn run(
    engine: &Engine,
    state: &StateDb,
    locks: &Arc<ResourceLocks>,
    request: &ActionRequest,
    progress: Arc<dyn Progress>,
) -> RunOutcome {
    let start_time = Utc::now();
    let run_id = format!(
        "{}-{}",
        request.name,
        start_time.format("%Y%m%dT%H%M%S%.3fZ")
    );
    progress.run(&run_id);
    let span =
        info_span!("run", run = %run_id, kind = %Kind::ContainerSchedule, name = %request.name);
    let mut record = RunRecord {
        id: run_id.clone(),
        kind: Kind::ContainerSchedule.to_string(),
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
        repository: None,
        copies: Vec::new(),
    };
    let mut errors = Vec::new();
    if let Err(e) = state.insert_run(&record) {
        errors.push(e.to_string());
    }
    // Inside the run's span, so that its log file has every line.
    let (acted, warnings) = async {
        match (&request.skip, errors.is_empty()) {
            (Some(why), _) => {
                warn!("not taken: {why}");
                errors.push(format!("not taken: {why}"));
                (0, Vec::new())
            }
            (None, false) => (0, Vec::new()),
            (None, true) => act(engine, locks, request, &run_id, progress, &mut errors).await,
        }
    }
    .instrument(span)
    .await;
    let completion_time = Utc::now();
    let phase = if errors.is_empty() {
        Phase::Succeeded
    } else if acted > 0 {
        Phase::PartiallyFailed
    } else {
        Phase::Failed
    };
    record.phase = phase;
    record.completion_time = Some(completion_time);
    record.error = (!errors.is_empty()).then(|| errors.join("; "));
    record.warnings = warnings.clone();
    if let Err(e) = state.finish_run(&record) {
        error!(run = %run_id, "{e}");
        errors.push(e.to_string());
    }
    RunOutcome {
        run_id,
        archive_id: None,
        phase,
        dry_run: false,
        start_time,
        completion_time,
        bytes: 0,
        source_bytes: 0,
        artifacts: acted,
        downtime: BTreeMap::new(),
        errors,
        warnings,
        committed: false,
        plan: None,
        verified: None,
        repository: String::new(),
        copies: Vec::new(),
    }
}

/// Resolves the targets, waits for the locks, resolves again (what it waited for may have
/// changed the containers' states) and acts. Returns how many containers it acted on and
/// the warnings; errors go to `errors`.
async fn act(
    engine: &Engine,
    locks: &Arc<ResourceLocks>,
    request: &ActionRequest,
    run_id: &str,
    progress: Arc<dyn Progress>,
    errors: &mut Vec<String>,
) -> (usize, Vec<String>) {
    progress.phase("looking at the targets");
    let listed = match engine.containers(None).await {
        Ok(c) => c,
        Err(e) => {
            errors.push(e.to_string());
            return (0, Vec::new());
        }
    };
    let (chosen, missing) = select(&request.targets, &listed);
    let claims = action_claims(&chosen);
    let ids: BTreeSet<String> = chosen.iter().map(|c| c.id.clone()).collect();
    let _held = locks
        .acquire_for_run(run_id, claims, progress.as_ref())
        .await;
    // Listed again: a backup it waited for may have stopped and started them.
    let listed = match engine.containers(None).await {
        Ok(c) => c,
        Err(e) => {
            errors.push(e.to_string());
            return (0, Vec::new());
        }
    };
    let mut warnings: Vec<String> = missing;
    let mut acted = 0;
    progress.phase(&format!("{} the containers", request.action));
    for c in listed.iter().filter(|c| ids.contains(&c.id)) {
        let Some(step) = step(request.action, &c.state) else {
            info!(container = %c.name, state = %c.state, "already as asked; left alone");
            continue;
        };
        progress.item(&c.name);
        let done = match step {
            ContainerAction::Start => engine.start(&c.id).await,
            ContainerAction::Stop => engine.stop(&c.id, STOP_TIMEOUT).await,
            ContainerAction::Restart => engine.restart(&c.id, STOP_TIMEOUT).await,
            ContainerAction::Pause => engine.pause(&c.id).await,
            ContainerAction::Unpause => engine.unpause(&c.id).await,
        };
        match done {
            Ok(()) => {
                info!(container = %c.name, action = %step, "done");
                acted += 1;
            }
            Err(e) => {
                error!(container = %c.name, action = %step, "{e}");
                errors.push(format!("{} {}: {e}", step, c.name));
            }
        }
    }
    if ids.is_empty() {
        warnings.push("the targets select no container".to_string());
    }
    // Targets naming nothing are errors when nothing at all was selected, warnings when
    // the others were acted on.
    if ids.is_empty() && !warnings.is_empty() {
        errors.append(&mut warnings);
    }
    (acted, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::common::LabelSelector;

    fn container(name: &str, project: Option<&str>, state: &str) -> ContainerInfo {
        ContainerInfo {
            id: format!("{name}-id"),
            name: name.into(),
            image: "img".into(),
            state: state.into(),
            labels: project
                .map(|p| {
                    [(crate::docker::PROJECT_LABEL.to_string(), p.to_string())]
                        .into_iter()
                        .collect()
                })
                .unwrap_or_default(),
            mounts: vec![MountInfo::Volume {
                name: format!("{name}-data"),
                destination: "/data".into(),
                read_write: true,
            }],
        }
    }

    #[test]
    fn targets_select_each_container_once_and_name_what_is_missing() {
        let all = [
            container("web", Some("app"), "running"),
            container("db", Some("app"), "exited"),
            container("lone", None, "running"),
        ];
        let targets = Targets {
            stacks: vec!["app".into(), "gone".into()],
            containers: vec!["web".into(), "lone".into(), "nope".into()],
            ..Targets::default()
        };
        let (chosen, missing) = select(&targets, &all);
        let names: Vec<&str> = chosen.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["db", "lone", "web"]);
        assert_eq!(
            missing,
            [
                "stack `gone` has no containers",
                "container `nope` not found"
            ]
        );
        let by_label = Targets {
            selector: Some(LabelSelector {
                match_labels: [(crate::docker::PROJECT_LABEL.to_string(), "app".into())].into(),
            }),
            ..Targets::default()
        };
        assert_eq!(select(&by_label, &all).0.len(), 2);
    }

    #[test]
    fn only_what_is_not_yet_as_asked_is_acted_on() {
        use ContainerAction::*;
        assert_eq!(step(Start, "running"), None);
        assert_eq!(step(Start, "exited"), Some(Start));
        assert_eq!(step(Stop, "exited"), None);
        assert_eq!(step(Stop, "paused"), Some(Stop));
        assert_eq!(step(Restart, "exited"), Some(Restart));
        assert_eq!(step(Pause, "running"), Some(Pause));
        assert_eq!(step(Pause, "exited"), None);
        assert_eq!(step(Unpause, "paused"), Some(Unpause));
        assert_eq!(step(Unpause, "running"), None);
    }

    #[test]
    fn an_action_holds_its_containers_stacks_and_volumes_exclusively() {
        let web = container("web", Some("app"), "running");
        let claims = action_claims(&[&web]);
        let mut backup = Claims::new();
        backup.shared(Resource::Volume("web-data".into()), "web-data");
        assert!(claims.covers(&backup));
        let mut other = Claims::new();
        other.exclusive(Resource::Stack("app".into()), "app");
        other.exclusive(Resource::Container("web-id".into()), "web");
        assert!(claims.covers(&other));
    }
}
