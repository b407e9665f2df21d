//! Which flags each command takes, what it prints about where it looked, and that the
//! commands that only read create nothing.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use common::golden::assert_golden;
use common::{COMMANDS, holdfast, run, stderr, stdout};

#[test]
fn help_texts_show_each_command_its_own_flags() {
    for command in std::iter::once("").chain(COMMANDS) {
        let mut cmd = holdfast();
        cmd.env("COLUMNS", "100").env_remove("DOCKER_HOST");
        if !command.is_empty() {
            cmd.arg(command);
        }
        let out = run(cmd.arg("--help"));
        assert!(out.status.success(), "{command} --help: {}", stderr(&out));
        let name = if command.is_empty() {
            "holdfast"
        } else {
            command
        };
        assert_golden(&format!("help/{name}.txt"), &stdout(&out));
    }
    // Commands of commands: their own commands' flags too.
    for (command, sub) in [("notify", "test"), ("bundle", "create"), ("bundle", "open")] {
        let out = run(holdfast()
            .env("COLUMNS", "100")
            .env_remove("DOCKER_HOST")
            .args([command, sub, "--help"]));
        assert!(
            out.status.success(),
            "{command} {sub} --help: {}",
            stderr(&out)
        );
        assert_golden(&format!("help/{command}-{sub}.txt"), &stdout(&out));
    }
}

