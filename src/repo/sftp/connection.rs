//! The SSH connection of an SFTP repository.
//!
//! The connection is an `ssh` multiplexing master (`openssh`), started with a private key
//! and a known-hosts file the spec names and nothing else: `-F` points at a configuration
//! holdfast writes, so neither the user's nor the system's ssh configuration, nor the
//! global known-hosts file, can change which host key is trusted, and a host whose key
//! is not in the given file is refused (`StrictHostKeyChecking yes`, `BatchMode yes`).
//! SFTP requests go through the master's `sftp` subsystem (`openssh-sftp-client`).
//!
//! One connection serves every call of a repository; a call that finds it broken
//! connects anew once and tries again. The master ends when the connection is closed,
//! and on its own a minute after its last channel closed, so a holdfast that was killed
//! leaves no `ssh` behind for long. Its control socket and configuration live in a
//! private `holdfast-ssh-*` folder of the system's temporary folder; one a killed
//! holdfast left is removed by a later connection once its master is gone.

use std::io;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, SessionBuilder};
use openssh_sftp_client::error::SftpErrorKind;
use openssh_sftp_client::{Error as SftpError, Sftp, SftpOptions};

use super::WRITES_IN_FLIGHT;
use crate::repo::remote::block_on;

/// How long one request (or one connection attempt) may go unanswered.
pub(super) const ANSWER_WITHIN: Duration = Duration::from_secs(120);
/// How long the TCP connection and the SSH handshake may take.
pub(super) const CONNECT_WITHIN: Duration = Duration::from_secs(30);
/// How long the master stays up after its last channel closed (a killed holdfast's).
pub(super) const MASTER_IDLE_SECONDS: usize = 60;
/// The name of a connection's private folder in the temporary folder starts so.
pub(super) const CONTROL_PREFIX: &str = "holdfast-ssh-";
/// A control folder without a master socket for this long was left by a killed holdfast.
pub(super) const STALE_AFTER: Duration = Duration::from_secs(600);
/// Where to connect and how, checked when the repository is opened.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) user: String,
    /// The folder, absolute, without a trailing `/` (empty for `/`).
    pub(super) root: String,
    pub(super) private_key: PathBuf,
    pub(super) known_hosts: PathBuf,
    /// `sftp://user@host:port/path`.
    pub(super) shown: String,
}

impl Target {
    pub(super) fn url(&self, key: &str) -> String {
        if key.is_empty() {
            self.shown.clone()
        } else {
            format!("{}/{key}", self.shown.trim_end_matches('/'))
        }
    }

