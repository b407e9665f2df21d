//! A test that needs Docker, promtool or a storage server (Garage, sshd) or
//! a notification receiver (aiosmtpd) says so: under
//! `HOLDFAST_SKIP_DOCKER=1` it must be reported as ignored, never as passed without running.
//! Every `#[test]` in `tests/` whose body asks for one of them carries the `skip_docker`
//! ignore attribute.

use std::fs;
use std::path::Path;

/// What a test body calls when it needs an outside tool or server.
const NEEDS: [&str; 6] = [
    "docker_available()",
    "promtool_available()",
    "Garage::start(",
    "Sftp::start(",
    "SmtpServer::start(",
    "SmtpServer::start_with(",
];
const ATTRIBUTE: &str = "#[cfg_attr(skip_docker, ignore";

/// The tests of `text` (by name) that need a tool but lack the attribute.
fn unmarked(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != "#[test]" {
            continue;
        }
        // The attributes between `#[test]` and the function, then the function itself
        // up to the next item at the same indentation.
        let indent = line.len() - line.trim_start().len();
        let mut attributes = String::new();
        let mut j = i + 1;
        while j < lines.len() && lines[j].trim_start().starts_with("#[") {
            attributes.push_str(lines[j]);
            j += 1;
        }
        let Some(signature) = lines.get(j) else {
            continue;
        };
        let name = signature
            .trim()
            .trim_start_matches("async ")
            .trim_start_matches("fn ")
            .split('(')
            .next()
            .unwrap_or_default()
            .to_string();
        let end = (j + 1..lines.len())
            .find(|&k| {
                let l = lines[k];
                l.len() - l.trim_start().len() == indent && l.trim() == "}"
            })
            .unwrap_or(lines.len());
        let body = lines[j..end].join("\n");
        if NEEDS.iter().any(|n| body.contains(n)) && !attributes.contains(ATTRIBUTE) {
            found.push(name);
        }
    }
    found
}

#[test]
fn every_test_that_needs_docker_or_promtool_is_ignored_when_told_to_skip_them() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut missing = Vec::new();
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        // This file's own examples are text, not tests.
        .filter(|p| !p.ends_with("skip_rule.rs"))
        .collect();
    files.sort();
    assert!(files.len() > 10, "{files:?}");
    for path in files {
        let text = fs::read_to_string(&path).unwrap();
        for name in unmarked(&text) {
            missing.push(format!(
                "tests/{}: {name}",
                path.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "these tests need Docker, promtool or a storage server but would pass without running under \
         HOLDFAST_SKIP_DOCKER=1; add `{ATTRIBUTE} = \"needs Docker; HOLDFAST_SKIP_DOCKER=1\")]`:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_rule_sees_a_test_without_the_attribute() {
    let bare = "#[test]\nfn a() {\n    if !docker_available() {\n        return;\n    }\n}\n";
    assert_eq!(unmarked(bare), ["a"]);
    let marked = format!(
        "#[test]\n{ATTRIBUTE} = \"needs Docker\")]\nfn a() {{\n    docker_available();\n}}\n"
    );
    assert!(unmarked(&marked).is_empty());
    let pure =
        "#[test]\nfn b() {\n    assert!(true);\n}\n#[test]\nfn c() {\n    docker_available();\n}\n";
    assert_eq!(unmarked(pure), ["c"]);
    let server = "#[test]\nfn d() {\n    let g = Garage::start(3);\n}\n";
    assert_eq!(unmarked(server), ["d"]);
    let receiver =
        "#[test]\nfn e() {\n    let s = SmtpServer::start_with(Mode::Tls, Cert::Trusted);\n}\n";
    assert_eq!(unmarked(receiver), ["e"]);
}
