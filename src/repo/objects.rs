//! Repositories in object stores (S3-compatible buckets, SFTP servers): the layout and the
//! commit protocol on top of a few object operations.
//!
//! Keys are `<host>/<group>/<archive id>/<file>` below the store's root, as in a local
//! repository. An object store has no rename, so an archive's artifacts are uploaded under
//! their final keys and the archive exists once `manifest.json` is written, last. Listing
//! only counts archives with a manifest, so an upload that failed or was killed is never
//! listed; its objects are removed when the repository is next opened for writing
//! ([`Storage::clean`], at start-up and on resync). Deleting removes the manifest first,
//! so a half-deleted archive is never listed either.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::layout::{self, MANIFEST, META_DIR};
use super::lock::{LockOwner, RepoLock};
use super::storage::{Meta, Staged, Storage, StorageError};
use crate::archive::{OutFile, Outlet};

/// The few operations a repository needs of an object store. Keys are relative to the
/// store's root (its bucket and prefix, or its folder), with `/` between parts.
pub trait Objects: Send + Sync + std::fmt::Debug {
    /// Names the store in messages (`s3://bucket/prefix`), never with a secret.
    fn describe(&self) -> String;
    /// Every key below `prefix` (which ends in `/`), at any depth, with its size.
    fn list(&self, prefix: &str) -> io::Result<Vec<(String, u64)>>;
    /// A whole object; `None` when there is none.
    fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>>;
    /// An object's size; `None` when there is none.
    fn size(&self, key: &str) -> io::Result<Option<u64>>;
    /// An object, streamed.
    fn reader(&self, key: &str) -> io::Result<Box<dyn Read + Send>>;
    /// `length` bytes of an object from `offset` (restic reads single blobs out of its
    /// pack files). Stores that can ask for a range do; the others read up to it.
    fn range(&self, key: &str, offset: u64, length: u64) -> io::Result<Vec<u8>> {
        let mut reader = self.reader(key)?;
        io::copy(&mut (&mut reader).take(offset), &mut io::sink())?;
        let mut bytes = Vec::with_capacity(length as usize);
        reader.take(length).read_to_end(&mut bytes)?;
        if (bytes.len() as u64) < length {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{key} ends before byte {}", offset + length),
            ));
        }
        Ok(bytes)
    }
    /// A new object, streamed; it exists once the writer is committed, and a writer
    /// dropped before that leaves nothing (a multipart upload is aborted).
    fn writer(&self, key: &str) -> io::Result<Box<dyn OutFile>>;
    /// Writes a small object whole.
    fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()>;
    /// Deletes objects; deleting one that is gone succeeds.
    fn delete(&self, keys: &[String]) -> io::Result<()>;
}

/// What is uploaded of one archive: whether its manifest is, and every key.
type Uploaded = (bool, Vec<String>);

/// A repository on an object store, as one host sees it: `<root>/<host>/...`.
#[derive(Clone, Debug)]
pub struct ObjectStorage {
    objects: Arc<dyn Objects>,
    host: String,
}

impl ObjectStorage {
    pub fn new(objects: Arc<dyn Objects>, host: &str) -> ObjectStorage {
        ObjectStorage {
            objects,
            host: host.to_string(),
        }
    }

    fn archive_prefix(&self, group: &str, id: &str) -> String {
        format!("{}/{group}/{id}/", self.host)
    }

    fn key(&self, group: &str, id: &str, file: &str) -> String {
        format!("{}{file}", self.archive_prefix(group, id))
    }

    fn meta_key(&self, name: &str) -> String {
        format!("{}/{META_DIR}/{name}", self.host)
    }

    fn err(&self, doing: &'static str, key: &str) -> impl FnOnce(io::Error) -> StorageError {
        let path = PathBuf::from(format!("{}/{key}", self.objects.describe()));
        move |source| StorageError::Io {
            doing,
            path,
            source,
        }
    }

