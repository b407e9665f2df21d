//! The disaster-recovery bundle: one age-encrypted file holding what a new host needs to
//! get everything back from the repositories, when the old host and its disks are gone.
//!
//! Inside is a tar stream (then age, so `age -d -i KEY bundle.age | tar -x` opens it
//! without holdfast):
//!
//! - `specs/`: every spec file of the specs folder, at the same relative paths. Files
//!   that hold a Repository are rewritten: its credentials (S3 keys, the restic password,
//!   the SFTP key and known-hosts file, the age identity) point at `keys/` by relative
//!   paths, and a relative local folder becomes absolute. Every other file is copied byte
//!   for byte.
//! - `keys/<repository>/`: those credentials, resolved: a secret read from the
//!   environment or a file is written as a file here, so the new host needs none of the
//!   old host's secret files or environment.
//! - `holdfast.yaml`: the configuration file, when one was read.
//! - `README.txt`: the restore steps, with this host's names and paths.
//!
//! `holdfast bundle create` writes it to a file; a policy with `include.bundle: true`
//! refreshes it into each repository it writes to, as the record [`RECORD`] of the
//! host's folder, encrypted to that repository's age recipients.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use crate::repo::Repository;
use crate::spec::repository::{HostSecret, RepositorySpec};
use crate::spec::{Kind, Resource};

/// The repository record (`<repository>/<host>/.holdfast/bundle.age`) a policy with
/// `include.bundle` refreshes after each successful run.
pub const RECORD: &str = "bundle.age";

/// Where the bundle's parts are, inside it.
pub const SPECS_DIR: &str = "specs";
pub const KEYS_DIR: &str = "keys";
pub const CONFIG_FILE: &str = "holdfast.yaml";
pub const README: &str = "README.txt";

/// A bundle larger than this is refused when opened: specs and keys are kilobytes.
const MAX_ENTRY_BYTES: u64 = 64 * 1024 * 1024;

/// Why a bundle could not be made or opened. Each names the file or object at fault, never
/// a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{doing} {path}: {source}")]
    Io {
        doing: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "no specs folder at {0}: name it with --specs, HOLDFAST_SPECS or `specs` in the configuration file"
    )]
    NoSpecs(PathBuf),
    #[error(
        "Repository `{name}` in {file} is invalid, so its credentials cannot be bundled; fix it first (`holdfast validate`): {errors}"
    )]
    InvalidRepository {
        name: String,
        file: PathBuf,
        errors: String,
    },
    #[error("Repository `{name}`: {field}: {reason}")]
    Credential {
        name: String,
        field: &'static str,
        reason: String,
    },
    #[error(
        "the bundle has no recipient: name at least one age public key (`--recipient age1…` or `--recipients-file FILE`); it holds secrets, so it is always encrypted"
    )]
    NoRecipient,
    #[error("{source_name}: recipient {index} ({shown}) is not an age X25519 public key (age1…)")]
    Recipient {
        source_name: String,
        index: usize,
        shown: String,
    },
    /// The `--identity` file cannot be read or holds no age identity; says which file.
    #[error("{0}")]
    Identity(String),
    #[error("encrypting the bundle: {0}")]
    Encrypt(String),
    #[error("{path} is not an age-encrypted file: {reason}")]
    NotAge { path: PathBuf, reason: String },
    #[error(
        "{path}: none of the identities in {identity} can decrypt it (it was made for other recipients, or the key is wrong)"
    )]
    WrongIdentity { path: PathBuf, identity: PathBuf },
    #[error("{path}: {reason}")]
    Decrypt { path: PathBuf, reason: String },
    #[error(
        "{0}: not an empty folder; a bundle is unpacked only into a new or empty folder, so nothing of it mixes with other files"
    )]
    NotEmpty(PathBuf),
    #[error(
        "the bundle holds `{0}`, which is not a plain relative path inside the folder; refusing to unpack it"
    )]
    Escapes(String),
    #[error("the bundle holds `{path}`, a {kind}; a bundle holds only files and folders")]
    EntryKind { path: String, kind: String },
    #[error("reading the bundle's tar stream: {0}")]
    Tar(#[source] io::Error),
}

