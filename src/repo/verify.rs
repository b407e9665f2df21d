//! Verifying archives: every artifact's sha256 recomputed and every tar decompressed and
//! walked to its end. The result is written beside the manifest as `verification.json`,
//! so the catalog (and with it statuses, metrics, retention and restore) knows an archive
//! that failed is Corrupt, from the repository alone.
//!
//! An archive in a restic-format repository is checked by restic's own check of the
//! snapshots it names: their trees, the index and the pack headers always, and as much
//! of the pack data as [`ReadData`] says (every blob read is checked against its hash).

use chrono::Utc;

use super::catalog::{Entry, Health};
use super::layout::{MANIFEST, RECORD};
use super::manifest::{Artifact, Manifest, Verification};
pub use super::restic::ReadData;
use super::storage::{Repository, StorageError};
use crate::archive::ArtifactInfo;
use crate::fault;

/// The share of a restic repository's data a scheduled verification reads back, in
/// percent: each archive's structure is checked in full, a random twentieth of its pack
/// files read, so a month of daily verifications reads most of it without reading
/// everything every day.
pub const SCHEDULED_SAMPLE_PERCENT: f64 = 5.0;

/// The `format` of a manifest whose artifacts are restic snapshots.
const RESTIC_FORMAT: &str = "restic";

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{archive}: no manifest.json: it is not an archive, or it was deleted")]
    NoManifest { archive: String },
    #[error("{archive}: not a manifest: {source}")]
    Parse {
        archive: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{archive}: verifying needs the archive on this machine; {storage} is not")]
    NotLocal { archive: String, storage: String },
}

/// The manifest entry of an artifact as the verifier reads it.
pub fn artifact_info(a: &Artifact) -> ArtifactInfo {
    ArtifactInfo {
        path: a.path.clone(),
        size: a.size,
        sha256: a.sha256.clone(),
        source_bytes: a.source_bytes,
        entries: a.entries,
        excluded: 0,
        skipped: 0,
        shrunk: Default::default(),
        stored: None,
    }
}

/// Reads an archive's manifest.
pub fn manifest(repo: &Repository, group: &str, id: &str) -> Result<Manifest, VerifyError> {
    let bytes = repo
        .read(group, id, MANIFEST)?
        .ok_or_else(|| VerifyError::NoManifest {
            archive: id.to_string(),
        })?;
    serde_json::from_slice(&bytes).map_err(|source| VerifyError::Parse {
        archive: id.to_string(),
        source,
    })
}

/// Verifies every artifact of an archive and records the result beside its manifest.
/// `on_artifact` hears of each artifact as it is checked, with its problem if any. An
/// archive of holdfast's own format is always read in full; of a restic repository,
/// `read` says how much of its data restic's check reads back.
pub fn verify_archive(
    repo: &Repository,
    group: &str,
    id: &str,
    read: ReadData,
    on_artifact: impl FnMut(&str, Option<&str>),
) -> Result<Verification, VerifyError> {
    let verification = check_archive(repo, group, id, read, on_artifact)?;
    let text = serde_json::to_vec_pretty(&verification).unwrap_or_default();
    repo.put(group, id, RECORD, &text)?;
    Ok(verification)
}

/// Verifies every artifact of an archive as [`verify_archive`] does, and records nothing:
/// for another host's archive, whose folder only that host writes.
pub fn check_archive(
    repo: &Repository,
    group: &str,
    id: &str,
    read: ReadData,
    mut on_artifact: impl FnMut(&str, Option<&str>),
) -> Result<Verification, VerifyError> {
    let manifest = manifest(repo, group, id)?;
    // restic's sample takes packs while they fit in the share: 100 % would leave one out.
    let read = match read {
        ReadData::Sample(percent) if percent >= 100.0 => ReadData::All,
        read => read,
    };
    let mut problems = Vec::new();
    let snapshots = manifest.format == RESTIC_FORMAT;
    match repo.restic() {
        Some(restic) if snapshots => {
            problems = check_snapshots(restic, &manifest, read, &mut on_artifact)?;
        }
        None if snapshots => problems.push(format!(
            "the manifest says format restic, and the repository `{}` is not a restic \
             repository (spec.format)",
            repo.name()
        )),
        _ => {}
    }
    for artifact in manifest.artifacts.iter().filter(|_| !snapshots) {
        match verify_one(repo, group, id, artifact) {
            Ok(()) => on_artifact(&artifact.path, None),
            Err(e) => {
                let problem = format!("{}: {e}", artifact.path);
                on_artifact(&artifact.path, Some(&problem));
                problems.push(problem);
            }
        }
        fault::point("verify.mid-read");
    }
    let verification = Verification {
        time: Utc::now(),
        ok: problems.is_empty(),
        artifacts: manifest.artifacts.len(),
        problems,
    };
    Ok(verification)
}

