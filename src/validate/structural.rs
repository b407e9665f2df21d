//! Stage one: the envelope and the JSON Schema of the document's kind.
//!
//! Schema errors are turned into messages a person can act on, each placed at the key or
//! value it concerns, with a "did you mean" where a close match exists.

use jsonschema::ValidationError;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use serde_json::Value;

use crate::diagnostic::{FieldPath, Position, Segment, did_you_mean};
use crate::load::positions::DocumentPositions;
use crate::schema::{self, NAME_PATTERN};
use crate::spec::duration::{DURATION_PATTERN, parse_duration};
use crate::spec::{API_VERSION, Kind, check_dns1123_label, suggest_dns1123_label};

/// A problem found in a document, before it is given a file and object.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub at: Position,
    pub field: FieldPath,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(at: Position, field: FieldPath, message: impl Into<String>) -> Self {
        Problem {
            at,
            field,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

/// Checks `apiVersion` and `kind`. Returns the kind when it is known, so the document can be
/// checked against that kind's schema.
pub fn envelope(
    value: &Value,
    pos: &DocumentPositions,
    problems: &mut Vec<Problem>,
) -> Option<Kind> {
    let root = FieldPath::root();
    let Some(map) = value.as_object() else {
        problems.push(Problem::new(
            pos.start(),
            root,
            format!(
                "a spec document must be a mapping with apiVersion, kind, metadata and spec; found {}",
                describe(value)
            ),
        ));
        return None;
    };
    let kinds = Kind::ALL.map(Kind::as_str);
    let expected_kinds = kinds.join(", ");
    let kind = match map.get("kind") {
        None => {
            problems.push(
                Problem::new(
                    pos.start(),
                    root.key("kind"),
                    "missing required field `kind`",
                )
                .hint(Some(format!("set kind to one of {expected_kinds}"))),
            );
            None
        }
        Some(Value::String(name)) => {
            let kind = Kind::parse(name);
            if kind.is_none() {
                let field = root.key("kind");
                problems.push(
                    Problem::new(
                        pos.value_or_ancestor(&field),
                        field,
                        format!("unknown kind `{name}`; holdfast knows {expected_kinds}"),
                    )
                    .hint(did_you_mean(name, kinds)),
                );
            }
            kind
        }
        Some(other) => {
            let field = root.key("kind");
            problems.push(Problem::new(
                pos.value_or_ancestor(&field),
                field,
                format!(
                    "expected the name of a kind ({expected_kinds}), found {}",
                    describe(other)
                ),
            ));
            None
        }
    };
    match map.get("apiVersion") {
        None => problems.push(
            Problem::new(
                pos.start(),
                root.key("apiVersion"),
                "missing required field `apiVersion`",
            )
            .hint(Some(format!("add `apiVersion: {API_VERSION}`"))),
        ),
        Some(Value::String(v)) if v == API_VERSION => {}
        Some(other) => {
            let field = root.key("apiVersion");
            let shown = other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_string);
            problems.push(
                Problem::new(
                    pos.value_or_ancestor(&field),
                    field,
                    format!("unknown apiVersion `{shown}`; this release of holdfast understands `{API_VERSION}`"),
                )
                .hint(did_you_mean(&shown, [API_VERSION])),
            );
        }
    }
    kind
}

/// Validates a document against its kind's schema. Errors about `apiVersion` and `kind` are
/// left to [`envelope`].
pub fn against_schema(
    kind: Kind,
    value: &Value,
    pos: &DocumentPositions,
    problems: &mut Vec<Problem>,
) {
    let root_schema = schema::for_kind(kind);
    for error in schema::validator(kind).iter_errors(value) {
        let path = field_path(&error);
        let envelope_field = |name: &str| name == "apiVersion" || name == "kind";
        if matches!(path.0.first(), Some(Segment::Key(k)) if envelope_field(k)) {
            continue;
        }
        if let ValidationErrorKind::Required { property } = error.kind()
            && path.is_root()
            && property.as_str().is_some_and(envelope_field)
        {
            continue;
        }
        render(&error, root_schema, pos, problems);
    }
}

fn field_path(error: &ValidationError<'_>) -> FieldPath {
    FieldPath(
        error
            .instance_path()
            .segments()
            .map(|s| match s {
                LocationSegment::Property(p) => Segment::Key(p.into_owned()),
                LocationSegment::Index(i) => Segment::Index(i),
            })
            .collect(),
    )
}

fn render(
    error: &ValidationError<'_>,
    root_schema: &Value,
    pos: &DocumentPositions,
    out: &mut Vec<Problem>,
) {
    let path = field_path(error);
    let raw: &Value = error.instance();
    // Under a secret-looking field, messages name the value's type, never the value.
    let hidden = match raw {
        Value::String(_) => Value::String("<redacted>".into()),
        Value::Number(_) => Value::String("<a redacted number>".into()),
        other => other.clone(),
    };
    let instance: &Value = if holds_secret(&path) { &hidden } else { raw };
    let at_value = pos.value_or_ancestor(&path);
    let problem = match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let allowed = schema::allowed_keys(root_schema, &path);
            let host_secret = |keys: &[String]| {
                keys.len() == 2 && keys.iter().all(|k| k == "fromEnv" || k == "fromFile")
            };
            for name in unexpected {
                let field = path.key(name.clone());
                if name == "value" && host_secret(&allowed) {
                    out.push(
                        Problem::new(
                            pos.key_or_value(&field),
                            field,
                            "unknown field `value`: a secret holdfast reads is never written in a spec",
                        )
                        .hint(Some(format!("use {HOST_SECRET_FORMS}"))),
                    );
                    continue;
                }
                if path.0.last() == Some(&Segment::Key("hostSelector".into())) {
                    out.push(
                        Problem::new(
                            pos.key_or_value(&field),
                            field,
                            format!("unknown field `{name}`: only matchLabels is supported in a hostSelector"),
                        )
                        .hint(Some("list the labels a host must have under matchLabels".into())),
                    );
                    continue;
                }
                let hint = did_you_mean(name, allowed.iter().map(String::as_str)).or_else(|| {
                    (!allowed.is_empty())
                        .then(|| format!("fields allowed here: {}", allowed.join(", ")))
                });
                out.push(
                    Problem::new(
                        pos.key_or_value(&field),
                        field,
                        format!("unknown field `{name}`"),
                    )
                    .hint(hint),
                );
            }
            return;
        }
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_string);
            Problem::new(
                pos.missing_in(&path),
                path.key(name.clone()),
                format!("missing required field `{name}`"),
            )
        }
        ValidationErrorKind::Type { kind } => {
            let hint = mapping_hint(kind, instance, root_schema, &path);
            Problem::new(
                at_value,
                path,
                format!(
                    "expected {}, found {}",
                    expected_type(kind),
                    describe(instance)
                ),
            )
            .hint(hint)
        }
        ValidationErrorKind::Enum { options } => {
            let names: Vec<String> = options
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let shown = instance
                .as_str()
                .map_or_else(|| instance.to_string(), str::to_string);
            Problem::new(
                at_value,
                path,
                format!("`{shown}` is not one of: {}", names.join(", ")),
            )
            .hint(did_you_mean(&shown, names.iter().map(String::as_str)))
        }
        ValidationErrorKind::Constant { expected_value } => Problem::new(
            at_value,
            path,
            format!("must be {expected_value}, found {}", describe(instance)),
        ),
        ValidationErrorKind::Pattern { pattern } => {
            pattern_problem(pattern, instance, at_value, path)
        }
        ValidationErrorKind::MaxLength { limit } => match instance.as_str() {
            Some(name) if path_is_name(&path) => name_problem(name, at_value, path),
            _ => Problem::new(
                at_value,
                path,
                format!("{} is longer than {limit} characters", describe(instance)),
            ),
        },
        ValidationErrorKind::MinLength { .. } => Problem::new(at_value, path, "must not be empty"),
        ValidationErrorKind::MinItems { limit } => Problem::new(
            at_value,
            path,
            format!(
                "must list at least {limit} item{}",
                if *limit == 1 { "" } else { "s" }
            ),
        ),
        ValidationErrorKind::Minimum { limit } => Problem::new(
            at_value,
            path,
            format!("{instance} is less than the minimum, {limit}"),
        ),
        ValidationErrorKind::Maximum { limit } => Problem::new(
            at_value,
            path,
            format!("{instance} is more than the maximum, {limit}"),
        ),
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            // When one alternative got past the shape of this value, its errors are the
            // useful ones; otherwise say what the field accepts.
            let depth = path.0.len();
            let deeper = context
                .iter()
                .find(|branch| branch.iter().any(|e| field_path(e).0.len() > depth));
            if let Some(branch) = deeper {
                for e in branch {
                    render(e, root_schema, pos, out);
                }
                return;
            }
            if let Some(names) = enum_names(root_schema, &path) {
                let shown = instance
                    .as_str()
                    .map_or_else(|| instance.to_string(), str::to_string);
                out.push(
                    Problem::new(
                        at_value,
                        path,
                        format!("`{shown}` is not one of: {}", names.join(", ")),
                    )
                    .hint(did_you_mean(&shown, names.iter().map(String::as_str))),
                );
                return;
            }
            let accepts = schema::description_at(root_schema, &path)
                .unwrap_or_else(|| "a different form of value".to_string());
            Problem::new(
                at_value,
                path,
                format!(
                    "{} is not accepted here; expected {}",
                    describe(instance),
                    lowercase_first(&accepts)
                ),
            )
        }
        _ => Problem::new(at_value, path, error.to_string()),
    };
    out.push(problem);
}

