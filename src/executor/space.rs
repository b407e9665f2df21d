//! Whether a run fits in its repository, decided before anything is stopped or dumped:
//! a run that would fill the disk halfway through costs its downtime for nothing.
//!
//! The estimate of what a run writes (see [`need`]) errs toward trying: compression
//! makes the raw size an overestimate, so the ratio the newest archive of the same name
//! achieved is applied when there is one. Without one, the data is taken as it is,
//! uncompressed, since nothing tells how well it compresses.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::error::WouldNotFit;
use super::resolve::{BackupPlan, BackupSpec};
use super::{BackupRequest, Executor};
use crate::archive::Excludes;
use crate::repo::layout::MANIFEST;
use crate::repo::manifest::Manifest;

/// What the tar stream adds per entry at most: a 512-byte header and up to 511 bytes of
/// padding.
pub const ENTRY_OVERHEAD: u64 = 1024;
/// The margin on top of the estimate, in percent: data grows between the estimate and
/// the copy, and the manifest and recipe are not counted.
pub const MARGIN_PERCENT: u64 = 10;
/// And a fixed margin, for small runs.
pub const MARGIN_FIXED: u64 = 1 << 20;

/// What the folders a run reads from the host hold now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceSize {
    pub bytes: u64,
    pub entries: u64,
}

/// The size of every volume, bind mount and host folder of `plan` read on the host, with `excludes`
/// applied as the archive applies them (patterns, left-out paths, folders never
/// entered); `None` when some source is reachable only through Docker.
pub fn source_size(plan: &BackupPlan, excludes: &Excludes) -> Option<SourceSize> {
    let dirs = plan
        .volumes
        .iter()
        .map(|v| (v.mountpoint.clone(), &v.leave_out))
        .chain(
            plan.binds
                .iter()
                .map(|b| (Some(b.source.clone()), &b.leave_out)),
        )
        .chain(
            plan.paths
                .iter()
                .map(|p| (Some(p.path.clone()), &p.leave_out)),
        );
    let mut total = SourceSize::default();
    for (dir, leave_out) in dirs {
        let dir = PathBuf::from(dir?);
        std::fs::read_dir(&dir).ok()?;
        let excludes = excludes.leave_out(leave_out);
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        if !excludes.is_never_entered(meta.dev(), meta.ino()) {
            add_below(&dir, &mut PathBuf::new(), &excludes, &mut total);
        }
    }
    Some(total)
}

/// Adds what is below `root.join(rel)`; what vanishes or cannot be read counts as
/// nothing.
fn add_below(root: &Path, rel: &mut PathBuf, excludes: &Excludes, total: &mut SourceSize) {
    let Ok(entries) = std::fs::read_dir(root.join(&*rel)) else {
        return;
    };
    for entry in entries.flatten() {
        rel.push(entry.file_name());
        if let Ok(meta) = entry.metadata() {
            let is_dir = meta.is_dir();
            let left_out = excludes.is_excluded(rel, is_dir)
                || (is_dir && excludes.is_never_entered(meta.dev(), meta.ino()));
            if !left_out {
                total.entries += 1;
                if meta.is_file() {
                    total.bytes += data_bytes(&meta);
                } else if is_dir {
                    add_below(root, rel, excludes, total);
                }
            }
        }
        rel.pop();
    }
}

/// The bytes of a file that an archive holds: a sparse file's holes are not read or
/// stored, so a file counts at most what is allocated to it.
fn data_bytes(meta: &std::fs::Metadata) -> u64 {
    meta.len().min(meta.blocks().saturating_mul(512))
}

/// What the newest archive of the same name wrote, from its manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Previous {
    pub id: String,
    /// Bytes written for volumes, bind mounts and host folders.
    pub data_bytes: u64,
    /// Their size as an uncompressed tar stream would have it at most.
    pub data_tar_bytes: u64,
    /// Bytes written for dumps.
    pub dump_bytes: u64,
    pub total_bytes: u64,
}

impl Previous {
    pub fn from_manifest(m: &Manifest) -> Previous {
        let mut p = Previous {
            id: m.id.clone(),
            data_bytes: 0,
            data_tar_bytes: 0,
            dump_bytes: 0,
            total_bytes: m.bytes(),
        };
        for a in &m.artifacts {
            match a.kind.as_str() {
                "volume" | "bind" | "path" => {
                    p.data_bytes += a.size;
                    p.data_tar_bytes += a.source_bytes + ENTRY_OVERHEAD * a.entries;
                }
                "dump" => p.dump_bytes += a.size,
                _ => {}
            }
        }
        p
    }
}

/// What a run is expected to write, and how that was reckoned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    pub bytes: u64,
    pub basis: String,
}

