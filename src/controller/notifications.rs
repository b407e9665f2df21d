//! The daemon's notifications: which notifiers cover which object, what each run and each
//! pass tells them (decided by [`crate::notify::conditions`]), the messages, and the
//! memory of what was told, kept in the state database.
//!
//! Nothing here waits for a service: messages go to the [`Outbox`], whose queues send
//! them off the reconcile loop. A notifier whose URL cannot be read or parsed sends
//! nothing and says why in its status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use super::desired::Desired;
use crate::executor::RunOutcome;
use crate::hub::Hub;
use crate::logging::format::{human_bytes, human_seconds};
use crate::notify::conditions::{self, Decision, Memory, Notice, Subscriber, Told};
use crate::notify::deliver::{Delivered, Outbox, Report, Retry};
use crate::notify::message::{Message, Occasion, RunFacts, first_error_lines};
use crate::notify::target::Target;
use crate::spec::common::Phase;
use crate::spec::notifier::{NotifyEvent, UrlSource, default_events};
use crate::spec::{Kind, ObjectKey, Resource};
use crate::state::StateDb;
use crate::state::notices::NoticeRow;
use crate::status::ObjectStatus;

/// One notifier, as configured from the specs.
struct Configured {
    subscriber: Subscriber,
    /// Its parsed URL, or why it cannot be used.
    target: Result<Arc<Target>, String>,
    covers: Coverage,
}

/// Which objects a notifier covers.
enum Coverage {
    /// A Notifier object: those its selector matches (all without one), and the policies
    /// that name it in `notify: [{ref}]`.
    Selected {
        match_labels: Option<BTreeMap<String, String>>,
        refs: BTreeSet<String>,
    },
    /// A url entry of a policy's own `notify:` list: that policy alone.
    Only(ObjectKey),
}

/// The notifiers, shared with the hook that pings heartbeats when a run starts.
#[derive(Default)]
struct Config {
    notifiers: BTreeMap<String, Configured>,
    /// Each valid object's labels; an invalid object has none known.
    labels: BTreeMap<ObjectKey, BTreeMap<String, String>>,
}

impl Config {
    fn covers(&self, notifier: &str, object: &ObjectKey) -> bool {
        let Some(n) = self.notifiers.get(notifier) else {
            return false;
        };
        match &n.covers {
            Coverage::Only(key) => key == object,
            Coverage::Selected { match_labels, refs } => {
                if object.kind == Kind::BackupPolicy && refs.contains(&object.name) {
                    return true;
                }
                match (match_labels, self.labels.get(object)) {
                    (None, _) => true,
                    (Some(wanted), Some(labels)) => {
                        wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
                    }
                    (Some(_), None) => false,
                }
            }
        }
    }

    /// The usable notifiers covering `object`.
    fn covering<'a>(
        &'a self,
        object: &'a ObjectKey,
    ) -> impl Iterator<Item = (&'a str, &'a Configured, Arc<Target>)> + 'a {
        self.notifiers.iter().filter_map(move |(name, n)| {
            let target = n.target.as_ref().ok()?.clone();
            self.covers(name, object)
                .then_some((name.as_str(), n, target))
        })
    }
}

/// The notifications of one daemon.
pub struct Notifications {
    config: Arc<Mutex<Config>>,
    outbox: Arc<Outbox>,
    state: Arc<StateDb>,
    /// What each notifier was told; `None` until read from the state database.
    memory: Option<Memory>,
    host: String,
    external_url: Option<String>,
}

