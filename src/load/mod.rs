//! Finding spec files and reading them into documents.
//!
//! Reading never fails as a whole: every problem with a file becomes a [`Diagnostic`] for
//! that file, and the other files are still read.

pub mod positions;
pub mod tree;

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, FieldPath, Position};
use positions::DocumentPositions;

/// Spec files larger than this are refused: a spec is a few kilobytes, and a huge file in
/// the specs folder is a mistake that should not cost the daemon its memory.
pub const MAX_SPEC_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Whether a file found while walking a folder is a spec file.
pub fn is_spec_file_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let yaml = lower.ends_with(".yaml") || lower.ends_with(".yml");
    let status = lower.ends_with(".status.yaml") || lower.ends_with(".status.yml");
    let hidden_or_temp = name.starts_with('.') || name.starts_with('#') || name.ends_with('~');
    yaml && !status && !hidden_or_temp
}

/// What [`discover`] found under the paths it was given.
#[derive(Debug, Default)]
pub struct Found {
    /// The spec files, in walk order.
    pub files: Vec<PathBuf>,
    /// Paths that could not be read.
    pub errors: Vec<Diagnostic>,
    /// What was left out on purpose and deserves a word: folder links leading out of the
    /// tree.
    pub warnings: Vec<Diagnostic>,
    /// Folders of the tree that could not be listed: what they hold is unknown, which is
    /// not the same as empty.
    pub unread_folders: Vec<PathBuf>,
}

/// Finds the spec files under each path: files named directly are taken as they are,
/// folders are walked recursively in name order, skipping hidden entries, status files and
/// editor temp files. A link to a folder is followed only when the folder it leads to is
/// inside the folder being walked: a specs tree must not pull in (nor get status files
/// written into) `/etc` through `specs/etclink`. Paths that cannot be read become errors,
/// links not followed become warnings.
pub fn discover(paths: &[PathBuf]) -> Found {
    let mut found = Found::default();
    let mut seen_dirs = HashSet::new();
    for path in paths {
        match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                // The walk stays inside where the root really is (a root that is itself a
                // link, `current -> wt-b`, is walked in `wt-b`).
                let root = fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                walk(path, &root, &mut found, &mut seen_dirs);
            }
            Ok(_) => found.files.push(path.clone()),
            Err(e) => found.errors.push(Diagnostic::new(
                path,
                Position::START,
                format!("cannot read: {e}"),
            )),
        }
    }
    found
}

fn walk(dir: &Path, root: &Path, found: &mut Found, seen: &mut HashSet<PathBuf>) {
    // A symlinked folder may point back up the tree; visit each real folder once.
    if let Ok(real) = fs::canonicalize(dir)
        && !seen.insert(real)
    {
        return;
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            found.unread_folders.push(dir.to_path_buf());
            found.errors.push(Diagnostic::new(
                dir,
                Position::START,
                format!("cannot read folder: {e}"),
            ));
            return;
        }
    };
    let mut children: Vec<(String, PathBuf)> = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => children.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            )),
            Err(e) => {
                found.unread_folders.push(dir.to_path_buf());
                found.errors.push(Diagnostic::new(
                    dir,
                    Position::START,
                    format!("cannot read folder: {e}"),
                ));
            }
        }
    }
    children.sort();
    for (name, path) in children {
        if name.starts_with('.') {
            continue;
        }
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => match outside_link(&path, root) {
                Some(target) => found.warnings.push(Diagnostic::new(
                    &path,
                    Position::START,
                    format!(
                        "not following this folder link: it leads to {}, outside the specs folder {}",
                        target.display(),
                        root.display()
                    ),
                )),
                None => walk(&path, root, found, seen),
            },
            Ok(_) if is_spec_file_name(&name) => found.files.push(path),
            Ok(_) => {}
            // A dangling symlink named like a spec is worth a word; anything else is not ours.
            Err(e) if is_spec_file_name(&name) => found.errors.push(Diagnostic::new(
                &path,
                Position::START,
                format!("cannot read: {e}"),
            )),
            Err(_) => {}
        }
    }
}

