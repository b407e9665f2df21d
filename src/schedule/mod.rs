//! When a `BackupPolicy` runs: its cron schedule read in its time zone, its per-policy
//! jitter, and the decision the reconciler takes at a given `now`.
//!
//! Everything here is pure: no IO, no async, and no clock of its own. The caller passes
//! `now` and persists what it needs (the nominal time of the last started run).
//!
//! # Wall clock, instants and daylight saving time
//!
//! A schedule is matched against the wall clock of the policy's time zone, and every
//! nominal time it produces is an instant (`DateTime<Utc>`). Where the wall clock jumps,
//! holdfast follows the rule of Vixie cron and cronie, which sorts jobs in two kinds:
//!
//! - **Fixed-time** jobs name their minute and hour (`30 2 * * *`, `0 2,14 * * *`,
//!   `@daily`): they run once per wall-clock time they name. When the clock springs
//!   forward over that time, the run happens once, at the first instant after the gap
//!   (02:30 on a 02:00 → 03:00 day runs at 03:00 local time, "as soon as the time
//!   exists"). When the clock falls back and the time happens twice, only the first
//!   occurrence runs. Several times in one gap (`0,30 2 * * *`) make one run.
//! - **Interval** jobs have a minute or hour field starting with `*` (`0 * * * *`,
//!   `*/15 * * * *`, `0 */2 * * *`, `@hourly`): they follow real time. A wall-clock time
//!   that does not exist is skipped, and one that happens twice runs twice. So
//!   `0 * * * *` runs once every real hour: 23 runs on a spring-forward day and 25 on a
//!   fall-back day, counted in local days; 24 in every UTC day.
//!
//! croner 4 applies its own DST rules, but counts a job as fixed-time only when the
//! minute and hour are single values, so `0 2,14 * * *` would skip 02:00 on a
//! spring-forward day and run twice on a fall-back day. holdfast therefore asks croner
//! only for wall-clock matches (on `NaiveDateTime`) and maps them to instants itself.

#[cfg(test)]
mod tests;

use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use sha2::{Digest, Sha256};

use crate::spec::BackupPolicySpec;

/// How late a run may start and still be on time. The daemon's timer can fire late (a
/// loaded host, a VM resuming); a run that starts seconds after its time was not missed.
/// It is also the least `startingDeadline` there is, so a tiny deadline cannot make a
/// policy that never manages to start.
pub const ON_TIME_TOLERANCE: Duration = Duration::from_secs(60);

/// The widest backward clock change the search allows for. Daylight saving moves clocks
/// by an hour (30 minutes on Lord Howe Island); only date-line moves of decades ago went
/// back further. Matches are looked for this far either side of a wall-clock time, since
/// within a repeated stretch the wall clock and the instants run in different orders. A
/// zone that went back further would have runs in its repeated stretch misordered.
const MAX_CLOCK_SHIFT: TimeDelta = TimeDelta::hours(3);

/// The longest forward clock change looked across (Samoa skipped a whole day in 2011).
const MAX_GAP_SECONDS: i64 = 8 * 86_400;

/// How a job treats wall-clock times that DST skips or repeats (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobKind {
    FixedTime,
    Interval,
}

/// A policy's schedule, compiled once per spec generation.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
    kind: JobKind,
    jitter: Duration,
    jitter_offset: Duration,
}

impl Schedule {
    /// From the policy's schedule, timezone (default UTC) and jitter (default zero).
    /// `name` seeds the jitter offset. The errors are the ones validation already reports,
    /// so a validated spec always compiles.
    pub fn new(name: &str, spec: &BackupPolicySpec) -> Result<Schedule, String> {
        let jitter = spec.jitter.map_or(Duration::ZERO, |j| j.as_duration());
        Schedule::from_cron(name, &spec.schedule, spec.timezone.as_ref(), jitter)
    }

    /// A schedule from its parts, e.g. a policy's `verify.schedule` in the policy's zone.
    pub fn from_cron(
        name: &str,
        schedule: &crate::spec::schedule::CronSchedule,
        timezone: Option<&crate::spec::schedule::TimeZoneName>,
        jitter: Duration,
    ) -> Result<Schedule, String> {
        let cron = schedule.parse()?;
        let tz = match timezone {
            Some(zone) => zone.parse()?,
            None => Tz::UTC,
        };
        // Vixie cron's test: a minute or hour field that starts with `*`. croner records
        // exactly that (`*` and `*/n`), nicknames included (`@hourly` is `0 * * * *`).
        let kind = if cron.pattern.minutes.from_wildcard || cron.pattern.hours.from_wildcard {
            JobKind::Interval
        } else {
            JobKind::FixedTime
        };
        Ok(Schedule {
            cron,
            tz,
            kind,
            jitter,
            jitter_offset: jitter_offset_for(name, jitter),
        })
    }

