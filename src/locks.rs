//! Exclusion between the runs of one process by what they touch: the containers they stop
//! or run commands in, the stacks they stop whole, the volumes and host folders they read
//! or write. A run states all of it at once, resolved, and waits until none of it is held
//! in a conflicting way; the guard it gets releases everything when dropped, so a run that
//! ends, fails, is cancelled or panics lets the others go.
//!
//! Readers share: two backups may read the same volume at once. Stopping a container or a
//! stack, and writing a volume or a folder, is exclusive. A folder conflicts with the
//! folders below and above it. Runs are served in the order they asked: a run that waits
//! for a resource holds back later runs that want it too, so a steady flow of readers
//! never starves a writer. A run takes everything in one step or nothing, so two runs
//! never each hold what the other waits for.
//!
//! Processes are kept apart by the state folder's lock; this is for the runs inside one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Something a run touches.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// A Compose project, stopped whole (exclusive) or with some of its containers
    /// stopped (shared: no one stops it whole meanwhile).
    Stack(String),
    /// A container, by id.
    Container(String),
    /// A named volume.
    Volume(String),
    /// A folder on the host, such as a bind mount's source.
    Folder(PathBuf),
}

impl Resource {
    /// Whether holding one keeps the other from being held: the same resource, or folders
    /// one inside the other.
    fn overlaps(&self, other: &Resource) -> bool {
        match (self, other) {
            (Resource::Folder(a), Resource::Folder(b)) => a.starts_with(b) || b.starts_with(a),
            _ => self == other,
        }
    }
}

/// How a run uses a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Reads it, or runs a command in it while it runs: others may do the same.
    Shared,
    /// Stops it, or writes it: no one else may touch it meanwhile.
    Exclusive,
}

/// What one run claims: each resource once, with the strongest access asked for, and a
/// name for messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claims {
    claims: BTreeMap<Resource, (Access, String)>,
}

impl Claims {
    pub fn new() -> Claims {
        Claims::default()
    }

    /// Adds a claim; `label` names it in messages (a container's name, not its id).
    pub fn add(&mut self, resource: Resource, access: Access, label: &str) {
        let entry = self
            .claims
            .entry(resource)
            .or_insert_with(|| (access, label.to_string()));
        entry.0 = entry.0.max(access);
    }

    pub fn shared(&mut self, resource: Resource, label: &str) {
        self.add(resource, Access::Shared, label);
    }

    pub fn exclusive(&mut self, resource: Resource, label: &str) {
        self.add(resource, Access::Exclusive, label);
    }

    /// A folder, made absolute and without `.`, `..` or a trailing slash, so that the
    /// same folder written two ways is one resource.
    pub fn folder(&mut self, path: &Path, access: Access) {
        let label = path.display().to_string();
        self.add(Resource::Folder(normalize(path)), access, &label);
    }

    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }

    /// Whether holding `self` already covers everything `other` needs.
    pub fn covers(&self, other: &Claims) -> bool {
        other.claims.iter().all(|(resource, (access, _))| {
            self.claims
                .get(resource)
                .is_some_and(|(held, _)| held >= access)
        })
    }

    /// The first of `self`'s claims that `other` keeps from being held, with the name
    /// `self` gives it.
    fn conflict_with(&self, other: &Claims) -> Option<(&Resource, &str)> {
        self.claims.iter().find_map(|(resource, (access, label))| {
            other
                .claims
                .iter()
                .any(|(theirs, (their_access, _))| {
                    resource.overlaps(theirs)
                        && (*access == Access::Exclusive || *their_access == Access::Exclusive)
                })
                .then_some((resource, label.as_str()))
        })
    }
}

impl fmt::Display for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (resource, (access, label)) in &self.claims {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            let what = describe(resource, label);
            match access {
                Access::Shared => write!(f, "{what} (shared)")?,
                Access::Exclusive => write!(f, "{what}")?,
            }
        }
        Ok(())
    }
}

