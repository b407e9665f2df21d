//! The real binary: exit codes, output formats, help and version.

mod common;

use common::{COMMANDS, crate_root, holdfast, run, stderr, stdout};

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

#[test]
fn completions_for_every_shell_know_the_commands_and_flags() {
    for (shell, marker) in [
        ("bash", "complete -F _holdfast"),
        ("zsh", "#compdef holdfast"),
        ("fish", "complete -c holdfast"),
        ("elvish", "edit:completion:arg-completer[holdfast]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let out = run(holdfast().args(["completions", shell]));
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(
            script.contains(marker),
            "{shell}: no `{marker}` in\n{script}"
        );
        for command in COMMANDS {
            assert!(script.contains(command), "{shell}: no `{command}`");
        }
        // Flags by their long names (fish writes them without the dashes).
        for flag in ["shutdown-timeout", "history-limit", "log-format"] {
            assert!(script.contains(flag), "{shell}: no --{flag}");
        }
    }
    let out = run(holdfast().args(["completions", "tcsh"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn man_writes_a_page_per_command_and_prints_the_main_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(holdfast()
        .args(["man", "--out"])
        .arg(dir.path().join("man1")));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut expected: Vec<String> = std::iter::once("holdfast.1".to_string())
        .chain(COMMANDS.iter().map(|c| format!("holdfast-{c}.1")))
        .chain(
            ["notify-test", "bundle-create", "bundle-open"]
                .iter()
                .map(|c| format!("holdfast-{c}.1")),
        )
        .collect();
    expected.sort();
    let mut written: Vec<String> = std::fs::read_dir(dir.path().join("man1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, expected);
    // One line per page written, as `schema` does.
    assert_eq!(
        stdout(&out).lines().count(),
        expected.len(),
        "{}",
        stdout(&out)
    );

    let page = |name: &str| std::fs::read_to_string(dir.path().join("man1").join(name)).unwrap();
    let main = page("holdfast.1");
    assert!(main.starts_with(".ie \\n(.g .ds Aq"), "{main}");
    assert!(main.contains(".TH holdfast 1"), "{main}");
    assert!(main.contains("holdfast\\-run(1)"), "{main}");
    let run_page = page("holdfast-run.1");
    assert!(run_page.contains(".TH holdfast-run 1"), "{run_page}");
    assert!(run_page.contains("\\-\\-shutdown\\-timeout"), "{run_page}");
    assert!(run_page.contains("HOLDFAST_SHUTDOWN_TIMEOUT"), "{run_page}");

    // Without --out, the main page on stdout, for `holdfast man | man -l -`.
    let out = run(holdfast().arg("man"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), main);
}

#[test]
fn man_pages_and_completions_ignore_the_configuration_file() {
    // What a package ships must not depend on the machine that built it: a configuration
    // file's values would otherwise show as the flags' defaults.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("holdfast.yaml");
    std::fs::write(&config, "specs: /srv/elsewhere/specs\n").unwrap();
    for (out, config) in [("with", config.as_os_str()), ("without", "".as_ref())] {
        let out = run(holdfast()
            .env("HOLDFAST_CONFIG", config)
            .args(["man", "--out"])
            .arg(dir.path().join(out)));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let page = |out: &str| {
        std::fs::read_to_string(dir.path().join(out).join("holdfast-validate.1")).unwrap()
    };
    assert!(
        page("without").contains("[default: specs]"),
        "{}",
        page("without")
    );
    assert_eq!(page("with"), page("without"));
    let with = run(holdfast()
        .env("HOLDFAST_CONFIG", &config)
        .args(["completions", "bash"]));
    let without = run(holdfast().args(["completions", "bash"]));
    assert_eq!(stdout(&with), stdout(&without));
}
