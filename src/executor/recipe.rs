//! What it takes to bring a stack back besides its data: compose files, `docker inspect`
//! of each container and the stack's networks, with secrets redacted (never written).

pub use crate::secrets::is_secret_name;

pub const REDACTED: &str = "<redacted by holdfast>";

/// Redacts `NAME=value` pairs whose name looks secret.
pub fn redact_env(pairs: &[String]) -> Vec<String> {
    pairs
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((name, _)) if is_secret_name(name) => format!("{name}={REDACTED}"),
            _ => kv.clone(),
        })
        .collect()
}

/// Redacts secrets in a `docker inspect` document: `Config.Env`, and any string field or
/// label whose name looks secret.
pub fn redact_inspect(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "Env" {
                    if let Value::Array(items) = v {
                        for item in items.iter_mut() {
                            if let Value::String(kv) = item {
                                *kv = redact_env(std::slice::from_ref(kv)).remove(0);
                            }
                        }
                    }
                } else if is_secret_name(key) && v.is_string() {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact_inspect(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_inspect),
        _ => {}
    }
}

/// Redacts secret-looking settings in a compose or `.env` file, line by line so comments
/// and layout stay as written: `KEY: value`, `- KEY=value`, `KEY=value`.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        out.push_str(&redact_line(line));
    }
    out
}

fn redact_line(line: &str) -> String {
    let body = line.trim_end_matches(['\n', '\r']);
    let ending = &line[body.len()..];
    let indent_len = body.len() - body.trim_start().len();
    let (indent, rest) = body.split_at(indent_len);
    let (dash, rest) = match rest.strip_prefix("- ") {
        Some(r) => ("- ", r),
        None => ("", rest),
    };
    if rest.starts_with('#') {
        return line.to_string();
    }
    let split = rest.find([':', '=']);
    let Some(at) = split else {
        return line.to_string();
    };
    let name = rest[..at].trim().trim_matches(['"', '\'']);
    let value = rest[at + 1..].trim();
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if !valid_name || !is_secret_name(name) || value.is_empty() || value.starts_with("${") {
        return line.to_string();
    }
    let sep = &rest[at..=at];
    let spacing = if sep == ":" { " " } else { "" };
    format!(
        "{indent}{dash}{}{sep}{spacing}\"{REDACTED}\"{ending}",
        &rest[..at]
    )
}

/// Writes one recipe file under the archive root and describes it for the manifest.
pub fn write_file(
    root: &std::path::Path,
    rel: &str,
    contents: &[u8],
) -> std::io::Result<crate::repo::manifest::Artifact> {
    use sha2::Digest;
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    crate::fsutil::write_atomic(&path, contents)?;
    Ok(crate::repo::manifest::Artifact {
        kind: "recipe".into(),
        path: rel.to_string(),
        size: contents.len() as u64,
        sha256: hex::encode(sha2::Sha256::digest(contents)),
        source_bytes: contents.len() as u64,
        entries: 1,
        via: None,
        source: None,
        stack: None,
        engine: None,
        database: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_text_is_redacted_in_place() {
        let text = "services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: hunter2\n      POSTGRES_USER: app\n      - API_TOKEN=abc\n      SECRET_FROM_ENV: ${SECRET}\n    # PASSWORD: in a comment stays\n";
        let out = redact_text(text);
        assert!(!out.contains("hunter2") && !out.contains("abc"), "{out}");
        assert!(out.contains("POSTGRES_USER: app"));
        assert!(out.contains("      POSTGRES_PASSWORD: \"<redacted by holdfast>\"\n"));
        assert!(out.contains("      - API_TOKEN=\"<redacted by holdfast>\"\n"));
        assert!(out.contains("SECRET_FROM_ENV: ${SECRET}"));
        assert!(out.contains("# PASSWORD: in a comment stays"));
    }

    #[test]
    fn inspect_env_and_fields_are_redacted() {
        let mut v = serde_json::json!({
            "Config": {"Env": ["POSTGRES_PASSWORD=hunter2", "PGDATA=/data"], "Labels": {"app.token": "t0k"}},
            "Name": "/db"
        });
        redact_inspect(&mut v);
        let text = v.to_string();
        assert!(!text.contains("hunter2") && !text.contains("t0k"), "{text}");
        assert!(text.contains("PGDATA=/data"));
    }
}
