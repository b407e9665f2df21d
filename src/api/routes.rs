//! Every route the server answers, in one table. The router and the OpenAPI document are
//! both built from [`routes`], so a route cannot exist without being documented.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use futures_util::Stream;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::reply::{ApiPath, ApiQuery, Failure, error, json};
use crate::hub::redact::to_body;
use crate::hub::{DEFAULT_PAGE, Event, MAX_PAGE};
use crate::spec::Kind;
use crate::spec::common::Phase;
use crate::state::{RunFilter, RunRecord};

/// Where a parameter goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
}

pub struct Param {
    pub name: &'static str,
    pub location: In,
    pub description: &'static str,
    /// A JSON Schema for the value.
    pub schema: serde_json::Value,
}

/// What a successful response carries.
pub enum Body {
    Json(fn(&mut SchemaGenerator) -> Schema),
    Text(&'static str),
    /// `text/event-stream`, whose `data` lines are JSON of this schema.
    EventStream(fn(&mut SchemaGenerator) -> Schema),
}

pub struct Route {
    /// The path, with `{name}` parameters (the same syntax in axum and OpenAPI).
    pub path: &'static str,
    pub operation_id: &'static str,
    pub summary: &'static str,
    /// More than the summary: where a route stands among the others.
    pub description: Option<&'static str>,
    pub params: Vec<Param>,
    pub body: Body,
    /// The error statuses it can answer besides 401 and 405, with `{"error": ...}`.
    pub errors: &'static [u16],
    /// It answers 503 with the same body as 200 (readiness: what is not ready).
    pub unavailable_same_body: bool,
    pub handler: MethodRouter<AppState>,
}

fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

fn path_param(name: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: In::Path,
        description,
        schema: serde_json::json!({"type": "string"}),
    }
}

pub(super) fn query_param(
    name: &'static str,
    description: &'static str,
    schema: serde_json::Value,
) -> Param {
    Param {
        name,
        location: In::Query,
        description,
        schema,
    }
}

