//! The API's bearer tokens, read from `--api-token-file`: named, each with a scope and an
//! optional expiry, like API keys, so a Prometheus scraper's token cannot read the state
//! and a leaked token stops working on its own.
//!
//! The file is YAML, `tokens:` a list of `{name, scope, token, expires}`. A file of one
//! line that is not a YAML mapping is the format of earlier releases: that line is the
//! one token, named `default`, with scope `read`. Errors name the file, line, column and
//! field, never a token's value; refusals are logged by the token's name, never its value.
//!
//! Which path needs what is decided here too ([`needs`]): `/healthz` and the dashboard's
//! static page (`/` and `/ui/...`, no data in them) are open, `/metrics` needs `metrics`,
//! everything else `read`. A token nobody issued is answered 401 and logged nowhere: a
//! scanner trying tokens would otherwise fill the log, and the 401 tells it nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_yaml_ng::Value;

use crate::diagnostic::FieldPath;
use crate::load::positions::{self, DocumentPositions};

/// The shortest token the YAML format accepts: guessing one must be hopeless.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Token files larger than this are refused: a list of tokens is a few lines.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// What a token may read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `/metrics` only: for a Prometheus scraper.
    Metrics,
    /// Every GET route, `/metrics` included: for people and tools.
    Read,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Metrics => "metrics",
            Scope::Read => "read",
        }
    }

    /// Whether a token of this scope may read what `needed` guards.
    pub fn covers(self, needed: Scope) -> bool {
        self == Scope::Read || self == needed
    }
}

/// What a path needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Served without a token: liveness, and the dashboard's static page and assets.
    Open,
    /// A token whose scope covers this one.
    Token(Scope),
}

/// What `path` needs. The dashboard's page holds no data: it asks for a token and sends
/// it with each API request.
pub fn needs(path: &str) -> Access {
    match path {
        "/healthz" => Access::Open,
        "/metrics" => Access::Token(Scope::Metrics),
        _ if super::ui::is_page(path) => Access::Open,
        _ => Access::Token(Scope::Read),
    }
}

/// One token. Its value is never shown: not by `Debug`, not in errors, not in logs.
#[derive(Clone)]
pub struct Token {
    pub name: String,
    pub scope: Scope,
    /// After this time the token is refused.
    pub expires: Option<DateTime<Utc>>,
    secret: Box<str>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Token {
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_some_and(|t| t <= now)
    }
}

/// Every token of the file. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Tokens {
    tokens: Arc<[Token]>,
}

impl Tokens {
    /// The one token of a file in the format of earlier releases: `default`, scope `read`.
    pub fn single(secret: &str) -> Tokens {
        Tokens {
            tokens: Arc::from(vec![Token {
                name: "default".to_string(),
                scope: Scope::Read,
                expires: None,
                secret: secret.into(),
            }]),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Token> {
        self.tokens.iter()
    }

    /// The token whose value is `given`. Every token is compared, each in time that does
    /// not depend on where the values differ, so the time taken tells nothing of which
    /// token nearly matched.
    pub fn find(&self, given: &str) -> Option<&Token> {
        let mut found = None;
        for token in self.tokens.iter() {
            if super::same(given.as_bytes(), token.secret.as_bytes()) {
                found = Some(token);
            }
        }
        found
    }

    /// Reads the token file at `path`.
    pub fn load(path: &Path) -> Result<Tokens, TokenFileError> {
        let read = |source| TokenFileError::Read {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read)?.len();
        if size > MAX_FILE_BYTES {
            return Err(TokenFileError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Tokens::parse(&text).map_err(|e| match e {
            Parsed::Empty => TokenFileError::Empty {
                path: path.to_path_buf(),
            },
            Parsed::Invalid {
                line,
                column,
                message,
            } => TokenFileError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            },
        })
    }

    /// The tokens `text` holds, or where and why not.
    pub fn parse(text: &str) -> Result<Tokens, Parsed> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(Parsed::Empty);
        }
        let one_line = !trimmed.contains('\n');
        let index = positions::index(text);
        let at = Positions(index.first().cloned().unwrap_or_default());
        if let (false, Some((field, position))) = (one_line, at.0.duplicate_keys().first()) {
            return Err(Parsed::Invalid {
                line: position.line,
                column: position.column,
                message: format!("{field}: given twice"),
            });
        }
        let value: Result<Value, _> = serde_yaml_ng::from_str(text);
        let top = match value {
            Ok(Value::Mapping(top)) => top,
            // The format of earlier releases: the line is the token, whatever YAML makes
            // of it.
            _ if one_line => return Ok(Tokens::single(trimmed)),
            Ok(_) => {
                return Err(Parsed::Invalid {
                    line: 1,
                    column: 1,
                    message: "not a token file: write `tokens:` with a list of {name, scope, token}, or a single line holding one token".to_string(),
                });
            }
            Err(e) => {
                let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
                // serde's message without its position (said first); a syntax error
                // quotes none of the text, so no token either.
                let message = e.to_string();
                let message = message
                    .split(" at line ")
                    .next()
                    .unwrap_or_default()
                    .to_string();
                return Err(Parsed::Invalid {
                    line,
                    column,
                    message: format!("not valid YAML: {message}"),
                });
            }
        };
        let root = FieldPath::root();
        let mut list = None;
        for (key, item) in &top {
            match key.as_str() {
                Some("tokens") => list = Some(item),
                _ => {
                    let field = root.key(key_text(key));
                    return Err(at.key(
                        &field,
                        "not a field of a token file: its only field is `tokens`",
                    ));
                }
            }
        }
        let tokens_path = root.key("tokens");
        let Some(list) = list else {
            return Err(at.key(
                &root,
                "missing field `tokens`: a list of {name, scope, token}",
            ));
        };
        let Value::Sequence(items) = list else {
            return Err(at.value(&tokens_path, "must be a list of {name, scope, token}"));
        };
        if items.is_empty() {
            return Err(at.value(&tokens_path, "lists no token"));
        }
        let mut tokens: Vec<Token> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let path = tokens_path.index(i);
            let token = one_token(item, &path, &at)?;
            if let Some(j) = tokens.iter().position(|t| t.name == token.name) {
                return Err(at.value(
                    &path.key("name"),
                    &format!(
                        "`{}` is the name of tokens[{j}] too: each token needs a name of its own",
                        token.name
                    ),
                ));
            }
            if let Some(other) = tokens.iter().find(|t| *t.secret == *token.secret) {
                return Err(at.value(
                    &path.key("token"),
                    &format!(
                        "the same token as `{}`: each token must be different",
                        other.name
                    ),
                ));
            }
            tokens.push(token);
        }
        Ok(Tokens {
            tokens: Arc::from(tokens),
        })
    }
}