/// How a secret holdfast itself reads is written (a Repository's keys). No quotes or
/// backticks: redaction hides quoted literals after a secret field, and this must survive.
const HOST_SECRET_FORMS: &str = "{fromEnv: VARIABLE} to read a variable of holdfast's own environment, or {fromFile: PATH} to read a file on this host; specs live in git, so never the secret itself";

/// For a plain value where a mapping belongs, how to write the mapping: for a secret
/// (`password: shop-secret`) the forms a secret takes, otherwise the fields it holds.
fn mapping_hint(
    kind: &TypeKind,
    instance: &Value,
    root_schema: &Value,
    path: &FieldPath,
) -> Option<String> {
    let wants_mapping = match kind {
        TypeKind::Single(t) => t.as_str() == "object",
        TypeKind::Multiple(_) => false,
    };
    if !wants_mapping || instance.is_object() || instance.is_array() {
        return None;
    }
    let key = match path.0.last() {
        Some(Segment::Key(key)) => key.as_str(),
        _ => return None,
    };
    let allowed = schema::allowed_keys(root_schema, path);
    let has = |name: &str| allowed.iter().any(|k| k == name);
    if allowed.len() == 2 && has("fromEnv") && has("fromFile") {
        return Some(format!("write a mapping: {HOST_SECRET_FORMS}"));
    }
    if has("value") && has("fromEnv") {
        // No quotes or backticks: after a secret field, redaction hides every quoted
        // literal, and the examples must survive into status files.
        return Some(
            "write a mapping: {value: …} for the secret itself, or {fromEnv: VARIABLE} to read a variable of the database container, or {fromFile: PATH}".to_string(),
        );
    }
    (!allowed.is_empty()).then(|| {
        format!(
            "write `{key}:` as a mapping with some of: {}",
            allowed.join(", ")
        )
    })
}