fn describe(resource: &Resource, label: &str) -> String {
    match resource {
        Resource::Stack(_) => format!("stack {label}"),
        Resource::Container(_) => format!("container {label}"),
        Resource::Volume(_) => format!("volume {label}"),
        Resource::Folder(_) => format!("folder {label}"),
    }
}

fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Why a run waits: what it wants, and the run that holds it (or waits for it first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wait {
    /// The resource, named for people: `container web-1`, `volume data`.
    pub resource: String,
    /// The run id of the holder.
    pub holder: String,
    /// The holder waits itself, ahead of this run, rather than holding it.
    pub queued: bool,
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.queued {
            write!(
                f,
                "waiting for {}: run {} waits for it first",
                self.resource, self.holder
            )
        } else {
            write!(
                f,
                "waiting for {}: run {} holds it",
                self.resource, self.holder
            )
        }
    }
}

/// The locks of one process, shared by every run in it.
#[derive(Debug, Default)]
pub struct ResourceLocks {
    table: Mutex<Table>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct Table {
    next_ticket: u64,
    /// Runs holding their claims.
    held: Vec<Entry>,
    /// Runs waiting, in the order they asked.
    queued: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    ticket: u64,
    run: String,
    claims: Claims,
}

impl Table {
    /// What keeps `claims` from being held now: a holder, or a run that asked earlier.
    fn blocker(&self, ticket: Option<u64>, claims: &Claims) -> Option<Wait> {
        let earlier = self
            .queued
            .iter()
            .filter(|e| ticket.is_none_or(|t| e.ticket < t));
        let held = self.held.iter().map(|e| (e, false));
        held.chain(earlier.map(|e| (e, true)))
            .find_map(|(entry, queued)| {
                claims
                    .conflict_with(&entry.claims)
                    .map(|(resource, label)| Wait {
                        resource: describe(resource, label),
                        holder: entry.run.clone(),
                        queued,
                    })
            })
    }
}

impl ResourceLocks {
    pub fn new() -> Arc<ResourceLocks> {
        Arc::new(ResourceLocks::default())
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic elsewhere never leaves the table half changed: every change is one push
        // or one removal.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes every claim at once, waiting (without blocking a thread) until none
    /// conflicts with what other runs hold or asked for earlier. `on_wait` hears each new
    /// reason to wait. Dropping the returned guard, or this future before it is ready,
    /// lets the others go.
    /// [`ResourceLocks::acquire`] for a run: each reason to wait goes to the log (with
    /// the run's span) and to the run's progress.
    pub async fn acquire_for_run(
        self: &Arc<Self>,
        run: &str,
        claims: Claims,
        progress: &dyn crate::progress::Progress,
    ) -> LockGuard {
        self.acquire(run, claims, |wait| {
            tracing::info!(resource = %wait.resource, holder = %wait.holder, "{wait}");
            progress.phase(&wait.to_string());
        })
        .await
    }

    pub async fn acquire(
        self: &Arc<Self>,
        run: &str,
        claims: Claims,
        mut on_wait: impl FnMut(&Wait),
    ) -> LockGuard {
        let since = Instant::now();
        let mut guard: Option<LockGuard> = None;
        let mut last: Option<Wait> = None;
        loop {
            // Registered before looking, so a release between the look and the wait is
            // not missed.
            let changed = self.changed.notified();
            let blocked = {
                let mut table = self.table();
                let ticket = guard.as_ref().map(|g| g.ticket);
                match table.blocker(ticket, &claims) {
                    None => {
                        let entry = match ticket {
                            Some(t) => {
                                let at = table.queued.iter().position(|e| e.ticket == t);
                                table.queued.remove(at.expect("a waiting run is queued"))
                            }
                            None => {
                                table.next_ticket += 1;
                                Entry {
                                    ticket: table.next_ticket,
                                    run: run.to_string(),
                                    claims: claims.clone(),
                                }
                            }
                        };
                        let ticket_was_queued = ticket.is_some();
                        let ticket = entry.ticket;
                        table.held.push(entry);
                        drop(table);
                        let mut guard = guard.take().unwrap_or_else(|| LockGuard {
                            locks: self.clone(),
                            ticket,
                            waited: Duration::ZERO,
                        });
                        if ticket_was_queued {
                            guard.waited = since.elapsed();
                        }
                        return guard;
                    }
                    Some(wait) => {
                        if guard.is_none() {
                            table.next_ticket += 1;
                            let ticket = table.next_ticket;
                            table.queued.push(Entry {
                                ticket,
                                run: run.to_string(),
                                claims: claims.clone(),
                            });
                            guard = Some(LockGuard {
                                locks: self.clone(),
                                ticket,
                                waited: Duration::ZERO,
                            });
                        }
                        wait
                    }
                }
            };
            if last.as_ref() != Some(&blocked) {
                on_wait(&blocked);
                last = Some(blocked);
            }
            changed.await;
        }
    }

    fn release(&self, ticket: u64) {
        {
            let mut table = self.table();
            table.held.retain(|e| e.ticket != ticket);
            table.queued.retain(|e| e.ticket != ticket);
        }
        self.changed.notify_waiters();
    }
}

/// A run's claims, held until dropped.
#[derive(Debug)]
pub struct LockGuard {
    locks: Arc<ResourceLocks>,
    ticket: u64,
    waited: Duration,
}

impl LockGuard {
    /// How long the run waited for its claims: zero when nothing was in the way.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.locks.release(self.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::time::timeout;

