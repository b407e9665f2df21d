use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate, TimeDelta, Timelike};

use super::*;
use crate::spec::HumanDuration;

fn t(text: &str) -> DateTime<Utc> {
    text.parse()
        .unwrap_or_else(|e| panic!("bad test time {text}: {e}"))
}

fn cand(id: &str, time: &str, health: Health) -> Candidate {
    Candidate {
        id: id.to_string(),
        time: t(time),
        health,
    }
}

fn good(id: &str, time: &str) -> Candidate {
    cand(id, time, Health::Good)
}

fn berlin() -> Tz {
    chrono_tz::Europe::Berlin
}

fn kept(decisions: &[Decision]) -> Vec<&str> {
    decisions
        .iter()
        .filter(|d| d.keep)
        .map(|d| d.id.as_str())
        .collect()
}

fn reasons<'a>(decisions: &'a [Decision], id: &str) -> Vec<&'a str> {
    let decision = decisions
        .iter()
        .find(|d| d.id == id)
        .unwrap_or_else(|| panic!("no decision for {id}"));
    decision.reasons.iter().map(String::as_str).collect()
}

#[test]
fn keep_last_keeps_the_newest_good_ones() {
    let candidates: Vec<_> = (1..=5)
        .map(|day| good(&format!("a{day}"), &format!("2026-11-0{day}T03:00:00Z")))
        .collect();
    let rules = Retention {
        keep_last: Some(3),
        ..Retention::default()
    };
    let decisions = apply(&candidates, &rules, Tz::UTC, t("2026-11-06T00:00:00Z"));
    assert_eq!(kept(&decisions), ["a3", "a4", "a5"]);
    assert_eq!(reasons(&decisions, "a5"), [NEWEST_SUCCESSFUL, "last 3"]);
    assert_eq!(reasons(&decisions, "a3"), ["last 3"]);
    assert_eq!(reasons(&decisions, "a1"), [NOT_KEPT]);
}

#[test]
fn keep_daily_keeps_the_newest_of_each_day() {
    let mut candidates = Vec::new();
    for day in 11..=20 {
        for hour in ["08", "12", "20"] {
            candidates.push(good(
                &format!("d{day}-{hour}"),
                &format!("2026-11-{day}T{hour}:00:00Z"),
            ));
        }
    }
    let now = t("2026-11-21T00:00:00Z");
    let daily = |n| Retention {
        keep_daily: Some(n),
        ..Retention::default()
    };

    let decisions = apply(&candidates, &daily(10), Tz::UTC, now);
    let expected: Vec<String> = (11..=20).map(|day| format!("d{day}-20")).collect();
    assert_eq!(kept(&decisions), expected);
    assert_eq!(reasons(&decisions, "d11-20"), ["daily 2026-11-11"]);
    assert_eq!(reasons(&decisions, "d11-12"), [NOT_KEPT]);

    let decisions = apply(&candidates, &daily(4), Tz::UTC, now);
    assert_eq!(kept(&decisions), ["d17-20", "d18-20", "d19-20", "d20-20"]);
    assert_eq!(
        reasons(&decisions, "d20-20"),
        [NEWEST_SUCCESSFUL, "daily 2026-11-20"]
    );
}

#[test]
fn keep_weekly_uses_iso_weeks() {
    let candidates = [
        good("dec21", "2026-12-21T12:00:00Z"),
        good("dec28", "2026-12-28T12:00:00Z"),
        good("jan03", "2027-01-03T12:00:00Z"),
        good("jan04", "2027-01-04T12:00:00Z"),
    ];
    let rules = Retention {
        keep_weekly: Some(3),
        ..Retention::default()
    };
    let decisions = apply(&candidates, &rules, Tz::UTC, t("2027-01-05T00:00:00Z"));
    assert_eq!(kept(&decisions), ["dec21", "jan03", "jan04"]);
    assert_eq!(reasons(&decisions, "jan03"), ["weekly 2026-W53"]);
    assert_eq!(
        reasons(&decisions, "jan04"),
        [NEWEST_SUCCESSFUL, "weekly 2027-W01"]
    );
    assert_eq!(reasons(&decisions, "dec21"), ["weekly 2026-W52"]);
    // 2026-12-28 is in 2026-W53 too, but older than 2027-01-03.
    assert_eq!(reasons(&decisions, "dec28"), [NOT_KEPT]);
}

