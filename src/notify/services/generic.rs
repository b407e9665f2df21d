//! `generic+https://host/path?query` (and `generic+http://`): a POST of the message's
//! documented JSON body ([`Message::json`]) to `https://host/path?query`, for any webhook
//! receiver.

use crate::notify::message::{Message, Occasion};
use crate::notify::target::{Body, HttpRequest};

pub const SCHEMES: &[&str] = &["generic+https", "generic+http"];

#[derive(Debug)]
pub struct Generic {
    url: url::Url,
}

impl Generic {
    pub fn parse(url: &url::Url) -> Result<Generic, String> {
        let scheme = url.scheme().trim_start_matches("generic+");
        if url.host_str().is_none_or(str::is_empty) {
            return Err("names no host; expected generic+https://host/path".into());
        }
        let text = url.as_str().replacen(url.scheme(), scheme, 1);
        let url = url::Url::parse(&text).map_err(|e| format!("is not a valid URL: {e}"))?;
        Ok(Generic { url })
    }

    pub fn secrets(&self) -> Vec<String> {
        // A query may carry a token; the user and password are taken by the caller.
        self.url
            .query_pairs()
            .map(|(_, v)| v.into_owned())
            .collect()
    }

    pub fn requests(&self, message: &Message) -> Vec<HttpRequest> {
        if message.occasion == Occasion::Started {
            return Vec::new();
        }
        let mut url = self.url.clone();
        let mut headers = Vec::new();
        if !url.username().is_empty() {
            headers.push((
                "Authorization".to_string(),
                super::basic_auth(url.username(), url.password().unwrap_or("")),
            ));
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        vec![HttpRequest {
            method: "POST",
            url: url.to_string(),
            headers,
            body: Some(Body::json(&message.json())),
            check_ok: false,
        }]
    }
}
