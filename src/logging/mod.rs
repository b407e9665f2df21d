//! Log setup: short lines for people on stderr, or JSON lines with `--log-format json`.
//!
//! The level comes from `-q` (warnings and errors), `-v` (holdfast's debug lines) or
//! `-vv` (trace), default `info`; `HOLDFAST_LOG` (e.g. `debug`, `holdfast=trace`)
//! overrides them. A text line names the object and run it is about once and leaves out
//! the module unless debug lines are asked for; see [`format`] for the fields.
//!
//! Every line logged inside a run's span also goes to `<state>/logs/<run id>.log`, in
//! text without the object and run (the file is the run's), so the story of one run can
//! be read on its own. `-q` keeps those files whole: it quiets the terminal only.

pub mod format;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record as SpanRecord};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::settings::LogFormat;
use format::{Fields, TextOptions, Value};
pub use format::{human_bytes, human_seconds, round_seconds};

/// How much is logged: -1 for `-q`, 0 by default, 1 for `-v`, 2 or more for `-vv`.
pub type Verbosity = i8;

/// Sets up logging; `run_logs` is the folder for per-run log files, if any.
pub fn init(format: LogFormat, verbosity: Verbosity, run_logs: Option<PathBuf>) {
    let asked = std::env::var("HOLDFAST_LOG").ok();
    let parsed = asked.as_deref().map(EnvFilter::try_new);
    let from_env = match &parsed {
        Some(Ok(filter)) => Some(filter.clone()),
        _ => None,
    };
    let filter = |verbosity: Verbosity| {
        from_env.clone().unwrap_or_else(|| {
            EnvFilter::new(match verbosity {
                ..=-1 => "warn",
                0 => "info",
                1 => "info,holdfast=debug",
                _ => "debug,holdfast=trace",
            })
        })
    };
    let stderr = filter(verbosity);
    // The module is worth its width only to someone reading debug lines.
    let target = stderr
        .max_level_hint()
        .is_none_or(|max| max >= tracing::level_filters::LevelFilter::DEBUG);
    let ansi = format == LogFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let terminal = Output {
        format,
        options: TextOptions {
            context: true,
            target,
            ansi,
        },
        sink: Sink::Lines(Box::new(write_stderr)),
    };
    let runs = run_logs.map(|dir| {
        let filter = filter(verbosity.max(0));
        Output {
            format: LogFormat::Text,
            options: TextOptions {
                context: false,
                target,
                ansi: false,
            },
            sink: Sink::RunFiles(dir),
        }
        .with_filter(filter.or(filter_fn(own_span)))
    });
    // A second init (tests calling into the CLI twice) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(SpanFields.with_filter(filter_fn(own_span)))
        .with(terminal.with_filter(stderr.or(filter_fn(own_span))))
        .with(runs)
        .try_init();
    if let (Some(asked), Some(Err(e))) = (asked, parsed) {
        tracing::warn!(
            "HOLDFAST_LOG={asked:?} is not a log filter ({e}); logging as -q/-v say. \
             Examples: `debug`, `holdfast=debug`, `warn,holdfast::executor=trace`"
        );
    }
}

/// holdfast's own spans (`object`, `run`) are kept whatever the level asked, so that
/// every line logged inside them names what it is about.
fn own_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && meta.target().starts_with("holdfast")
}

/// The progress bar on the terminal, if one is shown: log lines are written with it
/// hidden, so that the two never share a line.
static BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Log lines go above `bar` from now on (`None`: there is no bar any more).
pub fn show_progress(bar: Option<indicatif::ProgressBar>) {
    if let Ok(mut shown) = BAR.lock() {
        *shown = bar;
    }
}

/// Writes `text` to stderr, with the progress bar (if any) hidden meanwhile.
pub fn write_stderr(text: &str) {
    let write = || {
        let mut err = std::io::stderr().lock();
        // Logging must never fail the work; a closed stderr loses the line.
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
    };
    let bar = BAR.lock().ok().and_then(|b| b.clone());
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// A span's fields, kept in its extensions for the lines logged inside it.
struct SpanFields;

/// Collects fields, keeping numbers and flags as such.
#[derive(Default)]
struct Collect {
    message: Option<String>,
    fields: Fields,
}

impl Collect {
    fn put(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("message", Value::Str(s)) => self.message = Some(s),
            (name, value) => self.fields.set(name, value),
        }
    }
}

