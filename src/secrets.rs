//! What counts as a secret. Secrets never appear in status files, logs, the API or recipe
//! output, so every place that prints user data asks here first.

/// Whether a setting or environment variable name looks like it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["PASS", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "AUTH"]
        .iter()
        .any(|word| upper.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for n in [
            "POSTGRES_PASSWORD",
            "api_key",
            "GITEA__security__SECRET_KEY",
            "TOKEN",
            "password",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in ["PGDATA", "TZ", "PATH", "POSTGRES_USER"] {
            assert!(!is_secret_name(n), "{n}");
        }
    }
}