/// Where the folder `path` really is, when it is reached through a link and lies outside
/// `root` (a canonical path); `None` for a plain folder or a link that stays inside.
fn outside_link(path: &Path, root: &Path) -> Option<PathBuf> {
    let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        // A plain folder under a folder inside the tree is inside the tree.
        return None;
    }
    match fs::canonicalize(path) {
        Ok(target) if target.starts_with(root) => None,
        Ok(target) => Some(target),
        // It resolved a moment ago; gone now, it has nothing to read anyway.
        Err(_) => Some(path.to_path_buf()),
    }
}

/// One YAML document of a spec file, converted to JSON for schema validation.
#[derive(Debug)]
pub struct Document {
    /// 0-based index of the document in its file.
    pub index: usize,
    pub value: serde_json::Value,
    pub positions: DocumentPositions,
}

/// What reading one file produced.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub documents: Vec<Document>,
    /// Problems with the file as a whole: unreadable, too large, not text, bad YAML.
    pub errors: Vec<Diagnostic>,
}

/// Reads a spec file into its non-empty documents.
pub fn read_file(path: &Path) -> SourceFile {
    read_bytes(path, read_raw(path))
}

/// Reads spec text that is already in memory, as if it came from `path`.
pub fn read_str(path: &Path, text: &str) -> SourceFile {
    let mut source = SourceFile {
        path: path.to_path_buf(),
        documents: Vec::new(),
        errors: Vec::new(),
    };
    parse_documents(text, &mut source);
    source
}

