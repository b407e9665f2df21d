//! The conditions that follow from an object's state, decided in one pure place.

use chrono::{DateTime, Utc};

use super::{READY, RECONCILING, STALLED, Status, remove_condition, set_condition};
use crate::spec::common::Phase;

/// What the reconciler knows about an object, in the terms the conditions need.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ObjectState<'a> {
    /// The spec failed validation; `errors` are formatted diagnostics.
    Invalid { errors: &'a [String] },
    /// A policy with `suspend: true`.
    Suspended,
    /// A run is in progress; `run` says which, in words ("a requested run started at
    /// 2026-12-03 07:45:46 UTC").
    Running { run: &'a str },
    /// Nothing runs, and a run the spec asks for does not start until someone acts:
    /// `reason` names why (e.g. `UnprovenGeneration`), `message` says what to do.
    Blocked { reason: &'a str, message: &'a str },
    /// An object that is never run (a Repository): `Ready` says what is known of it,
    /// as [`crate::status::repository_readiness`] decides.
    Standing {
        ready: bool,
        reason: &'a str,
        message: &'a str,
    },
    /// Nothing is running; `last_phase` is the outcome of the last run, if any.
    Idle {
        last_phase: Option<Phase>,
        message: Option<&'a str>,
    },
}

/// Reasons of a `Ready` condition that describe the outcome of runs, and so stay true
/// while the next run is in progress.
const RUN_OUTCOMES: [&str; 5] = [
    "Scheduled",
    "Succeeded",
    "Failed",
    "PartiallyFailed",
    "Interrupted",
];

/// Sets `Ready`, `Reconciling` and `Stalled` for `state`, and `errors` (the validation
/// errors when invalid, empty otherwise). Nothing else of `status` is touched. Idempotent:
/// applying the same state again changes nothing, not even a transition time.
///
/// - `Invalid`: `Stalled` True and `Ready` False, reason `InvalidSpec`, message the first
///   error and "(and N more)".
/// - `Suspended`: `Ready` True, reason `Suspended`.
/// - `Running`: `Reconciling` True, reason `Running`. `Ready` keeps its value while it
///   describes earlier runs; when it described something else (a spec that was invalid or
///   suspended), or is missing, it becomes False, reason `Running`, until the run ends.
/// - `Blocked`: `Ready` False with the given reason and message.
/// - `Standing`: `Ready` with the given value, reason and message.
/// - `Idle`: `Ready` from the last run: True `Succeeded`, or True `Scheduled` when no run
///   has finished; False `Failed` / `PartiallyFailed` with the run's message; False
///   `Interrupted` when the last run never finished (holdfast stopped during it).
pub fn apply_state(status: &mut Status, state: ObjectState<'_>, now: DateTime<Utc>) {
    let conditions = &mut status.conditions;
    if !matches!(state, ObjectState::Running { .. }) {
        remove_condition(conditions, RECONCILING);
    }
    if !matches!(state, ObjectState::Invalid { .. }) {
        remove_condition(conditions, STALLED);
    }
    match state {
        ObjectState::Invalid { errors } => {
            let message = summarize(errors);
            set_condition(conditions, STALLED, true, "InvalidSpec", &message, now);
            set_condition(conditions, READY, false, "InvalidSpec", &message, now);
            status.errors = errors.to_vec();
            return;
        }
        ObjectState::Suspended => {
            let message = "suspended: no runs are started while spec.suspend is true";
            set_condition(conditions, READY, true, "Suspended", message, now);
        }
        ObjectState::Running { run } => {
            let message = format!("{run} is in progress");
            set_condition(conditions, RECONCILING, true, "Running", &message, now);
            let describes_runs = status
                .conditions
                .iter()
                .any(|c| c.type_ == READY && RUN_OUTCOMES.contains(&c.reason.as_str()));
            if !describes_runs {
                let message = format!("waiting for {run} to finish");
                set_condition(
                    &mut status.conditions,
                    READY,
                    false,
                    "Running",
                    &message,
                    now,
                );
            }
        }
        ObjectState::Blocked { reason, message } => {
            set_condition(conditions, READY, false, reason, message, now);
        }
        ObjectState::Standing {
            ready,
            reason,
            message,
        } => {
            set_condition(conditions, READY, ready, reason, message, now);
        }
        ObjectState::Idle {
            last_phase,
            message,
        } => {
            let (ready, reason, default_message) = match last_phase {
                None | Some(Phase::Pending) => (true, "Scheduled", "no run has finished yet"),
                Some(Phase::Succeeded) => (true, "Succeeded", "the last run succeeded"),
                Some(Phase::Failed) => (false, "Failed", "the last run failed"),
                Some(Phase::PartiallyFailed) => (
                    false,
                    "PartiallyFailed",
                    "the last run finished with some targets failed",
                ),
                Some(Phase::Running) => (
                    false,
                    "Interrupted",
                    "the last run never finished: holdfast stopped while it ran",
                ),
            };
            let message = message.unwrap_or(default_message);
            set_condition(conditions, READY, ready, reason, message, now);
        }
    }
    status.errors.clear();
}

fn summarize(errors: &[String]) -> String {
    match errors {
        [] => "the spec is invalid".to_string(),
        [only] => only.clone(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap() + Duration::minutes(minutes)
    }

    /// `(type, status, reason)` of every condition, in order.
    fn summary(status: &Status) -> Summary {
        status
            .conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect()
    }

    type Summary = Vec<(String, String, String)>;

    fn c(type_: &str, status: &str, reason: &str) -> (String, String, String) {
        (type_.into(), status.into(), reason.into())
    }

    #[test]
    fn state_table() {
        let errors = [
            "a.yaml:1:1: first".to_string(),
            "a.yaml:2:1: second".to_string(),
        ];
        let one_error = ["a.yaml:1:1: only".to_string()];
        let fresh = Status::default;
        let after = |state| {
            let mut s = Status::default();
            apply_state(&mut s, state, t(0));
            s
        };
        let cases: Vec<(&str, Status, ObjectState<'_>, Summary)> = vec![
            (
                "invalid",
                fresh(),
                ObjectState::Invalid { errors: &errors },
                vec![
                    c(READY, "False", "InvalidSpec"),
                    c(STALLED, "True", "InvalidSpec"),
                ],
            ),
            (
                "suspended",
                after(ObjectState::Invalid { errors: &errors }),
                ObjectState::Suspended,
                vec![c(READY, "True", "Suspended")],
            ),
            (
                "never ran",
                fresh(),
                ObjectState::Idle {
                    last_phase: None,
                    message: None,
                },
                vec![c(READY, "True", "Scheduled")],
            ),
            (
                "running keeps a run outcome",
                after(ObjectState::Idle {
                    last_phase: Some(Phase::Failed),
                    message: None,
                }),
                ObjectState::Running { run: "run r2" },
                vec![
                    c(READY, "False", "Failed"),
                    c(RECONCILING, "True", "Running"),
                ],
            ),
            (
                "running replaces a stale InvalidSpec",
                after(ObjectState::Invalid { errors: &errors }),
                ObjectState::Running { run: "run r2" },
                vec![
                    c(READY, "False", "Running"),
                    c(RECONCILING, "True", "Running"),
                ],
            ),
            (
                "first run",
                fresh(),
                ObjectState::Running { run: "run r1" },
                vec![
                    c(READY, "False", "Running"),
                    c(RECONCILING, "True", "Running"),
                ],
            ),
            (
                "succeeded after running",
                after(ObjectState::Running { run: "run r1" }),
                ObjectState::Idle {
                    last_phase: Some(Phase::Succeeded),
                    message: None,
                },
                vec![c(READY, "True", "Succeeded")],
            ),
            (
                "failed",
                after(ObjectState::Running { run: "run r1" }),
                ObjectState::Idle {
                    last_phase: Some(Phase::Failed),
                    message: Some("pg_dump exited 1"),
                },
                vec![c(READY, "False", "Failed")],
            ),
            (
                "partially failed",
                fresh(),
                ObjectState::Idle {
                    last_phase: Some(Phase::PartiallyFailed),
                    message: None,
                },
                vec![c(READY, "False", "PartiallyFailed")],
            ),
            (
                "blocked",
                after(ObjectState::Running { run: "run r1" }),
                ObjectState::Blocked {
                    reason: "UnprovenGeneration",
                    message: "bump requested-at to run it",
                },
                vec![c(READY, "False", "UnprovenGeneration")],
            ),
            (
                "interrupted",
                fresh(),
                ObjectState::Idle {
                    last_phase: Some(Phase::Running),
                    message: None,
                },
                vec![c(READY, "False", "Interrupted")],
            ),
            (
                "fixed spec",
                after(ObjectState::Invalid { errors: &one_error }),
                ObjectState::Idle {
                    last_phase: Some(Phase::Succeeded),
                    message: None,
                },
                vec![c(READY, "True", "Succeeded")],
            ),
        ];
        for (name, mut status, state, expected) in cases {
            apply_state(&mut status, state, t(5));
            assert_eq!(summary(&status), expected, "{name}");
            let invalid = matches!(state, ObjectState::Invalid { .. });
            assert_eq!(!status.errors.is_empty(), invalid, "{name}: errors");
            // Idempotent: the same state again is the same status.
            let again = status.clone();
            apply_state(&mut status, state, t(9));
            assert_eq!(status, again, "{name}: idempotent");
        }
    }

    #[test]
    fn messages() {
        let errors = [
            "a.yaml:1:1: first".to_string(),
            "a.yaml:2:1: second".to_string(),
        ];
        let mut s = Status::default();
        apply_state(&mut s, ObjectState::Invalid { errors: &errors }, t(0));
        assert_eq!(
            s.condition(STALLED).unwrap().message,
            "a.yaml:1:1: first (and 1 more)"
        );
        assert_eq!(s.errors, errors);

        apply_state(
            &mut s,
            ObjectState::Idle {
                last_phase: Some(Phase::Failed),
                message: Some("pg_dump exited 1"),
            },
            t(1),
        );
        let ready = s.condition(READY).unwrap();
        assert_eq!(ready.message, "pg_dump exited 1");
        assert_eq!(ready.last_transition_time, t(0), "was False already");

        let run = "a requested run started at 2026-11-25 03:02:00 UTC";
        apply_state(&mut s, ObjectState::Running { run }, t(2));
        assert_eq!(
            s.condition(RECONCILING).unwrap().message,
            "a requested run started at 2026-11-25 03:02:00 UTC is in progress"
        );
        assert_eq!(s.condition(READY).unwrap().message, "pg_dump exited 1");
    }
}
