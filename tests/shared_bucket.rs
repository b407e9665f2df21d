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
        &garage.repository_spec("shared", "fleet/", &secret.display().to_string()),
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

/// Restores `volume` of archive `id` from the Repository `shared` into the new volume
/// `<volume>-<suffix>` with `cmd` (the binary as some host), and returns its `/file`; the
/// new volume is removed again.
fn restored_file(mut cmd: Command, id: &str, volume: &str, suffix: &str) -> String {
    let restored = format!("{volume}-{suffix}");
    let _ = run(Command::new("docker").args(["volume", "rm", "-f", &restored]));
    let out = run(cmd.args([
        "restore",
        "--repo",
        "shared",
        "--from",
        id,
        "--volume",
        volume,
        "--map",
        &format!("{volume}={restored}"),
    ]));
    let content = out.status.success().then(|| {
        docker(&[
            "run",
            "--rm",
            "-v",
            &format!("{restored}:/d"),
            "holdfast-test/busybox:1",
            "cat",
            "/d/file",
        ])
    });
    let _ = run(Command::new("docker").args(["volume", "rm", "-f", &restored]));
    content.unwrap_or_else(|| panic!("restore: {}\n{}", stdout(&out), stderr(&out)))
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
    assert_eq!(
        restored_file(
            as_host(&beta, &garage, "beta"),
            &first,
            &alpha_volume.0,
            "back"
        ),
        "from-alpha\n"
    );
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

/// The specs of a two-host fleet in one folder: the Repository `shared` on `garage`'s
/// bucket, for both hosts, and one policy per host keeping its newest archive there,
/// `photos` (of `nas_volume`) on the host labelled `role=nas` and `web` (of `vps_volume`)
/// on `role=vps`, each requested as its number of `requests` says.
fn fleet_specs(
    specs: &std::path::Path,
    garage: &Garage,
    nas_volume: &str,
    vps_volume: &str,
    requests: [u32; 2],
) {
    let secret = specs.join("shared.secret");
    fs::write(&secret, format!("{}\n", garage.secret())).unwrap();
    let repository = garage.repository_spec("shared", "fleet/", "shared.secret");
    let policy = |name: &str, role: &str, volume: &str, request: u32| {
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: {name}\n  \
             annotations: {{holdfast.dev/requested-at: '{request}'}}\nspec:\n  \
             schedule: '0 3 1 1 *'\n  targets: {{volumes: [{volume}]}}\n  include: {{recipe: false}}\n  \
             retention: {{keepLast: 1}}\n  output: {{repository: shared, level: 1}}\n  \
             hostSelector: {{matchLabels: {{role: {role}}}}}\n"
        )
    };
    fs::write(specs.join("repository.yaml"), repository).unwrap();
    let text = format!(
        "{}---\n{}",
        policy("photos", "nas", nas_volume, requests[0]),
        policy("web", "vps", vps_volume, requests[1])
    );
    // Written whole through a new name, as a git checkout replaces a file.
    let next = specs.join(".fleet.yaml.new");
    fs::write(&next, text).unwrap();
    fs::rename(&next, specs.join("fleet.yaml")).unwrap();
}

/// `(phase, archive id)` of `name`'s last run in a status file's documents, once it has one.
fn last_run(statuses: &[Value], name: &str) -> Option<(String, String)> {
    let doc = statuses
        .iter()
        .find(|d| d["metadata"]["name"].as_str() == Some(name))?;
    let run = &doc["status"]["lastRun"];
    Some((
        run["phase"].as_str()?.to_string(),
        run["archiveId"].as_str().unwrap_or_default().to_string(),
    ))
}

