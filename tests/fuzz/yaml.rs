//! The spec reader: `load::read_bytes` (UTF-8, YAML documents, positions, conversion to
//! JSON) and `validate::validate_sources` (envelope, schema, semantic checks, names
//! across documents), then what the daemon does next with a valid policy: compile its
//! schedule and find the next and last run times.
//!
//! Promises checked besides no panic and no hang: a policy that validates has a schedule
//! that compiles (the schedule module promises it), and every diagnostic renders.

use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use holdfast::schedule::Schedule;
use holdfast::spec::Resource;
use holdfast::{load, validate};

use super::mutate::Rng;
use super::runner::{Target, outcome_class};
use super::text::{YAML_EXTRA, dictionary, mutate_text};

pub struct YamlTarget {
    seeds: Vec<Vec<u8>>,
    words: Vec<Vec<u8>>,
}

/// Every spec file of the checkout: examples, the bundled specs and the invalid fixtures.
fn spec_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = [
        "examples/specs",
        "examples/gallery",
        "specs",
        "tests/fixtures/invalid",
    ]
    .iter()
    .map(|d| root.join(d))
    .collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

impl YamlTarget {
    pub fn new() -> YamlTarget {
        let seeds: Vec<Vec<u8>> = spec_files()
            .iter()
            .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display())))
            .collect();
        let words = dictionary(&seeds, YAML_EXTRA);
        YamlTarget { seeds, words }
    }
}

impl Target for YamlTarget {
    fn name(&self) -> &'static str {
        "yaml"
    }

    fn extension(&self) -> &'static str {
        "yaml"
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        self.seeds.clone()
    }

    fn mutate(&self, rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
        mutate_text(rng, &self.words, input, other, 64 * 1024)
    }

    fn run(&self, input: &[u8]) -> Result<String, String> {
        let source = load::read_bytes(Path::new("specs/fuzz.yaml"), Ok(input.to_vec()));
        let report = validate::validate_sources(vec![source]);
        let mut first_error = None;
        for d in report.diagnostics() {
            let text = d.to_string();
            first_error.get_or_insert(text);
        }
        serde_json::to_string(&report.to_json()).map_err(|e| format!("rendering: {e}"))?;
        let now = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap();
        let mut valid = 0;
        for resource in report.valid_objects() {
            valid += 1;
            if let Resource::BackupPolicy(policy) = resource {
                let schedule = Schedule::new(&policy.metadata.name, &policy.spec).map_err(|e| {
                    format!("a policy that validates has a schedule that does not compile: {e}")
                })?;
                let next = schedule.next_nominal_after(now);
                schedule.last_nominal_at_or_before(now);
                if let Some(next) = next {
                    schedule.start_time(next);
                }
            }
        }
        Ok(match first_error {
            // The message after `file:line:column: `.
            Some(e) => outcome_class(e.splitn(4, ':').nth(3).unwrap_or(&e)),
            None => format!("valid {}", valid.min(3)),
        })
    }
}