/// The space a run needs, with the margin; `None` when nothing tells (some data only
/// reachable through Docker, and no earlier archive):
///
/// - the sources' size as a tar stream (file bytes plus [`ENTRY_OVERHEAD`] per entry),
///   times the compression ratio of the newest archive of the same name (1 without
///   one), plus that archive's dumps;
/// - when the sources cannot all be measured, the newest archive's size;
/// - either way plus [`MARGIN_PERCENT`] and [`MARGIN_FIXED`].
pub fn need(size: Option<SourceSize>, previous: Option<&Previous>) -> Option<Need> {
    let margin = |bytes: u64| bytes + bytes * MARGIN_PERCENT / 100 + MARGIN_FIXED;
    let margin_text = format!("plus {MARGIN_PERCENT}% and {}", human_bytes(MARGIN_FIXED));
    match (size, previous) {
        (Some(size), previous) => {
            let tar = size.bytes + ENTRY_OVERHEAD * size.entries;
            let measured = previous.filter(|p| p.data_tar_bytes > 0);
            let (data, how) = match measured {
                Some(p) => {
                    let ratio = p.data_bytes as f64 / p.data_tar_bytes as f64;
                    (
                        (tar as f64 * ratio).ceil() as u64,
                        format!(
                            "{} of data at the compression {} achieved ({ratio:.2})",
                            human_bytes(tar),
                            p.id
                        ),
                    )
                }
                None => (
                    tar,
                    format!(
                        "{} of data, uncompressed since no earlier archive shows how well it compresses",
                        human_bytes(tar)
                    ),
                ),
            };
            let dumps = previous.map_or(0, |p| p.dump_bytes);
            let dumps_text = match previous {
                Some(p) if dumps > 0 => {
                    format!(", {} of dumps as in {}", human_bytes(dumps), p.id)
                }
                _ => String::new(),
            };
            Some(Need {
                bytes: margin(data + dumps),
                basis: format!("{how}{dumps_text}, {margin_text}"),
            })
        }
        (None, Some(p)) => Some(Need {
            bytes: margin(p.total_bytes),
            basis: format!(
                "the size of {} ({}), as some data is reachable only through Docker, {margin_text}",
                p.id,
                human_bytes(p.total_bytes)
            ),
        }),
        (None, None) => None,
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `path` (or,
/// while it does not exist yet, its nearest existing parent).
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let mut at = path;
    while !at.exists() {
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => {
                at = Path::new(".");
                break;
            }
        }
    }
    let st = rustix::fs::statvfs(at).map_err(std::io::Error::from)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

impl Executor {
    /// The newest archive of `group` whose manifest can be read.
    fn previous(&self, group: &str) -> Option<Previous> {
        let ids = self.repository.archives(group).ok()?;
        ids.iter().rev().find_map(|id| {
            let bytes = self.repository.read(group, id, MANIFEST).ok()??;
            let manifest: Manifest = serde_json::from_slice(&bytes).ok()?;
            Some(Previous::from_manifest(&manifest))
        })
    }

    /// What a run of `name` with `spec` resolved to `plan` would need and what its
    /// repository has free; `None` for a repository that is not a local folder.
    pub fn space(&self, name: &str, spec: &BackupSpec, plan: &BackupPlan) -> Option<Space> {
        self.repository.local_top()?;
        let size = source_size(plan, &self.estimate_excludes(spec));
        self.space_for(name, size)
    }

    /// What the estimate leaves out: the spec's patterns and holdfast's own folders.
    fn estimate_excludes(&self, spec: &BackupSpec) -> Excludes {
        let own = self.own_folders().into_iter().filter_map(|f| f.id);
        // Invalid patterns fail the run when it archives; the estimate just counts all.
        Excludes::new(&spec.targets.exclude.paths)
            .unwrap_or_else(|_| Excludes::none())
            .never_enter(own)
    }

    fn space_for(&self, name: &str, size: Option<SourceSize>) -> Option<Space> {
        let repository = self.repository.local_top()?;
        let need = need(size, self.previous(name).as_ref());
        let free = free_bytes(&repository).map_err(|e| e.to_string());
        Some(Space {
            repository,
            need,
            free,
        })
    }

    /// Refuses a run that cannot fit in its repository: called before hooks, dumps and
    /// stops. A repository that is not a local folder, or a run nothing can be estimated
    /// for, is let through with a log line. The sources are measured off the runtime's
    /// threads: a large tree takes a while.
    pub(super) async fn check_space(
        &self,
        request: &BackupRequest,
        plan: &BackupPlan,
    ) -> Result<(), WouldNotFit> {
        if self.repository.local_top().is_none() {
            return Ok(());
        }
        let (excludes, measured) = (self.estimate_excludes(&request.spec), plan.clone());
        let size =
            match tokio::task::spawn_blocking(move || source_size(&measured, &excludes)).await {
                Ok(size) => size,
                Err(e) => {
                    warn!("free space not checked: measuring the sources: {e}");
                    return Ok(());
                }
            };
        let Some(space) = self.space_for(&request.name, size) else {
            return Ok(());
        };
        let Some(need) = space.need else {
            warn!(
                "free space not checked: some data is reachable only through Docker and no earlier archive tells its size"
            );
            return Ok(());
        };
        let free = match space.free {
            Ok(free) => free,
            Err(e) => {
                warn!(repository = %space.repository.display(), "free space not checked: {e}");
                return Ok(());
            }
        };
        info!(needed_bytes = need.bytes, free_bytes = free, basis = %need.basis, "free space checked");
        if need.bytes > free {
            return Err(WouldNotFit {
                repository: space.repository.display().to_string(),
                needed: human_bytes(need.bytes),
                free: human_bytes(free),
                basis: need.basis,
            });
        }
        Ok(())
    }
}

/// A run's estimated need beside its repository's free space.
#[derive(Debug)]
pub struct Space {
    pub repository: std::path::PathBuf,
    pub need: Option<Need>,
    pub free: Result<u64, String>,
}

pub use crate::logging::human_bytes;

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_sparse_file_counts_only_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(8 << 30).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, &[1; 4096], 1 << 30).unwrap();
        let sparse = data_bytes(&std::fs::metadata(&path).unwrap());
        assert!((4096..=MIB).contains(&sparse), "{sparse}");
        std::fs::write(&path, vec![7u8; 10_000]).unwrap();
        assert_eq!(data_bytes(&std::fs::metadata(&path).unwrap()), 10_000);
    }

    #[test]
    fn without_an_earlier_archive_the_data_counts_uncompressed() {
        let size = SourceSize {
            bytes: 120 * MIB,
            entries: 3,
        };
        let n = need(Some(size), None).unwrap();
        let tar = 120 * MIB + 3 * ENTRY_OVERHEAD;
        assert_eq!(n.bytes, tar + tar / 10 + MIB);
        assert!(n.basis.contains("uncompressed"), "{}", n.basis);
        assert!(n.basis.contains("plus 10% and 1.0 MiB"), "{}", n.basis);
    }

    #[test]
    fn an_earlier_archive_gives_the_ratio_and_the_dumps() {
        let previous = Previous {
            id: "p-20261201T000000Z".into(),
            data_bytes: 25 * MIB,
            data_tar_bytes: 100 * MIB,
            dump_bytes: 4 * MIB,
            total_bytes: 29 * MIB,
        };
        let size = SourceSize {
            bytes: 200 * MIB,
            entries: 0,
        };
        let n = need(Some(size), Some(&previous)).unwrap();
        let expected = 50 * MIB + 4 * MIB;
        assert_eq!(n.bytes, expected + expected / 10 + MIB);
        assert!(n.basis.contains("(0.25)"), "{}", n.basis);
        assert!(n.basis.contains("4.0 MiB of dumps"), "{}", n.basis);
        // Unmeasurable sources: the earlier archive's size stands in.
        let n = need(None, Some(&previous)).unwrap();
        assert_eq!(n.bytes, 29 * MIB + 29 * MIB / 10 + MIB);
        assert!(n.basis.contains("only through Docker"), "{}", n.basis);
        assert_eq!(need(None, None), None);
    }

    #[test]
    fn what_the_archive_leaves_out_is_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let file = |rel: &str, len: usize| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, vec![0u8; len]).unwrap();
        };
        file("a", 1000);
        file("repo/b", 5000);
        file("state/c", 300);
        file("logs/x.log", 70);
        let plan = BackupPlan {
            binds: vec![super::super::resolve::PlannedBind {
                container: "c".into(),
                container_id: "id".into(),
                stack: None,
                source: dir.path().display().to_string(),
                destination: "/x".into(),
                artifact: "c-1".into(),
                leave_out: vec!["state".into()],
            }],
            ..BackupPlan::default()
        };
        let all = source_size(&plan, &Excludes::none().leave_out(&[])).unwrap();
        // `state` is left out by path, as the plan says; the rest counted.
        assert_eq!(all.bytes, 6070);
        assert_eq!(all.entries, 5);
        let repo = std::fs::metadata(dir.path().join("repo")).unwrap();
        let excludes = Excludes::new(&["*.log".to_string()])
            .unwrap()
            .never_enter([(repo.dev(), repo.ino())]);
        assert_eq!(source_size(&plan, &excludes).unwrap().bytes, 1000);
    }
}
