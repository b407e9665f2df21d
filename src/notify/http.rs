//! Sends the HTTP requests services render, through one shared client (rustls on ring,
//! the platform's trusted roots, so `SSL_CERT_FILE` and the system store both work).

use std::sync::{Once, OnceLock};
use std::time::Duration;

use super::target::{HttpRequest, SendError};

/// The body of an error answer kept for the message, in characters.
const ANSWER_EXCERPT: usize = 200;

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        // Another part of the process may have installed one already; either is fine.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .user_agent(concat!("holdfast/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap_or_default()
    })
}

/// Sends one request; a 2xx answer is success. Connection errors, timeouts, 429 and 5xx
/// may be retried; other answers may not.
pub async fn send(request: &HttpRequest, timeout: Duration) -> Result<(), SendError> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|e| SendError {
        message: e.to_string(),
        retry: false,
    })?;
    let mut builder = client().request(method, &request.url).timeout(timeout);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = &request.body {
        builder = builder
            .header(reqwest::header::CONTENT_TYPE, &body.content_type)
            .body(body.bytes.clone());
    }
    let answer = builder.send().await.map_err(|e| SendError {
        message: describe(&e),
        retry: true,
    })?;
    let status = answer.status();
    if status.is_success() {
        if !request.check_ok {
            return Ok(());
        }
        let text = answer.text().await.unwrap_or_default();
        return check_ok(&text);
    }
    let text = answer.text().await.unwrap_or_default();
    let excerpt: String = text.trim().chars().take(ANSWER_EXCERPT).collect();
    Err(SendError {
        message: if excerpt.is_empty() {
            format!("the service answered {status}")
        } else {
            format!("the service answered {status}: {excerpt}")
        },
        retry: status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
    })
}

/// A 2xx answer of an API that says `{"ok": false}` on errors: success only with `ok`
/// true. The service's own words (`error`, `description`) are kept for the message.
fn check_ok(text: &str) -> Result<(), SendError> {
    let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    if value["ok"] == serde_json::Value::Bool(true) {
        return Ok(());
    }
    let said = ["error", "description"]
        .iter()
        .filter_map(|k| value[k].as_str())
        .collect::<Vec<_>>()
        .join(": ");
    let excerpt: String = if said.is_empty() {
        text.trim().chars().take(ANSWER_EXCERPT).collect()
    } else {
        said.chars().take(ANSWER_EXCERPT).collect()
    };
    Err(SendError {
        message: format!("the service refused the message: {excerpt}"),
        // A rate limit passes; anything else (a wrong token or channel) does not.
        retry: excerpt.contains("ratelimited") || excerpt.contains("Too Many Requests"),
    })
}

/// A client error in words a person can act on, with its causes.
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "the service did not answer in time"
    } else if e.is_connect() {
        "could not connect to the service"
    } else {
        "the request failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    if causes.is_empty() {
        format!("{what}: {e}")
    } else {
        format!("{what}: {e}: {}", causes.join(": "))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_ok_false_answer_is_a_refusal_in_the_services_words() {
        assert!(super::check_ok(r#"{"ok":true,"ts":"1"}"#).is_ok());
        let e = super::check_ok(r#"{"ok":false,"error":"channel_not_found"}"#).unwrap_err();
        assert_eq!(
            e.message,
            "the service refused the message: channel_not_found"
        );
        assert!(!e.retry);
        let e = super::check_ok("<html>proxy</html>").unwrap_err();
        assert!(e.message.ends_with("<html>proxy</html>"), "{}", e.message);
        assert!(
            super::check_ok(r#"{"ok":false,"error":"ratelimited"}"#)
                .unwrap_err()
                .retry
        );
    }
}
