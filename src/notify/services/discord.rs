//! `discord://TOKEN@WEBHOOKID` (shoutrrr's format, from the webhook URL
//! `https://discord.com/api/webhooks/WEBHOOKID/TOKEN`): a POST of one embed, coloured by
//! severity, with the facts as inline fields.

use chrono::SecondsFormat;

use crate::notify::message::{Message, Occasion, Severity};
use crate::notify::target::{Body, HttpRequest};

/// The URL schemes of this service.
pub const SCHEMES: &[&str] = &["discord"];

const EXAMPLE: &str = "discord://TOKEN@WEBHOOKID";

/// Discord's limits on an embed's parts, in characters.
const TITLE_MAX: usize = 256;
const DESCRIPTION_MAX: usize = 4096;
const FIELD_MAX: usize = 1024;

/// A parsed `discord://` URL: where to send, and its secret parts.
#[derive(Debug)]
pub struct Discord {
    token: String,
    webhook_id: String,
}

impl Discord {
    /// Checks the URL; the error says what is wrong without repeating the URL.
    pub fn parse(url: &url::Url) -> Result<Discord, String> {
        let token = url.username().to_string();
        if token.is_empty() {
            return Err(format!(
                "names no webhook token before the @; expected {EXAMPLE}"
            ));
        }
        let webhook_id = url.host_str().unwrap_or_default().to_string();
        if webhook_id.is_empty() {
            return Err(format!(
                "names no webhook id after the @; expected {EXAMPLE}"
            ));
        }
        if !webhook_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "has a webhook id (after the @) that is not all digits; expected {EXAMPLE}, from https://discord.com/api/webhooks/WEBHOOKID/TOKEN"
            ));
        }
        Ok(Discord { token, webhook_id })
    }

    /// The secret parts of the URL, to hide wherever holdfast prints it.
    pub fn secrets(&self) -> Vec<String> {
        vec![self.token.clone(), self.webhook_id.clone()]
    }

    /// The requests a message becomes (none on an occasion the service does not hear of).
    pub fn requests(&self, message: &Message) -> Vec<HttpRequest> {
        if message.occasion == Occasion::Started {
            return Vec::new();
        }
        let color = match message.severity() {
            Severity::Failure => 0xE7_4C_3C,
            Severity::Warning => 0xF1_C4_0F,
            Severity::Success => 0x2E_CC_71,
            Severity::Info => 0x34_98_DB,
        };
        let mut description = message.text.clone();
        if !message.errors.is_empty() {
            description.push_str("\n```\n");
            description.push_str(&message.errors.join("\n"));
            description.push_str("\n```");
        }
        let fields: Vec<serde_json::Value> = message
            .facts()
            .into_iter()
            .map(|(name, value)| {
                serde_json::json!({"name": name, "value": super::cut(&value, FIELD_MAX), "inline": true})
            })
            .collect();
        let mut embed = serde_json::json!({
            "title": super::cut(&message.title, TITLE_MAX),
            "description": super::cut(&description, DESCRIPTION_MAX),
            "color": color,
            "fields": fields,
            "timestamp": message.time.to_rfc3339_opts(SecondsFormat::Secs, true),
        });
        if let Some(link) = &message.link {
            embed["url"] = link.clone().into();
        }
        let body = serde_json::json!({"username": "holdfast", "embeds": [embed]});
        vec![HttpRequest::post(
            super::fixed(
                "https://discord.com",
                &format!("/api/webhooks/{}/{}", self.webhook_id, self.token),
            ),
            Body::json(&body),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::services::tests::{json, secrets_hidden, url};

    #[test]
    fn the_token_comes_before_the_at_and_the_webhook_id_after() {
        let d = Discord::parse(&url("discord://AbC-dEf_123@123456789012345678")).unwrap();
        assert_eq!(d.token, "AbC-dEf_123");
        assert_eq!(d.webhook_id, "123456789012345678");
        for (bad, says) in [
            ("discord://123456789012345678", "names no webhook token"),
            ("discord://tok@webhook", "not all digits"),
        ] {
            let e = Discord::parse(&url(bad)).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("tok@"), "{e}");
        }
    }

    #[test]
    fn the_token_and_the_webhook_id_are_secret() {
        secrets_hidden(
            "discord://AbC-dEf_123@123456789012345678",
            &["AbC-dEf_123", "123456789012345678"],
        );
    }

    #[test]
    fn a_failed_run_is_a_red_embed_with_the_facts_as_fields() {
        let d = Discord::parse(&url("discord://tok@42")).unwrap();
        let r = &d.requests(&Message::example())[0];
        assert_eq!(r.method, "POST");
        if std::env::var_os(super::super::TEST_API_BASE).is_none() {
            assert_eq!(r.url, "https://discord.com/api/webhooks/42/tok");
        }
        let body = json(r);
        assert_eq!(body["username"], "holdfast");
        let embed = &body["embeds"][0];
        assert_eq!(embed["title"], "BackupPolicy/nextcloud failed on nas");
        assert_eq!(embed["color"], 0xE74C3C);
        assert_eq!(embed["timestamp"], "2026-11-24T03:00:42Z");
        assert_eq!(
            embed["url"],
            "https://holdfast.example/api/v1/policies/nextcloud"
        );
        assert!(
            embed["description"]
                .as_str()
                .unwrap()
                .contains("```\ndump db: pg_dump")
        );
        assert_eq!(embed["fields"][0]["name"], "Object");
        assert_eq!(embed["fields"][0]["value"], "BackupPolicy/nextcloud");
        assert_eq!(embed["fields"][0]["inline"], true);
    }
}
