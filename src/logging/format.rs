//! How one log event is written: a short line for people, or one JSON object.
//!
//! Field names carry their unit so that both forms can be right: `stored_bytes` and
//! `downtime_seconds` are plain numbers in JSON, and `stored=4.5MiB` and
//! `downtime=4.6s` in text. A `true` flag shows in text as its bare name and a `false` one
//! not at all; JSON keeps every field as it was given.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use tracing::Level;

/// A field's value as it was recorded: numbers stay numbers until they are written.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
}

/// Named fields in the order they were given; a name given again replaces the first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields(pub Vec<(&'static str, Value)>);

impl Fields {
    pub fn set(&mut self, name: &'static str, value: Value) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    fn text(&self, name: &str) -> Option<String> {
        self.get(name).map(Value::to_text)
    }
}

/// The fields that say what a line is about: the object, its kind and name, and the run.
const CONTEXT: [&str; 4] = ["object", "kind", "name", "run"];

/// One event, with the fields of the spans it happened in.
#[derive(Clone, Debug)]
pub struct Record<'a> {
    pub time: DateTime<Utc>,
    pub level: Level,
    pub target: &'a str,
    pub message: String,
    /// The fields of the enclosing spans, outermost first.
    pub spans: Fields,
    pub fields: Fields,
}

impl Record<'_> {
    /// Span fields then event fields, one entry per name: an event field replaces a span
    /// field of the same name in place, since it says more precisely what the line is about.
    pub fn merged(&self) -> Fields {
        let mut all = self.spans.clone();
        for (name, value) in &self.fields.0 {
            all.set(name, value.clone());
        }
        all
    }
}

/// What a text line shows besides the message.
#[derive(Clone, Copy, Debug)]
pub struct TextOptions {
    /// The object and run the line is about (left out in a run's own log file).
    pub context: bool,
    /// The module that logged it (with `-v` or a debug `HOLDFAST_LOG`).
    pub target: bool,
    /// Colours for a terminal.
    pub ansi: bool,
}

/// `2026-12-03T07:41:52Z  INFO BackupPolicy/demo run=20261203T074152.130Z: stopping container=demo-db-1`
pub fn text(record: &Record<'_>, options: TextOptions) -> String {
    let mut line = record.time.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let level = format!("{:>5}", record.level.as_str());
    if options.ansi {
        let colour = match record.level {
            Level::ERROR => "31",
            Level::WARN => "33",
            Level::INFO => "32",
            Level::DEBUG => "34",
            Level::TRACE => "35",
        };
        let _ = write!(line, " \x1b[{colour}m{level}\x1b[0m");
    } else {
        let _ = write!(line, " {level}");
    }
    if options.target {
        let _ = write!(line, " {}:", record.target);
    }
    let fields = record.merged();
    if options.context
        && let Some(about) = about(&fields)
    {
        let _ = write!(line, " {about}:");
    }
    line.push(' ');
    line.push_str(&one_line(&record.message));
    for (name, value) in &fields.0 {
        if CONTEXT.contains(name) {
            continue;
        }
        match value {
            Value::Bool(false) => {}
            Value::Bool(true) => {
                let _ = write!(line, " {name}");
            }
            _ => {
                let (name, shown) = humanised(name, value);
                let _ = write!(line, " {name}={}", quoted(&shown));
            }
        }
    }
    line.push('\n');
    line
}

/// `BackupPolicy/demo run=20261203T074152.130Z`: the object once, and the run by its
/// time (its id is `<name>-<time>`, and the name is already there).
fn about(fields: &Fields) -> Option<String> {
    let object = match (fields.text("kind"), fields.text("name")) {
        (Some(kind), Some(name)) => Some(format!("{kind}/{name}")),
        _ => fields.text("object"),
    };
    let run = fields.text("run").map(|run| {
        let name = fields.text("name").or_else(|| {
            fields
                .text("object")?
                .split_once('/')
                .map(|(_, n)| n.to_string())
        });
        match name.and_then(|n| run.strip_prefix(&format!("{n}-")).map(str::to_string)) {
            Some(short) => short,
            None => run,
        }
    });
    match (object, run) {
        (Some(object), Some(run)) => Some(format!("{object} run={run}")),
        (Some(object), None) => Some(object),
        (None, Some(run)) => Some(format!("run={run}")),
        (None, None) => None,
    }
}

