//! Token files (every error with its line), scopes and expiry at the guard, and the
//! security headers on every answer.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use super::tests::{fixture, send};
use super::tokens::{Parsed, Scope, Tokens};
use super::*;

const ALICE: &str = "alice-0123456789abcdef";
const GRAFANA: &str = "grafana-0123456789abcdef";
const OLD: &str = "old-0123456789abcdef";

fn file(entries: &str) -> String {
    format!("tokens:\n{entries}")
}

/// Where and why a text is refused.
fn refused(text: &str) -> (usize, String) {
    match Tokens::parse(text) {
        Err(Parsed::Invalid { line, message, .. }) => (line, message),
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn a_token_file_names_tokens_with_scopes_and_expiry() {
    let tokens = Tokens::parse(&file(&format!(
        "  - name: grafana\n    scope: metrics\n    token: \"{GRAFANA}\"\n    expires: 2027-06-30T00:00:00Z\n  - name: alice\n    scope: read\n    token: {ALICE}\n"
    )))
    .unwrap();
    let grafana = tokens.find(GRAFANA).unwrap();
    assert_eq!(grafana.name, "grafana");
    assert_eq!(grafana.scope, Scope::Metrics);
    assert_eq!(
        grafana.expires.unwrap().to_rfc3339(),
        "2027-06-30T00:00:00+00:00"
    );
    let alice = tokens.find(ALICE).unwrap();
    assert_eq!((alice.scope, alice.expires), (Scope::Read, None));
    assert!(tokens.find("alice").is_none());
    assert!(tokens.find("").is_none());
    // The value never shows in a debug print.
    let printed = format!("{tokens:?}");
    assert!(
        !printed.contains(ALICE) && !printed.contains(GRAFANA),
        "{printed}"
    );
}

#[test]
fn a_single_line_is_one_read_token_as_before() {
    for text in ["s3cret-token\n", "  abc  ", "a:b", "[x"] {
        let tokens = Tokens::parse(text).unwrap();
        let only: Vec<_> = tokens.iter().collect();
        assert_eq!(only.len(), 1, "{text:?}");
        assert_eq!(only[0].name, "default");
        assert_eq!(only[0].scope, Scope::Read);
        assert!(tokens.find(text.trim()).is_some(), "{text:?}");
    }
    assert_eq!(Tokens::parse(" \n\n").unwrap_err(), Parsed::Empty);
}

#[test]
fn every_mistake_in_a_token_file_names_its_line_and_field_but_never_a_token() {
    let ok = |name: &str, token: &str| {
        format!("  - name: {name}\n    scope: read\n    token: {token}\n")
    };
    let cases: Vec<(String, usize, &str)> = vec![
        (
            format!("tokens:\n{}extra: 1\n", ok("alice", ALICE)),
            5,
            "extra: not a field of a token file",
        ),
        (
            file(&format!("{}    colour: red\n", ok("alice", ALICE))),
            5,
            "tokens[0].colour: not a field of a token",
        ),
        (
            file(&format!(
                "  - name: alice\n    scope: admin\n    token: {ALICE}\n"
            )),
            3,
            "tokens[0].scope: not a scope: use `metrics`",
        ),
        (
            file(&format!("{}{}", ok("alice", ALICE), ok("alice", GRAFANA))),
            5,
            "tokens[1].name: `alice` is the name of tokens[0] too",
        ),
        (
            file(&format!("{}{}", ok("alice", ALICE), ok("bob", ALICE))),
            7,
            "tokens[1].token: the same token as `alice`",
        ),
        (
            file(&ok("alice", "short-token")),
            4,
            "tokens[0].token: too short: a token needs at least 16 characters",
        ),
        (
            file(&format!(
                "{}    expires: next tuesday\n",
                ok("alice", ALICE)
            )),
            5,
            "tokens[0].expires: not an RFC 3339 time",
        ),
        (
            file(&format!("{}    expires: 2027-06-31\n", ok("alice", ALICE))),
            5,
            "tokens[0].expires: not an RFC 3339 time",
        ),
        (
            file(&format!("  - name: alice\n    token: {ALICE}\n")),
            2,
            "tokens[0]: missing field `scope`",
        ),
        (
            file("  - name: alice\n    scope: read\n"),
            2,
            "tokens[0]: missing field `token`",
        ),
        (
            file(&format!("  - scope: read\n    token: {ALICE}\n")),
            2,
            "tokens[0]: missing field `name`",
        ),
        (
            file("  - name: alice\n    scope: read\n    token: 12345678901234567890\n"),
            4,
            "tokens[0].token: must be a string",
        ),
        (
            file("  - name: al ice!\n    scope: read\n    token: x\n"),
            2,
            "tokens[0].name: must be a name",
        ),
        (
            file(&format!(
                "  - name: alice\n    scope: read\n    token: \"{ALICE} x\"\n"
            )),
            4,
            "tokens[0].token: holds a character",
        ),
        ("tokens: []\n".to_string(), 1, "tokens: lists no token"),
        ("tokens: alice\n".to_string(), 1, "tokens: must be a list"),
        (
            file(&format!(
                "  - name: alice\n    scope: read\n    scope: metrics\n    token: {ALICE}\n"
            )),
            4,
            "given twice",
        ),
        (
            "one\ntwo\n".to_string(),
            1,
            "not a token file: write `tokens:`",
        ),
        (
            "names:\n  - alice\n".to_string(),
            1,
            "names: not a field of a token file",
        ),
        (
            format!("tokens:\n  - name: alice\n   scope: read\n    token: {ALICE}\n"),
            3,
            "not valid YAML",
        ),
    ];
    for (text, line, expected) in cases {
        let (at, message) = refused(&text);
        assert!(message.contains(expected), "{text}\n=> {message}");
        assert_eq!(at, line, "{text}\n=> {message}");
        for secret in [ALICE, GRAFANA, "short-token", "12345678901234567890"] {
            assert!(!message.contains(secret), "{message}");
        }
    }
}

#[test]
fn a_bad_file_fails_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.yaml");
    std::fs::write(
        &path,
        file("  - name: alice\n    scope: admin\n    token: alice-0123456789abcdef\n"),
    )
    .unwrap();
    let listen: std::net::SocketAddr = "0.0.0.0:9750".parse().unwrap();
    let message = load_tokens(listen, Some(&path)).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!(
            "the API token file {}:3:12: tokens[0].scope",
            path.display()
        )),
        "{message}"
    );
    assert!(!message.contains(ALICE), "{message}");
}

