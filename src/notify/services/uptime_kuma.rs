//! `uptime-kuma://host[:port][/path]/api/push/TOKEN?scheme=http`: a heartbeat. An Uptime
//! Kuma push monitor hears at each run's end `GET …/api/push/TOKEN?status=up|down&msg=…&ping=MS`
//! (the run's duration), `up` for a success and `down` for a failed or partly failed
//! run; other events are not sent. `holdfast notify test` sends `up`.

use crate::notify::message::{Message, Occasion};
use crate::notify::target::HttpRequest;
use crate::spec::notifier::NotifyEvent;

/// The URL schemes of this service.
pub const SCHEMES: &[&str] = &["uptime-kuma"];

const EXAMPLE: &str = "uptime-kuma://kuma.example/api/push/TOKEN";

/// A parsed `uptime-kuma://` URL: where to send, and its secret parts.
#[derive(Debug)]
pub struct UptimeKuma {
    /// `https://host[:port][/path]/api/push/TOKEN`.
    push_url: url::Url,
    token: String,
}

impl UptimeKuma {
    /// Checks the URL; the error says what is wrong without repeating the URL.
    pub fn parse(url: &url::Url) -> Result<UptimeKuma, String> {
        let web = super::web_scheme(url)?;
        let mut push_url = super::origin(url, web, EXAMPLE)?;
        let segments = super::segments(url);
        let token = match segments.as_slice() {
            [.., api, push, token] if api == "api" && push == "push" => token.clone(),
            _ => {
                return Err(format!(
                    "has a path not ending in /api/push/TOKEN; expected {EXAMPLE}"
                ));
            }
        };
        for segment in &segments {
            push_url.push('/');
            push_url.push_str(segment);
        }
        let push_url =
            url::Url::parse(&push_url).map_err(|e| format!("is not a valid URL: {e}"))?;
        Ok(UptimeKuma { push_url, token })
    }

    /// The secret parts of the URL, to hide wherever holdfast prints it.
    pub fn secrets(&self) -> Vec<String> {
        vec![self.token.clone()]
    }

    /// The requests a message becomes (none on an occasion the service does not hear of).
    pub fn requests(&self, message: &Message) -> Vec<HttpRequest> {
        let status = match message.occasion {
            Occasion::Event(NotifyEvent::Succeeded) | Occasion::Test => "up",
            Occasion::Event(NotifyEvent::Failed | NotifyEvent::PartiallyFailed) => "down",
            _ => return Vec::new(),
        };
        let mut url = self.push_url.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("status", status);
            query.append_pair("msg", &message.title);
            if let Some(run) = &message.run {
                let ms = (run.duration_seconds * 1000.0).round() as u64;
                query.append_pair("ping", &ms.to_string());
            }
        }
        vec![HttpRequest {
            method: "GET",
            url: url.to_string(),
            headers: Vec::new(),
            body: None,
            check_ok: false,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::services::tests::{secrets_hidden, url};

    #[test]
    fn the_path_ends_in_api_push_token() {
        let k = UptimeKuma::parse(&url(
            "uptime-kuma://kuma.lan:3001/api/push/AbC123?scheme=http",
        ))
        .unwrap();
        assert_eq!(k.push_url.as_str(), "http://kuma.lan:3001/api/push/AbC123");
        assert_eq!(k.token, "AbC123");
        let e = UptimeKuma::parse(&url("uptime-kuma://kuma.lan/push/AbC123")).unwrap_err();
        assert!(e.contains("not ending in /api/push/TOKEN"), "{e}");
        assert!(!e.contains("AbC123"), "{e}");
    }

    #[test]
    fn the_token_is_secret() {
        secrets_hidden("uptime-kuma://kuma.lan/api/push/AbC123", &["AbC123"]);
    }

    #[test]
    fn a_failed_run_is_down_with_its_duration() {
        let k = UptimeKuma::parse(&url("uptime-kuma://kuma.lan/api/push/AbC123")).unwrap();
        let r = &k.requests(&Message::example())[0];
        assert_eq!(r.method, "GET");
        assert_eq!(
            r.url,
            "https://kuma.lan/api/push/AbC123?status=down&msg=BackupPolicy%2Fnextcloud+failed+on+nas&ping=42500"
        );
        let test = Message::for_test("nas", chrono::Utc::now());
        assert!(k.requests(&test)[0].url.contains("status=up"));
        let mut started = Message::example();
        started.occasion = Occasion::Started;
        assert!(k.requests(&started).is_empty());
    }
}
