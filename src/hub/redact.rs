//! Every JSON body the API sends passes through [`redact_value`]: no response carries a
//! secret, whatever the spec, the run history or Docker's labels hold.

use serde_json::Value;

use crate::secrets::is_secret_name;
use crate::status::{REDACTED, redact};

/// Hides secrets in place: the string under a secret-looking key, the `value` of a secret
/// source (`password: {value: ...}`), and secret-looking text anywhere (`KEY=value`, URL
/// passwords), as the status files do.
pub fn redact_value(value: &mut Value) {
    walk(value, false);
}

fn walk(value: &mut Value, under_secret: bool) {
    match value {
        Value::String(s) => {
            if under_secret {
                *s = REDACTED.to_string();
            } else {
                let hidden = redact(s);
                if hidden != *s {
                    *s = hidden;
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, under_secret);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let secret_key = is_secret_name(key);
                match item {
                    // `password: {fromEnv: POSTGRES_PASSWORD}` names where the secret
                    // is, which is fine to show; `password: {value: x}` is the secret.
                    Value::Object(inner) if secret_key => {
                        for (k, v) in inner.iter_mut() {
                            walk(v, k == "value" || is_secret_name(k));
                        }
                    }
                    _ => walk(item, under_secret || secret_key),
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// `value` as JSON bytes, redacted.
pub fn to_body<T: serde::Serialize>(value: &T) -> bytes::Bytes {
    match serde_json::to_value(value) {
        Ok(mut v) => {
            redact_value(&mut v);
            bytes::Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
        }
        Err(e) => bytes::Bytes::from(
            serde_json::json!({"error": format!("rendering the response: {e}")}).to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_hidden_and_their_names_kept() {
        let mut v = json!({
            "spec": {"dumps": [
                {"engine": "postgres", "password": {"fromEnv": "POSTGRES_PASSWORD"}},
                {"engine": "mariadb", "password": {"value": "hunter2"}},
            ]},
            "labels": {"api_token": "abc123", "app": "web"},
            "error": "pg_dump: connection failed: PGPASSWORD=hunter2 host=db",
            "url": "ntfy://me:hunter2@ntfy.example/topic",
            "list": ["POSTGRES_PASSWORD=hunter2"],
        });
        redact_value(&mut v);
        let text = v.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("abc123"), "{text}");
        assert_eq!(
            v["spec"]["dumps"][0]["password"]["fromEnv"],
            "POSTGRES_PASSWORD"
        );
        assert_eq!(v["labels"]["app"], "web");
        assert_eq!(v["spec"]["dumps"][1]["engine"], "mariadb");
    }
}
