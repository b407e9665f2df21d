//! `pushover://shoutrrr:APITOKEN@USERKEY/?devices=a,b&priority=` (shoutrrr's format; the
//! user before the `:` is not used): a form POST to
//! `https://api.pushover.net/1/messages.json` of the application token, the user key, the
//! title, the message as HTML, its priority, devices and link.

use crate::notify::message::{Message, Occasion, Severity};
use crate::notify::target::{Body, HttpRequest};

/// The URL schemes of this service.
pub const SCHEMES: &[&str] = &["pushover"];

const EXAMPLE: &str = "pushover://shoutrrr:APITOKEN@USERKEY/";

/// Pushover takes at most 1024 characters of message and 250 of title.
const MESSAGE_MAX: usize = 1024;
const TITLE_MAX: usize = 250;

/// A parsed `pushover://` URL: where to send, and its secret parts.
#[derive(Debug)]
pub struct Pushover {
    token: String,
    user_key: String,
    devices: Vec<String>,
    /// Pushover's -2 to 1; `None` follows the severity.
    priority: Option<i8>,
}

impl Pushover {
    /// Checks the URL; the error says what is wrong without repeating the URL.
    pub fn parse(url: &url::Url) -> Result<Pushover, String> {
        let token = url.password().unwrap_or_default().to_string();
        if token.is_empty() {
            return Err(format!(
                "names no application token (after the `:`, before the @); expected {EXAMPLE}"
            ));
        }
        let user_key = url.host_str().unwrap_or_default().to_string();
        if user_key.is_empty() {
            return Err(format!("names no user key after the @; expected {EXAMPLE}"));
        }
        let priority = match super::query(url, "priority") {
            None => None,
            Some(p) => Some(p.parse::<i8>().ok().filter(|p| (-2..=1).contains(p)).ok_or_else(
                || {
                    "has a priority other than -2 to 1 (2, emergency, needs retry and expire, which holdfast does not send)"
                        .to_string()
                },
            )?),
        };
        Ok(Pushover {
            token,
            user_key,
            devices: super::list(url, "devices"),
            priority,
        })
    }

    /// The secret parts of the URL, to hide wherever holdfast prints it.
    pub fn secrets(&self) -> Vec<String> {
        vec![self.token.clone(), self.user_key.clone()]
    }

    /// The requests a message becomes (none on an occasion the service does not hear of).
    pub fn requests(&self, message: &Message) -> Vec<HttpRequest> {
        if message.occasion == Occasion::Started {
            return Vec::new();
        }
        let priority = self
            .priority
            .unwrap_or(match message.severity() {
                Severity::Failure => 1,
                Severity::Warning => 0,
                Severity::Success | Severity::Info => -1,
            })
            .to_string();
        let title = super::cut(&message.title, TITLE_MAX);
        let text = super::cut(&message.html(), MESSAGE_MAX);
        let timestamp = message.time.timestamp().to_string();
        let devices = self.devices.join(",");
        let mut fields = vec![
            ("token", self.token.as_str()),
            ("user", self.user_key.as_str()),
            ("title", title.as_str()),
            ("message", text.as_str()),
            ("html", "1"),
            ("priority", priority.as_str()),
            ("timestamp", timestamp.as_str()),
        ];
        if !devices.is_empty() {
            fields.push(("device", devices.as_str()));
        }
        if let Some(link) = &message.link {
            fields.push(("url", link.as_str()));
            fields.push(("url_title", "Open in holdfast"));
        }
        vec![HttpRequest::post(
            super::fixed("https://api.pushover.net", "/1/messages.json"),
            Body::form(&fields),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::services::tests::{secrets_hidden, url};

    #[test]
    fn a_token_a_user_key_devices_and_a_priority() {
        let p = Pushover::parse(&url(
            "pushover://shoutrrr:aTokEn@uKeY/?devices=phone,tablet&priority=-1",
        ))
        .unwrap();
        assert_eq!((p.token.as_str(), p.user_key.as_str()), ("aTokEn", "uKeY"));
        assert_eq!(p.devices, ["phone", "tablet"]);
        assert_eq!(p.priority, Some(-1));
        for (bad, says) in [
            ("pushover://shoutrrr@uKeY/", "names no application token"),
            ("pushover://shoutrrr:t@u/?priority=2", "emergency"),
        ] {
            let e = Pushover::parse(&url(bad)).map(|_| ()).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_token_and_the_user_key_are_secret() {
        secrets_hidden("pushover://shoutrrr:aTokEn@uKeY/", &["aTokEn", "uKeY"]);
    }

    #[test]
    fn a_failed_run_is_a_form_with_html_and_a_high_priority() {
        let p = Pushover::parse(&url("pushover://shoutrrr:tok@user/?devices=phone")).unwrap();
        let r = &p.requests(&Message::example())[0];
        if std::env::var_os(super::super::TEST_API_BASE).is_none() {
            assert_eq!(r.url, "https://api.pushover.net/1/messages.json");
        }
        let body = r.body.as_ref().unwrap();
        assert_eq!(body.content_type, "application/x-www-form-urlencoded");
        let fields: std::collections::BTreeMap<String, String> =
            url::form_urlencoded::parse(&body.bytes)
                .into_owned()
                .collect();
        assert_eq!(fields["token"], "tok");
        assert_eq!(fields["user"], "user");
        assert_eq!(fields["title"], "BackupPolicy/nextcloud failed on nas");
        assert_eq!(fields["message"], Message::example().html());
        assert_eq!(fields["html"], "1");
        assert_eq!(fields["priority"], "1");
        assert_eq!(fields["device"], "phone");
        assert_eq!(
            fields["url"],
            "https://holdfast.example/api/v1/policies/nextcloud"
        );
        assert_eq!(
            fields["timestamp"],
            Message::example().time.timestamp().to_string()
        );
    }
}
