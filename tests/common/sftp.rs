//! A real SFTP server: Debian's OpenSSH `sshd` with its built-in SFTP server, started by the
//! test on a free loopback port with keys the test makes, so that the SFTP repository tests
//! meet real host-key checks and real permissions. `scripts/test-env.sh` installs
//! `openssh-server` without starting its service; each test runs its own sshd.
//!
//! The client logs in as the user running the tests (root in CI) with the fixture's key
//! pair only: no password, no PAM, and `StrictModes no`, as the temporary folder's owner
//! and modes are the test's and not a home folder's.

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's sshd; it refuses to start unless called by its full path.
const SSHD: &str = "/usr/sbin/sshd";

/// How long sshd may take to answer with its banner.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running sshd serving SFTP on `127.0.0.1:port()`, its keys and a data folder, in a
/// temporary folder. Dropping it kills the server and removes the folder.
pub struct Sftp {
    child: Option<Child>,
    port: u16,
    user: String,
    host_public_key: String,
    // Last: the server is killed before its folder goes.
    dir: tempfile::TempDir,
}

impl Sftp {
    /// Makes a host key and a client key pair with `ssh-keygen`, writes `sshd_config`,
    /// `authorized_keys` and `known_hosts`, starts `sshd -D -e` and waits until it answers
    /// with its SSH banner. Panics with sshd's log when it does not.
    pub fn start() -> Sftp {
        assert!(
            Path::new(SSHD).is_file(),
            "{SSHD} is missing. Run `scripts/test-env.sh` (as `make test` does) to install \
             openssh-server, or set HOLDFAST_SKIP_DOCKER=1 to report the tests that need \
             outside servers as ignored."
        );
        // The privilege separation folder, which only the package's service would make.
        fs::create_dir_all("/run/sshd").expect("creating /run/sshd for sshd");
        let dir = tempfile::Builder::new()
            .prefix("holdfast-sftp-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let host_public_key = fs::read_to_string(d.join("host_key.pub"))
            .unwrap()
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let data = d.join("data");
        fs::create_dir(&data).unwrap();
        let port = super::free_ports(1)[0];
        fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_public_key}\n"),
        )
        .unwrap();
        fs::write(
            d.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1:{port}
HostKey {host_key}
PidFile none
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
# Relative paths start in the data folder.
Subsystem sftp internal-sftp -d {data}
",
                host_key = d.join("host_key").display(),
                authorized_keys = d.join("authorized_keys").display(),
                data = data.display(),
            ),
        )
        .unwrap();
        let user = current_user();
        let mut sftp = Sftp {
            child: None,
            port,
            user,
            host_public_key,
            dir,
        };
        sftp.spawn();
        sftp
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The port sshd listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user to log in as: the one running the tests (`root` in CI).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The client's private key (OpenSSH format, ed25519, no passphrase, mode 0600).
    pub fn private_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// A `known_hosts` file holding `[127.0.0.1]:PORT <host key>` and nothing else.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// The server's public host key, `ssh-ed25519 AAAA…`, for clients that check it
    /// themselves.
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// The data folder, an absolute path on this machine and on the server alike: where a
    /// repository test points its SFTP root, and where it looks at what was written. SFTP
    /// paths that are not absolute start there too.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// sshd's log (`-e`: to stderr, here to this file).
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }

    /// Kills sshd with SIGKILL, as a crash would. Sessions already open run on in their
    /// own processes until their client leaves; new connections are refused.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `ssh`-family options that make a client use the fixture's key and known hosts only,
    /// without asking anything: `-i KEY -o UserKnownHostsFile=… -o IdentitiesOnly=yes …`.
    /// The port option differs between `ssh` (`-p`) and `sftp` (`-P`) and is left out.
    pub fn client_options(&self) -> Vec<String> {
        vec![
            "-i".to_string(),
            self.private_key().display().to_string(),
            "-o".to_string(),
            format!("UserKnownHostsFile={}", self.known_hosts().display()),
            "-o".to_string(),
            "GlobalKnownHostsFile=/dev/null".to_string(),
            "-o".to_string(),
            "StrictHostKeyChecking=yes".to_string(),
            "-o".to_string(),
            "IdentitiesOnly=yes".to_string(),
            "-o".to_string(),
            "BatchMode=yes".to_string(),
            "-F".to_string(),
            "/dev/null".to_string(),
        ]
    }

    fn spawn(&mut self) {
        let log = fs::File::create(self.log()).unwrap();
        let mut cmd = Command::new(SSHD);
        cmd.arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}")),
        );
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sshd exited ({status}) while starting{}", self.log_text());
            }
            if self.banner().is_some_and(|b| b.starts_with("SSH-2.0-")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not answer on 127.0.0.1:{} within {READY_WITHIN:?}{}",
                self.port,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first bytes sshd sends on a new connection.
    fn banner(&self) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut buf = [0; 64];
        let n = stream.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    fn log_text(&self) -> String {
        format!(
            "\n--- {} ---\n{}",
            self.log().display(),
            fs::read_to_string(self.log()).unwrap_or_default()
        )
    }
}

impl Drop for Sftp {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An ed25519 key pair without passphrase at `path` and `path.pub`.
fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "holdfast-test", "-f"])
        .arg(path)
        .output()
        .expect("running ssh-keygen (openssh-client; see scripts/test-env.sh)");
    assert!(
        out.status.success(),
        "ssh-keygen for {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The name of the user running the tests, whom sshd lets in.
fn current_user() -> String {
    let out = Command::new("id")
        .arg("-un")
        .output()
        .expect("running id -un");
    assert!(out.status.success(), "id -un failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
