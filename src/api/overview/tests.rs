use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::spec::common::Phase;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn glance(name: &str, since: &str, interval: f64, suspended: bool) -> Glance {
    Glance {
        kind: "BackupPolicy".to_string(),
        name: name.to_string(),
        fresh_since: Some(at(since)),
        interval_seconds: Some(interval),
        suspended,
        ..Default::default()
    }
}

fn run(name: &str, id: &str, start: &str, seconds: i64, phase: Phase) -> RunRecord {
    RunRecord {
        id: id.to_string(),
        kind: "BackupPolicy".to_string(),
        name: name.to_string(),
        archive_id: None,
        phase,
        start_time: at(start),
        completion_time: Some(at(start) + TimeDelta::seconds(seconds)),
        bytes: 1000,
        source_bytes: None,
        downtime_seconds: 0.5,
        error: None,
        dry_run: false,
        warnings: vec![],
        repository: None,
        copies: vec![],
    }
}

#[test]
fn late_follows_the_alert_rule() {
    let now = at("2026-12-07T12:00:00Z");
    let day = 86400.0;
    // Fresh 30 h ago on a daily schedule: not late; 37 h: late (1.5 times 24 h is 36 h).
    assert!(!late(&glance("a", "2026-12-06T06:00:00Z", day, false), now));
    assert!(late(&glance("b", "2026-12-05T23:00:00Z", day, false), now));
    // Suspended on purpose, or without a schedule: never late.
    assert!(!late(&glance("c", "2026-11-01T00:00:00Z", day, true), now));
    let mut unscheduled = glance("d", "2026-11-01T00:00:00Z", day, false);
    unscheduled.interval_seconds = None;
    assert!(!late(&unscheduled, now));
    let snapshot = Snapshot {
        loaded: true,
        glances: vec![glance("b", "2026-12-05T23:00:00Z", day, false)],
        spec_errors: vec!["bad.yaml:3:5: BackupPolicy/x: spec.schedule: not a cron".into()],
        ..Default::default()
    };
    let overview = build(&snapshot, &[], &[], now);
    assert!(overview.objects[0].late);
    assert_eq!(overview.errors.len(), 1);
    let json = serde_json::to_value(&overview).unwrap();
    assert_eq!(json["objects"][0]["name"], "b", "{json}");
    assert_eq!(json["objects"][0]["late"], true, "{json}");
}

#[test]
fn trends_are_per_object_and_repositories_count_good_archives() {
    let snapshot = Snapshot {
        loaded: true,
        glances: vec![
            glance("a", "2026-12-06T02:00:00Z", 86400.0, false),
            glance("b", "2026-12-06T02:00:00Z", 86400.0, false),
        ],
        ..Default::default()
    };
    let runs = [
        run("a", "a2", "2026-12-07T02:00:00Z", 30, Phase::Failed),
        run("a", "a1", "2026-12-06T02:00:00Z", 20, Phase::Succeeded),
        run("b", "b1", "2026-12-06T03:00:00Z", 5, Phase::Succeeded),
    ];
    let entry = |group: &str, id: &str, bytes, health| crate::repo::Entry {
        id: id.to_string(),
        repository: "default".to_string(),
        group: group.to_string(),
        kind: Some("BackupPolicy".into()),
        policy: Some(group.to_string()),
        host: String::new(),
        time: at("2026-12-06T02:00:00Z"),
        bytes,
        added_bytes: None,
        dedup_ratio: None,
        phase: None,
        health,
        problems: vec![],
        verified: None,
        path: Default::default(),
    };
    let catalog = [
        entry("a", "a-1", 100, crate::repo::Health::Good),
        entry("a", "a-2", 50, crate::repo::Health::Partial),
        entry("a", "a-3", 70, crate::repo::Health::Corrupt),
    ];
    let overview = build(&snapshot, &runs, &catalog, at("2026-12-07T12:00:00Z"));
    let a = &overview.objects[0];
    assert_eq!(
        a.trend
            .iter()
            .map(|p| p.run_id.as_str())
            .collect::<Vec<_>>(),
        ["a2", "a1"]
    );
    assert_eq!(a.trend[0].duration_seconds, Some(30.0));
    assert_eq!(overview.objects[1].trend.len(), 1);
    assert_eq!(overview.repositories.len(), 1);
    let repo = &overview.repositories[0];
    assert_eq!((repo.count, repo.bytes, repo.corrupt), (2, 150, 1));
}

#[test]
fn recent_runs_keep_the_newest_per_object() {
    let dir = tempfile::tempdir().unwrap();
    let state = crate::state::StateDb::open(dir.path()).unwrap();
    for day in 1..=5 {
        for name in ["a", "b"] {
            let r = run(
                name,
                &format!("{name}{day}"),
                &format!("2026-12-0{day}T02:00:00Z"),
                10,
                Phase::Succeeded,
            );
            state.insert_run(&r).unwrap();
        }
    }
    let runs = state.recent_runs(2).unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a5", "a4", "b5", "b4"]);
}