/// Reads a spec file as it is read from disk, but not parsed: what [`tree`] compares
/// between two reads. More than [`MAX_SPEC_FILE_BYTES`] are never read.
pub fn read_raw(path: &Path) -> Result<Vec<u8>, String> {
    let file = fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    // Read one byte past the limit to learn that the file is too large without reading it all.
    file.take(MAX_SPEC_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    Ok(bytes)
}

/// Parses what [`read_raw`] returned for `path`, as [`read_file`] would have.
pub fn read_bytes(path: &Path, raw: Result<Vec<u8>, String>) -> SourceFile {
    let mut source = SourceFile {
        path: path.to_path_buf(),
        documents: Vec::new(),
        errors: Vec::new(),
    };
    match raw
        .map_err(|message| (Position::START, message))
        .and_then(|bytes| decode(path, bytes))
    {
        Ok(text) => parse_documents(&text, &mut source),
        Err(message) => source
            .errors
            .push(Diagnostic::new(path, message.0, message.1)),
    }
    source
}

fn decode(path: &Path, bytes: Vec<u8>) -> Result<String, (Position, String)> {
    if bytes.len() as u64 > MAX_SPEC_FILE_BYTES {
        let size = fs::metadata(path)
            .map(|m| m.len())
            .unwrap_or(bytes.len() as u64);
        return Err((
            Position::START,
            format!(
                "file is {:.1} MiB; spec files are limited to {} MiB",
                size as f64 / (1024.0 * 1024.0),
                MAX_SPEC_FILE_BYTES / (1024 * 1024)
            ),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let at = position_after(valid);
        (
            at,
            "not a text file: invalid UTF-8; spec files must be UTF-8 YAML".to_string(),
        )
    })?;
    if let Some(offset) = text.find('\0') {
        let at = position_after(&text.as_bytes()[..offset]);
        return Err((
            at,
            "not a text file: it contains a NUL byte; spec files must be UTF-8 YAML".to_string(),
        ));
    }
    Ok(text)
}

/// The line and column just after `prefix`, which must be valid UTF-8.
fn position_after(prefix: &[u8]) -> Position {
    let prefix = String::from_utf8_lossy(prefix);
    let line = prefix.matches('\n').count() + 1;
    let column = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Position { line, column }
}

fn parse_documents(text: &str, source: &mut SourceFile) {
    use serde::Deserialize;

    let mut positions = positions::index(text).into_iter();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let doc_positions = positions.next().unwrap_or_default();
        let mut value = match serde_yaml_ng::Value::deserialize(document) {
            Ok(value) => value,
            Err(e) => {
                let mut diagnostic =
                    explain_syntax(text, yaml_error(&source.path, &e, doc_positions.start()));
                // The YAML library points at the mapping; point at the repeated key instead.
                if let Some((field, at)) = doc_positions.duplicate_keys().first()
                    && diagnostic.message.contains("duplicate")
                {
                    let key = match field.0.last() {
                        Some(crate::diagnostic::Segment::Key(k)) => k.clone(),
                        _ => field.to_string(),
                    };
                    diagnostic = Diagnostic::new(
                        &source.path,
                        *at,
                        format!("the key `{key}` appears twice in the same mapping"),
                    )
                    .with_field(field);
                }
                source.errors.push(diagnostic);
                // The stream cannot be trusted past a syntax error.
                return;
            }
        };
        if value.is_null() {
            continue;
        }
        if let Err(e) = value.apply_merge() {
            source
                .errors
                .push(yaml_error(&source.path, &e, doc_positions.start()));
            continue;
        }
        match to_json(value, &FieldPath::root()) {
            Ok(value) => source.documents.push(Document {
                index,
                value,
                positions: doc_positions,
            }),
            Err((field, message)) => {
                let at = doc_positions.key_or_value(&field);
                source
                    .errors
                    .push(Diagnostic::new(&source.path, at, message).with_field(&field));
            }
        }
    }
}

fn yaml_error(path: &Path, error: &serde_yaml_ng::Error, fallback: Position) -> Diagnostic {
    let at = error.location().map_or(fallback, |l| Position {
        line: l.line(),
        column: l.column(),
    });
    // The library appends " at line L column C"; the position is already in front.
    let text = error.to_string();
    let message = match text.find(" at line ") {
        Some(cut) => {
            // Keep what follows the position, e.g. ", while parsing a flow sequence at line 8".
            let after = &text[cut + " at line ".len()..];
            let rest = after.find(',').map_or("", |i| &after[i..]);
            format!("{}{rest}", &text[..cut])
        }
        None => text,
    };
    Diagnostic::new(path, at, format!("invalid YAML: {message}"))
}

/// The parser's words for the commonest slips are about tokens; say what to change
/// instead, and name the field when the line shows it. A tab in the indentation and an
/// unquoted value starting with `@` (`schedule: @daily`) both read "found character that
/// cannot start any token".
fn explain_syntax(text: &str, diagnostic: Diagnostic) -> Diagnostic {
    let lines: Vec<&str> = text.lines().collect();
    let Some(line) = diagnostic.line.checked_sub(1).and_then(|i| lines.get(i)) else {
        return diagnostic;
    };
    let indentation: &str = &line[..line.len() - line.trim_start().len()];
    let at = Position {
        line: diagnostic.line,
        column: diagnostic.column,
    };
    let file = diagnostic.file.clone();
    let field = field_on_line(&lines, diagnostic.line - 1);
    let explained = |message: &str, hint: String| {
        let explained =
            Diagnostic::new(&file, at, format!("invalid YAML: {message}")).with_hint(Some(hint));
        match &field {
            Some(field) => explained.with_field(field),
            None => explained,
        }
    };
    if indentation.contains('\t') {
        // How deep a tab was meant to indent is anyone's guess, so no field is named.
        return Diagnostic::new(
            &file,
            at,
            "invalid YAML: tabs are not allowed in YAML indentation",
        )
        .with_hint(Some("indent with spaces".to_string()));
    }
    let found = line.chars().nth(diagnostic.column.saturating_sub(1));
    if let Some(reserved @ ('@' | '`')) = found {
        let value = line.chars().skip(diagnostic.column - 1).collect::<String>();
        let value = value.trim_end();
        let before: String = line.chars().take(diagnostic.column - 1).collect();
        let key = before
            .trim()
            .strip_suffix(':')
            .map(|k| k.trim_start_matches("- ").trim());
        let example = match key {
            Some(key) if !key.is_empty() && !value.contains('"') => {
                format!(", e.g. `{key}: \"{value}\"`")
            }
            _ => String::new(),
        };
        return explained(
            &format!("a value cannot start with `{reserved}` unless it is quoted"),
            format!("quote values starting with {reserved}{example}"),
        );
    }
    diagnostic
}

/// The field path of the `key:` on line `index` (0-based), read from the indentation of
/// the lines above it: what a syntax error can still name when the document did not
/// parse. `None` inside lists or flow collections, where indentation does not tell.
fn field_on_line(lines: &[&str], index: usize) -> Option<FieldPath> {
    let key_of = |line: &str| -> Option<(usize, String)> {
        let body = line.trim_start();
        let indent = line.len() - body.len();
        let (key, _) = body.split_once(':')?;
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        plain.then(|| (indent, key.to_string()))
    };
    let (mut indent, key) = key_of(lines.get(index)?)?;
    let mut keys = vec![key];
    for line in lines[..index].iter().rev() {
        let body = line.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        if body.starts_with("---") {
            break;
        }
        if indent == 0 {
            break;
        }
        let line_indent = line.len() - body.len();
        if line_indent >= indent {
            if body.starts_with('-') {
                return None;
            }
            continue;
        }
        let (parent_indent, parent) = key_of(line)?;
        if !body.trim_end().ends_with(':') {
            // `key: value` above a deeper line: not a parent, the document is confused.
            return None;
        }
        keys.push(parent);
        indent = parent_indent;
    }
    (indent == 0).then(|| {
        keys.into_iter()
            .rev()
            .fold(FieldPath::root(), |path, key| path.key(key))
    })
}

/// Converts a YAML value to JSON. YAML allows what JSON does not (non-string keys, tags,
/// NaN); those are errors here rather than silently changed values.
fn to_json(
    value: serde_yaml_ng::Value,
    at: &FieldPath,
) -> Result<serde_json::Value, (FieldPath, String)> {
    use serde_json::Value as J;
    use serde_yaml_ng::Value as Y;
    Ok(match value {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                J::from(i)
            } else if let Some(u) = n.as_u64() {
                J::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(J::Number)
                    .ok_or_else(|| {
                        (
                            at.clone(),
                            format!("`{f}` is not a number holdfast can use"),
                        )
                    })?
            }
        }
        Y::String(s) => J::String(s),
        Y::Sequence(items) => J::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| to_json(v, &at.index(i)))
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    other => {
                        return Err((
                            at.clone(),
                            format!(
                                "mapping keys must be plain text, found {}",
                                describe(&other)
                            ),
                        ));
                    }
                };
                let child = at.key(key.clone());
                out.insert(key, to_json(v, &child)?);
            }
            J::Object(out)
        }
        Y::Tagged(tagged) => {
            return Err((
                at.clone(),
                format!(
                    "YAML tags such as `{}` are not supported in specs",
                    tagged.tag
                ),
            ));
        }
    })
}

