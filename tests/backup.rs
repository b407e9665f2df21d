//! `holdfast backup` against the real engine: a complete, checksummed archive of a running
//! Compose stack whose dumps load into fresh servers, and every container as it was after
//! each kind of failure.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::env::Env;
use common::*;
use serde_json::Value;

impl Env {
    fn backup(&self, name: &str, extra: &[&str]) -> (std::process::Output, Value) {
        let out = run(self
            .holdfast()
            .args(["backup", name, "-o", "json"])
            .args(extra));
        let outcome: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "backup printed no JSON ({e}):\n{}\n{}",
                stdout(&out),
                stderr(&out)
            )
        });
        (out, outcome)
    }
}

/// A BackupPolicy named `name` with the given lines of `spec` (indented two spaces).
fn policy(name: &str, body: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: {name}\nspec:\n  schedule: '@daily'\n{body}"
    )
}

const ALL_DUMPS: &str = "  dumps:
    - {service: db, engine: postgres, password: {fromEnv: POSTGRES_PASSWORD}}
    - {service: mariadb, engine: mariadb, databases: [demo], user: root, password: {fromEnv: MARIADB_ROOT_PASSWORD}}
    - {service: redis, engine: redis}
    - {service: sqlite, engine: sqlite, databases: [/data/app.db]}
";

/// Fills the web volume with what an archive must carry exactly.
fn seed_web_volume(stack: &ComposeStack) {
    sh_in(
        &stack.container("web"),
        "set -e; cd /www; mkdir -p a/b/c empty; echo hello > a/b/c/file.txt; \
         echo secret > a/private; chmod 600 a/private; chown 1234:5678 a/private; \
         printf 'x%.0s' $(seq 1 5000) > big.txt; ln -s a/b/c/file.txt rel-link; ln -s /nonexistent dangling; \
         echo same > h1; ln h1 h2; chmod 4755 h1; mkdir -p cache; echo tmp > cache/x.log; \
         touch -d '2020-01-02 03:04:05' a/b/c/file.txt; \
         name=$(printf 'd%.0s' $(seq 1 120)); mkdir -p deep/$name/$name; echo deep > deep/$name/$name/$name.txt",
    );
}

fn seed_databases(stack: &ComposeStack) {
    sh_in(
        &stack.container("db"),
        "psql -q -U postgres -c \"CREATE TABLE items (id int, name text); INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three');\"",
    );
    sh_in(
        &stack.container("mariadb"),
        "MYSQL_PWD=demo-root-password mariadb -u root demo -e \"CREATE TABLE items (id int, name text); INSERT INTO items VALUES (1, 'one'), (2, 'two');\"",
    );
    sh_in(
        &stack.container("redis"),
        "redis-cli SET holdfast:key kept >/dev/null && redis-cli SAVE >/dev/null",
    );
}

/// Decompresses an artifact into `dest` (tar formats) or to a file.
fn unpack_tar(artifact: &Path, dest: &Path) {
    fs::create_dir_all(dest).unwrap();
    let script = format!(
        "zstd -dc '{}' | tar -x --numeric-owner -p -f - -C '{}'",
        artifact.display(),
        dest.display()
    );
    let out = run(Command::new("sh").args(["-c", &script]));
    assert!(out.status.success(), "{}", stderr(&out));
}

fn decompress(artifact: &Path) -> Vec<u8> {
    let out = run(Command::new("zstd").args(["-dc"]).arg(artifact));
    assert!(out.status.success(), "{}", stderr(&out));
    out.stdout
}

fn artifacts(manifest: &Value) -> &Vec<Value> {
    manifest["artifacts"].as_array().unwrap()
}

fn find<'a>(manifest: &'a Value, kind: &str, needle: &str) -> &'a Value {
    artifacts(manifest)
        .iter()
        .find(|a| a["kind"] == kind && a["path"].as_str().unwrap().contains(needle))
        .unwrap_or_else(|| panic!("no {kind} artifact with {needle}"))
}

/// Starts a throw-away database container from the test image, for loading dumps.
struct Scratch(String);

impl Scratch {
    fn start(engine: &str, env: &[&str]) -> Scratch {
        let mut args = vec!["run", "-d", "-v", "/usr:/usr:ro"];
        for e in env {
            args.extend(["-e", e]);
        }
        args.extend(["holdfast-test/dbbase:1", engine]);
        let id = docker(&args).trim().to_string();
        Scratch(id)
    }

