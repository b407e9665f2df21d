//! The Notifier kind: where and how to tell people what happened (a chat service, e-mail,
//! a push service or a heartbeat monitor), written once and referred to by objects, the
//! way Flux's notification-controller keeps providers apart from what they watch.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::HumanDuration;
use super::common::LabelSelector;
use super::repository::HostSecret;

/// Where notifications go and which events they carry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifierSpec {
    /// The service's URL (`ntfy://`, `gotify://`, `discord://`, `slack://`, `telegram://`,
    /// `pushover://`, `smtp://`, `generic+https://`, `apprise://`, `healthchecks://`,
    /// `uptime-kuma://`), written out when it holds no secret, or read from holdfast's
    /// environment (`{fromEnv: VAR}`) or a file (`{fromFile: path}`) when it does.
    pub url: UrlSource,
    /// The events sent. Problems (Failed, PartiallyFailed, Overdue, VerifyFailed,
    /// SpecInvalid, RepositoryUnreachable) are sent when they begin, and again every
    /// `repeat` while they last; Recovered when a failing object succeeds again;
    /// Succeeded after every successful run. Heartbeat services ignore this list: they
    /// are pinged around every run.
    #[serde(default = "default_events")]
    pub events: Vec<NotifyEvent>,
    /// The objects it covers, by their labels; absent covers every object. Objects also
    /// name it in their own `notify: [{ref: NAME}]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Sends a problem again after this long while it lasts (`24h`); absent sends it once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<HumanDuration>,
    /// The hosts that run this object (their `--host-labels`); every host without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<super::host::HostSelector>,
}

/// A URL written out, or read from holdfast's own environment or a file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum UrlSource {
    /// The URL itself; only for URLs without a token or password, since specs live in git.
    Literal(String),
    /// An environment variable of the holdfast process, or a file readable by holdfast.
    Secret(HostSecret),
}

impl UrlSource {
    /// The URL, read now from where it is kept.
    pub fn read(&self) -> Result<String, super::repository::HostSecretError> {
        match self {
            UrlSource::Literal(url) => Ok(url.clone()),
            UrlSource::Secret(secret) => secret.read(),
        }
    }

    /// Where the URL comes from, for messages: the URL itself never appears.
    pub fn describe(&self) -> String {
        match self {
            UrlSource::Literal(_) => "the url field".to_string(),
            UrlSource::Secret(HostSecret {
                from_env: Some(var),
                ..
            }) => format!("the environment variable {var}"),
            UrlSource::Secret(HostSecret {
                from_file: Some(file),
                ..
            }) => format!("the file {file}"),
            UrlSource::Secret(_) => "an empty secret".to_string(),
        }
    }

    /// Takes a relative `fromFile` against `folder`, the spec file's folder.
    pub fn resolve_paths(&mut self, folder: &Path) {
        if let UrlSource::Secret(HostSecret {
            from_file: Some(file),
            ..
        }) = self
            && !file.is_empty()
            && Path::new(file.as_str()).is_relative()
        {
            *file = folder.join(file.as_str()).display().to_string();
        }
    }
}

/// What a notification is about.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum NotifyEvent {
    /// A run succeeded (every run).
    Succeeded,
    /// A run ended with some of its work failed, or its copies.
    PartiallyFailed,
    /// A run failed.
    Failed,
    /// The first success after a Failed or PartiallyFailed run.
    Recovered,
    /// A scheduled policy has had no success for 1.5 times its schedule's interval.
    Overdue,
    /// An archive was found Corrupt by a verification.
    VerifyFailed,
    /// An object's spec is invalid (its status is Stalled).
    SpecInvalid,
    /// A Repository cannot be reached or used.
    RepositoryUnreachable,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 8] = [
        NotifyEvent::Succeeded,
        NotifyEvent::PartiallyFailed,
        NotifyEvent::Failed,
        NotifyEvent::Recovered,
        NotifyEvent::Overdue,
        NotifyEvent::VerifyFailed,
        NotifyEvent::SpecInvalid,
        NotifyEvent::RepositoryUnreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Succeeded => "Succeeded",
            NotifyEvent::PartiallyFailed => "PartiallyFailed",
            NotifyEvent::Failed => "Failed",
            NotifyEvent::Recovered => "Recovered",
            NotifyEvent::Overdue => "Overdue",
            NotifyEvent::VerifyFailed => "VerifyFailed",
            NotifyEvent::SpecInvalid => "SpecInvalid",
            NotifyEvent::RepositoryUnreachable => "RepositoryUnreachable",
        }
    }

    pub fn parse(text: &str) -> Option<NotifyEvent> {
        NotifyEvent::ALL.into_iter().find(|e| e.as_str() == text)
    }

    /// Whether it is a problem: sent when it begins and, with `repeat`, while it lasts.
    pub fn is_problem(self) -> bool {
        !matches!(self, NotifyEvent::Succeeded | NotifyEvent::Recovered)
    }
}

/// Every event but Succeeded: the problems and the recovery from them.
pub fn default_events() -> Vec<NotifyEvent> {
    NotifyEvent::ALL
        .into_iter()
        .filter(|e| *e != NotifyEvent::Succeeded)
        .collect()
}

/// One entry of an object's `notify:` list: a Notifier named by `ref`, or a URL of its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Notify {
    /// A Notifier object, by name.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// A URL of its own (as a Notifier's `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<UrlSource>,
    /// For a url entry, the events sent (`on` is an older name); default: every event
    /// but Succeeded. A `ref` sends the events its Notifier lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<NotifyEvent>>,
    /// The older name of `events`, still read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Vec<NotifyEvent>>,
}

impl Notify {
    /// The events this entry lists, under either name.
    pub fn listed_events(&self) -> Option<&Vec<NotifyEvent>> {
        self.events.as_ref().or(self.on.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_written_out_or_read_from_the_host() {
        let spec: NotifierSpec = serde_yaml_ng::from_str("url: ntfy://ntfy.sh/backups").unwrap();
        assert_eq!(
            spec.url,
            UrlSource::Literal("ntfy://ntfy.sh/backups".into())
        );
        assert_eq!(spec.events, default_events());
        assert!(!spec.events.contains(&NotifyEvent::Succeeded));
        let spec: NotifierSpec =
            serde_yaml_ng::from_str("url: {fromEnv: HOOK}\nevents: [Failed]\nrepeat: 24h").unwrap();
        assert_eq!(spec.url.describe(), "the environment variable HOOK");
        assert_eq!(spec.events, vec![NotifyEvent::Failed]);
        let mut source = UrlSource::Secret(HostSecret {
            from_env: None,
            from_file: Some("hook.url".into()),
        });
        source.resolve_paths(Path::new("/etc/holdfast"));
        assert_eq!(source.describe(), "the file /etc/holdfast/hook.url");
    }

    #[test]
    fn an_entry_names_a_notifier_or_a_url_and_on_is_an_older_name_for_events() {
        let entry: Notify = serde_yaml_ng::from_str("ref: ops").unwrap();
        assert_eq!(entry.reference.as_deref(), Some("ops"));
        let entry: Notify =
            serde_yaml_ng::from_str("url: ntfy://ntfy.sh/t\non: [Failed, Succeeded]").unwrap();
        assert_eq!(
            entry.listed_events(),
            Some(&vec![NotifyEvent::Failed, NotifyEvent::Succeeded])
        );
        assert!(serde_yaml_ng::from_str::<Notify>("ref: ops\nevents: [Late]").is_err());
    }
}
