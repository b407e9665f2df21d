//! When to send: the pure decisions behind "a problem is told when it begins, and again
//! every `repeat` while it lasts, not on every pass or every failed run".
//!
//! A problem is a [`Notice`]: an event about one object (and one archive, for
//! VerifyFailed). What was told is remembered per notifier in a [`Memory`] the daemon
//! keeps in its state database, so a restart neither repeats a message nor forgets a
//! problem. Problems are remembered whether or not a notifier sends that event, so a
//! notifier that sends only Recovered still knows what it recovers from.
//!
//! Two sources feed it: the end of a run ([`after_run`]: Succeeded, Failed,
//! PartiallyFailed, Recovered) and each reconcile pass ([`after_pass`]: Overdue,
//! VerifyFailed, SpecInvalid, RepositoryUnreachable, found anew each pass).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::spec::ObjectKey;
use crate::spec::common::Phase;
use crate::spec::notifier::NotifyEvent;

/// The events found by looking at the state each pass, rather than at a run's end.
pub const PASS_EVENTS: [NotifyEvent; 4] = [
    NotifyEvent::Overdue,
    NotifyEvent::VerifyFailed,
    NotifyEvent::SpecInvalid,
    NotifyEvent::RepositoryUnreachable,
];

/// A problem of one object: the event and what it is about within the object (an archive
/// id for VerifyFailed, empty otherwise).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Notice {
    pub object: ObjectKey,
    pub event: NotifyEvent,
    pub subject: String,
}

/// What a notifier was told about a notice that lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Told {
    /// When the problem was first seen.
    pub since: DateTime<Utc>,
    /// When it was last sent; `None` when this notifier does not send that event.
    pub last_sent: Option<DateTime<Utc>>,
}

/// Per notifier, the notices that last and what was told of them.
pub type Memory = BTreeMap<String, BTreeMap<Notice, Told>>;

/// One notifier as the decisions see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscriber {
    pub name: String,
    pub events: Vec<NotifyEvent>,
    pub repeat: Option<chrono::Duration>,
    /// Heartbeat services are pinged around every run and hear no other event.
    pub heartbeat: bool,
}

impl Subscriber {
    fn sends(&self, event: NotifyEvent) -> bool {
        !self.heartbeat && self.events.contains(&event)
    }

    /// Whether a lasting notice is due again.
    fn repeat_due(&self, told: &Told, now: DateTime<Utc>) -> bool {
        match (self.repeat, told.last_sent) {
            (Some(repeat), Some(last)) => last + repeat <= now,
            _ => false,
        }
    }
}

/// What to send and how the memory changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// (notifier, notice) pairs to send, in order.
    pub send: Vec<(String, Notice)>,
    /// Notices to remember (new, or sent again).
    pub remember: Vec<(String, Notice, Told)>,
    /// Notices that ended.
    pub forget: Vec<(String, Notice)>,
    /// When a lasting notice is next due again, to wake the loop for it.
    pub wake: Option<DateTime<Utc>>,
}

impl Decision {
    /// Applies the memory changes to `memory`.
    pub fn apply(&self, memory: &mut Memory) {
        for (notifier, notice) in &self.forget {
            if let Some(told) = memory.get_mut(notifier) {
                told.remove(notice);
            }
        }
        for (notifier, notice, told) in &self.remember {
            memory
                .entry(notifier.clone())
                .or_default()
                .insert(notice.clone(), *told);
        }
    }
}

/// The end of a run of `object`, for the notifiers covering it. A Failed or
/// PartiallyFailed run is a notice: told when it begins (or changes from one to the
/// other), again on a failing run after `repeat`. A Succeeded run ends them, which is
/// Recovered for a notifier that remembers one, and is sent as Succeeded where asked.
/// Heartbeat services are left to the caller: they hear of every run.
pub fn after_run(
    object: &ObjectKey,
    phase: Phase,
    subscribers: &[&Subscriber],
    memory: &Memory,
    now: DateTime<Utc>,
) -> Decision {
    let mut decision = Decision::default();
    let failing = |event| Notice {
        object: object.clone(),
        event,
        subject: String::new(),
    };
    let failed = failing(NotifyEvent::Failed);
    let partial = failing(NotifyEvent::PartiallyFailed);
    for subscriber in subscribers {
        let name = &subscriber.name;
        let told = memory.get(name);
        let had = |notice: &Notice| told.and_then(|t| t.get(notice)).copied();
        match phase {
            Phase::Failed | Phase::PartiallyFailed => {
                let (now_failing, other) = if phase == Phase::Failed {
                    (&failed, &partial)
                } else {
                    (&partial, &failed)
                };
                if had(other).is_some() {
                    decision.forget.push((name.clone(), other.clone()));
                }
                let sends = subscriber.sends(now_failing.event);
                match had(now_failing) {
                    None => {
                        if sends {
                            decision.send.push((name.clone(), now_failing.clone()));
                        }
                        let told = Told {
                            since: now,
                            last_sent: sends.then_some(now),
                        };
                        decision
                            .remember
                            .push((name.clone(), now_failing.clone(), told));
                    }
                    Some(told) if sends && subscriber.repeat_due(&told, now) => {
                        decision.send.push((name.clone(), now_failing.clone()));
                        let told = Told {
                            last_sent: Some(now),
                            ..told
                        };
                        decision
                            .remember
                            .push((name.clone(), now_failing.clone(), told));
                    }
                    Some(_) => {}
                }
            }
            Phase::Succeeded => {
                let recovered = [&failed, &partial]
                    .into_iter()
                    .filter(|n| had(n).is_some())
                    .inspect(|n| decision.forget.push((name.clone(), (*n).clone())))
                    .count()
                    > 0;
                if recovered && subscriber.sends(NotifyEvent::Recovered) {
                    decision
                        .send
                        .push((name.clone(), failing(NotifyEvent::Recovered)));
                }
                if subscriber.sends(NotifyEvent::Succeeded) {
                    decision
                        .send
                        .push((name.clone(), failing(NotifyEvent::Succeeded)));
                }
            }
            Phase::Pending | Phase::Running => {}
        }
    }
    decision
}

