//! `GET /api/v1/hosts`: every host whose daemon writes this daemon's repository (or, with
//! `?repository=NAME`, a Repository spec's: the shared bucket of a fleet), from the
//! summaries they publish there ([`crate::repo::hosts`]), as `holdfast get hosts` shows
//! them. Read at request time (off the async threads): the summaries are small and the
//! answer is then as fresh as the repository.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::reply::{ApiQuery, error, json};
use super::routes::{Body, Route};
use crate::repo::hosts::HostRow;

#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hosts {
    pub generated_at: DateTime<Utc>,
    /// Every host with a summary in the repository, by name.
    pub hosts: Vec<HostRow>,
}

pub fn routes() -> Vec<Route> {
    vec![Route {
        path: "/api/v1/hosts",
        operation_id: "hosts",
        summary: "Every host sharing this daemon's repository, from the summaries their daemons publish there: last seen, objects, failing, next run, and ok, stale or failing.",
        description: None,
        params: vec![super::routes::query_param(
            "repository",
            "`default` (the --repository folder, when not given) or a Repository spec's name: the summaries are read from there.",
            serde_json::json!({"type": "string"}),
        )],
        body: Body::Json(|g| g.subschema_for::<Hosts>()),
        errors: &[404, 503],
        unavailable_same_body: false,
        handler: get(hosts),
    }]
}

#[derive(Deserialize)]
struct HostsQuery {
    repository: Option<String>,
}

async fn hosts(State(app): State<AppState>, ApiQuery(q): ApiQuery<HostsQuery>) -> Response {
    let name = q
        .repository
        .unwrap_or_else(|| crate::spec::repository::DEFAULT_REPOSITORY.to_string());
    let repository = match super::backups::repository(&app, &name) {
        Ok(repository) => repository,
        Err(failure) => return axum::response::IntoResponse::into_response(failure),
    };
    let read = tokio::task::spawn_blocking(move || {
        let now = Utc::now();
        crate::repo::hosts::rows(&repository, now).map(|hosts| Hosts {
            generated_at: now,
            hosts,
        })
    })
    .await;
    match read {
        Ok(Ok(hosts)) => match serde_json::to_vec(&hosts) {
            Ok(body) => json(StatusCode::OK, body.into()),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        Ok(Err(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the repository cannot be read now: {e}"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
