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
            // Both run once per generation of their spec.
            Resource::Archive(_) | Resource::Restore(_) => {
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
        Resource::Repository(_) | Resource::Notifier(_) => Vec::new(),
    }
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
}
