//! Where a status file goes, what it says, and writing it without churn.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::{ObjectStatus, Status};
use crate::fsutil::write_atomic;
use crate::spec::{API_VERSION, Kind};

/// The first line of every status file.
pub const HEADER: &str = "# Written by holdfast; do not edit. Keep status files out of git: add *.status.yaml and *.status.yml to .gitignore.\n";

/// Where the status file of a spec file goes: beside it (`apps/nextcloud.yaml` ->
/// `apps/nextcloud.status.yaml`, `.yml` -> `.status.yml`, the extension's case kept) or,
/// with a status dir, at the same path relative to `specs_root` under that dir. A spec
/// file that is not under `specs_root` (or is the root itself, when a single file is
/// watched) gets its status file directly under the status dir, so a status file is
/// never written outside it. Folders are created by [`write_if_changed`].
pub fn status_path(spec_file: &Path, specs_root: &Path, status_dir: Option<&Path>) -> PathBuf {
    let name = status_file_name(spec_file);
    let Some(dir) = status_dir else {
        return spec_file.with_file_name(name);
    };
    match relative_folder(spec_file, specs_root) {
        Some(folder) => dir.join(folder).join(name),
        None => dir.join(name),
    }
}

fn status_file_name(spec_file: &Path) -> OsString {
    let is_yaml = spec_file
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    match (is_yaml, spec_file.file_stem(), spec_file.extension()) {
        (true, Some(stem), Some(ext)) => {
            let mut name = stem.to_os_string();
            name.push(".status.");
            name.push(ext);
            name
        }
        // A file given by name may have any extension; the status file is still YAML.
        _ => {
            let mut name = spec_file
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_else(|| OsString::from("spec"));
            name.push(".status.yaml");
            name
        }
    }
}

/// The folder of `file` relative to `root`, ignoring `.` components so that `./specs`
/// and `specs/a.yaml` match; `None` when `file` is not below `root` or the way there
/// climbs with `..`.
fn relative_folder(file: &Path, root: &Path) -> Option<PathBuf> {
    let file = plain_components(file);
    let root = plain_components(root);
    let rest = file.strip_prefix(root.as_slice())?;
    let (_, folders) = rest.split_last()?;
    if folders.iter().all(|c| matches!(c, Component::Normal(_))) {
        Some(folders.iter().collect())
    } else {
        None
    }
}

fn plain_components(path: &Path) -> Vec<Component<'_>> {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    api_version: &'static str,
    kind: Kind,
    metadata: Metadata<'a>,
    status: &'a Status,
}

#[derive(Serialize)]
struct Metadata<'a> {
    name: &'a str,
}

/// The text of a status file: [`HEADER`], then one YAML document per object in the order
/// given, each with `apiVersion`, `kind`, `metadata: {name}` and the [`Status::redacted`]
/// status. Nothing of the spec body is written. Same input, byte-identical output.
pub fn render(objects: &[ObjectStatus]) -> String {
    let mut out = String::from(HEADER);
    for object in objects {
        let status = object.status.redacted();
        let document = Document {
            api_version: API_VERSION,
            kind: object.kind,
            metadata: Metadata { name: &object.name },
            status: &status,
        };
        out.push_str("---\n");
        match serde_yaml_ng::to_string(&document) {
            Ok(yaml) => out.push_str(&yaml),
            // Plain structs with string keys always serialize; should that ever change,
            // a readable document beats a panic in the reconciler or a missing file.
            Err(e) => out.push_str(&format!(
                "apiVersion: {API_VERSION}\nkind: {}\nmetadata:\n  name: {}\n# status could not be rendered: {}\n",
                object.kind,
                object.name,
                e.to_string().replace('\n', " ")
            )),
        }
    }
    out
}

