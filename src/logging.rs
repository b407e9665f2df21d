//! Log setup: human-readable on a terminal, JSON lines with `--log-format json`.
//! The level comes from `HOLDFAST_LOG` (e.g. `debug`, `holdfast=trace`), default `info`.
//!
//! Every line logged inside a run's span also goes to `<state>/logs/<run id>.log`, so
//! the story of one run can be read on its own.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::settings::LogFormat;

/// Sets up logging; `run_logs` is the folder for per-run log files, if any.
pub fn init(format: LogFormat, run_logs: Option<PathBuf>) {
    let filter = EnvFilter::try_from_env("HOLDFAST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let runs = run_logs.map(|dir| RunLogs { dir });
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(runs);
    // A second init (tests calling into the CLI twice) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => registry
            .with(fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())))
            .try_init(),
        LogFormat::Json => registry.with(fmt.json()).try_init(),
    };
}

/// The run id a `run` span carries.
struct RunId(String);

struct RunLogs {
    dir: PathBuf,
}

#[derive(Default)]
struct Fields {
    run: Option<String>,
    text: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "run" => self.run = Some(format!("{value:?}").trim_matches('"').to_string()),
            "message" => {
                let _ = write!(self.text, "{value:?}");
            }
            name => {
                let _ = write!(self.text, " {name}={value:?}");
            }
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "run" => self.run = Some(value.to_string()),
            "message" => self.text.push_str(value),
            name => {
                let _ = write!(self.text, " {name}={value}");
            }
        }
    }
}

impl<S> Layer<S> for RunLogs
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "run" {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(run), Some(span)) = (fields.run, ctx.span(id)) {
            span.extensions_mut().insert(RunId(run));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let Some(run) = scope
            .from_root()
            .find_map(|span| span.extensions().get::<RunId>().map(|r| r.0.clone()))
        else {
            return;
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let line = format!(
            "{} {} {}: {}\n",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            event.metadata().level(),
            event.metadata().target(),
            fields.text.trim_start()
        );
        // Logging must never fail a backup; a missing log line is the lesser harm.
        let path = self.dir.join(format!("{run}.log"));
        let _ = std::fs::create_dir_all(&self.dir);
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = file.write_all(line.as_bytes());
        }
    }
}
