use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, Timelike, Weekday};
use serde_json::json;

use super::*;
use crate::spec::CronSchedule;

fn t(text: &str) -> DateTime<Utc> {
    text.parse()
        .unwrap_or_else(|e| panic!("bad test time {text}: {e}"))
}

fn policy(schedule: &str, timezone: Option<&str>, jitter: Option<&str>) -> BackupPolicySpec {
    let mut spec = json!({"schedule": schedule, "targets": {"stacks": ["app"]}});
    if let Some(tz) = timezone {
        spec["timezone"] = json!(tz);
    }
    if let Some(jitter) = jitter {
        spec["jitter"] = json!(jitter);
    }
    serde_json::from_value(spec).unwrap()
}

fn schedule(expr: &str, timezone: &str) -> Schedule {
    Schedule::new("test", &policy(expr, Some(timezone), None)).unwrap()
}

/// Every nominal time in `(from, to]`.
fn nominals(schedule: &Schedule, from: &str, to: &str) -> Vec<DateTime<Utc>> {
    let (mut at, to) = (t(from), t(to));
    let mut out = Vec::new();
    while let Some(next) = schedule.next_nominal_after(at).filter(|n| *n <= to) {
        out.push(next);
        at = next;
    }
    out
}

fn times(texts: &[&str]) -> Vec<DateTime<Utc>> {
    texts.iter().map(|s| t(s)).collect()
}

#[test]
fn daily_times_across_dst_changes() {
    let cases = [
        (
            "UTC daily",
            "0 3 * * *",
            "UTC",
            "2026-11-24T12:00:00Z",
            "2026-11-27T12:00:00Z",
            &[
                "2026-11-25T03:00:00Z",
                "2026-11-26T03:00:00Z",
                "2026-11-27T03:00:00Z",
            ][..],
        ),
        (
            // 02:30 does not exist on 2026-03-29: the run happens once, at 03:00 CEST.
            "Berlin spring forward",
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-27T12:00:00Z",
            "2026-03-30T12:00:00Z",
            &[
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z",
            ][..],
        ),
        (
            // 02:30 happens twice on 2026-10-25 (CEST, then CET): only the first runs.
            "Berlin fall back",
            "30 2 * * *",
            "Europe/Berlin",
            "2026-10-23T12:00:00Z",
            "2026-10-26T12:00:00Z",
            &[
                "2026-10-24T00:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z",
            ][..],
        ),
        (
            "New York spring forward",
            "30 2 * * *",
            "America/New_York",
            "2026-03-06T12:00:00Z",
            "2026-03-09T12:00:00Z",
            &[
                "2026-03-07T07:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-09T06:30:00Z",
            ][..],
        ),
        (
            // New York repeats 01:00-02:00, so 01:30 is the doubled time there.
            "New York fall back",
            "30 1 * * *",
            "America/New_York",
            "2026-10-30T12:00:00Z",
            "2026-11-02T12:00:00Z",
            &[
                "2026-10-31T05:30:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-02T06:30:00Z",
            ][..],
        ),
        (
            "New York 02:30 on the fall-back day exists once",
            "30 2 * * *",
            "America/New_York",
            "2026-10-30T12:00:00Z",
            "2026-11-02T12:00:00Z",
            &[
                "2026-10-31T06:30:00Z",
                "2026-11-01T07:30:00Z",
                "2026-11-02T07:30:00Z",
            ][..],
        ),
        (
            // croner alone treats a list of hours as an interval job: it would skip the
            // 02:30 run on the spring-forward day and run it twice on the fall-back day.
            "Berlin list of hours, spring",
            "30 2,14 * * *",
            "Europe/Berlin",
            "2026-03-28T12:00:00Z",
            "2026-03-29T23:00:00Z",
            &[
                "2026-03-28T13:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T12:30:00Z",
            ][..],
        ),
        (
            "Berlin list of hours, fall",
            "30 2,14 * * *",
            "Europe/Berlin",
            "2026-10-24T14:00:00Z",
            "2026-10-25T23:00:00Z",
            &["2026-10-25T00:30:00Z", "2026-10-25T13:30:00Z"][..],
        ),
        (
            // Two times inside one gap are one run, as soon as the time exists.
            "Berlin two times in the gap",
            "0,30 2 * * *",
            "Europe/Berlin",
            "2026-03-28T12:00:00Z",
            "2026-03-29T23:00:00Z",
            &["2026-03-29T01:00:00Z"][..],
        ),
        (
            // Interval jobs follow real time: the doubled hour runs twice.
            "Berlin every 30 minutes through fall back",
            "*/30 * * * *",
            "Europe/Berlin",
            "2026-10-24T23:45:00Z",
            "2026-10-25T01:45:00Z",
            &[
                "2026-10-25T00:00:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T01:30:00Z",
            ][..],
        ),
    ];
    for (name, expr, tz, from, to, want) in cases {
        assert_eq!(
            nominals(&schedule(expr, tz), from, to),
            times(want),
            "{name}"
        );
    }
}

