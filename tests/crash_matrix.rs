//! The crash matrix: holdfast killed with SIGKILL at every crash point (`src/fault.rs`),
//! against the real engine, then started again; what the next start makes of it must keep
//! the promise that nothing is lost and nothing is left stopped.
//!
//! Each area shares one setup (containers, volumes, an archive) and runs its table of
//! points: the command that reaches the point, with `HOLDFAST_FAULT` set, must die by
//! SIGKILL (a point never reached fails the test); then the daemon starts once on the same
//! state and repository, and the invariants are checked:
//!
//! - every container runs, or does not, exactly as before the command;
//! - no `.partial` or `.deleting` folder is left or listed; every archive folder has its
//!   manifest, is listed, and verifies; every listed archive exists;
//! - a volume restored in place holds its old content or the archived one, never a mix;
//!   a new volume is absent, empty or complete;
//! - the run history says the killed run was Interrupted.

mod common;

/// Without the crash points the matrix cannot run, and must not pass as if it had.
#[cfg(not(feature = "fault-injection"))]
#[test]
fn crash_matrix_needs_the_fault_injection_feature() {
    panic!(
        "the crash matrix needs a build with crash points: \
         run `cargo test --features fault-injection` (as `make test` does)"
    );
}

#[cfg(feature = "fault-injection")]
mod matrix {
    use std::collections::{BTreeMap, BTreeSet};
    use std::fs;
    use std::io::{Read, Write};
    use std::os::unix::process::ExitStatusExt;
    use std::path::PathBuf;
    use std::process::{Command, Output, Stdio};
    use std::time::{Duration, Instant};

    use super::common::env::Env;
    use super::common::*;
    use serde_json::Value;

    /// One row of an area's table: which point, at which hit, in which setting.
    struct Case {
        point: &'static str,
        after: u32,
        /// Which command of the area reaches the point (the area's own names).
        scenario: &'static str,
    }

    const fn case(point: &'static str, after: u32, scenario: &'static str) -> Case {
        Case {
            point,
            after,
            scenario,
        }
    }

    const BACKUP: &[Case] = &[
        case("backup.after-dump", 1, "stack"),
        case("backup.after-journal", 1, "stack"),
        case("backup.after-stop", 1, "stack"),
        case("backup.after-stop", 2, "stack"),
        case("backup.after-stop", 1, "container"),
        case("backup.mid-archive", 3, "stack"),
        case("backup.before-start", 1, "stack"),
        case("backup.after-start", 1, "stack"),
        case("backup.before-manifest", 1, "stack"),
        case("backup.after-manifest", 1, "stack"),
        case("backup.before-rename", 1, "stack"),
        case("backup.after-rename", 1, "stack"),
    ];

    const DELETION_AND_VERIFY: &[Case] = &[
        case("prune.after-mark", 1, "delete"),
        case("prune.after-rename", 1, "delete"),
        case("prune.before-forget", 1, "delete"),
        case("verify.mid-read", 1, "verify"),
    ];

    const RESTORE: &[Case] = &[
        case("restore.after-stop", 1, "in-place"),
        case("restore.mid-extract", 3, "in-place"),
        case("restore.before-swap", 1, "in-place"),
        case("restore.after-swap", 1, "in-place"),
        case("restore.before-start", 1, "in-place"),
        case("restore.new-volume.before-create", 1, "new-volume"),
        case("restore.new-volume.after-create", 1, "new-volume"),
        case("restore.new-volume.mid-extract", 3, "new-volume"),
        case("restore.before-swap", 1, "new-volume"),
        case("restore.after-swap", 1, "new-volume"),
    ];

    /// The tables together cover every crash point the code has.
    #[test]
    fn every_crash_point_is_in_the_matrix() {
        let covered: BTreeSet<&str> = BACKUP
            .iter()
            .chain(DELETION_AND_VERIFY)
            .chain(RESTORE)
            .map(|c| c.point)
            .collect();
        let all: BTreeSet<&str> = holdfast::fault::POINTS.iter().copied().collect();
        assert_eq!(covered, all);
    }