/// Writes `text` to `path` atomically ([`write_atomic`]: temp file, fsync, rename) only if
/// the file's content differs, creating missing folders; returns whether it wrote. An
/// unchanged file keeps its mtime, so tools watching it (and git) see no churn. On error no
/// temp file is left behind.
pub fn write_if_changed(path: &Path, text: &str) -> io::Result<bool> {
    match fs::read(path) {
        Ok(current) if current == text.as_bytes() => return Ok(false),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    write_atomic(path, text.as_bytes())?;
    Ok(true)
}

/// The folder status files belong in, with every link resolved: the specs folder (the
/// folder holding it, when the specs are one file) or the status dir. A status file
/// whose folder resolves anywhere else, through a link inside the tree or a folder
/// swapped for a link, is neither written nor removed.
#[derive(Debug)]
pub struct Home {
    real: PathBuf,
}

impl Home {
    /// Resolves `folder`. A status dir that does not exist yet is made; a specs folder
    /// that does not exist (moved away for a moment) is not, and nothing can be written.
    pub fn resolve(folder: &Path, is_status_dir: bool) -> io::Result<Home> {
        let context = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!(
                    "status files are written under {}, which cannot be resolved: {e}",
                    folder.display()
                ),
            )
        };
        if is_status_dir {
            fs::create_dir_all(folder).map_err(context)?;
        }
        let meta = fs::metadata(folder).map_err(context)?;
        let folder = match folder.parent() {
            Some(parent) if !meta.is_dir() => parent,
            _ => folder,
        };
        let folder = if folder.as_os_str().is_empty() {
            Path::new(".")
        } else {
            folder
        };
        Ok(Home {
            real: fs::canonicalize(folder).map_err(context)?,
        })
    }

    /// Fails unless `path`'s folder, links resolved, is under this home. Folders that do
    /// not exist yet are judged by the nearest one that does: what is made below it is
    /// made as plain folders.
    pub fn check(&self, path: &Path) -> io::Result<()> {
        let mut folder = path.parent();
        while let Some(f) = folder {
            let f = if f.as_os_str().is_empty() {
                Path::new(".")
            } else {
                f
            };
            match fs::canonicalize(f) {
                Ok(real) if real.starts_with(&self.real) => return Ok(()),
                Ok(real) => {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "not touching {}: its folder is really {}, outside {}",
                            path.display(),
                            real.display(),
                            self.real.display()
                        ),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => folder = f.parent(),
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("resolving the folder of {}: {e}", path.display()),
                    ));
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no folder of {} exists", path.display()),
        ))
    }
}

