//! `Repository`: a named place that holds archives (an S3-compatible bucket, an SFTP
//! server, a local folder), optionally encrypted with age. Policies and Archives write to
//! it by name; the `--repository` folder stays the implicit repository `default`.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The name of the implicit repository: the folder given by `--repository`.
pub const DEFAULT_REPOSITORY: &str = crate::settings::DEFAULT_REPO;

/// Where archives are stored, how they are encrypted, and whether holdfast may delete
/// there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepositorySpec {
    /// The storage: exactly one of `s3`, `sftp` or `local`.
    pub storage: StorageSpec,
    /// How archives are laid out: `archives` (holdfast's own: one tar or folder per
    /// volume and run, a full copy each time) or `restic` (a restic repository, format
    /// v2: deduplicated, compressed, encrypted with `password`, readable by restic and
    /// rustic, each run storing only what changed).
    #[serde(default, skip_serializing_if = "RepositoryFormat::is_archives")]
    pub format: RepositoryFormat,
    /// The password of a `restic` repository (it encrypts everything stored there, and
    /// without it nothing can be restored). Only for `format: restic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<HostSecret>,
    /// Encrypts every artifact before it leaves the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionSpec>,
    /// When true, holdfast never deletes here: retention, `prune` and `delete` leave this
    /// repository alone, and pruning happens elsewhere (a bucket lifecycle rule, say).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub append_only: bool,
    /// The hosts that run this object (their `--host-labels`); every host without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<super::host::HostSelector>,
}

/// How a repository lays out what it stores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RepositoryFormat {
    /// holdfast's own layout: `<host>/<group>/<archive id>/` with a manifest and one
    /// artifact per volume, bind mount and dump.
    #[default]
    Archives,
    /// A restic repository (format v2), written through rustic: snapshots per volume,
    /// bind mount and dump, each with the previous one as parent.
    Restic,
}

impl RepositoryFormat {
    pub fn is_archives(&self) -> bool {
        *self == RepositoryFormat::Archives
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            RepositoryFormat::Archives => "archives",
            RepositoryFormat::Restic => "restic",
        }
    }
}

/// The storage behind a repository. Set exactly one field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageSpec {
    /// An S3-compatible bucket (Garage, MinIO, Ceph, AWS S3, Backblaze B2, Cloudflare R2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Storage>,
    /// A folder on an SFTP server, reached with a key and a known-hosts file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sftp: Option<SftpStorage>,
    /// A folder on this machine, such as a mounted USB disk or NFS share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalStorageSpec>,
}

/// An S3-compatible bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Storage {
    /// The service's URL, e.g. `https://s3.eu-central-1.amazonaws.com` or
    /// `http://127.0.0.1:3900`.
    pub endpoint: String,
    /// The region the bucket lives in (`garage` for Garage's default).
    #[serde(default = "default_region")]
    pub region: String,
    /// The bucket's name.
    pub bucket: String,
    /// A key prefix inside the bucket, so several hosts or tools can share one bucket.
    /// Never starts with '/'; `host1` and `host1/` mean the same folder-like prefix.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// Address the bucket in the path (`endpoint/bucket/key`) rather than as a
    /// sub-domain; most self-hosted stores need it.
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// The access key id.
    pub access_key_id: HostSecret,
    /// The secret access key.
    pub secret_access_key: HostSecret,
}

fn default_region() -> String {
    "us-east-1".to_string()
}

fn default_true() -> bool {
    true
}

/// A folder on an SFTP server. The host key must be in `knownHostsFile`: holdfast never
/// trusts a host key it has not been given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SftpStorage {
    /// The server's name or address.
    pub host: String,
    /// The server's port.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// The user to log in as.
    pub user: String,
    /// The folder on the server that holds the repository (absolute).
    pub path: String,
    /// The private key to log in with (a file readable by holdfast, without passphrase;
    /// a relative path is taken from the spec file's folder).
    pub private_key_file: String,
    /// An OpenSSH known-hosts file holding the server's host key (a relative path is taken
    /// from the spec file's folder).
    pub known_hosts_file: String,
}

