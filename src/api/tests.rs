//! The router as the server runs it, with a real state database and log files, without
//! a network or Docker.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{TimeZone, Utc};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::hub::{Collection, Snapshot};
use crate::spec::common::Phase;
use crate::state::RunRecord;

pub(super) struct Fixture {
    pub(super) _dir: tempfile::TempDir,
    pub(super) app: AppState,
}

pub(super) fn fixture(token: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(StateDb::open(&dir.path().join("state")).unwrap());
    let hub = Arc::new(Hub::new());
    let policies = (0..5)
        .map(|i| {
            let name = format!("p{i}");
            let body = json!({
                "apiVersion": "holdfast.dev/v1alpha1",
                "kind": "BackupPolicy",
                "metadata": {"name": name},
                "spec": null,
                "status": {},
                "file": "p.yaml",
            });
            (name, bytes::Bytes::from(body.to_string()))
        })
        .collect();
    hub.publish(Snapshot {
        loaded: true,
        policies: Collection::new(policies),
        ..Default::default()
    });
    let app = AppState::new(
        hub,
        state,
        None,
        crate::repo::Repository::local(dir.path().join("repository"), "test"),
        dir.path().join("state/logs"),
        token.map(str::to_string),
    );
    Fixture { _dir: dir, app }
}

fn run_record(id: &str, name: &str, minute: u32, phase: Phase) -> RunRecord {
    RunRecord {
        id: id.into(),
        kind: "BackupPolicy".into(),
        name: name.into(),
        archive_id: None,
        phase,
        start_time: Utc.with_ymd_and_hms(2026, 11, 25, 3, minute, 0).unwrap(),
        completion_time: None,
        bytes: 0,
        source_bytes: None,
        downtime_seconds: 0.0,
        error: None,
        dry_run: false,
        warnings: Vec::new(),
        repository: None,
        copies: Vec::new(),
    }
}

pub(super) async fn send(
    app: &AppState,
    method: &str,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let response = router(app.clone())
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = body_bytes(response).await;
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, value)
}

async fn get(app: &AppState, uri: &str) -> (StatusCode, Value) {
    send(app, "GET", uri, None).await
}

