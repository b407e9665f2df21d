//! Reading the specs into the desired state: only a view that holds still is taken
//! (see [`tree`]), a view that cannot be taken changes nothing, and archives go with a
//! removed spec only once the removal lasts (see [`removals`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::desired::Desired;
use super::{Controller, removals};
use crate::load::tree;
use crate::spec::Kind;

/// The first and the longest delay before the specs are read again after a read that
/// could not settle (an unreadable root, a tree that kept changing). A file event reads
/// them again sooner.
const SPECS_RETRY_FIRST: Duration = Duration::from_secs(1);
const SPECS_RETRY_MAX: Duration = Duration::from_secs(30);

impl Controller {
    /// The tree's identity and the stamps of its spec files: cheap to take, and different
    /// whenever a reload could give something different.
    pub(super) fn fingerprint(&self) -> (Option<tree::Identity>, Vec<tree::Stamp>) {
        tree::stamps(&self.options.specs)
    }

    /// Reads the specs into the desired state, once they hold still (see [`tree`]). A
    /// read that cannot settle changes nothing: the last good view stays, and the specs
    /// are read again later.
    pub(super) async fn reload(&mut self) {
        let root = self.options.specs.clone();
        let read = tokio::task::spawn_blocking(move || tree::read_stable(&root))
            .await
            .unwrap_or_else(|e| Err(tree::Unsettled::Unreadable(e.to_string())));
        let reading = match read {
            Ok(reading) => reading,
            Err(why) => {
                self.keep_last_view(&why);
                return;
            }
        };
        if self.specs_retry.take().is_some() {
            info!(specs = %self.options.specs.display(), "the specs folder can be read again");
        }
        self.hub.metrics.specs_unreadable(false);
        if self
            .loaded
            .0
            .as_ref()
            .is_some_and(|old| *old != reading.root)
        {
            // What was written into the old tree is not in this one.
            info!(
                specs = %self.options.specs.display(),
                now_at = %reading.root.path.display(),
                "the specs folder was replaced: every status file is written again"
            );
            self.status_cache.clear();
        }
        self.loaded = (Some(reading.root.clone()), reading.stamps());
        for warning in &reading.warnings {
            warn!("{warning}");
        }
        let mut report = crate::validate::validate_sources(reading.sources());
        report.errors.extend(reading.errors);
        report.select_host(&crate::validate::HostView {
            name: self.options.host.clone(),
            labels: self.options.host_labels.clone(),
        });
        for d in report.diagnostics() {
            warn!("{d}");
        }
        let desired = Desired::from_report(&report);
        // An Archive spec with deletionPolicy Delete that is gone (not merely unreadable:
        // a file that fails to parse still names its objects) takes its archives along,
        // once it is still gone a moment later.
        let still_named = |name: &str| {
            desired
                .objects()
                .any(|o| o.kind == Kind::Archive && o.name == name)
                || desired.file_errors.keys().any(|f| {
                    self.last_known.get(f).is_some_and(|objects| {
                        objects
                            .iter()
                            .any(|(k, n)| *k == Kind::Archive && n == name)
                    })
                })
        };
        let gone: std::collections::BTreeSet<String> = self
            .delete_with_spec
            .iter()
            .chain(self.removals.waiting())
            .filter(|n| !still_named(n))
            .cloned()
            .collect();
        let removed = self.confirm_removals(&gone);
        self.delete_with_spec = desired
            .objects()
            .filter_map(|o| match &o.resource {
                Some(crate::spec::Resource::Archive(a))
                    if a.spec.deletion_policy == crate::spec::DeletionPolicy::Delete =>
                {
                    Some(o.name.clone())
                }
                _ => None,
            })
            .collect();
        self.desired = desired;
        self.notifications.configure(&self.desired);
        self.probe_repositories().await;
        for name in removed {
            self.housekeeping
                .delete_group(
                    &name,
                    "its Archive spec (deletionPolicy: Delete) was removed",
                )
                .await;
        }
        for (file, objects) in &self.desired.files {
            if !objects.is_empty() {
                self.last_known.insert(
                    file.clone(),
                    objects.iter().map(|o| (o.kind, o.name.clone())).collect(),
                );
            }
        }
        self.last_known
            .retain(|file, _| self.desired.files.contains_key(file));
        info!(
            files = self.desired.files.len(),
            objects = self.desired.objects().count(),
            "specs loaded"
        );
    }

    /// Of the Delete Archive specs found `gone` in this settled read, those whose
    /// removal lasted (see [`removals`]); the specs are read again to confirm the others.
    fn confirm_removals(&mut self, gone: &std::collections::BTreeSet<String>) -> Vec<String> {
        let verdict = self.removals.judge(gone, self.clock.now());
        for name in &verdict.newly_gone {
            info!(
                archive = %name,
                "its Archive spec (deletionPolicy: Delete) is gone; its archives are deleted if it is still gone in {}",
                crate::logging::human_seconds(removals::CONFIRM.as_secs_f64())
            );
        }
        if let Some(at) = verdict.recheck_at {
            self.reread_soon(at);
        }
        verdict.delete
    }

    /// A read of the specs that could not settle: keep the last good view, and read again
    /// after a growing delay.
    fn keep_last_view(&mut self, why: &tree::Unsettled) {
        let delay = self
            .specs_retry
            .map_or(SPECS_RETRY_FIRST, |d| (d * 2).min(SPECS_RETRY_MAX));
        self.specs_retry = Some(delay);
        warn!(
            specs = %self.options.specs.display(),
            retry_in_seconds = delay.as_secs_f64(),
            "keeping the last good view of the specs, nothing is changed or deleted: {why}"
        );
        self.hub.metrics.specs_unreadable(true);
        let at = self.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
        self.reread_soon(at);
    }

    /// Reads the specs again at `at` at the latest.
    fn reread_soon(&mut self, at: DateTime<Utc>) {
        self.reread_at = Some(self.reread_at.map_or(at, |r| r.min(at)));
    }
}
