//! Reading the whole specs tree as one view that holds still.
//!
//! The specs folder is written by people and tools while holdfast reads it: a `mv` takes
//! it away for a second, git-sync swaps a symlink to a new worktree, an editor truncates a
//! file before writing it again. A view read in the middle of that is not what anyone
//! meant, and acting on it can delete archives. So a reading of the tree is used only
//! when
//! - the root and every folder below it can be read (a vanished root, a dangling link, a
//!   permission error mean "cannot tell", never "empty"), and
//! - two reads in a row agree (the same root, the same files with the same sizes, times
//!   and bytes), and
//! - a file changed in the last [`QUIET`] looks finished: it is not empty and parses as
//!   YAML. A writer that truncates and then writes gets that long to finish; a plain
//!   edit is taken at once.
//!
//! Otherwise the caller keeps the view it had and tries again later.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::diagnostic::Diagnostic;

use super::SourceFile;

/// The pause between two reads that must agree.
pub const PAUSE: Duration = Duration::from_millis(100);

/// How long a file that reads empty or cut short must have been left alone before that
/// content is believed.
pub const QUIET: Duration = Duration::from_millis(500);

/// How many reads are tried before giving up for now (about two seconds: the loop waits
/// for the reading, so a tree that never holds still must not keep a stop waiting long).
pub const TRIES: usize = 20;

/// Where a specs root really is. A swapped symlink or a folder deleted and made again
/// changes it, even when every file in it looks the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The root with every link resolved.
    pub path: PathBuf,
    pub device: u64,
    pub inode: u64,
    /// When the folder was made, where the file system says: a folder made again may get
    /// the inode number of the one deleted just before.
    pub created: Option<SystemTime>,
}

/// A spec file's path, size and modification time: cheap to take, and different whenever
/// a read could give something different.
pub type Stamp = (PathBuf, u64, Option<SystemTime>);

/// One read of the tree: every spec file's stamp and raw bytes.
#[derive(Debug, PartialEq)]
pub struct Reading {
    pub root: Identity,
    pub files: Vec<(Stamp, Result<Vec<u8>, String>)>,
    /// Paths that could not be read (dangling links named like specs).
    pub errors: Vec<Diagnostic>,
    /// What was left out on purpose: folder links leading out of the tree.
    pub warnings: Vec<Diagnostic>,
}

impl Reading {
    /// The stamps of its files, as [`stamps`] takes them.
    pub fn stamps(&self) -> Vec<Stamp> {
        self.files.iter().map(|(stamp, _)| stamp.clone()).collect()
    }

    /// Parses every file.
    pub fn sources(&self) -> Vec<SourceFile> {
        self.files
            .iter()
            .map(|((path, _, _), raw)| super::read_bytes(path, raw.clone()))
            .collect()
    }

    /// Whether every file changed in the [`QUIET`] before `now` looks finished: not
    /// empty, and valid YAML. A time in the future (a file copied from a host whose clock
    /// runs ahead) says nothing about a writer now.
    pub fn quiet(&self, now: SystemTime) -> bool {
        self.files.iter().all(|((path, _, modified), raw)| {
            let recent =
                modified.is_some_and(|m| now.duration_since(m).is_ok_and(|ago| ago < QUIET));
            !recent || looks_finished(path, raw)
        })
    }
}

/// Whether a file's content looks like what a writer meant: something a truncating writer
/// leaves behind halfway (nothing, or YAML cut off) does not.
fn looks_finished(path: &Path, raw: &Result<Vec<u8>, String>) -> bool {
    let source = super::read_bytes(path, raw.clone());
    source.errors.is_empty() && !source.documents.is_empty()
}

/// Why no view could be taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Unsettled {
    /// The root or a folder below it cannot be read: gone, a dangling link, no permission.
    Unreadable(String),
    /// It kept changing for every try.
    Moving,
}

impl std::fmt::Display for Unsettled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsettled::Unreadable(why) => f.write_str(why),
            Unsettled::Moving => write!(
                f,
                "it kept changing while it was read ({TRIES} reads, {PAUSE:?} apart)"
            ),
        }
    }
}