#[tokio::test]
async fn every_method_but_get_and_head_is_refused() {
    let f = fixture(None);
    for method in ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        for uri in [
            "/api/v1/policies",
            "/api/v1/policies/p1",
            "/metrics",
            "/nowhere",
        ] {
            let (status, body) = send(&f.app, method, uri, None).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            assert!(body["error"].as_str().unwrap().contains("read-only"));
        }
    }
    let (status, _) = send(&f.app, "HEAD", "/api/v1/policies", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_token_is_required_when_one_is_set() {
    let f = fixture(Some("s3cret-token"));
    let (status, body) = get(&f.app, "/api/v1/policies").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"].as_str().unwrap().contains("bearer token"));
    let (status, _) = send(&f.app, "GET", "/api/v1/policies", Some("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Unauthenticated writes learn nothing either: 401 before 405.
    let (status, _) = send(&f.app, "DELETE", "/api/v1/policies/p1", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(&f.app, "GET", "/api/v1/policies", Some("s3cret-token")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(&f.app, "GET", "/metrics", Some("s3cret-token")).await;
    assert_eq!(status, StatusCode::OK);
    // Liveness says nothing about the state, and probes rarely carry tokens.
    let (status, _) = get(&f.app, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn a_token_is_needed_off_loopback() {
    let open: std::net::SocketAddr = "0.0.0.0:9750".parse().unwrap();
    let local: std::net::SocketAddr = "127.0.0.1:9750".parse().unwrap();
    assert!(matches!(
        load_tokens(open, None),
        Err(ServeError::NeedsToken(_))
    ));
    assert!(load_tokens(local, None).unwrap().is_none());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "  \n").unwrap();
    assert!(matches!(
        load_tokens(open, Some(&file)),
        Err(ServeError::Tokens(tokens::TokenFileError::Empty { .. }))
    ));
    std::fs::write(&file, "abc\n").unwrap();
    let tokens = load_tokens(open, Some(&file)).unwrap().unwrap();
    assert_eq!(tokens.find("abc").map(|t| t.name.as_str()), Some("default"));
    assert!(matches!(
        load_tokens(open, Some(&dir.path().join("missing"))),
        Err(ServeError::Tokens(tokens::TokenFileError::Read { .. }))
    ));
}

#[tokio::test]
async fn objects_page_and_missing_ones_are_404() {
    let f = fixture(None);
    let (status, body) = get(&f.app, "/api/v1/policies").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total"], 5);
    assert_eq!(body["items"].as_array().unwrap().len(), 5);
    assert_eq!(body["next"], Value::Null);
    let (_, body) = get(&f.app, "/api/v1/policies?limit=2&after=p1").await;
    let names: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["p2", "p3"]);
    assert_eq!(body["next"], "p3");
    for bad in ["0", "1001", "-1", "x"] {
        let (status, body) = get(&f.app, &format!("/api/v1/policies?limit={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "limit={bad}");
        assert!(body["error"].as_str().unwrap().starts_with("limit:"));
    }
    let (status, body) = get(&f.app, "/api/v1/policies/p3").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["metadata"]["name"], "p3");
    let (status, body) = get(&f.app, "/api/v1/policies/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "no BackupPolicy named \"nope\"");
    let (status, body) = get(&f.app, "/api/v1/archives").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"items": [], "total": 0, "next": null}));
    let (status, body) = get(&f.app, "/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], reply::NO_SUCH_ROUTE);
}

#[tokio::test]
async fn runs_filter_and_page() {
    let f = fixture(None);
    for (i, (name, phase)) in [
        ("a", Phase::Succeeded),
        ("b", Phase::Failed),
        ("a", Phase::Failed),
        ("a", Phase::Succeeded),
        ("b", Phase::Succeeded),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("{name}-{i}");
        f.app
            .state
            .insert_run(&run_record(&id, name, i as u32, phase))
            .unwrap();
    }
    let ids = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, body) = get(&f.app, "/api/v1/runs").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&body), ["b-4", "a-3", "a-2", "b-1", "a-0"]);
    assert_eq!(body["next"], Value::Null);
    // Pages of two walk everything once; the last page has no next.
    let mut seen = Vec::new();
    let mut uri = "/api/v1/runs?limit=2".to_string();
    loop {
        let (_, body) = get(&f.app, &uri).await;
        seen.extend(ids(&body));
        match body["next"].as_str() {
            Some(next) => uri = format!("/api/v1/runs?limit=2&before={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ["b-4", "a-3", "a-2", "b-1", "a-0"]);
    // Exactly a page's worth: no next page.
    let (_, body) = get(&f.app, "/api/v1/runs?limit=5").await;
    assert_eq!(body["next"], Value::Null);
    let (_, body) = get(&f.app, "/api/v1/runs?policy=a&phase=Succeeded").await;
    assert_eq!(ids(&body), ["a-3", "a-0"]);
    let (_, body) = get(&f.app, "/api/v1/runs?before=2026-11-25T03:02:00Z").await;
    assert_eq!(ids(&body), ["b-1", "a-0"]);
    let (_, body) = get(&f.app, "/api/v1/runs?before=a-0").await;
    assert_eq!(ids(&body), Vec::<String>::new());
    for (query, field) in [
        ("limit=0", "limit:"),
        ("limit=501", "limit:"),
        ("phase=Done", "phase:"),
        ("kind=Policy", "kind:"),
        ("before=nope", "before:"),
    ] {
        let (status, body) = get(&f.app, &format!("/api/v1/runs?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(body["error"].as_str().unwrap().starts_with(field), "{body}");
    }
    let (status, body) = get(&f.app, "/api/v1/runs/a-2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["phase"], "Failed");
    let (status, body) = get(&f.app, "/api/v1/runs/nope-20261125T030000.000Z").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "no run \"nope-20261125T030000.000Z\"");
    let (status, _) = get(&f.app, "/api/v1/runs/nope/log").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn logs_whole_from_a_line_and_followed_until_the_run_ends() {
    let f = fixture(None);
    let mut record = run_record("web-1", "web", 0, Phase::Running);
    f.app.state.insert_run(&record).unwrap();
    std::fs::create_dir_all(&f.app.logs).unwrap();
    let log = f.app.logs.join("web-1.log");
    std::fs::write(&log, "one\ntwo PGPASSWORD=hunter2\nthree\npartial").unwrap();

    let (_, body) = get(&f.app, "/api/v1/runs/web-1/log").await;
    assert_eq!(
        body["lines"],
        json!(["one", "two PGPASSWORD=<redacted>", "three"])
    );
    assert_eq!(body["next"], 4);
    assert_eq!(body["complete"], false);
    let (_, body) = get(&f.app, "/api/v1/runs/web-1/log?from=3").await;
    assert_eq!(body["lines"], json!(["three"]));
    assert_eq!(body["from"], 3);
    let (_, body) = get(&f.app, "/api/v1/runs/web-1/log?from=10").await;
    assert_eq!(body["lines"], json!([]));
    let (status, _) = get(&f.app, "/api/v1/runs/web-1/log?from=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Follow from line 3: what is there, then what comes, then the end.
    let response = router(f.app.clone())
        .oneshot(
            Request::get("/api/v1/runs/web-1/log/follow?from=3")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut stream = response.into_body().into_data_stream();
    let mut text = String::new();
    let mut next_chunk = async || {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("no event within 5 s")
            .expect("stream ended")
            .unwrap();
        String::from_utf8_lossy(&chunk).into_owned()
    };
    while !text.contains("three") {
        text.push_str(&next_chunk().await);
    }
    assert!(!text.contains("\"two"), "{text}");
    // The run writes on (a log only grows: the follower reads what was appended), then
    // ends.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b" line done\nlast\n"))
        .unwrap();
    while !text.contains("last") {
        text.push_str(&next_chunk().await);
    }
    assert!(text.contains("partial line done"), "{text}");
    record.phase = Phase::Succeeded;
    record.completion_time = Some(Utc::now());
    f.app.state.finish_run(&record).unwrap();
    while !text.contains("event: end") {
        text.push_str(&next_chunk().await);
    }
    assert!(text.contains(r#"data: {"phase":"Succeeded"}"#), "{text}");
    assert!(text.contains(r#"data: {"n":5,"text":"last"}"#), "{text}");
}

#[tokio::test]
async fn events_reach_subscribers() {
    let f = fixture(None);
    let response = router(f.app.clone())
        .oneshot(Request::get("/api/v1/events").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let mut stream = response.into_body().into_data_stream();
    // The handler subscribes when it first runs: wait for that before sending.
    tokio::task::yield_now().await;
    let hub = f.app.hub.clone();
    tokio::spawn(async move {
        for _ in 0..50 {
            hub.emit(crate::hub::Event::RunStarted {
                kind: "BackupPolicy".into(),
                name: "web".into(),
                run_id: "web-1".into(),
                time: Utc::now(),
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains("event: runStarted"), "{text}");
    assert!(text.contains(r#""runId":"web-1""#), "{text}");
}

/// A validator for the schema at `pointer` of the OpenAPI document, with the document's
/// components in scope for its `$ref`s.
pub(super) fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    if let Value::Object(map) = &mut root {
        map.insert("components".into(), doc["components"].clone());
        map.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
    } else {
        root = json!({"components": doc["components"], "allOf": [schema]});
    }
    jsonschema::validator_for(&root).unwrap()
}

#[tokio::test]
async fn the_openapi_document_covers_every_route_and_matches_the_answers() {
    let f = fixture(None);
    f.app
        .state
        .insert_run(&run_record("a-0", "a", 0, Phase::Succeeded))
        .unwrap();
    let (status, doc) = get(&f.app, "/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let routes = routes::routes();
    assert_eq!(documented.len(), routes.len());
    for route in &routes {
        let path = route.path;
        let op = &doc["paths"][path]["get"];
        assert!(op.is_object(), "{path} is not documented");
        for code in ["200", "401", "405"] {
            assert!(op["responses"][code].is_object(), "{path}: no {code}");
        }
        // Every documented path parameter is in the path, and the other way round.
        let in_path: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let declared: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(in_path, declared, "{path}");

        // The route answers, and a JSON answer fits its schema.
        let uri = path
            .replace("{repository}", "default")
            .replace("{group}", "p1")
            .replace("{name}", "p1")
            .replace("{id}", "a-0");
        if uri.ends_with("/follow") || uri.ends_with("/events") {
            continue;
        }
        let (status, body) = get(&f.app, &uri).await;
        assert_ne!(body["error"], reply::NO_SUCH_ROUTE, "{uri}");
        let code = status.as_u16().to_string();
        let content = &op["responses"][&code]["content"];
        assert!(content.is_object(), "{uri}: {code} is not documented");
        if let Some(schema) = content.get("application/json").map(|c| &c["schema"]) {
            let v = validator(&doc, schema);
            let errors: Vec<String> = v.iter_errors(&body).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{uri}: {errors:?}\n{body}");
        }
    }
}

#[test]
fn object_schemas_describe_what_the_reconciler_publishes() {
    // A real published policy (spec, status, file) fits the documented item schema.
    let doc = openapi::document(&routes::routes());
    let schema = &doc["paths"]["/api/v1/policies/{name}"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    let policy: crate::spec::BackupPolicy = serde_yaml_ng::from_str(
        "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {name: web, labels: {stack: web}}\nspec:\n  schedule: '@daily'\n  targets: {stacks: [web]}\n  dumps: [{service: db, engine: postgres, password: {value: hunter2}}]\n",
    )
    .unwrap();
    let mut item = serde_json::to_value(&policy).unwrap();
    item["status"] = json!({
        "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "", "lastTransitionTime": "2026-11-25T03:00:00Z"}],
        "lastRun": {"id": "web-1", "phase": "Succeeded", "sourceBytes": 40, "storedBytes": 10, "downtimeSeconds": 3.296},
        "nextScheduleTime": "2026-12-04T01:00:00Z",
        "nextScheduleTimeLocal": "2026-12-04T02:00:00+01:00",
        "archives": {"count": 2, "newest": "web-1", "bytes": 20, "futureDated": ["web-2"]},
    });
    item["file"] = json!("apps/web.yaml");
    let v = validator(&doc, schema);
    let errors: Vec<String> = v.iter_errors(&item).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut bad = item.clone();
    bad["status"]["lastRun"]["phase"] = json!("Done");
    assert!(!v.is_valid(&bad));
}

/// Status, content type and body of a GET.
async fn get_raw(app: &AppState, uri: &str) -> (StatusCode, String, Value) {
    let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let response = router(app.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = body_bytes(response).await;
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    (status, content_type, value)
}

/// `{"error": "<text>"}` and nothing else.
fn error_text(body: &Value) -> &str {
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("not JSON: {body}"));
    assert_eq!(object.len(), 1, "{body}");
    object["error"].as_str().unwrap_or_else(|| panic!("{body}"))
}

#[tokio::test]
async fn every_refusal_has_the_same_json_shape() {
    let f = fixture(None);
    let cases = [
        (
            "/api/v1/policies?limit=1&limit=2",
            StatusCode::BAD_REQUEST,
            "duplicate field `limit`",
        ),
        (
            "/api/v1/runs?phase=Failed&phase=Succeeded",
            StatusCode::BAD_REQUEST,
            "duplicate field `phase`",
        ),
        (
            "/api/v1/backups?name=a&name=b",
            StatusCode::BAD_REQUEST,
            "duplicate field `name`",
        ),
        (
            "/api/v1/runs/a-0/log?from=1&from=2",
            StatusCode::BAD_REQUEST,
            "duplicate field `from`",
        ),
        (
            "/api/v1/policies?limit=x",
            StatusCode::BAD_REQUEST,
            "limit:",
        ),
        (
            "/api/v1/policies/%FF",
            StatusCode::BAD_REQUEST,
            "the path is not understood",
        ),
        (
            "/api/v1/policies/nope",
            StatusCode::NOT_FOUND,
            "no BackupPolicy named",
        ),
        ("/api/v1/nowhere", StatusCode::NOT_FOUND, "no such route"),
        ("/api/v2/policies", StatusCode::NOT_FOUND, "openapi.json"),
    ];
    for (uri, expected, text) in cases {
        let (status, content_type, body) = get_raw(&f.app, uri).await;
        assert_eq!(status, expected, "{uri}: {body}");
        assert_eq!(content_type, "application/json", "{uri}");
        let message = error_text(&body);
        assert!(message.contains(text), "{uri}: {message}");
    }
    let (status, body) = send(&f.app, "POST", "/api/v1/backups", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    error_text(&body);
    let (_, body) = get(&f.app, "/api/v1/policies?limit=1&limit=2").await;
    assert!(
        error_text(&body).ends_with("give each parameter at most once"),
        "{body}"
    );
}

#[tokio::test]
async fn the_401_body_shows_the_header_to_send_but_never_the_token() {
    let f = fixture(Some("s3cret-token"));
    for token in [None, Some("wrong-guess")] {
        let (status, body) = send(&f.app, "GET", "/api/v1/policies", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let message = error_text(&body);
        assert!(
            message.contains("`Authorization: Bearer <token>`"),
            "{message}"
        );
        assert!(!message.contains("redacted"), "{message}");
        assert!(!message.contains("s3cret-token"), "{message}");
        assert!(!message.contains("wrong-guess"), "{message}");
    }
}

#[tokio::test]
async fn backups_have_their_own_route_and_the_catalog_stays_as_an_alias() {
    let f = fixture(None);
    let (status, backups) = get(&f.app, "/api/v1/backups").await;
    assert_eq!(status, StatusCode::OK);
    assert!(backups["items"].is_array(), "{backups}");
    let (status, catalog) = get(&f.app, "/api/v1/catalog").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(backups, catalog);

    // The document says which is which, in both directions.
    let (_, doc) = get(&f.app, "/api/v1/openapi.json").await;
    let description = |path: &str| {
        doc["paths"][path]["get"]["description"]
            .as_str()
            .unwrap_or_else(|| panic!("{path} has no description"))
            .to_string()
    };
    assert!(description("/api/v1/archives").contains("/api/v1/backups"));
    assert!(description("/api/v1/archives/{name}").contains("/api/v1/backups"));
    let backups = description("/api/v1/backups");
    assert!(backups.contains("/api/v1/archives"), "{backups}");
    assert!(backups.contains("/api/v1/catalog"), "{backups}");
    assert!(description("/api/v1/catalog").contains("alias of /api/v1/backups"));
}
