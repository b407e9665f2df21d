//! What a person reads in the logs of a real backup: short text lines that name the
//! object and run once, with sizes and durations in their unit, and JSON lines with one
//! key per field and numbers as numbers. Both are kept as golden files.

mod common;

use std::fs;

use common::env::Env;
use common::golden::assert_golden;
use common::{Busybox, QUITS_ON_TERM, docker, docker_available, docker_lock, run, stderr, stdout};

fn policy(env: &Env, name: &str, container: &str) {
    env.spec(
        name,
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: {name}\nspec:\n  schedule: '@daily'\n  targets: {{containers: [{container}]}}\n  consistency: {{stop: container}}\n"
        ),
    );
}

/// Runs `holdfast <args> backup <name>`; returns its stderr.
fn backup(env: &Env, name: &str, args: &[&str]) -> String {
    let out = run(env.holdfast().args(args).args(["backup", name]));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stderr(&out)
}

/// The log file of each run, oldest first.
fn run_logs(env: &Env) -> Vec<String> {
    let mut files: Vec<_> = fs::read_dir(env.state.join("logs"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .map(|f| fs::read_to_string(f).unwrap())
        .collect()
}

/// What changes between runs and machines, replaced by a placeholder: times, the
/// compact stamps of run and archive ids, sizes, durations, and the names and folders of
/// this test's container and volume.
struct Normalise {
    replace: Vec<(String, &'static str)>,
}

impl Normalise {
    fn new(c: &Busybox) -> Normalise {
        let mountpoint = docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &c.volume]);
        Normalise {
            replace: vec![
                (mountpoint.trim().to_string(), "<volume folder>"),
                (c.name.clone(), "<container>"),
            ],
        }
    }

    fn text(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (from, to) in &self.replace {
            text = text.replace(from.as_str(), to);
        }
        let mut out = String::new();
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            // Only at the start of a word: `run=20261207...` and `logs-text-20261207...`.
            let starts_word = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
            if starts_word && let Some((len, what)) = placeholder(&chars[i..]) {
                out.push_str(what);
                i += len;
            } else {
                out.push(chars[i]);
                i += 1;
            }
        }
        out
    }
}

