//! The redactors: what hides secrets in text bound for status files, logs and the API
//! (`status::redact`, `hub::redact::redact_value`), and in recipes (`executor::recipe`:
//! compose and `.env` text, environment lists, `docker inspect` documents). Their input
//! is whatever a container, a compose file or an error message holds.
//!
//! All the call sites are in [`redact_all`], so that a new redactor replaces them in one
//! place. Promised: no panic and no hang.

use holdfast::executor::recipe;
use holdfast::hub::redact::redact_value;
use holdfast::status;
use serde_json::Value;

use super::mutate::Rng;
use super::runner::Target;
use super::text::{dictionary, mutate_text};

/// Words that make redactors work: secret-looking names, separators, URL userinfo.
const REDACT_EXTRA: &[&str] = &[
    "PASSWORD",
    "POSTGRES_PASSWORD",
    "MYSQL_PWD",
    "PGPASSWORD",
    "DB_PW",
    "API_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "secret",
    "apiKey",
    "Authorization",
    "Bearer",
    "Basic",
    "--requirepass",
    "--password",
    "export",
    "=",
    ": ",
    "\"",
    "'",
    "`",
    "\\",
    "postgres://",
    "https://user:pw@host/",
    "://:@",
    "@",
    "${VAR}",
    "${",
    "<redacted>",
    "(",
    ")",
    "[0]",
    "spec.dumps[0].password",
    "é",
    "\u{1f600}",
    "\r",
    "\t",
];

pub struct RedactTarget {
    words: Vec<Vec<u8>>,
}

impl RedactTarget {
    pub fn new(corpus: &[Vec<u8>]) -> RedactTarget {
        RedactTarget {
            words: dictionary(corpus, REDACT_EXTRA),
        }
    }
}

/// Every redactor on `text`; returns how many of them changed something.
fn redact_all(text: &str) -> usize {
    let mut changed = 0;
    changed += usize::from(status::redact(text) != text);
    changed += usize::from(recipe::redact_compose(text) != text);
    changed += usize::from(recipe::redact_dotenv(text) != text);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut document = match serde_json::from_str::<Value>(text) {
        Ok(v) => v,
        Err(_) => serde_json::json!({"Config": {"Env": lines, "Cmd": [text]}, "message": text}),
    };
    let before = document.clone();
    recipe::redact_inspect(&mut document);
    redact_value(&mut document);
    changed += usize::from(document != before);
    changed
}

impl Target for RedactTarget {
    fn name(&self) -> &'static str {
        "redact"
    }

    fn extension(&self) -> &'static str {
        "txt"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        // The corpus is committed: recipe-like files.
        Vec::new()
    }

    fn mutate(&self, rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
        mutate_text(rng, &self.words, input, other, 64 * 1024)
    }

    fn run(&self, input: &[u8]) -> Result<String, String> {
        let text = String::from_utf8_lossy(input);
        Ok(format!("changed {}", redact_all(&text)))
    }
}