#[test]
fn spring_forward_run_is_at_the_first_local_instant_after_the_gap() {
    let s = schedule("30 2 * * *", "Europe/Berlin");
    let run = s.next_nominal_after(t("2026-03-28T12:00:00Z")).unwrap();
    let local = run.with_timezone(&s.timezone());
    assert_eq!((local.hour(), local.minute()), (3, 0), "{local}");
}

#[test]
fn hourly_runs_every_real_hour_across_dst() {
    for (tz, spring_day, fall_day) in [
        ("Europe/Berlin", "2026-03-29", "2026-10-25"),
        ("America/New_York", "2026-03-08", "2026-11-01"),
    ] {
        let s = schedule("0 * * * *", tz);
        let zone = s.timezone();
        for day in [spring_day, fall_day] {
            let day: NaiveDate = day.parse().unwrap();
            let from = format!("{}T00:00:00Z", day - TimeDelta::days(2));
            let to = format!("{}T00:00:00Z", day + TimeDelta::days(3));
            let runs = nominals(&s, &from, &to);
            for pair in runs.windows(2) {
                assert_eq!(pair[1] - pair[0], TimeDelta::hours(1), "{tz}: {pair:?}");
            }
            let mut per_utc_day = BTreeMap::<NaiveDate, usize>::new();
            let mut per_local_day = BTreeMap::<NaiveDate, usize>::new();
            for run in &runs {
                *per_utc_day.entry(run.date_naive()).or_default() += 1;
                *per_local_day
                    .entry(run.with_timezone(&zone).date_naive())
                    .or_default() += 1;
            }
            // `(from, to]` holds 24 hours a day, except that `from` itself is excluded
            // and `to` included.
            for (utc_day, count) in &per_utc_day {
                let want = if *utc_day == t(&to).date_naive() {
                    1
                } else {
                    24
                };
                let want = if *utc_day == t(&from).date_naive() {
                    23
                } else {
                    want
                };
                assert_eq!(*count, want, "{tz}: UTC day {utc_day}");
            }
            let want = if day.month() == 3 { 23 } else { 25 };
            assert_eq!(per_local_day[&day], want, "{tz}: local day {day}");
        }
    }
}

