//! The reconciler's decision: given the desired state, what is remembered and running, and
//! `now`, which runs to start, which wait, and when to wake up next. Pure: no IO, no clock.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::desired::Desired;
use crate::schedule::{Decision, Schedule, decide};
use crate::spec::{Kind, ObjectKey, Resource};
use crate::state::ObjectMemory;

/// Why a run starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Trigger {
    /// Its schedule came due.
    Schedule,
    /// A run missed while holdfast was down, within `startingDeadline`.
    CatchUp,
    /// A new value of the `holdfast.dev/requested-at` annotation.
    Requested,
    /// A new generation of an Archive spec.
    Generation,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "Schedule",
            Trigger::CatchUp => "CatchUp",
            Trigger::Requested => "Requested",
            Trigger::Generation => "Generation",
        }
    }

    /// A run of this trigger started at `start`, in words for a status message: "a
    /// requested run started at 2026-12-03 07:45:46 UTC".
    pub fn describe_run(self, start: DateTime<Utc>) -> String {
        let what = match self {
            Trigger::Schedule => "a scheduled run",
            Trigger::CatchUp => "a catch-up run for a missed schedule time",
            Trigger::Requested => "a requested run",
            Trigger::Generation => "a run of the spec's new generation",
        };
        format!(
            "{what} started at {}",
            start.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// A run the reconciler wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want {
    pub key: ObjectKey,
    pub trigger: Trigger,
    /// The schedule time it stands for, for scheduled and caught-up runs.
    pub nominal: Option<DateTime<Utc>>,
    pub requested_at: Option<String>,
    pub generation: Option<String>,
    /// Stacks the run stops or reads; two runs never hold the same stack.
    pub stacks: Vec<String>,
    pub since: DateTime<Utc>,
    /// For a ContainerSchedule: why its action is not taken (a policy it runs `after`
    /// failed); the run records this and touches nothing.
    pub skip: Option<String>,
}

/// One run of a BackupPolicy, as a ContainerSchedule's `after` looks at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRun {
    pub id: String,
    pub start: DateTime<Utc>,
    pub phase: crate::spec::common::Phase,
}

/// What the loop knows besides the specs.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub memory: BTreeMap<ObjectKey, ObjectMemory>,
    /// Running runs and the stacks they hold.
    pub running: BTreeMap<ObjectKey, Vec<String>>,
    /// Wanted runs that could not start yet, oldest first.
    pub pending: Vec<Want>,
    pub max_concurrent: usize,
    /// The recent runs, newest first, of the policies ContainerSchedules run `after`.
    pub policy_runs: BTreeMap<String, Vec<PolicyRun>>,
}

/// The outcome of one reconcile.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub start: Vec<Want>,
    /// Runs that wait, with the reason shown in their status.
    pub wait: Vec<(Want, String)>,
    /// InPlace Restores held until their requested-at value changes (see
    /// [`crate::state::Held`]): they are neither started nor queued.
    pub held: BTreeSet<ObjectKey>,
    /// The next schedule time of each policy, for its status.
    pub next_schedule: BTreeMap<ObjectKey, DateTime<Utc>>,
    /// ContainerSchedules whose due action waits for the policies it runs `after`, with
    /// the reason for their status. They are not queued: each pass asks again.
    pub gated: BTreeMap<ObjectKey, String>,
    /// When to reconcile again at the latest.
    pub wake: Option<DateTime<Utc>>,
}

