//! Housekeeping: what the repository holds and what is done to it besides runs. It owns
//! the in-memory catalog, applies retention and ttl, deletes the archives of removed
//! Archive specs, schedules verifications, and keeps the archive summaries the statuses
//! and metrics show.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::desired::Desired;
use crate::hub::Hub;
use crate::repo::manifest::Verification;
use crate::repo::{Catalog, Entry, Health, Repository};
use crate::spec::{Kind, ObjectKey};
use crate::state::StateDb;

/// One archive's verification: `None` when it could not be read at all.
pub type Verified = (String, Option<Verification>);

pub struct Housekeeping {
    repo: Repository,
    state: Arc<StateDb>,
    hub: Arc<Hub>,
    /// The repository folder, for the cheap fingerprint the resync compares.
    root: PathBuf,
    /// What the repository holds: read whole at start-up and when the resync sees the
    /// listing change, otherwise kept current by what this daemon does to it.
    pub catalog: Catalog,
    /// Archive counts per repository group, for statuses; refreshed after runs and pruning.
    pub archives: BTreeMap<String, crate::status::ArchivesSummary>,
    /// Retention's outlook per policy, from the last pruning.
    pub retention: BTreeMap<String, crate::status::RetentionStatus>,
    /// The retention settings each policy was last pruned with: a change prunes again.
    pruned_with: BTreeMap<String, String>,
    /// When each policy with `verify.schedule` next verifies its archives.
    verify_next: BTreeMap<String, DateTime<Utc>>,
    /// Policies whose scheduled verification is going on.
    verifying: BTreeSet<String>,
    verify_tx: mpsc::UnboundedSender<(String, Vec<Verified>)>,
    /// The repository as the last resync saw it (see [`repository_fingerprint`]).
    repository_seen: Vec<(PathBuf, Option<std::time::SystemTime>)>,
}

impl Housekeeping {
    /// Returns the housekeeping and the receiver of finished verifications.
    pub fn new(
        repo: Repository,
        root: PathBuf,
        state: Arc<StateDb>,
        hub: Arc<Hub>,
    ) -> (Self, mpsc::UnboundedReceiver<(String, Vec<Verified>)>) {
        let (verify_tx, verify_rx) = mpsc::unbounded_channel();
        let housekeeping = Housekeeping {
            repo,
            state,
            hub,
            root,
            catalog: Catalog::default(),
            archives: BTreeMap::new(),
            retention: BTreeMap::new(),
            pruned_with: BTreeMap::new(),
            verify_next: BTreeMap::new(),
            verifying: BTreeSet::new(),
            verify_tx,
            repository_seen: Vec::new(),
        };
        (housekeeping, verify_rx)
    }

    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Reads the whole repository into the catalog, and reconciles the run history with
    /// it: archives on disk the history does not know are adopted.
    pub fn load_catalog(&mut self) -> anyhow::Result<()> {
        self.repository_seen = repository_fingerprint(&self.root);
        let catalog = Catalog::load(&self.repo)?;
        let entries: Vec<Entry> = catalog.entries().cloned().collect();
        for missing in crate::repo::catalog::reconcile_history(&self.state, &entries)? {
            warn!(archive = %missing.id, "the run history records this archive, but it is not in the repository");
        }
        self.catalog = catalog;
        self.refresh_all_archives();
        Ok(())
    }

    /// The periodic resync: reads the repository again if its listing changed (where
    /// `holdfast verify` or `holdfast delete` may have changed what the statuses say).
    /// Returns whether it did.
    pub fn resync(&mut self) -> bool {
        if repository_fingerprint(&self.root) == self.repository_seen {
            return false;
        }
        if let Err(e) = self.load_catalog() {
            error!("{e}");
        }
        true
    }

    /// A run wrote archive `id` of `group`: the one manifest to read.
    pub fn archived(&mut self, group: &str, id: &str) {
        match crate::repo::catalog::read_entry(&self.repo, group, id) {
            Ok(Some(entry)) => self.catalog.insert(entry),
            Ok(None) => warn!(archive = %id, "the run's archive is not in the repository"),
            Err(e) => error!(archive = %id, "reading the new archive: {e}"),
        }
    }

    /// A scheduled verification of `name`'s archives ended.
    pub fn verifications_done(&mut self, name: &str, results: Vec<Verified>) {
        self.verifying.remove(name);
        for (id, verification) in results {
            let ok = verification.as_ref().is_some_and(|v| v.ok);
            self.hub.metrics.verified(name, ok);
            if let Some(v) = verification {
                self.catalog.verified(name, &id, &v);
            }
        }
        self.refresh_archives(name);
    }