/// The placeholder for what starts `s`, and how many characters it replaces.
fn placeholder(s: &[char]) -> Option<(usize, &'static str)> {
    let digits = |from: usize| {
        s[from.min(s.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let is = |at: usize, c: char| s.get(at) == Some(&c);
    let n = digits(0);
    if n == 0 {
        return None;
    }
    // 2026-12-07T02:13:36Z, 2026-12-07T02:13:36.741Z
    if n == 4 && is(4, '-') && digits(5) == 2 && is(7, '-') && digits(8) == 2 && is(10, 'T') {
        let mut end = 19;
        if is(end, '.') {
            end += 1 + digits(end + 1);
        }
        if is(end, 'Z') {
            return Some((end + 1, "<time>"));
        }
    }
    // 20261207T021336Z, 20261207T021336.721Z
    if n == 8 && is(8, 'T') && digits(9) == 6 {
        let mut end = 15;
        if is(end, '.') {
            end += 1 + digits(end + 1);
        }
        if is(end, 'Z') {
            return Some((end + 1, "<stamp>"));
        }
    }
    // 5B, 1.0MiB, 1.0 KiB; 4ms, 1.4s
    let mut end = n;
    if is(end, '.') && digits(end + 1) > 0 {
        end += 1 + digits(end + 1);
    }
    for (unit, what, spaced) in [
        ("KiB", "<size>", true),
        ("MiB", "<size>", true),
        ("GiB", "<size>", true),
        ("TiB", "<size>", true),
        ("B", "<size>", true),
        ("ms", "<duration>", false),
        ("s", "<duration>", false),
    ] {
        let at = if spaced && is(end, ' ') { end + 1 } else { end };
        let unit: Vec<char> = unit.chars().collect();
        let after = at + unit.len();
        if s.get(at..after) == Some(&unit[..])
            && !s.get(after).is_some_and(|c| c.is_ascii_alphanumeric())
        {
            return Some((after, what));
        }
    }
    None
}

/// A JSON value read keeping the order of keys, and refusing a key given twice in one
/// object (serde_json's own `Value` would silently keep the last).
#[derive(Debug)]
enum Ordered {
    Object(Vec<(String, Ordered)>),
    Array(Vec<Ordered>),
    String(String),
    Number(serde_json::Number),
    Bool(bool),
    Null,
}

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered, A::Error> {
                let mut entries: Vec<(String, Ordered)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
                    }
                    entries.push((key, map.next_value()?));
                }
                Ok(Ordered::Object(entries))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Ordered, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Ordered::Array(items))
            }
            fn visit_str<E>(self, v: &str) -> Result<Ordered, E> {
                Ok(Ordered::String(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Ordered, E> {
                Ok(Ordered::Number(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Ordered, E> {
                Ok(Ordered::Number(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Ordered, E> {
                serde_json::Number::from_f64(v)
                    .map(Ordered::Number)
                    .ok_or_else(|| E::custom("not a finite number"))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Ordered, E> {
                Ok(Ordered::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Null)
            }
        }
        d.deserialize_any(V)
    }
}

/// The line again, in its own key order, with what varies replaced: strings through
/// `normalise`, and the numbers of sizes and durations by `<n>`.
fn normalised_json(value: &Ordered, key: &str, normalise: &Normalise) -> String {
    match value {
        Ordered::Object(entries) => {
            let inner: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("{k:?}:{}", normalised_json(v, k, normalise)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Ordered::Array(items) => {
            let inner: Vec<String> = items
                .iter()
                .map(|v| normalised_json(v, key, normalise))
                .collect();
            format!("[{}]", inner.join(","))
        }
        Ordered::String(s) => serde_json::Value::from(normalise.text(s)).to_string(),
        Ordered::Number(_) if key.ends_with("_bytes") || key.ends_with("_seconds") => "<n>".into(),
        Ordered::Number(n) => n.to_string(),
        Ordered::Bool(b) => b.to_string(),
        Ordered::Null => "null".into(),
    }
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_backup_logs_short_text_lines_here_and_in_its_run_log() {
    assert!(docker_available());
    let _docker = docker_lock();
    let c = Busybox::start("hflogs", "text", QUITS_ON_TERM);
    let env = Env::new();
    policy(&env, "logs-text", &c.name);
    let normalise = Normalise::new(&c);

    let text = backup(&env, "logs-text", &[]);
    for line in text.lines() {
        assert!(
            !line.contains("holdfast::") && !line.contains("Some(") && !line.contains("None"),
            "module paths or Rust debug formatting in:\n{line}"
        );
        assert!(
            line.matches("BackupPolicy").count() <= 1 && !line.contains("name="),
            "the object named more than once in:\n{line}"
        );
    }
    assert_golden("logs/backup.txt", &normalise.text(&text));
    let logs = run_logs(&env);
    assert_eq!(logs.len(), 1, "{logs:#?}");
    assert_golden("logs/backup-run-log.txt", &normalise.text(&logs[0]));

    // -q: nothing on the terminal when all goes well, and the run's log is whole.
    let quiet = backup(&env, "logs-text", &["-q"]);
    assert_eq!(quiet, "", "-q printed log lines");
    let logs = run_logs(&env);
    assert_eq!(logs.len(), 2, "{logs:#?}");
    assert!(logs[1].contains("INFO run succeeded"), "{}", logs[1]);

    // -v: debug lines, with the module that logged them.
    let verbose = backup(&env, "logs-text", &["-v"]);
    assert!(
        verbose.contains("DEBUG holdfast::executor: BackupPolicy/logs-text run="),
        "{verbose}"
    );
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn a_backup_logs_json_lines_with_one_key_per_field_and_numbers_as_numbers() {
    assert!(docker_available());
    let _docker = docker_lock();
    let c = Busybox::start("hflogs", "json", QUITS_ON_TERM);
    let env = Env::new();
    policy(&env, "logs-json", &c.name);
    let normalise = Normalise::new(&c);

    let text = backup(&env, "logs-json", &["--log-format", "json"]);
    let mut golden = String::new();
    for line in text.lines() {
        let entries = checked_json_line(line, "logs-json");
        golden.push_str(&normalised_json(&Ordered::Object(entries), "", &normalise));
        golden.push('\n');
    }
    assert!(golden.contains("\"message\":\"run succeeded\""), "{text}");
    assert_golden("logs/backup.json", &golden);
}

#[test]
fn a_key_given_twice_is_refused_by_the_check() {
    let twice = r#"{"span":{"kind":"BackupPolicy","name":"ux-shop-nightly","name":"run"}}"#;
    let err = serde_json::from_str::<Ordered>(twice).unwrap_err();
    assert!(err.to_string().contains("duplicate key `name`"), "{err}");
    assert!(serde_json::from_str::<Ordered>(r#"{"a":1,"b":[{"a":2}]}"#).is_ok());
}

#[test]
fn placeholders_replace_what_varies() {
    let n = Normalise { replace: vec![] };
    assert_eq!(
        n.text("2026-12-07T02:13:36Z  INFO BackupPolicy/x run=20261207T021336.721Z: run succeeded archive=x-20261207T021336Z stored=5.2KiB source=5B downtime=1.4s duration=4ms basis=\"1.0 KiB of data\" entries=1 at 2026-12-07T02:13:36.741Z"),
        "<time>  INFO BackupPolicy/x run=<stamp>: run succeeded archive=x-<stamp> stored=<size> source=<size> downtime=<duration> duration=<duration> basis=\"<size> of data\" entries=1 at <time>"
    );
}

#[test]
fn quiet_and_verbose_are_taken_by_every_command_but_not_together() {
    let env = Env::new();
    policy(&env, "quiet", "nothing-to-stop");
    for args in [
        &["-q", "validate"][..],
        &["validate", "-q"],
        &["-vv", "plan", "--help"],
        &["get", "-v", "--help"],
    ] {
        let out = run(env.holdfast().args(args));
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    let both = run(env.holdfast().args(["-q", "-v", "validate"]));
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
}

/// `holdfast <args>` on a pseudo-terminal (util-linux `script`); returns all it wrote.
fn on_a_terminal(env: &Env, args: &str) -> String {
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_holdfast"));
    let out = run(std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("HOLDFAST_SPECS", &env.specs)
        .env("HOLDFAST_STATE", &env.state)
        .env("HOLDFAST_REPOSITORY", &env.repository)
        .env("HOLDFAST_CONFIG", ""));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn on_a_terminal_the_progress_bar_says_the_phase_and_never_shares_a_line_with_a_log_line() {
    assert!(docker_available());
    let _docker = docker_lock();
    let c = Busybox::start("hflogs", "bar", QUITS_ON_TERM);
    common::sh_in(&c.name, "head -c 20000000 /dev/urandom > /data/noise");
    let env = Env::new();
    policy(&env, "logs-bar", &c.name);

    let screen = on_a_terminal(&env, "backup logs-bar");
    for phase in [
        format!("stopping {}", c.name),
        format!("archiving volumes/{}", c.name),
        format!("starting {} again", c.name),
    ] {
        assert!(
            screen.contains(&phase),
            "the bar never said `{phase}`:\n{screen:?}"
        );
    }
    // Each log line starts on a line of its own: at the start, after a line break, or
    // after the bar's line was cleared.
    let mut at = 0;
    while let Some(found) = screen[at..].find("BackupPolicy/logs-bar run=") {
        let object = at + found;
        let start = screen[..object].rfind(['\n', '\r']).map_or(0, |i| i + 1);
        let line = screen[start..object].trim_start_matches("\x1b[2K");
        assert!(
            line.starts_with("20") && line.len() < 40,
            "a log line shares its line with something else: {:?}",
            &screen[start..object + 40]
        );
        at = object + 1;
    }
    assert!(at > 0, "no log line:\n{screen:?}");
    // The bar is cleared before the result is printed, and not drawn after it.
    let result = screen.find("Succeeded logs-bar-").expect("the result");
    let before = &screen[..result];
    assert!(
        before.ends_with("\r\n") || before.ends_with("\x1b[2K") || before.ends_with('\n'),
        "the result does not start a clean line: {:?}",
        &before[before.len().saturating_sub(120)..]
    );
    assert!(
        !screen[result..].contains("writing the"),
        "the bar was drawn after the result: {:?}",
        &screen[result..]
    );
}

#[test]
fn a_holdfast_log_that_is_no_filter_is_said_so() {
    let env = Env::new();
    policy(&env, "said", "nothing-to-stop");
    let out = run(env
        .holdfast()
        .env("HOLDFAST_LOG", "holdfast=loud")
        .arg("validate"));
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("WARN HOLDFAST_LOG=\"holdfast=loud\" is not a log filter"),
        "{err}"
    );
}

/// Checks one JSON log line: no key twice, sizes and durations as numbers, and inside a
/// run the kind and name of `policy`. Returns its keys and values.
fn checked_json_line(line: &str, policy: &str) -> Vec<(String, Ordered)> {
    let parsed: Ordered =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e} in the log line\n{line}"));
    let Ordered::Object(entries) = parsed else {
        panic!("not an object: {line}");
    };
    for (key, value) in &entries {
        if key.ends_with("_bytes") || key.ends_with("_seconds") {
            assert!(
                matches!(value, Ordered::Number(_)),
                "{key} is not a number in\n{line}"
            );
        }
    }
    let get = |key: &str| entries.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    if get("kind").is_some() {
        assert!(
            matches!(get("name"), Some(Ordered::String(n)) if n == policy),
            "{line}"
        );
        assert!(
            matches!(get("kind"), Some(Ordered::String(k)) if k == "BackupPolicy"),
            "{line}"
        );
    }
    entries
}

#[test]
#[cfg_attr(skip_docker, ignore = "needs Docker; HOLDFAST_SKIP_DOCKER=1")]
fn the_daemons_json_lines_keep_the_policy_name_beside_its_object_and_run() {
    assert!(docker_available());
    let _docker = docker_lock();
    let c = Busybox::start("hflogs", "daemon", QUITS_ON_TERM);
    let env = Env::new();
    env.spec(
        "logs-daemon",
        &format!(
            "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: logs-daemon\n  annotations: {{holdfast.dev/requested-at: '1'}}\nspec:\n  schedule: '0 3 1 1 *'\n  targets: {{containers: [{}]}}\n  consistency: {{stop: container}}\n",
            c.name
        ),
    );
    let mut daemon = common::daemon::Daemon::start(env.dir.path(), &["--log-format", "json"]);
    let log_path = env.dir.path().join("daemon.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("\"message\":\"run finished\"")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no run finished:\n{}",
            fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    daemon.signal("TERM");
    assert_eq!(daemon.wait(std::time::Duration::from_secs(60)), Some(0));

    let log = fs::read_to_string(&log_path).unwrap();
    let mut in_run = 0;
    for line in log.lines() {
        let entries = checked_json_line(line, "logs-daemon");
        if entries.iter().any(|(k, _)| k == "kind") {
            in_run += 1;
            assert!(
                entries.iter().any(|(k, v)| k == "object"
                    && matches!(v, Ordered::String(o) if o == "BackupPolicy/logs-daemon")),
                "{line}"
            );
        }
    }
    assert!(in_run >= 3, "too few lines of the run:\n{log}");
    assert!(log.contains("\"message\":\"run succeeded\""), "{log}");
}
