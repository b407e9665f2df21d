//! An artifact downloaded through the real daemon's API, with a token file of named,
//! scoped and expiring tokens: the bytes are what the manifest's sha256 covers, and the
//! log names refused tokens but never holds a token's value.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::daemon::*;
use common::env::Env;
use common::http::Answer;
use common::*;
use sha2::Digest;

const READ: &str = "alice-read-0123456789abcdef";
const METRICS: &str = "grafana-metrics-0123456789abcdef";
const EXPIRED: &str = "old-expired-0123456789abcdef";

fn request(addr: &str, path: &str, token: Option<&str>) -> Answer {
    common::http::request(addr, "GET", path, token)
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn an_artifact_downloads_through_the_daemon_under_the_token_rules() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let volume = FileVolume::new("hfdownload", "downloaded-through-the-api");
    let env = Env::new();
    let archive = env.backup_succeeded(
        "dl",
        &format!(
            "  targets: {{volumes: [{}]}}\n  consistency: {{stop: none}}\n  retention: {{keepLast: 3}}\n",
            volume.0
        ),
    );
    let tokens = env.dir.path().join("tokens.yaml");
    fs::write(
        &tokens,
        format!(
            "tokens:\n  - name: alice\n    scope: read\n    token: {READ}\n  - name: grafana\n    scope: metrics\n    token: \"{METRICS}\"\n  - name: old\n    scope: read\n    token: {EXPIRED}\n    expires: 2020-01-01T00:00:00Z\n"
        ),
    )
    .unwrap();
    let tokens_arg = tokens.to_string_lossy().into_owned();
    let _daemon = Daemon::start(env.dir.path(), &["--api-token-file", &tokens_arg]);
    let addr = Daemon::api_address(env.dir.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    while request(&addr, "/readyz", Some(READ)).status != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The archive in detail: its manifest, retention's decision, where to download.
    let detail = request(
        &addr,
        &format!("/api/v1/backups/default/dl/{archive}"),
        Some(READ),
    );
    assert_eq!(
        detail.status,
        200,
        "{}",
        String::from_utf8_lossy(&detail.body)
    );
    let detail = detail.json();
    assert_eq!(detail["entry"]["health"], "Good", "{detail}");
    assert_eq!(detail["retention"]["keep"], true, "{detail}");
    let artifact = &detail["manifest"]["artifacts"][0];
    let manifest_sha = artifact["sha256"].as_str().unwrap().to_string();
    let manifest_size = artifact["size"].as_u64().unwrap();
    let url = detail["downloads"][0]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("not downloadable: {detail}"))
        .to_string();
    let list = request(&addr, "/api/v1/backups?name=dl", Some(READ)).json();
    assert_eq!(list["items"][0]["retention"]["keep"], true, "{list}");

    // The bytes are what the manifest describes.
    let download = request(&addr, &url, Some(READ));
    assert_eq!(download.status, 200, "{}", download.head);
    let body_sha = hex::encode(sha2::Sha256::digest(&download.body));
    assert_eq!(
        download.header("x-holdfast-sha256").as_deref(),
        Some(body_sha.as_str())
    );
    assert_eq!(body_sha, manifest_sha);
    assert_eq!(download.body.len() as u64, manifest_size);
    assert_eq!(
        download.header("content-length"),
        Some(download.body.len().to_string())
    );
    assert_eq!(
        download.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert!(
        download
            .header("content-disposition")
            .is_some_and(|d| d.starts_with("attachment; filename=\"")),
        "{}",
        download.head
    );
    assert_eq!(download.header("x-frame-options").as_deref(), Some("DENY"));
    // And they are the artifact on disk.
    let on_disk = common::env::manifests(&env.repository)[0]
        .parent()
        .unwrap()
        .join(artifact["path"].as_str().unwrap());
    assert_eq!(sha256_file(&on_disk), body_sha);

    // Scopes and expiry.
    let refused = request(&addr, &url, Some(METRICS));
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.json()["error"],
        "the token `grafana` has scope `metrics` and this path needs `read`"
    );
    assert_eq!(request(&addr, "/metrics", Some(METRICS)).status, 200);
    let expired = request(&addr, "/metrics", Some(EXPIRED));
    assert_eq!(expired.status, 401);
    assert!(
        expired.json()["error"]
            .as_str()
            .unwrap()
            .contains("the token `old` expired at 2020-01-01T00:00:00Z")
    );
    assert_eq!(
        request(&addr, &url, Some("nobody-0123456789abcdef")).status,
        401
    );
    assert_eq!(request(&addr, &url, None).status, 401);
    assert_eq!(request(&addr, "/healthz", None).status, 200);

    // The log names the refused tokens and the paths, never a token's value.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = fs::read_to_string(env.dir.path().join("daemon.log")).unwrap();
        if log.contains("refused an expired API token") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let scope_line = log
        .lines()
        .find(|l| l.contains("out of its scope"))
        .unwrap_or_else(|| panic!("no scope refusal logged:\n{log}"));
    assert!(
        scope_line.contains("grafana") && scope_line.contains("/artifacts/"),
        "{scope_line}"
    );
    let expiry_line = log
        .lines()
        .find(|l| l.contains("refused an expired API token"))
        .unwrap_or_else(|| panic!("no expiry refusal logged:\n{log}"));
    assert!(
        expiry_line.contains("old") && expiry_line.contains("/metrics"),
        "{expiry_line}"
    );
    for secret in [READ, METRICS, EXPIRED, "nobody-0123456789abcdef"] {
        assert!(!log.contains(secret), "the log holds a token:\n{log}");
    }
}

