//! Targets found on the host rather than through running containers, with the real engine
//! and real files: a host folder (`targets.paths`) archived like a bind mount, whose
//! mounting container is stopped and started again, and a compose project taken down with
//! `docker-compose down` (`targets.composeProjects`), backed up from its compose file with
//! nothing to stop. Each comes back byte for byte from a restore, from an archives-format
//! repository and from a restic one.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::env::{Env, archive_of};
use common::*;
use serde_json::Value;

/// Docker objects a test made, removed when dropped whatever the test did.
struct Leftovers {
    containers: Vec<String>,
    volumes: Vec<String>,
    project: Option<String>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if let Some(project) = &self.project {
            let label = format!("label=com.docker.compose.project={project}");
            for (list, remove) in [
                (vec!["ps", "-aq", "--filter", &label], vec!["rm", "-f"]),
                (
                    vec!["network", "ls", "-q", "--filter", &label],
                    vec!["network", "rm"],
                ),
            ] {
                let ids = stdout(&run(Command::new("docker").args(&list)));
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if !ids.is_empty() {
                    let _ = run(Command::new("docker").args(&remove).args(&ids));
                }
            }
        }
        for c in &self.containers {
            let _ = run(Command::new("docker").args(["rm", "-f", c]));
        }
        for v in &self.volumes {
            let _ = run(Command::new("docker").args(["volume", "rm", "-f", v]));
        }
    }
}

fn manifest(repository: &Path, id: &str) -> Value {
    let path = common::env::manifests(repository)
        .into_iter()
        .find(|m| m.parent().is_some_and(|p| p.ends_with(id)))
        .expect("the archive's manifest");
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn artifact<'a>(manifest: &'a Value, kind: &str, source: &str) -> &'a Value {
    manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == kind && a["source"] == source)
        .unwrap_or_else(|| panic!("no {kind} artifact of {source}: {manifest:#}"))
}

fn restore(env: &Env, args: &[&str]) -> Value {
    let out = run(env.holdfast().args(["restore", "-o", "json"]).args(args));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_host_folder_is_archived_like_a_bind_mount_and_restored() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let env = Env::new();
    // The folder holds data, a log the excludes leave out, and holdfast's repository and
    // specs.
    let folder = env.dir.path().join("srv");
    fs::create_dir_all(folder.join("app/sub")).unwrap();
    fs::write(folder.join("top.txt"), "at the top\n").unwrap();
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(folder.join("app/sub/data.bin"), &bytes).unwrap();
    fs::write(folder.join("app/debug.log"), "noise\n").unwrap();
    let repository = folder.join("backups");
    let specs = folder.join("specs");
    fs::create_dir_all(&specs).unwrap();
    let holdfast = || {
        let mut cmd = env.holdfast();
        cmd.env("HOLDFAST_REPOSITORY", &repository)
            .env("HOLDFAST_SPECS", &specs);
        cmd
    };

    // A container bind-mounts a folder inside it: it is stopped while the folder is read.
    let name = format!("hfhostpath{}", std::process::id());
    let _left = Leftovers {
        containers: vec![name.clone()],
        volumes: vec![],
        project: None,
    };
    let _ = run(Command::new("docker").args(["rm", "-f", &name]));
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "-v",
        &format!("{}:/app", folder.join("app").display()),
        "holdfast-test/busybox:1",
        "sleep",
        "3600",
    ]);
    let started = || docker(&["inspect", "-f", "{{.State.StartedAt}}", &name]);
    let before = started();

    let shown = folder.display().to_string();
    fs::write(
        specs.join("host.yaml"),
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: host}}\nspec:\n  schedule: '0 3 1 1 *'\n  targets:\n    paths: ['{shown}']\n    exclude: {{paths: ['**/*.log']}}\n  consistency: {{stop: container}}\n"
        ),
    )
    .unwrap();
    let plan = stdout(&run(holdfast().args(["plan", "host"])));
    for said in [
        format!("host folder {shown}, mounted by {name}"),
        format!("stops, in order: {name}"),
        format!(
            "skipped specs folder {} in host folder {shown}",
            specs.display()
        ),
    ] {
        assert!(plan.contains(&said), "`{said}` not in:\n{plan}");
    }
    let id = archive_of(holdfast().args(["backup", "host", "-o", "json"]));

    // Stopped and started again.
    assert_ne!(started(), before, "the container was not restarted");
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &name]).trim(),
        "running"
    );
    let found = manifest(&repository, &id);
    assert_eq!(found["targets"]["paths"], serde_json::json!([shown]));
    assert!(found["downtime"].get(&name).is_some(), "{found:#}");
    let path = artifact(&found, "path", &shown);
    assert!(
        path["path"].as_str().unwrap().starts_with("paths/"),
        "{path}"
    );

    // `ls` shows it as a tree.
    let name = path["path"].as_str().unwrap().trim_end_matches(".tar.zst");
    let listed = stdout(&run(holdfast().args(["ls", &id, name])));
    assert!(
        listed.contains("top.txt") && listed.contains("app"),
        "{listed}"
    );

    // Back into a new folder: the bytes, without the log or the repository.
    let into = env.dir.path().join("restored");
    let out = run(holdfast()
        .args(["restore", "--from", &id, "--folder", &shown, "--to"])
        .arg(&into));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(into.join("app/sub/data.bin")).unwrap(), bytes);
    assert_eq!(
        fs::read_to_string(into.join("top.txt")).unwrap(),
        "at the top\n"
    );
    assert!(!into.join("app/debug.log").exists());
    assert!(
        !into.join("backups").exists(),
        "the repository was archived"
    );
    assert!(!into.join("specs").exists(), "the specs were archived");

    // In place, over what changed since.
    fs::remove_file(folder.join("top.txt")).unwrap();
    fs::write(folder.join("app/sub/data.bin"), b"changed").unwrap();
    let out = run(holdfast()
        .args(["restore", "--from", &id, "--folder", &shown, "--to", &shown])
        .arg("--overwrite"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fs::read(folder.join("app/sub/data.bin")).unwrap(), bytes);
    assert_eq!(
        fs::read_to_string(folder.join("top.txt")).unwrap(),
        "at the top\n"
    );

    // A folder the archive does not hold is named with what it has.
    let out = run(holdfast()
        .args(["restore", "--from", &id, "--folder", "/nope", "--to"])
        .arg(env.dir.path().join("x")));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("has no host folder `/nope`; it has: {shown}")),
        "{}",
        stderr(&out)
    );
}

