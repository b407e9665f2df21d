//! JSON Schemas generated from the spec types, one per kind.
//!
//! The committed copies under `schemas/` let editors check specs while people type
//! (`# yaml-language-server: $schema=...`); a test fails when they drift from the code.

use std::path::Path;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::spec::{
    API_VERSION, ArchiveSpec, BackupPolicySpec, Kind, KindSpec, NotifierSpec, Object,
    RepositorySpec, RestoreSpec,
};

/// The pattern of a DNS-1123 label, as the schema states it for editors.
pub const NAME_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

fn generate<S: KindSpec>() -> Value {
    let mut schema = schemars::schema_for!(Object<S>).to_value();
    strip_null(&mut schema);
    let kind = S::KIND.as_str();
    schema["title"] = json!(kind);
    schema["description"] = json!(format!("holdfast {kind}: {}", S::ABOUT));
    let properties = &mut schema["properties"];
    properties["apiVersion"] = json!({
        "description": "The API version of holdfast's resources.",
        "type": "string",
        "const": API_VERSION,
    });
    properties["kind"] = json!({
        "description": "The kind of object.",
        "type": "string",
        "const": kind,
    });
    let name = &mut schema["$defs"]["ObjectMeta"]["properties"]["name"];
    name["pattern"] = json!(NAME_PATTERN);
    name["maxLength"] = json!(63);
    name["minLength"] = json!(1);
    schema
}

/// Removes `null` as an allowed value everywhere. An empty value in a spec (`jitter:` with
/// nothing after it) is far more often a mistake than a wish for the default, and rejecting
/// it keeps the schema's errors precise instead of "matched neither of two alternatives".
fn strip_null(node: &mut Value) {
    match node {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            let null_branch = |v: &Value| {
                v.get("type").is_some_and(|t| t == "null")
                    && v.as_object().is_some_and(|o| o.len() == 1)
            };
            if let Some(Value::Array(branches)) = map.get("anyOf")
                && branches.len() == 2
                && branches.iter().any(null_branch)
            {
                let other = branches.iter().find(|b| !null_branch(b)).cloned();
                map.remove("anyOf");
                if let Some(Value::Object(other)) = other {
                    for (k, v) in other {
                        map.entry(k).or_insert(v);
                    }
                }
            }
            map.values_mut().for_each(strip_null);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
}

/// The schema of one kind.
pub fn for_kind(kind: Kind) -> &'static Value {
    static SCHEMAS: OnceLock<[Value; 6]> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| {
        [
            generate::<BackupPolicySpec>(),
            generate::<ArchiveSpec>(),
            generate::<RestoreSpec>(),
            generate::<RepositorySpec>(),
            generate::<NotifierSpec>(),
            generate::<crate::spec::ContainerScheduleSpec>(),
        ]
    });
    match kind {
        Kind::BackupPolicy => &all[0],
        Kind::Archive => &all[1],
        Kind::Restore => &all[2],
        Kind::Repository => &all[3],
        Kind::Notifier => &all[4],
        Kind::ContainerSchedule => &all[5],
    }
}

/// The compiled validator of one kind.
pub fn validator(kind: Kind) -> &'static jsonschema::Validator {
    static VALIDATORS: OnceLock<Vec<jsonschema::Validator>> = OnceLock::new();
    let all = VALIDATORS.get_or_init(|| {
        Kind::ALL
            .iter()
            .map(|k| {
                jsonschema::validator_for(for_kind(*k))
                    .unwrap_or_else(|e| panic!("the generated {k} schema does not compile: {e}"))
            })
            .collect()
    });
    &all[Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)]
}

/// The file a kind's schema is written to.
pub fn file_name(kind: Kind) -> String {
    format!("{}.schema.json", kind.as_str().to_ascii_lowercase())
}

/// The exact text written for a kind's schema.
pub fn render(kind: Kind) -> String {
    let mut text = serde_json::to_string_pretty(for_kind(kind)).unwrap_or_default();
    text.push('\n');
    text
}

/// The file of the schema that takes any kind, for files holding several kinds.
pub const ANY_KIND_FILE: &str = "holdfast.schema.json";