#[test]
fn keep_monthly_and_yearly() {
    let mut candidates = Vec::new();
    for year in 2024..=2026 {
        for month in 1..=12 {
            candidates.push(good(
                &format!("{year}-{month:02}"),
                &format!("{year}-{month:02}-15T12:00:00Z"),
            ));
        }
    }
    let now = t("2027-01-01T00:00:00Z");
    let rules = Retention {
        keep_monthly: Some(3),
        ..Retention::default()
    };
    let decisions = apply(&candidates, &rules, Tz::UTC, now);
    assert_eq!(kept(&decisions), ["2026-10", "2026-11", "2026-12"]);
    assert_eq!(reasons(&decisions, "2026-10"), ["monthly 2026-10"]);

    let rules = Retention {
        keep_monthly: Some(2),
        keep_yearly: Some(5),
        ..Retention::default()
    };
    let decisions = apply(&candidates, &rules, Tz::UTC, now);
    // Only three years have archives: the other two yearly slots stay empty.
    assert_eq!(
        kept(&decisions),
        ["2024-12", "2025-12", "2026-11", "2026-12"]
    );
    assert_eq!(
        reasons(&decisions, "2026-12"),
        [NEWEST_SUCCESSFUL, "monthly 2026-12", "yearly 2026"]
    );
    assert_eq!(reasons(&decisions, "2024-12"), ["yearly 2024"]);
}

#[test]
fn keep_within_keeps_what_is_younger_than_the_duration() {
    let now = t("2026-11-25T12:00:00Z");
    let candidates = [
        good("1h", "2026-11-25T11:00:00Z"),
        good("47h", "2026-11-23T13:00:00Z"),
        good("48h", "2026-11-23T12:00:00Z"),
        good("49h", "2026-11-23T11:00:00Z"),
    ];
    let rules = Retention {
        keep_within: Some(HumanDuration::from_secs(48 * 3600)),
        ..Retention::default()
    };
    let decisions = apply(&candidates, &rules, Tz::UTC, now);
    assert_eq!(kept(&decisions), ["1h", "47h"]);
    // Durations print in their largest units, as everywhere in holdfast.
    assert_eq!(reasons(&decisions, "47h"), ["within 2d"]);
    assert_eq!(reasons(&decisions, "48h"), [NOT_KEPT]);

    // A duration too long for chrono keeps every archive in the past.
    let rules = Retention {
        keep_within: Some(HumanDuration(std::time::Duration::MAX)),
        ..Retention::default()
    };
    let decisions = apply(&candidates, &rules, Tz::UTC, now);
    assert_eq!(kept(&decisions).len(), 4);
}

#[test]
fn periods_are_read_in_the_policy_time_zone() {
    // 23:30Z is 00:30 the next day in Berlin (CET, +01:00).
    let candidates = [
        good("noon", "2026-11-24T12:00:00Z"),
        good("late", "2026-11-24T23:30:00Z"),
    ];
    let now = t("2026-11-25T06:00:00Z");
    let rules = Retention {
        keep_daily: Some(2),
        keep_hourly: Some(1),
        ..Retention::default()
    };

    let utc = apply(&candidates, &rules, Tz::UTC, now);
    assert_eq!(kept(&utc), ["late"]);
    assert_eq!(
        reasons(&utc, "late"),
        [
            NEWEST_SUCCESSFUL,
            "hourly 2026-11-24T23:00",
            "daily 2026-11-24"
        ]
    );

    let local = apply(&candidates, &rules, berlin(), now);
    assert_eq!(kept(&local), ["noon", "late"]);
    assert_eq!(
        reasons(&local, "late"),
        [
            NEWEST_SUCCESSFUL,
            "hourly 2026-11-25T00:00",
            "daily 2026-11-25"
        ]
    );
    assert_eq!(reasons(&local, "noon"), ["daily 2026-11-24"]);
}

