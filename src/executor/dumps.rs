//! Database dumps: which command each engine needs, run inside the database's own
//! container so the dump is consistent while the database keeps serving.
//!
//! Passwords travel as environment variables of the exec (`PGPASSWORD`, `MYSQL_PWD`,
//! `REDISCLI_AUTH`), never on a command line that `ps` would show or a log would print.

use crate::spec::common::{Databases, Engine};

/// One command producing one dump artifact on stdout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpCommand {
    /// The artifact path under the archive root, without compression extension.
    pub artifact: String,
    /// The database this command dumps, if one (for the manifest).
    pub database: Option<String>,
    pub command: Vec<String>,
    /// `NAME=value` pairs; may hold the password.
    pub env: Vec<String>,
}

/// The shell snippet that prefers MariaDB's dump tool and falls back to MySQL's.
const MYSQL_DUMP: &str = "if command -v mariadb-dump >/dev/null 2>&1; then exec mariadb-dump \"$@\"; else exec mysqldump \"$@\"; fi";

/// An online, consistent copy of an SQLite database via its backup API, never a raw copy
/// of a file that may be mid-write.
const SQLITE_BACKUP: &str =
    "set -e; t=$(mktemp); trap 'rm -f \"$t\"' EXIT; sqlite3 \"$1\" \".backup '$t'\"; cat \"$t\"";

const MONGO_DUMP: &str = "exec mongodump --archive --quiet ${HF_USER:+--username \"$HF_USER\" --authenticationDatabase admin} ${HOLDFAST_MONGO_PASSWORD:+--password \"$HOLDFAST_MONGO_PASSWORD\"} \"$@\"";

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A file-name-safe form of a database name or path.
fn slug(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let base = base
        .strip_suffix(".db")
        .or_else(|| base.strip_suffix(".sqlite3"))
        .unwrap_or(base);
    let s: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "db".into() } else { s }
}