fn io_err(doing: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BundleError {
    let path = path.to_path_buf();
    move |source| BundleError::Io {
        doing,
        path,
        source,
    }
}

/// What the bundle is made from: the settings of the host it saves.
#[derive(Clone, Debug)]
pub struct Source {
    /// The specs folder (or file).
    pub specs: PathBuf,
    /// The configuration file, when one was read.
    pub config: Option<PathBuf>,
    /// This host's name (`--host`): its archives are under `<repository>/<host>/`.
    pub host: String,
    /// The `--repository` folder: the repository `default`.
    pub repository: PathBuf,
}

/// One file of the bundle, by its path inside it.
#[derive(Debug, Default)]
pub struct Contents {
    pub files: BTreeMap<String, Vec<u8>>,
    /// The Repository specs whose credentials are in `keys/`.
    pub repositories: Vec<String>,
}

/// Reads the specs folder, the configuration file and every Repository's credentials
/// into the bundle's files. A Repository that is invalid, or whose secret cannot be read
/// here, is refused: a bundle that silently lacks a key is found out on the worst day.
pub fn collect(source: &Source) -> Result<Contents, BundleError> {
    if !source.specs.exists() {
        return Err(BundleError::NoSpecs(source.specs.clone()));
    }
    let report = crate::validate::validate_paths(std::slice::from_ref(&source.specs));
    let mut contents = Contents::default();
    // The spec files as they were found, each once, in walk order.
    let mut files: Vec<PathBuf> = Vec::new();
    for file in report.files.iter().map(|f| f.path.clone()) {
        if !files.contains(&file) {
            files.push(file);
        }
    }
    for file in files {
        let relative = relative_in_specs(&source.specs, &file);
        let objects: Vec<_> = report
            .files
            .iter()
            .filter(|f| f.path == file)
            .flat_map(|f| f.objects.iter())
            .filter(|o| o.kind == Some(Kind::Repository))
            .collect();
        let raw = fs::read(&file).map_err(io_err("reading", &file))?;
        if objects.is_empty() {
            contents
                .files
                .insert(format!("{SPECS_DIR}/{relative}"), raw);
            continue;
        }
        // `../` for each folder between the rewritten file and the bundle's top.
        let up = "../".repeat(relative.matches('/').count() + 1);
        let mut documents = crate::load::read_file(&file).documents;
        for object in objects {
            let name = object.name.clone().unwrap_or_default();
            let Some(Resource::Repository(repository)) = &object.resource else {
                let errors: Vec<String> = object.errors.iter().map(|e| e.to_string()).collect();
                return Err(BundleError::InvalidRepository {
                    name,
                    file: file.clone(),
                    errors: errors.join("; "),
                });
            };
            let Some(document) = documents.iter_mut().find(|d| d.index == object.document) else {
                continue;
            };
            let keys = resolve_credentials(&name, &repository.spec, &mut document.value, &up)?;
            for (key, bytes) in keys {
                contents
                    .files
                    .insert(format!("{KEYS_DIR}/{name}/{key}"), bytes);
            }
            contents.repositories.push(name);
        }
        let mut text = String::from(
            "# Rewritten by `holdfast bundle create`: the Repository credentials are files of the\n\
             # bundle's keys/ folder, named by relative paths. Keep specs/ and keys/ side by side.\n",
        );
        for (i, document) in documents.iter().enumerate() {
            if i > 0 {
                text.push_str("---\n");
            }
            let yaml = serde_yaml_ng::to_string(&document.value).map_err(|e| BundleError::Io {
                doing: "rewriting",
                path: file.clone(),
                source: io::Error::other(e),
            })?;
            text.push_str(&yaml);
        }
        contents
            .files
            .insert(format!("{SPECS_DIR}/{relative}"), text.into_bytes());
    }
    if let Some(config) = &source.config {
        let bytes = fs::read(config).map_err(io_err("reading the configuration file", config))?;
        contents.files.insert(CONFIG_FILE.to_string(), bytes);
    }
    contents
        .files
        .insert(README.to_string(), readme(source, &contents).into_bytes());
    Ok(contents)
}

/// `file`'s path inside the specs folder, with '/' separators; the file's name when the
/// specs "folder" is the file itself.
fn relative_in_specs(specs: &Path, file: &Path) -> String {
    let relative = file
        .strip_prefix(specs)
        .ok()
        .filter(|r| !r.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .or_else(|| file.file_name().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("specs.yaml"));
    relative
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Reads each credential `spec` (paths resolved) names, and points `value` (the spec
/// document as written) at the bundle's copy of it: `{up}keys/<name>/<file>`. Returns the
/// files to bundle.
fn resolve_credentials(
    name: &str,
    spec: &RepositorySpec,
    value: &mut serde_json::Value,
    up: &str,
) -> Result<Vec<(&'static str, Vec<u8>)>, BundleError> {
    let mut keys = Vec::new();
    let bundled = |file: &str| format!("{up}{KEYS_DIR}/{name}/{file}");
    let failed = |field: &'static str, reason: String| BundleError::Credential {
        name: name.to_string(),
        field,
        reason,
    };
    let mut secret = |field: &'static str,
                      pointer: &str,
                      file: &'static str,
                      secret: &HostSecret,
                      value: &mut serde_json::Value|
     -> Result<(), BundleError> {
        let read = secret.read().map_err(|e| failed(field, e.to_string()))?;
        keys.push((file, read.into_bytes()));
        if let Some(at) = value.pointer_mut(pointer) {
            *at = serde_json::json!({ "fromFile": bundled(file) });
        }
        Ok(())
    };
    if let Some(s3) = &spec.storage.s3 {
        secret(
            "spec.storage.s3.accessKeyId",
            "/spec/storage/s3/accessKeyId",
            "s3-access-key-id",
            &s3.access_key_id,
            value,
        )?;
        secret(
            "spec.storage.s3.secretAccessKey",
            "/spec/storage/s3/secretAccessKey",
            "s3-secret-access-key",
            &s3.secret_access_key,
            value,
        )?;
    }
    if let Some(password) = &spec.password {
        secret(
            "spec.password",
            "/spec/password",
            "restic-password",
            password,
            value,
        )?;
    }
    let mut copy = |field: &'static str, pointer: &str, file: &'static str, path: &str| {
        let bytes = fs::read(path).map_err(|e| failed(field, format!("reading {path}: {e}")))?;
        keys.push((file, bytes));
        if let Some(at) = value.pointer_mut(pointer) {
            *at = serde_json::Value::String(bundled(file));
        }
        Ok::<(), BundleError>(())
    };
    if let Some(sftp) = &spec.storage.sftp {
        copy(
            "spec.storage.sftp.privateKeyFile",
            "/spec/storage/sftp/privateKeyFile",
            "ssh-private-key",
            &sftp.private_key_file,
        )?;
        copy(
            "spec.storage.sftp.knownHostsFile",
            "/spec/storage/sftp/knownHostsFile",
            "known_hosts",
            &sftp.known_hosts_file,
        )?;
    }
    if let Some(identity) = spec
        .encryption
        .as_ref()
        .and_then(|e| e.age.as_ref())
        .and_then(|a| a.identity_file.as_deref())
    {
        copy(
            "spec.encryption.age.identityFile",
            "/spec/encryption/age/identityFile",
            "age-identity.txt",
            identity,
        )?;
    }
    // A relative folder meant the old spec file's folder; the bundle is elsewhere.
    if let (Some(local), Some(at)) = (
        &spec.storage.local,
        value.pointer_mut("/spec/storage/local/path"),
    ) {
        *at = serde_json::Value::String(local.path.clone());
    }
    Ok(keys)
}

/// The restore steps, with this host's names and paths.
fn readme(source: &Source, contents: &Contents) -> String {
    let host = &source.host;
    let mut text = format!(
        "holdfast disaster-recovery bundle of host `{host}`\n\
         made {} by holdfast {}\n\n\
         What it holds\n\
         - specs/: the specs folder of `{host}`, {specs}\n  \
         Files holding a Repository point at keys/ by relative paths: keep specs/ and\n  \
         keys/ side by side.\n\
         - keys/: the repositories' credentials and age identities, resolved. Secrets: keep\n  \
         this folder readable by root only.\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC"),
        env!("CARGO_PKG_VERSION"),
        specs = source.specs.display(),
    );
    if let Some(config) = &source.config {
        text.push_str(&format!(
            "- holdfast.yaml: the configuration file ({}); its paths are the old host's.\n",
            config.display()
        ));
    }
    text.push_str(&format!(
        "\nThe repositories\n\
         - default: the `--repository` folder, {}\n  \
         (not a spec, so it has no keys here)\n",
        source.repository.display()
    ));
    for name in &contents.repositories {
        let prefix = format!("{KEYS_DIR}/{name}/");
        let keys: Vec<&str> = contents
            .files
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .collect();
        text.push_str(&match keys.as_slice() {
            [] => format!("- {name}: a Repository spec; it has no credentials to bundle\n"),
            keys => format!(
                "- {name}: a Repository spec; in keys/{name}/: {}\n",
                keys.join(", ")
            ),
        });
    }
    let repo = contents
        .repositories
        .first()
        .map_or("default".to_string(), Clone::clone);
    text.push_str(&format!(
        "\nBringing the host back (run from the folder this bundle was opened into)\n\
         1. Install holdfast and Docker on the new host. Mount or reach the repositories as\n   \
         the old host did: the `--repository` folder and each Repository's\n   \
         storage.local.path must exist again, with what they held.\n\
         2. Check the specs:\n     holdfast validate --specs specs\n\
         3. See the old host's archives (they are under its name, `{host}`):\n     \
         holdfast get archives --specs specs --repo {repo} --host {host}\n\
         4. Put each stack back: its volumes, dumps and compose files (the recipe):\n     \
         holdfast restore --specs specs --repo {repo} --host {host} --policy POLICY --at latest --recipe-to ./POLICY\n   \
         then `docker compose up -d` in ./POLICY.\n\
         5. Run the daemon on the new host: move specs/ and keys/ side by side where they stay\n   \
         (e.g. /etc/holdfast/specs and /etc/holdfast/keys), put holdfast.yaml (if any) at\n   \
         /etc/holdfast/holdfast.yaml with its paths checked, and start holdfast with\n   \
         `--host {host}` to carry on writing into the old host's folder.\n"
    ));
    text
}

/// The tar stream of `contents`: files 0600, folders 0700, owned by root, timestamped now.
pub fn tar(contents: &Contents) -> Result<Vec<u8>, BundleError> {
    let mut builder = tar::Builder::new(Vec::new());
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let mut folders: Vec<String> = Vec::new();
    for (path, bytes) in &contents.files {
        let mut parent = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, p)| p)
        {
            parent.push_str(part);
            parent.push('/');
            if !folders.contains(&parent) {
                folders.push(parent.clone());
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o700);
                header.set_mtime(now);
                header.set_size(0);
                builder
                    .append_data(&mut header, &parent, io::empty())
                    .map_err(BundleError::Tar)?;
            }
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o600);
        header.set_mtime(now);
        header.set_size(bytes.len() as u64);
        builder
            .append_data(&mut header, path, &bytes[..])
            .map_err(BundleError::Tar)?;
    }
    builder.into_inner().map_err(BundleError::Tar)
}