#[test]
fn calendar_patterns() {
    let cases = [
        (
            "0 3 31 * *",
            "2026-01-01T00:00:00Z",
            "2026-12-31T23:00:00Z",
            &[
                "2026-01-31T03:00:00Z",
                "2026-03-31T03:00:00Z",
                "2026-05-31T03:00:00Z",
                "2026-07-31T03:00:00Z",
                "2026-08-31T03:00:00Z",
                "2026-10-31T03:00:00Z",
                "2026-12-31T03:00:00Z",
            ][..],
        ),
        (
            "@monthly",
            "2026-01-15T00:00:00Z",
            "2026-05-15T00:00:00Z",
            &[
                "2026-02-01T00:00:00Z",
                "2026-03-01T00:00:00Z",
                "2026-04-01T00:00:00Z",
                "2026-05-01T00:00:00Z",
            ][..],
        ),
        (
            "0 3 29 2 *",
            "2026-01-01T00:00:00Z",
            "2033-01-01T00:00:00Z",
            &["2028-02-29T03:00:00Z", "2032-02-29T03:00:00Z"][..],
        ),
        (
            // 2026-11-25 is a Wednesday.
            "0 3 * * 1",
            "2026-11-25T12:00:00Z",
            "2026-12-15T00:00:00Z",
            &[
                "2026-11-30T03:00:00Z",
                "2026-12-07T03:00:00Z",
                "2026-12-14T03:00:00Z",
            ][..],
        ),
    ];
    for (expr, from, to, want) in cases {
        let runs = nominals(&schedule(expr, "UTC"), from, to);
        assert_eq!(runs, times(want), "{expr}");
    }
    let mondays = nominals(
        &schedule("0 3 * * 1", "Europe/Berlin"),
        "2026-01-01T00:00:00Z",
        "2027-01-01T00:00:00Z",
    );
    assert_eq!(mondays.len(), 52);
    assert!(mondays.iter().all(|m| m.weekday() == Weekday::Mon));
}

#[test]
fn a_cron_that_never_matches_has_no_next_time() {
    let s = schedule("0 3 30 2 *", "Europe/Berlin");
    assert_eq!(s.next_nominal_after(t("2026-01-01T00:00:00Z")), None);
    let d = decide(
        &s,
        false,
        None,
        t("2026-01-01T00:00:00Z"),
        None,
        t("2026-06-01T00:00:00Z"),
    );
    assert_eq!(d, Decision::Never);
}

#[test]
fn last_nominal_mirrors_next_nominal() {
    for (expr, tz) in [
        ("0 * * * *", "Europe/Berlin"),
        ("*/20 * * * *", "America/New_York"),
        ("30 2 * * *", "Europe/Berlin"),
        ("30 1,2 * * *", "America/New_York"),
    ] {
        let s = schedule(expr, tz);
        for (from, to) in [
            ("2026-03-26T00:00:00Z", "2026-04-01T00:00:00Z"),
            ("2026-10-23T00:00:00Z", "2026-11-03T00:00:00Z"),
        ] {
            let runs = nominals(&s, from, to);
            assert!(runs.len() > 5, "{expr} {tz}");
            for pair in runs.windows(2) {
                let (prev, run) = (pair[0], pair[1]);
                assert_eq!(s.last_nominal_at_or_before(run), Some(run), "{expr} {tz}");
                let just_before = run - TimeDelta::nanoseconds(1);
                assert_eq!(s.last_nominal_at_or_before(just_before), Some(prev));
                assert_eq!(s.next_nominal_after(just_before), Some(run));
            }
        }
    }
}

#[test]
fn jitter_offset_is_stable_bounded_and_spread() {
    let ten_minutes = Duration::from_secs(600);
    let compile = |name: &str, jitter: Option<&str>| {
        Schedule::new(name, &policy("0 3 * * *", None, jitter)).unwrap()
    };

    let a = compile("nextcloud-nightly", Some("10m"));
    assert_eq!(
        a.jitter_offset(),
        compile("nextcloud-nightly", Some("10m")).jitter_offset()
    );
    // Pinned: the offset must not change between releases or restarts, or a policy's runs
    // would move.
    assert_eq!(
        a.jitter_offset(),
        jitter_offset_for("nextcloud-nightly", ten_minutes)
    );
    assert_eq!(
        a.jitter_offset(),
        Duration::from_millis(PINNED_NEXTCLOUD_NIGHTLY_MS)
    );
    assert_eq!(
        a.start_time(t("2026-05-01T03:00:00Z")),
        t("2026-05-01T03:00:00Z") + TimeDelta::from_std(a.jitter_offset()).unwrap()
    );

    assert_eq!(
        compile("nextcloud-nightly", None).jitter_offset(),
        Duration::ZERO
    );
    assert_eq!(compile("x", Some("0s")).jitter_offset(), Duration::ZERO);

    let offsets: Vec<Duration> = (0..100)
        .map(|i| compile(&format!("policy-{i}"), Some("10m")).jitter_offset())
        .collect();
    assert!(offsets.iter().all(|o| *o < ten_minutes));
    let min = offsets.iter().min().unwrap();
    let max = offsets.iter().max().unwrap();
    assert!(*min < Duration::from_secs(60), "min {min:?}");
    assert!(*max > Duration::from_secs(540), "max {max:?}");
    let mut distinct = offsets.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() >= 99, "names should get different offsets");
}

