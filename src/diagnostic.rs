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
            message: message.into(),
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
        self.hint = hint;
        self
    }
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