/// restic's check of the snapshots an archive's manifest names. A repository that does
/// not open (unreachable, wrong password) is an error and records nothing; whatever the
/// check itself finds, or fails on, is a problem of the archive.
fn check_snapshots(
    restic: &super::restic::Restic,
    manifest: &Manifest,
    read: ReadData,
    on_artifact: &mut impl FnMut(&str, Option<&str>),
) -> Result<Vec<String>, VerifyError> {
    restic.open().map_err(|e| {
        VerifyError::Storage(StorageError::Io {
            doing: "opening",
            path: restic.location().into(),
            source: e.into_io(),
        })
    })?;
    let mut ids: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    for artifact in &manifest.artifacts {
        match &artifact.snapshot {
            Some(s) if !ids.contains(s) => ids.push(s.clone()),
            Some(_) => {}
            None => problems.push(format!("{}: the manifest names no snapshot", artifact.path)),
        }
    }
    if !ids.is_empty() {
        match restic.check(&ids, read) {
            Ok(found) => problems.extend(found.into_iter().map(|p| format!("restic check: {p}"))),
            Err(e) => problems.push(format!("restic check: {e}")),
        }
    }
    if problems.is_empty() {
        for artifact in &manifest.artifacts {
            on_artifact(&artifact.path, None);
        }
    }
    for problem in &problems {
        on_artifact(restic.location(), Some(problem));
    }
    Ok(problems)
}

/// Reads one artifact back: from the archive's folder when it is on this machine and
/// not encrypted, else streamed from the storage (and decrypted when this host can). An
/// encrypted artifact this host cannot decrypt has its stored bytes checked.
fn verify_one(
    repo: &Repository,
    group: &str,
    id: &str,
    artifact: &Artifact,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let info = artifact_info(artifact);
    let encrypted = artifact.stored_sha256.is_some();
    if let (Some(dir), false) = (repo.local_dir(group, id), encrypted) {
        return Ok(crate::archive::verify_artifact(&dir, &info)?);
    }
    let shown = std::path::PathBuf::from(format!(
        "{}/{group}/{id}/{}",
        repo.describe(),
        artifact.path
    ));
    if let (true, false, Some(sha256)) = (encrypted, repo.can_decrypt(), &artifact.stored_sha256) {
        let stored = repo.open(group, id, &artifact.path)?;
        let size = artifact.stored_size.unwrap_or(artifact.size);
        return Ok(crate::archive::verify_stored_artifact(
            stored, &shown, size, sha256,
        )?);
    }
    let stream = repo.open_artifact(group, id, artifact)?;
    Ok(crate::archive::verify_artifact_stream(
        stream, &shown, &info,
    )?)
}

