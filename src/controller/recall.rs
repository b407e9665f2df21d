//! What was handled, recalled at start-up from every place that keeps it: the state
//! database, the repository's handled record ([`crate::repo::handled`]) and the status
//! files beside the specs. Any one of them may be missing (a new state folder, a fresh
//! checkout of the specs, a repository written before the record existed), so the daemon
//! remembers, per object, the newest handled generation and requested-at value any of
//! them holds, and writes that back into the database and the record before anything
//! runs.
//!
//! The merge and the hold rule are pure ([`merge`], [`must_hold`], [`vouched`]); the
//! reading and writing around them is [`recall`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Utc};

use super::desired::Desired;
use crate::repo::handled::{Book, HandledEntry, HandledError, HandledRecord};
use crate::spec::restore::RestoreMode;
use crate::spec::{Kind, ObjectKey, Resource};
use crate::state::{Held, ObjectMemory, StateDb, StateError};
use crate::status::Status;

/// The condition reason of a Restore held by [`must_hold`].
pub const HELD_REASON: &str = "UnprovenGeneration";
/// Its message.
pub const HELD_MESSAGE: &str = "cannot prove this restore has not run already (no handled record in the state folder, the repository or the status file); bump holdfast.dev/requested-at to run it";

/// One source's account of what was handled of an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    pub generation: Option<String>,
    pub requested_at: Option<String>,
    /// When the values were set; `None` when the source does not say (rows and status
    /// files written before the record existed), which counts as older than any time.
    pub at: Option<DateTime<Utc>>,
    pub held: Option<Held>,
}

impl Account {
    pub fn from_memory(m: &ObjectMemory) -> Account {
        Account {
            generation: m.last_handled_generation.clone(),
            requested_at: m.last_handled_requested_at.clone(),
            at: m.handled_at,
            held: m.held.clone(),
        }
    }

    pub fn from_entry(e: &HandledEntry) -> Account {
        Account {
            generation: e.generation.clone(),
            requested_at: e.requested_at.clone(),
            at: e.at,
            held: e.held.clone(),
        }
    }

    /// What a status file says was handled: `lastHandledGeneration` and
    /// `lastHandledRequestedAt`, at the time of its last run. A file written before
    /// `lastHandledGeneration` existed has only `observedGeneration`, which an object
    /// also shows while it waits; it is taken as handled only when the status shows a run,
    /// nothing queued and no hold.
    pub fn from_status(s: &Status) -> Account {
        let waiting = s.queued.is_some()
            || s.condition(crate::status::READY)
                .is_some_and(|c| c.reason == HELD_REASON);
        let generation = s.last_handled_generation.clone().or_else(|| {
            (s.last_run.is_some() && !waiting)
                .then(|| s.observed_generation.clone())
                .flatten()
        });
        Account {
            generation,
            requested_at: s.last_handled_requested_at.clone(),
            at: s.last_run.as_ref().and_then(|r| r.start_time),
            held: None,
        }
    }

    pub fn to_entry(&self, key: &ObjectKey) -> HandledEntry {
        HandledEntry {
            kind: key.kind,
            name: key.name.clone(),
            generation: self.generation.clone(),
            requested_at: self.requested_at.clone(),
            at: self.at,
            held: self.held.clone(),
        }
    }
}

/// The newest account of each value across `accounts` (in the order database, record,
/// status file: the earlier wins a tie). A hold stands unless a value was handled at or
/// after the time it began.
pub fn merge(accounts: &[Option<Account>]) -> Account {
    let present: Vec<&Account> = accounts.iter().flatten().collect();
    let newest =
        |pick: &dyn Fn(&Account) -> Option<String>| -> (Option<String>, Option<DateTime<Utc>>) {
            let mut best: Option<(String, Option<DateTime<Utc>>)> = None;
            for a in &present {
                if let Some(value) = pick(a)
                    && best.as_ref().is_none_or(|(_, at)| a.at > *at)
                {
                    best = Some((value, a.at));
                }
            }
            match best {
                Some((value, at)) => (Some(value), at),
                None => (None, None),
            }
        };
    let (generation, generation_at) = newest(&|a| a.generation.clone());
    let (requested_at, requested_at_at) = newest(&|a| a.requested_at.clone());
    let at = generation_at.max(requested_at_at);
    let held = present
        .iter()
        .filter_map(|a| a.held.clone())
        .max_by_key(|h| h.since)
        .filter(|h| generation.is_none() || at.is_none_or(|t| t < h.since));
    Account {
        generation,
        requested_at,
        at,
        held,
    }
}