#[test]
fn every_reason_is_listed_in_a_stable_order() {
    let candidates = [
        good("old", "2026-11-20T03:00:00Z"),
        good("new", "2026-11-24T03:00:00Z"),
    ];
    let rules = Retention {
        keep_last: Some(3),
        keep_hourly: Some(1),
        keep_daily: Some(7),
        keep_weekly: Some(4),
        keep_monthly: Some(6),
        keep_yearly: Some(2),
        keep_within: Some(HumanDuration::from_secs(48 * 3600)),
        dry_run: false,
    };
    let decisions = apply(&candidates, &rules, Tz::UTC, t("2026-11-25T00:00:00Z"));
    assert_eq!(
        reasons(&decisions, "new"),
        [
            "newest successful",
            "last 3",
            "hourly 2026-11-24T03:00",
            "daily 2026-11-24",
            "weekly 2026-W48",
            "monthly 2026-11",
            "yearly 2026",
            "within 2d",
        ]
    );
    assert_eq!(
        reasons(&decisions, "old"),
        ["last 3", "daily 2026-11-20", "weekly 2026-W47"]
    );
}

#[test]
fn failed_corrupt_and_missing_are_never_kept() {
    let candidates = [
        good("g1", "2026-11-01T03:00:00Z"),
        good("g2", "2026-11-02T03:00:00Z"),
        cand("failed", "2026-11-03T03:00:00Z", Health::Failed),
        cand("corrupt", "2026-11-04T03:00:00Z", Health::Corrupt),
        cand("missing", "2026-11-05T03:00:00Z", Health::Missing),
        cand("future-failed", "2026-12-05T03:00:00Z", Health::Failed),
    ];
    let now = t("2026-11-06T00:00:00Z");
    let rules = Retention {
        keep_last: Some(2),
        keep_daily: Some(7),
        keep_within: Some(HumanDuration::from_secs(30 * 86_400)),
        ..Retention::default()
    };
    let decisions = apply(&candidates, &rules, Tz::UTC, now);
    assert_eq!(kept(&decisions), ["g1", "g2"]);
    assert_eq!(
        reasons(&decisions, "g2"),
        [
            NEWEST_SUCCESSFUL,
            "last 2",
            "daily 2026-11-02",
            "within 30d"
        ]
    );
    assert_eq!(reasons(&decisions, "failed"), [FAILED]);
    assert_eq!(reasons(&decisions, "corrupt"), [CORRUPT]);
    assert_eq!(reasons(&decisions, "missing"), [MISSING]);
    assert_eq!(reasons(&decisions, "future-failed"), [FAILED]);

    // Not even with retention off.
    let decisions = apply(&candidates, &Retention::default(), Tz::UTC, now);
    assert_eq!(kept(&decisions), ["g1", "g2"]);
    assert_eq!(reasons(&decisions, "g1"), [NO_RULES]);
    assert_eq!(reasons(&decisions, "g2"), [NEWEST_SUCCESSFUL, NO_RULES]);
}

#[test]
fn the_newest_good_archive_is_kept_whatever_the_rules() {
    let candidates = [
        good("g1", "2026-11-01T03:00:00Z"),
        good("g2", "2026-11-02T03:00:00Z"),
        cand("failed", "2026-11-03T03:00:00Z", Health::Failed),
    ];
    let rules = Retention {
        keep_last: Some(0),
        keep_daily: Some(0),
        keep_within: Some(HumanDuration::from_secs(0)),
        ..Retention::default()
    };
    let decisions = apply(&candidates, &rules, Tz::UTC, t("2026-11-06T00:00:00Z"));
    assert_eq!(kept(&decisions), ["g2"]);
    assert_eq!(reasons(&decisions, "g2"), [NEWEST_SUCCESSFUL]);
    assert_eq!(reasons(&decisions, "g1"), [NOT_KEPT]);
}

