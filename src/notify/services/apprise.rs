//! `apprise://host[:port][/path]/KEY?scheme=http`: a POST of `{title, body, type,
//! format: "markdown"}` to an Apprise API server's `https://host/path/notify/KEY`, which
//! sends to the URLs stored under KEY. Without a KEY, `?urls=…` names the URLs themselves
//! (Apprise's stateless form): a POST of `{urls, title, body, type, format}` to
//! `https://host/path/notify`.

use crate::notify::message::{Message, Occasion};
use crate::notify::target::{Body, HttpRequest};

/// The URL schemes of this service.
pub const SCHEMES: &[&str] = &["apprise"];

const EXAMPLE: &str = "apprise://apprise.example/KEY or apprise://apprise.example/?urls=…";

/// A parsed `apprise://` URL: where to send, and its secret parts.
#[derive(Debug)]
pub struct Apprise {
    /// `https://host[:port][/path]/notify[/KEY]`.
    notify_url: String,
    key: Option<String>,
    urls: Option<String>,
}

impl Apprise {
    /// Checks the URL; the error says what is wrong without repeating the URL.
    pub fn parse(url: &url::Url) -> Result<Apprise, String> {
        let web = super::web_scheme(url)?;
        let mut notify_url = super::origin(url, web, EXAMPLE)?;
        let mut segments = super::segments(url);
        let urls = super::query(url, "urls");
        let key = match (segments.pop(), &urls) {
            (Some(_), Some(_)) => {
                return Err("names both a KEY and urls=; use one of them".to_string());
            }
            (None, None) => return Err(format!("names no KEY and no urls=; expected {EXAMPLE}")),
            (key, _) => key,
        };
        for segment in &segments {
            notify_url.push('/');
            notify_url.push_str(segment);
        }
        notify_url.push_str("/notify");
        if let Some(key) = &key {
            notify_url.push('/');
            notify_url.push_str(key);
        }
        Ok(Apprise {
            notify_url,
            key,
            urls,
        })
    }

    /// The secret parts of the URL, to hide wherever holdfast prints it.
    pub fn secrets(&self) -> Vec<String> {
        // The key reaches every URL stored under it; the urls hold their own tokens.
        self.key.iter().chain(&self.urls).cloned().collect()
    }

    /// The requests a message becomes (none on an occasion the service does not hear of).
    pub fn requests(&self, message: &Message) -> Vec<HttpRequest> {
        if message.occasion == Occasion::Started {
            return Vec::new();
        }
        let mut body = serde_json::json!({
            "title": message.title,
            "body": message.markdown(),
            "type": message.severity().as_str(),
            "format": "markdown",
        });
        if let Some(urls) = &self.urls {
            body["urls"] = urls.clone().into();
        }
        vec![HttpRequest::post(
            self.notify_url.clone(),
            Body::json(&body),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::services::tests::{json, secrets_hidden, url};

    #[test]
    fn a_key_or_stateless_urls() {
        let a = Apprise::parse(&url("apprise://apprise.lan:8000/api/backups?scheme=http")).unwrap();
        assert_eq!(a.notify_url, "http://apprise.lan:8000/api/notify/backups");
        let a =
            Apprise::parse(&url("apprise://apprise.lan/?urls=tgram://bottoken/ChatID")).unwrap();
        assert_eq!(a.notify_url, "https://apprise.lan/notify");
        assert_eq!(a.urls.as_deref(), Some("tgram://bottoken/ChatID"));
        for (bad, says) in [
            ("apprise://apprise.lan", "names no KEY and no urls="),
            ("apprise://apprise.lan/k?urls=x://y", "both a KEY and urls="),
        ] {
            let e = Apprise::parse(&url(bad)).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_key_and_the_urls_are_secret() {
        secrets_hidden("apprise://apprise.lan/s3cretkey", &["s3cretkey"]);
        secrets_hidden(
            "apprise://apprise.lan/?urls=tgram://bottoken/ChatID",
            &["bottoken"],
        );
    }

    #[test]
    fn a_failed_run_is_a_markdown_failure() {
        let a = Apprise::parse(&url("apprise://apprise.lan/k")).unwrap();
        let r = &a.requests(&Message::example())[0];
        assert_eq!(
            (r.method, r.url.as_str()),
            ("POST", "https://apprise.lan/notify/k")
        );
        let body = json(r);
        assert_eq!(body["title"], "BackupPolicy/nextcloud failed on nas");
        assert_eq!(body["body"], Message::example().markdown());
        assert_eq!(body["type"], "failure");
        assert_eq!(body["format"], "markdown");
        assert!(body.get("urls").is_none());
        let stateless = Apprise::parse(&url("apprise://apprise.lan/?urls=a://b,c://d")).unwrap();
        assert_eq!(
            json(&stateless.requests(&Message::example())[0])["urls"],
            "a://b,c://d"
        );
    }
}
