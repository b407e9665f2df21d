//! The recipe of a stack started the usual way (`cd dir && docker-compose up -d`, so
//! Compose records its file relative to its folder): the right compose file is kept,
//! whatever folder holdfast runs from, a disaster drill brings the stack back from it, and
//! what the recipe could not keep is said in the status, the run log and the API.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::daemon::{Daemon, wait_for};
use common::env::{Env, archive_of};
use common::garage::Garage;
use common::*;
use serde_json::Value;

const COMPOSE: &str = "# a small stack, started from its own folder
version: \"2.4\"
services:
  web:
    image: holdfast-test/busybox:1
    command: [\"sleep\", \"3600\"]
    init: true
    environment:
      ADMIN_PASSWORD: ${ADMIN_PASSWORD}
    volumes:
      - data:/data
volumes:
  data:
";

/// A Compose project started as people do: from the folder of its compose file, with no
/// `-f`. Everything with its project label is removed when dropped.
struct UsualStack {
    project: String,
    dir: PathBuf,
}

impl UsualStack {
    fn up(dir: &Path, project: &str) -> UsualStack {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("docker-compose.yml"), COMPOSE).unwrap();
        fs::write(dir.join(".env"), "ADMIN_PASSWORD=env-s3cret-value\n").unwrap();
        let stack = UsualStack {
            project: project.to_string(),
            dir: dir.to_path_buf(),
        };
        stack.remove();
        let up = run(Command::new("docker-compose")
            .current_dir(dir)
            .args(["-p", project, "up", "-d"]));
        assert!(up.status.success(), "{}", stderr(&up));
        stack
    }

    fn container(&self) -> String {
        format!("{}_web_1", self.project)
    }

    /// Removes the project's containers, volumes and network, whatever folder it is in.
    fn remove(&self) {
        let label = format!("label=com.docker.compose.project={}", self.project);
        for (list, remove) in [
            (vec!["ps", "-aq", "--filter", &label], vec!["rm", "-f"]),
            (
                vec!["volume", "ls", "-q", "--filter", &label],
                vec!["volume", "rm", "-f"],
            ),
            (
                vec!["network", "ls", "-q", "--filter", &label],
                vec!["network", "rm"],
            ),
        ] {
            let out = run(Command::new("docker").args(&list));
            let ids: Vec<String> = stdout(&out)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            if !ids.is_empty() {
                let _ = run(Command::new("docker").args(&remove).args(&ids));
            }
        }
    }
}

impl Drop for UsualStack {
    fn drop(&mut self) {
        self.remove();
    }
}

