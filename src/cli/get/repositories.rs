//! `get repositories`: the Repository objects in the specs folder, where each keeps its
//! archives. Read from the specs alone: listing never connects to a storage.

use std::process::ExitCode;

use serde::Serialize;

use super::GetArgs;
use crate::settings::Settings;
use crate::spec::Resource;
use crate::spec::repository::{RepositoryFormat, RepositorySpec};

/// One Repository as `get repositories` shows it. Its secrets are never read: only where
/// they come from is in the spec, and that is not shown.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RepositoryRow {
    name: String,
    /// `s3`, `sftp` or `local`.
    storage: &'static str,
    /// Where the archives are: `endpoint/bucket/prefix/`, `user@host:port/path` or a path.
    location: String,
    /// `archives` (holdfast's own layout) or `restic`.
    format: &'static str,
    /// Encrypted with age, or (always) a restic repository with its password.
    encrypted: bool,
    append_only: bool,
    /// The spec file it is declared in.
    file: String,
}

impl RepositoryRow {
    pub(super) fn new(name: &str, spec: &RepositorySpec, file: String) -> RepositoryRow {
        RepositoryRow {
            name: name.to_string(),
            storage: spec.storage.kind(),
            location: spec.location(),
            format: spec.format.as_str(),
            encrypted: spec.format == RepositoryFormat::Restic
                || spec.encryption.as_ref().is_some_and(|e| e.age.is_some()),
            append_only: spec.append_only,
            file,
        }
    }

    fn cells(&self) -> (Vec<String>, Vec<String>) {
        (
            vec![
                self.name.clone(),
                format!("{} {}", self.storage, self.location),
                self.format.to_string(),
                self.encrypted.to_string(),
                self.append_only.to_string(),
            ],
            vec![self.file.clone()],
        )
    }
}

pub fn run(settings: &Settings, args: &GetArgs) -> anyhow::Result<ExitCode> {
    let report = crate::cli::specs::load_existing(settings)?;
    let mut rows = Vec::new();
    for file in &report.files {
        for object in &file.objects {
            if let Some(Resource::Repository(repository)) = &object.resource {
                rows.push(RepositoryRow::new(
                    &repository.metadata.name,
                    &repository.spec,
                    file.path.display().to_string(),
                ));
            }
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if rows.is_empty() {
        eprintln!(
            "no Repositories ({}); archives go to the default repository only",
            crate::cli::paths(settings, &[crate::cli::Path::Specs])
        );
    }
    super::print(
        args.output,
        &rows,
        &["NAME", "STORAGE", "FORMAT", "ENCRYPTED", "APPEND-ONLY"],
        &["FILE"],
        RepositoryRow::cells,
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::repository::{
        AgeEncryption, EncryptionSpec, HostSecret, LocalStorageSpec, S3Storage, SftpStorage,
        StorageSpec,
    };

    fn secret() -> HostSecret {
        HostSecret {
            from_env: Some("S3_KEY".into()),
            from_file: None,
        }
    }

    fn spec(storage: StorageSpec) -> RepositorySpec {
        RepositorySpec {
            format: Default::default(),
            host_selector: None,
            password: None,
            storage,
            encryption: None,
            append_only: false,
        }
    }

    #[test]
    fn each_storage_says_where_its_archives_are() {
        let s3 = StorageSpec {
            s3: Some(S3Storage {
                endpoint: "http://127.0.0.1:3900/".into(),
                region: "garage".into(),
                bucket: "holdfast".into(),
                prefix: "host1".into(),
                path_style: true,
                access_key_id: secret(),
                secret_access_key: secret(),
            }),
            ..StorageSpec::default()
        };
        let mut s3 = spec(s3);
        s3.append_only = true;
        s3.encryption = Some(EncryptionSpec {
            age: Some(AgeEncryption {
                recipients: vec!["age1…".into()],
                identity_file: None,
            }),
        });
        let row = RepositoryRow::new("offsite", &s3, "r.yaml".into());
        assert_eq!(
            row.cells().0,
            [
                "offsite",
                "s3 http://127.0.0.1:3900/holdfast/host1/",
                "archives",
                "true",
                "true"
            ]
        );
        let sftp = spec(StorageSpec {
            sftp: Some(SftpStorage {
                host: "nas.lan".into(),
                port: 2222,
                user: "backup".into(),
                path: "/srv/holdfast".into(),
                private_key_file: "/etc/holdfast/id".into(),
                known_hosts_file: "/etc/holdfast/known_hosts".into(),
            }),
            ..StorageSpec::default()
        });
        let row = RepositoryRow::new("nas", &sftp, "r.yaml".into());
        assert_eq!(
            row.cells().0,
            [
                "nas",
                "sftp backup@nas.lan:2222/srv/holdfast",
                "archives",
                "false",
                "false"
            ]
        );
        let local = spec(StorageSpec {
            local: Some(LocalStorageSpec {
                path: "/mnt/usb".into(),
            }),
            ..StorageSpec::default()
        });
        let row = RepositoryRow::new("usb", &local, "r.yaml".into());
        assert_eq!(row.cells().0[1], "local /mnt/usb");
        assert_eq!(row.cells().1, ["r.yaml"]);
    }

    #[test]
    fn a_restic_repository_shows_its_format_and_is_encrypted() {
        let mut restic = spec(StorageSpec {
            local: Some(LocalStorageSpec {
                path: "/srv/backups".into(),
            }),
            ..StorageSpec::default()
        });
        restic.format = RepositoryFormat::Restic;
        restic.password = Some(HostSecret {
            from_file: Some("/etc/holdfast/restic-password".into()),
            from_env: None,
        });
        let row = RepositoryRow::new("vault", &restic, "r.yaml".into());
        assert_eq!(
            row.cells().0,
            ["vault", "local /srv/backups", "restic", "true", "false"]
        );
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["format"], "restic");
        assert!(!json.to_string().contains("restic-password"), "{json}");
    }
}
