//! Copies of a committed archive into other repositories (3-2-1 without a second run):
//! each artifact is read from where the run wrote it, checked against its manifest entry
//! as it streams, encrypted for the target when the target is encrypted, and the copy is
//! committed with its own manifest, written last, like any archive.

use std::io::{self, Read};

use sha2::{Digest, Sha256};

use super::layout::{MANIFEST, time_from_id};
use super::storage::{Repository, StorageError};
use super::verify::{VerifyError, manifest};

/// Why a copy was not made; the source archive is untouched either way.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Manifest(#[from] VerifyError),
    #[error("{artifact}: {source}")]
    Artifact {
        artifact: String,
        #[source]
        source: io::Error,
    },
    #[error("{artifact}: read {actual}, the manifest says {expected}; the copy was not made")]
    Mismatch {
        artifact: String,
        expected: String,
        actual: String,
    },
    #[error(
        "the id {id} is taken there by something that is not an archive (the next free one is {next})"
    )]
    Taken { id: String, next: String },
    #[error("{id} is not an archive id")]
    BadId { id: String },
    #[error("{artifact} is a folder-format artifact, which only a local repository holds")]
    Folder { artifact: String },
}

impl CopyError {
    /// Whether another try may succeed (an unreachable or busy store).
    pub fn is_transient(&self) -> bool {
        match self {
            CopyError::Storage(e) => e.is_transient(),
            CopyError::Artifact { source, .. } => crate::fsutil::io_is_transient(source),
            _ => false,
        }
    }
}

/// Copies archive `id` of `group` from `from` into `to` under the same id. Returns the
/// bytes stored there; an archive already there (a copy made before) is left as it is.
pub fn copy_archive(
    from: &Repository,
    to: &Repository,
    group: &str,
    id: &str,
) -> Result<u64, CopyError> {
    let mut manifest = manifest(from, group, id)?;
    if to.read(group, id, MANIFEST)?.is_some() {
        return Ok(0);
    }
    let at = time_from_id(id).ok_or_else(|| CopyError::BadId { id: id.to_string() })?;
    let mut staged = to.begin(group, at)?;
    if staged.id != id {
        // Leftovers of an earlier, killed copy hold the id: clear them and start over.
        to.abandon(staged)?;
        to.clean()?;
        staged = to.begin(group, at)?;
        if staged.id != id {
            let taken = staged.id.clone();
            to.abandon(staged)?;
            return Err(CopyError::Taken {
                id: id.to_string(),
                next: taken,
            });
        }
    }
    let result = (|| {
        let mut stored = 0u64;
        for artifact in &mut manifest.artifacts {
            let named = |source: io::Error| CopyError::Artifact {
                artifact: artifact.path.clone(),
                source,
            };
            if matches!(
                from.stat(group, id, &artifact.path)?,
                Some(super::storage::Meta::Folder)
            ) {
                return Err(CopyError::Folder {
                    artifact: artifact.path.clone(),
                });
            }
            let mut reader = Checked {
                inner: from.open_artifact(group, id, artifact)?,
                hasher: Sha256::new(),
                count: 0,
            };
            let mut out = staged.outlet.create(&artifact.path).map_err(named)?;
            io::copy(&mut reader, &mut out).map_err(named)?;
            let actual = hex::encode(reader.hasher.finalize_reset());
            if reader.count != artifact.size || actual != artifact.sha256 {
                return Err(CopyError::Mismatch {
                    artifact: artifact.path.clone(),
                    expected: format!("{} bytes, sha256 {}", artifact.size, artifact.sha256),
                    actual: format!("{} bytes, sha256 {actual}", reader.count),
                });
            }
            let digest = out.commit().map_err(named)?;
            stored += digest.as_ref().map_or(artifact.size, |d| d.size);
            artifact.stored_size = digest.as_ref().map(|d| d.size);
            artifact.stored_sha256 = digest.map(|d| d.sha256);
        }
        Ok(stored)
    })();
    match result {
        Ok(stored) => {
            manifest.encryption = to.encryption().map(str::to_string);
            let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
            to.commit(staged, &text)?;
            Ok(stored)
        }
        Err(e) => {
            // Best effort: what is left without a manifest is never listed, and the next
            // writer's clean removes it.
            let _ = to.abandon(staged);
            Err(e)
        }
    }
}

