//! A real SMTP server: Debian's aiosmtpd (`tests/receivers/smtp_receiver.py`), started by
//! the test on a free loopback port with a certificate the test makes, so that the e-mail
//! notification tests meet real STARTTLS, real certificate checks and a real login.
//! `scripts/test-env.sh` installs `python3-aiosmtpd` and `openssl`.
//!
//! The certificates come from a throwaway CA made once per test process with the `openssl`
//! command; [`trust_test_ca`] points `SSL_CERT_FILE` at it, which is where holdfast's TLS
//! client looks for trusted roots when it is set.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Debian's Python, which has the `python3-aiosmtpd` package (a `python3` earlier on
/// `PATH` may not).
const PYTHON: &str = "/usr/bin/python3";

/// How long the server may take to listen.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// The only login the server accepts.
pub const USER: &str = "mailer@example.com";
/// Its password, with characters a URL must percent-encode.
pub const PASSWORD: &str = "s3cret pass:word/1";
/// [`PASSWORD`] as it is written in a URL.
pub const PASSWORD_IN_URL: &str = "s3cret%20pass%3Aword%2F1";

/// How the server secures its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// STARTTLS offered and required; AUTH only once encrypted, and required.
    StartTls,
    /// TLS from the first byte, as on port 465; AUTH required.
    Tls,
    /// No TLS: AUTH offered in clear and optional.
    Plain,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::StartTls => "starttls",
            Mode::Tls => "tls",
            Mode::Plain => "plain",
        }
    }
}

/// Which certificate the server presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cert {
    /// One for `127.0.0.1` and `localhost` signed by the test CA.
    Trusted,
    /// A self-signed one no client trusts.
    SelfSigned,
}

/// The throwaway CA and the certificates of this process, made once.
struct Pki {
    // Kept for the process's lifetime: SSL_CERT_FILE points into it.
    dir: tempfile::TempDir,
}

impl Pki {
    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn cert(&self, cert: Cert) -> (PathBuf, PathBuf) {
        let name = match cert {
            Cert::Trusted => "server",
            Cert::SelfSigned => "selfsigned",
        };
        let d = self.dir.path();
        (d.join(format!("{name}.pem")), d.join(format!("{name}.key")))
    }
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("holdfast-smtp-pki-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            d,
            &[
                &["req", "-x509", "-nodes", "-days", "2"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-subj",
                    "/CN=holdfast test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ],
        );
        fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                &["req", "-nodes"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ],
        );
        openssl(
            d,
            &[&[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ][..]],
        );
        openssl(
            d,
            &[
                &["req", "-x509", "-nodes", "-days", "2"][..],
                &ec,
                &[
                    "-keyout",
                    "selfsigned.key",
                    "-out",
                    "selfsigned.pem",
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost",
                ],
            ],
        );
        Pki { dir }
    })
}

fn openssl(dir: &Path, args: &[&[&str]]) {
    let args: Vec<&str> = args.concat();
    let out = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .output()
        .expect("running openssl (see scripts/test-env.sh)");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes the test CA (once) and points `SSL_CERT_FILE` at it, so that holdfast trusts the
/// servers of this process and nothing else. Every test of a file that sends over TLS
/// calls it first, before any TLS client reads the variable.
pub fn trust_test_ca() {
    static TRUSTED: OnceLock<()> = OnceLock::new();
    TRUSTED.get_or_init(|| {
        let ca = pki().ca();
        // SAFETY: set once, under the OnceLock, by the first test of the process to get
        // here; every test that reads it calls this function before doing anything else.
        unsafe { std::env::set_var("SSL_CERT_FILE", ca) };
    });
}

/// A running aiosmtpd on `127.0.0.1:port()`, and the folder it writes messages to.
/// Dropping it kills the server and removes the folder.
pub struct SmtpServer {
    child: Option<Child>,
    port: u16,
    // Last: the server is killed before its folder goes.
    dir: tempfile::TempDir,
}

/// One message the server accepted.
#[derive(Debug)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub authenticated: bool,
    /// The raw message, as it came after DATA.
    pub raw: Vec<u8>,
    /// The message parsed by Python's `email` package: `headers` (lower-case names,
    /// decoded values), `content_type` and `parts` (`content_type`, `charset`, `text`).
    pub parsed: serde_json::Value,
}

impl SmtpServer {
    /// Starts a server in `mode` with the trusted certificate.
    pub fn start(mode: Mode) -> SmtpServer {
        SmtpServer::start_with(mode, Cert::Trusted)
    }

    /// Starts a server in `mode` presenting `cert`, and waits until it listens. Panics
    /// with its log when it does not.
    pub fn start_with(mode: Mode, cert: Cert) -> SmtpServer {
        let script = super::crate_root().join("tests/receivers/smtp_receiver.py");
        assert!(
            Path::new(PYTHON).is_file(),
            "{PYTHON} is missing. Run `scripts/test-env.sh` (as `make test` does) to install \
             python3-aiosmtpd, or set HOLDFAST_SKIP_DOCKER=1 to report the tests that need \
             outside servers as ignored."
        );
        let dir = tempfile::Builder::new()
            .prefix("holdfast-smtp-")
            .tempdir()
            .unwrap();
        let port = super::free_ports(1)[0];
        let (cert, key) = pki().cert(cert);
        let log = fs::File::create(dir.path().join("server.log")).unwrap();
        let mut cmd = Command::new(PYTHON);
        cmd.arg(&script)
            .arg("serve")
            .arg("--port")
            .arg(port.to_string())
            .arg("--folder")
            .arg(dir.path())
            .arg("--mode")
            .arg(mode.as_str())
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg("--user")
            .arg(USER)
            .arg("--password")
            .arg(PASSWORD)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let mut server = SmtpServer {
            child: Some(child),
            port,
            dir,
        };
        let deadline = Instant::now() + READY_WITHIN;
        while !server.dir.path().join("ready").exists() {
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "the SMTP server exited ({status}) while starting{}",
                    server.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP server did not listen on 127.0.0.1:{port} within {READY_WITHIN:?}{}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The messages accepted so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let mut envelopes: Vec<PathBuf> = fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        envelopes.sort();
        envelopes
            .into_iter()
            .map(|path| {
                let meta: serde_json::Value =
                    serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
                let eml = path.with_extension("eml");
                Received {
                    mail_from: meta["mail_from"].as_str().unwrap_or_default().to_string(),
                    rcpt_tos: meta["rcpt_tos"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().to_string())
                        .collect(),
                    authenticated: meta["authenticated"].as_bool().unwrap_or(false),
                    raw: fs::read(&eml).unwrap(),
                    parsed: parse_mail(&eml),
                }
            })
            .collect()
    }

    /// The login attempts so far: `mechanism`, `login`, `ok`, `encrypted` (never the
    /// password).
    pub fn logins(&self) -> Vec<serde_json::Value> {
        fs::read_to_string(self.dir.path().join("logins.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn log_text(&self) -> String {
        let log = self.dir.path().join("server.log");
        format!(
            "\n--- {} ---\n{}",
            log.display(),
            fs::read_to_string(&log).unwrap_or_default()
        )
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A message file parsed by Python's `email` package (see [`Received::parsed`]).
pub fn parse_mail(path: &Path) -> serde_json::Value {
    let script = super::crate_root().join("tests/receivers/smtp_receiver.py");
    let out: Output = Command::new(PYTHON)
        .arg(script)
        .arg("parse")
        .arg(path)
        .output()
        .expect("running the SMTP receiver's parser");
    assert!(
        out.status.success(),
        "parsing {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
