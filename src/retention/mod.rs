//! Which archives of a policy to keep and which to forget, with every reason.
//!
//! Pure like the rest of the decisions: no IO and no clock of its own. The caller passes
//! the policy's archives, its rules, its time zone and `now`, and deletes what comes back
//! forgotten. [`apply`] is idempotent: applied again to what it kept, it forgets nothing
//! more, so a retry after a crash half-way through deleting is harmless.
//!
//! # The rules
//!
//! Grandfather-father-son as in restic and borg. Only archives of successful, verified
//! runs ([`Health::Good`]) are counted by the rules and kept by them:
//!
//! - `keepLast: N` keeps the N newest good archives.
//! - `keepHourly`/`keepDaily`/`keepWeekly`/`keepMonthly`/`keepYearly: N` walk the good
//!   archives newest first and keep the newest archive of each distinct period until N
//!   periods have one. Periods are read on the wall clock of the policy's time zone: the
//!   hour (`2026-11-24T13:00`), the date (`2026-11-24`), the ISO week (`2026-W48`, so
//!   2026-12-28 and 2027-01-03 are both in `2026-W53`), the month (`2026-11`) and the year
//!   (`2026`). A period without a good archive does not count towards N. Because periods
//!   are wall-clock periods, the hour repeated when clocks fall back is one hourly period,
//!   as the 25-hour day is one daily period.
//! - `keepWithin: D` keeps every good archive taken less than D before `now`.
//! - An archive is kept when any rule keeps it, and its decision lists every rule that
//!   does, in the order: newest successful, last, hourly, daily, weekly, monthly, yearly,
//!   within.
//!
//! # What the rules do not decide
//!
//! - **The newest successful archive is always kept** ("newest successful"), whatever the
//!   rules say, so that retention can never leave a policy without a restorable archive.
//!   Validation refuses rules that keep nothing; with counts of zero this is what remains.
//! - **No rules at all** (every field unset) means retention is off: every archive that
//!   holds data, good or partial, is kept ("no retention rules"), as for a policy
//!   without a `retention` block. Failed, corrupt and missing ones are still forgotten.
//! - **Failed, corrupt and missing archives are always forgotten**, and never fill a
//!   period: a half-written or unreadable archive that took a daily slot would push out a
//!   good one, and it is exactly what operators fear retention treats as good.
//! - **Partial archives** (the run ended `PartiallyFailed`: the archive is complete, but,
//!   say, a container did not come back healthy) are counted like failed ones, but one
//!   newer than every good archive is kept ("partially failed run newer than any
//!   successful one"): until a good run follows, it may be the freshest data there is.
//!   Once a good archive is newer, it is forgotten.
//! - **Good archives from the future** (later than `now`: a clock that was, or is, wrong)
//!   are kept ("newer than now") and set aside: they count for no rule and fill no
//!   period, so a single archive stamped 2099 cannot take the newest slots from real
//!   ones. "Newest successful" is the newest good archive not after `now`. Failed, corrupt
//!   and missing ones are forgotten whatever their time; a partial one follows the partial
//!   rule above.
//!
//! # Order
//!
//! The result is deterministic. Archives are ordered by time, and at equal times the one
//! with the greater id counts as the newer, so equal timestamps cannot make two runs
//! disagree about which archive a rule keeps.

#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::spec::common::{Phase, Retention};

/// What retention needs to know about one archive of a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    /// When the archive was taken; periods are read from this instant.
    pub time: DateTime<Utc>,
    pub health: Health,
}

/// What is known about an archive's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// The run succeeded and the artifacts have the sizes and checksums recorded.
    Good,
    /// The run ended `PartiallyFailed`: the archive is complete, something around it was not.
    Partial,
    /// The run failed; whatever it left is not a backup.
    Failed,
    /// The artifacts do not match their manifest.
    Corrupt,
    /// The archive is recorded but its artifacts are gone.
    Missing,
}

impl Health {
    /// The health a finished run's phase implies, before verification can make it
    /// `Corrupt` or `Missing`. A run still pending or running is no candidate at all: it
    /// is neither kept nor forgotten until it ends.
    pub fn from_phase(phase: Phase) -> Option<Health> {
        match phase {
            Phase::Succeeded => Some(Health::Good),
            Phase::PartiallyFailed => Some(Health::Partial),
            Phase::Failed => Some(Health::Failed),
            Phase::Pending | Phase::Running => None,
        }
    }
}

/// Keep or forget one archive, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub id: String,
    pub keep: bool,
    /// Every reason it is kept, e.g. `["newest successful", "last 3", "daily 2026-11-24",
    /// "weekly 2026-W48", "monthly 2026-11", "yearly 2026", "within 48h"]`; for a forgotten
    /// one a single reason, e.g. `["not kept by any rule"]`.
    pub reasons: Vec<String>,
}