/// Removes a status file whose spec file is gone; a file already gone is fine.
pub fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::common::Phase;
    use crate::status::{ArchivesSummary, Condition, LastRun, READY};
    use chrono::{TimeZone, Utc};
    use std::time::{Duration, SystemTime};

    #[test]
    fn status_path_beside_the_spec() {
        let root = Path::new("specs");
        for (spec, expected) in [
            (
                "specs/apps/nextcloud.yaml",
                "specs/apps/nextcloud.status.yaml",
            ),
            ("specs/apps/gitea.yml", "specs/apps/gitea.status.yml"),
            ("specs/Loud.YAML", "specs/Loud.status.YAML"),
            ("specs/a.b.yaml", "specs/a.b.status.yaml"),
            ("nextcloud.yaml", "nextcloud.status.yaml"),
            ("specs/odd.json", "specs/odd.json.status.yaml"),
        ] {
            assert_eq!(
                status_path(Path::new(spec), root, None),
                PathBuf::from(expected),
                "{spec}"
            );
        }
    }

    #[test]
    fn status_path_under_a_status_dir() {
        let dir = Some(Path::new("status-out"));
        for (spec, root, expected) in [
            (
                "specs/apps/nextcloud.yaml",
                "specs",
                "status-out/apps/nextcloud.status.yaml",
            ),
            (
                "./specs/apps/gitea.yml",
                "specs",
                "status-out/apps/gitea.status.yml",
            ),
            ("specs/top.yaml", "./specs/", "status-out/top.status.yaml"),
            // A single watched file, a file outside the root, a path climbing out: flat.
            (
                "specs/one.yaml",
                "specs/one.yaml",
                "status-out/one.status.yaml",
            ),
            ("elsewhere/x.yaml", "specs", "status-out/x.status.yaml"),
            (
                "specs/../../etc/x.yaml",
                "specs",
                "status-out/x.status.yaml",
            ),
        ] {
            assert_eq!(
                status_path(Path::new(spec), Path::new(root), dir),
                PathBuf::from(expected),
                "{spec} under {root}"
            );
        }
    }

    fn example() -> Vec<ObjectStatus> {
        let t = |h| Utc.with_ymd_and_hms(2026, 11, 25, h, 0, 0).unwrap();
        vec![
            ObjectStatus {
                kind: Kind::BackupPolicy,
                name: "nextcloud-nightly".into(),
                status: Status {
                    observed_generation: Some("9f2c1e0a5b7d3c41".into()),
                    conditions: vec![Condition {
                        type_: READY.into(),
                        status: "True".into(),
                        reason: "Succeeded".into(),
                        message: "the last run succeeded".into(),
                        last_transition_time: t(3),
                    }],
                    last_schedule_time: Some(t(3)),
                    next_schedule_time: Some(t(3) + chrono::Duration::days(1)),
                    last_successful_time: Some(t(3)),
                    last_run: Some(LastRun {
                        id: "nextcloud-nightly-20261125T030000Z".into(),
                        phase: Phase::Succeeded,
                        start_time: Some(t(3)),
                        completion_time: Some(t(3) + chrono::Duration::seconds(95)),
                        source_bytes: Some(4_404_019),
                        stored_bytes: Some(1_234_567),
                        downtime_seconds: Some(41.5),
                        archive_id: Some("nextcloud-nightly-20261125T030000Z".into()),
                        message: None,
                        warnings: Vec::new(),
                        repository: None,
                        copies: Vec::new(),
                    }),
                    archives: Some(ArchivesSummary {
                        count: 12,
                        newest: Some("nextcloud-nightly-20261125T030000Z".into()),
                        oldest: Some("nextcloud-nightly-20261114T030000Z".into()),
                        bytes: 14_814_804,
                        ..ArchivesSummary::default()
                    }),
                    ..Status::default()
                },
            },
            ObjectStatus {
                kind: Kind::Archive,
                name: "before-upgrade".into(),
                status: Status {
                    conditions: vec![
                        Condition {
                            type_: READY.into(),
                            status: "False".into(),
                            reason: "InvalidSpec".into(),
                            message: "specs/apps/nextcloud.yaml:31:17: Archive/before-upgrade: spec.dumps[0].password: must be an object, found a string (\"hunter2\")".into(),
                            last_transition_time: t(4),
                        },
                        Condition {
                            type_: "Stalled".into(),
                            status: "True".into(),
                            reason: "InvalidSpec".into(),
                            message: "specs/apps/nextcloud.yaml:31:17: Archive/before-upgrade: spec.dumps[0].password: must be an object, found a string (\"hunter2\")".into(),
                            last_transition_time: t(4),
                        },
                    ],
                    errors: vec!["specs/apps/nextcloud.yaml:31:17: Archive/before-upgrade: spec.dumps[0].password: must be an object, found a string (\"hunter2\")".into()],
                    ..Status::default()
                },
            },
        ]
    }

    const EXPECTED: &str = r#"# Written by holdfast; do not edit. Keep status files out of git: add *.status.yaml and *.status.yml to .gitignore.
---
apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata:
  name: nextcloud-nightly
status:
  observedGeneration: 9f2c1e0a5b7d3c41
  conditions:
  - type: Ready
    status: 'True'
    reason: Succeeded
    message: the last run succeeded
    lastTransitionTime: 2026-11-25T03:00:00Z
  lastScheduleTime: 2026-11-25T03:00:00Z
  nextScheduleTime: 2026-11-26T03:00:00Z
  lastSuccessfulTime: 2026-11-25T03:00:00Z
  lastRun:
    id: nextcloud-nightly-20261125T030000Z
    phase: Succeeded
    startTime: 2026-11-25T03:00:00Z
    completionTime: 2026-11-25T03:01:35Z
    sourceBytes: 4404019
    storedBytes: 1234567
    downtimeSeconds: 41.5
    archiveId: nextcloud-nightly-20261125T030000Z
  archives:
    count: 12
    newest: nextcloud-nightly-20261125T030000Z
    oldest: nextcloud-nightly-20261114T030000Z
    bytes: 14814804
---
apiVersion: holdfast.dev/v1alpha1
kind: Archive
metadata:
  name: before-upgrade