pub fn plan(desired: &Desired, observed: &Observed, now: DateTime<Utc>) -> Plan {
    let mut out = Plan::default();
    let mut wants: Vec<Want> = Vec::new();
    let pending_keys: BTreeSet<&ObjectKey> = observed.pending.iter().map(|w| &w.key).collect();
    // Pending runs keep their place, unless their object was deleted or became invalid.
    for want in &observed.pending {
        if desired.get(&want.key).is_some_and(|o| o.resource.is_some()) {
            wants.push(want.clone());
        }
    }
    for object in desired.objects() {
        let Some(resource) = &object.resource else {
            continue;
        };
        let key = object.key();
        let memory = observed.memory.get(&key).cloned().unwrap_or_default();
        let new_request = object.requested_at.is_some()
            && object.requested_at != memory.last_handled_requested_at;
        let stacks = stacks_of(resource, desired);
        let want = |trigger, nominal| Want {
            key: key.clone(),
            trigger,
            nominal,
            requested_at: object.requested_at.clone(),
            generation: object.generation.clone(),
            stacks: stacks.clone(),
            since: now,
            skip: None,
        };
        match resource {
            Resource::BackupPolicy(policy) => {
                let Ok(schedule) = Schedule::new(&object.name, &policy.spec) else {
                    continue;
                };
                let first_seen = memory.first_seen.unwrap_or(now);
                let deadline = policy.spec.starting_deadline.map(|d| d.as_duration());
                let decision = decide(
                    &schedule,
                    policy.spec.suspend,
                    memory.last_scheduled,
                    first_seen,
                    deadline,
                    now,
                );
                let mut scheduled = None;
                match decision {
                    Decision::RunNow { nominal, catch_up } => {
                        scheduled = Some(want(
                            if catch_up {
                                Trigger::CatchUp
                            } else {
                                Trigger::Schedule
                            },
                            Some(nominal),
                        ));
                        if let Some(next) = schedule.next_nominal_after(nominal) {
                            out.next_schedule
                                .insert(key.clone(), schedule.start_time(next));
                        }
                    }
                    Decision::WaitUntil { at, .. } => {
                        out.next_schedule.insert(key.clone(), at);
                        out.wake = Some(out.wake.map_or(at, |w| w.min(at)));
                    }
                    Decision::Never => {}
                }
                if pending_keys.contains(&key) {
                    continue;
                }
                // A request and a due schedule at once make one run, not two.
                match (scheduled, new_request) {
                    (Some(mut w), true) => {
                        w.trigger = Trigger::Requested;
                        wants.push(w);
                    }
                    (Some(w), false) => wants.push(w),
                    (None, true) => wants.push(want(Trigger::Requested, None)),
                    (None, false) => {}
                }
            }
            // Describes where archives go; nothing to run.
            Resource::Repository(_) | Resource::Notifier(_) => {}
            Resource::ContainerSchedule(cs) => {
                let spec = &cs.spec;
                if spec.suspend || pending_keys.contains(&key) {
                    continue;
                }
                let due = if let Some(run_at) = &spec.run_at {
                    // Once per generation, at its time.
                    let Ok(at) = run_at.parse() else { continue };
                    if object.generation.is_none()
                        || object.generation == memory.last_handled_generation
                    {
                        (new_request).then(|| want(Trigger::Requested, None))
                    } else if now < at {
                        out.next_schedule.insert(key.clone(), at);
                        out.wake = Some(out.wake.map_or(at, |w| w.min(at)));
                        (new_request).then(|| want(Trigger::Requested, None))
                    } else {
                        Some(want(Trigger::Generation, Some(at)))
                    }
                } else if let Some(cron) = &spec.schedule {
                    let Ok(schedule) = Schedule::from_cron(
                        &object.name,
                        cron,
                        spec.timezone.as_ref(),
                        std::time::Duration::ZERO,
                    ) else {
                        continue;
                    };
                    // Without `after` an action is taken on time or not at all (a restart
                    // hours late is no nightly restart); with it, it waits for the
                    // policies until its next time replaces it.
                    let deadline = (!spec.after.is_empty()).then_some(AFTER_PATIENCE);
                    let first_seen = memory.first_seen.unwrap_or(now);
                    match decide(
                        &schedule,
                        false,
                        memory.last_scheduled,
                        first_seen,
                        deadline,
                        now,
                    ) {
                        Decision::RunNow { nominal, catch_up } => {
                            if let Some(next) = schedule.next_nominal_after(nominal) {
                                out.next_schedule.insert(key.clone(), next);
                            }
                            let trigger = match (new_request, catch_up) {
                                (true, _) => Trigger::Requested,
                                (false, true) => Trigger::CatchUp,
                                (false, false) => Trigger::Schedule,
                            };
                            Some(want(trigger, Some(nominal)))
                        }
                        Decision::WaitUntil { at, .. } => {
                            out.next_schedule.insert(key.clone(), at);
                            out.wake = Some(out.wake.map_or(at, |w| w.min(at)));
                            new_request.then(|| want(Trigger::Requested, None))
                        }
                        Decision::Never => new_request.then(|| want(Trigger::Requested, None)),
                    }
                } else {
                    None
                };
                let Some(mut w) = due else { continue };
                // A request by hand does not wait for anything.
                if let (Some(nominal), false) = (w.nominal, w.trigger == Trigger::Requested) {
                    match after_gate(&spec.after, nominal, desired, observed) {
                        Gate::Open => {}
                        Gate::Wait(why) => {
                            out.gated.insert(key.clone(), why);
                            continue;
                        }
                        Gate::Skip(why) => w.skip = Some(why),
                    }
                }
                wants.push(w);
            }
            // Both run once per generation of their spec.
            Resource::Archive(archive) => {
                if pending_keys.contains(&key) {
                    continue;
                }
                if object.generation.is_some()
                    && object.generation != memory.last_handled_generation
                {
                    // With runAt, at its time; a time already past runs at once.
                    let at = archive.spec.run_at.as_ref().and_then(|r| r.parse().ok());
                    match at {
                        Some(at) if now < at => {
                            out.next_schedule.insert(key.clone(), at);
                            out.wake = Some(out.wake.map_or(at, |w| w.min(at)));
                        }
                        _ => wants.push(want(Trigger::Generation, at)),
                    }
                }
            }
            Resource::Restore(_) => {
                if pending_keys.contains(&key) {
                    continue;
                }
                if memory
                    .held
                    .as_ref()
                    .is_some_and(|h| h.requested_at == object.requested_at)
                {
                    out.held.insert(key.clone());
                    continue;
                }
                if object.generation.is_some()
                    && object.generation != memory.last_handled_generation
                {
                    wants.push(want(Trigger::Generation, None));
                }
            }
        }
    }

    let mut running: BTreeMap<ObjectKey, Vec<String>> = observed.running.clone();
    for want in wants {
        if running.contains_key(&want.key) {
            out.wait.push((
                want,
                "a run of this object is in progress; this one starts when it ends".into(),
            ));
            continue;
        }
        let holder = running
            .iter()
            .find(|(_, stacks)| stacks.iter().any(|s| want.stacks.contains(s)));
        if let Some((other, stacks)) = holder {
            let shared: Vec<&String> = stacks.iter().filter(|s| want.stacks.contains(s)).collect();
            let reason = format!(
                "waiting for {other} to release stack {}",
                shared
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            out.wait.push((want, reason));
            continue;
        }
        if running.len() >= observed.max_concurrent.max(1) {
            let reason = format!(
                "waiting for a free slot: {} run(s) at most at once",
                observed.max_concurrent.max(1)
            );
            out.wait.push((want, reason));
            continue;
        }
        running.insert(want.key.clone(), want.stacks.clone());
        out.start.push(want);
    }
    out
}

/// The stacks a run of `resource` works on: its own targets, or its policy's.
fn stacks_of(resource: &Resource, desired: &Desired) -> Vec<String> {
    match resource {
        Resource::BackupPolicy(p) => p.spec.targets.stacks.clone(),
        Resource::Archive(a) => match (&a.spec.targets, &a.spec.policy_ref) {
            (Some(t), _) => t.stacks.clone(),
            (None, Some(policy)) => desired
                .get(&ObjectKey {
                    kind: Kind::BackupPolicy,
                    name: policy.clone(),
                })
                .and_then(|o| match &o.resource {
                    Some(Resource::BackupPolicy(p)) => Some(p.spec.targets.stacks.clone()),
                    _ => None,
                })
                .unwrap_or_default(),
            (None, None) => Vec::new(),
        },
        // Its own targets, or else the stacks of the policy whose archive it restores, so
        // that a restore and a backup of the same stack never run at once.
        Resource::Restore(r) if !r.spec.targets.stacks.is_empty() => r.spec.targets.stacks.clone(),
        Resource::Restore(r) => {
            let policy = r.spec.from.policy.clone().or_else(|| {
                r.spec
                    .from
                    .archive
                    .as_deref()
                    .and_then(|id| id.rsplit_once('-').map(|(name, _)| name.to_string()))
            });
            policy
                .and_then(|name| {
                    desired.get(&ObjectKey {
                        kind: Kind::BackupPolicy,
                        name,
                    })
                })
                .and_then(|o| match &o.resource {
                    Some(Resource::BackupPolicy(p)) => Some(p.spec.targets.stacks.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        }
        Resource::ContainerSchedule(c) => c.spec.targets.stacks.clone(),
        Resource::Repository(_) | Resource::Notifier(_) => Vec::new(),
    }
}

/// How long a scheduled action with `after` may wait for its policies; in practice its
/// next schedule time ends the wait first, as the newer time replaces the older.
const AFTER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(366 * 86_400);

/// What the policies a ContainerSchedule runs `after` say about its action due at `due`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Gate {
    /// Each has a successful run of the period: act.
    Open,
    /// One has not run yet for the period, or is running: wait, for this reason.
    Wait(String),
    /// One's run of the period failed: record the action as not taken, for this reason.
    Skip(String),
}

/// The `after` rule. For each policy, its period is its latest schedule time at or before
/// `due` (any time, for a policy never due before it). The newest run of the policy that
/// started at or after that time decides: Succeeded lets the action go, another end
/// skips the action, none yet (or one still running) makes it wait. Policies are looked
/// at in the order listed; the first that does not let it go says why.
fn after_gate(
    after: &[String],
    due: DateTime<Utc>,
    desired: &Desired,
    observed: &Observed,
) -> Gate {
    use crate::spec::common::Phase;
    let when = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    for name in after {
        let key = ObjectKey {
            kind: Kind::BackupPolicy,
            name: name.clone(),
        };
        let period = desired
            .get(&key)
            .and_then(|o| match &o.resource {
                Some(Resource::BackupPolicy(p)) => Schedule::new(name, &p.spec).ok(),
                _ => None,
            })
            .and_then(|s| s.last_nominal_at_or_before(due));
        let since = period.unwrap_or(DateTime::<Utc>::MIN_UTC);
        let of_period = match period {
            Some(t) => format!("its run of {}", when(t)),
            None => "a run".to_string(),
        };
        if observed.running.contains_key(&key) {
            return Gate::Wait(format!(
                "waiting for BackupPolicy/{name}: {of_period} is in progress"
            ));
        }
        let newest = observed
            .policy_runs
            .get(name)
            .and_then(|runs| runs.iter().find(|r| r.start >= since));
        match newest {
            Some(run) if run.phase == Phase::Succeeded => {}
            Some(run) if matches!(run.phase, Phase::Running | Phase::Pending) => {
                return Gate::Wait(format!(
                    "waiting for BackupPolicy/{name}: {of_period} is in progress"
                ));
            }
            Some(run) => {
                return Gate::Skip(format!(
                    "BackupPolicy/{name}'s run {} ended {}, and this action runs only after it succeeds",
                    run.id,
                    run.phase.as_str()
                ));
            }
            None => {
                return Gate::Wait(format!(
                    "waiting for BackupPolicy/{name}: {of_period} has not run yet"
                ));
            }
        }
    }
    Gate::Open
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_described_in_words_in_whole_seconds() {
        use chrono::TimeZone;
        let start = Utc.with_ymd_and_hms(2026, 12, 3, 7, 45, 46).unwrap()
            + chrono::Duration::nanoseconds(132_199_849);
        assert_eq!(
            Trigger::Requested.describe_run(start),
            "a requested run started at 2026-12-03 07:45:46 UTC"
        );
        assert_eq!(
            Trigger::Schedule.describe_run(start),
            "a scheduled run started at 2026-12-03 07:45:46 UTC"
        );
    }
    use crate::load::read_str;
    use crate::validate::validate_sources;
    use chrono::TimeZone;
    use std::path::Path;

    fn desired(text: &str) -> Desired {
        Desired::from_report(&validate_sources(vec![read_str(Path::new("s.yaml"), text)]))
    }

    fn policy(name: &str, schedule: &str, stacks: &str, extra: &str) -> String {
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: {name}\n{extra}spec:\n  schedule: '{schedule}'\n  targets: {{stacks: [{stacks}]}}\n---\n"
        )
    }

    fn key(kind: Kind, name: &str) -> ObjectKey {
        ObjectKey {
            kind,
            name: name.into(),
        }
    }

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, h, m, 0).unwrap()
    }

    fn seen_at(keys: &[ObjectKey], at: DateTime<Utc>) -> BTreeMap<ObjectKey, ObjectMemory> {
        keys.iter()
            .map(|k| {
                (
                    k.clone(),
                    ObjectMemory {
                        first_seen: Some(at),
                        ..ObjectMemory::default()
                    },
                )
            })
            .collect()
    }

    #[test]
    fn due_policies_start_and_others_set_the_wake_up() {
        let d = desired(&(policy("a", "0 3 * * *", "x", "") + &policy("b", "0 4 * * *", "y", "")));
        let observed = Observed {
            memory: seen_at(
                &[key(Kind::BackupPolicy, "a"), key(Kind::BackupPolicy, "b")],
                t(0, 0),
            ),
            max_concurrent: 2,
            ..Observed::default()
        };
        let p = plan(&d, &observed, t(3, 0));
        assert_eq!(p.start.len(), 1);
        assert_eq!(p.start[0].key.name, "a");
        assert_eq!(p.start[0].trigger, Trigger::Schedule);
        assert_eq!(p.start[0].nominal, Some(t(3, 0)));
        assert_eq!(p.wake, Some(t(4, 0)));
        assert_eq!(p.next_schedule[&key(Kind::BackupPolicy, "b")], t(4, 0));
    }

    #[test]
    fn a_request_runs_once_and_merges_with_a_due_schedule() {
        let annotated = "  annotations: {holdfast.dev/requested-at: 'r1'}\n";
        let d = desired(&policy("a", "0 3 * * *", "x", annotated));
        let mut observed = Observed {
            memory: seen_at(&[key(Kind::BackupPolicy, "a")], t(0, 0)),
            max_concurrent: 1,
            ..Observed::default()
        };
        let p = plan(&d, &observed, t(1, 0));
        assert_eq!(p.start.len(), 1);
        assert_eq!(p.start[0].trigger, Trigger::Requested);
        let p = plan(&d, &observed, t(3, 0));
        assert_eq!(p.start.len(), 1, "one run for both reasons");
        observed
            .memory
            .get_mut(&key(Kind::BackupPolicy, "a"))
            .unwrap()
            .last_handled_requested_at = Some("r1".into());
        assert!(plan(&d, &observed, t(1, 0)).start.is_empty());
    }

    #[test]
    fn stacks_the_limit_and_running_objects_make_runs_wait() {
        let d = desired(
            &(policy("a", "0 3 * * *", "shared", "")
                + &policy("b", "0 3 * * *", "shared", "")
                + &policy("c", "0 3 * * *", "other", "")),
        );
        let keys = [
            key(Kind::BackupPolicy, "a"),
            key(Kind::BackupPolicy, "b"),
            key(Kind::BackupPolicy, "c"),
        ];
        let observed = Observed {
            memory: seen_at(&keys, t(0, 0)),
            max_concurrent: 2,
            ..Observed::default()
        };
        let p = plan(&d, &observed, t(3, 0));
        let started: Vec<&str> = p.start.iter().map(|w| w.key.name.as_str()).collect();
        assert_eq!(started, ["a", "c"]);
        assert_eq!(p.wait.len(), 1);
        assert!(
            p.wait[0]
                .1
                .contains("BackupPolicy/a to release stack shared"),
            "{}",
            p.wait[0].1
        );

        let limited = Observed {
            max_concurrent: 1,
            ..observed.clone()
        };
        let p = plan(&d, &limited, t(3, 0));
        assert_eq!(p.start.len(), 1);
        assert!(p.wait.iter().any(|(_, r)| r.contains("at most at once")));

        let busy = Observed {
            running: [(keys[2].clone(), vec!["other".to_string()])].into(),
            ..observed
        };
        let p = plan(&d, &busy, t(3, 0));
        assert!(
            p.wait
                .iter()
                .any(|(w, r)| w.key.name == "c" && r.contains("in progress"))
        );
    }

    #[test]
    fn archives_run_once_per_generation_and_invalid_objects_never() {
        let text = "apiVersion: holdfast.dev/v1alpha1\nkind: Archive\nmetadata: {name: once}\nspec: {targets: {volumes: [v]}}\n---\napiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {name: broken}\nspec: {schedule: 'nope', targets: {stacks: [s]}}\n";
        let d = desired(text);
        let mut observed = Observed {
            max_concurrent: 5,
            ..Observed::default()
        };
        let p = plan(&d, &observed, t(3, 0));
        assert_eq!(p.start.len(), 1);
        assert_eq!(p.start[0].trigger, Trigger::Generation);
        let generation = p.start[0].generation.clone();
        observed.memory.insert(
            key(Kind::Archive, "once"),
            ObjectMemory {
                last_handled_generation: generation,
                ..ObjectMemory::default()
            },
        );
        assert!(plan(&d, &observed, t(4, 0)).start.is_empty());
    }

    #[test]
    fn a_restore_runs_once_and_waits_for_a_backup_of_its_policys_stack() {
        let text = policy("nightly", "0 3 * * *", "app", "")
            + "apiVersion: holdfast.dev/v1alpha1\nkind: Restore\nmetadata: {name: back}\nspec: {from: {policy: nightly, at: latest}}\n";
        let d = desired(&text);
        let mut observed = Observed {
            max_concurrent: 5,
            ..Observed::default()
        };
        observed
            .running
            .insert(key(Kind::BackupPolicy, "nightly"), vec!["app".into()]);
        let p = plan(&d, &observed, t(4, 0));
        assert!(p.start.is_empty(), "{:?}", p.start);
        assert_eq!(p.wait.len(), 1);
        assert!(p.wait[0].1.contains("release stack app"), "{}", p.wait[0].1);
        observed.running.clear();
        let p = plan(&d, &observed, t(4, 0));
        assert_eq!(p.start.len(), 1);
        assert_eq!(p.start[0].key, key(Kind::Restore, "back"));
        assert_eq!(p.start[0].trigger, Trigger::Generation);
    }

    #[test]
    fn a_held_restore_runs_only_once_its_requested_at_changes() {
        let restore = |requested_at: &str| {
            desired(&format!(
                "apiVersion: holdfast.dev/v1alpha1\nkind: Restore\nmetadata:\n  name: back\n  annotations: {{holdfast.dev/requested-at: '{requested_at}'}}\nspec: {{from: {{archive: x-20261125T030000Z}}, mode: InPlace, stop: stack}}\n"
            ))
        };
        let observed = Observed {
            memory: [(
                key(Kind::Restore, "back"),
                ObjectMemory {
                    held: Some(crate::state::Held {
                        requested_at: Some("r0".into()),
                        since: t(1, 0),
                    }),
                    ..ObjectMemory::default()
                },
            )]
            .into(),
            max_concurrent: 1,
            ..Observed::default()
        };
        let p = plan(&restore("r0"), &observed, t(4, 0));
        assert!(p.start.is_empty() && p.wait.is_empty(), "{:?}", p.start);
        assert!(p.held.contains(&key(Kind::Restore, "back")));
        let p = plan(&restore("r1"), &observed, t(4, 0));
        assert_eq!(p.start.len(), 1);
        assert!(p.held.is_empty());
    }

    #[test]
    fn pending_runs_keep_their_place_until_their_object_goes() {
        let d = desired(&policy("a", "0 3 * * *", "x", ""));
        let want = Want {
            key: key(Kind::BackupPolicy, "a"),
            trigger: Trigger::Schedule,
            nominal: Some(t(3, 0)),
            requested_at: None,
            generation: None,
            stacks: vec!["x".into()],
            since: t(3, 0),
            skip: None,
        };
        let observed = Observed {
            memory: seen_at(&[key(Kind::BackupPolicy, "a")], t(0, 0)),
            pending: vec![want.clone()],
            max_concurrent: 1,
            ..Observed::default()
        };
        // Hours later the pending run still starts, once.
        let p = plan(&d, &observed, t(9, 0));
        assert_eq!(p.start, std::slice::from_ref(&want));
        let gone = desired("");
        assert!(plan(&gone, &observed, t(9, 0)).start.is_empty());
    }

    fn container_schedule(name: &str, when: &str, extra: &str) -> String {
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: ContainerSchedule\nmetadata: {{name: {name}}}\nspec:\n  {when}\n  targets: {{stacks: [app]}}\n  action: restart\n{extra}---\n"
        )
    }

    #[test]
    fn a_scheduled_action_runs_on_time_and_never_late() {
        let d = desired(&container_schedule("nightly", "schedule: '0 4 * * *'", ""));
        let k = key(Kind::ContainerSchedule, "nightly");
        let observed = Observed {
            memory: seen_at(std::slice::from_ref(&k), t(0, 0)),
            max_concurrent: 1,
            ..Observed::default()
        };
        let p = plan(&d, &observed, t(3, 0));
        assert!(p.start.is_empty());
        assert_eq!(p.wake, Some(t(4, 0)));
        assert_eq!(p.next_schedule[&k], t(4, 0));
        let p = plan(&d, &observed, t(4, 0));
        assert_eq!(p.start.len(), 1);
        assert_eq!(p.start[0].trigger, Trigger::Schedule);
        assert_eq!(p.start[0].stacks, ["app"]);
        // Two hours late (holdfast was down): no restart at 06:00.
        assert!(plan(&d, &observed, t(6, 0)).start.is_empty());
    }

    #[test]
    fn a_run_at_object_waits_for_its_time_and_runs_once() {
        let text = container_schedule("once", "runAt: '2026-11-25T05:00:00+01:00'", "")
            + "apiVersion: holdfast.dev/v1alpha1\nkind: Archive\nmetadata: {name: later}\nspec: {targets: {volumes: [v]}, runAt: '2026-11-25T04:30:00Z'}\n";
        let d = desired(&text);
        let mut observed = Observed {
            max_concurrent: 5,
            ..Observed::default()
        };
        let p = plan(&d, &observed, t(3, 0));
        assert!(p.start.is_empty(), "{:?}", p.start);
        assert_eq!(
            p.next_schedule[&key(Kind::ContainerSchedule, "once")],
            t(4, 0)
        );
        assert_eq!(p.next_schedule[&key(Kind::Archive, "later")], t(4, 30));
        assert_eq!(p.wake, Some(t(4, 0)));
        let p = plan(&d, &observed, t(4, 0));
        let started: Vec<&str> = p.start.iter().map(|w| w.key.name.as_str()).collect();
        assert_eq!(started, ["once"]);
        assert_eq!(p.start[0].trigger, Trigger::Generation);
        assert_eq!(p.start[0].nominal, Some(t(4, 0)));
        for w in plan(&d, &observed, t(5, 0)).start {
            observed.memory.insert(
                w.key.clone(),
                ObjectMemory {
                    last_handled_generation: w.generation.clone(),
                    ..ObjectMemory::default()
                },
            );
        }
        assert!(plan(&d, &observed, t(6, 0)).start.is_empty());
    }

    #[test]
    fn an_action_after_a_policy_waits_for_its_run_of_the_night_and_skips_on_failure() {
        use crate::spec::common::Phase;
        let text = policy("nightly", "0 3 * * *", "db", "")
            + &container_schedule("restart", "schedule: '0 4 * * *'", "  after: [nightly]\n");
        let d = desired(&text);
        let k = key(Kind::ContainerSchedule, "restart");
        let run = |id: &str, start, phase| PolicyRun {
            id: id.into(),
            start,
            phase,
        };
        let mut observed = Observed {
            memory: seen_at(&[k.clone(), key(Kind::BackupPolicy, "nightly")], t(0, 0)),
            max_concurrent: 5,
            ..Observed::default()
        };
        // Yesterday's success does not count for tonight.
        let yesterday = t(3, 0) - chrono::Duration::days(1);
        observed.policy_runs.insert(
            "nightly".into(),
            vec![run("old", yesterday, Phase::Succeeded)],
        );
        observed
            .memory
            .get_mut(&key(Kind::BackupPolicy, "nightly"))
            .unwrap()
            .last_scheduled = Some(t(3, 0));
        let p = plan(&d, &observed, t(4, 0));
        assert!(p.start.iter().all(|w| w.key != k), "{:?}", p.start);
        assert!(
            p.gated[&k].contains("its run of 2026-11-25 03:00:00 UTC has not run yet"),
            "{}",
            p.gated[&k]
        );
        assert!(
            p.wait.iter().all(|(w, _)| w.key != k),
            "a gated action is not queued"
        );
        // Still running: it waits, even well past 04:00.
        observed
            .running
            .insert(key(Kind::BackupPolicy, "nightly"), vec!["db".into()]);
        let p = plan(&d, &observed, t(5, 0));
        assert!(p.gated[&k].contains("in progress"), "{}", p.gated[&k]);
        observed.running.clear();
        // Tonight's run succeeded: the action goes, late as it is.
        observed.policy_runs.insert(
            "nightly".into(),
            vec![
                run("new", t(3, 0), Phase::Succeeded),
                run("old", yesterday, Phase::Succeeded),
            ],
        );
        let p = plan(&d, &observed, t(5, 0));
        let w = p.start.iter().find(|w| w.key == k).expect("started");
        assert_eq!((w.nominal, &w.skip), (Some(t(4, 0)), &None));
        // Tonight's run failed: the action is recorded as not taken.
        observed
            .policy_runs
            .insert("nightly".into(), vec![run("bad", t(3, 0), Phase::Failed)]);
        let p = plan(&d, &observed, t(5, 0));
        let w = p
            .start
            .iter()
            .find(|w| w.key == k)
            .expect("started to be recorded");
        assert_eq!(
            w.skip.as_deref(),
            Some(
                "BackupPolicy/nightly's run bad ended Failed, and this action runs only after it succeeds"
            )
        );
    }
}