const DOWN: &str = "version: \"2.4\"
services:
  app:
    image: holdfast-test/busybox:1
    command: [\"sleep\", \"3600\"]
    init: true
    volumes:
      - data:/data
      - ${CONF_DIR:-./missing}:/conf
volumes:
  data:
";

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_stack_that_is_down_is_backed_up_from_its_compose_file() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let env = Env::new();
    let project = format!("hfdown{}", std::process::id());
    let volume = format!("{project}_data");
    let _left = Leftovers {
        containers: vec![],
        volumes: vec![volume.clone(), format!("{project}_again")],
        project: Some(project.clone()),
    };
    let dir = env.dir.path().join("cloud");
    fs::create_dir_all(dir.join("config")).unwrap();
    fs::write(dir.join("docker-compose.yml"), DOWN).unwrap();
    fs::write(
        dir.join(".env"),
        format!("COMPOSE_PROJECT_NAME={project}\nCONF_DIR=./config\n"),
    )
    .unwrap();
    fs::write(dir.join("config/settings.ini"), "[app]\nkey = value\n").unwrap();
    let compose = |args: &[&str]| {
        let out = run(Command::new("docker-compose").current_dir(&dir).args(args));
        assert!(out.status.success(), "{}", stderr(&out));
    };
    compose(&["up", "-d"]);
    sh_in(
        &format!("{project}_app_1"),
        "echo kept in the volume > /data/file",
    );
    let shown = dir.display().to_string();
    env.spec(
        "down",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: down}}\nspec:\n  schedule: '0 3 1 1 *'\n  targets:\n    composeProjects: [{{path: '{shown}'}}]\n  consistency: {{stop: stack}}\n"
        ),
    );
    // Up, it is its stack: its container stops, its bind mount is the container's.
    let plan = stdout(&run(env.holdfast().args(["plan", "down"])));
    for said in [
        format!("containers {project}_app_1, backed up as its stack"),
        format!("stops, in order: {project}_app_1"),
        format!(
            "bind mount {} -> {project}_app_1:/conf",
            dir.join("config").display()
        ),
    ] {
        assert!(plan.contains(&said), "`{said}` not in:\n{plan}");
    }
    // Down, volumes kept: no container is left to say what the stack uses.
    compose(&["down", "--timeout", "5"]);
    let label = format!("label=com.docker.compose.project={project}");
    assert_eq!(docker(&["ps", "-aq", "--filter", &label]).trim(), "");

    let plan = stdout(&run(env.holdfast().args(["plan", "down"])));
    let config = dir.join("config").display().to_string();
    for said in [
        format!("compose project {project} in {shown}"),
        "no containers: nothing to stop".to_string(),
        format!("volume {volume} (used by nothing)"),
        format!("host folder {config} (bind mount of compose project {project})"),
        "stops nothing".to_string(),
    ] {
        assert!(plan.contains(&said), "`{said}` not in:\n{plan}");
    }

    let id = archive_of(env.holdfast().args(["backup", "down", "-o", "json"]));
    let found = manifest(&env.repository, &id);
    assert_eq!(found["targets"]["stacks"], serde_json::json!([project]));
    assert_eq!(found["targets"]["paths"], serde_json::json!([config]));
    assert_eq!(
        artifact(&found, "volume", &volume)["stack"],
        project.as_str()
    );
    assert_eq!(artifact(&found, "path", &config)["stack"], project.as_str());
    assert_eq!(found["downtime"], serde_json::json!({}));

    // The volume is gone: it comes back under its own name, and the folder into a new one.
    docker(&["volume", "rm", &volume]);
    let restored = restore(&env, &["--from", &id, "--stack", &project]);
    assert_eq!(restored["phase"], "Succeeded", "{restored:#}");
    let content = docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/data"),
        "holdfast-test/busybox:1",
        "cat",
        "/data/file",
    ]);
    assert_eq!(content.trim(), "kept in the volume");
    let into = env.dir.path().join("config-back");
    let out = run(env
        .holdfast()
        .args(["restore", "--from", &id, "--folder", &config, "--to"])
        .arg(&into));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(into.join("settings.ini")).unwrap(),
        "[app]\nkey = value\n"
    );

    // The recipe holds the compose file and `.env`, read when the stack was down, and
    // the folder beside them comes back beside them.
    let recipe = env.dir.path().join("recipe");
    let again = format!("{project}_again");
    let written = restore(
        &env,
        &[
            "--from",
            &id,
            "--stack",
            &project,
            "--map",
            &format!("{volume}={again}"),
            "--recipe-to",
            &recipe.display().to_string(),
        ],
    );
    assert_eq!(written["phase"], "Succeeded", "{written:#}");
    assert_eq!(
        fs::read_to_string(recipe.join("docker-compose.yml")).unwrap(),
        DOWN
    );
    let dotenv = fs::read_to_string(recipe.join(".env")).unwrap();
    assert!(
        dotenv.contains(&format!("COMPOSE_PROJECT_NAME={project}")),
        "{dotenv}"
    );
    assert_eq!(
        fs::read_to_string(recipe.join("config/settings.ini")).unwrap(),
        "[app]\nkey = value\n"
    );
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_host_folder_goes_into_a_restic_repository_and_back() {
    use common::restic;
    if !docker_available() {
        return;
    }
    let env = Env::new();
    restic::local_vault(&env);
    let folder = env.dir.path().join("etc-like");
    fs::create_dir_all(folder.join("conf.d")).unwrap();
    fs::write(folder.join("conf.d/app.conf"), "listen = 8080\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    fs::write(folder.join("big.bin"), &big).unwrap();
    let shown = folder.display().to_string();
    restic::policy(&env, "hostr", &format!("paths: ['{shown}']"), "");
    let outcome = restic::backup(&env, None, "hostr");
    let id = outcome["archiveId"].as_str().unwrap().to_string();

    let into = env.dir.path().join("back");
    let out = run(restic::holdfast_in(&env, None)
        .args([
            "restore", "--repo", "vault", "--from", &id, "--folder", &shown, "--to",
        ])
        .arg(&into));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(fs::read(into.join("big.bin")).unwrap(), big);
    assert_eq!(
        fs::read_to_string(into.join("conf.d/app.conf")).unwrap(),
        "listen = 8080\n"
    );
}
