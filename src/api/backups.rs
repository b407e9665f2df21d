//! One backup (archive) in detail, and its artifacts' bytes: what the dashboard shows of
//! an archive and lets people download, under `/api/v1/backups/{repository}/{group}/{id}`.
//!
//! An artifact is sent as the manifest describes it, the bytes its `sha256` covers: an
//! encrypted one decrypted on the way (when this host holds the identity; 409 when not),
//! checked against its size and sha256 as it streams. A mismatch or a read error breaks
//! the transfer before its last bytes, so a client never holds a complete-looking copy
//! of something else. A restic snapshot's folder has no digest to send (it is read back
//! as a tar stream made now), and a folder-format artifact is not one stream: both are
//! answered 409, saying so.
//!
//! Retention's decision about an archive (kept or not, and why) is worked out per
//! request from the policy's rules as the reconciler last published them, and the
//! group's archives.

use std::collections::HashMap;
use std::io::Read;

use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::AppState;
use super::reply::{ApiPath, Failure, error, json};
use super::routes::{Body, Param, Route};
use crate::hub::redact::to_body;
use crate::repo::catalog::Entry;
use crate::repo::layout::{RECORD, time_from_id};
use crate::repo::manifest::{Artifact, Manifest, Verification};
use crate::repo::storage::Meta;
use crate::repo::{Repository, StorageError};
use crate::spec::Kind;

/// Retention's decision about one archive now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Verdict {
    /// Whether retention keeps it; one it does not keep goes at the next pruning.
    pub keep: bool,
    /// Why, e.g. `["daily 2026-11-24", "last 3"]`, or `["not kept by any rule"]`.
    pub reasons: Vec<String>,
}

/// One entry of `/api/v1/backups`: the catalog's entry, and retention's decision when
/// the list is of one BackupPolicy with retention rules (`?name=`).
#[derive(Serialize, JsonSchema)]
pub struct Backup {
    #[serde(flatten)]
    pub entry: Entry,
    /// Absent unless `?name=` names a BackupPolicy with retention, and for archives
    /// retention does not decide about (Corrupt, Missing, an Archive spec's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<Verdict>,
}

/// One archive in detail.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveDetail {
    /// The archive as `/api/v1/backups` lists it.
    pub entry: Entry,
    /// Its `manifest.json`, redacted: run info, targets, and each artifact's path, kind,
    /// size, sha256 and (in a restic repository) snapshot.
    pub manifest: Manifest,
    /// Its last verification, if it was ever verified.
    pub verification: Option<Verification>,
    /// Retention's decision about it now; absent unless it is an archive of a
    /// BackupPolicy with retention rules that retention decides about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention: Option<Verdict>,
    /// One per manifest artifact, in the same order: where to download it, or why it
    /// cannot be.
    pub downloads: Vec<Download>,
}

/// How one artifact can be downloaded.
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Download {
    /// The artifact's path in the manifest.
    pub path: String,
    /// The URL path of its bytes; `null` when it cannot be downloaded.
    pub url: Option<String>,
    /// Why it cannot be downloaded; `null` when it can.
    pub unavailable: Option<String>,
}

fn path_param(name: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: super::routes::In::Path,
        description,
        schema: serde_json::json!({"type": "string"}),
    }
}

fn archive_params() -> Vec<Param> {
    vec![
        path_param(
            "repository",
            "`default` (the --repository folder) or a Repository spec's name.",
        ),
        path_param(
            "group",
            "The archive's group: its policy's or Archive's name.",
        ),
        path_param("id", "The archive id, `<group>-<yyyymmddThhmmssZ>`."),
    ]
}

fn schema<T: JsonSchema>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