    fn claims(list: &[(Resource, Access)]) -> Claims {
        let mut c = Claims::new();
        for (r, a) in list {
            c.add(r.clone(), *a, &format!("{r:?}"));
        }
        c
    }

    fn container(id: &str) -> Resource {
        Resource::Container(id.into())
    }

    fn volume(name: &str) -> Resource {
        Resource::Volume(name.into())
    }

    /// How many runs hold claims, and how many wait.
    fn count(locks: &ResourceLocks) -> (usize, usize) {
        let table = locks.table();
        (table.held.len(), table.queued.len())
    }

    const SOON: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn an_overlapping_run_waits_until_the_first_guard_drops() {
        let locks = ResourceLocks::new();
        let first = locks
            .acquire(
                "a",
                claims(&[
                    (container("c1"), Access::Exclusive),
                    (volume("v"), Access::Shared),
                ]),
                |_| panic!("nothing is held yet"),
            )
            .await;
        assert_eq!(first.waited(), Duration::ZERO);

        let waits = Arc::new(Mutex::new(Vec::new()));
        let acquired = Arc::new(AtomicBool::new(false));
        let second = tokio::spawn({
            let locks = locks.clone();
            let waits = waits.clone();
            let acquired = acquired.clone();
            async move {
                // Sorted differently and with more: still one conflict, on c1.
                let guard = locks
                    .acquire(
                        "b",
                        claims(&[
                            (volume("v"), Access::Shared),
                            (container("c1"), Access::Exclusive),
                            (container("c2"), Access::Exclusive),
                        ]),
                        |w| waits.lock().unwrap().push(w.clone()),
                    )
                    .await;
                acquired.store(true, Ordering::SeqCst);
                guard
            }
        });
        tokio::time::sleep(SOON).await;
        assert!(!acquired.load(Ordering::SeqCst), "b must wait for a");
        let seen = waits.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].holder, "a");
        assert!(!seen[0].queued);
        assert!(seen[0].resource.contains("c1"), "{}", seen[0]);

        drop(first);
        let second = timeout(Duration::from_secs(5), second)
            .await
            .expect("b goes once a let go")
            .unwrap();
        assert!(acquired.load(Ordering::SeqCst));
        assert!(second.waited() >= SOON / 2);
        assert_eq!(count(&locks), (1, 0));
        drop(second);
        assert_eq!(count(&locks), (0, 0));
    }

