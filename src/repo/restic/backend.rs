//! Where a restic repository's files go: rustic's backend traits over holdfast's own
//! object stores (the local folder here, S3 and SFTP from [`crate::repo::s3`] and
//! [`crate::repo::sftp`]), so one restic repository works on every storage a Repository
//! offers, with the same credentials, known-hosts rule and retries.
//!
//! Every file is written whole or not at all: a local file through a temporary name
//! renamed into place, an object by a single upload. A crash never leaves a truncated
//! snapshot or index file under its final name.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

use crate::archive::OutFile;
use crate::archive::output::PartialFile;
use crate::repo::objects::Objects;

/// The key of a restic file: `config`, `keys/<id>`, `data/<first two hex digits>/<id>`.
fn key(tpe: FileType, id: &Id) -> String {
    match tpe {
        FileType::Config => "config".to_string(),
        FileType::Pack => {
            let hex = id.to_hex();
            format!("data/{}/{}", &hex[..2], &*hex)
        }
        _ => format!("{}/{}", tpe.dirname(), &*id.to_hex()),
    }
}

fn failed(doing: &'static str, key: &str, e: io::Error) -> Box<RusticError> {
    RusticError::with_source(ErrorKind::Backend, "{doing} `{key}` failed", e)
        .attach_context("doing", doing)
        .attach_context("key", key.to_string())
}

/// A restic repository on an object store, keys relative to the store's root.
#[derive(Debug)]
pub struct ObjectsBackend {
    objects: Arc<dyn Objects>,
}

impl ObjectsBackend {
    pub fn new(objects: Arc<dyn Objects>) -> ObjectsBackend {
        ObjectsBackend { objects }
    }
}

impl ReadBackend for ObjectsBackend {
    fn location(&self) -> String {
        self.objects.describe()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            return Ok(match self.objects.size("config") {
                Ok(Some(size)) => vec![(Id::default(), size as u32)],
                Ok(None) => Vec::new(),
                Err(e) => return Err(failed("listing", "config", e)),
            });
        }
        let prefix = format!("{}/", tpe.dirname());
        let listed = self
            .objects
            .list(&prefix)
            .map_err(|e| failed("listing", &prefix, e))?;
        Ok(listed
            .into_iter()
            .filter_map(|(key, size)| {
                // Only names that are ids: a temporary file a crash left is not a file
                // of the repository.
                let name = key.rsplit('/').next()?;
                let id = name.parse::<Id>().ok()?;
                Some((id, u32::try_from(size).ok()?))
            })
            .collect())
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let key = key(tpe, id);
        match self.objects.get(&key) {
            Ok(Some(bytes)) => Ok(bytes.into()),
            Ok(None) => Err(failed(
                "reading",
                &key,
                io::Error::new(io::ErrorKind::NotFound, "no such file"),
            )),
            Err(e) => Err(failed("reading", &key, e)),
        }
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let key = key(tpe, id);
        self.objects
            .range(&key, offset.into(), length.into())
            .map(Bytes::from)
            .map_err(|e| failed("reading", &key, e))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        key(tpe, id)
    }
}

impl WriteBackend for ObjectsBackend {
    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let key = key(tpe, id);
        let bytes: Vec<u8> = if let [one] = content.slice() {
            one.to_vec()
        } else {
            content.slice().concat()
        };
        self.objects
            .put(&key, &bytes)
            .map_err(|e| failed("writing", &key, e))
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let key = key(tpe, id);
        self.objects
            .delete(std::slice::from_ref(&key))
            .map_err(|e| failed("deleting", &key, e))
    }
}

/// The keys of another store below a prefix: holdfast's own records beside restic's
/// folders (`holdfast/`), out of restic's way.
#[derive(Debug)]
pub struct Prefixed {
    inner: Arc<dyn Objects>,
    prefix: String,
}