    fn wait_for(&self, probe: &str) {
        for _ in 0..120 {
            let ok = run(Command::new("docker").args(["exec", &self.0, "sh", "-c", probe]))
                .status
                .success();
            if ok {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        panic!("scratch server never answered `{probe}`");
    }

    fn load(&self, script: &str, input: Vec<u8>) -> String {
        use std::io::Write;
        let mut child = Command::new("docker")
            .args(["exec", "-i", &self.0, "sh", "-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "loading failed: {}", stderr(&out));
        stdout(&out)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.0])
            .output();
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_running_stack_is_archived_whole_and_its_dumps_restore() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hfbk{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    seed_web_volume(&stack);
    seed_databases(&stack);
    // A container that was stopped before the backup must still be stopped after it.
    docker(&["stop", "-t", "1", &stack.container("worker")]);

    let env = Env::new();
    let body = format!(
        "  targets:\n    stacks: [{project}]\n    exclude: {{paths: ['**/*.log']}}\n  consistency: {{stop: stack, waitHealthy: 90s}}\n{ALL_DUMPS}"
    );
    env.spec("full", &policy("full", &body));
    let before = tree_listing(&stack.volume_dir("web-data"));
    let (out, outcome) = env.backup("full", &[]);
    assert!(out.status.success(), "{outcome:#}\n{}", stderr(&out));
    assert_eq!(outcome["phase"], "Succeeded");

    let manifests = env.manifests();
    assert_eq!(manifests.len(), 1);
    let archive = manifests[0].parent().unwrap().to_path_buf();
    let manifest: Value = serde_json::from_slice(&fs::read(&manifests[0]).unwrap()).unwrap();
    assert_eq!(manifest["id"], outcome["archiveId"]);

    // Every artifact is on disk with the recorded size and checksum.
    for a in artifacts(&manifest) {
        let path = archive.join(a["path"].as_str().unwrap());
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            a["size"].as_u64().unwrap(),
            "{path:?}"
        );
        assert_eq!(
            sha256_file(&path),
            a["sha256"].as_str().unwrap(),
            "{path:?}"
        );
    }
    // The log names each dump as the file it wrote, extension and all.
    let log = stderr(&out);
    for a in artifacts(&manifest).iter().filter(|a| a["kind"] == "dump") {
        let path = a["path"].as_str().unwrap();
        assert!(log.contains(path), "the log does not name {path}:\n{log}");
    }
    assert!(archive.parent().unwrap().read_dir().unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".partial")
    }));

    // The web volume comes back identical, minus the excluded logs.
    let web = find(&manifest, "volume", "web-data");
    assert_eq!(web["via"], "direct");
    let unpacked = tempfile::tempdir().unwrap();
    unpack_tar(
        &archive.join(web["path"].as_str().unwrap()),
        unpacked.path(),
    );
    let expected: Vec<String> = before
        .into_iter()
        .filter(|l| !l.contains(".log "))
        .collect();
    let got = tree_listing(unpacked.path());
    // The worker was stopped before we listed; the root folder itself is not an entry.
    assert_eq!(got, expected);
    let config = find(&manifest, "bind", "web_1-1");
    assert!(config["source"].as_str().unwrap().ends_with(":/etc/demo"));

    // Dumps load into fresh servers and return the rows.
    let pg = Scratch::start("postgres", &["POSTGRES_PASSWORD=x"]);
    pg.wait_for("pg_isready -q -U postgres");
    let dump = decompress(
        &archive.join(
            find(&manifest, "dump", "postgres")["path"]
                .as_str()
                .unwrap(),
        ),
    );
    pg.load(
        "psql -q -U postgres -v ON_ERROR_STOP=0 >/dev/null 2>&1; true",
        dump,
    );
    let rows = sh_in(
        &pg.0,
        "psql -At -U postgres -c 'SELECT name FROM items ORDER BY id'",
    );
    assert_eq!(rows.lines().collect::<Vec<_>>(), ["one", "two", "three"]);

    let my = Scratch::start("mariadb", &["MARIADB_ROOT_PASSWORD=x"]);
    my.wait_for("mysqladmin --user=healthcheck ping");
    let dump = decompress(
        &archive.join(
            find(&manifest, "dump", "mariadb-demo")["path"]
                .as_str()
                .unwrap(),
        ),
    );
    my.load("MYSQL_PWD=x mariadb -u root", dump);
    let rows = sh_in(
        &my.0,
        "MYSQL_PWD=x mariadb -u root -N -e 'SELECT name FROM demo.items ORDER BY id'",
    );
    assert_eq!(rows.lines().collect::<Vec<_>>(), ["one", "two"]);