/// An age key pair made by `age-keygen`: the identity file and the recipient.
fn age_keys(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let key = dir.join("age.key");
    let out = run(std::process::Command::new("age-keygen").arg("-o").arg(&key));
    assert!(out.status.success(), "age-keygen: {}", stderr(&out));
    let public = run(std::process::Command::new("age-keygen").arg("-y").arg(&key));
    (key, stdout(&public).trim().to_string())
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn an_artifact_of_an_encrypted_named_repository_downloads_decrypted() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let volume = FileVolume::new("hfsealed", "sealed-then-downloaded");
    let env = Env::new();
    let (identity, recipient) = age_keys(env.dir.path());
    let vault = env.dir.path().join("vault");
    env.spec(
        "vault",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: Repository\nmetadata: {{name: vault}}\nspec:\n  storage: {{local: {{path: {}}}}}\n  encryption:\n    age: {{recipients: [\"{recipient}\"], identityFile: {}}}\n",
            vault.display(),
            identity.display()
        ),
    );
    let archive = env.backup_succeeded(
        "sealed",
        &format!(
            "  targets: {{volumes: [{}]}}\n  consistency: {{stop: none}}\n  output: {{repository: vault}}\n",
            volume.0
        ),
    );
    let _daemon = Daemon::start(env.dir.path(), &[]);
    let addr = Daemon::api_address(env.dir.path());
    // The named repository is opened once the specs are loaded.
    let uri = format!("/api/v1/backups/vault/sealed/{archive}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let detail = loop {
        let answer = request(&addr, &uri, None);
        if answer.status == 200 {
            break answer.json();
        }
        assert!(
            Instant::now() < deadline,
            "{}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(detail["entry"]["repository"], "vault", "{detail}");
    assert_eq!(detail["manifest"]["encryption"], "age", "{detail}");
    let artifact = &detail["manifest"]["artifacts"][0];
    let url = detail["downloads"][0]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("not downloadable: {detail}"))
        .to_string();
    assert!(url.starts_with("/api/v1/backups/vault/sealed/"), "{url}");
    let download = request(&addr, &url, None);
    assert_eq!(download.status, 200, "{}", download.head);
    let body_sha = hex::encode(sha2::Sha256::digest(&download.body));
    assert_eq!(body_sha, artifact["sha256"].as_str().unwrap());
    assert_eq!(
        download.body.len() as u64,
        artifact["size"].as_u64().unwrap()
    );
    assert_eq!(
        download.header("x-holdfast-sha256").as_deref(),
        Some(body_sha.as_str())
    );
    // What is stored is the ciphertext, which is not what was sent.
    let stored = common::env::manifests(&vault)[0]
        .parent()
        .unwrap()
        .join(artifact["path"].as_str().unwrap());
    let stored = fs::read(stored).unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1"));
    assert_ne!(stored, download.body);
}