const PINNED_NEXTCLOUD_NIGHTLY_MS: u64 = 527_179;

#[test]
fn decide_table() {
    struct Case {
        name: &'static str,
        last: Option<&'static str>,
        first_seen: &'static str,
        deadline: Option<u64>,
        now: &'static str,
        want: Decision,
    }
    let run = |nominal: &str, catch_up| Decision::RunNow {
        nominal: t(nominal),
        catch_up,
    };
    let wait = |nominal: &str| Decision::WaitUntil {
        at: t(nominal),
        nominal: t(nominal),
    };
    let long_ago = "2026-01-01T00:00:00Z";
    let cases = [
        Case {
            name: "brand-new policy does not catch up times before it existed",
            last: None,
            first_seen: "2026-05-01T10:00:00Z",
            deadline: Some(48 * 3600),
            now: "2026-05-01T10:00:00Z",
            want: wait("2026-05-02T03:00:00Z"),
        },
        Case {
            name: "brand-new policy seen exactly at a nominal time runs it",
            last: None,
            first_seen: "2026-05-01T03:00:00Z",
            deadline: None,
            now: "2026-05-01T03:00:00Z",
            want: run("2026-05-01T03:00:00Z", false),
        },
        Case {
            name: "brand-new policy waits for its first time",
            last: None,
            first_seen: "2026-05-01T01:00:00Z",
            deadline: None,
            now: "2026-05-01T02:59:59.999Z",
            want: wait("2026-05-01T03:00:00Z"),
        },
        Case {
            name: "on time",
            last: Some("2026-04-30T03:00:00Z"),
            first_seen: long_ago,
            deadline: None,
            now: "2026-05-01T03:00:00Z",
            want: run("2026-05-01T03:00:00Z", false),
        },
        Case {
            name: "woke 30 ms late",
            last: Some("2026-04-30T03:00:00Z"),
            first_seen: long_ago,
            deadline: None,
            now: "2026-05-01T03:00:00.030Z",
            want: run("2026-05-01T03:00:00Z", false),
        },
        Case {
            name: "woke 2 minutes late without a deadline: skipped",
            last: Some("2026-04-30T03:00:00Z"),
            first_seen: long_ago,
            deadline: None,
            now: "2026-05-01T03:02:00Z",
            want: wait("2026-05-02T03:00:00Z"),
        },
        Case {
            name: "woke 2 minutes late with a deadline: caught up",
            last: Some("2026-04-30T03:00:00Z"),
            first_seen: long_ago,
            deadline: Some(6 * 3600),
            now: "2026-05-01T03:02:00Z",
            want: run("2026-05-01T03:00:00Z", true),
        },
        Case {
            name: "a deadline under the tolerance still lets a timer be late",
            last: Some("2026-04-30T03:00:00Z"),
            first_seen: long_ago,
            deadline: Some(10),
            now: "2026-05-01T03:00:30Z",
            want: run("2026-05-01T03:00:00Z", false),
        },
        Case {
            name: "down 3 days, back within the deadline: the latest missed run once",
            last: Some("2026-04-28T03:00:00Z"),
            first_seen: long_ago,
            deadline: Some(6 * 3600),
            now: "2026-05-01T05:00:00Z",
            want: run("2026-05-01T03:00:00Z", true),
        },
        Case {
            name: "down 3 days, back after the deadline: skip to the next",
            last: Some("2026-04-28T03:00:00Z"),
            first_seen: long_ago,
            deadline: Some(6 * 3600),
            now: "2026-05-01T10:00:00Z",
            want: wait("2026-05-02T03:00:00Z"),
        },
        Case {
            name: "down 3 days, back before today's time: yesterday's is too old",
            last: Some("2026-04-28T03:00:00Z"),
            first_seen: long_ago,
            deadline: Some(6 * 3600),
            now: "2026-05-01T02:00:00Z",
            want: wait("2026-05-01T03:00:00Z"),
        },
        Case {
            name: "down 3 days, a long deadline catches up only the latest",
            last: Some("2026-04-28T03:00:00Z"),
            first_seen: long_ago,
            deadline: Some(24 * 3600),
            now: "2026-05-01T02:00:00Z",
            want: run("2026-04-30T03:00:00Z", true),
        },
        Case {
            name: "just after a run: wait for the next",
            last: Some("2026-05-01T03:00:00Z"),
            first_seen: long_ago,
            deadline: Some(6 * 3600),
            now: "2026-05-01T03:00:00.010Z",
            want: wait("2026-05-02T03:00:00Z"),
        },
    ];
    let s = schedule("0 3 * * *", "UTC");
    for case in cases {
        let got = decide(
            &s,
            false,
            case.last.map(t),
            t(case.first_seen),
            case.deadline.map(Duration::from_secs),
            t(case.now),
        );
        assert_eq!(got, case.want, "{}", case.name);
    }
}