fn default_ssh_port() -> u16 {
    22
}

/// A folder on this machine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalStorageSpec {
    /// The folder (absolute, or relative to the folder of the spec's file).
    pub path: String,
}

/// How artifacts are encrypted. Set exactly one field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptionSpec {
    /// age (<https://age-encryption.org>) with X25519 keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<AgeEncryption>,
}

/// age encryption: the host encrypts to public keys, so it can write archives it cannot
/// read back on its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgeEncryption {
    /// Public keys (`age1…`) every artifact is encrypted to; any one of their identities
    /// decrypts.
    pub recipients: Vec<String>,
    /// A file holding an age identity (`AGE-SECRET-KEY-1…`), needed only to check the
    /// contents of archives and to restore; without it `verify` checks the stored bytes.
    /// A relative path is taken from the spec file's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<String>,
}

/// A secret holdfast itself reads: from its own environment or from a file. Set exactly
/// one field. The value never appears in status files, logs, the API or recipes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostSecret {
    /// An environment variable of the holdfast process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_env: Option<String>,
    /// A file readable by holdfast holding the secret (a trailing newline is ignored; a
    /// relative path is taken from the spec file's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_file: Option<String>,
}

/// Why a [`HostSecret`] could not be read; names where it looked, never the value.
#[derive(Debug, thiserror::Error)]
pub enum HostSecretError {
    #[error("the environment variable `{0}` is not set")]
    NoEnv(String),
    #[error("reading the secret file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the secret names neither fromEnv nor fromFile")]
    Empty,
}

impl HostSecret {
    /// The secret's value, read now (so a rotated file is picked up on the next use).
    pub fn read(&self) -> Result<String, HostSecretError> {
        if let Some(var) = &self.from_env {
            return std::env::var(var).map_err(|_| HostSecretError::NoEnv(var.clone()));
        }
        if let Some(path) = &self.from_file {
            let text = std::fs::read_to_string(path).map_err(|source| HostSecretError::File {
                path: path.clone(),
                source,
            })?;
            return Ok(text.trim_end_matches(['\n', '\r']).to_string());
        }
        Err(HostSecretError::Empty)
    }
}

impl S3Storage {
    /// The prefix every key starts with: empty, or the prefix ending in '/' (`host1`
    /// means `host1/`, so `host1` never matches `host10`'s keys).
    pub fn key_prefix(&self) -> String {
        if self.prefix.is_empty() || self.prefix.ends_with('/') {
            self.prefix.clone()
        } else {
            format!("{}/", self.prefix)
        }
    }
}

impl RepositorySpec {
    /// Makes every host path absolute, taking relative ones against `folder` (the folder
    /// of the spec file, as the config file's paths are taken against its own): the local
    /// folder, the SFTP key and known-hosts files, the age identity file and secret files.
    /// The SFTP `path` lives on the server and is left alone.
    pub fn resolve_paths(&mut self, folder: &Path) {
        let resolve = |path: &mut String| {
            if !path.is_empty() && Path::new(path.as_str()).is_relative() {
                *path = folder.join(path.as_str()).display().to_string();
            }
        };
        if let Some(local) = &mut self.storage.local {
            resolve(&mut local.path);
        }
        if let Some(sftp) = &mut self.storage.sftp {
            resolve(&mut sftp.private_key_file);
            resolve(&mut sftp.known_hosts_file);
        }
        if let Some(s3) = &mut self.storage.s3 {
            for secret in [&mut s3.access_key_id, &mut s3.secret_access_key] {
                if let Some(file) = &mut secret.from_file {
                    resolve(file);
                }
            }
        }
        if let Some(file) = self.password.as_mut().and_then(|p| p.from_file.as_mut()) {
            resolve(file);
        }
        if let Some(file) = self
            .encryption
            .as_mut()
            .and_then(|e| e.age.as_mut())
            .and_then(|a| a.identity_file.as_mut())
        {
            resolve(file);
        }
    }