#[test]
fn a_partial_archive_is_kept_only_while_newer_than_every_good_one() {
    let candidates = [
        good("good-d1", "2026-11-01T10:00:00Z"),
        cand("partial-d2", "2026-11-02T10:00:00Z", Health::Partial),
        good("good-d3", "2026-11-03T10:00:00Z"),
        cand("partial-d3", "2026-11-03T20:00:00Z", Health::Partial),
        cand("partial-d4", "2026-11-04T10:00:00Z", Health::Partial),
    ];
    let rules = Retention {
        keep_daily: Some(2),
        ..Retention::default()
    };
    let decisions = apply(&candidates, &rules, Tz::UTC, t("2026-11-05T00:00:00Z"));
    // Partial archives fill no daily slot: the two days are 11-03 and 11-01.
    assert_eq!(
        kept(&decisions),
        ["good-d1", "good-d3", "partial-d3", "partial-d4"]
    );
    assert_eq!(
        reasons(&decisions, "good-d3"),
        [NEWEST_SUCCESSFUL, "daily 2026-11-03"]
    );
    assert_eq!(reasons(&decisions, "good-d1"), ["daily 2026-11-01"]);
    assert_eq!(reasons(&decisions, "partial-d4"), [PARTIAL_NEWEST]);
    assert_eq!(reasons(&decisions, "partial-d2"), [PARTIAL_SUPERSEDED]);

    // With no good archive at all, every partial one is the best there is.
    let only_partial = [cand("p", "2026-11-02T10:00:00Z", Health::Partial)];
    let decisions = apply(&only_partial, &rules, Tz::UTC, t("2026-11-05T00:00:00Z"));
    assert_eq!(reasons(&decisions, "p"), [PARTIAL_NEWEST]);

    // Retention off keeps every partial one too.
    let decisions = apply(
        &candidates,
        &Retention::default(),
        Tz::UTC,
        t("2026-11-05T00:00:00Z"),
    );
    assert_eq!(reasons(&decisions, "partial-d2"), [NO_RULES]);
    assert_eq!(
        reasons(&decisions, "partial-d4"),
        [PARTIAL_NEWEST, NO_RULES]
    );
}

#[test]
fn archives_from_the_future_are_kept_and_fill_no_slot() {
    let candidates = [
        good("p1", "2026-11-01T03:00:00Z"),
        good("p2", "2026-11-02T03:00:00Z"),
        good("skewed", "2026-11-06T01:00:00Z"),
        good("y2099", "2099-01-01T00:00:00Z"),
    ];
    let rules = Retention {
        keep_last: Some(1),
        keep_yearly: Some(1),
        ..Retention::default()
    };
    let decisions = apply(&candidates, &rules, Tz::UTC, t("2026-11-06T00:00:00Z"));
    assert_eq!(kept(&decisions), ["p2", "skewed", "y2099"]);
    assert_eq!(
        reasons(&decisions, "p2"),
        [NEWEST_SUCCESSFUL, "last 1", "yearly 2026"]
    );
    assert_eq!(reasons(&decisions, "skewed"), [NEWER_THAN_NOW]);
    assert_eq!(reasons(&decisions, "y2099"), [NEWER_THAN_NOW]);
    assert_eq!(reasons(&decisions, "p1"), [NOT_KEPT]);
}

#[test]
fn equal_times_are_ordered_by_id() {
    let a = good("a", "2026-11-01T03:00:00Z");
    let b = good("b", "2026-11-01T03:00:00Z");
    let rules = Retention {
        keep_last: Some(1),
        ..Retention::default()
    };
    let now = t("2026-11-02T00:00:00Z");
    for candidates in [[a.clone(), b.clone()], [b, a]] {
        let decisions = apply(&candidates, &rules, Tz::UTC, now);
        assert_eq!(kept(&decisions), ["b"]);
        assert_eq!(reasons(&decisions, "a"), [NOT_KEPT]);
    }
}

#[test]
fn decisions_serialize_plainly() {
    let decisions = apply(
        &[good("a", "2026-11-01T03:00:00Z")],
        &Retention::default(),
        Tz::UTC,
        t("2026-11-02T00:00:00Z"),
    );
    assert_eq!(
        serde_json::to_value(&decisions).unwrap(),
        serde_json::json!([{"id": "a", "keep": true, "reasons": [NEWEST_SUCCESSFUL, NO_RULES]}])
    );
}

