//! Notifications and heartbeats: telling people what happened, on the services they
//! already watch.
//!
//! - [`message`]: one notification, rendered by each service from the same pieces.
//! - [`target`]: a notification URL parsed and checked, with its secrets known so they
//!   never appear in anything holdfast prints.
//! - [`conditions`]: when to send, so a lasting problem is told once (or every `repeat`).
//! - [`deliver`]: per-notifier queues off the reconcile loop, with retries.
//! - [`services`] and [`smtp`]: the services, one file each; [`http`] sends their requests.

pub mod conditions;
pub mod deliver;
pub mod http;
pub mod message;
pub mod services;
pub mod smtp;
pub mod target;

pub use message::{Message, Occasion, RunFacts, Severity};
pub use target::{SendError, Target};

/// `%XX` escapes decoded, as a URL's user and password stay encoded in [`url::Url`]; `+`
/// stays a plus, as in every part of a URL but a form's query.
pub(crate) fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}