/// The routes of this module, appended to [`super::routes::routes`].
pub fn routes() -> Vec<Route> {
    let mut artifact_params = archive_params();
    artifact_params.push(path_param(
        "name",
        "The artifact's path in the manifest, percent-encoded (`volumes%2Fdata.tar.zst`); the archive's `downloads` give the whole URL.",
    ));
    vec![
        Route {
            path: "/api/v1/backups/{repository}/{group}/{id}",
            operation_id: "getBackup",
            summary: "One backup (archive): its catalog entry, manifest, verification record, retention's decision, and where to download each artifact.",
            description: None,
            params: archive_params(),
            body: Body::Json(schema::<ArchiveDetail>),
            errors: &[404, 500, 503],
            unavailable_same_body: false,
            handler: get(detail),
        },
        Route {
            path: "/api/v1/backups/{repository}/{group}/{id}/artifacts/{name}",
            operation_id: "getBackupArtifact",
            summary: "One artifact's bytes, streamed, as its manifest entry describes them (decrypted); `X-Holdfast-Sha256` is their sha256. A transfer that breaks off, or ends short of Content-Length, was refused mid-way (a read error, or bytes that do not match the manifest).",
            description: Some(
                "409 when it cannot be sent as one checked stream: a restic snapshot's folder (no sha256 to check against; restore it instead), a folder-format artifact, or an encrypted artifact this host holds no identity for.",
            ),
            params: artifact_params,
            body: Body::Text("application/octet-stream"),
            errors: &[404, 409, 500, 503],
            unavailable_same_body: false,
            handler: get(artifact),
        },
    ]
}

/// A path segment that names nothing above or beside it in a folder.
fn plain_segment(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && !s.contains(['/', '\\', '\0'])
}

/// The repository named in the path, or a 404 (503 when its spec is loaded but it
/// cannot be opened).
pub(super) fn repository(app: &AppState, name: &str) -> Result<Repository, Failure> {
    app.repository_named(name).map_err(|why| {
        let known = app.hub.snapshot().collection(Kind::Repository).get(name).is_some();
        if known {
            Failure(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("repository `{name}` cannot be read now: {why}"),
            )
        } else if app.named.is_none() {
            Failure(
                StatusCode::NOT_FOUND,
                format!(
                    "no repository `{name}`: only the default repository can be read through the API here"
                ),
            )
        } else {
            Failure(
                StatusCode::NOT_FOUND,
                format!("no repository `{name}`: {why}"),
            )
        }
    })
}

fn storage_failure(e: StorageError) -> Failure {
    let status = if e.is_transient() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    Failure(status, e.to_string())
}

fn no_archive(repository: &str, group: &str, id: &str) -> Failure {
    Failure(
        StatusCode::NOT_FOUND,
        format!(
            "no archive {id:?} of {group:?} in repository `{repository}`; /api/v1/backups lists them"
        ),
    )
}

