//! Status files: what the controller observed about each object, written beside its spec.
//!
//! This module is data, rendering and the atomic writer only; the reconciler decides the
//! values. The pieces:
//!
//! - [`Status`] and its parts, with [`set_condition`] following the kstatus rules: `Ready`
//!   is always present, `Reconciling` and `Stalled` only while true.
//! - [`apply_state`]: the conditions for an object's state, so the reconciler stays thin.
//! - [`repository_readiness`]: what a Repository's `Ready` says (valid, reachable).
//! - [`generation`]: the stable hash of a spec behind `observedGeneration`.
//! - [`status_path`], [`render`], [`write_if_changed`], [`remove`]: the file itself.
//! - [`redact`]: the last line of defence for safety rule 5 (no secrets in status files).
//!
//! Times are written in whole seconds (`2026-11-25T03:00:00Z`): status is for people and
//! tools polling it, and sub-second noise would only make files churn. Schedule times are
//! also written in the policy's time zone ([`local_time`]), and durations in milliseconds
//! at most ([`round_seconds`]).

mod file;
mod generation;
mod redact;
mod repository;
pub mod restored;
mod state;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::spec::Kind;
use crate::spec::common::Phase;

pub use file::{HEADER, Home, remove, render, status_path, write_if_changed};
pub use generation::generation;
pub use redact::{REDACTED, is_secret_key, redact, redact_with};
pub use repository::{RepositoryReadiness, repository_readiness};
pub use state::{ObjectState, apply_state};

/// The condition every object carries: whether its last outcome is what was asked for.
pub const READY: &str = "Ready";
/// Present while work is in progress (a run), absent otherwise.
pub const RECONCILING: &str = "Reconciling";
/// Present while the controller cannot make progress without someone editing the spec.
pub const STALLED: &str = "Stalled";

/// kstatus-style condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `"True"` or `"False"`: strings, as in Kubernetes, so tools written for it read ours.
    pub status: String,
    pub reason: String,
    pub message: String,
    #[serde(with = "rfc3339")]
    #[schemars(with = "DateTime<Utc>")]
    pub last_transition_time: DateTime<Utc>,
}

impl Condition {
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// What the controller observed about one object. Every field is optional so that files
/// stay short: a field is written only when it says something.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The [`generation`] of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339::option"
    )]
    #[schemars(with = "Option<DateTime<Utc>>")]
    /// The schedule time of the last scheduled (or caught-up) run. A requested run is not
    /// one: it shows in `lastRun` only.
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// `lastScheduleTime` on the wall clock of the policy's `timezone`, with its offset
    /// (`2026-12-04T02:00:00+01:00`); only for a policy whose zone is not UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time_local: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339::option"
    )]
    #[schemars(with = "Option<DateTime<Utc>>")]
    pub next_schedule_time: Option<DateTime<Utc>>,
    /// `nextScheduleTime` in the policy's `timezone`, as `lastScheduleTimeLocal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time_local: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339::option"
    )]
    #[schemars(with = "Option<DateTime<Utc>>")]
    pub last_successful_time: Option<DateTime<Utc>>,
    /// The `holdfast.dev/requested-at` value already acted on, so it runs once, not per tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_requested_at: Option<String>,
    /// For Archive and Restore: the generation last taken, which runs once. Read back at
    /// start-up, with the state folder and the repository's handled record, so a lost
    /// state folder does not run it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_generation: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339::option"
    )]
    #[schemars(with = "Option<DateTime<Utc>>")]
    /// A Repository's last probe (a small record written, read back and deleted).
    pub last_validated: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archives: Option<ArchivesSummary>,
    /// For an Archive with a `ttl`: when the ttl deletes its archive (the soonest, when it
    /// has several from earlier generations).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339::option"
    )]
    #[schemars(with = "Option<DateTime<Utc>>")]
    pub expires_at: Option<DateTime<Utc>>,
    /// What retention will forget: after the next run, or (with `dryRun`) what it would
    /// have deleted already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionStatus>,
    /// Why a due run waits, e.g. "waiting for policy x to release stack nextcloud".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<String>,
    /// Validation errors, already formatted as `file:line:col: Kind/name: field: message`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// For a Restore: what its last run put back (volumes and where, dumps and their row
    /// counts, recipe files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<restored::RestoreReport>,
}

