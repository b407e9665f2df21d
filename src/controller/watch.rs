//! Watching the specs folder. Any change of a spec file (create, write, delete, rename,
//! an editor's atomic save, a git checkout swapping many files) wakes the loop; our own
//! status files and temp files do not.
//!
//! The folder itself may be replaced: deleted and made again, moved away and back, or
//! swapped git-sync style (`ln -s wt-b tmp && mv -T tmp current`, with `--specs current`).
//! A watch on a folder stays with that folder, so it would go deaf. The watch therefore
//! follows the root: the folder holding the root is watched too, and whenever the root
//! is touched there (or, at the latest, [`CHECK_EVERY`]) the watch is set up again on
//! where the root is now, and the loop is woken.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::{Event, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::warn;

use crate::load::tree::{self, Identity};

/// Quiet time that ends a burst of events: a git checkout or an editor's save touches
/// several files within milliseconds, and they should make one reload.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// The longest a burst can hold the loop: a steady stream of events (a tool writing
/// under the specs folder all the time) must not keep runs' ends and signals waiting.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(1);

/// How often the root is looked at even without an event: a swap higher up the path
/// (a parent that is itself a swapped link) sends no event to any watch of ours.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A running watch of the specs folder; it stops when dropped.
pub struct SpecsWatch {
    stop: Arc<AtomicBool>,
}

