//! `healthchecks://host[:port][/path]/UUID` or `…/PING-KEY/SLUG`, `?scheme=http` for
//! plain HTTP: a heartbeat. Healthchecks.io (`hc-ping.com`) or a self-hosted instance is
//! told when a run starts (`/start`), succeeds (the check's URL) or fails (`/fail`),
//! each ping with `rid` so Healthchecks measures the run's duration; the end pings carry
//! the message as plain text. Other events are not sent (Healthchecks itself notices a
//! run that never comes); `holdfast notify test` sends a plain success ping.

use sha2::{Digest, Sha256};

use crate::notify::message::{Message, Occasion};
use crate::notify::target::{Body, HttpRequest};
use crate::spec::notifier::NotifyEvent;

/// The URL schemes of this service.
pub const SCHEMES: &[&str] = &["healthchecks"];

const EXAMPLE: &str = "healthchecks://hc-ping.com/UUID or healthchecks://hc-ping.com/PING-KEY/SLUG";

/// A parsed `healthchecks://` URL: where to send, and its secret parts.
#[derive(Debug)]
pub struct Healthchecks {
    /// `https://host[:port][/path]/UUID` or `…/PING-KEY/SLUG`.
    check_url: String,
    /// The UUID, or the ping key.
    secret: String,
}

impl Healthchecks {
    /// Checks the URL; the error says what is wrong without repeating the URL.
    pub fn parse(url: &url::Url) -> Result<Healthchecks, String> {
        let web = super::web_scheme(url)?;
        let mut check_url = super::origin(url, web, EXAMPLE)?;
        let segments = super::segments(url);
        let secret_at = match segments.as_slice() {
            [] => {
                return Err(format!(
                    "names no check UUID or ping key; expected {EXAMPLE}"
                ));
            }
            [.., last] if is_uuid(last) => segments.len() - 1,
            [_] => {
                return Err(format!(
                    "has a path that is neither a UUID nor PING-KEY/SLUG; expected {EXAMPLE}"
                ));
            }
            _ => segments.len() - 2,
        };
        for segment in &segments {
            check_url.push('/');
            check_url.push_str(segment);
        }
        Ok(Healthchecks {
            check_url,
            secret: segments[secret_at].clone(),
        })
    }

    /// The secret parts of the URL, to hide wherever holdfast prints it.
    pub fn secrets(&self) -> Vec<String> {
        vec![self.secret.clone()]
    }

    /// The requests a message becomes (none on an occasion the service does not hear of).
    pub fn requests(&self, message: &Message) -> Vec<HttpRequest> {
        let suffix = match message.occasion {
            Occasion::Started => "/start",
            Occasion::Event(NotifyEvent::Succeeded) | Occasion::Test => "",
            Occasion::Event(NotifyEvent::Failed | NotifyEvent::PartiallyFailed) => "/fail",
            Occasion::Event(_) => return Vec::new(),
        };
        let mut url = format!("{}{suffix}", self.check_url);
        if let Some(run) = &message.run {
            url.push_str("?rid=");
            url.push_str(&run_uuid(&run.run_id));
        }
        let body = (message.occasion != Occasion::Started).then(|| Body::text(&message.plain()));
        vec![HttpRequest {
            method: "POST",
            url,
            headers: Vec::new(),
            body,
            check_ok: false,
        }]
    }
}

/// `8-4-4-4-12` hexadecimal digits.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Healthchecks takes only a UUID as `rid`: the run id's own when it is one, else one
/// made from the run id's hash (version 8, so the same run always gets the same one).
pub fn run_uuid(run_id: &str) -> String {
    if is_uuid(run_id) {
        return run_id.to_ascii_lowercase();
    }
    let mut b: [u8; 16] = Sha256::digest(run_id.as_bytes())[..16]
        .try_into()
        .expect("16 of 32 bytes");
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::services::tests::{secrets_hidden, url};

    const UUID: &str = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278";

    #[test]
    fn a_uuid_or_a_ping_key_and_slug_after_an_optional_prefix() {
        let h = Healthchecks::parse(&url(&format!("healthchecks://hc-ping.com/{UUID}"))).unwrap();
        assert_eq!(h.check_url, format!("https://hc-ping.com/{UUID}"));
        let h = Healthchecks::parse(&url(&format!(
            "healthchecks://hc.lan:8000/ping/{UUID}?scheme=http"
        )))
        .unwrap();
        assert_eq!(h.check_url, format!("http://hc.lan:8000/ping/{UUID}"));
        assert_eq!(h.secret, UUID);
        let h = Healthchecks::parse(&url(
            "healthchecks://hc-ping.com/fqOOd6-F4MMNuCEnzTU01w/nextcloud",
        ))
        .unwrap();
        assert_eq!(h.secret, "fqOOd6-F4MMNuCEnzTU01w");
        for (bad, says) in [
            ("healthchecks://hc-ping.com", "names no check UUID"),
            ("healthchecks://hc-ping.com/not-a-uuid", "neither a UUID"),
        ] {
            let e = Healthchecks::parse(&url(bad)).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_uuid_or_ping_key_is_secret() {
        secrets_hidden(&format!("healthchecks://hc-ping.com/{UUID}"), &[UUID]);
        secrets_hidden(
            "healthchecks://hc-ping.com/fqOOd6-F4MMNuCEnzTU01w/nextcloud",
            &["fqOOd6-F4MMNuCEnzTU01w"],
        );
    }

    #[test]
    fn a_run_is_pinged_at_its_start_and_end_with_one_run_id() {
        let h = Healthchecks::parse(&url(&format!("healthchecks://hc-ping.com/{UUID}"))).unwrap();
        let failed = Message::example();
        let rid = run_uuid("nextcloud-20261124-030000");
        assert!(is_uuid(&rid), "{rid}");
        assert_eq!(run_uuid(UUID), UUID);
        let r = &h.requests(&failed)[0];
        assert_eq!(r.url, format!("https://hc-ping.com/{UUID}/fail?rid={rid}"));
        assert_eq!(r.body.as_ref().unwrap().bytes, failed.plain().into_bytes());
        let mut started = Message::example();
        started.occasion = Occasion::Started;
        let r = &h.requests(&started)[0];
        assert_eq!(r.url, format!("https://hc-ping.com/{UUID}/start?rid={rid}"));
        assert!(r.body.is_none());
        let mut succeeded = Message::example();
        succeeded.occasion = Occasion::Event(NotifyEvent::Succeeded);
        assert_eq!(
            h.requests(&succeeded)[0].url,
            format!("https://hc-ping.com/{UUID}?rid={rid}")
        );
        let mut overdue = Message::example();
        overdue.occasion = Occasion::Event(NotifyEvent::Overdue);
        assert!(h.requests(&overdue).is_empty());
        let test = Message::for_test("nas", chrono::Utc::now());
        assert_eq!(
            h.requests(&test)[0].url,
            format!("https://hc-ping.com/{UUID}")
        );
    }
}