impl Notifications {
    pub fn new(
        state: Arc<StateDb>,
        hub: Arc<Hub>,
        host: String,
        external_url: Option<String>,
    ) -> Notifications {
        let metrics_hub = hub.clone();
        let report: Report = Arc::new(
            move |notifier: &str, message: &Message, result: &Delivered| {
                metrics_hub.metrics.notified(notifier, result.label());
                let event = message.event_name();
                match result {
                    Delivered::Sent { attempts } => {
                        info!(notifier, event, attempts, "notification sent")
                    }
                    Delivered::Failed { attempts, error } => {
                        warn!(notifier, event, attempts, "notification not sent: {error}")
                    }
                    Delivered::Dropped => warn!(
                        notifier,
                        event, "notification dropped: the notifier's queue is full"
                    ),
                }
            },
        );
        let config = Arc::new(Mutex::new(Config::default()));
        let outbox = Arc::new(Outbox::new(Retry::default(), report));
        let n = Notifications {
            config: config.clone(),
            outbox: outbox.clone(),
            state,
            memory: None,
            host: host.clone(),
            external_url: external_url.clone(),
        };
        // Heartbeats hear of a run when it has its id, from wherever the run is.
        let runtime = tokio::runtime::Handle::current();
        hub.on_run_started(Arc::new(move |kind: Kind, name: &str, run_id: &str| {
            if kind != Kind::BackupPolicy {
                return;
            }
            let object = ObjectKey {
                kind,
                name: name.to_string(),
            };
            let config = config.lock().unwrap_or_else(|e| e.into_inner());
            let now = Utc::now();
            for (notifier, n, target) in config.covering(&object) {
                if !n.subscriber.heartbeat {
                    continue;
                }
                let message = started(&object, run_id, &host, now, external_url.as_deref());
                let _guard = runtime.enter();
                outbox.post(notifier, target, message);
            }
        }));
        n
    }

    /// Takes the notifiers from the specs: each Notifier, and each url entry of a policy's
    /// `notify:` list (named `<policy>.notify[<index>]`). Reads each URL now.
    pub fn configure(&mut self, desired: &Desired) {
        let mut notifiers = BTreeMap::new();
        let mut refs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut labels = BTreeMap::new();
        for object in desired.objects() {
            let Some(resource) = &object.resource else {
                continue;
            };
            labels.insert(object.key(), resource.metadata().labels.clone());
            let Resource::BackupPolicy(policy) = resource else {
                continue;
            };
            for (i, entry) in policy.spec.notify.iter().enumerate() {
                if let Some(name) = &entry.reference {
                    refs.entry(name.clone())
                        .or_default()
                        .insert(object.name.clone());
                }
                if let Some(url) = &entry.url {
                    let name = format!("{}.notify[{i}]", object.name);
                    let events = entry
                        .listed_events()
                        .cloned()
                        .unwrap_or_else(default_events);
                    let configured =
                        configured(&name, url, events, None, Coverage::Only(object.key()));
                    notifiers.insert(name, configured);
                }
            }
        }
        for object in desired.objects() {
            let Some(Resource::Notifier(notifier)) = &object.resource else {
                continue;
            };
            let spec = &notifier.spec;
            let covers = Coverage::Selected {
                match_labels: spec.selector.as_ref().map(|s| s.match_labels.clone()),
                refs: refs.remove(&object.name).unwrap_or_default(),
            };
            let repeat = spec
                .repeat
                .as_ref()
                .and_then(|r| chrono::Duration::from_std(r.as_duration()).ok());
            let configured =
                configured(&object.name, &spec.url, spec.events.clone(), repeat, covers);
            notifiers.insert(object.name.clone(), configured);
        }
        let mut config = self.config.lock().unwrap_or_else(|e| e.into_inner());
        for (name, n) in &notifiers {
            let was = config.notifiers.get(name).map(|o| o.target.is_ok());
            match &n.target {
                Err(why) if was != Some(false) => {
                    warn!(notifier = %name, "the notifier cannot send: {why}")
                }
                _ => {}
            }
        }
        *config = Config { notifiers, labels };
    }

    /// Each Notifier object's readiness for its status: the URL it sends to (secrets
    /// replaced), or why it cannot send.
    pub fn readiness(&self) -> BTreeMap<String, Result<String, String>> {
        let config = self.config.lock().unwrap_or_else(|e| e.into_inner());
        config
            .notifiers
            .iter()
            .filter(|(_, n)| matches!(n.covers, Coverage::Selected { .. }))
            .map(|(name, n)| {
                let readiness = match &n.target {
                    Ok(t) => Ok(t.redacted().to_string()),
                    Err(e) => Err(e.clone()),
                };
                (name.clone(), readiness)
            })
            .collect()
    }