/// One pass: `active` holds every pass notice found now; `covers` says which notifier
/// covers which object. New notices are told, lasting ones again after `repeat`, and
/// ended ones forgotten. Run notices (Failed, PartiallyFailed) are left alone.
pub fn after_pass(
    active: &BTreeSet<Notice>,
    subscribers: &[Subscriber],
    covers: &dyn Fn(&str, &ObjectKey) -> bool,
    memory: &Memory,
    now: DateTime<Utc>,
) -> Decision {
    let mut decision = Decision::default();
    let empty = BTreeMap::new();
    for subscriber in subscribers {
        let name = &subscriber.name;
        let told = memory.get(name).unwrap_or(&empty);
        for notice in active {
            if !covers(name, &notice.object) {
                continue;
            }
            let sends = subscriber.sends(notice.event);
            match told.get(notice) {
                None => {
                    if sends {
                        decision.send.push((name.clone(), notice.clone()));
                    }
                    let told = Told {
                        since: now,
                        last_sent: sends.then_some(now),
                    };
                    decision.remember.push((name.clone(), notice.clone(), told));
                    decision.wake = earliest(decision.wake, next_due(subscriber, &told));
                }
                Some(told) if sends && subscriber.repeat_due(told, now) => {
                    decision.send.push((name.clone(), notice.clone()));
                    let told = Told {
                        last_sent: Some(now),
                        ..*told
                    };
                    decision.remember.push((name.clone(), notice.clone(), told));
                    decision.wake = earliest(decision.wake, next_due(subscriber, &told));
                }
                Some(told) => {
                    decision.wake = earliest(decision.wake, next_due(subscriber, told));
                }
            }
        }
        for notice in told.keys() {
            let ended = PASS_EVENTS.contains(&notice.event)
                && !(active.contains(notice) && covers(name, &notice.object));
            if ended {
                decision.forget.push((name.clone(), notice.clone()));
            }
        }
    }
    decision
}

fn next_due(subscriber: &Subscriber, told: &Told) -> Option<DateTime<Utc>> {
    Some(told.last_sent? + subscriber.repeat?)
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    [a, b].into_iter().flatten().min()
}

