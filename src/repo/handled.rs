//! The handled record: what this host has acted on, kept in the repository
//! (`.holdfast/handled.json`) so that it outlives the state folder.
//!
//! A Restore spec runs once per generation, and a `requested-at` value once. The state
//! database remembers which were handled, but a new or lost state folder forgets, and an
//! `InPlace` Restore run a second time destroys what was written since. So every handled
//! value is also written here, before the run it triggers starts, and read back at
//! start-up. The file is small (one entry per object), versioned, and replaced atomically.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::storage::{Repository, StorageError};
use crate::spec::Kind;
use crate::state::Held;

/// The record's file under the repository's records folder.
pub const FILE: &str = "handled.json";
/// The format version this holdfast writes and reads.
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum HandledError {
    #[error("reading the handled record of {repository}: {source}")]
    Read {
        repository: String,
        #[source]
        source: StorageError,
    },
    #[error("the handled record {repository}/.holdfast/{FILE} is not valid: {source}")]
    Parse {
        repository: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the handled record {repository}/.holdfast/{FILE} has version {found}, newer than this holdfast knows ({VERSION}); upgrade holdfast"
    )]
    TooNew { repository: String, found: u32 },
    #[error("writing the handled record of {repository}: {source}")]
    Write {
        repository: String,
        #[source]
        source: StorageError,
    },
}

/// The whole file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandledRecord {
    pub version: u32,
    /// Sorted by kind and name, one entry each.
    #[serde(default)]
    pub objects: Vec<HandledEntry>,
}

impl Default for HandledRecord {
    fn default() -> Self {
        HandledRecord {
            version: VERSION,
            objects: Vec::new(),
        }
    }
}

/// What was handled of one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandledEntry {
    pub kind: Kind,
    pub name: String,
    /// The generation last taken (Archive, Restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
    /// The `holdfast.dev/requested-at` value last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<String>,
    /// When the values above were set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// An InPlace Restore waiting for a new requested-at value (see [`Held`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
}

impl HandledEntry {
    pub fn new(kind: Kind, name: &str) -> HandledEntry {
        HandledEntry {
            kind,
            name: name.to_string(),
            generation: None,
            requested_at: None,
            at: None,
            held: None,
        }
    }

    /// Whether the entry says anything at all.
    pub fn is_empty(&self) -> bool {
        self.generation.is_none() && self.requested_at.is_none() && self.held.is_none()
    }
}

impl HandledRecord {
    pub fn get(&self, kind: Kind, name: &str) -> Option<&HandledEntry> {
        self.objects
            .iter()
            .find(|e| e.kind == kind && e.name == name)
    }

    /// Puts `entry` in place of the one of the same object, keeping the order; an empty
    /// entry removes it.
    pub fn set(&mut self, entry: HandledEntry) {
        self.objects
            .retain(|e| !(e.kind == entry.kind && e.name == entry.name));
        if !entry.is_empty() {
            self.objects.push(entry);
            self.objects
                .sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        }
    }
}

/// Reads the record; `Ok(None)` when the repository has none (a repository this host
/// never acted on, or one written before the record existed).
pub fn read(repo: &Repository) -> Result<Option<HandledRecord>, HandledError> {
    let repository = repo.describe();
    let Some(bytes) = repo.read_meta(FILE).map_err(|source| HandledError::Read {
        repository: repository.clone(),
        source,
    })?
    else {
        return Ok(None);
    };
    // The version first, so a newer file is refused by its version, not by a field this
    // holdfast does not know.
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let versioned: Versioned =
        serde_json::from_slice(&bytes).map_err(|source| HandledError::Parse {
            repository: repository.clone(),
            source,
        })?;
    if versioned.version > VERSION {
        return Err(HandledError::TooNew {
            repository,
            found: versioned.version,
        });
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| HandledError::Parse { repository, source })
}

/// Replaces the record, atomically and durably.
pub fn write(repo: &Repository, record: &HandledRecord) -> Result<(), HandledError> {
    let mut bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
    bytes.push(b'\n');
    repo.write_meta(FILE, &bytes)
        .map_err(|source| HandledError::Write {
            repository: repo.describe(),
            source,
        })
}

/// The record as last read or written, and the repository it lives in: the one place
/// that changes it, so concurrent changes never lose each other's entries. Every method
/// blocks (storage IO): call them from blocking workers.
#[derive(Debug)]
pub struct Book {
    repo: Repository,
    /// `None` while the file could not be read: it is read again before the next change,
    /// and never overwritten unread.
    record: Mutex<Option<HandledRecord>>,
}

