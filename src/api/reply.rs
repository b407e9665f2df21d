//! How every answer is shaped: JSON bodies, and one error shape, `{"error": "..."}`, for
//! every refusal, whether a handler, a bad query or path, or the router itself refuses.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use schemars::JsonSchema;
use serde::Serialize;

use crate::hub::redact::to_body;

#[derive(Serialize, JsonSchema)]
pub struct ApiError {
    pub error: String,
}

/// An error on its way to becoming a response.
pub struct Failure(pub StatusCode, pub String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

/// The answer to a path no route has.
pub const NO_SUCH_ROUTE: &str = "no such route; /api/v1/openapi.json lists the routes";

/// An error answer whose text is fixed, not redacted: it holds no user data, and
/// redaction would hide its own advice (`Authorization: Bearer <token>`).
pub fn fixed_error(status: StatusCode, message: &'static str) -> Response {
    let body = serde_json::to_vec(&ApiError {
        error: message.to_string(),
    })
    .unwrap_or_default();
    json(status, Bytes::from(body))
}

/// An error answer whose text is built of what holds no user data (token names, scopes,
/// times), not redacted: redaction would take a token's name for a secret.
pub fn plain_error(status: StatusCode, message: String) -> Response {
    let body = serde_json::to_vec(&ApiError { error: message }).unwrap_or_default();
    json(status, Bytes::from(body))
}

/// The query string as [`Query`] reads it, refused with the API's JSON error body (axum's
/// own rejection is plain text), so every refusal has the same shape.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => {
                let text = rejection.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                let advice = if detail.contains("duplicate field") {
                    "; give each parameter at most once"
                } else {
                    ""
                };
                Err(error(
                    rejection.status(),
                    format!("the query string is not understood: {detail}{advice}"),
                ))
            }
        }
    }
}

/// A path parameter as [`Path`] reads it, refused with the API's JSON error body.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(error(
                rejection.status(),
                format!("the path is not understood: {}", rejection.body_text()),
            )),
        }
    }
}

/// An error answer: a status and `{"error": "..."}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json(
        status,
        to_body(&ApiError {
            error: message.into(),
        }),
    )
}

pub fn json(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}
