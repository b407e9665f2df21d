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

use super::clock::Clock;
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
    /// When the ttl next deletes an archive, per Archive with a `ttl`: what [`expire`]
    /// will act on, so the status shows the real time.
    ///
    /// [`expire`]: Housekeeping::expire
    pub expiry: BTreeMap<String, DateTime<Utc>>,
    /// The summaries say "newest" and "future-dated" as of this clock's now.
    clock: Arc<dyn Clock>,
    /// The retention settings each policy was last pruned with: a change prunes again.
    pruned_with: BTreeMap<String, String>,
    /// When each policy with `verify.schedule` next verifies its archives.
    verify_next: BTreeMap<String, DateTime<Utc>>,
    /// Policies whose scheduled verification is going on.
    verifying: BTreeSet<String>,
    verify_tx: mpsc::UnboundedSender<(String, Vec<Verified>)>,
    /// The repository as the last resync saw it (see [`repository_fingerprint`]).
    repository_seen: Vec<(PathBuf, Option<std::time::SystemTime>)>,
    /// The catalog version last handed to the API, and the load it came from.
    published: Option<(u64, u64)>,
    loads: u64,
}

impl Housekeeping {
    /// Returns the housekeeping and the receiver of finished verifications.
    pub fn new(
        repo: Repository,
        root: PathBuf,
        state: Arc<StateDb>,
        hub: Arc<Hub>,
        clock: Arc<dyn Clock>,
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
            expiry: BTreeMap::new(),
            clock,
            pruned_with: BTreeMap::new(),
            verify_next: BTreeMap::new(),
            verifying: BTreeSet::new(),
            verify_tx,
            repository_seen: Vec::new(),
            published: None,
            loads: 0,
        };
        (housekeeping, verify_rx)
    }

    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Hands the catalog to the API when it changed since it last did.
    pub fn publish_catalog(&mut self) {
        let now = (self.loads, self.catalog.version());
        if self.published != Some(now) {
            self.hub
                .publish_catalog(self.catalog.entries().cloned().collect());
            self.published = Some(now);
        }
    }

    /// Reads the whole repository into the catalog, and reconciles the run history with
    /// it: archives on disk the history does not know are adopted.
    pub async fn load_catalog(&mut self) -> anyhow::Result<()> {
        let (repo, state, root) = (self.repo.clone(), self.state.clone(), self.root.clone());
        let (seen, catalog) = blocking(move || {
            let seen = repository_fingerprint(&root);
            let catalog = Catalog::load(&repo)?;
            let entries: Vec<Entry> = catalog.entries().cloned().collect();
            for missing in crate::repo::catalog::reconcile_history(&state, &entries)? {
                warn!(archive = %missing.id, "the run history records this archive, but it is not in the repository");
            }
            anyhow::Ok((seen, catalog))
        })
        .await??;
        self.repository_seen = seen;
        self.catalog = catalog;
        self.loads += 1;
        self.refresh_all_archives().await;
        Ok(())
    }

    /// The periodic resync: reads the repository again if its listing changed (where
    /// `holdfast verify` or `holdfast delete` may have changed what the statuses say).
    /// Returns whether it did.
    pub async fn resync(&mut self) -> bool {
        let root = self.root.clone();
        let seen = blocking(move || repository_fingerprint(&root)).await;
        if seen.is_ok_and(|seen| seen == self.repository_seen) {
            return false;
        }
        if let Err(e) = self.load_catalog().await {
            error!("{e}");
        }
        true
    }

    /// A run wrote archive `id` of `group`: the one manifest to read.
    pub async fn archived(&mut self, group: &str, id: &str) {
        let (repo, g, i) = (self.repo.clone(), group.to_string(), id.to_string());
        match blocking(move || crate::repo::catalog::read_entry(&repo, &g, &i)).await {
            Ok(Ok(Some(entry))) => self.catalog.insert(entry),
            Ok(Ok(None)) => warn!(archive = %id, "the run's archive is not in the repository"),
            Ok(Err(e)) => error!(archive = %id, "reading the new archive: {e}"),
            Err(e) => error!(archive = %id, "reading the new archive: {e}"),
        }
    }

    /// A scheduled verification of `name`'s archives ended.
    pub async fn verifications_done(&mut self, name: &str, results: Vec<Verified>) {
        self.verifying.remove(name);
        for (id, verification) in results {
            let ok = verification.as_ref().is_some_and(|v| v.ok);
            self.hub.metrics.verified(name, ok);
            if let Some(v) = verification {
                self.catalog.verified(name, &id, &v);
            }
        }
        self.refresh_archives(name).await;
    }

    /// Starts the scheduled verifications that are due; returns when the next one is.
    pub fn verify_due(
        &mut self,
        desired: &Desired,
        running: &Running<'_>,
        named: &dyn Fn(&str) -> Option<Repository>,
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
            // Where its runs write: the controller's own repository, or a named one.
            let into = policy.spec.output.repositories().into_iter().next();
            match crate::schedule::Schedule::from_cron(
                &object.name,
                cron,
                policy.spec.timezone.as_ref(),
                Duration::ZERO,
            ) {
                Ok(schedule) => {
                    wanted.insert(object.name.clone(), (schedule, sample, into));
                }
                Err(e) => error!(policy = %object.name, "verify.schedule: {e}"),
            }
        }
        self.verify_next.retain(|name, _| wanted.contains_key(name));
        for (name, (schedule, sample, into)) in &wanted {
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
            match into.as_deref() {
                None | Some(crate::spec::repository::DEFAULT_REPOSITORY) => {
                    self.start_verification(name, *sample)
                }
                Some(repository) => match named(repository) {
                    Some(repo) => self.start_named_verification(name, *sample, repo),
                    None => warn!(
                        policy = %name,
                        repository,
                        "verify.schedule: the repository is not open; nothing verified"
                    ),
                },
            }
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
            let results = verify_each(&repo, &name, chosen);
            // The loop may be gone during shutdown; nothing left to tell.
            let _ = tx.send((name, results));
        });
    }

    /// A scheduled verification of `name`'s archives in the named repository `repo`,
    /// whose archives the controller's catalog does not hold: they are read from there.
    /// A restic repository's archives are checked by restic, reading a sample of their
    /// data.
    fn start_named_verification(&mut self, name: &str, sample: Option<u32>, repo: Repository) {
        let tx = self.verify_tx.clone();
        info!(
            policy = name,
            repository = repo.name(),
            "verifying archives"
        );
        self.verifying.insert(name.to_string());
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let entries: Vec<Entry> = match repo.archives(&name) {
                Ok(ids) => ids
                    .iter()
                    .filter_map(|id| crate::repo::catalog::read_entry(&repo, &name, id).ok()?)
                    .filter(|e| e.kind.as_deref() != Some("Archive"))
                    .collect(),
                Err(e) => {
                    error!(policy = %name, repository = repo.name(), "verification: {e}");
                    Vec::new()
                }
            };
            let refs: Vec<&Entry> = entries.iter().collect();
            let chosen = crate::repo::verify::pick(&refs, sample)
                .into_iter()
                .map(|e| e.id.clone())
                .collect();
            let results = verify_each(&repo, &name, chosen);
            let _ = tx.send((name, results));
        });
    }

    /// Applies a policy's retention, if it has one and its spec is valid and not
    /// suspended. Never for a policy with a run in progress.
    pub async fn prune(
        &mut self,
        desired: &Desired,
        running: &Running<'_>,
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
        let entries: Vec<Entry> = self.catalog.group(name).into_iter().cloned().collect();
        let (state, repo, group, kept_rules) = (
            self.state.clone(),
            self.repo.clone(),
            name.to_string(),
            rules.clone(),
        );
        // Deletions are slow IO: on a blocking worker.
        let result = blocking(move || {
            let refs: Vec<&Entry> = entries.iter().collect();
            crate::repo::prune::prune(&state, &repo, &refs, &group, &kept_rules, tz, now)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
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
                    info!(policy = name, archives = %pruned.forgotten.join(", "), dry_run = pruned.dry_run, "retention applied");
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
        self.refresh_archives(name).await;
    }

    /// Prunes every policy whose retention settings changed since it was last pruned
    /// (at start-up: every policy with retention).
    pub async fn prune_changed(
        &mut self,
        desired: &Desired,
        running: &Running<'_>,
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
            self.prune(desired, running, &name, now).await;
        }
    }

    /// Deletes the archives an `Archive` spec took (not those of a same-named policy),
    /// through the deletion journal.
    pub async fn delete_group(&mut self, group: &str, reason: &str) {
        let doomed: Vec<String> = self
            .catalog
            .group(group)
            .into_iter()
            .filter(|e| e.kind.as_deref() == Some("Archive"))
            .map(|e| e.id.clone())
            .collect();
        for id in doomed {
            info!(archive = %id, reason, "deleting");
            self.delete_archive(group, &id, reason, "spec-removed")
                .await;
        }
        self.refresh_archives(group).await;
    }

    /// Deletes one archive through the journal and forgets it.
    async fn delete_archive(&mut self, group: &str, id: &str, reason: &str, metric: &'static str) {
        let (state, repo) = (self.state.clone(), self.repo.clone());
        let (g, i, r) = (group.to_string(), id.to_string(), reason.to_string());
        let result =
            blocking(move || crate::repo::prune::delete_archive(&state, &repo, &g, &i, &r)).await;
        match result {
            Ok(Ok(Ok(()))) => {
                self.catalog.remove(group, id);
                self.hub.metrics.deleted(group, metric);
            }
            Ok(Ok(Err(e))) => error!("{e}"),
            Ok(Err(e)) => error!("{e}"),
            Err(e) => error!("deleting {id}: {e}"),
        }
    }

    /// Deletes the archives of Archive specs whose `ttl` has passed. Returns when the next
    /// one expires.
    pub async fn expire(&mut self, desired: &Desired, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let with_ttl: Vec<(String, std::time::Duration)> = desired
            .objects()
            .filter_map(|o| match &o.resource {
                Some(crate::spec::Resource::Archive(a)) => {
                    a.spec.ttl.map(|t| (o.name.clone(), t.as_duration()))
                }
                _ => None,
            })
            .collect();
        self.expiry.clear();
        if with_ttl.is_empty() {
            return None;
        }
        let mut next: Option<DateTime<Utc>> = None;
        let mut touched = Vec::new();
        for (name, ttl) in with_ttl {
            let archives: Vec<(String, DateTime<Utc>)> = self
                .catalog
                .group(&name)
                .into_iter()
                .filter(|e| e.kind.as_deref() == Some("Archive"))
                .map(|e| (e.id.clone(), e.time))
                .collect();
            for (id, time) in archives {
                let expires = expires_at(time, ttl);
                if expires <= now {
                    info!(archive = %id, "ttl passed: deleting");
                    self.delete_archive(&name, &id, "ttl passed", "ttl").await;
                    touched.push(name.clone());
                } else {
                    next = Some(next.map_or(expires, |n| n.min(expires)));
                    let soonest = self.expiry.entry(name.clone()).or_insert(expires);
                    *soonest = (*soonest).min(expires);
                }
            }
        }
        for name in touched {
            self.refresh_archives(&name).await;
        }
        next
    }

    /// Summaries naming archives dated in the future whose time has come are made again,
    /// so `newest` moves to them once they are no longer ahead of the clock.
    pub async fn refresh_future_dated(&mut self, now: DateTime<Utc>) {
        let due: Vec<String> = self
            .archives
            .iter()
            .filter(|(group, summary)| {
                !summary.future_dated.is_empty()
                    && self
                        .catalog
                        .group(group)
                        .iter()
                        .any(|e| summary.future_dated.contains(&e.id) && e.time <= now)
            })
            .map(|(group, _)| group.clone())
            .collect();
        for group in due {
            self.refresh_archives(&group).await;
        }
    }

    /// The archives the run history records but the catalog lacks (Missing), by group.
    async fn missing(&self) -> Result<BTreeMap<String, Vec<Entry>>, String> {
        let state = self.state.clone();
        let recorded =
            blocking(move || state.recorded_archives(crate::spec::repository::DEFAULT_REPOSITORY))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        let mut groups: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        for e in crate::repo::catalog::missing_from(recorded, self.catalog.entries()) {
            groups.entry(e.group.clone()).or_default().push(e);
        }
        Ok(groups)
    }

    pub async fn refresh_archives(&mut self, group: &str) {
        match self.missing().await {
            Ok(mut missing) => {
                let gone = missing.remove(group).unwrap_or_default();
                let mut mine = self.catalog.group(group);
                mine.extend(gone.iter());
                let summary = summary(&mine, self.clock.now());
                self.archives.insert(group.to_string(), summary);
            }
            Err(e) => error!("{e}"),
        }
    }

    async fn refresh_all_archives(&mut self) {
        match self.missing().await {
            Ok(mut missing) => {
                let now = self.clock.now();
                let mut groups: BTreeSet<String> =
                    self.catalog.groups().map(String::from).collect();
                groups.extend(missing.keys().cloned());
                self.archives = groups
                    .into_iter()
                    .map(|g| {
                        let gone = missing.remove(&g).unwrap_or_default();
                        let mut mine = self.catalog.group(&g);
                        mine.extend(gone.iter());
                        let summary = summary(&mine, now);
                        (g, summary)
                    })
                    .collect();
            }
            Err(e) => error!("{e}"),
        }
    }
}

