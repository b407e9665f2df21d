//! Restic-format repositories: holdfast writes snapshots that Debian's `restic` lists,
//! checks and restores identically, later runs read only what changed, and holdfast
//! restores from them (new volumes and in place, with dump replay), on a local folder
//! and on Garage.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use common::env::Env;
use common::garage::Garage;
use common::restic::*;
use common::*;
use serde_json::Value;

/// A volume with what a restore must bring back exactly: nested folders, modes with
/// setuid and sticky bits, other owners, a symlink, a hard link, old mtimes, an empty
/// file and a larger one that spans several restic chunks.
fn rich_volume(prefix: &str) -> FileVolume {
    let volume = FileVolume::new(prefix, "first");
    docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/d", volume.0),
        "holdfast-test/busybox:1",
        "sh",
        "-c",
        "set -e; cd /d; mkdir -p a/b/c empty; echo nested > a/b/c/deep.txt; \
         echo secret > a/private; chmod 600 a/private; chown 1234:5678 a/private; \
         echo tool > a/tool; chmod 4755 a/tool; mkdir shared; chmod 1777 shared; \
         ln -s b/c/deep.txt a/link; ln a/b/c/deep.txt a/hard; : > empty/file; \
         dd if=/dev/urandom of=big bs=1M count=6 2>/dev/null; \
         touch -d '2001-02-03 04:05:06' a/b/c/deep.txt a/private a/b/c a/b; \
         chown -h 42:43 a/link",
    ]);
    volume
}

