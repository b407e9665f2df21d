//! age encryption of artifacts, between compression and storage: tar → zstd → age →
//! storage. Each artifact is one age file, so a person can restore without holdfast
//! (`age -d -i key artifact | zstd -d | tar -x`).
//!
//! The manifest stays plaintext: it names what an archive holds (volumes, stacks, file
//! counts) but no file contents and no secret, and listing, retention and the catalog
//! read it without any key. Each artifact's entry records the plaintext's size and
//! sha256 (the compressed stream, as for unencrypted archives) and the stored
//! ciphertext's, so `verify` checks the stored bytes without the identity and decodes
//! everything with it.

use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::archive::output::HashingWriter;
use crate::archive::{OutFile, Outlet, StoredDigest};
use crate::spec::repository::AgeEncryption;

/// The name manifests give this encryption.
pub const AGE: &str = "age";

/// Why a repository's encryption settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CryptError {
    #[error("recipient {index} ({shown}) is not an age X25519 public key: {reason}")]
    Recipient {
        index: usize,
        shown: String,
        reason: String,
    },
    #[error("reading the age identity file {path}: {source}")]
    IdentityFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the age identity file {path} holds no AGE-SECRET-KEY-1 identity (line {line})")]
    Identity { path: PathBuf, line: usize },
}

/// The keys of an encrypted repository: the recipients every artifact is encrypted to,
/// and the identities that read them back when the host has one.
pub struct Crypt {
    recipients: Vec<age::x25519::Recipient>,
    identities: Vec<age::x25519::Identity>,
    identity_file: Option<PathBuf>,
}

impl std::fmt::Debug for Crypt {
    /// Never shows an identity.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypt")
            .field("recipients", &self.recipients.len())
            .field("identity_file", &self.identity_file)
            .finish()
    }
}

impl Crypt {
    /// Reads the settings: recipients parsed, the identity file (when given) read now, so
    /// a missing key is said at start-up and not at the first restore.
    pub fn from_spec(spec: &AgeEncryption) -> Result<Crypt, CryptError> {
        let recipients = spec
            .recipients
            .iter()
            .enumerate()
            .map(|(index, r)| {
                age::x25519::Recipient::from_str(r.trim()).map_err(|reason| CryptError::Recipient {
                    index,
                    shown: r.chars().take(12).collect::<String>() + "…",
                    reason: reason.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let identity_file = spec.identity_file.as_ref().map(PathBuf::from);
        let identities = match &identity_file {
            Some(path) => read_identities(path)?,
            None => Vec::new(),
        };
        Ok(Crypt {
            recipients,
            identities,
            identity_file,
        })
    }

    /// Keys made up on the spot, for tests.
    #[cfg(test)]
    pub fn generated() -> (Crypt, age::x25519::Identity) {
        let identity = age::x25519::Identity::generate();
        let crypt = Crypt {
            recipients: vec![identity.to_public()],
            identities: vec![identity.clone()],
            identity_file: None,
        };
        (crypt, identity)
    }

    /// The public keys artifacts are encrypted to: the disaster-recovery bundle a policy
    /// refreshes in this repository is encrypted to the same.
    pub fn recipients(&self) -> &[age::x25519::Recipient] {
        &self.recipients
    }

    /// Whether this host can decrypt (it was given an identity).
    pub fn can_decrypt(&self) -> bool {
        !self.identities.is_empty()
    }

    /// An outlet that encrypts every artifact on its way to `inner`.
    pub fn outlet(self: &Arc<Self>, inner: Arc<dyn Outlet>) -> Arc<dyn Outlet> {
        Arc::new(AgeOutlet {
            crypt: self.clone(),
            inner,
        })
    }

    /// The plaintext of a stored artifact, decrypted as it is read.
    pub fn decrypt(
        &self,
        stored: Box<dyn Read + Send>,
        shown: &str,
    ) -> io::Result<Box<dyn Read + Send>> {
        if self.identities.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{shown} is encrypted with age and this repository's spec names no \
                     encryption.age.identityFile to decrypt it with"
                ),
            ));
        }
        let decryptor = age::Decryptor::new_buffered(BufReader::with_capacity(1 << 20, stored))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{shown}: {e}")))?;
        let reader = decryptor
            .decrypt(self.identities.iter().map(|i| i as &dyn age::Identity))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{shown}: {e}")))?;
        Ok(Box::new(reader))
    }
}

/// The X25519 identities of an age identity file (`age-keygen` output): comments and
/// blank lines skipped, anything else must be an `AGE-SECRET-KEY-1…` line.
pub fn read_identities(path: &Path) -> Result<Vec<age::x25519::Identity>, CryptError> {
    let text = std::fs::read_to_string(path).map_err(|source| CryptError::IdentityFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut identities = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let identity = age::x25519::Identity::from_str(line).map_err(|_| CryptError::Identity {
            path: path.to_path_buf(),
            line: n + 1,
        })?;
        identities.push(identity);
    }
    if identities.is_empty() {
        return Err(CryptError::Identity {
            path: path.to_path_buf(),
            line: 0,
        });
    }
    Ok(identities)
}

