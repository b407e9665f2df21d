//! The generation of an object: which edit of its spec the controller has seen.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The generation of an object: the first 8 bytes, in hex, of the sha256 of its `spec` as
/// canonical JSON (object keys sorted, no whitespace), followed by the value of the
/// `holdfast.dev/requested-at` annotation when present. Same spec, same generation, across
/// processes, releases and key orders; so a restart does not re-run an Archive or Restore.
///
/// Pass the `spec` as written (the loaded document), not a re-serialized typed spec: then
/// a release that adds a defaulted field does not change every generation.
pub fn generation(spec: &Value, requested_at: Option<&str>) -> String {
    let mut canonical = String::new();
    write_canonical(spec, &mut canonical);
    let mut hasher = Sha256::new();
    hasher.update(canonical.as_bytes());
    if let Some(at) = requested_at {
        // Canonical JSON escapes control characters, so a NUL cannot occur in it and the
        // two parts cannot be confused ("a" + "b\0" versus "ab" + "\0").
        hasher.update([0u8]);
        hasher.update(at.as_bytes());
    }
    hex::encode(&hasher.finalize()[..8])
}

/// Compact JSON with object keys sorted, whatever order the map keeps them in (serde_json
/// keeps insertion order when any crate in the build enables `preserve_order`).
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        // Scalars have one compact form already.
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_sorts_keys_at_every_level() {
        let mut out = String::new();
        write_canonical(
            &json!({"b": [1, {"z": true, "a": null}], "a": "x y"}),
            &mut out,
        );
        assert_eq!(out, r#"{"a":"x y","b":[1,{"a":null,"z":true}]}"#);
    }

    #[test]
    fn stable_across_key_orders() {
        let a: Value = serde_json::from_str(
            r#"{"schedule":"0 3 * * *","targets":{"stacks":["nc"],"volumes":["v"]}}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            r#"{"targets":{"volumes":["v"],"stacks":["nc"]},"schedule":"0 3 * * *"}"#,
        )
        .unwrap();
        assert_eq!(generation(&a, None), generation(&b, None));
        let g = generation(&a, None);
        assert_eq!(g.len(), 16);
        assert!(g.chars().all(|c| c.is_ascii_hexdigit()));
        // Pinned (computed independently): a change here changes every observedGeneration
        // in the field and re-runs every Archive and Restore once.
        assert_eq!(g, "23f4dd9e89327c8c");
        assert_eq!(
            generation(&b, Some("2026-11-25T10:00:00Z")),
            "0c7e9a8ef9cf3225"
        );
    }

    #[test]
    fn changes_with_spec_or_requested_at() {
        let spec = json!({"schedule": "0 3 * * *"});
        let base = generation(&spec, None);
        assert_ne!(base, generation(&json!({"schedule": "0 4 * * *"}), None));
        assert_ne!(base, generation(&spec, Some("2026-11-25T10:00:00Z")));
        assert_ne!(generation(&spec, Some("1")), generation(&spec, Some("2")));
        assert_ne!(base, generation(&spec, Some("")));
        // Order within a list is meaningful.
        assert_ne!(
            generation(&json!({"stacks": ["a", "b"]}), None),
            generation(&json!({"stacks": ["b", "a"]}), None)
        );
    }
}