#[test]
fn a_flag_the_command_does_not_use_is_a_usage_error() {
    for args in [
        &["validate", "--listen", "1.2.3.4:1"][..],
        &["validate", "--archive-via", "api"],
        &["validate", "--docker-host", "tcp://nowhere:1"],
        &["verify", "--listen", "1.2.3.4:1", "x"],
        &["get", "runs", "--docker-host", "tcp://nowhere:1"],
        &["schema", "--repository", "r"],
        &["plan", "--listen", "1.2.3.4:1"],
        &["plan", "--archive-via", "api"],
        &["restore", "--from", "x", "--archive-via", "api"],
        // The flags belong to the command now, not before it.
        &["--specs", "specs", "validate"],
    ] {
        let out = run(holdfast().args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("unexpected argument"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

/// Every path below `dir`, relative to it.
fn walk(dir: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            found.insert(p.strip_prefix(dir).unwrap().to_path_buf());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    found
}

#[test]
fn commands_that_only_read_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let before = walk(dir.path());
    let in_dir = |args: &[&str]| run(holdfast().current_dir(dir.path()).args(args));

    // No specs folder: plan fails, says where it looked, and makes no state folder.
    let out = in_dir(&["plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("specs: specs"), "{}", stderr(&out));
    let out = in_dir(&["get", "policies"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no specs folder at specs"),
        "{}",
        stderr(&out)
    );
    for args in [
        &["get", "archives"][..],
        &["get", "runs"],
        &["get", "restores"],
        &["get", "archives", "-o", "json"],
        &["prune", "--dry-run"],
        &["delete", "nothing-20261125T030000Z"],
    ] {
        let out = in_dir(args);
        assert_eq!(walk(dir.path()), before, "{args:?} created something");
        if args[0] == "get" {
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        }
    }
    let out = in_dir(&["get", "runs"]);
    assert_eq!(stderr(&out), "no runs (state: .holdfast/state)\n");
    let out = in_dir(&["get", "archives", "-o", "json"]);
    assert_eq!(stdout(&out), "[]\n", "JSON stays JSON");
    assert!(stderr(&out).contains("no archives (repository: .holdfast/repository (host "));

    let out = in_dir(&["prune", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no specs folder at specs"),
        "{}",
        stderr(&out)
    );
    let out = in_dir(&["delete", "nothing-20261125T030000Z"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("repository: .holdfast/repository"),
        "{}",
        stderr(&out)
    );
    let out = in_dir(&["verify", "nothing-20261125T030000Z"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("repository: .holdfast/repository"),
        "{}",
        stderr(&out)
    );

    // An empty specs folder: nothing to plan, said so, and still nothing created.
    fs::create_dir(dir.path().join("specs")).unwrap();
    let before = walk(dir.path());
    let out = in_dir(&["plan"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing to plan"), "{}", stderr(&out));
    let out = in_dir(&["prune", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing to prune"),
        "{}",
        stderr(&out)
    );
    assert_eq!(walk(dir.path()), before, "plan or prune created something");
}

#[test]
fn plan_with_a_missing_specs_folder_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(holdfast()
        .args(["plan", "-o", "json", "--specs"])
        .arg(dir.path().join("nope")));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
}

/// An archive of `group` with no artifacts, as a manifest alone.
fn empty_archive(host_dir: &Path, group: &str, id: &str) {
    let folder = host_dir.join(group).join(id);
    fs::create_dir_all(&folder).unwrap();
    let manifest = serde_json::json!({
        "formatVersion": 1, "id": id, "kind": "BackupPolicy", "name": group, "policy": group,
        "phase": "Succeeded", "holdfastVersion": "0", "dockerApiVersion": "1.41",
        "startTime": "2026-11-25T03:00:00Z", "completionTime": "2026-11-25T03:00:01Z",
        "format": "tar", "level": null,
        "targets": {"stacks": [], "containers": [], "volumes": []},
        "artifacts": [], "timings": {}, "downtime": {}, "warnings": [],
    });
    fs::write(folder.join("manifest.json"), manifest.to_string()).unwrap();
}

#[test]
fn verify_prints_json_and_orphans_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let repository = dir.path().join("repository");
    let id = "old-20261125T030000Z";
    empty_archive(&repository.join("nas"), "old", id);
    let out = run(holdfast()
        .args(["verify", id, "-o", "json", "--host", "nas", "--repository"])
        .arg(&repository));
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(report["host"], "nas");
    assert_eq!(report["repository"], repository.display().to_string());
    assert_eq!(report["archives"][0]["id"], id);
    assert_eq!(report["archives"][0]["ok"], true);
    assert_eq!(report["archives"][0]["policy"], "old");

    fs::create_dir(dir.path().join("specs")).unwrap();
    let out = run(holdfast().current_dir(dir.path()).args([
        "get",
        "archives",
        "--host",
        "nas",
        "--repository",
        "repository",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("orphaned"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("orphaned: no BackupPolicy or Archive under specs names it"),
        "{}",
        stderr(&out)
    );
}

/// A specs folder `dir/<name>` holding one BackupPolicy named `name`.
fn specs_with_policy(dir: &Path, name: &str) -> PathBuf {
    let specs = dir.join(name);
    fs::create_dir_all(&specs).unwrap();
    fs::write(
        specs.join("p.yaml"),
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: {name}}}\nspec:\n  schedule: '@daily'\n  targets: {{volumes: [v]}}\n"
        ),
    )
    .unwrap();
    specs
}

/// The policy names `get policies` lists.
fn policies(out: &std::process::Output) -> Vec<String> {
    assert!(out.status.success(), "{}", stderr(out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_configuration_file_sets_defaults_below_flags_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    specs_with_policy(dir.path(), "from-file");
    let from_env = specs_with_policy(dir.path(), "from-env");
    let from_flag = specs_with_policy(dir.path(), "from-flag");
    // Relative to the file's folder, not to where the command runs.
    fs::create_dir(dir.path().join("etc")).unwrap();
    let config = dir.path().join("etc/holdfast.yaml");
    fs::write(
        &config,
        "# where things are\nspecs: ../from-file\nhistoryLimit: 3\n",
    )
    .unwrap();

    let get = || {
        let mut cmd = holdfast();
        cmd.args(["get", "policies", "-o", "json"]);
        cmd
    };
    let out = run(get().env("HOLDFAST_CONFIG", &config));
    assert_eq!(policies(&out), ["from-file"]);
    let out = run(get().arg("--config").arg(&config));
    assert_eq!(policies(&out), ["from-file"]);
    let out = run(get()
        .env("HOLDFAST_CONFIG", &config)
        .env("HOLDFAST_SPECS", &from_env));
    assert_eq!(policies(&out), ["from-env"]);
    let out = run(get()
        .env("HOLDFAST_CONFIG", &config)
        .env("HOLDFAST_SPECS", &from_env)
        .arg("--specs")
        .arg(&from_flag));
    assert_eq!(policies(&out), ["from-flag"]);

    // Help shows what is in effect.
    let out = run(holdfast()
        .env("HOLDFAST_CONFIG", &config)
        .env("COLUMNS", "200")
        .args(["backup", "--help"]));
    assert!(stdout(&out).contains("[default: 3]"), "{}", stdout(&out));

    // An empty name reads none, not even the one the environment names.
    let broken = dir.path().join("broken.yaml");
    fs::write(&broken, "spec: typo\n").unwrap();
    let out = run(get()
        .env("HOLDFAST_CONFIG", &broken)
        .args(["--config", "", "--specs"])
        .arg(&from_flag));
    assert_eq!(policies(&out), ["from-flag"]);
    let out = run(get().env("HOLDFAST_CONFIG", &broken));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // A named file that does not exist is an error, not an empty configuration.
    let out = run(get().env("HOLDFAST_CONFIG", dir.path().join("nope.yaml")));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope.yaml"), "{}", stderr(&out));
}

#[test]
fn configuration_errors_name_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("holdfast.yaml");
    for (text, expected) in [
        (
            "specs: /srv/specs\nrepositry: /srv/repo\n",
            ":2:1: unknown field `repositry`: not a setting (hint: did you mean `repository`?)",
        ),
        ("specs: /srv/specs\n\nlisten: nowhere\n", ":3:"),
        ("archiveVia: sometimes\n", ":1:"),
    ] {
        fs::write(&config, text).unwrap();
        let out = run(holdfast().arg("validate").arg("--config").arg(&config));
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = stderr(&out);
        let expected = format!("error: {}{expected}", config.display());
        assert!(err.starts_with(&expected), "{text}: {err}");
        let key = text.lines().rev().find(|l| !l.is_empty()).unwrap();
        let key = key.split(':').next().unwrap();
        assert!(err.contains(key), "{text}: {err}");
    }
}

#[test]
fn get_repositories_lists_where_each_keeps_archives() {
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    fs::create_dir(&specs).unwrap();
    let gallery = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gallery");
    for name in [
        "offsite-s3.yaml",
        "nas-sftp.yaml",
        "three-two-one.yaml",
        "restic.yaml",
    ] {
        fs::copy(gallery.join(name), specs.join(name)).unwrap();
    }
    fs::write(
        specs.join("usb.yaml"),
        "apiVersion: holdfast.dev/v1alpha1\nkind: Repository\nmetadata: {name: usb}\nspec: {storage: {local: {path: disk}}}\n",
    )
    .unwrap();
    let get = |args: &[&str]| {
        let out = run(holdfast()
            .current_dir(dir.path())
            .args(["get", "repositories"])
            .args(args));
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let table = get(&[]);
    // A relative local path is taken from the spec file's folder.
    let usb = specs.join("disk").display().to_string();
    let words: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        words,
        [
            vec!["NAME", "STORAGE", "FORMAT", "ENCRYPTED", "APPEND-ONLY"],
            vec![
                "nas",
                "sftp",
                "holdfast@nas.lan:22/volume1/backups/holdfast",
                "archives",
                "false",
                "false"
            ],
            vec![
                "offsite",
                "s3",
                "http://127.0.0.1:3900/holdfast/host1/",
                "archives",
                "true",
                "true"
            ],
            // A restic repository is always encrypted, with its password.
            vec![
                "restic-disk",
                "local",
                "/srv/backups",
                "restic",
                "true",
                "false"
            ],
            vec!["usb", "local", &usb, "archives", "false", "false"],
        ],
        "{table}"
    );
    let rows: Vec<serde_json::Value> = serde_json::from_str(&get(&["-o", "json"])).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["nas", "offsite", "restic-disk", "usb"]);
    assert_eq!(rows[1]["storage"], "s3");
    assert_eq!(rows[1]["format"], "archives");
    assert_eq!(rows[2]["format"], "restic");
    assert_eq!(rows[2]["encrypted"], true);
    assert_eq!(rows[1]["location"], "http://127.0.0.1:3900/holdfast/host1/");
    assert_eq!(rows[1]["appendOnly"], true);
    let text = serde_json::to_string(&rows).unwrap();
    assert!(!text.contains("HOLDFAST_S3_ACCESS_KEY_ID"), "{text}");
    assert!(!text.contains("restic-password"), "{text}");
    let wide = get(&["-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STORAGE",
            "FORMAT",
            "ENCRYPTED",
            "APPEND-ONLY",
            "FILE"
        ]
    );
}

#[test]
fn get_notifiers_lists_where_each_sends_without_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    fs::create_dir(&specs).unwrap();
    fs::write(
        specs.join("n.yaml"),
        "apiVersion: holdfast.dev/v1alpha1\nkind: Notifier\nmetadata: {name: ops}\nspec:\n  url: {fromEnv: HOLDFAST_DISCORD_URL}\n  events: [Failed, Overdue]\n  selector: {matchLabels: {tier: prod}}\n  repeat: 24h\n---\napiVersion: holdfast.dev/v1alpha1\nkind: Notifier\nmetadata: {name: hook}\nspec:\n  url: generic+https://user:hunter2-secret@hooks.example/holdfast\n---\napiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {name: web}\nspec:\n  schedule: '@daily'\n  targets: {volumes: [v]}\n  notify:\n    - {ref: ops}\n    - {url: 'generic+http://127.0.0.1:9/x', on: [Failed]}\n",
    )
    .unwrap();
    let get = |args: &[&str]| {
        let out = run(holdfast()
            .current_dir(dir.path())
            .env("HOLDFAST_DISCORD_URL", "discord://tok-secret@123")
            .args(["get", "notifiers"])
            .args(args));
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let table = get(&["-o", "wide"]);
    let words: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        words[0],
        ["NAME", "URL", "EVENTS", "COVERS", "REPEAT", "FILE"]
    );
    assert_eq!(
        words[1][..2],
        ["hook", "generic+https://user:***@hooks.example/holdfast"]
    );
    assert_eq!(
        words[2][..7],
        [
            "ops",
            "(the",
            "environment",
            "variable",
            "HOLDFAST_DISCORD_URL)",
            "Failed,Overdue",
            "tier=prod"
        ]
    );
    assert_eq!(words[2][7..10], ["+", "web", "1d"]);
    assert_eq!(
        words[3][..4],
        [
            "web.notify[1]",
            "generic+http://127.0.0.1:9/x",
            "Failed",
            "BackupPolicy/web"
        ]
    );
    for text in [table, get(&["-o", "json"])] {
        assert!(!text.contains("secret"), "{text}");
    }
}