    /// What was told, read from the state database on first use.
    async fn memory(&mut self) -> &mut Memory {
        if self.memory.is_none() {
            let state = self.state.clone();
            let rows = tokio::task::spawn_blocking(move || state.notices())
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            let mut memory = Memory::new();
            match rows {
                Ok(rows) => {
                    for row in rows {
                        if let Some((notice, told)) = from_row(&row) {
                            memory
                                .entry(row.notifier.clone())
                                .or_default()
                                .insert(notice, told);
                        }
                    }
                }
                // Without it a lasting problem may be told once more; never fewer.
                Err(e) => error!("reading what notifiers were told: {e}"),
            }
            self.memory = Some(memory);
        }
        self.memory.get_or_insert_with(Memory::new)
    }

    /// A run ended: heartbeats hear of it, and the notifiers covering its object are told
    /// what [`conditions::after_run`] decides.
    pub async fn run_finished(&mut self, object: &ObjectKey, outcome: &RunOutcome) {
        if outcome.dry_run
            || !matches!(
                object.kind,
                Kind::BackupPolicy | Kind::Archive | Kind::Restore | Kind::ContainerSchedule
            )
        {
            return;
        }
        let now = outcome.completion_time;
        let (subscribers, targets): (Vec<Subscriber>, BTreeMap<String, Arc<Target>>) = {
            let config = self.config.lock().unwrap_or_else(|e| e.into_inner());
            let covering: Vec<_> = config.covering(object).collect();
            for (name, n, target) in &covering {
                if n.subscriber.heartbeat && object.kind == Kind::BackupPolicy {
                    let event = Occasion::Event(phase_event(outcome.phase));
                    let message = self.run_message(object, outcome, event);
                    self.outbox.post(name, target.clone(), message);
                }
            }
            (
                covering
                    .iter()
                    .map(|(_, n, _)| n.subscriber.clone())
                    .collect(),
                covering
                    .iter()
                    .map(|(name, _, t)| (name.to_string(), t.clone()))
                    .collect(),
            )
        };
        let refs: Vec<&Subscriber> = subscribers.iter().collect();
        let memory = self.memory().await.clone();
        let decision = conditions::after_run(object, outcome.phase, &refs, &memory, now);
        for (notifier, notice) in &decision.send {
            let message = self.run_message(object, outcome, Occasion::Event(notice.event));
            if let Some(target) = targets.get(notifier) {
                self.outbox.post(notifier, target.clone(), message);
            }
        }
        self.remember(&decision).await;
    }

    /// One pass: finds the lasting problems (Overdue, VerifyFailed, SpecInvalid,
    /// RepositoryUnreachable), tells what [`conditions::after_pass`] decides, and returns
    /// when the loop must wake for the next one to become due.
    pub async fn pass(&mut self, pass: &Pass<'_>) -> Option<DateTime<Utc>> {
        let found = problems(pass);
        let active: BTreeSet<Notice> = found.keys().cloned().collect();
        let (subscribers, targets) = {
            let config = self.config.lock().unwrap_or_else(|e| e.into_inner());
            let subscribers: Vec<Subscriber> = config
                .notifiers
                .values()
                .filter(|n| n.target.is_ok())
                .map(|n| n.subscriber.clone())
                .collect();
            let targets: BTreeMap<String, Arc<Target>> = config
                .notifiers
                .iter()
                .filter_map(|(name, n)| Some((name.clone(), n.target.as_ref().ok()?.clone())))
                .collect();
            (subscribers, targets)
        };
        let memory = self.memory().await.clone();
        let mut decision = {
            let config = self.config.lock().unwrap_or_else(|e| e.into_inner());
            let covers = |notifier: &str, object: &ObjectKey| config.covers(notifier, object);
            conditions::after_pass(&active, &subscribers, &covers, &memory, pass.now)
        };
        // A notifier removed from the specs forgets what it was told; one that cannot send
        // for now keeps it. Without any notifier (specs not read yet, or all removed) the
        // memory stays as it is.
        {
            let config = self.config.lock().unwrap_or_else(|e| e.into_inner());
            let configured = !config.notifiers.is_empty();
            for (notifier, told) in memory.iter().filter(|_| configured) {
                if !config.notifiers.contains_key(notifier) {
                    let gone = told.keys().map(|n| (notifier.clone(), n.clone()));
                    decision.forget.extend(gone);
                }
            }
        }
        for (notifier, notice) in &decision.send {
            let (Some(target), Some(text)) = (targets.get(notifier), found.get(notice)) else {
                continue;
            };
            let message = self.problem_message(notice, text, pass.now);
            self.outbox.post(notifier, target.clone(), message);
        }
        self.remember(&decision).await;
        let overdue_next = found_overdue_next(pass);
        [decision.wake, overdue_next].into_iter().flatten().min()
    }