/// Brings an archive's artifacts into the folder `into` on this machine, decrypted, each
/// checked against its manifest entry as it arrives: what restores read when the
/// repository is remote or encrypted. Folder-format artifacts are never remote.
pub fn fetch_archive(
    repo: &Repository,
    group: &str,
    id: &str,
    artifacts: &[super::manifest::Artifact],
    into: &std::path::Path,
) -> Result<(), CopyError> {
    use crate::archive::Outlet;
    for artifact in artifacts {
        let named = |source: io::Error| CopyError::Artifact {
            artifact: artifact.path.clone(),
            source,
        };
        let mut reader = Checked {
            inner: repo.open_artifact(group, id, artifact)?,
            hasher: Sha256::new(),
            count: 0,
        };
        let mut out = into.create(&artifact.path).map_err(named)?;
        io::copy(&mut reader, &mut out).map_err(named)?;
        let actual = hex::encode(reader.hasher.finalize_reset());
        // A folder of a restic snapshot comes as a tar stream made now, with no digest
        // to compare: restic checked each blob it read.
        let made_now = artifact.snapshot.is_some() && artifact.snapshot_path().1;
        if !made_now && (reader.count != artifact.size || actual != artifact.sha256) {
            return Err(CopyError::Mismatch {
                artifact: artifact.path.clone(),
                expected: format!("{} bytes, sha256 {}", artifact.size, artifact.sha256),
                actual: format!("{} bytes, sha256 {actual}", reader.count),
            });
        }
        out.commit().map_err(named)?;
    }
    Ok(())
}

/// Temporary folders of fetched artifacts: `<prefix><pid>-<archive id>`.
const FETCH_PREFIX: &str = "holdfast-fetch-";

