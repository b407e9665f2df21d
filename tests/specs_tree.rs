//! The specs folder as tools and people handle it while the daemon runs: moved away for
//! a second, emptied and filled again, swapped git-sync style, files rewritten in place,
//! folder links leading out of it. The real binary, real files, the real engine.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::daemon::*;
use common::*;
use serde_json::Value;

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn ready(status: &[Value]) -> Option<String> {
    status
        .first()
        .and_then(|d| condition(d, "Ready"))
        .and_then(|c| c["status"].as_str())
        .map(str::to_string)
}

/// A policy that never comes due during a test, on a stack that need not exist.
fn policy(name: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: {name}\nspec:\n  schedule: '0 3 1 1 *'\n  targets: {{stacks: [nothing-{name}]}}\n"
    )
}

/// A spec that fails validation: the schedule is missing.
fn broken(name: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: {name}\nspec:\n  targets: {{stacks: [nothing]}}\n"
    )
}

fn archive_spec(name: &str, volume: &str, extra: &str) -> String {
    format!(
        "apiVersion: holdfast.dev/v1alpha1\nkind: Archive\nmetadata:\n  name: {name}\nspec:\n  targets: {{volumes: [{volume}]}}\n  include: {{recipe: false}}\n{extra}"
    )
}

fn archives_of(dir: &Path, group: &str) -> usize {
    fs::read_dir(host_dir(&dir.join("repository")).join(group)).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| !e.file_name().to_string_lossy().contains('.'))
        })
        .count()
    })
}

fn log_of(dir: &Path) -> String {
    fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
}