    /// Starts the scheduled verifications that are due; returns when the next one is.
    pub fn verify_due(
        &mut self,
        desired: &Desired,
        running: &dyn Fn(&ObjectKey) -> bool,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let mut wanted = BTreeMap::new();
        for object in desired.objects() {
            let Some(crate::spec::Resource::BackupPolicy(policy)) = &object.resource else {
                continue;
            };
            let Some(cron) = policy
                .spec
                .verify
                .as_ref()
                .and_then(|v| v.schedule.as_ref())
            else {
                continue;
            };
            let sample = policy.spec.verify.as_ref().and_then(|v| v.sample);
            match crate::schedule::Schedule::from_cron(
                &object.name,
                cron,
                policy.spec.timezone.as_ref(),
                Duration::ZERO,
            ) {
                Ok(schedule) => {
                    wanted.insert(object.name.clone(), (schedule, sample));
                }
                Err(e) => error!(policy = %object.name, "verify.schedule: {e}"),
            }
        }
        self.verify_next.retain(|name, _| wanted.contains_key(name));
        for (name, (schedule, sample)) in &wanted {
            let due = match self.verify_next.get(name) {
                Some(at) => *at <= now,
                // First seen: the first verification is at the next scheduled time.
                None => {
                    if let Some(next) = schedule.next_nominal_after(now) {
                        self.verify_next.insert(name.clone(), next);
                    }
                    false
                }
            };
            let busy = self.verifying.contains(name)
                || running(&ObjectKey {
                    kind: Kind::BackupPolicy,
                    name: name.clone(),
                });
            if !due || busy {
                continue;
            }
            match schedule.next_nominal_after(now) {
                Some(next) => self.verify_next.insert(name.clone(), next),
                None => self.verify_next.remove(name),
            };
            self.start_verification(name, *sample);
        }
        // A due verification held back by a run is retried when the run ends (that wakes
        // the loop), so only future times count here: a past one would spin the loop.
        self.verify_next
            .values()
            .copied()
            .filter(|at| *at > now)
            .min()
    }

    fn start_verification(&mut self, name: &str, sample: Option<u32>) {
        let tx = self.verify_tx.clone();
        let mine: Vec<&Entry> = self
            .catalog
            .group(name)
            .into_iter()
            .filter(|e| e.kind.as_deref() != Some("Archive"))
            .collect();
        let chosen: Vec<String> = crate::repo::verify::pick(&mine, sample)
            .into_iter()
            .map(|e| e.id.clone())
            .collect();
        if chosen.is_empty() {
            return;
        }
        info!(policy = name, archives = chosen.len(), "verifying archives");
        self.verifying.insert(name.to_string());
        let name = name.to_string();
        let repo = self.repo.clone();
        tokio::task::spawn_blocking(move || {
            let mut results = Vec::new();
            for id in chosen {
                match crate::repo::verify::verify_archive(&repo, &name, &id, |_, _| {}) {
                    Ok(v) => {
                        for problem in &v.problems {
                            error!(policy = %name, archive = %id, "verification failed: {problem}");
                        }
                        results.push((id, Some(v)));
                    }
                    // Deleted by retention meanwhile: nothing was wrong with it.
                    Err(crate::repo::verify::VerifyError::NoManifest { .. }) => {}
                    Err(e) => {
                        error!(policy = %name, archive = %id, "verification failed: {e}");
                        results.push((id, None));
                    }
                }
            }
            // The loop may be gone during shutdown; nothing left to tell.
            let _ = tx.send((name, results));
        });
    }