impl Visit for Collect {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%value` arrives here too, and its Debug is its Display.
        self.put(field, Value::Str(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::Str(value.to_string()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::U64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::I64(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::Str(value.to_string()));
    }
}

impl<S> Layer<S> for SpanFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Collect::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields.fields);
        }
    }

    fn on_record(&self, id: &Id, values: &SpanRecord<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<Fields>() {
            let mut more = Collect {
                message: None,
                fields: std::mem::take(fields),
            };
            values.record(&mut more);
            *fields = more.fields;
        }
    }
}

enum Sink {
    /// Every line, e.g. to [`write_stderr`].
    Lines(Box<dyn Fn(&str) + Send + Sync>),
    /// `<dir>/<run id>.log` for the lines inside a run's span; others are not written.
    RunFiles(PathBuf),
}

struct Output {
    format: LogFormat,
    options: TextOptions,
    sink: Sink,
}

impl<S> Layer<S> for Output
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut spans = Fields::default();
        let mut run = None;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<Fields>() {
                    for (name, value) in &fields.0 {
                        spans.set(name, value.clone());
                    }
                    if span.name() == "run"
                        && let Some(Value::Str(id)) = fields.get("run")
                    {
                        run = Some(id.clone());
                    }
                }
            }
        }
        let mut collected = Collect::default();
        event.record(&mut collected);
        let record = format::Record {
            time: chrono::Utc::now(),
            level: *event.metadata().level(),
            target: event.metadata().target(),
            message: collected.message.unwrap_or_default(),
            spans,
            fields: collected.fields,
        };
        let line = match self.format {
            LogFormat::Text => format::text(&record, self.options),
            LogFormat::Json => format::json(&record),
        };
        match &self.sink {
            Sink::Lines(write) => write(&line),
            Sink::RunFiles(dir) => {
                // Ids are `<name>-<time>`; anything else is not a file name to write to.
                let Some(run) = run.filter(|r| !r.contains('/') && !r.starts_with('.')) else {
                    return;
                };
                append(&dir.join(format!("{run}.log")), &line);
            }
        }
    }
}

/// Appends to a run's log file. Logging must never fail a backup; a missing log line is
/// the lesser harm.
fn append(path: &std::path::Path, line: &str) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = file.write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Runs `work` under a subscriber like `init`'s whose terminal lines land in a string
    /// and whose run files land in `dir`.
    fn capture(format: LogFormat, dir: &std::path::Path, work: impl FnOnce()) -> String {
        let lines = Arc::new(Mutex::new(String::new()));
        let options = TextOptions {
            context: true,
            target: false,
            ansi: false,
        };
        let sink = lines.clone();
        let subscriber = tracing_subscriber::registry()
            .with(SpanFields.with_filter(filter_fn(own_span)))
            .with(
                Output {
                    format,
                    options,
                    sink: Sink::Lines(Box::new(move |line| sink.lock().unwrap().push_str(line))),
                }
                .with_filter(EnvFilter::new("info").or(filter_fn(own_span))),
            )
            .with(
                Output {
                    format: LogFormat::Text,
                    options: TextOptions {
                        context: false,
                        ..options
                    },
                    sink: Sink::RunFiles(dir.to_path_buf()),
                }
                .with_filter(EnvFilter::new("info").or(filter_fn(own_span))),
            );
        tracing::subscriber::with_default(subscriber, work);
        lines.lock().unwrap().clone()
    }

    fn a_run() {
        let object = tracing::info_span!("object", object = "BackupPolicy/demo-hourly");
        let _object = object.enter();
        let run = tracing::info_span!(
            "run",
            run = "demo-hourly-20261203T074152.130Z",
            kind = "BackupPolicy",
            name = "demo-hourly"
        );
        let _run = run.enter();
        tracing::info!(
            stored_bytes = 4_709_004_u64,
            downtime_seconds = 4.587,
            transient = false,
            "run succeeded"
        );
        tracing::debug!("not at info");
    }

    #[test]
    fn json_lines_keep_the_policy_name_and_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let out = capture(LogFormat::Json, dir.path(), a_run);
        let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(line["name"], "demo-hourly", "{out}");
        assert_eq!(line["kind"], "BackupPolicy", "{out}");
        assert_eq!(line["run"], "demo-hourly-20261203T074152.130Z", "{out}");
        assert_eq!(line["stored_bytes"], 4_709_004, "{out}");
        assert_eq!(line["downtime_seconds"], 4.587, "{out}");
        assert_eq!(line["transient"], false, "{out}");
        assert_eq!(out.matches("\"name\"").count(), 1, "{out}");
    }

    #[test]
    fn text_lines_name_the_run_once_and_the_run_file_gets_them_too() {
        let dir = tempfile::tempdir().unwrap();
        let out = capture(LogFormat::Text, dir.path(), a_run);
        let line = out.trim_end();
        assert!(
            line.ends_with(
                " INFO BackupPolicy/demo-hourly run=20261203T074152.130Z: run succeeded stored=4.5MiB downtime=4.6s"
            ),
            "{out}"
        );
        let file = std::fs::read_to_string(dir.path().join("demo-hourly-20261203T074152.130Z.log"))
            .unwrap();
        assert!(
            file.ends_with(" INFO run succeeded stored=4.5MiB downtime=4.6s\n")
                && file.lines().count() == 1,
            "{file}"
        );
    }
}