/// The `Ready` reason of `name` in a status file's documents.
fn ready_reason(statuses: &[Value], name: &str) -> Option<String> {
    let doc = statuses
        .iter()
        .find(|d| d["metadata"]["name"].as_str() == Some(name))?;
    doc["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["reason"].as_str())
        .map(str::to_string)
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn two_daemons_on_one_specs_folder_and_one_bucket_each_run_their_own_and_share_the_rest() {
    use common::daemon::{Daemon, statuses as statuses_of, wait_for};
    if !docker_available() {
        return;
    }
    let _lock = docker_lock();
    let garage = Garage::start(1);
    let top = tempfile::tempdir().unwrap();
    let specs = top.path().join("specs");
    fs::create_dir(&specs).unwrap();
    let nas_volume = FileVolume::new("hfdaemonnas", "from-the-nas");
    let vps_volume = FileVolume::new("hfdaemonvps", "from-the-vps");
    fleet_specs(&specs, &garage, &nas_volume.0, &vps_volume.0, [1, 1]);
    let key = std::ffi::OsString::from(garage.key_id());

    // Each daemon: its own state, status tree and API, the one specs folder, its labels.
    let start = |host: &str| {
        let dir = top.path().join(host);
        fs::create_dir_all(&dir).unwrap();
        let status = dir.join("status");
        let role = format!("role={host}");
        let daemon = Daemon::start_with(
            &dir,
            &dir.join("local-repository"),
            &[("HOLDFAST_TEST_S3_KEY", key.as_os_str())],
            &[
                "--specs",
                specs.to_str().unwrap(),
                "--status-dir",
                status.to_str().unwrap(),
                "--host",
                host,
                "--host-labels",
                &role,
            ],
        );
        (status.join("fleet.status.yaml"), daemon)
    };
    let (nas_status, mut nas) = start("nas");
    let (vps_status, mut vps) = start("vps");

    // Each runs only what selects it; the other's policy is NotSelected there.
    let mut first = std::collections::BTreeMap::new();
    for (status, mine, theirs) in [
        (&nas_status, "photos", "web"),
        (&vps_status, "web", "photos"),
    ] {
        let s = wait_for(status, Duration::from_secs(90), mine, |s| {
            last_run(s, mine).is_some_and(|(phase, _)| phase == "Succeeded")
                && ready_reason(s, theirs).as_deref() == Some("NotSelected")
        });
        assert!(last_run(&s, theirs).is_none(), "{s:#?}");
        first.insert(mine, last_run(&s, mine).unwrap().1);
    }

    // Each lists the other's archive, through the same bucket.
    let as_host = |host: &str| {
        let mut cmd = holdfast();
        cmd.env("HOLDFAST_TEST_S3_KEY", garage.key_id())
            .env("HOLDFAST_SPECS", &specs)
            .env("HOLDFAST_STATE", top.path().join(host).join("state"))
            .env(
                "HOLDFAST_REPOSITORY",
                top.path().join(host).join("local-repository"),
            )
            .env("HOLDFAST_HOST", host);
        cmd
    };
    let both = vec![
        ("nas".to_string(), first["photos"].clone()),
        ("vps".to_string(), first["web"].clone()),
    ];
    assert_eq!(listed(&mut as_host("nas")), both);
    assert_eq!(listed(&mut as_host("vps")), both);
    // The VPS's API shows both hosts from the summaries their daemons publish in the
    // bucket (the first after a run, so within seconds).
    let api = Daemon::api_address(&top.path().join("vps"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let reply = common::http::get(&api, "/api/v1/hosts?repository=shared");
        assert_eq!(reply.status, 200, "{}", reply.text());
        let body = reply.json();
        let hosts: Vec<(String, String)> = body["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["host"].as_str().unwrap().to_string(),
                    h["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let ok = |h: &str| (h.to_string(), "ok".to_string());
        if hosts == [ok("nas"), ok("vps")] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the VPS's API never showed both hosts: {body:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let reply = common::http::get(&api, "/api/v1/hosts?repository=nowhere");
    assert_eq!(reply.status, 404, "{}", reply.text());

    // The NAS runs again (its policy alone is requested anew): it keeps its newest archive
    // and forgets its first; nothing in the VPS's folder changes.
    // Its archives, not the summary its daemon may rewrite meanwhile (see `get hosts`).
    let archives_of = |host: &str| -> Vec<String> {
        keys(&garage, &format!("fleet/{host}/"))
            .into_iter()
            .filter(|k| !k.contains("/.holdfast/"))
            .collect()
    };
    let vps_keys = archives_of("vps");
    assert!(!vps_keys.is_empty());
    std::thread::sleep(Duration::from_millis(1100));
    fleet_specs(&specs, &garage, &nas_volume.0, &vps_volume.0, [2, 1]);
    let s = wait_for(&nas_status, Duration::from_secs(90), "photos again", |s| {
        last_run(s, "photos")
            .is_some_and(|(phase, id)| phase == "Succeeded" && id != first["photos"])
    });
    let second = last_run(&s, "photos").unwrap().1;
    let after_prune = vec![
        ("nas".to_string(), second.clone()),
        ("vps".to_string(), first["web"].clone()),
    ];
    assert_eq!(listed(&mut as_host("vps")), after_prune);
    assert_eq!(listed(&mut as_host("nas")), after_prune);
    assert_eq!(
        archives_of("vps"),
        vps_keys,
        "the NAS's run changed the VPS's archives"
    );
    let s = statuses_of(&vps_status);
    assert_eq!(
        last_run(&s, "web").unwrap().1,
        first["web"],
        "the VPS ran again"
    );

    // The VPS is lost; a new machine takes its name and brings back the NAS's archive
    // into a new volume, from the bucket alone.
    for daemon in [&mut nas, &mut vps] {
        daemon.signal("TERM");
        assert_eq!(daemon.wait(Duration::from_secs(30)), Some(0));
    }
    let nas_keys = keys(&garage, "fleet/nas/");
    assert_eq!(
        restored_file(as_host("vps"), &second, &nas_volume.0, "on-vps"),
        "from-the-nas\n"
    );
    assert_eq!(
        keys(&garage, "fleet/nas/"),
        nas_keys,
        "the VPS wrote into the NAS's folder"
    );
}