/// Removes the fetch folders of processes that are gone (a killed `ls` or
/// `restore --path` leaves its folder behind).
fn remove_orphaned_fetches() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(FETCH_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Artifacts of an archive in a folder on this machine: the archive's own folder when the
/// repository is local and the artifacts are not encrypted, else a temporary folder they
/// were fetched into (decrypted, checked), removed when this is dropped.
pub struct LocalArtifacts {
    dir: std::path::PathBuf,
    fetched: bool,
}

impl LocalArtifacts {
    /// The folder to read `artifacts` from, fetching them first when needed.
    pub fn of(
        repo: &Repository,
        group: &str,
        id: &str,
        artifacts: &[super::manifest::Artifact],
    ) -> Result<LocalArtifacts, CopyError> {
        // Encrypted artifacts and those in restic snapshots are not files to read.
        let encrypted = artifacts
            .iter()
            .any(|a| a.stored_sha256.is_some() || a.snapshot.is_some());
        if let (Some(dir), false) = (repo.local_dir(group, id), encrypted) {
            return Ok(LocalArtifacts {
                dir,
                fetched: false,
            });
        }
        remove_orphaned_fetches();
        let dir = std::env::temp_dir().join(format!("{FETCH_PREFIX}{}-{id}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let local = LocalArtifacts { dir, fetched: true };
        fetch_archive(repo, group, id, artifacts, &local.dir)?;
        Ok(local)
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Drop for LocalArtifacts {
    fn drop(&mut self) {
        if self.fetched {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Hashes and counts what passes, to check a copy against the manifest.
struct Checked {
    inner: Box<dyn Read + Send>,
    hasher: Sha256,
    count: u64,
}

impl Read for Checked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::crypt::Crypt;
    use crate::repo::objects::{ObjectStorage, memory::Shared};
    use chrono::{TimeZone, Utc};
    use std::io::Write;
    use std::sync::Arc;

    fn archive(repo: &Repository) -> String {
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 3, 0, 0).unwrap();
        let staged = repo.begin("nightly", at).unwrap();
        let data = b"plain data ".repeat(500);
        let mut out = staged.outlet.create("dumps/db.sql").unwrap();
        out.write_all(&data).unwrap();
        out.commit().unwrap();
        let manifest = serde_json::json!({
            "formatVersion": 1, "id": staged.id, "kind": "BackupPolicy", "name": "nightly",
            "policy": "nightly", "phase": "Succeeded", "host": "h", "holdfastVersion": "0",
            "dockerApiVersion": "1.41", "startTime": at, "completionTime": at,
            "format": "tar.zst", "level": 3,
            "targets": {"stacks": [], "containers": [], "volumes": []},
            "artifacts": [{"kind": "dump", "path": "dumps/db.sql", "size": data.len(),
                "sha256": hex::encode(Sha256::digest(&data))}],
            "timings": {}, "downtime": {}, "warnings": []
        });
        let id = staged.id.clone();
        repo.commit(staged, manifest.to_string().as_bytes())
            .unwrap();
        id
    }

    #[test]
    fn a_copy_is_encrypted_for_its_target_and_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let local = Repository::local(dir.path(), "h");
        let id = archive(&local);
        let (crypt, _) = Crypt::generated();
        let store = Shared::default();
        let offsite = Repository::named(
            "offsite",
            Arc::new(ObjectStorage::new(Arc::new(store.clone()), "h")),
            Some(crypt),
            false,
        );
        let stored = copy_archive(&local, &offsite, "nightly", &id).unwrap();
        assert!(stored > 5500, "{stored}");
        let copied = manifest(&offsite, "nightly", &id).unwrap();
        assert_eq!(copied.encryption.as_deref(), Some("age"));
        let artifact = &copied.artifacts[0];
        assert_eq!(artifact.stored_size, Some(stored));
        let mut plain = Vec::new();
        offsite
            .open_artifact("nightly", &id, artifact)
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, b"plain data ".repeat(500));
        // Copying again finds it there and leaves it alone.
        assert_eq!(copy_archive(&local, &offsite, "nightly", &id).unwrap(), 0);
    }

    #[test]
    fn fetch_folders_of_dead_processes_are_removed_and_live_ones_kept() {
        let tmp = std::env::temp_dir();
        // No pid reaches this (the kernel's limit is 2^22).
        let dead = tmp.join(format!("{FETCH_PREFIX}99999999-x-20261207T030000Z"));
        let live = tmp.join(format!(
            "{FETCH_PREFIX}{}-y-20261207T030000Z",
            std::process::id()
        ));
        for dir in [&dead, &live] {
            std::fs::create_dir_all(dir.join("volumes")).unwrap();
        }
        remove_orphaned_fetches();
        assert!(!dead.exists(), "a killed command's folder stayed");
        assert!(live.exists(), "a running command's folder went");
        std::fs::remove_dir_all(&live).unwrap();
    }

    #[test]
    fn a_source_that_does_not_match_its_manifest_is_not_copied() {
        let dir = tempfile::tempdir().unwrap();
        let local = Repository::local(dir.path(), "h");
        let id = archive(&local);
        std::fs::write(
            dir.path().join("h/nightly").join(&id).join("dumps/db.sql"),
            b"evil",
        )
        .unwrap();
        let store = Shared::default();
        let offsite = Repository::named(
            "offsite",
            Arc::new(ObjectStorage::new(Arc::new(store.clone()), "h")),
            None,
            false,
        );
        let e = copy_archive(&local, &offsite, "nightly", &id).unwrap_err();
        assert!(matches!(e, CopyError::Mismatch { .. }), "{e}");
        assert!(offsite.archives("nightly").unwrap().is_empty());
        assert!(
            store.0.objects.lock().unwrap().is_empty(),
            "nothing left behind"
        );
    }
}