/// The age public keys of `--recipient` values (`source_name` says where they came from
/// in errors), each trimmed.
pub fn parse_recipients(
    source_name: &str,
    texts: &[String],
) -> Result<Vec<age::x25519::Recipient>, BundleError> {
    texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            age::x25519::Recipient::from_str(text.trim()).map_err(|_| BundleError::Recipient {
                source_name: source_name.to_string(),
                index,
                shown: text.chars().take(12).collect::<String>() + "…",
            })
        })
        .collect()
}

/// The recipients of a recipients file as age's `-R` reads it: one public key a line,
/// blank lines and `#` comments skipped.
pub fn read_recipients_file(path: &Path) -> Result<Vec<age::x25519::Recipient>, BundleError> {
    let text = fs::read_to_string(path).map_err(io_err("reading the recipients file", path))?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    parse_recipients(&path.display().to_string(), &lines)
}

/// `plain` encrypted with age to `recipients` (at least one).
pub fn encrypt(
    plain: &[u8],
    recipients: &[age::x25519::Recipient],
) -> Result<Vec<u8>, BundleError> {
    if recipients.is_empty() {
        return Err(BundleError::NoRecipient);
    }
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| BundleError::Encrypt(e.to_string()))?;
    let mut out = Vec::with_capacity(plain.len() + 1024);
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| BundleError::Encrypt(e.to_string()))?;
    writer
        .write_all(plain)
        .and_then(|()| writer.finish().map(drop))
        .map_err(|e| BundleError::Encrypt(e.to_string()))?;
    Ok(out)
}

