//! Which paths a backup leaves out.

use std::path::{Path, PathBuf};

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

use super::ArchiveError;

/// Exclude patterns, matched against paths relative to the tree being archived.
///
/// The rule is the one people know from `.gitignore` and restic:
///
/// - A pattern without `/` (other than a trailing one) matches the *name* of a file or
///   folder at any depth: `*.tmp` leaves out `a.tmp` and `x/y/a.tmp`, `node_modules`
///   leaves out every folder of that name.
/// - A pattern with a `/` is anchored at the root: `cache/**` and `/cache/**` only match
///   below the top-level `cache`. A leading `/` is allowed and ignored.
/// - `**` matches any number of folders (`**/*.log`, `a/**/b`); `*`, `?` and `[...]` never
///   match a `/`.
/// - A pattern ending in `/**` also excludes the folder itself, so `cache/**` leaves out
///   `cache` and everything below it rather than leaving an empty `cache` behind.
/// - A trailing `/` (`logs/`) restricts the pattern to folders.
///
/// Whatever is below an excluded folder is excluded too; it is not even read.
#[derive(Clone, Debug)]
pub struct Excludes {
    any: GlobSet,
    dirs_only: GlobSet,
    /// Exact relative paths left out, whatever the patterns say (holdfast's own folders
    /// inside the tree, as [`Excludes::leave_out`] was told).
    literal: Vec<PathBuf>,
    /// Folders never entered, by (device, inode), wherever they appear in the tree: the
    /// same folder reached through another mount or name is still recognised.
    folders: Vec<(u64, u64)>,
}

impl Excludes {
    /// Compiles `patterns`; an invalid one is an error naming it.
    pub fn new(patterns: &[String]) -> Result<Excludes, ArchiveError> {
        let mut any = GlobSetBuilder::new();
        let mut dirs_only = GlobSetBuilder::new();
        for pattern in patterns {
            let mut body = pattern.as_str();
            let dir_only = body.len() > 1 && body.ends_with('/');
            body = body.trim_end_matches('/');
            let anchored = body.contains('/');
            body = body.trim_start_matches('/');
            if body.is_empty() {
                return Err(ArchiveError::Pattern {
                    pattern: pattern.clone(),
                    reason: "matches nothing".to_string(),
                });
            }
            let mut globs = vec![if anchored {
                body.to_string()
            } else {
                format!("**/{body}")
            }];
            if let Some(folder) = globs[0].strip_suffix("/**")
                && !folder.is_empty()
                && folder != "**"
            {
                globs.push(folder.to_string());
            }
            let target = if dir_only { &mut dirs_only } else { &mut any };
            for glob in globs {
                let compiled = GlobBuilder::new(&glob)
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|e| ArchiveError::Pattern {
                        pattern: pattern.clone(),
                        reason: e.kind().to_string(),
                    })?;
                target.add(compiled);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|e| ArchiveError::Pattern {
                pattern: patterns.join(", "),
                reason: e.to_string(),
            })
        };
        Ok(Excludes {
            any: build(any)?,
            dirs_only: build(dirs_only)?,
            literal: Vec::new(),
            folders: Vec::new(),
        })
    }

    /// Excludes nothing.
    pub fn none() -> Excludes {
        Excludes {
            any: GlobSet::empty(),
            dirs_only: GlobSet::empty(),
            literal: Vec::new(),
            folders: Vec::new(),
        }
    }

    /// These excludes, and also the folders with these (device, inode) pairs wherever a
    /// walk meets them.
    pub fn never_enter(mut self, folders: impl IntoIterator<Item = (u64, u64)>) -> Excludes {
        self.folders.extend(folders);
        self
    }

    /// These excludes, and also these exact paths relative to the tree (for trees read
    /// through a tar stream, where no inode can be seen).
    pub fn leave_out(&self, relative: &[String]) -> Excludes {
        let mut out = self.clone();
        out.literal.extend(
            relative
                .iter()
                .map(|r| PathBuf::from(r.trim_matches('/')))
                .filter(|r| !r.as_os_str().is_empty()),
        );
        out
    }

    /// Whether a folder with this device and inode is one never to enter.
    pub fn is_never_entered(&self, dev: u64, ino: u64) -> bool {
        self.folders.contains(&(dev, ino))
    }

    /// Whether nothing is ever excluded by path, so callers can skip the matching.
    pub fn is_empty(&self) -> bool {
        self.any.is_empty() && self.dirs_only.is_empty() && self.literal.is_empty()
    }

    /// Whether `relative` (no leading `/` or `./`) itself is excluded. Does not look at its
    /// parents: walkers never descend into an excluded folder.
    pub fn is_excluded(&self, relative: &Path, is_dir: bool) -> bool {
        if self.is_empty() {
            return false;
        }
        if self.literal.iter().any(|l| l == relative) {
            return true;
        }
        let candidate = Candidate::new(relative);
        self.any.is_match_candidate(&candidate)
            || (is_dir && self.dirs_only.is_match_candidate(&candidate))
    }

    /// Whether `relative` or one of the folders above it is excluded; for tar streams,
    /// whose entries come in no promised order.
    pub(crate) fn is_excluded_with_parents(&self, relative: &[u8], is_dir: bool) -> bool {
        if self.is_empty() {
            return false;
        }
        for (i, b) in relative.iter().enumerate() {
            if *b == b'/' && i > 0 && self.is_excluded(bytes_path(&relative[..i]), true) {
                return true;
            }
        }
        self.is_excluded(bytes_path(relative), is_dir)
    }
}