/// Whether this daemon can prove that an object no source has any record of is new: the
/// repository holds this host's handled record (every handled value since it was made
/// is in it), or it has none but the state database already knew objects (a state
/// folder from before the record, whose memory is the proof), or the repository holds no
/// archive at all (nothing could have been restored from it).
pub fn vouched(
    record: &Result<Option<HandledRecord>, HandledError>,
    database_knew_objects: bool,
    repository_empty: bool,
) -> bool {
    match record {
        Ok(Some(_)) => true,
        Ok(None) => database_knew_objects || repository_empty,
        Err(_) => false,
    }
}

/// Whether `resource`, remembered as `memory`, must be held rather than run: an InPlace
/// Restore (it replaces data) with no handled generation and no hold yet, seen by a
/// daemon that cannot vouch for its history. NewVolumes restores and backups destroy
/// nothing when repeated, and run as usual.
pub fn must_hold(resource: &Resource, memory: &ObjectMemory, vouched: bool) -> bool {
    let in_place = matches!(resource, Resource::Restore(r) if r.spec.mode == RestoreMode::InPlace);
    in_place && !vouched && memory.last_handled_generation.is_none() && memory.held.is_none()
}

/// The objects of `desired` to hold now ([`must_hold`], for a daemon that cannot vouch):
/// marks them held in `memory` and returns them, to be recorded by [`record_holds`].
pub fn holds_due(
    desired: &Desired,
    memory: &mut BTreeMap<ObjectKey, ObjectMemory>,
    now: DateTime<Utc>,
) -> Vec<(ObjectKey, Held)> {
    let mut holds = Vec::new();
    for object in desired.objects() {
        let Some(resource) = &object.resource else {
            continue;
        };
        let remembered = memory.entry(object.key()).or_default();
        if must_hold(resource, remembered, false) {
            let held = Held {
                requested_at: object.requested_at.clone(),
                since: now,
            };
            remembered.held = Some(held.clone());
            holds.push((object.key(), held));
        }
    }
    holds
}