#[test]
fn health_follows_the_phase_of_a_finished_run() {
    assert_eq!(Health::from_phase(Phase::Succeeded), Some(Health::Good));
    assert_eq!(
        Health::from_phase(Phase::PartiallyFailed),
        Some(Health::Partial)
    );
    assert_eq!(Health::from_phase(Phase::Failed), Some(Health::Failed));
    assert_eq!(Health::from_phase(Phase::Running), None);
    assert_eq!(Health::from_phase(Phase::Pending), None);
}

/// The periods of one rule as sortable values, computed with chrono's fields rather than
/// format strings, as an independent check of `apply`.
fn period_key(time: DateTime<Utc>, tz: Tz, rule: usize) -> (i32, u32, u32, u32) {
    let local = time.with_timezone(&tz);
    match rule {
        0 => (local.year(), local.ordinal(), local.hour(), 0),
        1 => (local.year(), local.ordinal(), 0, 0),
        2 => (local.iso_week().year(), local.iso_week().week(), 0, 0),
        3 => (local.year(), local.month(), 0, 0),
        _ => (local.year(), 0, 0, 0),
    }
}

/// Two years of hourly archives in Berlin, retention applied after each one, as the daemon
/// would. Each rule keeps the last archive of each of its N most recent periods, and those
/// never fall out early, so the end state matches a naive one-shot computation over the
/// whole history.
#[test]
fn two_years_of_hourly_archives_across_dst() {
    let tz = berlin();
    let rules = Retention {
        keep_hourly: Some(24),
        keep_daily: Some(7),
        keep_weekly: Some(4),
        keep_monthly: Some(6),
        keep_yearly: Some(2),
        ..Retention::default()
    };
    let counts = [24, 7, 4, 6, 2];
    let bound = counts.iter().sum::<usize>() + 1;

    let start = t("2026-03-01T00:00:00Z");
    let hours = 2 * 365 * 24;
    let mut history = Vec::new();
    let mut set: Vec<Candidate> = Vec::new();
    for h in 0..hours {
        let now = start + TimeDelta::hours(h);
        let archive = Candidate {
            id: format!("a{h:05}"),
            time: now,
            health: Health::Good,
        };
        history.push(archive.clone());
        set.push(archive);
        let decisions = apply(&set, &rules, tz, now);
        assert_eq!(decisions[decisions.len() - 1].reasons[0], NEWEST_SUCCESSFUL);
        set = set
            .into_iter()
            .zip(&decisions)
            .filter(|(_, d)| d.keep)
            .map(|(c, _)| c)
            .collect();
        assert!(set.len() <= bound, "{} archives at {now}", set.len());
    }

    let mut expected = BTreeSet::new();
    expected.insert(history[history.len() - 1].id.clone());
    for (rule, &count) in counts.iter().enumerate() {
        // History is oldest first, so the last insert per period is its newest archive.
        let mut newest = BTreeMap::new();
        for archive in &history {
            newest.insert(period_key(archive.time, tz, rule), archive.id.clone());
        }
        expected.extend(newest.into_values().rev().take(count));
    }
    let actual: BTreeSet<String> = set.iter().map(|c| c.id.clone()).collect();
    assert_eq!(actual, expected);
    // The last archive is at 2028-02-29 00:00 in Berlin. 24 hourly ones; the newest of
    // 02-23..02-27 (5 more daily; 02-28's is an hourly one); of weeks W07 and W06 (2 more
    // weekly; W08's is 02-27's); of 2028-01 and 2027-12..09 (5 more monthly); 2027's is
    // December's. 24 + 5 + 2 + 5 = 36.
    assert_eq!(actual.len(), 36);

    // The fall-back hour happens twice and is one hourly period: in the full history the
    // hourly rule sees 02:00 CEST and 02:00 CET as the same hour.
    let fall_back = [
        good("cest", "2026-10-25T00:00:00Z"),
        good("cet", "2026-10-25T01:00:00Z"),
    ];
    let decisions = apply(
        &fall_back,
        &Retention {
            keep_hourly: Some(2),
            ..Retention::default()
        },
        tz,
        t("2026-10-25T02:00:00Z"),
    );
    assert_eq!(kept(&decisions), ["cet"]);
    assert_eq!(
        reasons(&decisions, "cet"),
        [NEWEST_SUCCESSFUL, "hourly 2026-10-25T02:00"]
    );
    // And the spring-forward day is a day of 23 archives, all in one daily period.
    let day = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
    let on_day = history
        .iter()
        .filter(|c| c.time.with_timezone(&tz).date_naive() == day)
        .count();
    assert_eq!(on_day, 23);
}