/// The commands for one dump spec. `label` names the service (or container).
pub fn commands(
    label: &str,
    engine: Engine,
    databases: &Databases,
    user: Option<&str>,
    password: Option<&str>,
) -> Vec<DumpCommand> {
    let named: Vec<&str> = match databases {
        Databases::All(_) => Vec::new(),
        Databases::Named(names) => names.iter().map(String::as_str).collect(),
    };
    let artifact = |db: Option<&str>, ext: &str| match db {
        Some(db) => format!("dumps/{label}-{engine}-{}.{ext}", slug(db)),
        None => format!("dumps/{label}-{engine}.{ext}"),
    };
    let one = |db: Option<&str>, ext: &str, command: Vec<String>, env: Vec<String>| DumpCommand {
        artifact: artifact(db, ext),
        database: db.map(str::to_string),
        command,
        env,
    };
    match engine {
        Engine::Postgres => {
            let user = user.unwrap_or("postgres");
            let mut env = Vec::new();
            // Over the socket the official images trust every local user; a configured
            // password is only checked over TCP, so use TCP when there is one.
            let mut conn = vec!["-U".to_string(), user.to_string()];
            if let Some(p) = password {
                env.push(format!("PGPASSWORD={p}"));
                conn.extend(strings(&["-h", "127.0.0.1"]));
            }
            if named.is_empty() {
                let mut cmd = strings(&["pg_dumpall"]);
                cmd.extend(conn);
                vec![one(None, "sql", cmd, env)]
            } else {
                named
                    .iter()
                    .map(|db| {
                        let mut cmd = strings(&["pg_dump"]);
                        cmd.extend(conn.clone());
                        cmd.extend(strings(&["-d", db]));
                        one(Some(db), "sql", cmd, env.clone())
                    })
                    .collect()
            }
        }
        Engine::Mysql | Engine::Mariadb => {
            let user = user.unwrap_or("root");
            let env: Vec<String> = password
                .map(|p| format!("MYSQL_PWD={p}"))
                .into_iter()
                .collect();
            let base = |rest: &[&str]| {
                let mut cmd = strings(&["sh", "-c", MYSQL_DUMP, "sh"]);
                cmd.extend(strings(&[
                    "--single-transaction",
                    "--routines",
                    "--events",
                    "--triggers",
                    "-u",
                    user,
                ]));
                cmd.extend(strings(rest));
                cmd
            };
            if named.is_empty() {
                vec![one(None, "sql", base(&["--all-databases"]), env)]
            } else {
                named
                    .iter()
                    .map(|db| one(Some(db), "sql", base(&["--databases", db]), env.clone()))
                    .collect()
            }
        }
        Engine::Redis => {
            let env: Vec<String> = password
                .map(|p| format!("REDISCLI_AUTH={p}"))
                .into_iter()
                .collect();
            let mut cmd = strings(&["redis-cli"]);
            if let Some(u) = user {
                cmd.extend(strings(&["--user", u]));
            }
            // A consistent snapshot streamed by the server itself, as a replica would get it.
            cmd.extend(strings(&["--rdb", "-"]));
            vec![one(None, "rdb", cmd, env)]
        }
        Engine::Sqlite => named
            .iter()
            .map(|path| {
                one(
                    Some(path),
                    "db",
                    strings(&["sh", "-c", SQLITE_BACKUP, "sh", path]),
                    Vec::new(),
                )
            })
            .collect(),
        Engine::Mongo => {
            let mut env = Vec::new();
            if let Some(u) = user {
                env.push(format!("HF_USER={u}"));
            }
            if let Some(p) = password {
                env.push(format!("HOLDFAST_MONGO_PASSWORD={p}"));
            }
            let base = |rest: &[&str]| {
                let mut cmd = strings(&["sh", "-c", MONGO_DUMP, "sh"]);
                cmd.extend(strings(rest));
                cmd
            };
            if named.is_empty() {
                vec![one(None, "archive", base(&[]), env)]
            } else {
                named
                    .iter()
                    .map(|db| one(Some(db), "archive", base(&["--db", db]), env.clone()))
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::common::AllDatabases;

    #[test]
    fn postgres_all_and_named() {
        let all = commands(
            "db",
            Engine::Postgres,
            &Databases::All(AllDatabases::All),
            None,
            None,
        );
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].artifact, "dumps/db-postgres.sql");
        assert_eq!(all[0].command, ["pg_dumpall", "-U", "postgres"]);
        assert!(all[0].env.is_empty());
        let named = commands(
            "db",
            Engine::Postgres,
            &Databases::Named(vec!["app".into(), "my db".into()]),
            Some("app"),
            Some("s3cret"),
        );
        assert_eq!(named.len(), 2);
        assert_eq!(named[1].artifact, "dumps/db-postgres-my_db.sql");
        assert_eq!(
            named[0].command,
            ["pg_dump", "-U", "app", "-h", "127.0.0.1", "-d", "app"]
        );
        assert_eq!(named[0].env, ["PGPASSWORD=s3cret"]);
        assert!(
            named
                .iter()
                .all(|c| !c.command.iter().any(|a| a.contains("s3cret")))
        );
    }

    #[test]
    fn mysql_uses_one_transaction_and_env_password() {
        let c = &commands(
            "mariadb",
            Engine::Mariadb,
            &Databases::Named(vec!["demo".into()]),
            None,
            Some("pw"),
        )[0];
        assert_eq!(c.artifact, "dumps/mariadb-mariadb-demo.sql");
        assert!(c.command.contains(&"--single-transaction".to_string()));
        assert_eq!(&c.command[c.command.len() - 2..], ["--databases", "demo"]);
        assert_eq!(c.env, ["MYSQL_PWD=pw"]);
    }

    #[test]
    fn redis_and_sqlite() {
        let r = &commands(
            "redis",
            Engine::Redis,
            &Databases::default(),
            None,
            Some("pw"),
        )[0];
        assert_eq!(r.artifact, "dumps/redis-redis.rdb");
        assert_eq!(r.command, ["redis-cli", "--rdb", "-"]);
        assert_eq!(r.env, ["REDISCLI_AUTH=pw"]);
        let s = commands(
            "app",
            Engine::Sqlite,
            &Databases::Named(vec!["/data/app.db".into()]),
            None,
            None,
        );
        assert_eq!(s[0].artifact, "dumps/app-sqlite-app.db");
        assert_eq!(
            s[0].command.last().map(String::as_str),
            Some("/data/app.db")
        );
    }
}
