//! One archive in detail and its artifacts downloaded, from repositories written here:
//! plain, age-encrypted, and with artifacts that cannot be sent as one checked stream.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};
use sha2::Digest;
use tower::ServiceExt;

use super::tests::{Fixture, fixture, send};
use super::*;
use crate::hub::{Collection, Snapshot};
use crate::repo::manifest::{Artifact, Manifest, ManifestTargets};
use crate::spec::common::Phase;

const GROUP: &str = "web";

fn artifact(path: &str, bytes: &[u8]) -> Artifact {
    Artifact {
        kind: "volume".into(),
        path: path.into(),
        size: bytes.len() as u64,
        sha256: hex::encode(sha2::Sha256::digest(bytes)),
        source_bytes: 0,
        entries: 1,
        via: None,
        source: Some("web_data".into()),
        stack: Some("web".into()),
        engine: None,
        database: None,
        stored_size: None,
        stored_sha256: None,
        snapshot: None,
    }
}

fn manifest(id: &str, minute: u32, artifacts: Vec<Artifact>) -> Manifest {
    let time = Utc.with_ymd_and_hms(2026, 11, 25, 3, minute, 0).unwrap();
    Manifest {
        format_version: 1,
        id: id.into(),
        kind: "BackupPolicy".into(),
        name: GROUP.into(),
        policy: Some(GROUP.into()),
        phase: Phase::Succeeded,
        host: "test".into(),
        holdfast_version: "0".into(),
        docker_api_version: "1.41".into(),
        start_time: time,
        completion_time: time,
        format: "tar.zst".into(),
        level: Some(3),
        targets: ManifestTargets::default(),
        artifacts,
        timings: Default::default(),
        downtime: Default::default(),
        warnings: vec!["PGPASSWORD=hunter2 was seen".into()],
        encryption: None,
    }
}

/// Writes an archive of `GROUP` into `repo` at minute `minute`: each artifact's bytes
/// through the repository's outlet (encrypted when it is), then the manifest.
fn write_archive(
    repo: &crate::repo::Repository,
    minute: u32,
    files: &[(&str, &[u8])],
    edit: impl FnOnce(&mut Manifest),
) -> String {
    let at = Utc.with_ymd_and_hms(2026, 11, 25, 3, minute, 0).unwrap();
    let staged = repo.begin(GROUP, at).unwrap();
    let mut artifacts = Vec::new();
    for (path, bytes) in files {
        let mut out = staged.outlet.create(path).unwrap();
        std::io::Write::write_all(&mut out, bytes).unwrap();
        let stored = out.commit().unwrap();
        let mut a = artifact(path, bytes);
        a.stored_size = stored.as_ref().map(|d| d.size);
        a.stored_sha256 = stored.map(|d| d.sha256);
        artifacts.push(a);
    }
    let id = staged.id.clone();
    let mut m = manifest(&id, minute, artifacts);
    m.encryption = repo.encryption().map(str::to_string);
    edit(&mut m);
    repo.commit(staged, &serde_json::to_vec(&m).unwrap())
        .unwrap();
    id
}

/// Publishes the policy `web` with retention: the newest one archive.
fn publish_policy_with_retention(f: &Fixture) {
    let body = json!({
        "apiVersion": "holdfast.dev/v1alpha1",
        "kind": "BackupPolicy",
        "metadata": {"name": GROUP},
        "spec": {"retention": {"keepLast": 1}, "timezone": "Europe/Berlin"},
        "status": {},
        "file": "web.yaml",
    });
    f.app.hub.publish(Snapshot {
        loaded: true,
        policies: Collection::new(vec![(GROUP.into(), bytes::Bytes::from(body.to_string()))]),
        ..Default::default()
    });
}

/// Status, headers and body bytes of a request; the body is `Err` when its stream broke.
async fn fetch(
    app: &AppState,
    method: &str,
    uri: &str,
) -> (
    StatusCode,
    axum::http::HeaderMap,
    Result<bytes::Bytes, String>,
) {
    let response = router(app.clone())
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .map_err(|e| format!("{e:?}"));
    (status, headers, body)
}

const DATA: &[u8] = b"the volume's tar stream, compressed";

