//! Every invalid fixture must produce exactly the errors written at its end, at the exact
//! file, line, column and field:
//!
//! ```text
//! # expect: LINE:COLUMN FIELD | MESSAGE
//! # expect: LINE:COLUMN FIELD | MESSAGE | hint: HINT
//! ```
//!
//! (`-` for an error that concerns no single field; an error with a hint must expect it).
//! Every error prints on one line. A fixture that is a folder is
//! validated as a whole, and each of its files carries its own expectations.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use holdfast::validate::validate_paths;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone)]
struct Expected {
    file: PathBuf,
    line: usize,
    column: usize,
    field: String,
    message: String,
    hint: Option<String>,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid")
}

fn expectations(file: &Path) -> Vec<Expected> {
    let text = fs::read_to_string(file).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|rest| {
            let (place, message) = rest.split_once(" | ").expect("expect line has ' | '");
            let (message, hint) = match message.split_once(" | hint: ") {
                Some((message, hint)) => (message, Some(hint.to_string())),
                None => (message, None),
            };
            let (pos, field) = place.split_once(' ').expect("expect line has a field");
            let (line, column) = pos.split_once(':').expect("expect line has LINE:COLUMN");
            Expected {
                file: file.to_path_buf(),
                line: line.parse().unwrap(),
                column: column.parse().unwrap(),
                field: field.to_string(),
                message: message.to_string(),
                hint,
            }
        })
        .collect()
}

fn files_under(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files: Vec<PathBuf> = fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

fn actual(path: &Path) -> BTreeSet<Expected> {
    // Messages that name another file do so by the path given; expectations use paths
    // relative to the crate.
    let root = format!("{}/", env!("CARGO_MANIFEST_DIR"));
    validate_paths(&[path.to_path_buf()])
        .diagnostics()
        .into_iter()
        .map(|d| {
            let printed = d.to_string();
            assert!(
                !printed.contains(['\n', '\r']),
                "an error breaks the one-per-line format: {printed:?}"
            );
            Expected {
                file: d.file.clone(),
                line: d.line,
                column: d.column,
                field: d.field.clone().unwrap_or_else(|| "-".into()),
                message: d.message.replace(&root, ""),
                hint: d.hint.clone(),
            }
        })
        .collect()
}

#[test]
fn every_invalid_fixture_reports_exactly_its_expected_errors() {
    let mut entries: Vec<PathBuf> = fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    assert!(
        entries.len() >= 25,
        "only {} invalid fixtures",
        entries.len()
    );
    let mut failures = Vec::new();
    for entry in &entries {
        let expected: BTreeSet<Expected> = files_under(entry)
            .iter()
            .flat_map(|f| expectations(f))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            entry.display()
        );
        let got = actual(entry);
        if got != expected {
            failures.push(format!(
                "{}\n  expected: {:#?}\n  got:      {:#?}",
                entry.display(),
                expected,
                got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn all_fixtures_together_report_the_sum_of_their_errors() {
    // Errors are collected across files, never stopping at the first.
    let each: usize = fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| actual(&e.unwrap().path()).len())
        .sum();
    let report = validate_paths(&[fixtures_dir()]);
    // Together, each fixture's errors are still reported; the several `web` policies of
    // different fixtures now also collide with each other, which only adds errors.
    assert!(
        report.diagnostics().len() >= each,
        "{} < {each}",
        report.diagnostics().len()
    );
}

fn write_temp(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    fs::write(&path, bytes).unwrap();
    (dir, path)
}

#[test]
fn binary_junk_is_one_clear_error() {
    // Bytes that are not UTF-8 from the first byte, as a compiled file or image would be.
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80)
        .collect();
    let (_dir, path) = write_temp("junk.yaml", &junk);
    let got: Vec<_> = actual(&path).into_iter().collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].line, got[0].column), (1, 1));
    assert!(
        got[0].message.contains("not a text file"),
        "{}",
        got[0].message
    );
}

#[test]
fn invalid_utf8_is_placed_where_it_starts() {
    let (_dir, path) = write_temp(
        "latin1.yaml",
        b"kind: Archive\nmetadata:\n  name: caf\xe9\n",
    );
    let got: Vec<_> = actual(&path).into_iter().collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].line, got[0].column), (3, 12));
    assert!(got[0].message.contains("invalid UTF-8"));
}

#[test]
fn nul_bytes_are_refused() {
    let (_dir, path) = write_temp("nul.yaml", b"kind: Archive\n\0\0\0");
    let got: Vec<_> = actual(&path).into_iter().collect();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].line, got[0].column), (2, 1));
    assert!(got[0].message.contains("NUL"));
}

#[test]
fn a_50_mb_file_is_refused_without_reading_it_all_and_others_are_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    let line = "# padding padding padding padding padding padding padding padding\n";
    let text = line.repeat(50 * 1024 * 1024 / line.len());
    fs::write(&big, text).unwrap();
    fs::write(dir.path().join("bad.yaml"), "kind: Nope\n").unwrap();
    let report = validate_paths(&[dir.path().to_path_buf()]);
    let messages: Vec<String> = report.diagnostics().iter().map(|d| d.to_string()).collect();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert!(
        messages
            .iter()
            .any(|m| m.contains("big.yaml:1:1: file is 50.0 MiB")),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("unknown kind `Nope`")),
        "{messages:#?}"
    );
}

#[test]
fn the_bundled_examples_and_sample_specs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["examples/specs", "examples/gallery", "specs"] {
        let report = validate_paths(&[root.join(dir)]);
        let errors: Vec<String> = report.diagnostics().iter().map(|d| d.to_string()).collect();
        assert!(errors.is_empty(), "{dir}: {errors:#?}");
        assert!(report.object_count() > 0, "{dir} holds no objects");
    }
}

#[test]
fn status_hidden_and_temp_files_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "a.status.yaml",
        ".hidden.yaml",
        "b.yaml~",
        "#c.yaml#",
        "notes.txt",
    ] {
        fs::write(dir.path().join(name), "kind: Broken\n").unwrap();
    }
    fs::create_dir(dir.path().join(".git")).unwrap();
    fs::write(dir.path().join(".git/x.yaml"), "kind: Broken\n").unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(dir.path().join("sub/empty.yml"), "").unwrap();
    let report = validate_paths(&[dir.path().to_path_buf()]);
    assert!(report.is_valid(), "{:?}", report.diagnostics());
    assert_eq!(report.files.len(), 1);
}

#[test]
fn committed_schemas_match_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let stale = holdfast::schema::stale_files(&dir);
    assert!(
        stale.is_empty(),
        "out of date, run `cargo run -- schema`: {stale:?}"
    );
}