/// Where `root` really is, or why it cannot be told.
pub fn identity(root: &Path) -> Result<Identity, String> {
    let meta = fs::metadata(root)
        .map_err(|e| format!("cannot read the specs folder {}: {e}", root.display()))?;
    let path = fs::canonicalize(root)
        .map_err(|e| format!("cannot resolve the specs folder {}: {e}", root.display()))?;
    Ok(Identity {
        path,
        device: meta.dev(),
        inode: meta.ino(),
        created: meta.created().ok(),
    })
}

/// Reads the tree once. Fails when the root or one of its folders cannot be read.
pub fn read_once(root: &Path) -> Result<Reading, String> {
    let identity = identity(root)?;
    if fs::metadata(root).is_ok_and(|m| m.is_dir()) {
        fs::read_dir(root)
            .map_err(|e| format!("cannot read the specs folder {}: {e}", root.display()))?;
    }
    let found = super::discover(std::slice::from_ref(&root.to_path_buf()));
    if let Some(folder) = found.unread_folders.first() {
        return Err(format!(
            "cannot read the folder {} of the specs folder",
            folder.display()
        ));
    }
    let files = found
        .files
        .into_iter()
        .map(|path| {
            let meta = fs::metadata(&path).ok();
            let stamp = (
                path.clone(),
                meta.as_ref().map_or(0, |m| m.len()),
                meta.and_then(|m| m.modified().ok()),
            );
            let raw = super::read_raw(&path);
            (stamp, raw)
        })
        .collect();
    Ok(Reading {
        root: identity,
        files,
        errors: found.errors,
        warnings: found.warnings,
    })
}

/// The root's identity and the stamps of its spec files, without reading them: what the
/// periodic resync compares with the last reading.
pub fn stamps(root: &Path) -> (Option<Identity>, Vec<Stamp>) {
    let found = super::discover(std::slice::from_ref(&root.to_path_buf()));
    let stamps = found
        .files
        .into_iter()
        .map(|f| {
            let meta = fs::metadata(&f).ok();
            let size = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (f, size, modified)
        })
        .collect();
    (identity(root).ok(), stamps)
}

/// Reads the tree until it holds still (see the module's rules), sleeping [`PAUSE`]
/// between reads. Blocks: call it on a blocking worker.
pub fn read_stable(root: &Path) -> Result<Reading, Unsettled> {
    settle(
        || read_once(root),
        |r: &Reading| r.quiet(SystemTime::now()),
        TRIES,
        || std::thread::sleep(PAUSE),
    )
}