/// The whole bundle of `source`, encrypted to `recipients`.
pub fn create(
    source: &Source,
    recipients: &[age::x25519::Recipient],
) -> Result<(Vec<u8>, Contents), BundleError> {
    if recipients.is_empty() {
        return Err(BundleError::NoRecipient);
    }
    let contents = collect(source)?;
    let sealed = encrypt(&tar(&contents)?, recipients)?;
    Ok((sealed, contents))
}

/// Writes `bytes` to `path` as [`crate::fsutil::write_atomic`] does (a temporary file in
/// the same folder, fsynced, renamed over the target, the folder fsynced), readable by
/// its owner only from the first byte.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let _ = fs::remove_file(&tmp);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err("writing the bundle", path))
}

/// Refreshes the bundle of `source` in `repository` (its record [`RECORD`]), encrypted to
/// the repository's age recipients; the storage replaces it whole, so a reader sees the
/// old bundle or the new one.
pub fn refresh(repository: &Repository, source: &Source) -> Result<(), BundleError> {
    let recipients = repository.recipients();
    if recipients.is_empty() {
        return Err(BundleError::NoRecipient);
    }
    let (sealed, _) = create(source, &recipients)?;
    repository
        .write_meta(RECORD, &sealed)
        .map_err(|e| BundleError::Io {
            doing: "writing the bundle into repository",
            path: PathBuf::from(repository.name()),
            source: io::Error::other(e.to_string()),
        })
}