/// Which archives a scheduled verification checks: those never verified first, then the
/// longest ago, at most `sample` of them (all when `None`). Corrupt ones are left out:
/// nothing will make them good again.
pub fn pick<'a>(entries: &[&'a Entry], sample: Option<u32>) -> Vec<&'a Entry> {
    let mut candidates: Vec<&'a Entry> = entries
        .iter()
        .copied()
        .filter(|e| matches!(e.health, Health::Good | Health::Partial))
        .collect();
    // `None` sorts before any time: never verified first; then oldest verification, then
    // oldest archive.
    candidates.sort_by_key(|e| (e.verified, e.time, e.id.clone()));
    let n = sample.map_or(candidates.len(), |s| s as usize);
    candidates.truncate(n);
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{Excludes, archive_directory};
    use crate::repo::catalog;
    use crate::spec::common::Format;
    use chrono::DateTime;
    use std::path::{Path, PathBuf};

    /// A one-artifact archive folder with a real manifest.
    fn archive(dir: &Path) -> PathBuf {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("a.txt"), "hello".repeat(1000)).unwrap();
        let root = dir.join("repo/h/web/web-20261125T030000Z");
        std::fs::create_dir_all(root.join("volumes")).unwrap();
        let info = archive_directory(
            &data,
            &root,
            "volumes/web",
            Format::TarZst,
            Some(3),
            &Excludes::none(),
            &crate::progress::Silent,
        )
        .unwrap();
        let manifest = serde_json::json!({
            "formatVersion": 1, "id": "web-20261125T030000Z", "kind": "BackupPolicy",
            "name": "web", "policy": "web", "phase": "Succeeded", "host": "h",
            "holdfastVersion": "0", "dockerApiVersion": "1.41",
            "startTime": "2026-11-25T03:00:00Z", "completionTime": "2026-11-25T03:00:01Z",
            "format": "tar.zst", "level": 3,
            "targets": {"stacks": [], "containers": [], "volumes": ["web"]},
            "artifacts": [{"kind": "volume", "path": info.path, "size": info.size,
                           "sha256": info.sha256, "sourceBytes": info.source_bytes,
                           "entries": info.entries, "source": "web"}],
            "timings": {}, "downtime": {}, "warnings": [],
        });
        std::fs::write(root.join("manifest.json"), manifest.to_string()).unwrap();
        root
    }

    #[test]
    fn a_good_archive_verifies_and_a_flipped_byte_makes_it_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let root = archive(dir.path());
        let repo = Repository::local(dir.path().join("repo"), "h");
        let id = "web-20261125T030000Z";
        let v = verify_archive(&repo, "web", id, ReadData::All, |_, _| {}).unwrap();
        assert!(v.ok, "{v:?}");
        let entries = catalog::scan(&repo).unwrap();
        assert_eq!(entries[0].health, Health::Good);
        assert_eq!(entries[0].verified, Some(v.time));

        // Same size, one byte different: only reading it all finds that.
        let artifact = std::fs::read_dir(root.join("volumes"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut bytes = std::fs::read(&artifact).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&artifact, bytes).unwrap();
        let v = verify_archive(&repo, "web", id, ReadData::All, |_, _| {}).unwrap();
        assert!(!v.ok);
        assert!(
            v.problems[0].starts_with("volumes/web.tar.zst: "),
            "{:?}",
            v.problems
        );
        let entries = catalog::scan(&repo).unwrap();
        assert_eq!(entries[0].health, Health::Corrupt);
        assert!(
            entries[0]
                .problems
                .iter()
                .any(|p| p.starts_with("volumes/web.tar.zst")),
            "{:?}",
            entries[0].problems
        );
    }

    #[test]
    fn scheduled_verification_takes_the_least_recently_verified_first() {
        let t = |h: u32| {
            use chrono::TimeZone;
            Utc.with_ymd_and_hms(2026, 11, 25, h, 0, 0).unwrap()
        };
        let entry = |id: &str, time: DateTime<Utc>, verified, health| Entry {
            id: id.into(),
            group: "web".into(),
            kind: None,
            policy: None,
            host: "h".into(),
            time,
            bytes: 0,
            added_bytes: None,
            dedup_ratio: None,
            phase: None,
            health,
            problems: vec![],
            verified,
            path: PathBuf::from(id),
            repository: crate::spec::repository::DEFAULT_REPOSITORY.to_string(),
        };
        use Health::*;
        let entries = [
            entry("a", t(1), Some(t(10)), Good),
            entry("b", t(2), None, Good),
            entry("c", t(3), Some(t(5)), Good),
            entry("d", t(4), None, Corrupt),
            entry("e", t(5), None, Partial),
        ];
        let refs: Vec<&Entry> = entries.iter().collect();
        let picked: Vec<&str> = pick(&refs, Some(3)).iter().map(|e| e.id.as_str()).collect();
        assert_eq!(picked, ["b", "e", "c"]);
        assert_eq!(pick(&refs, None).len(), 4);
    }

    /// The largest pack file of a local restic repository: one holding file data.
    fn largest_pack(restic_dir: &Path) -> PathBuf {
        let mut packs = Vec::new();
        for sub in std::fs::read_dir(restic_dir.join("data")).unwrap() {
            for pack in std::fs::read_dir(sub.unwrap().path()).unwrap() {
                let pack = pack.unwrap();
                packs.push((pack.metadata().unwrap().len(), pack.path()));
            }
        }
        packs.sort();
        packs.pop().expect("a pack file").1
    }

    #[test]
    fn a_restic_archive_is_checked_by_restic_and_a_damaged_pack_makes_it_corrupt() {
        use crate::repo::prune::tests::{restic_archive, restic_repository};
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let bytes: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(data.join("f"), bytes).unwrap();
        let repo = restic_repository(dir.path(), false);
        let time = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 25, 3, 0, 0).unwrap();
        let (id, _) = restic_archive(&repo, &data, time);

        let mut heard = Vec::new();
        let v = verify_archive(&repo, "p", &id, ReadData::All, |path, problem| {
            heard.push((path.to_string(), problem.map(str::to_string)))
        })
        .unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!(v.artifacts, 1);
        assert_eq!(heard, [("volumes/v.tar".to_string(), None)]);
        let entries = catalog::scan(&repo).unwrap();
        assert_eq!(entries[0].health, Health::Good);
        assert_eq!(entries[0].verified, Some(v.time));
        assert!(
            entries[0].added_bytes.unwrap() > 150_000,
            "{:?}",
            entries[0]
        );
        assert_eq!(entries[0].bytes, 200_000);

        // Same size, one byte different: only reading the data finds it.
        let pack = largest_pack(&dir.path().join("restic"));
        let mut bytes = std::fs::read(&pack).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&pack, bytes).unwrap();
        let structure = verify_archive(&repo, "p", &id, ReadData::None, |_, _| {}).unwrap();
        assert!(structure.ok, "the structure is intact: {structure:?}");
        let v = verify_archive(&repo, "p", &id, ReadData::All, |_, _| {}).unwrap();
        assert!(!v.ok);
        let pack_id = pack.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            v.problems
                .iter()
                .any(|p| p.starts_with("restic check: ") && p.contains(&pack_id[..8])),
            "{:?}",
            v.problems
        );
        let entries = catalog::scan(&repo).unwrap();
        assert_eq!(entries[0].health, Health::Corrupt);
        assert_eq!(entries[0].problems, v.problems);
    }
}
