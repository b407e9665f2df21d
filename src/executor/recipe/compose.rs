//! Redaction of a compose file by its YAML structure, by spans: the file is parsed with a
//! span-reporting event parser, the scalars that hold secrets are found by where they sit,
//! and only their text is replaced, so comments, anchors and layout stay as written.
//!
//! A scalar is replaced by a double-quoted [`REDACTED`] when it is the value of a
//! secret-looking key (in block or flow style, plain, quoted, folded or literal), the
//! value of a secret `NAME=value` list item (`- API_TOKEN=x`), the item after a secret flag
//! in a list (`[redis-server, --requirepass, x]`), or anchored and taken by alias under a
//! secret-looking key. Any other scalar loses what [`super::redact_in_value`] finds in it
//! (URL passwords, secret flags), re-quoted as a JSON string, which YAML reads as a
//! double-quoted scalar. Keys are never changed, and a value that is only a reference
//! (`${POSTGRES_PASSWORD}`) is kept: it is how the recipe gets its secret back.
//!
//! A file that does not parse as YAML, or whose redacted form would not, is redacted
//! line by line instead ([`super::redact_text`]).

use std::borrow::Cow;
use std::collections::BTreeSet;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, SpannedEventReceiver};

use super::{REDACTED, redact_in_value, redact_text, whole_reference};
use crate::secrets::{is_glued_mysql_password, is_secret_flag, is_secret_name, mentions_mysql};

/// Hides the secrets of a compose file; see the module docs.
pub fn redact_compose(text: &str) -> String {
    let Some(parsed) = events(text) else {
        return redact_text(text);
    };
    let offsets: Vec<usize> = text
        .char_indices()
        .map(|(at, _)| at)
        .chain([text.len()])
        .collect();
    let mut edits = plan(text, &parsed, &offsets);
    edits.sort_by_key(|e| e.start);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for edit in edits {
        if edit.start < copied {
            continue;
        }
        out.push_str(&text[copied..edit.start]);
        out.push_str(&edit.with);
        copied = edit.end;
    }
    out.push_str(&text[copied..]);
    if events(&out).is_none() {
        return redact_text(text);
    }
    out
}

/// One parsed event: what it is, and where (in characters).
struct Spanned {
    event: Event<'static>,
    start: usize,
    end: usize,
}

struct Collect(Vec<Spanned>);

impl<'input> SpannedEventReceiver<'input> for Collect {
    fn on_event(&mut self, event: Event<'input>, span: Span) {
        let event = match event {
            Event::Scalar(value, style, anchor, _) => {
                Event::Scalar(Cow::Owned(value.into_owned()), style, anchor, None)
            }
            Event::MappingStart(anchor, _) => Event::MappingStart(anchor, None),
            Event::SequenceStart(anchor, _) => Event::SequenceStart(anchor, None),
            Event::Alias(id) => Event::Alias(id),
            Event::MappingEnd => Event::MappingEnd,
            Event::SequenceEnd => Event::SequenceEnd,
            _ => Event::Nothing,
        };
        self.0.push(Spanned {
            event,
            start: span.start.index(),
            end: span.end.index(),
        });
    }
}

/// The events of `text`, or `None` when it is not YAML.
fn events(text: &str) -> Option<Vec<Spanned>> {
    let mut collect = Collect(Vec::new());
    Parser::new_from_str(text).load(&mut collect, true).ok()?;
    Some(collect.0)
}

/// A replacement of `text[start..end]` (bytes).
struct Edit {
    start: usize,
    end: usize,
    with: String,
}

enum Frame {
    Map { key: Option<String>, at_key: bool },
    Seq { hide_next: bool, mysql: bool },
}

/// Where a value sits, as far as secrets go.
enum Place {
    /// A key, or a value that is neither under a secret key nor after a secret flag.
    Key,
    Plain {
        in_list: bool,
        mysql: bool,
    },
    Secret,
}