/// Decrypts the bundle `path` with the identities of the file `identity` and unpacks it
/// into `to`, which must not exist or be an empty folder. Only plain relative paths of
/// files and folders are unpacked (files 0600, folders 0700); anything else refuses the
/// whole bundle before a byte is written. Returns the files written, by their path inside
/// `to`.
pub fn open(path: &Path, identity: &Path, to: &Path) -> Result<Vec<String>, BundleError> {
    let identities = crate::repo::crypt::read_identities(identity)
        .map_err(|e| BundleError::Identity(e.to_string()))?;
    let file = fs::File::open(path).map_err(io_err("opening the bundle", path))?;
    let decryptor = age::Decryptor::new_buffered(io::BufReader::new(file)).map_err(|e| {
        BundleError::NotAge {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => BundleError::WrongIdentity {
                path: path.to_path_buf(),
                identity: identity.to_path_buf(),
            },
            other => BundleError::Decrypt {
                path: path.to_path_buf(),
                reason: other.to_string(),
            },
        })?;
    let mut plain = Vec::new();
    reader
        .read_to_end(&mut plain)
        .map_err(|e| BundleError::Decrypt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    unpack(&plain, to)
}

/// Unpacks a bundle's tar stream into `to` (see [`open`]).
pub fn unpack(tar_bytes: &[u8], to: &Path) -> Result<Vec<String>, BundleError> {
    match fs::read_dir(to) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BundleError::NotEmpty(to.to_path_buf()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("reading", to)(e)),
    }
    // Everything is read and checked first: a bad entry leaves nothing behind.
    let mut entries: Vec<(PathBuf, Option<Vec<u8>>)> = Vec::new();
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries().map_err(BundleError::Tar)? {
        let mut entry = entry.map_err(BundleError::Tar)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let relative = safe_relative(&raw)?;
        match entry.header().entry_type() {
            tar::EntryType::Directory => entries.push((relative, None)),
            tar::EntryType::Regular => {
                if entry.size() > MAX_ENTRY_BYTES {
                    return Err(BundleError::EntryKind {
                        path: raw,
                        kind: format!("file of {} bytes", entry.size()),
                    });
                }
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).map_err(BundleError::Tar)?;
                entries.push((relative, Some(bytes)));
            }
            other => {
                return Err(BundleError::EntryKind {
                    path: raw,
                    kind: format!("{other:?}").to_lowercase(),
                });
            }
        }
    }
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let mut folders = fs::DirBuilder::new();
    folders.recursive(true).mode(0o700);
    folders.create(to).map_err(io_err("creating", to))?;
    let mut written = Vec::new();
    for (relative, bytes) in entries {
        let target = to.join(&relative);
        match bytes {
            None => folders
                .create(&target)
                .map_err(io_err("creating", &target))?,
            Some(bytes) => {
                if let Some(parent) = target.parent() {
                    folders.create(parent).map_err(io_err("creating", parent))?;
                }
                // A new file: the folder was empty, and a name twice in one bundle is a
                // bundle not made by holdfast.
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&target)
                    .map_err(io_err("creating", &target))?;
                file.write_all(&bytes)
                    .and_then(|()| file.sync_all())
                    .map_err(io_err("writing", &target))?;
                written.push(relative.display().to_string());
            }
        }
    }
    Ok(written)
}