impl Status {
    /// A copy with [`redact`] applied to every free-text field (errors, condition messages,
    /// the last run's message, `queued`). [`render`] writes only redacted copies; anything
    /// else that shows a status to people (the API) should too.
    pub fn redacted(&self) -> Status {
        let mut out = self.clone();
        for condition in &mut out.conditions {
            condition.message = redact(&condition.message);
        }
        for error in &mut out.errors {
            *error = redact(error);
        }
        if let Some(run) = &mut out.last_run {
            run.message = run.message.as_deref().map(redact);
            for warning in &mut run.warnings {
                *warning = redact(warning);
            }
        }
        out.queued = out.queued.as_deref().map(redact);
        out
    }

    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// Retention's outlook for a policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionStatus {
    /// `retention.dryRun` is set: nothing is deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// With `dryRun`: what retention would have deleted by now, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub would_delete: Vec<ForgetEntry>,
    /// What the retention after the next scheduled run will forget, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forget_next: Vec<ForgetEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ForgetEntry {
    pub id: String,
    pub reason: String,
}

/// The most recent run of the object, finished or not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    pub id: String,
    pub phase: Phase,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339::option"
    )]
    #[schemars(with = "Option<DateTime<Utc>>")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339::option"
    )]
    #[schemars(with = "Option<DateTime<Utc>>")]
    pub completion_time: Option<DateTime<Utc>>,
    /// Bytes read from the sources (uncompressed file data and dumps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_bytes: Option<u64>,
    /// Bytes written to the repository (compressed artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<u64>,
    /// How long the stacks were stopped, summed over stacks, in milliseconds at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_seconds: Option<f64>,
    /// The archive the run produced, when it produced one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_id: Option<String>,
    /// What went wrong, or a one-line summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What the run could not do that did not fail it, e.g. a recipe without its compose
    /// file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The repository the run wrote (or a restore read), when not `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The copies of the run's archive to the other repositories, each with its outcome.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<crate::state::CopyRecord>,
}

/// The complete archives of the object in the repository (partial ones never count).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchivesSummary {
    pub count: u64,
    /// Archive id of the newest archive not dated after now, e.g.
    /// `nextcloud-nightly-20261125T030000Z`: an id rather than a time because it is what
    /// `holdfast restore` takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<String>,
    /// Archive id of the oldest archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest: Option<String>,
    /// Total size of their artifacts.
    pub bytes: u64,
    /// Archives whose files no longer match their manifest: never counted above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrupt: Vec<String>,
    /// Archives the run history records but the repository no longer has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Archives dated after now (written by a host whose clock was ahead): counted above,
    /// but never named `newest`, as retention does not take them for the newest either.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub future_dated: Vec<String>,
}

/// `time` on the wall clock of `zone`, in whole seconds with its offset
/// (`2026-12-04T02:00:00+01:00`); `None` in UTC, where the UTC field says it all.
pub fn local_time(time: DateTime<Utc>, zone: Tz) -> Option<String> {
    (zone != Tz::UTC).then(|| {
        time.with_timezone(&zone)
            .to_rfc3339_opts(SecondsFormat::Secs, false)
    })
}

pub use crate::logging::round_seconds;

/// One object's status, as it goes into its file.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectStatus {
    pub kind: Kind,
    pub name: String,
    pub status: Status,
}

/// Sets a condition the kstatus way. `Ready` is always kept; `Reconciling` and `Stalled`
/// exist only while true, so setting them false removes them. `lastTransitionTime` moves to
/// `now` (in whole seconds) only when the status flips or the condition appears; a new
/// reason or message alone keeps it, so an unchanged outcome does not rewrite the file.
/// Conditions are kept in a fixed order (`Ready`, `Reconciling`, `Stalled`, then others by
/// name) so the file does not depend on the order of calls.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) {
    if !status && (type_ == RECONCILING || type_ == STALLED) {
        remove_condition(conditions, type_);
        return;
    }
    let status = if status { "True" } else { "False" };
    let now = now.trunc_subsecs(0);
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if existing.status != status {
            existing.status = status.to_string();
            existing.last_transition_time = now;
        }
        existing.reason = reason.to_string();
        existing.message = message.to_string();
        return;
    }
    let condition = Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time: now,
    };
    let at = conditions
        .iter()
        .position(|c| order_key(&c.type_) > order_key(type_))
        .unwrap_or(conditions.len());
    conditions.insert(at, condition);
}

/// Removes a condition if present.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

fn order_key(type_: &str) -> (u8, &str) {
    match type_ {
        READY => (0, ""),
        RECONCILING => (1, ""),
        STALLED => (2, ""),
        other => (3, other),
    }
}

