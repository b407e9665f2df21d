//! What it takes to bring a stack back besides its data: compose files, `docker inspect`
//! of each container and the stack's networks, with secrets redacted (never written).
//!
//! Redaction follows the structure of what it reads, so that a recipe stays usable and
//! no secret hides in a shape a line-by-line match would miss:
//! - compose files are parsed as YAML ([`compose`]): the scalar under a secret-looking key
//!   is replaced wherever it sits (block, flow, folded or literal, or behind an alias),
//!   and the result is still YAML with the comments and layout as written;
//! - `.env` files are parsed as Compose reads them ([`dotenv`]: `export`, quotes,
//!   comments);
//! - `docker inspect` documents are walked as JSON ([`redact_inspect`]).
//!
//! Every other value still loses URL passwords (`postgres://app:pw@db`), `key=value`
//! pairs with a secret-looking key, and the value of secret flags (`--requirepass pw`),
//! in a string or as the next item of an argument list.

mod compose;
mod dotenv;

pub use compose::redact_compose;
pub use dotenv::redact_dotenv;

use crate::secrets::{is_glued_mysql_password, is_secret_flag, is_secret_name, mentions_mysql};

pub const REDACTED: &str = "<redacted by holdfast>";

/// A value with URL passwords, secret `key=value` pairs and secret flags hidden, or
/// `None` when it holds none.
fn redact_in_value(value: &str) -> Option<String> {
    let hidden = crate::status::redact_with(value, REDACTED);
    (hidden != value).then_some(hidden)
}