fn policy(env: &Env, name: &str, project: &str) {
    env.spec(
        name,
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: {name}}}\nspec:\n  schedule: '0 3 1 1 *'\n  targets: {{stacks: [{project}]}}\n"
        ),
    );
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_stack_started_from_its_folder_keeps_its_own_compose_file() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let env = Env::new();
    let project = format!("hfusual{}", std::process::id());
    let stack = UsualStack::up(&env.dir.path().join("app"), &project);
    sh_in(
        &stack.container(),
        "echo 'the data that matters' > /data/precious.txt",
    );

    // holdfast runs from a folder that holds another project's compose file.
    let decoy = env.dir.path().join("decoy");
    fs::create_dir(&decoy).unwrap();
    fs::write(
        decoy.join("docker-compose.yml"),
        "# not this one\nservices: {}\n",
    )
    .unwrap();
    fs::write(decoy.join(".env"), "DECOY=1\n").unwrap();
    policy(&env, "usual", &project);
    let out = run(env
        .holdfast()
        .current_dir(&decoy)
        .args(["backup", "usual", "-o", "json"]));
    let outcome: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(
        outcome["phase"],
        "Succeeded",
        "{outcome:#}\n{}",
        stderr(&out)
    );
    assert_eq!(outcome["warnings"], serde_json::json!([]), "{outcome:#}");
    let id = outcome["archiveId"]
        .as_str()
        .or(outcome["archive_id"].as_str())
        .unwrap();
    let recipe = host_dir(&env.repository)
        .join("usual")
        .join(id)
        .join("recipe")
        .join(&project);
    assert_eq!(
        fs::read_to_string(recipe.join("docker-compose.yml")).unwrap(),
        COMPOSE
    );
    let dotenv = fs::read_to_string(recipe.join(".env")).unwrap();
    assert!(dotenv.starts_with("ADMIN_PASSWORD="), "{dotenv}");
    assert!(
        !dotenv.contains("env-s3cret-value") && !dotenv.contains("DECOY"),
        "{dotenv}"
    );

    // The drill: the host is lost, only the repository is left.
    stack.remove();
    fs::remove_dir_all(&stack.dir).unwrap();
    fs::remove_dir_all(&env.state).unwrap();
    let into = env.dir.path().join("recipe");
    let out = run(env.holdfast().current_dir(&decoy).args([
        "restore",
        "-o",
        "json",
        "--policy",
        "usual",
        "--at",
        "latest",
        "--recipe-to",
        into.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        fs::read_to_string(into.join("docker-compose.yml")).unwrap(),
        COMPOSE
    );
    let up = run(Command::new("docker-compose")
        .current_dir(&into)
        .env("ADMIN_PASSWORD", "set-again")
        .args(["up", "-d"]));
    assert!(up.status.success(), "{}", stderr(&up));
    let served = docker(&["exec", &stack.container(), "cat", "/data/precious.txt"]);
    assert_eq!(served.trim(), "the data that matters");
}

/// The drill again, from nothing but the disaster-recovery bundle and an encrypted S3
/// repository: the S3 key id was in the old host's environment, the secret key and the
/// age identity in files outside its specs, its host name in its configuration file, and
/// none of those exist any more.
#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_stack_comes_back_from_the_bundle_and_an_s3_repository_alone() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let garage = Garage::start(1);
    let env = Env::new();
    let project = format!("hfbundled{}", std::process::id());
    let stack = UsualStack::up(&env.dir.path().join("app"), &project);
    sh_in(
        &stack.container(),
        "echo 'the data that matters' > /data/precious.txt",
    );
    let secrets = env.dir.path().join("secrets");
    fs::create_dir(&secrets).unwrap();
    let (_, recipient) = age_key(&secrets, "offsite.key");
    fs::write(secrets.join("s3.secret"), format!("{}\n", garage.secret())).unwrap();
    env.spec(
        "offsite",
        &format!(
            "{}  encryption:
    age:
      recipients: [{recipient}]
      identityFile: ../secrets/offsite.key
",
            garage.repository_spec("offsite", "backups/", "../secrets/s3.secret")
        ),
    );
    env.spec(
        "usual",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: usual}}\nspec:\n  schedule: '0 3 1 1 *'\n  targets: {{stacks: [{project}]}}\n  include: {{bundle: true}}\n  output: {{repository: offsite}}\n"
        ),
    );
    let config = env.dir.path().join("holdfast.yaml");
    fs::write(&config, "host: drillhost\n").unwrap();
    let old_host = || {
        let mut cmd = env.holdfast();
        cmd.arg("--config")
            .arg(&config)
            .env("HOLDFAST_TEST_S3_KEY", garage.key_id());
        cmd
    };
    archive_of(old_host().args(["backup", "usual", "-o", "json"]));
    // include.bundle put one into the bucket, in the host's folder.
    let listing = garage.listing("backups/drillhost/.holdfast/");
    assert!(listing.contains("bundle.age"), "{listing}");
    // The person's own copy, to their own key.
    let (operator, public) = age_key(env.dir.path(), "operator.key");
    let bundle = env.dir.path().join("drillhost.bundle.age");
    let out = run(old_host()
        .args(["bundle", "create", "--out"])
        .arg(&bundle)
        .args(["--recipient", &public]));
    assert!(out.status.success(), "{}", stderr(&out));

    // The host is lost: the stack, its folder, the specs, the state, the secret files and
    // the configuration file. The S3 key id is in no environment any more.
    stack.remove();
    fs::remove_dir_all(&stack.dir).unwrap();
    for dir in [&env.specs, &env.state, &secrets] {
        fs::remove_dir_all(dir).unwrap();
    }
    fs::remove_file(&config).unwrap();
    let recovered = env.dir.path().join("recovered");
    let out = run(env
        .holdfast()
        .args(["bundle", "open"])
        .arg(&bundle)
        .arg("--identity")
        .arg(&operator)
        .arg("--to")
        .arg(&recovered));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("--repo offsite --host drillhost"),
        "{}",
        stdout(&out)
    );

    // As README.txt says: from the folder it was opened into, with its configuration file.
    let into = env.dir.path().join("recipe");
    let out = run(env
        .holdfast()
        .current_dir(&recovered)
        .arg("--config")
        .arg(recovered.join("holdfast.yaml"))
        .args([
            "restore",
            "-o",
            "json",
            "--specs",
            "specs",
            "--repo",
            "offsite",
            "--policy",
            "usual",
            "--at",
            "latest",
            "--recipe-to",
        ])
        .arg(&into));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        fs::read_to_string(into.join("docker-compose.yml")).unwrap(),
        COMPOSE
    );
    let up = run(Command::new("docker-compose")
        .current_dir(&into)
        .env("ADMIN_PASSWORD", "set-again")
        .args(["up", "-d"]));
    assert!(up.status.success(), "{}", stderr(&up));
    let served = docker(&["exec", &stack.container(), "cat", "/data/precious.txt"]);
    assert_eq!(served.trim(), "the data that matters");
}

fn get_json(addr: &str, path: &str) -> Value {
    common::http::get(addr, path).json()
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn what_the_recipe_misses_reaches_the_status_the_run_log_and_the_api() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let env = Env::new();
    let project = format!("hfmissing{}", std::process::id());
    let stack = UsualStack::up(&env.dir.path().join("app"), &project);
    // The compose file went away after `up`: the recipe cannot keep it.
    fs::remove_file(stack.dir.join("docker-compose.yml")).unwrap();
    env.spec(
        "missing",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: Archive\nmetadata:\n  name: missing\nspec:\n  targets: {{stacks: [{project}]}}\n"
        ),
    );
    let _daemon = Daemon::start(env.dir.path(), &[]);
    let statuses = wait_for(
        &env.specs.join("missing.status.yaml"),
        Duration::from_secs(120),
        "the archive's run",
        |s| {
            s.first()
                .is_some_and(|d| d["status"]["lastRun"]["phase"] == "Succeeded")
        },
    );
    let last = &statuses[0]["status"]["lastRun"];
    let warning = last["warnings"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{last:#}"));
    assert!(
        warning.contains(&project) && warning.contains("docker-compose.yml"),
        "{warning}"
    );
    let run_id = last["id"].as_str().unwrap();

    let log = fs::read_to_string(env.state.join("logs").join(format!("{run_id}.log"))).unwrap();
    assert!(
        log.contains(warning),
        "{warning} not in the run log:\n{log}"
    );

    let addr = Daemon::api_address(env.dir.path());
    let run = get_json(&addr, &format!("/api/v1/runs/{run_id}"));
    assert_eq!(run["warnings"][0].as_str(), Some(warning), "{run:#}");
}
