//! A Docker engine reached over TCP with TLS, as a remote host's would be: the engine's
//! socket behind a TLS listener that demands a client certificate from the test's own
//! authority (stunnel, loopback only), and `holdfast backup` through it with
//! `--docker-tls-verify`, reading the volume through Docker's archive API. The listener
//! refuses plain HTTP, a client without a certificate and one that trusts another
//! authority, so each of those must fail and say why.

mod common;

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::env::Env;
use common::*;
use serde_json::Value;

/// Runs `openssl` with `args` in `dir`, failing the test if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = run(Command::new("openssl").current_dir(dir).args(args));
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
}

/// An authority and the certificates it signs, in `dir`: `ca.pem`, `server-cert.pem` and
/// `server-key.pem` for the listener (valid for 127.0.0.1), and a `client/` folder laid out
/// as `--docker-cert-path` wants it (`ca.pem`, `cert.pem`, `key.pem`).
fn authority(dir: &Path, name: &str) -> PathBuf {
    fs::create_dir_all(dir.join("client")).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test authority"),
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
        ],
    );
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (who, subject) in [("server", "/CN=127.0.0.1"), ("client", "/CN=holdfast")] {
        let key = format!("{who}-key.pem");
        let csr = format!("{who}.csr");
        openssl(
            dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key, "-out",
                &csr,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{who}.ext"),
                "-out",
                &format!("{who}-cert.pem"),
            ],
        );
    }
    let client = dir.join("client");
    fs::copy(dir.join("ca.pem"), client.join("ca.pem")).unwrap();
    fs::copy(dir.join("client-cert.pem"), client.join("cert.pem")).unwrap();
    fs::copy(dir.join("client-key.pem"), client.join("key.pem")).unwrap();
    client
}

/// The engine's socket behind TLS on a loopback port, for as long as it lives.
struct TlsListener {
    child: Child,
    port: u16,
}

impl TlsListener {
    /// Listens with the server certificate of `dir` ([`authority`]), verifying clients
    /// against its `ca.pem`.
    fn start(dir: &Path) -> TlsListener {
        let port = free_ports(1)[0];
        let file = |f: &str| dir.join(f).display().to_string();
        let config = dir.join("stunnel.conf");
        fs::write(
            &config,
            format!(
                "foreground = yes\npid =\noutput = {log}\n[docker]\naccept = 127.0.0.1:{port}\n\
                 connect = /var/run/docker.sock\ncert = {cert}\nkey = {key}\nCAfile = {ca}\n\
                 verifyChain = yes\nrequireCert = yes\n",
                log = file("stunnel.log"),
                cert = file("server-cert.pem"),
                key = file("server-key.pem"),
                ca = file("ca.pem"),
            ),
        )
        .unwrap();
        let child = Command::new("stunnel")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("stunnel (scripts/test-env.sh installs stunnel4)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "stunnel did not listen on {port}: {}",
                fs::read_to_string(dir.join("stunnel.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TlsListener { child, port }
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_backup_through_docker_over_tls_reads_the_volume_through_the_archive_api() {
    if !docker_available() {
        return;
    }
    let _guard = docker_lock();
    let env = Env::new();
    let ours = authority(&env.dir.path().join("pki"), "ours");
    let theirs = authority(&env.dir.path().join("other-pki"), "another");
    let listener = TlsListener::start(&env.dir.path().join("pki"));
    let app = Busybox::start("hftls", "app", QUITS_ON_TERM);
    let started = app.started_at();

    env.spec(
        "remote",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {{name: remote}}\n\
             spec:\n  schedule: '0 3 1 1 *'\n  targets: {{containers: [{}]}}\n  consistency: {{stop: container}}\n",
            app.name
        ),
    );
    let backup = |extra: &[&str]| {
        let mut cmd = env.holdfast();
        cmd.env_remove("DOCKER_HOST")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .args([
                "backup",
                "remote",
                "-o",
                "json",
                "--docker-host",
                &listener.url(),
            ])
            .args(extra);
        run(&mut cmd)
    };

    // Plain HTTP to a TLS listener: refused, naming the endpoint, and nothing stopped.
    let out = backup(&[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&listener.url()), "{}", stderr(&out));
    // The engine's certificate is not from the authority we trust: refused.
    let out = backup(&[
        "--docker-tls-verify",
        "--docker-cert-path",
        theirs.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&listener.url()) && err.to_lowercase().contains("certificate"),
        "{err}"
    );
    // A folder without the client's key: the file is named before anything is tried.
    let keyless = env.dir.path().join("keyless");
    fs::create_dir(&keyless).unwrap();
    fs::copy(ours.join("ca.pem"), keyless.join("ca.pem")).unwrap();
    fs::copy(ours.join("cert.pem"), keyless.join("cert.pem")).unwrap();
    let out = backup(&[
        "--docker-tls-verify",
        "--docker-cert-path",
        keyless.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&keyless.join("key.pem").display().to_string()),
        "{err}"
    );
    assert!(err.contains("--docker-cert-path"), "{err}");
    assert_eq!(
        app.started_at(),
        started,
        "a refused connection stopped nothing"
    );

    // With our certificates, through the environment variables Docker's client reads.
    let mut cmd = env.holdfast();
    cmd.env("DOCKER_HOST", listener.url())
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", &ours)
        .args(["backup", "remote", "-o", "json", "--archive-via", "api"]);
    let id = common::env::archive_of(&mut cmd);
    assert_eq!(app.wait_running(Duration::from_secs(30)), "running");
    assert_ne!(
        app.started_at(),
        started,
        "the container was stopped and started again"
    );

    let manifest: Value = serde_json::from_slice(&fs::read(&env.manifests()[0]).unwrap()).unwrap();
    let volume = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "volume")
        .unwrap_or_else(|| panic!("{manifest:#}"));
    assert_eq!(volume["source"], app.volume.as_str());
    assert_eq!(volume["via"], "api");
    let out = run(env
        .holdfast()
        .args(["ls", &id, &format!("volumes/{}", app.volume)]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).lines().any(|l| l.ends_with(" file.txt")),
        "{}",
        stdout(&out)
    );
    let out = run(env.holdfast().args(["verify", &id]));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
}