impl Book {
    /// A book whose record is read on first use.
    pub fn new(repo: Repository) -> Book {
        Book {
            repo,
            record: Mutex::new(None),
        }
    }

    /// Reads the record from the repository (again), for start-up; `Ok(None)` when there
    /// is none yet.
    pub fn load(&self) -> Result<Option<HandledRecord>, HandledError> {
        let found = read(&self.repo)?;
        *self.lock() = Some(found.clone().unwrap_or_default());
        Ok(found)
    }

    /// Names the repository in messages.
    pub fn describe(&self) -> String {
        self.repo.describe()
    }

    /// The entry of `kind/name` as last known.
    pub fn entry(&self, kind: Kind, name: &str) -> Option<HandledEntry> {
        self.lock().as_ref()?.get(kind, name).cloned()
    }

    /// Changes the entry of `kind/name` with `change` and writes the record, unless the
    /// change changes nothing. On error the record is as it was.
    pub fn update(
        &self,
        kind: Kind,
        name: &str,
        change: impl FnOnce(&mut HandledEntry),
    ) -> Result<(), HandledError> {
        self.replace_with(|record| {
            let mut entry = record
                .get(kind, name)
                .cloned()
                .unwrap_or_else(|| HandledEntry::new(kind, name));
            change(&mut entry);
            record.set(entry);
        })
    }

    /// Replaces the whole record with `record` (after the merge at start-up), writing it
    /// when it differs from what the repository holds, or when the repository has none.
    pub fn replace(&self, record: HandledRecord, written: bool) -> Result<(), HandledError> {
        let mut guard = self.lock();
        if written && guard.as_ref() == Some(&record) {
            return Ok(());
        }
        write(&self.repo, &record)?;
        *guard = Some(record);
        Ok(())
    }

    fn replace_with(&self, change: impl FnOnce(&mut HandledRecord)) -> Result<(), HandledError> {
        let mut guard = self.lock();
        let current = match guard.as_ref() {
            Some(r) => r.clone(),
            None => read(&self.repo)?.unwrap_or_default(),
        };
        let mut next = current.clone();
        change(&mut next);
        if next == current && guard.is_some() {
            return Ok(());
        }
        write(&self.repo, &next)?;
        *guard = Some(next);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<HandledRecord>> {
        // A panic while holding the lock left the last record that was written, or none.
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap()
    }

    #[test]
    fn a_record_round_trips_and_changes_only_what_it_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::local(dir.path(), "h");
        let book = Book::new(repo.clone());
        assert_eq!(book.load().unwrap(), None);
        book.update(Kind::Restore, "back", |e| {
            e.generation = Some("g1".into());
            e.at = Some(at());
        })
        .unwrap();
        book.update(Kind::BackupPolicy, "nightly", |e| {
            e.requested_at = Some("r1".into())
        })
        .unwrap();
        let record = read(&repo).unwrap().unwrap();
        assert_eq!(record.version, VERSION);
        let names: Vec<&str> = record.objects.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["nightly", "back"], "sorted by kind, then name");
        assert_eq!(
            record
                .get(Kind::Restore, "back")
                .unwrap()
                .generation
                .as_deref(),
            Some("g1")
        );
        let text = String::from_utf8(repo.read_meta(FILE).unwrap().unwrap()).unwrap();
        assert!(text.contains("\"kind\": \"Restore\""), "{text}");
        assert!(text.contains("\"requestedAt\": \"r1\""), "{text}");
    }

    #[test]
    fn a_newer_or_broken_record_is_refused_and_never_overwritten_unread() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::local(dir.path(), "h");
        repo.write_meta(FILE, b"{\"version\": 2, \"objects\": [{\"new\": 1}]}")
            .unwrap();
        let err = read(&repo).unwrap_err();
        assert!(err.to_string().contains("version 2"), "{err}");
        repo.write_meta(FILE, b"{\"vers").unwrap();
        let book = Book::new(repo.clone());
        assert!(book.load().is_err());
        let err = book
            .update(Kind::Archive, "once", |e| e.generation = Some("g".into()))
            .unwrap_err();
        assert!(err.to_string().contains("not valid"), "{err}");
        assert_eq!(repo.read_meta(FILE).unwrap().unwrap(), b"{\"vers");
    }
}
