//! What counts as a secret. Secrets never appear in status files, logs, the API or recipe
//! output, so every place that prints user data asks here first.
//!
//! Names are judged by their words, not their letters: `AUTH_TOKEN`, `authToken` and
//! `DB_PW` look secret, `org.opencontainers.image.authors`, `KEYBOARD_LAYOUT` and
//! `PASSAGE` do not. A name is split on `_ . - / :`, spaces and camelCase humps; it looks
//! secret when one of its words is a secret word ([`SECRET_WORDS`]), or contains one of
//! the long secret stems that people glue to other words (`PGPASSWORD`, `dbpassword`,
//! `clientsecret`, `apitoken`).

/// Words that make a name secret on their own.
const SECRET_WORDS: &[&str] = &[
    "PASS",
    "PASSWORD",
    "PASSWORDS",
    "PASSWD",
    "PASSPHRASE",
    "PWD",
    "PW",
    "SECRET",
    "SECRETS",
    "TOKEN",
    "TOKENS",
    "KEY",
    "KEYS",
    "APIKEY",
    "ACCESSKEY",
    "PRIVATEKEY",
    "CREDENTIAL",
    "CREDENTIALS",
    "CREDS",
    "AUTH",
    "AUTHORIZATION",
    "BASICAUTH",
    "REQUIREPASS",
    "MASTERAUTH",
];

/// Stems long enough that a word containing them is secret (`PGPASSWORD`, `apitoken`).
const SECRET_STEMS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "SECRET",
    "TOKEN",
    "CREDENTIAL",
];

/// Whether a setting or environment variable name looks like it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    // `PWD` alone is the shell's working directory, not a password.
    if name == "PWD" {
        return false;
    }
    words(name).iter().any(|word| {
        let upper = word.to_ascii_uppercase();
        SECRET_WORDS.contains(&upper.as_str())
            || SECRET_STEMS.iter().any(|stem| upper.contains(stem))
    })
}

/// The words of a name: split on separators and camelCase humps (`DBPassword` gives `DB`,
/// `Password`; `authToken` gives `auth`, `Token`).
fn words(name: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for part in name.split(|c: char| !c.is_ascii_alphanumeric()) {
        let chars: Vec<(usize, char)> = part.char_indices().collect();
        let mut start = 0;
        for i in 1..chars.len() {
            let (at, c) = chars[i];
            let prev = chars[i - 1].1;
            let next_lower = chars
                .get(i + 1)
                .is_some_and(|&(_, n)| n.is_ascii_lowercase());
            let hump = c.is_ascii_uppercase()
                && (prev.is_ascii_lowercase()
                    || prev.is_ascii_digit()
                    || (prev.is_ascii_uppercase() && next_lower));
            if hump {
                out.push(&part[start..at]);
                start = at;
            }
        }
        if start < part.len() {
            out.push(&part[start..]);
        }
    }
    out
}

/// Whether a command-line flag takes a secret as its value (`--requirepass`,
/// `--password`, `--auth-token`): a `--` flag whose name looks secret.
pub fn is_secret_flag(flag: &str) -> bool {
    flag.strip_prefix("--")
        .is_some_and(|name| !name.is_empty() && !name.contains('=') && is_secret_name(name))
}

/// Whether an argument is MySQL's `-pPASSWORD` (the password glued to `-p`), given whether
/// the command is a MySQL or MariaDB tool: elsewhere `-p8080` is a port.
pub fn is_glued_mysql_password(arg: &str, mysql_command: bool) -> bool {
    mysql_command && arg.len() > 2 && arg.starts_with("-p") && !arg.starts_with("-p=")
}

/// Whether a command line (or one of its words) is a MySQL or MariaDB client tool.
pub fn mentions_mysql(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("mysql") || lower.contains("mariadb")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for n in [
            "POSTGRES_PASSWORD",
            "api_key",
            "apiKey",
            "GITEA__security__SECRET_KEY",
            "TOKEN",
            "password",
            "AUTH_TOKEN",
            "authToken",
            "DB_PW",
            "MYSQL_PWD",
            "PGPASSWORD",
            "AWS_SECRET_ACCESS_KEY",
            "DBPassword",
            "clientSecret",
            "SMTP_PASS",
            "Authorization",
            "traefik.http.middlewares.x.basicauth.users",
            "requirepass",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
    }

    #[test]
    fn words_that_only_contain_secret_letters_are_not_secret() {
        for n in [
            "PGDATA",
            "TZ",
            "PATH",
            "PWD",
            "POSTGRES_USER",
            "org.opencontainers.image.authors",
            "AUTHOR",
            "KEYBOARD_LAYOUT",
            "MONKEY",
            "PASSAGE",
            "keycloak",
            "passbolt",
            "BYPASS_CACHE",
            "keepDaily",
        ] {
            assert!(!is_secret_name(n), "{n}");
        }
    }

    #[test]
    fn names_split_into_words() {
        assert_eq!(words("DBPassword"), ["DB", "Password"]);
        assert_eq!(words("authToken"), ["auth", "Token"]);
        assert_eq!(
            words("GITEA__security__SECRET_KEY"),
            ["GITEA", "security", "SECRET", "KEY"]
        );
        assert_eq!(words("s3AccessKeyId"), ["s3", "Access", "Key", "Id"]);
        assert_eq!(words("image.authors"), ["image", "authors"]);
    }

    #[test]
    fn secret_flags() {
        for f in [
            "--requirepass",
            "--password",
            "--masterauth",
            "--auth-token",
            "--api-key",
        ] {
            assert!(is_secret_flag(f), "{f}");
        }
        for f in [
            "--port",
            "-p",
            "--appendonly",
            "password",
            "--",
            "--password=x",
        ] {
            assert!(!is_secret_flag(f), "{f}");
        }
        assert!(is_glued_mysql_password("-phunter2", true));
        assert!(!is_glued_mysql_password("-p8080", false));
        assert!(!is_glued_mysql_password("-p", true));
    }
}
