//! A notification URL, parsed once: which service, where, and which parts of the URL are
//! secret. Parsing checks everything a service needs, so a bad URL is a validation error
//! (or a Stalled Notifier when the URL comes from the environment), never a failed send.
//!
//! Secrets (tokens, passwords, webhook keys) are remembered as strings, and
//! [`Target::scrub`] replaces them in anything holdfast prints about the target: its
//! [`Target::redacted`] URL, and every error a send returns (HTTP clients put URLs in
//! their errors).

use std::time::Duration;

use super::message::Message;
use super::services::Service;
use super::smtp::Smtp;

/// What replaces a secret in anything holdfast shows.
pub const REDACTED: &str = "***";

/// One HTTP request a service sends for a message.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpRequest {
    /// `GET` or `POST`.
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Body>,
    /// The answer is JSON whose `ok` must be `true`: Slack's web API answers its errors
    /// with 200 and `{"ok": false, "error": …}`, and Telegram's carry `ok` as well.
    pub check_ok: bool,
}

impl HttpRequest {
    /// A POST of `body` with no header of its own, whose 2xx answer is success.
    pub fn post(url: String, body: Body) -> HttpRequest {
        HttpRequest {
            method: "POST",
            url,
            headers: Vec::new(),
            body: Some(body),
            check_ok: false,
        }
    }
}

/// A request body and its content type.
#[derive(Clone, Debug, PartialEq)]
pub struct Body {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl Body {
    pub fn json(value: &serde_json::Value) -> Body {
        Body {
            content_type: "application/json".into(),
            bytes: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    pub fn form(fields: &[(&str, &str)]) -> Body {
        let mut encoded = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in fields {
            encoded.append_pair(k, v);
        }
        Body {
            content_type: "application/x-www-form-urlencoded".into(),
            bytes: encoded.finish().into_bytes(),
        }
    }

    pub fn text(text: &str) -> Body {
        Body {
            content_type: "text/plain; charset=utf-8".into(),
            bytes: text.as_bytes().to_vec(),
        }
    }
}

/// Why a send did not get through; `retry` when trying again may help (no answer, a 5xx,
/// a 429), not when the service refused the message (a 4xx).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub message: String,
    pub retry: bool,
}

#[derive(Debug)]
enum Via {
    Http(Service),
    Smtp(Smtp),
}

/// A parsed notification URL.
#[derive(Debug)]
pub struct Target {
    via: Via,
    scheme: String,
    secrets: Vec<String>,
    redacted: String,
}

impl Target {
    /// Parses and checks a URL. The error says what is wrong without repeating the URL,
    /// which may hold a secret.
    pub fn parse(text: &str) -> Result<Target, String> {
        let text = text.trim();
        let url = url::Url::parse(text).map_err(|e| match e {
            url::ParseError::RelativeUrlWithoutBase => {
                "is not a URL; expected scheme://…, e.g. ntfy://ntfy.sh/backups".to_string()
            }
            e => format!("is not a valid URL: {e}"),
        })?;
        let scheme = url.scheme().to_string();
        let (via, mut secrets) = if Smtp::handles(&scheme) {
            let smtp = Smtp::parse(&url)?;
            let secrets = smtp.secrets();
            (Via::Smtp(smtp), secrets)
        } else if Service::handles(&scheme) {
            let service = Service::parse(&url)?;
            let secrets = service.secrets();
            (Via::Http(service), secrets)
        } else {
            return Err(format!(
                "the scheme `{scheme}` is not one holdfast sends to; use one of {}",
                SCHEMES.join(", ")
            ));
        };
        if let Some(password) = url.password() {
            secrets.push(password.to_string());
        }
        secrets.retain(|s| !s.is_empty());
        // Percent-decoded forms too, as they may appear in a service's own URL.
        let decoded: Vec<String> = secrets
            .iter()
            .filter_map(|s| {
                let d = super::percent_decode(s);
                (d != *s).then_some(d)
            })
            .collect();
        secrets.extend(decoded);
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let mut target = Target {
            via,
            scheme,
            secrets,
            redacted: String::new(),
        };
        target.redacted = target.scrub(text);
        Ok(target)
    }

    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// A heartbeat monitor (Healthchecks, Uptime Kuma): pinged around every run of the
    /// objects it covers, whatever the Notifier's events.
    pub fn is_heartbeat(&self) -> bool {
        match &self.via {
            Via::Http(service) => service.is_heartbeat(),
            Via::Smtp(_) => false,
        }
    }

    /// The URL with its secrets replaced by `***`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// `text` with every secret of this target replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), REDACTED);
        }
        out
    }

    /// The HTTP requests a message becomes (none for SMTP, and none for a heartbeat
    /// service on an occasion it does not hear of).
    pub fn requests(&self, message: &Message) -> Vec<HttpRequest> {
        match &self.via {
            Via::Http(service) => service.requests(message),
            Via::Smtp(_) => Vec::new(),
        }
    }

    /// Sends one message, each attempt within `timeout`. The error is scrubbed.
    pub async fn send(&self, message: &Message, timeout: Duration) -> Result<(), SendError> {
        let sent = match &self.via {
            Via::Http(service) => {
                let mut result = Ok(());
                for request in service.requests(message) {
                    result = super::http::send(&request, timeout).await;
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
            Via::Smtp(smtp) => smtp.send(message, timeout).await,
        };
        sent.map_err(|e| SendError {
            message: self.scrub(&e.message),
            retry: e.retry,
        })
    }
}

/// The schemes holdfast sends to, for messages.
pub const SCHEMES: &[&str] = &[
    "ntfy",
    "gotify",
    "discord",
    "slack",
    "telegram",
    "pushover",
    "smtp",
    "generic+https",
    "generic+http",
    "apprise",
    "healthchecks",
    "uptime-kuma",
];

/// A URL with its secrets replaced by `***`; one that does not parse keeps only its
/// scheme, as its secrets cannot be told apart.
pub fn redact_url(text: &str) -> String {
    match Target::parse(text) {
        Ok(target) => target.redacted().to_string(),
        Err(_) => match text.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://{REDACTED}"),
            None => REDACTED.to_string(),
        },
    }
}
