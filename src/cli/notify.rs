//! `holdfast notify test NAME`: sends a test message through a Notifier, so a URL can be
//! checked before a backup fails for real.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::OutputFormat;
use crate::diagnostic::did_you_mean;
use crate::notify::{Message, Target};
use crate::settings::Settings;
use crate::spec::{Kind, Resource};

#[derive(Debug, Args)]
pub struct NotifyArgs {
    #[command(subcommand)]
    pub(super) command: NotifyCommand,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test message through a Notifier, and say whether it got through.
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The Notifier's name.
    #[arg(value_name = "NAME")]
    name: String,

    /// `text` for people, `json` for scripts.
    #[arg(long, short, value_enum, default_value_t)]
    output: OutputFormat,

    #[command(flatten)]
    pub(super) specs: crate::settings::SpecsFlag,
}

impl NotifyArgs {
    pub(super) fn specs(&self) -> &crate::settings::SpecsFlag {
        match &self.command {
            NotifyCommand::Test(a) => &a.specs,
        }
    }
}

/// Attempts at most, and the pause before each retry: a service that is briefly down
/// (a 5xx, a 429, no answer) gets a second and a third chance.
const BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];
/// Each attempt's time limit.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What `notify test -o json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Tested {
    notifier: String,
    /// The URL with its secrets replaced by `***`.
    url: String,
    sent: bool,
    attempts: usize,
    /// Why it did not get through, with the URL's secrets replaced.
    error: Option<String>,
}

pub fn run(settings: &Settings, args: NotifyArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        NotifyCommand::Test(args) => test(settings, args),
    }
}

/// Finds the Notifier, reads and parses its URL, and sends [`Message::for_test`]. Exit 1
/// when it does not get through.
fn test(settings: &Settings, args: TestArgs) -> anyhow::Result<ExitCode> {
    let report = super::specs::load_existing(settings)?;
    let name = &args.name;
    let notifiers = || {
        report
            .files
            .iter()
            .flat_map(|f| f.objects.iter())
            .filter(|o| o.kind == Some(Kind::Notifier))
    };
    let Some(object) = notifiers().find(|o| o.name.as_deref() == Some(name.as_str())) else {
        let names: Vec<&str> = notifiers().filter_map(|o| o.name.as_deref()).collect();
        let hint = did_you_mean(name, names.iter().copied())
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        bail!(
            "no Notifier named `{name}` in {}{hint}",
            settings.specs.display()
        );
    };
    let Some(Resource::Notifier(notifier)) = &object.resource else {
        let errors: Vec<String> = object.errors.iter().map(|e| e.to_string()).collect();
        bail!(
            "Notifier `{name}` is invalid, so it sends nothing:\n{}",
            errors.join("\n")
        );
    };
    let source = &notifier.spec.url;
    let url = source
        .read()
        .map_err(|e| anyhow::anyhow!("Notifier `{name}`: reading its URL: {e}"))?;
    let target = Target::parse(&url).map_err(|e| {
        anyhow::anyhow!("Notifier `{name}`: the URL from {} {e}", source.describe())
    })?;
    let message = Message::for_test(&settings.host(), chrono::Utc::now());
    let (attempts, result) = super::runtime()?.block_on(async {
        let mut attempt = 0;
        loop {
            let result = target.send(&message, TIMEOUT).await;
            match result {
                Err(e) if e.retry && attempt < BACKOFF.len() => {
                    tokio::time::sleep(BACKOFF[attempt]).await;
                    attempt += 1;
                }
                result => return (attempt + 1, result),
            }
        }
    });
    let tested = Tested {
        notifier: name.clone(),
        url: target.redacted().to_string(),
        sent: result.is_ok(),
        attempts,
        error: result.err().map(|e| e.message),
    };
    match args.output {
        OutputFormat::Json => {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &tested)?;
            writeln!(out)?;
        }
        OutputFormat::Text => match &tested.error {
            None => println!("sent a test message to {}", tested.url),
            Some(e) => {
                let tries = if attempts == 1 {
                    String::new()
                } else {
                    format!(" after {attempts} attempts")
                };
                eprintln!(
                    "error: the test message to {} did not get through{tries}: {e}",
                    tested.url
                )
            }
        },
    }
    Ok(if tested.sent {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