    /// The time zone the schedule is read in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The configured jitter: offsets lie in `[0, jitter)`.
    pub fn jitter(&self) -> Duration {
        self.jitter
    }

    /// The first nominal run time strictly after `after` (before jitter), as an instant,
    /// with the DST rules of the module docs. `None` when the cron never matches again
    /// (`0 3 30 2 *`).
    pub fn next_nominal_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = self.local(after);
        // Inside a repeated stretch, a wall-clock time before `local` can map to an instant
        // after `after`, so the search starts early and keeps the smallest instant found.
        let mut cursor = local.checked_sub_signed(MAX_CLOCK_SHIFT)?;
        let mut best: Option<DateTime<Utc>> = None;
        while let Some(wall) = self.wall_match(cursor, Direction::Forward) {
            if best.is_some_and(|b| wall > self.local(b) + MAX_CLOCK_SHIFT) {
                break;
            }
            for instant in self.instants_of(wall).into_iter().flatten() {
                if instant > after && best.is_none_or(|b| instant < b) {
                    best = Some(instant);
                }
            }
            cursor = wall;
        }
        best
    }

    /// The last nominal run time at or before `at`; the mirror of
    /// [`Schedule::next_nominal_after`].
    pub fn last_nominal_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = self.local(at);
        let mut cursor = local.checked_add_signed(MAX_CLOCK_SHIFT)?;
        let mut best: Option<DateTime<Utc>> = None;
        while let Some(wall) = self.wall_match(cursor, Direction::Backward) {
            if best.is_some_and(|b| wall < self.local(b) - MAX_CLOCK_SHIFT) {
                break;
            }
            for instant in self.instants_of(wall).into_iter().flatten() {
                if instant <= at && best.is_none_or(|b| instant > b) {
                    best = Some(instant);
                }
            }
            cursor = wall;
        }
        best
    }

    /// The policy's stable offset in `[0, jitter)`: the same for every run of a policy
    /// name, in every process, and spread evenly across names. It comes from the first
    /// 64 bits of the name's SHA-256, scaled to the jitter in whole milliseconds. Zero when
    /// the jitter is zero.
    pub fn jitter_offset(&self) -> Duration {
        self.jitter_offset
    }

    /// When the run for a nominal time actually starts: nominal + jitter offset.
    pub fn start_time(&self, nominal: DateTime<Utc>) -> DateTime<Utc> {
        // Validation keeps jitter under a day; saturating only guards absurd values.
        nominal
            .checked_add_signed(delta(self.jitter_offset))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    fn local(&self, instant: DateTime<Utc>) -> NaiveDateTime {
        instant.with_timezone(&self.tz).naive_local()
    }

    /// The next (or previous) wall-clock time the cron matches, strictly past `from`.
    fn wall_match(&self, from: NaiveDateTime, direction: Direction) -> Option<NaiveDateTime> {
        // On `NaiveDateTime` croner has no time zone, hence no DST handling of its own.
        // An error means no match before croner's search limits: the cron never fires.
        match direction {
            Direction::Forward => self.cron.find_next_occurrence(&from, false).ok(),
            Direction::Backward => self.cron.find_previous_occurrence(&from, false).ok(),
        }
    }

    /// The instants a matching wall-clock time runs at: one, none (an interval job in a
    /// gap) or two (an interval job in a repeated stretch, earlier first).
    fn instants_of(&self, wall: NaiveDateTime) -> [Option<DateTime<Utc>>; 2] {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => [Some(t.to_utc()), None],
            LocalResult::Ambiguous(first, second) => match self.kind {
                JobKind::FixedTime => [Some(first.to_utc()), None],
                JobKind::Interval => [Some(first.to_utc()), Some(second.to_utc())],
            },
            LocalResult::None => match self.kind {
                JobKind::FixedTime => [self.gap_end(wall), None],
                JobKind::Interval => [None, None],
            },
        }
    }

    /// The first instant after the gap that the wall-clock time `wall` falls in.
    fn gap_end(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        let exists = |secs: i64| {
            wall.checked_add_signed(TimeDelta::seconds(secs))
                .and_then(|t| self.tz.from_local_datetime(&t).earliest())
        };
        // Gaps end on a whole second but not always a whole minute (historical offsets),
        // so bracket the end by doubling, then bisect to the second.
        let (mut inside, mut outside) = (0_i64, 1_i64);
        while exists(outside).is_none() {
            inside = outside;
            outside *= 2;
            if outside > MAX_GAP_SECONDS {
                return None;
            }
        }
        while outside - inside > 1 {
            let mid = inside + (outside - inside) / 2;
            if exists(mid).is_some() {
                outside = mid;
            } else {
                inside = mid;
            }
        }
        exists(outside).map(|t| t.to_utc())
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Forward,
    Backward,
}