/// When a scheduled policy becomes Overdue: 1.5 times its schedule's interval after its
/// last success, or after it was first seen when it never succeeded.
pub fn overdue_at(
    last_success: Option<DateTime<Utc>>,
    first_seen: DateTime<Utc>,
    interval_seconds: f64,
) -> DateTime<Utc> {
    let since = last_success.unwrap_or(first_seen).max(first_seen);
    let grace = chrono::Duration::milliseconds((interval_seconds * 1500.0) as i64);
    since + grace
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Kind;

    fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .to_utc()
            + chrono::Duration::minutes(minutes)
    }

    fn policy(name: &str) -> ObjectKey {
        ObjectKey {
            kind: Kind::BackupPolicy,
            name: name.into(),
        }
    }

    fn ops(events: &[NotifyEvent], repeat_minutes: Option<i64>) -> Subscriber {
        Subscriber {
            name: "ops".into(),
            events: events.to_vec(),
            repeat: repeat_minutes.map(chrono::Duration::minutes),
            heartbeat: false,
        }
    }

    fn sent(d: &Decision) -> Vec<NotifyEvent> {
        d.send.iter().map(|(_, n)| n.event).collect()
    }

    /// Runs the phases in order, a minute apart, and returns what each run sent.
    fn runs(subscriber: &Subscriber, phases: &[Phase]) -> Vec<Vec<NotifyEvent>> {
        let mut memory = Memory::new();
        let key = policy("nextcloud");
        phases
            .iter()
            .enumerate()
            .map(|(i, phase)| {
                let d = after_run(&key, *phase, &[subscriber], &memory, t(i as i64 * 60));
                d.apply(&mut memory);
                sent(&d)
            })
            .collect()
    }

    #[test]
    fn a_failure_is_told_once_then_recovered() {
        use NotifyEvent::*;
        use Phase as P;
        let s = ops(&crate::spec::notifier::default_events(), None);
        let got = runs(
            &s,
            &[
                P::Failed,
                P::Failed,
                P::PartiallyFailed,
                P::Succeeded,
                P::Succeeded,
            ],
        );
        assert_eq!(
            got,
            vec![
                vec![Failed],
                vec![],
                vec![PartiallyFailed],
                vec![Recovered],
                vec![]
            ]
        );
    }

    #[test]
    fn repeat_resends_on_a_failing_run_after_its_interval() {
        use NotifyEvent::*;
        use Phase as P;
        // Runs an hour apart, repeat 90 minutes.
        let s = ops(&[Failed], Some(90));
        let got = runs(&s, &[P::Failed, P::Failed, P::Failed, P::Failed]);
        assert_eq!(got, vec![vec![Failed], vec![], vec![Failed], vec![]]);
    }

    #[test]
    fn succeeded_is_sent_every_run_and_recovered_only_where_asked() {
        use NotifyEvent::*;
        use Phase as P;
        let s = ops(&[Succeeded], None);
        assert_eq!(
            runs(&s, &[P::Succeeded, P::Failed, P::Succeeded]),
            vec![vec![Succeeded], vec![], vec![Succeeded]]
        );
        // A notifier that sends only Recovered still remembers the failure.
        let s = ops(&[Recovered], None);
        assert_eq!(
            runs(&s, &[P::Failed, P::Succeeded]),
            vec![vec![], vec![Recovered]]
        );
        // A heartbeat hears nothing here: the caller pings it around every run.
        let mut s = ops(&NotifyEvent::ALL, None);
        s.heartbeat = true;
        assert_eq!(runs(&s, &[P::Failed, P::Succeeded]), vec![vec![], vec![]]);
    }

    fn notice(event: NotifyEvent, name: &str) -> Notice {
        Notice {
            object: policy(name),
            event,
            subject: String::new(),
        }
    }

    #[test]
    fn a_pass_notice_is_told_when_it_begins_and_forgotten_when_it_ends() {
        use NotifyEvent::*;
        let s = [ops(&[Overdue, SpecInvalid], None)];
        let all = |_: &str, _: &ObjectKey| true;
        let mut memory = Memory::new();
        let active: BTreeSet<Notice> = [notice(Overdue, "a"), notice(SpecInvalid, "b")].into();
        let mut told = Vec::new();
        for minute in 0..5 {
            let d = after_pass(&active, &s, &all, &memory, t(minute));
            d.apply(&mut memory);
            told.extend(sent(&d));
        }
        assert_eq!(told, vec![Overdue, SpecInvalid], "once, not once per pass");
        let d = after_pass(&BTreeSet::new(), &s, &all, &memory, t(6));
        assert_eq!(d.forget.len(), 2);
        d.apply(&mut memory);
        // A new occurrence after it ended is told again.
        let d = after_pass(&active, &s, &all, &memory, t(7));
        assert_eq!(sent(&d), vec![Overdue, SpecInvalid]);
    }

    #[test]
    fn a_lasting_pass_notice_is_repeated_and_the_loop_is_woken_for_it() {
        use NotifyEvent::*;
        let s = [ops(&[RepositoryUnreachable], Some(60))];
        let all = |_: &str, _: &ObjectKey| true;
        let mut memory = Memory::new();
        let active: BTreeSet<Notice> = [notice(RepositoryUnreachable, "offsite")].into();
        let d = after_pass(&active, &s, &all, &memory, t(0));
        assert_eq!(d.wake, Some(t(60)));
        d.apply(&mut memory);
        let d = after_pass(&active, &s, &all, &memory, t(59));
        assert!(d.send.is_empty());
        assert_eq!(d.wake, Some(t(60)));
        let d = after_pass(&active, &s, &all, &memory, t(60));
        assert_eq!(sent(&d), vec![RepositoryUnreachable]);
        assert_eq!(d.wake, Some(t(120)));
    }

    #[test]
    fn a_pass_leaves_run_notices_and_uncovered_objects_alone() {
        use NotifyEvent::*;
        let s = [ops(&[Failed, Overdue], None)];
        let mut memory = Memory::new();
        let d = after_run(&policy("a"), Phase::Failed, &[&s[0]], &memory, t(0));
        d.apply(&mut memory);
        let only_b = |_: &str, o: &ObjectKey| o.name == "b";
        let active: BTreeSet<Notice> = [notice(Overdue, "a"), notice(Overdue, "b")].into();
        let d = after_pass(&active, &s, &only_b, &memory, t(1));
        assert_eq!(d.send, vec![("ops".to_string(), notice(Overdue, "b"))]);
        assert!(d.forget.is_empty(), "{:?}", d.forget);
    }

    #[test]
    fn overdue_is_one_and_a_half_intervals_after_the_last_success() {
        let hourly = 3600.0;
        assert_eq!(overdue_at(Some(t(60)), t(0), hourly), t(150));
        assert_eq!(overdue_at(None, t(10), hourly), t(100));
        // A success before the policy was first seen (a renamed state folder) counts from
        // the first sighting.
        assert_eq!(overdue_at(Some(t(0)), t(30), hourly), t(120));
    }
}
