//! Slack, in shoutrrr's two forms:
//!
//! - a webhook, `slack://hook:A-B-C@webhook` (or the older `slack://A/B/C`), from the
//!   webhook URL `https://hooks.slack.com/services/A/B/C`: a POST of `{text, blocks}`;
//! - a bot, `slack://xoxb:TOKEN@CHANNEL` (the token `xoxb-TOKEN`; `xoxp` for a user
//!   token): a POST of `{channel, text, blocks}` to `https://slack.com/api/chat.postMessage`
//!   with `Authorization: Bearer xoxb-TOKEN`. Slack's web API answers its errors with 200
//!   and `{"ok": false}`, which counts as a failure.
//!
//! `?botname=NAME` (or the older `slack://NAME@A/B/C`) sends as NAME. The blocks: a header with the title, a section with the text, errors and link in
//! Slack's mrkdwn, and the facts as fields.

use crate::notify::message::{Message, Occasion};
use crate::notify::target::{Body, HttpRequest};

/// The URL schemes of this service.
pub const SCHEMES: &[&str] = &["slack"];

const EXAMPLE: &str = "slack://hook:A-B-C@webhook (from https://hooks.slack.com/services/A/B/C) or slack://xoxb:TOKEN@CHANNEL";

/// Slack takes at most ten fields in a section, 150 characters in a header and 3000 in a
/// text.
const FIELDS_MAX: usize = 10;
const HEADER_MAX: usize = 150;
const TEXT_MAX: usize = 3000;

/// A parsed `slack://` URL: where to send, and its secret parts.
#[derive(Debug)]
pub struct Slack {
    via: Via,
    /// The name the message is sent as: `?botname=` (or `username=`), or the user of
    /// the older `slack://botname@A/B/C`.
    bot_name: Option<String>,
}

#[derive(Debug)]
enum Via {
    /// The three parts of `hooks.slack.com/services/A/B/C`.
    Webhook([String; 3]),
    /// `xoxb-…` or `xoxp-…`, and the channel (an id or a name).
    Bot { token: String, channel: String },
}

impl Slack {
    /// Checks the URL; the error says what is wrong without repeating the URL.
    pub fn parse(url: &url::Url) -> Result<Slack, String> {
        let via = Slack::via(url)?;
        let bot_name = super::query(url, "botname").or_else(|| super::query(url, "username"));
        let legacy_name = (!matches!(url.username(), "" | "hook" | "xoxb" | "xoxp"))
            .then(|| url.username().to_string());
        Ok(Slack {
            via,
            bot_name: bot_name.or(legacy_name),
        })
    }

    fn via(url: &url::Url) -> Result<Via, String> {
        let user = url.username();
        let password = url.password().unwrap_or_default();
        let host = url.host_str().unwrap_or_default();
        match user {
            "hook" => {
                let parts: Vec<&str> = password.split(['-', '/']).collect();
                webhook(&parts)
            }
            "xoxb" | "xoxp" => {
                if password.is_empty() {
                    return Err(format!(
                        "names no token after `{user}:`; expected {EXAMPLE}"
                    ));
                }
                if host.is_empty() {
                    return Err(format!("names no channel after the @; expected {EXAMPLE}"));
                }
                Ok(Via::Bot {
                    token: format!("{user}-{password}"),
                    channel: host.to_string(),
                })
            }
            // The older form, `slack://[botname@]A/B/C`.
            _ if password.is_empty() => {
                let mut parts = vec![host.to_string()];
                parts.extend(super::segments(url));
                webhook(&parts.iter().map(String::as_str).collect::<Vec<_>>())
            }
            _ => Err(format!(
                "has a user other than hook, xoxb or xoxp before a `:`; expected {EXAMPLE}"
            )),
        }
    }

    /// The secret parts of the URL, to hide wherever holdfast prints it.
    pub fn secrets(&self) -> Vec<String> {
        match &self.via {
            Via::Webhook(parts) => {
                let mut secrets = parts.to_vec();
                secrets.push(parts.join("-"));
                secrets.push(parts.join("/"));
                secrets
            }
            Via::Bot { token, .. } => {
                let bare = token.split_once('-').map(|(_, t)| t).unwrap_or(token);
                vec![token.clone(), bare.to_string()]
            }
        }
    }

    /// The requests a message becomes (none on an occasion the service does not hear of).
    pub fn requests(&self, message: &Message) -> Vec<HttpRequest> {
        if message.occasion == Occasion::Started {
            return Vec::new();
        }
        let mut body = serde_json::json!({
            "text": message.title,
            "blocks": blocks(message),
        });
        if let Some(name) = &self.bot_name {
            body["username"] = name.clone().into();
        }
        let (url, headers, check_ok) = match &self.via {
            Via::Webhook(parts) => (
                super::fixed(
                    "https://hooks.slack.com",
                    &format!("/services/{}", parts.join("/")),
                ),
                Vec::new(),
                false,
            ),
            Via::Bot { token, channel } => {
                body["channel"] = channel.clone().into();
                (
                    super::fixed("https://slack.com", "/api/chat.postMessage"),
                    vec![("Authorization".to_string(), format!("Bearer {token}"))],
                    true,
                )
            }
        };
        vec![HttpRequest {
            method: "POST",
            url,
            headers,
            body: Some(Body::json(&body)),
            check_ok,
        }]
    }
}