    /// Gives queued notifications up to `limit` to go out, at shutdown.
    pub async fn flush(&self, limit: std::time::Duration) {
        self.outbox.flush(limit).await;
    }

    /// Applies a decision to the memory and records it in the state database.
    async fn remember(&mut self, decision: &Decision) {
        if decision.remember.is_empty() && decision.forget.is_empty() {
            return;
        }
        decision.apply(self.memory().await);
        let keep: Vec<NoticeRow> = decision
            .remember
            .iter()
            .map(|(n, notice, told)| to_row(n, notice, Some(told)))
            .collect();
        let forget: Vec<NoticeRow> = decision
            .forget
            .iter()
            .map(|(n, notice)| to_row(n, notice, None))
            .collect();
        let state = self.state.clone();
        let written = tokio::task::spawn_blocking(move || state.change_notices(&keep, &forget))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = written {
            error!("recording what notifiers were told: {e}");
        }
    }

    fn link(&self, object: &ObjectKey) -> Option<String> {
        link(self.external_url.as_deref(), object)
    }

    fn run_message(&self, object: &ObjectKey, outcome: &RunOutcome, occasion: Occasion) -> Message {
        let duration = (outcome.completion_time - outcome.start_time)
            .to_std()
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let downtime = outcome.downtime.values().copied().reduce(f64::max);
        let host = &self.host;
        let recovered = occasion == Occasion::Event(NotifyEvent::Recovered);
        let verb = match (recovered, outcome.phase) {
            (true, _) => "recovered",
            (false, Phase::Succeeded) => "succeeded",
            (false, Phase::PartiallyFailed) => "partially failed",
            (false, _) => "failed",
        };
        let text = run_text(object.kind, outcome, recovered, duration);
        Message {
            occasion,
            object: Some(object.clone()),
            host: host.clone(),
            time: outcome.completion_time,
            title: format!("{object} {verb} on {host}"),
            text,
            run: Some(RunFacts {
                run_id: outcome.run_id.clone(),
                phase: outcome.phase,
                start_time: outcome.start_time,
                duration_seconds: duration,
                source_bytes: outcome.source_bytes,
                stored_bytes: outcome.bytes,
                downtime_seconds: downtime,
                archive_id: outcome.archive_id.clone().filter(|_| outcome.committed),
                repository: Some(outcome.repository.clone()),
            }),
            errors: first_error_lines(&outcome.errors),
            link: self.link(object),
        }
    }

    fn problem_message(&self, notice: &Notice, text: &str, now: DateTime<Utc>) -> Message {
        let host = &self.host;
        let object = &notice.object;
        let title = match notice.event {
            NotifyEvent::Overdue => format!("{object} is overdue on {host}"),
            NotifyEvent::VerifyFailed => {
                format!("an archive of {object} is corrupt on {host}")
            }
            NotifyEvent::SpecInvalid => format!("{object} is invalid on {host}"),
            NotifyEvent::RepositoryUnreachable => {
                format!("{object} cannot be reached from {host}")
            }
            other => format!("{object}: {} on {host}", other.as_str()),
        };
        Message {
            occasion: Occasion::Event(notice.event),
            object: Some(object.clone()),
            host: host.clone(),
            time: now,
            title,
            text: text.to_string(),
            run: None,
            errors: Vec::new(),
            link: self.link(object),
        }
    }
}

