//! The one-off commands a user runs from cron or by hand, against the real binary and the
//! real engine: `backup` applies retention, `prune`, the `get` kinds, restore options that
//! must do what they say, and bounded run history.

mod common;

use std::fs;

use common::env::Env;
use common::*;
use serde_json::Value;

/// A BackupPolicy `name` archiving `volume` without stopping anything, with `extra` lines
/// of spec (indented two spaces).
fn policy(env: &Env, name: &str, volume: &str, extra: &str) {
    env.spec(
        name,
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: {name}\nspec:\n  schedule: '@daily'\n  targets: {{volumes: [{volume}]}}\n  consistency: {{stop: none}}\n{extra}"
        ),
    );
}

/// The archive ids of `group` in this host's folder of the repository.
fn archives(env: &Env, group: &str) -> Vec<String> {
    let dir = host_dir(&env.repository).join(group);
    let mut ids: Vec<String> = fs::read_dir(&dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.contains('.'))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn backup(env: &Env, name: &str, extra: &[&str]) -> std::process::Output {
    let out = run(env.holdfast().args(["backup", name]).args(extra));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    out
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn backup_applies_retention_unless_told_not_to_and_prune_applies_it_now() {
    if !docker_available() {
        return;
    }
    let volume = FileVolume::new("hfprune", "kept");
    let env = Env::new();
    policy(&env, "keep2", &volume.0, "  retention: {keepLast: 2}\n");
    for _ in 0..4 {
        backup(&env, "keep2", &[]);
    }
    let left = archives(&env, "keep2");
    assert_eq!(left.len(), 2, "keepLast 2 after four runs: {left:?}");

    // --no-prune keeps every archive.
    for _ in 0..2 {
        backup(&env, "keep2", &["--no-prune"]);
    }
    assert_eq!(archives(&env, "keep2").len(), 4);
    // Oldest first, by the time each run started (two runs within a second take the
    // next free second for their ids, so ids need not sort by time).
    let all: Vec<String> = json(&env, &["get", "archives"])
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all.len(), 4, "{all:?}");

    // A dry run lists what would go, and deletes nothing.
    let out = run(env.holdfast().args(["prune", "keep2", "--dry-run"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for id in &all[..2] {
        assert!(text.contains(&format!("would delete {id}")), "{text}");
    }
    for id in &all[2..] {
        assert!(!text.contains(id.as_str()), "{text}");
    }
    let mut untouched = all.clone();
    untouched.sort();
    assert_eq!(archives(&env, "keep2"), untouched);

    // Without a name: every policy; it deletes the two oldest.
    let out = run(env.holdfast().args(["prune"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for id in &all[..2] {
        assert!(text.contains(&format!("deleted {id}")), "{text}");
    }
    let mut newest = all[2..].to_vec();
    newest.sort();
    assert_eq!(archives(&env, "keep2"), newest);

    // A policy that does not exist, or has no retention, is named in the refusal.
    let out = run(env.holdfast().args(["prune", "nope"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no BackupPolicy named `nope`"),
        "{}",
        stderr(&out)
    );
}

/// `holdfast <args> -o json`, which must succeed; its output parsed.
fn json(env: &Env, args: &[&str]) -> Value {
    let out = run(env.holdfast().args(args).args(["-o", "json"]));
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {}", stdout(&out)))
}

/// Removes a volume when dropped.
struct VolumeName(String);

impl Drop for VolumeName {
    fn drop(&mut self) {
        let _ = run(std::process::Command::new("docker").args(["volume", "rm", "-f", &self.0]));
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn restores_are_no_archives_and_every_kind_lists_like_kubectl() {
    if !docker_available() {
        return;
    }
    let volume = FileVolume::new("hfget", "kept");
    let copy = VolumeName(format!("hfgetcopy{}", std::process::id()));
    let env = Env::new();
    policy(&env, "listed", &volume.0, "  retention: {keepLast: 5}\n");
    backup(&env, "listed", &[]);
    let id = archives(&env, "listed").pop().unwrap();
    let out = run(env
        .holdfast()
        .args(["restore", "--from", &id, "--map"])
        .arg(format!("{}={}", volume.0, copy.0)));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    // The archive was lost behind holdfast's back: it is Missing, and the restore that
    // read it is still no archive.
    fs::remove_dir_all(host_dir(&env.repository).join("listed").join(&id)).unwrap();
    let listed = json(&env, &["get", "archives"]);
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{listed:#}");
    assert_eq!(rows[0]["id"], id.as_str());
    assert_eq!(rows[0]["group"], "listed");
    let table = stdout(&run(env.holdfast().args(["get", "archives"])));
    assert!(!table.contains("restore"), "{table}");

    backup(&env, "listed", &[]);
    // Policies: schedule, last run, phase, next run, archives.
    let policies = json(&env, &["get", "policies"]);
    assert_eq!(policies[0]["name"], "listed", "{policies:#}");
    assert_eq!(policies[0]["schedule"], "@daily");
    assert_eq!(policies[0]["lastRun"]["phase"], "Succeeded");
    assert_eq!(policies[0]["archives"], 1);
    assert!(policies[0]["nextScheduleTime"].is_string(), "{policies:#}");
    let table = stdout(&run(env.holdfast().args(["get", "policies"])));
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "SCHEDULE", "SUSPEND", "LAST RUN", "PHASE", "NEXT", "ARCHIVES", "AGE"
        ]
    );
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("listed ")
            && row.contains("@daily")
            && row.contains("Succeeded")
            && row.contains(" in "),
        "{table}"
    );
    let wide = stdout(&run(env.holdfast().args(["get", "policies", "-o", "wide"])));
    assert!(
        wide.contains("RETENTION") && wide.contains("last 5") && wide.contains("listed.yaml"),
        "{wide}"
    );
    let yaml = stdout(&run(env.holdfast().args(["get", "policies", "-o", "yaml"])));
    assert!(yaml.contains("name: listed"), "{yaml}");

    // Runs: every run, newest first; --policy narrows.
    let runs = json(&env, &["get", "runs"]);
    let kinds: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["BackupPolicy", "Restore", "BackupPolicy"],
        "{runs:#}"
    );
    let runs = json(&env, &["get", "runs", "--policy", "listed"]);
    assert_eq!(runs.as_array().unwrap().len(), 2, "{runs:#}");
    let table = stdout(&run(env.holdfast().args(["get", "runs", "-o", "wide"])));
    assert!(
        table.starts_with("NAME") && table.contains("DOWNTIME") && table.contains("Restore"),
        "{table}"
    );

    // Restores: the command line's, with what it put back.
    let restores = json(&env, &["get", "restores"]);
    let rows = restores.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{restores:#}");
    assert_eq!(rows[0]["from"], id.as_str());
    assert_eq!(rows[0]["phase"], "Succeeded");
    assert_eq!(rows[0]["restored"]["volumes"][0]["into"], copy.0.as_str());
    let table = stdout(&run(env.holdfast().args(["get", "restores"])));
    assert!(table.starts_with("NAME") && table.contains(&id), "{table}");

    // A flag that does not apply is refused, naming it.
    let out = run(env.holdfast().args(["get", "policies", "--orphaned"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--orphaned"), "{}", stderr(&out));
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn restore_options_that_would_do_nothing_are_refused() {
    if !docker_available() {
        return;
    }
    let volume = FileVolume::new("hfopts", "kept");
    let env = Env::new();
    policy(&env, "opts", &volume.0, "");
    backup(&env, "opts", &[]);
    let id = archives(&env, "opts").pop().unwrap();
    let recipe = env.dir.path().join("recipe");
    for (args, says) in [
        (
            vec!["--volume", &volume.0, "--replay-dumps"],
            "--replay-dumps with only --volume",
        ),
        (
            vec![
                "--volume",
                &volume.0,
                "--recipe-to",
                recipe.to_str().unwrap(),
            ],
            "--recipe-to with only --volume",
        ),
    ] {
        let out = run(env.holdfast().args(["restore", "--from", &id]).args(&args));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    // Contradictions with --dumps-only are usage errors.
    for args in [
        vec!["--dumps-only", "--volume", &volume.0],
        vec!["--dumps-only", "--mode", "InPlace"],
        vec!["--dumps-only", "--recipe-to", recipe.to_str().unwrap()],
    ] {
        let out = run(env.holdfast().args(["restore", "--from", &id]).args(&args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("--dumps-only"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // An archive without dumps has nothing to replay, and says so before anything is
    // written.
    let out = run(env
        .holdfast()
        .args(["restore", "--from", &id, "--replay-dumps"]));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("holds none"), "{}", stdout(&out));
    let restored = docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("name={}-restored", volume.0),
    ]);
    assert!(
        restored.trim().is_empty(),
        "a refused restore created {restored}"
    );
    assert!(!recipe.exists());
}

/// A Compose-labelled container running the demo's SQLite app, with its volume.
struct SqliteApp {
    project: String,
}

impl SqliteApp {
    fn start() -> SqliteApp {
        let app = SqliteApp {
            project: format!("hfdumps{}", std::process::id()),
        };
        app.remove();
        docker(&[
            "run",
            "-d",
            "--name",
            &app.container(),
            "--label",
            &format!("com.docker.compose.project={}", app.project),
            "--label",
            "com.docker.compose.service=sqlite",
            "-v",
            "/usr:/usr:ro",
            "-v",
            &format!("{}_data:/data", app.project),
            "holdfast-test/dbbase:1",
            "sqlite-app",
        ]);
        for _ in 0..120 {
            let ok = run(std::process::Command::new("docker").args([
                "exec",
                &app.container(),
                "sqlite3",
                "/data/app.db",
                "SELECT count(*) FROM items",
            ]));
            if ok.status.success() {
                return app;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        panic!("the sqlite app never came up");
    }

    fn container(&self) -> String {
        format!("{}_sqlite_1", self.project)
    }

    fn rows(&self) -> String {
        sh_in(
            &self.container(),
            "sqlite3 /data/app.db 'SELECT name, qty FROM items ORDER BY id'",
        )
    }

    fn remove(&self) {
        let _ =
            run(std::process::Command::new("docker").args(["rm", "-f", "-v", &self.container()]));
        let _ = run(std::process::Command::new("docker").args([
            "volume",
            "rm",
            "-f",
            &format!("{}_data", self.project),
        ]));
    }
}

impl Drop for SqliteApp {
    fn drop(&mut self) {
        self.remove();
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn dumps_only_replays_the_dumps_and_writes_no_volume() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let app = SqliteApp::start();
    let before = app.rows();
    let env = Env::new();
    env.spec(
        "app",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: app\nspec:\n  schedule: '@daily'\n  targets: {{stacks: [{}]}}\n  consistency: {{stop: none}}\n  dumps: [{{service: sqlite, engine: sqlite, databases: [/data/app.db]}}]\n",
            app.project
        ),
    );
    backup(&env, "app", &[]);
    sh_in(
        &app.container(),
        "sqlite3 /data/app.db \"UPDATE items SET qty = 99; DELETE FROM items WHERE name = 'pear';\"",
    );
    assert_ne!(app.rows(), before);

    let out =
        run(env
            .holdfast()
            .args(["restore", "--policy", "app", "--dumps-only", "-o", "json"]));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        outcome["report"]["volumes"].as_array().unwrap().len(),
        0,
        "{outcome:#}"
    );
    assert_eq!(
        outcome["report"]["dumps"].as_array().unwrap().len(),
        1,
        "{outcome:#}"
    );
    assert_eq!(app.rows(), before);
    let restored = docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("name={}_data-restored", app.project),
    ]);
    assert!(
        restored.trim().is_empty(),
        "a dumps-only restore created {restored}"
    );

    // The Restore spec's equivalent is accepted by validation.
    env.spec(
        "again",
        "apiVersion: holdfast.dev/v1alpha1\nkind: Restore\nmetadata:\n  name: again\nspec:\n  from: {policy: app}\n  dumpsOnly: true\n",
    );
    let out = run(env.holdfast().arg("validate"));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn run_history_and_logs_are_bounded_and_keep_the_runs_of_existing_archives() {
    if !docker_available() {
        return;
    }
    let volume = FileVolume::new("hfhist", "kept");
    let env = Env::new();
    policy(&env, "hist", &volume.0, "  retention: {keepLast: 2}\n");
    for _ in 0..5 {
        backup(&env, "hist", &["--history-limit", "3"]);
    }
    // Failed runs write no archive: they count against the limit alone. (Dry runs are
    // not recorded at all.) The policy now names a volume that does not exist.
    let gone = format!("{}-gone", volume.0);
    policy(&env, "hist", &gone, "  retention: {keepLast: 2}\n");
    for _ in 0..3 {
        let out = run(env
            .holdfast()
            .args(["backup", "hist", "--history-limit", "3"]));
        assert!(!out.status.success(), "{}", stdout(&out));
    }
    // The three newest runs (the failed ones), and the runs of the two archives retention
    // kept; the other five are forgotten with their logs.
    let runs = json(&env, &["get", "runs"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 5, "{runs:#?}");
    assert!(
        runs[..3].iter().all(|r| r["phase"] == "Failed"),
        "{runs:#?}"
    );
    let kept = archives(&env, "hist");
    assert_eq!(kept.len(), 2);
    for id in &kept {
        assert!(
            runs.iter().any(|r| r["archiveId"] == id.as_str()),
            "no run of {id} in {runs:#?}"
        );
    }
    let mut logs: Vec<String> = fs::read_dir(env.state.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    logs.sort();
    let mut expected: Vec<String> = runs
        .iter()
        .map(|r| format!("{}.log", r["id"].as_str().unwrap()))
        .collect();
    expected.sort();
    assert_eq!(logs, expected);
    // The environment variable sets it too; 0 keeps every run.
    let out = run(env
        .holdfast()
        .args(["backup", "hist"])
        .env("HOLDFAST_HISTORY_LIMIT", "0"));
    assert!(!out.status.success(), "{}", stdout(&out));
    let runs = json(&env, &["get", "runs"]);
    assert_eq!(runs.as_array().unwrap().len(), 6, "{runs:#}");
}