status:
  conditions:
  - type: Ready
    status: 'False'
    reason: InvalidSpec
    message: 'specs/apps/nextcloud.yaml:31:17: Archive/before-upgrade: spec.dumps[0].password: must be an object, found a string (<redacted>)'
    lastTransitionTime: 2026-11-25T04:00:00Z
  - type: Stalled
    status: 'True'
    reason: InvalidSpec
    message: 'specs/apps/nextcloud.yaml:31:17: Archive/before-upgrade: spec.dumps[0].password: must be an object, found a string (<redacted>)'
    lastTransitionTime: 2026-11-25T04:00:00Z
  errors:
  - 'specs/apps/nextcloud.yaml:31:17: Archive/before-upgrade: spec.dumps[0].password: must be an object, found a string (<redacted>)'
"#;

    #[test]
    fn render_snapshot() {
        let text = render(&example());
        assert_eq!(text, EXPECTED, "\n{text}");
        assert!(!text.contains("hunter2"));
    }

    #[test]
    fn render_is_deterministic_and_reads_back() {
        use serde::Deserialize;
        let objects = example();
        let text = render(&objects);
        assert_eq!(text, render(&objects));
        let docs: Vec<serde_yaml_ng::Value> = serde_yaml_ng::Deserializer::from_str(&text)
            .map(serde_yaml_ng::Value::deserialize)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(docs.len(), 2);
        for (doc, object) in docs.iter().zip(&objects) {
            assert_eq!(doc["apiVersion"].as_str(), Some(API_VERSION));
            assert_eq!(doc["kind"].as_str(), Some(object.kind.as_str()));
            assert_eq!(doc["metadata"]["name"].as_str(), Some(object.name.as_str()));
            let status: Status = serde_yaml_ng::from_value(doc["status"].clone()).unwrap();
            assert_eq!(status, object.status.redacted());
        }
        assert_eq!(render(&[]), HEADER);
    }

    #[test]
    fn empty_status_is_one_short_document() {
        let text = render(&[ObjectStatus {
            kind: Kind::Restore,
            name: "r".into(),
            status: Status::default(),
        }]);
        assert_eq!(
            text,
            format!(
                "{HEADER}---\napiVersion: holdfast.dev/v1alpha1\nkind: Restore\nmetadata:\n  name: r\nstatus: {{}}\n"
            )
        );
    }

    #[test]
    fn write_if_changed_skips_identical_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apps/nextcloud.status.yaml");
        assert!(
            write_if_changed(&path, "a: 1\n").unwrap(),
            "creates folders"
        );
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(!write_if_changed(&path, "a: 1\n").unwrap());
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), old);
        assert!(write_if_changed(&path, "a: 2\n").unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "a: 2\n");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["nextcloud.status.yaml"], "no temp file left");
    }

    #[test]
    fn write_if_changed_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the file should be: reading fails, nothing is written.
        let path = dir.path().join("x.status.yaml");
        fs::create_dir(&path).unwrap();
        assert!(write_if_changed(&path, "a: 1\n").is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn remove_ignores_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.status.yaml");
        fs::write(&path, "x").unwrap();
        remove(&path).unwrap();
        assert!(!path.exists());
        remove(&path).unwrap();
    }

    #[test]
    fn status_files_stay_home() {
        let dir = tempfile::tempdir().unwrap();
        let specs = dir.path().join("specs");
        let outside = dir.path().join("outside");
        fs::create_dir_all(specs.join("apps")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, specs.join("etclink")).unwrap();
        std::os::unix::fs::symlink(specs.join("apps"), specs.join("alias")).unwrap();
        let home = Home::resolve(&specs, false).unwrap();
        for inside in [
            "a.status.yaml",
            "apps/a.status.yaml",
            "alias/a.status.yaml",
            "new/deeper/a.status.yaml",
        ] {
            home.check(&specs.join(inside)).unwrap();
        }
        let e = home
            .check(&specs.join("etclink/a.status.yaml"))
            .unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
        assert!(
            home.check(&specs.join("etclink/new/a.status.yaml"))
                .is_err()
        );
        assert!(home.check(&dir.path().join("x.status.yaml")).is_err());

        // A specs folder moved away is not made again by writing a status file into it.
        fs::rename(&specs, dir.path().join("moved")).unwrap();
        assert!(Home::resolve(&specs, false).is_err());
        assert!(!specs.exists());
        // A status dir is made.
        let status_dir = dir.path().join("status");
        Home::resolve(&status_dir, true)
            .unwrap()
            .check(&status_dir.join("apps/a.status.yaml"))
            .unwrap();
    }
}
