//! Backups that leave the host: Repository specs on a real Garage (S3-compatible) cluster,
//! age encryption that a person can undo with Debian's `age`, copies to several
//! repositories, and what a dead or misconfigured server does to a run.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::env::Env;
use common::garage::Garage;
use common::*;
use serde_json::Value;

/// The host name the tests write under, so object keys are known.
const HOST: &str = "testhost";

/// Writes a BackupPolicy `name` with a yearly schedule and `lines` under `spec:`.
fn policy(env: &Env, name: &str, lines: &str) {
    env.spec(
        name,
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: {name}}}\nspec:\n  schedule: '0 3 1 1 *'\n{lines}"
        ),
    );
}

/// The Repository `offsite` on `garage`, and the policy `name` writing `targets` there at
/// zstd level 1 with `extra` settings.
fn offsite_policy(env: &Env, garage: &Garage, name: &str, targets: &str, extra: &str) {
    env.spec(
        "offsite",
        &s3_repository(env, garage, "offsite", &garage.endpoint(), ""),
    );
    policy(
        env,
        name,
        &format!("  targets: {{{targets}}}\n{extra}  output: {{repository: offsite, level: 1}}\n"),
    );
}

/// An age key pair made by `age-keygen`: the identity file and the public key.
fn age_keys(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("age.key");
    let out = run(Command::new("age-keygen").arg("-o").arg(&key));
    assert!(out.status.success(), "age-keygen: {}", stderr(&out));
    let public = run(Command::new("age-keygen").arg("-y").arg(&key));
    (key, stdout(&public).trim().to_string())
}

/// A Repository spec `name` on the cluster's bucket; the key id comes from the
/// environment, the secret from a file beside the specs.
fn s3_repository(env: &Env, garage: &Garage, name: &str, endpoint: &str, extra: &str) -> String {
    let secret = env.dir.path().join(format!("{name}.secret"));
    fs::write(&secret, format!("{}\n", garage.secret())).unwrap();
    garage.repository_spec_at(endpoint, name, "backups/", &secret.display().to_string()) + extra
}