fn describe(value: &serde_yaml_ng::Value) -> &'static str {
    use serde_yaml_ng::Value as Y;
    match value {
        Y::Null => "null",
        Y::Bool(_) => "a boolean",
        Y::Number(_) => "a number",
        Y::String(_) => "a string",
        Y::Sequence(_) => "a list",
        Y::Mapping(_) => "a mapping",
        Y::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_file_names() {
        for ok in ["a.yaml", "b.yml", "nested.policy.yaml", "UPPER.YAML"] {
            assert!(is_spec_file_name(ok), "{ok}");
        }
        for skip in [
            "a.status.yaml",
            "a.status.yml",
            ".hidden.yaml",
            "a.yaml~",
            "#a.yaml#",
            "a.json",
            "a.yaml.swp",
        ] {
            assert!(!is_spec_file_name(skip), "{skip}");
        }
    }

    #[test]
    fn positions_after_prefix() {
        assert_eq!(position_after(b""), Position { line: 1, column: 1 });
        assert_eq!(position_after(b"ab\ncd"), Position { line: 2, column: 3 });
    }

    fn read_str(text: &str) -> SourceFile {
        super::read_str(Path::new("t.yaml"), text)
    }

    #[test]
    fn empty_files_and_documents_are_fine() {
        for text in ["", "\n", "# only a comment\n", "---\n---\n", "---\n...\n"] {
            let s = read_str(text);
            assert!(
                s.errors.is_empty() && s.documents.is_empty(),
                "{text:?}: {:?}",
                s.errors
            );
        }
    }

    #[test]
    fn documents_keep_their_index_and_positions() {
        let s = read_str("a: 1\n---\n---\nb: 2\n");
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        let indexes: Vec<_> = s.documents.iter().map(|d| d.index).collect();
        assert_eq!(indexes, [0, 2]);
        assert_eq!(
            s.documents[1].positions.start(),
            Position { line: 4, column: 1 }
        );
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let s = read_str("a: 1\nb: [1, 2\nc: 3\n");
        assert_eq!(s.errors.len(), 1);
        let e = &s.errors[0];
        assert!(e.message.starts_with("invalid YAML: "), "{}", e.message);
        assert!(e.line >= 2, "{e}");
    }

    #[test]
    fn the_commonest_syntax_slips_say_what_to_change() {
        let s = read_str("kind: BackupPolicy\nspec:\n  schedule: @daily\n");
        let e = &s.errors[0];
        assert_eq!((e.line, e.column), (3, 13));
        assert_eq!(e.field.as_deref(), Some("spec.schedule"));
        assert_eq!(
            e.message,
            "invalid YAML: a value cannot start with `@` unless it is quoted"
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("quote values starting with @, e.g. `schedule: \"@daily\"`")
        );

        let s = read_str("kind: BackupPolicy\nmetadata:\n\tname: web\n");
        let e = &s.errors[0];
        assert_eq!(e.line, 3);
        assert_eq!(e.field, None);
        assert_eq!(
            e.message,
            "invalid YAML: tabs are not allowed in YAML indentation"
        );
        assert_eq!(e.hint.as_deref(), Some("indent with spaces"));
    }

    #[test]
    fn fields_are_read_from_the_indentation() {
        let lines = ["a: 1", "spec:", "  # note", "  targets:", "    stacks: x"];
        let field = field_on_line(&lines, 4).unwrap();
        assert_eq!(field.to_string(), "spec.targets.stacks");
        assert_eq!(field_on_line(&lines, 0).unwrap().to_string(), "a");
        let listed = [
            "spec:",
            "  dumps:",
            "    - service: db",
            "      password: @x",
        ];
        assert_eq!(field_on_line(&listed, 3), None);
        assert_eq!(field_on_line(&["  - x"], 0), None);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let s = read_str("a: 1\na: 2\n");
        assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
        assert_eq!(s.errors[0].line, 2);
    }

    #[test]
    fn tags_and_complex_keys_are_refused() {
        assert_eq!(read_str("a: !secret x\n").errors.len(), 1);
        assert_eq!(read_str("? [a]\n: 1\n").errors.len(), 1);
    }

    #[test]
    fn merge_keys_apply() {
        let s = read_str("base: &b {x: 1}\nthing:\n  <<: *b\n  y: 2\n");
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!(s.documents[0].value["thing"]["x"], 1);
    }

    #[test]
    fn folder_links_are_followed_only_inside_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let specs = dir.path().join("specs");
        let outside = dir.path().join("outside");
        fs::create_dir_all(specs.join("apps")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(specs.join("apps/a.yaml"), "a: 1\n").unwrap();
        fs::write(outside.join("passwd.yaml"), "b: 1\n").unwrap();
        std::os::unix::fs::symlink(&outside, specs.join("etclink")).unwrap();
        // A link that stays inside is fine (its folder is read once).
        std::os::unix::fs::symlink("apps", specs.join("alias")).unwrap();
        let found = discover(std::slice::from_ref(&specs));
        assert_eq!(found.files.len(), 1, "{:?}", found.files);
        assert!(found.files[0].ends_with("a.yaml"), "{:?}", found.files);
        assert!(found.errors.is_empty(), "{:?}", found.errors);
        assert_eq!(found.warnings.len(), 1, "{:?}", found.warnings);
        assert_eq!(found.warnings[0].file, specs.join("etclink"));
        assert!(found.warnings[0].message.contains("outside"));

        // Through a root that is itself a link, the tree is where the link leads.
        let current = dir.path().join("current");
        std::os::unix::fs::symlink(&specs, &current).unwrap();
        let found = discover(std::slice::from_ref(&current));
        assert_eq!(found.files.len(), 1, "{:?}", found.files);
        assert_eq!(found.warnings.len(), 1);
    }
}