fn page_params() -> Vec<Param> {
    vec![
        query_param(
            "limit",
            "How many objects at most (default 100).",
            serde_json::json!({"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
        ),
        query_param(
            "after",
            "Only objects whose name sorts after this one: the `next` of the previous page.",
            serde_json::json!({"type": "string"}),
        ),
    ]
}

/// Archive is a kind of spec (a one-off backup request); the archives it and the
/// policies wrote are listed elsewhere, and the names invite the confusion.
const ARCHIVE_SPECS_NOT_BACKUPS: &str = "Archive objects are specs: each asks for one backup outside any schedule, like a BackupPolicy asks for recurring ones. The backups in the repository (what these specs and the policies wrote) are listed under /api/v1/backups.";

fn catalog_name_param() -> Param {
    query_param(
        "name",
        "Only backups of this policy or Archive.",
        serde_json::json!({"type": "string"}),
    )
}

/// Every route of the server.
pub fn routes() -> Vec<Route> {
    let mut routes = vec![
        Route {
            path: "/healthz",
            operation_id: "healthz",
            summary: "The process is alive.",
            description: None,
            params: vec![],
            body: Body::Text("text/plain; charset=utf-8"),
            errors: &[],
            unavailable_same_body: false,
            handler: get(healthz),
        },
        Route {
            path: "/readyz",
            operation_id: "readyz",
            summary: "Specs loaded, Docker reachable, state database open (503 otherwise).",
            description: None,
            params: vec![],
            body: Body::Json(schema::<Readiness>),
            errors: &[],
            unavailable_same_body: true,
            handler: get(readyz),
        },
        Route {
            path: "/metrics",
            operation_id: "metrics",
            summary: "Prometheus metrics in the OpenMetrics text format.",
            description: None,
            params: vec![],
            body: Body::Text(crate::metrics::CONTENT_TYPE),
            errors: &[],
            unavailable_same_body: false,
            handler: get(metrics),
        },
        Route {
            path: "/api/v1/openapi.json",
            operation_id: "openapi",
            summary: "This document.",
            description: None,
            params: vec![],
            body: Body::Json(schema::<serde_json::Value>),
            errors: &[],
            unavailable_same_body: false,
            handler: get(openapi),
        },
        Route {
            path: "/api/v1/policies",
            operation_id: "listPolicies",
            summary: "BackupPolicy objects with spec and status, by name.",
            description: None,
            params: page_params(),
            body: Body::Json(schema::<ObjectList<crate::spec::policy::BackupPolicySpec>>),
            errors: &[400],
            unavailable_same_body: false,
            handler: get(|s, q| list(s, q, Kind::BackupPolicy)),
        },
        Route {
            path: "/api/v1/policies/{name}",
            operation_id: "getPolicy",
            summary: "One BackupPolicy with spec and status.",
            description: None,
            params: vec![path_param("name", "The policy's name.")],
            body: Body::Json(schema::<ObjectItem<crate::spec::policy::BackupPolicySpec>>),
            errors: &[404],
            unavailable_same_body: false,
            handler: get(|s, p| one(s, p, Kind::BackupPolicy)),
        },
        Route {
            path: "/api/v1/archives",
            operation_id: "listArchives",
            summary: "Archive objects (one-off backups) with spec and status, by name.",
            description: Some(ARCHIVE_SPECS_NOT_BACKUPS),
            params: page_params(),
            body: Body::Json(schema::<ObjectList<crate::spec::archive::ArchiveSpec>>),
            errors: &[400],
            unavailable_same_body: false,
            handler: get(|s, q| list(s, q, Kind::Archive)),
        },
        Route {
            path: "/api/v1/archives/{name}",
            operation_id: "getArchive",
            summary: "One Archive object with spec and status.",
            description: Some(ARCHIVE_SPECS_NOT_BACKUPS),
            params: vec![path_param("name", "The Archive's name.")],
            body: Body::Json(schema::<ObjectItem<crate::spec::archive::ArchiveSpec>>),
            errors: &[404],
            unavailable_same_body: false,
            handler: get(|s, p| one(s, p, Kind::Archive)),
        },
        Route {
            path: "/api/v1/restores",
            operation_id: "listRestores",
            summary: "Restore objects with spec and status, by name.",
            description: None,
            params: page_params(),
            body: Body::Json(schema::<ObjectList<crate::spec::restore::RestoreSpec>>),
            errors: &[400],
            unavailable_same_body: false,
            handler: get(|s, q| list(s, q, Kind::Restore)),
        },
        Route {
            path: "/api/v1/restores/{name}",
            operation_id: "getRestore",
            summary: "One Restore object with spec and status.",
            description: None,
            params: vec![path_param("name", "The Restore's name.")],
            body: Body::Json(schema::<ObjectItem<crate::spec::restore::RestoreSpec>>),
            errors: &[404],
            unavailable_same_body: false,
            handler: get(|s, p| one(s, p, Kind::Restore)),
        },
        Route {
            path: "/api/v1/repositories",
            operation_id: "listRepositories",
            summary: "Repository objects (where archives are kept) with spec and status, by name.",
            description: None,
            params: page_params(),
            body: Body::Json(schema::<ObjectList<crate::spec::repository::RepositorySpec>>),
            errors: &[400],
            unavailable_same_body: false,
            handler: get(|s, q| list(s, q, Kind::Repository)),
        },
        Route {
            path: "/api/v1/repositories/{name}",
            operation_id: "getRepository",
            summary: "One Repository object with spec and status.",
            description: None,
            params: vec![path_param("name", "The Repository's name.")],
            body: Body::Json(schema::<ObjectItem<crate::spec::repository::RepositorySpec>>),
            errors: &[404],
            unavailable_same_body: false,
            handler: get(|s, p| one(s, p, Kind::Repository)),
        },
        Route {
            path: "/api/v1/notifiers",
            operation_id: "listNotifiers",
            summary: "Notifier objects (where notifications go) with spec and status, by name; URLs read from the host are never shown.",
            description: None,
            params: page_params(),
            body: Body::Json(schema::<ObjectList<crate::spec::NotifierSpec>>),
            errors: &[400],
            unavailable_same_body: false,
            handler: get(|s, q| list(s, q, Kind::Notifier)),
        },
        Route {
            path: "/api/v1/notifiers/{name}",
            operation_id: "getNotifier",
            summary: "One Notifier object with spec and status.",
            description: None,
            params: vec![path_param("name", "The Notifier's name.")],
            body: Body::Json(schema::<ObjectItem<crate::spec::NotifierSpec>>),
            errors: &[404],
            unavailable_same_body: false,
            handler: get(|s, p| one(s, p, Kind::Notifier)),
        },
        Route {
            path: "/api/v1/containerschedules",
            operation_id: "listContainerSchedules",
            summary: "ContainerSchedule objects (scheduled container actions) with spec and status, by name.",
            description: None,
            params: page_params(),
            body: Body::Json(schema::<ObjectList<crate::spec::ContainerScheduleSpec>>),
            errors: &[400],
            unavailable_same_body: false,
            handler: get(|s, q| list(s, q, Kind::ContainerSchedule)),
        },
        Route {
            path: "/api/v1/containerschedules/{name}",
            operation_id: "getContainerSchedule",
            summary: "One ContainerSchedule object with spec and status.",
            description: None,
            params: vec![path_param("name", "The ContainerSchedule's name.")],
            body: Body::Json(schema::<ObjectItem<crate::spec::ContainerScheduleSpec>>),
            errors: &[404],
            unavailable_same_body: false,
            handler: get(|s, p| one(s, p, Kind::ContainerSchedule)),
        },
        Route {
            path: "/api/v1/runs",
            operation_id: "listRuns",
            summary: "Runs, newest first, filtered and paged.",
            description: None,
            params: vec![
                query_param(
                    "policy",
                    "Only runs of the object with this name (a policy or an Archive).",
                    serde_json::json!({"type": "string"}),
                ),
                query_param(
                    "kind",
                    "Only runs of this kind of object.",
                    serde_json::json!({"type": "string", "enum": ["BackupPolicy", "Archive", "Restore", "ContainerSchedule"]}),
                ),
                query_param(
                    "phase",
                    "Only runs in this phase.",
                    serde_json::json!({"type": "string", "enum": ["Running", "Succeeded", "PartiallyFailed", "Failed"]}),
                ),
                query_param(
                    "limit",
                    "How many runs at most (default 50).",
                    serde_json::json!({"type": "integer", "minimum": 1, "maximum": MAX_RUNS}),
                ),
                query_param(
                    "before",
                    "Only runs that started before this run id (the `next` of the previous page) or RFC 3339 time.",
                    serde_json::json!({"type": "string"}),
                ),
            ],
            body: Body::Json(schema::<RunList>),
            errors: &[400],
            unavailable_same_body: false,
            handler: get(runs),
        },
        Route {
            path: "/api/v1/runs/{id}",
            operation_id: "getRun",
            summary: "One run.",
            description: None,
            params: vec![path_param("id", "The run id.")],
            body: Body::Json(schema::<RunRecord>),
            errors: &[404],
            unavailable_same_body: false,
            handler: get(run),
        },
        Route {
            path: "/api/v1/runs/{id}/log",
            operation_id: "getRunLog",
            summary: "A run's log, whole or from a line number on.",
            description: None,
            params: vec![
                path_param("id", "The run id."),
                query_param(
                    "from",
                    "The first line to return, counting from 1 (default 1).",
                    serde_json::json!({"type": "integer", "minimum": 1}),
                ),
            ],
            body: Body::Json(schema::<RunLog>),
            errors: &[400, 404],
            unavailable_same_body: false,
            handler: get(run_log),
        },
        Route {
            path: "/api/v1/runs/{id}/log/follow",
            operation_id: "followRunLog",
            summary: "A run's log as server-sent events (`line`), from a line number, until the run ends (`end`).",
            description: None,
            params: vec![
                path_param("id", "The run id."),
                query_param(
                    "from",
                    "The first line to send, counting from 1 (default 1).",
                    serde_json::json!({"type": "integer", "minimum": 1}),
                ),
            ],
            body: Body::EventStream(schema::<LogEvent>),
            errors: &[400, 404],
            unavailable_same_body: false,
            handler: get(follow_log),
        },
        Route {
            path: "/api/v1/stacks",
            operation_id: "listStacks",
            summary: "Compose stacks Docker reports now, with their containers and mounts.",
            description: None,
            params: vec![],
            body: Body::Json(schema::<ItemList<crate::docker::Stack>>),
            errors: &[503],
            unavailable_same_body: false,
            handler: get(stacks),
        },
        Route {
            path: "/api/v1/backups",
            operation_id: "listBackups",
            summary: "Every backup (archive) in the repository, with its health, oldest first per group.",
            description: Some(
                "The backups themselves: what every BackupPolicy and Archive object wrote, read from the repository, Missing ones included. The objects that ask for backups are under /api/v1/policies and /api/v1/archives (Archive specs, not backups). /api/v1/catalog is the same list under its older name.",
            ),
            params: vec![catalog_name_param()],
            body: Body::Json(schema::<ItemList<super::backups::Backup>>),
            errors: &[400, 500],
            unavailable_same_body: false,
            handler: get(catalog),
        },
        Route {
            path: "/api/v1/catalog",
            operation_id: "listCatalog",
            summary: "The same as /api/v1/backups, under its older name.",
            description: Some(
                "An alias of /api/v1/backups, kept for existing clients: every backup in the repository. Not to be confused with /api/v1/archives, which lists Archive specs.",
            ),
            params: vec![catalog_name_param()],
            body: Body::Json(schema::<ItemList<super::backups::Backup>>),
            errors: &[400, 500],
            unavailable_same_body: false,
            handler: get(catalog),
        },
        Route {
            path: "/api/v1/events",
            operation_id: "events",
            summary: "Server-sent events: run started, progress, finished; status changed. The SSE event name is the `type`.",
            description: None,
            params: vec![],
            body: Body::EventStream(schema::<Event>),
            errors: &[],
            unavailable_same_body: false,
            handler: get(events),
        },
    ];
    routes.extend(super::backups::routes());
    routes.extend(super::overview::routes());
    routes.extend(super::hosts::routes());
    routes
}

/// The largest page of runs.
pub const MAX_RUNS: usize = 500;

/// A spec object with its status, as in its file and its status file.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "{S}Object")]
pub struct ObjectItem<S> {
    pub api_version: String,
    pub kind: String,
    pub metadata: crate::spec::ObjectMeta,
    /// `null` when the spec does not validate; `status.errors` says why.
    pub spec: Option<S>,
    pub status: crate::status::Status,
    /// The spec file, relative to the specs folder.
    pub file: String,
}

/// A page of objects, by name.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "{S}List")]
pub struct ObjectList<S> {
    pub items: Vec<ObjectItem<S>>,
    /// How many objects there are in all.
    pub total: usize,
    /// The name to pass as `after` for the next page; `null` on the last.
    pub next: Option<String>,
}

/// A list without paging.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "{T}Items")]
pub struct ItemList<T> {
    pub items: Vec<T>,
}

#[derive(Serialize, JsonSchema)]
pub struct RunList {
    pub items: Vec<RunRecord>,
    /// The run id to pass as `before` for the next page; `null` on the last.
    pub next: Option<String>,
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunLog {
    pub run_id: String,
    /// The number of the first line in `lines`.
    pub from: usize,
    pub lines: Vec<String>,
    /// The `from` that continues after these lines.
    pub next: usize,
    /// The run has ended: no more lines will come.
    pub complete: bool,
}

/// The data of a log-follow event: `line` events carry `n` and `text`, the `end` event
/// carries the run's `phase`.
#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
pub enum LogEvent {
    Line { n: usize, text: String },
    End { phase: Phase },
}

#[derive(Serialize, JsonSchema)]
pub struct Readiness {
    pub ready: bool,
    /// The specs were loaded at least once.
    pub specs: bool,
    /// Docker answers a ping.
    pub docker: bool,
    /// The state database answers.
    pub state: bool,
}

async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok\n",
    )
        .into_response()
}

async fn readyz(State(app): State<AppState>) -> Response {
    let specs = app.hub.snapshot().loaded;
    let state = app.state.ping().is_ok();
    let docker = match &app.engine {
        Some(engine) => matches!(
            tokio::time::timeout(Duration::from_secs(2), engine.ping()).await,
            Ok(Ok(()))
        ),
        None => false,
    };
    let ready = specs && state && docker;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        status,
        to_body(&Readiness {
            ready,
            specs,
            docker,
            state,
        }),
    )
}