#[test]
fn suspended_never_runs() {
    let s = schedule("* * * * *", "UTC");
    let now = t("2026-05-01T03:00:00Z");
    assert_eq!(decide(&s, true, None, now, None, now), Decision::Never);
    assert_eq!(
        decide(
            &s,
            true,
            Some(now),
            now,
            Some(Duration::from_secs(3600)),
            now
        ),
        Decision::Never
    );
}

#[test]
fn never_runs_a_nominal_time_again_after_it_started() {
    let s = schedule("0 3 * * *", "Europe/Berlin");
    let last = t("2026-05-01T01:00:00Z");
    let mut now = last - TimeDelta::hours(1);
    while now < last + TimeDelta::days(3) {
        let d = decide(
            &s,
            false,
            Some(last),
            t("2026-01-01T00:00:00Z"),
            Some(Duration::from_secs(86_400)),
            now,
        );
        if let Decision::RunNow { nominal, .. } = d {
            assert!(nominal > last, "{now}: {d:?}");
        }
        now += TimeDelta::minutes(7);
    }
}

#[test]
fn jitter_delays_the_start() {
    let s = Schedule::new("nextcloud-nightly", &policy("0 3 * * *", None, Some("10m"))).unwrap();
    let offset = TimeDelta::from_std(s.jitter_offset()).unwrap();
    assert!(offset > TimeDelta::zero());
    let nominal = t("2026-05-01T03:00:00Z");
    let decide_at = |now| {
        decide(
            &s,
            false,
            Some(t("2026-04-30T03:00:00Z")),
            t("2026-01-01T00:00:00Z"),
            None,
            now,
        )
    };
    assert_eq!(
        decide_at(nominal),
        Decision::WaitUntil {
            at: nominal + offset,
            nominal
        }
    );
    assert_eq!(
        decide_at(nominal + offset - TimeDelta::milliseconds(1)),
        Decision::WaitUntil {
            at: nominal + offset,
            nominal
        }
    );
    assert_eq!(
        decide_at(nominal + offset),
        Decision::RunNow {
            nominal,
            catch_up: false
        }
    );
    // The lateness that counts is from the start time, not the nominal time.
    assert_eq!(
        decide_at(nominal + offset + TimeDelta::seconds(59)),
        Decision::RunNow {
            nominal,
            catch_up: false
        }
    );
}

