//! The HTTP services, one file each: how a URL names the service (shoutrrr's formats
//! where shoutrrr has one) and which requests a message becomes.

pub mod generic;

use super::message::Message;
use super::target::HttpRequest;

/// A parsed HTTP service URL.
#[derive(Debug)]
pub enum Service {
    Generic(generic::Generic),
}

impl Service {
    /// Whether a scheme names one of these services.
    pub fn handles(scheme: &str) -> bool {
        generic::SCHEMES.contains(&scheme)
    }

    pub fn parse(url: &url::Url) -> Result<Service, String> {
        match url.scheme() {
            s if generic::SCHEMES.contains(&s) => {
                generic::Generic::parse(url).map(Service::Generic)
            }
            s => Err(format!("the scheme `{s}` is not an HTTP service")),
        }
    }

    /// The parts of the URL that are secret (tokens, passwords, webhook keys).
    pub fn secrets(&self) -> Vec<String> {
        match self {
            Service::Generic(s) => s.secrets(),
        }
    }

    pub fn is_heartbeat(&self) -> bool {
        false
    }

    pub fn requests(&self, message: &Message) -> Vec<HttpRequest> {
        match self {
            Service::Generic(s) => s.requests(message),
        }
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
mod tests {
    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::basic_auth("user", "p:w"), "Basic dXNlcjpwOnc=");
    }
}