/// `jitter * h / 2^64` for the name's hash `h`: always below the jitter, and names spread
/// uniformly. Milliseconds keep the product within `u128` for any `Duration`.
fn jitter_offset_for(name: &str, jitter: Duration) -> Duration {
    let digest = Sha256::digest(name.as_bytes());
    let mut head = [0_u8; 8];
    head.copy_from_slice(&digest[..8]);
    let fraction = u128::from(u64::from_be_bytes(head));
    let jitter_ms = u128::from(u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX));
    let offset_ms = (jitter_ms * fraction) >> 64;
    Duration::from_millis(u64::try_from(offset_ms).unwrap_or(u64::MAX))
}

/// `d` as a `TimeDelta`, saturating (only durations of millions of years do not fit).
fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// What the reconciler should do about a policy's schedule now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Run now for this nominal time. `catch_up` is true when the run starts
    /// [`ON_TIME_TOLERANCE`] or more after its start time: it was missed (holdfast or the
    /// host was not running, or the policy was busy) and is caught up within
    /// `startingDeadline`.
    RunNow {
        nominal: DateTime<Utc>,
        catch_up: bool,
    },
    /// Nothing to do until this instant (the next start time); `nominal` is the schedule
    /// time it stands for.
    WaitUntil {
        at: DateTime<Utc>,
        nominal: DateTime<Utc>,
    },
    /// Suspended, or the cron has no future occurrence.
    Never,
}

/// Decides whether a policy runs now, and if not, when to look again.
///
/// - `last_scheduled`: the nominal time of the last run that was started (persisted across
///   restarts), or `None` for a policy that never ran.
/// - `first_seen`: when holdfast first saw this policy. Nominal times before it are never
///   run, so a new policy does not catch up runs from before it existed; one exactly at
///   `first_seen` is its first run.
/// - `starting_deadline`: how late a missed run may still start. `None` means only on-time
///   runs start (less than [`ON_TIME_TOLERANCE`] late), which is also the least deadline.
///
/// The candidate is the first nominal time after both `last_scheduled` and (just before)
/// `first_seen`. Before its start time (nominal + jitter offset) the answer is
/// [`Decision::WaitUntil`] that start time. Once it is due, of all due nominal times only
/// the most recent is considered, so a host that was down for days runs at most one
/// catch-up, never a burst: it runs if it is less than the deadline late, and otherwise
/// the answer is to wait for the next nominal time.
///
/// Idempotent and exactly-once: the answer depends only on the arguments, and once the
/// caller has persisted `last_scheduled = N` for a run it started, no nominal time at or
/// before `N` is returned as `RunNow` again. A skipped run is not persisted and need not
/// be: it is skipped again at every call until a later nominal time is due.
pub fn decide(
    schedule: &Schedule,
    suspended: bool,
    last_scheduled: Option<DateTime<Utc>>,
    first_seen: DateTime<Utc>,
    starting_deadline: Option<Duration>,
    now: DateTime<Utc>,
) -> Decision {
    if suspended {
        return Decision::Never;
    }
    let wait_for = |nominal: DateTime<Utc>| Decision::WaitUntil {
        at: schedule.start_time(nominal),
        nominal,
    };
    // "Strictly after a nanosecond before first_seen" admits a nominal time equal to it.
    let not_before = first_seen
        .checked_sub_signed(TimeDelta::nanoseconds(1))
        .unwrap_or(first_seen);
    let after = last_scheduled.map_or(not_before, |last| last.max(not_before));
    let Some(first) = schedule.next_nominal_after(after) else {
        return Decision::Never;
    };
    if now < schedule.start_time(first) {
        return wait_for(first);
    }

    // At least `first` is due; the most recent due nominal time is the last one whose start
    // time has passed, i.e. the last at or before `now - offset`.
    let latest = now
        .checked_sub_signed(delta(schedule.jitter_offset()))
        .and_then(|cutoff| schedule.last_nominal_at_or_before(cutoff))
        .filter(|latest| *latest >= first)
        .unwrap_or(first);
    let late = now - schedule.start_time(latest);
    let deadline = starting_deadline.map_or(ON_TIME_TOLERANCE, |d| d.max(ON_TIME_TOLERANCE));
    if late < delta(deadline) {
        return Decision::RunNow {
            nominal: latest,
            catch_up: late >= delta(ON_TIME_TOLERANCE),
        };
    }
    match schedule.next_nominal_after(latest) {
        Some(next) => wait_for(next),
        None => Decision::Never,
    }
}