/// The schema of any holdfast object: each kind's schema under `$defs`, chosen by `kind`.
/// Editors apply one schema to every document of a file, so a file holding a BackupPolicy,
/// an Archive and a Restore points at this one.
pub fn any_kind() -> Value {
    let mut defs = serde_json::Map::new();
    let mut cases = Vec::new();
    for kind in Kind::ALL {
        let name = kind.as_str();
        let mut schema = for_kind(kind).clone();
        if let Some(map) = schema.as_object_mut() {
            map.remove("$schema");
        }
        rebase_refs(&mut schema, &format!("#/$defs/{name}/$defs/"));
        defs.insert(name.to_string(), schema);
        cases.push(json!({
            "if": {"properties": {"kind": {"const": name}}, "required": ["kind"]},
            "then": {"$ref": format!("#/$defs/{name}")},
        }));
    }
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "holdfast object",
        "description": "Any holdfast object; the schema of its `kind` applies. For spec files \
            holding several kinds in `---`-separated documents.",
        "type": "object",
        "required": ["apiVersion", "kind"],
        "properties": {
            "kind": {"description": "The kind of object.", "enum": kinds},
        },
        "allOf": cases,
        "$defs": defs,
    })
}

/// Points a kind's local references (`#/$defs/Name`) at its place inside another schema.
fn rebase_refs(node: &mut Value, base: &str) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref")
                && let Some(name) = r.strip_prefix("#/$defs/")
            {
                *r = format!("{base}{name}");
            }
            map.values_mut().for_each(|v| rebase_refs(v, base));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rebase_refs(v, base)),
        _ => {}
    }
}

/// Every schema file holdfast writes, by file name, with its exact text.
pub fn files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Kind::ALL
        .into_iter()
        .map(|kind| (file_name(kind), render(kind)))
        .collect();
    let mut any = serde_json::to_string_pretty(&any_kind()).unwrap_or_default();
    any.push('\n');
    files.push((ANY_KIND_FILE.to_string(), any));
    files
}

/// Writes every schema file into `dir`.
pub fn write_all(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, text) in files() {
        let path = dir.join(name);
        crate::fsutil::write_atomic(&path, text.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

/// Which committed schema files in `dir` differ from what the code generates.
pub fn stale_files(dir: &Path) -> Vec<std::path::PathBuf> {
    files()
        .into_iter()
        .map(|(name, text)| (dir.join(name), text))
        .filter(|(path, text)| std::fs::read_to_string(path).ok().as_ref() != Some(text))
        .map(|(path, _)| path)
        .collect()
}

/// Follows a local `$ref` (`#/$defs/Name`) to the schema it names.
fn resolve<'a>(root: &'a Value, mut node: &'a Value) -> &'a Value {
    for _ in 0..16 {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => match r.strip_prefix('#').and_then(|p| root.pointer(p)) {
                Some(target) => node = target,
                None => return node,
            },
            None => return node,
        }
    }
    node
}

/// The alternatives a node stands for: itself, or the branches of `anyOf`/`oneOf`.
fn branches<'a>(root: &'a Value, node: &'a Value) -> Vec<&'a Value> {
    let node = resolve(root, node);
    let mut out = vec![node];
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(list) = node.get(key).and_then(Value::as_array) {
            out.extend(list.iter().flat_map(|b| branches(root, b)));
        }
    }
    out
}

/// The schemas that describe the value at `path` of an instance.
pub fn nodes_at<'a>(root: &'a Value, path: &crate::diagnostic::FieldPath) -> Vec<&'a Value> {
    use crate::diagnostic::Segment;
    let mut current = branches(root, root);
    for segment in &path.0 {
        let mut next = Vec::new();
        for node in current {
            let child = match segment {
                Segment::Key(k) => node
                    .get("properties")
                    .and_then(|p| p.get(k))
                    .or_else(|| node.get("additionalProperties").filter(|v| v.is_object())),
                Segment::Index(_) => node.get("items").filter(|v| v.is_object()),
            };
            if let Some(child) = child {
                next.extend(branches(root, child));
            }
        }
        current = next;
    }
    current
}

