//! `get notifiers`: the Notifier objects in the specs folder and the url entries of
//! policies' own `notify:` lists, with where each sends (secrets replaced) and what.
//! Read from the specs alone: listing reads no secret and sends nothing.

use std::process::ExitCode;

use serde::Serialize;

use super::GetArgs;
use crate::settings::Settings;
use crate::spec::Resource;
use crate::spec::notifier::{NotifyEvent, UrlSource, default_events};

/// One notifier as `get notifiers` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct NotifierRow {
    /// The Notifier's name, or `<policy>.notify[<index>]` for a policy's own url entry.
    name: String,
    /// The URL written out with its secrets replaced, or where it is read from.
    url: String,
    events: Vec<NotifyEvent>,
    /// What it covers: `all`, its selector, the policies naming it, or its policy.
    covers: String,
    /// How often a lasting problem is told again; empty: once.
    repeat: String,
    /// The spec file it is declared in.
    file: String,
}

impl NotifierRow {
    fn cells(&self) -> (Vec<String>, Vec<String>) {
        let events: Vec<&str> = self.events.iter().map(|e| e.as_str()).collect();
        (
            vec![
                self.name.clone(),
                self.url.clone(),
                events.join(","),
                self.covers.clone(),
            ],
            vec![
                if self.repeat.is_empty() {
                    "-".into()
                } else {
                    self.repeat.clone()
                },
                self.file.clone(),
            ],
        )
    }
}

/// Where a URL comes from, as listings show it: never a secret.
fn shown(url: &UrlSource) -> String {
    match url {
        UrlSource::Literal(text) => crate::notify::target::redact_url(text),
        secret => format!("({})", secret.describe()),
    }
}

pub fn run(settings: &Settings, args: &GetArgs) -> anyhow::Result<ExitCode> {
    let report = crate::cli::specs::load_existing(settings)?;
    let mut rows = Vec::new();
    let mut refs: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for file in &report.files {
        for object in &file.objects {
            let Some(Resource::BackupPolicy(policy)) = &object.resource else {
                continue;
            };
            let name = &policy.metadata.name;
            for (i, entry) in policy.spec.notify.iter().enumerate() {
                if let Some(notifier) = &entry.reference {
                    refs.entry(notifier.clone()).or_default().push(name.clone());
                }
                if let Some(url) = &entry.url {
                    rows.push(NotifierRow {
                        name: format!("{name}.notify[{i}]"),
                        url: shown(url),
                        events: entry
                            .listed_events()
                            .cloned()
                            .unwrap_or_else(default_events),
                        covers: format!("BackupPolicy/{name}"),
                        repeat: String::new(),
                        file: file.path.display().to_string(),
                    });
                }
            }
        }
    }
    for file in &report.files {
        for object in &file.objects {
            let Some(Resource::Notifier(notifier)) = &object.resource else {
                continue;
            };
            let spec = &notifier.spec;
            let name = &notifier.metadata.name;
            let mut covers = match &spec.selector {
                None => "all".to_string(),
                Some(s) => {
                    let labels: Vec<String> = s
                        .match_labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    labels.join(",")
                }
            };
            if let Some(policies) = refs.get(name) {
                covers = format!("{covers} + {}", policies.join(","));
            }
            rows.push(NotifierRow {
                name: name.clone(),
                url: shown(&spec.url),
                events: spec.events.clone(),
                covers,
                repeat: spec
                    .repeat
                    .as_ref()
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                file: file.path.display().to_string(),
            });
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if rows.is_empty() {
        eprintln!(
            "no Notifiers ({}); nobody is told when a backup fails",
            crate::cli::paths(settings, &[crate::cli::Path::Specs])
        );
    }
    super::print(
        args.output,
        &rows,
        &["NAME", "URL", "EVENTS", "COVERS"],
        &["REPEAT", "FILE"],
        NotifierRow::cells,
    )?;
    Ok(ExitCode::SUCCESS)
}