    /// Runs `cmd` armed with the case's point; asserts it died there by SIGKILL.
    fn kill_at(mut cmd: Command, case: &Case) -> Output {
        let out = run(cmd
            .env("HOLDFAST_FAULT", case.point)
            .env("HOLDFAST_FAULT_AFTER", case.after.to_string()));
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "{} (hit {}, {}): the command was not killed there ({:?}), so the point was \
             never reached:\n{}\n{}",
            case.point,
            case.after,
            case.scenario,
            out.status,
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(&format!("fault injection: killing at {}", case.point)),
            "{}",
            stderr(&out)
        );
        out
    }

    /// One HTTP/1.0 GET; the body as JSON.
    fn get_json(addr: &str, path: &str) -> Value {
        let body = get_text(addr, path);
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"))
    }

    /// One HTTP/1.0 GET; the body.
    fn get_text(addr: &str, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        let (_, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        body.to_string()
    }

    /// Starts the daemon once on the env's state and repository (with no specs, so it
    /// runs nothing of its own): its start-up recovery is what a crash is followed by.
    /// Returns the run history it serves.
    fn recover(env: &Env) -> Vec<Value> {
        let specs = env.dir.path().join("no-specs");
        fs::create_dir_all(&specs).unwrap();
        let log_path = env.dir.path().join("recovery.log");
        let log = fs::File::create(&log_path).unwrap();
        let mut child = holdfast()
            .env("HOLDFAST_SPECS", &specs)
            .env("HOLDFAST_STATE", &env.state)
            .env("HOLDFAST_REPOSITORY", &env.repository)
            .args(["run", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let text = loop {
            let text = fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("holdfast is running") {
                break text;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("the daemon exited during recovery ({status}):\n{text}");
            }
            assert!(Instant::now() < deadline, "recovery never ended:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let marker = "listening on http://";
        let at = text.find(marker).expect("no API address") + marker.len();
        let addr = &text[at..at + text[at..].find('/').unwrap()];
        let runs = get_json(addr, "/api/v1/runs?limit=500")["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_metrics_count_what_is_on_disk(env, addr);
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "{status}: {}",
            fs::read_to_string(&log_path).unwrap_or_default()
        );
        runs
    }

    /// `holdfast_archives` counts, per group, the archives on disk: nothing staged or
    /// half-deleted. The daemon publishes it once its first pass after start-up is done.
    fn assert_metrics_count_what_is_on_disk(env: &Env, addr: &str) {
        let mut expected = BTreeMap::new();
        for group in groups(env) {
            let count = fs::read_dir(&group)
                .unwrap()
                .filter(|e| {
                    let name = e.as_ref().unwrap().file_name();
                    let name = name.to_string_lossy();
                    !name.ends_with(".partial") && !name.ends_with(".deleting")
                })
                .count();
            if count > 0 {
                let name = group.file_name().unwrap().to_string_lossy().into_owned();
                expected.insert(name, count.to_string());
            }
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = get_text(addr, "/metrics");
            let counted: BTreeMap<String, String> = text
                .lines()
                .filter_map(|l| l.strip_prefix("holdfast_archives{name=\""))
                .filter_map(|l| {
                    let (name, value) = l.split_once("\"} ")?;
                    Some((name.to_string(), value.trim().to_string()))
                })
                .filter(|(_, value)| value != "0")
                .collect();
            if counted == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "holdfast_archives {counted:?}, on disk {expected:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The killed command's run, the one run of `name` the history did not have before
    /// (`seen`), says it was interrupted. An archive the daemon adopted from the repository
    /// is listed as a run of its own, and is not the killed one.
    fn assert_interrupted(runs: &[Value], seen: &mut BTreeSet<String>, name: &str, case: &Case) {
        let new: Vec<&Value> = runs
            .iter()
            .filter(|r| r["name"] == name)
            .filter(|r| !r["id"].as_str().unwrap_or_default().starts_with("adopted-"))
            .filter(|r| !seen.contains(r["id"].as_str().unwrap_or_default()))
            .collect();
        assert_eq!(new.len(), 1, "{}: {new:#?}", case.point);
        let run = new[0];
        assert_eq!(run["phase"], "Failed", "{}: {run:#}", case.point);
        assert!(
            run["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("Interrupted")),
            "{}: {run:#}",
            case.point
        );
        seen.extend(
            runs.iter()
                .filter_map(|r| r["id"].as_str().map(String::from)),
        );
    }

    /// Whether each container runs.
    fn running(containers: &[String]) -> BTreeMap<String, String> {
        containers
            .iter()
            .map(|c| {
                let state = docker(&["inspect", "-f", "{{.State.Running}}", c]);
                (c.clone(), state.trim().to_string())
            })
            .collect()
    }

    /// No staged or half-deleted archive; every archive folder has its manifest and is
    /// listed, every listed archive has its folder, and every archive verifies.
    /// The group folders in this host's folder of the repository; `.holdfast/` holds the
    /// host's records, not archives.
    fn groups(env: &Env) -> Vec<PathBuf> {
        fs::read_dir(host_dir(&env.repository))
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect()
    }

    fn assert_repository_whole(env: &Env, case: &Case) {
        let mut folders = BTreeSet::new();
        for group in groups(env) {
            for archive in fs::read_dir(&group).unwrap() {
                let archive = archive.unwrap().path();
                let name = archive.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    !name.ends_with(".partial") && !name.ends_with(".deleting"),
                    "{}: {name} was left behind",
                    case.point
                );
                assert!(
                    archive.join("manifest.json").is_file(),
                    "{}: {name} has no manifest",
                    case.point
                );
                folders.insert(name);
            }
        }
        let out = run(env.holdfast().args(["get", "archives", "-o", "json"]));
        assert!(out.status.success(), "{}", stderr(&out));
        let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        let ids: BTreeSet<String> = listed
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, folders, "{}: listed and on disk differ", case.point);
        for e in &listed {
            assert_eq!(e["health"], "Good", "{}: {e:#}", case.point);
        }
        if !ids.is_empty() {
            let out = run(env.holdfast().arg("verify").args(&ids));
            assert!(
                out.status.success(),
                "{}: {}{}",
                case.point,
                stdout(&out),
                stderr(&out)
            );
        }
    }

    /// The runs the state database holds as still running.
    fn runs_running(env: &Env) -> Vec<String> {
        let state = holdfast::state::StateDb::open_reader(&env.state).unwrap();
        let filter = holdfast::state::RunFilter {
            kind: None,
            name: None,
            phase: Some(holdfast::spec::common::Phase::Running),
            before_run: None,
            before_time: None,
            limit: 1000,
        };
        let runs = state.runs_filtered(&filter).unwrap().unwrap_or_default();
        runs.into_iter().map(|r| r.id).collect()
    }

    /// After the same command ran again: the run it killed is recorded as interrupted,
    /// and nothing staged or half-deleted is left on disk.
    fn assert_repaired_by_the_next_command(env: &Env, killed: &[String], case: &Case) {
        assert_eq!(killed.len(), 1, "{}: {killed:?}", case.point);
        let state = holdfast::state::StateDb::open_reader(&env.state).unwrap();
        let run = state.run(&killed[0]).unwrap().unwrap();
        assert_eq!(
            run.phase,
            holdfast::spec::common::Phase::Failed,
            "{}: {run:?}",
            case.point
        );
        assert!(
            run.error
                .as_deref()
                .is_some_and(|e| e.starts_with("Interrupted")),
            "{}: {run:?}",
            case.point
        );
        assert_repository_whole(env, case);
    }

    /// Removes containers and volumes when dropped, whatever the test did.
    struct Cleanup {
        containers: Vec<String>,
        volumes: Vec<String>,
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            for c in &self.containers {
                let _ = run(Command::new("docker").args(["rm", "-f", c]));
            }
            for v in &self.volumes {
                let _ = run(Command::new("docker").args(["volume", "rm", "-f", v]));
            }
        }
    }

    fn mountpoint(volume: &str) -> PathBuf {
        PathBuf::from(docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", volume]).trim())
    }

    /// What is in a volume's folder beside its data folder.
    fn beside_data(volume: &str) -> Vec<String> {
        let data = mountpoint(volume);
        let mut names: Vec<String> = fs::read_dir(data.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Replaces a volume's content with `files` (name, content), written from the host.
    fn fill(volume: &str, files: &[(&str, String)]) {
        let dir = mountpoint(volume);
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                fs::remove_dir_all(&path).unwrap();
            } else {
                fs::remove_file(&path).unwrap();
            }
        }
        for (name, content) in files {
            let path = dir.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, content).unwrap();
        }
    }

    /// Six small files: enough hits for a point inside a copy loop.
    fn content(tag: &str) -> Vec<(&'static str, String)> {
        ["a.txt", "b.txt", "c/d.txt", "c/e.txt", "f.bin", "g.txt"]
            .into_iter()
            .map(|name| (name, format!("{tag} {name}\n").repeat(200)))
            .collect()
    }

    fn policy(env: &Env, name: &str, spec: &str) {
        env.spec(
            name,
            &format!(
                "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: {name}}}\nspec:\n  schedule: '0 3 1 1 *'\n{spec}"
            ),
        );
    }

    /// Takes an archive with `policy`; returns its id.
    fn backup(env: &Env, policy: &str) -> String {
        crate::common::env::archive_of(env.holdfast().args(["backup", policy, "-o", "json"]))
    }

    /// Backups killed at each point: the stack's containers come back as they were (one
    /// stopped before stays stopped), and no half-written archive is ever seen.
    #[test]
    #[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
    fn backups_killed_at_each_point_leave_nothing_stopped_and_nothing_half_written() {
        if !docker_available() {
            return;
        }
        let tag = format!("hfcrash{}", std::process::id());
        let (app, web, idle) = (
            format!("{tag}_app_1"),
            format!("{tag}_web_1"),
            format!("{tag}_idle_1"),
        );
        let _cleanup = Cleanup {
            containers: vec![app.clone(), web.clone(), idle.clone()],
            volumes: vec![format!("{tag}_app"), format!("{tag}_web")],
        };
        let labels = |service: &str| {
            vec![
                "--label".to_string(),
                format!("com.docker.compose.project={tag}"),
                "--label".to_string(),
                format!("com.docker.compose.service={service}"),
            ]
        };
        let mut args: Vec<String> = ["run", "-d", "--name", &app].map(String::from).to_vec();
        args.extend(labels("app"));
        args.extend(
            [
                "-v",
                "/usr:/usr:ro",
                "-v",
                &format!("{tag}_app:/data"),
                "holdfast-test/dbbase:1",
                "sqlite-app",
            ]
            .map(String::from),
        );
        docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let mut args: Vec<String> = ["run", "-d", "--init", "--name", &web]
            .map(String::from)
            .to_vec();
        args.extend(labels("web"));
        args.extend(
            [
                "-v",
                &format!("{tag}_web:/data"),
                "holdfast-test/busybox:1",
                "sleep",
                "3600",
            ]
            .map(String::from),
        );
        docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
        // Stopped before any backup: no run may start it.
        let mut args: Vec<String> = ["run", "--name", &idle].map(String::from).to_vec();
        args.extend(labels("idle"));
        args.extend(["holdfast-test/busybox:1", "true"].map(String::from));
        docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
        fill(&format!("{tag}_web"), &content("web"));
        // The sqlite app creates its database as it starts.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !mountpoint(&format!("{tag}_app")).join("app.db").exists() {
            assert!(Instant::now() < deadline, "the sqlite app never started");
            std::thread::sleep(Duration::from_millis(200));
        }

        let env = Env::new();
        policy(
            &env,
            "stack",
            &format!(
                "  targets: {{stacks: [{tag}]}}\n  include: {{bindMounts: false}}\n  consistency: {{stop: stack, stopTimeout: 10s, waitHealthy: 10s}}\n  dumps: [{{service: app, engine: sqlite, databases: [/data/app.db]}}]\n"
            ),
        );
        policy(
            &env,
            "container",
            &format!(
                "  targets: {{containers: [{web}]}}\n  consistency: {{stop: container, stopTimeout: 10s}}\n"
            ),
        );
        let containers = vec![app.clone(), web.clone(), idle.clone()];
        let mut seen = BTreeSet::new();
        for case in BACKUP {
            let before = running(&containers);
            assert_eq!(before[&idle], "false");
            let mut cmd = env.holdfast();
            cmd.args(["backup", case.scenario, "-o", "json"]);
            kill_at(cmd, case);
            // Killed with containers down: only the start-up recovery brings them back.
            let down = matches!(
                case.point,
                "backup.after-stop"
                    | "backup.mid-archive"
                    | "backup.before-start"
                    | "backup.after-start"
            );
            assert_eq!(running(&containers) != before, down, "{}", case.point);
            let runs = recover(&env);
            assert_eq!(
                running(&containers),
                before,
                "{} (hit {}, {})",
                case.point,
                case.after,
                case.scenario
            );
            assert_repository_whole(&env, case);
            assert_interrupted(&runs, &mut seen, case.scenario, case);
        }
        // Started again by the same command instead of the daemon: a one-off backup
        // repairs what the crash left as the daemon does, then takes a whole archive.
        for case in BACKUP {
            let before = running(&containers);
            let mut cmd = env.holdfast();
            cmd.args(["backup", case.scenario, "-o", "json"]);
            kill_at(cmd, case);
            let killed = runs_running(&env);
            backup(&env, case.scenario);
            assert_eq!(running(&containers), before, "{} (again)", case.point);
            assert_repaired_by_the_next_command(&env, &killed, case);
        }
    }

    /// Deletions and verifications killed at each point: an archive being deleted is whole
    /// or gone once holdfast has started again, never half there, and the others verify.
    #[test]
    #[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
    fn deletions_and_verifications_killed_at_each_point_leave_whole_archives() {
        if !docker_available() {
            return;
        }
        let tag = format!("hfcrashd{}", std::process::id());
        let volumes = [format!("{tag}-a"), format!("{tag}-b")];
        let _cleanup = Cleanup {
            containers: Vec::new(),
            volumes: volumes.to_vec(),
        };
        for v in &volumes {
            docker(&["volume", "create", v]);
            fill(v, &content(v));
        }
        let env = Env::new();
        policy(
            &env,
            "vols",
            &format!("  targets: {{volumes: [{}, {}]}}\n", volumes[0], volumes[1]),
        );
        let kept = backup(&env, "vols");
        for case in DELETION_AND_VERIFY {
            let mut cmd = env.holdfast();
            let doomed = if case.scenario == "delete" {
                let doomed = backup(&env, "vols");
                cmd.args(["delete", &doomed, "--yes"]);
                Some(doomed)
            } else {
                cmd.args(["verify", &kept]);
                None
            };
            kill_at(cmd, case);
            recover(&env);
            assert_repository_whole(&env, case);
            let group = host_dir(&env.repository).join("vols");
            assert!(group.join(&kept).join("manifest.json").is_file());
            if let Some(doomed) = doomed {
                // The mark was durable before anything was touched: the deletion is
                // finished at the start, not left half done nor forgotten.
                assert!(
                    !group.join(&doomed).exists(),
                    "{}: {doomed} is still there",
                    case.point
                );
            }
        }
        // Killed again, and this time only the same command is run again: it finishes
        // (or does) the deletion, or the verification, and succeeds.
        for case in DELETION_AND_VERIFY {
            let mut cmd = env.holdfast();
            let args = if case.scenario == "delete" {
                vec!["delete".to_string(), backup(&env, "vols"), "--yes".into()]
            } else {
                vec!["verify".to_string(), kept.clone()]
            };
            cmd.args(&args);
            kill_at(cmd, case);
            let out = run(env.holdfast().args(&args));
            assert!(
                out.status.success(),
                "{} (again): {}{}",
                case.point,
                stdout(&out),
                stderr(&out)
            );
            if case.scenario == "delete" {
                let gone = !host_dir(&env.repository)
                    .join("vols")
                    .join(&args[1])
                    .exists();
                assert!(gone, "{}: {} is still there", case.point, args[1]);
            }
            assert_repository_whole(&env, case);
        }
    }

    /// Restores killed at each point: the container using the volume runs again, the
    /// volume holds its old content or the archived one (which one is known for each
    /// point), never a mix, and the same command run again succeeds.
    #[test]
    #[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
    fn restores_killed_at_each_point_leave_old_or_new_content_never_a_mix() {
        if !docker_available() {
            return;
        }
        let tag = format!("hfcrashr{}", std::process::id());
        let volume = tag.clone();
        let app = format!("{tag}-app");
        let targets: Vec<String> = (0..RESTORE.len())
            .map(|i| format!("{tag}-new{i}"))
            .collect();
        let gone = format!("{tag}-gone");
        let foreign = format!("{tag}-foreign");
        let mut all_volumes = targets.clone();
        all_volumes.push(volume.clone());
        all_volumes.push(gone.clone());
        all_volumes.push(foreign.clone());
        let _cleanup = Cleanup {
            containers: vec![app.clone()],
            volumes: all_volumes,
        };
        docker(&["volume", "create", &volume]);
        docker(&[
            "run",
            "-d",
            "--init",
            "--name",
            &app,
            "-v",
            &format!("{volume}:/data"),
            "holdfast-test/busybox:1",
            "sleep",
            "3600",
        ]);
        // Another holdfast (another state folder) on this Docker host, restoring into
        // a volume right now: its staging folder is not this one's to clean up.
        docker(&["volume", "create", &foreign]);
        let in_flight = mountpoint(&foreign).with_file_name("_data.holdfast-restore-elsewhere");
        fs::create_dir_all(&in_flight).unwrap();
        fs::write(in_flight.join("being-extracted"), "x").unwrap();
        fill(&volume, &content("archived"));
        let archived = tree_listing(&mountpoint(&volume));
        let env = Env::new();
        policy(
            &env,
            "vol",
            &format!("  targets: {{volumes: [{volume}]}}\n"),
        );
        let archive = backup(&env, "vol");
        let containers = vec![app.clone()];
        let mut seen = BTreeSet::new();
        for (i, case) in RESTORE.iter().enumerate() {
            // Old content: other files, and the same names with other bytes.
            let mut old = content("old");
            old.push(("only-old.txt", "old\n".into()));
            fill(&volume, &old);
            let before_listing = tree_listing(&mountpoint(&volume));
            let before = running(&containers);
            let in_place = case.scenario == "in-place";
            let restore_args: Vec<String> = if in_place {
                [
                    "restore", "-o", "json", "--from", &archive, "--mode", "InPlace",
                ]
                .map(String::from)
                .to_vec()
            } else {
                [
                    "restore",
                    "-o",
                    "json",
                    "--from",
                    &archive,
                    "--volume",
                    &volume,
                    "--map",
                    &format!("{volume}={}", targets[i]),
                ]
                .map(String::from)
                .to_vec()
            };
            let mut cmd = env.holdfast();
            cmd.args(&restore_args);
            kill_at(cmd, case);
            // In place, every point is reached with the container stopped.
            assert_eq!(running(&containers) != before, in_place, "{}", case.point);
            let runs = recover(&env);
            assert_eq!(running(&containers), before, "{}", case.point);
            assert_interrupted(&runs, &mut seen, "restore", case);
            assert_repository_whole(&env, case);

            let now = tree_listing(&mountpoint(&volume));
            if in_place {
                let swapped = matches!(case.point, "restore.after-swap" | "restore.before-start");
                let expected = if swapped { &archived } else { &before_listing };
                assert!(
                    now == archived || now == before_listing,
                    "{}: the volume holds a mix:\n{now:#?}",
                    case.point
                );
                assert_eq!(&now, expected, "{}", case.point);
                // The staging folder (new content, or the old content after the swap) is
                // gone with the start: no copy of a volume's data is left beside it.
                assert_eq!(beside_data(&volume), ["_data"], "{}", case.point);
                // The same command again succeeds, and leaves nothing beside the data.
                let out = run(env.holdfast().args(&restore_args));
                assert!(out.status.success(), "{}: {}", case.point, stderr(&out));
                let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
                seen.insert(outcome["runId"].as_str().unwrap().to_string());
                assert_eq!(tree_listing(&mountpoint(&volume)), archived);
                assert_eq!(beside_data(&volume), ["_data"], "{}", case.point);
                assert_eq!(running(&containers), before, "{}", case.point);

                // Killed again, and this time only the same command is run again.
                fill(&volume, &old);
                let mut cmd = env.holdfast();
                cmd.args(&restore_args);
                kill_at(cmd, case);
                let killed = runs_running(&env);
                let out = run(env.holdfast().args(&restore_args));
                assert!(out.status.success(), "{}: {}", case.point, stderr(&out));
                let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
                seen.insert(outcome["runId"].as_str().unwrap().to_string());
                seen.extend(killed.iter().cloned());
                assert_eq!(tree_listing(&mountpoint(&volume)), archived);
                assert_eq!(running(&containers), before, "{} (again)", case.point);
                assert_repaired_by_the_next_command(&env, &killed, case);
            } else {
                assert_eq!(now, before_listing, "{}: the source changed", case.point);
                let exists = run(Command::new("docker").args(["volume", "inspect", &targets[i]]))
                    .status
                    .success();
                let listing = if exists {
                    tree_listing(&mountpoint(&targets[i]))
                } else {
                    Vec::new()
                };
                assert!(
                    listing.is_empty() || listing == archived,
                    "{}: the new volume is half filled:\n{listing:#?}",
                    case.point
                );
                if exists {
                    assert_eq!(beside_data(&targets[i]), ["_data"], "{}", case.point);
                }
                // The same command again: an empty volume an interrupted restore of this
                // archive made is taken as its own; a complete one is refused as existing.
                let out = run(env.holdfast().args(&restore_args));
                let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
                seen.insert(outcome["runId"].as_str().unwrap().to_string());
                if listing.is_empty() {
                    assert!(
                        out.status.success(),
                        "{} (again): {outcome:#}\n{}",
                        case.point,
                        stderr(&out)
                    );
                    assert_eq!(outcome["report"]["volumes"][0]["created"], true);
                    assert_eq!(
                        beside_data(&targets[i]),
                        ["_data"],
                        "{} (again)",
                        case.point
                    );
                } else {
                    assert_eq!(out.status.code(), Some(1), "{}: {outcome:#}", case.point);
                }
                assert_eq!(tree_listing(&mountpoint(&targets[i])), archived);
            }
        }

        // On a new host the archived volume does not exist, and it comes back under its
        // own name, where the recipe looks for it. Killed after creating it, the same
        // command again fills that volume, not one with a fresh name beside it.
        docker(&["volume", "create", &gone]);
        fill(&gone, &content("gone"));
        let gone_listing = tree_listing(&mountpoint(&gone));
        policy(&env, "gone", &format!("  targets: {{volumes: [{gone}]}}\n"));
        let archive = backup(&env, "gone");
        docker(&["volume", "rm", &gone]);
        let args = ["restore", "-o", "json", "--from", &archive];
        let mut cmd = env.holdfast();
        cmd.args(args);
        let case = case("restore.new-volume.after-create", 1, "new-volume");
        kill_at(cmd, &case);
        let out = run(env.holdfast().args(args));
        let outcome: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(out.status.success(), "{outcome:#}\n{}", stderr(&out));
        assert_eq!(outcome["report"]["volumes"][0]["into"], gone.as_str());
        assert_eq!(tree_listing(&mountpoint(&gone)), gone_listing);
        assert!(
            in_flight.join("being-extracted").exists(),
            "a recovery removed another holdfast's restore in progress"
        );
    }
}