/// When every alternative at `path` is a fixed word (an enum whose variants carry their own
/// descriptions), the words.
fn enum_names(root_schema: &Value, path: &FieldPath) -> Option<Vec<String>> {
    let leaves: Vec<&Value> = schema::nodes_at(root_schema, path)
        .into_iter()
        .filter(|n| n.get("oneOf").is_none() && n.get("anyOf").is_none())
        .collect();
    let mut names = Vec::new();
    for leaf in &leaves {
        match (leaf.get("const"), leaf.get("enum")) {
            (Some(Value::String(c)), _) => names.push(c.clone()),
            (_, Some(Value::Array(list))) => {
                names.extend(list.iter().filter_map(Value::as_str).map(str::to_string))
            }
            _ => return None,
        }
    }
    (!names.is_empty()).then_some(names)
}

/// Whether a field path goes through a secret-looking key (`password`, `value` of a
/// secret source, `apiToken`, ...).
fn holds_secret(path: &FieldPath) -> bool {
    path.0
        .iter()
        .any(|s| matches!(s, Segment::Key(k) if crate::secrets::is_secret_name(k)))
}

fn path_is_name(path: &FieldPath) -> bool {
    path.0 == [Segment::Key("metadata".into()), Segment::Key("name".into())]
}

fn name_problem(name: &str, at: Position, path: FieldPath) -> Problem {
    let message = check_dns1123_label(name)
        .err()
        .unwrap_or_else(|| format!("`{name}` is not a valid name"));
    let suggestion = suggest_dns1123_label(name);
    let hint =
        (!suggestion.is_empty() && suggestion != name).then(|| format!("try `{suggestion}`"));
    Problem::new(at, path, message).hint(hint)
}

fn pattern_problem(pattern: &str, instance: &Value, at: Position, path: FieldPath) -> Problem {
    let text = instance.as_str().unwrap_or_default();
    if pattern == DURATION_PATTERN {
        return match parse_duration(text) {
            Err(e) => {
                let hint = e.suggestion().map(|s| format!("did you mean `{s}`?"));
                Problem::new(at, path, e.to_string()).hint(hint)
            }
            Ok(_) => Problem::new(
                at,
                path,
                format!(
                    "`{text}` is not a duration holdfast accepts (each number has at most 9 digits)"
                ),
            ),
        };
    }
    if pattern == NAME_PATTERN {
        return name_problem(text, at, path);
    }
    Problem::new(
        at,
        path,
        format!("`{text}` does not match the pattern {pattern}"),
    )
}

fn expected_type(kind: &TypeKind) -> String {
    let name = |t: &str| match t {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "a string",
        "integer" => "a whole number",
        "number" => "a number",
        "boolean" => "true or false",
        "null" => "nothing",
        _ => "a value",
    };
    match kind {
        TypeKind::Single(t) => name(t.as_str()).to_string(),
        TypeKind::Multiple(set) => set
            .iter()
            .map(|t| name(t.as_str()))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

/// A short description of a value for messages: its type and, for scalars, the value.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing (an empty value)".to_string(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) if s.chars().count() > 40 => {
            format!("a string (\"{}…\")", s.chars().take(40).collect::<String>())
        }
        Value::String(s) => format!("a string ({s:?})"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a mapping".to_string(),
    }
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}
