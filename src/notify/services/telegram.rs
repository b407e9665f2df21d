//! `telegram://TOKEN@telegram?chats=@channel,12345` (shoutrrr's format; TOKEN is the
//! bot's `123456:ABC…`): for each chat, a POST of `{chat_id, text, parse_mode: "HTML"}` to
//! `https://api.telegram.org/botTOKEN/sendMessage`, the message in the HTML Telegram
//! accepts. An answer without `"ok": true` counts as a failure.

use crate::notify::message::{Message, Occasion};
use crate::notify::target::{Body, HttpRequest};

/// The URL schemes of this service.
pub const SCHEMES: &[&str] = &["telegram"];

const EXAMPLE: &str = "telegram://TOKEN@telegram?chats=@channel,12345";

/// A parsed `telegram://` URL: where to send, and its secret parts.
#[derive(Debug)]
pub struct Telegram {
    /// `123456:ABC…`.
    token: String,
    chats: Vec<String>,
}

impl Telegram {
    /// Checks the URL; the error says what is wrong without repeating the URL.
    pub fn parse(url: &url::Url) -> Result<Telegram, String> {
        let (id, key) = (url.username(), url.password().unwrap_or_default());
        if id.is_empty() || key.is_empty() {
            return Err(format!(
                "names no bot token (ID:KEY, before the @); expected {EXAMPLE}"
            ));
        }
        if url.host_str() != Some("telegram") {
            return Err(format!(
                "has a host other than telegram; expected {EXAMPLE}"
            ));
        }
        let chats = super::list(url, "chats");
        if chats.is_empty() {
            return Err(format!("names no chats; expected {EXAMPLE}"));
        }
        Ok(Telegram {
            token: format!("{id}:{key}"),
            chats,
        })
    }

    /// The secret parts of the URL, to hide wherever holdfast prints it.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = vec![self.token.clone()];
        if let Some((_, key)) = self.token.split_once(':') {
            secrets.push(key.to_string());
        }
        secrets
    }

    /// The requests a message becomes (none on an occasion the service does not hear of).
    pub fn requests(&self, message: &Message) -> Vec<HttpRequest> {
        if message.occasion == Occasion::Started {
            return Vec::new();
        }
        let url = super::fixed(
            "https://api.telegram.org",
            &format!("/bot{}/sendMessage", self.token),
        );
        let text = message.html();
        self.chats
            .iter()
            .map(|chat| {
                // A numeric id as a number, a channel's @name as a string.
                let chat_id = chat
                    .parse::<i64>()
                    .map(serde_json::Value::from)
                    .unwrap_or_else(|_| chat.clone().into());
                HttpRequest {
                    method: "POST",
                    url: url.clone(),
                    headers: Vec::new(),
                    body: Some(Body::json(&serde_json::json!({
                        "chat_id": chat_id,
                        "text": text,
                        "parse_mode": "HTML",
                        "disable_web_page_preview": true,
                    }))),
                    check_ok: true,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::services::tests::{json, secrets_hidden, url};

    #[test]
    fn a_bot_token_and_its_chats() {
        let t = Telegram::parse(&url(
            "telegram://110201543:AAHdqTcv-CH1@telegram?chats=@backups,-100123",
        ))
        .unwrap();
        assert_eq!(t.token, "110201543:AAHdqTcv-CH1");
        assert_eq!(t.chats, ["@backups", "-100123"]);
        for (bad, says) in [
            (
                "telegram://110201543@telegram?chats=1",
                "names no bot token",
            ),
            (
                "telegram://1:A@api.telegram.org?chats=1",
                "host other than telegram",
            ),
            ("telegram://1:A@telegram", "names no chats"),
        ] {
            let e = Telegram::parse(&url(bad)).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_token_is_secret() {
        secrets_hidden(
            "telegram://110201543:AAHdqTcv@telegram?chats=1",
            &["AAHdqTcv", "110201543:AAHdqTcv"],
        );
    }

    #[test]
    fn a_failed_run_is_one_html_message_per_chat() {
        let t = Telegram::parse(&url("telegram://1:A@telegram?chats=@backups,42")).unwrap();
        let requests = t.requests(&Message::example());
        assert_eq!(requests.len(), 2);
        if std::env::var_os(super::super::TEST_API_BASE).is_none() {
            assert_eq!(
                requests[0].url,
                "https://api.telegram.org/bot1:A/sendMessage"
            );
        }
        assert!(requests[0].check_ok);
        let first = json(&requests[0]);
        assert_eq!(first["chat_id"], "@backups");
        assert_eq!(first["text"], Message::example().html());
        assert_eq!(first["parse_mode"], "HTML");
        assert_eq!(first["disable_web_page_preview"], true);
        assert_eq!(json(&requests[1])["chat_id"], 42);
    }
}
