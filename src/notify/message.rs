//! One notification, as every service receives it: what happened, to which object, on
//! which host, and the run's facts. Each service renders it in its own format
//! ([`super::services`], [`super::smtp`]) from the same pieces: [`Message::title`],
//! [`Message::text`], [`Message::facts`], [`Message::errors`] and [`Message::link`].

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::logging::format::{human_bytes, human_seconds};
use crate::spec::common::Phase;
use crate::spec::notifier::NotifyEvent;
use crate::spec::{Kind, ObjectKey};

/// At most this many error lines go into a message; the run's log has the rest.
pub const MAX_ERROR_LINES: usize = 5;

/// Why a message is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Occasion {
    /// A run began: only heartbeat services hear of it (Healthchecks' `/start`).
    Started,
    /// One of the events a Notifier lists.
    Event(NotifyEvent),
    /// `holdfast notify test`.
    Test,
}

impl Occasion {
    /// `Started`, `Test` or the event's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Occasion::Started => "Started",
            Occasion::Event(e) => e.as_str(),
            Occasion::Test => "Test",
        }
    }
}

/// How bad it is, for colours, priorities and tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    Info,
    Success,
    Warning,
    Failure,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Success => "success",
            Severity::Warning => "warning",
            Severity::Failure => "failure",
        }
    }
}

/// What a run did, for messages about a run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunFacts {
    pub run_id: String,
    pub phase: Phase,
    pub start_time: DateTime<Utc>,
    pub duration_seconds: f64,
    /// Uncompressed bytes read from the sources.
    pub source_bytes: u64,
    /// Bytes written to the repository.
    pub stored_bytes: u64,
    /// How long the longest-stopped container was down; `None` when nothing was stopped.
    pub downtime_seconds: Option<f64>,
    pub archive_id: Option<String>,
    /// The repository the run wrote.
    pub repository: Option<String>,
}

/// One notification.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub occasion: Occasion,
    /// The object it is about; `None` for a test message.
    pub object: Option<ObjectKey>,
    /// The host holdfast runs on.
    pub host: String,
    pub time: DateTime<Utc>,
    /// One line: `BackupPolicy/nextcloud failed on nas`.
    pub title: String,
    /// A sentence or two saying what happened and what to do.
    pub text: String,
    pub run: Option<RunFacts>,
    /// The first error lines (at most [`MAX_ERROR_LINES`]).
    pub errors: Vec<String>,
    /// A link to the object in holdfast's API or dashboard, when `--external-url` is set.
    pub link: Option<String>,
}

impl Message {
    /// A failed run's message with every field set, for tests of how each service
    /// renders it.
    pub fn example() -> Message {
        let time = DateTime::parse_from_rfc3339("2026-11-24T03:00:42Z")
            .unwrap()
            .to_utc();
        Message {
            occasion: Occasion::Event(NotifyEvent::Failed),
            object: Some(ObjectKey {
                kind: Kind::BackupPolicy,
                name: "nextcloud".into(),
            }),
            host: "nas".into(),
            time,
            title: "BackupPolicy/nextcloud failed on nas".into(),
            text: "The backup failed; the stack was started again.".into(),
            run: Some(RunFacts {
                run_id: "nextcloud-20261124-030000".into(),
                phase: Phase::Failed,
                start_time: time - chrono::Duration::seconds(42),
                duration_seconds: 42.5,
                source_bytes: 5 << 30,
                stored_bytes: 2 << 30,
                downtime_seconds: Some(12.0),
                archive_id: None,
                repository: Some("default".into()),
            }),
            errors: vec!["dump db: pg_dump: connection refused <on socket>".into()],
            link: Some("https://holdfast.example/api/v1/policies/nextcloud".into()),
        }
    }

    /// The message `holdfast notify test` sends: about no object and no run, so each
    /// service shows what a real message looks like without waiting for one.
    pub fn for_test(host: &str, now: DateTime<Utc>) -> Message {
        Message {
            occasion: Occasion::Test,
            object: None,
            host: host.to_string(),
            time: now,
            title: format!("holdfast test notification from {host}"),
            text: "This is a test message sent by `holdfast notify test`: this Notifier's messages arrive here.".to_string(),
            run: None,
            errors: Vec::new(),
            link: None,
        }
    }

    pub fn severity(&self) -> Severity {
        match self.occasion {
            Occasion::Started | Occasion::Test => Severity::Info,
            Occasion::Event(NotifyEvent::Succeeded | NotifyEvent::Recovered) => Severity::Success,
            Occasion::Event(NotifyEvent::PartiallyFailed | NotifyEvent::Overdue) => {
                Severity::Warning
            }
            Occasion::Event(_) => Severity::Failure,
        }
    }

