//! The repository: where archives live, and everything that reads or changes them.
//!
//! - [`layout`]: names and suffixes (`<host>/<group>/<archive id>/manifest.json`).
//! - [`manifest`]: the repository format: the manifest and the verification record.
//! - [`storage`]: the storage boundary (list, read, streamed write, commit, delete) and
//!   the local folder behind it; remote storages implement the same trait.
//! - [`objects`]: the same layout on an object store, where the manifest written last
//!   commits an archive; [`s3`] (S3-compatible buckets) and [`sftp`] (a folder on an
//!   SFTP server) are the stores behind it, and [`remote`] the runtime they run on.
//! - [`restic`]: restic-format repositories (snapshots per volume, deduplicated),
//!   through rustic_core.
//! - [`crypt`]: age encryption of artifacts on their way to the storage.
//! - [`named`]: repositories by name, opened from Repository specs, and their probe.
//! - [`copy`]: copies of a committed archive into other repositories.
//! - [`lock`]: one writer per host folder of a repository, and who holds it.
//! - [`flat`]: moving the flat layout of earlier releases under this host.
//! - [`catalog`]: what the repository holds, read from manifests alone, and the
//!   in-memory [`catalog::Catalog`] the daemon keeps up to date by events.
//! - [`hosts`]: each host's summary of its objects (`.holdfast/summary.json`), read
//!   back for the fleet view.
//! - [`handled`]: what this host has acted on (`.holdfast/handled.json`), so that a new
//!   state folder does not run a handled Restore or request again.
//! - [`verify`]: reading archives back in full.
//! - [`prune`]: retention, decided purely and carried out by [`deletion`], the deletion
//!   journal.

pub mod catalog;
pub mod copy;
pub mod crypt;
pub mod deletion;
pub mod flat;
pub mod handled;
pub mod hosts;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod named;
pub mod objects;
pub mod prune;
pub mod remote;
pub mod restic;
pub mod s3;
pub mod sftp;
pub mod storage;
pub mod verify;

pub use catalog::{Catalog, Entry, Health};
pub use storage::{Repository, Storage, StorageError};
