//! The HTTP services, one file each: how a URL names the service (shoutrrr's formats
//! where shoutrrr has one) and which requests a message becomes.

pub mod apprise;
pub mod discord;
pub mod generic;
pub mod gotify;
pub mod healthchecks;
pub mod ntfy;
pub mod pushover;
pub mod slack;
pub mod telegram;
pub mod uptime_kuma;

use super::message::Message;
use super::target::HttpRequest;

/// A parsed HTTP service URL.
#[derive(Debug)]
pub enum Service {
    Apprise(apprise::Apprise),
    Discord(discord::Discord),
    Generic(generic::Generic),
    Gotify(gotify::Gotify),
    Healthchecks(healthchecks::Healthchecks),
    Ntfy(ntfy::Ntfy),
    Pushover(pushover::Pushover),
    Slack(slack::Slack),
    Telegram(telegram::Telegram),
    UptimeKuma(uptime_kuma::UptimeKuma),
}

/// Every service's schemes, in one list.
const ALL_SCHEMES: &[&[&str]] = &[
    apprise::SCHEMES,
    discord::SCHEMES,
    generic::SCHEMES,
    gotify::SCHEMES,
    healthchecks::SCHEMES,
    ntfy::SCHEMES,
    pushover::SCHEMES,
    slack::SCHEMES,
    telegram::SCHEMES,
    uptime_kuma::SCHEMES,
];

impl Service {
    /// Whether a scheme names one of these services.
    pub fn handles(scheme: &str) -> bool {
        ALL_SCHEMES.iter().any(|s| s.contains(&scheme))
    }

    pub fn parse(url: &url::Url) -> Result<Service, String> {
        let scheme = url.scheme();
        let is = |schemes: &[&str]| schemes.contains(&scheme);
        if is(apprise::SCHEMES) {
            apprise::Apprise::parse(url).map(Service::Apprise)
        } else if is(discord::SCHEMES) {
            discord::Discord::parse(url).map(Service::Discord)
        } else if is(generic::SCHEMES) {
            generic::Generic::parse(url).map(Service::Generic)
        } else if is(gotify::SCHEMES) {
            gotify::Gotify::parse(url).map(Service::Gotify)
        } else if is(healthchecks::SCHEMES) {
            healthchecks::Healthchecks::parse(url).map(Service::Healthchecks)
        } else if is(ntfy::SCHEMES) {
            ntfy::Ntfy::parse(url).map(Service::Ntfy)
        } else if is(pushover::SCHEMES) {
            pushover::Pushover::parse(url).map(Service::Pushover)
        } else if is(slack::SCHEMES) {
            slack::Slack::parse(url).map(Service::Slack)
        } else if is(telegram::SCHEMES) {
            telegram::Telegram::parse(url).map(Service::Telegram)
        } else if is(uptime_kuma::SCHEMES) {
            uptime_kuma::UptimeKuma::parse(url).map(Service::UptimeKuma)
        } else {
            Err(format!("the scheme `{scheme}` is not an HTTP service"))
        }
    }

    /// The parts of the URL that are secret (tokens, passwords, webhook keys).
    pub fn secrets(&self) -> Vec<String> {
        match self {
            Service::Apprise(s) => s.secrets(),
            Service::Discord(s) => s.secrets(),
            Service::Generic(s) => s.secrets(),
            Service::Gotify(s) => s.secrets(),
            Service::Healthchecks(s) => s.secrets(),
            Service::Ntfy(s) => s.secrets(),
            Service::Pushover(s) => s.secrets(),
            Service::Slack(s) => s.secrets(),
            Service::Telegram(s) => s.secrets(),
            Service::UptimeKuma(s) => s.secrets(),
        }
    }

    /// Healthchecks and Uptime Kuma watch runs rather than show messages.
    pub fn is_heartbeat(&self) -> bool {
        matches!(self, Service::Healthchecks(_) | Service::UptimeKuma(_))
    }

    pub fn requests(&self, message: &Message) -> Vec<HttpRequest> {
        match self {
            Service::Apprise(s) => s.requests(message),
            Service::Discord(s) => s.requests(message),
            Service::Generic(s) => s.requests(message),
            Service::Gotify(s) => s.requests(message),
            Service::Healthchecks(s) => s.requests(message),
            Service::Ntfy(s) => s.requests(message),
            Service::Pushover(s) => s.requests(message),
            Service::Slack(s) => s.requests(message),
            Service::Telegram(s) => s.requests(message),
            Service::UptimeKuma(s) => s.requests(message),
        }
    }
}

