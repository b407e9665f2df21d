//! holdfast: declarative backups for Docker hosts.
//!
//! People describe what they want backed up in `BackupPolicy`, `Archive` and `Restore`
//! specs kept in git; holdfast validates them, backs up through the Docker API, and writes
//! what it observed beside each spec.
//!
//! Module map, foundation first (imports point from later to earlier):
//!
//! - [`diagnostic`], [`fsutil`], [`settings`], [`logging`], [`progress`], [`secrets`]: errors with
//!   positions, atomic writes, daemon flags, log setup, progress reporting.
//! - [`spec`]: the resource model, and [`schema`]: the JSON Schemas generated from it.
//! - [`load`]: finding spec files and reading their YAML documents with positions.
//! - [`validate`]: every check, collecting all errors at once.
//! - [`archive`]: folder trees, tar streams and dumps into checksummed artifacts.
//! - [`docker`]: what Docker reports (stacks, containers, volumes), through bollard.
//! - [`state`]: the state database (stop journal, runs) and its lock; [`repository`]:
//!   archive folders that exist whole or not at all.
//! - [`prune`]: retention carried out through the deletion journal.
//! - [`retention`]: grandfather-father-son pruning as a pure decision with reasons.
//! - [`schedule`]: when a policy runs: cron in its time zone, DST, jitter, catch-up.
//! - [`executor`]: one backup run, its phases, and the plan it follows.
//! - [`catalog`]: the archives in the repository, read from their manifests.
//! - [`status`]: status files: conditions, generations, rendering, atomic writes.
//! - [`controller`]: the reconciler daemon (`holdfast run`): watch, plan, start runs,
//!   write status files.
//! - [`cli`]: one thin file per subcommand.

pub mod api;
pub mod archive;
pub mod catalog;
pub mod cli;
pub mod controller;
pub mod diagnostic;
pub mod docker;
pub mod executor;
pub mod fsutil;
pub mod load;
pub mod logging;
pub mod metrics;
pub mod progress;
pub mod prune;
pub mod repository;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod schema;
pub mod secrets;
pub mod settings;
pub mod spec;
pub mod state;
pub mod status;
pub mod validate;
pub mod verify;
