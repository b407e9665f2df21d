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

/// Starts watching `root` recursively; every relevant change sends `()` on `tx`. The
/// watcher stops when the returned value is dropped.
pub fn watch(
    root: &Path,
    tx: mpsc::UnboundedSender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        let relevant = match &event {
            // Reading the specs (ours included) is not a change.
            Ok(e) if matches!(e.kind, notify::EventKind::Access(_)) => false,
            Ok(e) => e.paths.is_empty() || e.paths.iter().any(|p| relevant(p)),
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
/// renamed or deleted folder takes its spec files with it).
fn relevant(path: &Path) -> bool {
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

/// Waits until no event came for [`DEBOUNCE`], swallowing the burst.
pub async fn debounce(rx: &mut mpsc::UnboundedReceiver<()>) {
    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_temp_files_are_ignored() {
        for p in ["a.yaml", "dir/b.yml", "apps"] {
            assert!(relevant(Path::new(p)), "{p}");
        }
        for p in [
            "a.status.yaml",
            ".a.status.yaml.tmp-12",
            ".a.yaml.swp",
            "a.yaml~",
            "4913",
            "notes.txt",
        ] {
            let r = relevant(Path::new(p));
            // "4913" is vim's write test file: a bare name, taken as a folder; harmless.
            if p != "4913" {
                assert!(!r, "{p}");
            }
        }
    }
}