/// What a run message says happened, in a sentence or two.
fn run_text(kind: Kind, outcome: &RunOutcome, recovered: bool, duration: f64) -> String {
    let took = human_seconds(duration);
    let again = if recovered {
        " again after a failed one"
    } else {
        ""
    };
    let see = "see the errors below and the run's log";
    match (kind, outcome.phase) {
        (Kind::Restore, Phase::Succeeded) => format!("The restore succeeded{again} in {took}."),
        (Kind::Restore, Phase::PartiallyFailed) => {
            format!("The restore finished, but part of it failed; {see}.")
        }
        (Kind::Restore, _) => format!("The restore failed; {see}."),
        (Kind::ContainerSchedule, Phase::Succeeded) => format!(
            "The action succeeded{again} on {} container{} in {took}.",
            outcome.artifacts,
            if outcome.artifacts == 1 { "" } else { "s" }
        ),
        (Kind::ContainerSchedule, Phase::PartiallyFailed) => {
            format!("The action was taken on some containers, not on others; {see}.")
        }
        (Kind::ContainerSchedule, _) => format!("The action was not taken; {see}."),
        (_, Phase::Succeeded) => format!(
            "The run succeeded{again}: {} read, {} stored in {took}.",
            human_bytes(outcome.source_bytes),
            human_bytes(outcome.bytes),
        ),
        (_, Phase::PartiallyFailed) => format!("The run finished, but part of it failed; {see}."),
        (_, _) if outcome.committed => {
            format!("The run failed after writing its archive; {see}.")
        }
        (_, _) => format!("The run failed and wrote no archive; {see}."),
    }
}

/// What one reconcile pass saw, for the pass notices.
pub struct Pass<'a> {
    pub desired: &'a Desired,
    pub statuses: &'a [(std::path::PathBuf, ObjectStatus)],
    pub memory: &'a BTreeMap<ObjectKey, crate::state::ObjectMemory>,
    /// Each scheduled policy's longest gap between runs, in seconds.
    pub intervals: &'a BTreeMap<ObjectKey, f64>,
    pub archives: &'a BTreeMap<String, crate::status::ArchivesSummary>,
    pub probes: &'a super::runner::Probes,
    pub now: DateTime<Utc>,
}

/// The lasting problems seen in a pass, each with the text of its message.
fn problems(pass: &Pass<'_>) -> BTreeMap<Notice, String> {
    let mut found = BTreeMap::new();
    let notice = |object: ObjectKey, event, subject: &str| Notice {
        object,
        event,
        subject: subject.to_string(),
    };
    for (_, object) in pass.statuses {
        let key = ObjectKey {
            kind: object.kind,
            name: object.name.clone(),
        };
        let stalled = object
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == crate::status::STALLED && c.is_true());
        if let Some(stalled) = stalled {
            let text = format!(
                "The spec is invalid, so holdfast does not act on it: {}",
                crate::status::redact(&stalled.message)
            );
            found.insert(notice(key, NotifyEvent::SpecInvalid, ""), text);
        }
    }
    for (name, probe) in pass.probes {
        if let Err(why) = &probe.result {
            let key = ObjectKey {
                kind: Kind::Repository,
                name: name.clone(),
            };
            let text = format!("The repository cannot be used, so backups to it fail: {why}");
            found.insert(notice(key, NotifyEvent::RepositoryUnreachable, ""), text);
        }
    }
    for (group, summary) in pass.archives {
        let Some(key) = owner(pass.desired, group) else {
            continue;
        };
        for id in &summary.corrupt {
            let text = format!(
                "Archive {id} no longer matches its manifest: it cannot be trusted for a restore. Take a new backup; `holdfast verify {id}` says what is wrong."
            );
            found.insert(notice(key.clone(), NotifyEvent::VerifyFailed, id), text);
        }
    }
    for (key, due, since) in overdue(pass) {
        if due <= pass.now {
            let text = match since {
                Some(last) => format!(
                    "No successful backup since {} ({} ago), more than 1.5 times the schedule's interval.",
                    last.format("%Y-%m-%d %H:%M UTC"),
                    human_seconds((pass.now - last).num_seconds().max(0) as f64)
                ),
                None => "No successful backup yet, and 1.5 times the schedule's interval has passed since holdfast first saw the policy.".to_string(),
            };
            found.insert(notice(key, NotifyEvent::Overdue, ""), text);
        }
    }
    found
}