/// Records holds durably, in the repository's record first and then the database.
/// Blocks: run it on a blocking worker.
pub fn record_holds(
    state: &StateDb,
    book: &Book,
    holds: Vec<(ObjectKey, Held)>,
    now: DateTime<Utc>,
) -> Result<(), String> {
    for (key, held) in holds {
        book.update(key.kind, &key.name, |e| e.held = Some(held.clone()))
            .map_err(|e| e.to_string())?;
        state
            .hold(key.kind.as_str(), &key.name, &held, now)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// What start-up recall found.
#[derive(Debug)]
pub struct Recalled {
    pub vouched: bool,
    /// Objects whose remembered values came (in part) from the record or a status file.
    pub adopted: Vec<ObjectKey>,
    /// Restores held at this start.
    pub held: Vec<ObjectKey>,
    /// Why the merged record could not be written (it is tried again at the next handled
    /// run).
    pub record_error: Option<String>,
}

/// Reads the three sources, merges them, and writes the result into the database (so
/// every later pass reads it from there) and into the record. Holds InPlace Restores in
/// `desired` that nothing proves new. Blocks: run it on a blocking worker.
///
/// An error reading or writing the database is returned, and nothing may run until a
/// later call succeeds: a daemon running on half its memory could repeat a Restore.
pub fn recall(
    state: &StateDb,
    book: &Book,
    desired: &Desired,
    status_files: &BTreeMap<ObjectKey, Status>,
    repository_empty: bool,
    now: DateTime<Utc>,
) -> Result<Recalled, StateError> {
    let rows = state.all_objects()?;
    let mut database: BTreeMap<ObjectKey, ObjectMemory> = BTreeMap::new();
    for (kind, name, memory) in rows {
        if let Some(kind) = Kind::parse(&kind) {
            database.insert(ObjectKey { kind, name }, memory);
        }
    }
    let record = book.load();
    if let Err(e) = &record {
        tracing::error!("{e}; it is not overwritten, and InPlace restores wait");
    }
    let vouched = vouched(&record, !database.is_empty(), repository_empty);
    let record_written = matches!(record, Ok(Some(_)));
    let record = match record {
        Ok(r) => Some(r.unwrap_or_default()),
        Err(_) => None,
    };
    let mut keys: BTreeSet<ObjectKey> = database.keys().cloned().collect();
    keys.extend(status_files.keys().cloned());
    for e in record.iter().flat_map(|r| &r.objects) {
        keys.insert(ObjectKey {
            kind: e.kind,
            name: e.name.clone(),
        });
    }
    for o in desired.objects().filter(|o| o.resource.is_some()) {
        keys.insert(o.key());
    }
    let mut merged_record = HandledRecord::default();
    let mut adopted = Vec::new();
    let mut held = Vec::new();
    for key in keys {
        let in_database = database.get(&key).cloned();
        let from_database = in_database.as_ref().map(Account::from_memory);
        let from_record = record
            .as_ref()
            .and_then(|r| r.get(key.kind, &key.name))
            .map(Account::from_entry);
        let from_status = status_files.get(&key).map(Account::from_status);
        let mut account = merge(&[from_database.clone(), from_record, from_status]);
        let mut memory = in_database.clone().unwrap_or_default();
        memory.last_handled_generation = account.generation.clone();
        memory.last_handled_requested_at = account.requested_at.clone();
        memory.handled_at = account.at;
        memory.held = account.held.clone();
        let resource = desired.get(&key).and_then(|o| o.resource.as_ref());
        if let Some(resource) = resource
            && must_hold(resource, &memory, vouched)
        {
            let h = Held {
                requested_at: desired.get(&key).and_then(|o| o.requested_at.clone()),
                since: now,
            };
            memory.held = Some(h.clone());
            account.held = Some(h);
            held.push(key.clone());
        }
        // Only a different value is worth a write; a different time alone is not.
        let values = |a: &Account| (a.generation.clone(), a.requested_at.clone(), a.held.clone());
        let differs = match &from_database {
            Some(d) => values(d) != values(&account),
            None => account != Account::default(),
        };
        if differs {
            state.adopt_handled(key.kind.as_str(), &key.name, &memory, now)?;
            adopted.push(key.clone());
        }
        merged_record.set(account.to_entry(&key));
    }
    // An unreadable record is never overwritten: it may hold what nothing else does.
    let record_error = match record {
        Some(_) => book
            .replace(merged_record, record_written)
            .err()
            .map(|e| e.to_string()),
        None => Some(format!(
            "the handled record of {} could not be read; it is left as it is",
            book.describe()
        )),
    };
    Ok(Recalled {
        vouched,
        adopted,
        held,
        record_error,
    })
}

/// The statuses in the status files of `desired`'s spec files, by object.
pub fn read_status_files(
    desired: &Desired,
    specs_root: &Path,
    status_dir: Option<&Path>,
) -> BTreeMap<ObjectKey, Status> {
    let mut out = BTreeMap::new();
    for file in desired.files.keys() {
        let path = crate::status::status_path(file, specs_root, status_dir);
        for ((kind, name), status) in super::status_view::read_existing(&path) {
            out.insert(ObjectKey { kind, name }, status);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, h, 0, 0).unwrap()
    }

    fn account(
        generation: Option<&str>,
        requested_at: Option<&str>,
        at: Option<DateTime<Utc>>,
    ) -> Account {
        Account {
            generation: generation.map(String::from),
            requested_at: requested_at.map(String::from),
            at,
            held: None,
        }
    }

    #[test]
    fn any_one_source_is_enough() {
        let only = account(Some("g1"), Some("r1"), Some(t(3)));
        for at in 0..3 {
            let mut sources = vec![None, None, None];
            sources[at] = Some(only.clone());
            assert_eq!(merge(&sources), only, "source {at}");
        }
        assert_eq!(merge(&[None, None, None]), Account::default());
    }

    #[test]
    fn the_newest_value_wins_and_an_unknown_time_is_oldest() {
        let database = account(Some("g1"), Some("r1"), None);
        let record = account(Some("g2"), None, Some(t(3)));
        let status = account(Some("g3"), Some("r3"), Some(t(2)));
        let m = merge(&[Some(database), Some(record), Some(status)]);
        assert_eq!(m.generation.as_deref(), Some("g2"));
        assert_eq!(m.requested_at.as_deref(), Some("r3"), "the only timed one");
        assert_eq!(m.at, Some(t(3)));
        // A tie goes to the earlier source: the database, then the record.
        let m = merge(&[
            Some(account(Some("db"), None, Some(t(3)))),
            Some(account(Some("rec"), None, Some(t(3)))),
        ]);
        assert_eq!(m.generation.as_deref(), Some("db"));
    }

    #[test]
    fn a_hold_stands_until_something_newer_was_handled() {
        let held = Held {
            requested_at: Some("r0".into()),
            since: t(3),
        };
        let record = Account {
            held: Some(held.clone()),
            ..Account::default()
        };
        assert_eq!(
            merge(&[None, Some(record.clone()), None]).held,
            Some(held.clone())
        );
        let older_run = account(Some("g0"), Some("r0"), Some(t(2)));
        assert_eq!(
            merge(&[Some(older_run), Some(record.clone()), None]).held,
            Some(held.clone())
        );
        let newer_run = account(Some("g1"), Some("r1"), Some(t(4)));
        let m = merge(&[Some(newer_run), Some(record), None]);
        assert_eq!(m.held, None);
        assert_eq!(m.generation.as_deref(), Some("g1"));
    }

    fn status(text: &str) -> Status {
        serde_yaml_ng::from_str(text).unwrap()
    }

    #[test]
    fn status_files_say_what_was_handled_and_old_ones_only_with_a_run() {
        let s = status(
            "observedGeneration: g2\nlastHandledGeneration: g1\nlastHandledRequestedAt: r1\nlastRun: {id: x, phase: Succeeded, startTime: '2026-11-25T03:00:00Z'}\n",
        );
        assert_eq!(
            Account::from_status(&s),
            account(Some("g1"), Some("r1"), Some(t(3)))
        );
        // Written before lastHandledGeneration: the observed one, when it ran.
        let old = status("observedGeneration: g1\nlastRun: {id: x, phase: Succeeded}\n");
        assert_eq!(Account::from_status(&old).generation.as_deref(), Some("g1"));
        let never_ran = status("observedGeneration: g1\n");
        assert_eq!(Account::from_status(&never_ran).generation, None);
        let queued =
            status("observedGeneration: g1\nqueued: waiting\nlastRun: {id: x, phase: Succeeded}\n");
        assert_eq!(Account::from_status(&queued).generation, None);
    }

    #[test]
    fn only_an_unvouched_daemon_holds_an_in_place_restore_it_has_no_record_of() {
        let r = |mode: &str| -> Resource {
            let text = format!(
                "apiVersion: holdfast.dev/v1alpha1\nkind: Restore\nmetadata: {{name: back}}\nspec: {{from: {{archive: x-20261125T030000Z}}, mode: {mode}, stop: stack}}\n"
            );
            let report = crate::validate::validate_sources(vec![crate::load::read_str(
                Path::new("s.yaml"),
                &text,
            )]);
            let d = Desired::from_report(&report);
            d.objects().next().unwrap().resource.clone().unwrap()
        };
        let fresh = ObjectMemory::default();
        assert!(must_hold(&r("InPlace"), &fresh, false));
        assert!(!must_hold(&r("InPlace"), &fresh, true));
        assert!(!must_hold(&r("NewVolumes"), &fresh, false));
        let handled = ObjectMemory {
            last_handled_generation: Some("g".into()),
            ..ObjectMemory::default()
        };
        assert!(!must_hold(&r("InPlace"), &handled, false));

        assert!(vouched(&Ok(Some(HandledRecord::default())), false, false));
        assert!(!vouched(&Ok(None), false, false));
        assert!(vouched(&Ok(None), true, false));
        assert!(vouched(&Ok(None), false, true));
    }
}
