//! holdfast: declarative backups for Docker hosts.
//!
//! People describe what they want backed up in `BackupPolicy`, `Archive` and `Restore`
//! specs kept in git; holdfast validates them, backs up through the Docker API, and writes
//! what it observed beside each spec.
//!
//! Module map, in the order data flows. A module imports only modules listed before it
//! (`tests/module_graph.rs` checks this), so the map reads from the bottom up too.
//!
//! Foundation:
//! - [`diagnostic`], [`fsutil`], [`secrets`], [`progress`]: errors with positions, atomic
//!   writes, what counts as a secret, progress reporting.
//! - [`fault`]: named crash points, which only a test build with the `fault-injection`
//!   feature turns into a SIGKILL.
//! - [`settings`], [`config`], [`logging`]: the flags, the configuration file, log setup.
//! - [`spec`]: the resource model, and [`schema`]: the JSON Schemas generated from it.
//! - [`notify`]: notification URLs, messages and the services that carry them.
//! - [`load`]: finding spec files and reading their YAML documents with positions.
//! - [`validate`]: every check, collecting all errors at once.
//!
//! Pure decisions (no IO, no clock of their own):
//! - [`retention`]: grandfather-father-son pruning with reasons.
//! - [`schedule`]: when a policy runs: cron in its time zone, DST, jitter, catch-up.
//!
//! Adapters:
//! - [`docker`]: what Docker reports (stacks, containers, volumes), through bollard.
//! - [`state`]: the state database (stop journal, runs, deletion journal) and its lock.
//! - [`archive`]: folder trees, tar streams and dumps into checksummed artifacts, and
//!   the hardened reader that verifies and extracts them.
//! - [`repo`]: the repository: layout, manifest, the storage boundary, the catalog,
//!   verify and retention carried out.
//! - [`bundle`]: the disaster-recovery bundle: specs, credentials resolved, identities and
//!   restore steps in one age-encrypted file.
//! - [`status`]: status files: conditions, generations, rendering, atomic writes.
//!
//! Orchestration:
//! - [`locks`]: runs of one process exclude each other by the containers, stacks,
//!   volumes and folders they touch.
//! - [`executor`]: one backup run, its phases, and the targets it resolves.
//! - [`restore`]: one restore: resolving the archive, extraction, dump replay.
//! - [`actions`]: one ContainerSchedule action (start, stop, restart, pause, unpause).
//! - [`metrics`]: the Prometheus registry.
//! - [`hub`]: what the controller publishes and the API reads: snapshot, events, metrics.
//! - [`controller`]: the reconciler daemon (`holdfast run`): watch, plan, start runs,
//!   write status files.
//!
//! Edges:
//! - [`api`]: the read-only HTTP API.
//! - [`cli`]: one thin file per subcommand, and the wiring.

pub mod diagnostic;
pub mod fsutil;
pub mod secrets;
pub mod progress;
pub mod fault;
pub mod settings;
pub mod logging;
pub mod spec;
pub mod config;
pub mod schema;
pub mod notify;
pub mod load;
pub mod validate;
pub mod retention;
pub mod schedule;
pub mod docker;
pub mod state;
pub mod archive;
pub mod repo;
pub mod bundle;
pub mod status;
pub mod locks;
pub mod executor;
pub mod restore;
pub mod actions;
pub mod metrics;
pub mod hub;
pub mod controller;
pub mod api;
pub mod cli;
