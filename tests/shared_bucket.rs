//! One bucket shared by two hosts, as on a new machine after a disaster: each host writes
//! its own folder of a named S3 Repository (a real Garage), every host lists every host's
//! archives, one restores another's without writing into that host's folder, and each
//! host's retention forgets only its own archives.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::env::Env;
use common::garage::Garage;
use common::*;
use serde_json::Value;

/// The Repository `shared` on `garage`'s bucket, and the policy `app` backing `volume` up
/// there and keeping one archive, in `env`'s specs folder.
fn host_specs(env: &Env, garage: &Garage, volume: &str) {
    let secret = env.dir.path().join("shared.secret");
    fs::write(&secret, format!("{}\n", garage.secret())).unwrap();
    env.spec(
        "shared",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1
kind: Repository
metadata: {{name: shared}}
spec:
  storage:
    s3:
      endpoint: {endpoint}
      region: {region}
      bucket: {bucket}
      prefix: fleet/
      accessKeyId: {{fromEnv: HOLDFAST_TEST_S3_KEY}}
      secretAccessKey: {{fromFile: {secret}}}
",
            endpoint = garage.endpoint(),
            region = garage.region(),
            bucket = garage.bucket(),
            secret = secret.display(),
        ),
    );
    env.spec(
        "app",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: app}}\nspec:\n  \
             schedule: '0 3 1 1 *'\n  targets: {{volumes: [{volume}]}}\n  include: {{recipe: false}}\n  \
             retention: {{keepLast: 1}}\n  output: {{repository: shared, level: 1}}\n"
        ),
    );
}

/// The binary as `host` with its own specs and state folder.
fn as_host(env: &Env, garage: &Garage, host: &str) -> Command {
    let mut cmd = env.holdfast();
    cmd.env("HOLDFAST_TEST_S3_KEY", garage.key_id())
        .env("HOLDFAST_HOST", host);
    cmd
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

/// The bucket's keys below `prefix`, with their sizes (what a listing shows of a change).
fn keys(garage: &Garage, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = garage
        .listing(prefix)
        .split("<Contents>")
        .skip(1)
        .map(|s| {
            s.split("</Contents>")
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    keys.sort();
    keys
}

/// `(host, id)` of every archive `get archives --all-hosts` lists, sorted.
fn listed(cmd: &mut Command) -> Vec<(String, String)> {
    let out = run(cmd.args([
        "get",
        "archives",
        "--all-hosts",
        "--repo",
        "shared",
        "-o",
        "json",
    ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut rows: Vec<(String, String)> = json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["host"].as_str().unwrap().to_string(),
                e["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn hosts_in_one_bucket_list_and_restore_each_others_archives_and_prune_only_their_own() {
    if !docker_available() {
        return;
    }
    let _lock = docker_lock();
    let garage = Garage::start(1);
    let (alpha, beta) = (Env::new(), Env::new());
    let alpha_volume = FileVolume::new("hfalpha", "from-alpha");
    let beta_volume = FileVolume::new("hfbeta", "from-beta");
    host_specs(&alpha, &garage, &alpha_volume.0);
    host_specs(&beta, &garage, &beta_volume.0);

    let first =
        env::archive_of(as_host(&alpha, &garage, "alpha").args(["backup", "app", "-o", "json"]));
    // Ids carry the second they were taken: beta's must not be alpha's.
    std::thread::sleep(Duration::from_millis(1100));
    let theirs =
        env::archive_of(as_host(&beta, &garage, "beta").args(["backup", "app", "-o", "json"]));
    assert_ne!(first, theirs);

    // Beta sees only its own by default, and every host's with --all-hosts.
    let out =
        run(as_host(&beta, &garage, "beta")
            .args(["get", "archives", "--repo", "shared", "-o", "json"]));
    let own = json(&out);
    assert_eq!(own.as_array().unwrap().len(), 1, "{own:#}");
    assert_eq!(own[0]["id"], theirs.as_str());
    assert_eq!(
        listed(&mut as_host(&beta, &garage, "beta")),
        vec![
            ("alpha".to_string(), first.clone()),
            ("beta".to_string(), theirs.clone())
        ]
    );
    let out = run(as_host(&beta, &garage, "beta").args([
        "get",
        "archives",
        "--all-hosts",
        "--repo",
        "shared",
    ]));
    let table = stdout(&out);
    assert!(table.starts_with("HOST"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("alpha") && l.contains(&first)),
        "{table}"
    );

    // Beta lists alpha's archive's content, and restores it into a new volume; nothing
    // in alpha's folder changes.
    let alpha_keys = keys(&garage, "fleet/alpha/");
    let out = run(as_host(&beta, &garage, "beta").args([
        "ls",
        "--repo",
        "shared",
        "--from-host",
        "alpha",
        &first,
    ]));
    assert!(out.status.success(), "ls: {}", stderr(&out));
    assert!(stdout(&out).contains(&alpha_volume.0), "{}", stdout(&out));
    let restored = format!("{}-back", alpha_volume.0);
    let _ = run(Command::new("docker").args(["volume", "rm", "-f", &restored]));
    let out = run(as_host(&beta, &garage, "beta").args([
        "restore",
        "--repo",
        "shared",
        "--from",
        &first,
        "--volume",
        &alpha_volume.0,
        "--map",
        &format!("{}={restored}", alpha_volume.0),
    ]));
    assert!(
        out.status.success(),
        "restore: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let content = docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{restored}:/d"),
        "holdfast-test/busybox:1",
        "cat",
        "/d/file",
    ]);
    let _ = run(Command::new("docker").args(["volume", "rm", "-f", &restored]));
    assert_eq!(content, "from-alpha\n");
    // Beta verifies it too: the result is printed, and no record of it written there.
    let out = run(as_host(&beta, &garage, "beta").args([
        "verify",
        "--repo",
        "shared",
        "--from-host",
        "alpha",
        &first,
    ]));
    assert!(out.status.success(), "verify: {}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("{first}: ok")),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        keys(&garage, "fleet/alpha/"),
        alpha_keys,
        "beta wrote into alpha's folder"
    );

    // Alpha's second run keeps one archive: its first goes, beta's stays.
    std::thread::sleep(Duration::from_millis(1100));
    let second =
        env::archive_of(as_host(&alpha, &garage, "alpha").args(["backup", "app", "-o", "json"]));
    assert_eq!(
        listed(&mut as_host(&beta, &garage, "beta")),
        vec![("alpha".to_string(), second), ("beta".to_string(), theirs)]
    );
}
