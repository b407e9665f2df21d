//! Errors about spec files, pointing at `file:line:column` and the field they concern.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// One segment of a field path: a mapping key or a list index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Where in a document a field lives, e.g. `spec.targets.stacks[0]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.into()));
        FieldPath(segments)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        FieldPath(segments)
    }

    pub fn parent(&self) -> Option<FieldPath> {
        let (_, rest) = self.0.split_last()?;
        Some(FieldPath(rest.to_vec()))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path as an RFC 6901 JSON pointer, the key of the position index.
    pub fn pointer(&self) -> String {
        let mut out = String::new();
        for segment in &self.0 {
            out.push('/');
            match segment {
                Segment::Key(k) => out.push_str(&k.replace('~', "~0").replace('/', "~1")),
                Segment::Index(i) => out.push_str(&i.to_string()),
            }
        }
        out
    }

    /// Reads a path from an RFC 6901 pointer; numeric segments are taken as list indices.
    pub fn from_pointer(pointer: &str) -> Self {
        let segments = pointer
            .split('/')
            .skip(1)
            .map(|raw| {
                let key = raw.replace("~1", "/").replace("~0", "~");
                match key.parse::<usize>() {
                    Ok(i) if !key.starts_with('+') => Segment::Index(i),
                    _ => Segment::Key(key),
                }
            })
            .collect();
        FieldPath(segments)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = |k: &str| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(k) if plain(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Segment::Key(k) => write!(f, "[{k:?}]")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A position in a file: 1-based line and column (columns count characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    pub const START: Position = Position { line: 1, column: 1 };
}

/// An error found in a spec file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// `Kind/name` of the object, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// The field path, e.g. `spec.retention.keepDaily`, when the error concerns one field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(file: impl Into<PathBuf>, at: Position, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            line: at.line,
            column: at.column,
            object: None,
            field: None,
            message: one_line(message.into()),
            hint: None,
        }
    }

    pub fn with_field(mut self, field: &FieldPath) -> Self {
        if !field.is_root() {
            self.field = Some(field.to_string());
        }
        self
    }

    pub fn with_object(mut self, object: Option<String>) -> Self {
        self.object = object;
        self
    }

    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint.map(one_line);
        self
    }

    /// How directly the error says what to change, 0 first. An error with a hint (a
    /// "did you mean", an example) comes before one without, and a missing required
    /// field comes last: it is often only the echo of a misspelt one ("missing
    /// `schedule`" beside "unknown field `schedul`, did you mean `schedule`?").
    fn specificity(&self) -> u8 {
        match (
            &self.hint,
            self.message.starts_with("missing required field"),
        ) {
            (Some(_), _) => 0,
            (None, false) => 1,
            (None, true) => 2,
        }
    }
}

/// Orders one object's errors so the one a summary shows (a Stalled condition's message,
/// the first of "(and N more)") is the most specific; otherwise the order is kept.
pub fn most_specific_first(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(Diagnostic::specificity);
}

/// Messages are printed one per line, so a line break quoted from a value (a `|` block
/// scalar ends with one) is shown escaped instead of breaking the line.
fn one_line(text: String) -> String {
    if !text.contains(['\n', '\r']) {
        return text;
    }
    text.replace('\r', "\\r").replace('\n', "\\n")
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// The candidate closest to `input`, if it is close enough to be a likely typo.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let input = input.to_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                c,
                strsim::normalized_damerau_levenshtein(&input, &c.to_lowercase()),
            )
        })
        .filter(|(_, score)| *score >= 0.6)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

/// "did you mean `x`?" for the closest candidate, if any.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(input, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_read_like_code() {
        let p = FieldPath::root()
            .key("spec")
            .key("targets")
            .key("stacks")
            .index(0);
        assert_eq!(p.to_string(), "spec.targets.stacks[0]");
        assert_eq!(p.pointer(), "/spec/targets/stacks/0");
        let label = FieldPath::root()
            .key("metadata")
            .key("labels")
            .key("holdfast.dev/backup");
        assert_eq!(
            label.to_string(),
            "metadata.labels[\"holdfast.dev/backup\"]"
        );
        assert_eq!(label.pointer(), "/metadata/labels/holdfast.dev~1backup");
        assert_eq!(FieldPath::from_pointer(&label.pointer()), label);
        assert_eq!(FieldPath::from_pointer(&p.pointer()), p);
    }

    #[test]
    fn hints_only_for_close_matches() {
        let fields = ["schedule", "suspend", "targets", "timezone"];
        assert_eq!(closest("schedul", fields), Some("schedule"));
        assert_eq!(closest("Schedule", fields), Some("schedule"));
        assert_eq!(closest("xyz", fields), None);
    }

    #[test]
    fn messages_and_hints_stay_on_one_line() {
        let d = Diagnostic::new(
            "a.yaml",
            Position::START,
            "`Europe/Berlin\n` is not an IANA time zone name",
        )
        .with_hint(Some("one\r\ntwo".into()));
        assert_eq!(
            d.message,
            "`Europe/Berlin\\n` is not an IANA time zone name"
        );
        assert_eq!(d.hint.as_deref(), Some("one\\r\\ntwo"));
        assert_eq!(d.to_string().lines().count(), 1);
    }

    #[test]
    fn the_most_specific_error_comes_first() {
        let at = |line| Position { line, column: 3 };
        let spec = FieldPath::root().key("spec");
        let mut errors = vec![
            Diagnostic::new("a.yaml", at(5), "missing required field `schedule`")
                .with_field(&spec.key("schedule")),
            Diagnostic::new("a.yaml", at(5), "missing required field `targets`")
                .with_field(&spec.key("targets")),
            Diagnostic::new("a.yaml", at(6), "`x` is not one of: a, b"),
            Diagnostic::new("a.yaml", at(7), "unknown field `schedul`")
                .with_hint(Some("did you mean `schedule`?".into())),
            Diagnostic::new("a.yaml", at(8), "unknown field `targt`")
                .with_hint(Some("did you mean `targets`?".into())),
        ];
        most_specific_first(&mut errors);
        let order: Vec<usize> = errors.iter().map(|d| d.line).collect();
        // Hinted first, then plain, then missing fields; each group in its own order.
        assert_eq!(order, [7, 8, 6, 5, 5]);
        assert_eq!(errors[3].message, "missing required field `schedule`");
    }

    #[test]
    fn display_has_every_part() {
        let d = Diagnostic::new(
            "specs/a.yaml",
            Position { line: 7, column: 3 },
            "unknown field `schedul`",
        )
        .with_object(Some("BackupPolicy/web".into()))
        .with_field(&FieldPath::root().key("spec").key("schedul"))
        .with_hint(Some("did you mean `schedule`?".into()));
        assert_eq!(
            d.to_string(),
            "specs/a.yaml:7:3: BackupPolicy/web: spec.schedul: unknown field `schedul` (hint: did you mean `schedule`?)"
        );
    }
}