/// Which objects have a run going: retention and verification leave them alone.
pub type Running<'a> = dyn Fn(&ObjectKey) -> bool + Sync + 'a;

/// Runs blocking IO (disk, network, SQLite) on a blocking worker, off the loop's thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    tokio::task::spawn_blocking(work).await
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
    // Dot folders hold the host's own records (the lock), not archives.
    for group in groups
        .flatten()
        .filter(|g| !g.file_name().to_string_lossy().starts_with('.'))
    {
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

/// When an archive taken at `time` expires under `ttl`: what [`Housekeeping::expire`]
/// deletes by, and what the status shows.
fn expires_at(time: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(ttl)
        .ok()
        .and_then(|ttl| time.checked_add_signed(ttl))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Count, newest, oldest and bytes of good archives (Corrupt ones are not counted).
/// "Newest" is the newest not dated after `now`, as for retention: an archive from a
/// host whose clock was ahead is listed as future-dated instead.
fn summary(entries: &[&Entry], now: DateTime<Utc>) -> crate::status::ArchivesSummary {
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
            .filter(|e| e.time <= now)
            .max_by_key(|e| (e.time, &e.id))
            .map(|e| e.id.clone()),
        future_dated: good
            .iter()
            .filter(|e| e.time > now)
            .map(|e| e.id.clone())
            .collect(),
        oldest: good
            .iter()
            .min_by_key(|e| (e.time, &e.id))
            .map(|e| e.id.clone()),
        bytes: good.iter().map(|e| e.bytes).sum(),
    }
}

/// Verifies the archives `ids` of `group` in `repo` as the schedule does (a restic
/// archive reading a sample of its data), logging what fails. Blocks.
fn verify_each(repo: &Repository, group: &str, ids: Vec<String>) -> Vec<Verified> {
    let mut results = Vec::new();
    for id in ids {
        let read =
            crate::repo::verify::ReadData::Sample(crate::repo::verify::SCHEDULED_SAMPLE_PERCENT);
        match crate::repo::verify::verify_archive(repo, group, &id, read, |_, _| {}) {
            Ok(v) => {
                for problem in &v.problems {
                    error!(policy = %group, repository = repo.name(), archive = %id, "verification failed: {problem}");
                }
                results.push((id, Some(v)));
            }
            // Deleted by retention meanwhile: nothing was wrong with it.
            Err(crate::repo::verify::VerifyError::NoManifest { .. }) => {}
            Err(e) => {
                error!(policy = %group, repository = repo.name(), archive = %id, "verification failed: {e}");
                results.push((id, None));
            }
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn entry(id: &str, day: u32, health: Health) -> Entry {
        Entry {
            id: id.into(),
            group: "web".into(),
            kind: Some("BackupPolicy".into()),
            policy: Some("web".into()),
            host: String::new(),
            time: Utc.with_ymd_and_hms(2026, 12, day, 3, 0, 0).unwrap(),
            bytes: 10,
            added_bytes: None,
            dedup_ratio: None,
            phase: None,
            health,
            problems: Vec::new(),
            verified: None,
            path: PathBuf::new(),
            repository: crate::spec::repository::DEFAULT_REPOSITORY.to_string(),
        }
    }

    #[test]
    fn newest_is_the_newest_not_after_now_and_future_ones_are_flagged() {
        let entries = [
            entry("web-1", 1, Health::Good),
            entry("web-2", 2, Health::Good),
            entry("web-3", 3, Health::Corrupt),
            entry("web-future", 28, Health::Good),
        ];
        let refs: Vec<&Entry> = entries.iter().collect();
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 3, 0, 0).unwrap();
        let s = summary(&refs, now);
        assert_eq!(s.newest.as_deref(), Some("web-2"));
        assert_eq!(s.oldest.as_deref(), Some("web-1"));
        assert_eq!(s.future_dated, ["web-future"]);
        assert_eq!(s.count, 3, "a future-dated archive is still one");
        assert_eq!(s.corrupt, ["web-3"]);

        // Once its time has come it is the newest, and no longer flagged.
        let later = Utc.with_ymd_and_hms(2026, 12, 28, 3, 0, 0).unwrap();
        let s = summary(&refs, later);
        assert_eq!(s.newest.as_deref(), Some("web-future"));
        assert!(s.future_dated.is_empty());

        // Only future ones: no newest at all.
        let s = summary(&refs[3..], now);
        assert_eq!(s.newest, None);
        assert_eq!(s.future_dated, ["web-future"]);
    }

    #[test]
    fn an_archive_expires_its_ttl_after_its_time() {
        let time = Utc.with_ymd_and_hms(2026, 12, 7, 2, 0, 0).unwrap();
        assert_eq!(
            expires_at(time, Duration::from_secs(3600)),
            Utc.with_ymd_and_hms(2026, 12, 7, 3, 0, 0).unwrap()
        );
        assert_eq!(
            expires_at(time, Duration::from_secs(u64::MAX)),
            DateTime::<Utc>::MAX_UTC
        );
    }
}