pub const NEWEST_SUCCESSFUL: &str = "newest successful";
pub const NEWER_THAN_NOW: &str = "newer than now";
pub const NO_RULES: &str = "no retention rules";
pub const PARTIAL_NEWEST: &str = "partially failed run newer than any successful one";
pub const NOT_KEPT: &str = "not kept by any rule";
pub const PARTIAL_SUPERSEDED: &str = "partially failed run older than the newest successful one";
pub const FAILED: &str = "failed run: never counted as kept";
pub const CORRUPT: &str = "corrupt archive: never counted as kept";
pub const MISSING: &str = "missing from the repository: never counted as kept";

/// A period rule: its name in reasons and how a local time names its period. The name is
/// the bucket key, so two archives share a period exactly when their reasons would match.
const PERIODS: [(&str, &str); 5] = [
    ("hourly", "%Y-%m-%dT%H:00"),
    ("daily", "%Y-%m-%d"),
    ("weekly", "%G-W%V"),
    ("monthly", "%Y-%m"),
    ("yearly", "%Y"),
];

/// Decides keep/forget for every candidate (returned in the input order), with reasons.
/// See the module docs for the rules.
pub fn apply(
    candidates: &[Candidate],
    rules: &Retention,
    tz: Tz,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); candidates.len()];

    // The good archives the rules count: not from the future, newest first.
    let mut counted: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].health == Health::Good && candidates[i].time <= now)
        .collect();
    counted.sort_by(|&a, &b| newer_first(&candidates[a], &candidates[b]));

    for (i, candidate) in candidates.iter().enumerate() {
        if candidate.health == Health::Good && candidate.time > now {
            reasons[i].push(NEWER_THAN_NOW.to_string());
        }
    }
    if let Some(&newest) = counted.first() {
        reasons[newest].push(NEWEST_SUCCESSFUL.to_string());
    }
    if let Some(n) = rules.keep_last {
        for &i in counted.iter().take(n as usize) {
            reasons[i].push(format!("last {n}"));
        }
    }
    let counts = [
        rules.keep_hourly,
        rules.keep_daily,
        rules.keep_weekly,
        rules.keep_monthly,
        rules.keep_yearly,
    ];
    for (count, (name, format)) in counts.into_iter().zip(PERIODS) {
        let Some(n) = count else { continue };
        let n = n as usize;
        let mut filled = BTreeSet::new();
        for &i in &counted {
            if filled.len() >= n {
                break;
            }
            let period = candidates[i]
                .time
                .with_timezone(&tz)
                .format(format)
                .to_string();
            // Newest first, so the first archive seen in a period is its newest.
            if filled.insert(period.clone()) {
                reasons[i].push(format!("{name} {period}"));
            }
        }
    }
    if let Some(within) = rules.keep_within {
        let cutoff = TimeDelta::from_std(within.as_duration())
            .ok()
            .and_then(|d| now.checked_sub_signed(d));
        for &i in &counted {
            // A duration reaching past the start of time keeps everything.
            if cutoff.is_none_or(|cutoff| candidates[i].time > cutoff) {
                reasons[i].push(format!("within {within}"));
            }
        }
    }

    let newest_good = candidates
        .iter()
        .filter(|c| c.health == Health::Good)
        .map(|c| c.time)
        .max();
    let no_rules = *rules == Retention::default();
    for (i, candidate) in candidates.iter().enumerate() {
        if candidate.health == Health::Partial && newest_good.is_none_or(|t| candidate.time > t) {
            reasons[i].push(PARTIAL_NEWEST.to_string());
        }
        if no_rules && matches!(candidate.health, Health::Good | Health::Partial) {
            reasons[i].push(NO_RULES.to_string());
        }
    }

    candidates
        .iter()
        .zip(reasons)
        .map(|(candidate, reasons)| {
            if reasons.is_empty() {
                Decision {
                    id: candidate.id.clone(),
                    keep: false,
                    reasons: vec![forget_reason(candidate.health).to_string()],
                }
            } else {
                Decision {
                    id: candidate.id.clone(),
                    keep: true,
                    reasons,
                }
            }
        })
        .collect()
}

/// Newest first; at equal times the greater id is the newer (see the module docs).
fn newer_first(a: &Candidate, b: &Candidate) -> Ordering {
    b.time.cmp(&a.time).then_with(|| b.id.cmp(&a.id))
}

fn forget_reason(health: Health) -> &'static str {
    match health {
        Health::Good => NOT_KEPT,
        Health::Partial => PARTIAL_SUPERSEDED,
        Health::Failed => FAILED,
        Health::Corrupt => CORRUPT,
        Health::Missing => MISSING,
    }
}