    /// The server's path of a key; keys are relative, with plain names between `/`.
    pub(super) fn path(&self, key: &str) -> io::Result<String> {
        let key = key.trim_end_matches('/');
        if key.is_empty() {
            return Ok(if self.root.is_empty() {
                "/".to_string()
            } else {
                self.root.clone()
            });
        }
        if key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == ".." || part.contains('\0'))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a key of this repository", self.url(key)),
            ));
        }
        Ok(format!("{}/{key}", self.root))
    }

    /// The ssh configuration holdfast connects with, in place of the user's and the
    /// system's.
    pub(super) fn ssh_config(&self) -> String {
        format!(
            "# Written by holdfast for one connection; only these settings apply.
UserKnownHostsFile {known_hosts}
GlobalKnownHostsFile /dev/null
StrictHostKeyChecking yes
UpdateHostKeys no
CheckHostIP no
IdentityAgent none
PasswordAuthentication no
KbdInteractiveAuthentication no
ServerAliveInterval 15
ServerAliveCountMax 4
",
            known_hosts = config_path(&self.known_hosts),
        )
    }

    /// A failed connection attempt, said in terms of the spec's fields.
    pub(super) fn connect_error(&self, e: openssh::Error) -> io::Error {
        let said = match &e {
            openssh::Error::Connect(io) | openssh::Error::Master(io) => io.to_string(),
            other => other.to_string(),
        };
        let said = ssh_said(&said);
        let shown = &self.shown;
        if let openssh::Error::Connect(io) = &e
            && io.kind() == io::ErrorKind::NotFound
        {
            return io::Error::new(
                io::ErrorKind::NotFound,
                format!("{shown}: cannot run `ssh` ({said}); install OpenSSH's client"),
            );
        }
        if said.contains("Host key verification failed")
            || said.contains("host key is known")
            || said.contains("HOST IDENTIFICATION HAS CHANGED")
        {
            return io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{shown}: the server's host key is not in the known-hosts file {} \
                     (spec.storage.sftp.knownHostsFile), so the server is not trusted; add \
                     its key for `{}` there after checking it (ssh-keyscan -p {} {} shows \
                     what the server offers). ssh said: {said}",
                    self.known_hosts.display(),
                    known_hosts_name(&self.host, self.port),
                    self.port,
                    self.host,
                ),
            );
        }
        if said.contains("Permission denied") {
            return io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{shown}: the server refused the login of `{}` with the key {} \
                     (spec.storage.sftp.user, privateKeyFile): add its public key to that \
                     user's authorized_keys on the server. ssh said: {said}",
                    self.user,
                    self.private_key.display(),
                ),
            );
        }
        let kind = if said.contains("Connection refused") {
            io::ErrorKind::ConnectionRefused
        } else if said.contains("timed out") {
            io::ErrorKind::TimedOut
        } else if said.contains("Could not resolve") {
            io::ErrorKind::NotFound
        } else {
            io::ErrorKind::ConnectionAborted
        };
        io::Error::new(kind, format!("{shown}: cannot connect. ssh said: {said}"))
    }

    /// A failed request, naming the object's URL.
    pub(super) fn error(&self, key: &str, e: SftpError) -> io::Error {
        let url = self.url(key);
        match e {
            SftpError::SftpError(SftpErrorKind::NoSuchFile, _) => {
                io::Error::new(io::ErrorKind::NotFound, format!("{url}: no such file"))
            }
            SftpError::SftpError(SftpErrorKind::PermDenied, msg) => io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{url}: the server denied it ({msg})"),
            ),
            SftpError::SftpError(kind, msg) => {
                io::Error::other(format!("{url}: the server answered {kind:?} ({msg})"))
            }
            SftpError::IOError(io) if io.kind() == io::ErrorKind::TimedOut => io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{url}: no answer within {}s", ANSWER_WITHIN.as_secs()),
            ),
            other => io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("{url}: the connection broke ({other})"),
            ),
        }
    }
}