/// xorshift64: enough randomness for property tests, and reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn count(&mut self) -> Option<u32> {
        match self.below(4) {
            0 => None,
            _ => Some(self.below(11) as u32),
        }
    }
}

struct Case {
    candidates: Vec<Candidate>,
    rules: Retention,
    tz: Tz,
    now: DateTime<Utc>,
}

fn random_case(rng: &mut Rng) -> Case {
    let base = t("2025-01-01T00:00:00Z");
    let span = 3 * 365 * 86_400;
    let n = rng.below(40) as usize;
    let candidates = (0..n)
        .map(|i| {
            // A quarter on a coarse grid, so equal times and shared periods are common.
            let secs = match rng.below(4) {
                0 => rng.below(span / 21_600) * 21_600,
                _ => rng.below(span),
            };
            let health = match rng.below(10) {
                0 => Health::Partial,
                1 => Health::Failed,
                2 => Health::Corrupt,
                3 => Health::Missing,
                _ => Health::Good,
            };
            Candidate {
                // Ids unique, but in an order unrelated to the input order.
                id: format!("{:03}-{i:02}", rng.below(1000)),
                time: base + TimeDelta::seconds(secs as i64),
                health,
            }
        })
        .collect();
    // `now` anywhere in the span and a bit past it, so some archives are in the future.
    let now = base + TimeDelta::seconds(rng.below(span + span / 10) as i64);
    let rules = if rng.below(10) == 0 {
        Retention::default()
    } else {
        Retention {
            keep_last: rng.count(),
            keep_hourly: rng.count(),
            keep_daily: rng.count(),
            keep_weekly: rng.count(),
            keep_monthly: rng.count(),
            keep_yearly: rng.count(),
            keep_within: match rng.below(3) {
                0 => Some(HumanDuration::from_secs(rng.below(400 * 86_400))),
                _ => None,
            },
            dry_run: false,
        }
    };
    let tz = [Tz::UTC, berlin(), chrono_tz::America::New_York][rng.below(3) as usize];
    Case {
        candidates,
        rules,
        tz,
        now,
    }
}

/// Every rule that is set, one at a time, made to keep more. An unset rule is not widened:
/// setting the first rule turns retention on, which is meant to forget.
fn widenings(rules: &Retention, rng: &mut Rng) -> Vec<Retention> {
    let mut out = Vec::new();
    let counts: [fn(&mut Retention) -> &mut Option<u32>; 6] = [
        |r| &mut r.keep_last,
        |r| &mut r.keep_hourly,
        |r| &mut r.keep_daily,
        |r| &mut r.keep_weekly,
        |r| &mut r.keep_monthly,
        |r| &mut r.keep_yearly,
    ];
    for field in counts {
        let mut wider = rules.clone();
        if let Some(n) = field(&mut wider) {
            *n += 1;
            out.push(wider);
        }
    }
    if let Some(within) = rules.keep_within {
        let mut wider = rules.clone();
        let more = std::time::Duration::from_secs(1 + rng.below(30 * 86_400));
        wider.keep_within = Some(HumanDuration(within.as_duration() + more));
        out.push(wider);
    }
    out
}

fn kept_set(decisions: &[Decision]) -> BTreeSet<&str> {
    kept(decisions).into_iter().collect()
}