    /// Applies a policy's retention, if it has one and its spec is valid and not
    /// suspended. Never for a policy with a run in progress.
    pub fn prune(
        &mut self,
        desired: &Desired,
        running: &dyn Fn(&ObjectKey) -> bool,
        name: &str,
        now: DateTime<Utc>,
    ) {
        let key = ObjectKey {
            kind: Kind::BackupPolicy,
            name: name.to_string(),
        };
        if running(&key) {
            return;
        }
        let Some(crate::spec::Resource::BackupPolicy(policy)) =
            desired.get(&key).and_then(|o| o.resource.as_ref())
        else {
            return;
        };
        let Some(rules) = &policy.spec.retention else {
            return;
        };
        if policy.spec.suspend {
            return;
        }
        let tz = crate::repo::prune::zone(&policy.spec);
        let settings = serde_json::to_string(&(rules, &policy.spec.timezone)).unwrap_or_default();
        let entries = self.catalog.group(name);
        let result =
            crate::repo::prune::prune(&self.state, &self.repo, &entries, name, rules, tz, now);
        match result {
            Ok(pruned) => {
                if !pruned.dry_run {
                    for id in &pruned.forgotten {
                        self.catalog.remove(name, id);
                    }
                }
                let mut outlook = crate::status::RetentionStatus {
                    dry_run: pruned.dry_run,
                    ..Default::default()
                };
                if pruned.dry_run {
                    outlook.would_delete = pruned
                        .decisions
                        .iter()
                        .filter(|d| !d.keep)
                        .map(|d| crate::status::ForgetEntry {
                            id: d.id.clone(),
                            reason: d.reasons.join(", "),
                        })
                        .collect();
                }
                // What the pruning after the next scheduled run will forget: the same rules
                // with one more good archive at that time.
                let next = crate::schedule::Schedule::new(name, &policy.spec)
                    .ok()
                    .and_then(|s| s.next_nominal_after(now).map(|n| s.start_time(n)));
                if let Some(next) = next {
                    let entries = self.catalog.group(name);
                    let decisions =
                        crate::repo::prune::decide_with_next(&entries, name, rules, tz, next);
                    outlook.forget_next = decisions
                        .into_iter()
                        .filter(|d| !d.keep && !outlook.would_delete.iter().any(|w| w.id == d.id))
                        .map(|d| crate::status::ForgetEntry {
                            id: d.id,
                            reason: d.reasons.join(", "),
                        })
                        .collect();
                }
                self.retention.insert(name.to_string(), outlook);
                for e in &pruned.errors {
                    error!(policy = name, "{e}");
                }
                if !pruned.forgotten.is_empty() {
                    info!(policy = name, forgotten = ?pruned.forgotten, dry_run = pruned.dry_run, "retention applied");
                    if !pruned.dry_run {
                        for _ in &pruned.forgotten {
                            self.hub.metrics.deleted(name, "retention");
                        }
                    }
                }
                self.pruned_with.insert(name.to_string(), settings);
            }
            Err(e) => error!(policy = name, "applying retention: {e}"),
        }
        self.refresh_archives(name);
    }

    /// Prunes every policy whose retention settings changed since it was last pruned
    /// (at start-up: every policy with retention).
    pub fn prune_changed(
        &mut self,
        desired: &Desired,
        running: &dyn Fn(&ObjectKey) -> bool,
        now: DateTime<Utc>,
    ) {
        let changed: Vec<String> = desired
            .objects()
            .filter_map(|o| match &o.resource {
                Some(crate::spec::Resource::BackupPolicy(p))
                    if p.spec.retention.is_some() && !p.spec.suspend =>
                {
                    let settings = serde_json::to_string(&(&p.spec.retention, &p.spec.timezone))
                        .unwrap_or_default();
                    (self.pruned_with.get(&o.name) != Some(&settings)).then(|| o.name.clone())
                }
                _ => None,
            })
            .collect();
        for name in changed {
            self.prune(desired, running, &name, now);
        }
    }

    /// Deletes the archives an `Archive` spec took (not those of a same-named policy),
    /// through the deletion journal.
    pub fn delete_group(&mut self, group: &str, reason: &str) {
        let doomed: Vec<String> = self
            .catalog
            .group(group)
            .into_iter()
            .filter(|e| e.kind.as_deref() == Some("Archive"))
            .map(|e| e.id.clone())
            .collect();
        for id in doomed {
            info!(archive = %id, reason, "deleting");
            self.delete_archive(group, &id, reason, "spec-removed");
        }
        self.refresh_archives(group);
    }

    /// Deletes one archive through the journal and forgets it.
    fn delete_archive(&mut self, group: &str, id: &str, reason: &str, metric: &'static str) {
        match crate::repo::prune::delete_archive(&self.state, &self.repo, group, id, reason) {
            Ok(Ok(())) => {
                self.catalog.remove(group, id);
                self.hub.metrics.deleted(group, metric);
            }
            Ok(Err(e)) => error!("{e}"),
            Err(e) => error!("{e}"),
        }
    }