/// What ssh wrote, on one line, without the banner it prints around a changed host key.
pub(super) fn ssh_said(text: &str) -> String {
    const BANNER: [&str; 9] = [
        "@",
        "IT IS POSSIBLE",
        "Someone could",
        "It is also possible",
        "Please contact",
        "Add correct host key",
        "Offending",
        "remove with",
        "ssh-keygen -f",
    ];
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !BANNER.iter().any(|b| l.starts_with(b)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A path in ssh's configuration: quoted, with `%` (a token there) doubled.
pub(super) fn config_path(path: &Path) -> String {
    format!("\"{}\"", path.display().to_string().replace('%', "%%"))
}

/// How a known-hosts file names a server: `host`, or `[host]:port` off port 22.
pub(super) fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Whether a request failed because the connection did (as opposed to the server
/// answering no).
pub(super) fn is_lost(e: &SftpError) -> bool {
    !matches!(e, SftpError::SftpError(..))
}

pub(super) fn is_not_found(e: &SftpError) -> bool {
    matches!(e, SftpError::SftpError(SftpErrorKind::NoSuchFile, _))
}

/// A request under [`ANSWER_WITHIN`]; running out of time counts as a lost connection.
pub(super) async fn answered<T>(
    f: impl std::future::Future<Output = Result<T, SftpError>>,
) -> Result<T, SftpError> {
    match tokio::time::timeout(ANSWER_WITHIN, f).await {
        Ok(result) => result,
        Err(_) => Err(SftpError::IOError(io::Error::new(
            io::ErrorKind::TimedOut,
            "no answer",
        ))),
    }
}

/// One SSH connection and its SFTP channel, with the folder of its control socket and
/// configuration (removed after the connection is closed).
#[derive(Debug)]
pub(super) struct Connection {
    pub(super) sftp: Option<Sftp>,
    pub(super) _dir: tempfile::TempDir,
}

impl Connection {
    pub(super) async fn open(target: &Target) -> io::Result<Connection> {
        use std::os::unix::fs::PermissionsExt;
        sweep_control_folders(&std::env::temp_dir(), STALE_AFTER);
        let dir = tempfile::Builder::new()
            .prefix(CONTROL_PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "{}: creating a folder for ssh's control socket in {}: {e}",
                        target.shown,
                        std::env::temp_dir().display()
                    ),
                )
            })?;
        let config = dir.path().join("ssh_config");
        std::fs::write(&config, target.ssh_config()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: writing {}: {e}", target.shown, config.display()),
            )
        })?;
        let mut builder = SessionBuilder::default();
        builder
            .user(target.user.clone())
            .port(target.port)
            .keyfile(&target.private_key)
            .config_file(&config)
            .known_hosts_check(KnownHosts::Strict)
            .connect_timeout(CONNECT_WITHIN)
            .server_alive_interval(Duration::from_secs(15))
            .control_directory(dir.path())
            .control_persist(ControlPersist::IdleFor(
                NonZeroUsize::new(MASTER_IDLE_SECONDS).expect("not zero"),
            ));
        let session = tokio::time::timeout(ANSWER_WITHIN, builder.connect(&target.host))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{}: cannot connect: no answer within {}s",
                        target.shown,
                        ANSWER_WITHIN.as_secs()
                    ),
                )
            })?
            .map_err(|e| target.connect_error(e))?;
        let options = SftpOptions::new()
            .tokio_compat_file_write_limit(NonZeroUsize::new(WRITES_IN_FLIGHT).expect("not zero"));
        let sftp = answered(Sftp::from_session(session, options))
            .await
            .map_err(|e| {
                let mut e = target.error("", e);
                if e.kind() == io::ErrorKind::ConnectionAborted {
                    e = io::Error::new(
                        e.kind(),
                        format!("{e}; does the server offer the `sftp` subsystem?"),
                    );
                }
                e
            })?;
        Ok(Connection {
            sftp: Some(sftp),
            _dir: dir,
        })
    }

    pub(super) fn sftp(&self) -> &Sftp {
        self.sftp.as_ref().expect("open until dropped")
    }
}