/// The archive's manifest; a 404 for what is not an archive.
fn read_manifest(repo: &Repository, group: &str, id: &str) -> Result<Manifest, Failure> {
    if !plain_segment(group) || !plain_segment(id) || time_from_id(id).is_none() {
        return Err(no_archive(repo.name(), group, id));
    }
    match crate::repo::verify::manifest(repo, group, id) {
        Ok(m) => Ok(m),
        Err(crate::repo::verify::VerifyError::NoManifest { .. }) => {
            Err(no_archive(repo.name(), group, id))
        }
        Err(crate::repo::verify::VerifyError::Storage(e)) => Err(storage_failure(e)),
        Err(e) => Err(Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// The retention rules and time zone of the BackupPolicy `name` as last published;
/// `None` when it has none, does not validate, or is not a policy.
fn rules_of(app: &AppState, name: &str) -> Option<(crate::spec::common::Retention, chrono_tz::Tz)> {
    let body = app
        .hub
        .snapshot()
        .collection(Kind::BackupPolicy)
        .get(name)?
        .clone();
    let object: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let spec = object.get("spec")?;
    let rules = serde_json::from_value(spec.get("retention")?.clone()).ok()?;
    let zone = spec
        .get("timezone")
        .and_then(|t| t.as_str())
        .and_then(|t| t.parse().ok())
        .unwrap_or(chrono_tz::UTC);
    Some((rules, zone))
}

/// Retention's decisions now about the archives of `group` among `entries`, by id; empty
/// unless `group` is a BackupPolicy with retention rules.
pub fn retention_of(app: &AppState, group: &str, entries: &[Entry]) -> HashMap<String, Verdict> {
    let Some((rules, zone)) = rules_of(app, group) else {
        return HashMap::new();
    };
    let of_group: Vec<&Entry> = entries.iter().filter(|e| e.group == group).collect();
    crate::repo::prune::decide(&of_group, group, &rules, zone, chrono::Utc::now())
        .into_iter()
        .map(|d| {
            (
                d.id,
                Verdict {
                    keep: d.keep,
                    reasons: d.reasons,
                },
            )
        })
        .collect()
}

/// The entries of `/api/v1/backups`, with retention's decisions when they are of one
/// policy (`name`).
pub fn with_retention(app: &AppState, name: Option<&str>, entries: Vec<Entry>) -> Vec<Backup> {
    let mut verdicts = match name {
        Some(name) => retention_of(app, name, &entries),
        None => HashMap::new(),
    };
    entries
        .into_iter()
        .map(|entry| Backup {
            retention: verdicts.remove(&entry.id),
            entry,
        })
        .collect()
}

/// Percent-encodes a path segment (everything but unreserved characters).
fn encode_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%2E", ".")
        .replace("%5F", "_")
        .replace("%7E", "~")
}

/// Why an artifact cannot be sent as one checked stream, if it cannot.
fn unavailable(repo: &Repository, group: &str, id: &str, artifact: &Artifact) -> Option<String> {
    if artifact.snapshot.is_some() && artifact.snapshot_path().1 {
        return Some(
            "a restic snapshot's folder has no sha256 in the manifest to check a download against (restic checks each blob as it reads); restore it with `holdfast restore` instead".into(),
        );
    }
    if artifact.sha256.is_empty() {
        return Some("the manifest gives it no sha256 to check a download against".into());
    }
    if artifact.stored_sha256.is_some() && (repo.encryption().is_none() || !repo.can_decrypt()) {
        return Some(format!(
            "it is encrypted (age) and this host holds no identity for repository `{}` (spec.encryption.age.identityFile): its manifest's sha256 is of the decrypted bytes",
            repo.name()
        ));
    }
    if artifact.snapshot.is_none()
        && matches!(repo.stat(group, id, &artifact.path), Ok(Some(Meta::Folder)))
    {
        return Some(
            "a folder-format artifact is a folder of plain files, not one stream; read it in the repository's folder".into(),
        );
    }
    None
}

async fn detail(
    State(app): State<AppState>,
    ApiPath((repository_name, group, id)): ApiPath<(String, String, String)>,
) -> Response {
    let read = tokio::task::spawn_blocking(move || -> Result<ArchiveDetail, Failure> {
        let repo = repository(&app, &repository_name)?;
        let manifest = read_manifest(&repo, &group, &id)?;
        let entry = crate::repo::catalog::read_entry(&repo, &group, &id)
            .map_err(storage_failure)?
            .ok_or_else(|| no_archive(repo.name(), &group, &id))?;
        let verification = repo
            .read(&group, &id, RECORD)
            .map_err(storage_failure)?
            .and_then(|b| serde_json::from_slice::<Verification>(&b).ok());
        let retention = if rules_of(&app, &group).is_some() {
            // The daemon's catalog when it is of this repository; else the group is read.
            let entries = match app.hub.catalog() {
                Some(entries) if repo.name() == crate::spec::repository::DEFAULT_REPOSITORY => {
                    entries
                        .iter()
                        .filter(|e| e.group == group)
                        .cloned()
                        .collect()
                }
                _ => {
                    let mut entries = Vec::new();
                    for other in repo.archives(&group).map_err(storage_failure)? {
                        if let Some(e) = crate::repo::catalog::read_entry(&repo, &group, &other)
                            .map_err(storage_failure)?
                        {
                            entries.push(e);
                        }
                    }
                    entries
                }
            };
            retention_of(&app, &group, &entries).remove(&id)
        } else {
            None
        };
        let downloads = manifest
            .artifacts
            .iter()
            .map(|a| {
                let why = unavailable(&repo, &group, &id, a);
                Download {
                    path: a.path.clone(),
                    url: why.is_none().then(|| {
                        format!(
                            "/api/v1/backups/{}/{}/{}/artifacts/{}",
                            encode_segment(repo.name()),
                            encode_segment(&group),
                            encode_segment(&id),
                            encode_segment(&a.path)
                        )
                    }),
                    unavailable: why,
                }
            })
            .collect();
        Ok(ArchiveDetail {
            entry,
            manifest,
            verification,
            retention,
            downloads,
        })
    })
    .await;
    match read {
        Ok(Ok(detail)) => json(StatusCode::OK, to_body(&detail)),
        Ok(Err(e)) => e.into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A download's file name: the artifact's last path segment, with anything but letters,
/// digits, `.`, `-` and `_` made `_`, so it cannot break out of the header's quotes or
/// name a folder.
fn safe_file_name(path: &str) -> String {
    let last = path.rsplit('/').next().unwrap_or(path);
    let name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = name.trim_start_matches('.').to_string();
    if name.is_empty() {
        "artifact".to_string()
    } else {
        name
    }
}

/// How much is read from the artifact at a time.
const CHUNK: usize = 256 * 1024;

async fn artifact(
    State(app): State<AppState>,
    method: Method,
    ApiPath((repository_name, group, id, name)): ApiPath<(String, String, String, String)>,
) -> Response {
    let head = method == Method::HEAD;
    let opened = tokio::task::spawn_blocking(move || {
        let repo = repository(&app, &repository_name)?;
        let manifest = read_manifest(&repo, &group, &id)?;
        let Some(artifact) = manifest.artifacts.into_iter().find(|a| a.path == name) else {
            return Err(Failure(
                StatusCode::NOT_FOUND,
                format!("archive {id} has no artifact {name:?}; its manifest lists them"),
            ));
        };
        if let Some(why) = unavailable(&repo, &group, &id, &artifact) {
            return Err(Failure(
                StatusCode::CONFLICT,
                format!("{} cannot be downloaded: {why}", artifact.path),
            ));
        }
        let reader = if head {
            None
        } else {
            Some(
                repo.open_artifact(&group, &id, &artifact)
                    .map_err(storage_failure)?,
            )
        };
        Ok((artifact, reader))
    })
    .await;
    let (artifact, reader) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => return e.into_response(),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let body = match reader {
        Some(reader) => HttpBody::from_stream(checked_stream(reader, artifact.clone())),
        None => HttpBody::empty(),
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    let mut set = |name: header::HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set(header::CONTENT_TYPE, "application/octet-stream".into());
    set(header::CONTENT_LENGTH, artifact.size.to_string());
    set(
        header::CONTENT_DISPOSITION,
        format!(
            "attachment; filename=\"{}\"",
            safe_file_name(&artifact.path)
        ),
    );
    set(
        header::HeaderName::from_static("x-holdfast-sha256"),
        artifact.sha256.clone(),
    );
    response
}

/// The artifact's bytes as a stream of chunks, read on a blocking thread, counted and
/// hashed as they go. The last chunk is held back until the end is reached and size and
/// sha256 match the manifest: a mismatch, like a read error, ends the stream with an
/// error instead, which breaks the transfer short of its Content-Length.
fn checked_stream(
    mut reader: Box<dyn Read + Send>,
    artifact: Artifact,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        let mut count = 0u64;
        let mut held: Option<Bytes> = None;
        let end = loop {
            let mut buffer = vec![0u8; CHUNK];
            let n = match read_full(&mut reader, &mut buffer) {
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            if n == 0 {
                let actual = hex::encode(hasher.finalize_reset());
                if count != artifact.size || actual != artifact.sha256 {
                    break Err(std::io::Error::other(format!(
                        "{}: read {count} bytes with sha256 {actual}, the manifest says {} bytes with sha256 {}",
                        artifact.path, artifact.size, artifact.sha256
                    )));
                }
                break Ok(());
            }
            buffer.truncate(n);
            count += n as u64;
            if count > artifact.size {
                break Err(std::io::Error::other(format!(
                    "{}: longer than the {} bytes the manifest says",
                    artifact.path, artifact.size
                )));
            }
            hasher.update(&buffer);
            if let Some(chunk) = held.replace(Bytes::from(buffer))
                && tx.blocking_send(Ok(chunk)).is_err()
            {
                // The client went away.
                return;
            }
        };
        let last = match end {
            Ok(()) => held.map(Ok),
            Err(e) => {
                tracing::warn!(artifact = %artifact.path, "a download was broken off: {e}");
                Some(Err(e))
            }
        };
        if let Some(last) = last {
            let _ = tx.blocking_send(last);
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((item, rx))
    })
}

/// Reads until `buffer` is full or the end; returns how many bytes it holds.
fn read_full(reader: &mut dyn Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