/// The rule itself: the first of two consecutive reads that agree and are `quiet`, within
/// `tries` reads, with `pause` between reads. A read that fails ends the attempt at once:
/// the caller keeps what it had.
pub fn settle<R: PartialEq>(
    mut read: impl FnMut() -> Result<R, String>,
    quiet: impl Fn(&R) -> bool,
    tries: usize,
    mut pause: impl FnMut(),
) -> Result<R, Unsettled> {
    let mut last = read().map_err(Unsettled::Unreadable)?;
    for _ in 1..tries {
        pause();
        let next = read().map_err(Unsettled::Unreadable)?;
        if next == last && quiet(&next) {
            return Ok(next);
        }
        last = next;
    }
    Err(Unsettled::Moving)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays `reads` in order, counting the pauses.
    fn play(
        reads: &[Result<&'static str, &'static str>],
        tries: usize,
    ) -> (Result<&'static str, Unsettled>, usize) {
        let mut next = reads.iter();
        let mut pauses = 0;
        let result = settle(
            || {
                next.next()
                    .expect("no more reads scripted")
                    .map_err(str::to_string)
            },
            |r: &&str| !r.ends_with('~'),
            tries,
            || pauses += 1,
        );
        (result, pauses)
    }

    #[test]
    fn two_reads_that_agree_are_taken() {
        assert_eq!(play(&[Ok("a"), Ok("a")], 5), (Ok("a"), 1));
        // A file read while being written, then complete twice.
        assert_eq!(play(&[Ok(""), Ok("a"), Ok("a")], 5), (Ok("a"), 2));
        assert_eq!(play(&[Ok("a"), Ok(""), Ok("b"), Ok("b")], 5), (Ok("b"), 3));
    }

    #[test]
    fn two_agreeing_reads_of_a_file_just_emptied_are_not_enough() {
        // `~` marks a read with a file emptied or cut short less than QUIET ago.
        assert_eq!(play(&[Ok("~"), Ok("~"), Ok("a"), Ok("a")], 5), (Ok("a"), 3));
    }

    #[test]
    fn a_tree_that_never_holds_still_is_not_taken() {
        assert_eq!(
            play(&[Ok("a"), Ok("b"), Ok("a"), Ok("b")], 4),
            (Err(Unsettled::Moving), 3)
        );
        assert_eq!(
            play(&[Ok("~"), Ok("~"), Ok("~")], 3).0,
            Err(Unsettled::Moving)
        );
    }

    #[test]
    fn an_unreadable_root_ends_the_attempt_at_once() {
        assert_eq!(
            play(&[Err("gone")], 5),
            (Err(Unsettled::Unreadable("gone".into())), 0)
        );
        assert_eq!(
            play(&[Ok("a"), Err("gone")], 5),
            (Err(Unsettled::Unreadable("gone".into())), 1)
        );
    }

    const SPEC: &str = "apiVersion: holdfast.dev/v1alpha1\nkind: Archive\nmetadata: {name: a}\nspec: {targets: {volumes: [v]}}\n";

    /// Sets a file's modification time `ago` in the past.
    fn age(path: &Path, ago: Duration) {
        let file = fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - ago).unwrap();
    }

    #[test]
    fn a_settled_tree_is_read_with_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let specs = dir.path().join("specs");
        fs::create_dir_all(specs.join("apps")).unwrap();
        fs::write(specs.join("apps/a.yaml"), SPEC).unwrap();
        age(&specs.join("apps/a.yaml"), Duration::from_secs(5));
        let reading = read_stable(&specs).unwrap();
        assert_eq!(reading.files.len(), 1);
        assert_eq!(reading.sources()[0].documents.len(), 1);
        assert_eq!(reading.root, identity(&specs).unwrap());
        assert_eq!(reading.stamps(), stamps(&specs).1);
    }

    #[test]
    fn a_vanished_or_dangling_root_is_unreadable_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let specs = dir.path().join("specs");
        assert!(
            matches!(read_stable(&specs), Err(Unsettled::Unreadable(m)) if m.contains("specs"))
        );
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &specs).unwrap();
        assert!(matches!(read_stable(&specs), Err(Unsettled::Unreadable(_))));
    }

    #[test]
    fn a_file_just_truncated_is_not_believed_until_it_settles() {
        let dir = tempfile::tempdir().unwrap();
        let specs = dir.path().join("specs");
        fs::create_dir_all(&specs).unwrap();
        let file = specs.join("a.yaml");
        fs::write(&file, "").unwrap();
        let reading = read_once(&specs).unwrap();
        assert!(!reading.quiet(SystemTime::now()), "a file emptied just now");
        fs::write(&file, "kind: Archive\nmetadata: {name: [a").unwrap();
        let reading = read_once(&specs).unwrap();
        assert!(
            !reading.quiet(SystemTime::now()),
            "a file cut short just now"
        );
        age(&file, Duration::from_secs(1));
        let reading = read_once(&specs).unwrap();
        assert!(reading.quiet(SystemTime::now()), "left alone long enough");
        fs::write(&file, SPEC).unwrap();
        let reading = read_once(&specs).unwrap();
        assert!(
            reading.quiet(SystemTime::now()),
            "a plain edit is taken at once"
        );
        fs::write(&file, "").unwrap();
        // A writer that finishes within the quiet time is read complete.
        let writer = {
            let file = file.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(250));
                fs::write(&file, SPEC).unwrap();
            })
        };
        let reading = read_stable(&specs).unwrap();
        writer.join().unwrap();
        assert_eq!(reading.sources()[0].documents.len(), 1);
    }

    #[test]
    fn an_unreadable_folder_below_the_root_is_unreadable_not_empty() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let specs = dir.path().join("specs");
        fs::create_dir_all(specs.join("apps")).unwrap();
        fs::set_permissions(specs.join("apps"), fs::Permissions::from_mode(0o000)).unwrap();
        let readable = fs::read_dir(specs.join("apps")).is_ok();
        let result = read_once(&specs);
        fs::set_permissions(specs.join("apps"), fs::Permissions::from_mode(0o755)).unwrap();
        if readable {
            // Running as root: permissions do not stop it.
            return;
        }
        assert!(result.unwrap_err().contains("apps"));
    }
}
