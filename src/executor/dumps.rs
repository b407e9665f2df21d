//! Database dumps: which command each engine needs, run inside the database's own
//! container so the dump is consistent while the database keeps serving.
//!
//! Passwords travel as environment variables of the exec (`PGPASSWORD`, `MYSQL_PWD`,
//! `REDISCLI_AUTH`; MongoDB's tools read none, so theirs goes from a variable into a
//! private config file), never on a command line that `ps` would show or a log would print.
//!
//! SQL dumps are written so that replaying them into the running server they came from
//! puts the archived rows back exactly: every object is dropped and recreated, and
//! nothing fails because a database or role already exists.

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

/// PostgreSQL, as a script that can be replayed into a live server with `psql -v
/// ON_ERROR_STOP=1`, connected to any database. `one <db> <connection options>` dumps one
/// database, `all <connection options>` the roles, tablespaces and every database.
///
/// `pg_dumpall --clean` cannot do this: it drops the role it is connected as (which fails),
/// and it drops and recreates whole databases, which fails while anything else is
/// connected to them. So each database is written as: create it if it is missing (the
/// `CREATE DATABASE` statement `pg_dump --create` would use, run through `\gexec` only when
/// the database does not exist), connect to it and restore its properties (the rest of
/// `pg_dump --create`'s header), then `pg_dump --clean --if-exists`, which drops and
/// recreates each object inside it. Roles come from `pg_dumpall --roles-only` with each
/// `CREATE ROLE` made to tolerate an existing role (its `ALTER ROLE` then sets every
/// property); role names with `$` are left as they are, so they can never end the dollar
/// quote. Tablespaces, rare in containers, are created when missing (name, owner and
/// location only).
///
/// Our own meta-commands (`\gexec`) only ever go between the outputs of pg_dump, never
/// inside them: recent versions fence their output with `\restrict`, which refuses
/// meta-commands, and editing inside it is limited to SQL.
///
/// Every output is captured before it is piped on, so that a failing tool fails the dump
/// (a POSIX shell has no `pipefail`). The database name travels in `PGDATABASE`, which
/// libpq never parses as a connection string, unlike `-d`.
const PG_DUMP: &str = r#"set -e
lit() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"; }
one() {
	db=$1
	shift
	header=$(PGDATABASE=$db pg_dump "$@" --create --schema-only --exclude-schema='*')
	create=$(printf '%s\n' "$header" | grep '^CREATE DATABASE ')
	printf '%s\n' 'SET standard_conforming_strings = on;'
	printf 'SELECT %s WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = %s)\n\\gexec\n' "$(lit "$create")" "$(lit "$db")"
	printf '%s\n' "$header" | grep -v '^CREATE DATABASE '
	PGDATABASE=$db pg_dump "$@" --clean --if-exists
}
all() {
	roles=$(pg_dumpall "$@" --roles-only)
	printf '%s\n' "$roles" | sed -e 's/^CREATE ROLE \([^$]*\);$/DO $hf$BEGIN CREATE ROLE \1; EXCEPTION WHEN duplicate_object THEN NULL; END$hf$;/'
	PGDATABASE=template1 psql "$@" -X -At -c "SELECT format('SELECT %L WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_tablespace WHERE spcname = %L)', format('CREATE TABLESPACE %I OWNER %I LOCATION %L', spcname, pg_catalog.pg_get_userbyid(spcowner), pg_catalog.pg_tablespace_location(oid)), spcname) || chr(10) || chr(92) || 'gexec' FROM pg_catalog.pg_tablespace WHERE spcname !~ '^pg_' ORDER BY spcname"
	dbs=$(PGDATABASE=template1 psql "$@" -X -At -c "SELECT datname FROM pg_catalog.pg_database WHERE datallowconn ORDER BY datname <> 'template1', datname")
	printf '%s\n' "$dbs" | while IFS= read -r db; do one "$db" "$@"; done
}
mode=$1
shift
case $mode in
all) all "$@" ;;
one)
	db=$1
	shift
	one "$db" "$@"
	;;
*) exit 2 ;;
esac
"#;

