//! The container image: `scripts/image.sh` (`make image`) assembles it from the binary
//! under test with `docker import`, with the files and the configuration the Dockerfile
//! gives it, and holdfast running in it backs up a container through the Docker socket,
//! both as the image's non-root user (volumes read through Docker's API) and as root
//! (volumes read from the mounted volumes folder), into a mounted repository that the
//! holdfast of the host then verifies and restores from.

mod common;

use std::fs;
use std::process::Command;
use std::time::Instant;

use common::env::archive_of;
use common::*;

/// The image a test made, removed when dropped, whatever the test did.
struct Image {
    tag: String,
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = run(Command::new("docker").args(["image", "rm", "-f", &self.tag]));
    }
}

/// A container created (not started) from an image, removed with the volume Docker made
/// for the image's `VOLUME` when dropped.
struct Created(String);

impl Drop for Created {
    fn drop(&mut self) {
        let _ = run(Command::new("docker").args(["rm", "-f", "-v", &self.0]));
    }
}

/// Builds the image from the binary under test, tagged `holdfast-test/image:<pid>`.
fn build_image() -> Image {
    let image = Image {
        tag: format!("holdfast-test/image:{}", std::process::id()),
    };
    let out = run(Command::new(crate_root().join("scripts/image.sh"))
        .env("BINARY", env!("CARGO_BIN_EXE_holdfast"))
        .env("IMAGE_TAGS", &image.tag));
    assert!(
        out.status.success(),
        "scripts/image.sh failed:\n{}",
        stderr(&out)
    );
    image
}

/// The instructions of the Dockerfile's last stage, continuation lines joined.
fn last_stage() -> Vec<String> {
    let text = fs::read_to_string(crate_root().join("Dockerfile")).unwrap();
    let mut lines: Vec<String> = Vec::new();
    let mut open = false;
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let part = line.trim().trim_end_matches('\\').trim();
        match lines.last_mut() {
            Some(last) if open => {
                last.push(' ');
                last.push_str(part);
            }
            _ => lines.push(part.to_string()),
        }
        open = line.trim_end().ends_with('\\');
    }
    let from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    lines.split_off(from + 1)
}