/// The binary with the test's specs, state and repository, the S3 key id and a fixed
/// host name.
fn holdfast_for(env: &Env, garage: &Garage) -> Command {
    let mut cmd = env.holdfast();
    cmd.env("HOLDFAST_TEST_S3_KEY", garage.key_id())
        .env("HOLDFAST_HOST", HOST);
    cmd
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

/// One object of the bucket, downloaded with curl (SigV4), as a person without holdfast
/// would.
fn download(garage: &Garage, key: &str, to: &Path) {
    let out = run(Command::new("curl")
        .args(["-sS", "--fail", "--aws-sigv4"])
        .arg(format!("aws:amz:{}:s3", garage.region()))
        .arg("--user")
        .arg(format!("{}:{}", garage.key_id(), garage.secret()))
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-o"])
        .arg(to)
        .arg(format!("{}/{}/{key}", garage.endpoint(), garage.bucket())));
    assert!(out.status.success(), "curl {key}: {}", stderr(&out));
}

/// Every key of the bucket below `prefix`.
fn keys(garage: &Garage, prefix: &str) -> Vec<String> {
    garage
        .listing(prefix)
        .split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(str::to_string)
        .collect()
}

/// Everything a command printed, for checking that no secret is in it.
fn printed(out: &std::process::Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_backup_is_copied_to_garage_encrypted_verified_and_restored_from_there() {
    let _lock = docker_lock();
    let garage = Garage::start(1);
    let env = Env::new();
    let volume = FileVolume::new("hfremote", "hello-offsite");
    let (identity, recipient) = age_keys(env.dir.path());
    env.spec(
        "offsite",
        &s3_repository(
            &env,
            &garage,
            "offsite",
            &garage.endpoint(),
            &format!(
                "  encryption:\n    age:\n      recipients: [\"{recipient}\"]\n      identityFile: {}\n",
                identity.display()
            ),
        ),
    );
    policy(
        &env,
        "remote",
        &format!(
            "  targets: {{volumes: [{}]}}\n  output: {{repositories: [default, offsite]}}\n",
            volume.0
        ),
    );
    let mut outputs = Vec::new();

    // The run writes the local repository and copies the committed archive to Garage.
    let out = run(holdfast_for(&env, &garage).args(["backup", "remote", "-o", "json"]));
    let outcome = json(&out);
    assert_eq!(
        outcome["phase"],
        "Succeeded",
        "{outcome:#}\n{}",
        stderr(&out)
    );
    assert_eq!(outcome["repository"], "default");
    assert_eq!(outcome["copies"][0]["repository"], "offsite", "{outcome:#}");
    assert_eq!(outcome["copies"][0]["ok"], true, "{outcome:#}");
    let id = outcome["archiveId"].as_str().unwrap().to_string();
    outputs.push(out);
    // The run history keeps where the run wrote and what became of each copy.
    let out = run(holdfast_for(&env, &garage).args(["get", "runs", "-o", "json"]));
    let runs = json(&out);
    assert_eq!(runs[0]["repository"], "default", "{runs:#}");
    assert_eq!(runs[0]["copies"][0]["repository"], "offsite", "{runs:#}");
    assert_eq!(runs[0]["copies"][0]["ok"], true, "{runs:#}");
    assert!(
        runs[0]["copies"][0]["storedBytes"].as_u64().unwrap() > 0,
        "{runs:#}"
    );

    // Listed, read back in full (decrypted with the identity) and found good.
    let out =
        run(holdfast_for(&env, &garage)
            .args(["get", "archives", "--repo", "offsite", "-o", "json"]));
    let listed = json(&out);
    assert_eq!(listed[0]["id"], id.as_str(), "{listed:#}");
    assert_eq!(listed[0]["health"], "Good", "{listed:#}");
    outputs.push(out);
    let out = run(holdfast_for(&env, &garage).args(["verify", "--repo", "offsite", &id]));
    assert!(out.status.success(), "{}", printed(&out));
    outputs.push(out);

    // Without holdfast: the object, age, zstd and tar give the file back.
    let prefix = format!("backups/{HOST}/remote/{id}/");
    let stored = keys(&garage, &prefix);
    let artifact = stored
        .iter()
        .find(|k| k.contains("volumes/"))
        .unwrap_or_else(|| panic!("no volume artifact in {stored:?}"));
    assert!(
        stored.iter().any(|k| k.ends_with("manifest.json")),
        "{stored:?}"
    );
    let encrypted = env.dir.path().join("artifact.age");
    download(&garage, artifact, &encrypted);
    assert!(
        fs::read(&encrypted)
            .unwrap()
            .starts_with(b"age-encryption.org/v1")
    );
    // The manifest records the stored (ciphertext) bytes beside the plaintext's.
    let manifest_file = env.dir.path().join("manifest.json");
    download(&garage, &format!("{prefix}manifest.json"), &manifest_file);
    let manifest: Value = serde_json::from_slice(&fs::read(&manifest_file).unwrap()).unwrap();
    assert_eq!(manifest["encryption"], "age", "{manifest:#}");
    let entry = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| artifact.ends_with(a["path"].as_str().unwrap()))
        .unwrap();
    assert_eq!(
        entry["storedSha256"],
        sha256_file(&encrypted).as_str(),
        "{entry:#}"
    );
    assert_eq!(
        entry["storedSize"],
        fs::metadata(&encrypted).unwrap().len(),
        "{entry:#}"
    );
    let by_hand = env.dir.path().join("by-hand");
    fs::create_dir(&by_hand).unwrap();
    let out = run(Command::new("sh").arg("-c").arg(format!(
        "age -d -i {} {} | zstd -d | tar -x -C {}",
        identity.display(),
        encrypted.display(),
        by_hand.display()
    )));
    assert!(out.status.success(), "by hand: {}", stderr(&out));
    assert_eq!(
        fs::read_to_string(by_hand.join("file")).unwrap(),
        "hello-offsite\n"
    );

    // A restore from Garage into a new volume.
    let (out, content, _) = restore_into_new_volume(
        holdfast_for(&env, &garage),
        "offsite",
        &id,
        &volume.0,
        "cat /d/file",
    );
    assert!(out.status.success(), "restore: {}", printed(&out));
    outputs.push(out);
    assert_eq!(content, "hello-offsite\n");
    // Nothing fetched for the restore stays behind.
    let fetched = env.state.join("fetched");
    assert!(
        fs::read_dir(&fetched).map_or(true, |mut d| d.next().is_none()),
        "{} holds what the restore fetched",
        fetched.display()
    );

    // No secret anywhere holdfast wrote or printed.
    let mut everything: String = outputs.iter().map(printed).collect();
    for entry in fs::read_dir(&env.specs).unwrap() {
        everything.push_str(&fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
    }
    assert!(
        !everything.contains(garage.secret()),
        "the S3 secret was printed"
    );
    let identity_text = fs::read_to_string(&identity).unwrap();
    let secret_key = identity_text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    assert!(
        !everything.contains(secret_key),
        "the age identity was printed"
    );
}

/// `holdfast restore --repo REPO --from ID --volume VOLUME` into a new volume
/// `<volume>-back` with `cmd` (the binary, its settings set); runs `script` (`sh -c`) on
/// the restored volume at `/d`, removes it, and returns the restore's output, what the
/// script printed, and whether the new volume existed after the restore.
fn restore_into_new_volume(
    mut cmd: Command,
    repo: &str,
    id: &str,
    volume: &str,
    script: &str,
) -> (std::process::Output, String, bool) {
    let restored = format!("{volume}-back");
    let _ = run(Command::new("docker").args(["volume", "rm", "-f", &restored]));
    let out = run(cmd.args([
        "restore",
        "--repo",
        repo,
        "--from",
        id,
        "--volume",
        volume,
        "--map",
        &format!("{volume}={restored}"),
    ]));
    let existed = run(Command::new("docker").args(["volume", "inspect", &restored]))
        .status
        .success();
    let seen = if out.status.success() {
        docker(&[
            "run",
            "--rm",
            "-v",
            &format!("{restored}:/d"),
            "holdfast-test/busybox:1",
            "sh",
            "-c",
            script,
        ])
    } else {
        String::new()
    };
    let _ = run(Command::new("docker").args(["volume", "rm", "-f", &restored]));
    (out, seen, existed)
}

/// Starts `holdfast backup NAME -o json` and returns it once its log says it is
/// archiving; its log is `backup.log` in the test's folder.
fn backup_until_archiving(
    env: &Env,
    garage: &Garage,
    name: &str,
) -> (std::process::Child, PathBuf) {
    let log = env.dir.path().join("backup.log");
    let child = holdfast_for(env, garage)
        .args(["backup", name, "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for_line(&log, "archiving", Duration::from_secs(60));
    (child, log)
}

/// A container whose volume holds `mib` MiB of incompressible data, so an upload takes a
/// while.
fn big_container(tag: &str, mib: u32) -> Busybox {
    let c = Busybox::start("hfremote", tag, QUITS_ON_TERM);
    docker(&[
        "exec",
        &c.name,
        "sh",
        "-c",
        &format!("dd if=/dev/urandom of=/data/big bs=1M count={mib} 2>/dev/null"),
    ]);
    c
}

/// Waits for `line` in the file `log`.
fn wait_for_line(log: &Path, line: &str, within: Duration) {
    let start = Instant::now();
    while start.elapsed() < within {
        if fs::read_to_string(log).is_ok_and(|t| t.contains(line)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "no `{line}` within {within:?}:\n{}",
        fs::read_to_string(log).unwrap_or_default()
    );
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn an_upload_cut_by_a_dead_server_fails_cleanly_and_the_next_run_succeeds() {
    let _lock = docker_lock();
    let mut garage = Garage::start(1);
    let env = Env::new();
    let container = big_container("cut", 300);
    let targets = format!("containers: [{}]", container.name);
    offsite_policy(
        &env,
        &garage,
        "straight",
        &targets,
        "  consistency: {stop: container}\n",
    );
    // Killed while the archive streams to the server.
    let (child, _) = backup_until_archiving(&env, &garage, "straight");
    std::thread::sleep(Duration::from_millis(300));
    garage.kill_node(0);
    let out = child.wait_with_output().unwrap();
    let outcome = json(&out);
    assert_eq!(outcome["phase"], "Failed", "{outcome:#}");
    assert_eq!(outcome["archiveId"], Value::Null, "{outcome:#}");
    assert_eq!(
        container.state(),
        "running",
        "the container was left stopped"
    );

    // Back up: nothing is listed, and the next run clears what the cut upload left.
    garage.restart_node(0);
    let out =
        run(holdfast_for(&env, &garage)
            .args(["get", "archives", "--repo", "offsite", "-o", "json"]));
    assert_eq!(json(&out), serde_json::json!([]), "{}", stderr(&out));
    let id =
        env::archive_of(holdfast_for(&env, &garage).args(["backup", "straight", "-o", "json"]));
    let left: Vec<String> = keys(&garage, &format!("backups/{HOST}/straight/"))
        .into_iter()
        .filter(|k| !k.contains(&id))
        .collect();
    assert!(left.is_empty(), "a cut upload left {left:?}");
    let out = run(holdfast_for(&env, &garage).args(["verify", "--repo", "offsite", &id]));
    assert!(out.status.success(), "{}", printed(&out));
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_three_node_cluster_keeps_a_backup_going_when_a_node_dies() {
    let _lock = docker_lock();
    let mut garage = Garage::start(3);
    let env = Env::new();
    let container = big_container("three", 100);
    let targets = format!("containers: [{}]", container.name);
    offsite_policy(&env, &garage, "spread", &targets, "");
    let (child, log) = backup_until_archiving(&env, &garage, "spread");
    // Not the node the repository talks to: the one holding a third of the copies.
    garage.kill_node(2);
    let out = child.wait_with_output().unwrap();
    let outcome = json(&out);
    assert_eq!(
        outcome["phase"],
        "Succeeded",
        "{outcome:#}\n{}",
        fs::read_to_string(&log).unwrap()
    );
    let id = outcome["archiveId"].as_str().unwrap().to_string();
    let (out, size, _) = restore_into_new_volume(
        holdfast_for(&env, &garage),
        "offsite",
        &id,
        &container.volume,
        "wc -c < /d/big",
    );
    assert!(out.status.success(), "restore: {}", printed(&out));
    assert_eq!(size.trim(), (100 * 1024 * 1024).to_string());
}

/// A Repository spec whose key id and secret both come from files.
fn repository_with(
    dir: &Path,
    name: &str,
    endpoint: &str,
    bucket: &str,
    key: &str,
    secret: &str,
) -> String {
    let (key_file, secret_file) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.secret")),
    );
    fs::write(&key_file, key).unwrap();
    fs::write(&secret_file, secret).unwrap();
    format!(
        "apiVersion: holdfast.dev/v1alpha1
kind: Repository
metadata: {{name: {name}}}
spec:
  storage:
    s3:
      endpoint: {endpoint}
      region: garage
      bucket: {bucket}
      accessKeyId: {{fromFile: {}}}
      secretAccessKey: {{fromFile: {}}}
",
        key_file.display(),
        secret_file.display()
    )
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_repository_status_says_why_it_cannot_be_reached_and_a_backup_there_fails_before_stopping_anything()
 {
    let garage = Garage::start(1);
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    fs::create_dir(&specs).unwrap();
    let closed = free_ports(1)[0];
    let (endpoint, bucket, key, secret) = (
        garage.endpoint(),
        garage.bucket().to_string(),
        garage.key_id().to_string(),
        garage.secret().to_string(),
    );
    for (name, endpoint, bucket, key, secret) in [
        (
            "good",
            endpoint.clone(),
            bucket.clone(),
            key.clone(),
            secret.clone(),
        ),
        (
            "wrong-secret",
            endpoint.clone(),
            bucket.clone(),
            key.clone(),
            "0".repeat(64),
        ),
        (
            "unknown-key",
            endpoint.clone(),
            bucket.clone(),
            "GK000000000000000000000000".to_string(),
            secret.clone(),
        ),
        (
            "no-bucket",
            endpoint.clone(),
            "no-such-bucket".to_string(),
            key.clone(),
            secret.clone(),
        ),
        (
            "refused",
            format!("http://127.0.0.1:{closed}"),
            bucket.clone(),
            key.clone(),
            secret.clone(),
        ),
    ] {
        fs::write(
            specs.join(format!("{name}.yaml")),
            repository_with(dir.path(), name, &endpoint, &bucket, &key, &secret),
        )
        .unwrap();
    }
    let _daemon = common::daemon::Daemon::start(dir.path(), &[]);
    let ready = |name: &str| -> Value {
        let s = common::daemon::wait_for(
            &specs.join(format!("{name}.status.yaml")),
            Duration::from_secs(90),
            name,
            |s| {
                s.first().is_some_and(|d| {
                    d["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["reason"] != "Valid")
                    })
                })
            },
        );
        let conditions = s[0]["status"]["conditions"].as_array().unwrap().clone();
        conditions
            .into_iter()
            .find(|c| c["type"] == "Ready")
            .unwrap()
    };
    let good = ready("good");
    assert_eq!(good["status"], "True", "{good:#}");
    let status = &common::daemon::statuses(&specs.join("good.status.yaml"))[0]["status"];
    assert!(status["lastValidated"].is_string(), "{status:#}");
    assert_eq!(status["archives"]["count"], 0, "{status:#}");
    // The gauges say the same, by repository.
    let address = common::daemon::Daemon::api_address(dir.path());
    let metrics = run(Command::new("curl").args(["-sS", &format!("http://{address}/metrics")]));
    let metrics = stdout(&metrics);
    assert!(
        metrics.contains(r#"holdfast_repository_up{repository="good"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"holdfast_repository_up{repository="refused"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"holdfast_repository_archives{repository="good"} 0"#),
        "{metrics}"
    );
    for (name, says) in [
        ("wrong-secret", "credentials"),
        ("unknown-key", "credentials"),
        ("no-bucket", "bucket"),
        ("refused", "refused"),
    ] {
        let c = ready(name);
        assert_eq!(c["status"], "False", "{name}: {c:#}");
        let message = c["message"].as_str().unwrap();
        assert!(message.contains(says), "{name}: {message}");
        assert!(
            !message.contains(&secret),
            "{name}: the secret is in the status"
        );
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn retention_applies_in_every_repository_but_an_append_only_one() {
    let _lock = docker_lock();
    let env = Env::new();
    let volume = FileVolume::new("hfappend", "kept");
    for (name, append_only) in [("usb", false), ("vault", true)] {
        env.spec(
            name,
            &format!(
                "apiVersion: holdfast.dev/v1alpha1
kind: Repository
metadata: {{name: {name}}}
spec:
  storage:
    local: {{path: ../{name}}}
  appendOnly: {append_only}
"
            ),
        );
    }
    let policy = format!(
        "  targets: {{volumes: [{}]}}\n  retention: {{keepLast: 1}}\n  output: {{repositories: [usb, vault, default]}}\n",
        volume.0
    );
    let first = env.backup_succeeded("kept", &policy);
    let second = env.backup_succeeded("kept", &policy);
    assert_ne!(first, second);
    let ids = |repo: &str| -> Vec<String> {
        let out = run(env
            .holdfast()
            .args(["get", "archives", "--repo", repo, "-o", "json"]));
        json(&out)
            .as_array()
            .unwrap_or_else(|| panic!("{}", printed(&out)))
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids("usb"),
        std::slice::from_ref(&second),
        "retention applies where the run wrote"
    );
    assert_eq!(
        ids("default"),
        std::slice::from_ref(&second),
        "and where it copied"
    );
    assert_eq!(
        ids("vault"),
        [first.clone(), second.clone()],
        "appendOnly keeps everything"
    );
    // The local kind is a folder like --repository's: `<path>/<host>/<group>/<id>/`.
    assert_eq!(env::manifests(&env.dir.path().join("vault")).len(), 2);
    let out = run(env
        .holdfast()
        .args(["delete", "--repo", "vault", "--yes", &first]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("appendOnly"), "{}", stderr(&out));
    assert_eq!(ids("vault").len(), 2);
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_backup_goes_over_sftp_encrypted_and_comes_back() {
    let _lock = docker_lock();
    let server = common::sftp::Sftp::start();
    let env = Env::new();
    let volume = FileVolume::new("hfsftp", "over-ssh");
    let (identity, recipient) = age_keys(env.dir.path());
    env.spec(
        "nas",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1
kind: Repository
metadata: {{name: nas}}
spec:
  storage:
    sftp:
      host: {}
      port: {}
      user: {}
      path: {}/holdfast
      privateKeyFile: {}
      knownHostsFile: {}
  encryption:
    age: {{recipients: [\"{recipient}\"], identityFile: {}}}
",
            server.host(),
            server.port(),
            server.user(),
            server.root().display(),
            server.private_key().display(),
            server.known_hosts().display(),
            identity.display()
        ),
    );
    let id = env.backup_succeeded(
        "over-ssh",
        &format!(
            "  targets: {{volumes: [{}]}}\n  output: {{repository: nas}}\n",
            volume.0
        ),
    );
    // On the server: this host's folder, the archive's folder, an age file per artifact.
    let host_dirs: Vec<_> = fs::read_dir(server.root().join("holdfast"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(host_dirs.len(), 1, "{host_dirs:?}");
    let archive = host_dirs[0].join("over-ssh").join(&id);
    assert!(archive.join("manifest.json").is_file());
    let artifact = archive.join(format!("volumes/{}.tar.zst", volume.0));
    assert!(
        fs::read(&artifact)
            .unwrap()
            .starts_with(b"age-encryption.org/v1")
    );
    assert!(
        env.manifests().is_empty(),
        "nothing was written to the local repository"
    );

    let out = run(env.holdfast().args(["verify", "--repo", "nas", &id]));
    assert!(out.status.success(), "{}", printed(&out));
    // Looking inside and taking one file back work from there too.
    let out =
        run(env
            .holdfast()
            .args(["ls", "--repo", "nas", &id, &format!("volumes/{}", volume.0)]));
    assert!(stdout(&out).contains("file"), "{}", printed(&out));
    let to = env.dir.path().join("one-file");
    let out = run(env
        .holdfast()
        .args([
            "restore", "--repo", "nas", "--from", &id, "--volume", &volume.0, "--path", "file",
            "--to",
        ])
        .arg(&to));
    assert!(out.status.success(), "{}", printed(&out));
    assert_eq!(fs::read_to_string(to.join("file")).unwrap(), "over-ssh\n");
    let (out, content, _) =
        restore_into_new_volume(env.holdfast(), "nas", &id, &volume.0, "cat /d/file");
    assert!(out.status.success(), "restore: {}", printed(&out));
    assert_eq!(content, "over-ssh\n");
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_streamed_restore_of_a_tampered_artifact_leaves_no_volume_behind() {
    let _lock = docker_lock();
    let server = common::sftp::Sftp::start();
    let env = Env::new();
    let volume = FileVolume::new("hftamper", "original");
    env.spec(
        "nas",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1
kind: Repository
metadata: {{name: nas}}
spec:
  storage:
    sftp: {{host: {}, port: {}, user: {}, path: {}/r, privateKeyFile: {}, knownHostsFile: {}}}
",
            server.host(),
            server.port(),
            server.user(),
            server.root().display(),
            server.private_key().display(),
            server.known_hosts().display(),
        ),
    );
    let id = env.backup_succeeded(
        "tampered",
        &format!(
            "  targets: {{volumes: [{}]}}\n  output: {{repository: nas, format: tar}}\n",
            volume.0
        ),
    );
    // Someone with access to the server changes the archive: same size, other bytes.
    let host = fs::read_dir(server.root().join("r"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let artifact = host
        .join("tampered")
        .join(&id)
        .join(format!("volumes/{}.tar", volume.0));
    let text = fs::read(&artifact).unwrap();
    let changed: Vec<u8> = String::from_utf8_lossy(&text)
        .replace("original", "forgedxx")
        .into_bytes();
    assert_eq!(changed.len(), text.len());
    assert_ne!(changed, text);
    fs::write(&artifact, changed).unwrap();

    let (out, _, exists) = restore_into_new_volume(env.holdfast(), "nas", &id, &volume.0, "true");
    assert!(!out.status.success(), "a tampered archive was restored");
    assert!(stderr(&out).contains("sha256"), "{}", stderr(&out));
    assert!(!exists, "the new volume was left behind");
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_backup_killed_mid_upload_leaves_nothing_listed_and_the_next_one_clears_and_restarts() {
    let _lock = docker_lock();
    let garage = Garage::start(1);
    let env = Env::new();
    // A small volume first, whose artifact is complete (a visible object) when the run
    // dies in the big one's; an unfinished multipart upload is not an object at all.
    let small = FileVolume::new("hfkilled-a", "small");
    let container = big_container("killed", 200);
    let targets = format!("volumes: [{}, {}]", small.0, container.volume);
    offsite_policy(
        &env,
        &garage,
        "killed",
        &targets,
        "  consistency: {stop: container}\n",
    );
    // SIGKILL while the archive streams to the bucket, the container stopped: no
    // destructor runs, no upload is aborted, no manifest is written.
    let (mut child, log) = backup_until_archiving(&env, &garage, "killed");
    wait_for_line(
        &log,
        &format!("archived artifact=volumes/{}", small.0),
        Duration::from_secs(60),
    );
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    let prefix = format!("backups/{HOST}/killed/");
    assert!(
        !keys(&garage, &prefix).is_empty(),
        "the killed run uploaded nothing: the test did not kill it mid-upload"
    );
    let out =
        run(holdfast_for(&env, &garage)
            .args(["get", "archives", "--repo", "offsite", "-o", "json"]));
    assert_eq!(json(&out), serde_json::json!([]), "{}", stderr(&out));

    // The next backup starts the container the killed one left stopped, clears the
    // upload's objects and writes a whole archive.
    let id = env::archive_of(holdfast_for(&env, &garage).args(["backup", "killed", "-o", "json"]));
    assert_eq!(container.state(), "running");
    let left: Vec<String> = keys(&garage, &prefix)
        .into_iter()
        .filter(|k| !k.contains(&id))
        .collect();
    assert!(left.is_empty(), "the killed upload left {left:?}");
    let out = run(holdfast_for(&env, &garage).args(["verify", "--repo", "offsite", &id]));
    assert!(out.status.success(), "{}", printed(&out));
}