#[test]
fn properties_hold_for_random_cases() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for case_no in 0..1000 {
        let Case {
            candidates,
            rules,
            tz,
            now,
        } = random_case(&mut rng);
        let context = || format!("case {case_no}: {rules:?} {tz} now {now} {candidates:#?}");
        let decisions = apply(&candidates, &rules, tz, now);

        // One decision per candidate, in the input order, each with a reason.
        assert_eq!(decisions.len(), candidates.len(), "{}", context());
        for (c, d) in candidates.iter().zip(&decisions) {
            assert_eq!(c.id, d.id, "{}", context());
            assert!(!d.reasons.is_empty(), "{}", context());
            assert!(d.keep || d.reasons.len() == 1, "{}", context());
        }

        // The newest good archive is always kept, and the newest not from the future
        // is the one called the newest successful.
        let newest_good = candidates
            .iter()
            .zip(&decisions)
            .filter(|(c, _)| c.health == Health::Good)
            .max_by(|(a, _), (b, _)| newer_first(b, a));
        if let Some((_, d)) = newest_good {
            assert!(d.keep, "{}", context());
        }
        let newest_past = candidates
            .iter()
            .zip(&decisions)
            .filter(|(c, _)| c.health == Health::Good && c.time <= now)
            .max_by(|(a, _), (b, _)| newer_first(b, a));
        if let Some((_, d)) = newest_past {
            assert_eq!(d.reasons[0], NEWEST_SUCCESSFUL, "{}", context());
        }

        // Nothing but good archives is kept, except as documented.
        let newest_good_time = newest_good.map(|(c, _)| c.time);
        let no_rules = rules == Retention::default();
        for (c, d) in candidates.iter().zip(&decisions) {
            let allowed = match c.health {
                Health::Good => true,
                Health::Partial => no_rules || newest_good_time.is_none_or(|t| c.time > t),
                Health::Failed | Health::Corrupt | Health::Missing => false,
            };
            assert!(!d.keep || allowed, "{}: {d:?}", context());
            if c.health == Health::Good && c.time > now {
                // Set aside from the rules: only retention being off adds a reason.
                let expected: &[&str] = if no_rules {
                    &[NEWER_THAN_NOW, NO_RULES]
                } else {
                    &[NEWER_THAN_NOW]
                };
                assert_eq!(d.reasons, expected, "{}", context());
            }
        }

        // The counted rules keep at most what they say.
        if !no_rules && rules.keep_within.is_none() {
            let limit = 1 + [
                rules.keep_last,
                rules.keep_hourly,
                rules.keep_daily,
                rules.keep_weekly,
                rules.keep_monthly,
                rules.keep_yearly,
            ]
            .iter()
            .map(|n| n.unwrap_or(0) as usize)
            .sum::<usize>();
            let kept_past_good = candidates
                .iter()
                .zip(&decisions)
                .filter(|(c, d)| d.keep && c.health == Health::Good && c.time <= now)
                .count();
            assert!(kept_past_good <= limit, "{}", context());
        }

        // Idempotent: applied to what it kept, it keeps all of it, for the same reasons.
        let survivors: Vec<Candidate> = candidates
            .iter()
            .zip(&decisions)
            .filter(|(_, d)| d.keep)
            .map(|(c, _)| c.clone())
            .collect();
        let again = apply(&survivors, &rules, tz, now);
        let first: Vec<&Decision> = decisions.iter().filter(|d| d.keep).collect();
        assert_eq!(again.iter().collect::<Vec<_>>(), first, "{}", context());

        // Widening any one rule never forgets what was kept.
        let before = kept_set(&decisions);
        for wider in widenings(&rules, &mut rng) {
            let widened = apply(&candidates, &wider, tz, now);
            let after = kept_set(&widened);
            assert!(
                before.is_subset(&after),
                "{}\nwidened to {wider:?}: lost {:?}",
                context(),
                before.difference(&after).collect::<Vec<_>>()
            );
        }

        // The input order does not matter (ids are unique here).
        let mut shuffled = candidates.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let by_id = |ds: Vec<Decision>| -> BTreeMap<String, Decision> {
            ds.into_iter().map(|d| (d.id.clone(), d)).collect()
        };
        assert_eq!(
            by_id(apply(&shuffled, &rules, tz, now)),
            by_id(decisions),
            "{}",
            context()
        );
    }
}
