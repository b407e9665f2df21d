//! E-mail through SMTP, sent with lettre:
//!
//! `smtp://[user:password@]host[:port]/?from=ADDR&to=a@x,b@y[&encryption=…][&fromname=…][&subject=…]`
//!
//! The format is shoutrrr's where it can be, so a URL written for Watchtower or another
//! shoutrrr user works here: `fromAddress`/`toAddresses` as aliases of `from`/`to`,
//! `encryption` as `None`, `ExplicitTLS`, `ImplicitTLS` or `Auto`, `useStartTLS`, `auth`,
//! `useHTML` and `clientHost`; keys and values are case-insensitive. holdfast's own
//! spellings of `encryption` are `starttls`, `tls` and `none`.
//!
//! Security is never negotiated down. `Auto` (the default) means TLS from the first byte
//! on port 465 and STARTTLS everywhere else, and STARTTLS is required: a server that does
//! not offer it gets nothing, credentials least of all, where shoutrrr would go on in
//! clear. `encryption=none` is for a relay on a trusted network and refuses a URL with a
//! password. The default port follows the encryption: 587 for STARTTLS, 465 for TLS, 25
//! for none.
//!
//! The mail has a plain text part and an HTML part (`useHTML=no` leaves the HTML out),
//! the message's title as subject (after `subject=`, a prefix for mail filters), and an
//! `X-Holdfast-Event` header with the event's name, for the same filters.
//!
//! The password is the secret. The user name is not hidden: it is usually the sender's
//! own address, which every mail carries in `From` anyway, and an error about a refused
//! login is only useful if it says which login was refused.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use lettre::Message as Email;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

mod url;

use super::message::{Message, escape};
use super::target::SendError;

pub const SCHEMES: &[&str] = &["smtp"];

/// How the connection to the server is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encryption {
    /// A plain connection upgraded with STARTTLS before anything else; required.
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
    /// No TLS at all: a relay on a trusted network, without credentials.
    None,
}