/// The environment variable that points the fixed-host services (Discord, Slack,
/// Telegram, Pushover) at a local receiver. Test builds only: see [`fixed`].
pub const TEST_API_BASE: &str = "HOLDFAST_TEST_API_BASE";

/// The URL of a fixed-host service's API: `origin` (`https://discord.com`) and `path`.
///
/// Test-only: in a build with the `fault-injection` feature (test builds; never a
/// release), `HOLDFAST_TEST_API_BASE=http://127.0.0.1:PORT` replaces `origin`, so the
/// integration tests can receive what would go to the real service. Other builds always
/// use `origin`.
pub fn fixed(origin: &str, path: &str) -> String {
    #[cfg(feature = "fault-injection")]
    if let Some(base) = std::env::var(TEST_API_BASE).ok().filter(|b| !b.is_empty()) {
        return format!("{}{path}", base.trim_end_matches('/'));
    }
    format!("{origin}{path}")
}

/// The web scheme of a self-hosted service: `https`, or `http` when the URL asks with
/// `scheme=http` (or shoutrrr's `disabletls=yes`).
pub fn web_scheme(url: &url::Url) -> Result<&'static str, String> {
    let mut web = "https";
    if let Some(scheme) = query(url, "scheme") {
        web = match scheme.to_ascii_lowercase().as_str() {
            "https" => "https",
            "http" => "http",
            _ => return Err("has scheme= other than http or https".to_string()),
        };
    }
    if let Some(disable) = query(url, "disabletls") {
        match disable.to_ascii_lowercase().as_str() {
            "yes" | "true" | "1" => web = "http",
            "no" | "false" | "0" => {}
            _ => return Err("has disabletls= other than yes or no".to_string()),
        }
    }
    Ok(web)
}

/// `web://host[:port]` of a self-hosted service's URL; the host is required.
pub fn origin(url: &url::Url, web: &str, example: &str) -> Result<String, String> {
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("names no host; expected {example}"))?;
    Ok(match url.port() {
        Some(port) => format!("{web}://{host}:{port}"),
        None => format!("{web}://{host}"),
    })
}

/// The last value of a query parameter, when it is set and not empty.
pub fn query(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .last()
        .filter(|v| !v.is_empty())
}

/// The path's non-empty segments, as written (still percent-encoded).
pub fn segments(url: &url::Url) -> Vec<String> {
    url.path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A comma-separated query parameter as a list, empty items dropped.
pub fn list(url: &url::Url, name: &str) -> Vec<String> {
    query(url, name)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// `text` cut to `max` characters, with `…` when it was longer.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((at, _)) if text.chars().count() > max => format!("{}…", &text[..at]),
        _ => text.to_string(),
    }
}

/// An `Authorization: Basic …` header value.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// The URL parsed as the target module parses it.
    pub fn url(text: &str) -> url::Url {
        url::Url::parse(text).unwrap()
    }

    /// The request's header `name`.
    pub fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
        request
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request's JSON body.
    pub fn json(request: &HttpRequest) -> serde_json::Value {
        let body = request.body.as_ref().expect("a body");
        assert_eq!(body.content_type, "application/json");
        serde_json::from_slice(&body.bytes).unwrap()
    }

    /// Fails unless every secret is listed and none shows in the redacted URL.
    pub fn secrets_hidden(text: &str, secrets: &[&str]) {
        let target = crate::notify::Target::parse(text).unwrap();
        for secret in secrets {
            assert!(
                !target.redacted().contains(secret),
                "{secret} shows in {}",
                target.redacted()
            );
        }
    }

    #[test]
    fn self_hosted_services_take_scheme_http_or_disabletls() {
        assert_eq!(web_scheme(&url("ntfy://h/t")).unwrap(), "https");
        assert_eq!(web_scheme(&url("ntfy://h/t?scheme=http")).unwrap(), "http");
        assert_eq!(
            web_scheme(&url("ntfy://h/t?disabletls=yes")).unwrap(),
            "http"
        );
        assert!(web_scheme(&url("ntfy://h/t?scheme=ftp")).is_err());
        assert_eq!(
            origin(&url("x://h:81/t"), "http", "").unwrap(),
            "http://h:81"
        );
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abcd", 4), "abcd");
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::basic_auth("user", "p:w"), "Basic dXNlcjpwOnc=");
    }
}