/// Waits until the daemon's log, past `from` bytes, contains `text`.
fn wait_for_log(dir: &Path, from: usize, text: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let log = log_of(dir);
        if log.get(from..).is_some_and(|l| l.contains(text)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the log never said {text:?} within {limit:?}:\n{}",
            log.get(from..).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_specs_folder_gone_for_a_second_or_a_file_rewritten_in_place_deletes_nothing() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let project = format!("hftree{}", std::process::id());
    let stack = ComposeStack::up("demo", &project);
    stack.wait_healthy();
    let volume = stack.volume("web-data");
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    fs::create_dir(&specs).unwrap();
    let spec = specs.join("drop.yaml");
    let text = archive_spec("drop", &volume, "  deletionPolicy: Delete\n");
    fs::write(&spec, &text).unwrap();
    let status = specs.join("drop.status.yaml");
    let _daemon = Daemon::start(dir.path(), &[]);
    wait_for(&status, Duration::from_secs(60), "the archive runs", |s| {
        s.first()
            .is_some_and(|d| d["status"]["lastRun"]["phase"] == "Succeeded")
    });
    assert_eq!(archives_of(dir.path(), "drop"), 1);

    // The folder is moved away for a second and back.
    let moved = dir.path().join("specs.moved");
    fs::rename(&specs, &moved).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !specs.exists(),
        "nothing may make the specs folder again while it is away"
    );
    fs::rename(&moved, &specs).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        archives_of(dir.path(), "drop"),
        1,
        "the archive was deleted:\n{}",
        log_of(dir.path())
    );
    let s = statuses(&status);
    assert_eq!(ready(&s).as_deref(), Some("True"), "{s:?}");
    assert_eq!(s[0]["status"]["lastRun"]["phase"], "Succeeded");
    assert_eq!(s[0]["status"]["archives"]["count"], 1, "{s:?}");

    // The file is truncated, then written again in place a moment later.
    let from = log_of(dir.path()).len();
    let file = fs::File::create(&spec).unwrap();
    let truncated = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    use std::io::Write;
    (&file).write_all(text.as_bytes()).unwrap();
    drop(file);
    // Meanwhile and after, the object never leaves its status file.
    while truncated.elapsed() < Duration::from_secs(4) {
        let s = statuses(&status);
        assert!(
            s.first().is_some_and(|d| d["metadata"]["name"] == "drop"),
            "the object was dropped: {s:?}\n{}",
            log_of(dir.path())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = log_of(dir.path());
    assert!(!log[from..].contains("objects=0"), "{}", &log[from..]);
    assert_eq!(archives_of(dir.path(), "drop"), 1);

    // A removal that lasts is still carried out.
    fs::remove_file(&spec).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while archives_of(dir.path(), "drop") != 0 {
        assert!(
            Instant::now() < deadline,
            "deletionPolicy Delete did not delete"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `path`'s first status says Ready `want`.
fn wait_ready(path: &Path, want: &str, limit: Duration, what: &str) -> Vec<Value> {
    wait_for(path, limit, what, |s| ready(s).as_deref() == Some(want))
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_folder_made_again_is_watched_and_gets_every_status_file() {
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    fs::create_dir_all(specs.join("apps")).unwrap();
    fs::write(specs.join("web.yaml"), policy("web")).unwrap();
    fs::write(specs.join("apps/db.yaml"), policy("db")).unwrap();
    let _daemon = Daemon::start(dir.path(), &["--resync", "60s"]);
    wait_ready(
        &specs.join("web.status.yaml"),
        "True",
        Duration::from_secs(20),
        "first status",
    );
    wait_ready(
        &specs.join("apps/db.status.yaml"),
        "True",
        Duration::from_secs(5),
        "db",
    );

    // `rm -rf specs; mkdir specs; cp ...`: the same specs, a new folder.
    fs::remove_dir_all(&specs).unwrap();
    fs::create_dir_all(specs.join("apps")).unwrap();
    fs::write(specs.join("web.yaml"), policy("web")).unwrap();
    fs::write(specs.join("apps/db.yaml"), policy("db")).unwrap();
    wait_ready(
        &specs.join("web.status.yaml"),
        "True",
        Duration::from_secs(5),
        "web in the new folder",
    );
    wait_ready(
        &specs.join("apps/db.status.yaml"),
        "True",
        Duration::from_secs(5),
        "db in the new folder",
    );

    // Edits in the new folder are seen at once, not at the resync.
    fs::write(specs.join("broken.yaml"), broken("bad")).unwrap();
    wait_ready(
        &specs.join("broken.status.yaml"),
        "False",
        Duration::from_secs(5),
        "broken spec",
    );

    // A folder moved out of the tree takes its policy away at once.
    let from = log_of(dir.path()).len();
    fs::rename(specs.join("apps"), dir.path().join("apps.out")).unwrap();
    wait_for_log(
        dir.path(),
        from,
        "files=2 objects=2",
        Duration::from_secs(5),
    );
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_swapped_symlink_is_followed_and_gets_every_status_file() {
    let dir = tempfile::tempdir().unwrap();
    for tree in ["wt-a", "wt-b"] {
        let tree = dir.path().join(tree);
        fs::create_dir(&tree).unwrap();
        fs::write(tree.join("web.yaml"), policy("web")).unwrap();
    }
    // `--specs` is the link, as with git-sync.
    let specs = dir.path().join("specs");
    std::os::unix::fs::symlink("wt-a", &specs).unwrap();
    let _daemon = Daemon::start(dir.path(), &["--resync", "60s"]);
    wait_ready(
        &dir.path().join("wt-a/web.status.yaml"),
        "True",
        Duration::from_secs(20),
        "first status",
    );

    // `ln -s wt-b tmp && mv -T tmp specs`
    let tmp = dir.path().join("tmp");
    std::os::unix::fs::symlink("wt-b", &tmp).unwrap();
    fs::rename(&tmp, &specs).unwrap();
    let wt_b = dir.path().join("wt-b");
    wait_ready(
        &wt_b.join("web.status.yaml"),
        "True",
        Duration::from_secs(5),
        "status in the new tree",
    );
    fs::write(wt_b.join("broken.yaml"), broken("bad")).unwrap();
    let s = wait_ready(
        &wt_b.join("broken.status.yaml"),
        "False",
        Duration::from_secs(5),
        "broken spec after the swap",
    );
    assert!(
        s[0]["status"]["errors"].to_string().contains("schedule"),
        "{s:?}"
    );
}

/// A folder with one valid spec, outside the specs folder.
fn outside_folder(dir: &Path) -> PathBuf {
    let outside = dir.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("etc.yaml"), policy("etc")).unwrap();
    outside
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn folder_links_out_of_the_specs_tree_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    fs::create_dir(&specs).unwrap();
    fs::write(specs.join("web.yaml"), policy("web")).unwrap();
    let outside = outside_folder(dir.path());
    std::os::unix::fs::symlink(&outside, specs.join("etclink")).unwrap();

    // validate does not read it, and says why.
    let out = run(holdfast().arg("validate").arg(&specs));
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("1 file, 1 object"), "{err}");
    assert!(
        err.contains("warning: ") && err.contains("etclink") && err.contains("outside"),
        "{err}"
    );

    // The daemon neither loads it nor writes a status file there.
    let _daemon = Daemon::start(dir.path(), &[]);
    wait_ready(
        &specs.join("web.status.yaml"),
        "True",
        Duration::from_secs(20),
        "web",
    );
    std::thread::sleep(Duration::from_secs(2));
    let written: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let log = log_of(dir.path());
    assert!(log.contains("etclink"), "{log}");
    assert!(log.contains("files=1 objects=1"), "{log}");
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn writes_under_a_hidden_folder_delay_neither_a_request_nor_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    fs::create_dir_all(specs.join(".git/objects")).unwrap();
    let spec = specs.join("web.yaml");
    let status = specs.join("web.status.yaml");
    fs::write(&spec, policy("web")).unwrap();
    let mut daemon = Daemon::start(dir.path(), &[]);
    wait_ready(&status, "True", Duration::from_secs(20), "first status");

    // A tool writes under specs/.git every 50 ms, all along.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let git = specs.join(".git/objects");
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                fs::write(git.join(format!("{}", n % 20)), n.to_string()).unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(3));

    let asked = Instant::now();
    fs::write(
        &spec,
        policy("web").replace(
            "metadata:\n",
            "metadata:\n  annotations: {holdfast.dev/requested-at: 'now'}\n",
        ),
    )
    .unwrap();
    wait_for(
        &status,
        Duration::from_secs(10),
        "the request is handled",
        |s| {
            s.first()
                .is_some_and(|d| d["status"]["lastHandledRequestedAt"] == "now")
        },
    );
    let handled = asked.elapsed();
    assert!(
        handled < Duration::from_millis(2500),
        "the request took {handled:?}"
    );

    let signalled = Instant::now();
    daemon.signal("TERM");
    daemon.wait(Duration::from_secs(20));
    let stopped = signalled.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        stopped < Duration::from_secs(3),
        "the stop took {stopped:?}"
    );
}
