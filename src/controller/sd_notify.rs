//! Telling systemd how the daemon is doing, through its notify protocol (`sd_notify(3)`),
//! written by hand: one datagram of `KEY=value` lines to the socket in `$NOTIFY_SOCKET`
//! (a path, or an abstract socket when it starts with `@`).
//!
//! The loop sends `READY=1` once its first pass is done (statuses written), a `STATUS=`
//! line after every pass (what `systemctl status holdfast` shows), `WATCHDOG=1` from its
//! own iterations, and `STOPPING=1` when a signal asks it to stop. The watchdog is fed
//! from the loop and not from a timer thread on purpose: a loop that wedges stops feeding
//! it, and systemd (`WatchdogSec=`) kills and restarts the daemon.
//!
//! Without `$NOTIFY_SOCKET` (holdfast started by hand, in a container, by the tests) every
//! call does nothing. A message that cannot be sent is logged once and never stops the
//! daemon: systemd's view of holdfast matters less than the backups.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use tracing::{debug, warn};

use crate::spec::ObjectKey;
use crate::status::{ObjectStatus, READY};

/// How many failing objects the STATUS line names before it says "and N more".
const NAMED_FAILING: usize = 3;

/// The notify socket and the watchdog, as systemd handed them to this process.
pub struct SdNotify {
    target: Option<Target>,
    /// Half the watchdog interval: how often the loop feeds it.
    feed_every: Option<Duration>,
    fed: Option<Instant>,
    ready: bool,
    /// Whether a failed send was logged already.
    warned: bool,
}

struct Target {
    socket: UnixDatagram,
    address: SocketAddr,
    /// `$NOTIFY_SOCKET` as given, for the log.
    shown: String,
}

impl SdNotify {
    /// Speaks to nobody: every call does nothing.
    pub fn off() -> SdNotify {
        SdNotify {
            target: None,
            feed_every: None,
            fed: None,
            ready: false,
            warned: false,
        }
    }

    /// What systemd put in this process's environment: `NOTIFY_SOCKET`, `WATCHDOG_USEC`
    /// and `WATCHDOG_PID`.
    pub fn from_env() -> SdNotify {
        let var = |name| std::env::var(name).ok();
        SdNotify::from_vars(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    }

    /// As [`SdNotify::from_env`], from the variables' values and this process's id. A
    /// socket that cannot be opened or a watchdog value that is not a number is logged
    /// and left off.
    pub fn from_vars(
        socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        pid: u32,
    ) -> SdNotify {
        let mut notify = SdNotify::off();
        let Some(shown) = socket.filter(|s| !s.is_empty()) else {
            return notify;
        };
        let target = address(shown).and_then(|address| {
            Ok(Target {
                socket: UnixDatagram::unbound()?,
                address,
                shown: shown.to_string(),
            })
        });
        match target {
            Ok(t) => notify.target = Some(t),
            Err(e) => {
                warn!("NOTIFY_SOCKET={shown}: cannot speak to systemd there: {e}");
                return notify;
            }
        }
        notify.feed_every = watchdog(watchdog_usec, watchdog_pid, pid);
        notify
    }

    /// How often the loop must feed the watchdog (half its interval), when systemd
    /// watches this process.
    pub fn feed_every(&self) -> Option<Duration> {
        self.feed_every
    }

    /// How long until the watchdog must be fed again; zero when it is due now.
    pub fn feed_in(&self) -> Option<Duration> {
        let every = self.feed_every?;
        Some(match self.fed {
            Some(at) => every.saturating_sub(at.elapsed()),
            None => Duration::ZERO,
        })
    }

    /// Sends `WATCHDOG=1` when half the watchdog interval has passed since the last one.
    /// Called from each iteration of the loop, never from elsewhere.
    pub fn feed(&mut self) {
        if self.feed_in() == Some(Duration::ZERO) {
            self.fed = Some(Instant::now());
            self.send(&[("WATCHDOG", "1")]);
        }
    }

    /// After a pass: `STATUS=` with `status`, and `READY=1` with the first.
    pub fn pass_done(&mut self, status: &str) {
        if self.ready {
            self.send(&[("STATUS", status)]);
        } else {
            self.ready = true;
            self.send(&[("READY", "1"), ("STATUS", status)]);
        }
    }

    /// `STATUS=` alone, for a pass that could not be done.
    pub fn status(&mut self, status: &str) {
        self.send(&[("STATUS", status)]);
    }

    /// `STOPPING=1` with a last `STATUS=`.
    pub fn stopping(&mut self, status: &str) {
        self.send(&[("STOPPING", "1"), ("STATUS", status)]);
    }

    fn send(&mut self, fields: &[(&str, &str)]) {
        let Some(target) = &self.target else {
            return;
        };
        let text = message(fields);
        match target.socket.send_to_addr(text.as_bytes(), &target.address) {
            Ok(_) => debug!(message = %text.replace('\n', " "), "told systemd"),
            Err(e) if !self.warned => {
                self.warned = true;
                warn!(
                    "NOTIFY_SOCKET={}: cannot tell systemd how holdfast is ({e}); carrying on without",
                    target.shown
                );
            }
            Err(_) => {}
        }
    }
}

/// The socket address `$NOTIFY_SOCKET` names: a path (absolute, as systemd gives), or an
/// abstract socket for a value starting with `@` (the rest is its name).
pub fn address(socket: &str) -> io::Result<SocketAddr> {
    if let Some(name) = socket.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        return SocketAddr::from_abstract_name(name.as_bytes());
    }
    if !socket.starts_with('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither an absolute path nor an abstract socket (`@name`)",
        ));
    }
    SocketAddr::from_pathname(PathBuf::from(socket))
}