impl Drop for SpecsWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts watching `root` recursively, following it when it is replaced; every relevant
/// change sends `()` on `tx`. Fails when `root` cannot be watched at the start.
pub fn watch(root: &Path, tx: mpsc::UnboundedSender<()>) -> notify::Result<SpecsWatch> {
    let root = std::path::absolute(root).map_err(notify::Error::io)?;
    let (raw_tx, raw_rx) = std::sync::mpsc::channel();
    // Links inside the tree are not followed: one leading out of it (`etclink -> /etc`)
    // must not have a whole other tree watched.
    let config = notify::Config::default().with_follow_symlinks(false);
    let watcher = notify::RecommendedWatcher::new(
        move |event: notify::Result<Event>| {
            // The thread below is gone only when the watch is stopping.
            let _ = raw_tx.send(event);
        },
        config,
    )?;
    let mut follow = Follow {
        root,
        watched: None,
        watcher,
    };
    let identity = tree::identity(&follow.root).map_err(|e| notify::Error::generic(&e))?;
    follow
        .watcher
        .watch(&identity.path, RecursiveMode::Recursive)?;
    follow.watched = Some(identity);
    if let Some(parent) = follow.root.parent() {
        // Not fatal: the periodic check still notices a replaced root.
        if let Err(e) = follow.watcher.watch(parent, RecursiveMode::NonRecursive) {
            warn!(folder = %parent.display(), "cannot watch the folder holding the specs folder: {e}");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::Builder::new()
        .name("specs-watch".into())
        .spawn(move || follow.run(&raw_rx, &tx, &stopped))
        .map_err(notify::Error::io)?;
    Ok(SpecsWatch { stop })
}

/// The watcher and where it watches the root now.
struct Follow {
    /// The root as given, made absolute (a link stays a link).
    root: PathBuf,
    /// Where the recursive watch is, when there is one.
    watched: Option<Identity>,
    watcher: notify::RecommendedWatcher,
}

impl Follow {
    fn run(
        mut self,
        raw: &std::sync::mpsc::Receiver<notify::Result<Event>>,
        tx: &mpsc::UnboundedSender<()>,
        stop: &AtomicBool,
    ) {
        while !stop.load(Ordering::Relaxed) {
            let (mut wake, mut root_touched) = (false, false);
            match raw.recv_timeout(CHECK_EVERY) {
                // Reading the specs (ours included) is not a change.
                Ok(Ok(e)) if matches!(e.kind, notify::EventKind::Access(_)) => {}
                Ok(Ok(e)) => {
                    wake = e.paths.is_empty();
                    for path in &e.paths {
                        if self.is_root(path) {
                            root_touched = true;
                        } else if self.relevant(path) {
                            wake = true;
                        }
                    }
                }
                // A watcher error (queue overflow) may hide changes: reload to be safe.
                Ok(Err(_)) => wake = true,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if self.refresh(root_touched) {
                wake = true;
            }
            // The loop is gone only when holdfast is stopping.
            if wake && tx.send(()).is_err() {
                return;
            }
        }
    }

    /// Whether `path` is the root itself, under the name it was given or where it is.
    fn is_root(&self, path: &Path) -> bool {
        path == self.root || self.watched.as_ref().is_some_and(|w| path == w.path)
    }

    /// Whether a change at `path` (seen by the recursive watch, or beside the root in
    /// its parent folder) can change the desired state.
    fn relevant(&self, path: &Path) -> bool {
        self.watched
            .as_ref()
            .is_some_and(|w| path.starts_with(&w.path) && relevant(&w.path, path))
    }

    /// Sets the watch up again where the root is now, when it moved or was replaced, or
    /// when `touched` says the root entry itself changed (a folder made again may get
    /// the same inode number). Returns whether the watch was set up again.
    fn refresh(&mut self, touched: bool) -> bool {
        let now = tree::identity(&self.root).ok();
        if !touched && now == self.watched {
            return false;
        }
        if let Some(old) = self.watched.take() {
            // A deleted folder's watch is already gone.
            let _ = self.watcher.unwatch(&old.path);
        }
        if let Some(identity) = now {
            match self.watcher.watch(&identity.path, RecursiveMode::Recursive) {
                Ok(()) => self.watched = Some(identity),
                Err(e) => warn!(
                    specs = %self.root.display(),
                    "cannot watch the specs folder, only the periodic resync will see changes: {e}"
                ),
            }
        }
        true
    }
}

/// Whether a changed path can change the desired state: a spec file, or a folder (a
/// renamed or deleted folder takes its spec files with it). Nothing inside a hidden
/// folder (`.git`) counts: the loader does not read there either.
fn relevant(root: &Path, path: &Path) -> bool {
    let inside = path.strip_prefix(root).unwrap_or(path);
    let mut parents = inside.components().rev().skip(1);
    if parents.any(|c| c.as_os_str().to_string_lossy().starts_with('.')) {
        return false;
    }
    let Some(name) = path.file_name().map(|n| n.to_string_lossy()) else {
        return true;
    };
    if crate::load::is_spec_file_name(&name) {
        return true;
    }
    let lower = name.to_ascii_lowercase();
    let is_file_like = lower.contains('.') || name.starts_with('.') || name.ends_with('~');
    // Status files, hidden and temp files, other extensions: not ours to react to.
    !is_file_like
}

/// Waits until no event came for [`DEBOUNCE`], swallowing the burst, but never longer
/// than [`MAX_DEBOUNCE`].
pub async fn debounce(rx: &mut mpsc::UnboundedReceiver<()>) {
    let deadline = tokio::time::Instant::now() + MAX_DEBOUNCE;
    loop {
        let quiet_until = (tokio::time::Instant::now() + DEBOUNCE).min(deadline);
        match tokio::time::timeout_at(quiet_until, rx.recv()).await {
            Ok(Some(())) if tokio::time::Instant::now() < deadline => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_temp_files_are_ignored() {
        let root = Path::new("/srv/.config/specs");
        for p in ["a.yaml", "dir/b.yml", "apps"] {
            assert!(relevant(root, &root.join(p)), "{p}");
        }
        // Inside a hidden folder of the tree nothing counts, whatever its name; a hidden
        // folder above the root does not matter.
        for p in [".git/objects/ab", ".git/HEAD", "apps/.cache/x.yaml", ".git"] {
            assert!(!relevant(root, &root.join(p)), "{p}");
        }
        for p in [
            "a.status.yaml",
            ".a.status.yaml.tmp-12",
            ".a.yaml.swp",
            "a.yaml~",
            "4913",
            "notes.txt",
        ] {
            let root = Path::new("/specs");
            let r = relevant(root, &root.join(p));
            // "4913" is vim's write test file: a bare name, taken as a folder; harmless.
            if p != "4913" {
                assert!(!r, "{p}");
            }
        }
    }

    /// Waits up to `limit` for an event; then swallows what follows it for a moment.
    async fn event_within(rx: &mut mpsc::UnboundedReceiver<()>, limit: Duration) -> bool {
        let seen = tokio::time::timeout(limit, rx.recv()).await.is_ok();
        quiet(rx).await;
        seen
    }

    /// Swallows events until none came for 300 ms.
    async fn quiet(rx: &mut mpsc::UnboundedReceiver<()>) {
        while tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_ok()
        {}
    }

    #[tokio::test]
    async fn the_watch_follows_a_folder_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let specs = dir.path().join("specs");
        std::fs::create_dir(&specs).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _watch = watch(&specs, tx).unwrap();
        std::fs::write(specs.join("a.yaml"), "a: 1\n").unwrap();
        assert!(event_within(&mut rx, Duration::from_secs(2)).await);

        std::fs::remove_dir_all(&specs).unwrap();
        std::fs::create_dir(&specs).unwrap();
        assert!(
            event_within(&mut rx, Duration::from_secs(2)).await,
            "the new folder"
        );
        // Well before the periodic check, a write in the new folder is seen.
        std::fs::write(specs.join("b.yaml"), "b: 1\n").unwrap();
        assert!(
            event_within(&mut rx, Duration::from_millis(500)).await,
            "a write in the folder made again"
        );
        std::fs::create_dir(specs.join("apps")).unwrap();
        quiet(&mut rx).await;
        std::fs::write(specs.join("apps/c.yaml"), "c: 1\n").unwrap();
        assert!(
            event_within(&mut rx, Duration::from_millis(500)).await,
            "a write in a new subfolder"
        );
    }

    #[tokio::test]
    async fn the_watch_follows_a_swapped_symlink() {
        let dir = tempfile::tempdir().unwrap();
        for tree in ["wt-a", "wt-b"] {
            std::fs::create_dir(dir.path().join(tree)).unwrap();
        }
        let current = dir.path().join("current");
        std::os::unix::fs::symlink("wt-a", &current).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _watch = watch(&current, tx).unwrap();
        std::fs::write(dir.path().join("wt-a/a.yaml"), "a: 1\n").unwrap();
        assert!(event_within(&mut rx, Duration::from_secs(2)).await);

        // git-sync's swap: a new link renamed over the old one.
        let tmp = dir.path().join("tmp-link");
        std::os::unix::fs::symlink("wt-b", &tmp).unwrap();
        std::fs::rename(&tmp, &current).unwrap();
        assert!(
            event_within(&mut rx, Duration::from_secs(2)).await,
            "the swap"
        );
        std::fs::write(dir.path().join("wt-b/b.yaml"), "b: 1\n").unwrap();
        assert!(
            event_within(&mut rx, Duration::from_millis(500)).await,
            "a write in the new target"
        );
        // The old target is no longer the specs folder.
        std::fs::write(dir.path().join("wt-a/old.yaml"), "a: 2\n").unwrap();
        assert!(!event_within(&mut rx, Duration::from_millis(500)).await);
    }

    #[tokio::test]
    async fn a_folder_link_out_of_the_tree_is_not_watched() {
        let dir = tempfile::tempdir().unwrap();
        let specs = dir.path().join("specs");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&specs).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, specs.join("etclink")).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _watch = watch(&specs, tx).unwrap();
        quiet(&mut rx).await;
        std::fs::write(outside.join("x.yaml"), "x: 1\n").unwrap();
        assert!(!event_within(&mut rx, Duration::from_millis(500)).await);
    }
}