fn with_tokens(text: &str) -> super::tests::Fixture {
    let mut f = fixture(None);
    f.app = f
        .app
        .clone()
        .with_tokens(Some(Tokens::parse(text).unwrap()));
    f
}

fn three_tokens() -> super::tests::Fixture {
    with_tokens(&file(&format!(
        "  - name: grafana\n    scope: metrics\n    token: {GRAFANA}\n  - name: alice\n    scope: read\n    token: {ALICE}\n  - name: old\n    scope: read\n    token: {OLD}\n    expires: 2020-01-01T00:00:00Z\n"
    )))
}

#[tokio::test]
async fn a_metrics_token_reads_metrics_only_and_a_read_token_everything() {
    let f = three_tokens();
    let (status, _) = send(&f.app, "GET", "/metrics", Some(GRAFANA)).await;
    assert_eq!(status, StatusCode::OK);
    for uri in ["/api/v1/policies", "/api/v1/backups", "/readyz", "/nowhere"] {
        let (status, body) = send(&f.app, "GET", uri, Some(GRAFANA)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
        assert_eq!(
            body["error"], "the token `grafana` has scope `metrics` and this path needs `read`",
            "{uri}"
        );
        assert!(!body.to_string().contains(GRAFANA));
    }
    for uri in [
        "/metrics",
        "/api/v1/policies",
        "/readyz",
        "/api/v1/openapi.json",
    ] {
        let (status, _) = send(&f.app, "GET", uri, Some(ALICE)).await;
        assert_ne!(status, StatusCode::FORBIDDEN, "{uri}");
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    // An unknown token learns nothing, whatever the path.
    for uri in ["/metrics", "/api/v1/policies"] {
        let (status, body) = send(&f.app, "GET", uri, Some("nobody-0123456789abcdef")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(body["error"].as_str().unwrap().contains("bearer token"));
    }
}

#[tokio::test]
async fn an_expired_token_is_refused_saying_when_it_expired() {
    let f = three_tokens();
    for uri in ["/metrics", "/api/v1/policies"] {
        let (status, body) = send(&f.app, "GET", uri, Some(OLD)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
        let message = body["error"].as_str().unwrap();
        assert!(
            message.starts_with("the token `old` expired at 2020-01-01T00:00:00Z"),
            "{message}"
        );
        assert!(!message.contains(OLD), "{message}");
    }
}

#[tokio::test]
async fn liveness_and_the_dashboard_page_need_no_token() {
    let f = three_tokens();
    for uri in ["/healthz", "/", "/ui/app.js", "/ui/"] {
        let (status, _) = send(&f.app, "GET", uri, None).await;
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_ne!(status, StatusCode::FORBIDDEN, "{uri}");
    }
    for uri in ["/ui", "/uix/a", "/api/v1/overview", "/metrics"] {
        let (status, _) = send(&f.app, "GET", uri, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    assert_eq!(tokens::needs("/ui/a/b.css"), tokens::Access::Open);
    assert_eq!(
        tokens::needs("/api/v1/overview"),
        tokens::Access::Token(Scope::Read)
    );
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let f = three_tokens();
    let cases = [
        ("GET", "/healthz", None, StatusCode::OK),
        ("GET", "/api/v1/policies", Some(ALICE), StatusCode::OK),
        ("GET", "/api/v1/policies", None, StatusCode::UNAUTHORIZED),
        (
            "GET",
            "/api/v1/policies",
            Some(GRAFANA),
            StatusCode::FORBIDDEN,
        ),
        ("GET", "/nowhere", Some(ALICE), StatusCode::NOT_FOUND),
        (
            "POST",
            "/api/v1/policies",
            Some(ALICE),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        ("HEAD", "/metrics", Some(GRAFANA), StatusCode::OK),
    ];
    for (method, uri, token, expected) in cases {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let response = router(f.app.clone())
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "{method} {uri}");
        let headers = response.headers();
        assert_eq!(
            headers["content-security-policy"],
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            "{method} {uri}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["x-frame-options"], "DENY");
    }
}
