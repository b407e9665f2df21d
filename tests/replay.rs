//! Dumps taken by `holdfast backup` replay into the running services they came from: after
//! rows are changed, deleted and added (and a whole database dropped), a replay puts back
//! exactly the archived rows, and reports the counts.

mod common;

use std::fs;

use common::env::manifests;
use common::*;
use holdfast::docker::engine::Engine;
use holdfast::repo::manifest::Artifact;
use holdfast::restore::replay::{ReplayReport, replay};

const PG: &str = "psql -X -q -v ON_ERROR_STOP=1 -U postgres";
const MY: &str = "MYSQL_PWD=demo-root-password mariadb -u root";

fn seed(stack: &ComposeStack) {
    sh_in(
        &stack.container("db"),
        &format!(
            "{PG} -c \"CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three');\" \
             -c 'CREATE DATABASE extra' && \
             {PG} -d extra -c \"CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'a'), (2, 'b');\""
        ),
    );
    sh_in(
        &stack.container("mariadb"),
        &format!(
            "{MY} demo -e \"CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three');\""
        ),
    );
    sh_in(
        &stack.container("redis"),
        "redis-cli MSET a one b two c three >/dev/null",
    );
    // The sqlite service created its items table with apple, pear and plum.
}

/// Updates a row, deletes one and adds one, in every engine; drops a whole database too.
fn change(stack: &ComposeStack) {
    sh_in(
        &stack.container("db"),
        &format!(
            "{PG} -c \"UPDATE items SET name = 'changed' WHERE id = 1; DELETE FROM items WHERE id = 2; INSERT INTO items VALUES (4, 'four');\" \
             -c 'DROP DATABASE extra'"
        ),
    );
    sh_in(
        &stack.container("mariadb"),
        &format!(
            "{MY} demo -e \"UPDATE items SET name = 'changed' WHERE id = 1; DELETE FROM items WHERE id = 2; INSERT INTO items VALUES (4, 'four');\""
        ),
    );
    sh_in(
        &stack.container("redis"),
        "redis-cli SET a changed >/dev/null && redis-cli DEL b >/dev/null && redis-cli SET d four >/dev/null",
    );
    sh_in(
        &stack.container("sqlite"),
        "sqlite3 /data/app.db \"UPDATE items SET qty = 99 WHERE name = 'apple'; DELETE FROM items WHERE name = 'pear'; INSERT INTO items (name, qty) VALUES ('fig', 1);\"",
    );
}

fn lines(text: String) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

/// What every engine holds, in a form to compare.
fn rows(stack: &ComposeStack) -> Vec<Vec<String>> {
    vec![
        lines(sh_in(
            &stack.container("db"),
            &format!("{PG} -At -c 'SELECT id, name FROM items ORDER BY id'"),
        )),
        lines(sh_in(
            &stack.container("db"),
            &format!("{PG} -At -d extra -c 'SELECT id, body FROM notes ORDER BY id'"),
        )),
        lines(sh_in(
            &stack.container("mariadb"),
            &format!("{MY} -N -B -e 'SELECT id, name FROM demo.items ORDER BY id'"),
        )),
        lines(sh_in(
            &stack.container("redis"),
            "redis-cli --raw MGET a b c d && redis-cli DBSIZE",
        )),
        lines(sh_in(
            &stack.container("sqlite"),
            "sqlite3 /data/app.db 'SELECT id, name, qty FROM items ORDER BY id'",
        )),
    ]
}