/// Steps a manual clock from `start` to `end`, jumping to every wake-up time (sometimes a
/// second or a few milliseconds late) and "running" at every `RunNow`; returns the runs.
fn simulate(s: &Schedule, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut now = start;
    let mut last: Option<DateTime<Utc>> = None;
    let mut runs = Vec::new();
    let mut wakes = 0_u64;
    while now < end {
        match decide(s, false, last, start, None, now) {
            Decision::RunNow { nominal, catch_up } => {
                assert!(!catch_up, "{now}: nothing was missed");
                assert!(
                    last.is_none_or(|l| nominal > l),
                    "{now}: {nominal} ran twice"
                );
                last = Some(nominal);
                runs.push(nominal);
            }
            Decision::WaitUntil { at, nominal } => {
                assert!(at > now, "{now}: waiting for the past");
                assert_eq!(at, s.start_time(nominal));
                wakes += 1;
                now = match wakes % 7 {
                    0 => at + TimeDelta::seconds(1),
                    3 => at + TimeDelta::milliseconds(30),
                    _ => at,
                };
            }
            Decision::Never => panic!("{now}: the schedule always has a next time"),
        }
    }
    runs
}

/// Two years of an hourly Berlin policy with jitter: every UTC hour runs exactly once, in
/// order, through four DST changes.
#[test]
fn simulation_two_years_hourly_in_berlin() {
    let s = Schedule::new(
        "sim",
        &policy("0 * * * *", Some("Europe/Berlin"), Some("10m")),
    )
    .unwrap();
    let (start, end) = (t("2026-01-01T00:00:00Z"), t("2028-01-01T00:00:00Z"));
    let runs = simulate(&s, start, end);
    assert_eq!(runs.len() as i64, (end - start).num_hours());
    assert_eq!(runs.first(), Some(&start));
    for pair in runs.windows(2) {
        assert_eq!(pair[1] - pair[0], TimeDelta::hours(1), "{pair:?}");
    }
}

/// Two years of a daily 02:30 Berlin policy: one run per local day, at 02:30, or at 03:00
/// on the spring-forward days.
#[test]
fn simulation_two_years_daily_in_berlin() {
    let s = Schedule::new(
        "sim",
        &policy("30 2 * * *", Some("Europe/Berlin"), Some("10m")),
    )
    .unwrap();
    let (start, end) = (t("2026-01-01T00:00:00Z"), t("2028-01-01T00:00:00Z"));
    let runs = simulate(&s, start, end);
    assert_eq!(runs.len(), 730);
    let zone = s.timezone();
    let mut days = runs
        .iter()
        .map(|r| r.with_timezone(&zone).date_naive())
        .collect::<Vec<_>>();
    days.dedup();
    assert_eq!(days.len(), 730, "one run per local day");
    let at_three: Vec<String> = runs
        .iter()
        .map(|r| r.with_timezone(&zone))
        .filter(|l| (l.hour(), l.minute()) != (2, 30))
        .map(|l| l.to_rfc3339())
        .collect();
    assert_eq!(
        at_three,
        ["2026-03-29T03:00:00+02:00", "2027-03-28T03:00:00+02:00"]
    );
}

/// Why holdfast maps wall-clock matches to instants itself: croner's own DST rules count
/// `30 2,14 * * *` as an interval job. If this starts failing after a croner upgrade, the
/// module docs' note on croner needs revisiting (holdfast's results do not change).
#[test]
fn croner_alone_treats_a_list_of_hours_as_an_interval_job() {
    let cron = CronSchedule("30 2,14 * * *".into()).parse().unwrap();
    let zone: Tz = "Europe/Berlin".parse().unwrap();
    let walk = |from: &str, count: usize| {
        let mut at = t(from).with_timezone(&zone);
        (0..count)
            .map(|_| {
                at = cron.find_next_occurrence(&at, false).unwrap();
                at.to_utc()
            })
            .collect::<Vec<_>>()
    };
    // Spring forward: 02:30 on 2026-03-29 is skipped, not moved to 03:00.
    assert_eq!(
        walk("2026-03-28T12:00:00Z", 2),
        times(&["2026-03-28T13:30:00Z", "2026-03-29T12:30:00Z"])
    );
    // Fall back: 02:30 runs twice.
    assert_eq!(
        walk("2026-10-24T14:00:00Z", 2),
        times(&["2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"])
    );
}
