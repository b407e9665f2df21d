//! Proves the storage servers the remote repository tests run against: a Garage cluster
//! (tests/common/garage.rs) stores, lists and serves objects to a real S3 client, and keeps
//! doing so with one of three nodes killed; an sshd (tests/common/sftp.rs) takes and gives
//! back files over SFTP with the fixture's key and refuses a host key it does not know.
//! The clients are curl (SigV4-signed requests) and OpenSSH's `sftp`, not holdfast, so a
//! failure here is the environment's, not the repository code's.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use sha2::Digest;

use common::garage::Garage;
use common::sftp::Sftp;
use common::{run, stderr};

/// An S3 request signed for the cluster's region with its key: the HTTP status and body
/// (with curl's own error, if any).
/// `upload` is the file a PUT sends.
fn s3(
    garage: &Garage,
    endpoint: &str,
    method: &str,
    path: &str,
    upload: Option<&Path>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-X", method, "-w", "\n%{http_code}"])
        .arg("--aws-sigv4")
        .arg(format!("aws:amz:{}:s3", garage.region()))
        .arg("--user")
        .arg(format!("{}:{}", garage.key_id(), garage.secret()));
    // S3 wants the body's hash in a header, which this curl does not send on its own.
    let body = upload.map(|f| fs::read(f).unwrap()).unwrap_or_default();
    cmd.arg("-H").arg(format!(
        "x-amz-content-sha256: {}",
        hex::encode(sha2::Sha256::digest(&body))
    ));
    if let Some(file) = upload {
        cmd.arg("--data-binary").arg(format!("@{}", file.display()));
    }
    cmd.arg(format!("{endpoint}{path}"));
    let out = run(&mut cmd);
    // A server that does not answer gives status 0 (curl's `000`) and curl's error.
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.parse().unwrap(), format!("{body}{}", stderr(&out)))
}

/// PUTs `text` as `key` in `bucket` through `endpoint`, asserting 200.
fn put(garage: &Garage, endpoint: &str, bucket: &str, key: &str, text: &str) {
    let file = tempfile::NamedTempFile::new().unwrap();
    fs::write(file.path(), text).unwrap();
    let (status, body) = s3(
        garage,
        endpoint,
        "PUT",
        &format!("/{bucket}/{key}"),
        Some(file.path()),
    );
    assert_eq!(status, 200, "PUT {bucket}/{key} through {endpoint}: {body}");
}

/// GETs `key` from `bucket` through `endpoint`, asserting 200; returns the body.
fn get(garage: &Garage, endpoint: &str, bucket: &str, key: &str) -> String {
    let (status, body) = s3(garage, endpoint, "GET", &format!("/{bucket}/{key}"), None);
    assert_eq!(status, 200, "GET {bucket}/{key} through {endpoint}: {body}");
    body
}