fn volume_dir(name: &str) -> PathBuf {
    PathBuf::from(docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", name]).trim())
}

/// A busybox file written into a volume.
fn write_into(volume: &str, script: &str) {
    docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/d"),
        "holdfast-test/busybox:1",
        "sh",
        "-c",
        script,
    ]);
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn restic_lists_checks_and_restores_what_holdfast_wrote_and_reruns_read_only_changes() {
    let _lock = docker_lock();
    let env = Env::new();
    let repo = env.dir.path().join("vault");
    restic_repository(&env, &local_storage(&repo));
    let volume = rich_volume("hfrestic");
    policy(&env, "rpol", &format!("volumes: [{}]", volume.0), "");

    let first = backup(&env, None, "rpol");
    let id = first["archiveId"].as_str().unwrap().to_string();
    assert_eq!(first["repository"], "vault", "{first:#}");
    // holdfast's manifest sits beside restic's folders and names the snapshot.
    let manifest: Value = serde_json::from_slice(
        &fs::read(repo.join(format!("holdfast/{HOST}/rpol/{id}/manifest.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["format"], "restic", "{manifest:#}");
    let snapshot = manifest["artifacts"][0]["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(repo.join("config").is_file() && repo.join("keys").is_dir());

    // holdfast lists the files of the volume, and brings back one folder of it.
    let out = run(holdfast_in(&env, None).args([
        "ls",
        "--repo",
        "vault",
        "-R",
        &id,
        &format!("volumes/{}/a", volume.0),
    ]));
    assert!(
        out.status.success() && stdout(&out).contains("deep.txt"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let picked = env.dir.path().join("picked");
    let out = run(holdfast_in(&env, None).args([
        "restore",
        "--repo",
        "vault",
        "--from",
        &id,
        "--volume",
        &volume.0,
        "--path",
        "a/b",
        "--to",
        picked.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(
        fs::read_to_string(picked.join("a/b/c/deep.txt")).unwrap(),
        "nested\n"
    );

    // Nothing changed: the second run stores next to nothing and reads no file again.
    let second = backup(&env, None, "rpol");
    let stored = second["storedBytes"].as_u64().unwrap();
    assert!(
        stored < 4096 && first["storedBytes"].as_u64().unwrap() > 6 << 20,
        "first {first:#}\nsecond {second:#}"
    );
    // One file changed: only it is stored again.
    write_into(&volume.0, "echo changed >> /d/a/b/c/deep.txt");
    let third = backup(&env, None, "rpol");
    assert!(
        third["storedBytes"].as_u64().unwrap() < 64 << 10,
        "{third:#}"
    );

    // restic sees three snapshots with holdfast's tags, the parent chain, and a sound
    // repository, data included.
    let repo_arg = repo.display().to_string();
    let out = restic(&env, &repo_arg, None, &["snapshots", "--json"]);
    let snaps: Value = serde_json::from_slice(&out.stdout).unwrap();
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), 3, "{snaps:#?}");
    let tags: Vec<&str> = snaps[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for wanted in [
        "holdfast".to_string(),
        "policy:rpol".to_string(),
        format!("archive:{id}"),
        format!("volume:{}", volume.0),
    ] {
        assert!(tags.contains(&wanted.as_str()), "{wanted} not in {tags:?}");
    }
    assert_eq!(snaps[0]["hostname"], HOST);
    assert_eq!(snaps[0]["paths"][0], format!("/volumes/{}", volume.0));
    assert_eq!(snaps[1]["parent"], snaps[0]["id"], "{snaps:#?}");
    restic(&env, &repo_arg, None, &["check", "--read-data"]);

    // restic restores the first snapshot: the volume as it was then, exactly.
    let target = env.dir.path().join("restic-restore");
    let source = volume_dir(&volume.0);
    write_into(&volume.0, "echo latest > /d/latest-only");
    let out = restic(
        &env,
        &repo_arg,
        None,
        &["restore", &snapshot, "--target", target.to_str().unwrap()],
    );
    let restored = target.join(format!("volumes/{}", volume.0));
    let mut expected = tree_listing(&source);
    expected.retain(|l| !l.starts_with("latest-only "));
    let wanted_deep = expected
        .iter()
        .position(|l| l.starts_with("a/b/c/deep.txt "))
        .unwrap();
    // The first snapshot has deep.txt (and its hard link) before the change.
    let listing = tree_listing(&restored);
    let differing: Vec<_> = listing
        .iter()
        .zip(&expected)
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        listing.len(),
        expected.len(),
        "{}\n{listing:#?}",
        stdout(&out)
    );
    assert!(
        differing
            .iter()
            .all(|(a, _)| a.starts_with("a/b/c/deep.txt ")
                || a.starts_with("a/hard ")
                || a.starts_with("a/b/c ")),
        "{differing:#?} (deep.txt at {wanted_deep})"
    );
    assert_eq!(
        fs::read_to_string(restored.join("a/b/c/deep.txt")).unwrap(),
        "nested\n"
    );

    // The latest snapshot, restored by restic, is the volume as the third run saw it.
    let target = env.dir.path().join("restic-latest");
    restic(
        &env,
        &repo_arg,
        None,
        &[
            "restore",
            "latest",
            "--tag",
            &format!("volume:{}", volume.0),
            "--target",
            target.to_str().unwrap(),
        ],
    );
    assert_eq!(
        tree_listing(&target.join(format!("volumes/{}", volume.0))),
        expected
    );
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn holdfast_restores_from_a_restic_repository_into_new_volumes_and_in_place() {
    let _lock = docker_lock();
    let env = Env::new();
    let repo = env.dir.path().join("vault");
    restic_repository(&env, &local_storage(&repo));
    restores_round_trip(&env, None, "hfresticr");
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_restic_repository_on_garage_backs_up_restores_and_reads_with_restic() {
    let _lock = docker_lock();
    let garage = Garage::start(1);
    let env = Env::new();
    restic_repository(&env, &s3_storage(&env, &garage));
    restores_round_trip(&env, Some(&garage), "hfresticg");
    let repo = format!("s3:{}/{}/restic", garage.endpoint(), garage.bucket());
    let out = restic(&env, &repo, Some(&garage), &["snapshots", "--json"]);
    let snaps: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps:#}");
    restic(&env, &repo, Some(&garage), &["check", "--read-data"]);
}

/// Two backups of a rich volume, then holdfast restores the first into a new volume and
/// the second in place, each identical to what it was.
fn restores_round_trip(env: &Env, garage: Option<&Garage>, prefix: &str) {
    let volume = rich_volume(prefix);
    policy(env, "rpol", &format!("volumes: [{}]", volume.0), "");
    let source = volume_dir(&volume.0);
    let at_first = tree_listing(&source);
    let first = backup(env, garage, "rpol");
    write_into(&volume.0, "echo more >> /d/a/private; rm /d/big");
    let at_second = tree_listing(&source);
    let second = backup(env, garage, "rpol");
    assert_ne!(at_first, at_second);

    // Into a new volume.
    let report = restore(
        env,
        garage,
        first["archiveId"].as_str().unwrap(),
        &["--volume", &volume.0],
    );
    let new = restored_volumes(&report).remove(0);
    let listing = tree_listing(&volume_dir(&new));
    let _ = run(Command::new("docker").args(["volume", "rm", "-f", &new]));
    assert_eq!(listing, at_first);

    // In place, over what changed since.
    write_into(&volume.0, "echo after > /d/after-second");
    restore(
        env,
        garage,
        second["archiveId"].as_str().unwrap(),
        &["--mode", "InPlace"],
    );
    assert_eq!(tree_listing(&source), at_second);
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_stack_with_dumps_goes_into_restic_and_comes_back_with_its_rows_and_recipe() {
    const PG: &str = "psql -X -q -v ON_ERROR_STOP=1 -U postgres";
    let _lock = docker_lock();
    let env = Env::new();
    let repo = env.dir.path().join("vault");
    restic_repository(&env, &local_storage(&repo));
    let project = format!("hfrs{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    let db = stack.container("db");
    sh_in(
        &db,
        &format!(
            "{PG} -c \"CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'one'), (2, 'two');\""
        ),
    );
    policy(
        &env,
        "stackpol",
        &format!("stacks: [{project}]"),
        "  consistency: {stop: stack}\n  dumps:\n    - {service: db, engine: postgres, password: {fromEnv: POSTGRES_PASSWORD}}\n",
    );

    let first = backup(&env, None, "stackpol");
    // The second run has a parent for every volume: the stack is down for the changes
    // only, which are none.
    let second = backup(&env, None, "stackpol");
    let downtime: f64 = second["downtime"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .fold(0.0, f64::max);
    let id = second["archiveId"].as_str().unwrap().to_string();
    let manifest: Value = serde_json::from_slice(
        &fs::read(repo.join(format!("holdfast/{HOST}/stackpol/{id}/manifest.json"))).unwrap(),
    )
    .unwrap();
    // The stack is down for the stop, the snapshots and the start (health checks
    // included); the snapshots of unchanged volumes take a fraction of a second.
    let archiving = manifest["timings"]["archive"].as_f64().unwrap();
    assert!(
        archiving < 2.0 && archiving < downtime,
        "{:#}",
        manifest["timings"]
    );
    let kinds: Vec<&str> = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"dump") && kinds.contains(&"recipe") && kinds.contains(&"volume"),
        "{manifest:#}"
    );
    assert!(
        manifest["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["snapshot"].as_str().is_some_and(|s| s.len() == 64)),
        "{manifest:#}"
    );
    assert!(first["storedBytes"].as_u64().unwrap() > second["storedBytes"].as_u64().unwrap());

    // restic sees the dump as a file holding the SQL, and the recipe's compose file.
    let repo_arg = repo.display().to_string();
    let out = restic(
        &env,
        &repo_arg,
        None,
        &["snapshots", "--json", "--tag", &format!("archive:{id}")],
    );
    let snaps: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (dump_id, dump_path) = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["paths"][0].as_str().unwrap()))
        .find(|(_, p)| p.starts_with("/dumps/"))
        .unwrap_or_else(|| panic!("{snaps:#}"));
    let out = restic(&env, &repo_arg, None, &["dump", dump_id, dump_path]);
    assert!(
        stdout(&out).contains("INSERT INTO") || stdout(&out).contains("COPY"),
        "{}",
        stdout(&out)
    );
    let recipe = restic(&env, &repo_arg, None, &["ls", "--tag", "recipe", "latest"]);
    assert!(
        stdout(&recipe).contains(&format!("/recipe/{project}/docker-compose.yml")),
        "{}",
        stdout(&recipe)
    );

    // Rows changed after the backup come back from the dump; the recipe lands in a folder.
    sh_in(
        &db,
        &format!("{PG} -c \"DELETE FROM items; INSERT INTO items VALUES (9, 'nine');\""),
    );
    restore(&env, None, &id, &["--dumps-only"]);
    let rows = sh_in(
        &db,
        &format!("{PG} -At -c 'SELECT id, name FROM items ORDER BY id'"),
    );
    assert_eq!(rows.trim(), "1|one\n2|two");

    // The stack's volumes into new ones beside the running stack, and its recipe.
    let recipe_dir = env.dir.path().join("recipe");
    let report = restore(
        &env,
        None,
        &id,
        &[
            "--stack",
            &project,
            "--recipe-to",
            recipe_dir.to_str().unwrap(),
        ],
    );
    for into in restored_volumes(&report) {
        let _ = run(Command::new("docker").args(["volume", "rm", "-f", &into]));
    }
    let compose = fs::read_to_string(recipe_dir.join("docker-compose.yml"))
        .or_else(|_| fs::read_to_string(recipe_dir.join(format!("{project}/docker-compose.yml"))))
        .unwrap_or_else(|e| panic!("{e}: {report:#}"));
    assert!(compose.contains("services"), "{compose}");
    stack.down();
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_restic_repository_on_sftp_backs_up_restores_and_reads_with_restic() {
    let _lock = docker_lock();
    let server = common::sftp::Sftp::start();
    let env = Env::new();
    let folder = server.root().join("vault");
    restic_repository(
        &env,
        &format!(
            "    sftp:
      host: {}
      port: {}
      user: {}
      path: {}
      privateKeyFile: {}
      knownHostsFile: {}
",
            server.host(),
            server.port(),
            server.user(),
            folder.display(),
            server.private_key().display(),
            server.known_hosts().display()
        ),
    );
    restores_round_trip(&env, None, "hfrestics");
    // The server's folder is a restic repository restic reads as it is.
    let repo = folder.display().to_string();
    let out = restic(&env, &repo, None, &["snapshots", "--json"]);
    let snaps: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps:#}");
    restic(&env, &repo, None, &["check", "--read-data"]);
}

/// A run killed after its snapshots and before its manifest leaves snapshots no archive
/// names: restic users would see them, retention would never delete them. The next run's
/// start forgets them.
#[test]
#[cfg(feature = "fault-injection")]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn snapshots_of_a_run_killed_before_its_manifest_are_forgotten_at_the_next_start() {
    let _lock = docker_lock();
    let env = Env::new();
    let repo = env.dir.path().join("vault");
    restic_repository(&env, &local_storage(&repo));
    let volume = FileVolume::new("hfresticc", "crash");
    policy(&env, "rpol", &format!("volumes: [{}]", volume.0), "");
    let out = run(holdfast_in(&env, None)
        .args(["backup", "rpol", "-o", "json"])
        .env("HOLDFAST_FAULT", "backup.before-manifest"));
    assert!(
        stderr(&out).contains("fault injection: killing at backup.before-manifest"),
        "{}",
        stderr(&out)
    );
    let repo_arg = repo.display().to_string();
    let listed = |env: &Env| -> Vec<Value> {
        let out = restic(env, &repo_arg, None, &["snapshots", "--json"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let orphans = listed(&env);
    assert_eq!(orphans.len(), 1, "{orphans:#?}");

    let out = run(holdfast_in(&env, None).args(["backup", "rpol", "-o", "json"]));
    let outcome = json(&out);
    assert_eq!(outcome["phase"], "Succeeded", "{}", stderr(&out));
    assert!(
        stderr(&out).contains("uncommitted archive"),
        "{}",
        stderr(&out)
    );
    let left = listed(&env);
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_ne!(left[0]["id"], orphans[0]["id"]);
    restic(&env, &repo_arg, None, &["check"]);
}

/// The daemon verifies a policy's archives in its restic repository on the policy's
/// verify schedule, though its catalog is of the default repository.
#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn the_daemon_verifies_archives_in_a_restic_repository_on_schedule() {
    let _lock = docker_lock();
    let env = Env::new();
    let repo = env.dir.path().join("vault");
    restic_repository(&env, &local_storage(&repo));
    let volume = FileVolume::new("hfresticv", "verify me");
    policy(
        &env,
        "rpol",
        &format!("volumes: [{}]", volume.0),
        "  verify: {schedule: '* * * * *'}\n",
    );
    let id = backup(&env, None, "rpol")["archiveId"]
        .as_str()
        .unwrap()
        .to_string();
    let record = repo.join(format!("holdfast/{HOST}/rpol/{id}/verification.json"));
    assert!(!record.exists());

    let mut daemon = holdfast_in(&env, None)
        .args(["run", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(env.dir.path().join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(100);
    while !record.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    let log = fs::read_to_string(env.dir.path().join("daemon.log")).unwrap_or_default();
    let text = fs::read_to_string(&record).unwrap_or_else(|e| panic!("{e}\n{log}"));
    let verification: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(verification["ok"], true, "{verification:#}\n{log}");
}

/// A wrong password fails the run before anything is stopped, says why, and leaves the
/// repository as it was.
#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_wrong_password_fails_the_run_before_anything_is_stopped() {
    let _lock = docker_lock();
    let env = Env::new();
    let repo = local_vault(&env);
    let app = Busybox::start("hfresticpw", "pw", QUITS_ON_TERM);
    policy(
        &env,
        "rpol",
        &format!("containers: [{}]", app.name),
        "  consistency: {stop: container}\n",
    );
    backup(&env, None, "rpol");
    let started = app.started_at();
    let snapshots = fs::read_dir(repo.join("snapshots")).unwrap().count();

    fs::write(env.dir.path().join("restic.password"), "not the password\n").unwrap();
    let out = run(holdfast_in(&env, None).args(["backup", "rpol", "-o", "json"]));
    let outcome = json(&out);
    assert_eq!(outcome["phase"], "Failed", "{outcome:#}");
    let errors = outcome["errors"].to_string();
    assert!(
        errors.contains("restic repository") && errors.contains("key"),
        "{errors}"
    );
    assert!(!errors.contains("not the password"), "{errors}");
    // Never stopped: the same start time, running.
    assert_eq!(app.state(), "running");
    assert_eq!(app.started_at(), started);
    assert_eq!(
        fs::read_dir(repo.join("snapshots")).unwrap().count(),
        snapshots
    );
}
