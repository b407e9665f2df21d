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

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, Message as Email};

use super::message::{Message, escape};
use super::target::SendError;

pub const SCHEMES: &[&str] = &["smtp"];

/// The query keys an `smtp://` URL takes (lower case), for the error about another.
const KEYS: &[&str] = &[
    "from",
    "fromaddress",
    "to",
    "toaddresses",
    "encryption",
    "usestarttls",
    "auth",
    "fromname",
    "subject",
    "usehtml",
    "clienthost",
];

/// The sender's name when the URL gives none.
const DEFAULT_FROM_NAME: &str = "holdfast";

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

impl Encryption {
    fn default_port(self) -> u16 {
        match self {
            Encryption::StartTls => 587,
            Encryption::Tls => 465,
            Encryption::None => 25,
        }
    }
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

    /// Checks everything a send needs: a host, a sender and recipients that are e-mail
    /// addresses, an encryption that never sends the password in clear. The errors name
    /// the query key at fault and never repeat the URL or the password.
    pub fn parse(url: &url::Url) -> Result<Smtp, String> {
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => {
                return Err(
                    "names no server; expected smtp://user:password@host:587/?from=…&to=…".into(),
                );
            }
        };

        let mut from = None;
        let mut to: Vec<String> = Vec::new();
        let mut encryption = None;
        let mut use_starttls = None;
        let mut auth = None;
        let mut from_name = None;
        let mut subject_prefix = None;
        let mut html = true;
        let mut client_host = None;
        for (key, value) in url.query_pairs() {
            let key = key.to_ascii_lowercase();
            let value = value.trim().to_string();
            match key.as_str() {
                "from" | "fromaddress" => from = Some(value),
                "to" | "toaddresses" => to.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(String::from),
                ),
                "encryption" => encryption = Some(value.to_ascii_lowercase()),
                "usestarttls" => use_starttls = Some(yes_no("usestarttls", &value)?),
                "auth" => auth = Some(value.to_ascii_lowercase()),
                // Both go into headers, which a line break would end (and lettre does not
                // take control characters in a name).
                "fromname" | "subject" if value.chars().any(char::is_control) => {
                    return Err(format!("has a line break or control character in {key}="));
                }
                "fromname" => from_name = Some(value),
                "subject" => subject_prefix = Some(value).filter(|s| !s.is_empty()),
                "usehtml" => html = yes_no("usehtml", &value)?,
                "clienthost" => {
                    // It goes into the EHLO line as it is.
                    if !value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
                    {
                        return Err("has a clienthost= that is not a host name (letters, \
                             digits, `-`, `.`)"
                            .into());
                    }
                    client_host = Some(value).filter(|s| !s.is_empty());
                }
                other => {
                    return Err(format!(
                        "has the query key `{other}`, which smtp:// does not take; use {}",
                        KEYS.join(", ")
                    ));
                }
            }
        }

        let encryption = match (encryption.as_deref(), use_starttls) {
            (Some("starttls" | "explicittls"), Some(false)) => {
                return Err("has encryption=starttls and usestarttls=no; keep one".into());
            }
            (Some("starttls" | "explicittls"), _) => Encryption::StartTls,
            (Some("tls" | "implicittls"), _) => Encryption::Tls,
            (Some("none"), _) => Encryption::None,
            (None | Some("auto" | ""), starttls) => match url.port() {
                Some(465) => Encryption::Tls,
                _ if starttls == Some(false) => Encryption::None,
                _ => Encryption::StartTls,
            },
            (Some(other), _) => {
                return Err(format!(
                    "has encryption={other}, which holdfast does not know; use starttls \
                     (ExplicitTLS), tls (ImplicitTLS), none or auto"
                ));
            }
        };
        let port = url.port().unwrap_or(encryption.default_port());

        let user = percent_decode(url.username());
        let password = url.password().map(percent_decode);
        let credentials = match (user.is_empty(), password) {
            (true, None) => None,
            (true, Some(_)) => {
                return Err(
                    "has a password but no user; expected smtp://user:password@host".into(),
                );
            }
            (false, None) => {
                return Err(format!(
                    "has the user `{user}` but no password; expected smtp://user:password@host"
                ));
            }
            (false, Some(password)) => Some((user, password)),
        };
        let mechanisms = match auth.as_deref() {
            None | Some("" | "unknown" | "auto") => vec![Mechanism::Plain, Mechanism::Login],
            Some("plain") => vec![Mechanism::Plain],
            Some("login") => vec![Mechanism::Login],
            Some("oauth2" | "xoauth2") => vec![Mechanism::Xoauth2],
            Some("none") => {
                if credentials.is_some() {
                    return Err(
                        "has auth=none and a user and password; drop one or the other".into(),
                    );
                }
                Vec::new()
            }
            Some(other) => {
                return Err(format!(
                    "has auth={other}, which holdfast does not speak; use plain, login, oauth2 \
                     or none"
                ));
            }
        };
        if encryption == Encryption::None && credentials.is_some() {
            return Err(
                "has a password and encryption=none, which would send it in clear; use \
                 encryption=starttls \
                 (port 587) or tls (port 465), or leave the credentials out for a relay that \
                 needs none"
                    .into(),
            );
        }

        let from = match from {
            Some(address) if !address.is_empty() => {
                let address = parse_address("from", &address)?;
                let name = from_name
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| DEFAULT_FROM_NAME.to_string());
                Mailbox::new(Some(name), address)
            }
            _ => return Err("has no sender; add ?from=holdfast@example.com".into()),
        };
        if to.is_empty() {
            return Err("has no recipient; add &to=you@example.com (several: a@x,b@y)".into());
        }
        let to = to
            .iter()
            .map(|a| parse_address("to", a).map(|a| Mailbox::new(None, a)))
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Smtp {
            host,
            port,
            encryption,
            credentials,
            mechanisms,
            from,
            to,
            subject_prefix,
            html,
            client_host: client_host
                .filter(|h| h != "auto")
                .unwrap_or_else(crate::settings::machine_host),
        })
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

