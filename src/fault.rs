//! Named crash points, for proving what a crash at each of them leaves behind.
//!
//! Code that writes anything durable, or that stops and starts containers, calls
//! [`point`] with a name (`area.where`) between its steps. In an ordinary build that is an
//! empty function. In a build with the `fault-injection` Cargo feature (only the tests
//! make one), a point whose name is in `HOLDFAST_FAULT` (a name, or a comma-separated
//! list) kills the process with SIGKILL: no destructor, no signal handler and no
//! `finally` runs, exactly as when the machine loses power or the OOM killer strikes.
//! `HOLDFAST_FAULT_AFTER=N` fires at the Nth hit instead of the first, for points inside
//! loops (each file archived, each buffer extracted). `tests/crash_matrix.rs` kills
//! holdfast at every point and checks what the next start makes of it.

use std::sync::Arc;

use crate::progress::Progress;

/// Every crash point, each called exactly once in the source (a unit test checks it, so
/// this list, the code, the crash matrix and the README cannot drift apart).
pub const POINTS: &[&str] = &[
    "backup.after-dump",
    "backup.after-journal",
    "backup.after-stop",
    "backup.mid-archive",
    "backup.before-start",
    "backup.after-start",
    "backup.before-manifest",
    "backup.after-manifest",
    "backup.before-rename",
    "backup.after-rename",
    "prune.after-mark",
    "prune.after-rename",
    "prune.before-forget",
    "verify.mid-read",
    "restore.after-stop",
    "restore.mid-extract",
    "restore.before-swap",
    "restore.after-swap",
    "restore.before-start",
    "restore.new-volume.before-create",
    "restore.new-volume.after-create",
    "restore.new-volume.mid-extract",
];

/// Points that do not kill but stop the thread that reaches them for good, as a wedged
/// loop would: `controller.stall` proves that a stuck reconcile loop stops feeding
/// systemd's watchdog. Armed the same way (`HOLDFAST_FAULT`, `HOLDFAST_FAULT_AFTER`);
/// kept apart from [`POINTS`], which the crash matrix kills at.
pub const STALLS: &[&str] = &["controller.stall"];

/// The stall point `name`: blocks the calling thread forever if the build has fault
/// injection and `HOLDFAST_FAULT` names the point (at its `HOLDFAST_FAULT_AFTER`th hit).
#[cfg(feature = "fault-injection")]
pub fn stall(name: &'static str) {
    if armed::armed_here(name) {
        eprintln!("fault injection: stalling at {name}");
        loop {
            std::thread::park();
        }
    }
}

/// The stall point `name`: nothing, in a build without fault injection.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn stall(_name: &'static str) {}

/// The crash point `name`: kills this process if the build has fault injection and
/// `HOLDFAST_FAULT` names the point (and this is its `HOLDFAST_FAULT_AFTER`th hit).
#[cfg(feature = "fault-injection")]
pub fn point(name: &'static str) {
    armed::hit(name);
}

/// The crash point `name`: nothing, in a build without fault injection.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &'static str) {}

#[cfg(feature = "fault-injection")]
mod armed {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// What the environment asked for, read once.
    struct Armed {
        names: Vec<String>,
        after: u64,
    }

    static ARMED: OnceLock<Armed> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);

    fn armed() -> &'static Armed {
        ARMED.get_or_init(|| Armed {
            names: std::env::var("HOLDFAST_FAULT")
                .unwrap_or_default()
                .split(',')
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect(),
            after: std::env::var("HOLDFAST_FAULT_AFTER")
                .ok()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(1),
        })
    }

    /// Counts a hit of `name` when it is armed; whether this hit is the one to act on.
    pub(super) fn armed_here(name: &'static str) -> bool {
        let armed = armed();
        armed.names.iter().any(|n| n == name)
            && HITS.fetch_add(1, Ordering::SeqCst) + 1 >= armed.after
    }

    pub(super) fn hit(name: &'static str) {
        if !armed_here(name) {
            return;
        }
        eprintln!("fault injection: killing at {name}");
        // SAFETY: kill(2) with our own pid and a valid signal number has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        // SIGKILL to oneself is delivered before kill(2) returns; nothing runs after it.
        loop {
            std::thread::park();
        }
    }
}

/// A progress that passes everything on and calls a crash point after each buffer: the
/// point fires in the middle of streaming work (archiving, extracting).
pub struct AtEachBuffer {
    inner: Arc<dyn Progress>,
    point: fn(),
}

impl AtEachBuffer {
    /// Wraps `inner`; `point` is a closure calling [`point`] with the point's name.
    pub fn wrap(inner: Arc<dyn Progress>, point: fn()) -> Arc<dyn Progress> {
        Arc::new(AtEachBuffer { inner, point })
    }
}

impl Progress for AtEachBuffer {
    fn run(&self, id: &str) {
        self.inner.run(id);
    }

    fn phase(&self, what: &str) {
        self.inner.phase(what);
    }

    fn item(&self, name: &str) {
        self.inner.item(name);
    }

    fn bytes(&self, n: u64) {
        self.inner.bytes(n);
        (self.point)();
    }

    fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path.display().to_string(), text));
            }
        }
    }

    /// The list, the code and the README name the same points, each point once.
    #[test]
    fn every_listed_point_is_called_exactly_once_and_documented() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        sources(&root.join("src"), &mut files);
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let calls = POINTS
            .iter()
            .map(|name| (name, "point"))
            .chain(STALLS.iter().map(|name| (name, "stall")));
        for (name, function) in calls {
            let call = format!("fault::{function}(\"{name}\")");
            let places: Vec<&str> = files
                .iter()
                .flat_map(|(path, text)| {
                    std::iter::repeat_n(path.as_str(), text.matches(&call).count())
                })
                .collect();
            assert_eq!(places.len(), 1, "{call} is called at {places:?}");
            assert!(
                readme.contains(&format!("`{name}`")),
                "README does not list `{name}`"
            );
        }
        // And no call names a point missing from the list.
        for (needle, list) in [("fault::point(\"", POINTS), ("fault::stall(\"", STALLS)] {
            for (path, text) in &files {
                for (at, _) in text.match_indices(needle) {
                    let rest = &text[at + needle.len()..];
                    let name = &rest[..rest.find('"').unwrap()];
                    assert!(list.contains(&name), "{path}: {name:?} is not listed");
                }
            }
        }
        let mut unique = [POINTS, STALLS].concat();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            POINTS.len() + STALLS.len(),
            "a point is listed twice"
        );
        assert!(POINTS.len() >= 20);
    }
}