/// One datagram: a `KEY=value` line per field. A line break inside a value would start a
/// new field, so it becomes a space.
pub fn message(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(key, value)| format!("{key}={}\n", value.replace(['\n', '\r'], " ")))
        .collect()
}

/// Half the watchdog interval, when `WATCHDOG_USEC` sets one for this process:
/// `WATCHDOG_PID` unset or this process's id (a child started by holdfast that
/// inherited the variables must not feed the parent's watchdog).
fn watchdog(usec: Option<&str>, watchdog_pid: Option<&str>, pid: u32) -> Option<Duration> {
    let usec = usec?.trim();
    if let Some(owner) = watchdog_pid.map(str::trim).filter(|p| !p.is_empty())
        && owner.parse::<u32>().ok() != Some(pid)
    {
        return None;
    }
    match usec.parse::<u64>() {
        Ok(0) => None,
        Ok(n) => Some(Duration::from_micros(n) / 2),
        Err(_) => {
            warn!(
                "WATCHDOG_USEC={usec}: not a number of microseconds; not feeding systemd's watchdog"
            );
            None
        }
    }
}

/// The STATUS line of a pass, e.g. `12 objects, 1 failing (nextcloud-nightly), next run
/// nextcloud-nightly at 2026-12-08T03:00:00Z`. An object fails when its `Ready` condition
/// is False for any reason but a first run in progress (a failed or interrupted run, an
/// invalid spec, a repository that does not answer, a held restore).
pub fn summary(
    statuses: &[(PathBuf, ObjectStatus)],
    next_schedule: &BTreeMap<ObjectKey, DateTime<Utc>>,
    running: usize,
) -> String {
    let count = statuses.len();
    let mut line = format!("{count} object{}", if count == 1 { "" } else { "s" });
    if running > 0 {
        line.push_str(&format!(", {running} running"));
    }
    let failing: Vec<&str> = statuses
        .iter()
        .filter(|(_, o)| {
            o.status
                .conditions
                .iter()
                .any(|c| c.type_ == READY && c.status == "False" && c.reason != "Running")
        })
        .map(|(_, o)| o.name.as_str())
        .collect();
    if !failing.is_empty() {
        let named = failing[..failing.len().min(NAMED_FAILING)].join(", ");
        let more = failing.len().saturating_sub(NAMED_FAILING);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        line.push_str(&format!(", {} failing ({named}{more})", failing.len()));
    }
    match next_schedule.iter().min_by_key(|(key, at)| (**at, *key)) {
        Some((key, at)) => line.push_str(&format!(
            ", next run {} at {}",
            key.name,
            at.to_rfc3339_opts(SecondsFormat::Secs, true)
        )),
        None => line.push_str(", no run scheduled"),
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Kind;
    use crate::status::{Condition, Status};

    fn object(name: &str, ready: Option<(&str, &str)>) -> (PathBuf, ObjectStatus) {
        let conditions = ready
            .map(|(status, reason)| Condition {
                type_: READY.to_string(),
                status: status.to_string(),
                reason: reason.to_string(),
                message: String::new(),
                last_transition_time: DateTime::UNIX_EPOCH,
            })
            .into_iter()
            .collect();
        let status = ObjectStatus {
            kind: Kind::BackupPolicy,
            name: name.to_string(),
            status: Status {
                conditions,
                ..Status::default()
            },
        };
        (PathBuf::from(format!("{name}.yaml")), status)
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            kind: Kind::BackupPolicy,
            name: name.to_string(),
        }
    }

    #[test]
    fn the_status_line_counts_objects_names_the_failing_and_the_next_run() {
        let mut statuses = vec![object("nextcloud-nightly", Some(("False", "Failed")))];
        for i in 0..11 {
            statuses.push(object(&format!("app-{i:02}"), Some(("True", "Succeeded"))));
        }
        let next = BTreeMap::from([
            (key("app-00"), at("2026-12-08T04:00:00Z")),
            (key("nextcloud-nightly"), at("2026-12-08T03:00:00Z")),
        ]);
        assert_eq!(
            summary(&statuses, &next, 0),
            "12 objects, 1 failing (nextcloud-nightly), next run nextcloud-nightly at 2026-12-08T03:00:00Z"
        );
    }

    #[test]
    fn the_status_line_says_what_runs_names_three_failing_and_no_schedule() {
        let statuses = vec![
            object("a", Some(("False", "InvalidSpec"))),
            object("b", Some(("False", "Interrupted"))),
            object("c", Some(("False", "PartiallyFailed"))),
            object("d", Some(("False", "Failed"))),
            // A first run in progress is not a failure, nor is a status with no condition.
            object("e", Some(("False", "Running"))),
            object("f", None),
        ];
        assert_eq!(
            summary(&statuses, &BTreeMap::new(), 2),
            "6 objects, 2 running, 4 failing (a, b, c and 1 more), no run scheduled"
        );
        assert_eq!(
            summary(&[object("one", None)], &BTreeMap::new(), 0),
            "1 object, no run scheduled"
        );
    }

    #[test]
    fn a_message_is_one_line_per_field_and_a_value_never_breaks_it() {
        assert_eq!(
            message(&[("READY", "1"), ("STATUS", "2 objects,\nno run")]),
            "READY=1\nSTATUS=2 objects, no run\n"
        );
        assert_eq!(message(&[("WATCHDOG", "1")]), "WATCHDOG=1\n");
    }

    #[test]
    fn an_at_sign_names_an_abstract_socket_and_a_slash_a_path() {
        use std::os::linux::net::SocketAddrExt;
        let abstract_ = address("@holdfast/notify").unwrap();
        assert_eq!(abstract_.as_abstract_name(), Some(&b"holdfast/notify"[..]));
        assert_eq!(abstract_.as_pathname(), None);
        let path = address("/run/systemd/notify").unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        assert!(address("relative/notify").is_err());
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("holdfast-test-{}", std::process::id());
        let listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let mut notify = SdNotify::from_vars(Some(&format!("@{name}")), None, None, 1);
        notify.pass_done("1 object, no run scheduled");
        notify.pass_done("1 object, no run scheduled");
        notify.stopping("stopping");
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..3 {
            let n = listener.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(
            got,
            [
                "READY=1\nSTATUS=1 object, no run scheduled\n",
                "STATUS=1 object, no run scheduled\n",
                "STOPPING=1\nSTATUS=stopping\n",
            ]
        );
        // Without a watchdog, feeding sends nothing.
        notify.feed();
        listener.set_nonblocking(true).unwrap();
        assert!(listener.recv(&mut buf).is_err());
    }

    #[test]
    fn the_watchdog_is_fed_at_half_its_interval_and_only_for_this_process() {
        assert_eq!(
            watchdog(Some("2000000"), None, 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            watchdog(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(1))
        );
        assert_eq!(watchdog(Some("2000000"), Some("8"), 7), None);
        assert_eq!(watchdog(Some("0"), None, 7), None);
        assert_eq!(watchdog(Some("soon"), None, 7), None);
        assert_eq!(watchdog(None, None, 7), None);
        // And without a socket, nothing at all, whatever WATCHDOG_USEC says.
        let off = SdNotify::from_vars(None, Some("2000000"), None, 7);
        assert_eq!(off.feed_in(), None);
    }

    #[test]
    fn feeding_waits_half_the_interval_between_watchdog_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut notify =
            SdNotify::from_vars(Some(path.to_str().unwrap()), Some("600000000"), None, 1);
        assert_eq!(notify.feed_in(), Some(Duration::ZERO));
        notify.feed();
        notify.feed();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1\n");
        assert!(listener.recv(&mut buf).is_err(), "fed twice at once");
        assert!(notify.feed_in().unwrap() > Duration::from_secs(299));
    }
}