    let rdb = decompress(&archive.join(find(&manifest, "dump", "redis")["path"].as_str().unwrap()));
    assert!(rdb.starts_with(b"REDIS"), "not an RDB file");
    let rd = Scratch::start("redis", &[]);
    rd.wait_for("redis-cli ping | grep -q PONG");
    docker(&["stop", "-t", "1", &rd.0]);
    let rdb_file = unpacked.path().join("dump.rdb");
    fs::write(&rdb_file, &rdb).unwrap();
    docker(&[
        "cp",
        rdb_file.to_str().unwrap(),
        &format!("{}:/data/dump.rdb", rd.0),
    ]);
    docker(&["start", &rd.0]);
    rd.wait_for("redis-cli ping | grep -q PONG");
    assert_eq!(sh_in(&rd.0, "redis-cli GET holdfast:key").trim(), "kept");

    let db = decompress(&archive.join(find(&manifest, "dump", "sqlite")["path"].as_str().unwrap()));
    let db_file = unpacked.path().join("app.db");
    fs::write(&db_file, db).unwrap();
    let count = run(Command::new("sqlite3")
        .arg(&db_file)
        .arg("SELECT count(*) FROM items"));
    assert_eq!(stdout(&count).trim(), "3", "{}", stderr(&count));

    // The recipe holds the compose file and inspect output, without secrets.
    let compose = find(&manifest, "recipe", "docker-compose.yml");
    let text = fs::read_to_string(archive.join(compose["path"].as_str().unwrap())).unwrap();
    assert!(
        text.contains("services:")
            && !text.contains("demo-postgres-password")
            && !text.contains("demo-root-password")
    );
    for a in artifacts(&manifest)
        .iter()
        .filter(|a| a["kind"] == "recipe")
    {
        let body = fs::read_to_string(archive.join(a["path"].as_str().unwrap())).unwrap();
        assert!(
            !body.contains("demo-postgres-password"),
            "{} leaks a password",
            a["path"]
        );
    }

    // What ran runs again; what was stopped stays stopped.
    for service in ["web", "db", "mariadb", "redis", "sqlite"] {
        assert_eq!(stack.state(service), "running", "{service}");
    }
    assert_eq!(stack.state("worker"), "exited");
    assert!(manifest["downtime"][&project].as_f64().unwrap() > 0.0);
}

