//! One specs folder for a fleet: `holdfast validate --host` and `holdfast plan` show what
//! one host runs, listing the objects whose hostSelector it does not match.

mod common;

use std::time::Duration;

use common::{holdfast, run, stderr};

const FLEET: &str = "apiVersion: holdfast.dev/v1alpha1
kind: Repository
metadata:
  name: nas-disk
spec:
  storage: {local: {path: /srv/nas-disk}}
  hostSelector: {matchLabels: {role: nas}}
---
apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata:
  name: photos
spec:
  schedule: '@daily'
  targets: {stacks: [photos]}
  output: {repository: nas-disk}
  hostSelector: {matchLabels: {role: nas}}
";

const EVERYWHERE: &str = "apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata:
  name: everywhere
spec:
  schedule: '@daily'
  targets: {stacks: [web]}
  output: {repository: nas-disk}
";

fn specs(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[test]
fn validate_as_a_host_lists_what_it_does_not_run() {
    let dir = specs(&[("fleet.yaml", FLEET)]);
    // Without --host every object is checked, whatever host it is for.
    let out = run(holdfast().arg("validate").arg(dir.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(holdfast()
        .args(["validate", "--host", "nas", "--host-labels", "role=nas"])
        .arg(dir.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("not selected"), "{}", stderr(&out));
    let out = run(holdfast()
        .args(["validate", "--host", "vps"])
        .arg(dir.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains(
            "not selected on vps: BackupPolicy/photos: hostSelector {role: nas} does not match \
             this host vps (labels: {holdfast.dev/hostname: vps})"
        ),
        "{text}"
    );
    assert!(
        text.contains("not selected on vps: Repository/nas-disk: "),
        "{text}"
    );
}

#[test]
fn what_a_host_runs_may_not_name_what_it_does_not_select() {
    let dir = specs(&[("fleet.yaml", FLEET), ("everywhere.yaml", EVERYWHERE)]);
    let out = run(holdfast()
        .args(["validate", "--host", "vps"])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = common::stdout(&out);
    assert!(
        text.contains(
            "everywhere.yaml:8:24: BackupPolicy/everywhere: spec.output.repository: Repository \
             `nas-disk` is not selected on this host: its hostSelector {role: nas}"
        ),
        "{text}"
    );
    let out = run(holdfast()
        .args(["validate", "--host", "nas", "--host-labels", "role=nas"])
        .arg(dir.path()));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn host_labels_are_checked_and_the_hostname_label_is_holdfasts() {
    let dir = specs(&[("fleet.yaml", FLEET)]);
    let out = run(holdfast()
        .args(["validate", "--host", "nas", "--host-labels"])
        .arg("holdfast.dev/hostname=other")
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("--host-labels"), "{text}");
    assert!(text.contains("set by holdfast"), "{text}");
    let out = run(holdfast()
        .args(["plan", "--specs"])
        .arg(dir.path())
        .env("HOLDFAST_HOST_LABELS", "role nas"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not `key=value`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plan_shows_only_what_this_host_runs() {
    let dir = specs(&[("fleet.yaml", FLEET)]);
    let state = tempfile::tempdir().unwrap();
    let out = run(holdfast()
        .args(["plan", "--host", "vps", "--specs"])
        .arg(dir.path())
        .arg("--state")
        .arg(state.path().join("state"))
        .arg("--repository")
        .arg(state.path().join("repository")));
    let text = stderr(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("not selected on vps: BackupPolicy/photos: hostSelector {role: nas}"),
        "{text}"
    );
    assert!(text.contains("nothing to plan"), "{text}");
    let out = run(holdfast()
        .args(["plan", "photos", "--host", "vps", "--specs"])
        .arg(dir.path())
        .arg("--state")
        .arg(state.path().join("state"))
        .arg("--repository")
        .arg(state.path().join("repository")));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "BackupPolicy `photos` is not selected on this host, so it does not run here: \
             hostSelector {role: nas} does not match this host vps"
        ),
        "{}",
        stderr(&out)
    );
}

/// The same spec files, as each host's checkout of one git repository: a policy for the
/// NAS, one for the VPS, both requested now.
fn checkout(top: &std::path::Path, host: &str, volume: &str) -> std::path::PathBuf {
    let dir = top.join(host);
    std::fs::create_dir_all(dir.join("specs")).unwrap();
    let policy = |name: &str, role: &str| {
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: {name}\n  \
             annotations: {{holdfast.dev/requested-at: '1'}}\nspec:\n  schedule: '0 3 1 1 *'\n  \
             targets: {{volumes: [{volume}]}}\n  include: {{recipe: false}}\n  \
             hostSelector: {{matchLabels: {{role: {role}}}}}\n"
        )
    };
    let text = format!("{}---\n{}", policy("photos", "nas"), policy("web", "vps"));
    std::fs::write(dir.join("specs/fleet.yaml"), text).unwrap();
    dir
}

/// `(status, reason, message)` of the Ready condition of `name` in a status file's documents.
fn ready(statuses: &[serde_json::Value], name: &str) -> Option<(String, String, String)> {
    let doc = statuses
        .iter()
        .find(|d| d["metadata"]["name"].as_str() == Some(name))?;
    let ready = doc["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?;
    let text = |k: &str| ready[k].as_str().unwrap_or_default().to_string();
    Some((text("status"), text("reason"), text("message")))
}

/// A checkout of the specs for `host` under `top`, and its daemon on the shared
/// `repository`, labelled `role=<host>`.
fn start_host(
    top: &std::path::Path,
    repository: &std::path::Path,
    host: &str,
    volume: &str,
) -> (std::path::PathBuf, common::daemon::Daemon) {
    let dir = checkout(top, host, volume);
    let role = format!("role={host}");
    let daemon = common::daemon::Daemon::start_on(
        &dir,
        repository,
        &["--host", host, "--host-labels", &role],
    );
    (dir, daemon)
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn two_hosts_on_one_specs_repository_each_run_only_what_selects_them() {
    use common::daemon::{Daemon, wait_for};
    if !common::docker_available() {
        return;
    }
    let volume = common::FileVolume::new("hffleet", "fleet");
    let top = tempfile::tempdir().unwrap();
    let repository = top.path().join("repository");
    let [(nas_dir, mut nas), (vps_dir, mut vps)] =
        ["nas", "vps"].map(|host| start_host(top.path(), &repository, host, &volume.0));
    for (dir, mine, theirs, host) in [
        (&nas_dir, "photos", "web", "nas"),
        (&vps_dir, "web", "photos", "vps"),
    ] {
        let statuses = wait_for(
            &dir.join("specs/fleet.status.yaml"),
            Duration::from_secs(60),
            &format!("{mine} on {host}"),
            |s| {
                ready(s, mine).is_some_and(|(v, r, _)| v == "True" && r == "Succeeded")
                    && ready(s, theirs).is_some()
            },
        );
        let (value, reason, message) = ready(&statuses, theirs).unwrap();
        assert_eq!((value.as_str(), reason.as_str()), ("True", "NotSelected"));
        let other = if host == "nas" { "vps" } else { "nas" };
        assert_eq!(
            message,
            format!(
                "hostSelector {{role: {other}}} does not match this host {host} \
                 (labels: {{holdfast.dev/hostname: {host}, role: {host}}})"
            )
        );
        let theirs_doc = statuses
            .iter()
            .find(|d| d["metadata"]["name"].as_str() == Some(theirs))
            .unwrap();
        assert!(theirs_doc["status"]["lastRun"].is_null(), "{theirs_doc}");
        // Only its own policy's archives are in its folder of the repository.
        let groups: Vec<String> = std::fs::read_dir(repository.join(host))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert_eq!(groups, [mine], "{host}");
        // No per-object series of the other host's policy: nothing to call late or failing.
        let metrics = common::http::get(&Daemon::api_address(dir), "/metrics").text();
        assert!(
            metrics.contains(&format!(
                "holdfast_last_success_timestamp_seconds{{kind=\"BackupPolicy\",name=\"{mine}\"}}"
            )),
            "{metrics}"
        );
        assert!(
            !metrics.contains(&format!("name=\"{theirs}\"")),
            "{metrics}"
        );
    }
    for daemon in [&mut nas, &mut vps] {
        assert!(
            daemon.child.try_wait().unwrap().is_none(),
            "a daemon exited"
        );
    }
}

#[test]
fn the_configuration_file_gives_the_host_labels() {
    let dir = specs(&[(
        "fleet.yaml",
        FLEET.split("---").next().unwrap(), // the NAS's Repository only
    )]);
    let etc = tempfile::tempdir().unwrap();
    let config = etc.path().join("holdfast.yaml");
    std::fs::write(&config, "host: nas\nhostLabels: role=nas\n").unwrap();
    let plan = |config_file: &std::path::Path| {
        let state = etc.path().join("state");
        run(holdfast()
            .arg("--config")
            .arg(config_file)
            .args(["plan", "--specs"])
            .arg(dir.path())
            .arg("--state")
            .arg(&state)
            .arg("--repository")
            .arg(etc.path().join("repository")))
    };
    let out = plan(&config);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("not selected"), "{}", stderr(&out));
    std::fs::write(&config, "host: nas\n").unwrap();
    let out = plan(&config);
    assert!(
        stderr(&out).contains("not selected on nas: Repository/nas-disk"),
        "{}",
        stderr(&out)
    );
}

/// `holdfast get hosts -o json` on `repository` as `host` sees it.
fn get_hosts(
    top: &std::path::Path,
    repository: &std::path::Path,
    host: &str,
) -> Vec<serde_json::Value> {
    let out = run(holdfast()
        .env("HOLDFAST_SPECS", top.join(host).join("specs"))
        .env("HOLDFAST_STATE", top.join(host).join("state"))
        .env("HOLDFAST_REPOSITORY", repository)
        .env("HOLDFAST_HOST", host)
        .args(["get", "hosts", "-o", "json"]));
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `(host, status, [object names])` of each row.
fn fleet(rows: &[serde_json::Value]) -> Vec<(String, String, Vec<String>)> {
    rows.iter()
        .map(|r| {
            let names = r["summary"]["objects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["name"].as_str().unwrap().to_string())
                .collect();
            (
                r["host"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
                names,
            )
        })
        .collect()
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn every_host_sees_the_fleet_in_the_shared_repository_and_a_silent_one_goes_stale() {
    use common::daemon::Daemon;
    if !common::docker_available() {
        return;
    }
    let volume = common::FileVolume::new("hffleetview", "fleetview");
    let top = tempfile::tempdir().unwrap();
    let repository = top.path().join("repository");
    let [(_nas_dir, mut nas), (vps_dir, mut vps)] =
        ["nas", "vps"].map(|host| start_host(top.path(), &repository, host, &volume.0));
    // Each daemon publishes its summary once its run succeeded (at most 10 s after the
    // previous one); either host reads both.
    let want = |status: &str| {
        vec![
            (
                "nas".to_string(),
                status.to_string(),
                vec!["photos".to_string()],
            ),
            (
                "vps".to_string(),
                status.to_string(),
                vec!["web".to_string()],
            ),
        ]
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let rows = get_hosts(top.path(), &repository, "nas");
        let succeeded = rows.iter().all(|r| {
            r["summary"]["objects"][0]["lastRunPhase"] == "Succeeded"
                && r["summary"]["objects"][0]["ready"] == true
        });
        if fleet(&rows) == want("ok") && succeeded {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fleet never showed both hosts' runs: {rows:#?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        fleet(&get_hosts(top.path(), &repository, "vps")),
        want("ok")
    );
    let rows = get_hosts(top.path(), &repository, "vps");
    assert_eq!(rows[0]["summary"]["labels"]["role"], "nas", "{rows:#?}");
    assert_eq!(rows[0]["objects"], 1);
    assert_eq!(rows[0]["failing"], 0);
    let api = common::http::get(&Daemon::api_address(&vps_dir), "/api/v1/hosts");
    assert_eq!(api.status, 200, "{}", api.text());
    let hosts = api.json()["hosts"].as_array().unwrap().clone();
    assert_eq!(fleet(&hosts), want("ok"));

    // The NAS stops; its last summary, rewritten as two years old (its schedule runs
    // yearly), is stale to the CLI and to the other daemon's API.
    nas.signal("TERM");
    assert_eq!(nas.wait(Duration::from_secs(30)), Some(0));
    let file = repository.join("nas/.holdfast/summary.json");
    let mut summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let old = chrono::Utc::now() - chrono::Duration::days(730);
    summary["writtenAt"] = old.to_rfc3339().into();
    std::fs::write(&file, summary.to_string()).unwrap();
    let rows = fleet(&get_hosts(top.path(), &repository, "vps"));
    assert_eq!(
        (rows[0].1.as_str(), rows[1].1.as_str()),
        ("stale", "ok"),
        "{rows:?}"
    );
    let api = common::http::get(&Daemon::api_address(&vps_dir), "/api/v1/hosts").json();
    assert_eq!(fleet(api["hosts"].as_array().unwrap()), rows);
    assert!(
        vps.child.try_wait().unwrap().is_none(),
        "the vps daemon exited"
    );
}