    /// Every key below `prefix`.
    fn keys_under(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        Ok(self
            .objects
            .list(prefix)
            .map_err(self.err("listing", prefix))?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// Every archive below this host's folder, by (group, id).
    fn tree(&self) -> Result<BTreeMap<(String, String), Uploaded>, StorageError> {
        let prefix = format!("{}/", self.host);
        let keys = self
            .objects
            .list(&prefix)
            .map_err(self.err("listing", &prefix))?;
        let mut tree: BTreeMap<(String, String), Uploaded> = BTreeMap::new();
        for (key, _) in keys {
            let rest = &key[prefix.len()..];
            let mut parts = rest.splitn(3, '/');
            let (Some(group), Some(id), Some(file)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if group.starts_with('.') || file.is_empty() {
                continue;
            }
            let entry = tree.entry((group.to_string(), id.to_string())).or_default();
            entry.0 |= file == MANIFEST;
            entry.1.push(key.clone());
        }
        Ok(tree)
    }
}

impl Storage for ObjectStorage {
    fn describe(&self) -> String {
        format!("{}/{}", self.objects.describe(), self.host)
    }

    fn host(&self) -> &str {
        &self.host
    }

    /// An object store has no lock that dies with its holder, so the lock is taken on
    /// this machine (`flock` in the system's temporary folder, one per store and host):
    /// it keeps two holdfast processes of this host from writing the same place. Other
    /// hosts write their own folders.
    fn lock(&self, owner: &LockOwner) -> Result<RepoLock, StorageError> {
        use sha2::Digest;
        let place = self.describe();
        let digest = hex::encode(&sha2::Sha256::digest(place.as_bytes())[..8]);
        let dir = std::env::temp_dir().join(format!("holdfast-lock-{digest}"));
        super::lock::lock_local(&dir, owner).map_err(|e| super::storage::lock_refused(e, place))
    }

    /// The first part of every `<host>/<group>/<archive id>/manifest.json` key.
    fn hosts(&self) -> Result<Vec<String>, StorageError> {
        let mut hosts = BTreeSet::new();
        for key in self.keys_under("")? {
            let parts: Vec<&str> = key.split('/').collect();
            if let [host, group, id, MANIFEST] = parts.as_slice()
                && !host.starts_with('.')
                && !group.starts_with('.')
                && layout::time_from_id(id).is_some()
            {
                hosts.insert(host.to_string());
            }
        }
        Ok(hosts.into_iter().collect())
    }

    fn groups(&self) -> Result<Vec<String>, StorageError> {
        let groups: BTreeSet<String> = self
            .tree()?
            .into_iter()
            .filter(|(_, (complete, _))| *complete)
            .map(|((group, _), _)| group)
            .collect();
        Ok(groups.into_iter().collect())
    }

    fn archives(&self, group: &str) -> Result<Vec<String>, StorageError> {
        let prefix = format!("{}/{group}/", self.host);
        let keys = self
            .objects
            .list(&prefix)
            .map_err(self.err("listing", &prefix))?;
        let ids: BTreeSet<String> = keys
            .iter()
            .filter_map(|(key, _)| {
                let (id, file) = key[prefix.len()..].split_once('/')?;
                (file == MANIFEST).then(|| id.to_string())
            })
            .collect();
        Ok(ids.into_iter().collect())
    }

    fn read(&self, group: &str, id: &str, file: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let key = self.key(group, id, file);
        self.objects.get(&key).map_err(self.err("reading", &key))
    }

    fn stat(&self, group: &str, id: &str, file: &str) -> Result<Option<Meta>, StorageError> {
        let key = self.key(group, id, file);
        Ok(self
            .objects
            .size(&key)
            .map_err(self.err("reading", &key))?
            .map(|size| Meta::File { size }))
    }

    fn open(
        &self,
        group: &str,
        id: &str,
        file: &str,
    ) -> Result<Box<dyn Read + Send>, StorageError> {
        let key = self.key(group, id, file);
        self.objects.reader(&key).map_err(self.err("opening", &key))
    }

    fn put(&self, group: &str, id: &str, file: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let key = self.key(group, id, file);
        self.objects
            .put(&key, bytes)
            .map_err(self.err("writing", &key))
    }

    /// An id is free when no object is under it at all (a crashed upload's leftovers
    /// count as taken until they are cleaned).
    fn begin(&self, group: &str, at: DateTime<Utc>) -> Result<Staged, StorageError> {
        let mut at = at;
        loop {
            let id = layout::archive_id(group, at);
            let prefix = self.archive_prefix(group, &id);
            let taken = !self
                .objects
                .list(&prefix)
                .map_err(self.err("listing", &prefix))?
                .is_empty();
            if !taken {
                return Ok(Staged {
                    group: group.to_string(),
                    outlet: Arc::new(ObjectOutlet {
                        objects: self.objects.clone(),
                        prefix,
                    }),
                    id,
                    dir: None,
                });
            }
            at += chrono::Duration::seconds(1);
        }
    }

    /// Every artifact was completed by its writer; the manifest, written last, makes the
    /// archive exist.
    fn commit(&self, staged: Staged, manifest: &[u8]) -> Result<(), StorageError> {
        let key = self.key(&staged.group, &staged.id, MANIFEST);
        self.objects
            .put(&key, manifest)
            .map_err(self.err("writing manifest", &key))
    }

    fn abandon(&self, staged: Staged) -> Result<(), StorageError> {
        let prefix = self.archive_prefix(&staged.group, &staged.id);
        let keys = self.keys_under(&prefix)?;
        self.objects
            .delete(&keys)
            .map_err(self.err("removing partial archive", &prefix))
    }

    /// The manifest goes first: from then on the archive is not listed.
    fn delete(&self, group: &str, id: &str) -> Result<(), StorageError> {
        let manifest = self.key(group, id, MANIFEST);
        self.objects
            .delete(std::slice::from_ref(&manifest))
            .map_err(self.err("deleting", &manifest))?;
        let prefix = self.archive_prefix(group, id);
        let keys = self.keys_under(&prefix)?;
        self.objects
            .delete(&keys)
            .map_err(self.err("deleting", &prefix))
    }

    /// Objects of archives without a manifest: uploads that failed or were killed, and
    /// deletions that were interrupted.
    fn clean(&self) -> Result<Vec<String>, StorageError> {
        let mut removed = Vec::new();
        for ((group, id), (complete, keys)) in self.tree()? {
            if complete {
                continue;
            }
            self.objects
                .delete(&keys)
                .map_err(self.err("removing partial archive", &id))?;
            removed.push(format!(
                "{}/{}",
                self.describe(),
                Path::new(&group).join(&id).display()
            ));
        }
        Ok(removed)
    }

    fn local_dir(&self, _group: &str, _id: &str) -> Option<PathBuf> {
        None
    }

    fn local_top(&self) -> Option<PathBuf> {
        None
    }

    fn read_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let key = self.meta_key(name);
        self.objects.get(&key).map_err(self.err("reading", &key))
    }

    /// An object is replaced whole by one PUT: a reader sees the old or the new.
    fn write_meta(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let key = self.meta_key(name);
        self.objects
            .put(&key, bytes)
            .map_err(self.err("writing", &key))
    }

    /// Keys `<host>/.holdfast/<name>` of the whole store, found by one listing.
    fn host_records(&self, name: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let keys = self.objects.list("").map_err(self.err("listing", ""))?;
        let suffix = format!("/{META_DIR}/{name}");
        let mut found = Vec::new();
        for (key, _) in keys {
            let Some(host) = key.strip_suffix(&suffix) else {
                continue;
            };
            if host.is_empty() || host.contains('/') {
                continue;
            }
            if let Some(bytes) = self.objects.get(&key).map_err(self.err("reading", &key))? {
                found.push((host.to_string(), bytes));
            }
        }
        Ok(found)
    }

    fn probe(&self) -> Result<(), StorageError> {
        let key = self.meta_key(&format!("{}-{}", super::storage::PROBE, std::process::id()));
        let written = Utc::now().to_rfc3339();
        self.objects
            .put(&key, written.as_bytes())
            .map_err(self.err("writing", &key))?;
        let read = self.objects.get(&key).map_err(self.err("reading", &key))?;
        self.objects
            .delete(std::slice::from_ref(&key))
            .map_err(self.err("deleting", &key))?;
        if read.as_deref() != Some(written.as_bytes()) {
            return Err(self.err("reading back", &key)(io::Error::other(
                "it read back different bytes than were written",
            )));
        }
        Ok(())
    }
}

/// Artifacts uploaded under an archive's prefix.
#[derive(Debug)]
struct ObjectOutlet {
    objects: Arc<dyn Objects>,
    prefix: String,
}

impl Outlet for ObjectOutlet {
    fn create(&self, name: &str) -> io::Result<Box<dyn OutFile>> {
        self.objects.writer(&format!("{}{name}", self.prefix))
    }

    fn folder(&self) -> Option<&Path> {
        None
    }

    fn shown(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("{}/{}{name}", self.objects.describe(), self.prefix))
    }
}

/// Objects in memory, for tests of the layout and of everything above it.
#[cfg(test)]
pub mod memory {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    pub struct Memory {
        pub objects: Mutex<BTreeMap<String, Vec<u8>>>,
    }

