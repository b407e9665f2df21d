//! Defensive redaction of secret-looking values in free text bound for status files.
//!
//! Status carries no spec values by construction (only kind and name of the spec body are
//! rendered), so this is the second line of defence, for text that holdfast did not write
//! itself: error messages of `pg_dump`, Docker or a notification endpoint, and validation
//! errors that quote the value they reject. It errs on the side of hiding too much.
//!
//! What is replaced by [`REDACTED`], line by line:
//!
//! 1. The value of `KEY=value` or `key: value` when the key looks secret ([`is_secret_key`]);
//!    the value is a quoted string, or the text up to whitespace or `, ; & ) ] }`. A key may
//!    be quoted (`"password": "x"`); an `Authorization: Bearer x` loses both words.
//! 2. After a secret-looking *field path* (`spec.dumps[0].password: ...`, as validation
//!    errors start), every quoted or backquoted literal and every `(word)` in the rest of
//!    the line: that is where validation messages quote the rejected value, e.g. `must be
//!    an object, found a string ("hunter2")`. A field name in a hint may go with them.
//! 3. The password of a URL (`ntfy://user:password@host/...`).
//! 4. The word after a flag that takes a secret (`--requirepass x`, `--password x`; see
//!    [`crate::secrets::is_secret_flag`]), and MySQL's glued `-px` on a line that runs a
//!    MySQL or MariaDB tool.
//!
//! Keys that contain `/` are not keys: they are paths or `Kind/name` (a policy named
//! `passbolt` or `keycloak` is not a secret).

/// What a secret value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Whether a setting or variable name looks like it holds a secret (`POSTGRES_PASSWORD`,
/// `apiKey`, `GITEA__security__SECRET_KEY`): the one rule of [`crate::secrets`].
pub fn is_secret_key(name: &str) -> bool {
    crate::secrets::is_secret_name(name)
}

/// Replaces secret-looking values in `text` by [`REDACTED`]; see the module docs for what
/// counts. Text without any is returned unchanged.
pub fn redact(text: &str) -> String {
    redact_with(text, REDACTED)
}

/// [`redact`] with another replacement text (recipes say who hid the value).
pub fn redact_with(text: &str, marker: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| {
            let line = redact_pairs(line, marker);
            let line = redact_after_secret_field(&line, marker);
            let line = redact_url_passwords(&line, marker);
            redact_flags(&line, marker)
        })
        .collect()
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']' | '/')
}

fn is_field_path(key: &str) -> bool {
    key.contains('.') || key.contains('[')
}

/// The separator at byte `i` of `line`, if any, and where the value after it starts.
fn separator_at(line: &str, i: usize) -> Option<usize> {
    let bytes = line.as_bytes();
    match bytes[i] {
        b'=' => Some(i + 1),
        // `key:value` without a space is a time, a port or a URL, not a pair.
        b':' if bytes.get(i + 1) == Some(&b' ') => Some(i + 2),
        _ => None,
    }
}

/// The key written right before the separator at byte `sep`, unquoted.
fn key_before(line: &str, sep: usize) -> &str {
    let head = &line[..sep];
    for quote in ['"', '\''] {
        if let Some(inner) = head.strip_suffix(quote) {
            return inner.rfind(quote).map_or("", |start| &inner[start + 1..]);
        }
    }
    let start = head
        .char_indices()
        .rev()
        .find(|&(_, c)| !is_key_char(c))
        .map_or(0, |(at, c)| at + c.len_utf8());
    &head[start..]
}

/// A secret-looking key that is a plain name, not a path or field path.
fn is_secret_name_key(key: &str) -> bool {
    !key.is_empty() && !key.contains('/') && !is_field_path(key) && is_secret_key(key)
}

/// The end (exclusive byte index) of the value starting at `start`.
fn value_end(line: &str, start: usize) -> usize {
    let rest = &line[start..];
    if let Some(quote) = rest
        .chars()
        .next()
        .filter(|c| matches!(c, '"' | '\'' | '`'))
    {
        return closing_quote(rest, quote).map_or(line.len(), |end| start + end);
    }
    let token_end = |from: usize| {
        line[from..]
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '&' | ')' | ']' | '}'))
            .map_or(line.len(), |at| from + at)
    };
    let end = token_end(start);
    // `Bearer <token>`: the scheme alone is no secret, the word after it is.
    let scheme = &line[start..end];
    if (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("basic"))
        && line[end..].starts_with(' ')
    {
        return token_end(end + 1);
    }
    end
}