fn webhook(parts: &[&str]) -> Result<Via, String> {
    match parts {
        [a, b, c] if !a.is_empty() && !b.is_empty() && !c.is_empty() => {
            Ok(Via::Webhook([a.to_string(), b.to_string(), c.to_string()]))
        }
        _ => Err(format!(
            "does not name the webhook's three parts; expected {EXAMPLE}"
        )),
    }
}

/// Escapes `&`, `<` and `>`, as Slack's mrkdwn asks.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Header, text (with errors and link) and facts, as Block Kit blocks.
fn blocks(message: &Message) -> serde_json::Value {
    let mut text = escape(&message.text);
    if !message.errors.is_empty() {
        text.push_str("\n```\n");
        text.push_str(&escape(&message.errors.join("\n")));
        text.push_str("\n```");
    }
    if let Some(link) = &message.link {
        text.push_str(&format!("\n<{link}|Open in holdfast>"));
    }
    let fields: Vec<serde_json::Value> = message
        .facts()
        .into_iter()
        .take(FIELDS_MAX)
        .map(|(label, value)| {
            serde_json::json!({"type": "mrkdwn", "text": format!("*{label}*\n{}", escape(&value))})
        })
        .collect();
    serde_json::json!([
        {"type": "header", "text": {"type": "plain_text", "text": super::cut(&message.title, HEADER_MAX)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": super::cut(&text, TEXT_MAX)}},
        {"type": "section", "fields": fields},
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::services::tests::{header, json, secrets_hidden, url};

    #[test]
    fn a_webhook_or_a_bot_token_with_its_channel() {
        let Via::Webhook(parts) = Slack::parse(&url("slack://hook:T0AB-B0CD-XyZ123abc@webhook"))
            .unwrap()
            .via
        else {
            panic!()
        };
        assert_eq!(parts, ["T0AB", "B0CD", "XyZ123abc"]);
        let legacy = Slack::parse(&url("slack://Backups@T0AB/B0CD/XyZ123abc")).unwrap();
        assert_eq!(legacy.bot_name.as_deref(), Some("Backups"));
        let Via::Webhook(parts) = legacy.via else {
            panic!()
        };
        assert_eq!(parts, ["T0AB", "B0CD", "XyZ123abc"]);
        let bot = Slack::parse(&url("slack://xoxb:123-456-aBc@C0ABCDEF?botname=nas")).unwrap();
        assert_eq!(bot.bot_name.as_deref(), Some("nas"));
        let Via::Bot { token, channel } = bot.via else {
            panic!()
        };
        assert_eq!(
            (token.as_str(), channel.as_str()),
            ("xoxb-123-456-aBc", "C0ABCDEF")
        );
        for (bad, says) in [
            ("slack://hook:T0AB-B0CD@webhook", "three parts"),
            ("slack://T0AB/B0CD", "three parts"),
            ("slack://xoxb:@C0ABCDEF", "names no token"),
            ("slack://bot:x@C0ABCDEF", "user other than hook"),
        ] {
            let e = Slack::parse(&url(bad)).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_webhook_parts_and_the_token_are_secret() {
        secrets_hidden(
            "slack://hook:T0AB-B0CD-XyZ123abc@webhook",
            &["XyZ123abc", "B0CD"],
        );
        secrets_hidden(
            "slack://T0AB/B0CD/XyZ123abc",
            &["XyZ123abc", "B0CD", "T0AB"],
        );
        secrets_hidden("slack://xoxb:123-456-aBc@C0ABCDEF", &["123-456-aBc"]);
    }

    #[test]
    fn a_failed_run_is_blocks_with_a_header_text_and_fields() {
        let s = Slack::parse(&url("slack://T0AB/B0CD/XyZ")).unwrap();
        let r = &s.requests(&Message::example())[0];
        assert!(!r.check_ok);
        if std::env::var_os(super::super::TEST_API_BASE).is_none() {
            assert_eq!(r.url, "https://hooks.slack.com/services/T0AB/B0CD/XyZ");
        }
        let body = json(r);
        assert_eq!(body["text"], "BackupPolicy/nextcloud failed on nas");
        assert_eq!(body["blocks"][0]["type"], "header");
        assert_eq!(
            body["blocks"][0]["text"]["text"],
            "BackupPolicy/nextcloud failed on nas"
        );
        let text = body["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(
            text.contains("connection refused &lt;on socket&gt;"),
            "{text}"
        );
        assert!(
            text.contains("<https://holdfast.example/api/v1/policies/nextcloud|Open in holdfast>")
        );
        assert_eq!(
            body["blocks"][2]["fields"][0]["text"],
            "*Object*\nBackupPolicy/nextcloud"
        );
        assert!(body.get("username").is_none());
        let named = Slack::parse(&url("slack://nas@T/B/C")).unwrap();
        assert_eq!(
            json(&named.requests(&Message::example())[0])["username"],
            "nas"
        );
        let bot = Slack::parse(&url("slack://xoxb:1-2-a@C0AB")).unwrap();
        let r = &bot.requests(&Message::example())[0];
        assert!(r.check_ok);
        assert!(r.url.ends_with("/api/chat.postMessage"), "{}", r.url);
        assert_eq!(header(r, "Authorization"), Some("Bearer xoxb-1-2-a"));
        assert_eq!(json(r)["channel"], "C0AB");
    }
}