/// When the next policy not yet overdue becomes so.
fn found_overdue_next(pass: &Pass<'_>) -> Option<DateTime<Utc>> {
    overdue(pass)
        .into_iter()
        .map(|(_, due, _)| due)
        .filter(|due| *due > pass.now)
        .min()
}

/// Each scheduled, unsuspended, valid policy: when it is overdue, and its last success.
fn overdue(pass: &Pass<'_>) -> Vec<(ObjectKey, DateTime<Utc>, Option<DateTime<Utc>>)> {
    let last_success: BTreeMap<ObjectKey, Option<DateTime<Utc>>> = pass
        .statuses
        .iter()
        .map(|(_, o)| {
            let key = ObjectKey {
                kind: o.kind,
                name: o.name.clone(),
            };
            (key, o.status.last_successful_time)
        })
        .collect();
    let mut out = Vec::new();
    for object in pass.desired.objects() {
        let Some(Resource::BackupPolicy(policy)) = &object.resource else {
            continue;
        };
        if policy.spec.suspend {
            continue;
        }
        let key = object.key();
        let (Some(interval), Some(first_seen)) = (
            pass.intervals.get(&key),
            pass.memory.get(&key).and_then(|m| m.first_seen),
        ) else {
            continue;
        };
        let since = last_success.get(&key).copied().flatten();
        out.push((
            key,
            conditions::overdue_at(since, first_seen, *interval),
            since,
        ));
    }
    out
}

/// The object an archive group belongs to: the policy of that name, else the Archive.
fn owner(desired: &Desired, group: &str) -> Option<ObjectKey> {
    [Kind::BackupPolicy, Kind::Archive]
        .into_iter()
        .map(|kind| ObjectKey {
            kind,
            name: group.to_string(),
        })
        .find(|key| desired.get(key).is_some_and(|o| o.resource.is_some()))
}

fn configured(
    name: &str,
    url: &UrlSource,
    events: Vec<NotifyEvent>,
    repeat: Option<chrono::Duration>,
    covers: Coverage,
) -> Configured {
    let target = url
        .read()
        .map_err(|e| format!("reading the URL from {}: {e}", url.describe()))
        .and_then(|text| {
            Target::parse(&text).map_err(|e| format!("the URL from {} {e}", url.describe()))
        })
        .map(Arc::new);
    let heartbeat = target.as_ref().is_ok_and(|t| t.is_heartbeat());
    Configured {
        subscriber: Subscriber {
            name: name.to_string(),
            events,
            repeat,
            heartbeat,
        },
        target,
        covers,
    }
}

fn phase_event(phase: Phase) -> NotifyEvent {
    match phase {
        Phase::Succeeded => NotifyEvent::Succeeded,
        Phase::PartiallyFailed => NotifyEvent::PartiallyFailed,
        _ => NotifyEvent::Failed,
    }
}

/// A heartbeat's start message.
fn started(
    object: &ObjectKey,
    run_id: &str,
    host: &str,
    now: DateTime<Utc>,
    external_url: Option<&str>,
) -> Message {
    Message {
        occasion: Occasion::Started,
        object: Some(object.clone()),
        host: host.to_string(),
        time: now,
        title: format!("{object} started on {host}"),
        text: "A run started.".to_string(),
        run: Some(RunFacts {
            run_id: run_id.to_string(),
            phase: Phase::Running,
            start_time: now,
            duration_seconds: 0.0,
            source_bytes: 0,
            stored_bytes: 0,
            downtime_seconds: None,
            archive_id: None,
            repository: None,
        }),
        errors: Vec::new(),
        link: link(external_url, object),
    }
}