    /// Deletes the archives of Archive specs whose `ttl` has passed. Returns when the next
    /// one expires.
    pub fn expire(&mut self, desired: &Desired, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let with_ttl: Vec<(String, std::time::Duration)> = desired
            .objects()
            .filter_map(|o| match &o.resource {
                Some(crate::spec::Resource::Archive(a)) => {
                    a.spec.ttl.map(|t| (o.name.clone(), t.as_duration()))
                }
                _ => None,
            })
            .collect();
        if with_ttl.is_empty() {
            return None;
        }
        let mut next: Option<DateTime<Utc>> = None;
        let mut touched = Vec::new();
        for (name, ttl) in with_ttl {
            let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
            let archives: Vec<(String, DateTime<Utc>)> = self
                .catalog
                .group(&name)
                .into_iter()
                .filter(|e| e.kind.as_deref() == Some("Archive"))
                .map(|e| (e.id.clone(), e.time))
                .collect();
            for (id, time) in archives {
                let expires = time
                    .checked_add_signed(ttl)
                    .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
                if expires <= now {
                    info!(archive = %id, "ttl passed: deleting");
                    self.delete_archive(&name, &id, "ttl passed", "ttl");
                    touched.push(name.clone());
                } else {
                    next = Some(next.map_or(expires, |n| n.min(expires)));
                }
            }
        }
        for name in touched {
            self.refresh_archives(&name);
        }
        next
    }

    /// The archives of the catalog joined with those the run history misses, by group.
    fn with_missing(&self) -> Result<BTreeMap<String, Vec<Entry>>, crate::state::StateError> {
        let mut groups: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for e in self.catalog.entries() {
            groups.entry(e.group.clone()).or_default().push(e.clone());
        }
        for e in crate::repo::catalog::missing(&self.state, self.catalog.entries())? {
            groups.entry(e.group.clone()).or_default().push(e);
        }
        Ok(groups)
    }

    pub fn refresh_archives(&mut self, group: &str) {
        match self.with_missing() {
            Ok(mut groups) => {
                let mine = groups.remove(group).unwrap_or_default();
                let refs: Vec<&Entry> = mine.iter().collect();
                self.archives.insert(group.to_string(), summary(&refs));
            }
            Err(e) => error!("{e}"),
        }
    }

    fn refresh_all_archives(&mut self) {
        match self.with_missing() {
            Ok(groups) => {
                self.archives = groups
                    .iter()
                    .map(|(g, list)| (g.clone(), summary(&list.iter().collect::<Vec<_>>())))
                    .collect();
            }
            Err(e) => error!("{e}"),
        }
    }
}

/// What changes when archives come, go or get verified, without reading any manifest:
/// the modification times of the group folders (an archive added or removed) and of each
/// archive's verification record.
fn repository_fingerprint(root: &std::path::Path) -> Vec<(PathBuf, Option<std::time::SystemTime>)> {
    use crate::repo::layout::RECORD;
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut out = Vec::new();
    let Ok(groups) = std::fs::read_dir(root) else {
        return out;
    };
    for group in groups.flatten() {
        let path = group.path();
        out.push((path.clone(), modified(&path)));
        for archive in std::fs::read_dir(&path).into_iter().flatten().flatten() {
            let record = archive.path().join(RECORD);
            if let Some(t) = modified(&record) {
                out.push((record, Some(t)));
            }
        }
    }
    out.sort();
    out
}

/// Count, newest, oldest and bytes of good archives (Corrupt ones are not counted).
fn summary(entries: &[&Entry]) -> crate::status::ArchivesSummary {
    let good: Vec<&&Entry> = entries
        .iter()
        .filter(|e| matches!(e.health, Health::Good | Health::Partial))
        .collect();
    crate::status::ArchivesSummary {
        corrupt: entries
            .iter()
            .filter(|e| e.health == Health::Corrupt)
            .map(|e| e.id.clone())
            .collect(),
        missing: entries
            .iter()
            .filter(|e| e.health == Health::Missing)
            .map(|e| e.id.clone())
            .collect(),
        count: good.len() as u64,
        newest: good
            .iter()
            .max_by_key(|e| (e.time, &e.id))
            .map(|e| e.id.clone()),
        oldest: good
            .iter()
            .min_by_key(|e| (e.time, &e.id))
            .map(|e| e.id.clone()),
        bytes: good.iter().map(|e| e.bytes).sum(),
    }
}