/// Removes the private folders of connections whose holdfast was killed: this user's,
/// with no master socket in them (the master is gone), untouched for `stale` (so not one
/// still connecting). A killed holdfast leaves its folder, whose master ends on its own a
/// minute after the last channel closed.
pub(super) fn sweep_control_folders(temp: &Path, stale: Duration) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    let me = rustix::process::geteuid().as_raw();
    let is_stale = |path: &Path| {
        std::fs::symlink_metadata(path)
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= stale)
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry
            .file_name()
            .to_string_lossy()
            .starts_with(CONTROL_PREFIX)
            && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == me);
        if !ours || !is_stale(&path) {
            continue;
        }
        let inner: Vec<PathBuf> = std::fs::read_dir(&path)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        let live = inner
            .iter()
            .filter(|p| p.is_dir())
            .any(|p| p.join("master").exists() || !is_stale(p));
        if !live {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

impl Drop for Connection {
    /// Closes the SFTP channel and the master (`ssh -O exit`) before the control
    /// socket's folder goes.
    fn drop(&mut self) {
        if let Some(sftp) = self.sftp.take() {
            // The timer needs the runtime: made inside the future.
            let _ = block_on(async move {
                tokio::time::timeout(Duration::from_secs(10), sftp.close()).await
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        Target {
            host: "backup.example".to_string(),
            port: 2222,
            user: "holdfast".to_string(),
            root: path.trim_end_matches('/').to_string(),
            private_key: PathBuf::from("/etc/holdfast/id_ed25519"),
            known_hosts: PathBuf::from("/etc/holdfast/known 100%"),
            shown: format!("sftp://holdfast@backup.example:2222{path}"),
        }
    }

    #[test]
    fn only_this_users_control_folders_without_a_master_are_swept() {
        let temp = tempfile::tempdir().unwrap();
        let left = temp.path().join("holdfast-ssh-left");
        std::fs::create_dir_all(left.join(".ssh-connectionX")).unwrap();
        std::fs::write(left.join(".ssh-connectionX/log"), "").unwrap();
        let live = temp.path().join("holdfast-ssh-live");
        std::fs::create_dir_all(live.join(".ssh-connectionY")).unwrap();
        std::fs::write(live.join(".ssh-connectionY/master"), "").unwrap();
        let other = temp.path().join("someone-else");
        std::fs::create_dir(&other).unwrap();
        // Nothing is old enough yet: all stay.
        sweep_control_folders(temp.path(), Duration::from_secs(600));
        assert!(left.exists() && live.exists());
        sweep_control_folders(temp.path(), Duration::ZERO);
        assert!(!left.exists(), "a folder whose master is gone is removed");
        assert!(live.exists(), "a folder with a master socket stays");
        assert!(other.exists());
    }

    #[test]
    fn keys_are_paths_below_the_folder_and_cannot_leave_it() {
        let t = target("/srv/backups/");
        assert_eq!(t.path("nas/a/b.zst").unwrap(), "/srv/backups/nas/a/b.zst");
        assert_eq!(t.path("nas/").unwrap(), "/srv/backups/nas");
        assert_eq!(t.path("").unwrap(), "/srv/backups");
        for bad in ["../etc/passwd", "nas/../../x", "nas//x", "/abs", "nas/./x"] {
            let e = t.path(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
            assert!(
                e.to_string()
                    .contains("sftp://holdfast@backup.example:2222")
            );
        }
        assert_eq!(target("/").path("nas/x").unwrap(), "/nas/x");
        assert_eq!(target("/").path("").unwrap(), "/");
    }

    #[test]
    fn the_ssh_configuration_trusts_only_the_given_known_hosts_file() {
        let config = target("/srv").ssh_config();
        assert!(config.contains("UserKnownHostsFile \"/etc/holdfast/known 100%%\"\n"));
        assert!(config.contains("GlobalKnownHostsFile /dev/null\n"));
        assert!(config.contains("StrictHostKeyChecking yes\n"));
        assert!(config.contains("IdentityAgent none\n"));
    }

    #[test]
    fn refusals_name_the_server_the_file_and_the_field() {
        let t = target("/srv");
        let said = "No ED25519 host key is known for [backup.example]:2222 and you have \
                    requested strict checking.\r\nHost key verification failed.";
        let e = t.connect_error(openssh::Error::Connect(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            said,
        )));
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let text = e.to_string();
        assert!(
            text.contains("sftp://holdfast@backup.example:2222/srv"),
            "{text}"
        );
        assert!(text.contains("/etc/holdfast/known 100%"), "{text}");
        assert!(text.contains("knownHostsFile"), "{text}");
        assert!(text.contains("[backup.example]:2222"), "{text}");

        let changed = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\r
Someone could be eavesdropping on you right now (man-in-the-middle attack)!\r
It is also possible that a host key has just been changed.\r
The fingerprint for the ED25519 key sent by the remote host is\r
SHA256:FGeov8CjKCOjX9hqjgaAK1mN6X1izSImqaAiRN+Oorg.\r
Please contact your system administrator.\r
Add correct host key in /k to get rid of this message.\r
Offending ED25519 key in /k:1\r
  remove with:\r
  ssh-keygen -f \"/k\" -R \"[backup.example]:2222\"\r
Host key for [backup.example]:2222 has changed and you have requested strict checking.\r
Host key verification failed.";
        let e = t.connect_error(openssh::Error::Connect(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            changed,
        )));
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(
            e.to_string().ends_with(
                "ssh said: The fingerprint for the ED25519 key sent by the remote host is \
                 SHA256:FGeov8CjKCOjX9hqjgaAK1mN6X1izSImqaAiRN+Oorg. Host key for \
                 [backup.example]:2222 has changed and you have requested strict checking. \
                 Host key verification failed."
            ),
            "{e}"
        );

        let e = t.connect_error(openssh::Error::Connect(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "ssh: connect to host backup.example port 2222: Connection refused",
        )));
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);

        let e = t.error(
            "nas/x",
            SftpError::IOError(io::Error::new(io::ErrorKind::TimedOut, "no answer")),
        );
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(
            e.to_string()
                .starts_with("sftp://holdfast@backup.example:2222/srv/nas/x: no answer"),
            "{e}"
        );
    }
}