/// The byte index just past the quote closing the one that starts `text`, honouring
/// backslash escapes inside double quotes (Rust's `{:?}` writes them).
fn closing_quote(text: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (at, c) in text.char_indices().skip(1) {
        if escaped {
            escaped = false;
        } else if c == '\\' && quote == '"' {
            escaped = true;
        } else if c == quote {
            return Some(at + c.len_utf8());
        }
    }
    None
}

/// Rule 1: values of secret-looking `KEY=value` and `key: value` pairs.
fn redact_pairs(line: &str, marker: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut copied = 0;
    let mut i = 0;
    while i < line.len() {
        let Some(value_start) = separator_at(line, i) else {
            i += 1;
            continue;
        };
        if !is_secret_name_key(key_before(line, i)) {
            i = value_start;
            continue;
        }
        let body_end = line.trim_end_matches(['\n', '\r']).len();
        let end = value_end(line, value_start).min(body_end);
        if end > value_start {
            out.push_str(&line[copied..value_start]);
            out.push_str(marker);
            copied = end;
        }
        i = end.max(value_start);
    }
    out.push_str(&line[copied..]);
    out
}

/// Rule 2: literals after the first secret-looking field path followed by `: `.
fn redact_after_secret_field(line: &str, marker: &str) -> String {
    let mut i = 0;
    while i < line.len() {
        if line.as_bytes()[i] == b':'
            && let Some(value_start) = separator_at(line, i)
        {
            let key = key_before(line, i);
            if is_field_path(key) && !key.contains('/') && is_secret_key(key) {
                let mut out = line[..value_start].to_string();
                out.push_str(&redact_literals(&line[value_start..], marker));
                return out;
            }
        }
        i += 1;
    }
    line.to_string()
}

fn redact_literals(text: &str, marker: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['"', '`', '(']) {
        out.push_str(&rest[..at]);
        let from = &rest[at..];
        if let Some(inner) = from.strip_prefix('(') {
            // `(word)` is how a rejected number or boolean is shown; `(hint: ...)` is prose.
            match inner.find(')') {
                Some(close) if close > 0 && !inner[..close].contains(char::is_whitespace) => {
                    out.push('(');
                    out.push_str(marker);
                    out.push(')');
                    rest = &inner[close + 1..];
                }
                _ => {
                    out.push('(');
                    rest = inner;
                }
            }
            continue;
        }
        let quote = if from.starts_with('"') { '"' } else { '`' };
        out.push_str(marker);
        match closing_quote(from, quote) {
            Some(end) => rest = &from[end..],
            // An unterminated literal may run to the end: hide all of it, keep the newline.
            None => {
                rest = "";
                out.push_str(&from[from.trim_end_matches(['\n', '\r']).len()..]);
            }
        }
    }
    out.push_str(rest);
    out
}