/// A field as a person reads it: sizes and durations with their unit, which then leaves
/// the name (`stored_bytes=4709004` reads `stored=4.5MiB`).
fn humanised(name: &'static str, value: &Value) -> (&'static str, String) {
    let unit = |suffix: &str| {
        name.strip_suffix(suffix)
            .filter(|n| !n.is_empty())
            .unwrap_or(name)
    };
    let number = match value {
        Value::U64(n) => Some(*n as f64),
        Value::I64(n) => Some(*n as f64),
        Value::F64(n) => Some(*n),
        _ => None,
    };
    match number {
        Some(n) if name == "bytes" || name.ends_with("_bytes") => {
            // `4.5MiB`: a size is one word, like a duration.
            (
                unit("_bytes"),
                human_bytes(n.max(0.0) as u64).replace(' ', ""),
            )
        }
        Some(n) if name == "seconds" || name.ends_with("_seconds") => {
            (unit("_seconds"), human_seconds(n))
        }
        _ => (name, value.to_text()),
    }
}

/// A value in quotes when it would otherwise run into the next field.
fn quoted(value: &str) -> String {
    if value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=' || c.is_control())
    {
        format!("{value:?}")
    } else {
        value.to_string()
    }
}

/// One line per event, whatever the message holds: a line break would split it in two
/// for anyone reading the log line by line (the API's run log does).
fn one_line(message: &str) -> String {
    if message.contains(['\n', '\r']) {
        message.replace("\r\n", "\\n").replace(['\n', '\r'], "\\n")
    } else {
        message.to_string()
    }
}

impl Value {
    fn to_text(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::U64(n) => n.to_string(),
            Value::I64(n) => n.to_string(),
            Value::F64(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
        }
    }

    fn to_json(&self, name: &str) -> serde_json::Value {
        match self {
            Value::Str(s) => s.clone().into(),
            Value::U64(n) => (*n).into(),
            Value::I64(n) => (*n).into(),
            // Durations to the millisecond; a non-finite number has no JSON form.
            Value::F64(n) if name == "seconds" || name.ends_with("_seconds") => {
                serde_json::Number::from_f64((n * 1000.0).round() / 1000.0)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
            Value::F64(n) => serde_json::Number::from_f64(*n)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::Bool(b) => (*b).into(),
        }
    }
}

/// `{"timestamp":…,"level":…,"message":…,"kind":…,"name":…,"run":…,<fields>,"target":…}`:
/// one flat object, one key per field, numbers as numbers.
pub fn json(record: &Record<'_>) -> String {
    let mut keys: Vec<(String, serde_json::Value)> = vec![
        (
            "timestamp".into(),
            record
                .time
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        ),
        ("level".into(), record.level.as_str().into()),
        ("message".into(), record.message.clone().into()),
    ];
    for (name, value) in &record.merged().0 {
        // A field named like one of the line's own keys keeps its value under a longer name.
        let key = match ["timestamp", "level", "message", "target"].contains(name) {
            true => format!("field_{name}"),
            false => name.to_string(),
        };
        keys.push((key, value.to_json(name)));
    }
    keys.push(("target".into(), record.target.into()));
    let mut line = String::from("{");
    for (i, (name, value)) in keys.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        // Writing JSON strings and values into a String cannot fail.
        let _ = write!(line, "{}:{}", serde_json::Value::from(name.as_str()), value);
    }
    line.push_str("}\n");
    line
}