/// A parsed `smtp://` URL. Its `Debug` leaves the password out.
pub struct Smtp {
    host: String,
    port: u16,
    encryption: Encryption,
    /// The user and the password, percent-decoded.
    credentials: Option<(String, String)>,
    mechanisms: Vec<Mechanism>,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject_prefix: Option<String>,
    html: bool,
    /// The name holdfast gives in EHLO.
    client_host: String,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("encryption", &self.encryption)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("from", &self.from.to_string())
            .field(
                "to",
                &self.to.iter().map(ToString::to_string).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// `X-Holdfast-Event: Failed`, for mail filters.
#[derive(Clone)]
struct EventHeader(String);

impl Header for EventHeader {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("X-Holdfast-Event")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(EventHeader(s.to_string()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

impl Smtp {
    pub fn handles(scheme: &str) -> bool {
        SCHEMES.contains(&scheme)
    }

    /// The password, percent-decoded (the caller adds the URL's own form).
    pub fn secrets(&self) -> Vec<String> {
        self.credentials
            .iter()
            .map(|(_, password)| password.clone())
            .collect()
    }

    /// Sends one mail on one connection, all of it within `timeout`. Connection errors,
    /// timeouts and 4xx replies may be retried; a refused login, a refused sender or
    /// recipient (5xx), a server without STARTTLS and a certificate holdfast does not
    /// trust may not.
    pub async fn send(&self, message: &Message, timeout: Duration) -> Result<(), SendError> {
        let email = self.email(message).map_err(|e| SendError {
            message: format!("could not write the e-mail: {e}"),
            retry: false,
        })?;
        match tokio::time::timeout(timeout, self.deliver(&email, timeout)).await {
            Ok(result) => result,
            Err(_) => Err(SendError {
                message: format!(
                    "the SMTP server {} did not take the mail within {}",
                    self.server(),
                    crate::logging::format::human_seconds(timeout.as_secs_f64())
                ),
                retry: true,
            }),
        }
    }

    /// `host:port`, for messages.
    fn server(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    /// The mail a message becomes.
    fn email(&self, message: &Message) -> Result<Email, lettre::error::Error> {
        let subject = match &self.subject_prefix {
            Some(prefix) => format!("{prefix} {}", message.title),
            None => message.title.clone(),
        };
        let mut builder = Email::builder()
            .from(self.from.clone())
            .subject(subject)
            .date(SystemTime::from(message.time))
            .message_id(Some(self.message_id(message)))
            .header(EventHeader(message.event_name().to_string()));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let plain = message.plain();
        if self.html {
            builder.multipart(MultiPart::alternative_plain_html(
                plain,
                html_document(message),
            ))
        } else {
            builder.singlepart(SinglePart::plain(plain))
        }
    }

    /// `<holdfast.<event>.<millis>.<pid>.<n>@<sender's domain>>`: unique per mail, in the
    /// sender's domain as RFC 5322 suggests.
    fn message_id(&self, message: &Message) -> String {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        format!(
            "<holdfast.{}.{}.{}.{}@{}>",
            message.event_name().to_ascii_lowercase(),
            message.time.timestamp_millis(),
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed),
            self.from.email.domain()
        )
    }

    /// Connect (and TLS), STARTTLS, login, send, each step's error in its own words.
    async fn deliver(&self, email: &Email, timeout: Duration) -> Result<(), SendError> {
        let hello = ClientId::Domain(self.client_host.clone());
        let tls = || {
            TlsParameters::new(self.host.clone()).map_err(|e| SendError {
                message: format!("could not set up TLS for {}: {}", self.server(), causes(&e)),
                retry: false,
            })
        };
        let implicit = match self.encryption {
            Encryption::Tls => Some(tls()?),
            _ => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(timeout),
            &hello,
            implicit,
            None,
        )
        .await
        .map_err(|e| self.failed(Step::Connect, &e))?;

        // A failed TLS upgrade leaves lettre's connection without a stream: it is dropped,
        // not sent a QUIT.
        let mut stream_lost = false;
        let delivered = async {
            if self.encryption == Encryption::StartTls {
                if !conn.can_starttls() {
                    return Err(SendError {
                        message: format!(
                            "the SMTP server {} does not offer STARTTLS, and holdfast sends \
                             nothing in clear; use encryption=tls if it expects TLS from the \
                             start (usually port 465)",
                            self.server()
                        ),
                        retry: false,
                    });
                }
                conn.starttls(tls()?, &hello).await.map_err(|e| {
                    stream_lost = e.status().is_none();
                    self.failed(Step::StartTls, &e)
                })?;
            }
            if let Some((user, password)) = &self.credentials {
                conn.auth(
                    &self.mechanisms,
                    &Credentials::new(user.clone(), password.clone()),
                )
                .await
                .map_err(|e| self.failed(Step::Login(user), &e))?;
            }
            conn.send(email.envelope(), &email.formatted())
                .await
                .map_err(|e| self.failed(Step::Send, &e))?;
            Ok(())
        }
        .await;
        match delivered {
            Ok(()) => {
                // The mail is accepted; a failed goodbye changes nothing.
                let _ = conn.quit().await;
                Ok(())
            }
            Err(e) => {
                if !stream_lost {
                    conn.abort().await;
                }
                Err(e)
            }
        }
    }

    /// A lettre error at `step` in words a person can act on.
    fn failed(&self, step: Step<'_>, e: &lettre::transport::smtp::Error) -> SendError {
        let server = self.server();
        let detail = causes(e);
        if let Some(code) = e.status() {
            let reply = format!("{code} {}", reply_text(e));
            let retry = e.is_transient();
            let message = match step {
                Step::Connect => {
                    format!("the SMTP server {server} turned the connection away: {reply}")
                }
                Step::StartTls => format!("the SMTP server {server} refused STARTTLS: {reply}"),
                Step::Login(user) if retry => format!(
                    "the SMTP server {server} could not check the login `{user}` now: {reply}"
                ),
                Step::Login(user) => format!(
                    "the SMTP server {server} refused the login `{user}`: {reply} (check the \
                     user and password in the URL)"
                ),
                Step::Send if retry => {
                    format!("the SMTP server {server} deferred the mail: {reply}")
                }
                Step::Send => format!(
                    "the SMTP server {server} refused the mail: {reply} (check from and to)"
                ),
            };
            return SendError { message, retry };
        }
        if is_certificate_error(e) || e.is_tls() {
            let what = match step {
                Step::StartTls => "STARTTLS failed",
                _ => "TLS failed",
            };
            return SendError {
                message: format!(
                    "{what} with the SMTP server {server}: {detail} (the server's certificate \
                     must be trusted here; SSL_CERT_FILE names extra roots)"
                ),
                retry: false,
            };
        }
        if e.is_timeout() {
            return SendError {
                message: format!("the SMTP server {server} did not answer in time: {detail}"),
                retry: true,
            };
        }
        if e.is_client() {
            let message = match step {
                Step::Login(user) => format!(
                    "could not log in to the SMTP server {server} as `{user}`: {detail} \
                     (it offers none of the methods asked for; see auth=)"
                ),
                _ => format!("the SMTP server {server} cannot take this mail: {detail}"),
            };
            return SendError {
                message,
                retry: false,
            };
        }
        let message = match step {
            Step::Connect => format!("could not connect to the SMTP server {server}: {detail}"),
            Step::StartTls => format!("STARTTLS failed with the SMTP server {server}: {detail}"),
            Step::Login(user) => {
                format!("the login `{user}` at the SMTP server {server} failed: {detail}")
            }
            Step::Send => format!("sending to the SMTP server {server} failed: {detail}"),
        };
        SendError {
            message,
            retry: true,
        }
    }
}

/// Where a delivery failed.
#[derive(Clone, Copy)]
enum Step<'a> {
    Connect,
    StartTls,
    Login(&'a str),
    Send,
}

/// The message's HTML rendering as a minimal document, its line breaks kept.
fn html_document(message: &Message) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n</head>\n\
         <body>\n<div style=\"white-space: pre-wrap; font-family: sans-serif\">{}</div>\n\
         </body>\n</html>\n",
        escape(&message.title),
        message.html()
    )
}

/// The server's reply text of an SMTP error (lettre puts it in the error's source).
fn reply_text(e: &lettre::transport::smtp::Error) -> String {
    std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

/// An error's causes, joined, without lettre's own kind prefixes ("Connection error"):
/// the causes say more.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        source = s.source();
        if s.downcast_ref::<lettre::transport::smtp::Error>().is_some() {
            continue;
        }
        let text = s.to_string();
        if !parts.iter().any(|p: &String| p.contains(&text)) {
            parts.push(text);
        }
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// Whether a rustls error (a certificate refused, a handshake failed) is in the chain:
/// lettre reports those as connection errors.
fn is_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::url::tests::{BASE, parse};
    use super::*;

    #[test]
    fn the_mail_has_both_parts_the_headers_and_escaped_html() {
        let smtp = parse(BASE).unwrap();
        let message = Message::example();
        let email = smtp.email(&message).unwrap();
        let text = String::from_utf8(email.formatted()).unwrap();
        for header in [
            "From: holdfast <holdfast@example.com>\r\n",
            "To: ops@example.com\r\n",
            "Subject: BackupPolicy/nextcloud failed on nas\r\n",
            "Date: Tue, 24 Nov 2026 03:00:42 +0000\r\n",
            "X-Holdfast-Event: Failed\r\n",
            "Message-ID: <holdfast.failed.",
            "Content-Type: multipart/alternative;",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Type: text/html; charset=utf-8",
        ] {
            assert!(text.contains(header), "{header:?} missing from:\n{text}");
        }
        assert_eq!(email.envelope().to().len(), 1);
        let html = html_document(&message);
        assert!(html.contains("&lt;on socket&gt;"), "{html}");
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");

        // A line break in the message's own title stays inside the Subject header.
        let mut broken = message.clone();
        broken.title = "a\r\nBcc: evil@example.com".into();
        let text = String::from_utf8(smtp.email(&broken).unwrap().formatted()).unwrap();
        let headers = text.split("\r\n\r\n").next().unwrap();
        assert!(!headers.contains("\r\nBcc:"), "{headers}");

        let plain_only = parse(&format!("{BASE}&usehtml=no")).unwrap();
        let text = String::from_utf8(plain_only.email(&message).unwrap().formatted()).unwrap();
        assert!(!text.contains("text/html"), "{text}");
        assert!(text.contains("Content-Type: text/plain"), "{text}");
    }

    #[test]
    fn message_ids_differ_between_mails() {
        let smtp = parse(BASE).unwrap();
        let message = Message::example();
        let a = smtp.message_id(&message);
        assert_ne!(a, smtp.message_id(&message));
        assert!(a.ends_with("@example.com>"), "{a}");
    }
}