    struct MemoryFile {
        store: Arc<Memory>,
        key: String,
        bytes: Vec<u8>,
    }

    impl io::Write for MemoryFile {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl OutFile for MemoryFile {
        fn commit(self: Box<Self>) -> io::Result<Option<crate::archive::StoredDigest>> {
            let this = *self;
            this.store
                .objects
                .lock()
                .unwrap()
                .insert(this.key, this.bytes);
            Ok(None)
        }
    }

    /// A shared handle, so the writer can put its object back in the store.
    #[derive(Debug, Default, Clone)]
    pub struct Shared(pub Arc<Memory>);

    impl Objects for Shared {
        fn describe(&self) -> String {
            "memory://".to_string()
        }
        fn list(&self, prefix: &str) -> io::Result<Vec<(String, u64)>> {
            Ok(self
                .0
                .objects
                .lock()
                .unwrap()
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.len() as u64))
                .collect())
        }
        fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
            Ok(self.0.objects.lock().unwrap().get(key).cloned())
        }
        fn size(&self, key: &str) -> io::Result<Option<u64>> {
            Ok(self.get(key)?.map(|b| b.len() as u64))
        }
        fn reader(&self, key: &str) -> io::Result<Box<dyn Read + Send>> {
            let bytes = self
                .get(key)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, key.to_string()))?;
            Ok(Box::new(io::Cursor::new(bytes)))
        }
        fn writer(&self, key: &str) -> io::Result<Box<dyn OutFile>> {
            Ok(Box::new(MemoryFile {
                store: self.0.clone(),
                key: key.to_string(),
                bytes: Vec::new(),
            }))
        }
        fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
            self.0
                .objects
                .lock()
                .unwrap()
                .insert(key.to_string(), bytes.to_vec());
            Ok(())
        }
        fn delete(&self, keys: &[String]) -> io::Result<()> {
            let mut objects = self.0.objects.lock().unwrap();
            for key in keys {
                objects.remove(key);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memory::Shared;
    use super::*;
    use chrono::TimeZone;
    use std::io::Write;

    #[test]
    fn an_archive_exists_once_its_manifest_is_written_and_leftovers_are_cleaned() {
        let store = Shared::default();
        let storage = ObjectStorage::new(Arc::new(store.clone()), "nas");
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 3, 0, 0).unwrap();
        let staged = storage.begin("nightly", at).unwrap();
        assert_eq!(staged.id, "nightly-20261207T030000Z");
        let mut file = staged.outlet.create("volumes/v.tar.zst").unwrap();
        file.write_all(b"data").unwrap();
        file.commit().unwrap();
        // Uploaded, but without a manifest: not listed, and its id is taken.
        assert!(storage.archives("nightly").unwrap().is_empty());
        assert!(storage.groups().unwrap().is_empty());
        let next = storage.begin("nightly", at).unwrap();
        assert_eq!(next.id, "nightly-20261207T030001Z");
        storage.commit(staged, b"{}").unwrap();
        assert_eq!(
            storage.archives("nightly").unwrap(),
            ["nightly-20261207T030000Z"]
        );
        assert_eq!(storage.groups().unwrap(), ["nightly"]);
        assert_eq!(
            storage
                .stat("nightly", "nightly-20261207T030000Z", "volumes/v.tar.zst")
                .unwrap(),
            Some(Meta::File { size: 4 })
        );
        // A killed upload leaves objects without a manifest: clean removes them.
        let mut orphan = next.outlet.create("dumps/db.sql.zst").unwrap();
        orphan.write_all(b"half").unwrap();
        orphan.commit().unwrap();
        let removed = storage.clean().unwrap();
        assert_eq!(removed.len(), 1, "{removed:?}");
        assert!(removed[0].contains("nightly-20261207T030001Z"));
        // Deleting takes the manifest first, then everything else; twice is fine.
        storage
            .delete("nightly", "nightly-20261207T030000Z")
            .unwrap();
        storage
            .delete("nightly", "nightly-20261207T030000Z")
            .unwrap();
        assert!(store.0.objects.lock().unwrap().is_empty());
    }

    /// Hosts are the first parts of manifests' keys: records and staged uploads are not.
    #[test]
    fn hosts_are_the_folders_holding_manifests() {
        let store = Shared::default();
        for key in [
            "nas/nightly/nightly-20261125T030000Z/manifest.json",
            "pi/photos/photos-20261125T030000Z/volumes.tar",
            "pi/.holdfast/handled.json",
            ".holdfast/x/y-20261125T030000Z/manifest.json",
        ] {
            store.put(key, b"{}").unwrap();
        }
        let storage = ObjectStorage::new(Arc::new(store), "new");
        assert_eq!(storage.hosts().unwrap(), ["nas"]);
    }

    #[test]
    fn records_live_beside_the_groups() {
        let store = Shared::default();
        let storage = ObjectStorage::new(Arc::new(store.clone()), "nas");
        storage.write_meta("handled.json", b"[]").unwrap();
        assert_eq!(storage.read_meta("handled.json").unwrap().unwrap(), b"[]");
        assert!(storage.groups().unwrap().is_empty());
        assert!(storage.clean().unwrap().is_empty());
        assert!(
            store
                .0
                .objects
                .lock()
                .unwrap()
                .contains_key("nas/.holdfast/handled.json")
        );
    }

    #[test]
    fn every_hosts_record_is_found_and_nothing_deeper() {
        let store = Shared::default();
        for host in ["nas", "vps"] {
            ObjectStorage::new(Arc::new(store.clone()), host)
                .write_meta("summary.json", host.as_bytes())
                .unwrap();
        }
        // A group's file of that name is not a host's record.
        store
            .0
            .objects
            .lock()
            .unwrap()
            .insert("nas/g/.holdfast/summary.json".into(), b"no".to_vec());
        let storage = ObjectStorage::new(Arc::new(store.clone()), "nas");
        let found = storage.host_records("summary.json").unwrap();
        assert_eq!(
            found,
            [
                ("nas".to_string(), b"nas".to_vec()),
                ("vps".to_string(), b"vps".to_vec())
            ]
        );
        assert!(storage.host_records("other.json").unwrap().is_empty());
    }
}