async fn metrics(State(app): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], {
        app.hub
            .metrics
            .docker_errors_seen(&crate::docker::engine::error_counts());
        app.hub.metrics.encode()
    })
        .into_response()
}

async fn openapi(State(app): State<AppState>) -> Response {
    json(StatusCode::OK, app.openapi.clone())
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<String>,
    after: Option<String>,
}

/// A `limit` parameter: absent gives `default`; otherwise 1..=max.
fn parse_limit(text: Option<&str>, default: usize, max: usize) -> Result<usize, Failure> {
    match text {
        None => Ok(default),
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(Failure(
                StatusCode::BAD_REQUEST,
                format!("limit: must be a whole number from 1 to {max}, not {t:?}"),
            )),
        },
    }
}

async fn list(
    State(app): State<AppState>,
    ApiQuery(q): ApiQuery<PageQuery>,
    kind: Kind,
) -> Response {
    let snapshot = app.hub.snapshot();
    let collection = snapshot.collection(kind);
    if q.limit.is_none() && q.after.is_none() {
        return json(StatusCode::OK, collection.first_page());
    }
    let limit = match parse_limit(q.limit.as_deref(), DEFAULT_PAGE, MAX_PAGE) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    json(StatusCode::OK, collection.page(q.after.as_deref(), limit))
}

