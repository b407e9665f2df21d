//! What a backup touches, as claims on the process's resource locks, and the wait for
//! them before anything is stopped.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tracing::info;

use super::resolve::BackupPlan;
use super::{BackupRequest, Executor, Progressing, RunError};
use crate::locks::{Access, Claims, LockGuard, Resource};
use crate::progress::Progress;
use crate::spec::common::StopMode;

/// The claims of a resolved backup. Stopping is exclusive: the containers it stops, and
/// with `stop: stack` their stacks. Containers it stops are claimed whether they run now
/// or not: one another run stopped a moment ago is still this run's to stop. Everything
/// else is shared: the volumes and bind-mount folders it reads, the containers it runs
/// dumps and hooks in, and the stacks of the containers it stops one by one (so that no
/// one stops such a stack whole meanwhile).
pub fn backup_claims(plan: &BackupPlan) -> Claims {
    let mut claims = Claims::new();
    let stopping = plan.stop != StopMode::None;
    let stopped = plan
        .stop_order
        .iter()
        .chain(plan.containers.iter().filter(|_| stopping));
    for c in stopped {
        claims.exclusive(Resource::Container(c.id.clone()), &c.name);
        if let Some(stack) = &c.stack {
            claims.shared(Resource::Stack(stack.clone()), stack);
        }
    }
    if plan.stop == StopMode::Stack {
        for stack in &plan.stacks {
            claims.exclusive(Resource::Stack(stack.clone()), stack);
        }
    }
    let exec_into = plan
        .dumps
        .iter()
        .map(|d| (&d.container_id, &d.container, &d.stack))
        .chain(
            plan.pre_hooks
                .iter()
                .chain(&plan.post_hooks)
                .map(|h| (&h.container_id, &h.container, &None)),
        );
    for (id, name, stack) in exec_into {
        claims.shared(Resource::Container(id.clone()), name);
        if let Some(stack) = stack {
            claims.shared(Resource::Stack(stack.clone()), stack);
        }
    }
    for v in &plan.volumes {
        claims.shared(Resource::Volume(v.name.clone()), &v.name);
    }
    for b in &plan.binds {
        claims.folder(Path::new(&b.source), Access::Shared);
    }
    for p in &plan.paths {
        claims.folder(Path::new(&p.path), Access::Shared);
    }
    claims
}

impl Executor {
    /// Waits until no other run of this process holds what `plan` touches, then holds it.
    /// A run that had to wait resolves its targets again, since the one it waited for may
    /// have changed them; if they now need more than it holds, it lets go and waits again.
    pub(super) async fn hold_targets(
        &self,
        request: &BackupRequest,
        run_id: &str,
        plan: &mut BackupPlan,
        progress: &Arc<dyn Progress>,
        run: &mut Progressing,
    ) -> Option<LockGuard> {
        let started = Instant::now();
        let mut waited = false;
        loop {
            let claims = backup_claims(plan);
            let guard = self
                .locks
                .acquire_for_run(run_id, claims.clone(), progress.as_ref())
                .await;
            if guard.waited().is_zero() && !waited {
                return Some(guard);
            }
            waited = true;
            let fresh = match self.plan(&request.spec).await {
                Ok(fresh) => fresh,
                Err(e) => {
                    run.fatal.push(RunError::Resolve(e));
                    return None;
                }
            };
            let covered = claims.covers(&backup_claims(&fresh));
            run.fatal
                .extend(fresh.errors.iter().cloned().map(RunError::Unresolved));
            *plan = fresh;
            if !run.fatal.is_empty() {
                return None;
            }
            if covered {
                info!(
                    waited_seconds = started.elapsed().as_secs_f64(),
                    "waited for other runs; going on"
                );
                run.time("wait", started);
                return Some(guard);
            }
            info!("the targets changed while waiting; waiting for them anew");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::resolve::{PlannedContainer, PlannedVolume};

    fn container(id: &str, stack: Option<&str>, running: bool) -> PlannedContainer {
        PlannedContainer {
            id: id.into(),
            name: format!("{id}-name"),
            stack: stack.map(str::to_string),
            service: None,
            running,
        }
    }

    #[test]
    fn stopping_is_exclusive_reading_is_shared() {
        let web = container("web", Some("app"), true);
        let idle = container("idle", Some("app"), false);
        let plan = BackupPlan {
            stacks: vec!["app".into()],
            containers: vec![web.clone(), idle.clone()],
            volumes: vec![PlannedVolume {
                name: "data".into(),
                mountpoint: None,
                used_by: vec![],
                stack: None,
                leave_out: vec![],
            }],
            stop: StopMode::Container,
            stop_order: vec![web],
            ..BackupPlan::default()
        };
        let claims = backup_claims(&plan);
        let mut expected = Claims::new();
        expected.exclusive(Resource::Container("web".into()), "web-name");
        // Not running now, perhaps because another run stopped it: claimed all the same.
        expected.exclusive(Resource::Container("idle".into()), "idle-name");
        expected.shared(Resource::Stack("app".into()), "app");
        expected.shared(Resource::Volume("data".into()), "data");
        assert_eq!(claims, expected);

        let whole = backup_claims(&BackupPlan {
            stop: StopMode::Stack,
            ..plan.clone()
        });
        assert!(whole.covers(&expected));
        let mut stack = Claims::new();
        stack.exclusive(Resource::Stack("app".into()), "app");
        assert!(whole.covers(&stack));

        let reader = backup_claims(&BackupPlan {
            stop: StopMode::None,
            stop_order: vec![],
            ..plan
        });
        let mut only_data = Claims::new();
        only_data.shared(Resource::Volume("data".into()), "data");
        assert_eq!(reader, only_data);
    }
}