fn count(report: &ReplayReport, name: &str) -> Option<u64> {
    report
        .counts
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, c)| *c)
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn changed_databases_get_exactly_their_archived_rows_back() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hfrp{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    seed(&stack);

    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    let repository = dir.path().join("repository");
    fs::create_dir(&specs).unwrap();
    fs::write(
        specs.join("dumps.yaml"),
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: dumps\nspec:\n  schedule: '@daily'\n  targets:\n    stacks: [{project}]\n  dumps:\n    - {{service: db, engine: postgres, password: {{fromEnv: POSTGRES_PASSWORD}}}}\n    - {{service: mariadb, engine: mariadb, databases: [demo], user: root, password: {{fromEnv: MARIADB_ROOT_PASSWORD}}}}\n    - {{service: redis, engine: redis}}\n    - {{service: sqlite, engine: sqlite, databases: [/data/app.db]}}\n"
        ),
    )
    .unwrap();
    let out = run(holdfast()
        .env("HOLDFAST_SPECS", &specs)
        .env("HOLDFAST_STATE", dir.path().join("state"))
        .env("HOLDFAST_REPOSITORY", &repository)
        .args(["backup", "dumps"]));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let found = manifests(&repository);
    assert_eq!(found.len(), 1);
    let archive = found[0].parent().unwrap().to_path_buf();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&found[0]).unwrap()).unwrap();
    let dumps: Vec<Artifact> = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| serde_json::from_value::<Artifact>(a.clone()).unwrap())
        .filter(|a| a.kind == "dump")
        .collect();
    assert_eq!(dumps.len(), 4, "{dumps:#?}");

    let archived = rows(&stack);
    assert_eq!(archived[0], ["1|one", "2|two", "3|three"]);
    assert_eq!(archived[1], ["1|a", "2|b"]);
    assert_eq!(archived[2], ["1\tone", "2\ttwo", "3\tthree"]);
    assert_eq!(archived[3], ["one", "two", "three", "", "3"]);
    assert_eq!(archived[4], ["1|apple|3", "2|pear|5", "3|plum|7"]);

    change(&stack);
    assert_eq!(
        lines(sh_in(
            &stack.container("db"),
            &format!("{PG} -At -c 'SELECT id, name FROM items ORDER BY id'"),
        )),
        ["1|changed", "3|three", "4|four"]
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let engine = runtime.block_on(Engine::connect(None)).unwrap();
    let replay_all = || -> Vec<ReplayReport> {
        dumps
            .iter()
            .map(|a| {
                let container = a.source.clone().unwrap();
                let file = archive.join(&a.path);
                runtime
                    .block_on(replay(&engine, &container, a, &file))
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    };
    let reports = replay_all();
    assert_eq!(rows(&stack), archived);

    let by_engine = |engine: &str| {
        reports
            .iter()
            .find(|r| r.engine == engine)
            .unwrap_or_else(|| panic!("no {engine} report in {reports:#?}"))
    };
    let pg = by_engine("postgres");
    assert_eq!(pg.database, None);
    assert_eq!(count(pg, "postgres.public.items"), Some(3), "{pg:#?}");
    assert_eq!(count(pg, "extra.public.notes"), Some(2), "{pg:#?}");
    let my = by_engine("mariadb");
    assert_eq!(my.database.as_deref(), Some("demo"));
    assert_eq!(my.counts, [("demo.items".to_string(), 3)]);
    let redis = by_engine("redis");
    assert_eq!(redis.counts, [("db0".to_string(), 3)]);
    assert_eq!(redis.container, stack.container("redis"));
    let sqlite = by_engine("sqlite");
    assert_eq!(sqlite.counts, [("items".to_string(), 3)]);
    assert!(reports.iter().all(|r| r.artifact.starts_with("dumps/")));

    let pg_dump = dumps
        .iter()
        .find(|a| a.engine.as_deref() == Some("postgres"))
        .unwrap();

    // Replaying onto data that already matches changes nothing and duplicates nothing.
    replay_all();
    assert_eq!(rows(&stack), archived);

    // Redis was restarted for its file and is back, healthy; the others never stopped.
    stack.wait_healthy();
    // The restored SQLite database still belongs to its application's user.
    assert_eq!(
        sh_in(
            &stack.container("sqlite"),
            "stat -c %u:%g /data/app.db; ls -A /data"
        )
        .trim(),
        "1000:1000\napp.db"
    );

    // A client that fails at once ends the replay with its error instead of a hang: the
    // MariaDB container has psql (the host's), but no PostgreSQL server to talk to.
    let err = runtime
        .block_on(replay(
            &engine,
            &stack.container("mariadb"),
            pg_dump,
            &archive.join(&pg_dump.path),
        ))
        .unwrap_err();
    assert!(
        err.to_string().contains("psql failed with exit code 2"),
        "{err}"
    );

    // A damaged file is refused before anything changes.
    let copy = dir.path().join("damaged.sql.zst");
    let mut bytes = fs::read(archive.join(&pg_dump.path)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&copy, bytes).unwrap();
    let err = runtime
        .block_on(replay(&engine, &stack.container("db"), pg_dump, &copy))
        .unwrap_err();
    assert!(err.to_string().contains("sha256"), "{err}");
}
