//! `gotify://host[:port][/path]/TOKEN?disabletls=yes&priority=` (shoutrrr's format): a
//! POST of `{title, message, priority, extras}` to `https://host/path/message`, the
//! application token in `X-Gotify-Key`, the message in Markdown (Gotify's clients render
//! it when `extras."client::display".contentType` says so).

use crate::notify::message::{Message, Occasion, Severity};
use crate::notify::target::{Body, HttpRequest};

/// The URL schemes of this service.
pub const SCHEMES: &[&str] = &["gotify"];

const EXAMPLE: &str = "gotify://gotify.example/TOKEN";

/// A parsed `gotify://` URL: where to send, and its secret parts.
#[derive(Debug)]
pub struct Gotify {
    /// `https://host[:port][/path]/message`.
    message_url: String,
    token: String,
    /// Gotify's 0 to 10; `None` follows the severity.
    priority: Option<u8>,
}

impl Gotify {
    /// Checks the URL; the error says what is wrong without repeating the URL.
    pub fn parse(url: &url::Url) -> Result<Gotify, String> {
        let web = super::web_scheme(url)?;
        let origin = super::origin(url, web, EXAMPLE)?;
        let mut segments = super::segments(url);
        let token = segments
            .pop()
            .ok_or_else(|| format!("names no application token; expected {EXAMPLE}"))?;
        let priority = match super::query(url, "priority") {
            None => None,
            Some(p) => Some(
                p.parse::<u8>()
                    .ok()
                    .filter(|p| *p <= 10)
                    .ok_or_else(|| "has a priority other than 0-10".to_string())?,
            ),
        };
        let mut message_url = origin;
        for segment in &segments {
            message_url.push('/');
            message_url.push_str(segment);
        }
        message_url.push_str("/message");
        Ok(Gotify {
            message_url,
            token,
            priority,
        })
    }

    /// The secret parts of the URL, to hide wherever holdfast prints it.
    pub fn secrets(&self) -> Vec<String> {
        vec![self.token.clone()]
    }

    /// The requests a message becomes (none on an occasion the service does not hear of).
    pub fn requests(&self, message: &Message) -> Vec<HttpRequest> {
        if message.occasion == Occasion::Started {
            return Vec::new();
        }
        let priority = self.priority.unwrap_or(match message.severity() {
            Severity::Failure => 8,
            Severity::Warning => 5,
            Severity::Success | Severity::Info => 2,
        });
        let body = serde_json::json!({
            "title": message.title,
            "message": message.markdown(),
            "priority": priority,
            "extras": {"client::display": {"contentType": "text/markdown"}},
        });
        vec![HttpRequest {
            method: "POST",
            url: self.message_url.clone(),
            headers: vec![("X-Gotify-Key".to_string(), self.token.clone())],
            body: Some(Body::json(&body)),
            check_ok: false,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::services::tests::{header, json, secrets_hidden, url};

    #[test]
    fn the_last_path_segment_is_the_token_and_the_rest_a_prefix() {
        let g = Gotify::parse(&url(
            "gotify://push.example:8443/gotify/AbCdEf123?priority=3",
        ))
        .unwrap();
        assert_eq!(g.message_url, "https://push.example:8443/gotify/message");
        assert_eq!(g.token, "AbCdEf123");
        assert_eq!(g.priority, Some(3));
        let g = Gotify::parse(&url("gotify://push.example/AbC?disabletls=yes")).unwrap();
        assert_eq!(g.message_url, "http://push.example/message");
        for (bad, says) in [
            ("gotify://push.example", "names no application token"),
            (
                "gotify://push.example/T?priority=11",
                "priority other than 0-10",
            ),
            ("gotify://push.example/T?disabletls=maybe", "disabletls"),
        ] {
            let e = Gotify::parse(&url(bad)).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_token_is_secret() {
        secrets_hidden("gotify://push.example/AbCdEf123", &["AbCdEf123"]);
    }

    #[test]
    fn a_failed_run_is_markdown_json_with_a_high_priority() {
        let g = Gotify::parse(&url("gotify://push.example/AbC")).unwrap();
        let r = &g.requests(&Message::example())[0];
        assert_eq!(
            (r.method, r.url.as_str()),
            ("POST", "https://push.example/message")
        );
        assert_eq!(header(r, "X-Gotify-Key"), Some("AbC"));
        let body = json(r);
        assert_eq!(body["title"], "BackupPolicy/nextcloud failed on nas");
        assert_eq!(body["message"], Message::example().markdown());
        assert_eq!(body["priority"], 8);
        assert_eq!(
            body["extras"]["client::display"]["contentType"],
            "text/markdown"
        );
    }
}