/// The volumes no container uses.
fn dangling_volumes() -> Vec<String> {
    docker(&["volume", "ls", "-q", "--filter", "dangling=true"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Of the volumes not in `before` and used by no container, those holding what the
/// image's `/var/lib/holdfast` holds: volumes made for its `VOLUME` and left behind.
fn left_behind(before: &[String]) -> Vec<String> {
    dangling_volumes()
        .into_iter()
        .filter(|v| !before.contains(v))
        .filter(|v| {
            let mountpoint = docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", v]);
            let mut names: Vec<String> = fs::read_dir(mountpoint.trim())
                .map(|d| {
                    d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            names == ["repository", "state"]
        })
        .collect()
}

/// `docker run --rm <args>`, its output; the image's `VOLUME` on a tmpfs, so that no
/// volume is left behind.
fn docker_run(args: &[&str]) -> std::process::Output {
    run(Command::new("docker")
        .args(["run", "--rm", "--tmpfs", "/var/lib/holdfast"])
        .args(args))
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn the_image_backs_up_a_container_through_the_docker_socket() {
    if !docker_available() {
        return;
    }
    let started = Instant::now();
    let image = build_image();
    let built = started.elapsed();

    // The configuration is the Dockerfile's.
    let config = docker(&["image", "inspect", "-f", "{{json .Config}}", &image.tag]);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["User"], "holdfast", "{config:#}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/bin/tini", "--", "holdfast"])
    );
    assert_eq!(config["Cmd"], serde_json::json!(["validate"]));
    assert!(
        config["Volumes"]["/var/lib/holdfast"].is_object(),
        "{config:#}"
    );
    assert!(config["ExposedPorts"]["9750/tcp"].is_object(), "{config:#}");
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for var in [
        "HOLDFAST_SPECS=/specs",
        "HOLDFAST_STATE=/var/lib/holdfast/state",
        "HOLDFAST_REPOSITORY=/var/lib/holdfast/repository",
    ] {
        assert!(env.contains(&var), "{var} missing from {env:?}");
    }
    assert_eq!(
        config["Labels"]["org.opencontainers.image.title"], "holdfast",
        "{config:#}"
    );

    // The files are where the Dockerfile puts them, the state folder the user's own.
    let created = Created(docker(&["create", &image.tag]).trim().to_string());
    let listing = run(Command::new("sh").args([
        "-c",
        &format!("docker export {} | tar -tv --numeric-owner -f -", created.0),
    ]));
    assert!(listing.status.success(), "{}", stderr(&listing));
    let listing = stdout(&listing);
    let entry = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")) || l.contains(&format!(" {path} -> ")))
            .unwrap_or_else(|| panic!("{path} is not in the image:\n{listing}"))
            .to_string()
    };
    let mut paths = vec![
        "usr/local/bin/holdfast".to_string(),
        "usr/bin/tini".to_string(),
        "usr/bin/ssh".to_string(),
        "etc/ssl/certs/ca-certificates.crt".to_string(),
        "etc/passwd".to_string(),
        "specs/".to_string(),
    ];
    // Every COPY of the last stage lands somewhere in the image.
    for copy in last_stage().iter().filter(|l| l.starts_with("COPY ")) {
        let dest = copy.split_whitespace().last().unwrap();
        paths.push(dest.trim_start_matches('/').to_string());
    }
    for path in &paths {
        let path = path.as_str();
        let found = listing.lines().any(|l| {
            l.ends_with(&format!(" {path}"))
                || l.ends_with(&format!(" {path}/"))
                || l.contains(&format!(" {path} -> "))
        });
        assert!(found, "{path} is not in the image:\n{listing}");
    }
    for folder in ["var/lib/holdfast/state/", "var/lib/holdfast/repository/"] {
        assert!(entry(folder).contains(" 10001/10001 "), "{}", entry(folder));
    }
    assert!(entry("tmp/").starts_with("drwxrwxrwt"), "{}", entry("tmp/"));
    drop(created);

    // The user is there for ssh, and so is everything the binaries link.
    let out = docker_run(&["--entrypoint", "/usr/bin/ssh", &image.tag, "-V"]);
    assert!(out.status.success(), "ssh -V: {}", stderr(&out));
    assert!(stderr(&out).starts_with("OpenSSH"), "{}", stderr(&out));

    let _lock = docker_lock();
    let app = Busybox::start(
        "hfimage",
        "app",
        "echo kept > /data/file.txt; echo private > /data/p; chmod 600 /data/p; chown 999 /data/p; \
         trap 'exit 0' TERM; while :; do sleep 1; done",
    );
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs");
    // The image's folder /var/lib/holdfast, mounted whole: a volume Docker made for it
    // (the image declares one) would outlive the containers.
    let lib = dir.path().join("holdfast");
    let repository = lib.join("repository");
    fs::create_dir(&specs).unwrap();
    fs::write(
        specs.join("app.yaml"),
        format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: app}}\nspec:\n  schedule: '0 3 1 1 *'\n  targets: {{containers: [{}]}}\n  consistency: {{stop: container}}\n",
            app.name
        ),
    )
    .unwrap();
    // The image's user owns its state and repository, as in the image.
    fs::create_dir_all(&repository).unwrap();
    let out = run(Command::new("chown").arg("-R").arg("10001:10001").arg(&lib));
    assert!(out.status.success(), "{}", stderr(&out));

    let socket_group = run(Command::new("stat").args(["-c", "%g", "/var/run/docker.sock"]));
    let socket_group = stdout(&socket_group).trim().to_string();
    let mounts = [
        "-v".to_string(),
        "/var/run/docker.sock:/var/run/docker.sock".to_string(),
        "-v".to_string(),
        "/var/lib/docker/volumes:/var/lib/docker/volumes".to_string(),
        "-v".to_string(),
        format!("{}:/specs:ro", specs.display()),
        "-v".to_string(),
        format!("{}:/var/lib/holdfast", lib.display()),
        "-e".to_string(),
        "HOLDFAST_HOST=imagehost".to_string(),
    ];
    let backup = |extra: &[&str]| {
        let mut args: Vec<&str> = mounts.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        args.extend([image.tag.as_str(), "backup", "app", "-o", "json"]);
        archive_of(Command::new("docker").arg("run").arg("--rm").args(&args))
    };
    let before = dangling_volumes();
    // As the image's user, with the socket's group: a file private to another user is
    // out of its reach in the volumes folder, so volumes come through Docker's API.
    let as_user = backup(&[
        "--group-add",
        &socket_group,
        "-e",
        "HOLDFAST_ARCHIVE_VIA=api",
    ]);
    // As root: straight from the mounted volumes folder.
    let as_root = backup(&["--user", "0:0"]);
    assert_eq!(app.state(), "running", "the container is started again");
    // The reader container of the API path is made from any image, here likely this
    // one: the volume Docker made for its VOLUME goes with it.
    assert_eq!(left_behind(&before), Vec::<String>::new());

    // The host's holdfast reads both archives back.
    let host = |cmd: &mut Command| {
        cmd.arg("--repository")
            .arg(&repository)
            .args(["--host", "imagehost"]);
        let out = run(cmd);
        assert!(
            out.status.success(),
            "{cmd:?}:\n{}\n{}",
            stdout(&out),
            stderr(&out)
        );
    };
    for (archive, how) in [(&as_user, "user"), (&as_root, "root")] {
        let manifest = repository
            .join("imagehost/app")
            .join(archive)
            .join("manifest.json");
        let manifest =
            fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        assert!(manifest.contains(&app.volume), "{manifest}");
        host(holdfast().args(["verify", archive.as_str()]));
        let out = dir.path().join(format!("restored-{how}"));
        host(
            holdfast()
                .args([
                    "restore",
                    "--from",
                    archive,
                    "--volume",
                    &app.volume,
                    "--path",
                    "file.txt",
                    "--path",
                    "p",
                    "--to",
                ])
                .arg(&out),
        );
        assert_eq!(fs::read_to_string(out.join("file.txt")).unwrap(), "kept\n");
        assert_eq!(fs::read_to_string(out.join("p")).unwrap(), "private\n");
    }
    eprintln!(
        "image built in {built:.1?}, test done in {:.1?}",
        started.elapsed()
    );
}
