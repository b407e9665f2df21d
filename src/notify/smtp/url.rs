//! Reading an `smtp://` URL: every key shoutrrr's format and holdfast's own spellings
//! take, checked so that a URL that cannot send, or would send a password in clear, is
//! refused when the spec is validated rather than when a backup fails.

use lettre::Address;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Mechanism;

use super::{Encryption, Smtp};

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

impl Encryption {
    fn default_port(self) -> u16 {
        match self {
            Encryption::StartTls => 587,
            Encryption::Tls => 465,
            Encryption::None => 25,
        }
    }
}

impl Smtp {
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

        let user = crate::notify::percent_decode(url.username());
        let password = url.password().map(crate::notify::percent_decode);
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn parse(text: &str) -> Result<Smtp, String> {
        Smtp::parse(&url::Url::parse(text).unwrap())
    }

    pub const BASE: &str = "smtp://me%40example.com:pa%3Ass@mail.example.com/?from=holdfast@example.com&to=ops@example.com";

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
}