/// No manifest anywhere, and every service in the state it had before the run.
fn assert_untouched(env: &Env, stack: &ComposeStack, outcome: &Value) {
    assert_eq!(outcome["phase"], "Failed", "{outcome:#}");
    assert!(
        env.manifests().is_empty(),
        "a failed run left a manifest: {:?}",
        env.manifests()
    );
    for service in ["web", "worker", "db", "mariadb", "redis", "sqlite"] {
        assert_eq!(stack.state(service), "running", "{service}");
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn failures_leave_no_archive_and_every_container_as_it_was() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hffail{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    let env = Env::new();

    // A failing pre hook: nothing is stopped, and the post hook still runs.
    let body = format!(
        "  targets: {{stacks: [{project}]}}\n  consistency:\n    stop: stack\n    hooks:\n      pre: [{{exec: {{service: web, command: [sh, -c, 'echo nope >&2; exit 3']}}}}]\n      post: [{{exec: {{service: web, command: [touch, /www/post-hook-ran]}}}}]\n"
    );
    env.spec("hook", &policy("hook", &body));
    let (out, outcome) = env.backup("hook", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_untouched(&env, &stack, &outcome);
    let error = outcome["errors"][0].as_str().unwrap();
    assert!(
        error.contains("pre hook") && error.contains("exit code 3") && error.contains("nope"),
        "{error}"
    );
    sh_in(&stack.container("web"), "test -f /www/post-hook-ran");

    // A dump with a wrong password fails the run before anything is stopped.
    let body = format!(
        "  targets: {{stacks: [{project}]}}\n  consistency: {{stop: stack}}\n  dumps: [{{service: db, engine: postgres, password: {{value: wrong-password}}}}]\n"
    );
    env.spec("badpw", &policy("badpw", &body));
    let (out, outcome) = env.backup("badpw", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_untouched(&env, &stack, &outcome);
    let error = outcome["errors"][0].as_str().unwrap();
    assert!(error.contains("password authentication failed"), "{error}");
    assert!(
        !error.contains("wrong-password") && !stderr(&out).contains("wrong-password"),
        "the password leaked"
    );

    // A volume named in the spec that does not exist: refused before anything happens.
    let body = format!(
        "  targets: {{stacks: [{project}], volumes: [{project}_nope]}}\n  consistency: {{stop: stack}}\n"
    );
    env.spec("novol", &policy("novol", &body));
    let (_, outcome) = env.backup("novol", &[]);
    assert_untouched(&env, &stack, &outcome);
    assert!(outcome["errors"][0].as_str().unwrap().contains("not found"));

    // The Docker daemon answering errors: a clear failure, nothing written.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for conn in server.incoming().take(50) {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let body = r#"{"message":"injected failure"}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let out = run(env.holdfast().args([
        "backup",
        "hook",
        "--docker-host",
        &format!("tcp://127.0.0.1:{port}"),
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("injected failure"),
        "{}",
        stderr(&out)
    );
    assert!(env.manifests().is_empty());
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_backup_killed_while_the_stack_is_stopped_is_repaired_by_the_next_start() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hfkill{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    // Enough incompressible data at a slow level that the archive phase takes seconds.
    sh_in(
        &stack.container("web"),
        "head -c 300000000 /dev/urandom > /www/big.bin",
    );
    let env = Env::new();
    let body = format!(
        "  targets: {{stacks: [{project}]}}\n  consistency: {{stop: stack}}\n  output: {{format: tar.zst, level: 19}}\n"
    );
    env.spec("slow", &policy("slow", &body));
    let mut child = env
        .holdfast()
        .args(["backup", "slow"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while stack.state("web") == "running" {
        assert!(
            std::time::Instant::now() < deadline,
            "the stack was never stopped"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "backup ended before stopping the stack"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up.
    child.wait().unwrap();
    assert_eq!(
        stack.state("web"),
        "exited",
        "web should still be stopped after the kill"
    );
    assert!(env.manifests().is_empty());

    // plan changes nothing: it names what is left stopped.
    let out = run(env.holdfast().args(["plan", "slow"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("an interrupted run left stopped: "),
        "{}",
        stderr(&out)
    );
    assert_eq!(stack.state("web"), "exited", "plan started it");

    // Nor does a dry run, which says the same.
    let out = run(env.holdfast().args(["backup", "--dry-run", "slow"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("an interrupted run left stopped: "),
        "{}",
        stderr(&out)
    );
    assert_eq!(stack.state("web"), "exited", "a dry run started it");

    // A backup, whatever it backs up, repairs it from the journal first.
    let small =
        format!("  targets: {{volumes: [{project}_redis-data]}}\n  consistency: {{stop: none}}\n");
    env.spec("small", &policy("small", &small));
    let out = run(env.holdfast().args(["backup", "small"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("started again what an interrupted run had stopped"),
        "{}",
        stderr(&out)
    );
    for service in ["web", "worker", "db", "mariadb", "redis", "sqlite"] {
        assert_eq!(stack.state(service), "running", "{service}");
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn volumes_read_through_the_docker_api_match_the_direct_path() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hfapi{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    seed_web_volume(&stack);
    docker(&["stop", "-t", "1", &stack.container("worker")]);
    let env = Env::new();
    let body = format!(
        "  targets: {{stacks: [{project}]}}\n  include: {{bindMounts: true, recipe: false}}\n  output: {{format: tar.zst}}\n"
    );
    env.spec("api", &policy("api", &body));
    // A dry run resolves everything and touches nothing.
    let (out, outcome) = env.backup("api", &["--dry-run"]);
    assert!(out.status.success(), "{outcome:#}");
    assert_eq!(outcome["dryRun"], true);
    assert!(outcome["archiveId"].is_null() && env.manifests().is_empty());
    assert_eq!(stack.state("web"), "running");

    let (out, outcome) = env.backup("api", &["--archive-via", "api"]);
    assert!(out.status.success(), "{outcome:#}");
    let (out, _) = env.backup("api", &["--archive-via", "direct"]);
    assert!(out.status.success());
    let mut manifests = env.manifests();
    manifests.sort();
    assert_eq!(manifests.len(), 2);
    let listings: Vec<Vec<String>> = manifests
        .iter()
        .map(|m| {
            let manifest: Value = serde_json::from_slice(&fs::read(m).unwrap()).unwrap();
            let web = find(&manifest, "volume", "web-data");
            let dir = tempfile::tempdir().unwrap();
            unpack_tar(
                &m.parent().unwrap().join(web["path"].as_str().unwrap()),
                dir.path(),
            );
            let bind = find(&manifest, "bind", "web_1-1");
            assert!(bind["via"] == "api" || bind["via"] == "direct");
            let mut listing = tree_listing(dir.path());
            listing.push(format!("via={}", web["via"]));
            listing
        })
        .collect();
    // A fresh state folder and only the repository: every archive is listed again, and
    // a truncated artifact makes its archive Corrupt.
    fs::remove_dir_all(&env.state).unwrap();
    let out = run(env.holdfast().args(["get", "archives", "-o", "json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed:#}");
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["health"] == "Good" && a["policy"] == "api")
    );
    let manifest: Value = serde_json::from_slice(&fs::read(&manifests[1]).unwrap()).unwrap();
    let artifact = manifests[1].parent().unwrap().join(
        find(&manifest, "volume", "web-data")["path"]
            .as_str()
            .unwrap(),
    );
    let len = fs::metadata(&artifact).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&artifact)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let out = run(env
        .holdfast()
        .args(["get", "archives", "--policy", "api", "-o", "json"]));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let health: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["health"].as_str().unwrap())
        .collect();
    assert_eq!(health, ["Good", "Corrupt"]);
    let table = stdout(&run(env.holdfast().args(["get", "archives"])));
    assert!(
        table.contains("Corrupt") && table.contains("bytes, the manifest says"),
        "{table}"
    );

    assert_eq!(listings[0].last().unwrap(), "via=\"api\"");
    assert_eq!(listings[1].last().unwrap(), "via=\"direct\"");
    assert_eq!(
        listings[0][..listings[0].len() - 1],
        listings[1][..listings[1].len() - 1]
    );
    for service in ["web", "db", "mariadb", "redis", "sqlite"] {
        assert_eq!(stack.state(service), "running", "{service}");
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_volume_that_vanishes_mid_run_fails_the_run_cleanly() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hfvan{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    sh_in(
        &stack.container("web"),
        "head -c 100000000 /dev/urandom > /www/big.bin",
    );
    // Not mounted by any container, so it can be removed while the run is busy; its name
    // sorts after the stack's volumes, so it is archived last.
    let vanishing = format!("zz{project}-vanishing");
    docker(&["volume", "create", &vanishing]);
    let env = Env::new();
    let body = format!(
        "  targets: {{stacks: [{project}], volumes: [{vanishing}]}}\n  consistency: {{stop: stack}}\n  output: {{format: tar.zst, level: 19}}\n"
    );
    env.spec("vanish", &policy("vanish", &body));
    let child = env
        .holdfast()
        .args(["backup", "vanish", "-o", "json"])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while stack.state("web") == "running" {
        assert!(
            std::time::Instant::now() < deadline,
            "the stack was never stopped"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    docker(&["volume", "rm", &vanishing]);
    let out = child.wait_with_output().unwrap();
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_untouched(&env, &stack, &outcome);
    let errors = outcome["errors"].to_string();
    assert!(
        errors.contains("vanished") || errors.contains("not readable"),
        "{errors}"
    );
    let leftover = run(Command::new("docker").args(["volume", "inspect", &vanishing]));
    assert!(
        !leftover.status.success(),
        "the run re-created the vanished volume"
    );
}

/// The largest file below `dir`, with its size.
fn largest_file(dir: &Path) -> u64 {
    let mut largest = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => largest = largest.max(m.len()),
                Err(_) => {}
            }
        }
    }
    largest
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_file_that_shrinks_while_read_makes_the_run_partly_failed_and_is_named() {
    if !docker_available() {
        return;
    }
    let volume = format!("hfshrink{}", std::process::id());
    docker(&["volume", "create", &volume]);
    let mountpoint = docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &volume]);
    let big = Path::new(mountpoint.trim()).join("big.bin");
    run(Command::new("sh").arg("-c").arg(format!(
        "head -c 400000000 /dev/urandom > {}",
        big.display()
    )));
    let env = Env::new();
    let body = format!("  targets: {{volumes: [{volume}]}}\n  consistency: {{stop: none}}\n");
    env.spec("shrink", &policy("shrink", &body));
    let child = env
        .holdfast()
        .args(["backup", "shrink", "-o", "json"])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the archive holds a few MiB the file is open and being read: cut it short.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while largest_file(&env.repository) < 4 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the archive never grew"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    fs::OpenOptions::new()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(1000)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    docker(&["volume", "rm", &volume]);
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["phase"], "PartiallyFailed", "{outcome}");
    assert!(
        outcome["errors"].to_string().contains("big.bin"),
        "{outcome}"
    );
    let manifests = env.manifests();
    assert_eq!(manifests.len(), 1, "the archive is complete and kept");
    let manifest: Value = serde_json::from_slice(&fs::read(&manifests[0]).unwrap()).unwrap();
    assert_eq!(manifest["phase"], "PartiallyFailed");
    let warnings = manifest["warnings"].to_string();
    assert!(
        warnings.contains("big.bin") && warnings.contains("shrank"),
        "{warnings}"
    );
}

/// The byte ranges of a file that hold data, by `SEEK_DATA` and `SEEK_HOLE`.
fn data_ranges(file: &fs::File) -> Vec<(u64, u64)> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let len = file.metadata().unwrap().len() as i64;
    let mut ranges = Vec::new();
    let mut off = 0i64;
    while off < len {
        // SAFETY: a valid descriptor; lseek takes no pointers.
        let start = unsafe { libc::lseek(fd, off, libc::SEEK_DATA) };
        if start < 0 {
            break;
        }
        // SAFETY: as above.
        let end = unsafe { libc::lseek(fd, start, libc::SEEK_HOLE) };
        ranges.push((start as u64, end as u64));
        off = end;
    }
    ranges
}

/// Same length, and the same bytes wherever either file holds data: elsewhere both are
/// holes, which read as zeros.
fn assert_same_sparse_content(want: &Path, got: &Path) {
    use std::os::unix::fs::FileExt;
    let (a, b) = (fs::File::open(want).unwrap(), fs::File::open(got).unwrap());
    assert_eq!(a.metadata().unwrap().len(), b.metadata().unwrap().len());
    let mut ranges = data_ranges(&a);
    ranges.extend(data_ranges(&b));
    for (start, end) in ranges {
        let mut x = vec![0u8; (end - start) as usize];
        let mut y = vec![0u8; (end - start) as usize];
        a.read_exact_at(&mut x, start).unwrap();
        b.read_exact_at(&mut y, start).unwrap();
        assert!(x == y, "the bytes from {start} to {end} differ");
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_large_sparse_file_is_backed_up_in_moments_and_restored_sparse_with_its_mtime() {
    use std::os::unix::fs::{FileExt, MetadataExt};
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let volume = format!("hfsparse{}", std::process::id());
    docker(&["volume", "create", &volume]);
    let mountpoint = docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &volume]);
    let image = Path::new(mountpoint.trim()).join("disk.img");
    let size: u64 = 8 << 30;
    {
        let f = fs::File::create(&image).unwrap();
        f.set_len(size).unwrap();
        f.write_all_at(b"boot sector", 0).unwrap();
        let block: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        f.write_all_at(&block, 3 << 30).unwrap();
        f.write_all_at(b"tail", size - 4).unwrap();
    }
    let set = std::ffi::CString::new(image.as_os_str().as_encoded_bytes()).unwrap();
    let t = libc::timespec {
        tv_sec: 1_700_000_000,
        tv_nsec: 123_456_789,
    };
    // SAFETY: a valid path and a two-element array.
    assert_eq!(
        unsafe { libc::utimensat(libc::AT_FDCWD, set.as_ptr(), [t, t].as_ptr(), 0) },
        0
    );
    let env = Env::new();
    let body = format!(
        "  targets: {{volumes: [{volume}]}}\n  consistency: {{stop: none}}\n  output: {{format: tar.zst}}\n"
    );
    env.spec("sparse", &policy("sparse", &body));
    let started = std::time::Instant::now();
    let (out, outcome) = env.backup("sparse", &[]);
    let took = started.elapsed();
    eprintln!("backing up the 8 GiB sparse file took {took:?}");
    assert!(out.status.success(), "{outcome}\n{}", stderr(&out));
    assert_eq!(outcome["phase"], "Succeeded", "{outcome}");
    let manifest: Value = serde_json::from_slice(&fs::read(&env.manifests()[0]).unwrap()).unwrap();
    let artifact = find(&manifest, "volume", &volume);
    // Only the data was read and stored, not 8 GiB of zeros.
    assert!(
        artifact["sourceBytes"].as_u64().unwrap() < 4 << 20,
        "{artifact}"
    );
    assert!(artifact["size"].as_u64().unwrap() < 4 << 20, "{artifact}");
    assert!(took.as_secs() < 20, "{took:?}");

    let id = outcome["archive_id"]
        .as_str()
        .or(outcome["archiveId"].as_str())
        .unwrap()
        .to_string();
    let restored = run(env
        .holdfast()
        .args(["restore", "-o", "json", "--from", &id, "--volume", &volume]));
    let report: Value = serde_json::from_slice(&restored.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", stderr(&restored)));
    let into = report["report"]["volumes"][0]["into"]
        .as_str()
        .unwrap_or_else(|| panic!("{report:#}\n{}", stderr(&restored)))
        .to_string();
    let into_dir = docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &into]);
    let copy = Path::new(into_dir.trim()).join("disk.img");
    let meta = fs::metadata(&copy).unwrap();
    let allocated = meta.blocks() * 512;
    let mtime = (meta.mtime(), meta.mtime_nsec());
    let same = std::panic::catch_unwind(|| assert_same_sparse_content(&image, &copy));
    docker(&["volume", "rm", &volume, &into]);
    same.unwrap();
    assert!(allocated < 16 << 20, "{allocated} bytes allocated");
    assert_eq!(mtime, (1_700_000_000, 123_456_789));
}

/// A tmpfs mounted over a folder for the length of a test.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let out = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir));
        assert!(out.status.success(), "mount: {}", stderr(&out));
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Every name below `dir` ending in `.partial`.
fn partials(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().ends_with(".partial") {
                found.push(entry.path());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    found
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_full_repository_stops_the_run_at_once_names_its_file_system_and_restarts_the_container() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let name = format!("hfenospc{}", std::process::id());
    docker(&["volume", "create", &name]);
    let mountpoint = docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &name]);
    let data = Path::new(mountpoint.trim()).to_path_buf();
    run(Command::new("sh").arg("-c").arg(format!(
        "head -c 6000000 /dev/urandom > {}/a.bin",
        data.display()
    )));
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--stop-timeout",
        "1",
        "-v",
        &format!("{name}:/data"),
        "holdfast-test/busybox:1",
        "sleep",
        "3600",
    ]);
    let env = Env::new();
    let _tmpfs = Tmpfs::mount(&env.repository, "40m");
    let body = format!(
        "  targets: {{containers: [{name}]}}\n  consistency: {{stop: container}}\n  output: {{format: tar.zst, level: 19}}\n"
    );
    env.spec("full", &policy("full", &body));
    let started = std::time::Instant::now();
    let child = env
        .holdfast()
        .args(["backup", "full", "-o", "json"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let state = || {
        docker(&["inspect", "-f", "{{.State.Status}}", &name])
            .trim()
            .to_string()
    };
    while state() == "running" {
        assert!(std::time::Instant::now() < deadline, "never stopped");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The plan saw room for the archive; while zstd -19 takes its time over a.bin, the
    // repository's file system fills up, with 3 MB left.
    let filler = env.repository.join("filler.bin");
    run(Command::new("sh")
        .arg("-c")
        .arg(format!("head -c 39000000 /dev/zero > {}", filler.display())));
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    let after = state();
    let leftovers = partials(&env.repository);
    let used = run(Command::new("du").arg("-sb").arg(&env.repository));
    docker(&["rm", "-f", &name]);
    docker(&["volume", "rm", &name]);
    let outcome: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(outcome["phase"], "Failed", "{outcome}");
    let errors = outcome["errors"].to_string();
    let repo = env.repository.display().to_string();
    assert!(
        errors.contains("no space left") && errors.contains(&format!("file system at {repo}")),
        "{errors}"
    );
    assert_eq!(after, "running", "the container was not started again");
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let used: u64 = stdout(&used)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        used < 39_000_000 + (1 << 20),
        "{used} bytes left in the repository"
    );
    assert!(took.as_secs() < 60, "{took:?}");
}