/// `4709004` reads `4.5 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Seconds rounded to milliseconds, as status files and the API show durations:
/// `3.2964814049999998` is written `3.296`.
pub fn round_seconds(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// `0.004` reads `4ms`, `4.587` reads `4.6s`, `754` reads `12m34s`, `7384` reads `2h03m`.
pub fn human_seconds(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return seconds.to_string();
    }
    if seconds < 1.0 {
        return format!("{}ms", (seconds * 1000.0).round() as u64);
    }
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let whole = seconds.round() as u64;
    if whole < 3600 {
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h{:02}m", whole / 3600, whole % 3600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        "2026-12-03T07:41:52.130Z".parse().unwrap()
    }

    fn run_fields() -> Fields {
        Fields(vec![
            ("object", Value::Str("BackupPolicy/demo-hourly".into())),
            ("run", Value::Str("demo-hourly-20261203T074152.130Z".into())),
            ("kind", Value::Str("BackupPolicy".into())),
            ("name", Value::Str("demo-hourly".into())),
        ])
    }

    fn record(message: &str, fields: Vec<(&'static str, Value)>) -> Record<'static> {
        Record {
            time: at(),
            level: Level::INFO,
            target: "holdfast::executor::steps",
            message: message.into(),
            spans: run_fields(),
            fields: Fields(fields),
        }
    }

    const PLAIN: TextOptions = TextOptions {
        context: true,
        target: false,
        ansi: false,
    };

    #[test]
    fn a_text_line_names_the_object_and_run_once_without_the_module() {
        let line = text(
            &record(
                "stopping",
                vec![("container", Value::Str("demo-db-1".into()))],
            ),
            PLAIN,
        );
        assert_eq!(
            line,
            "2026-12-03T07:41:52Z  INFO BackupPolicy/demo-hourly run=20261203T074152.130Z: stopping container=demo-db-1\n"
        );
    }

    #[test]
    fn the_module_shows_when_asked_and_the_run_file_leaves_out_the_context() {
        let r = record("run started", vec![]);
        let verbose = TextOptions {
            target: true,
            ..PLAIN
        };
        assert_eq!(
            text(&r, verbose),
            "2026-12-03T07:41:52Z  INFO holdfast::executor::steps: BackupPolicy/demo-hourly run=20261203T074152.130Z: run started\n"
        );
        let file = TextOptions {
            context: false,
            ..PLAIN
        };
        assert_eq!(text(&r, file), "2026-12-03T07:41:52Z  INFO run started\n");
    }

    #[test]
    fn sizes_and_durations_read_with_their_unit() {
        let line = text(
            &record(
                "run succeeded",
                vec![
                    ("archive", Value::Str("demo-hourly-20261203T074152Z".into())),
                    ("stored_bytes", Value::U64(4_709_004)),
                    ("source_bytes", Value::U64(12)),
                    ("downtime_seconds", Value::F64(4.587)),
                    ("duration_seconds", Value::F64(0.0042)),
                ],
            ),
            PLAIN,
        );
        assert!(
            line.ends_with(
                ": run succeeded archive=demo-hourly-20261203T074152Z stored=4.5MiB source=12B downtime=4.6s duration=4ms\n"
            ),
            "{line}"
        );
    }

    #[test]
    fn flags_show_by_name_when_set_and_values_with_spaces_are_quoted() {
        let line = text(
            &record(
                "run started",
                vec![
                    ("dry_run", Value::Bool(true)),
                    ("transient", Value::Bool(false)),
                    ("basis", Value::Str("1.0 KiB of data".into())),
                    ("empty", Value::Str(String::new())),
                ],
            ),
            PLAIN,
        );
        assert!(
            line.ends_with(": run started dry_run basis=\"1.0 KiB of data\" empty=\"\"\n"),
            "{line}"
        );
    }

    #[test]
    fn a_message_with_line_breaks_stays_on_one_line() {
        let line = text(&record("hook failed:\nline two\r\n", vec![]), PLAIN);
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.ends_with("hook failed:\\nline two\\n\n"), "{line}");
    }

    #[test]
    fn an_event_without_spans_names_what_its_fields_name() {
        let r = Record {
            spans: Fields::default(),
            ..record(
                "run finished",
                vec![
                    ("object", Value::Str("BackupPolicy/web".into())),
                    ("run", Value::Str("web-20261203T074152.130Z".into())),
                    ("phase", Value::Str("Succeeded".into())),
                ],
            )
        };
        assert!(
            text(&r, PLAIN).ends_with(
                " INFO BackupPolicy/web run=20261203T074152.130Z: run finished phase=Succeeded\n"
            ),
            "{}",
            text(&r, PLAIN)
        );
        let bare = Record {
            spans: Fields::default(),
            ..record("specs loaded", vec![("files", Value::U64(2))])
        };
        assert_eq!(
            text(&bare, PLAIN),
            "2026-12-03T07:41:52Z  INFO specs loaded files=2\n"
        );
    }

    #[test]
    fn colours_are_only_for_a_terminal() {
        let ansi = TextOptions {
            ansi: true,
            ..PLAIN
        };
        let line = text(&record("x", vec![]), ansi);
        assert!(line.contains("\x1b[32m INFO\x1b[0m"), "{line:?}");
        assert!(!text(&record("x", vec![]), PLAIN).contains('\x1b'));
    }

    #[test]
    fn a_json_line_is_flat_with_one_key_per_field_and_numbers_as_numbers() {
        let line = json(&record(
            "run succeeded",
            vec![
                ("stored_bytes", Value::U64(4_709_004)),
                ("downtime_seconds", Value::F64(4.587_123_4)),
                ("transient", Value::Bool(false)),
                ("name", Value::Str("demo-hourly".into())),
                ("message", Value::Str("a field named message".into())),
            ],
        ));
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        assert_eq!(
            line.trim_end(),
            r#"{"timestamp":"2026-12-03T07:41:52.130Z","level":"INFO","message":"run succeeded","object":"BackupPolicy/demo-hourly","run":"demo-hourly-20261203T074152.130Z","kind":"BackupPolicy","name":"demo-hourly","stored_bytes":4709004,"downtime_seconds":4.587,"transient":false,"field_message":"a field named message","target":"holdfast::executor::steps"}"#
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(4_709_004), "4.5 MiB");
        assert_eq!(human_seconds(0.0), "0ms");
        assert_eq!(human_seconds(0.0042), "4ms");
        assert_eq!(human_seconds(4.587), "4.6s");
        assert_eq!(human_seconds(754.0), "12m34s");
        assert_eq!(human_seconds(7384.0), "2h03m");
    }
}
