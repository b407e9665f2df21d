//! Repositories by name: the `default` folder given by `--repository`, and those the specs
//! folder's Repository objects describe.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::crypt::{Crypt, CryptError};
use super::objects::{ObjectStorage, Objects};
use super::restic::{self, LocalObjects, Prefixed, Restic};
use super::s3::{S3Error, S3Objects};
use super::sftp::SftpObjects;
use super::storage::{LocalStorage, Repository, Storage, StorageError};
use crate::spec::repository::{DEFAULT_REPOSITORY, RepositoryFormat, RepositorySpec};

/// Why a Repository spec could not be opened; each names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    S3(#[from] S3Error),
    #[error("spec.storage.sftp: {0}")]
    Sftp(String),
    #[error("spec.encryption.age: {0}")]
    Crypt(#[from] CryptError),
    #[error("spec.storage: names no storage")]
    NoStorage,
    #[error("spec.password: a restic repository needs a password")]
    NoPassword,
}

/// Opens the repository a Repository spec describes, as `host` sees it. Secrets and the
/// identity file are read now, an SFTP server's key and known-hosts files checked;
/// nothing is sent over the network yet ([`probe`] does).
pub fn open(name: &str, spec: &RepositorySpec, host: &str) -> Result<Repository, OpenError> {
    if spec.format == RepositoryFormat::Restic {
        return open_restic(name, spec, host);
    }
    let storage: Arc<dyn Storage> = if let Some(s3) = &spec.storage.s3 {
        Arc::new(ObjectStorage::new(Arc::new(S3Objects::new(s3)?), host))
    } else if let Some(sftp) = &spec.storage.sftp {
        let objects = SftpObjects::new(sftp).map_err(OpenError::Sftp)?;
        Arc::new(ObjectStorage::new(Arc::new(objects), host))
    } else if let Some(local) = &spec.storage.local {
        Arc::new(LocalStorage::new(&local.path, host))
    } else {
        return Err(OpenError::NoStorage);
    };
    let crypt = spec
        .encryption
        .as_ref()
        .and_then(|e| e.age.as_ref())
        .map(Crypt::from_spec)
        .transpose()?;
    Ok(Repository::named(name, storage, crypt, spec.append_only))
}

/// A restic-format repository: restic's files at the storage's root, holdfast's
/// manifests, locks and records in its `holdfast/` folder.
fn open_restic(name: &str, spec: &RepositorySpec, host: &str) -> Result<Repository, OpenError> {
    let (objects, storage): (Arc<dyn Objects>, Arc<dyn Storage>) =
        if let Some(local) = &spec.storage.local {
            let top = std::path::Path::new(&local.path);
            (
                Arc::new(LocalObjects::new(top)),
                Arc::new(LocalStorage::new(top.join(restic::HOLDFAST_DIR), host)),
            )
        } else {
            let objects: Arc<dyn Objects> = if let Some(s3) = &spec.storage.s3 {
                Arc::new(S3Objects::new(s3)?)
            } else if let Some(sftp) = &spec.storage.sftp {
                Arc::new(SftpObjects::new(sftp).map_err(OpenError::Sftp)?)
            } else {
                return Err(OpenError::NoStorage);
            };
            let ours = Arc::new(Prefixed::new(objects.clone(), restic::HOLDFAST_DIR));
            (objects, Arc::new(ObjectStorage::new(ours, host)))
        };
    let password = spec.password.clone().ok_or(OpenError::NoPassword)?;
    let restic =
        Restic::new(objects, password, spec.location(), host).append_only(spec.append_only);
    Ok(Repository::named(name, storage, None, spec.append_only).with_restic(restic))
}

/// Checks that a repository answers: a small record written, read back and deleted.
/// Blocks: call it from a blocking worker.
pub fn probe(repository: &Repository) -> Result<(), StorageError> {
    repository.storage().probe()?;
    if let Some(restic) = repository.restic() {
        // Opens it with its password (creating it on first use).
        restic.open().map_err(|e| StorageError::Io {
            doing: "opening",
            path: restic.location().into(),
            source: e.into_io(),
        })?;
    }
    Ok(())
}

/// Every repository a run may name: `default` and the Repository specs', by name.
#[derive(Clone, Debug, Default)]
pub struct Repositories {
    by_name: BTreeMap<String, Repository>,
}

impl Repositories {
    /// Only the `default` repository.
    pub fn single(default: Repository) -> Repositories {
        let mut by_name = BTreeMap::new();
        by_name.insert(DEFAULT_REPOSITORY.to_string(), default);
        Repositories { by_name }
    }

    /// Adds (or replaces) a named repository.
    pub fn insert(&mut self, repository: Repository) {
        self.by_name
            .insert(repository.name().to_string(), repository);
    }

    pub fn get(&self, name: &str) -> Option<&Repository> {
        self.by_name.get(name)
    }

    /// The `default` repository.
    pub fn default_repository(&self) -> &Repository {
        self.by_name
            .get(DEFAULT_REPOSITORY)
            .expect("the default repository is always there")
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Repository> {
        self.by_name.values()
    }
}
