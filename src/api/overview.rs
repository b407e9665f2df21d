//! `GET /api/v1/overview`: everything the dashboard's first page shows, in one answer.
//!
//! One row per object of every kind (Ready or not and why, freshness judged like the
//! HoldfastBackupLate alert, the next and last run, a trend of the newest runs), the
//! archives per repository and every spec error. Each pass computes the objects' glances
//! once; a request adds lateness at its time and one query of the run history, so 1,000
//! policies cost one request, not 1,000, and no parsing.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use super::AppState;
use super::reply::{error, json};
use super::routes::{Body, Route};
use crate::hub::{Glance, Snapshot};
use crate::state::RunRecord;

/// How many of each object's newest runs make its trend.
pub const TREND_RUNS: usize = 10;

/// How much later than its schedule's interval a backup may succeed before it is late:
/// the factor of the HoldfastBackupLate alert.
pub const LATE_FACTOR: f64 = 1.5;

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    pub generated_at: DateTime<Utc>,
    /// False until the daemon loaded the specs once.
    pub loaded: bool,
    /// Every validation error of the specs, `file:line:column: ...`.
    pub errors: Vec<String>,
    /// Every object, by kind then name.
    pub objects: Vec<Row>,
    /// Archives per repository and group, as the daemon's catalog has them.
    pub repositories: Vec<RepositoryRow>,
}

/// One object as the overview shows it: its glance, its lateness now and its trend.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    #[serde(flatten)]
    pub glance: Glance,
    /// No success within 1.5 times the schedule's interval, counted from the last success
    /// or, before any, from when holdfast first saw the object; never for a suspended one.
    pub late: bool,
    /// The newest runs, newest first.
    pub trend: Vec<Point>,
}

/// One run of a trend.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Point {
    pub run_id: String,
    pub phase: crate::spec::common::Phase,
    pub start_time: DateTime<Utc>,
    pub duration_seconds: Option<f64>,
    pub stored_bytes: u64,
    pub downtime_seconds: f64,
}

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryRow {
    pub repository: String,
    pub group: String,
    pub count: u64,
    pub bytes: u64,
    pub corrupt: u64,
}

pub fn routes() -> Vec<Route> {
    vec![Route {
        path: "/api/v1/overview",
        operation_id: "overview",
        summary: "Every object in one row (readiness, freshness, next and last run, a trend of its newest runs), archives per repository and the spec errors: the dashboard's first page.",
        description: None,
        params: vec![],
        body: Body::Json(|g| g.subschema_for::<Overview>()),
        errors: &[],
        unavailable_same_body: false,
        handler: get(overview),
    }]
}

async fn overview(State(app): State<AppState>) -> Response {
    let built = tokio::task::spawn_blocking(move || {
        let runs = app
            .state
            .recent_runs(TREND_RUNS)
            .map_err(|e| e.to_string())?;
        let catalog = app.hub.catalog();
        Ok::<_, String>(build(
            &app.hub.snapshot(),
            &runs,
            catalog.as_deref().map_or(&[][..], Vec::as_slice),
            Utc::now(),
        ))
    })
    .await;
    match built {
        // Not through `to_body`'s redaction walk: every free text of a glance (messages,
        // warnings, errors) was redacted when its pass computed it, and the rest is names,
        // ids, times and numbers. The walk would cost more than the whole answer.
        Ok(Ok(overview)) => match serde_json::to_vec(&overview) {
            Ok(body) => json(StatusCode::OK, body.into()),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The overview of `snapshot` at `now`; `runs` holds each object's newest runs, newest
/// first (as [`crate::state::StateDb::recent_runs`] gives them).
pub fn build(
    snapshot: &Snapshot,
    runs: &[RunRecord],
    catalog: &[crate::repo::Entry],
    now: DateTime<Utc>,
) -> Overview {
    let mut trends: BTreeMap<(&str, &str), Vec<Point>> = BTreeMap::new();
    for run in runs {
        trends
            .entry((run.kind.as_str(), run.name.as_str()))
            .or_default()
            .push(Point {
                run_id: run.id.clone(),
                phase: run.phase,
                start_time: run.start_time,
                duration_seconds: run
                    .completion_time
                    .map(|end| (end - run.start_time).num_milliseconds() as f64 / 1000.0),
                stored_bytes: run.bytes,
                downtime_seconds: run.downtime_seconds,
            });
    }
    let objects = snapshot
        .glances
        .iter()
        .map(|glance| Row {
            late: late(glance, now),
            trend: trends
                .remove(&(glance.kind.as_str(), glance.name.as_str()))
                .unwrap_or_default(),
            glance: glance.clone(),
        })
        .collect();
    let mut groups: BTreeMap<(&str, &str), RepositoryRow> = BTreeMap::new();
    for entry in catalog {
        let row = groups
            .entry((entry.repository.as_str(), entry.group.as_str()))
            .or_insert_with(|| RepositoryRow {
                repository: entry.repository.clone(),
                group: entry.group.clone(),
                count: 0,
                bytes: 0,
                corrupt: 0,
            });
        match entry.health {
            crate::repo::Health::Good | crate::repo::Health::Partial => {
                row.count += 1;
                row.bytes += entry.bytes;
            }
            crate::repo::Health::Corrupt => row.corrupt += 1,
            crate::repo::Health::Missing => {}
        }
    }
    Overview {
        generated_at: now,
        loaded: snapshot.loaded,
        errors: snapshot.spec_errors.clone(),
        objects,
        repositories: groups.into_values().collect(),
    }
}

/// Whether `glance` is late at `now`: the rule of the HoldfastBackupLate alert.
pub fn late(glance: &Glance, now: DateTime<Utc>) -> bool {
    match (glance.fresh_since, glance.interval_seconds) {
        (Some(since), Some(interval)) if !glance.suspended => {
            (now - since).num_milliseconds() as f64 / 1000.0 > LATE_FACTOR * interval
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
