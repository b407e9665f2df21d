//! E-mail through SMTP: `smtp://user:password@host:port/?from=…&to=a,b`, shoutrrr's
//! format, sent with lettre.

use std::time::Duration;

use super::message::Message;
use super::target::SendError;

pub const SCHEMES: &[&str] = &["smtp"];

/// A parsed `smtp://` URL.
#[derive(Debug)]
pub struct Smtp {
    _url: url::Url,
}

impl Smtp {
    pub fn handles(scheme: &str) -> bool {
        SCHEMES.contains(&scheme)
    }

    pub fn parse(_url: &url::Url) -> Result<Smtp, String> {
        Err("smtp:// is not supported yet".into())
    }

    pub fn secrets(&self) -> Vec<String> {
        Vec::new()
    }

    pub async fn send(&self, _message: &Message, _timeout: Duration) -> Result<(), SendError> {
        Err(SendError {
            message: "smtp:// is not supported yet".into(),
            retry: false,
        })
    }
}