    /// Where the archives are, for tables and messages: `https://host:3900/bucket/prefix/`
    /// for s3, `user@host:22/path` for sftp, the folder for local. Never holds a secret.
    pub fn location(&self) -> String {
        let storage = &self.storage;
        if let Some(s3) = &storage.s3 {
            let endpoint = s3.endpoint.trim_end_matches('/');
            format!("{endpoint}/{}/{}", s3.bucket, s3.key_prefix())
        } else if let Some(sftp) = &storage.sftp {
            format!("{}@{}:{}{}", sftp.user, sftp.host, sftp.port, sftp.path)
        } else if let Some(local) = &storage.local {
            local.path.clone()
        } else {
            "-".to_string()
        }
    }
}

impl StorageSpec {
    /// The storage's kind, for messages and the status.
    pub fn kind(&self) -> &'static str {
        if self.s3.is_some() {
            "s3"
        } else if self.sftp.is_some() {
            "sftp"
        } else {
            "local"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_secret_is_read_from_the_environment_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, "s3cr3t\n").unwrap();
        let from_file = HostSecret {
            from_file: Some(file.display().to_string()),
            ..HostSecret::default()
        };
        assert_eq!(from_file.read().unwrap(), "s3cr3t");
        let missing = HostSecret {
            from_env: Some("HOLDFAST_TEST_NO_SUCH_VARIABLE".into()),
            ..HostSecret::default()
        };
        let e = missing.read().unwrap_err().to_string();
        assert!(e.contains("HOLDFAST_TEST_NO_SUCH_VARIABLE"), "{e}");
    }

    fn secret() -> HostSecret {
        HostSecret {
            from_file: Some("keys/s3".into()),
            ..HostSecret::default()
        }
    }

    #[test]
    fn a_prefix_means_a_folder_with_or_without_its_slash() {
        let mut s3 = S3Storage {
            endpoint: "http://127.0.0.1:3900".into(),
            region: "garage".into(),
            bucket: "holdfast".into(),
            prefix: String::new(),
            path_style: true,
            access_key_id: secret(),
            secret_access_key: secret(),
        };
        assert_eq!(s3.key_prefix(), "");
        s3.prefix = "host1".into();
        assert_eq!(s3.key_prefix(), "host1/");
        s3.prefix = "a/host1/".into();
        assert_eq!(s3.key_prefix(), "a/host1/");
    }

    #[test]
    fn host_paths_are_resolved_and_the_servers_path_is_not() {
        let mut spec = RepositorySpec {
            format: Default::default(),
            host_selector: None,
            password: None,
            storage: StorageSpec {
                sftp: Some(SftpStorage {
                    host: "nas".into(),
                    port: 22,
                    user: "u".into(),
                    path: "/srv/holdfast".into(),
                    private_key_file: "id_ed25519".into(),
                    known_hosts_file: "/etc/holdfast/known_hosts".into(),
                }),
                ..StorageSpec::default()
            },
            encryption: Some(EncryptionSpec {
                age: Some(AgeEncryption {
                    recipients: Vec::new(),
                    identity_file: Some("age.key".into()),
                }),
            }),
            append_only: false,
        };
        spec.resolve_paths(Path::new("/specs/offsite"));
        let sftp = spec.storage.sftp.as_ref().unwrap();
        assert_eq!(sftp.private_key_file, "/specs/offsite/id_ed25519");
        assert_eq!(sftp.known_hosts_file, "/etc/holdfast/known_hosts");
        assert_eq!(sftp.path, "/srv/holdfast");
        let age = spec
            .encryption
            .as_ref()
            .and_then(|e| e.age.as_ref())
            .unwrap();
        assert_eq!(age.identity_file.as_deref(), Some("/specs/offsite/age.key"));
        assert_eq!(spec.location(), "u@nas:22/srv/holdfast");
    }
}
