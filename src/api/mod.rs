//! The read-only HTTP server: `/healthz`, `/readyz`, `/metrics` and the JSON state API
//! under `/api/v1/`, described by an OpenAPI document at `/api/v1/openapi.json`.
//!
//! Nothing here can change anything: every method but GET and HEAD is answered 405, the
//! handlers only read the published [`hub::Snapshot`], the state database and Docker, and
//! every body is redacted. On a non-loopback address a bearer token is required
//! (`--api-token-file`, see [`tokens`]); without it the server refuses to start. Every
//! response carries the [`SECURITY_HEADERS`], refusals included.

pub mod backups;
pub mod hosts;
pub mod openapi;
pub mod overview;
pub mod reply;

pub mod routes;

pub mod server;

pub mod tokens;

pub mod ui;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tracing::warn;

use crate::docker::engine::Engine;
pub use crate::hub::Hub;
use crate::state::StateDb;

/// What every handler can read.
#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub state: Arc<StateDb>,
    /// `None` when Docker was not reachable at start (tests of the router alone).
    pub engine: Option<Engine>,
    /// The repository as this host sees it, read when the daemon has no catalog yet.
    pub repository: crate::repo::Repository,
    /// The per-run log files.
    pub logs: PathBuf,
    /// The repositories of Repository specs by name, when the daemon has them open
    /// ([`AppState::with_named_repositories`]).
    named: Option<NamedRepositories>,
    tokens: Option<tokens::Tokens>,
    openapi: Bytes,
}

/// Finds a repository of a Repository spec by name, or says why it cannot be read.
pub type NamedRepositories =
    Arc<dyn Fn(&str) -> Result<crate::repo::Repository, String> + Send + Sync>;

impl AppState {
    /// `token` is the one token of the format of earlier releases (`default`, scope
    /// `read`); [`AppState::with_tokens`] sets a token file's.
    pub fn new(
        hub: Arc<Hub>,
        state: Arc<StateDb>,
        engine: Option<Engine>,
        repository: crate::repo::Repository,
        logs: PathBuf,
        token: Option<String>,
    ) -> AppState {
        AppState {
            hub,
            state,
            engine,
            repository,
            logs,
            named: None,
            tokens: token.as_deref().map(tokens::Tokens::single),
            openapi: Bytes::from(openapi::document(&routes::routes()).to_string()),
        }
    }

    /// The tokens of `--api-token-file`; `None` serves without tokens (loopback only).
    pub fn with_tokens(mut self, tokens: Option<tokens::Tokens>) -> AppState {
        self.tokens = tokens;
        self
    }

    /// How the archive routes reach the repositories of Repository specs; without it
    /// only `default` can be read.
    pub fn with_named_repositories(mut self, named: NamedRepositories) -> AppState {
        self.named = Some(named);
        self
    }

    /// The repository `name`: `default`, or a Repository spec's when the daemon has it.
    pub fn repository_named(&self, name: &str) -> Result<crate::repo::Repository, String> {
        if name == crate::spec::repository::DEFAULT_REPOSITORY {
            return Ok(self.repository.clone());
        }
        match &self.named {
            Some(named) => named(name),
            None => Err("only the default repository can be read through the API here".into()),
        }
    }
}

/// Sent with every response: the dashboard's page may load its own scripts, styles and
/// images and talk to this server, nothing else; no page may frame it; no response is
/// sniffed into another type; no address leaks in a Referer.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];

/// Adds the [`SECURITY_HEADERS`] to a response.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}

/// The router with every route of [`routes::routes`] and the guard in front.
pub fn router(app: AppState) -> Router {
    let mut router = Router::new();
    for route in routes::routes() {
        router = router.route(route.path, route.handler);
    }
    ui::routes(router)
        .fallback(|| async { reply::fixed_error(StatusCode::NOT_FOUND, reply::NO_SUCH_ROUTE) })
        .layer(axum::middleware::from_fn_with_state(app.clone(), guard))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app)
}

/// Checks the token, then the method, before any handler runs: an unauthenticated client
/// learns nothing, not even which paths exist. See [`tokens`] for what needs which scope.
async fn guard(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if let (Some(tokens), tokens::Access::Token(needed)) =
        (&app.tokens, tokens::needs(request.uri().path()))
    {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let path = request.uri().path();
        match tokens.find(given) {
            // Not logged: see the tokens module.
            None => {
                let mut response = reply::fixed_error(
                    StatusCode::UNAUTHORIZED,
                    "a bearer token is required: send the header `Authorization: Bearer <token>` with a token of --api-token-file",
                );
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"holdfast\""),
                );
                return response;
            }
            Some(token) if token.expired(chrono::Utc::now()) => {
                let at = token
                    .expires
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default();
                warn!(token = %token.name, path, expired = %at, "refused an expired API token");
                let mut response = reply::plain_error(
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "the token `{}` expired at {at}: give it a new expiry in --api-token-file, or use another token",
                        token.name
                    ),
                );
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"holdfast\", error=\"invalid_token\""),
                );
                return response;
            }
            Some(token) if !token.scope.covers(needed) => {
                warn!(token = %token.name, path, scope = token.scope.as_str(), needed = needed.as_str(), "refused an API token out of its scope");
                return reply::plain_error(
                    StatusCode::FORBIDDEN,
                    format!(
                        "the token `{}` has scope `{}` and this path needs `{}`",
                        token.name,
                        token.scope.as_str(),
                        needed.as_str()
                    ),
                );
            }
            Some(_) => {}
        }
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "{} is not allowed: the API is read-only (GET and HEAD only)",
                request.method()
            ),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    next.run(request).await
}

/// Compares in time that does not depend on where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "--listen {0} is not a loopback address: the API needs --api-token-file (a file holding the bearer token) there"
    )]
    NeedsToken(SocketAddr),
    #[error(transparent)]
    Tokens(#[from] tokens::TokenFileError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Reads the token file (see [`tokens`]) and checks that a non-loopback address has one.
pub fn load_tokens(
    listen: SocketAddr,
    file: Option<&Path>,
) -> Result<Option<tokens::Tokens>, ServeError> {
    let tokens = file.map(tokens::Tokens::load).transpose()?;
    if tokens.is_none() && !listen.ip().is_loopback() {
        return Err(ServeError::NeedsToken(listen));
    }
    Ok(tokens)
}

/// Binds `addr`; the server runs on the returned listener.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves until `stop` resolves, then stops accepting and lets requests in flight end;
/// see [`server`] for what a connection may cost.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: AppState,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, router(app), stop).await
}

/// A response's body as bytes, for tests and tools.
pub async fn body_bytes(response: Response) -> Bytes {
    axum::body::to_bytes(response.into_response().into_body(), 64 << 20)
        .await
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_backups;
#[cfg(test)]
mod tests_tokens;