async fn one(State(app): State<AppState>, ApiPath(name): ApiPath<String>, kind: Kind) -> Response {
    match app.hub.snapshot().collection(kind).get(&name) {
        Some(body) => json(StatusCode::OK, body.clone()),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no {} named {name:?}", kind.as_str()),
        ),
    }
}

#[derive(Deserialize)]
struct RunsQuery {
    policy: Option<String>,
    kind: Option<String>,
    phase: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

async fn runs(State(app): State<AppState>, ApiQuery(q): ApiQuery<RunsQuery>) -> Response {
    let limit = match parse_limit(q.limit.as_deref(), 50, MAX_RUNS) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let phase = match q.phase.as_deref() {
        None => None,
        Some(p) => match Phase::parse(p) {
            Some(p) => Some(p),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "phase: {p:?} is not one of Running, Succeeded, PartiallyFailed, Failed"
                    ),
                );
            }
        },
    };
    if let Some(k) = q.kind.as_deref()
        && Kind::parse(k).is_none()
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("kind: {k:?} is not one of BackupPolicy, Archive, Restore, ContainerSchedule"),
        );
    }
    let (before_run, before_time) = match q.before {
        None => (None, None),
        Some(b) => match chrono::DateTime::parse_from_rfc3339(&b) {
            Ok(t) => (None, Some(t.with_timezone(&chrono::Utc))),
            Err(_) => (Some(b), None),
        },
    };
    let filter = RunFilter {
        kind: q.kind,
        name: q.policy,
        phase,
        before_run: before_run.clone(),
        before_time,
        // One more than asked tells whether there is a next page.
        limit: limit + 1,
    };
    match app.state.runs_filtered(&filter) {
        Ok(Some(mut items)) => {
            let next = if items.len() > limit {
                items.truncate(limit);
                items.last().map(|r| r.id.clone())
            } else {
                None
            };
            json(StatusCode::OK, to_body(&RunList { items, next }))
        }
        Ok(None) => error(
            StatusCode::BAD_REQUEST,
            format!(
                "before: no run {:?}, and not an RFC 3339 time",
                before_run.unwrap_or_default()
            ),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn find_run(app: &AppState, id: &str) -> Result<RunRecord, Failure> {
    match app.state.run(id) {
        Ok(Some(run)) => Ok(run),
        Ok(None) => Err(Failure(StatusCode::NOT_FOUND, format!("no run {id:?}"))),
        Err(e) => Err(Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

async fn run(State(app): State<AppState>, ApiPath(id): ApiPath<String>) -> Response {
    match find_run(&app, &id) {
        Ok(run) => json(StatusCode::OK, to_body(&run)),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct LogQuery {
    from: Option<String>,
}

fn parse_from(text: Option<&str>) -> Result<usize, Failure> {
    match text {
        None => Ok(1),
        Some(t) => match t.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(Failure(
                StatusCode::BAD_REQUEST,
                format!("from: must be a line number, 1 or more, not {t:?}"),
            )),
        },
    }
}

/// The complete lines of a run's log from line `from` on; a missing file has none. A last
/// line without its newline is still being written and is left for later.
fn read_lines(app: &AppState, run: &RunRecord, from: usize) -> Vec<String> {
    let (mut lines, _) = read_complete_lines(app, run, 0);
    lines.drain(..(from - 1).min(lines.len()));
    lines
}

/// The complete lines of a run's log after byte `offset`, and the offset after the last
/// of them: a follower reads only what was appended since its last read.
fn read_complete_lines(app: &AppState, run: &RunRecord, offset: u64) -> (Vec<String>, u64) {
    use std::io::{Read, Seek, SeekFrom};
    // The id came from the database, and ids are `<name>-<time>`: no path separators.
    if run.id.contains('/') || run.id.contains("..") {
        return (Vec::new(), offset);
    }
    let Ok(mut file) = std::fs::File::open(app.logs.join(format!("{}.log", run.id))) else {
        return (Vec::new(), offset);
    };
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_end(&mut bytes).is_err() {
        return (Vec::new(), offset);
    }
    let complete = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(end) => &bytes[..=end],
        None => &[],
    };
    let lines = String::from_utf8_lossy(complete)
        .lines()
        .map(str::to_string)
        .collect();
    (lines, offset + complete.len() as u64)
}

async fn run_log(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Response {
    let from = match parse_from(q.from.as_deref()) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let run = match find_run(&app, &id) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let lines = read_lines(&app, &run, from);
    let next = from + lines.len();
    json(
        StatusCode::OK,
        to_body(&RunLog {
            run_id: run.id.clone(),
            from,
            lines,
            next,
            complete: run.phase != Phase::Running,
        }),
    )
}

/// How often a followed log is read again.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

fn sse_data<T: Serialize>(name: &str, value: &T) -> SseEvent {
    let body = to_body(value);
    SseEvent::default()
        .event(name)
        .data(String::from_utf8_lossy(&body))
}

async fn follow_log(
    State(app): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Response {
    let from = match parse_from(q.from.as_deref()) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    let run = match find_run(&app, &id) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    struct Follow {
        app: AppState,
        run: RunRecord,
        /// The number of the next line to send.
        next: usize,
        /// The number of the next line in the file after `offset`.
        at: usize,
        /// Bytes of the log already read.
        offset: u64,
        buffered: std::collections::VecDeque<SseEvent>,
        ended: bool,
    }
    let start = Follow {
        app,
        run,
        next: from,
        at: 1,
        offset: 0,
        buffered: Default::default(),
        ended: false,
    };
    let stream = futures_util::stream::unfold(start, |mut f| async move {
        loop {
            if let Some(event) = f.buffered.pop_front() {
                return Some((Ok::<_, Infallible>(event), f));
            }
            if f.ended {
                return None;
            }
            // Whether the run had ended *before* this read: then the read saw every line.
            let finished = match f.app.state.run(&f.run.id) {
                Ok(Some(r)) if r.phase != Phase::Running => Some(r.phase),
                Ok(Some(_)) => None,
                // Gone from the history or unreadable: nothing more will come.
                _ => Some(f.run.phase),
            };
            let (lines, offset) = read_complete_lines(&f.app, &f.run, f.offset);
            f.offset = offset;
            for text in lines {
                if f.at >= f.next {
                    f.buffered
                        .push_back(sse_data("line", &LogEvent::Line { n: f.at, text }));
                    f.next = f.at + 1;
                }
                f.at += 1;
            }
            if let Some(phase) = finished {
                f.buffered
                    .push_back(sse_data("end", &LogEvent::End { phase }));
                f.ended = true;
            } else if f.buffered.is_empty() {
                tokio::time::sleep(FOLLOW_EVERY).await;
            }
        }
    });
    sse(stream)
}

fn sse<S>(stream: S) -> Response
where
    S: Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
{
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn events(State(app): State<AppState>) -> Response {
    let rx = app.hub.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let sse = match rx.recv().await {
            Ok(event) => sse_data(event.name(), &event),
            // A slow client fell behind: it is told how much it missed, and goes on.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => SseEvent::default()
                .event("lagged")
                .data(format!("{{\"missed\":{missed}}}")),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(sse), rx))
    });
    sse(stream)
}

async fn stacks(State(app): State<AppState>) -> Response {
    let Some(engine) = &app.engine else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "not connected to Docker");
    };
    match engine.stacks().await {
        Ok(items) => json(StatusCode::OK, to_body(&ItemList { items })),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[derive(Deserialize)]
struct CatalogQuery {
    name: Option<String>,
}

async fn catalog(State(app): State<AppState>, ApiQuery(q): ApiQuery<CatalogQuery>) -> Response {
    let read = tokio::task::spawn_blocking(move || {
        // The daemon's catalog when there is one: a request reads no manifest.
        let mut entries = match app.hub.catalog() {
            Some(entries) => entries.as_ref().clone(),
            None => crate::repo::catalog::scan(&app.repository).map_err(|e| e.to_string())?,
        };
        let missing = crate::repo::catalog::missing(
            &app.state,
            crate::spec::repository::DEFAULT_REPOSITORY,
            &entries,
        )
        .map_err(|e| e.to_string())?;
        entries.extend(missing);
        if let Some(name) = &q.name {
            entries.retain(|e| &e.group == name);
        }
        Ok::<_, String>(super::backups::with_retention(
            &app,
            q.name.as_deref(),
            entries,
        ))
    })
    .await;
    match read {
        Ok(Ok(items)) => json(StatusCode::OK, to_body(&ItemList { items })),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