    /// `Failed`, `Recovered`, `Started`, `Test`, …
    pub fn event_name(&self) -> &'static str {
        self.occasion.as_str()
    }

    /// Labelled facts in display order, human formatted: Object, Host, Phase, Duration,
    /// Read, Stored, Downtime, Archive, Repository, Run. Only those known are listed.
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let mut facts = Vec::new();
        if let Some(object) = &self.object {
            facts.push(("Object", object.to_string()));
        }
        facts.push(("Host", self.host.clone()));
        if let Some(run) = &self.run {
            facts.push(("Phase", run.phase.as_str().to_string()));
            facts.push(("Duration", human_seconds(run.duration_seconds)));
            facts.push(("Read", human_bytes(run.source_bytes)));
            facts.push(("Stored", human_bytes(run.stored_bytes)));
            if let Some(downtime) = run.downtime_seconds {
                facts.push(("Downtime", human_seconds(downtime)));
            }
            if let Some(id) = &run.archive_id {
                facts.push(("Archive", id.clone()));
            }
            if let Some(repository) = &run.repository {
                facts.push(("Repository", repository.clone()));
            }
            facts.push(("Run", run.run_id.clone()));
        }
        facts
    }

    /// The whole message as plain text: the text, the facts, the errors and the link.
    pub fn plain(&self) -> String {
        let mut out = self.text.clone();
        out.push_str("\n\n");
        for (label, value) in self.facts() {
            out.push_str(&format!("{label}: {value}\n"));
        }
        if !self.errors.is_empty() {
            out.push_str("\nErrors:\n");
            for line in &self.errors {
                out.push_str(&format!("- {line}\n"));
            }
        }
        if let Some(link) = &self.link {
            out.push_str(&format!("\n{link}\n"));
        }
        out.trim_end().to_string()
    }

    /// The whole message as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = self.text.clone();
        out.push_str("\n\n");
        for (label, value) in self.facts() {
            out.push_str(&format!("**{label}:** {value}  \n"));
        }
        if !self.errors.is_empty() {
            out.push_str("\n```\n");
            for line in &self.errors {
                out.push_str(line);
                out.push('\n');
            }
            out.push_str("```\n");
        }
        if let Some(link) = &self.link {
            out.push_str(&format!("\n[Open in holdfast]({link})\n"));
        }
        out.trim_end().to_string()
    }

    /// The whole message as HTML, in the subset Telegram accepts (`b`, `i`, `code`,
    /// `pre`, `a`), which e-mail clients show as well.
    pub fn html(&self) -> String {
        let mut out = format!("<b>{}</b>\n{}\n\n", escape(&self.title), escape(&self.text));
        for (label, value) in self.facts() {
            out.push_str(&format!("<b>{label}:</b> {}\n", escape(&value)));
        }
        if !self.errors.is_empty() {
            out.push_str("\n<pre>");
            out.push_str(&escape(&self.errors.join("\n")));
            out.push_str("</pre>\n");
        }
        if let Some(link) = &self.link {
            out.push_str(&format!(
                "\n<a href=\"{}\">Open in holdfast</a>\n",
                escape(link)
            ));
        }
        out.trim_end().to_string()
    }

    /// The documented JSON body of `generic+https://` and the test receivers' reference:
    /// every field of the message, machine-readable.
    pub fn json(&self) -> serde_json::Value {
        let run = self.run.as_ref().map(|r| {
            serde_json::json!({
                "runId": r.run_id,
                "phase": r.phase.as_str(),
                "startTime": r.start_time.to_rfc3339_opts(SecondsFormat::Secs, true),
                "durationSeconds": r.duration_seconds,
                "sourceBytes": r.source_bytes,
                "storedBytes": r.stored_bytes,
                "downtimeSeconds": r.downtime_seconds,
                "archiveId": r.archive_id,
                "repository": r.repository,
            })
        });
        serde_json::json!({
            "event": self.event_name(),
            "severity": self.severity().as_str(),
            "kind": self.object.as_ref().map(|o| o.kind.as_str()),
            "name": self.object.as_ref().map(|o| o.name.clone()),
            "host": self.host,
            "time": self.time.to_rfc3339_opts(SecondsFormat::Secs, true),
            "title": self.title,
            "message": self.text,
            "run": run,
            "errors": self.errors,
            "url": self.link,
        })
    }
}

/// Escapes `&`, `<`, `>` and `"` for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The first [`MAX_ERROR_LINES`] lines of a run's errors, each cut to 300 characters.
pub fn first_error_lines(errors: &[String]) -> Vec<String> {
    errors
        .iter()
        .flat_map(|e| e.lines())
        .filter(|l| !l.trim().is_empty())
        .take(MAX_ERROR_LINES)
        .map(|l| match l.char_indices().nth(300) {
            Some((cut, _)) => format!("{}…", &l[..cut]),
            None => l.to_string(),
        })
        .collect()
}

#[cfg(test)]
pub mod tests {
    use super::*;

    #[test]
    fn every_rendering_carries_the_facts_and_escapes_what_it_must() {
        let m = Message::example();
        assert_eq!(m.severity(), Severity::Failure);
        let plain = m.plain();
        for part in [
            "Object: BackupPolicy/nextcloud",
            "Downtime: 12.0s",
            "Stored: 2.0 GiB",
        ] {
            assert!(plain.contains(part), "{plain}");
        }
        let html = m.html();
        assert!(html.contains("&lt;on socket&gt;"), "{html}");
        assert!(html.contains("<b>Host:</b> nas"), "{html}");
        assert!(m.markdown().contains("**Phase:** Failed"));
        let json = m.json();
        assert_eq!(json["event"], "Failed");
        assert_eq!(json["run"]["storedBytes"], 2u64 << 30);
        assert_eq!(json["kind"], "BackupPolicy");
    }

    #[test]
    fn a_test_message_names_its_host_and_is_about_nothing_else() {
        let m = Message::for_test("nas", Utc::now());
        assert_eq!(m.occasion, Occasion::Test);
        assert_eq!(m.severity(), Severity::Info);
        assert_eq!(m.title, "holdfast test notification from nas");
        assert_eq!(m.facts(), vec![("Host", "nas".to_string())]);
        assert!(m.plain().contains("holdfast notify test"));
    }

    #[test]
    fn error_lines_are_few_and_short() {
        let long = "x".repeat(400);
        let errors = vec![format!("a\n\nb\n{long}"), "c\nd\ne\nf".into()];
        let lines = first_error_lines(&errors);
        assert_eq!(lines.len(), MAX_ERROR_LINES);
        assert_eq!(lines[2].chars().count(), 301);
        assert_eq!(lines[4], "d");
    }
}
