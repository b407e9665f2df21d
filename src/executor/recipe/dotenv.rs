//! Redaction of a Compose `.env` file, read the way Compose reads it: `NAME=value` with an
//! optional `export `, values quoted with `'` or `"` (double quotes may span lines, with
//! backslash escapes), `#` comments on their own line or after an unquoted value. Names,
//! comments and layout stay as written; only values change.

use super::{REDACTED, redact_in_value, whole_reference};
use crate::secrets::is_secret_name;

/// Hides the value of every secret-looking name, and URL passwords and secret flags
/// (`--requirepass x`) in every other value.
pub fn redact_dotenv(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while at < text.len() {
        let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        let Some(entry) = entry_at(text, at, line_end) else {
            out.push_str(&text[at..(line_end + 1).min(text.len())]);
            at = line_end + 1;
            continue;
        };
        out.push_str(&text[at..entry.value_start]);
        let raw = &text[entry.value_start..entry.value_end];
        out.push_str(&redacted_value(entry.name, raw, entry.quote));
        // The rest of the entry's last line (a closing comment, the newline).
        let rest_end = text[entry.value_end..]
            .find('\n')
            .map_or(text.len(), |i| entry.value_end + i + 1);
        out.push_str(&text[entry.value_end..rest_end]);
        at = rest_end;
    }
    out
}

struct Entry<'a> {
    name: &'a str,
    value_start: usize,
    /// Exclusive; past the closing quote of a quoted value.
    value_end: usize,
    quote: Option<char>,
}

/// The `NAME=value` entry starting on the line at `start..line_end`, if the line is one.
fn entry_at(text: &str, start: usize, line_end: usize) -> Option<Entry<'_>> {
    let line = &text[start..line_end];
    let body = line.trim_start();
    if body.starts_with('#') {
        return None;
    }
    let indent = line.len() - body.len();
    let body = body
        .strip_prefix("export ")
        .map(str::trim_start)
        .unwrap_or(body);
    let eq = body.find('=')?;
    let name = body[..eq].trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let body_start = start + (line.len() - body.len()).max(indent);
    let after = body_start + eq + 1;
    let value_start =
        after + (text[after..line_end].len() - text[after..line_end].trim_start().len());
    let first = text[value_start..].chars().next();
    let (value_end, quote) = match first {
        Some(q @ ('"' | '\'')) => (closing(text, value_start, q), Some(q)),
        _ => {
            let value = &text[value_start..line_end];
            // ` #` starts a comment after an unquoted value.
            let cut = value
                .char_indices()
                .find(|&(i, c)| c == '#' && i > 0 && value[..i].ends_with(char::is_whitespace))
                .map_or(value.len(), |(i, _)| i);
            (value_start + value[..cut].trim_end().len(), None)
        }
    };
    Some(Entry {
        name,
        value_start,
        value_end,
        quote,
    })
}

/// The index just past the quote that closes the one at `open`; the end of the text when
/// it is never closed (the rest is then the value, and all of it may be secret).
fn closing(text: &str, open: usize, quote: char) -> usize {
    let mut escaped = false;
    for (i, c) in text[open + 1..].char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' && quote == '"' {
            escaped = true;
        } else if c == quote {
            return open + 1 + i + 1;
        }
    }
    text.len()
}

fn redacted_value(name: &str, raw: &str, quote: Option<char>) -> String {
    let inner = match quote {
        Some(q) => raw
            .strip_prefix(q)
            .map(|r| r.strip_suffix(q).unwrap_or(r))
            .unwrap_or(raw),
        None => raw,
    };
    if inner.is_empty() || whole_reference(inner) {
        return raw.to_string();
    }
    if is_secret_name(name) {
        return format!("\"{REDACTED}\"");
    }
    match redact_in_value(inner) {
        Some(hidden) => match quote {
            Some('\'') => format!("'{hidden}'"),
            // The marker has spaces: an unquoted value becomes a quoted one.
            _ => format!(
                "\"{}\"",
                if quote.is_some() {
                    hidden
                } else {
                    hidden.replace('\\', "\\\\").replace('"', "\\\"")
                }
            ),
        },
        None => raw.to_string(),
    }
}
