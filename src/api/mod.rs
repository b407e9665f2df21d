//! The read-only HTTP server: `/healthz`, `/readyz`, `/metrics` and the JSON state API
//! under `/api/v1/`, described by an OpenAPI document at `/api/v1/openapi.json`.
//!
//! Nothing here can change anything: every method but GET and HEAD is answered 405, the
//! handlers only read the published [`hub::Snapshot`], the state database and Docker, and
//! every body is redacted. On a non-loopback address a bearer token is required
//! (`--api-token-file`); without it the server refuses to start.

pub mod openapi;
pub mod overview;
pub mod reply;

pub mod routes;

pub mod server;

pub mod ui;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

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
    token: Option<Arc<str>>,
    openapi: Bytes,
}

impl AppState {
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
            token: token.map(Arc::from),
            openapi: Bytes::from(openapi::document(&routes::routes()).to_string()),
        }
    }
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
        .with_state(app)
}

/// Checks the token, then the method, before any handler runs: an unauthenticated client
/// learns nothing, not even which paths exist.
async fn guard(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = &app.token
        && request.uri().path() != "/healthz"
        && !ui::is_page(request.uri().path())
    {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.as_bytes(), token.as_bytes()) {
            let mut response = reply::fixed_error(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required: send the header `Authorization: Bearer <token>` with the token of --api-token-file",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"holdfast\""),
            );
            return response;
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
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
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
    #[error("reading the API token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the API token file {0} is empty")]
    EmptyToken(PathBuf),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Reads the token file (trailing whitespace ignored) and checks that a non-loopback
/// address has one.
pub fn load_token(listen: SocketAddr, file: Option<&Path>) -> Result<Option<String>, ServeError> {
    let token = match file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ServeError::TokenFile {
                path: path.to_path_buf(),
                source,
            })?;
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(ServeError::EmptyToken(path.to_path_buf()));
            }
            Some(token)
        }
    };
    if token.is_none() && !listen.ip().is_loopback() {
        return Err(ServeError::NeedsToken(listen));
    }
    Ok(token)
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