/// `raw` as a path of only normal parts (no `..`, no root, nothing empty).
fn safe_relative(raw: &str) -> Result<PathBuf, BundleError> {
    let path = Path::new(raw);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return Err(BundleError::Escapes(raw.to_string())),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(BundleError::Escapes(raw.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn key(dir: &Path) -> (PathBuf, age::x25519::Recipient) {
        let identity = age::x25519::Identity::generate();
        let path = dir.join("key.txt");
        fs::write(
            &path,
            format!("# test key\n{}\n", identity.to_string().expose_secret()),
        )
        .unwrap();
        (path, identity.to_public())
    }

    const REPOSITORY: &str = "apiVersion: holdfast.dev/v1alpha1
kind: Repository
metadata: {name: offsite}
spec:
  storage:
    s3:
      endpoint: http://127.0.0.1:3900
      region: garage
      bucket: holdfast
      accessKeyId: {fromEnv: HOLDFAST_TEST_BUNDLE_KEY_ID}
      secretAccessKey: {fromFile: ../../secrets/s3}
  encryption:
    age:
      recipients: [RECIPIENT]
      identityFile: ../../secrets/age.key
---
apiVersion: holdfast.dev/v1alpha1
kind: Repository
metadata: {name: usb}
spec:
  storage:
    local: {path: usb-disk}
";

    /// A specs folder with a policy, an S3 repository (one secret from the environment,
    /// one from a file, an identity) and a local one, in `dir`.
    fn host(dir: &Path) -> (Source, age::x25519::Recipient) {
        let secrets = dir.join("secrets");
        fs::create_dir_all(&secrets).unwrap();
        let (identity, recipient) = key(&secrets);
        fs::rename(&identity, secrets.join("age.key")).unwrap();
        fs::write(secrets.join("s3"), "the-secret-key\n").unwrap();
        let specs = dir.join("specs");
        fs::create_dir_all(specs.join("repos")).unwrap();
        fs::write(
            specs.join("web.yaml"),
            "# my policy\napiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata: {name: web}\nspec:\n  schedule: '@daily'\n  targets: {stacks: [web]}\n",
        )
        .unwrap();
        fs::write(
            specs.join("repos/offsite.yaml"),
            REPOSITORY.replace("RECIPIENT", &recipient.to_string()),
        )
        .unwrap();
        // SAFETY: tests of this module are the only readers of this variable.
        unsafe { std::env::set_var("HOLDFAST_TEST_BUNDLE_KEY_ID", "the-key-id") };
        (
            Source {
                specs: specs.clone(),
                config: None,
                host: "nas".into(),
                repository: dir.join("repository"),
            },
            recipient,
        )
    }

    #[test]
    fn credentials_are_resolved_into_keys_the_rewritten_specs_point_at() {
        let dir = tempfile::tempdir().unwrap();
        let (source, _) = host(dir.path());
        let contents = collect(&source).unwrap();
        let names: Vec<&str> = contents.files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "README.txt",
                "keys/offsite/age-identity.txt",
                "keys/offsite/s3-access-key-id",
                "keys/offsite/s3-secret-access-key",
                "specs/repos/offsite.yaml",
                "specs/web.yaml",
            ]
        );
        assert_eq!(
            contents.files["keys/offsite/s3-access-key-id"],
            b"the-key-id"
        );
        assert_eq!(
            contents.files["keys/offsite/s3-secret-access-key"],
            b"the-secret-key"
        );
        // Files without a Repository are copied byte for byte, comments and all.
        assert!(contents.files["specs/web.yaml"].starts_with(b"# my policy\n"));
        // Unpacked, the bundled specs validate and read the bundled secrets.
        let out = dir.path().join("opened");
        unpack(&tar(&contents).unwrap(), &out).unwrap();
        let report = crate::validate::validate_paths(&[out.join("specs")]);
        assert!(report.is_valid(), "{:?}", report.diagnostics());
        let repos: Vec<&RepositorySpec> = report
            .valid_objects()
            .filter_map(|r| match r {
                Resource::Repository(r) => Some(&r.spec),
                _ => None,
            })
            .collect();
        let s3 = repos[0].storage.s3.as_ref().unwrap();
        assert_eq!(s3.access_key_id.read().unwrap(), "the-key-id");
        assert_eq!(s3.secret_access_key.read().unwrap(), "the-secret-key");
        let identity = repos[0].encryption.as_ref().unwrap().age.as_ref().unwrap();
        let identity = identity.identity_file.as_deref().unwrap();
        assert!(identity.starts_with(out.to_str().unwrap()), "{identity}");
        // The relative local folder meant the old specs' folder, and still does.
        assert_eq!(
            repos[1].storage.local.as_ref().unwrap().path,
            std::path::absolute(source.specs.join("repos/usb-disk"))
                .unwrap()
                .display()
                .to_string()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(out.join("keys/offsite/s3-secret-access-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_secret_that_cannot_be_read_names_its_repository_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let (source, _) = host(dir.path());
        fs::remove_file(dir.path().join("secrets/s3")).unwrap();
        let e = collect(&source).unwrap_err().to_string();
        assert!(
            e.contains("Repository `offsite`") && e.contains("spec.storage.s3.secretAccessKey"),
            "{e}"
        );
    }

    #[test]
    fn a_bundle_opens_with_its_identity_only() {
        let dir = tempfile::tempdir().unwrap();
        let (source, _) = host(dir.path());
        let keys = dir.path().join("keys");
        fs::create_dir(&keys).unwrap();
        let (identity, recipient) = key(&keys);
        let (sealed, _) = create(&source, &[recipient]).unwrap();
        assert!(sealed.starts_with(b"age-encryption.org/v1"));
        let file = dir.path().join("b.age");
        write_private(&file, &sealed).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let other = dir.path().join("other");
        fs::create_dir(&other).unwrap();
        let (wrong, _) = key(&other);
        let e = open(&file, &wrong, &dir.path().join("x")).unwrap_err();
        assert!(matches!(e, BundleError::WrongIdentity { .. }), "{e}");
        assert!(!dir.path().join("x").exists());

        let written = open(&file, &identity, &dir.path().join("x")).unwrap();
        assert!(written.contains(&"README.txt".to_string()), "{written:?}");
        // Not twice into the same folder.
        let e = open(&file, &identity, &dir.path().join("x")).unwrap_err();
        assert!(matches!(e, BundleError::NotEmpty(_)), "{e}");
        assert!(matches!(
            create(&source, &[]),
            Err(BundleError::NoRecipient)
        ));
    }

    #[test]
    fn paths_leaving_the_folder_and_links_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let hostile = |path: &str, kind: tar::EntryType| {
            let mut builder = tar::Builder::new(Vec::new());
            let mut ok = tar::Header::new_gnu();
            ok.set_size(2);
            ok.set_mode(0o600);
            builder
                .append_data(&mut ok, "README.txt", &b"hi"[..])
                .unwrap();
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(1);
            header.set_mode(0o600);
            // Written raw: the tar crate refuses to build `..` itself.
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, &b"x"[..]).unwrap();
            builder.into_inner().unwrap()
        };
        for (path, kind, expect) in [
            (
                "../escaped",
                tar::EntryType::Regular,
                "not a plain relative path",
            ),
            (
                "/etc/escaped",
                tar::EntryType::Regular,
                "not a plain relative path",
            ),
            ("specs/link", tar::EntryType::Symlink, "symlink"),
        ] {
            let to = dir.path().join("to");
            let e = unpack(&hostile(path, kind), &to).unwrap_err().to_string();
            assert!(e.contains(expect), "{path}: {e}");
            assert!(!to.exists(), "{path}");
        }
        assert!(!dir.path().join("escaped").exists());
    }
}