/// RFC 3339 in whole seconds with a `Z`, for every time in a status file.
mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }

    pub mod option {
        use super::*;

        // serde calls this only for `Some`, because of `skip_serializing_if`; `None` is
        // still handled so the module is correct on its own.
        pub fn serialize<S: Serializer>(
            time: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match time {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|text| {
                    DateTime::parse_from_rfc3339(&text)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(serde::de::Error::custom)
                })
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 3, 0, 0).unwrap()
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let mut c = Vec::new();
        set_condition(&mut c, READY, true, "Scheduled", "no run yet", t0());
        let later = t0() + Duration::hours(1);
        set_condition(
            &mut c,
            READY,
            true,
            "Succeeded",
            "the last run succeeded",
            later,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, t0());
        assert_eq!(c[0].reason, "Succeeded");
        assert_eq!(c[0].message, "the last run succeeded");

        set_condition(&mut c, READY, false, "Failed", "boom", later);
        assert_eq!(c[0].status, "False");
        assert_eq!(c[0].last_transition_time, later);
    }

    #[test]
    fn transition_time_is_whole_seconds() {
        let mut c = Vec::new();
        let now = t0() + Duration::milliseconds(1500);
        set_condition(&mut c, READY, true, "Scheduled", "", now);
        assert_eq!(c[0].last_transition_time, t0() + Duration::seconds(1));
    }

    #[test]
    fn reconciling_and_stalled_exist_only_while_true() {
        let mut c = Vec::new();
        set_condition(&mut c, STALLED, false, "InvalidSpec", "", t0());
        assert!(c.is_empty());
        set_condition(&mut c, STALLED, true, "InvalidSpec", "bad", t0());
        set_condition(&mut c, RECONCILING, true, "Running", "run 1", t0());
        set_condition(&mut c, READY, false, "InvalidSpec", "bad", t0());
        let types: Vec<&str> = c.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, RECONCILING, STALLED], "fixed order");
        set_condition(&mut c, RECONCILING, false, "Running", "", t0());
        set_condition(&mut c, STALLED, false, "", "", t0());
        let types: Vec<&str> = c.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY]);
        remove_condition(&mut c, READY);
        assert!(c.is_empty());
    }

    #[test]
    fn redacted_covers_every_free_text_field() {
        let status = Status {
            conditions: vec![Condition {
                type_: READY.into(),
                status: "False".into(),
                reason: "Failed".into(),
                message: "pg_dump: PGPASSWORD=hunter2 rejected".into(),
                last_transition_time: t0(),
            }],
            last_run: Some(LastRun {
                id: "r1".into(),
                phase: Phase::Failed,
                start_time: None,
                completion_time: None,
                source_bytes: None,
                stored_bytes: None,
                downtime_seconds: None,
                archive_id: None,
                message: Some("token: abc123".into()),
                warnings: vec!["recipe of db: MYSQL_PWD=hunter2 left".into()],
                repository: None,
                copies: Vec::new(),
            }),
            queued: Some("API_KEY=xyz".into()),
            errors: vec!["secret: s3cr3t".into()],
            ..Status::default()
        };
        let text = format!("{:?}", status.redacted());
        for secret in ["hunter2", "abc123", "xyz", "s3cr3t"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn seconds_are_rounded_to_milliseconds() {
        assert_eq!(round_seconds(3.2964814049999998), 3.296);
        assert_eq!(round_seconds(0.0004), 0.0);
        assert_eq!(round_seconds(41.5), 41.5);
        let run = LastRun {
            id: "r".into(),
            phase: Phase::Succeeded,
            start_time: None,
            completion_time: None,
            source_bytes: None,
            stored_bytes: None,
            downtime_seconds: Some(round_seconds(3.2964814049999998)),
            archive_id: None,
            message: None,
            warnings: Vec::new(),
            repository: None,
            copies: Vec::new(),
        };
        let text = serde_yaml_ng::to_string(&run).unwrap();
        assert!(text.contains("downtimeSeconds: 3.296\n"), "{text}");
    }

    #[test]
    fn local_times_in_the_policy_zone_and_none_in_utc() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let winter = Utc.with_ymd_and_hms(2026, 12, 4, 1, 0, 0).unwrap();
        let summer = Utc.with_ymd_and_hms(2026, 7, 4, 0, 0, 0).unwrap();
        assert_eq!(
            local_time(winter, berlin).as_deref(),
            Some("2026-12-04T02:00:00+01:00")
        );
        assert_eq!(
            local_time(summer, berlin).as_deref(),
            Some("2026-07-04T02:00:00+02:00")
        );
        let subsecond = winter + Duration::milliseconds(1500);
        assert_eq!(
            local_time(subsecond, berlin).as_deref(),
            Some("2026-12-04T02:00:01+01:00")
        );
        assert_eq!(local_time(winter, Tz::UTC), None);
    }
}
