//! A dump's password never shows on a command line inside the database's container:
//! a stand-in `mongodump` records every process's command line while it runs.

mod common;

use std::process::Command;

use common::env::Env;
use common::*;
use serde_json::Value;

/// Writes what it was given and what every process's command line is, then an archive.
const FAKE_MONGODUMP: &str = r#"#!/bin/sh
{
	printf 'arg %s\n' "$@"
	for f in /proc/[0-9]*/cmdline; do
		printf 'cmdline %s\n' "$(tr '\0' ' ' < "$f" 2>/dev/null)"
	done
	for a; do
		case $a in
		--config=*)
			printf 'mode %s\n' "$(stat -c %a "${a#--config=}")"
			sed 's/^/config /' "${a#--config=}"
			;;
		esac
	done
} > /data/seen.txt
printf 'a fake mongodump archive'
"#;

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run(Command::new("docker").args(["rm", "-f", "-v", &self.0]));
        let _ = run(Command::new("docker").args(["volume", "rm", "-f", &self.0]));
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_mongo_password_is_on_no_command_line_in_the_container() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let name = format!("hfmongo{}", std::process::id());
    let container = Container(name.clone());
    docker(&[
        "run",
        "-d",
        "--init",
        "--name",
        &name,
        "--label",
        &format!("hf.test={name}"),
        "-v",
        &format!("{name}:/data"),
        "holdfast-test/busybox:1",
        "sleep",
        "3600",
    ]);
    sh_in(
        &container.0,
        &format!("cat > /bin/mongodump <<'EOF'\n{FAKE_MONGODUMP}EOF\nchmod 755 /bin/mongodump"),
    );
    let password = "mongo-s3cret-on-no-cmdline";
    let env = Env::new();
    env.spec(
        "mongo",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: mongo}}\nspec:\n  schedule: '0 3 1 1 *'\n  targets: {{selector: {{matchLabels: {{hf.test: {name}}}}}}}\n  dumps: [{{container: {name}, engine: mongo, user: root, password: {{value: {password}}}}}]\n"
        ),
    );
    let out = run(env.holdfast().args(["backup", "mongo", "-o", "json"]));
    let outcome: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(
        outcome["phase"],
        "Succeeded",
        "{outcome:#}\n{}",
        stderr(&out)
    );

    let seen = docker(&["exec", &container.0, "cat", "/data/seen.txt"]);
    let cmdlines = seen.lines().filter(|l| l.starts_with("cmdline ")).count();
    assert!(cmdlines >= 3, "too few processes seen:\n{seen}");
    for line in seen.lines() {
        if line.starts_with("arg ") || line.starts_with("cmdline ") {
            assert!(
                !line.contains(password),
                "on a command line: {line}\n{seen}"
            );
        }
    }
    assert!(seen.contains("mode 600\n"), "{seen}");
    assert!(
        seen.contains(&format!("config password: '{password}'\n")),
        "{seen}"
    );
    // The config file is gone with the dump.
    let left = docker(&[
        "exec",
        &container.0,
        "sh",
        "-c",
        "grep -rl mongo-s3cret /tmp || true",
    ]);
    assert_eq!(left.trim(), "", "a config file was left behind");
}