impl Prefixed {
    pub fn new(inner: Arc<dyn Objects>, prefix: &str) -> Prefixed {
        Prefixed {
            inner,
            prefix: format!("{}/", prefix.trim_end_matches('/')),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

impl Objects for Prefixed {
    fn describe(&self) -> String {
        format!(
            "{}/{}",
            self.inner.describe(),
            self.prefix.trim_end_matches('/')
        )
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<(String, u64)>> {
        Ok(self
            .inner
            .list(&self.key(prefix))?
            .into_iter()
            .filter_map(|(k, size)| Some((k.strip_prefix(&self.prefix)?.to_string(), size)))
            .collect())
    }

    fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        self.inner.get(&self.key(key))
    }

    fn size(&self, key: &str) -> io::Result<Option<u64>> {
        self.inner.size(&self.key(key))
    }

    fn reader(&self, key: &str) -> io::Result<Box<dyn Read + Send>> {
        self.inner.reader(&self.key(key))
    }

    fn range(&self, key: &str, offset: u64, length: u64) -> io::Result<Vec<u8>> {
        self.inner.range(&self.key(key), offset, length)
    }

    fn writer(&self, key: &str) -> io::Result<Box<dyn OutFile>> {
        self.inner.writer(&self.key(key))
    }

    fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        self.inner.put(&self.key(key), bytes)
    }

    fn delete(&self, keys: &[String]) -> io::Result<()> {
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        self.inner.delete(&keys)
    }
}

/// A folder on this machine as an object store: each key a file below it, written
/// through a temporary name and fsynced before it is renamed into place.
#[derive(Debug)]
pub struct LocalObjects {
    root: PathBuf,
}

impl LocalObjects {
    pub fn new(root: impl Into<PathBuf>) -> LocalObjects {
        LocalObjects { root: root.into() }
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        if key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{key:?} is not a key of the repository"),
            ));
        }
        Ok(self.root.join(key))
    }
}

fn not_found_is_none<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn walk(dir: &Path, key: &str, out: &mut Vec<(String, u64)>) -> io::Result<()> {
    let Some(entries) = not_found_is_none(fs::read_dir(dir))? else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(&entry.path(), &format!("{key}{name}/"), out)?;
        } else if meta.is_file() {
            out.push((format!("{key}{name}"), meta.len()));
        }
    }
    Ok(())
}

impl Objects for LocalObjects {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let dir = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.path(prefix.trim_end_matches('/'))?
        };
        walk(&dir, prefix, &mut out)?;
        Ok(out)
    }

    fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        not_found_is_none(fs::read(self.path(key)?))
    }

    fn size(&self, key: &str) -> io::Result<Option<u64>> {
        Ok(not_found_is_none(fs::metadata(self.path(key)?))?
            .filter(fs::Metadata::is_file)
            .map(|m| m.len()))
    }

    fn reader(&self, key: &str) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(fs::File::open(self.path(key)?)?))
    }

    fn range(&self, key: &str, offset: u64, length: u64) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let file = fs::File::open(self.path(key)?)?;
        let mut bytes = vec![0; length as usize];
        file.read_exact_at(&mut bytes, offset)?;
        Ok(bytes)
    }

    fn writer(&self, key: &str) -> io::Result<Box<dyn OutFile>> {
        Ok(Box::new(PartialFile::create(self.path(key)?)?))
    }

    fn put(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.path(key)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        crate::fsutil::write_atomic(&path, bytes)
    }

    fn delete(&self, keys: &[String]) -> io::Result<()> {
        for key in keys {
            not_found_is_none(fs::remove_file(self.path(key)?))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_restics() {
        let id = "ab".repeat(32).parse::<Id>().unwrap();
        assert_eq!(key(FileType::Config, &id), "config");
        assert_eq!(
            key(FileType::Pack, &id),
            format!("data/ab/{}", "ab".repeat(32))
        );
        assert_eq!(
            key(FileType::Snapshot, &id),
            format!("snapshots/{}", "ab".repeat(32))
        );
        assert_eq!(key(FileType::Key, &id), format!("keys/{}", "ab".repeat(32)));
    }

    #[test]
    fn a_local_folder_lists_reads_ranges_and_skips_what_is_not_an_id() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Arc::new(LocalObjects::new(dir.path()));
        let backend = ObjectsBackend::new(objects.clone());
        let id = "cd".repeat(32).parse::<Id>().unwrap();
        backend
            .write_bytes(FileType::Pack, &id, false, b"0123456789".to_vec().into())
            .unwrap();
        objects.put("data/cd/.leftover.tmp-1", b"x").unwrap();
        assert_eq!(
            backend.list_with_size(FileType::Pack).unwrap(),
            vec![(id, 10)]
        );
        assert_eq!(
            &backend
                .read_partial(FileType::Pack, &id, false, 2, 3)
                .unwrap()[..],
            b"234"
        );
        assert!(backend.list(FileType::Config).unwrap().is_empty());
        backend.remove(FileType::Pack, &id, false).unwrap();
        assert!(backend.list(FileType::Pack).unwrap().is_empty());
        assert!(objects.path("data/../x").is_err());
    }
}
