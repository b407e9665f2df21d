//! The repository: where archives live, and everything that reads or changes them.
//!
//! - [`layout`]: names and suffixes (`<group>/<archive id>/manifest.json`).
//! - [`manifest`]: the repository format: the manifest and the verification record.
//! - [`storage`]: the storage boundary (list, read, streamed write, commit, delete) and
//!   the local folder behind it; remote storages implement the same trait.
//! - [`catalog`]: what the repository holds, read from manifests alone, and the
//!   in-memory [`catalog::Catalog`] the daemon keeps up to date by events.
//! - [`handled`]: what this host has acted on (`.holdfast/handled.json`), so that a new
//!   state folder does not run a handled Restore or request again.
//! - [`verify`]: reading archives back in full.
//! - [`prune`]: retention and deletions, carried out through the deletion journal.

pub mod catalog;
pub mod handled;
pub mod layout;
pub mod manifest;
pub mod prune;
pub mod storage;
pub mod verify;

pub use catalog::{Catalog, Entry, Health};
pub use storage::{Repository, Storage, StorageError};