/// The keys a ListObjectsV2 of `bucket` under `prefix` returns, in order.
fn list(garage: &Garage, endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    let (status, body) = s3(
        garage,
        endpoint,
        "GET",
        // Encoded as SigV4 wants: this curl signs the query as written.
        &format!(
            "/{bucket}?list-type=2&prefix={}",
            prefix.replace('/', "%2F")
        ),
        None,
    );
    assert_eq!(status, 200, "LIST {bucket} through {endpoint}: {body}");
    body.split("<Key>")
        .skip(1)
        .map(|s| s.split("</Key>").next().unwrap().to_string())
        .collect()
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Garage; HOLDFAST_SKIP_DOCKER=1")]
fn a_single_garage_node_stores_lists_and_serves_objects() {
    let garage = Garage::start(1);
    let endpoint = garage.endpoint();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    assert_eq!(garage.region(), "garage");
    assert_eq!(garage.endpoints(), std::slice::from_ref(&endpoint));
    let bucket = garage.bucket();

    put(&garage, &endpoint, bucket, "host/policy/a.txt", "first\n");
    put(&garage, &endpoint, bucket, "host/policy/b.txt", "second\n");
    put(&garage, &endpoint, bucket, "elsewhere.txt", "third\n");
    assert_eq!(
        get(&garage, &endpoint, bucket, "host/policy/b.txt"),
        "second\n"
    );
    assert_eq!(
        list(&garage, &endpoint, bucket, "host/"),
        ["host/policy/a.txt", "host/policy/b.txt"]
    );

    // A missing object and a wrong secret are real S3 errors, not a mock's.
    let (status, body) = s3(
        &garage,
        &endpoint,
        "GET",
        &format!("/{bucket}/missing"),
        None,
    );
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("NoSuchKey"), "{body}");
    let out = run(Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args([
            "-H",
            &format!(
                "x-amz-content-sha256: {}",
                hex::encode(sha2::Sha256::digest(b""))
            ),
        ])
        .arg("--aws-sigv4")
        .arg("aws:amz:garage:s3")
        .arg("--user")
        .arg(format!("{}:{}", garage.key_id(), "0".repeat(64)))
        .arg(format!("{endpoint}/{bucket}/host/policy/a.txt")));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");

    // A second bucket is the key's too.
    garage.create_bucket("holdfast-second");
    put(
        &garage,
        &endpoint,
        "holdfast-second",
        "x",
        "in the second bucket",
    );
    assert_eq!(list(&garage, &endpoint, "holdfast-second", ""), ["x"]);
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Garage; HOLDFAST_SKIP_DOCKER=1")]
fn three_garage_nodes_keep_serving_with_one_killed() {
    let mut garage = Garage::start(3);
    let endpoints = garage.endpoints();
    assert_eq!(endpoints.len(), 3);
    let bucket = garage.bucket().to_string();
    put(
        &garage,
        &endpoints[0],
        &bucket,
        "before",
        "written by three",
    );
    // Every node serves the whole cluster.
    assert_eq!(
        get(&garage, &endpoints[1], &bucket, "before"),
        "written by three"
    );

    garage.kill_node(2);
    assert!(!garage.is_running(2));
    let (status, _) = s3(
        &garage,
        &endpoints[2],
        "GET",
        &format!("/{bucket}/before"),
        None,
    );
    assert_eq!(status, 0, "a killed node must not answer");
    assert_eq!(
        get(&garage, &endpoints[0], &bucket, "before"),
        "written by three"
    );
    put(&garage, &endpoints[1], &bucket, "during", "written by two");
    assert_eq!(
        list(&garage, &endpoints[0], &bucket, ""),
        ["before", "during"]
    );

    garage.restart_node(2);
    assert_eq!(
        get(&garage, &endpoints[2], &bucket, "during"),
        "written by two"
    );
}

/// `sftp -b -` with the fixture's key, known hosts and port, running `batch`.
fn sftp_batch(server: &Sftp, known_hosts: &Path, batch: &str) -> Output {
    use std::io::Write;
    // The first value of an ssh option wins: this known_hosts, then the fixture's options.
    let mut child = Command::new("sftp")
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(server.client_options())
        .arg("-P")
        .arg(server.port().to_string())
        .arg("-b")
        .arg("-")
        .arg(format!("{}@{}", server.user(), server.host()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running sftp (openssh-client; see scripts/test-env.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(batch.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs sshd; HOLDFAST_SKIP_DOCKER=1")]
fn sshd_takes_and_gives_back_a_file_over_sftp() {
    let server = Sftp::start();
    assert_eq!(server.host(), "127.0.0.1");
    let local = tempfile::tempdir().unwrap();
    let sent = local.path().join("sent.bin");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(&sent, &content).unwrap();
    let back = local.path().join("back.bin");
    let root = server.root();

    let out = sftp_batch(
        &server,
        &server.known_hosts(),
        &format!(
            "mkdir {root}/host\nput {sent} {root}/host/archive.bin\nget {root}/host/archive.bin {back}\nput {sent} relative.bin\n",
            root = root.display(),
            sent = sent.display(),
            back = back.display(),
        ),
    );
    assert!(
        out.status.success(),
        "sftp batch failed: {}\n{}",
        stderr(&out),
        fs::read_to_string(server.log()).unwrap_or_default()
    );
    assert_eq!(fs::read(root.join("host/archive.bin")).unwrap(), content);
    assert_eq!(fs::read(&back).unwrap(), content);
    // Paths that are not absolute start in the data folder.
    assert_eq!(fs::read(root.join("relative.bin")).unwrap(), content);
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs sshd; HOLDFAST_SKIP_DOCKER=1")]
fn sftp_refuses_a_server_whose_host_key_it_does_not_know() {
    let mut server = Sftp::start();
    let root = server.root();
    let batch = format!("put /etc/hostname {}/leaked\n", root.display());

    // Another server's key under this server's name: the client must stop before logging in.
    let other = tempfile::tempdir().unwrap();
    let other_key = other.path().join("key");
    let keygen = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other_key));
    assert!(keygen.status.success(), "{}", stderr(&keygen));
    let wrong = other.path().join("known_hosts");
    let other_public = fs::read_to_string(other_key.with_extension("pub")).unwrap();
    fs::write(
        &wrong,
        format!("[127.0.0.1]:{} {other_public}", server.port()),
    )
    .unwrap();
    let out = sftp_batch(&server, &wrong, &batch);
    assert!(!out.status.success(), "sftp accepted a changed host key");
    assert!(
        stderr(&out).contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        stderr(&out)
    );

    // No entry at all is refused too (StrictHostKeyChecking=yes, BatchMode).
    let empty = other.path().join("empty_known_hosts");
    fs::write(&empty, "").unwrap();
    let out = sftp_batch(&server, &empty, &batch);
    assert!(!out.status.success(), "sftp accepted an unknown host key");
    assert!(
        stderr(&out).contains("Host key verification failed"),
        "{}",
        stderr(&out)
    );
    assert!(!root.join("leaked").exists());

    // The right key still gets in; once killed, the server refuses connections.
    assert!(
        sftp_batch(&server, &server.known_hosts(), "pwd\n")
            .status
            .success()
    );
    server.kill();
    let out = sftp_batch(&server, &server.known_hosts(), "pwd\n");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Connection refused"),
        "{}",
        stderr(&out)
    );
}
