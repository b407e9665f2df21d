//! Several volumes of one run archived at once (`--archive-parallelism`): the same
//! artifacts, byte for byte and in the same manifest order, as one after the other, and
//! restorable to the same trees; and the sources really are read at the same time.

mod common;

use std::fs;
use std::process::Command;

use common::env::Env;
use common::*;
use serde_json::Value;

/// Volumes named `hfpar<pid>-<i>`, each with small files, a folder and a few MiB of random
/// data (enough that archiving one takes longer than starting the next); removed when
/// dropped, with the volumes restored from them.
struct Volumes(Vec<String>);

impl Volumes {
    fn new(n: usize) -> Volumes {
        let names: Vec<String> = (0..n)
            .map(|i| format!("hfpar{}-{i}", std::process::id()))
            .collect();
        let volumes = Volumes(names);
        volumes.remove();
        for (i, name) in volumes.0.iter().enumerate() {
            docker(&["volume", "create", name]);
            docker(&[
                "run",
                "--rm",
                "-v",
                &format!("{name}:/d"),
                "holdfast-test/busybox:1",
                "sh",
                "-c",
                &format!(
                    "set -e; mkdir -p /d/sub/empty; for f in $(seq 1 40); do echo {i}-$f > /d/sub/f$f; done; \
                     dd if=/dev/urandom of=/d/random bs=1M count=6 2>/dev/null; chown 123:45 /d/sub/f1; \
                     ln -s sub/f2 /d/link; touch -d '2021-03-04 05:06:07' /d/sub/f3"
                ),
            ]);
        }
        volumes
    }

    fn remove(&self) {
        for name in &self.0 {
            for v in [name.clone(), format!("{name}-p1"), format!("{name}-p4")] {
                let _ = run(Command::new("docker").args(["volume", "rm", "-f", &v]));
            }
        }
    }
}

impl Drop for Volumes {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The manifest of archive `id` of policy `par`.
fn manifest(env: &Env, id: &str) -> Value {
    let path = host_dir(&env.repository)
        .join("par")
        .join(id)
        .join("manifest.json");
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// What must not depend on the parallelism: each artifact's kind, source, path and bytes.
fn artifacts(manifest: &Value) -> Vec<String> {
    manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {} {} {} {} {}",
                a["kind"], a["source"], a["path"], a["size"], a["sha256"], a["sourceBytes"]
            )
        })
        .collect()
}

/// The log of the run that wrote archive `id`.
fn run_log(env: &Env, outcome: &Value) -> String {
    let run_id = outcome["runId"]
        .as_str()
        .expect("the outcome names its run");
    fs::read_to_string(env.state.join("logs").join(format!("{run_id}.log"))).unwrap()
}

/// The line numbers of the log lines saying `what` about `artifact` (a source's name).
fn lines_of(log: &str, what: &str, artifact: &str) -> Vec<usize> {
    log.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(what) && l.contains(artifact))
        .map(|(i, _)| i)
        .collect()
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn volumes_archived_at_once_give_the_same_archive_as_one_after_the_other() {
    if !docker_available() {
        return;
    }
    let volumes = Volumes::new(4);
    let env = Env::new();
    env.spec(
        "par",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: par}}\nspec:\n  schedule: '0 3 1 1 *'\n  targets: {{volumes: [{}]}}\n  include: {{recipe: false}}\n  output: {{format: tar.zst}}\n",
            volumes.0.join(", ")
        ),
    );
    let backup = |parallelism: &str| {
        let out = run(env.holdfast().args([
            "backup",
            "par",
            "-o",
            "json",
            "--archive-parallelism",
            parallelism,
        ]));
        let outcome: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
        assert_eq!(outcome["phase"], "Succeeded", "{outcome:#}{}", stderr(&out));
        outcome
    };
    let one = backup("1");
    let four = backup("4");
    let (id1, id4) = (
        one["archiveId"].as_str().unwrap(),
        four["archiveId"].as_str().unwrap(),
    );

    // The same artifacts, byte for byte, in the same (plan) order.
    let (m1, m4) = (manifest(&env, id1), manifest(&env, id4));
    let listed = artifacts(&m1);
    assert_eq!(listed.len(), 4, "{m1:#}");
    for (artifact, name) in listed.iter().zip(&volumes.0) {
        assert!(
            artifact.contains(&format!("volumes/{name}.tar.zst")),
            "{artifact}"
        );
    }
    assert_eq!(listed, artifacts(&m4));

    // Both verify, and restore to the same trees as the volumes hold.
    for id in [id1, id4] {
        let out = run(env.holdfast().args(["verify", id]));
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    }
    for (id, suffix) in [(id1, "p1"), (id4, "p4")] {
        let mut restore = env.holdfast();
        restore.args(["restore", "--from", id]);
        for name in &volumes.0 {
            restore.arg("--map").arg(format!("{name}={name}-{suffix}"));
        }
        let out = run(&mut restore);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    }
    let tree = |volume: &str| {
        let dir = docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", volume]);
        tree_listing(std::path::Path::new(dir.trim()))
    };
    for name in &volumes.0 {
        let original = tree(name);
        assert!(original.len() > 40, "{original:?}");
        assert_eq!(tree(&format!("{name}-p1")), original, "{name}");
        assert_eq!(tree(&format!("{name}-p4")), original, "{name}");
    }

    // One after the other: each source starts once the one before was archived.
    let log = run_log(&env, &one);
    assert!(!log.contains("archiving sources in parallel"), "{log}");
    for pair in volumes.0.windows(2) {
        let done = lines_of(&log, "archived", &format!("volumes/{}.", pair[0]));
        let next = lines_of(
            &log,
            "archiving from the host",
            &format!("volumes/{}", pair[1]),
        );
        assert!(done[0] < next[0], "{log}");
    }
    // At once: every source started before the first one was archived.
    let log = run_log(&env, &four);
    assert!(log.contains("archiving sources in parallel"), "{log}");
    let first_done = volumes
        .0
        .iter()
        .map(|n| lines_of(&log, "archived", &format!("volumes/{n}."))[0])
        .min()
        .unwrap();
    for name in &volumes.0 {
        let started = lines_of(&log, "archiving from the host", &format!("volumes/{name}"));
        assert!(started[0] < first_done, "{name} started late:\n{log}");
    }
}