/// The object's page in the API under `--external-url`.
fn link(external_url: Option<&str>, object: &ObjectKey) -> Option<String> {
    let base = external_url?.trim_end_matches('/');
    let collection = match object.kind {
        Kind::BackupPolicy => "policies",
        Kind::Archive => "archives",
        Kind::Restore => "restores",
        Kind::Repository => "repositories",
        Kind::Notifier => "notifiers",
        Kind::ContainerSchedule => "containerschedules",
    };
    Some(format!("{base}/api/v1/{collection}/{}", object.name))
}

fn to_row(notifier: &str, notice: &Notice, told: Option<&Told>) -> NoticeRow {
    NoticeRow {
        notifier: notifier.to_string(),
        kind: notice.object.kind.as_str().to_string(),
        name: notice.object.name.clone(),
        event: notice.event.as_str().to_string(),
        subject: notice.subject.clone(),
        since: told.map_or(DateTime::<Utc>::UNIX_EPOCH, |t| t.since),
        last_sent: told.and_then(|t| t.last_sent),
    }
}

fn from_row(row: &NoticeRow) -> Option<(Notice, Told)> {
    let notice = Notice {
        object: ObjectKey {
            kind: Kind::parse(&row.kind)?,
            name: row.name.clone(),
        },
        event: NotifyEvent::parse(&row.event)?,
        subject: row.subject.clone(),
    };
    let told = Told {
        since: row.since,
        last_sent: row.last_sent,
    };
    Some((notice, told))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::read_str;
    use crate::validate::validate_sources;
    use std::path::Path;

    fn desired(text: &str) -> Desired {
        Desired::from_report(&validate_sources(vec![read_str(Path::new("s.yaml"), text)]))
    }

    fn key(kind: Kind, name: &str) -> ObjectKey {
        ObjectKey {
            kind,
            name: name.into(),
        }
    }

    const SPECS: &str = "apiVersion: holdfast.dev/v1alpha1
kind: Notifier
metadata: {name: prod}
spec:
  url: generic+https://hooks.example/prod
  selector: {matchLabels: {tier: prod}}
---
apiVersion: holdfast.dev/v1alpha1
kind: Notifier
metadata: {name: everyone}
spec:
  url: generic+https://hooks.example/all
  events: [Failed]
  repeat: 1h
---
apiVersion: holdfast.dev/v1alpha1
kind: Notifier
metadata: {name: unset}
spec:
  url: {fromEnv: HOLDFAST_TEST_URL_NOBODY_SETS}
---
apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata: {name: web, labels: {tier: prod}}
spec:
  schedule: '@daily'
  targets: {volumes: [v]}
---
apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata: {name: lab, labels: {tier: lab}}
spec:
  schedule: '@daily'
  targets: {volumes: [v]}
  notify:
    - {ref: prod}
    - {url: 'generic+https://hooks.example/lab', events: [Succeeded]}
---
apiVersion: holdfast.dev/v1alpha1
kind: BackupPolicy
metadata: {name: other, labels: {tier: lab}}
spec:
  schedule: '@daily'
  targets: {volumes: [v]}
";

    #[tokio::test]
    async fn notifiers_cover_by_selector_by_ref_and_by_their_own_policy() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(StateDb::open(dir.path()).unwrap());
        let mut n = Notifications::new(state, Arc::new(Hub::new()), "nas".into(), None);
        n.configure(&desired(SPECS));
        let config = n.config.lock().unwrap();
        let covers = |notifier: &str, object: ObjectKey| config.covers(notifier, &object);
        let policy = |name: &str| key(Kind::BackupPolicy, name);
        // A selector covers the labelled; a ref adds a policy; no selector covers all.
        assert!(covers("prod", policy("web")));
        assert!(covers("prod", policy("lab")), "named in lab's notify");
        assert!(!covers("prod", policy("other")));
        assert!(
            !covers("prod", key(Kind::Notifier, "everyone")),
            "no labels match"
        );
        for object in [policy("web"), policy("other"), key(Kind::Notifier, "prod")] {
            assert!(covers("everyone", object));
        }
        // An object without known labels (an invalid one) is covered only without selector.
        assert!(covers("everyone", policy("typo")));
        assert!(!covers("prod", policy("typo")));
        // A url entry covers its policy alone, with its own events.
        assert!(covers("lab.notify[1]", policy("lab")));
        assert!(!covers("lab.notify[1]", policy("web")));
        let inline = &config.notifiers["lab.notify[1]"].subscriber;
        assert_eq!(inline.events, [NotifyEvent::Succeeded]);
        let everyone = &config.notifiers["everyone"].subscriber;
        assert_eq!(everyone.repeat, Some(chrono::Duration::hours(1)));
        drop(config);
        // A URL that cannot be read sends nothing and says why, naming where it looked.
        let readiness = n.readiness();
        assert_eq!(
            readiness["prod"],
            Ok("generic+https://hooks.example/prod".to_string())
        );
        let why = readiness["unset"].as_ref().unwrap_err();
        assert!(why.contains("HOLDFAST_TEST_URL_NOBODY_SETS"), "{why}");
        assert!(
            !readiness.contains_key("lab.notify[1]"),
            "only Notifier objects have a status"
        );
    }

    fn outcome(phase: Phase, committed: bool) -> RunOutcome {
        let t = Utc::now();
        RunOutcome {
            run_id: "web-20261207T030000.000Z".into(),
            archive_id: committed.then(|| "web-20261207T030000Z".into()),
            phase,
            dry_run: false,
            start_time: t,
            completion_time: t,
            bytes: 2 << 20,
            source_bytes: 5 << 20,
            artifacts: 1,
            downtime: Default::default(),
            errors: vec![],
            warnings: vec![],
            committed,
            plan: None,
            verified: None,
            repository: "default".into(),
            copies: Vec::new(),
        }
    }

    #[test]
    fn a_run_message_says_what_a_backup_or_a_restore_did() {
        let backup = |phase, committed, recovered| {
            run_text(
                Kind::BackupPolicy,
                &outcome(phase, committed),
                recovered,
                4.5,
            )
        };
        assert_eq!(
            backup(Phase::Succeeded, true, true),
            "The run succeeded again after a failed one: 5.0 MiB read, 2.0 MiB stored in 4.5s."
        );
        assert!(
            backup(Phase::Failed, false, false).starts_with("The run failed and wrote no archive")
        );
        assert!(
            backup(Phase::Failed, true, false)
                .starts_with("The run failed after writing its archive")
        );
        let restore = |phase| run_text(Kind::Restore, &outcome(phase, false), false, 4.5);
        assert_eq!(restore(Phase::Succeeded), "The restore succeeded in 4.5s.");
        assert!(
            restore(Phase::Failed).starts_with("The restore failed;"),
            "no archive is written by a restore"
        );
    }

    #[test]
    fn links_point_at_the_objects_api_page() {
        let object = key(Kind::BackupPolicy, "web");
        assert_eq!(
            link(Some("https://backups.example/"), &object).as_deref(),
            Some("https://backups.example/api/v1/policies/web")
        );
        assert_eq!(link(None, &object), None);
    }

    #[test]
    fn an_action_is_told_in_its_own_words() {
        let outcome = |phase, artifacts| RunOutcome {
            run_id: "r".into(),
            archive_id: None,
            phase,
            dry_run: false,
            start_time: Utc::now(),
            completion_time: Utc::now(),
            bytes: 0,
            source_bytes: 0,
            artifacts,
            downtime: Default::default(),
            errors: vec![],
            warnings: vec![],
            committed: false,
            plan: None,
            verified: None,
            repository: String::new(),
            copies: vec![],
        };
        let text = |phase, n| run_text(Kind::ContainerSchedule, &outcome(phase, n), false, 2.0);
        assert_eq!(
            text(Phase::Succeeded, 2),
            "The action succeeded on 2 containers in 2.0s."
        );
        assert_eq!(
            text(Phase::Failed, 0),
            "The action was not taken; see the errors below and the run's log."
        );
    }
}