fn plan(text: &str, events: &[Spanned], offsets: &[usize]) -> Vec<Edit> {
    let byte = |chars: usize| offsets[chars.min(offsets.len() - 1)];
    let mut stack: Vec<Frame> = Vec::new();
    let mut edits = Vec::new();
    // Anchors taken by alias where a secret belongs: their scalars are hidden too.
    let mut secret_anchors = BTreeSet::new();
    let mut previous_end = 0;
    for spanned in events {
        match &spanned.event {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                take_place(&mut stack, None);
                stack.push(match spanned.event {
                    Event::MappingStart(..) => Frame::Map {
                        key: None,
                        at_key: true,
                    },
                    _ => Frame::Seq {
                        hide_next: false,
                        mysql: false,
                    },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            Event::Alias(id) => {
                if matches!(take_place(&mut stack, None), Place::Secret) {
                    secret_anchors.insert(*id);
                }
            }
            Event::Scalar(value, style, _, _) => {
                let place = take_place(&mut stack, Some(value));
                let (start, end) = (byte(spanned.start), byte(spanned.end));
                let replacement = match place {
                    Place::Key => None,
                    Place::Secret => secret_value(value, *style),
                    Place::Plain { in_list, mysql } => plain_value(value, in_list, mysql),
                };
                if let Some(with) = replacement {
                    edits.push(scalar_edit(text, previous_end, start, end, *style, with));
                }
            }
            _ => {}
        }
        previous_end = byte(spanned.end);
    }
    if !secret_anchors.is_empty() {
        let mut previous_end = 0;
        for spanned in events {
            let (start, end) = (byte(spanned.start), byte(spanned.end));
            if let Event::Scalar(value, style, anchor, _) = &spanned.event
                && secret_anchors.contains(anchor)
                && !value.is_empty()
            {
                let with = format!("\"{REDACTED}\"");
                edits.push(scalar_edit(text, previous_end, start, end, *style, with));
            }
            previous_end = end;
        }
    }
    edits
}

/// Where the next node goes in the innermost collection, and moves that collection on.
/// `scalar` is the node's text when it is a scalar (a list remembers secret flags).
fn take_place(stack: &mut [Frame], scalar: Option<&str>) -> Place {
    match stack.last_mut() {
        None => Place::Plain {
            in_list: false,
            mysql: false,
        },
        Some(Frame::Map { key, at_key }) => {
            if *at_key {
                *key = scalar.map(str::to_string);
                *at_key = false;
                Place::Key
            } else {
                *at_key = true;
                match key.take() {
                    Some(k) if is_secret_name(&k) => Place::Secret,
                    _ => Place::Plain {
                        in_list: false,
                        mysql: false,
                    },
                }
            }
        }
        Some(Frame::Seq { hide_next, mysql }) => {
            let secret = std::mem::take(hide_next) && scalar.is_none_or(|s| !s.starts_with('-'));
            if let Some(s) = scalar {
                *mysql |= mentions_mysql(s);
                *hide_next = is_secret_flag(s);
            }
            if secret {
                Place::Secret
            } else {
                Place::Plain {
                    in_list: true,
                    mysql: *mysql,
                }
            }
        }
    }
}

/// The replacement of a secret value: none for an empty one or a reference.
fn secret_value(value: &str, style: ScalarStyle) -> Option<String> {
    let empty = value.is_empty()
        || (style == ScalarStyle::Plain && matches!(value, "~" | "null" | "Null" | "NULL"));
    (!empty && !whole_reference(value)).then(|| format!("\"{REDACTED}\""))
}

/// The replacement of any other value, when it holds something secret.
fn plain_value(value: &str, in_list: bool, mysql: bool) -> Option<String> {
    if in_list {
        if let Some((name, rest)) = value.split_once('=')
            && is_secret_name(name)
            && !rest.is_empty()
            && !whole_reference(rest)
        {
            return Some(quoted(&format!("{name}={REDACTED}")));
        }
        if is_glued_mysql_password(value, mysql) {
            return Some(quoted(&format!("-p{REDACTED}")));
        }
    }
    redact_in_value(value).map(|hidden| quoted(&hidden))
}

/// A JSON string, which YAML reads as the same double-quoted scalar.
fn quoted(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| format!("\"{REDACTED}\""))
}

/// The edit replacing a scalar. A block scalar's span starts at its content, not at its
/// `|` or `>` header, and runs into the indentation of the next line: the edit starts at
/// the header and ends with the content, so the lines after keep their indentation.
fn scalar_edit(
    text: &str,
    previous_end: usize,
    start: usize,
    end: usize,
    style: ScalarStyle,
    with: String,
) -> Edit {
    match style {
        ScalarStyle::Literal | ScalarStyle::Folded => {
            let previous_end = previous_end.min(start);
            let header = text[previous_end..start]
                .find(['|', '>'])
                .map_or(start, |at| previous_end + at);
            Edit {
                start: header,
                end: start + text[start..end].trim_end().len(),
                with,
            }
        }
        // A scalar's span starts at its anchor or tag, which must stay.
        _ => {
            let mut start = start;
            while matches!(text[start..end].chars().next(), Some('&' | '!')) {
                let word = text[start..end]
                    .find(char::is_whitespace)
                    .map_or(end, |at| start + at);
                let space = text[word..end].len() - text[word..end].trim_start().len();
                start = word + space;
            }
            Edit { start, end, with }
        }
    }
}
