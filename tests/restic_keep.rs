//! Keeping a restic-format repository: retention and `holdfast delete` forget an
//! archive's snapshots and free their data, `holdfast verify` checks an archive with
//! restic's check, and `holdfast get archives` shows what each run added.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::env::Env;
use common::restic::*;
use common::*;
use serde_json::Value;

/// Writes `bytes` random bytes to `/d/<name>` in `volume`.
fn random_file(volume: &str, name: &str, bytes: u32) {
    docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{volume}:/d"),
        "holdfast-test/busybox:1",
        "sh",
        "-c",
        &format!("head -c {bytes} /dev/urandom > /d/{name}"),
    ]);
}

/// The files of one folder of a restic repository (`snapshots`, `data/xx`, ...).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                found.push(p);
            }
        }
    }
    found.sort();
    found
}

/// `holdfast get archives --repo vault -o json`.
fn archives(env: &Env) -> Vec<Value> {
    let out =
        run(holdfast_in(env, None).args(["get", "archives", "--repo", "vault", "-o", "json"]));
    json(&out).as_array().cloned().unwrap_or_default()
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn retention_and_delete_forget_a_restic_archives_snapshots_and_free_their_data() {
    let _lock = docker_lock();
    let env = Env::new();
    let repo = local_vault(&env);
    let volume = FileVolume::new("hfresticprune", "kept");
    policy(
        &env,
        "web",
        &format!("volumes: [{}]", volume.0),
        "  retention: {keepLast: 1}\n",
    );
    random_file(&volume.0, "first", 300_000);
    let first = backup(&env, None, "web");
    let one_run = files(&repo.join("snapshots")).len();
    assert!(one_run >= 1, "no snapshot written");

    // The second run keeps only itself: the first archive's snapshots are forgotten, and
    // the data only it held is freed.
    random_file(&volume.0, "first", 300_000);
    let second = backup(&env, None, "web");
    let pruned = &second["pruned"];
    assert_eq!(pruned["forgotten"], serde_json::json!([first["archiveId"]]));
    assert!(
        pruned["freedBytes"].as_u64().unwrap() >= 250_000,
        "{pruned:#}"
    );
    assert_eq!(files(&repo.join("snapshots")).len(), one_run);
    let listed = archives(&env);
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0]["id"], second["archiveId"]);
    assert_eq!(listed[0]["health"], "Good", "{listed:#?}");

    // A third run, one small file new, adds little; the listing says how little.
    random_file(&volume.0, "small", 1_000);
    let third = backup(&env, None, "web");
    let listed = archives(&env);
    assert_eq!(listed.len(), 1);
    let added = listed[0]["addedBytes"].as_u64().unwrap();
    assert!(added < 100_000, "{listed:#?}");
    assert!(
        listed[0]["dedupRatio"].as_f64().unwrap() > 2.0,
        "{listed:#?}"
    );
    let out =
        run(holdfast_in(&env, None).args(["get", "archives", "--repo", "vault", "-o", "wide"]));
    let table = stdout(&out);
    assert!(
        table.contains("ADDED") && table.contains("DEDUP"),
        "{table}"
    );

    // Deleted by hand: nothing of it stays.
    let id = third["archiveId"].as_str().unwrap();
    let out = run(holdfast_in(&env, None).args(["delete", "--repo", "vault", "--yes", id]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("deleted {id}"))
            && stdout(&out).contains("the restic repository freed"),
        "{}",
        stdout(&out)
    );
    assert!(files(&repo.join("snapshots")).is_empty());
    assert!(archives(&env).is_empty());
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn verify_checks_a_restic_archive_and_finds_a_damaged_pack() {
    let _lock = docker_lock();
    let env = Env::new();
    let repo = local_vault(&env);
    let volume = FileVolume::new("hfresticverify", "kept");
    random_file(&volume.0, "big", 500_000);
    let outcome = backup_policy(&env, &volume.0);
    let id = outcome["archiveId"].as_str().unwrap().to_string();

    let out = run(holdfast_in(&env, None).args(["verify", "--repo", "vault", &id]));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(&format!("{id}: ok")),
        "{}",
        stdout(&out)
    );

    // One byte of the largest pack (the volume's data) flipped: same size, wrong hash.
    let pack = files(&repo.join("data"))
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&pack, bytes).unwrap();
    let pack_id = pack.file_name().unwrap().to_string_lossy().into_owned();

    // A sample of the data may miss it, all of it may not.
    let out = run(holdfast_in(&env, None).args([
        "verify",
        "--repo",
        "vault",
        "--read-data-subset",
        "100",
        &id,
    ]));
    assert!(!out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(&format!("{id}: CORRUPT")),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("restic check: ") && stderr(&out).contains(&pack_id[..8]),
        "{}",
        stderr(&out)
    );
    let listed = archives(&env);
    assert_eq!(listed[0]["health"], "Corrupt", "{listed:#?}");
    assert!(
        listed[0]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().contains(&pack_id[..8])),
        "{listed:#?}"
    );
}

/// The policy `web` writing `volume` into `vault`, without retention, run once.
fn backup_policy(env: &Env, volume: &str) -> Value {
    policy(env, "web", &format!("volumes: [{volume}]"), "");
    backup(env, None, "web")
}