/// `yes`/`no` (shoutrrr's spelling), `true`/`false`, `1`/`0`.
fn yes_no(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Ok(true),
        "no" | "false" | "0" => Ok(false),
        _ => Err(format!("has {key}={value}; use yes or no")),
    }
}

fn parse_address(key: &str, text: &str) -> Result<Address, String> {
    text.parse::<Address>()
        .map_err(|e| format!("has {key}={text}, which is not an e-mail address ({e})"))
}

/// `%XX` escapes decoded (a URL's user and password stay encoded in [`url::Url`]); `+`
/// stays a plus, as in any part of a URL but a form's query.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    use super::*;
    use crate::notify::message::tests::failed_run;

    fn parse(text: &str) -> Result<Smtp, String> {
        Smtp::parse(&url::Url::parse(text).unwrap())
    }

    const BASE: &str = "smtp://me%40example.com:pa%3Ass@mail.example.com/?from=holdfast@example.com&to=ops@example.com";

    #[test]
    fn a_full_url_defaults_to_starttls_on_587_with_the_password_secret() {
        let smtp = parse(&format!(
            "{BASE},%20oncall@example.com&fromname=holdfast%20on%20nas&subject=%5Bnas%5D"
        ))
        .unwrap();
        assert_eq!(smtp.host, "mail.example.com");
        assert_eq!(smtp.port, 587);
        assert_eq!(smtp.encryption, Encryption::StartTls);
        assert_eq!(
            smtp.credentials,
            Some(("me@example.com".to_string(), "pa:ss".to_string()))
        );
        assert_eq!(smtp.secrets(), ["pa:ss"]);
        assert_eq!(
            smtp.from.to_string(),
            "holdfast on nas <holdfast@example.com>"
        );
        assert_eq!(smtp.to.len(), 2);
        assert_eq!(smtp.subject_prefix.as_deref(), Some("[nas]"));
        let debug = format!("{smtp:?}");
        assert!(
            !debug.contains("pa:ss") && debug.contains("me@example.com"),
            "{debug}"
        );
    }

    #[test]
    fn shoutrrr_spellings_and_ports_choose_the_encryption() {
        let cases = [
            ("smtp://h:465/?from=a@b.c&to=d@e.f", Encryption::Tls, 465),
            (
                "smtp://h/?from=a@b.c&to=d@e.f&encryption=ImplicitTLS",
                Encryption::Tls,
                465,
            ),
            (
                "smtp://h/?from=a@b.c&to=d@e.f&Encryption=TLS",
                Encryption::Tls,
                465,
            ),
            (
                "smtp://h:2525/?from=a@b.c&to=d@e.f&encryption=ExplicitTLS",
                Encryption::StartTls,
                2525,
            ),
            (
                "smtp://h/?from=a@b.c&to=d@e.f&encryption=Auto",
                Encryption::StartTls,
                587,
            ),
            (
                "smtp://h/?from=a@b.c&to=d@e.f&encryption=None",
                Encryption::None,
                25,
            ),
            (
                "smtp://h/?from=a@b.c&to=d@e.f&UseStartTLS=No",
                Encryption::None,
                25,
            ),
            (
                "smtp://h/?FromAddress=a@b.c&ToAddresses=d@e.f",
                Encryption::StartTls,
                587,
            ),
        ];
        for (url, encryption, port) in cases {
            let smtp = parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!((smtp.encryption, smtp.port), (encryption, port), "{url}");
            assert_eq!(smtp.credentials, None);
        }
    }

    #[test]
    fn bad_urls_are_refused_without_repeating_the_url_or_password() {
        let cases = [
            ("smtp://me:pa%3Ass@h/?to=d@e.f", "has no sender"),
            ("smtp://me:pa%3Ass@h/?from=a@b.c", "has no recipient"),
            (
                "smtp://me:pa%3Ass@h/?from=a@b.c&to=nobody",
                "has to=nobody, which is not an e-mail address",
            ),
            (
                "smtp://me:pa%3Ass@h/?from=holdfast&to=d@e.f",
                "has from=holdfast,",
            ),
            (
                "smtp://me:pa%3Ass@h/?from=a@b.c&to=d@e.f&fron=x",
                "has the query key `fron`",
            ),
            (
                "smtp://me:pa%3Ass@h/?from=a@b.c&to=d@e.f&encryption=ssl3",
                "has encryption=ssl3,",
            ),
            (
                "smtp://me:pa%3Ass@h/?from=a@b.c&to=d@e.f&encryption=none",
                "in clear",
            ),
            (
                "smtp://me:pa%3Ass@h/?from=a@b.c&to=d@e.f&usestarttls=no",
                "in clear",
            ),
            (
                "smtp://me:pa%3Ass@h/?from=a@b.c&to=d@e.f&encryption=starttls&usestarttls=no",
                "keep one",
            ),
            (
                "smtp://me:pa%3Ass@h/?from=a@b.c&to=d@e.f&auth=CRAMMD5",
                "has auth=crammd5,",
            ),
            (
                "smtp://me:pa%3Ass@h/?from=a@b.c&to=d@e.f&auth=none",
                "has auth=none and",
            ),
            ("smtp://me@h/?from=a@b.c&to=d@e.f", "no password"),
            ("smtp://:pa%3Ass@h/?from=a@b.c&to=d@e.f", "no user"),
            ("smtp:///?from=a@b.c&to=d@e.f", "names no server"),
            (
                "smtp://h/?from=a@b.c&to=d@e.f&clienthost=x%0D%0AQUIT",
                "has a clienthost= that is not a host name",
            ),
            (
                "smtp://h/?from=a@b.c&to=d@e.f&subject=a%0D%0ABcc:%20x@y.z",
                "has a line break or control character in subject=",
            ),
            (
                "smtp://h/?from=a@b.c&to=d@e.f&fromname=a%0ACc:%20x@y.z",
                "has a line break or control character in fromname=",
            ),
        ];
        for (url, expected) in cases {
            let err = parse(url).err().unwrap_or_else(|| panic!("{url} parsed"));
            assert!(err.contains(expected), "{url}: {err}");
            assert!(
                !err.contains("pa%3Ass") && !err.contains("pa:ss"),
                "{url}: {err}"
            );
            assert!(!err.contains("me:") && !err.contains("@h/"), "{url}: {err}");
        }
    }

    #[test]
    fn the_mail_has_both_parts_the_headers_and_escaped_html() {
        let smtp = parse(BASE).unwrap();
        let message = failed_run();
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
        let message = failed_run();
        let a = smtp.message_id(&message);
        assert_ne!(a, smtp.message_id(&message));
        assert!(a.ends_with("@example.com>"), "{a}");
    }
}