#[tokio::test]
async fn an_archive_in_detail_with_retention_and_where_to_download() {
    let f = fixture(None);
    let repo = f.app.repository.clone();
    let older = write_archive(&repo, 0, &[("volumes/web_data.tar.zst", DATA)], |_| {});
    let newer = write_archive(&repo, 5, &[("volumes/web_data.tar.zst", DATA)], |_| {});
    // Without retention rules: no decision.
    let (status, body) = send(
        &f.app,
        "GET",
        &format!("/api/v1/backups/default/{GROUP}/{older}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("retention").is_none(), "{body}");

    publish_policy_with_retention(&f);
    let (status, body) = send(
        &f.app,
        "GET",
        &format!("/api/v1/backups/default/{GROUP}/{older}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["entry"]["id"], older.as_str());
    assert_eq!(body["entry"]["repository"], "default");
    assert_eq!(body["entry"]["health"], "Good");
    assert_eq!(body["manifest"]["kind"], "BackupPolicy");
    let artifact = &body["manifest"]["artifacts"][0];
    assert_eq!(artifact["path"], "volumes/web_data.tar.zst");
    assert_eq!(artifact["kind"], "volume");
    assert_eq!(artifact["size"], DATA.len());
    assert_eq!(
        artifact["sha256"],
        hex::encode(sha2::Sha256::digest(DATA)).as_str()
    );
    assert_eq!(
        body["manifest"]["warnings"],
        json!(["PGPASSWORD=<redacted> was seen"])
    );
    assert_eq!(body["verification"], Value::Null);
    assert_eq!(
        body["retention"],
        json!({"keep": false, "reasons": ["not kept by any rule"]})
    );
    assert_eq!(
        body["downloads"],
        json!([{
            "path": "volumes/web_data.tar.zst",
            "url": format!("/api/v1/backups/default/web/{older}/artifacts/volumes%2Fweb_data.tar.zst"),
            "unavailable": null,
        }])
    );
    let (_, body) = send(
        &f.app,
        "GET",
        &format!("/api/v1/backups/default/{GROUP}/{newer}"),
        None,
    )
    .await;
    assert_eq!(body["retention"]["keep"], true, "{body}");

    // The list of one policy carries each decision; the whole list none.
    let (_, list) = send(&f.app, "GET", "/api/v1/backups?name=web", None).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], older.as_str());
    assert_eq!(items[0]["retention"]["keep"], false);
    assert_eq!(items[1]["retention"]["keep"], true);
    assert_eq!(items[1]["retention"]["reasons"][0], "newest successful");
    let (_, all) = send(&f.app, "GET", "/api/v1/backups", None).await;
    assert!(all["items"][0].get("retention").is_none(), "{all}");
    assert_eq!(all["items"][0]["group"], "web");
}

#[tokio::test]
async fn unknown_repositories_archives_and_artifacts_are_404() {
    let f = fixture(None);
    let id = write_archive(&f.app.repository, 0, &[("volumes/a.tar", DATA)], |_| {});
    let cases = [
        (
            format!("/api/v1/backups/offsite/{GROUP}/{id}"),
            "only the default repository can be read through the API",
        ),
        (
            format!("/api/v1/backups/default/{GROUP}/web-20260101T000000Z"),
            "no archive \"web-20260101T000000Z\" of \"web\" in repository `default`",
        ),
        (format!("/api/v1/backups/default/other/{id}"), "no archive"),
        (
            format!("/api/v1/backups/default/{GROUP}/..%2F..%2Fetc"),
            "no archive",
        ),
        (format!("/api/v1/backups/default/..%2F/{id}"), "no archive"),
        (
            format!("/api/v1/backups/default/{GROUP}/{id}/artifacts/volumes%2Fb.tar"),
            "has no artifact \"volumes/b.tar\"",
        ),
        (
            format!("/api/v1/backups/default/{GROUP}/{id}/artifacts/manifest.json"),
            "has no artifact",
        ),
        (
            format!("/api/v1/backups/offsite/{GROUP}/{id}/artifacts/volumes%2Fa.tar"),
            "only the default repository",
        ),
    ];
    for (uri, expected) in cases {
        let (status, body) = send(&f.app, "GET", &uri, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(expected), "{uri}: {message}");
    }
}

#[tokio::test]
async fn an_artifact_downloads_as_its_manifest_says_and_head_sends_headers_only() {
    let f = fixture(None);
    let id = write_archive(
        &f.app.repository,
        0,
        &[("volumes/web data\".tar.zst", DATA)],
        |_| {},
    );
    let uri =
        format!("/api/v1/backups/default/{GROUP}/{id}/artifacts/volumes%2Fweb%20data%22.tar.zst");
    let (status, headers, body) = fetch(&f.app, "GET", &uri).await;
    assert_eq!(status, StatusCode::OK);
    let body = body.unwrap();
    assert_eq!(&body[..], DATA);
    let sha = hex::encode(sha2::Sha256::digest(DATA));
    assert_eq!(headers["x-holdfast-sha256"], sha.as_str());
    assert_eq!(
        headers[header::CONTENT_LENGTH],
        DATA.len().to_string().as_str()
    );
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"web_data_.tar.zst\""
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let (status, headers, body) = fetch(&f.app, "HEAD", &uri).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.unwrap().is_empty());
    assert_eq!(headers["x-holdfast-sha256"], sha.as_str());
    assert_eq!(
        headers[header::CONTENT_LENGTH],
        DATA.len().to_string().as_str()
    );
}

#[tokio::test]
async fn bytes_that_do_not_match_the_manifest_break_the_transfer() {
    let f = fixture(None);
    // Large enough for several chunks: the mismatch is found only at the end.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let id = write_archive(&f.app.repository, 0, &[("volumes/big.tar", &big)], |_| {});
    let path = f
        .app
        .repository
        .local_dir(GROUP, &id)
        .unwrap()
        .join("volumes/big.tar");
    let uri = format!("/api/v1/backups/default/{GROUP}/{id}/artifacts/volumes%2Fbig.tar");
    let (status, _, body) = fetch(&f.app, "GET", &uri).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.unwrap().len(), big.len());
    // Same size, one byte changed; then one byte short; then one too many.
    let mut changed = big.clone();
    changed[999_999] ^= 1;
    for bytes in [
        changed,
        big[..big.len() - 1].to_vec(),
        [&big[..], b"x"].concat(),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let response = router(f.app.clone())
            .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_LENGTH],
            big.len().to_string().as_str()
        );
        // The stream breaks, and before all Content-Length bytes were sent: over HTTP
        // the client never holds a complete-looking body.
        let mut stream = response.into_body().into_data_stream();
        let mut received = 0;
        let mut broke = false;
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            match chunk {
                Ok(chunk) => received += chunk.len(),
                Err(_) => {
                    broke = true;
                    break;
                }
            }
        }
        assert!(broke, "a transfer of other bytes ended as if complete");
        assert!(
            received < big.len(),
            "{received} bytes sent before the break"
        );
    }
}