/// Rule 3: `scheme://user:password@host` keeps the user and hides the password.
fn redact_url_passwords(line: &str, marker: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("://") {
        let authority_start = at + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority_end = after
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                let userinfo = &authority[..userinfo_end];
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push(':');
                        out.push_str(marker);
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

/// Rule 4: the value after a secret flag (`--requirepass x`), and MySQL's `-px`.
fn redact_flags(line: &str, marker: &str) -> String {
    let mysql = crate::secrets::mentions_mysql(line);
    let mut out = String::with_capacity(line.len());
    let mut copied = 0;
    let mut hide_next = false;
    let mut at = 0;
    while let Some(start) = line[at..]
        .find(|c: char| !c.is_whitespace())
        .map(|i| at + i)
    {
        let rest = &line[start..];
        // A quoted word runs to its closing quote, spaces and all.
        let len = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => closing_quote(rest, q).unwrap_or(rest.len()),
            _ => rest.find(char::is_whitespace).unwrap_or(rest.len()),
        };
        let word = &line[start..start + len];
        let bare = word.trim_matches(['"', '\'', ',', '[', ']']);
        if hide_next && !bare.starts_with('-') && !bare.is_empty() {
            out.push_str(&line[copied..start]);
            out.push_str(marker);
            copied = start + len;
            hide_next = false;
        } else if crate::secrets::is_glued_mysql_password(bare, mysql) {
            let from = start + word.find("-p").unwrap_or(0) + 2;
            let to = from + bare.len() - 2;
            out.push_str(&line[copied..from]);
            out.push_str(marker);
            copied = to;
            hide_next = false;
        } else {
            hide_next = crate::secrets::is_secret_flag(bare);
        }
        at = start + len;
    }
    out.push_str(&line[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_redacted() {
        let cases = [
            (
                "pg_dump failed: PGPASSWORD=hunter2 rejected",
                "pg_dump failed: PGPASSWORD=<redacted> rejected",
            ),
            ("api_key: abc123, retrying", "api_key: <redacted>, retrying"),
            (
                "password: \"hunter 2\" was refused",
                "password: <redacted> was refused",
            ),
            (
                r#"{"db_password": "x y", "user": "postgres"}"#,
                r#"{"db_password": <redacted>, "user": "postgres"}"#,
            ),
            ("url?token=abc&x=1", "url?token=<redacted>&x=1"),
            (
                "401 with Authorization: Bearer abc.def ok",
                "401 with Authorization: <redacted> ok",
            ),
            (
                "POST ntfy://alice:s3cret@ntfy.example/backups failed",
                "POST ntfy://alice:<redacted>@ntfy.example/backups failed",
            ),
            // Validation errors quote the value they reject.
            (
                "specs/db.yaml:12:17: BackupPolicy/db: spec.dumps[0].password: must be an object, found a string (\"hunter2\")",
                "specs/db.yaml:12:17: BackupPolicy/db: spec.dumps[0].password: must be an object, found a string (<redacted>)",
            ),
            (
                "specs/db.yaml:13:18: BackupPolicy/db: spec.dumps[0].password.value: must be a string, found a number (123456)",
                "specs/db.yaml:13:18: BackupPolicy/db: spec.dumps[0].password.value: must be a string, found a number (<redacted>)",
            ),
            (
                "a.yaml:1:1: Archive/x: spec.dumps[0].password.value: `p4ss\"w` is not one of: a (hint: try `b`)",
                "a.yaml:1:1: Archive/x: spec.dumps[0].password.value: <redacted> is not one of: a (hint: try <redacted>)",
            ),
            ("two\nlines TOKEN=t\n", "two\nlines TOKEN=<redacted>\n"),
            (
                "redis-server --requirepass r3dis --appendonly yes",
                "redis-server --requirepass <redacted> --appendonly yes",
            ),
            (
                "exec: mysqladmin -uroot -phunter2 ping failed",
                "exec: mysqladmin -uroot -p<redacted> ping failed",
            ),
            (
                "--password \"a b\" --port 1",
                "--password <redacted> --port 1",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), expected, "{input}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for text in [
            "specs/passbolt.yaml:3:5: BackupPolicy/passbolt: spec.schedule: `0 3 * *` has 4 fields, a schedule has 5",
            "specs/keycloak.yaml:3:5: BackupPolicy/keycloak: spec.retention.keepDaily: 0 is less than the minimum, 1",
            "waiting for policy secrets-vault to release stack nextcloud",
            "FATAL: password authentication failed for user \"postgres\"",
            "ran at 03:00:00, https://ntfy.example/backups answered 200",
            "org.opencontainers.image.authors: Jane Doe",
            "docker run -p 8080:80 app --port 5432",
            "",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    /// The real validator, fed passwords where they do not belong: whatever it says, the
    /// status text must not repeat them.
    #[test]
    fn real_validation_errors_lose_their_secrets() {
        use crate::load::read_str;
        use crate::validate::validate_sources;
        use std::path::Path;
        let policy = |password: &str| {
            format!(
                "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: db\nspec:\n  schedule: \"@daily\"\n  targets: {{stacks: [db]}}\n  dumps:\n    - service: db\n      engine: postgres\n      password: {password}\n"
            )
        };
        let mut checked = 0;
        for (password, secret) in [
            ("hunter2secret", "hunter2secret"),
            ("\"hunter 2 secret\"", "hunter 2 secret"),
            ("{value: 8675309}", "8675309"),
            ("{value: [s3cr3t-item]}", "s3cr3t-item"),
            ("{valu: zz-top-secret}", "zz-top-secret"),
            ("{fromEnv: X, value: both-secret}", "both-secret"),
        ] {
            let report = validate_sources(vec![read_str(
                Path::new("specs/db.yaml"),
                &policy(password),
            )]);
            let errors: Vec<String> = report.diagnostics().iter().map(|d| d.to_string()).collect();
            assert!(!errors.is_empty(), "{password} should be invalid");
            for error in &errors {
                let redacted = redact(error);
                assert!(!redacted.contains(secret), "{error}\n=> {redacted}");
                checked += usize::from(error.contains(secret));
            }
        }
        // The validator itself names only the type of a secret-looking value; the
        // redaction here is the second line of defence.
        assert_eq!(checked, 0, "the validator quoted a secret");
    }

    #[test]
    fn secret_names() {
        for n in [
            "POSTGRES_PASSWORD",
            "apiKey",
            "GITEA__security__SECRET_KEY",
            "token",
        ] {
            assert!(is_secret_key(n), "{n}");
        }
        for n in ["PGDATA", "TZ", "schedule", "keepDaily", "POSTGRES_USER"] {
            assert!(!is_secret_key(n), "{n}");
        }
    }
}