/// A mapping key as a field name.
fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => "?".to_string(),
    }
}

/// Reads one entry of `tokens`.
fn one_token(item: &Value, path: &FieldPath, at: &Positions) -> Result<Token, Parsed> {
    let Value::Mapping(fields) = item else {
        return Err(at.value(path, "must be a mapping {name, scope, token}"));
    };
    let (mut name, mut scope, mut secret, mut expires) = (None, None, None, None);
    for (key, value) in fields {
        let field = path.key(key_text(key));
        match key.as_str() {
            Some("name") => name = Some((value, field)),
            Some("scope") => scope = Some((value, field)),
            Some("token") => secret = Some((value, field)),
            Some("expires") => expires = Some((value, field)),
            _ => {
                return Err(at.key(
                    &field,
                    "not a field of a token: use name, scope, token and expires",
                ));
            }
        }
    }
    let missing = |what: &str| at.key(path, &format!("missing field `{what}`"));
    let (name, name_at) = name.ok_or_else(|| missing("name"))?;
    let name = match name {
        Value::String(s) if valid_name(s) => s.clone(),
        _ => {
            return Err(at.value(
                &name_at,
                "must be a name of letters, digits, `-`, `_` and `.`, at most 64 characters",
            ));
        }
    };
    let (scope, scope_at) = scope.ok_or_else(|| {
        at.key(
            path,
            "missing field `scope`: `metrics` (a Prometheus scraper: /metrics only) or `read` (every GET route)",
        )
    })?;
    let scope = match scope.as_str() {
        Some("metrics") => Scope::Metrics,
        Some("read") => Scope::Read,
        _ => {
            return Err(at.value(
                &scope_at,
                "not a scope: use `metrics` (/metrics only) or `read` (every GET route)",
            ));
        }
    };
    let (secret, secret_at) = secret.ok_or_else(|| missing("token"))?;
    let Value::String(secret) = secret else {
        return Err(at.value(&secret_at, "must be a string: put it in quotes"));
    };
    if secret.chars().count() < MIN_TOKEN_CHARS {
        return Err(at.value(
            &secret_at,
            &format!(
                "too short: a token needs at least {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)"
            ),
        ));
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(at.value(
            &secret_at,
            "holds a character an HTTP header cannot carry: use letters, digits and punctuation, no spaces",
        ));
    }
    let expires = match expires {
        None => None,
        Some((Value::String(text), field)) => match DateTime::parse_from_rfc3339(text) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                return Err(at.value(
                    &field,
                    "not an RFC 3339 time: write e.g. 2027-06-30T00:00:00Z",
                ));
            }
        },
        Some((_, field)) => {
            return Err(at.value(
                &field,
                "not an RFC 3339 time: write e.g. 2027-06-30T00:00:00Z",
            ));
        }
    };
    Ok(Token {
        name,
        scope,
        expires,
        secret: secret.as_str().into(),
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Positions of the file's nodes, for errors.
struct Positions(DocumentPositions);

impl Positions {
    fn error(position: crate::diagnostic::Position, field: &FieldPath, message: &str) -> Parsed {
        let message = if field.is_root() {
            message.to_string()
        } else {
            format!("{field}: {message}")
        };
        Parsed::Invalid {
            line: position.line,
            column: position.column,
            message,
        }
    }

    /// An error about the key of `field` (unknown, missing inside it).
    fn key(&self, field: &FieldPath, message: &str) -> Parsed {
        Positions::error(self.0.key_or_value(field), field, message)
    }

    /// An error about the value of `field`.
    fn value(&self, field: &FieldPath, message: &str) -> Parsed {
        Positions::error(self.0.best(field), field, message)
    }
}

/// Why a token file's text holds no tokens.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Empty,
    /// Where (1-based) and why; the message starts with the field.
    Invalid {
        line: usize,
        column: usize,
        message: String,
    },
}

/// Why the token file cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("reading the API token file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the API token file {path} is larger than {MAX_FILE_BYTES} bytes; it holds a few tokens"
    )]
    TooLarge { path: PathBuf },
    #[error("the API token file {path} is empty")]
    Empty { path: PathBuf },
    #[error("the API token file {path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}