#[tokio::test]
async fn an_encrypted_artifact_is_decrypted_on_the_way() {
    let f = fixture(None);
    let dir = tempfile::tempdir().unwrap();
    let (crypt, _identity) = crate::repo::crypt::Crypt::generated();
    let vault = crate::repo::Repository::named(
        "vault",
        Arc::new(crate::repo::storage::LocalStorage::new(dir.path(), "test")),
        Some(crypt),
        false,
    );
    let id = write_archive(&vault, 0, &[("dumps/db.sql.zst", DATA)], |_| {});
    let shared = vault.clone();
    let app = f
        .app
        .clone()
        .with_named_repositories(Arc::new(move |name: &str| match name {
            "vault" => Ok(shared.clone()),
            _ => Err("no Repository spec of that name is loaded".into()),
        }));
    let uri = format!("/api/v1/backups/vault/{GROUP}/{id}/artifacts/dumps%2Fdb.sql.zst");
    let (status, headers, body) = fetch(&app, "GET", &uri).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body.unwrap()[..], DATA);
    assert_eq!(
        headers["x-holdfast-sha256"],
        hex::encode(sha2::Sha256::digest(DATA)).as_str()
    );
    let (status, body) = send(
        &app,
        "GET",
        &format!("/api/v1/backups/vault/{GROUP}/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["entry"]["repository"], "vault");
    assert_eq!(body["manifest"]["encryption"], "age");
    assert!(
        body["downloads"][0]["url"]
            .as_str()
            .unwrap()
            .starts_with("/api/v1/backups/vault/")
    );
    let (status, body) = send(
        &app,
        "GET",
        &format!("/api/v1/backups/elsewhere/{GROUP}/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no Repository spec"),
        "{body}"
    );

    // A host with the public key only cannot send what the sha256 covers.
    let writer_only =
        crate::repo::crypt::Crypt::from_spec(&crate::spec::repository::AgeEncryption {
            recipients: vec![_identity.to_public().to_string()],
            identity_file: None,
        })
        .unwrap();
    let sealed = crate::repo::Repository::named(
        "vault",
        Arc::new(crate::repo::storage::LocalStorage::new(dir.path(), "test")),
        Some(writer_only),
        false,
    );
    let app = f
        .app
        .clone()
        .with_named_repositories(Arc::new(move |_: &str| Ok(sealed.clone())));
    let (status, body) = send(&app, "GET", &uri, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["error"].as_str().unwrap().contains("identityFile"),
        "{body}"
    );
    let (_, body) = send(
        &app,
        "GET",
        &format!("/api/v1/backups/vault/{GROUP}/{id}"),
        None,
    )
    .await;
    assert_eq!(body["downloads"][0]["url"], Value::Null);
    assert!(
        body["downloads"][0]["unavailable"]
            .as_str()
            .unwrap()
            .contains("encrypted")
    );
}

#[tokio::test]
async fn a_snapshot_folder_and_a_folder_artifact_are_409_saying_why() {
    let f = fixture(None);
    let id = write_archive(&f.app.repository, 0, &[("volumes/a.tar", DATA)], |m| {
        m.format = "restic".into();
        m.artifacts[0].snapshot = Some("0123abcd".into());
        m.artifacts[0].sha256 = String::new();
    });
    let (status, body) = send(
        &f.app,
        "GET",
        &format!("/api/v1/backups/default/{GROUP}/{id}/artifacts/volumes%2Fa.tar"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("restic snapshot's folder"),
        "{body}"
    );

    let id = write_archive(&f.app.repository, 1, &[], |m| {
        m.format = "folder".into();
        m.artifacts.push(artifact("volumes/tree", b"listing"));
    });
    std::fs::create_dir_all(
        f.app
            .repository
            .local_dir(GROUP, &id)
            .unwrap()
            .join("volumes/tree"),
    )
    .unwrap();
    let (status, body) = send(
        &f.app,
        "GET",
        &format!("/api/v1/backups/default/{GROUP}/{id}/artifacts/volumes%2Ftree"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["error"].as_str().unwrap().contains("folder-format"),
        "{body}"
    );
}

#[tokio::test]
async fn a_metrics_token_cannot_download() {
    let mut f = fixture(None);
    let id = write_archive(&f.app.repository, 0, &[("volumes/a.tar", DATA)], |_| {});
    f.app = f.app.clone().with_tokens(Some(
        tokens::Tokens::parse(
            "tokens:\n  - name: scraper\n    scope: metrics\n    token: scraper-0123456789abcdef\n",
        )
        .unwrap(),
    ));
    let uri = format!("/api/v1/backups/default/{GROUP}/{id}/artifacts/volumes%2Fa.tar");
    let (status, body) = send(&f.app, "GET", &uri, Some("scraper-0123456789abcdef")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn the_answers_fit_the_openapi_document() {
    let f = fixture(None);
    let id = write_archive(&f.app.repository, 0, &[("volumes/a.tar", DATA)], |_| {});
    publish_policy_with_retention(&f);
    let doc = openapi::document(&routes::routes());
    let schema_of = |path: &str| {
        doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            .clone()
    };
    for (path, uri) in [
        (
            "/api/v1/backups/{repository}/{group}/{id}",
            format!("/api/v1/backups/default/{GROUP}/{id}"),
        ),
        ("/api/v1/backups", "/api/v1/backups?name=web".to_string()),
    ] {
        let (status, body) = send(&f.app, "GET", &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        let v = super::tests::validator(&doc, &schema_of(path));
        let errors: Vec<String> = v.iter_errors(&body).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{uri}: {errors:?}\n{body}");
    }
    let artifact = &doc["paths"]["/api/v1/backups/{repository}/{group}/{id}/artifacts/{name}"]["get"]
        ["responses"];
    assert!(artifact["200"]["content"]["application/octet-stream"].is_object());
    assert!(artifact["409"].is_object() && artifact["403"].is_object());
}