pub(crate) fn bytes_path(bytes: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(patterns: &[&str]) -> Excludes {
        let owned: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Excludes::new(&owned).unwrap()
    }

    #[test]
    fn patterns_follow_gitignore_intuition() {
        let e = ex(&["**/*.log", "cache/**", "*.tmp", "logs/"]);
        let cases: &[(&str, bool, bool)] = &[
            ("a.log", false, true),
            ("x/y/a.log", false, true),
            ("a.logx", false, false),
            ("cache", true, true),
            ("cache/x", false, true),
            ("cache/x/y", false, true),
            ("sub/cache/x", false, false),
            ("a.tmp", false, true),
            ("deep/er/a.tmp", false, true),
            ("a.tmp.keep", false, false),
            ("logs", true, true),
            ("logs", false, false),
            ("x/logs", true, true),
            ("keep/me.txt", false, false),
        ];
        for (path, is_dir, want) in cases {
            assert_eq!(
                e.is_excluded(Path::new(path), *is_dir),
                *want,
                "{path} (dir: {is_dir})"
            );
        }
    }

    #[test]
    fn anchored_patterns_only_match_at_the_root() {
        let e = ex(&["/data/*.db", "a/b"]);
        assert!(e.is_excluded(Path::new("data/x.db"), false));
        assert!(!e.is_excluded(Path::new("y/data/x.db"), false));
        assert!(!e.is_excluded(Path::new("data/sub/x.db"), false));
        assert!(e.is_excluded(Path::new("a/b"), true));
        assert!(!e.is_excluded(Path::new("z/a/b"), true));
    }

    #[test]
    fn parents_exclude_their_contents_in_streams() {
        let e = ex(&["node_modules"]);
        assert!(e.is_excluded_with_parents(b"app/node_modules/x/y.js", false));
        assert!(!e.is_excluded_with_parents(b"app/src/y.js", false));
    }

    #[test]
    fn invalid_and_empty_patterns_are_errors_naming_the_pattern() {
        let err = Excludes::new(&["a[".to_string()]).unwrap_err().to_string();
        assert!(err.contains("a["), "{err}");
        assert!(Excludes::new(&["/".to_string()]).is_err());
        assert!(Excludes::none().is_empty());
        assert!(!Excludes::none().is_excluded(Path::new("x"), false));
    }

    #[test]
    fn left_out_paths_are_exact_and_take_their_contents() {
        let e = ex(&["*.log"]).leave_out(&["srv/repo/".to_string()]);
        assert!(e.is_excluded(Path::new("srv/repo"), true));
        assert!(!e.is_excluded(Path::new("srv/repository"), true));
        assert!(!e.is_excluded(Path::new("x/srv/repo"), true));
        assert!(e.is_excluded_with_parents(b"srv/repo/h/g/id/manifest.json", false));
        assert!(e.is_excluded(Path::new("a.log"), false));
        let only = Excludes::none().leave_out(&["repo".to_string()]);
        assert!(!only.is_empty());
        assert!(only.is_excluded_with_parents(b"repo/x", false));
        let inodes = Excludes::none().never_enter([(1, 2)]);
        assert!(inodes.is_never_entered(1, 2));
        assert!(!inodes.is_never_entered(1, 3));
    }
}