/// The field names the schema allows in the mapping at `path`.
pub fn allowed_keys(root: &Value, path: &crate::diagnostic::FieldPath) -> Vec<String> {
    let mut keys: Vec<String> = nodes_at(root, path)
        .into_iter()
        .filter_map(|n| n.get("properties").and_then(Value::as_object))
        .flat_map(|p| p.keys().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The description of the value at `path`, if the schema has one.
pub fn description_at(root: &Value, path: &crate::diagnostic::FieldPath) -> Option<String> {
    nodes_at(root, path)
        .into_iter()
        .find_map(|n| n.get("description").and_then(Value::as_str))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::FieldPath;

    #[test]
    fn every_schema_compiles_and_names_its_kind() {
        for kind in Kind::ALL {
            let schema = for_kind(kind);
            assert_eq!(schema["properties"]["kind"]["const"], kind.as_str());
            assert_eq!(schema["properties"]["apiVersion"]["const"], API_VERSION);
            let _ = validator(kind);
        }
    }

    #[test]
    fn every_example_validates_against_the_schema_its_first_line_names() {
        // Editors apply a file's `$schema` line to every document in it.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut checked = 0;
        for folder in ["examples/specs", "examples/gallery", "specs"] {
            let Ok(entries) = std::fs::read_dir(root.join(folder)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let Some(schema) = text
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("# yaml-language-server: $schema="))
                else {
                    continue;
                };
                let name = schema.rsplit('/').next().unwrap_or_default();
                let (_, schema_text) = files()
                    .into_iter()
                    .find(|(file, _)| file == name)
                    .unwrap_or_else(|| panic!("{}: no schema file {name}", path.display()));
                let schema: Value = serde_json::from_str(&schema_text).expect("schema JSON");
                let validator = jsonschema::validator_for(&schema).expect("it compiles");
                for doc in text.split("\n---\n") {
                    let value: Value = serde_yaml_ng::from_str(doc).expect("each document is YAML");
                    let errors: Vec<String> = validator
                        .iter_errors(&value)
                        .map(|e| e.to_string())
                        .collect();
                    assert!(
                        errors.is_empty(),
                        "{} ({}): {errors:?}",
                        path.display(),
                        value["kind"]
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 6, "only {checked} documents found");
    }

    #[test]
    fn the_any_kind_schema_checks_each_document_by_its_kind() {
        let validator = jsonschema::validator_for(&any_kind()).expect("it compiles");
        let policy = json!({
            "apiVersion": API_VERSION, "kind": "BackupPolicy",
            "metadata": {"name": "a"},
            "spec": {"schedule": "@daily", "targets": {"stacks": ["a"]}},
        });
        assert!(
            validator.is_valid(&policy),
            "{:?}",
            validator
                .iter_errors(&policy)
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
        );
        // A Restore's field in a policy is refused, as is an unknown kind.
        let mut wrong = policy.clone();
        wrong["spec"]["from"] = json!({"policy": "x"});
        assert!(!validator.is_valid(&wrong));
        let mut wrong = policy;
        wrong["kind"] = json!("Nonsense");
        assert!(!validator.is_valid(&wrong));
    }

    #[test]
    fn walks_into_nested_and_optional_fields() {
        let schema = for_kind(Kind::BackupPolicy);
        let spec = FieldPath::root().key("spec");
        assert!(allowed_keys(schema, &spec).contains(&"schedule".to_string()));
        let retention = spec.key("retention");
        assert!(allowed_keys(schema, &retention).contains(&"keepDaily".to_string()));
        let dump = spec.key("dumps").index(0);
        assert!(allowed_keys(schema, &dump).contains(&"engine".to_string()));
        let password = dump.key("password");
        assert!(allowed_keys(schema, &password).contains(&"fromEnv".to_string()));
    }

    #[test]
    fn every_field_is_described() {
        fn walk(root: &Value, node: &Value, at: &str, missing: &mut Vec<String>) {
            if let Some(props) = node.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    let has = prop.get("description").is_some()
                        || resolve(root, prop).get("description").is_some()
                        || branches(root, prop)
                            .iter()
                            .any(|b| b.get("description").is_some());
                    if !has {
                        missing.push(format!("{at}.{name}"));
                    }
                }
            }
        }
        for kind in Kind::ALL {
            let root = for_kind(kind);
            let mut missing = Vec::new();
            walk(root, root, kind.as_str(), &mut missing);
            for (name, def) in root["$defs"].as_object().unwrap() {
                walk(root, def, name, &mut missing);
            }
            assert!(
                missing.is_empty(),
                "fields without a description: {missing:?}"
            );
        }
    }
}