/// `mongodump` reads no password variable, and `--password x` would show on its command
/// line: the password goes into a config file (`--config`, YAML) made with `mktemp` (mode
/// 0600) inside the container and removed when the dump ends.
const MONGO_DUMP: &str = r#"c=
if [ -n "${HOLDFAST_MONGO_PASSWORD:-}" ]; then
	c=$(mktemp) || exit 1
	trap 'rm -f "$c"' EXIT INT TERM
	printf "password: '%s'\n" "$(printf '%s' "$HOLDFAST_MONGO_PASSWORD" | sed "s/'/''/g")" > "$c" || exit 1
fi
mongodump --archive --quiet ${HF_USER:+--username "$HF_USER" --authenticationDatabase admin} ${c:+"--config=$c"} "$@"
"#;

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
                let mut cmd = strings(&["sh", "-c", PG_DUMP, "sh", "all"]);
                cmd.extend(conn);
                vec![one(None, "sql", cmd, env)]
            } else {
                named
                    .iter()
                    .map(|db| {
                        let mut cmd = strings(&["sh", "-c", PG_DUMP, "sh", "one", db]);
                        cmd.extend(conn.clone());
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
pub(crate) mod tests {
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
        assert_eq!(
            all[0].command,
            ["sh", "-c", PG_DUMP, "sh", "all", "-U", "postgres"]
        );
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
            [
                "sh",
                "-c",
                PG_DUMP,
                "sh",
                "one",
                "app",
                "-U",
                "app",
                "-h",
                "127.0.0.1"
            ]
        );
        assert_eq!(named[1].command[5], "my db");
        assert_eq!(named[0].env, ["PGPASSWORD=s3cret"]);
        assert!(
            named
                .iter()
                .all(|c| !c.command.iter().any(|a| a.contains("s3cret")))
        );
    }

    /// Runs the PostgreSQL script against stand-ins for the PostgreSQL tools, which print
    /// what the real ones would in the places the script edits.
    fn run_pg_dump(mode: &[&str], fail_roles: bool) -> std::process::Output {
        use std::os::unix::fs::PermissionsExt;
        let bin = tempfile::tempdir().unwrap();
        let tools = [
            (
                "pg_dump",
                r#"case "$*" in
*--create*) printf '%s\n' '\restrict k' "CREATE DATABASE \"$PGDATABASE\" WITH TEMPLATE = template0 ENCODING = 'UTF8';" "ALTER DATABASE \"$PGDATABASE\" OWNER TO postgres;" '\unrestrict k' "\connect $PGDATABASE" ;;
*) printf '%s\n' "DROP TABLE IF EXISTS t; -- $PGDATABASE $*" ;;
esac"#,
            ),
            (
                "pg_dumpall",
                r#"[ -z "$FAIL" ] || { echo 'auth failed' >&2; exit 1; }
printf '%s\n' '\restrict r' 'CREATE ROLE app;' 'ALTER ROLE app WITH LOGIN;' 'CREATE ROLE "we$ird";' '\unrestrict r'"#,
            ),
            (
                "psql",
                r#"case "$*" in
*pg_tablespace*) ;;
*) printf '%s\n' template1 postgres "it's" ;;
esac"#,
            ),
        ];
        for (name, body) in tools {
            let path = bin.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = format!(
            "{}:{}",
            bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", PG_DUMP, "sh"])
            .args(mode)
            .args(["-U", "postgres"])
            .env("PATH", path);
        if fail_roles {
            cmd.env("FAIL", "1");
        }
        cmd.output().unwrap()
    }

    #[test]
    fn postgres_script_replays_over_existing_objects() {
        let out = run_pg_dump(&["all"], false);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // Existing roles are tolerated; a name that could end the dollar quote is not edited.
        assert!(lines.contains(
            &"DO $hf$BEGIN CREATE ROLE app; EXCEPTION WHEN duplicate_object THEN NULL; END$hf$;"
        ));
        assert!(lines.contains(&"CREATE ROLE \"we$ird\";"));
        // Each database: created only when missing, outside pg_dump's restricted sections,
        // then connected to, then its objects dropped and recreated.
        let guard = "SELECT 'CREATE DATABASE \"it''s\" WITH TEMPLATE = template0 ENCODING = ''UTF8'';' \
                     WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = 'it''s')";
        let at = lines.iter().position(|l| *l == guard).expect(&text);
        assert_eq!(lines[at + 1], "\\gexec");
        assert_eq!(lines[at + 2], "\\restrict k");
        assert_eq!(lines[at + 3], "ALTER DATABASE \"it's\" OWNER TO postgres;");
        assert_eq!(lines[at + 5], "\\connect it's");
        assert_eq!(
            lines[at + 6],
            "DROP TABLE IF EXISTS t; -- it's -U postgres --clean --if-exists"
        );
        assert!(!lines.iter().any(|l| l.starts_with("CREATE DATABASE")));
        let order: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("DROP TABLE IF EXISTS t; -- "))
            .collect();
        assert_eq!(order.len(), 3);
        assert!(order[0].starts_with("template1 ") && order[1].starts_with("postgres "));

        let one = run_pg_dump(&["one", "app"], false);
        let text = String::from_utf8(one.stdout).unwrap();
        assert!(one.status.success());
        assert!(!text.contains("ROLE"));
        assert!(text.contains("WHERE datname = 'app')\n\\gexec\n"));

        // A tool that fails fails the dump, even where its output is piped on.
        let failed = run_pg_dump(&["all"], true);
        assert!(!failed.status.success());
        assert!(String::from_utf8_lossy(&failed.stderr).contains("auth failed"));
    }

    /// Runs a MongoDB script against a stand-in for the tool that records how it was
    /// called: its arguments, its own command line as `ps` shows it, and the mode and
    /// content of any `--config` file. Returns that record and the config files' paths.
    pub(crate) fn run_fake_mongo_tool(
        tool: &str,
        script: &str,
        args: &[String],
        env: &[(&str, &str)],
    ) -> String {
        use std::os::unix::fs::PermissionsExt;
        let bin = tempfile::tempdir().unwrap();
        let path = bin.path().join(tool);
        std::fs::write(
            &path,
            "#!/bin/sh\nprintf 'arg %s\\n' \"$@\"\nprintf 'cmdline %s\\n' \"$(tr '\\0' ' ' < /proc/$$/cmdline)\"\nfor a; do case $a in --config=*) f=${a#--config=}; printf 'mode %s\\n' \"$(stat -c %a \"$f\")\"; sed 's/^/config /' \"$f\"; printf 'file %s\\n' \"$f\";; esac; done\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let search = format!(
            "{}:{}",
            bin.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::process::Command::new("sh")
            .args(["-c", script, "sh"])
            .args(args)
            .env("PATH", search)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// What a MongoDB tool was given: the password must be in a private config file that
    /// is gone afterwards, and on no command line.
    pub(crate) fn assert_password_only_in_config(record: &str, password: &str) {
        for line in record.lines() {
            if line.starts_with("arg ") || line.starts_with("cmdline ") {
                assert!(
                    !line.contains(password),
                    "on a command line: {line}\n{record}"
                );
            }
        }
        assert!(record.contains("mode 600\n"), "{record}");
        let config: Vec<&str> = record
            .lines()
            .filter_map(|l| l.strip_prefix("config "))
            .collect();
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&config.join("\n")).unwrap();
        assert_eq!(yaml["password"].as_str(), Some(password), "{record}");
        let file = record
            .lines()
            .find_map(|l| l.strip_prefix("file "))
            .expect(record);
        assert!(
            !std::path::Path::new(file).exists(),
            "{file} was left behind"
        );
    }

    #[test]
    fn mongo_password_reaches_mongodump_only_through_a_config_file() {
        let c = &commands(
            "mongo",
            Engine::Mongo,
            &Databases::Named(vec!["app".into()]),
            Some("root"),
            Some("it's \"s3cret\" $x"),
        )[0];
        assert!(
            !c.command.iter().any(|a| a.contains("s3cret")),
            "{:?}",
            c.command
        );
        let env: Vec<(&str, &str)> = c.env.iter().filter_map(|kv| kv.split_once('=')).collect();
        assert_eq!(&c.command[..2], ["sh", "-c"]);
        let record = run_fake_mongo_tool("mongodump", &c.command[2], &c.command[4..], &env);
        assert_password_only_in_config(&record, "it's \"s3cret\" $x");
        assert!(record.contains("arg --archive\n"), "{record}");
        assert!(record.contains("arg --username\narg root\n"), "{record}");
        assert!(record.contains("arg --db\narg app\n"), "{record}");
        // Without a password there is no config file.
        let record = run_fake_mongo_tool("mongodump", MONGO_DUMP, &[], &[]);
        assert!(!record.contains("--config"), "{record}");
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
