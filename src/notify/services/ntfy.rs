//! `ntfy://[user:password@]host[:port]/topic?scheme=http&priority=&tags=` (shoutrrr's
//! format): a POST of the message as plain text to `https://host/topic`, its title,
//! priority, tags and link in ntfy's `X-` headers. With a user, the user and password go
//! as Basic auth; with an empty user (`ntfy://:tk_TOKEN@host/topic`) the password is an
//! access token, sent as `Authorization: Bearer`.

use crate::notify::message::{Message, Occasion, Severity};
use crate::notify::target::{Body, HttpRequest};

/// The URL schemes of this service.
pub const SCHEMES: &[&str] = &["ntfy"];

const EXAMPLE: &str = "ntfy://ntfy.sh/TOPIC";

/// A parsed `ntfy://` URL: where to send, and its secret parts.
#[derive(Debug)]
pub struct Ntfy {
    /// `https://host[:port]/topic`.
    topic_url: String,
    user: String,
    password: String,
    /// ntfy's 1 (min) to 5 (max); `None` follows the severity.
    priority: Option<u8>,
    tags: Vec<String>,
}

impl Ntfy {
    /// Checks the URL; the error says what is wrong without repeating the URL.
    pub fn parse(url: &url::Url) -> Result<Ntfy, String> {
        let web = super::web_scheme(url)?;
        let origin = super::origin(url, web, EXAMPLE)?;
        let segments = super::segments(url);
        let topic = match segments.as_slice() {
            [topic] => topic.clone(),
            [] => return Err(format!("names no topic; expected {EXAMPLE}")),
            _ => {
                return Err(format!(
                    "has more than one path segment; the path is the topic alone, e.g. {EXAMPLE}"
                ));
            }
        };
        let priority = match super::query(url, "priority") {
            None => None,
            Some(p) => Some(priority(&p).ok_or_else(|| {
                "has a priority other than 1-5 or min, low, default, high, max, urgent".to_string()
            })?),
        };
        Ok(Ntfy {
            topic_url: format!("{origin}/{topic}"),
            user: url.username().to_string(),
            password: url.password().unwrap_or_default().to_string(),
            priority,
            tags: super::list(url, "tags"),
        })
    }

    /// The secret parts of the URL, to hide wherever holdfast prints it.
    pub fn secrets(&self) -> Vec<String> {
        vec![self.password.clone()]
    }

    /// The requests a message becomes (none on an occasion the service does not hear of).
    pub fn requests(&self, message: &Message) -> Vec<HttpRequest> {
        if message.occasion == Occasion::Started {
            return Vec::new();
        }
        let severity = message.severity();
        let priority = self.priority.unwrap_or(match severity {
            Severity::Failure => 5,
            Severity::Warning => 4,
            Severity::Success | Severity::Info => 3,
        });
        let mut tags = vec![
            match severity {
                Severity::Failure => "rotating_light",
                Severity::Warning => "warning",
                Severity::Success => "white_check_mark",
                Severity::Info => "information_source",
            }
            .to_string(),
        ];
        tags.extend(self.tags.iter().cloned());
        let mut headers = vec![
            ("X-Title".to_string(), header_text(&message.title)),
            ("X-Priority".to_string(), priority.to_string()),
            ("X-Tags".to_string(), header_text(&tags.join(","))),
        ];
        if let Some(link) = &message.link {
            headers.push(("X-Click".to_string(), link.clone()));
        }
        if !self.user.is_empty() {
            headers.push((
                "Authorization".to_string(),
                super::basic_auth(&self.user, &self.password),
            ));
        } else if !self.password.is_empty() {
            headers.push((
                "Authorization".to_string(),
                format!("Bearer {}", self.password),
            ));
        }
        vec![HttpRequest {
            method: "POST",
            url: self.topic_url.clone(),
            headers,
            body: Some(Body::text(&message.plain())),
            check_ok: false,
        }]
    }
}

/// ntfy's priority by number or name.
fn priority(text: &str) -> Option<u8> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "min" => Some(1),
        "2" | "low" => Some(2),
        "3" | "default" => Some(3),
        "4" | "high" => Some(4),
        "5" | "max" | "urgent" => Some(5),
        _ => None,
    }
}

/// A header value as ntfy reads it: ASCII as is, anything else RFC 2047-encoded (HTTP
/// headers carry no UTF-8).
fn header_text(text: &str) -> String {
    if text.is_ascii() {
        text.to_string()
    } else {
        format!("=?UTF-8?B?{}?=", super::base64(text.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::services::tests::{header, secrets_hidden, url};

    #[test]
    fn a_url_names_host_topic_priority_and_tags() {
        let n = Ntfy::parse(&url(
            "ntfy://ntfy.example:8080/backups?scheme=http&priority=high&tags=nas,db",
        ))
        .unwrap();
        assert_eq!(n.topic_url, "http://ntfy.example:8080/backups");
        assert_eq!(n.priority, Some(4));
        assert_eq!(n.tags, ["nas", "db"]);
        assert_eq!(
            Ntfy::parse(&url("ntfy://ntfy.sh/t")).unwrap().topic_url,
            "https://ntfy.sh/t"
        );
        for (bad, says) in [
            ("ntfy://ntfy.sh", "names no topic"),
            ("ntfy://ntfy.sh/a/b", "more than one path segment"),
            ("ntfy://ntfy.sh/t?priority=9", "priority"),
            ("ntfy://ntfy.sh/t?scheme=ftp", "scheme="),
            ("ntfy:///t", "names no host"),
        ] {
            let e = Ntfy::parse(&url(bad)).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_password_or_token_is_secret() {
        secrets_hidden("ntfy://alice:s3cret@ntfy.sh/t", &["s3cret"]);
        secrets_hidden("ntfy://:tk_abcdef@ntfy.sh/t", &["tk_abcdef"]);
        let n = Ntfy::parse(&url("ntfy://:tk_abcdef@ntfy.sh/t")).unwrap();
        assert_eq!(n.secrets(), ["tk_abcdef"]);
    }

    #[test]
    fn a_failed_run_is_urgent_plain_text_with_its_title_tags_and_link() {
        let n = Ntfy::parse(&url("ntfy://alice:pw@ntfy.sh/backups?tags=nas")).unwrap();
        let requests = n.requests(&Message::example());
        let [r] = requests.as_slice() else {
            panic!("{requests:?}")
        };
        assert_eq!(
            (r.method, r.url.as_str()),
            ("POST", "https://ntfy.sh/backups")
        );
        assert_eq!(
            header(r, "X-Title"),
            Some("BackupPolicy/nextcloud failed on nas")
        );
        assert_eq!(header(r, "X-Priority"), Some("5"));
        assert_eq!(header(r, "X-Tags"), Some("rotating_light,nas"));
        assert_eq!(
            header(r, "X-Click"),
            Some("https://holdfast.example/api/v1/policies/nextcloud")
        );
        assert_eq!(header(r, "Authorization"), Some("Basic YWxpY2U6cHc="));
        let body = r.body.as_ref().unwrap();
        assert_eq!(body.content_type, "text/plain; charset=utf-8");
        assert_eq!(
            String::from_utf8_lossy(&body.bytes),
            Message::example().plain()
        );
        let token = Ntfy::parse(&url("ntfy://:tk_x@ntfy.sh/b")).unwrap();
        assert_eq!(
            header(&token.requests(&Message::example())[0], "Authorization"),
            Some("Bearer tk_x")
        );
        assert_eq!(header_text("né"), "=?UTF-8?B?bsOp?=");
    }
}
