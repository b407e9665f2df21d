//! The real binary: exit codes, output formats, help and version.

mod common;

use common::{crate_root, holdfast, run, stderr, stdout};

#[test]
fn validates_the_examples() {
    let out = run(holdfast().args(["validate", "examples/specs", "specs"]));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("objects: valid"), "{}", stderr(&out));
}

#[test]
fn invalid_specs_exit_1_with_one_line_per_error() {
    let out = run(holdfast().args(["validate", "tests/fixtures/invalid/01-misspelt-field.yaml"]));
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "tests/fixtures/invalid/01-misspelt-field.yaml:5:1: BackupPolicy/typo-field: spec.schedule: missing required field `schedule`",
            "tests/fixtures/invalid/01-misspelt-field.yaml:6:3: BackupPolicy/typo-field: spec.schedul: unknown field `schedul` (hint: did you mean `schedule`?)",
        ]
    );
    assert!(stderr(&out).contains("2 errors"), "{}", stderr(&out));
}

#[test]
fn json_output_for_ci_bots() {
    let out = run(holdfast().args([
        "validate",
        "--output",
        "json",
        "tests/fixtures/invalid/08-unknown-timezone.yaml",
    ]));
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(report["valid"], false);
    assert_eq!(report["files"], 1);
    let error = &report["errors"][0];
    assert_eq!(error["line"], 7);
    assert_eq!(error["column"], 13);
    assert_eq!(error["field"], "spec.timezone");
    assert_eq!(error["object"], "BackupPolicy/bad-zone");
    assert_eq!(error["hint"], "did you mean `Europe/Berlin`?");

    let ok = run(holdfast().args(["validate", "-o", "json", "examples/specs"]));
    assert!(ok.status.success());
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["errors"].as_array().unwrap().len(), 0);
}

#[test]
fn specs_folder_comes_from_flag_or_environment() {
    let out = run(holdfast().arg("validate").env(
        "HOLDFAST_SPECS",
        "tests/fixtures/invalid/02-unknown-kind.yaml",
    ));
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("unknown kind `BackupPolicie`"));
    let out = run(holdfast().args(["validate", "--specs", "examples/specs"]));
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn a_missing_path_is_an_error_not_an_empty_success() {
    let out = run(holdfast().args(["validate", "no/such/dir"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("no/such/dir:1:1: cannot read"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["validate", "--output", "xml"],
        &["run", "--listen", "not-an-address"],
    ] {
        let out = run(holdfast().args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn version_and_help() {
    let out = run(holdfast().arg("--version"));
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("holdfast {}", env!("CARGO_PKG_VERSION"))
    );
    for args in [
        &["--help"][..],
        &["validate", "--help"],
        &["schema", "--help"],
    ] {
        let out = run(holdfast().args(args));
        assert!(out.status.success(), "{args:?}");
        let text = stdout(&out);
        assert!(text.contains("Usage: holdfast"), "{text}");
        // The specs folder is validate's; schema has no use for it.
        assert_eq!(
            text.contains("--specs <DIR>") && text.contains("HOLDFAST_SPECS"),
            args[0] == "validate",
            "{text}"
        );
    }
}

#[test]
fn schema_writes_the_committed_files_and_check_spots_drift() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(holdfast().args(["schema", "--out"]).arg(dir.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    for name in [
        "backuppolicy.schema.json",
        "archive.schema.json",
        "restore.schema.json",
    ] {
        let written = std::fs::read(dir.path().join(name)).unwrap();
        let committed = std::fs::read(crate_root().join("schemas").join(name)).unwrap();
        assert_eq!(written, committed, "{name}");
    }
    let check = run(holdfast()
        .args(["schema", "--check", "--out"])
        .arg(dir.path()));
    assert!(check.status.success());
    std::fs::write(dir.path().join("archive.schema.json"), "{}").unwrap();
    let check = run(holdfast()
        .args(["schema", "--check", "--out"])
        .arg(dir.path()));
    assert_eq!(check.status.code(), Some(1));
    assert!(stderr(&check).contains("archive.schema.json: out of date"));
}