/// `${NAME}` or `$NAME` alone: a reference to the environment, not a secret.
fn whole_reference(value: &str) -> bool {
    let name = value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .or_else(|| value.strip_prefix('$'));
    name.is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// A `NAME=value` pair with the whole value hidden when the name looks secret, else what
/// [`redact_in_value`] finds in it.
fn redact_env_pair(kv: &str) -> String {
    match kv.split_once('=') {
        Some((name, value)) if is_secret_name(name) && !value.is_empty() => {
            format!("{name}={REDACTED}")
        }
        Some((name, value)) => match redact_in_value(value) {
            Some(hidden) => format!("{name}={hidden}"),
            None => kv.to_string(),
        },
        None => kv.to_string(),
    }
}

/// Redacts an argument list in place: the item after a secret flag, and each item as a
/// value.
fn redact_argv(items: &mut [serde_json::Value]) {
    use serde_json::Value;
    let mysql = items.iter().any(|v| v.as_str().is_some_and(mentions_mysql));
    let mut hide_next = false;
    for item in items.iter_mut() {
        let Value::String(arg) = item else {
            hide_next = false;
            redact_inspect(item);
            continue;
        };
        if hide_next && !arg.starts_with('-') {
            *arg = REDACTED.to_string();
            hide_next = false;
            continue;
        }
        hide_next = is_secret_flag(arg);
        if is_glued_mysql_password(arg, mysql) {
            *arg = format!("-p{REDACTED}");
        } else if let Some(hidden) = redact_in_value(arg) {
            *arg = hidden;
        }
    }
}

/// Redacts secrets in a `docker inspect` document: `Env` pairs, any string under a
/// secret-looking field or label name, argument lists (`Cmd`, `Entrypoint`, `Args`,
/// healthchecks), and URL passwords and secret flags in every other string.
pub fn redact_inspect(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match v {
                    Value::Array(items) if key == "Env" => {
                        for item in items.iter_mut() {
                            if let Value::String(kv) = item {
                                *kv = redact_env_pair(kv);
                            }
                        }
                    }
                    Value::String(s) if is_secret_name(key) && !s.is_empty() => {
                        *s = REDACTED.into();
                    }
                    _ => redact_inspect(v),
                }
            }
        }
        Value::Array(items) => redact_argv(items),
        Value::String(s) => {
            if let Some(hidden) = redact_in_value(s) {
                *s = hidden;
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Line-by-line redaction for a compose file that is not YAML (it cannot be parsed, so
/// its structure cannot be followed): `KEY: value`, `- KEY=value` and `KEY=value` with a
/// secret-looking key, and what [`redact_in_value`] finds on every other line that is not
/// a comment.
fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        match redact_line(line) {
            Some(handled) => out.push_str(&handled),
            None => out.push_str(&redact_in_value(line).unwrap_or_else(|| line.to_string())),
        }
    }
    out
}

/// The line with its secret setting hidden, or as it is when it is a comment or a
/// reference; `None` when it is no secret setting.
fn redact_line(line: &str) -> Option<String> {
    let body = line.trim_end_matches(['\n', '\r']);
    let ending = &line[body.len()..];
    let indent_len = body.len() - body.trim_start().len();
    let (indent, rest) = body.split_at(indent_len);
    let (dash, rest) = match rest.strip_prefix("- ") {
        Some(r) => ("- ", r),
        None => ("", rest),
    };
    if rest.starts_with('#') {
        return Some(line.to_string());
    }
    // `- "KEY=value"`: the quotes go around the redacted item as well.
    let (quote, rest) = match rest.chars().next() {
        Some(q @ ('"' | '\'')) if rest.len() > 1 && rest.ends_with(q) => {
            (&rest[..1], &rest[1..rest.len() - 1])
        }
        _ => ("", rest),
    };
    let at = rest.find([':', '='])?;
    let name = rest[..at].trim().trim_matches(['"', '\'']);
    let value = rest[at + 1..].trim();
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if !valid_name || !is_secret_name(name) {
        return None;
    }
    if value.is_empty() || whole_reference(value.trim_matches(['"', '\''])) {
        return Some(line.to_string());
    }
    let sep = &rest[at..=at];
    let spacing = if sep == ":" { " " } else { "" };
    let value = if quote.is_empty() {
        format!("\"{REDACTED}\"")
    } else {
        REDACTED.to_string()
    };
    Some(format!(
        "{indent}{dash}{quote}{}{sep}{spacing}{value}{quote}{ending}",
        &rest[..at]
    ))
}

/// Writes one recipe file through the archive's outlet and describes it for the manifest.
pub fn write_file(
    outlet: &dyn crate::archive::Outlet,
    rel: &str,
    contents: &[u8],
) -> std::io::Result<crate::repo::manifest::Artifact> {
    use sha2::Digest;
    let mut file = outlet.create(rel)?;
    std::io::Write::write_all(&mut file, contents)?;
    let stored = file.commit()?;
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
        stored_size: stored.as_ref().map(|s| s.size),
        stored_sha256: stored.map(|s| s.sha256),
        snapshot: None,
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

    /// Every secret of `secrets` is gone from `text`.
    fn assert_hidden(text: &str, secrets: &[&str]) {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} left in:\n{text}");
        }
    }

    #[test]
    fn dotenv_is_parsed_not_matched() {
        let text = "# a comment with PASSWORD=not-a-value\n\
            export AWS_SECRET_ACCESS_KEY=aws-s3cret\n\
            DATABASE_URL=postgres://app:url-pw@db/app\n\
            MYSQL_PWD='mysql pw'\n\
            REDIS_ARGS=--requirepass redis-pw --appendonly yes\n\
            DB_PW=\"multi\nline-pw\"\n\
            TZ=Europe/Berlin # the host's zone\n\
            COMPOSE_PROJECT_NAME=app\n\
            ADMIN_PASSWORD=${FROM_SHELL}\n";
        let out = redact_dotenv(text);
        assert_hidden(
            &out,
            &["aws-s3cret", "url-pw", "mysql pw", "redis-pw", "line-pw"],
        );
        for kept in [
            "# a comment with PASSWORD=not-a-value\n",
            "export AWS_SECRET_ACCESS_KEY=",
            "postgres://app:",
            "@db/app",
            "--requirepass ",
            "--appendonly yes",
            "TZ=Europe/Berlin # the host's zone\n",
            "COMPOSE_PROJECT_NAME=app\n",
            "ADMIN_PASSWORD=${FROM_SHELL}\n",
        ] {
            assert!(out.contains(kept), "{kept} lost:\n{out}");
        }
        // Every line still reads as NAME=value: the names are all there.
        let names: Vec<&str> = out
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains('='))
            .map(|l| l.trim_start_matches("export ").split('=').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "AWS_SECRET_ACCESS_KEY",
                "DATABASE_URL",
                "MYSQL_PWD",
                "REDIS_ARGS",
                "DB_PW",
                "TZ",
                "COMPOSE_PROJECT_NAME",
                "ADMIN_PASSWORD"
            ]
        );
    }

    #[test]
    fn compose_is_redacted_by_structure_and_stays_yaml() {
        let text = r#"# the app
services:
  api:
    image: app:1
    environment: {API_TOKEN: flow-t0ken, LOG_LEVEL: info}
    labels:
      org.opencontainers.image.authors: Jane Doe
      backup.url: https://user:label-pw@backup.example/x
  db:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD: >-
        folded-first
        folded-second
      POSTGRES_USER: app
      DATABASE_URL: "postgres://app:dsn-pw@db/app"
      SECRET_FROM_ENV: ${SECRET}
    # PASSWORD: in a comment stays
  cache:
    image: redis:7
    command: redis-server --requirepass cmd-pw --appendonly yes
    environment:
      - REDIS_PASSWORD=list-pw
      - TZ=UTC
  cache2:
    image: redis:7
    command: ["redis-server", "--requirepass", "argv-pw"]
    healthcheck:
      test: ["CMD-SHELL", "mysqladmin -uroot -pglued-pw ping"]
x-common: &pw anchored-pw
secrets:
  db_password:
    file: ./db_password.txt
"#;
        let out = redact_compose(text);
        assert_hidden(
            &out,
            &[
                "flow-t0ken",
                "folded-first",
                "folded-second",
                "label-pw",
                "dsn-pw",
                "cmd-pw",
                "list-pw",
                "argv-pw",
                "glued-pw",
            ],
        );
        let before: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).unwrap();
        let after: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&out).unwrap_or_else(|e| panic!("no longer YAML: {e}\n{out}"));
        let env = &after["services"]["db"]["environment"];
        assert_eq!(env["POSTGRES_PASSWORD"].as_str(), Some(REDACTED));
        assert_eq!(
            env["POSTGRES_USER"],
            before["services"]["db"]["environment"]["POSTGRES_USER"]
        );
        assert_eq!(env["SECRET_FROM_ENV"].as_str(), Some("${SECRET}"));
        assert_eq!(
            after["services"]["api"]["environment"]["LOG_LEVEL"].as_str(),
            Some("info")
        );
        assert_eq!(
            after["services"]["api"]["labels"]["org.opencontainers.image.authors"].as_str(),
            Some("Jane Doe")
        );
        assert_eq!(
            after["services"]["cache"]["environment"][1].as_str(),
            Some("TZ=UTC")
        );
        assert_eq!(after["secrets"], before["secrets"]);
        assert!(
            out.starts_with("# the app\n") && out.contains("# PASSWORD: in a comment stays\n"),
            "{out}"
        );
        assert!(out.contains("--appendonly yes"), "{out}");
        // An anchor whose value a secret-looking key takes by alias is hidden too.
        let aliased = "x-pw: &pw anchored-pw\nservices:\n  db:\n    x: &nested nested-pw\n    environment:\n      DB_PASSWORD: *pw\n      API_TOKEN: *nested\n";
        let out = redact_compose(aliased);
        assert_hidden(&out, &["anchored-pw", "nested-pw"]);
        assert!(out.contains("&pw ") && out.contains("&nested "), "{out}");
        let after: serde_yaml_ng::Value = serde_yaml_ng::from_str(&out).unwrap();
        assert_eq!(
            after["services"]["db"]["environment"]["API_TOKEN"].as_str(),
            Some(REDACTED)
        );
        // Text that is not YAML is still redacted, line by line.
        let broken = "services: [\n  POSTGRES_PASSWORD: broken-pw\n";
        assert_hidden(&redact_compose(broken), &["broken-pw"]);
    }

    #[test]
    fn inspect_values_lose_urls_flags_and_short_names() {
        let mut v = serde_json::json!({
            "Path": "redis-server",
            "Args": ["--requirepass", "args-pw"],
            "Config": {
                "Env": ["DB_PW=pw-env", "DATABASE_DSN=mysql://u:dsn-pw@db/x", "TZ=UTC"],
                "Cmd": ["redis-server", "--requirepass", "cmd-pw", "--port", "6380"],
                "Labels": {
                    "org.opencontainers.image.authors": "Jane Doe",
                    "backup.target": "https://user:label-pw@backup.example/x"
                }
            }
        });
        redact_inspect(&mut v);
        let text = v.to_string();
        assert_hidden(
            &text,
            &["args-pw", "pw-env", "dsn-pw", "cmd-pw", "label-pw"],
        );
        assert_eq!(
            v["Config"]["Labels"]["org.opencontainers.image.authors"],
            "Jane Doe"
        );
        assert_eq!(v["Config"]["Cmd"][4], "6380");
        assert!(
            text.contains("TZ=UTC") && text.contains("mysql://u:"),
            "{text}"
        );
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

    /// Cut anywhere, or with a line missing, a file is still redacted without a panic:
    /// recipes are read from whatever the stack's folder holds.
    #[test]
    fn any_cut_of_a_file_is_redacted_without_panicking() {
        let samples = [
            "services:\n  db:\n    environment:\n      DB_PASSWORD: >-\n        a\n        b\n      X: &x 'q'\n      API_TOKEN: *x\n    command: [\"a\", \"--requirepass\", \"p\"]\n    labels: {u: \"https://u:p@h/\"}\n    healthcheck:\n      test: |\n        mysql -pX\n",
            "export A_KEY='x'\nB=\"multi\nline\" # c\nC=postgres://u:p@h/d\nD=--password \"a b\"\n#E=1\n",
            "a: \"unterminated\n- - [\n!!str &a |\n  é\u{0}\n",
        ];
        for text in samples {
            let cuts = text.char_indices().map(|(at, _)| at).chain([text.len()]);
            for at in cuts {
                let cut = &text[..at];
                let _ = redact_compose(cut);
                let _ = redact_dotenv(cut);
                let _ = crate::status::redact_with(cut, REDACTED);
            }
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            for skip in 0..lines.len() {
                let text: String = lines
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != skip)
                    .map(|(_, l)| *l)
                    .collect();
                let _ = redact_compose(&text);
                let _ = redact_dotenv(&text);
            }
        }
    }
}