    #[tokio::test]
    async fn disjoint_runs_and_readers_do_not_wait() {
        let locks = ResourceLocks::new();
        let never = |w: &Wait| panic!("no wait expected: {w}");
        let a = locks
            .acquire(
                "a",
                claims(&[
                    (container("c1"), Access::Exclusive),
                    (volume("v"), Access::Shared),
                ]),
                never,
            )
            .await;
        let b = timeout(
            SOON,
            locks.acquire(
                "b",
                claims(&[
                    (container("c2"), Access::Exclusive),
                    (volume("v"), Access::Shared),
                    (Resource::Folder("/srv/a".into()), Access::Exclusive),
                ]),
                never,
            ),
        )
        .await
        .expect("disjoint claims are granted at once");
        let c = timeout(
            SOON,
            locks.acquire(
                "c",
                claims(&[(Resource::Folder("/srv/b".into()), Access::Exclusive)]),
                never,
            ),
        )
        .await
        .expect("a sibling folder does not overlap");
        assert_eq!(count(&locks), (3, 0));
        drop((a, b, c));
    }

    #[tokio::test]
    async fn writers_exclude_readers_and_nested_folders_overlap() {
        let locks = ResourceLocks::new();
        let reader = locks
            .acquire("backup", claims(&[(volume("v"), Access::Shared)]), |_| {})
            .await;
        let writer = timeout(
            SOON,
            locks.acquire(
                "restore",
                claims(&[(volume("v"), Access::Exclusive)]),
                |_| {},
            ),
        )
        .await;
        assert!(writer.is_err(), "a writer waits for a reader");
        drop(reader);

        let mut outer = Claims::new();
        outer.folder(Path::new("/srv/app/"), Access::Shared);
        let outer = locks.acquire("outer", outer, |_| {}).await;
        let mut inner = Claims::new();
        inner.folder(Path::new("/srv/app/./data/../data"), Access::Exclusive);
        let blocked = timeout(SOON, locks.acquire("inner", inner, |_| {})).await;
        assert!(blocked.is_err(), "a folder inside a held one waits");
        drop(outer);
        assert_eq!(count(&locks), (0, 0), "a cancelled wait leaves nothing");
    }

    #[tokio::test]
    async fn waiting_runs_are_served_in_order() {
        let locks = ResourceLocks::new();
        let reader = locks
            .acquire("r1", claims(&[(volume("v"), Access::Shared)]), |_| {})
            .await;
        let writer = tokio::spawn({
            let locks = locks.clone();
            async move {
                locks
                    .acquire("w", claims(&[(volume("v"), Access::Exclusive)]), |_| {})
                    .await
            }
        });
        tokio::time::sleep(SOON).await;
        // A second reader would share with r1, but w asked first.
        let waits = Arc::new(Mutex::new(Vec::new()));
        let late = tokio::spawn({
            let locks = locks.clone();
            let waits = waits.clone();
            async move {
                locks
                    .acquire("r2", claims(&[(volume("v"), Access::Shared)]), |w| {
                        waits.lock().unwrap().push(w.clone())
                    })
                    .await
            }
        });
        tokio::time::sleep(SOON).await;
        assert!(!late.is_finished());
        assert_eq!(waits.lock().unwrap()[0].holder, "w");
        assert!(waits.lock().unwrap()[0].queued);
        drop(reader);
        let w = timeout(Duration::from_secs(5), writer)
            .await
            .unwrap()
            .unwrap();
        assert!(!late.is_finished(), "r2 waits for w's turn to end");
        drop(w);
        let r2 = timeout(Duration::from_secs(5), late)
            .await
            .unwrap()
            .unwrap();
        drop(r2);
        assert_eq!(count(&locks), (0, 0));
    }

    #[test]
    fn claims_merge_to_the_strongest_access_and_cover() {
        let mut held = Claims::new();
        held.shared(container("c1"), "web");
        held.exclusive(container("c1"), "web");
        held.shared(volume("v"), "v");
        let mut wanted = Claims::new();
        wanted.shared(container("c1"), "web");
        assert!(held.covers(&wanted));
        wanted.exclusive(volume("v"), "v");
        assert!(!held.covers(&wanted));
        assert_eq!(held.to_string(), "container web, volume v (shared)");
    }
}