#[derive(Debug)]
struct AgeOutlet {
    crypt: Arc<Crypt>,
    inner: Arc<dyn Outlet>,
}

impl Outlet for AgeOutlet {
    fn create(&self, name: &str) -> io::Result<Box<dyn OutFile>> {
        let mut file = self.inner.create(name)?;
        // The stored bytes are hashed where they are stored when the storage can (an
        // upload's own thread), else here.
        let offloaded = file.digest_stored();
        let encryptor = age::Encryptor::with_recipients(
            self.crypt
                .recipients
                .iter()
                .map(|r| r as &dyn age::Recipient),
        )
        .map_err(io::Error::other)?;
        let hashed = if offloaded {
            HashingWriter::counting(file)
        } else {
            HashingWriter::new(file)
        };
        let writer = encryptor.wrap_output(hashed)?;
        Ok(Box::new(AgeFile {
            writer: Some(writer),
        }))
    }

    /// Nothing encrypted is a folder: the folder format cannot be encrypted.
    fn folder(&self) -> Option<&Path> {
        None
    }

    fn shown(&self, name: &str) -> PathBuf {
        self.inner.shown(name)
    }
}

/// One artifact being encrypted; the stored (ciphertext) bytes are hashed below the
/// encryption.
struct AgeFile {
    writer: Option<age::stream::StreamWriter<HashingWriter<Box<dyn OutFile>>>>,
}

impl AgeFile {
    fn writer(
        &mut self,
    ) -> io::Result<&mut age::stream::StreamWriter<HashingWriter<Box<dyn OutFile>>>> {
        self.writer
            .as_mut()
            .ok_or_else(|| io::Error::other("the artifact was already committed"))
    }
}

impl Write for AgeFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer()?.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer()?.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer()?.flush()
    }
}

impl OutFile for AgeFile {
    fn commit(mut self: Box<Self>) -> io::Result<Option<StoredDigest>> {
        let writer = self.writer.take().expect("committed once");
        let (file, size, sha256) = writer.finish()?.into_parts();
        let stored = file.commit()?;
        Ok(Some(stored.unwrap_or(StoredDigest { size, sha256 })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encrypted_artifact_records_its_ciphertext_and_decrypts_back() {
        let dir = tempfile::tempdir().unwrap();
        let (crypt, _) = Crypt::generated();
        let crypt = Arc::new(crypt);
        let outlet = crypt.outlet(Arc::new(dir.path().to_path_buf()));
        assert!(outlet.folder().is_none());
        let mut file = outlet.create("dumps/db.sql").unwrap();
        file.write_all(&b"select 1;\n".repeat(1000)).unwrap();
        let stored = file.commit().unwrap().unwrap();
        let bytes = std::fs::read(dir.path().join("dumps/db.sql")).unwrap();
        assert_eq!(stored.size, bytes.len() as u64);
        assert!(bytes.starts_with(b"age-encryption.org/v1"));
        use sha2::Digest;
        assert_eq!(stored.sha256, hex::encode(sha2::Sha256::digest(&bytes)));
        let mut plain = Vec::new();
        crypt
            .decrypt(Box::new(io::Cursor::new(bytes)), "db.sql")
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, b"select 1;\n".repeat(1000));
    }

    #[test]
    fn without_an_identity_decrypting_says_which_setting_is_missing() {
        let (crypt, identity) = Crypt::generated();
        let writer_only = Crypt {
            recipients: crypt.recipients.clone(),
            identities: Vec::new(),
            identity_file: None,
        };
        drop(identity);
        let e = writer_only
            .decrypt(Box::new(io::empty()), "volumes/a.tar.zst")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("identityFile") && e.contains("volumes/a.tar.zst"),
            "{e}"
        );
    }

    #[test]
    fn identity_files_are_read_like_age_keygen_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let path = dir.path().join("key.txt");
        use age::secrecy::ExposeSecret;
        std::fs::write(
            &path,
            format!(
                "# created: 2026-12-07\n# public key: {}\n{}\n",
                identity.to_public(),
                identity.to_string().expose_secret()
            ),
        )
        .unwrap();
        let spec = AgeEncryption {
            recipients: vec![identity.to_public().to_string()],
            identity_file: Some(path.display().to_string()),
        };
        assert!(Crypt::from_spec(&spec).unwrap().can_decrypt());
        std::fs::write(&path, "# nothing\nnot a key\n").unwrap();
        let e = Crypt::from_spec(&spec).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let bad = AgeEncryption {
            recipients: vec!["age1nope".into()],
            identity_file: None,
        };
        let e = Crypt::from_spec(&bad).unwrap_err().to_string();
        assert!(e.contains("recipient 0"), "{e}");
    }
}
